//! Registration and every resolving operation, with the kernel's result
//! field decoded into one `Progress` type.
//!
//! The kernel reports an operation's outcome three ways: the ioctl returns
//! 0 and the result field equals the length (complete); it fails with
//! EAGAIN and the field holds a positive byte count (partial: continue at
//! `start + done`); or the field holds `-errno`. ESRCH (the target process
//! exited) comes back without the field written at all.

use super::error::{Error, Op, Result};
use super::features::{modes, Ioctls, RegisterMode};
use super::handle::Uffd;
use super::mappings;
use super::range::{check_mode, check_range};
use crate::sys::ioctl::{self, RangeOp};
use crate::sys::uapi::*;

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

/// Decode the kernel's answer for a fill or move operation.
fn decode(
    op: Op,
    rc: std::result::Result<(), i32>,
    field: i64,
    addr: u64,
    len: u64,
) -> Result<Progress> {
    match rc {
        Ok(()) => Ok(Progress { done: len, len }),
        Err(libc::EAGAIN) if field > 0 => Ok(Progress {
            done: (field as u64).min(len),
            len,
        }),
        Err(e) => {
            // The result field, when the kernel wrote it, names the cause.
            let errno = if field < 0 { (-field) as i32 } else { e };
            Err(Error::Kernel {
                op,
                errno,
                addr,
                len,
            })
        }
    }
}

fn kernel_err(op: Op, errno: i32, addr: u64, len: u64) -> Error {
    Error::Kernel {
        op,
        errno,
        addr,
        len,
    }
}

impl Uffd {
    /// UFFDIO_REGISTER `[start, start+len)` with `mode`; returns the ioctls
    /// the kernel allows on that range. When the memory is this process's,
    /// the range is first checked against each mapping's real page size.
    pub fn register(&self, start: u64, len: u64, mode: RegisterMode) -> Result<Ioctls> {
        check_range("UFFDIO_REGISTER", "range", start, len)?;
        check_mode("UFFDIO_REGISTER", mode.bits(), modes::REGISTER)?;
        if mode.is_empty() {
            return Err(Error::invalid(
                "UFFDIO_REGISTER: mode is 0; give at least one of MISSING, WP, MINOR",
            ));
        }
        if self.serves_this_process() {
            mappings::check_alignment("UFFDIO_REGISTER", start, len)?;
        }
        let mut arg = UffdioRegister {
            range: UffdioRange { start, len },
            mode: mode.bits(),
            ioctls: 0,
        };
        ioctl::register(self.fd(), &mut arg)
            .map_err(|e| kernel_err(Op::Register, e, start, len))?;
        Ok(Ioctls::from_bits_retain(arg.ioctls))
    }

    /// UFFDIO_UNREGISTER `[start, start+len)`. Wakes pending MISSING faults.
    pub fn unregister(&self, start: u64, len: u64) -> Result<()> {
        check_range("UFFDIO_UNREGISTER", "range", start, len)?;
        if self.serves_this_process() {
            // Same checks as register: ENOMEM when nothing is mapped there
            // (the kernel would say EINVAL), huge-page alignment.
            mappings::check_alignment("UFFDIO_UNREGISTER", start, len)?;
        }
        let mut arg = UffdioRange { start, len };
        ioctl::unregister(self.fd(), &mut arg)
            .map_err(|e| kernel_err(Op::Unregister, e, start, len))
    }

    /// UFFDIO_WAKE: wake threads blocked on faults in the range.
    pub fn wake(&self, start: u64, len: u64) -> Result<()> {
        check_range("UFFDIO_WAKE", "range", start, len)?;
        let mut arg = UffdioRange { start, len };
        ioctl::wake(self.fd(), &mut arg).map_err(|e| kernel_err(Op::Wake, e, start, len))
    }

    /// UFFDIO_COPY `len` bytes read from address `src` of this process to
    /// `dst` (in the memory this uffd serves). Modes: DONTWAKE, WP.
    pub fn copy(&self, dst: u64, src: u64, len: u64, mode: u64) -> Result<Progress> {
        check_range("UFFDIO_COPY", "dst", dst, len)?;
        check_mode("UFFDIO_COPY", mode, modes::COPY)?;
        if src.checked_add(len).is_none() {
            return Err(Error::invalid(format!(
                "UFFDIO_COPY: src [{src:#x}, +{len:#x}) wraps past the end of the address space"
            )));
        }
        let mut arg = UffdioCopy {
            dst,
            src,
            len,
            mode,
            copy: 0,
        };
        let rc = ioctl::copy(self.fd(), &mut arg);
        decode(Op::Copy, rc, arg.copy, dst, len)
    }

