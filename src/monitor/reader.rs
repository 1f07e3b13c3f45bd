// SPDX-License-Identifier: MIT OR Apache-2.0
//! The reader: poll, read, decode, apply the layout events, hand off.
//!
//! One thread at a time (the reader: the monitor's thread, or with
//! workers the worker that leads, pool.rs) polls the userfaultfds
//! (`iterate`, `drain_edges` for the blocking ones), reads their messages
//! in batches (`drain_uffd`, `read_ready`) and applies each batch's events
//! itself, under the layout gate, before any of its faults (`handle_event`),
//! so that fork, mremap, munmap and madvise in the monitored program always
//! make progress. Each fault then goes to the workers (`hand_off`, when
//! `hand_off_pays`) or to the fault path in place (fault.rs). A fault that
//! hits EAGAIN (an event pending) goes to a retry list that the reader
//! works through after reading the events that caused it (`run_retries`).

use super::config::{ForkVerdict, RemovePolicy};
use super::fault::{OnAgain, Pending};
use super::region::Source;
use super::resolve::Scratch;
use super::stats::Stats;
use super::unpoisoned::{LockOk, RwOk};
use super::Inner;
use crate::sys::wait;
use crate::uffd::{Error, Event, Fault, FaultFlags, Msg, Range, Uffd};
use std::cell::Cell;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;

/// epoll token of the monitor's own eventfd (stop and nudges) in the set
/// behind `Monitor::fd`; a uffd's token is its id + 1.
pub(crate) const WAKE_TOKEN: u64 = 0;
/// epoll token of `Inner::edges` (the blocking userfaultfds) in that set.
pub(crate) const EDGES_TOKEN: u64 = u64::MAX;

/// The most batches `drain_uffd` reads from one uffd in one call: the
/// reader then goes back to poll, sees stop and the other descriptors,
/// and comes back if there is more.
pub(crate) const DRAIN_BATCHES: u32 = 16;

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

    /// Hand a fault to the workers, if there are any: the first of a
    /// batch the reading worker keeps for itself (`ReaderState::kept`),
    /// the rest go to the queue (woken by `wake_pool` once the batch is
    /// read). False: resolve it in place.
    pub(crate) fn hand_off(&self, st: &mut ReaderState, p: Pending) -> bool {
        let pool = self.pool.lock_ok();
        let Some(pool) = pool.as_ref() else {
            return false;
        };
        let taken = if st.kept.is_none() {
            st.kept = Some(p);
            true
        } else if pool.push(p) {
            st.queued += 1;
            true
        } else {
            false
        };
        if taken {
            Stats::add(&self.stats.handed_off, 1);
        }
        taken
    }

    /// Wake workers for `n` faults queued from one batch.
    pub(crate) fn wake_pool(&self, n: usize) {
        if n > 0 {
            if let Some(pool) = self.pool.lock_ok().as_ref() {
                pool.wake(n);
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
            if self.life.stop_asked() {
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
                self.budget_forget(id, from, from + len);
                self.regions.write_ok().remap(id, from, to, len);
                self.call_quietly(|| self.handler.on_remap(id, from, to, len));
            }
            Event::Remove { start, end } => {
                Stats::add(&self.stats.removes, 1);
                if self.budget_on_remove(id, start, end) {
                    // The evictor's own drop of a budgeted page (budget.rs).
                    return;
                }
                match self.config.remove_policy {
                    RemovePolicy::Refill => {}
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
                self.budget_forget(id, start, end);
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
            if self.life.stop_asked() && self.uffd(p.uffd_id).is_none() {
                continue;
            }
            if p.due_ns > now && !self.life.stop_asked() {
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
            if n < tokens.len() || self.life.stop_asked() {
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
            if self.life.stop_asked() || wait::now_ns() >= deadline {
                return Ok(0);
            }
            std::hint::spin_loop();
        }
    }
}
