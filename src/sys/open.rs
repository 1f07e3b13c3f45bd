// SPDX-License-Identifier: MIT OR Apache-2.0
//! The two ways to get a new userfaultfd: the `userfaultfd(2)` system call
//! and `ioctl(USERFAULTFD_IOC_NEW)` on `/dev/userfaultfd`.

use super::uapi::{NR_USERFAULTFD, USERFAULTFD_IOC_NEW};
use std::os::fd::{FromRawFd, OwnedFd};

/// `userfaultfd(flags)`; flags are O_CLOEXEC, O_NONBLOCK, UFFD_USER_MODE_ONLY.
pub fn userfaultfd_syscall(flags: i32) -> Result<OwnedFd, i32> {
    // SAFETY: the syscall takes one integer argument and returns a new fd
    // or -1; it touches no memory of ours.
    let fd = unsafe { libc::syscall(NR_USERFAULTFD, flags as libc::c_long) };
    if fd < 0 {
        return Err(super::last_errno());
    }
    // SAFETY: the kernel just returned this descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `open("/dev/userfaultfd")` then `ioctl(USERFAULTFD_IOC_NEW, flags)`.
/// Errors say which of the two steps failed.
pub fn userfaultfd_dev(path: &std::ffi::CStr, flags: i32) -> Result<OwnedFd, (&'static str, i32)> {
    // SAFETY: `path` is a valid NUL-terminated string for the call.
    let dev = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if dev < 0 {
        return Err(("open", super::last_errno()));
    }
    // SAFETY: `dev` was just opened and is owned here.
    let dev = unsafe { OwnedFd::from_raw_fd(dev) };
    // SAFETY: USERFAULTFD_IOC_NEW takes its flags by value (no pointer).
    let fd = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&dev),
            USERFAULTFD_IOC_NEW as _,
            flags as libc::c_long,
        )
    };
    if fd < 0 {
        return Err(("USERFAULTFD_IOC_NEW", super::last_errno()));
    }
    // SAFETY: the ioctl returned a new descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fcntl(F_GETFL)` of a descriptor.
pub fn status_flags(fd: std::os::fd::BorrowedFd<'_>) -> Result<i32, i32> {
    // SAFETY: F_GETFL reads no memory of ours.
    let fl = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::F_GETFL) };
    if fl < 0 {
        Err(super::last_errno())
    } else {
        Ok(fl)
    }
}

/// Set O_NONBLOCK on a descriptor's file (fcntl F_SETFL). Only for files
/// nobody else holds: the status flags belong to the open file, shared by
/// every descriptor of it in every process.
pub fn set_nonblocking(fd: std::os::fd::BorrowedFd<'_>) -> Result<(), i32> {
    let fl = status_flags(fd)?;
    // SAFETY: F_SETFL with an integer argument reads no memory of ours.
    let rc = unsafe {
        libc::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::F_SETFL,
            fl | libc::O_NONBLOCK,
        )
    };
    if rc < 0 {
        Err(super::last_errno())
    } else {
        Ok(())
    }
}

/// `fcntl(F_GETFD) & FD_CLOEXEC` of a descriptor.
pub fn is_cloexec(fd: std::os::fd::BorrowedFd<'_>) -> Result<bool, i32> {
    // SAFETY: F_GETFD reads no memory of ours.
    let fl = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::F_GETFD) };
    if fl < 0 {
        Err(super::last_errno())
    } else {
        Ok(fl & libc::FD_CLOEXEC != 0)
    }
}
