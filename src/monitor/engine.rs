// SPDX-License-Identifier: MIT OR Apache-2.0
//! The reader loop and fault dispatch.
//!
//! One thread at a time (the reader: the monitor's thread, or with
//! workers the worker that leads, pool.rs) polls the userfaultfds, reads
//! messages in batches and handles events itself, so that fork, mremap,
//! munmap and madvise in the monitored program always make progress.
//! Faults are resolved by the reader, or handed to workers. A fault that
//! hits EAGAIN (an event pending) goes to a retry list that the reader
//! works through after reading the events that caused it.

use super::config::{ErrorPolicy, ForkVerdict, RemovePolicy, Verdict};
use super::region::Source;
use super::resolve::{Action, Applied, Failed, FaultCtx, FaultToken, RegionInfo};
use super::stats::Stats;
use super::unpoisoned::{LockOk, RwOk};
use super::Inner;
use crate::sys::wait;
use crate::uffd::{Error, Event, Fault, FaultFlags, Msg, Range, Uffd};
use std::cell::Cell;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::Arc;

/// epoll token of the monitor's own eventfd (stop and nudges) in the set
/// behind `Monitor::fd`; a uffd's token is its id + 1.
pub(crate) const WAKE_TOKEN: u64 = 0;
/// epoll token of `Inner::edges` (the blocking userfaultfds) in that set.
pub(crate) const EDGES_TOKEN: u64 = u64::MAX;

/// The most one fault places (fault-around), whatever the page size.
const MAX_WINDOW_BYTES: u64 = 4 << 20;

/// How many times a fault may come back after it could be neither
/// resolved nor poisoned (its thread woken instead, to fault again) before
/// the monitor gives up and stops with the error.
pub(crate) const UNRELEASABLE_TRIES: u32 = 8;

/// `ErrorPolicy::Retry`: how many times a fault is tried before the
/// `Sigbus` policy applies to it, and the first pause between tries
/// (doubled after each, up to `ERROR_BACKOFF_MAX_NS`): about 127 ms in all.
pub(crate) const ERROR_TRIES: u32 = 8;
const ERROR_BACKOFF_NS: u64 = 1_000_000;
const ERROR_BACKOFF_MAX_NS: u64 = 64_000_000;

/// The most batches `drain_uffd` reads from one uffd in one call: the
/// reader then goes back to poll, sees stop and the other descriptors,
/// and comes back if there is more.
pub(crate) const DRAIN_BATCHES: u32 = 16;

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

thread_local! {
    /// Whether this thread holds the layout gate exclusively: the reader
    /// while it reads a batch and applies its events, which includes the
    /// event callbacks it calls (const, no destructor: using it allocates
    /// nothing).
    static HOLDING_LAYOUT: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread holds the layout gate exclusively, i.e. is
/// the reader applying events (in an event callback, say): then
/// `Monitor::add_region` must not wait for the gate, which would be
/// waiting for itself; it has the gate already.
pub(crate) fn holding_layout() -> bool {
    HOLDING_LAYOUT.with(|h| h.get())
}

/// Marks the calling thread as holding the layout gate until dropped.
pub(crate) struct HoldingLayout;

impl HoldingLayout {
    pub(crate) fn new() -> HoldingLayout {
        HOLDING_LAYOUT.with(|h| h.set(true));
        HoldingLayout
    }
}

impl Drop for HoldingLayout {
    fn drop(&mut self) {
        HOLDING_LAYOUT.with(|h| h.set(false));
    }
}

/// A fault waiting to be tried again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pending {
    pub uffd_id: u32,
    pub fault: Fault,
    /// EAGAIN retries so far (bounded by `Config::max_retries`).
    pub attempts: u32,
    /// Failed tries under `ErrorPolicy::Retry` (bounded by `ERROR_TRIES`).
    pub errors: u32,
    /// Not to be tried again before this time (`wait::now_ns`; 0: now).
    pub due_ns: u64,
    pub t_read: u64,
}

impl Pending {
    /// A fault just read, not tried yet.
    pub(crate) fn fresh(uffd_id: u32, fault: Fault, t_read: u64) -> Pending {
        Pending {
            uffd_id,
            fault,
            attempts: 0,
            errors: 0,
            due_ns: 0,
            t_read,
        }
    }

    /// The next try of a fault that `Handled` says to retry.
    pub(crate) fn next_try(self, h: Handled) -> Pending {
        match h {
            Handled::RetryAfterError(due_ns) => Pending {
                errors: self.errors + 1,
                due_ns,
                ..self
            },
            _ => Pending {
                attempts: self.attempts + 1,
                due_ns: 0,
                ..self
            },
        }
    }
}

