// SPDX-License-Identifier: MIT OR Apache-2.0
//! Resolving one fault: the actions a callback or a page source can take,
//! and the race rules of docs/kernel-semantics.md §5 applied to each:
//! EEXIST means "already resolved" (wake the waiter), partial progress is
//! progress, EAGAIN means an event is pending (retry after it is read),
//! ENOENT means the range went away (wake: the thread refaults and gets
//! what the new layout gives), ESRCH means the process exited (retire).
//! Also serving a fault from a region's page source (`serve_source`, with
//! the `Scratch` staging memory and the zero page of `zero_source`), and
//! the per-thread current fault (`CurrentFault`) behind `Monitor::resolve`.

use super::region::Source;
use super::unpoisoned::RwOk;
use super::Inner;
use crate::sys::wait;
use crate::uffd::{
    ContinueMode, CopyMode, Error, Fault, HandedOver, MoveMode, PoisonMode, Range, Uffd,
    WriteprotectMode, ZeropageMode,
};
use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything needed to resolve a fault later, from any thread. Plain
/// data: copy it freely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultToken {
    /// Which of the monitor's userfaultfds the fault came from.
    pub uffd_id: u32,
    /// The faulting page (aligned to the region's page size).
    pub page: u64,
    /// The page size (4 KiB, or hugetlb's): the region's, or for a fault
    /// in no region the mapping's, as its owner maps it (the base page
    /// size when that cannot be learnt).
    pub page_size: u64,
}

/// An action that resolves a fault.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    /// Copy `page_size` bytes from this address of the calling process.
    Copy(u64),
    /// Map zeros.
    Zero,
    /// Map the page-cache page (MINOR faults).
    Continue,
    /// Remove write protection (WP faults).
    Unprotect,
    /// Poison: the thread gets SIGBUS.
    Poison,
    /// Move the page at the start of this range here (anonymous memory
    /// only): the pages leave it, so it is handed over too. It must cover
    /// the fault's page size (a shorter range is refused: EINVAL).
    Move(HandedOver),
    /// Wake without resolving: the thread faults again.
    Wake,
    /// Copy `len` bytes from `src` to the fault's page and the pages after
    /// it, with the kernel's mode bits: `CopyMode::WP` places them
    /// write-protected (the first write to each then faults: dirty
    /// tracking), `DONTWAKE` leaves the thread waiting. `len` is a whole
    /// number of the fault's pages, inside the fault's region (one page
    /// for a fault in no region): EINVAL otherwise.
    CopyRange {
        /// Where the bytes come from, in the calling process.
        src: u64,
        /// How many bytes, from the fault's page.
        len: u64,
        /// The kernel's mode bits.
        mode: CopyMode,
    },
    /// Map zeros over `len` bytes from the fault's page (as `CopyRange`).
    ZeroRange {
        /// How many bytes, from the fault's page.
        len: u64,
    },
    /// Map the page-cache pages over `len` bytes from the fault's page
    /// (MINOR faults), with the kernel's mode bits (`ContinueMode::WP`).
    ContinueRange {
        /// How many bytes, from the fault's page.
        len: u64,
        /// The kernel's mode bits.
        mode: ContinueMode,
    },
    /// Move the pages of `src` (anonymous private memory, handed over:
    /// they leave it) to the fault's page and the pages after it, with the
    /// kernel's mode bits (`MoveMode::DONTWAKE`, `ALLOW_SRC_HOLES`).
    /// `src`'s length is the length moved: a whole number of the fault's
    /// pages, inside the fault's region (as `CopyRange`), else EINVAL.
    MoveRange {
        /// The pages to move, and how many bytes.
        src: HandedOver,
        /// The kernel's mode bits.
        mode: MoveMode,
    },
}

/// How an action ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Placed this many bytes (the faulting page and maybe neighbours).
    Resolved(u64),
    /// Someone else had resolved it; the waiter was woken.
    AlreadyResolved,
    /// The range or the process is gone; nothing left to do.
    Gone,
}

/// Why an action did not end.
#[derive(Debug)]
pub enum Failed {
    /// An event is pending: retry once it has been read.
    Again,
    /// A real error: the error policy applies.
    Error(Error),
}

