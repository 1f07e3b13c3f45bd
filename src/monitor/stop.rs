// SPDX-License-Identifier: MIT OR Apache-2.0
//! What the end of a run does to the memory of the monitor's regions
//! (`StopPolicy`), and what a restart does to the threads a stop left
//! blocked.
//!
//! At the end of a run nobody reads the userfaultfds any more: a thread
//! blocked in a fault (its message still queued, read but not resolved,
//! waiting for a retry, or deferred by a callback that never completed it)
//! stays blocked unless something wakes it. Each region's policy decides:
//! leave it blocked (`Block`), poison the pages not yet placed so that the
//! thread gets SIGBUS (`Sigbus`), or unregister so that it reads zeros
//! (`ZeroFill`, only on request for regions whose pages hold data).

use super::config::StopPolicy;
use super::fault::Pending;
use super::reader::{HoldingLayout, ReaderState};
use super::region::{Region, Source};
use super::stats::Stats;
use super::unpoisoned::{LockOk, RwOk};
use super::Inner;
use crate::uffd::{Error, Range, Uffd};
use std::sync::atomic::Ordering::Release;

/// At most this many reads per userfaultfd when collecting the faults
/// still queued at a stop (each up to a batch): bounded, whatever the
/// faulting threads do meanwhile.
const STOP_DRAIN_READS: usize = 64;

/// What the stop did to one region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Blocked,
    Poisoned,
    Zeroed,
}

impl Inner {
    /// A callback deferred the fault at `t` (counted at a stop if it is
    /// still open then). No allocation.
    pub(crate) fn deferred_open(&self, t: super::FaultToken) {
        let mut open = self.deferred_open.lock_ok();
        if open.len() < open.capacity() {
            open.push((t.uffd_id, t.page));
        } else {
            Stats::add(&self.deferred_untracked, 1);
        }
    }

    /// A deferred fault is being completed.
    pub(crate) fn deferred_done(&self, t: super::FaultToken) {
        let mut open = self.deferred_open.lock_ok();
        if let Some(i) = open
            .iter()
            .position(|&(id, page)| id == t.uffd_id && page == t.page)
        {
            open.swap_remove(i);
        }
    }

    /// The policy that applies to `r` at a stop (`Auto` resolved).
    fn stop_policy_of(&self, r: &Region) -> StopPolicy {
        match r.stop_policy.unwrap_or(self.config.stop_policy) {
            StopPolicy::Auto => match r.source {
                Source::Zero | Source::PageCache => StopPolicy::ZeroFill,
                Source::Buffer { .. }
                | Source::Fd { .. }
                | Source::Callback
                | Source::Remote { .. } => StopPolicy::Sigbus,
            },
            p => p,
        }
    }