/// What the reader keeps between iterations.
pub(crate) struct ReaderState {
    pub msgs: Vec<Msg>,
    pub retry: Vec<Pending>,
    pub retry_next: Vec<Pending>,
    /// (uffd id, page, flags) resolved in the current batch.
    pub seen: Vec<(u32, u64, u64)>,
    pub scratch: Scratch,
    /// poll(2) set: the wake eventfd, then every served uffd, and the id of
    /// each uffd entry (refilled each round, without allocating).
    pub pollfds: Vec<libc::pollfd>,
    pub poll_ids: Vec<u32>,
    /// Faults of the current batch handed to the workers (one wakeup per
    /// batch).
    pub queued: usize,
    /// With workers: the fault that the worker now reading keeps for
    /// itself, to resolve once it has passed the reading on (pool.rs).
    pub kept: Option<Pending>,
}

impl ReaderState {
    pub fn new(batch: usize) -> ReaderState {
        ReaderState {
            msgs: std::iter::repeat_with(Msg::default)
                .take(batch.max(1))
                .collect(),
            retry: Vec::with_capacity(1024),
            retry_next: Vec::with_capacity(1024),
            seen: Vec::with_capacity(batch.max(1)),
            scratch: Scratch::default(),
            pollfds: Vec::with_capacity(64),
            poll_ids: Vec::with_capacity(64),
            queued: 0,
            kept: None,
        }
    }
}

/// How the thread handling a fault deals with EAGAIN.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnAgain {
    /// The reader: queue the fault and read the pending event first.
    Queue,
    /// A worker: wait briefly and retry (the reader reads the event).
    Backoff,
}

/// The end of one fault's handling.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Handled {
    Done,
    /// EAGAIN: retry once the pending event has been read.
    Retry,
    /// `ErrorPolicy::Retry`: the fault failed and stays blocked; try it
    /// again at this time (`wait::now_ns`).
    RetryAfterError(u64),
}

impl Handled {
    pub(crate) fn retries(&self) -> bool {
        *self != Handled::Done
    }
}

/// What one read of a userfaultfd gave.
pub(crate) enum ReadOutcome {
    /// This many messages (0: none ready).
    Msgs(usize),
    /// The descriptor is not a userfaultfd any more (closed underneath the
    /// monitor, its number reused for another file): why.
    NotUffd(&'static str),
    /// EMFILE/ENFILE: a FORK message whose new descriptor could not be
    /// made; the kernel keeps the message for the next read.
    NoFd,
}

/// Read the messages ready on `uffd` into `msgs` without ever waiting (0:
/// none), whether the descriptor is blocking or not. Its status flags are
/// not touched (another process may share the file): a file that takes
/// RWF_NOWAIT (`nowait`) is read with it, so that a read that lost a race
/// with another reader of the same file (after poll said it was
/// readable), or the read after a full batch, returns EAGAIN instead of
/// waiting for the next fault. The others are non-blocking
/// (`Inner::add_uffd` sees to it). What a userfaultfd never does (EBADF,
/// end-of-file, a piece of a message, a message of code 0, an unknown
/// code from a file that is no userfaultfd) says that its number now
/// names something else.
pub(crate) fn read_ready(
    uffd: &Uffd,
    nowait: bool,
    msgs: &mut [Msg],
) -> Result<ReadOutcome, Error> {
    let raw = crate::sys::read::msgs_as_raw(msgs);
    let size = std::mem::size_of::<crate::sys::uapi::UffdMsg>();
    let n = match crate::sys::read::read_msg_bytes(uffd.fd(), raw, nowait) {
        Ok(0) => return Ok(ReadOutcome::NotUffd("read returned end-of-file")),
        Ok(b) if b % size != 0 => {
            return Ok(ReadOutcome::NotUffd("read returned a piece of a message"))
        }
        Ok(b) => b / size,
        Err(libc::EAGAIN) => return Ok(ReadOutcome::Msgs(0)),
        Err(libc::EMFILE | libc::ENFILE) => return Ok(ReadOutcome::NoFd),
        Err(libc::EBADF) => return Ok(ReadOutcome::NotUffd("read failed with EBADF (closed)")),
        Err(_) if crate::sys::read::is_userfaultfd(uffd.as_raw_fd()) == Some(false) => {
            return Ok(ReadOutcome::NotUffd(
                "read failed as it never does on a userfaultfd",
            ))
        }
        Err(e) => return Err(Error::os("read", e, "reading the userfaultfd")),
    };
    for m in &msgs[..n] {
        let code = m.code();
        if code == 0 {
            return Ok(ReadOutcome::NotUffd("read returned a message of code 0"));
        }
        if !crate::sys::uapi::is_known_event(code)
            && crate::sys::read::is_userfaultfd(uffd.as_raw_fd()) == Some(false)
        {
            return Ok(ReadOutcome::NotUffd(
                "read returned messages of no known kind",
            ));
        }
    }
    Ok(ReadOutcome::Msgs(n))
}

impl Inner {
    /// Whether a fault goes to the workers (when there are any): those
    /// whose resolution may wait (a callback's fetch, a pread), unless
    /// every fault is to go (`Config::hand_off_all`). Faults the kernel
    /// resolves from memory in one call (Buffer, Zero, PageCache sources;
    /// write-protect faults) the reader resolves in place. Handing one off
    /// costs a wakeup and a context switch on each side, and the extra
    /// runnable threads contend with the faulting ones for the CPUs and the
    /// userfaultfd's wait-queue locks: on a 2-vCPU VM, handing off 4 KiB
    /// copies from memory made 4 faulting threads 1.2-1.5x slower, while
    /// faults that wait on a 50 us fetch were served 2.1x faster
    /// (bench/uffd_bench.c, "x4 threads" and "fetched" scenarios).
    fn hand_off_pays(&self, id: u32, f: &Fault) -> bool {
        if self.config.workers == 0 {
            return false;
        }
        if self.config.hand_off_all {
            return true;
        }
        let table = self.regions.read_ok();
        match table.find(id, f.address).map(|r| r.source) {
            None | Some(Source::Callback) => true,
            Some(Source::Fd { .. }) => !f.flags.intersects(FaultFlags::WP | FaultFlags::MINOR),
            Some(_) => false,
        }
    }