impl Failed {
    /// As the caller's error: EAGAIN for `Again`.
    pub(crate) fn into_error(self, t: FaultToken) -> Error {
        match self {
            Failed::Again => {
                Error::kernel(crate::uffd::Op::Copy, libc::EAGAIN, t.page, t.page_size)
            }
            Failed::Error(e) => e,
        }
    }
}

/// A fault being handled by a callback, with the means to resolve it.
pub struct FaultCtx<'a> {
    pub(crate) inner: &'a Inner,
    /// The fault as the kernel reported it.
    pub fault: Fault,
    /// How to resolve it later (`Verdict::Defer`).
    pub token: FaultToken,
    /// The region the fault is in: its start, the offset of the faulting
    /// page in the region's source, and the caller's tag; `None` for a
    /// fault outside every region.
    pub region: Option<RegionInfo>,
    pub(crate) resolved: Cell<bool>,
    pub(crate) again: Cell<bool>,
}

/// What a callback learns of the region a fault is in.
#[derive(Debug, Clone, Copy)]
pub struct RegionInfo {
    /// The region's first address.
    pub start: u64,
    /// Its length in bytes.
    pub len: u64,
    /// Offset of the faulting page in the region's source.
    pub source_offset: u64,
    /// The caller's tag (`RegionOptions::user_data`).
    pub user_data: u64,
}

impl FaultCtx<'_> {
    /// Resolve the fault with `action`: `Resolved`, `AlreadyResolved`
    /// (someone else had; the waiter was woken) or `Gone` (the range or
    /// process went away), or an error (`EAGAIN`: the monitor retries the
    /// fault after reading the pending event, calling the callback again).
    ///
    /// A fault in a region is in memory handed over with
    /// `Monitor::add_region`. A fault outside every region (`region` is
    /// `None`) is in memory its owner registered on the userfaultfd
    /// directly: filling it (every action but `Unprotect` and `Wake`)
    /// carries the contract of [`Uffd::copy`](crate::Uffd::copy), which
    /// the handler keeps: no Rust value may live in memory it fills.
    pub fn resolve(&self, action: Action) -> Result<Applied, Error> {
        let r = self.inner.apply_counted(self.token, action);
        match &r {
            Ok(_) => self.resolved.set(true),
            Err(Failed::Again) => self.again.set(true),
            Err(Failed::Error(_)) => {}
        }
        r.map_err(|f| f.into_error(self.token))
    }
}

/// The fault an `on_fault` callback is handling on this thread: which
/// monitor (the address of its shared state, alive while a callback runs),
/// which fault, and what `Monitor::resolve` did to it. Set by the engine
/// around each `on_fault` call (`CurrentFault`), so that a resolution
/// through the monitor (the C API has only the monitor and the fault) counts
/// as the callback's own, like `FaultCtx::resolve`, and is matched by
/// monitor as well as by fault: two monitors used from one thread do not
/// cross. Plain data in a `Cell`: no allocation on the reader.
#[derive(Clone, Copy)]
struct Current {
    monitor: usize,
    token: FaultToken,
    resolved: bool,
    again: bool,
}

thread_local! {
    static CURRENT: Cell<Option<Current>> = const { Cell::new(None) };
}

/// The engine's side of `Current`: set while `on_fault` runs, restoring
/// what was there before (a callback may drive another monitor).
pub(crate) struct CurrentFault {
    saved: Option<Current>,
}

impl CurrentFault {
    pub(crate) fn enter(inner: &Inner, token: FaultToken) -> CurrentFault {
        let now = Current {
            monitor: inner as *const Inner as usize,
            token,
            resolved: false,
            again: false,
        };
        CurrentFault {
            saved: CURRENT.with(|c| c.replace(Some(now))),
        }
    }

    /// Whether `Monitor::resolve` resolved the fault, and whether it met
    /// EAGAIN.
    pub(crate) fn outcome(&self) -> (bool, bool) {
        CURRENT
            .with(|c| c.get())
            .map_or((false, false), |c| (c.resolved, c.again))
    }
}

impl Drop for CurrentFault {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.saved));
    }
}

