// SPDX-License-Identifier: MIT OR Apache-2.0
//! Reserves that let the reader serve forks and layout events without
//! allocating (docs/kernel-semantics.md §6).
//!
//! glibc's fork() takes the malloc locks before it enters the kernel, and
//! with EVENT_FORK the kernel then waits inside fork() until the FORK
//! message is read. If the reader allocates (or waits for a lock held by a
//! thread that allocates) while another thread of the monitored process is
//! inside its next fork(), neither ever proceeds. Serving a fork used to
//! allocate on the reader (the child's `Arc<Uffd>`, a temporary vector of
//! region copies, vector growth in the uffd list, region table and poll
//! set): back-to-back forks pinned to one CPU hung
//! (tests/monitor_events.rs fork_back_to_back_one_cpu).
//!
//! Now the reader draws on reserves: pre-made handles for children's
//! userfaultfds (turned into the child's in place), spare capacity in the
//! uffd list and region table, and spare poll arrays. A helper thread
//! ("uffd-reserve") refills them, allocating only while holding no lock the
//! reader takes. When no pre-made handle is left, the reader still
//! registers the child in order (an empty uffd slot and the copies of its
//! parent's regions, made at FORK time, before any later event) and leaves
//! the handle to the helper, which fills the slot. Only without a helper
//! (dispatch mode) or with every spare used up does the reader allocate.
//!
//! The rule, its exceptions and the lock order: docs/DESIGN.md §3.5, §4.

use super::unpoisoned::{unpoisoned, LockOk, RwOk};
use super::{Inner, Served};
use crate::sys::wait;
use crate::uffd::{Features, Range, Uffd};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{
    AtomicBool,
    Ordering::{Acquire, Release},
};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

/// Child handles kept ready, and spare uffd slots.
pub(crate) const STOCK: usize = 8;
/// Spare region-table entries beyond the forks' needs (event splits).
const SPARE_REGIONS: usize = 16;
/// Children the reader can register without a handle (slot and region
/// copies made at FORK time, the handle left to the helper): room the
/// helper keeps ready in the uffd list and region table, and the capacity
/// of the pending queue. A fork storm with four faulting threads drained
/// the old reserve of 8 in a few dozen forks, and the reader then
/// allocated while the next fork held the malloc locks: 1000-fork storms
/// hung (tests/monitor_fork_storm.rs).
pub(crate) const PENDING: usize = 1024;
/// How long the reader waits (yielding, holding nothing, allocating
/// nothing) for room when even `PENDING` is used up, before it leaves
/// that child unserved (counted and logged) rather than allocate.
const ROOM_WAIT: Duration = Duration::from_secs(1);

pub(crate) struct Reserve {
    /// Pre-made handles (each holding a placeholder eventfd); fixed
    /// capacity `STOCK`, so pushing and popping never allocate.
    stock: Mutex<Vec<Arc<Uffd>>>,
    /// Children whose uffd slot and regions the reader set up without a
    /// handle: (slot, fd, parent). Fixed capacity `PENDING`.
    pending: Mutex<Vec<(u32, OwnedFd, Arc<Uffd>)>>,
    /// The helper runs (else nothing would fill pending slots).
    helper: AtomicBool,
    /// Spare poll arrays (fds, ids) for the reader to swap in when its own
    /// are too small.
    poll: Mutex<(Vec<libc::pollfd>, Vec<u32>)>,
    nudged: Mutex<bool>,
    wake: Condvar,
}

impl Reserve {
    pub fn new() -> Reserve {
        Reserve {
            stock: Mutex::new(Vec::with_capacity(STOCK)),
            pending: Mutex::new(Vec::with_capacity(PENDING)),
            helper: AtomicBool::new(false),
            poll: Mutex::new((Vec::new(), Vec::new())),
            nudged: Mutex::new(false),
            wake: Condvar::new(),
        }
    }

    /// A pre-made handle, if one is ready (never blocks).
    fn take_stock(&self) -> Option<Arc<Uffd>> {
        self.stock.try_lock().ok()?.pop()
    }

