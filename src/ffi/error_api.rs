// SPDX-License-Identifier: MIT OR Apache-2.0
//! Error texts.

use super::boundary::last_error_ptr;
use std::ffi::CStr;

fn errno_text(errno: i32) -> &'static CStr {
    match errno {
        0 => c"Success",
        libc::EPERM => c"Operation not permitted",
        libc::ENOENT => c"No such file or directory (no registered mapping there)",
        libc::ESRCH => c"No such process (the process owning the memory exited)",
        libc::EINTR => c"Interrupted system call",
        libc::EIO => c"Input/output error",
        libc::EBADF => c"Bad file descriptor",
        libc::EAGAIN => {
            c"Resource temporarily unavailable (an event is pending: read events, then retry)"
        }
        libc::ENOMEM => {
            c"Cannot allocate memory (or nothing mapped at the address given to libuffd_page_size)"
        }
        libc::EACCES => c"Permission denied",
        libc::EFAULT => c"Bad address",
        libc::EBUSY => c"Device or resource busy",
        libc::EEXIST => c"File exists (the range is already populated: wake the waiter)",
        libc::ENODEV => c"No such device",
        libc::EINVAL => c"Invalid argument",
        libc::EMFILE => c"Too many open files",
        libc::ENOSPC => c"No space left on device",
        libc::ENOSYS => c"Function not implemented",
        libc::EOPNOTSUPP => c"Operation not supported (a required userfaultfd feature is missing)",
        libc::E2BIG => {
            c"Argument list too long (options struct sets fields this libuffd does not know)"
        }
        libc::EPROTO => c"Protocol error",
        libc::ETIMEDOUT => c"Connection timed out",
        libc::ENOTRECOVERABLE => c"State not recoverable (internal libuffd error)",
        _ => c"Unknown error",
    }
}

/// A static description of an error code. Accepts -errno as the
/// functions return it, or a positive errno.
///
/// Thread safety: may be called from any thread.
///
/// Returns: a static, NUL-terminated string; never NULL.
#[no_mangle]
pub extern "C" fn libuffd_strerror(err: i32) -> *const libc::c_char {
    err.checked_abs()
        .map_or(c"Unknown error", errno_text)
        .as_ptr()
}

/// The detail of the calling thread's most recent libuffd failure: the
/// function, the operation, the address range and the kernel's answer,
/// with the usual cause ("libuffd_copy: UFFDIO_COPY [0x7f..., +0x1000): EEXIST:
/// File exists (the range is already populated ...)").
///
/// For a refused registration or resolving operation the text also says
/// which argument or mapping the kernel objected to ("nothing is mapped
/// in [...)", "not aligned to the 2048 KiB pages of the hugetlb mapping
/// [...)", "length is 0", ...). That diagnosis is worked out here, not
/// when the operation failed (a failure costs only the ioctl), from the
/// arguments and from this process's mappings as they are at this call.
///
/// Thread safety: the text is per thread.
///
/// Returns: a NUL-terminated string valid until the thread's next call to
/// libuffd_last_error(); "no error" if nothing failed yet. Never NULL.
#[no_mangle]
pub extern "C" fn libuffd_last_error() -> *const libc::c_char {
    std::panic::catch_unwind(last_error_ptr).unwrap_or(c"internal error".as_ptr())
}