impl Inner {
    /// `Monitor::resolve`: the fault this thread's `on_fault` is handling
    /// is resolved as through its `FaultCtx`; any other fault as by
    /// `Monitor::complete`.
    pub(crate) fn resolve_from_caller(
        &self,
        token: FaultToken,
        action: Action,
    ) -> Result<Applied, Failed> {
        let me = self as *const Inner as usize;
        let current = CURRENT
            .with(|c| c.get())
            .filter(|c| c.monitor == me && c.token == token);
        let Some(mut current) = current else {
            return self.complete(token, action);
        };
        let r = self.apply_counted(token, action);
        match &r {
            Ok(_) => current.resolved = true,
            Err(Failed::Again) => current.again = true,
            Err(Failed::Error(_)) => {}
        }
        CURRENT.with(|c| c.set(Some(current)));
        r
    }

    /// Apply `action` once and count what it did: a callback's own
    /// resolution (`FaultCtx::resolve`, `Monitor::resolve` from on_fault),
    /// whose EAGAIN the engine retries.
    fn apply_counted(&self, t: FaultToken, action: Action) -> Result<Applied, Failed> {
        let r = self.apply(t, action);
        if let Ok(a) = &r {
            self.count_applied(*a, t.page_size);
        }
        r
    }

    /// Complete a fault that is not the calling callback's own (deferred,
    /// or a token kept from earlier), from any thread: EAGAIN is retried
    /// for up to two seconds while the reader reads the pending event.
    pub(crate) fn complete(&self, t: FaultToken, action: Action) -> Result<Applied, Failed> {
        self.deferred_done(t);
        let a = self.apply_with_backoff(t, action, Duration::from_secs(2))?;
        self.count_applied(a, t.page_size);
        Ok(a)
    }
}

pub(crate) fn classify(
    inner: &Inner,
    uffd: &Uffd,
    id: u32,
    page: u64,
    ps: u64,
    r: Result<u64, Error>,
) -> Result<Applied, Failed> {
    match r {
        Ok(n) => Ok(Applied::Resolved(n)),
        Err(e) => match e.errno() {
            libc::EEXIST => {
                let _ = uffd.wake(Range::new(page, ps));
                Ok(Applied::AlreadyResolved)
            }
            libc::EAGAIN => Err(Failed::Again),
            libc::ENOENT => {
                let _ = uffd.wake(Range::new(page, ps));
                Ok(Applied::Gone)
            }
            libc::ESRCH => {
                inner.retire(id);
                Ok(Applied::Gone)
            }
            _ => Err(Failed::Error(e)),
        },
    }
}

impl Inner {
    /// The served uffd with this id, unless retired.
    pub(crate) fn uffd(&self, id: u32) -> Option<Arc<Uffd>> {
        let list = self.uffds.read_ok();
        list.get(id as usize)?.as_ref().map(|s| s.uffd.clone())
    }

    pub(crate) fn count_applied(&self, a: Applied, _ps: u64) {
        use super::stats::Stats;
        match a {
            Applied::Resolved(n) => {
                Stats::add(&self.stats.resolved, 1);
                Stats::add(&self.stats.bytes, n);
            }
            Applied::AlreadyResolved => Stats::add(&self.stats.eexist, 1),
            Applied::Gone => Stats::add(&self.stats.dropped, 1),
        }
    }

    /// Apply `action` to the token's page once.
    pub(crate) fn apply(&self, t: FaultToken, action: Action) -> Result<Applied, Failed> {
        let Some(uffd) = self.uffd(t.uffd_id) else {
            return Ok(Applied::Gone);
        };
        let (page, ps) = (t.page, t.page_size);
        let r = match action {
            Action::Copy(src) => uffd
                .fill_copy(Range::new(page, ps), src, CopyMode::empty())
                .map(|p| p.done),
            Action::Zero => self.zero(&uffd, page, ps, 1),
            Action::Continue => uffd
                .fill_continue(Range::new(page, ps), ContinueMode::empty())
                .map(|p| p.done),
            Action::Unprotect => uffd
                .writeprotect(Range::new(page, ps), WriteprotectMode::empty())
                .map(|()| ps),
            Action::Poison => uffd
                .fill_poison(Range::new(page, ps), PoisonMode::empty())
                .map(|p| p.done),
            Action::Move(src) if src.range().len < ps => Err(Error::invalid(format!(
                "move: the source range [{:#x}, +{:#x}) is shorter than the {ps}-byte page",
                src.range().start,
                src.range().len
            ))),
            Action::Move(src) => uffd
                .fill_move(Range::new(page, ps), src.range().start, MoveMode::empty())
                .map(|p| p.done),
            Action::Wake => uffd.wake(Range::new(page, ps)).map(|()| 0),
            Action::CopyRange { src, len, mode } => self
                .fault_range(t, len)
                .and_then(|r| uffd.fill_copy(r, src, mode))
                .map(|p| p.done),
            Action::ZeroRange { len } => self
                .fault_range(t, len)
                .and_then(|r| self.zero_pages(&uffd, page, ps, r.len / ps)),
            Action::ContinueRange { len, mode } => self
                .fault_range(t, len)
                .and_then(|r| uffd.fill_continue(r, mode))
                .map(|p| p.done),
            Action::MoveRange { src, mode } => self
                .fault_range(t, src.range().len)
                .and_then(|r| uffd.fill_move(r, src.range().start, mode))
                .map(|p| p.done),
        };
        classify(self, &uffd, t.uffd_id, page, ps, r)
    }

