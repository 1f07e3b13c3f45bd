// SPDX-License-Identifier: MIT OR Apache-2.0
//! Resident-set budgets: a region with `RegionOptions::max_resident` keeps
//! at most that many bytes of its pages placed. Before a fault would take
//! it over, the least-recently-faulted resident pages are evicted: dirty
//! ones written back through the region's sink first (`Sink::Fd`: pwrite
//! at the page's source offset; `Sink::Callback`: `Handler::on_writeback`),
//! then dropped (MADV_REMOVE for shared memory, MADV_DONTNEED for private
//! anonymous and hugetlb memory). An evicted page faults again later and
//! comes back from the region's source, which holds what was written back.
//!
//! Per-page state (one byte per page, allocated at `add_region`; nothing
//! is allocated on the fault path): RES (placed), DIRTY (written since it
//! was placed or written back), REF (faulted since the clock hand last
//! passed), BUSY (being placed or evicted: one thread owns it) and WRITING
//! (a write fault is un-protecting it). A page faulted by a read is placed
//! write-protected (UFFDIO_COPY with MODE_WP, zeros too), so the first
//! write to it faults: `unprotect_fault` marks it DIRTY before it
//! un-protects it. A page faulted by a write is placed writable and DIRTY
//! at once. Victims are chosen by a clock over the page indexes: second
//! chance for pages faulted (read or written) since the hand last passed,
//! evicted a batch at a time (`BATCH_DIVISOR`) and dropped together.
//! Faults in sequence (the region's fault-around window above one page)
//! claim the never-placed pages after the faulting one too, within the
//! room the budget has, and place them with it (`Budget::claim`,
//! `Inner::place_run`).
//!
//! Threads. The drop is a madvise of registered memory. Without REMOVE
//! events (`Features::EVENT_REMOVE`) the kernel tells nobody and the
//! faulting thread's handler drops the page itself, synchronously, even on
//! the reader. With REMOVE events the madvise sleeps until the reader has
//! read the event it raises: on the reader it would wait for itself, and
//! on a thread that holds the layout gate (which the reader takes to read)
//! too. So with REMOVE events the drop goes to the monitor's evictor
//! thread ("uffd-evict", started by `add_region`), which holds nothing
//! while it drops: the resident set may then exceed the budget by the
//! pages in its queue (at most `QUEUE` pages) for as long as the drops
//! take. The reader recognises the REMOVE of a page being evicted (BUSY)
//! and does not apply the REMOVE policy to it (it is no application's
//! madvise). A drop queued when the run stops is abandoned: the page stays
//! resident (clean, written back), nothing is lost.
//!
//! The same REMOVE, raised by the application's own madvise, forgets the
//! pages it drops (their data goes, as the application asked); UNMAP and
//! REMAP forget the pages that leave the region's addresses.

use super::config::Handler;
use super::region::Source;
use super::resolve::{Applied, Failed, FaultToken, RegionInfo, Scratch};
use super::stats::Stats;
use super::unpoisoned::{unpoisoned, LockOk, RwOk};
use super::Inner;
use crate::sys::evict;
use crate::uffd::{CopyMode, Error, Range, Uffd, WriteprotectMode};
use std::collections::VecDeque;
use std::sync::atomic::{
    AtomicBool, AtomicU8,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

/// Where a budgeted region's dirty pages are written back before they are
/// dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sink {
    /// No sink: only for a region declared read-only
    /// (`RegionOptions::read_only`).
    #[default]
    None,
    /// pwrite(2) to this file at the page's source offset (the offset an
    /// `Fd` source reads it from; for a `Buffer` source this is refused:
    /// the buffer would never see the bytes). It must be the source's
    /// file, so that evicted pages come back with what was written back
    /// (`add_region` checks it). Duplicated by `add_region`.
    Fd(i32),
    /// `Handler::on_writeback`: the callback stores the page where the
    /// region's source will read it from.
    Callback,
}

/// A dirty page to write back (`Handler::on_writeback`).
#[derive(Debug, Clone, Copy)]
pub struct Writeback {
    /// Which of the monitor's userfaultfds the region belongs to.
    pub uffd_id: u32,
    /// The page's address: readable, write-protected while the callback
    /// runs (its bytes cannot change under it).
    pub page: u64,
    /// Its length (the region's page size).
    pub len: u64,
    /// The region (`source_offset` is the page's).
    pub region: RegionInfo,
}

const RES: u8 = 1;
const DIRTY: u8 = 2;
const REF: u8 = 4;
const BUSY: u8 = 8;
const WRITING: u8 = 16;
/// The evictor thread's madvise of the page raised (or will raise) a
/// REMOVE event that the reader has not applied yet: the reader takes it
/// as the evictor's (and clears the bit), not the application's. Set
/// before the madvise, cleared by the reader (reading the event is what
/// lets the madvise return, so the evictor cannot tell when that is).
const DROPPING: u8 = 32;
/// Found present without having been placed by the monitor (counted dirty
/// to be safe): its eviction first checks that it is still there, since
/// writing back a page that is gone would make the kernel fault on it.
const SUSPECT: u8 = 64;

/// Victims one fault evicts at most (dropped together: one
/// `evict::madvise_ranges` call).
const MAX_VICTIMS: usize = evict::MAX_RANGES;

/// A full budget is brought down by `max_pages / BATCH_DIVISOR` pages (at
/// least 1, at most `MAX_VICTIMS`) at a time: one drop and one TLB flush
/// for the lot where a page at a time would flush per page, and the next
/// faults evict nothing. A budget of 4096 pages evicts 16 at a time,
/// 0.4% of it kept free on average; one under 32 pages, one at a time.
const BATCH_DIVISOR: u64 = 256;

/// Drops the evictor thread keeps queued at most.
pub(crate) const QUEUE: usize = 64;

/// MADV_REMOVE (shared memory), MADV_DONTNEED (private), not known yet.
const DROP_UNKNOWN: u8 = 0;
const DROP_REMOVE: u8 = 1;
const DROP_DONTNEED: u8 = 2;

/// The budget of one region (shared by its pieces after a split).
pub(crate) struct Budget {
    uffd_id: u32,
    base: u64,
    len: u64,
    page_size: u64,
    max_pages: u64,
    pages: Box<[AtomicU8]>,
    sink: Sink,
    /// The source offset of the page at `base` (the file offset of an
    /// `Fd` source's first page).
    sink_offset: u64,
    user_data: u64,
    /// Drops go to the evictor thread (the userfaultfd has REMOVE events).
    async_drop: bool,
    drop_mode: AtomicU8,
    /// Whether the kernel drops several pages in one call
    /// (`evict::madvise_ranges`): VECTOR_UNKNOWN until a call tells.
    vector: AtomicU8,
    clock: Mutex<Clock>,
}

