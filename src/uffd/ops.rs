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
use super::features::{
    ContinueMode, CopyMode, Ioctls, MoveMode, PoisonMode, RegisterMode, WriteprotectMode,
    ZeropageMode,
};
use super::handle::Uffd;
use super::range::Range;
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

/// How far an operation got: the kernel may stop part-way (EAGAIN with
/// a byte count); continue at `start + done`.
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

    /// UFFDIO_REGISTER `range` with `mode`; returns the ioctls the kernel
    /// allows on that range. Costs the ioctl: the range and the mappings
    /// are looked at only when the kernel refuses, to explain why.
    ///
    /// Safe: registering changes no byte of memory. Later accesses to
    /// missing (or, with `WP`, protected) pages block until resolved.
    pub fn register(&self, range: Range, mode: RegisterMode) -> Result<Ioctls> {
        let Range { start, len } = range;
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

    /// UFFDIO_UNREGISTER `range`. Wakes pending MISSING faults.
    pub fn unregister(&self, range: Range) -> Result<()> {
        let Range { start, len } = range;
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

    /// UFFDIO_WAKE: wake threads blocked on faults in `range` (they fault
    /// again if their page is still missing).
    pub fn wake(&self, range: Range) -> Result<()> {
        let Range { start, len } = range;
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

    /// UFFDIO_COPY: fill the missing pages of `dst` (in the memory this
    /// uffd serves) with `dst.len` bytes read from `src` in this process.
    ///
    /// The source is only read, by the kernel (an unreadable source is
    /// EFAULT, not a crash).
    ///
    /// # Safety
    ///
    /// The kernel writes `dst` behind the compiler's back. No Rust
    /// reference or value may cover `dst`'s pages (a `Vec` whose pages
    /// were never touched reads as zeros to Rust, and a `&[u8]` promises
    /// its bytes do not change): `dst` must be memory reached only
    /// through raw pointers, or handed over to userfaultfd for good (an
    /// mmap made for it), or the memory of another process.
    ///
    /// ```compile_fail,E0133
    /// # use uffd::{CopyMode, Range, Uffd};
    /// fn fill(u: &Uffd, dst: Range, src: &[u8]) {
    ///     // error[E0133]: call to unsafe function
    ///     let _ = u.copy(dst, src.as_ptr(), CopyMode::empty());
    /// }
    /// ```
    #[allow(unsafe_code)] // the declaration only: the contract is the caller's
    pub unsafe fn copy(&self, dst: Range, src: *const u8, mode: CopyMode) -> Result<Progress> {
        self.fill_copy(dst, src as usize as u64, mode)
    }

    /// UFFDIO_COPY from a slice: `src.len()` bytes to `dst`.
    ///
    /// # Safety
    ///
    /// As for [`Uffd::copy`]: no Rust reference or value may cover the
    /// destination `[dst, dst + src.len())`.
    #[allow(unsafe_code)] // the declaration only: the contract is the caller's
    pub unsafe fn copy_from_slice(&self, dst: u64, src: &[u8], mode: CopyMode) -> Result<Progress> {
        self.fill_copy(
            Range::new(dst, src.len() as u64),
            src.as_ptr() as usize as u64,
            mode,
        )
    }

    fn range_op(&self, op: Op, kop: RangeOp, range: Range, mode: u64) -> Result<Progress> {
        let Range { start, len } = range;
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

    /// UFFDIO_ZEROPAGE: map zero pages at the missing pages of `range`.
    /// Not for hugetlb.
    ///
    /// # Safety
    ///
    /// As for [`Uffd::copy`]: no Rust reference or value may cover `range`.
    #[allow(unsafe_code)] // the declaration only: the contract is the caller's
    pub unsafe fn zeropage(&self, range: Range, mode: ZeropageMode) -> Result<Progress> {
        self.fill_zeropage(range, mode)
    }

    /// UFFDIO_CONTINUE: map the existing page-cache pages of `range`
    /// (MINOR faults).
    ///
    /// # Safety
    ///
    /// As for [`Uffd::copy`]: no Rust reference or value may cover `range`
    /// (the pages mapped are whatever the page cache holds).
    #[allow(unsafe_code)] // the declaration only: the contract is the caller's
    pub unsafe fn continue_range(&self, range: Range, mode: ContinueMode) -> Result<Progress> {
        self.fill_continue(range, mode)
    }

    /// UFFDIO_POISON: mark the missing pages of `range` poisoned: every
    /// later access raises SIGBUS.
    ///
    /// # Safety
    ///
    /// No Rust reference or value may cover `range`: a read of a poisoned
    /// page through one kills the process (and a `Vec` whose pages were
    /// never touched is such a value).
    ///
    /// ```compile_fail,E0133
    /// # use uffd::{PoisonMode, Range, Uffd};
    /// fn poison_vec(u: &Uffd, v: &Vec<u8>) {
    ///     // error[E0133]: call to unsafe function
    ///     let _ = u.poison(Range::of_ptr(v.as_ptr(), v.len()), PoisonMode::empty());
    /// }
    /// ```
    #[allow(unsafe_code)] // the declaration only: the contract is the caller's
    pub unsafe fn poison(&self, range: Range, mode: PoisonMode) -> Result<Progress> {
        self.fill_poison(range, mode)
    }

    /// UFFDIO_WRITEPROTECT: protect `range` (mode `WP`) or unprotect and
    /// wake (no mode, or `DONTWAKE` to skip the wake). The kernel refuses
    /// `WP | DONTWAKE` (EINVAL).
    ///
    /// Safe: protection changes no byte of memory. Protecting makes later
    /// writes block (or raise SIGBUS with [`Features::SIGBUS`](crate::Features::SIGBUS))
    /// until unprotected; unprotecting lets blocked writers write what
    /// they were writing anyway.
    pub fn writeprotect(&self, range: Range, mode: WriteprotectMode) -> Result<()> {
        let Range { start, len } = range;
        let mode = mode.bits();
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

    /// UFFDIO_MOVE: move the pages at `src` (`dst.len` bytes) to `dst`
    /// (both anonymous private memory of the process this uffd serves).
    ///
    /// # Safety
    ///
    /// The pages leave `src` (it then reads as zeros, or faults) and
    /// appear at `dst`. No Rust reference or value may cover either range
    /// (see [`Uffd::copy`]).
    ///
    /// ```compile_fail,E0133
    /// # use uffd::{MoveMode, Range, Uffd};
    /// fn steal(u: &Uffd, dst: Range, live: &[u8]) {
    ///     // error[E0133]: call to unsafe function
    ///     let _ = u.move_pages(dst, live.as_ptr() as u64, MoveMode::empty());
    /// }
    /// ```
    #[allow(unsafe_code)] // the declaration only: the contract is the caller's
    pub unsafe fn move_pages(&self, dst: Range, src: u64, mode: MoveMode) -> Result<Progress> {
        self.fill_move(dst, src, mode)
    }

    // The operations themselves, safe to call but crate-private. The
    // public `unsafe fn`s above delegate here; so does the monitor
    // (src/monitor), which has no `unsafe` and keeps the contract by
    // construction:
    // - it places, zeroes or poisons pages of the regions handed to it
    //   with `Monitor::add_region`, which takes a `HandedOver` range: the
    //   caller's promise (made with an `unsafe` constructor) that no Rust
    //   value lives there;
    // - it moves pages out of a source only on `Action::Move`, which takes
    //   a `HandedOver` range too;
    // - and only pages the kernel reports missing: COPY, ZEROPAGE,
    //   CONTINUE and POISON never touch a present page (EEXIST), so no
    //   access has observed them yet; the first one faulted and waits for
    //   exactly this call.
    // The one path without such a promise: a handler resolving a fault
    // outside every region (memory its owner registered on a uffd it gave
    // the monitor with `Monitor::add_uffd`); `FaultCtx::resolve` says so.

    /// UFFDIO_COPY (see [`Uffd::copy`]); `src` is an address of this
    /// process.
    pub(crate) fn fill_copy(&self, dst: Range, src: u64, mode: CopyMode) -> Result<Progress> {
        let Range { start, len } = dst;
        let mode = mode.bits();
        let mut arg = UffdioCopy {
            dst: start,
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
                    start,
                    len,
                    src: Some(src),
                    mode,
                },
                e,
            )
        })
    }

    /// UFFDIO_ZEROPAGE (see [`Uffd::zeropage`]).
    pub(crate) fn fill_zeropage(&self, range: Range, mode: ZeropageMode) -> Result<Progress> {
        self.range_op(Op::Zeropage, RangeOp::Zeropage, range, mode.bits())
    }

    /// UFFDIO_CONTINUE (see [`Uffd::continue_range`]).
    pub(crate) fn fill_continue(&self, range: Range, mode: ContinueMode) -> Result<Progress> {
        self.range_op(Op::Continue, RangeOp::Continue, range, mode.bits())
    }

    /// UFFDIO_POISON (see [`Uffd::poison`]).
    pub(crate) fn fill_poison(&self, range: Range, mode: PoisonMode) -> Result<Progress> {
        self.range_op(Op::Poison, RangeOp::Poison, range, mode.bits())
    }

    /// UFFDIO_MOVE (see [`Uffd::move_pages`]).
    pub(crate) fn fill_move(&self, dst: Range, src: u64, mode: MoveMode) -> Result<Progress> {
        let Range { start, len } = dst;
        let mode = mode.bits();
        let mut arg = UffdioMove {
            dst: start,
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
                    start,
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
