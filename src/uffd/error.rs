// SPDX-License-Identifier: MIT OR Apache-2.0
//! The one error type of libuffd. Every variant maps to exactly one errno
//! (`Error::errno`), which is what the C ABI returns negated; `Display`
//! gives the readable detail behind `libuffd_last_error()`.
//!
//! Kernel errors carry only plain values (no `String`): the arguments of
//! the refused call, from which `Display` works out why the kernel refused
//! (`diagnose`) only when the text is asked for. So the paths that meet
//! kernel errors routinely (EEXIST, EAGAIN, ENOENT in the monitor's reader)
//! never allocate or read /proc.

use super::features::{feature_names, Features};
use std::fmt;

/// The rest of a refused call's arguments (besides op, address and
/// length), kept to explain the refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// COPY's and MOVE's source address.
    pub src: Option<u64>,
    /// The mode bits as given.
    pub mode: u64,
    /// Whether the memory is known to be this process's (a handle from
    /// `Uffd::open`); otherwise this process's mappings are described
    /// with that caveat.
    pub own_memory: bool,
}

/// The userfaultfd operation an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// UFFDIO_API, the handshake.
    Api,
    /// UFFDIO_REGISTER.
    Register,
    /// UFFDIO_UNREGISTER.
    Unregister,
    /// UFFDIO_WAKE.
    Wake,
    /// UFFDIO_COPY.
    Copy,
    /// UFFDIO_ZEROPAGE.
    Zeropage,
    /// UFFDIO_WRITEPROTECT.
    Writeprotect,
    /// UFFDIO_CONTINUE.
    Continue,
    /// UFFDIO_POISON.
    Poison,
    /// UFFDIO_MOVE.
    Move,
    /// read(2) of messages.
    Read,
    /// poll(2) for messages.
    Poll,
    /// Adopting a descriptor made elsewhere.
    Adopt,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Op {
    /// The kernel's name for the operation.
    pub fn name(self) -> &'static str {
        match self {
            Op::Api => "UFFDIO_API",
            Op::Register => "UFFDIO_REGISTER",
            Op::Unregister => "UFFDIO_UNREGISTER",
            Op::Wake => "UFFDIO_WAKE",
            Op::Copy => "UFFDIO_COPY",
            Op::Zeropage => "UFFDIO_ZEROPAGE",
            Op::Writeprotect => "UFFDIO_WRITEPROTECT",
            Op::Continue => "UFFDIO_CONTINUE",
            Op::Poison => "UFFDIO_POISON",
            Op::Move => "UFFDIO_MOVE",
            Op::Read => "read",
            Op::Poll => "poll",
            Op::Adopt => "adopt fd",
        }
    }
}

/// Every failure libuffd reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An argument was rejected before the kernel was asked (never for
    /// an argument of a userfaultfd ioctl: the kernel judges those).
    #[error("{0}")]
    InvalidArgument(String),

    /// The kernel refused an operation on a range. `errno` is exactly the
    /// ioctl's. With `call`, the text carries libuffd's diagnosis of why
    /// (zero length, misalignment, what is mapped there, ...; see
    /// `detail`), made when the text is formatted; otherwise, or when
    /// nothing stands out, a generic hint.
    #[error("{op} [{addr:#x}, +{len:#x}): {}{}", strerror(*errno), Why(*op, *errno, *addr, *len, *call))]
    Kernel {
        /// The operation refused.
        op: Op,
        /// The ioctl's errno.
        errno: i32,
        /// The start of the (destination) range.
        addr: u64,
        /// Its length.
        len: u64,
        /// The rest of the arguments, to explain the refusal.
        call: Option<Call>,
    },

    /// A system call without a range failed.
    #[error("{op}: {}{}", strerror(*errno), if detail.is_empty() { String::new() } else { format!(" ({detail})") })]
    Os {
        /// The call that failed.
        op: &'static str,
        /// Its errno.
        errno: i32,
        /// What libuffd knows of the cause (may be empty).
        detail: String,
    },

    /// Features the caller required are not offered by this kernel.
    #[error("required userfaultfd features missing from this kernel: {} (mask {:#x}; kernel offers {:#x})", feature_names(missing.bits()), missing.bits(), offered.bits())]
    MissingFeatures {
        /// The required features the kernel lacks.
        missing: Features,
        /// Every feature the kernel offers.
        offered: Features,
    },

    /// No way of creating a userfaultfd worked; `attempts` names each path
    /// tried and why it failed.
    #[error("could not create a userfaultfd: {attempts}")]
    Open {
        /// The errno of the most telling attempt.
        errno: i32,
        /// Each path tried and why it failed.
        attempts: String,
    },

    /// A Rust panic was caught at the C boundary, or the object was
    /// poisoned by an earlier one.
    #[error("internal error (libuffd bug): {0}")]
    Internal(String),
}

