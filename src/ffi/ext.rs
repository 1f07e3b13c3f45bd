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
    if sz > ours {
        // SAFETY: the caller guarantees `sz` readable bytes at `ptr`.
        let tail = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>().add(ours), sz - ours) };
        if tail.iter().any(|&b| b != 0) {
            return Err(Error::Os {
                op: "options",
                errno: libc::E2BIG,
                detail: format!(
                    "struct {name} is {sz} bytes and sets fields this libuffd ({ours} bytes) does not know"
                ),
            });
        }
    }
    let mut out = T::default();
    let n = sz.min(ours);
    // SAFETY: `n` bytes are readable at `ptr` (n <= sz) and writable in
    // `out` (n <= size_of::<T>()); T is plain old data made of integers.
    unsafe {
        std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), (&mut out as *mut T).cast::<u8>(), n)
    };
    Ok(out)
}
