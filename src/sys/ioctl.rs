// SPDX-License-Identifier: MIT OR Apache-2.0
//! Typed userfaultfd ioctls. Each function pairs one request number with
//! the struct the kernel expects for it; the result is `Ok(())` or the
//! errno the kernel set. The structs' result fields are left as the kernel
//! wrote them, for the layer above to decode.

use super::uapi::*;
use std::os::fd::{AsRawFd, BorrowedFd};

fn ioctl_with<T>(fd: BorrowedFd<'_>, request: u64, arg: &mut T) -> Result<(), i32> {
    // SAFETY: `fd` is a live descriptor for the duration of the borrow, and
    // every caller in this module passes the struct type that `request`
    // encodes (size and direction are part of the request number), so the
    // kernel reads and writes exactly `size_of::<T>()` bytes of `*arg`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg as *mut T) };
    if rc < 0 {
        Err(super::last_errno())
    } else {
        Ok(())
    }
}

/// UFFDIO_API handshake.
pub fn api(fd: BorrowedFd<'_>, arg: &mut UffdioApi) -> Result<(), i32> {
    ioctl_with(fd, UFFDIO_API, arg)
}

/// UFFDIO_REGISTER.
pub fn register(fd: BorrowedFd<'_>, arg: &mut UffdioRegister) -> Result<(), i32> {
    ioctl_with(fd, UFFDIO_REGISTER, arg)
}

/// UFFDIO_UNREGISTER.
pub fn unregister(fd: BorrowedFd<'_>, arg: &mut UffdioRange) -> Result<(), i32> {
    ioctl_with(fd, UFFDIO_UNREGISTER, arg)
}

/// UFFDIO_WAKE.
pub fn wake(fd: BorrowedFd<'_>, arg: &mut UffdioRange) -> Result<(), i32> {
    ioctl_with(fd, UFFDIO_WAKE, arg)
}

/// UFFDIO_COPY. The kernel reads `arg.len` bytes at `arg.src` from the
/// calling process with copy_from_user, so a bad `src` is EFAULT, not UB.
pub fn copy(fd: BorrowedFd<'_>, arg: &mut UffdioCopy) -> Result<(), i32> {
    ioctl_with(fd, UFFDIO_COPY, arg)
}

/// UFFDIO_MOVE.
pub fn move_pages(fd: BorrowedFd<'_>, arg: &mut UffdioMove) -> Result<(), i32> {
    ioctl_with(fd, UFFDIO_MOVE, arg)
}

/// UFFDIO_WRITEPROTECT.
pub fn writeprotect(fd: BorrowedFd<'_>, arg: &mut UffdioWriteprotect) -> Result<(), i32> {
    ioctl_with(fd, UFFDIO_WRITEPROTECT, arg)
}

/// The three range operations that share `UffdioRangeOp`'s layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOp {
    Zeropage,
    Continue,
    Poison,
}

/// UFFDIO_ZEROPAGE, UFFDIO_CONTINUE or UFFDIO_POISON.
pub fn range_op(fd: BorrowedFd<'_>, op: RangeOp, arg: &mut UffdioRangeOp) -> Result<(), i32> {
    let request = match op {
        RangeOp::Zeropage => UFFDIO_ZEROPAGE,
        RangeOp::Continue => UFFDIO_CONTINUE,
        RangeOp::Poison => UFFDIO_POISON,
    };
    ioctl_with(fd, request, arg)
}
