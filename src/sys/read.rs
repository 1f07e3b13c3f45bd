// SPDX-License-Identifier: MIT OR Apache-2.0
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

/// Whether `fd`'s file takes RWF_NOWAIT reads, found without reading a
/// message: a 16-byte read is shorter than one message, so a userfaultfd
/// that gets as far as its read refuses it with EINVAL before dequeuing
/// anything, while a file that cannot honour the flag refuses it earlier
/// with EOPNOTSUPP (old kernels; and descriptors that FORK events carry,
/// which the kernel does not mark as supporting it).
pub fn nowait_supported(fd: BorrowedFd<'_>) -> bool {
    let mut probe = [0u8; 16];
    let iov = libc::iovec {
        iov_base: probe.as_mut_ptr().cast(),
        iov_len: probe.len(),
    };
    // SAFETY: one iovec describing a writable 16-byte local buffer.
    let n = unsafe { libc::preadv2(fd.as_raw_fd(), &iov, 1, -1, libc::RWF_NOWAIT) };
    n < 0 && super::last_errno() == libc::EINVAL
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

/// One read of up to `buf.len()` messages, as `read_msgs` (or, with
/// `nowait`, preadv2(2) with RWF_NOWAIT), returning the number of bytes read so
/// that the caller can tell what a userfaultfd never does: end-of-file (0
/// bytes) or a read that is not a whole number of messages. Both mean the
/// descriptor is not (any more) a userfaultfd.
pub fn read_msg_bytes(fd: BorrowedFd<'_>, buf: &mut [UffdMsg], nowait: bool) -> Result<usize, i32> {
    let bytes = std::mem::size_of_val(buf);
    let n = if nowait {
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: bytes,
        };
        // SAFETY: one iovec describing `buf`, a writable slice of
        // plain-old-data records; the kernel writes at most `bytes` bytes.
        unsafe { libc::preadv2(fd.as_raw_fd(), &iov, 1, -1, libc::RWF_NOWAIT) }
    } else {
        // SAFETY: `buf` is a writable slice of plain-old-data records,
        // `bytes` long; the kernel writes at most that many bytes.
        unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), bytes) }
    };
    if n < 0 {
        return Err(super::last_errno());
    }
    Ok(n as usize)
}

/// Whether descriptor `fd` of this process is a userfaultfd, from its
/// /proc/self/fd link ("anon_inode:[userfaultfd]"); None when that cannot
/// be read (no /proc). No allocation.
pub fn is_userfaultfd(fd: i32) -> Option<bool> {
    let mut path = [0u8; 48];
    let prefix = b"/proc/self/fd/";
    path[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 12];
    let mut n = fd.unsigned_abs();
    let mut d = 0;
    loop {
        digits[d] = b'0' + (n % 10) as u8;
        d += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..d {
        path[prefix.len() + i] = digits[d - 1 - i];
    }
    let mut link = [0u8; 64];
    // SAFETY: `path` is NUL-terminated (zero-filled past the digits);
    // `link` is writable for its length.
    let r = unsafe { libc::readlink(path.as_ptr().cast(), link.as_mut_ptr().cast(), link.len()) };
    if r < 0 {
        return None;
    }
    Some(&link[..r as usize] == b"anon_inode:[userfaultfd]")
}