    /// Handle one fault message.
    pub(crate) fn handle_fault(
        &self,
        scratch: &mut Scratch,
        p: Pending,
        on_again: OnAgain,
    ) -> Handled {
        let f = p.fault;
        // Hold the layout gate from the lookup to the ioctl that serves
        // from the region's source (see `Inner::layout`); not across a
        // callback.
        let gate = self.layout.read_ok();
        // Find the region; copy out what is needed and drop the lock
        // before any ioctl or callback. A region whose page size is not
        // known yet learns it first (rare: once per such region).
        let mut view = None;
        for attempt in 0..2 {
            let table = self.regions.read_ok();
            let found = table.find(p.uffd_id, f.address);
            if attempt == 0 && found.is_some_and(|r| r.page_size == 0) {
                drop(table);
                self.learn_page_size(p.uffd_id, &f);
                continue;
            }
            view = found.map(|r| {
                let page = f.address & !(r.page_size - 1);
                let index = (page - r.start) / r.page_size;
                let left = (r.end() - page) / r.page_size;
                let window = self.window_for(r, index).min(left).max(1);
                (
                    r.source,
                    r.page_size,
                    page,
                    r.source_offset + (page - r.start),
                    window,
                    RegionInfo {
                        start: r.start,
                        len: r.len,
                        source_offset: r.source_offset + (page - r.start),
                        user_data: r.user_data,
                    },
                )
            });
            break;
        }
        let (source, ps, page, offset, window, info) = match view {
            Some((s, ps, page, off, w, info)) => (s, ps, page, off, w, Some(info)),
            None => {
                let ps = self.page_size_outside(p.uffd_id, &f);
                (Source::Callback, ps, f.address & !(ps - 1), 0, 1, None)
            }
        };
        let token = FaultToken {
            uffd_id: p.uffd_id,
            page,
            page_size: ps,
        };
        let outcome = if f.flags.contains(FaultFlags::WP) && source != Source::Callback {
            self.apply(token, Action::Unprotect)
        } else if f.flags.contains(FaultFlags::MINOR) && source != Source::Callback {
            self.serve_source(scratch, token, Source::PageCache, offset, window)
        } else if source == Source::Callback {
            drop(gate);
            return self.run_callback(scratch, p, token, info, on_again);
        } else {
            self.serve_source(scratch, token, source, offset, window)
        };
        drop(gate);
        self.finish(p, token, outcome, on_again)
    }

    /// The page size at a fault outside every region (the callback gets
    /// it in the fault's token, and resolving with a smaller one fails
    /// with EINVAL on hugetlb memory): the mapping's, looked up in the
    /// memory's owner, else the base page size.
    fn page_size_outside(&self, id: u32, f: &Fault) -> u64 {
        self.owner_page_size(id, f)
            .unwrap_or_else(crate::sys::base_page_size)
    }

    /// The page size of the mapping a fault is in, asked of its owner's
    /// mappings (PROCMAP_QUERY: one ioctl, no allocation): this process's
    /// when the uffd serves it, else the faulting thread's when the uffd
    /// reports thread ids (a thread id names its process's memory in
    /// /proc). None when neither is possible or the lookup fails (no
    /// permission to read the owner's maps, say).
    fn owner_page_size(&self, id: u32, f: &Fault) -> Option<u64> {
        let uffd = self.uffd(id)?;
        let found = if uffd.serves_this_process() {
            crate::uffd::page_size_at(f.address).ok()
        } else if f.thread_id != 0 {
            crate::uffd::page_size_in(f.thread_id as i32, f.address).ok()
        } else {
            None
        };
        found.filter(|ps| ps.is_power_of_two() && *ps >= crate::sys::base_page_size())
    }

