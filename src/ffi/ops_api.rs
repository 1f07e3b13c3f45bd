//! Registration and the resolving operations.
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
use crate::uffd::{Error, RegisterMode};

fn progress(p: crate::uffd::Progress) -> i64 {
    p.done as i64
}

fn check_len(op: &str, len: usize) -> Result<u64, Error> {
    if len as u64 > i64::MAX as u64 {
        return Err(Error::invalid(format!(
            "{op}: length {len:#x} exceeds INT64_MAX"
        )));
    }
    Ok(len as u64)
}

/// Register `[start, start+len)` with this userfaultfd.
///
/// `mode` is any non-empty combination of LIBUFFD_REGISTER_MISSING, _WP
/// and _MINOR the memory supports. The range must be page-aligned; for
/// hugetlb memory, aligned to its huge-page size (checked against
/// /proc/self/smaps first, so the error says which mapping was misaligned).
/// On success the LIBUFFD_IOCTL_* mask of operations the kernel allows on
/// the range is written to `*ioctls` (which may be NULL).
///
/// Thread safety: may be called from any thread.
///
/// Returns: 0, or -EINVAL (NULL handle, len 0, misaligned, wrapping range,
/// unknown or empty mode, mode the memory does not support), -ENOMEM
/// (nothing mapped there), -EBUSY (registered with another userfaultfd),
/// -EPERM (mapping not writable).
///
/// # Safety
/// `h` is NULL or a live handle; `ioctls` is NULL or writable.
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
            start as u64,
            len as u64,
            RegisterMode::from_bits_retain(mode),
        )?;
        if !ioctls.is_null() {
            // SAFETY: non-NULL, and the caller promised it is writable.
            unsafe { ioctls.write(got.bits()) };
        }
        Ok(0)
    })
}

/// Unregister `[start, start+len)`; threads waiting on missing-page faults
/// there are woken.
///
/// Thread safety: may be called from any thread.
///
/// Returns: 0, or -EINVAL (NULL handle, len 0, misaligned or wrapping
/// range, hugetlb range not aligned to its huge pages), -ENOMEM (nothing
/// mapped there).
///
/// # Safety
/// `h` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn libuffd_unregister(
    h: *mut libuffd_handle,
    start: *mut libc::c_void,
    len: usize,
) -> i32 {
    with_handle("libuffd_unregister", h, |u| {
        u.unregister(start as u64, len as u64)?;
        Ok(0)
    })
}

/// Wake the threads waiting on faults in `[start, start+len)`, after
/// operations done with a DONTWAKE mode, or after -EEXIST.
///
/// Thread safety: may be called from any thread.
///
/// Returns: 0, or -EINVAL (NULL handle, len 0, misaligned or wrapping
/// range), -ESRCH (the process owning the memory exited).
///
/// # Safety
/// `h` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn libuffd_wake(
    h: *mut libuffd_handle,
    start: *mut libc::c_void,
    len: usize,
) -> i32 {
    with_handle("libuffd_wake", h, |u| {
        u.wake(start as u64, len as u64)?;
        Ok(0)
    })
}

/// Resolve missing-page faults by copying `len` bytes from `src` into
/// `[dst, dst+len)`, atomically per page, then waking the waiters.
///
/// Modes: LIBUFFD_COPY_DONTWAKE, LIBUFFD_COPY_WP (map write-protected;
/// needs a WP registration).
///
/// Thread safety: may be called from any thread.
///
/// Returns: bytes done (`len`, or fewer: continue at dst+n, src+n), or
/// -EEXIST (already populated: resolved by someone else; call libuffd_wake()),
/// -EAGAIN (an event is queued unread: read events, then retry), -ENOENT
/// (no registered mapping at dst), -ESRCH (owning process exited), -EFAULT
/// (src unreadable), -EINVAL (NULL handle, len 0, misaligned or wrapping
/// range, unknown mode bits, a mode the registration does not allow).
///
/// # Safety
/// `h` is NULL or a live handle. `src` need not be valid: the kernel reads
/// it and reports -EFAULT.
#[no_mangle]
pub unsafe extern "C" fn libuffd_copy(
    h: *mut libuffd_handle,
    dst: *mut libc::c_void,
    src: *const libc::c_void,
    len: usize,
    mode: u64,
) -> i64 {
    with_handle("libuffd_copy", h, |u| {
        let len = check_len("libuffd_copy", len)?;
        Ok(progress(u.copy(dst as u64, src as u64, len, mode)?))
    })
}

