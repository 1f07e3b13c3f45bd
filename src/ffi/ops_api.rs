// SPDX-License-Identifier: MIT OR Apache-2.0
//! Registration and the resolving operations.
//!
//! Each function issues its ioctl with the arguments as given and returns
//! the kernel's errno, in the kernel's order of checks, exactly as the raw
//! ioctl would for the same arguments (the only errno of libuffd's own is
//! -EINVAL for a NULL handle). Nothing is pre-checked or looked up on the
//! way in; after a refusal libuffd works out why (zero length,
//! misalignment, what is mapped there, its huge-page size, ...) and puts
//! that in libuffd_last_error(), never in the errno.
//!
//! The fill and move operations return `int64_t`: the number of bytes
//! done. That is `len` when the whole range was done, a smaller positive
//! count when the kernel stopped part way (it reports EAGAIN with progress,
//! typically because part of the range was already populated or an event
//! is pending): bytes `[0, n)` are done and the caller continues at
//! `addr + n`. A failure is `-errno`; `-EEXIST` means the range was already
//! populated by someone else, so the fault is resolved but the kernel did
//! not wake the waiter: call libuffd_wake().

use super::handle_api::with_handle;
use super::types::libuffd_handle;
use crate::uffd::{
    ContinueMode, CopyMode, MoveMode, PoisonMode, Range, RegisterMode, WriteprotectMode,
    ZeropageMode,
};

// C_MEMORY, the argument for every fill, move and poison below: the
// memory they change is the C caller's, passed as plain addresses, which
// no Rust code in libuffd holds a reference into (the Rust contract of
// these operations); what the C program keeps there is its own business,
// as with the raw ioctl. The mode bits are passed to the kernel as given
// (`from_bits_retain`): unknown bits get the kernel's EINVAL.

fn progress(p: crate::uffd::Progress) -> i64 {
    p.done as i64
}

/// Register [start, start+len) with this userfaultfd (UFFDIO_REGISTER).
///
/// mode is any non-empty combination of LIBUFFD_REGISTER_MISSING, _WP
/// and _MINOR the memory supports. The range must be page-aligned; for
/// hugetlb memory, aligned to its huge-page size. Costs the ioctl alone:
/// only when the kernel refuses does libuffd look at the mappings, to say
/// in libuffd_last_error() which one was misaligned, unmapped or
/// unsuitable. On success the LIBUFFD_IOCTL_* mask of operations the
/// kernel allows on the range is written to *ioctls (which may be NULL;
/// it is not written on failure).
///
/// Thread safety: may be called from any thread.
///
/// Returns: 0, or the kernel's -errno: -EINVAL (mode 0 or unknown mode
/// bits, checked before the range; len 0, misaligned, wrapping or
/// out-of-range range; nothing mapped there; hugetlb range not aligned to
/// its huge pages; memory or mode userfaultfd does not support; also a
/// NULL handle), -EBUSY (registered with another userfaultfd), -EPERM
/// (shared mapping not writable: read-only file or write-sealed memfd),
/// -ENOMEM (the process owning the memory is exiting).
///
/// Pointers: h must be NULL or a live handle; ioctls NULL or writable.
///
/// Example: map anonymous memory and register it for missing-page faults;
/// the kernel's answer says which operations the range allows.
///
/// ```c
/// void *map_registered(libuffd_handle *h, size_t len)
/// {
///         void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
///                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
///         uint64_t ioctls;
///
///         if (p == MAP_FAILED)
///                 return NULL;
///         if (libuffd_register(h, p, len, LIBUFFD_REGISTER_MISSING, &ioctls) < 0 ||
///             !(ioctls & LIBUFFD_IOCTL_COPY)) {
///                 fprintf(stderr, "%s\n", libuffd_last_error());
///                 munmap(p, len);
///                 return NULL;
///         }
///         return p;
/// }
/// ```
#[no_mangle]
pub unsafe extern "C" fn libuffd_register(
    h: *mut libuffd_handle,
    start: *mut libc::c_void,
    len: usize,
    mode: u64,
    ioctls: *mut u64,
) -> i32 {
    with_handle("libuffd_register", h, |u| {
        let got = u.register(
            Range::of_ptr(start, len),
            RegisterMode::from_bits_retain(mode),
        )?;
        if !ioctls.is_null() {
            // SAFETY: non-NULL, and the caller promised it is writable.
            unsafe { ioctls.write(got.bits()) };
        }
        Ok(0)
    })
}