    /// A region whose page size is not known yet (0: an adopted
    /// descriptor's, added without one) learns it at its first fault, from
    /// the owner's mappings (`owner_page_size`), else takes the base page
    /// size. Caller holds the layout gate.
    fn learn_page_size(&self, id: u32, f: &Fault) {
        let ps = self
            .owner_page_size(id, f)
            .unwrap_or_else(crate::sys::base_page_size);
        let mut table = self.regions.write_ok();
        if let Some(r) = table.find_mut(id, f.address) {
            if r.page_size == 0 {
                r.page_size = ps;
            }
        }
    }

    /// Count a fault's outcome, apply the retry rule or the error policy.
    fn finish(
        &self,
        p: Pending,
        token: FaultToken,
        outcome: Result<Applied, Failed>,
        on_again: OnAgain,
    ) -> Handled {
        match outcome {
            Ok(a) => {
                self.count_applied(a, token.page_size);
                self.stats
                    .record_latency(wait::now_ns().saturating_sub(p.t_read));
                Handled::Done
            }
            Err(Failed::Again) => self.again(p, token, on_again),
            Err(Failed::Error(e)) => self.fail(p, token, &e, on_again),
        }
    }

    fn again(&self, p: Pending, token: FaultToken, on_again: OnAgain) -> Handled {
        Stats::add(&self.stats.retried, 1);
        if p.attempts < self.config.max_retries {
            if on_again == OnAgain::Backoff {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
            return Handled::Retry;
        }
        // Bounded: wake the thread so that it faults afresh (a new message
        // once the layout has settled) instead of spinning here.
        self.log(format_args!(
            "fault at {:#x}: still EAGAIN after {} retries; waking the thread to fault again",
            token.page, p.attempts
        ));
        let _ = self.apply(token, Action::Wake);
        Handled::Done
    }

    /// Apply the error policy: the faulting thread is always released.
    pub(crate) fn fail(
        &self,
        p: Pending,
        token: FaultToken,
        e: &Error,
        on_again: OnAgain,
    ) -> Handled {
        let mut policy = self.config.error_policy;
        if policy == ErrorPolicy::Retry {
            Stats::add(&self.stats.failed, 1);
            if p.errors + 1 < ERROR_TRIES && !self.stop.load(Acquire) {
                // The thread stays blocked; the fault is tried again
                // (callback or source) after a pause that doubles.
                let pause = (ERROR_BACKOFF_NS << p.errors.min(16)).min(ERROR_BACKOFF_MAX_NS);
                if p.errors == 0 {
                    self.log(format_args!(
                        "fault at {:#x}: {e}; policy Retry: trying again (at most {ERROR_TRIES} tries)",
                        token.page
                    ));
                }
                if on_again == OnAgain::Backoff {
                    std::thread::sleep(std::time::Duration::from_nanos(pause));
                    return Handled::RetryAfterError(0);
                }
                return Handled::RetryAfterError(wait::now_ns() + pause);
            }
            // Tried enough (or stopping): the Sigbus policy takes over.
            self.log(format_args!(
                "fault at {:#x}: {e}; policy Retry gave up after {} tries: poisoning (SIGBUS)",
                token.page,
                p.errors + 1
            ));
            policy = ErrorPolicy::Sigbus;
        }
        // Poison without waking: the thread is released (into SIGBUS,
        // which may end the process) only after the failure is logged.
        let outcome = self.poison_quietly(token);
        if let Ok(Applied::Gone) = outcome {
            // The range went away (ENOENT: unmapped, moved, or
            // unregistered by RemovePolicy::Unregister; ESRCH: the process
            // exited) and the thread was woken: a fault that outlived its
            // region, not a failure (it used to count as `failed`, and
            // ErrorPolicy::Stop stopped the monitor for it).
            Stats::add(&self.stats.dropped, 1);
            return Handled::Done;
        }
        if let Err(Failed::Again) = outcome {
            // An event is pending (typically the REMOVE/UNMAP/REMAP that
            // took this fault's region away): like any EAGAIN, retry once
            // it has been read, when the poison finds the range gone, or
            // the fault is served. Counting it failed was wrong.
            return self.again(p, token, on_again);
        }
        if self.config.error_policy != ErrorPolicy::Retry {
            Stats::add(&self.stats.failed, 1);
            self.log(format_args!(
                "fault at {:#x}: {e}; policy {:?}",
                token.page, policy
            ));
        }
        // Release the thread: after a poison it gets SIGBUS; if the poison
        // was refused (memory without POISON support, or a page size that
        // is not the mapping's) it faults again, so it is never left
        // blocked; and if that keeps happening, the monitor stops
        // (`unreleasable`) rather than serve the same failure for ever.
        let _ = self.apply(token, Action::Wake);
        if let Err(Failed::Error(pe)) = &outcome {
            self.unreleasable(token, e, pe);
        }
        if policy == ErrorPolicy::Stop {
            self.request_stop(Some(e.errno()));
        }
        Handled::Done
    }

    /// A fault failed and so did its poison: the thread was woken and
    /// will fault again, a livelock if nothing changes. Count it by page;
    /// the `UNRELEASABLE_TRIES`th time, stop the monitor with the error
    /// (`run`/`wait` return it), and the stop releases the faulting
    /// threads (`Config::stop_policy`). No allocation unless it stops.
    fn unreleasable(&self, t: FaultToken, e: &Error, poison: &Error) {
        let tries = {
            let mut table = self.unreleased.lock_ok();
            let slot = match table
                .iter()
                .position(|&(id, page, n)| n > 0 && id == t.uffd_id && page == t.page)
            {
                Some(i) => i,
                None => {
                    let (i, _) = table
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, &(_, _, n))| n)
                        .unwrap_or((0, &(0, 0, 0)));
                    table[i] = (t.uffd_id, t.page, 0);
                    i
                }
            };
            table[slot].2 += 1;
            table[slot].2
        };
        if tries < UNRELEASABLE_TRIES || self.stop.load(Acquire) {
            return;
        }
        let errno = e.errno();
        self.fail_loop(Error::os(
            "monitor",
            errno,
            format!(
                "stopped: the fault at {:#x} ({} bytes) failed {tries} times ({e}) and could not be poisoned either ({poison}), so its thread could only be woken to fault again",
                t.page, t.page_size
            ),
        ));
        self.request_stop(Some(errno));
    }

