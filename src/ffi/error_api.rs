// SPDX-License-Identifier: MIT OR Apache-2.0
//! Error texts.

use super::boundary::last_error_ptr;
use crate::uffd::errno_text;

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
