// SPDX-License-Identifier: MIT OR Apache-2.0
//! Size-versioned option structs, libbpf/openat2 style: the struct starts
//! with `size_t sz`, set by the caller to `sizeof` the struct it was
//! compiled with. A shorter struct (an older caller) gets defaults for the
//! fields it lacks; a longer one (a newer caller) is accepted only if the
//! bytes this library does not know are all zero, else -E2BIG.

use crate::uffd::Error;

/// Copy an options struct in from C. `ptr` may be NULL (all defaults).
///
/// # Safety
/// `ptr` is NULL or points to at least `(*ptr).sz` readable bytes whose
/// first field is a `size_t` giving that size.
pub(crate) unsafe fn copy_opts<T: Copy + Default>(name: &str, ptr: *const T) -> Result<T, Error> {
    if ptr.is_null() {
        return Ok(T::default());
    }
    // SAFETY: the caller guarantees the first field is a readable size_t.
    let sz = unsafe { std::ptr::read_unaligned(ptr.cast::<usize>()) };
    let ours = std::mem::size_of::<T>();
    let min = std::mem::size_of::<usize>();
    if sz < min {
        return Err(Error::invalid(format!(
            "{name}: .sz is {sz}; set it to sizeof(struct {name}) ({ours})"
        )));
    }
    // SAFETY: the caller guarantees `sz` readable bytes at `ptr`.
    unsafe { copy_sized(name, ptr, sz) }
}

/// Copy a struct of `size` bytes in from C, `size` being what the caller
/// was compiled with: a shorter struct gets defaults for the members it
/// lacks; a longer one is accepted only if the bytes past ours are zero,
/// else -E2BIG. The one place that rule lives (options structs and the
/// monitor's callback table both use it).
///
/// # Safety
/// `ptr` points to at least `size` readable bytes.
pub(crate) unsafe fn copy_sized<T: Copy + Default>(
    name: &str,
    ptr: *const T,
    size: usize,
) -> Result<T, Error> {
    let ours = std::mem::size_of::<T>();
    if size > ours {
        // SAFETY: the caller guarantees `size` readable bytes at `ptr`.
        let tail = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>().add(ours), size - ours) };
        if tail.iter().any(|&b| b != 0) {
            return Err(Error::Os {
                op: "options",
                errno: libc::E2BIG,
                detail: format!(
                    "struct {name} is {size} bytes and sets fields this libuffd ({ours} bytes) does not know"
                ),
            });
        }
    }
    let mut out = T::default();
    let n = size.min(ours);
    // SAFETY: `n` bytes are readable at `ptr` (n <= size) and writable in
    // `out` (n <= size_of::<T>()); T is plain old data (integers, nullable
    // pointers).
    unsafe {
        std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), (&mut out as *mut T).cast::<u8>(), n)
    };
    Ok(out)
}
