// SPDX-License-Identifier: MIT OR Apache-2.0
//! A fault: from its message to its thread released.
//!
//! `handle_fault` looks the fault up in the region table (under the layout
//! gate), serves it from the region's page source (resolve.rs) or calls the
//! fault callback (`run_callback`), and `finish`es it: counts the outcome,
//! retries EAGAIN (`again`: the reader queues it, a worker backs off) and
//! applies the error policy (`fail`), which always releases the faulting
//! thread, and stops the monitor when it cannot (`unreleasable`). Used by
//! the reader (reader.rs) and the workers (pool.rs) alike.

use super::config::{ErrorPolicy, Verdict};
use super::region::Source;
use super::resolve::{Action, Applied, Failed, FaultCtx, FaultToken, RegionInfo, Scratch};
use super::stats::Stats;
use super::unpoisoned::{LockOk, RwOk};
use super::Inner;
use crate::sys::wait;
use crate::uffd::{Error, Fault, FaultFlags};
use std::cell::Cell;
use std::sync::atomic::Ordering::Relaxed;

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

impl Inner {
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
                // A write-protect fault places nothing: it neither uses
                // nor moves the fault-around window (in a scan that writes
                // some pages, their WP faults would each halve it).
                let window = if f.flags.contains(FaultFlags::WP) {
                    1
                } else {
                    self.window_for(r, index).min(left).max(1)
                };
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
                    r.budget.clone(),
                )
            });
            break;
        }
        let (source, ps, page, offset, window, info, budget) = match view {
            Some((s, ps, page, off, w, info, b)) => (s, ps, page, off, w, Some(info), b),
            None => {
                let ps = self.page_size_outside(p.uffd_id, &f);
                (
                    Source::Callback,
                    ps,
                    f.address & !(ps - 1),
                    0,
                    1,
                    None,
                    None,
                )
            }
        };
        let token = FaultToken {
            uffd_id: p.uffd_id,
            page,
            page_size: ps,
        };
        if f.flags.contains(FaultFlags::WP) && self.dirty.tracks_sync(token.uffd_id, token.page) {
            drop(gate); // dirty.rs: on_write runs outside the gate
            return self.finish(p, token, self.dirty_write(token), on_again);
        }
        let outcome = if f.flags.contains(FaultFlags::WP) && source != Source::Callback {
            // A budgeted region's page is marked dirty first (budget.rs).
            self.unprotect_fault(budget.as_ref(), token)
        } else if let Some(b) = budget.filter(|b| b.index(page).is_some()) {
            // Evicting may wait on the sink: not under the gate.
            drop(gate);
            let fill = super::budget::Fill {
                source,
                offset,
                write: f.flags.contains(FaultFlags::WRITE),
                window,
            };
            let outcome = self.serve_budgeted(scratch, &b, token, fill);
            return self.finish(p, token, outcome, on_again);
        } else if f.flags.contains(FaultFlags::MINOR) && source != Source::Callback {
            let cm = self.dirty.copy_mode(token.uffd_id, token.page);
            self.serve_source(scratch, token, Source::PageCache, offset, window, cm)
        } else if source == Source::Callback {
            drop(gate);
            return self.run_callback(scratch, p, token, info, on_again);
        } else if let Source::Remote {
            fd, offset: base, ..
        } = source
        {
            drop(gate);
            return self.remote_fault(p, token, fd, base.wrapping_add(offset), window, on_again);
        } else {
            let cm = self.dirty.copy_mode(token.uffd_id, token.page);
            self.serve_source(scratch, token, source, offset, window, cm)
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
            if p.errors + 1 < ERROR_TRIES && !self.life.stop_asked() {
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
        if tries < UNRELEASABLE_TRIES || self.life.stop_asked() {
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
                &Error::invalid(
                    "the fault callback said it resolved the fault through the monitor but did not \
                     (a page placed with the handle's own operations is ResolvedByCaller)",
                ),
                on_again,
            ),
            Verdict::ResolvedByCaller => {
                // Trusted (see the verdict): wake, count, done.
                let _ = self.apply(token, Action::Wake);
                self.count_applied(Applied::Resolved(0), token.page_size);
                self.stats
                    .record_latency(wait::now_ns().saturating_sub(p.t_read));
                Handled::Done
            }
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
}
