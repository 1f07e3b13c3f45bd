//! Reading `struct uffd_msg` records and waiting for them with poll(2).

use super::uapi::UffdMsg;
use std::os::fd::{AsRawFd, BorrowedFd};

/// One read(2) of up to `buf.len()` messages. Returns how many arrived
/// (the kernel only ever returns whole 32-byte records), or the errno.
pub fn read_msgs(fd: BorrowedFd<'_>, buf: &mut [UffdMsg]) -> Result<usize, i32> {
    let bytes = std::mem::size_of_val(buf);
    // SAFETY: `buf` is a writable slice of plain-old-data records, `bytes`
    // long; the kernel writes at most that many bytes.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), bytes) };
    if n < 0 {
        return Err(super::last_errno());
    }
    Ok(n as usize / std::mem::size_of::<UffdMsg>())
}

/// poll(2) one descriptor for POLLIN. Returns the revents (0 on timeout).
pub fn poll_in(fd: BorrowedFd<'_>, timeout_ms: i32) -> Result<i16, i32> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1.
    let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    if rc < 0 {
        return Err(super::last_errno());
    }
    Ok(if rc == 0 { 0 } else { pfd.revents })
}

/// Take ownership of the descriptor a FORK message carries.
///
/// The kernel installs that descriptor in the reader's fd table during the
/// read(2) that returned the message; it belongs to whoever decodes the
/// message. Callers guarantee each message is decoded once (the decoder
/// clears the record after taking the fd).
pub fn take_fork_fd(raw: i32) -> std::os::fd::OwnedFd {
    // SAFETY: see above: the fd is new, valid, and owned by nobody else.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(raw) }
}

/// View a slice of transparent wrappers around `UffdMsg` as raw records.
pub fn msgs_as_raw<T>(buf: &mut [T]) -> &mut [UffdMsg] {
    assert_eq!(std::mem::size_of::<T>(), std::mem::size_of::<UffdMsg>());
    assert_eq!(std::mem::align_of::<T>(), std::mem::align_of::<UffdMsg>());
    // SAFETY: T has UffdMsg's size and alignment (checked above, and the
    // only caller's T is #[repr(transparent)] over UffdMsg), so the same
    // memory is a valid slice of the same length of UffdMsg.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast(), buf.len()) }
}
