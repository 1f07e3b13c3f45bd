// SPDX-License-Identifier: MIT OR Apache-2.0
//! Registration and every resolving operation, with the kernel's result
//! field decoded into one `Progress` type.
//!
//! Every operation asks the kernel first, with the caller's arguments as
//! given: the errno is always the ioctl's own, in the kernel's order of
//! checks (an unread event's EAGAIN before a zero length's EINVAL, an
//! unmapped range's EINVAL, ...). Only after a refusal does libuffd look
//! at the arguments and the memory to explain it (`diagnose`); that text
//! goes into the error's `Display`, never into the errno. Nothing is
//! checked or looked up on the success path, and a failure keeps only the
//! arguments: the explanation is worked out when the text is asked for.
//!
//! The kernel reports an operation's outcome three ways: the ioctl returns
//! 0 and the result field equals the length (complete); it fails with
//! EAGAIN and the field holds a positive byte count (partial: continue at
//! `start + done`); or the field holds `-errno`. ESRCH (the target process
//! exited) and the argument checks come back without the field written.

use super::error::{Call, Error, Op, Result};
use super::features::{Ioctls, RegisterMode};
use super::handle::Uffd;
use crate::sys::ioctl::{self, RangeOp};
use crate::sys::uapi::*;

/// One refused call's arguments.
struct Refused {
    op: Op,
    start: u64,
    len: u64,
    src: Option<u64>,
    mode: u64,
}

/// How far an operation got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes done, from the start of the range.
    pub done: u64,
    /// Bytes asked for.
    pub len: u64,
}

impl Progress {
    /// True when the whole range was done.
    pub fn is_complete(&self) -> bool {
        self.done == self.len
    }
}

/// Decode the kernel's answer for a fill or move operation: the errno of
/// a failure, or the progress. Failures are explained by `explain`.
fn decode(
    rc: std::result::Result<(), i32>,
    field: i64,
    len: u64,
    explain: impl FnOnce(i32) -> Error,
) -> Result<Progress> {
    match rc {
        Ok(()) => Ok(Progress { done: len, len }),
        Err(libc::EAGAIN) if field > 0 => Ok(Progress {
            done: (field as u64).min(len),
            len,
        }),
        Err(e) => {
            // The result field, when the kernel wrote it, names the cause
            // (the kernel returns the same value it writes there).
            let errno = if field < 0 { (-field) as i32 } else { e };
            Err(explain(errno))
        }
    }
}

impl Uffd {
    /// The error for the kernel's refusal (plain values: explained only
    /// when displayed).
    fn refused(&self, call: Refused, errno: i32) -> Error {
        Error::Kernel {
            op: call.op,
            errno,
            addr: call.start,
            len: call.len,
            call: Some(Call {
                src: call.src,
                mode: call.mode,
                own_memory: self.serves_this_process(),
            }),
        }
    }

    /// UFFDIO_REGISTER `[start, start+len)` with `mode`; returns the ioctls
    /// the kernel allows on that range. Costs the ioctl: the range and the
    /// mappings are looked at only when the kernel refuses, to explain why.
    pub fn register(&self, start: u64, len: u64, mode: RegisterMode) -> Result<Ioctls> {
        let mut arg = UffdioRegister {
            range: UffdioRange { start, len },
            mode: mode.bits(),
            ioctls: 0,
        };
        match ioctl::register(self.fd(), &mut arg) {
            Ok(()) => Ok(Ioctls::from_bits_retain(arg.ioctls)),
            Err(e) => Err(self.refused(
                Refused {
                    op: Op::Register,
                    start,
                    len,
                    src: None,
                    mode: mode.bits(),
                },
                e,
            )),
        }
    }

    /// UFFDIO_UNREGISTER `[start, start+len)`. Wakes pending MISSING faults.
    pub fn unregister(&self, start: u64, len: u64) -> Result<()> {
        let mut arg = UffdioRange { start, len };
        ioctl::unregister(self.fd(), &mut arg).map_err(|e| {
            self.refused(
                Refused {
                    op: Op::Unregister,
                    start,
                    len,
                    src: None,
                    mode: 0,
                },
                e,
            )
        })
    }

    /// UFFDIO_WAKE: wake threads blocked on faults in the range.
    pub fn wake(&self, start: u64, len: u64) -> Result<()> {
        let mut arg = UffdioRange { start, len };
        ioctl::wake(self.fd(), &mut arg).map_err(|e| {
            self.refused(
                Refused {
                    op: Op::Wake,
                    start,
                    len,
                    src: None,
                    mode: 0,
                },
                e,
            )
        })
    }