const VECTOR_UNKNOWN: u8 = 0;
const VECTOR_OK: u8 = 1;
const VECTOR_REFUSED: u8 = 2;

struct Clock {
    hand: u64,
    /// Pages placed and counted against the budget (victims leave it when
    /// chosen, a page being placed joins it when its fault claims it).
    resident: u64,
    /// Victims chosen and not dropped yet (still mapped). In-place drops
    /// count them against the budget too: without that, a thread that
    /// took a batch would leave room that another thread's fault fills
    /// before the batch is dropped, and the region would hold up to a
    /// batch more than its budget. Drops by the evictor thread do not
    /// (their overshoot, bounded by its queue, is documented).
    pending: u64,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("base", &self.base)
            .field("len", &self.len)
            .field("max_pages", &self.max_pages)
            .field("sink", &self.sink)
            .finish()
    }
}

/// What a missing-page fault of a budgeted region asks for
/// (`Inner::serve_budgeted`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fill {
    /// The region's source, and the faulting page's offset in it.
    pub source: Source,
    pub offset: u64,
    /// A write fault (the message's WRITE flag).
    pub write: bool,
    /// The fault-around window (pages, from the faulting one).
    pub window: u64,
}

/// What a fault claimed (`Budget::claim`).
struct Claim {
    victims: [u64; MAX_VICTIMS],
    n: usize,
    /// Pages claimed after the faulting one (fault-around: never placed,
    /// BUSY, counted in `resident`), placed with it.
    run: u64,
    /// The page's state before (BUSY added for the placement).
    prev: u8,
    /// The page was counted in `resident` by this claim.
    reserved: bool,
}

/// What `Inner::clean` did with a page.
enum Clean {
    /// Clean now (written back, or it was not dirty).
    Done,
    /// Not there any more: dropped behind the monitor's back, unmapped.
    Gone,
    /// An event is pending (EAGAIN): try again once it is read.
    Again,
    /// The write-protect or the write-back failed: still dirty.
    Failed(Error),
}