    /// Swap the spare poll arrays in if they are larger than the reader's
    /// (never blocks, never allocates).
    pub fn swap_poll(&self, fds: &mut Vec<libc::pollfd>, ids: &mut Vec<u32>) {
        if let Ok(mut p) = self.poll.try_lock() {
            if p.0.capacity() > fds.capacity() && p.1.capacity() > ids.capacity() {
                p.0.clear();
                p.1.clear();
                std::mem::swap(&mut p.0, fds);
                std::mem::swap(&mut p.1, ids);
            }
        }
        self.nudge();
    }

    /// Ask the helper to refill (after the reader used a reserve).
    pub fn nudge(&self) {
        // lock(), not try_lock(): a lost nudge left the helper asleep while
        // forks emptied the stock. Its holder never allocates under it.
        let mut n = self.nudged.lock_ok();
        *n = true;
        self.wake.notify_one();
    }

    fn wait_nudge(&self, timeout: Duration) {
        let mut n = self.nudged.lock_ok();
        if !*n {
            n = unpoisoned(self.wake.wait_timeout(n, timeout)).0;
        }
        *n = false;
    }
}

/// Make room for `extra` more elements in the vector behind `lock`,
/// allocating only while the lock is not held (the reader may be waiting
/// for it, and an allocation may be waiting for a fork that waits for the
/// reader). Without spare room it allocates, outside the lock, and moves
/// the elements over under it; the old buffer is freed outside it too.
pub(crate) fn grow<G, T>(lock: &RwLock<G>, vec: fn(&mut G) -> &mut Vec<T>, extra: usize) {
    loop {
        let want = {
            let mut g = lock.write_ok();
            let v = vec(&mut g);
            if v.capacity() - v.len() >= extra {
                return;
            }
            (v.len() + extra) * 2
        };
        let mut fresh: Vec<T> = Vec::with_capacity(want);
        {
            let mut g = lock.write_ok();
            let v = vec(&mut g);
            if v.capacity() - v.len() < extra && fresh.capacity() >= v.len() + extra {
                fresh.append(v);
                std::mem::swap(v, &mut fresh);
            }
        }
        drop(fresh);
    }
}

impl Inner {
    /// Serve a forked child (FORK event `fd` from `parent`, uffd `parent_id`)
    /// with its parent's regions; its uffd id. Runs on the reader: no
    /// allocation while the reserves last (see the module doc).
    pub(crate) fn serve_child(
        &self,
        parent_id: u32,
        parent: &Arc<Uffd>,
        fd: OwnedFd,
    ) -> crate::uffd::Result<Option<u32>> {
        let r = &self.reserve;
        let mut copied = false;
        let child_id = if let Some(mut handle) = r.take_stock() {
            match Arc::get_mut(&mut handle) {
                // Drops the placeholder: a close(2), no free().
                Some(u) => *u = Uffd::from_fork(fd, parent),
                None => handle = Arc::new(Uffd::from_fork(fd, parent)),
            }
            self.add_uffd(handle, true)?
        } else {
            // Never allocate here, not even as a last resort: wait (no
            // lock held) for the helper to make room, and past ROOM_WAIT
            // leave the child unserved. The wait cannot deadlock: it ends.
            let mut fd = fd;
            let started = crate::sys::wait::now_ns();
            loop {
                match self.pend_child(parent_id, parent, fd) {
                    Ok(id) => {
                        copied = true;
                        break id;
                    }
                    Err(back) => fd = back,
                }
                r.nudge();
                let waited = crate::sys::wait::now_ns().saturating_sub(started);
                if !r.helper.load(Acquire) || waited > ROOM_WAIT.as_nanos() as u64 {
                    // Counted; the helper logs it (a log line allocates).
                    drop(fd);
                    super::stats::Stats::add(&self.stats.children_dropped, 1);
                    return Ok(None);
                }
                std::thread::yield_now();
            }
        };
        if !copied {
            // A stock handle: add_uffd found room (the helper keeps
            // PENDING spare slots); the region copies likewise.
            self.regions.write_ok().duplicate(parent_id, child_id);
        }
        r.nudge();
        Ok(Some(child_id))
    }