    /// Apply the stop policies once a run has ended (its threads joined):
    /// count the faults still pending, poison or unregister each region as
    /// its policy says (a region released so is dropped from the table: a
    /// restart serves the others and those added since), wake the threads
    /// of faults read but never resolved (deferred ones too, even where
    /// their range was unmapped meanwhile) unless the monitor's policy is
    /// `Block`, and close the forked children's descriptors.
    pub(crate) fn release_at_stop(&self) {
        let mut guard = self.reader.lock_ok();
        let st = &mut *guard;
        if let Some(p) = st.kept.take() {
            if st.retry.len() < st.retry.capacity() {
                st.retry.push(p);
            }
        }
        let mut uncounted = self.collect_queued(st);
        let regions: Vec<(u32, u64, u64, u64, StopPolicy)> = {
            let t = self.regions.read_ok();
            t.iter()
                .map(|r| {
                    (
                        r.uffd_id,
                        r.start,
                        r.len,
                        r.page_size,
                        self.stop_policy_of(r),
                    )
                })
                .collect()
        };
        let mut outcomes: Vec<(u32, u64, u64, Outcome)> = Vec::with_capacity(regions.len());
        for (id, start, len, ps, policy) in regions {
            let Some(u) = self.uffd(id) else { continue };
            let outcome = match policy {
                StopPolicy::Block | StopPolicy::Auto => Outcome::Blocked,
                StopPolicy::ZeroFill => Outcome::Zeroed,
                StopPolicy::Sigbus => match poison_missing(&u, start, len, ps) {
                    Ok(()) => Outcome::Poisoned,
                    Err(e) => {
                        self.log(format_args!(
                            "stop: cannot poison [{start:#x}, +{len:#x}) ({e}); its blocked threads stay blocked until the monitor runs again or the handle is freed"
                        ));
                        Outcome::Blocked
                    }
                },
            };
            if outcome != Outcome::Blocked {
                if let Err(e) = u.unregister(Range::new(start, len)) {
                    self.log(format_args!(
                        "stop: unregister [{start:#x}, +{len:#x}): {e}"
                    ));
                }
                self.regions.write_ok().unmap(id, start, start + len);
            }
            outcomes.push((id, start, start + len, outcome));
        }
        let block = self.config.stop_policy == StopPolicy::Block;
        // A fault in no region (its range unmapped or moved since, or never
        // in one) is released by the wake below into an ordinary fault,
        // unless the monitor's policy is Block.
        let outside = if block {
            Outcome::Blocked
        } else {
            Outcome::Zeroed
        };
        let deferred: Vec<(u32, u64)> = std::mem::take(&mut *self.deferred_open.lock_ok());
        {
            let mut open = self.deferred_open.lock_ok();
            open.reserve(super::DEFERRED_TRACKED);
        }
        uncounted += self
            .deferred_untracked
            .swap(0, std::sync::atomic::Ordering::AcqRel);
        let pending = st
            .retry
            .drain(..)
            .chain(st.retry_next.drain(..))
            .map(|p| (p.uffd_id, p.fault.address))
            .chain(deferred);
        for (uffd_id, page) in pending {
            let outcome = outcomes
                .iter()
                .find(|&&(id, s, e, _)| id == uffd_id && s <= page && page < e)
                .map_or(outside, |o| o.3);
            let counter = match outcome {
                Outcome::Blocked => &self.stats.stop_blocked,
                Outcome::Poisoned => &self.stats.stop_sigbus,
                Outcome::Zeroed => &self.stats.stop_zeroed,
            };
            Stats::add(counter, 1);
        }
        // Faults that found no room on a list to be classified: counted
        // by the monitor's own policy.
        if uncounted > 0 {
            let counter = match self.config.stop_policy {
                StopPolicy::Block => &self.stats.stop_blocked,
                StopPolicy::ZeroFill => &self.stats.stop_zeroed,
                StopPolicy::Auto | StopPolicy::Sigbus => &self.stats.stop_sigbus,
            };
            Stats::add(counter, uncounted);
        }
        let served: Vec<(u32, std::sync::Arc<Uffd>, bool)> = {
            let list = self.uffds.read_ok();
            list.iter()
                .enumerate()
                .filter_map(|(i, s)| s.as_ref().map(|s| (i as u32, s.uffd.clone(), s.owned)))
                .collect()
        };
        for (id, u, owned) in served {
            if !block {
                // Faults read and never resolved (deferred by a callback
                // that did not complete them, say) wait on the uffd, not
                // on a range: their range may be unmapped by now, and an
                // unregister does not reach them. A wake of the whole
                // address space does; a thread whose page is still served
                // by a blocked region faults again and waits again.
                if !wake_all(&u) {
                    self.log(format_args!(
                        "stop: cannot wake the threads of userfaultfd {id}"
                    ));
                }
            }
            if owned && !block {
                self.retire(id);
            }
        }
    }