    fn run_callback(
        &self,
        _scratch: &mut Scratch,
        p: Pending,
        token: FaultToken,
        info: Option<RegionInfo>,
        on_again: OnAgain,
    ) -> Handled {
        let ctx = FaultCtx {
            inner: self,
            fault: p.fault,
            token,
            region: info,
            resolved: Cell::new(false),
            again: Cell::new(false),
        };
        let current = super::resolve::CurrentFault::enter(self, token);
        let verdict = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.handler.on_fault(&ctx)
        })) {
            Ok(v) => v,
            Err(_) => Verdict::Error(libc::ENOTRECOVERABLE),
        };
        // Resolved through the context or through `Monitor::resolve`.
        let (by_monitor, again_by_monitor) = current.outcome();
        drop(current);
        if ctx.again.get() || again_by_monitor {
            return self.again(p, token, on_again);
        }
        let resolved = ctx.resolved.get() || by_monitor;
        match verdict {
            Verdict::Resolved if resolved => {
                self.stats
                    .record_latency(wait::now_ns().saturating_sub(p.t_read));
                Handled::Done
            }
            Verdict::Resolved => self.fail(
                p,
                token,
                &Error::invalid("the fault callback said it resolved the fault but did not"),
                on_again,
            ),
            Verdict::UseSource => {
                // Only a region with a page source can be served without
                // the callback; a callback region or an unknown address
                // falls to the error policy (the thread is released).
                self.fail(
                    p,
                    token,
                    &Error::invalid(format!(
                        "fault at {:#x} has no page source: the callback must resolve or defer it",
                        token.page
                    )),
                    on_again,
                )
            }
            Verdict::Defer => {
                Stats::add(&self.stats.deferred, 1);
                self.deferred_open(token);
                Handled::Done
            }
            Verdict::Stop => {
                // Unresolved: the stop policy releases it (stop.rs).
                self.deferred_open(token);
                self.request_stop(None);
                Handled::Done
            }
            Verdict::Error(errno) => {
                let e = Error::os(
                    "fault callback",
                    errno.abs(),
                    format!("for the fault at {:#x}", token.page),
                );
                if errno == libc::ENOTRECOVERABLE {
                    self.log(format_args!("fault callback panicked at {:#x}", token.page));
                }
                self.fail(p, token, &e, on_again)
            }
        }
    }

    /// The fault-around window for a fault at page `index` of `r`.
    fn window_for(&self, r: &super::region::Region, index: u64) -> u64 {
        let c = &self.config;
        let min = c.window_min.max(1) as u64;
        let max = (c.window_max.max(c.window_min) as u64)
            .min(MAX_WINDOW_BYTES / r.page_size)
            .max(min);
        if !c.adaptive {
            return min;
        }
        let expected = r.next_page.load(Relaxed);
        let cur = r.window.load(Relaxed).clamp(min, max);
        let w = if index == expected {
            (cur * 2).min(max)
        } else {
            (cur / 2).max(min)
        };
        r.window.store(w, Relaxed);
        r.next_page.store(index + w, Relaxed);
        w
    }

    /// Send a formatted message to the log callback, if there is one.
    /// A log callback that panics is ignored (there is nowhere to report
    /// it): the monitor goes on.
    pub(crate) fn log(&self, args: std::fmt::Arguments<'_>) {
        // A panic this thread had inside the library first (its text,
        // kept by the panic hook instead of printed: uffd/quiet.rs).
        let pending = crate::uffd::quiet::take_pending();
        if self.handler.wants_log() {
            let _quiet = crate::uffd::quiet::Suppress::enter();
            for msg in pending.into_iter().chain(std::iter::once(args.to_string())) {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.handler.on_log(&msg)
                }));
            }
        }
    }

    /// Read and handle everything ready on uffd `id`. Returns false when
    /// the monitor should stop.
    pub(crate) fn drain_uffd(&self, st: &mut ReaderState, id: u32) -> Result<(), Error> {
        let Some((uffd, nowait)) = self.uffd_to_read(id) else {
            return Ok(());
        };
        // Bounded: at most DRAIN_BATCHES full batches, and not once stop
        // is asked; poll says when there is more.
        for _ in 0..DRAIN_BATCHES {
            if self.stop.load(Acquire) {
                break;
            }
            // Read under the layout gate and apply the batch's events
            // before its faults. A read() that returns faults and then an
            // event has already completed the event: a REMOVE's madvise
            // goes on to zap the range at once. A fault of the batch
            // served in message order, from the region as it was before
            // the REMOVE, could land after the zap and leave stale source
            // data where the madvise caller must read zeros (and a fault at
            // the new address of a REMAP would find no region). The batch's
            // faults were raised before the events were read, so serving
            // them against the new layout is always a valid outcome.
            let gate = self.layout.write_ok();
            let held = HoldingLayout::new();
            let n = match read_ready(&uffd, nowait, &mut st.msgs)? {
                ReadOutcome::Msgs(0) => return Ok(()),
                ReadOutcome::Msgs(n) => n,
                ReadOutcome::NotUffd(why) => {
                    drop(held);
                    drop(gate);
                    self.drop_lost_uffd(id, &uffd, why);
                    return Ok(());
                }
                ReadOutcome::NoFd => {
                    // EMFILE/ENFILE: survived, never fatal to the loop.
                    // The helper logs it (a log line allocates, and the
                    // forking thread may hold the malloc locks) and closes
                    // the descriptors of children that exited, which makes
                    // room; the message is read again after a short pause
                    // (no spin).
                    Stats::add(&self.stats.read_failures, 1);
                    drop(held);
                    drop(gate);
                    self.reserve.nudge();
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    return Ok(());
                }
            };
            Stats::add(&self.stats.reads, 1);
            let t_read = wait::now_ns();
            st.seen.clear();
            st.queued = 0;
            for i in 0..n {
                if st.msgs[i].code() != crate::sys::uapi::UFFD_EVENT_PAGEFAULT {
                    if let Some(ev) = st.msgs[i].take_event(uffd.features()) {
                        self.handle_event(st, &uffd, id, ev, t_read);
                    }
                }
            }
            drop(held);
            drop(gate);
            for i in 0..n {
                let ev = st.msgs[i].take_event(uffd.features());
                if let Some(ev) = ev {
                    self.handle_event(st, &uffd, id, ev, t_read);
                }
            }
            self.wake_pool(st.queued);
            if n < st.msgs.len() {
                return Ok(());
            }
        }
        // More may be ready: poll(2) reports a non-blocking uffd again by
        // itself; a blocking one's edge-triggered watch is re-armed.
        let blocking = self
            .uffds
            .read_ok()
            .get(id as usize)
            .and_then(|s| s.as_ref().map(|s| s.blocking))
            .unwrap_or(false);
        if blocking {
            wait::epoll_rearm_edge(self.edges.as_fd(), uffd.as_fd(), id as u64 + 1);
        }
        Ok(())
    }

    /// Stop serving uffd `id`, whose descriptor number no longer names
    /// it (closed underneath the monitor, maybe reused): it leaves the
    /// poll set, its regions go, and the log says so. The number is not
    /// closed (it may be another file of the host's now): the monitor's
    /// reference is forgotten instead.
    fn drop_lost_uffd(&self, id: u32, uffd: &Uffd, why: &str) {
        let served = {
            let mut list = self.uffds.write_ok();
            list.get_mut(id as usize).and_then(Option::take)
        };
        let Some(s) = served else { return };
        let set = if s.blocking { &self.edges } else { &self.epoll };
        wait::epoll_del(set.as_fd(), uffd.as_fd());
        self.regions.write_ok().retire(id);
        self.log(format_args!(
            "userfaultfd {id} (descriptor {}) is no userfaultfd any more ({why}): closed underneath the monitor? It is no longer served",
            uffd.as_raw_fd()
        ));
        std::mem::forget(s);
    }

    pub(crate) fn handle_event(
        &self,
        st: &mut ReaderState,
        uffd: &Arc<Uffd>,
        id: u32,
        ev: Event,
        t_read: u64,
    ) {
        match ev {
            Event::Pagefault(fault) => {
                Stats::add(&self.stats.faults, 1);
                let key = (id, fault.address, fault.flags.bits());
                if st.seen.contains(&key) {
                    Stats::add(&self.stats.coalesced, 1);
                    return;
                }
                if st.seen.len() < st.seen.capacity() {
                    st.seen.push(key);
                }
                let p = Pending::fresh(id, fault, t_read);
                if self.hand_off_pays(id, &fault) && self.hand_off(st, p) {
                    return;
                }
                let h = self.handle_fault(&mut st.scratch, p, OnAgain::Queue);
                if h.retries() {
                    st.retry.push(p.next_try(h));
                }
            }
            Event::Fork(fd) => {
                Stats::add(&self.stats.forks, 1);
                let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
                let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.handler.on_fork(id, raw)
                }))
                .unwrap_or(ForkVerdict::Close);
                match verdict {
                    ForkVerdict::Taken => {
                        let _ = std::os::fd::IntoRawFd::into_raw_fd(fd);
                    }
                    ForkVerdict::Serve if self.config.serve_forks => {
                        // Nothing here may allocate while the reserves last:
                        // the parent may already be in its next fork, holding
                        // the malloc locks and waiting for us (reserve.rs).
                        // Ok(None): left unserved, counted, logged by the
                        // helper (reserve.rs).
                        if let Err(e) = self.serve_child(id, uffd, fd) {
                            self.log(format_args!("cannot serve forked child: {e}"));
                        }
                    }
                    _ => drop(fd),
                }
            }
            Event::Remap { from, to, len } => {
                Stats::add(&self.stats.remaps, 1);
                self.regions.write_ok().remap(id, from, to, len);
                self.call_quietly(|| self.handler.on_remap(id, from, to, len));
            }
            Event::Remove { start, end } => {
                Stats::add(&self.stats.removes, 1);
                match self.config.remove_policy {
                    RemovePolicy::ZeroFill => {
                        self.regions.write_ok().zero_fill(id, start, end);
                    }
                    RemovePolicy::Unregister => {
                        if let Err(e) = uffd.unregister(Range::new(start, end - start)) {
                            self.log(format_args!("unregister after REMOVE: {e}"));
                        }
                        self.regions.write_ok().unmap(id, start, end);
                    }
                }
                self.call_quietly(|| self.handler.on_remove(id, start, end));
            }
            Event::Unmap { start, end } => {
                Stats::add(&self.stats.unmaps, 1);
                self.regions.write_ok().unmap(id, start, end);
                self.call_quietly(|| self.handler.on_unmap(id, start, end));
            }
            Event::Unknown { code, .. } => {
                self.log(format_args!("unknown userfaultfd event {code:#x} ignored"));
            }
        }
    }

    fn call_quietly(&self, f: impl FnOnce()) {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
            self.log(format_args!("an event callback panicked; ignored"));
        }
    }

    /// Work through the retry list once (after events were read).
    pub(crate) fn run_retries(&self, st: &mut ReaderState) {
        if st.retry.is_empty() {
            return;
        }
        std::mem::swap(&mut st.retry, &mut st.retry_next);
        let mut list = std::mem::take(&mut st.retry_next);
        let now = wait::now_ns();
        for p in list.drain(..) {
            if self.stop.load(Acquire) && self.uffd(p.uffd_id).is_none() {
                continue;
            }
            if p.due_ns > now && !self.stop.load(Acquire) {
                // Backing off (ErrorPolicy::Retry): not yet.
                st.retry.push(p);
                continue;
            }
            let h = self.handle_fault(&mut st.scratch, p, OnAgain::Queue);
            if h.retries() {
                st.retry.push(p.next_try(h));
            }
        }
        st.retry_next = list;
    }

    /// `iterate`, with a panic in it (a bug in the engine: callbacks'
    /// panics are caught where they are called) turned into a stop with
    /// ENOTRECOVERABLE, so that `run`/`wait` return it and the stop
    /// releases the faulting threads, instead of a reader gone with the
    /// monitor still counted as running.
    pub(crate) fn iterate_guarded(
        &self,
        st: &mut ReaderState,
        timeout_ms: i32,
    ) -> Result<usize, Error> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.iterate(st, timeout_ms)
        })) {
            Ok(r) => r,
            Err(_) => Err(self.engine_panicked("the reader")),
        }
    }

    /// A panic in the engine on `which` thread: stop with ENOTRECOVERABLE;
    /// the error to return.
    pub(crate) fn engine_panicked(&self, which: &str) -> Error {
        self.log(format_args!(
            "internal error: {which} panicked; the monitor stops (ENOTRECOVERABLE)"
        ));
        self.request_stop(Some(libc::ENOTRECOVERABLE));
        Error::os(
            "monitor",
            libc::ENOTRECOVERABLE,
            format!("{which} panicked (a bug in libuffd): the monitor stopped"),
        )
    }

    /// One round of the loop: wait up to `timeout_ms` for input, read and
    /// handle it, retry what waits. Returns the number of ready sources.
    pub(crate) fn iterate(&self, st: &mut ReaderState, timeout_ms: i32) -> Result<usize, Error> {
        // While faults wait for a retry, wake up at least every millisecond.
        let timeout = if st.retry.is_empty() {
            timeout_ms
        } else if timeout_ms < 0 {
            1
        } else {
            timeout_ms.min(1)
        };
        // poll(2), not the epoll set: on the fault path it costs the
        // faulting thread less (measured: see bench/), and the set is small.
        let served = self.uffds.read_ok().len();
        if st.pollfds.capacity() < served + 2 || st.poll_ids.capacity() < served {
            // Larger arrays from the reserve, rather than growing these
            // here: the reader must not allocate (reserve.rs).
            self.reserve.swap_poll(&mut st.pollfds, &mut st.poll_ids);
        }
        st.pollfds.clear();
        st.poll_ids.clear();
        st.pollfds.push(libc::pollfd {
            fd: self.wake_fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        // The blocking uffds, through their edge-triggered set; only when
        // there are any (poll(2) skips a negative fd, and polling an epoll
        // set costs the fault path a little).
        st.pollfds.push(libc::pollfd {
            fd: -1,
            events: libc::POLLIN,
            revents: 0,
        });
        {
            let list = self.uffds.read_ok();
            for (id, s) in list.iter().enumerate() {
                match s {
                    Some(s) if s.blocking => st.pollfds[1].fd = self.edges.as_raw_fd(),
                    Some(s) => {
                        st.pollfds.push(libc::pollfd {
                            fd: s.uffd.as_raw_fd(),
                            events: libc::POLLIN,
                            revents: 0,
                        });
                        st.poll_ids.push(id as u32);
                    }
                    None => {}
                }
            }
        }
        let mut n = 0;
        if self.config.spin_us > 0 && timeout != 0 {
            n = self.spin(&mut st.pollfds)?;
        }
        if n == 0 {
            n = match wait::poll_fds(&mut st.pollfds, timeout) {
                Ok(n) => n,
                Err(libc::EINTR) => 0,
                Err(e) => return Err(Error::os("poll", e, "")),
            };
        }
        if n > 0 {
            if st.pollfds[0].revents != 0 {
                wait::eventfd_drain(self.wake_fd.as_fd());
            }
            if st.pollfds[1].revents != 0 {
                self.drain_edges(st)?;
            }
            for i in 2..st.pollfds.len() {
                if st.pollfds[i].revents != 0 {
                    let id = st.poll_ids[i - 2];
                    self.drain_uffd(st, id)?;
                }
            }
        }
        self.run_retries(st);
        Ok(n)
    }

    /// Read every blocking uffd that had new messages since its last read
    /// (an edge in `edges`): each is drained until a read comes back short
    /// or `drain_uffd`'s bound, which re-arms its edge, so that no message
    /// waits for a later one.
    fn drain_edges(&self, st: &mut ReaderState) -> Result<(), Error> {
        let mut tokens = [0u64; 16];
        // Bounded: the set stays readable (poll(2) sees it next round)
        // while edges are left in it.
        for _ in 0..DRAIN_BATCHES {
            let n = match wait::epoll_wait(self.edges.as_fd(), &mut tokens, 0) {
                Ok(n) => n,
                Err(libc::EINTR) => continue,
                Err(e) => return Err(Error::os("epoll_wait", e, "")),
            };
            for &t in &tokens[..n] {
                self.drain_uffd(st, (t - 1) as u32)?;
            }
            if n < tokens.len() || self.stop.load(Acquire) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Busy-poll the set for up to `spin_us`; the number of ready entries
    /// (0: nothing came). poll(2) with a zero timeout reads a userfaultfd's
    /// readiness without taking its locks, where a read(2) that finds
    /// nothing takes the wait-queue lock every faulting thread needs: a
    /// spinning reader must not hammer it.
    fn spin(&self, fds: &mut [libc::pollfd]) -> Result<usize, Error> {
        let deadline = wait::now_ns() + self.config.spin_us as u64 * 1000;
        loop {
            match wait::poll_fds(fds, 0) {
                Ok(0) | Err(libc::EINTR) => {}
                Ok(n) => return Ok(n),
                Err(e) => return Err(Error::os("poll", e, "")),
            }
            if self.stop.load(Acquire) || wait::now_ns() >= deadline {
                return Ok(0);
            }
            std::hint::spin_loop();
        }
    }
}
