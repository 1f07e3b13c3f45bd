// SPDX-License-Identifier: MIT OR Apache-2.0
//! Raw kernel interface: the userfaultfd uAPI as Rust constants and
//! `repr(C)` structs, and the system calls that use them.
//!
//! This is one of the two modules allowed to contain `unsafe` (the other is
//! `ffi`). Everything here is a thin, typed wrapper: each function takes a
//! struct whose layout matches the ioctl it issues, so callers above this
//! layer cannot pair a request number with the wrong argument type.
#![allow(unsafe_code)]

pub mod arch;
pub mod cancel;
pub mod dupfd;
pub mod evict;
pub mod fdinfo;
pub mod ioctl;
pub mod mem;
pub mod open;
pub mod pagemap;
pub mod procmap;
pub mod read;
pub mod signals;
pub mod socket;
pub mod uapi;
pub mod wait;

/// The calling thread's current `errno`.
pub fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The system's base page size, read once.
pub fn base_page_size() -> u64 {
    static PAGE: once_cell::sync::OnceCell<u64> = once_cell::sync::OnceCell::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no memory-safety preconditions.
        let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if v > 0 {
            v as u64
        } else {
            4096
        }
    })
}
