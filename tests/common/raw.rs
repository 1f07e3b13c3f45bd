// SPDX-License-Identifier: MIT OR Apache-2.0
//! The raw kernel, for tests that compare libuffd with it: the handful of
//! userfaultfd ioctls and the fdinfo text those tests issue or read, made
//! here with libc and nothing of libuffd (whose kernel layer is private).
//! An oracle independent of the library: a wrong request number or struct
//! in libuffd's own uAPI table could not hide behind the same table here.

use std::os::fd::{AsRawFd, BorrowedFd};

/// `UFFD_API`.
pub const UFFD_API: u64 = 0xAA;

/// `UFFD_USER_MODE_ONLY`, a userfaultfd(2) flag.
pub const UFFD_USER_MODE_ONLY: i32 = 1;

/// `struct uffdio_api`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UffdioApi {
    pub api: u64,
    pub features: u64,
    pub ioctls: u64,
}

/// `struct uffdio_range`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UffdioRange {
    pub start: u64,
    pub len: u64,
}

/// `struct uffdio_register`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UffdioRegister {
    pub range: UffdioRange,
    pub mode: u64,
    pub ioctls: u64,
}

/// `struct uffdio_writeprotect`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UffdioWriteprotect {
    pub range: UffdioRange,
    pub mode: u64,
}

/// `_IOWR(0xAA, nr, T)` / `_IOR(0xAA, nr, T)` (asm-generic encoding).
const fn ioc<T>(read_write: bool, nr: u64) -> u64 {
    let dir: u64 = if read_write { 3 } else { 2 };
    (dir << 30) | ((std::mem::size_of::<T>() as u64) << 16) | (0xAA << 8) | nr
}

/// One ioctl; the errno on failure.
fn ioctl<T>(fd: BorrowedFd<'_>, req: u64, arg: &mut T) -> Result<(), i32> {
    // SAFETY: `arg` is the repr(C) struct `req` is defined with, borrowed
    // mutably for the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg as *mut T) };
    if rc < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap())
    } else {
        Ok(())
    }
}

/// UFFDIO_API.
pub fn api(fd: BorrowedFd<'_>, arg: &mut UffdioApi) -> Result<(), i32> {
    ioctl(fd, ioc::<UffdioApi>(true, 0x3F), arg)
}

/// UFFDIO_REGISTER.
pub fn register(fd: BorrowedFd<'_>, arg: &mut UffdioRegister) -> Result<(), i32> {
    ioctl(fd, ioc::<UffdioRegister>(true, 0x00), arg)
}

/// UFFDIO_UNREGISTER.
pub fn unregister(fd: BorrowedFd<'_>, arg: &mut UffdioRange) -> Result<(), i32> {
    ioctl(fd, ioc::<UffdioRange>(false, 0x01), arg)
}

/// UFFDIO_WRITEPROTECT.
pub fn writeprotect(fd: BorrowedFd<'_>, arg: &mut UffdioWriteprotect) -> Result<(), i32> {
    ioctl(fd, ioc::<UffdioWriteprotect>(true, 0x06), arg)
}

/// What `/proc/self/fdinfo/<fd>` says of a userfaultfd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fdinfo {
    /// `ctx->features`, with the kernel's INITIALIZED bit (1 << 31).
    pub features: u64,
    /// Fault messages queued, unread.
    pub pending: u64,
    /// Faults waiting: queued plus read but not yet woken.
    pub total: u64,
}

/// The fdinfo of `fd`; `None` when it is not a userfaultfd's.
pub fn fdinfo(fd: i32) -> Option<Fdinfo> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .unwrap_or_else(|e| panic!("fdinfo of fd {fd}: {e}"));
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .map(str::trim)
    };
    let api = field("API")?;
    let features = u64::from_str_radix(api.split(':').nth(1)?, 16).ok()?;
    Some(Fdinfo {
        features,
        pending: field("pending")?.parse().ok()?,
        total: field("total")?.parse().ok()?,
    })
}