    /// `[page, page + len)` for a range action: whole pages of the fault's
    /// size, inside the fault's region (or just its page outside every
    /// region), else EINVAL.
    fn fault_range(&self, t: FaultToken, len: u64) -> Result<Range, Error> {
        let ps = t.page_size;
        if len == 0 || len % ps != 0 {
            return Err(Error::invalid(format!(
                "resolve: length {len:#x} is not a whole number of the fault's {ps}-byte pages"
            )));
        }
        let end = self
            .regions
            .read_ok()
            .find(t.uffd_id, t.page)
            .map_or(t.page + ps, |r| r.end());
        match t.page.checked_add(len) {
            Some(e) if e <= end => Ok(Range::new(t.page, len)),
            _ => Err(Error::invalid(format!(
                "resolve: [{:#x}, +{len:#x}) runs past the fault's region (it ends at {end:#x})",
                t.page
            ))),
        }
    }

    /// Poison the token's page without waking its waiters (the error
    /// policy wakes them once the failure is recorded).
    pub(crate) fn poison_quietly(&self, t: FaultToken) -> Result<Applied, Failed> {
        let Some(uffd) = self.uffd(t.uffd_id) else {
            return Ok(Applied::Gone);
        };
        let mode = PoisonMode::DONTWAKE;
        let r = uffd
            .fill_poison(Range::new(t.page, t.page_size), mode)
            .map(|p| p.done);
        classify(self, &uffd, t.uffd_id, t.page, t.page_size, r)
    }

    /// Apply `action`, retrying EAGAIN with a short backoff for up to
    /// `limit`: for threads other than the reader, which keeps reading
    /// the pending event meanwhile.
    pub(crate) fn apply_with_backoff(
        &self,
        t: FaultToken,
        action: Action,
        limit: Duration,
    ) -> Result<Applied, Failed> {
        let mut backoff = Backoff::new(limit);
        loop {
            match self.apply(t, action) {
                Err(Failed::Again) if backoff.pause() => {
                    super::stats::Stats::add(&self.stats.retried, 1);
                }
                other => return other,
            }
        }
    }