/// Resolve missing-page faults in `[start, start+len)` with zero-filled
/// pages. Mode: LIBUFFD_ZEROPAGE_DONTWAKE. Not supported on hugetlb.
///
/// Thread safety: may be called from any thread.
///
/// Returns: bytes done, as libuffd_copy(), or -EEXIST, -EAGAIN, -ENOENT,
/// -ESRCH, -EINVAL (also: hugetlb memory).
///
/// # Safety
/// `h` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn libuffd_zeropage(
    h: *mut libuffd_handle,
    start: *mut libc::c_void,
    len: usize,
    mode: u64,
) -> i64 {
    with_handle("libuffd_zeropage", h, |u| {
        let len = check_len("libuffd_zeropage", len)?;
        Ok(progress(u.zeropage(start as u64, len, mode)?))
    })
}

/// Write-protect `[start, start+len)` (mode LIBUFFD_WRITEPROTECT_WP), or
/// remove the protection and wake the waiters (mode 0; add
/// LIBUFFD_WRITEPROTECT_DONTWAKE to skip the wake). The range must be
/// registered with LIBUFFD_REGISTER_WP.
///
/// Thread safety: may be called from any thread.
///
/// Returns: 0, or -EINVAL (NULL handle, bad range, unknown mode bits, WP
/// together with DONTWAKE), -ENOENT (not WP-registered on this handle),
/// -EAGAIN (an event is queued unread), -ESRCH.
///
/// # Safety
/// `h` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn libuffd_writeprotect(
    h: *mut libuffd_handle,
    start: *mut libc::c_void,
    len: usize,
    mode: u64,
) -> i32 {
    with_handle("libuffd_writeprotect", h, |u| {
        u.writeprotect(start as u64, len as u64, mode)?;
        Ok(0)
    })
}

/// Resolve minor faults in `[start, start+len)` by mapping the pages that
/// already exist in the page cache (shmem, hugetlbfs; register with
/// LIBUFFD_REGISTER_MINOR). Modes: LIBUFFD_CONTINUE_DONTWAKE,
/// LIBUFFD_CONTINUE_WP.
///
/// Thread safety: may be called from any thread.
///
/// Returns: bytes done, as libuffd_copy(), or -EEXIST, -EAGAIN, -ENOENT,
/// -ESRCH, -EFAULT (no page-cache page there), -EINVAL.
///
/// # Safety
/// `h` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn libuffd_continue(
    h: *mut libuffd_handle,
    start: *mut libc::c_void,
    len: usize,
    mode: u64,
) -> i64 {
    with_handle("libuffd_continue", h, |u| {
        let len = check_len("libuffd_continue", len)?;
        Ok(progress(u.continue_range(start as u64, len, mode)?))
    })
}

/// Resolve faults in `[start, start+len)` by marking the pages poisoned:
/// later accesses raise SIGBUS. Mode: LIBUFFD_POISON_DONTWAKE. Needs
/// LIBUFFD_FEATURE_POISON from the kernel.
///
/// Thread safety: may be called from any thread.
///
/// Returns: bytes done, as libuffd_copy(), or -EEXIST, -EAGAIN, -ENOENT,
/// -ESRCH, -EINVAL.
///
/// # Safety
/// `h` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn libuffd_poison(
    h: *mut libuffd_handle,
    start: *mut libc::c_void,
    len: usize,
    mode: u64,
) -> i64 {
    with_handle("libuffd_poison", h, |u| {
        let len = check_len("libuffd_poison", len)?;
        Ok(progress(u.poison(start as u64, len, mode)?))
    })
}

/// Resolve missing-page faults at `[dst, dst+len)` by moving the pages of
/// `[src, src+len)` there, without copying. Both ranges must be anonymous
/// private memory of the calling process with the same protections; `dst`
/// registered with this handle. Modes: LIBUFFD_MOVE_DONTWAKE,
/// LIBUFFD_MOVE_ALLOW_SRC_HOLES. Needs LIBUFFD_FEATURE_MOVE.
///
/// Thread safety: may be called from any thread; only one thread should
/// resolve a given address at a time.
///
/// Returns: bytes done, as libuffd_copy(), or -EEXIST (dst populated),
/// -ENOENT (a src hole without ALLOW_SRC_HOLES, or nothing mapped at dst),
/// -EBUSY (a src page is shared, e.g. after fork), -EAGAIN, -ESRCH,
/// -EINVAL (dst not registered with this handle, not anonymous private
/// memory, another process's uffd, bad range or mode).
///
/// # Safety
/// `h` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn libuffd_move(
    h: *mut libuffd_handle,
    dst: *mut libc::c_void,
    src: *mut libc::c_void,
    len: usize,
    mode: u64,
) -> i64 {
    with_handle("libuffd_move", h, |u| {
        let len = check_len("libuffd_move", len)?;
        Ok(progress(u.move_pages(dst as u64, src as u64, len, mode)?))
    })
}
