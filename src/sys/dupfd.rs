// SPDX-License-Identifier: MIT OR Apache-2.0
//! Descriptors given to the library are duplicated, so that the caller may
//! close (and its number be reused by another file) whenever it likes.

use std::os::fd::{FromRawFd, OwnedFd};

/// A close-on-exec duplicate of `fd` (F_DUPFD_CLOEXEC), or the errno.
pub fn dup_cloexec(fd: i32) -> Result<OwnedFd, i32> {
    if fd < 0 {
        return Err(libc::EBADF);
    }
    // SAFETY: fcntl on a number the caller gave; a closed number fails
    // with EBADF, nothing else happens.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(super::last_errno());
    }
    // SAFETY: `dup` was just created and belongs to nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}