/// Shorthand for results in this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The errno this error stands for (positive).
    pub fn errno(&self) -> i32 {
        match self {
            Error::InvalidArgument(_) => libc::EINVAL,
            Error::Kernel { errno, .. } | Error::Os { errno, .. } | Error::Open { errno, .. } => {
                *errno
            }
            Error::MissingFeatures { .. } => libc::EOPNOTSUPP,
            Error::Internal(_) => libc::ENOTRECOVERABLE,
        }
    }

    /// True when the kernel said the destination was already populated:
    /// someone else resolved the fault. The waiter still needs a wake.
    pub fn is_exists(&self) -> bool {
        matches!(self, Error::Kernel { errno, .. } if *errno == libc::EEXIST)
    }

    /// True when the kernel refused because a non-cooperative event is
    /// queued but unread (retry after reading events).
    pub fn is_again(&self) -> bool {
        matches!(self, Error::Kernel { errno, .. } if *errno == libc::EAGAIN)
    }

    /// A kernel refusal without a diagnosis (the generic hint is shown).
    pub fn kernel(op: Op, errno: i32, addr: u64, len: u64) -> Error {
        Error::Kernel {
            op,
            errno,
            addr,
            len,
            call: None,
        }
    }

    /// libuffd's diagnosis of a kernel refusal: which argument or mapping
    /// the kernel objected to, when something stands out. Worked out now
    /// (it may read this process's mappings), as the text is.
    pub fn detail(&self) -> Option<String> {
        match *self {
            Error::Kernel {
                op,
                errno,
                addr,
                len,
                call: Some(call),
            } => super::diagnose::explain(op, errno, addr, len, call),
            _ => None,
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Error {
        Error::InvalidArgument(msg.into())
    }

    pub(crate) fn os(op: &'static str, errno: i32, detail: impl Into<String>) -> Error {
        Error::Os {
            op,
            errno,
            detail: detail.into(),
        }
    }
}

/// The C library's text for an errno, without allocation when possible.
pub(crate) fn strerror(errno: i32) -> StrError {
    StrError(errno)
}

/// Display adapter for an errno: "EEXIST: File exists".
pub(crate) struct StrError(pub i32);

impl fmt::Display for StrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = errno_name(self.0);
        let text = std::io::Error::from_raw_os_error(self.0);
        // io::Error's Display appends " (os error N)"; keep only the text.
        let text = text.to_string();
        let text = text.split(" (os error").next().unwrap_or("");
        write!(f, "{name}: {text}")
    }
}

/// Every errno libuffd returns or explains, declared once: its symbolic
/// name (in `Error`'s text) and the static text `libuffd_strerror()`
/// gives C callers (the C library's text, plus what it usually means
/// here). Both lookups below are derived from this one table.
macro_rules! errno_table {
    ($($errno:ident => $text:literal,)*) => {
        const ERRNOS: &[(i32, &str, &std::ffi::CStr)] = &[
            (0, "OK", c"Success"),
            $((libc::$errno, stringify!($errno), $text),)*
        ];
    };
}

errno_table! {
    EPERM => c"Operation not permitted",
    ENOENT => c"No such file or directory (no registered mapping there)",
    ESRCH => c"No such process (the process owning the memory exited)",
    EINTR => c"Interrupted system call",
    EIO => c"Input/output error",
    EBADF => c"Bad file descriptor",
    EAGAIN => c"Resource temporarily unavailable (an event is pending: read events, then retry)",
    ENOMEM => c"Cannot allocate memory (or nothing mapped at the address given to libuffd_page_size)",
    EACCES => c"Permission denied",
    EFAULT => c"Bad address",
    EBUSY => c"Device or resource busy",
    EEXIST => c"File exists (the range is already populated: wake the waiter)",
    ENODEV => c"No such device",
    EINVAL => c"Invalid argument",
    ENFILE => c"Too many open files in system",
    EMFILE => c"Too many open files",
    ENOTTY => c"Inappropriate ioctl for device",
    ENOSPC => c"No space left on device",
    ERANGE => c"Numerical result out of range",
    ENOSYS => c"Function not implemented",
    EOPNOTSUPP => c"Operation not supported (a required userfaultfd feature is missing)",
    E2BIG => c"Argument list too long (options struct sets fields this libuffd does not know)",
    EPROTO => c"Protocol error",
    EOVERFLOW => c"Value too large for defined data type",
    ETIMEDOUT => c"Connection timed out",
    ECANCELED => c"Operation canceled",
    ENOTRECOVERABLE => c"State not recoverable (internal libuffd error)",
}