    /// UFFDIO_COPY from a slice: `src.len()` bytes to `dst`.
    pub fn copy_from_slice(&self, dst: u64, src: &[u8], mode: u64) -> Result<Progress> {
        self.copy(dst, src.as_ptr() as u64, src.len() as u64, mode)
    }

    fn range_op(
        &self,
        op: Op,
        kop: RangeOp,
        allowed: u64,
        start: u64,
        len: u64,
        mode: u64,
    ) -> Result<Progress> {
        check_range(op.name(), "range", start, len)?;
        check_mode(op.name(), mode, allowed)?;
        let mut arg = UffdioRangeOp {
            range: UffdioRange { start, len },
            mode,
            result: 0,
        };
        let rc = ioctl::range_op(self.fd(), kop, &mut arg);
        decode(op, rc, arg.result, start, len)
    }

    /// UFFDIO_ZEROPAGE: map zero pages. Mode: DONTWAKE. Not for hugetlb.
    pub fn zeropage(&self, start: u64, len: u64, mode: u64) -> Result<Progress> {
        self.range_op(
            Op::Zeropage,
            RangeOp::Zeropage,
            modes::ZEROPAGE,
            start,
            len,
            mode,
        )
    }

    /// UFFDIO_CONTINUE: map the existing page-cache pages (MINOR faults).
    /// Modes: DONTWAKE, WP.
    pub fn continue_range(&self, start: u64, len: u64, mode: u64) -> Result<Progress> {
        self.range_op(
            Op::Continue,
            RangeOp::Continue,
            modes::CONTINUE,
            start,
            len,
            mode,
        )
    }

    /// UFFDIO_POISON: mark the range poisoned (later accesses get SIGBUS).
    /// Mode: DONTWAKE.
    pub fn poison(&self, start: u64, len: u64, mode: u64) -> Result<Progress> {
        self.range_op(Op::Poison, RangeOp::Poison, modes::POISON, start, len, mode)
    }

    /// UFFDIO_WRITEPROTECT: protect (mode WP) or unprotect and wake (mode
    /// 0, or DONTWAKE to skip the wake). WP together with DONTWAKE is
    /// refused, as the kernel does.
    pub fn writeprotect(&self, start: u64, len: u64, mode: u64) -> Result<()> {
        check_range("UFFDIO_WRITEPROTECT", "range", start, len)?;
        check_mode("UFFDIO_WRITEPROTECT", mode, modes::WRITEPROTECT)?;
        if mode == modes::WRITEPROTECT {
            return Err(Error::invalid(
                "UFFDIO_WRITEPROTECT: MODE_WP and MODE_DONTWAKE together make no sense (protecting never wakes)",
            ));
        }
        let mut arg = UffdioWriteprotect {
            range: UffdioRange { start, len },
            mode,
        };
        ioctl::writeprotect(self.fd(), &mut arg)
            .map_err(|e| kernel_err(Op::Writeprotect, e, start, len))
    }

    /// UFFDIO_MOVE `len` bytes of pages from `src` to `dst` (both anonymous
    /// private memory of this process). Modes: DONTWAKE, ALLOW_SRC_HOLES.
    pub fn move_pages(&self, dst: u64, src: u64, len: u64, mode: u64) -> Result<Progress> {
        check_range("UFFDIO_MOVE", "dst", dst, len)?;
        check_range("UFFDIO_MOVE", "src", src, len)?;
        check_mode("UFFDIO_MOVE", mode, modes::MOVE)?;
        let mut arg = UffdioMove {
            dst,
            src,
            len,
            mode,
            moved: 0,
        };
        let rc = ioctl::move_pages(self.fd(), &mut arg);
        decode(Op::Move, rc, arg.moved, dst, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_three_encodings() {
        let ok = decode(Op::Copy, Ok(()), 8192, 0x1000, 8192).unwrap();
        assert!(ok.is_complete());
        let partial = decode(Op::Copy, Err(libc::EAGAIN), 4096, 0x1000, 8192).unwrap();
        assert_eq!(partial.done, 4096);
        assert!(!partial.is_complete());
        let exists = decode(
            Op::Copy,
            Err(libc::EEXIST),
            -(libc::EEXIST as i64),
            0x1000,
            4096,
        )
        .unwrap_err();
        assert!(exists.is_exists());
        // ESRCH leaves the field unwritten.
        let gone = decode(Op::Copy, Err(libc::ESRCH), 0, 0x1000, 4096).unwrap_err();
        assert_eq!(gone.errno(), libc::ESRCH);
        let again =
            decode(Op::Copy, Err(libc::EAGAIN), -(libc::EAGAIN as i64), 0, 4096).unwrap_err();
        assert!(again.is_again());
    }
}