    /// UFFDIO_COPY `len` bytes read from address `src` of this process to
    /// `dst` (in the memory this uffd serves). Modes: DONTWAKE, WP.
    pub fn copy(&self, dst: u64, src: u64, len: u64, mode: u64) -> Result<Progress> {
        let mut arg = UffdioCopy {
            dst,
            src,
            len,
            mode,
            copy: 0,
        };
        let rc = ioctl::copy(self.fd(), &mut arg);
        decode(rc, arg.copy, len, |e| {
            self.refused(
                Refused {
                    op: Op::Copy,
                    start: dst,
                    len,
                    src: Some(src),
                    mode,
                },
                e,
            )
        })
    }

    /// UFFDIO_COPY from a slice: `src.len()` bytes to `dst`.
    pub fn copy_from_slice(&self, dst: u64, src: &[u8], mode: u64) -> Result<Progress> {
        self.copy(dst, src.as_ptr() as u64, src.len() as u64, mode)
    }

    fn range_op(&self, op: Op, kop: RangeOp, start: u64, len: u64, mode: u64) -> Result<Progress> {
        let mut arg = UffdioRangeOp {
            range: UffdioRange { start, len },
            mode,
            result: 0,
        };
        let rc = ioctl::range_op(self.fd(), kop, &mut arg);
        decode(rc, arg.result, len, |e| {
            self.refused(
                Refused {
                    op,
                    start,
                    len,
                    src: None,
                    mode,
                },
                e,
            )
        })
    }

    /// UFFDIO_ZEROPAGE: map zero pages. Mode: DONTWAKE. Not for hugetlb.
    pub fn zeropage(&self, start: u64, len: u64, mode: u64) -> Result<Progress> {
        self.range_op(Op::Zeropage, RangeOp::Zeropage, start, len, mode)
    }

    /// UFFDIO_CONTINUE: map the existing page-cache pages (MINOR faults).
    /// Modes: DONTWAKE, WP.
    pub fn continue_range(&self, start: u64, len: u64, mode: u64) -> Result<Progress> {
        self.range_op(Op::Continue, RangeOp::Continue, start, len, mode)
    }

    /// UFFDIO_POISON: mark the range poisoned (later accesses get SIGBUS).
    /// Mode: DONTWAKE.
    pub fn poison(&self, start: u64, len: u64, mode: u64) -> Result<Progress> {
        self.range_op(Op::Poison, RangeOp::Poison, start, len, mode)
    }

    /// UFFDIO_WRITEPROTECT: protect (mode WP) or unprotect and wake (mode
    /// 0, or DONTWAKE to skip the wake). The kernel refuses WP together
    /// with DONTWAKE (EINVAL).
    pub fn writeprotect(&self, start: u64, len: u64, mode: u64) -> Result<()> {
        let mut arg = UffdioWriteprotect {
            range: UffdioRange { start, len },
            mode,
        };
        ioctl::writeprotect(self.fd(), &mut arg).map_err(|e| {
            self.refused(
                Refused {
                    op: Op::Writeprotect,
                    start,
                    len,
                    src: None,
                    mode,
                },
                e,
            )
        })
    }

    /// UFFDIO_MOVE `len` bytes of pages from `src` to `dst` (both anonymous
    /// private memory of this process). Modes: DONTWAKE, ALLOW_SRC_HOLES.
    pub fn move_pages(&self, dst: u64, src: u64, len: u64, mode: u64) -> Result<Progress> {
        let mut arg = UffdioMove {
            dst,
            src,
            len,
            mode,
            moved: 0,
        };
        let rc = ioctl::move_pages(self.fd(), &mut arg);
        decode(rc, arg.moved, len, |e| {
            self.refused(
                Refused {
                    op: Op::Move,
                    start: dst,
                    len,
                    src: Some(src),
                    mode,
                },
                e,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_three_encodings() {
        let k = |e| Error::kernel(Op::Copy, e, 0x1000, 8192);
        let ok = decode(Ok(()), 8192, 8192, k).unwrap();
        assert!(ok.is_complete());
        let partial = decode(Err(libc::EAGAIN), 4096, 8192, k).unwrap();
        assert_eq!(partial.done, 4096);
        assert!(!partial.is_complete());
        let exists = decode(Err(libc::EEXIST), -(libc::EEXIST as i64), 4096, k).unwrap_err();
        assert!(exists.is_exists());
        // ESRCH leaves the field unwritten.
        let gone = decode(Err(libc::ESRCH), 0, 4096, k).unwrap_err();
        assert_eq!(gone.errno(), libc::ESRCH);
        let again = decode(Err(libc::EAGAIN), -(libc::EAGAIN as i64), 4096, k).unwrap_err();
        assert!(again.is_again());
    }
}