    /// Take an empty uffd slot for a child whose handle the helper will
    /// make, queueing its fd; the fd back if there is no helper or no room
    /// without allocating.
    fn pend_child(&self, parent_id: u32, parent: &Arc<Uffd>, fd: OwnedFd) -> Result<u32, OwnedFd> {
        let r = &self.reserve;
        if !r.helper.load(Acquire) {
            return Err(fd);
        }
        let Ok(mut pending) = r.pending.try_lock() else {
            return Err(fd);
        };
        let mut list = self.uffds.write_ok();
        let mut regions = self.regions.write_ok();
        let copies = regions.iter().filter(|x| x.uffd_id == parent_id).count();
        let table = super::region::RegionTable::vec_mut(&mut regions);
        if pending.len() == pending.capacity()
            || list.len() == list.capacity()
            || table.capacity() - table.len() < copies
        {
            return Err(fd);
        }
        let id = list.len() as u32;
        list.push(None);
        // The copies of the parent's regions now, in order (before any
        // later event of the parent changes them), in room kept ready.
        regions.duplicate(parent_id, id);
        pending.push((id, fd, parent.clone()));
        Ok(id)
    }

    /// The helper's side of `pend_child`: make the handles and fill the
    /// slots, then have the reader poll them.
    fn fill_pending(&self) {
        loop {
            let item = self.reserve.pending.lock_ok().pop();
            let Some((id, fd, parent)) = item else { return };
            let uffd = Arc::new(Uffd::from_fork(fd, &parent));
            let (blocking, nowait) = match super::read_mode(&uffd, true) {
                Ok(mode) => mode,
                Err(e) => {
                    self.log(format_args!("cannot serve forked child: {e}"));
                    continue;
                }
            };
            if self.watch(&uffd, id, blocking).is_err() {
                self.log(format_args!("cannot serve forked child: epoll_ctl failed"));
            }
            {
                let mut list = self.uffds.write_ok();
                if let Some(slot @ None) = list.get_mut(id as usize) {
                    *slot = Some(Served {
                        uffd,
                        owned: true,
                        blocking,
                        nowait,
                    });
                }
            }
            wait::eventfd_signal(self.wake_fd.as_fd());
        }
    }
}

fn itself<T>(v: &mut Vec<T>) -> &mut Vec<T> {
    v
}

/// Whether any served userfaultfd can report forks (so the helper is
/// needed).
pub(crate) fn wanted(inner: &Inner) -> bool {
    inner.config.serve_forks
        && inner
            .uffds
            .read_ok()
            .iter()
            .flatten()
            .any(|s| s.uffd.features().contains(Features::EVENT_FORK))
}

/// Before the reader starts (and so before `start` returns): fill the
/// reserves and declare the helper. Starting with empty reserves, the
/// reader allocated for the first fork, racing the parent's next fork.
pub(crate) fn prepare(inner: &Inner) {
    inner.reserve.helper.store(true, Release);
    refill(inner);
}

/// The helper: refill the reserves until the monitor stops, or is
/// dropped without being stopped (it holds the monitor only while it
/// works, so that it does not keep an unused monitor alive).
pub(crate) fn run(weak: std::sync::Weak<Inner>) {
    let mut reported = (0u64, 0u64);
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.life.stop_asked() {
            inner.reserve.helper.store(false, Release);
            // Children still pending get their handles now, so that
            // stopping releases (or closes) them like every other child.
            inner.fill_pending();
            return;
        }
        inner.fill_pending();
        refill(&inner);
        inner.close_exited_children();
        inner.report_read_failures(&mut reported);
        drop(inner);
        // Not holding the monitor while asleep (see above).
        match weak.upgrade() {
            Some(i) => i.reserve.wait_nudge(Duration::from_millis(20)),
            None => return,
        }
    }
}