    /// Read the fault messages still queued on every served uffd (events
    /// among them are applied as usual) onto the retry list, where
    /// `release_at_stop` counts them. Bounded. Returns how many faults did
    /// not fit on the list.
    fn collect_queued(&self, st: &mut ReaderState) -> u64 {
        let mut lost = 0;
        let n_uffds = self.uffds.read_ok().len();
        for id in 0..n_uffds as u32 {
            let Some((uffd, nowait)) = self.uffd_to_read(id) else {
                continue;
            };
            for _ in 0..STOP_DRAIN_READS {
                let gate = self.layout.write_ok();
                let held = HoldingLayout::new();
                let n = match super::reader::read_ready(&uffd, nowait, &mut st.msgs) {
                    Ok(super::reader::ReadOutcome::Msgs(n)) => n,
                    Ok(super::reader::ReadOutcome::NotUffd(why)) => {
                        self.log(format_args!("stop: {why}"));
                        0
                    }
                    Ok(super::reader::ReadOutcome::NoFd) => 0,
                    Err(e) => {
                        self.log(format_args!("stop: {e}"));
                        0
                    }
                };
                let t_read = crate::sys::wait::now_ns();
                for i in 0..n {
                    let Some(ev) = st.msgs[i].take_event(uffd.features()) else {
                        continue;
                    };
                    match ev {
                        crate::uffd::Event::Pagefault(fault) => {
                            Stats::add(&self.stats.faults, 1);
                            let p = Pending::fresh(id, fault, t_read);
                            if st.retry.len() < st.retry.capacity() {
                                st.retry.push(p);
                            } else {
                                lost += 1;
                            }
                        }
                        ev => self.handle_event(st, &uffd, id, ev, t_read),
                    }
                }
                drop(held);
                drop(gate);
                if n < st.msgs.len() {
                    break;
                }
            }
        }
        lost
    }

    /// At the start of a run that follows another: forget the old stop,
    /// and wake the threads the old stop left blocked (their messages were
    /// read, or are queued) so that they fault again and are served.
    /// The stop itself was forgotten already (`Lifecycle::rerun`).
    pub(crate) fn prepare_rerun(&self) {
        self.stop_errno.store(0, Release);
        let served: Vec<std::sync::Arc<Uffd>> = {
            let list = self.uffds.read_ok();
            list.iter().flatten().map(|s| s.uffd.clone()).collect()
        };
        for u in served {
            let _ = wake_all(&u);
        }
    }
}

/// Poison every page of `[start, start+len)` that is not mapped yet
/// (pages already there are skipped: EEXIST), without waking.
fn poison_missing(u: &Uffd, start: u64, len: u64, ps: u64) -> Result<(), Error> {
    let ps = if ps == 0 {
        crate::sys::base_page_size()
    } else {
        ps
    };
    let mode = crate::uffd::PoisonMode::DONTWAKE;
    let mut off = 0;
    let mut stalls = 0;
    while off < len {
        match u.fill_poison(Range::new(start + off, len - off), mode) {
            Ok(p) if p.done > 0 => off += p.done,
            Err(e) if e.is_exists() => off += ps,
            Ok(_) => stalls += 1,
            Err(e) if e.errno() == libc::EAGAIN && stalls < 100 => stalls += 1,
            Err(e) => return Err(e),
        }
        if stalls >= 100 {
            return Err(Error::os(
                "UFFDIO_POISON",
                libc::EAGAIN,
                "no progress after 100 tries",
            ));
        }
        if stalls > 0 {
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
    }
    Ok(())
}

/// UFFDIO_WAKE over the whole user address space: every thread blocked in
/// a fault of `u`, wherever. The top of the address space is not known
/// beforehand (47, 48, 52 or 56 bits, and the lowest mappable address is
/// a sysctl): the largest range the kernel takes. False if none.
fn wake_all(u: &Uffd) -> bool {
    let base = crate::sys::base_page_size();
    for top in [1u64 << 56, 1 << 52, 1 << 48, 1 << 47, 1 << 39] {
        for low in [base, 1 << 16, 1 << 20] {
            let end = top - base;
            if u.wake(Range::new(low, end - low)).is_ok() {
                return true;
            }
        }
    }
    false
}