    /// Zero-fill `pages` pages at `page`: ZEROPAGE for base pages; hugetlb
    /// has no ZEROPAGE, so copy from a zeroed huge page instead.
    /// Zero-fill `pages` whole pages at `page`, hugetlb included (one copy
    /// of the zeroed huge page per page; the bytes placed before an error
    /// count, as the kernel's partial progress does).
    fn zero_pages(&self, uffd: &Uffd, page: u64, ps: u64, pages: u64) -> Result<u64, Error> {
        if ps == crate::sys::base_page_size() {
            return self.zero(uffd, page, ps, pages);
        }
        let mut done = 0;
        for i in 0..pages {
            match self.zero(uffd, page + i * ps, ps, 1) {
                Ok(n) => done += n,
                Err(e) if done > 0 && e.errno() == libc::EEXIST => break,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(done)
    }

    pub(crate) fn zero(&self, uffd: &Uffd, page: u64, ps: u64, pages: u64) -> Result<u64, Error> {
        if ps == crate::sys::base_page_size() {
            return uffd
                .fill_zeropage(Range::new(page, ps * pages), ZeropageMode::empty())
                .map(|p| p.done);
        }
        let zero = self.zero_source(ps)?;
        uffd.fill_copy(Range::new(page, ps), zero, CopyMode::empty())
            .map(|p| p.done)
    }

    /// `zero`, or with `wp` (a dirty-tracked region: ZEROPAGE cannot
    /// write-protect) COPYs of the zeroed buffer with MODE_WP, in chunks of
    /// its size (partial progress counts as the kernel's does).
    pub(crate) fn zero_placed(
        &self,
        uffd: &Uffd,
        page: u64,
        ps: u64,
        pages: u64,
        wp: bool,
    ) -> Result<u64, Error> {
        if !wp {
            return self.zero(uffd, page, ps, pages);
        }
        let zero = self.zero_source(ps)?;
        let room = self.zero_huge.get().map_or(ps, |m| m.len() as u64);
        let chunk = (room / ps).max(1) * ps;
        let (mut done, total) = (0u64, pages * ps);
        while done < total {
            let n = chunk.min(total - done);
            match uffd.fill_copy(Range::new(page + done, n), zero, CopyMode::WP) {
                Ok(p) if p.done == n => done += n,
                Ok(p) => return Ok(done + p.done),
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(done)
    }

    /// Address of a zeroed page of `ps` bytes (hugetlb zero-fill).
    pub(crate) fn zero_source(&self, ps: u64) -> Result<u64, Error> {
        let m = self.zero_huge.get_or_try_init(|| {
            wait::ScratchMap::new(ps.max(2 << 20) as usize)
                .map_err(|e| Error::os("mmap", e, "zero page"))
        })?;
        if (m.len() as u64) < ps {
            return Err(Error::invalid(format!(
                "page size {ps} exceeds the zero buffer"
            )));
        }
        Ok(m.addr())
    }

    /// Serve a missing-page fault from a region's source, placing the
    /// faulting page and up to `window - 1` following pages in one ioctl.
    ///
    /// ENOENT for a window of several pages does not say that the fault's
    /// range went away: the kernel refuses a range that is not wholly
    /// inside one registered mapping, and the region may have been split
    /// under the monitor (part of it unregistered, mprotected or remapped
    /// by hand: docs/kernel-semantics.md §5). The faulting page alone then
    /// decides. Before, the thread was woken as for a vanished range,
    /// faulted again, met the same window, and never got its page (a
    /// livelock the fuzzer found: 100,000 faults in two seconds).
    pub(crate) fn serve_source(
        &self,
        scratch: &mut Scratch,
        t: FaultToken,
        source: Source,
        source_offset: u64,
        window: u64,
        cm: CopyMode,
    ) -> Result<Applied, Failed> {
        let r = self.serve_window(scratch, t, source, source_offset, window, cm);
        if window > 1 && matches!(r, Ok(Applied::Gone)) && self.uffd(t.uffd_id).is_some() {
            return self.serve_window(scratch, t, source, source_offset, 1, cm);
        }
        r
    }

    /// Place `window` pages from the faulting one with mode `cm`
    /// (CopyMode::WP: write-protected, for a dirty-tracked region, see
    /// `Dirty::copy_mode`, or a budgeted one).
    pub(crate) fn serve_window(
        &self,
        scratch: &mut Scratch,
        t: FaultToken,
        source: Source,
        source_offset: u64,
        window: u64,
        cm: CopyMode,
    ) -> Result<Applied, Failed> {
        let Some(uffd) = self.uffd(t.uffd_id) else {
            return Ok(Applied::Gone);
        };
        let (page, ps) = (t.page, t.page_size);
        let wp = cm.contains(CopyMode::WP);
        let r = match source {
            Source::Zero => self.zero_placed(&uffd, page, ps, window, wp),
            Source::PageCache => uffd
                .fill_continue(
                    Range::new(page, ps * window),
                    if wp {
                        ContinueMode::WP
                    } else {
                        ContinueMode::empty()
                    },
                )
                .map(|p| p.done),
            Source::Buffer { addr, len } => {
                let avail = len.saturating_sub(source_offset);
                let full = (avail / ps).min(window);
                // A buffer that ends past the address space (bad input)
                // fails the fault instead of wrapping.
                let from = addr
                    .checked_add(source_offset)
                    .filter(|a| a.checked_add(full.max(1) * ps).is_some());
                if avail > 0 && from.is_none() {
                    Err(Error::os(
                        "page source",
                        libc::EOVERFLOW,
                        format!(
                            "buffer at {addr:#x} + offset {source_offset:#x} overflows the address space"
                        ),
                    ))
                } else if full > 0 {
                    uffd.fill_copy(Range::new(page, full * ps), from.unwrap_or(0), cm)
                        .map(|p| p.done)
                } else if avail == 0 {
                    // Past the buffer's end: zeros.
                    self.zero_placed(&uffd, page, ps, 1, wp)
                } else {
                    // The page straddles the buffer's end: stage it in
                    // scratch memory, padded with zeros.
                    match scratch.get(ps) {
                        Err(e) => Err(e),
                        Ok(buf) => {
                            return self.copy_partial(&uffd, t, from.unwrap_or(0), avail, buf, cm)
                        }
                    }
                }
            }
            Source::Fd {
                fd,
                offset,
                zero_past_eof,
            } => match scratch.get(ps * window) {
                Err(e) => Err(e),
                Ok(buf) => {
                    let cap = (buf.len() as u64 / ps).clamp(1, window);
                    return self.serve_fd(
                        &uffd,
                        t,
                        FdRead {
                            fd,
                            offset,
                            source_offset,
                            zero_past_eof,
                            mode: cm,
                        },
                        &mut buf[..(cap * ps) as usize],
                    );
                }
            },
            Source::Callback => Err(Error::invalid(
                "region has no page source: the callback must resolve it",
            )),
            Source::Remote { .. } => Err(Error::invalid(
                "a remote region's pages come from its connection, not from here",
            )),
        };
        classify(self, &uffd, t.uffd_id, page, ps, r)
    }

    /// Serve a fault (and up to `buf.len()` bytes of neighbours) from an
    /// fd source. pread(2) is repeated on short reads and EINTR until the
    /// buffer is full, end-of-file or an error: whole pages read are
    /// placed; a faulting page that could not be read whole fails (the
    /// error policy applies), unless past end-of-file with
    /// `zero_past_eof`, where the rest is zeros. No data is made up.
    fn serve_fd(
        &self,
        uffd: &Uffd,
        t: FaultToken,
        src: FdRead,
        buf: &mut [u8],
    ) -> Result<Applied, Failed> {
        let (page, ps) = (t.page, t.page_size);
        let want = buf.len() as u64;
        // The file offset of the faulting page, checked: a wrap would read
        // the wrong bytes (offset 0) and place them as the page.
        let Some(off) = src
            .offset
            .checked_add(src.source_offset)
            .filter(|o| o.checked_add(want).is_some_and(|e| e <= i64::MAX as u64))
        else {
            let e = Error::os(
                "pread",
                libc::EOVERFLOW,
                format!(
                    "page source fd {}: offset {:#x} + {:#x} (+ {want:#x} bytes) overflows a file offset, for the page at {page:#x}",
                    src.fd, src.offset, src.source_offset
                ),
            );
            return Err(Failed::Error(e));
        };
        let fd = crate::sys::wait::borrow_fd(src.fd);
        let (got, err) = read_fully(fd, buf, off);
        let full = got as u64 / ps;
        let r = if got as u64 == want {
            uffd.fill_copy(Range::new(page, want), buf.as_ptr() as u64, src.mode)
                .map(|p| p.done)
        } else if full > 0 && (err.is_some() || !src.zero_past_eof) {
            // Whole pages first: the faulting page is among them, the
            // rest fault again and meet the error (or the end) on their own.
            uffd.fill_copy(Range::new(page, full * ps), buf.as_ptr() as u64, src.mode)
                .map(|p| p.done)
        } else if let Some(e) = err {
            Err(Error::os(
                "pread",
                e,
                format!(
                    "page source fd {} at offset {:#x} (the page at {page:#x} starts at offset {off:#x})",
                    src.fd,
                    off + got as u64
                ),
            ))
        } else if src.zero_past_eof {
            if got == 0 {
                self.zero_placed(uffd, page, ps, want / ps, src.mode.contains(CopyMode::WP))
            } else {
                buf[got..].fill(0);
                let pages = (got as u64).div_ceil(ps);
                uffd.fill_copy(Range::new(page, pages * ps), buf.as_ptr() as u64, src.mode)
                    .map(|p| p.done)
            }
        } else {
            Err(Error::os(
                "pread",
                libc::ENODATA,
                format!(
                    "page source fd {} ends at offset {:#x}, inside the page at {page:#x} (file offset {off:#x}, {ps} bytes); set LIBUFFD_REGION_ZERO_PAST_EOF to read zeros past end-of-file",
                    src.fd,
                    off + got as u64
                ),
            ))
        };
        classify(self, uffd, t.uffd_id, page, ps, r)
    }

    /// Copy a page whose source has only `avail` bytes: stage it through
    /// scratch memory (the first `avail` bytes from `src`, zeros after).
    fn copy_partial(
        &self,
        uffd: &Uffd,
        t: FaultToken,
        src: u64,
        avail: u64,
        buf: &mut [u8],
        mode: CopyMode,
    ) -> Result<Applied, Failed> {
        let ps = t.page_size;
        buf[..ps as usize].fill(0);
        crate::sys::wait::copy_from_addr(&mut buf[..avail as usize], src);
        let r = uffd
            .fill_copy(Range::new(t.page, ps), buf.as_ptr() as u64, mode)
            .map(|p| p.done);
        classify(self, uffd, t.uffd_id, t.page, ps, r)
    }
}

/// Page-aligned scratch memory for staging pages (pread, padding),
/// allocated on first use and reused: no allocation per fault.
#[derive(Default)]
pub struct Scratch {
    map: Option<wait::ScratchMap>,
}

impl Scratch {
    /// At least `len` bytes (grown, rarely, by remapping).
    pub fn get(&mut self, len: u64) -> Result<&mut [u8], Error> {
        let len = (len as usize).max(4 << 20);
        if self.map.as_ref().is_none_or(|m| m.len() < len) {
            let m = wait::ScratchMap::new(len).map_err(|e| Error::os("mmap scratch", e, ""))?;
            self.map = Some(m);
        }
        Ok(self
            .map
            .as_mut()
            .map(|m| m.as_mut_slice())
            .unwrap_or_default())
    }
}

/// What an fd source reads for one fault.
#[derive(Clone, Copy)]
struct FdRead {
    fd: i32,
    offset: u64,
    source_offset: u64,
    zero_past_eof: bool,
    /// CopyMode::WP for a dirty-tracked region.
    mode: CopyMode,
}

/// The pauses between tries of an operation the kernel refused with
/// EAGAIN (an event pending, which the reader is about to read), on a
/// thread other than the reader: 20 us, doubled after each try up to 5 ms,
/// for `limit` in all. Bounded: the caller gives up once `pause` says so.
pub(crate) struct Backoff {
    deadline: Instant,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(limit: Duration) -> Backoff {
        Backoff {
            deadline: Instant::now() + limit,
            next: Duration::from_micros(20),
        }
    }

    /// Sleep before the next try: false (without sleeping) once the time
    /// is up.
    pub(crate) fn pause(&mut self) -> bool {
        if Instant::now() >= self.deadline {
            return false;
        }
        std::thread::sleep(self.next);
        self.next = (self.next * 2).min(Duration::from_millis(5));
        true
    }
}

/// Most EINTRs in a row one read of a page takes before it fails with
/// EINTR (each is a signal delivered to this thread: the bound only
/// matters for a signal storm, which must not hold a fault for ever).
const MAX_EINTR: u32 = 1000;

/// pread(2) into `buf` at `off` until it is full, end-of-file (a read of
/// 0) or an error other than EINTR: the bytes read and the error, if one
/// stopped it. Bounded: every round but an EINTR makes progress.
pub(super) fn read_fully(
    fd: std::os::fd::BorrowedFd<'_>,
    buf: &mut [u8],
    off: u64,
) -> (usize, Option<i32>) {
    let mut got = 0;
    let mut eintr = 0;
    while got < buf.len() {
        match crate::sys::wait::pread(fd, &mut buf[got..], off + got as u64) {
            Ok(0) => return (got, None),
            Ok(n) => {
                got += n.min(buf.len() - got);
                eintr = 0;
            }
            Err(libc::EINTR) if eintr < MAX_EINTR => eintr += 1,
            Err(e) => return (got, Some(e)),
        }
    }
    (got, None)
}