fn refill(inner: &Inner) {
    let r = &inner.reserve;
    // Pre-made child handles; a placeholder needs some uffd's features.
    let model = inner
        .uffds
        .read_ok()
        .iter()
        .flatten()
        .next()
        .map(|s| s.uffd.clone());
    if let Some(model) = model {
        while r.stock.lock_ok().len() < STOCK {
            let Ok(fd) = wait::eventfd() else { break };
            let a = Arc::new(Uffd::from_fork(fd, &model));
            let mut s = r.stock.lock_ok();
            if s.len() < s.capacity() {
                s.push(a);
            } else {
                drop(s);
                drop(a);
                break;
            }
        }
    }
    // Spare uffd slots.
    grow(&inner.uffds, itself, PENDING);
    // Spare region entries: STOCK forks of the uffd with the most regions,
    // plus room for the splits of layout events.
    let most = {
        let t = inner.regions.read_ok();
        let (mut most, mut run, mut last) = (0usize, 0usize, None);
        for reg in t.iter() {
            if last == Some(reg.uffd_id) {
                run += 1;
            } else {
                run = 1;
                last = Some(reg.uffd_id);
            }
            most = most.max(run);
        }
        most
    };
    grow(
        &inner.regions,
        super::region::RegionTable::vec_mut,
        PENDING * most + SPARE_REGIONS,
    );
    // Spare poll arrays for the uffds there may soon be.
    let want = inner.uffds.read_ok().len() + PENDING + 1;
    let small = {
        let p = r.poll.lock_ok();
        p.0.capacity() < want || p.1.capacity() < want
    };
    if small {
        let mut fresh = (Vec::with_capacity(want * 2), Vec::with_capacity(want * 2));
        {
            let mut p = r.poll.lock_ok();
            if p.0.capacity() < fresh.0.capacity() && p.1.capacity() < fresh.1.capacity() {
                std::mem::swap(&mut *p, &mut fresh);
            }
        }
        drop(fresh);
    }
}

/// A byte in this library's read-only data: its page is mapped in every
/// child forked from this process (as long as the child runs this
/// program) and never registered with a userfaultfd.
static PROBE: u8 = 0;

impl Inner {
    /// Close the descriptors of forked children that have exited (or
    /// exec'd). The FORK message carries no pid, so the child's userfaultfd
    /// itself is asked: UFFDIO_ZEROPAGE on a page that is mapped in the
    /// child but never registered fails with ENOENT while the child's
    /// memory lives, and with ESRCH once it is gone (the kernel checks the
    /// memory's users before it looks at the range); nothing is ever
    /// placed. Without this a child's descriptor stayed open until an
    /// operation on it happened to hit ESRCH: 300 forks left 311 fds open,
    /// and at the limit the reader's read failed with EMFILE.
    pub(crate) fn close_exited_children(&self) {
        // One slot at a time, allocating nothing under the lock: the
        // reader takes it for writing while serving a fork, and an
        // allocation here may wait for that fork's malloc locks.
        let slots = self.uffds.read_ok().len();
        let base = crate::sys::base_page_size();
        let page = (&PROBE as *const u8 as u64) & !(base - 1);
        for id in 0..slots as u32 {
            let uffd = {
                let list = self.uffds.read_ok();
                match list.get(id as usize) {
                    Some(Some(s)) if s.owned => s.uffd.clone(),
                    _ => continue,
                }
            };
            let gone = uffd
                .fill_zeropage(Range::new(page, base), crate::uffd::ZeropageMode::DONTWAKE)
                .is_err_and(|e| e.errno() == libc::ESRCH);
            if gone {
                drop(uffd);
                self.retire(id);
                super::stats::Stats::add(&self.stats.children_closed, 1);
            }
        }
    }

    /// Log the reader's failed reads (EMFILE, ENFILE) here, on the helper:
    /// the reader must not allocate, and a log line does.
    fn report_read_failures(&self, reported: &mut (u64, u64)) {
        let dropped = self.stats.children_dropped.load(Acquire);
        if dropped > reported.1 {
            self.log(format_args!(
                "{} forked children left unserved: a fork storm outran the reserves for a second",
                dropped - reported.1
            ));
            reported.1 = dropped;
        }
        let reported = &mut reported.0;
        let now = self.stats.read_failures.load(Acquire);
        if now > *reported {
            self.log(format_args!(
                "{} read(2) of a userfaultfd failed for want of a file descriptor (EMFILE/ENFILE: a forked child's descriptor could not be made); retried, and children that exited are being closed",
                now - *reported
            ));
            *reported = now;
        }
    }
}