impl Budget {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        uffd_id: u32,
        base: u64,
        len: u64,
        page_size: u64,
        max_pages: u64,
        sink: Sink,
        sink_offset: u64,
        user_data: u64,
        async_drop: bool,
    ) -> Budget {
        let n = (len / page_size) as usize;
        Budget {
            uffd_id,
            base,
            len,
            page_size,
            max_pages,
            pages: (0..n).map(|_| AtomicU8::new(0)).collect(),
            sink,
            sink_offset,
            user_data,
            async_drop,
            drop_mode: AtomicU8::new(DROP_UNKNOWN),
            vector: AtomicU8::new(VECTOR_UNKNOWN),
            clock: Mutex::new(Clock {
                hand: 0,
                resident: 0,
                pending: 0,
            }),
        }
    }

    /// Index of the page at `page` (None: outside the budget's addresses,
    /// e.g. moved there by mremap).
    pub(crate) fn index(&self, page: u64) -> Option<u64> {
        (page >= self.base && page < self.base + self.len && page % self.page_size == 0)
            .then(|| (page - self.base) / self.page_size)
    }

    fn addr(&self, i: u64) -> u64 {
        self.base + i * self.page_size
    }

    /// Claim page `i` for placement (BUSY) and choose the victims that
    /// make room for it. None: the page is being placed or evicted by
    /// another thread, or un-protected by a write fault (retry later).
    ///
    /// With `want` > 1 (the fault-around window: the region is read in
    /// sequence), the pages after `i` that were never placed or were
    /// evicted (state 0) are claimed too, as many as the budget has room
    /// for once the victims are dropped, up to `want` in all: a full
    /// budget then evicts a batch of at least `want` pages (up to a
    /// quarter of the budget and MAX_VICTIMS), so that a scan takes one
    /// fault per batch and the budget is never exceeded.
    fn claim(&self, i: u64, want: u64) -> Option<Claim> {
        let mut c = self.clock.lock_ok();
        let cell = &self.pages[i as usize];
        let prev = cell.load(Acquire);
        if prev & (BUSY | WRITING) != 0 {
            return None;
        }
        if cell
            .compare_exchange(prev, prev | BUSY, AcqRel, Acquire)
            .is_err()
        {
            return None;
        }
        let mut claim = Claim {
            victims: [0; MAX_VICTIMS],
            n: 0,
            run: 0,
            prev,
            reserved: prev & RES == 0,
        };
        if !claim.reserved {
            // Counted already (a page dropped behind the monitor's back,
            // or a second message for a placed page).
            return Some(claim);
        }
        let npages = self.pages.len() as u64;
        // Full: evict a batch, down to `max_pages - batch` (with the page
        // claimed, `max_pages - batch + 1`). Not full: nothing.
        let batch = (self.max_pages / BATCH_DIVISOR)
            .max(want.min(self.max_pages / 4))
            .clamp(1, MAX_VICTIMS as u64);
        let pending = if self.async_drop { 0 } else { c.pending };
        let low = if c.resident + pending >= self.max_pages {
            (self.max_pages + 1 - batch).saturating_sub(pending)
        } else {
            u64::MAX
        };
        // Three sweeps at most: the first clears REF bits, the second finds
        // the victims; the third ignores REF (faults on other threads set
        // it again meanwhile: without it, two pages written in turn could
        // each keep the other's second chance for ever and the budget
        // would give way). Bounded whatever the pages' states.
        let mut steps = 0;
        let mut skipped_busy = false;
        while c.resident >= low && claim.n < MAX_VICTIMS && steps < 3 * npages {
            let h = c.hand;
            c.hand = (h + 1) % npages;
            steps += 1;
            if h == i {
                continue;
            }
            let v = &self.pages[h as usize];
            let s = v.load(Acquire);
            if s & (BUSY | WRITING) != 0 {
                // Being placed (counted, not RES yet), evicted or written.
                skipped_busy = true;
                continue;
            }
            if s & RES == 0 {
                continue;
            }
            if s & DIRTY != 0 && self.sink == Sink::None {
                // Read-only region written anyway: kept, never lost.
                continue;
            }
            if s & REF != 0 && steps <= 2 * npages {
                v.fetch_and(!REF, AcqRel);
                continue;
            }
            // Ours unless a write fault began meanwhile.
            if v.compare_exchange(s, s | BUSY, AcqRel, Acquire).is_ok() {
                c.resident -= 1;
                c.pending += 1;
                claim.victims[claim.n] = h;
                claim.n += 1;
            }
        }
        if claim.n == 0 && skipped_busy && c.resident + pending >= self.max_pages {
            // The only candidates are being placed or written by other
            // threads right now: retry once they are done rather than go
            // over the budget. (Pages kept because they cannot be written
            // back, read-only ones written anyway, are never candidates:
            // over them the budget gives way, no fault waits for ever.)
            cell.store(prev, Release);
            return None;
        }
        c.resident += 1;
        // Fault-around: the room left once the victims are gone (they
        // are counted in `pending`; other claims' victims are in the
        // `pending` read at the start, this claim's are not: they are
        // dropped before its pages are placed).
        let room = self.max_pages.saturating_sub(c.resident + pending);
        let extra = want.saturating_sub(1).min(room);
        while claim.run < extra {
            let j = i + 1 + claim.run;
            if j >= npages
                || self.pages[j as usize]
                    .compare_exchange(0, BUSY, AcqRel, Acquire)
                    .is_err()
            {
                break;
            }
            c.resident += 1;
            claim.run += 1;
        }
        Some(claim)
    }

    /// Keep the first `keep` run pages of the claim of page `i` and give
    /// back the others (not placed): state 0 again, out of the resident
    /// count.
    fn release_run(&self, i: u64, claim: &mut Claim, keep: u64) {
        if keep >= claim.run {
            return;
        }
        let mut c = self.clock.lock_ok();
        for j in i + 1 + keep..i + 1 + claim.run {
            self.pages[j as usize].store(0, Release);
        }
        c.resident -= claim.run - keep;
        claim.run = keep;
    }

    /// The end of a placement that did not place: page `i` as it was, its
    /// run given back.
    fn unclaim(&self, i: u64, claim: &mut Claim) {
        self.release_run(i, claim, 0);
        let mut c = self.clock.lock_ok();
        if claim.reserved {
            c.resident -= 1;
        }
        self.pages[i as usize].store(claim.prev, Release);
    }

    /// A victim that stays (its write-back or drop failed, or its drop
    /// was abandoned): resident again, no longer BUSY.
    fn keep(&self, v: u64) {
        let mut c = self.clock.lock_ok();
        c.resident += 1;
        c.pending -= 1;
        self.pages[v as usize].fetch_and(!BUSY, AcqRel);
    }

    /// `n` victims are gone (dropped, or found gone): no longer pending.
    fn victims_gone(&self, n: u64) {
        self.clock.lock_ok().pending -= n;
    }

    /// Forget pages `[start, end)` that left the region (an application's
    /// madvise, munmap or mremap). Pages being placed or evicted are left
    /// to their owner. Returns (pages forgotten, pages the evictor thread
    /// is dropping: their DROPPING bit is consumed).
    fn forget(&self, start: u64, end: u64) -> (u64, u64) {
        let (a, b) = (start.max(self.base), end.min(self.base + self.len));
        if a >= b {
            return (0, 0);
        }
        let ps = self.page_size;
        let (first, last) = ((a - self.base) / ps, (b - self.base).div_ceil(ps));
        let mut c = self.clock.lock_ok();
        let (mut forgot, mut busy) = (0, 0);
        for i in first..last {
            let cell = &self.pages[i as usize];
            let s = cell.load(Acquire);
            if s & DROPPING != 0 {
                cell.fetch_and(!DROPPING, AcqRel);
                busy += 1;
            } else if s & BUSY != 0 {
            } else if s & RES != 0 {
                cell.store(0, Release);
                c.resident -= 1;
                forgot += 1;
            }
        }
        (forgot, busy)
    }

    /// Drop page `i` (madvise): MADV_REMOVE first (shared memory: the
    /// page-cache page must go, or the next access would map it again
    /// without a fault), MADV_DONTNEED where the kernel refuses it before
    /// doing anything (private memory: EINVAL, EACCES); remembered.
    fn drop_page(&self, i: u64) -> Result<(), i32> {
        let (addr, ps) = (self.addr(i), self.page_size);
        let mode = self.drop_mode.load(Relaxed);
        if mode != DROP_DONTNEED {
            match evict::madvise(addr, ps, libc::MADV_REMOVE) {
                Ok(()) => {
                    self.drop_mode.store(DROP_REMOVE, Relaxed);
                    return Ok(());
                }
                Err(libc::EINVAL | libc::EACCES | libc::EOPNOTSUPP) if mode == DROP_UNKNOWN => {
                    self.drop_mode.store(DROP_DONTNEED, Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        evict::madvise(addr, ps, libc::MADV_DONTNEED)
    }

    /// Drop the pages `v` (indexes in clock order, at most `MAX_VICTIMS`):
    /// `errs[k]` becomes page `v[k]`'s result, 0 or the errno of its
    /// drop. Adjacent pages make one range, and the ranges go in one
    /// `evict::madvise_ranges` call once `drop_page` has learnt the drop
    /// mode, unless the kernel refused that call before. Where the call
    /// stops (a range that failed, or a kernel without it) the next page
    /// is dropped alone by `drop_page`, which gives its errno (and the
    /// refusal is remembered when that page dropped fine alone).
    fn drop_pages(&self, v: &[u64], errs: &mut [i32]) {
        let ps = self.page_size;
        let mut k = 0;
        while k < v.len() {
            let mode = self.drop_mode.load(Relaxed);
            let vector = self.vector.load(Relaxed);
            if mode == DROP_UNKNOWN || vector == VECTOR_REFUSED || k + 1 == v.len() {
                errs[k] = self.drop_page(v[k]).err().unwrap_or(0);
                k += 1;
                continue;
            }
            let advice = if mode == DROP_REMOVE {
                libc::MADV_REMOVE
            } else {
                libc::MADV_DONTNEED
            };
            let mut ranges = [(0u64, 0u64); MAX_VICTIMS];
            let mut n = 0;
            for &p in &v[k..] {
                let a = self.addr(p);
                if n > 0 && ranges[n - 1].0 + ranges[n - 1].1 == a {
                    ranges[n - 1].1 += ps;
                } else {
                    ranges[n] = (a, ps);
                    n += 1;
                }
            }
            let (done, refused) = match evict::madvise_ranges(&ranges[..n], advice) {
                Ok(bytes) => (((bytes / ps) as usize).min(v.len() - k), false),
                Err(e) => (0, evict::vector_unsupported(e)),
            };
            if done > 0 {
                self.vector.store(VECTOR_OK, Relaxed);
                errs[k..k + done].fill(0);
                k += done;
            }
            if k < v.len() {
                // Where it stopped: this page alone, for its errno.
                errs[k] = self.drop_page(v[k]).err().unwrap_or(0);
                if refused && errs[k] == 0 && vector == VECTOR_UNKNOWN {
                    // The page drops alone: the kernel refused the call.
                    self.vector.store(VECTOR_REFUSED, Relaxed);
                }
                k += 1;
            }
        }
    }
}

/// The drops waiting for the evictor thread (REMOVE events on).
pub(crate) struct Evictor {
    queue: Mutex<VecDeque<(Arc<Budget>, u64)>>,
    cv: Condvar,
    started: AtomicBool,
}

impl Evictor {
    pub(crate) fn new() -> Evictor {
        Evictor {
            queue: Mutex::new(VecDeque::new()),
            cv: Condvar::new(),
            started: AtomicBool::new(false),
        }
    }

    /// Queue a drop; false when the queue is full.
    fn push(&self, b: &Arc<Budget>, v: u64) -> bool {
        let mut q = self.queue.lock_ok();
        if q.len() >= QUEUE {
            return false;
        }
        q.push_back((b.clone(), v));
        drop(q);
        self.cv.notify_one();
        true
    }

    /// Give every queued drop back (the run ends: nobody will read the
    /// REMOVE events the drops would raise). The pages stay resident,
    /// clean: nothing is lost.
    pub(crate) fn abandon(&self) {
        let taken: Vec<(Arc<Budget>, u64)> = self.queue.lock_ok().drain(..).collect();
        for (b, v) in taken {
            b.keep(v);
        }
    }
}

impl Inner {
    /// Start the evictor thread, once (on the caller's thread of
    /// `add_region`). It holds the monitor weakly and ends once the
    /// monitor is gone.
    pub(crate) fn start_evictor(self: &Arc<Self>) -> Result<(), Error> {
        if self.evictor.started.swap(true, AcqRel) {
            return Ok(());
        }
        self.evictor.queue.lock_ok().reserve(QUEUE);
        let weak = Arc::downgrade(self);
        let ev = Arc::clone(&self.evictor);
        let sink = self.panic_sink();
        let r = super::spawn_thread("uffd-evict", move || {
            let _quiet = crate::uffd::quiet::Scope::enter(Some(sink));
            evictor_loop(weak, ev)
        });
        if let Err(e) = r {
            self.evictor.started.store(false, Release);
            return Err(e);
        }
        Ok(())
    }

    /// A write-protect fault: in a budgeted region, mark the page DIRTY
    /// before un-protecting it (a page being placed or evicted makes the
    /// fault wait: EAGAIN, retried; see `evict` for why). Elsewhere,
    /// un-protect.
    pub(crate) fn unprotect_fault(
        &self,
        budget: Option<&Arc<Budget>>,
        t: FaultToken,
    ) -> Result<Applied, Failed> {
        let Some((b, i)) = budget.and_then(|b| b.index(t.page).map(|i| (b, i))) else {
            return self.apply(t, super::Action::Unprotect);
        };
        let cell = &b.pages[i as usize];
        let mut s = cell.load(Acquire);
        loop {
            if s & (BUSY | WRITING) != 0 {
                return Err(Failed::Again);
            }
            // WRITING keeps the page from being claimed (placed or
            // evicted) until it is un-protected. A page not RES was
            // dropped (the fault raced its eviction, or a write-protect
            // marker stayed where it was): un-protecting it does nothing
            // or clears the marker, and the write then faults as missing.
            // Without WRITING, a page placed (write-protected, clean) by
            // another thread between this check and the ioctl would be
            // un-protected here without being marked dirty, and its write
            // lost at its eviction (tests/monitor_budget.rs
            // budget_writes_race_writebacks_evictor saw it).
            let mark = if s & RES != 0 {
                DIRTY | REF | WRITING
            } else {
                WRITING
            };
            match cell.compare_exchange(s, s | mark, AcqRel, Acquire) {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        let r = self.apply(t, super::Action::Unprotect);
        cell.fetch_and(!WRITING, AcqRel);
        r
    }

    /// Serve a missing-page fault of a budgeted region: make room (evict),
    /// then place the page: write-protected for a read fault (its first
    /// write will fault and mark it dirty); for a write fault (`write`),
    /// writable and marked dirty at once, since the write that faulted is
    /// about to land (as UMap does: one fault per written page, not two).
    /// Called without the layout gate (evicting may wait on the sink);
    /// takes it to place.
    pub(crate) fn serve_budgeted(
        &self,
        scratch: &mut Scratch,
        b: &Arc<Budget>,
        t: FaultToken,
        fill: Fill,
    ) -> Result<Applied, Failed> {
        let Some(i) = b.index(t.page) else {
            return Err(Failed::Again);
        };
        let want = match fill.source {
            Source::Buffer { .. } | Source::Fd { .. } => fill.window,
            _ => 1,
        };
        let Some(mut claim) = b.claim(i, want) else {
            return Err(Failed::Again);
        };
        let Some(uffd) = self.uffd(t.uffd_id) else {
            for &v in &claim.victims[..claim.n] {
                b.keep(v);
            }
            b.unclaim(i, &mut claim);
            return Ok(Applied::Gone);
        };
        if !self.evict(b, &uffd, &claim.victims[..claim.n]) {
            b.unclaim(i, &mut claim);
            return Err(Failed::Again);
        }
        let gate = self.layout.read_ok();
        let end = self
            .regions
            .read_ok()
            .find(t.uffd_id, t.page)
            .filter(|r| r.budget.as_ref().is_some_and(|rb| Arc::ptr_eq(rb, b)))
            .map(|r| r.end());
        let Some(end) = end else {
            // The layout changed meanwhile: look the fault up again.
            drop(gate);
            b.unclaim(i, &mut claim);
            return Err(Failed::Again);
        };
        // The run stays inside the region's piece (after an unmap or a
        // move the budget's other pages may be elsewhere).
        let fit = ((end - t.page) / t.page_size).saturating_sub(1);
        b.release_run(i, &mut claim, fit);
        let (r, run_placed) = self.place_run(scratch, t, fill, claim.run);
        let write = fill.write;
        drop(gate);
        let cell = &b.pages[i as usize];
        match r {
            Ok(Applied::Resolved(_)) => {
                // DIRTY before the page is BUSY no more: an eviction
                // that takes it writes it back.
                cell.store(if write { RES | REF | DIRTY } else { RES | REF }, Release);
                // The run's pages placed (write-protected, clean), and
                // the ones that were not given back.
                for j in i + 1..=i + run_placed {
                    b.pages[j as usize].store(RES | REF, Release);
                }
                b.release_run(i, &mut claim, run_placed);
                Stats::add(
                    &self.stats.resident_pages,
                    u64::from(claim.reserved) + run_placed,
                );
            }
            Ok(Applied::AlreadyResolved) if claim.prev & RES == 0 => {
                // Present, but not placed by the monitor: protect it and
                // count it dirty (written back at eviction), so that no
                // write to it can be missed.
                let _ = uffd.writeprotect(Range::new(t.page, t.page_size), WriteprotectMode::WP);
                cell.store(RES | REF | DIRTY | SUSPECT, Release);
                Stats::add(&self.stats.resident_pages, 1);
                b.release_run(i, &mut claim, 0);
            }
            _ => b.unclaim(i, &mut claim),
        }
        r
    }

    /// Place the page at `t` and the `run` pages after it (claimed by
    /// the fault: fault-around) from the region's source, through the
    /// sources' own placement (`serve_source`, `serve_window`): every page
    /// write-protected, except the faulting page of a write fault, placed
    /// writable by a copy of its own first. Returns the faulting page's
    /// outcome (the bytes placed in all when resolved) and how many run
    /// pages were placed: those the source had (a file's whole pages
    /// before its end, a buffer's), up to where the copy stopped (a page
    /// there already, an event pending); none where the run crosses a
    /// mapping's boundary (`serve_source` places the page alone).
    fn place_run(
        &self,
        scratch: &mut Scratch,
        t: FaultToken,
        fill: Fill,
        run: u64,
    ) -> (Result<Applied, Failed>, u64) {
        let Fill { source, offset, .. } = fill;
        let ps = t.page_size;
        if !fill.write {
            let r = self.serve_source(scratch, t, source, offset, 1 + run, CopyMode::WP);
            let placed = match r {
                Ok(Applied::Resolved(n)) => (n / ps).saturating_sub(1).min(run),
                _ => 0,
            };
            return (r, placed);
        }
        let r = self.serve_window(scratch, t, source, offset, 1, CopyMode::empty());
        if run == 0 || !matches!(r, Ok(Applied::Resolved(_))) {
            return (r, 0);
        }
        let Some(next_offset) = offset.checked_add(ps) else {
            return (r, 0);
        };
        let next = FaultToken {
            page: t.page + ps,
            ..t
        };
        let placed = match self.serve_window(scratch, next, source, next_offset, run, CopyMode::WP)
        {
            Ok(Applied::Resolved(n)) => (n / ps).min(run),
            _ => 0,
        };
        (Ok(Applied::Resolved((1 + placed) * ps)), placed)
    }

    /// Evict the victims `vs` of `b` (chosen BUSY by `claim`, already out
    /// of the resident count): clean each, then drop those clean together
    /// (`Budget::drop_pages`), or queue them for the evictor thread.
    ///
    /// Ordering, for each dirty page: (1) write-protect it; (2) write it back;
    /// (3) clear DIRTY; (4) drop it. From (1) on, a write to the page
    /// faults, and the write-fault path (`unprotect_fault`) sees BUSY and
    /// does not un-protect: the writer waits (its fault is retried) until
    /// the eviction ends. So the bytes written back in (2) are the page's
    /// last bytes, and no write can land between (2) and (4) to be thrown
    /// away by the drop. A write that began before (1) had its fault
    /// un-protect the page under WRITING, which `claim` never takes: BUSY
    /// was set after that fault's un-protect returned, so (1) comes after
    /// it and cannot be undone by it. After (4) the waiting writer's fault
    /// is retried, finds the page gone (not RES), un-protects nothing
    /// there (under WRITING, so that no placement of the page by another
    /// thread can slip in between its check and its ioctl) and wakes; its
    /// write faults as missing, the page comes back from the source (which
    /// has the bytes written back) and the write lands on it. If (2) fails the page stays resident and dirty (counted
    /// in `writeback_failures`, logged): never dropped with its data.
    ///
    /// False when a write-protect met EAGAIN (an event is pending: the
    /// fault is retried once the reader has read it): that victim and the
    /// ones after it stay; those cleaned before it are still dropped.
    fn evict(&self, b: &Arc<Budget>, uffd: &Uffd, vs: &[u64]) -> bool {
        let mut clean = [0u64; MAX_VICTIMS];
        let mut n = 0;
        let mut again = false;
        for &v in vs {
            if again {
                b.keep(v);
                continue;
            }
            match self.clean(b, uffd, v) {
                Clean::Done if b.async_drop => {
                    if !self.evictor.push(b, v) {
                        // Queue full: it stays resident (clean) for now.
                        b.keep(v);
                    }
                }
                Clean::Done => {
                    clean[n] = v;
                    n += 1;
                }
                // Nothing left to evict: dropped meanwhile (the
                // application's madvise, its data gone as it asked),
                // unmapped or moved away.
                Clean::Gone => self.forgotten(b, v),
                Clean::Again => {
                    b.keep(v);
                    again = true;
                }
                Clean::Failed(e) => self.writeback_failed(b, v, &e),
            }
        }
        if n > 0 {
            self.drop_now(b, &clean[..n]);
        }
        !again
    }

    /// Steps (1)-(3) of `evict` for page `v` of `b`, which the caller
    /// holds BUSY: if it is dirty, write-protect it, write it back, clear
    /// DIRTY (counted in `writebacks`). Shared by eviction and
    /// `budget_writeback`, which differ only in what follows.
    fn clean(&self, b: &Budget, uffd: &Uffd, v: u64) -> Clean {
        let (addr, ps) = (b.addr(v), b.page_size);
        let cell = &b.pages[v as usize];
        if cell.load(Acquire) & SUSPECT != 0 && !evict::is_resident(addr, ps).unwrap_or(true) {
            return Clean::Gone;
        }
        if cell.load(Acquire) & DIRTY == 0 {
            return Clean::Done;
        }
        if let Err(e) = uffd.writeprotect(Range::new(addr, ps), WriteprotectMode::WP) {
            return match e.errno() {
                libc::ENOENT => Clean::Gone,
                libc::EAGAIN => Clean::Again,
                _ => Clean::Failed(e),
            };
        }
        if let Err(e) = self.write_back(b, v) {
            return Clean::Failed(e);
        }
        cell.fetch_and(!(DIRTY | SUSPECT), AcqRel);
        Stats::add(&self.stats.writebacks, 1);
        Stats::add(&self.stats.writeback_bytes, ps);
        Clean::Done
    }

    /// Drop the clean victims `vs` now (no REMOVE event will be raised).
    fn drop_now(&self, b: &Budget, vs: &[u64]) {
        let mut errs = [0i32; MAX_VICTIMS];
        b.drop_pages(vs, &mut errs[..vs.len()]);
        self.settle_drops(b, vs, &errs[..vs.len()]);
    }

    /// The end of the drops of victims `vs` (`errs`: `Budget::drop_pages`'s
    /// results), in place or on the evictor thread: a page dropped, or
    /// found unmapped (ENOMEM), leaves the budget; one whose drop failed
    /// stays resident (logged). A dropped page keeps only its DROPPING
    /// bit, for the reader to consume with the REMOVE it raised (set by
    /// the evictor thread only; in-place drops raise none).
    fn settle_drops(&self, b: &Budget, vs: &[u64], errs: &[i32]) {
        let mut gone = 0;
        for (&v, &e) in vs.iter().zip(errs) {
            let cell = &b.pages[v as usize];
            match e {
                0 => {
                    cell.fetch_and(DROPPING, AcqRel);
                    gone += 1;
                }
                libc::ENOMEM => {
                    // Unmapped meanwhile: nothing left, no event raised.
                    cell.store(0, Release);
                    gone += 1;
                }
                e => {
                    cell.fetch_and(!DROPPING, AcqRel);
                    b.keep(v);
                    self.log(format_args!(
                        "eviction of the page at {:#x}: madvise failed ({}); it stays resident",
                        b.addr(v),
                        Error::os("madvise", e, "")
                    ));
                }
            }
        }
        Stats::add(&self.stats.evictions, gone);
        // The count first, then the room: a fault that takes the room
        // counts its page after these are discounted.
        self.stats.resident_pages.fetch_sub(gone, Relaxed);
        b.victims_gone(gone);
    }

    fn forgotten(&self, b: &Budget, v: u64) {
        b.pages[v as usize].store(0, Release);
        self.stats.resident_pages.fetch_sub(1, Relaxed);
        b.victims_gone(1);
    }

    fn writeback_failed(&self, b: &Budget, v: u64, e: &Error) {
        b.keep(v);
        Stats::add(&self.stats.writeback_failures, 1);
        self.log(format_args!(
            "write-back of the page at {:#x} failed ({e}); it stays resident and dirty",
            b.addr(v)
        ));
    }

    /// Write page `v` back through the region's sink.
    fn write_back(&self, b: &Budget, v: u64) -> Result<(), Error> {
        let (addr, ps) = (b.addr(v), b.page_size);
        let off = b.sink_offset + v * ps;
        match b.sink {
            Sink::Fd(fd) => {
                crate::sys::mem::pwrite_addr(crate::sys::wait::borrow_fd(fd), addr, ps, off)
                    .map_err(|e| {
                        Error::os("pwrite", e, format!("write-back sink at offset {off:#x}"))
                    })
            }
            Sink::Callback => {
                let wb = Writeback {
                    uffd_id: b.uffd_id,
                    page: addr,
                    len: ps,
                    region: RegionInfo {
                        start: b.base,
                        len: b.len,
                        source_offset: off,
                        user_data: b.user_data,
                    },
                };
                let h: &dyn Handler = &*self.handler;
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.on_writeback(&wb)))
                {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(errno)) => Err(Error::os(
                        "on_writeback",
                        errno.abs(),
                        format!("for the page at {addr:#x}"),
                    )),
                    Err(_) => Err(Error::os(
                        "on_writeback",
                        libc::ENOTRECOVERABLE,
                        "the callback panicked",
                    )),
                }
            }
            Sink::None => Err(Error::invalid(
                "a read-only budgeted region has no write-back sink",
            )),
        }
    }

    /// A REMOVE event of uffd `id`: the budgeted pages in `[start, end)`
    /// being evicted are the evictor's own madvise; the others are the
    /// application's, whose data goes (forgotten). True when the whole
    /// range is the evictor's: no REMOVE policy, no callback.
    pub(crate) fn budget_on_remove(&self, id: u32, start: u64, end: u64) -> bool {
        let (_, busy) = self.budget_forget(id, start, end);
        // The evictor drops ranges of one region's pages, each DROPPING.
        busy > 0
            && self
                .regions
                .read_ok()
                .find(id, start)
                .and_then(|r| r.budget.as_ref())
                .is_some_and(|b| busy * b.page_size == end - start)
    }

    /// UNMAP, REMAP (the old addresses) and the application's REMOVE:
    /// forget the budgeted pages of uffd `id` in `[start, end)`.
    pub(crate) fn budget_forget(&self, id: u32, start: u64, end: u64) -> (u64, u64) {
        let t = self.regions.read_ok();
        let (mut forgot, mut busy) = (0, 0);
        let mut last: Option<*const Budget> = None;
        for r in t.iter() {
            if r.uffd_id != id || r.end() <= start || r.start >= end {
                continue;
            }
            let Some(b) = r.budget.as_ref() else { continue };
            // Pieces of one region share their budget: once per budget
            // (they are adjacent in the table).
            if last == Some(Arc::as_ptr(b)) {
                continue;
            }
            last = Some(Arc::as_ptr(b));
            let (f, bz) = b.forget(start, end);
            forgot += f;
            busy += bz;
        }
        drop(t);
        if forgot > 0 {
            self.stats.resident_pages.fetch_sub(forgot, Relaxed);
        }
        (forgot, busy)
    }
}

/// The evictor thread: drop the queued pages while the monitor runs; give
/// them back when it does not (`Evictor::abandon`). It never holds the
/// monitor (only the page's budget) while a madvise may sleep.
fn evictor_loop(weak: Weak<Inner>, ev: Arc<Evictor>) {
    loop {
        // The next drops: the queue's first, and those after it of the
        // same budget (up to MAX_VICTIMS), dropped together.
        let mut vs = [0u64; MAX_VICTIMS];
        let mut n = 0;
        let next = {
            let q = ev.queue.lock_ok();
            let (mut q, _) = unpoisoned(ev.cv.wait_timeout_while(
                q,
                Duration::from_millis(20),
                |q| q.is_empty(),
            ));
            let first = q.pop_front();
            if let Some((b, v)) = &first {
                vs[0] = *v;
                n = 1;
                while n < MAX_VICTIMS && q.front().is_some_and(|(b2, _)| Arc::ptr_eq(b2, b)) {
                    if let Some((_, v)) = q.pop_front() {
                        vs[n] = v;
                        n += 1;
                    }
                }
            }
            first.map(|(b, _)| b)
        };
        let Some(b) = next else {
            if weak.strong_count() == 0 {
                return;
            }
            continue;
        };
        let vs = &vs[..n];
        // Only while somebody reads the REMOVE the drop raises: not once
        // the run stops, nor for a userfaultfd no longer served (its
        // events are read by nobody: the madvise would sleep until the
        // descriptor is closed).
        let serving = match weak.upgrade() {
            Some(i) => !i.life.stop_asked() && i.uffd(b.uffd_id).is_some(),
            None => return,
        };
        if !serving {
            for &v in vs {
                b.keep(v);
            }
            continue;
        }
        for &v in vs {
            b.pages[v as usize].fetch_or(DROPPING, AcqRel);
        }
        // Each range dropped raises its own REMOVE, whose pages are all
        // DROPPING: the reader takes it for the evictor's.
        let mut errs = [0i32; MAX_VICTIMS];
        b.drop_pages(vs, &mut errs[..n]);
        let Some(inner) = weak.upgrade() else { return };
        inner.settle_drops(&b, vs, &errs[..n]);
    }
}

// Write-back without eviction (`Monitor::writeback`): a checkpoint of a
// budgeted region's file while the application runs.
impl Inner {
    /// Write back every dirty resident page of the budgeted regions of
    /// uffd `id` in `[start, end)` through their sinks, leaving the pages
    /// resident and write-protected (clean: their next write faults and
    /// marks them dirty again). Returns the pages written back, or the
    /// first write-back error (that page stays dirty; the others go on).
    ///
    /// Per page, the order of `evict` without its drop: take the page
    /// (BUSY: no placement, eviction or write fault touches it meanwhile;
    /// a write fault waits, retried), write-protect it, write it back,
    /// clear DIRTY, give it back. A write after the write-protect waits
    /// for the give-back, then marks the page dirty again: it is in the
    /// next write-back, never lost. A page a write fault is un-protecting
    /// right now (WRITING), or that a fault or eviction owns (BUSY), is
    /// taken at a later try (up to 2 s, EAGAIN after that).
    pub(crate) fn budget_writeback(
        &self,
        id: u32,
        start: u64,
        end: u64,
    ) -> Result<(u64, bool), Error> {
        let uffd = self
            .uffd(id)
            .ok_or_else(|| Error::invalid(format!("write back: no userfaultfd with id {id}")))?;
        // The budgets of the range (pieces of one region share theirs).
        let mut budgets: Vec<Arc<Budget>> = Vec::new();
        for r in self.regions.read_ok().iter() {
            if r.uffd_id != id || r.end() <= start || r.start >= end {
                continue;
            }
            if let Some(b) = r.budget.as_ref() {
                if !budgets.iter().any(|x| Arc::ptr_eq(x, b)) {
                    budgets.push(b.clone());
                }
            }
        }
        budgets.retain(|b| b.sink != Sink::None);
        if budgets.is_empty() {
            return Ok((0, false));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let mut written = 0;
        let mut first_err: Option<Error> = None;
        for b in &budgets {
            let (a, z) = (start.max(b.base), end.min(b.base + b.len));
            if a >= z {
                continue;
            }
            let ps = b.page_size;
            let (first, last) = ((a - b.base) / ps, (z - b.base).div_ceil(ps));
            for v in first..last {
                loop {
                    match self.writeback_one(b, &uffd, v) {
                        Ok(n) => {
                            written += n;
                            break;
                        }
                        Err(None) if std::time::Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_micros(200));
                        }
                        Err(None) => {
                            first_err.get_or_insert_with(|| {
                                Error::os(
                                    "write back",
                                    libc::EAGAIN,
                                    format!(
                                        "the page at {:#x} stayed busy (placed, evicted or written) for 2 s; it was not written back",
                                        b.addr(v)
                                    ),
                                )
                            });
                            break;
                        }
                        Err(Some(e)) => {
                            first_err.get_or_insert(e);
                            break;
                        }
                    }
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok((written, true)),
        }
    }

    /// One page of `budget_writeback`: Ok(1) written back, Ok(0) nothing
    /// to write (clean, not resident, dropped behind the monitor's back),
    /// Err(None) busy now (try again), Err(Some) the write-back failed.
    fn writeback_one(&self, b: &Budget, uffd: &Uffd, v: u64) -> Result<u64, Option<Error>> {
        let cell = &b.pages[v as usize];
        let s = cell.load(Acquire);
        // Busy first: a page being placed for a write fault is not RES
        // yet, but the write that faulted may have landed already (the
        // copy woke the writer before the page is marked RES and DIRTY).
        // Taken for clean, its write would miss this checkpoint, though
        // the writer saw it done before asking for it
        // (tests/monitor_budget.rs writeback_right_after_write_faults).
        if s & (BUSY | WRITING) != 0 {
            return Err(None);
        }
        if s & RES == 0 || s & DIRTY == 0 {
            return Ok(0);
        }
        if cell.compare_exchange(s, s | BUSY, AcqRel, Acquire).is_err() {
            return Err(None);
        }
        let r = self.clean(b, uffd, v);
        cell.fetch_and(!BUSY, AcqRel);
        match r {
            Clean::Done => Ok(1),
            // Dropped by the application (no REMOVE events): its data is
            // gone as it asked; its eviction forgets it. Or unmapped.
            Clean::Gone => Ok(0),
            Clean::Again => Err(None),
            Clean::Failed(e) => {
                Stats::add(&self.stats.writeback_failures, 1);
                self.log(format_args!(
                    "write-back of the page at {:#x} failed ({e}); it stays dirty",
                    b.addr(v)
                ));
                Err(Some(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::evict::testing::{Kind, Map};

    fn budget_over(m: &Map) -> Budget {
        let pages = m.len / m.page_size;
        Budget::new(
            0,
            m.addr,
            m.len,
            m.page_size,
            pages,
            Sink::None,
            0,
            0,
            false,
        )
    }

    /// Victims 0, 1, 2 (one range), 4 and 6, dropped together: the first
    /// alone (it learns MADV_REMOVE or MADV_DONTNEED), the others in one
    /// call, which the kernel takes (VECTOR_OK).
    fn drops(kind: Kind) {
        let Some(m) = Map::new(kind, 8) else {
            eprintln!("skipped: no {kind:?} memory (hugetlb: echo 64 > /proc/sys/vm/nr_hugepages)");
            return;
        };
        let b = budget_over(&m);
        let v = [0, 1, 2, 4, 6];
        let mut errs = [-1; 5];
        b.drop_pages(&v, &mut errs);
        assert_eq!(errs, [0; 5], "{kind:?}");
        let mode = if m.is_shared() {
            DROP_REMOVE
        } else {
            DROP_DONTNEED
        };
        assert_eq!(b.drop_mode.load(Relaxed), mode, "{kind:?}");
        assert_eq!(b.vector.load(Relaxed), VECTOR_OK, "{kind:?}");
        for i in 0..8 {
            let gone = v.contains(&i);
            assert_eq!(m.resident(i), !gone, "{kind:?}: page {i}");
            assert_eq!(m.read(i), if gone { 0 } else { 0xA5 }, "{kind:?}: page {i}");
        }
    }

    #[test]
    fn drop_pages_anon() {
        drops(Kind::Anon);
    }

    #[test]
    fn drop_pages_shmem() {
        drops(Kind::Shmem);
    }

    #[test]
    fn drop_pages_hugetlb() {
        drops(Kind::Hugetlb);
    }

    /// A victim unmapped behind the monitor's back (no UNMAP events): its
    /// errno is its own (ENOMEM), every other victim is dropped, and the
    /// call is not taken for unsupported.
    #[test]
    fn drop_pages_around_a_hole() {
        let m = Map::new(Kind::Anon, 8).unwrap();
        let b = budget_over(&m);
        m.unmap(3);
        let v = [1, 2, 3, 4, 5];
        let mut errs = [-1; 5];
        b.drop_pages(&v, &mut errs);
        assert_eq!(errs, [0, 0, libc::ENOMEM, 0, 0]);
        assert_ne!(b.vector.load(Relaxed), VECTOR_REFUSED);
        for i in [0, 6, 7] {
            assert!(m.resident(i), "page {i} kept");
        }
        for i in [1, 2, 4, 5] {
            assert!(!m.resident(i), "page {i} dropped");
        }
    }

    /// The batch a full budget evicts: `max_pages / BATCH_DIVISOR`, at
    /// least one, at most MAX_VICTIMS; none while not full.
    fn full_budget(max: u64) -> Budget {
        let b = Budget::new(
            0,
            1 << 30,
            (max + 8) * 4096,
            4096,
            max,
            Sink::None,
            0,
            0,
            false,
        );
        for i in 0..max {
            let c = b.claim(i, 1).expect("claim");
            assert_eq!(c.n, 0, "max {max}: page {i} evicts nothing");
            b.pages[i as usize].store(RES, Release);
        }
        b
    }

    #[test]
    fn claim_evicts_a_batch_when_full() {
        for (max, batch) in [
            (1u64, 1usize),
            (255, 1),
            (512, 2),
            (4096, 16),
            (1 << 20, 16),
        ] {
            let b = full_budget(max);
            let c = b.claim(max, 1).expect("claim when full");
            assert_eq!(c.n, batch, "max {max}");
            let k = b.clock.lock_ok();
            assert_eq!(k.resident, max + 1 - batch as u64, "max {max}");
            assert_eq!(k.pending, batch as u64, "max {max}");
        }
    }

    /// A second fault while the first one's batch is still mapped (with
    /// workers): in-place drops count those victims, so it makes room of
    /// its own and the region never holds more than its budget. Before
    /// `Clock::pending`, c-examples/buffer-pool saw a resident peak of
    /// 4110 pages on a 4096-page budget.
    #[test]
    fn claim_counts_victims_not_dropped_yet() {
        for (max, batch) in [(512u64, 2u64), (4096, 16)] {
            let b = full_budget(max);
            let c1 = b.claim(max, 1).expect("first claim");
            let c2 = b.claim(max + 1, 1).expect("second claim");
            // Its own batch, and one more (up to MAX_VICTIMS): the first
            // claim's page is counted while the victims that make its
            // room are too.
            assert_eq!(
                c2.n as u64,
                (batch + 1).min(MAX_VICTIMS as u64),
                "max {max}"
            );
            let k = b.clock.lock_ok();
            // Pages that can be mapped at once: resident + pending, less
            // one per claim (its page is placed only once its own batch
            // is gone: the two are never mapped together).
            assert!(k.resident + k.pending - 2 <= max, "max {max}");
            assert_eq!(k.pending, c1.n as u64 + c2.n as u64);
            drop(k);
            b.victims_gone(k_pending(&b));
            assert!(b.clock.lock_ok().resident <= max, "max {max}");
        }
        // A budget of one page: the second fault waits (None: retried)
        // until the first one's victim is dropped.
        let b = full_budget(1);
        let c1 = b.claim(1, 1).expect("first claim");
        assert_eq!(c1.n, 1);
        assert!(b.claim(2, 1).is_none(), "second claim of a 1-page budget");
        b.victims_gone(1);
        b.pages[1].store(RES, Release);
        b.pages[0].store(0, Release);
        let c2 = b.claim(2, 1).expect("after the drop");
        assert_eq!(c2.n, 1);
    }

    /// Fault-around: a claim with a window takes the never-placed pages
    /// after the faulting one, only as many as the budget has room for
    /// once its victims are gone, and stops at a page placed already.
    #[test]
    fn claim_takes_a_run_within_the_room() {
        // Not full: the whole window.
        let b = Budget::new(0, 1 << 30, 64 * 4096, 4096, 32, Sink::None, 0, 0, false);
        let c = b.claim(0, 8).unwrap();
        assert_eq!((c.n, c.run), (0, 7));
        assert_eq!(b.clock.lock_ok().resident, 8);
        for j in 0..8 {
            assert_eq!(b.pages[j].load(Acquire), BUSY, "page {j}");
        }
        // Stops at a page placed already (page 12).
        b.pages[12].store(RES, Release);
        let c = b.claim(10, 8).unwrap();
        assert_eq!(c.run, 1);
        // Near full: only the room left (32 - 8 - 2 - 1 resident = 21).
        let mut c = b.claim(20, 64).unwrap();
        assert_eq!(c.n, 0);
        assert_eq!(c.run, 21);
        assert_eq!(b.clock.lock_ok().resident, 32);
        // Given back: state 0, out of the count.
        b.release_run(20, &mut c, 5);
        assert_eq!(c.run, 5);
        assert_eq!(b.clock.lock_ok().resident, 32 - 16);
        assert_eq!(b.pages[26].load(Acquire), 0);
        assert_eq!(b.pages[25].load(Acquire), BUSY);
        b.unclaim(20, &mut c);
        assert_eq!(b.clock.lock_ok().resident, 32 - 22);
        assert_eq!(b.pages[21].load(Acquire), 0);
        // Full: a batch of the window's size (up to a quarter of the
        // budget), and the room it leaves for the run.
        let b = full_budget(64);
        let c = b.claim(64, 8).unwrap();
        assert_eq!((c.n, c.run), (8, 7));
        let k = b.clock.lock_ok();
        assert!(k.resident <= 64, "{} resident", k.resident);
    }

    fn k_pending(b: &Budget) -> u64 {
        b.clock.lock_ok().pending
    }
}