/// Unregister [start, start+len) (UFFDIO_UNREGISTER); threads waiting on
/// missing-page faults there are woken. Costs the ioctl alone.
///
/// Thread safety: may be called from any thread.
///
/// Returns: 0, or the kernel's -errno: -EINVAL (len 0, misaligned,
/// wrapping or out-of-range range, nothing mapped there, hugetlb range
/// starting off a huge-page boundary, part of it registered with another
/// userfaultfd; also a NULL handle), -ENOMEM (the process owning the
/// memory is exiting).
///
/// Pointers: h must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn libuffd_unregister(
    h: *mut libuffd_handle,
    start: *mut libc::c_void,
    len: usize,
) -> i32 {
    with_handle("libuffd_unregister", h, |u| {
        u.unregister(Range::of_ptr(start, len))?;
        Ok(0)
    })
}

/// Wake the threads waiting on faults in [start, start+len), after
/// operations done with a DONTWAKE mode, or after -EEXIST.
///
/// Thread safety: may be called from any thread.
///
/// Returns: 0, or the kernel's -errno: -EINVAL (len 0, misaligned,
/// wrapping or out-of-range range; also a NULL handle).
///
/// Pointers: h must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn libuffd_wake(
    h: *mut libuffd_handle,
    start: *mut libc::c_void,
    len: usize,
) -> i32 {
    with_handle("libuffd_wake", h, |u| {
        u.wake(Range::of_ptr(start, len))?;
        Ok(0)
    })
}

/// Resolve missing-page faults by copying len bytes from src into
/// [dst, dst+len), atomically per page, then waking the waiters.
///
/// Modes: LIBUFFD_COPY_DONTWAKE, LIBUFFD_COPY_WP (map write-protected;
/// needs a WP registration).
///
/// Signal handlers: not async-signal-safe (no function taking a handle is):
/// its error path allocates and it changes the thread's cancellation
/// state. A SIGBUS handler of a LIBUFFD_FEATURE_SIGBUS handle issues the
/// UFFDIO_COPY ioctl itself on libuffd_handle_fd(), fetched beforehand.
///
/// Thread safety: may be called from any thread.
///
/// Returns: bytes done (len, or fewer: continue at dst+n, src+n), or
/// the kernel's -errno, in its order: -EAGAIN (an event is queued unread:
/// read events, then retry; checked before anything else, so even a zero
/// length gets it), -EINVAL (len 0 or not page-sized, src or dst range
/// wrapping or out of range, dst misaligned, unknown mode bits, a mode the
/// registration does not allow, hugetlb misalignment; also a NULL
/// handle), -EEXIST (already populated: resolved by someone else; call
/// libuffd_wake()), -ENOENT (no registered mapping at dst), -EFAULT (src
/// unreadable), -ESRCH (owning process exited).
///
/// Pointers: h must be NULL or a live handle. src need not be valid: the
/// kernel reads it and reports -EFAULT.
///
/// Example: resolve a missing-page fault on page (page_size bytes) with
/// the contents at src. -EEXIST means another thread placed it first: wake
/// the waiters; -EAGAIN that an event (fork, mremap, ...) must be read
/// first.
///
/// ```c
/// int place_page(libuffd_handle *h, void *page, const void *src, size_t page_size)
/// {
///         int64_t n = libuffd_copy(h, page, src, page_size, 0);
///
///         if (n == -EEXIST)
///                 return libuffd_wake(h, page, page_size);
///         return n < 0 ? (int)n : 0;
/// }
/// ```
#[no_mangle]
pub unsafe extern "C" fn libuffd_copy(
    h: *mut libuffd_handle,
    dst: *mut libc::c_void,
    src: *const libc::c_void,
    len: usize,
    mode: u64,
) -> i64 {
    with_handle("libuffd_copy", h, |u| {
        // SAFETY: C_MEMORY.
        let p = unsafe {
            u.copy(
                Range::of_ptr(dst, len),
                src.cast(),
                CopyMode::from_bits_retain(mode),
            )
        };
        Ok(progress(p?))
    })
}

/// Resolve missing-page faults in [start, start+len) with zero-filled
/// pages. Mode: LIBUFFD_ZEROPAGE_DONTWAKE. Not supported on hugetlb.
///
/// Thread safety: may be called from any thread.
///
/// Returns: bytes done, as libuffd_copy(), or the kernel's -errno: -EAGAIN
/// (first, as for libuffd_copy()), -EINVAL (bad range, unknown mode bits,
/// hugetlb memory), -EEXIST, -ENOENT, -ESRCH.
///
/// Pointers: h must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn libuffd_zeropage(
    h: *mut libuffd_handle,
    start: *mut libc::c_void,
    len: usize,
    mode: u64,
) -> i64 {
    with_handle("libuffd_zeropage", h, |u| {
        // SAFETY: C_MEMORY.
        let p = unsafe {
            u.zeropage(
                Range::of_ptr(start, len),
                ZeropageMode::from_bits_retain(mode),
            )
        };
        Ok(progress(p?))
    })
}