/// The symbolic name of an errno libuffd produces ("E?" for others).
pub(crate) fn errno_name(errno: i32) -> &'static str {
    ERRNOS
        .iter()
        .find(|e| e.0 == errno && errno != 0)
        .map_or("E?", |e| e.1)
}

/// The static text of an errno for C callers ("Unknown error" for
/// others).
pub(crate) fn errno_text(errno: i32) -> &'static std::ffi::CStr {
    ERRNOS
        .iter()
        .find(|e| e.0 == errno)
        .map_or(c"Unknown error", |e| e.2)
}

/// The explanation after a kernel errno: the diagnosis, or the hint.
struct Why(Op, i32, u64, u64, Option<Call>);

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Why(op, errno, addr, len, call) = *self;
        match call.and_then(|c| super::diagnose::explain(op, errno, addr, len, c)) {
            Some(d) => write!(f, ": {d}"),
            None => write!(f, " ({})", hint(op, errno)),
        }
    }
}

/// What an errno usually means for a given userfaultfd operation.
fn hint(op: Op, errno: i32) -> &'static str {
    match (op, errno) {
        (_, libc::EEXIST) => "the range is already populated: another thread or an earlier call resolved it; wake the waiter",
        (_, libc::EAGAIN) => "a non-cooperative event (fork, mremap, munmap, madvise) is queued but unread, which the kernel checks before the arguments: read events, then retry",
        (_, libc::ESRCH) => "the process owning the registered memory has exited",
        (Op::Register, libc::EBUSY) => "part of the range is registered with another userfaultfd",
        (Op::Register, libc::EPERM) => "the mapping cannot be written (shared mapping of a file opened read-only, or a write-sealed memfd)",
        (Op::Register, libc::EINVAL) => "mode 0 or unknown mode bits, a range that is empty, misaligned, wrapping or outside the address space, nothing mapped in the range, a hugetlb range not aligned to its huge pages, or a mode this memory does not support (MINOR needs shmem or hugetlb, WP on shmem/hugetlb needs WP_HUGETLBFS_SHMEM)",
        (Op::Unregister, libc::EINVAL) => "a range that is empty, misaligned, wrapping or outside the address space, nothing mapped in the range, a hugetlb range not aligned to its huge pages, or part of the range registered with another userfaultfd",
        (Op::Register | Op::Unregister, libc::ENOMEM) => "the process owning the memory is exiting",
        (Op::Wake, libc::EINVAL) => "a range that is empty, misaligned, wrapping or outside the address space",
        (Op::Writeprotect, libc::EINVAL) => "a range that is empty, misaligned, wrapping or outside the address space, unknown mode bits, or MODE_WP together with MODE_DONTWAKE",
        (Op::Writeprotect, libc::ENOENT) => "part of the range is not registered with MODE_WP on this userfaultfd",
        (Op::Move, libc::ENOENT) => "a source page is missing (use ALLOW_SRC_HOLES), or nothing is mapped at the destination",
        (Op::Move, libc::EBUSY) => "a source page is shared (after fork or KSM) or pinned",
        (Op::Move, libc::EINVAL) => "a range that is empty, misaligned, wrapping or outside the address space, unknown mode bits, or not anonymous private memory at both ends, in this process, with equal protections, and a destination registered with this userfaultfd",
        (_, libc::ENOENT) => "no mapping registered with this userfaultfd at the destination (unmapped, unregistered, or the range crosses its end)",
        (Op::Copy, libc::EFAULT) => "the source buffer is not readable, or the destination lies beyond the end of the shmem file",
        (Op::Continue, libc::EFAULT) => "no page-cache page exists at this offset to map",
        (Op::Zeropage, libc::EINVAL) => "a range that is empty, misaligned, wrapping or outside the address space, unknown mode bits, or a hugetlb range (ZEROPAGE does not support hugetlb)",
        (Op::Continue, libc::EINVAL) => "a range that is empty, misaligned, wrapping or outside the address space, unknown mode bits, a mode the registration does not allow (CONTINUE_MODE_WP needs MODE_WP), or memory that is not shmem/hugetlb",
        (_, libc::EINVAL) => "a range that is empty, misaligned, wrapping or outside the address space (hugetlb needs huge-page alignment), unknown mode bits, a mode the registration does not allow (MODE_WP needs a MODE_WP registration), or the operation is not supported on this memory",
        (_, libc::EPERM) => "permission denied",
        (_, libc::ENOMEM) => "out of memory",
        (_, libc::EINTR) => "interrupted by a signal",
        _ => "see ioctl_userfaultfd(2)",
    }
}