/// Write-protect [start, start+len) (mode LIBUFFD_WRITEPROTECT_WP), or
/// remove the protection and wake the waiters (mode 0; add
/// LIBUFFD_WRITEPROTECT_DONTWAKE to skip the wake). The range must be
/// registered with LIBUFFD_REGISTER_WP.
///
/// Thread safety: may be called from any thread.
///
/// Returns: 0, or the kernel's -errno: -EAGAIN (an event is queued unread;
/// checked first), -EINVAL (bad range, unknown mode bits, WP together with
/// DONTWAKE; also a NULL handle), -ENOENT (not WP-registered on this
/// handle), -ESRCH.
///
/// Pointers: h must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn libuffd_writeprotect(
    h: *mut libuffd_handle,
    start: *mut libc::c_void,
    len: usize,
    mode: u64,
) -> i32 {
    with_handle("libuffd_writeprotect", h, |u| {
        u.writeprotect(
            Range::of_ptr(start, len),
            WriteprotectMode::from_bits_retain(mode),
        )?;
        Ok(0)
    })
}

/// Resolve minor faults in [start, start+len) by mapping the pages that
/// already exist in the page cache (shmem, hugetlbfs; register with
/// LIBUFFD_REGISTER_MINOR). Modes: LIBUFFD_CONTINUE_DONTWAKE,
/// LIBUFFD_CONTINUE_WP.
///
/// Thread safety: may be called from any thread.
///
/// Returns: bytes done, as libuffd_copy(), or the kernel's -errno: -EAGAIN
/// (first), -EINVAL (bad range or mode, memory that is not shmem/hugetlb),
/// -EEXIST, -ENOENT, -EFAULT (no page-cache page there), -ESRCH.
///
/// Pointers: h must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn libuffd_continue(
    h: *mut libuffd_handle,
    start: *mut libc::c_void,
    len: usize,
    mode: u64,
) -> i64 {
    with_handle("libuffd_continue", h, |u| {
        // SAFETY: C_MEMORY.
        let p = unsafe {
            u.continue_range(
                Range::of_ptr(start, len),
                ContinueMode::from_bits_retain(mode),
            )
        };
        Ok(progress(p?))
    })
}

/// Resolve faults in [start, start+len) by marking the pages poisoned:
/// later accesses raise SIGBUS. Mode: LIBUFFD_POISON_DONTWAKE. Needs
/// LIBUFFD_FEATURE_POISON from the kernel.
///
/// Thread safety: may be called from any thread.
///
/// Returns: bytes done, as libuffd_copy(), or the kernel's -errno: -EAGAIN
/// (first), -EINVAL (bad range or mode), -EEXIST, -ENOENT, -ESRCH.
///
/// Pointers: h must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn libuffd_poison(
    h: *mut libuffd_handle,
    start: *mut libc::c_void,
    len: usize,
    mode: u64,
) -> i64 {
    with_handle("libuffd_poison", h, |u| {
        // SAFETY: C_MEMORY.
        let p = unsafe {
            u.poison(
                Range::of_ptr(start, len),
                PoisonMode::from_bits_retain(mode),
            )
        };
        Ok(progress(p?))
    })
}

/// Resolve missing-page faults at [dst, dst+len) by moving the pages of
/// [src, src+len) there, without copying. Both ranges must be anonymous
/// private memory of the calling process with the same protections; dst
/// registered with this handle. Modes: LIBUFFD_MOVE_DONTWAKE,
/// LIBUFFD_MOVE_ALLOW_SRC_HOLES. Needs LIBUFFD_FEATURE_MOVE.
///
/// Thread safety: may be called from any thread; only one thread should
/// resolve a given address at a time.
///
/// Returns: bytes done, as libuffd_copy(), or the kernel's -errno: -EAGAIN
/// (first), -EINVAL (bad dst or src range, unknown mode bits, dst not
/// registered with this handle, not anonymous private memory, another
/// process's uffd), -EEXIST (dst populated), -ENOENT (a src hole without
/// ALLOW_SRC_HOLES, or nothing mapped at dst), -EBUSY (a src page is
/// shared, e.g. after fork), -ESRCH.
///
/// Pointers: h must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn libuffd_move(
    h: *mut libuffd_handle,
    dst: *mut libc::c_void,
    src: *mut libc::c_void,
    len: usize,
    mode: u64,
) -> i64 {
    with_handle("libuffd_move", h, |u| {
        // SAFETY: C_MEMORY.
        let p = unsafe {
            u.move_pages(
                Range::of_ptr(dst, len),
                src as usize as u64,
                MoveMode::from_bits_retain(mode),
            )
        };
        Ok(progress(p?))
    })
}
