// SPDX-License-Identifier: MIT OR Apache-2.0
//! The monitor: a fault-handling engine over one or more userfaultfds.
//!
//! Give it regions (address ranges of a uffd and where their pages come
//! from: a buffer, a file, zeros, or a callback) and run it, on the
//! caller's thread (`run`), on its own threads (`start`), or step by step
//! from the caller's own event loop (`fd` + `dispatch`). It reads events on
//! its own thread, applies the kernel's race rules (EEXIST, EAGAIN, partial
//! progress, ENOENT, ESRCH), keeps its region table right across fork,
//! mremap, munmap and madvise, and never leaves a faulting thread blocked:
//! a fault is resolved, or the thread gets SIGBUS (or, on stop, released).
//!
//! Delivery order. Each read(2) returns a batch of messages of one
//! userfaultfd. The batch's events (FORK, REMAP, REMOVE, UNMAP) are applied
//! to the region table, and their callbacks called, in the kernel's order,
//! before any of its faults is served; the faults are then served against
//! the new layout, a fault reported more than once in the batch (same uffd,
//! address and flags) only once (`StatsSnapshot::coalesced`), and a fault
//! that meets an event not yet read (EAGAIN) again after the next read.
//! Why: reading an event completes it, so the thread that called madvise,
//! mremap, munmap or fork goes on at once and a REMOVE's range is zapped
//! then; a fault of the batch served in message order, from the old
//! layout, could place stale source data after the zap (the madvise caller
//! must read zeros) or miss a moved region. The batch's faults were raised
//! before its events were read, so the new layout is a valid answer for
//! them. Duplicates are coalesced because one resolution wakes every
//! thread waiting on the page; the others would only get EEXIST. (Also in
//! libuffd(7), MONITOR DELIVERY ORDER.)
//!
//! Where things are: the reader (poll, read, apply events, hand off) in
//! reader.rs; a fault (lookup, source or callback, retry and error
//! policy) in fault.rs; the ioctls that resolve it and the kernel's race
//! rules in resolve.rs; the states of a run (Idle, Starting, Running,
//! Stopping, Stopped) in lifecycle.rs; the end of a run in stop.rs; the
//! workers in pool.rs. Threads, locks, lifecycle and the rules the engine
//! keeps: docs/DESIGN.md §3 and §5.
//!
//! ```
//! use std::sync::Arc;
//! use uffd::monitor::{Config, DefaultHandler, Monitor, RegionOptions, Source};
//! use uffd::{Features, HandedOver, OpenFlags, OpenOptions, Range, RegisterMode, Uffd};
//!
//! let uffd = Uffd::open(&OpenOptions {
//!     flags: OpenFlags::USER_ONLY | OpenFlags::NONBLOCK,
//!     features: Features::empty(),
//!     required: Features::empty(),
//! })?;
//! let len = 4 * 4096;
//! // SAFETY: a fresh anonymous mapping, used only through raw pointers.
//! let mem = unsafe {
//!     libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE,
//!                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
//! };
//! assert_ne!(mem, libc::MAP_FAILED);
//! // Its pages come from this snapshot, at the first access.
//! let snapshot: Vec<u8> = (0..len).map(|i| (i / 4096) as u8 + 1).collect();
//!
//! let monitor = Monitor::new(Config::default(), Box::new(DefaultHandler))?;
//! let id = monitor.add_uffd(Arc::new(uffd))?;
//! // SAFETY: no Rust value lives in the mapping: it is handed over.
//! let memory = unsafe { HandedOver::new(Range::of_ptr(mem, len)) };
//! let opts = RegionOptions {
//!     source: Source::Buffer { addr: snapshot.as_ptr() as u64, len: len as u64 },
//!     register: RegisterMode::MISSING,
//!     ..RegionOptions::default()
//! };
//! monitor.add_region(id, memory, opts)?;
//! let running = monitor.start()?;
//!
//! // SAFETY: reads of the mapping, which the monitor fills on demand.
//! let third = unsafe { *(mem as *const u8).add(2 * 4096 + 5) };
//! assert_eq!(third, 3);
//! assert!(monitor.stats().faults >= 1);
//!
//! monitor.stop();
//! running.wait()?;
//! drop(monitor);
//! // SAFETY: the mapping made above, no longer served or used.
//! unsafe { libc::munmap(mem, len) };
//! # Ok::<(), uffd::Error>(())
//! ```

mod budget;
mod config;
mod dirty;
mod fault;
mod lifecycle;
mod peer;
mod pool;
mod prefetch;
mod reader;
mod region;
mod remote;
mod reserve;
mod resolve;
mod snapshot;
mod stats;
mod stop;
mod unpoisoned;

pub use budget::{Sink, Writeback};
pub use config::{
    Config, DefaultHandler, ErrorPolicy, ForkVerdict, Handler, RemovePolicy, StopPolicy, Verdict,
};
pub use dirty::DirtyPath;
pub use peer::PeerWatch;
pub use region::Source;
pub use remote::serve_pages;
pub use resolve::{Action, Applied, FaultCtx, FaultToken, RegionInfo};
pub use snapshot::{Snapshot, SnapshotDest};
pub(crate) use stats::counters;
pub use stats::{StatsSnapshot, LATENCY_BUCKETS};

use crate::sys::wait;
use crate::uffd::{Error, HandedOver, Range, RegisterMode, Result, Uffd};
use once_cell::sync::OnceCell;
use reader::{ReaderState, EDGES_TOKEN, WAKE_TOKEN};
use region::{Region, RegionTable};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{
    AtomicU64,
    Ordering::{AcqRel, Acquire, Release},
};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use unpoisoned::{LockOk, RwOk};

/// Room reserved up front for uffds and regions, so that serving a fork
/// (which adds both) does not allocate in the common case.
const RESERVED: usize = 64;

pub(crate) struct Served {
    pub uffd: Arc<Uffd>,
    /// The monitor created it (a forked child's): close it when retired.
    pub owned: bool,
    /// Its file is blocking (no O_NONBLOCK, as read when it was added):
    /// poll(2) reports POLLERR for it at all times, so it is watched
    /// through `Inner::edges` and read with RWF_NOWAIT.
    pub blocking: bool,
    /// Its file takes RWF_NOWAIT reads (`sys::read::nowait_supported`).
    pub nowait: bool,
}

pub(crate) struct Inner {
    pub config: Config,
    pub handler: Box<dyn Handler>,
    pub uffds: RwLock<Vec<Option<Served>>>,
    pub regions: RwLock<RegionTable>,
    pub wake_fd: OwnedFd,
    pub epoll: OwnedFd,
    /// Edge-triggered epoll set of the blocking userfaultfds (token: id +
    /// 1): an event per new message, where poll(2) on the descriptor
    /// itself only says POLLERR. It is in `epoll` and in the reader's
    /// poll set.
    pub edges: OwnedFd,
    /// Idle, Starting, Running, Stopping, Stopped (lifecycle.rs).
    pub life: lifecycle::Lifecycle,
    pub stop_errno: AtomicU64,
    pub stats: stats::Stats,
    pub zero_huge: OnceCell<wait::ScratchMap>,
    /// What the reader draws on to serve forks without allocating.
    pub reserve: reserve::Reserve,
    /// The reader's state; holding it is being the reader (the monitor's
    /// thread, a worker that leads, or a `dispatch` caller).
    pub reader: Mutex<ReaderState>,
    /// The layout gate. Whoever serves a fault from a region's source
    /// holds it shared from the region lookup to the ioctl that places the
    /// data; the reader holds it exclusive while it reads messages and
    /// applies the layout events (REMOVE, UNMAP, REMAP, FORK) among them.
    /// Reading an event completes it: madvise(DONTNEED) then zaps the
    /// range and returns. Without the gate, a worker (or the prefetcher)
    /// that looked the region up before the REMOVE was applied could place
    /// stale source data after the zap, and the thread that called madvise
    /// would read it back instead of zeros (tests/monitor_events.rs
    /// remove_then_read_zero_workers). Callbacks run outside the gate.
    /// Lock order: reader, layout, regions, uffds (docs/DESIGN.md §4).
    pub layout: RwLock<()>,
    pub pool: Mutex<Option<Arc<pool::Pool>>>,
    /// The error that ended a worker's reading, or that stopped the
    /// monitor because a fault could not be released (`run` returns it).
    pub loop_error: Mutex<Option<Error>>,
    /// Faults that could be neither resolved nor poisoned, by (uffd id,
    /// page): how many times each came back (fault.rs `unreleasable`).
    /// Fixed size: the least-seen entry makes room.
    pub unreleased: Mutex<[(u32, u64, u32); UNRELEASED_SLOTS]>,
    /// The reserve filler ("uffd-reserve", reserve.rs), started when a
    /// userfaultfd that reports forks is added: `run`'s reader and a
    /// `dispatch` caller both serve forks from what it keeps ready.
    pub reserve_thread: Mutex<Option<JoinHandle<()>>>,
    /// Faults deferred by a callback and not completed yet (uffd id,
    /// page), for the stop to count (stop.rs); room for
    /// `DEFERRED_TRACKED`, the rest counted in `deferred_untracked`.
    pub deferred_open: Mutex<Vec<(u32, u64)>>,
    pub deferred_untracked: AtomicU64,
    /// The monitor's own duplicates of the descriptors of Fd sources
    /// (`Monitor::add_region`), closed with the monitor.
    pub source_fds: Mutex<Vec<OwnedFd>>,
    /// A prefetcher started for a PREFETCH region added while running
    /// (`Monitor::start_late_prefetch`); joined when the run ends.
    pub prefetcher: Mutex<Option<JoinHandle<()>>>,
    /// The connections of Remote sources (remote.rs).
    pub remotes: remote::Remotes,
    /// Dirty-tracked regions and their bitmaps (dirty.rs).
    pub dirty: dirty::Dirty,
    /// The drops of budgeted regions' pages that wait for the evictor
    /// thread (budget.rs), when REMOVE events are on.
    pub evictor: Arc<budget::Evictor>,
}

/// Room in `Inner::deferred_open` (allocated once: deferring allocates
/// nothing).
pub(crate) const DEFERRED_TRACKED: usize = 1024;

/// Room in `Inner::unreleased`.
pub(crate) const UNRELEASED_SLOTS: usize = 64;

/// Region options for `Monitor::add_region`.
#[derive(Debug, Clone, Copy)]
pub struct RegionOptions {
    /// Where the region's pages come from.
    pub source: Source,
    /// Register the range with this mode first (empty: the caller already
    /// registered it).
    pub register: RegisterMode,
    /// Populate it in the background (nothing for `Source::Callback`,
    /// whose pages come only with their faults). A `Source::Remote` region
    /// is fetched in order, in requests of `remote::PREFETCH_CHUNK` bytes,
    /// one out at a time per connection and only when no fault's request
    /// waits. `StatsSnapshot::prefetch_done_regions` counts the regions
    /// done.
    pub prefetch: bool,
    /// Handed back to callbacks.
    pub user_data: u64,
    /// The page size of the memory; 0: ask. For this process's own
    /// memory the mapping's is read, and a different value is refused.
    /// For a descriptor adopted from another process it cannot be known
    /// beforehand: give it here (2 MiB for a 2 MiB hugetlb guest); with 0
    /// it is asked of the faulting thread's mappings at the region's first
    /// fault if the descriptor reports thread ids (THREAD_ID), else the
    /// base page size is assumed.
    pub page_size: u64,
    /// What a stop does to this region's memory (None: the monitor's
    /// `Config::stop_policy`).
    pub stop_policy: Option<StopPolicy>,
    /// Track which pages are written (`Monitor::dirty_scan`): the range is
    /// registered MISSING|WP (`register` gains WP; a caller that registers
    /// it itself must include WP, else EINVAL), every page the monitor
    /// places there from the region's source (copies, fault-around,
    /// prefetch, zero pages) is placed write-protected (a `Callback`
    /// region's callback places its pages with `CopyMode::WP` itself), and
    /// writes are recorded by the path the
    /// userfaultfd allows ([`DirtyPath`]: `Async` with WP_ASYNC, else
    /// `Sync`, where each first write is a WP fault that calls
    /// `Handler::on_write`). A range the caller registered WP without
    /// MISSING on anonymous memory needs WP_UNPOPULATED on the handle for
    /// the sync path: without it the kernel does not protect pages never
    /// touched, and their first writes are not seen.
    pub track_dirty: bool,
    /// With `track_dirty`: insist on the synchronous path (EINVAL on a
    /// WP_ASYNC userfaultfd, whose WP faults the kernel resolves itself).
    pub dirty_sync: bool,
    /// Resident-set budget in bytes (0: none): before a fault would place
    /// more, the least-recently-faulted resident pages are evicted, dirty
    /// ones written back through `sink` first (budget.rs). Rounded down to
    /// whole pages; at least one. Only for `Buffer` and `Fd` sources,
    /// without `prefetch`, with a known page size. A full budget is
    /// brought down by a batch (1/256 of it, 1 to 16 pages) dropped in one
    /// system call; faults in sequence place the following pages too, as
    /// many as the budget has room for. Pages faulted by a read are placed write-protected
    /// (their first write marks them dirty), pages faulted by a write
    /// writable and dirty: with `register` set, WP is added
    /// to it; a caller that registered the range itself registers it
    /// MISSING|WP.
    pub max_resident: u64,
    /// Where dirty pages of a budgeted region are written back.
    pub sink: Sink,
    /// A budgeted region without a sink: the caller declares the
    /// application does not write it. A page written anyway is never
    /// dropped (it stays resident, over the budget if need be): nothing
    /// is lost. Without it, a budgeted region without a sink is refused.
    pub read_only: bool,
}

impl Default for RegionOptions {
    fn default() -> RegionOptions {
        RegionOptions {
            source: Source::Zero,
            register: RegisterMode::empty(),
            prefetch: false,
            user_data: 0,
            page_size: 0,
            stop_policy: None,
            track_dirty: false,
            dirty_sync: false,
            max_resident: 0,
            sink: Sink::None,
            read_only: false,
        }
    }
}

/// A fault-handling engine. Cheap to share: clones refer to one engine.
#[derive(Clone)]
pub struct Monitor {
    inner: Arc<Inner>,
}

/// The helper threads of one `run`.
#[derive(Default)]
struct Helpers {
    threads: Vec<JoinHandle<()>>,
    /// How many have entered their own code. A thread's start allocates
    /// (the runtime's thread-local bookkeeping); `run` waits for all of them
    /// before it serves faults, so that faults are served without any
    /// allocation in the process (bench/uffd_bench.c counts them).
    started: Arc<std::sync::atomic::AtomicUsize>,
    /// Fired by each helper as it ends (a driven run waits on it).
    exit: Option<Arc<ExitSignal>>,
}

impl Helpers {
    fn spawn(
        &mut self,
        name: &str,
        sink: crate::uffd::quiet::PanicSink,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<()> {
        let started = self.started.clone();
        let exit = self.exit.clone().map(FireOnDrop);
        let t = spawn_thread(name, move || {
            let _exit = exit;
            let _quiet = crate::uffd::quiet::Scope::enter(Some(sink));
            started.fetch_add(1, Release);
            f()
        })?;
        self.threads.push(t);
        Ok(())
    }

    fn wait_started(&self) {
        while self.started.load(Acquire) < self.threads.len() {
            std::thread::yield_now();
        }
    }
}

/// Start a library thread named `name`, with every signal blocked from
/// its first instruction on (it inherits the mask set around its
/// creation): a signal the host sends to the process is never handled on
/// the monitor's threads. Cancellation is disabled in it (nothing may
/// unwind the library's threads: sys/cancel.rs).
fn spawn_thread<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>> {
    let _blocked = crate::sys::signals::block_all();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            crate::sys::cancel::disable_for_thread();
            f()
        })
        .map_err(|e| {
            Error::os(
                "spawn",
                e.raw_os_error().unwrap_or(libc::EAGAIN),
                format!("monitor thread {name}"),
            )
        })
}

/// Gives the run's claim back when dropped (unwinding too).
struct NotRunningOnDrop<'a>(&'a Inner);

impl Drop for NotRunningOnDrop<'_> {
    fn drop(&mut self) {
        self.0.life.release();
    }
}

/// The monitor's threads, while started.
pub struct Running {
    threads: Vec<JoinHandle<Result<()>>>,
    /// Fired when the monitor's thread ends.
    exit: Arc<ExitSignal>,
}

/// An eventfd that threads fire as they end (by a panic too), counting
/// them: for callers that wait outside the monitor, with poll(2) on
/// `fd()`, for a run's helpers or a started monitor's thread to end (the
/// C API's libuffd_monitor_run and libuffd_monitor_wait, which must block
/// where a thread cancellation can reach them).
pub struct ExitSignal {
    fd: OwnedFd,
    ended: AtomicU64,
}

impl ExitSignal {
    fn new() -> Result<Arc<ExitSignal>> {
        let fd = wait::eventfd().map_err(|e| Error::os("eventfd", e, ""))?;
        Ok(Arc::new(ExitSignal {
            fd,
            ended: AtomicU64::new(0),
        }))
    }

    /// Readable once a thread has ended since the last `drain`.
    pub fn fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// How many threads have ended.
    pub fn ended(&self) -> u64 {
        self.ended.load(Acquire)
    }

    fn drain(&self) {
        wait::eventfd_drain(self.fd.as_fd());
    }
}

/// Fires its signal when dropped: as its thread's closure ends.
struct FireOnDrop(Arc<ExitSignal>);

impl Drop for FireOnDrop {
    fn drop(&mut self) {
        self.0.ended.fetch_add(1, AcqRel);
        wait::eventfd_signal(self.0.fd.as_fd());
    }
}

/// A `run` driven by its caller one turn at a time, for a caller that must
/// block outside the monitor's code (the C API's cancellable
/// libuffd_monitor_run): `Monitor::drive_begin`, then `drive_turn` until it
/// says `Turn::Done`, blocking in poll(2) on what each turn names, then
/// `drive_end`. Between turns the caller holds no lock of the monitor. If
/// the caller never comes back, `stop` and `drive_end` from any thread
/// finish the run.
pub struct Driven {
    helpers: Helpers,
    exit: Arc<ExitSignal>,
    result: Result<()>,
}

/// What a driven run's caller does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// poll(2) `fd` for input for up to `timeout_ms` (-1: no limit), then
    /// take the next turn.
    Wait {
        /// The descriptor to poll.
        fd: i32,
        /// How long to poll at most (-1: no limit).
        timeout_ms: i32,
    },
    /// The run is over: call `drive_end`.
    Done,
}

/// How to wait for and read `uffd`: (blocking, nowait). Its status flags
/// are read now (they may have changed since it was opened or adopted:
/// the file can be shared). A blocking file is read with RWF_NOWAIT, so
/// that no read ever waits, without touching the flags the caller shares.
/// A blocking file that cannot take RWF_NOWAIT (an old kernel; a FORK
/// event's descriptor) is made non-blocking if it is the monitor's own (a
/// forked child's, which nobody else holds), else refused: reading it
/// could wait for ever.
pub(crate) fn read_mode(uffd: &Uffd, owned: bool) -> Result<(bool, bool)> {
    let blocking = match crate::sys::open::status_flags(uffd.as_fd()) {
        Ok(fl) => fl & libc::O_NONBLOCK == 0,
        Err(_) => !uffd.is_nonblocking(),
    };
    let nowait = crate::sys::read::nowait_supported(uffd.as_fd());
    if !blocking || nowait {
        return Ok((blocking, nowait));
    }
    if owned {
        crate::sys::open::set_nonblocking(uffd.as_fd())
            .map_err(|e| Error::os("fcntl(F_SETFL)", e, "a forked child's userfaultfd"))?;
        return Ok((false, false));
    }
    Err(Error::invalid(
        "this blocking userfaultfd cannot be read without the risk of waiting (the kernel does not take RWF_NOWAIT on it): set O_NONBLOCK on it (LIBUFFD_OPEN_NONBLOCK, or fcntl)",
    ))
}

impl Inner {
    /// The uffd with this id and whether to read it with RWF_NOWAIT: a
    /// blocking one (it can); a non-blocking one is read with read(2),
    /// which never waits on it either and costs a little less.
    pub(crate) fn uffd_to_read(&self, id: u32) -> Option<(Arc<Uffd>, bool)> {
        let list = self.uffds.read_ok();
        list.get(id as usize)?
            .as_ref()
            .map(|s| (s.uffd.clone(), s.blocking && s.nowait))
    }

    /// Where panics on the monitor's threads are reported: its log (a
    /// weak reference: the thread-local that keeps it never keeps the
    /// monitor alive).
    pub(crate) fn panic_sink(self: &Arc<Self>) -> crate::uffd::quiet::PanicSink {
        let weak = Arc::downgrade(self);
        Arc::new(move |msg: &str| {
            if let Some(inner) = weak.upgrade() {
                inner.log(format_args!("{msg}"));
            }
        })
    }

    pub(crate) fn request_stop(&self, errno: Option<i32>) {
        // Asked between runs: it is for the next run, which then returns
        // at once (as before a first run); `ask_stop` sees to it that the
        // next run does not start afresh (`prepare_rerun`).
        if let Some(e) = errno {
            let _ = self
                .stop_errno
                .compare_exchange(0, e as u64, AcqRel, Acquire);
        }
        self.life.ask_stop();
        wait::eventfd_signal(self.wake_fd.as_fd());
    }

    /// A worker's reading failed: keep the first error for `run` and stop.
    pub(crate) fn fail_loop(&self, e: Error) {
        self.loop_error.lock_ok().get_or_insert(e);
        self.request_stop(None);
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

    pub(crate) fn add_uffd(&self, uffd: Arc<Uffd>, owned: bool) -> Result<u32> {
        let (blocking, nowait) = read_mode(&uffd, owned)?;
        // Room first, allocating outside the lock (see reserve.rs); on the
        // reader, serving a fork, the room is already there.
        reserve::grow(&self.uffds, |v| v, 1);
        let mut list = self.uffds.write_ok();
        let id = list.len() as u32;
        self.watch(&uffd, id, blocking)
            .map_err(|e| Error::os("epoll_ctl", e, "adding a userfaultfd"))?;
        list.push(Some(Served {
            uffd,
            owned,
            blocking,
            nowait,
        }));
        drop(list);
        // The reader may be in poll(2) on its old set, which lacks this
        // descriptor: wake it so that it polls the new set (a write(2),
        // no allocation: the reader itself comes here serving a fork).
        // Without it a handle added while running was never served until
        // something else woke the reader (tests/monitor_wake.rs).
        wait::eventfd_signal(self.wake_fd.as_fd());
        Ok(id)
    }

    /// Add uffd `id` to the set it is waited on with: `epoll` (level-
    /// triggered) for a non-blocking one, `edges` for a blocking one.
    pub(crate) fn watch(
        &self,
        uffd: &Uffd,
        id: u32,
        blocking: bool,
    ) -> std::result::Result<(), i32> {
        if blocking {
            wait::epoll_add_edge(self.edges.as_fd(), uffd.as_fd(), id as u64 + 1)
        } else {
            wait::epoll_add(self.epoll.as_fd(), uffd.as_fd(), id as u64 + 1)
        }
    }

    /// Stop serving uffd `id` (its process exited, or it was closed).
    pub(crate) fn retire(&self, id: u32) {
        let served = {
            let mut list = self.uffds.write_ok();
            list.get_mut(id as usize).and_then(Option::take)
        };
        if let Some(s) = served {
            let set = if s.blocking { &self.edges } else { &self.epoll };
            wait::epoll_del(set.as_fd(), s.uffd.as_fd());
            // Budgets first (they find their pages through the table).
            self.budget_forget(id, 0, u64::MAX);
            self.regions.write_ok().retire(id);
            self.dirty.forget(id, 0, u64::MAX);
            // Dropping `s` closes an owned (forked child's) descriptor once
            // no operation in flight holds it.
        }
    }
}

impl Monitor {
    /// A monitor with `config` and `handler` (use `DefaultHandler` when
    /// every region has a page source).
    pub fn new(config: Config, handler: Box<dyn Handler>) -> Result<Monitor> {
        if config.window_min == 0 || config.window_max < config.window_min {
            return Err(Error::invalid(format!(
                "monitor: fault-around window must satisfy 1 <= min <= max (got {}..{})",
                config.window_min, config.window_max
            )));
        }
        if config.batch == 0 || config.batch > 4096 {
            return Err(Error::invalid("monitor: batch must be 1..4096 messages"));
        }
        if config.workers > 256 {
            return Err(Error::invalid("monitor: at most 256 workers"));
        }
        let wake_fd = wait::eventfd().map_err(|e| Error::os("eventfd", e, ""))?;
        let epoll = wait::epoll_create().map_err(|e| Error::os("epoll_create1", e, ""))?;
        wait::epoll_add(epoll.as_fd(), wake_fd.as_fd(), WAKE_TOKEN)
            .map_err(|e| Error::os("epoll_ctl", e, ""))?;
        let edges = wait::epoll_create().map_err(|e| Error::os("epoll_create1", e, ""))?;
        wait::epoll_add(epoll.as_fd(), edges.as_fd(), EDGES_TOKEN)
            .map_err(|e| Error::os("epoll_ctl", e, ""))?;
        Ok(Monitor {
            inner: Arc::new(Inner {
                config,
                handler,
                uffds: RwLock::new(Vec::with_capacity(RESERVED)),
                regions: RwLock::new(RegionTable::with_capacity(RESERVED)),
                wake_fd,
                epoll,
                edges,
                life: lifecycle::Lifecycle::new(),
                stop_errno: AtomicU64::new(0),
                stats: stats::Stats::default(),
                zero_huge: OnceCell::new(),
                reserve: reserve::Reserve::new(),
                reader: Mutex::new(ReaderState::new(config.batch as usize)),
                layout: RwLock::new(()),
                pool: Mutex::new(None),
                loop_error: Mutex::new(None),
                unreleased: Mutex::new([(0, 0, 0); UNRELEASED_SLOTS]),
                reserve_thread: Mutex::new(None),
                deferred_open: Mutex::new(Vec::with_capacity(DEFERRED_TRACKED)),
                deferred_untracked: AtomicU64::new(0),
                source_fds: Mutex::new(Vec::new()),
                prefetcher: Mutex::new(None),
                remotes: Default::default(),
                dirty: dirty::Dirty::default(),
                evictor: Arc::new(budget::Evictor::new()),
            }),
        })
    }

    /// Serve `uffd`, blocking or not (its file status flags are left as
    /// they are); returns its id, as seen in faults and events.
    pub fn add_uffd(&self, uffd: Arc<Uffd>) -> Result<u32> {
        let id = self.inner.add_uffd(uffd, false)?;
        // Here, on the caller's thread, not on the reader (which must not
        // allocate while a fork may be waiting for it).
        self.start_reserve()?;
        Ok(id)
    }

    /// Start the reserve filler if a served userfaultfd reports forks and
    /// it is not running yet (reserve.rs). Whoever reads, the monitor's
    /// own thread or a `dispatch` caller, serves forks from the reserves
    /// without allocating; without the filler a `dispatch` caller
    /// allocated for each fork once the first reserves were used up, and
    /// deadlocked with the next fork of a fork storm
    /// (tests/monitor_events.rs fork_back_to_back_one_cpu_dispatch).
    fn start_reserve(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.life.stop_asked() || !reserve::wanted(inner) {
            return Ok(());
        }
        let mut slot = inner.reserve_thread.lock_ok();
        if slot.as_ref().is_some_and(|h| !h.is_finished()) {
            return Ok(());
        }
        reserve::prepare(inner);
        let weak = Arc::downgrade(inner);
        let sink = inner.panic_sink();
        let t = spawn_thread("uffd-reserve", move || {
            let _quiet = crate::uffd::quiet::Scope::enter(Some(sink));
            let w = weak.clone();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reserve::run(w)));
            if r.is_err() {
                if let Some(i) = weak.upgrade() {
                    i.fail_loop(i.engine_panicked("the reserve filler"));
                }
            }
        })?;
        *slot = Some(t);
        Ok(())
    }

    /// Stop, and wait for the threads started outside `run` (the reserve
    /// filler) to end: after it, no callback of this monitor runs. Not
    /// from a callback. `run`/`start` threads are waited for as before
    /// (`Running::wait`, or `run` returning).
    pub fn shut_down(&self) {
        self.stop();
        let t = self.inner.reserve_thread.lock_ok().take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }

    /// Stop serving uffd `id` (one added by `add_uffd`, or a forked
    /// child's), at once, running or not: its regions are forgotten, its
    /// messages are no longer read (a fault on it after this returns is for
    /// whoever reads the descriptor), and the reader is woken to drop it
    /// from its poll set. A forked child's descriptor, which the monitor
    /// owns, is closed; one given to `add_uffd` stays open (its owner's).
    /// Faults already read and deferred are left to their owner to
    /// complete. EINVAL for an id that is not served (never, or no longer).
    pub fn remove_uffd(&self, id: u32) -> Result<()> {
        if self.inner.uffd(id).is_none() {
            return Err(Error::invalid(format!(
                "monitor: no userfaultfd with id {id} is served"
            )));
        }
        // The layout gate: not while a fault of it is looked up and served
        // from its region (nor, from an event callback, which holds it).
        let _gate = (!reader::holding_layout()).then(|| self.inner.layout.write_ok());
        self.inner.retire(id);
        wait::eventfd_signal(self.inner.wake_fd.as_fd());
        Ok(())
    }

    /// The uffd with this id (a forked child's too), if still served.
    pub fn uffd(&self, id: u32) -> Option<Arc<Uffd>> {
        self.inner.uffd(id)
    }

    /// Stop serving `memory` of uffd `id`, running or not: the regions
    /// there are forgotten (the parts of a region outside `memory` stay
    /// served), and the range is unregistered from the userfaultfd, which
    /// wakes the threads waiting there; with nobody serving it, a
    /// registered range would leave every later fault waiting for ever.
    /// The memory is the caller's again: a page never placed now faults as
    /// without userfaultfd (zeros for anonymous memory). Faults of the
    /// range being served from a page source are waited out first (the
    /// layout gate); one a callback holds (deferred) resolves as gone.
    /// From a callback too. EINVAL when no region of `id` lies there.
    pub fn remove_region(&self, id: u32, memory: Range) -> Result<()> {
        let Range { start, len } = memory;
        let uffd = self
            .inner
            .uffd(id)
            .ok_or_else(|| Error::invalid(format!("remove region: no userfaultfd with id {id}")))?;
        crate::uffd::check_range("remove region", "range", start, len)?;
        // Exclusive: no fault of it is between its lookup and its
        // placement (they hold the gate shared). An event callback's
        // thread, the reader, holds it already.
        let _gate = (!reader::holding_layout()).then(|| self.inner.layout.write_ok());
        {
            // The budget's resident pages there are no longer its (and
            // no longer counted in `resident_pages`).
            self.inner.budget_forget(id, start, start + len);
            let mut table = self.inner.regions.write_ok();
            if !table.overlaps(id, start, len) {
                return Err(Error::invalid(format!(
                    "remove region: no region of userfaultfd {id} in [{start:#x}, +{len:#x})"
                )));
            }
            table.unmap(id, start, start + len);
        }
        self.inner.dirty.forget(id, start, len);
        // Unregister wakes the threads waiting for missing pages; the wake
        // releases those in write-protect and minor faults too. A range
        // already unmapped (in part) has nothing left to unregister.
        if let Err(e) = uffd.unregister(Range::new(start, len)) {
            if e.errno() != libc::ENOMEM && e.errno() != libc::EINVAL {
                return Err(e);
            }
        }
        let _ = uffd.wake(Range::new(start, len));
        wait::eventfd_signal(self.inner.wake_fd.as_fd());
        Ok(())
    }

    /// Serve `memory` of uffd `id` as `opts` says.
    ///
    /// The range is handed over ([`HandedOver`]): from now on its missing
    /// pages get their contents from the region's source, at the first
    /// access (or from the prefetcher, or a stop policy's zeros or
    /// poison).
    ///
    /// An Fd source's descriptor is duplicated (F_DUPFD_CLOEXEC): the
    /// caller may close its own at once; the monitor reads its duplicate,
    /// closed when the monitor is dropped.
    pub fn add_region(&self, id: u32, memory: HandedOver, opts: RegionOptions) -> Result<()> {
        let Range { start, len } = memory.range();
        let uffd = self
            .inner
            .uffd(id)
            .ok_or_else(|| Error::invalid(format!("monitor: no userfaultfd with id {id}")))?;
        crate::uffd::check_range("add region", "range", start, len)?;
        let base = crate::sys::base_page_size();
        let given = opts.page_size;
        if given != 0 && (!given.is_power_of_two() || given < base) {
            return Err(Error::invalid(format!(
                "add region: page size {given:#x} is not a power of two of at least {base} bytes"
            )));
        }
        let page_size = if uffd.serves_this_process() {
            let mapped = crate::uffd::page_size_at(start)?;
            if given != 0 && given != mapped {
                return Err(Error::invalid(format!(
                    "add region: page size {} KiB given, but the memory at {start:#x} has {} KiB pages",
                    given / 1024,
                    mapped / 1024
                )));
            }
            mapped
        } else if given != 0 {
            given
        } else if uffd.features().contains(crate::uffd::Features::THREAD_ID) {
            // Another process's memory: its faults name their thread, whose
            // mappings tell the page size at the first fault.
            0
        } else {
            base
        };
        let align = page_size.max(base);
        if start % align != 0 || len % align != 0 {
            return Err(Error::invalid(format!(
                "add region: [{start:#x}, +{len:#x}) is not aligned to the mapping's {} KiB pages",
                align / 1024
            )));
        }
        if let Source::Buffer { addr, .. } = opts.source {
            if addr == 0 {
                return Err(Error::invalid("add region: buffer source address is NULL"));
            }
        }
        if let Source::Fd { fd, .. } = opts.source {
            if fd < 0 {
                return Err(Error::invalid(format!(
                    "add region: source fd {fd} is negative"
                )));
            }
        }
        if opts.track_dirty && opts.max_resident != 0 {
            // Both place pages write-protected and own the region's WP
            // faults; a budget keeps its own dirty state (budget.rs).
            return Err(Error::invalid(
                "add region: track_dirty and max_resident together (a budgeted region tracks its own dirty pages for write-back)",
            ));
        }
        let budget_of = self.budget_checks(&uffd, page_size, &opts)?;
        // The layout gate (shared): the reader holds it from reading an
        // event to applying it, so an munmap/mremap that has returned has
        // its UNMAP/REMAP applied before we look. Without it, a region
        // re-added right after an munmap of the old one was refused as
        // overlapping now and then (tests/monitor_stress.rs). Called from
        // an event callback (on_fork, on_remap, on_remove, on_unmap, or
        // on_log there), the calling thread is the reader and holds the
        // gate exclusively already: waiting for it would wait for itself
        // for ever, so it goes on without (the batch's events before this
        // one are applied; those after it will be, to the new region too).
        let _gate = (!reader::holding_layout()).then(|| self.inner.layout.read_ok());
        if self.inner.regions.read_ok().overlaps(id, start, len) {
            return Err(Error::invalid(format!(
                "add region: [{start:#x}, +{len:#x}) overlaps a region of this userfaultfd"
            )));
        }
        // The source's own descriptor: a number the caller closes (and
        // that another file then takes) must never be read as the source.
        let mut opts = opts;
        let mut source_fd = None;
        if let Source::Fd {
            fd,
            offset,
            zero_past_eof,
        } = opts.source
        {
            let dup = crate::sys::dupfd::dup_cloexec(fd).map_err(|e| {
                Error::os(
                    "add region",
                    e,
                    format!("duplicating the source fd {fd} (F_DUPFD_CLOEXEC)"),
                )
            })?;
            opts.source = Source::Fd {
                fd: dup.as_raw_fd(),
                offset,
                zero_past_eof,
            };
            source_fd = Some(dup);
        }
        if let Source::Remote {
            fd,
            offset,
            max_in_flight,
        } = opts.source
        {
            if fd < 0 {
                return Err(Error::invalid(format!(
                    "add region: remote source socket {fd} is negative"
                )));
            }
            opts.source = Source::Remote {
                fd: self.inner.remote_connect(fd, max_in_flight)?,
                offset,
                max_in_flight,
            };
        }
        if opts.track_dirty && !opts.register.is_empty() {
            opts.register |= RegisterMode::WP;
        }
        let (budget, sink_fd) = match budget_of {
            Some(max_pages) => {
                let (b, fd) =
                    self.new_budget(id, &uffd, memory.range(), page_size, max_pages, &opts)?;
                (Some(b), fd)
            }
            None => (None, None),
        };
        if !opts.register.is_empty() {
            let mode = if budget.is_some() {
                opts.register | RegisterMode::WP
            } else {
                opts.register
            };
            uffd.register(Range::new(start, len), mode)?;
        }
        if opts.track_dirty {
            if let Err(e) = self.dirty_add(&uffd, id, Range::new(start, len), page_size, &opts) {
                if !opts.register.is_empty() {
                    let _ = uffd.unregister(Range::new(start, len));
                }
                return Err(e);
            }
        }
        if let Some(dup) = source_fd {
            self.inner.source_fds.lock_ok().push(dup);
        }
        if let Some(dup) = sink_fd {
            self.inner.source_fds.lock_ok().push(dup);
        }
        // Room first, allocating outside the lock (see reserve.rs).
        reserve::grow(&self.inner.regions, RegionTable::vec_mut, 1);
        self.inner.regions.write_ok().insert(Region {
            uffd_id: id,
            start,
            len,
            page_size,
            source: opts.source,
            source_offset: 0,
            prefetch: opts.prefetch,
            user_data: opts.user_data,
            stop_policy: opts.stop_policy,
            window: AtomicU64::new(self.inner.config.window_min as u64),
            next_page: AtomicU64::new(0),
            budget,
        });
        if opts.prefetch {
            self.start_late_prefetch()?;
        }
        Ok(())
    }

    /// The checks of a budgeted region's options (`RegionOptions::
    /// max_resident`): its budget in pages, None without one.
    fn budget_checks(
        &self,
        uffd: &Uffd,
        page_size: u64,
        opts: &RegionOptions,
    ) -> Result<Option<u64>> {
        if opts.max_resident == 0 {
            if opts.sink != Sink::None || opts.read_only {
                return Err(Error::invalid(
                    "add region: a write-back sink or read_only without max_resident (no budget)",
                ));
            }
            return Ok(None);
        }
        let bad = |why: String| Err(Error::invalid(format!("add region: max_resident: {why}")));
        if page_size == 0 {
            return bad(
                "the page size must be known (give page_size for an adopted descriptor)".into(),
            );
        }
        let max_pages = opts.max_resident / page_size;
        if max_pages == 0 {
            return bad(format!(
                "{} bytes is less than one {page_size}-byte page",
                opts.max_resident
            ));
        }
        if !matches!(opts.source, Source::Buffer { .. } | Source::Fd { .. }) {
            return bad(format!(
                "evicted pages come back from the source: {:?} cannot give them back (use a buffer or a file)",
                opts.source
            ));
        }
        if opts.prefetch {
            return bad("prefetch would place pages outside the budget".into());
        }
        if opts.register.contains(RegisterMode::MINOR) {
            return bad(
                "MINOR registration: pages come from the source, not the page cache".into(),
            );
        }
        match (opts.sink, opts.source) {
            (Sink::None, _) if !opts.read_only => {
                return bad("a region whose pages may be written needs a write-back sink (an fd or the on_writeback callback), or read_only".into())
            }
            (Sink::Fd(_), Source::Buffer { .. }) => {
                return bad("a write-back fd cannot feed a buffer source: evicted pages would come back without what was written back (use the on_writeback callback)".into())
            }
            (Sink::Fd(w), Source::Fd { fd, .. }) => {
                let id = |fd: i32, what: &str| {
                    if fd < 0 {
                        return Err(Error::os("add region", libc::EBADF, format!("{what} {fd} is negative")));
                    }
                    crate::sys::evict::file_id(wait::borrow_fd(fd))
                        .map_err(|e| Error::os("add region", e, format!("fstat of the {what} {fd}")))
                };
                if id(w, "write-back fd")? != id(fd, "source fd")? {
                    return bad("the write-back fd must be the source's file, so that evicted pages come back with what was written back".into());
                }
            }
            _ => {}
        }
        let _ = uffd;
        Ok(Some(max_pages))
    }

    /// A budgeted region's budget, and the duplicate of its sink fd.
    fn new_budget(
        &self,
        id: u32,
        uffd: &Uffd,
        memory: Range,
        page_size: u64,
        max_pages: u64,
        opts: &RegionOptions,
    ) -> Result<(Arc<budget::Budget>, Option<OwnedFd>)> {
        let (sink, dup) = match opts.sink {
            Sink::Fd(fd) => {
                let dup = crate::sys::dupfd::dup_cloexec(fd).map_err(|e| {
                    Error::os(
                        "add region",
                        e,
                        format!("duplicating the write-back fd {fd} (F_DUPFD_CLOEXEC)"),
                    )
                })?;
                (Sink::Fd(dup.as_raw_fd()), Some(dup))
            }
            s => (s, None),
        };
        let sink_offset = match opts.source {
            Source::Fd { offset, .. } => offset,
            _ => 0,
        };
        let async_drop = uffd
            .features()
            .contains(crate::uffd::Features::EVENT_REMOVE);
        if async_drop {
            self.inner.start_evictor()?;
        }
        let b = budget::Budget::new(
            id,
            memory.start,
            memory.len,
            page_size,
            max_pages,
            sink,
            sink_offset,
            opts.user_data,
            async_drop,
        );
        Ok((Arc::new(b), dup))
    }

    /// A PREFETCH region added while running: the run's prefetcher may
    /// have ended (it ends once every prefetch region is populated) or
    /// never have started (no prefetch region when the run began). Start
    /// one, unless one started this way still runs; `finish_run` joins it.
    /// Before, such a region was accepted and never prefetched
    /// (tests/monitor_wake.rs add_region_prefetch_while_running).
    fn start_late_prefetch(&self) -> Result<()> {
        let inner = &self.inner;
        if !inner.life.ready() || inner.life.stop_asked() {
            // Not running: run() starts the prefetcher.
            return Ok(());
        }
        // Remote regions: their connections' reply threads walk them.
        inner.remote_prefetch_kick_all();
        let mut slot = inner.prefetcher.lock_ok();
        if slot.as_ref().is_some_and(|h| !h.is_finished()) {
            // It is running and will find the new region: it walks the
            // table afresh after each chunk.
            return Ok(());
        }
        if let Some(old) = slot.take() {
            let _ = old.join();
        }
        let i = inner.clone();
        let sink = inner.panic_sink();
        *slot = Some(spawn_thread("uffd-prefetch", move || {
            let _quiet = crate::uffd::quiet::Scope::enter(Some(sink));
            let r =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| prefetch::run(i.clone())));
            if r.is_err() {
                i.fail_loop(i.engine_panicked("the prefetcher"));
            }
        })?);
        Ok(())
    }

    /// Run on the calling thread until stopped. Returns the errno that
    /// stopped it (an `ErrorPolicy::Stop` failure) as an error, else Ok.
    ///
    /// When the run ends, each region's `StopPolicy` is applied. A run
    /// after an ended one starts afresh: it serves the regions the stop
    /// left registered (`Block`) and those added since (the others were
    /// dropped from the monitor with their registration), and wakes the
    /// threads the stop left blocked so that they fault again. A `stop`
    /// asked while no run is active ends the next run at once.
    pub fn run(&self) -> Result<()> {
        self.claim_run("monitor run")?;
        self.run_claimed()
    }

    /// Mark the monitor running, or EBUSY if a run is active: the one
    /// place a run is claimed (`run`, and `start` on the caller's thread,
    /// so that of two racing starts exactly one starts a thread).
    fn claim_run(&self, what: &'static str) -> Result<()> {
        if !self.inner.life.claim() {
            return Err(Error::os(
                what,
                libc::EBUSY,
                "the monitor is already running",
            ));
        }
        Ok(())
    }

    /// `run` once claimed.
    fn run_claimed(&self) -> Result<()> {
        let _quiet = crate::uffd::quiet::Scope::enter(Some(self.inner.panic_sink()));
        if self.inner.life.rerun() {
            self.inner.prepare_rerun();
        }
        // Not running any more once this returns, whatever happens (a
        // panic included): `free` waits for that.
        let _running = NotRunningOnDrop(&self.inner);
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_inner())) {
            Ok(r) => r,
            Err(_) => {
                let e = self.inner.engine_panicked("the monitor's run");
                // The threads and the regions as a normal end would leave
                // them (finish_run did not get to run, or did not end).
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.finish_run(Helpers::default(), Ok(()))
                }));
                Err(e)
            }
        }
    }

    fn run_inner(&self) -> Result<()> {
        let inner = &self.inner;
        let mut helpers = Helpers::default();
        // If a thread cannot be started, those that were are stopped below.
        let mut result = self.spawn_helpers(&mut helpers);
        if result.is_ok() && inner.config.workers > 0 {
            // The workers read and resolve (pool.rs); they return once the
            // monitor is stopped and their queue is empty.
            helpers.wait_started();
            inner.life.mark_ready();
            result = self.join_workers(&mut helpers);
        } else if result.is_ok() {
            helpers.wait_started();
            let mut st = inner.reader.lock_ok();
            inner.life.mark_ready();
            while !inner.life.stop_asked() {
                if let Err(e) = inner.iterate_guarded(&mut st, -1) {
                    result = Err(e);
                    break;
                }
            }
        }
        self.finish_run(helpers, result)
    }

    /// Join the workers of a run (they return once the monitor is stopped
    /// and their queue is empty); the error that ended their reading.
    fn join_workers(&self, helpers: &mut Helpers) -> Result<()> {
        let inner = &self.inner;
        let workers = helpers.threads.len().min(inner.config.workers as usize);
        for h in helpers.threads.drain(..workers) {
            let _ = h.join();
        }
        match inner.loop_error.lock_ok().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The end of every run: stop, join the helpers, release the regions.
    fn finish_run(&self, helpers: Helpers, mut result: Result<()>) -> Result<()> {
        let inner = &self.inner;
        if let Some(pool) = inner.pool.lock_ok().take() {
            pool.shut_down();
        }
        inner.life.finishing();
        for h in helpers.threads {
            let _ = h.join();
        }
        let late = inner.prefetcher.lock_ok().take();
        if let Some(t) = late {
            let _ = t.join();
        }
        let errno = self.release_and_finish();
        if result.is_ok() {
            if let Some(e) = inner.loop_error.lock_ok().take() {
                result = Err(e);
            }
        }
        if result.is_ok() && errno != 0 {
            result = Err(Error::os("monitor", errno, "stopped by the error policy"));
        }
        result
    }

    /// The end a run and dispatching share: join the reserve filler (it
    /// gives handles to children still pending before it ends, so that the
    /// release sees them), apply the stop policies, mark the monitor
    /// stopped. The errno the error policy stopped it with (0: none).
    fn release_and_finish(&self) -> i32 {
        let inner = &self.inner;
        let filler = inner.reserve_thread.lock_ok().take();
        if let Some(t) = filler {
            let _ = t.join();
        }
        inner.evictor.abandon();
        inner.release_at_stop();
        inner.life.finished();
        inner.stop_errno.load(Acquire) as i32
    }

    /// Start the workers, the prefetcher and the reserve filler, as the
    /// configuration and regions ask.
    fn spawn_helpers(&self, helpers: &mut Helpers) -> Result<()> {
        let inner = &self.inner;
        if inner.config.workers > 0 {
            let pool = Arc::new(pool::Pool::new(inner.config.spin_us));
            *inner.pool.lock_ok() = Some(pool.clone());
            for n in 0..inner.config.workers {
                let (i, p) = (inner.clone(), pool.clone());
                helpers.spawn(&format!("uffd-worker-{n}"), inner.panic_sink(), move || {
                    pool::work(i, p)
                })?;
            }
        }
        let wants_prefetch = inner.regions.read_ok().iter().any(|r| r.prefetch);
        if wants_prefetch {
            let i = inner.clone();
            helpers.spawn("uffd-prefetch", inner.panic_sink(), move || {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    prefetch::run(i.clone())
                }));
                if r.is_err() {
                    i.fail_loop(i.engine_panicked("the prefetcher"));
                }
            })?;
        }
        // The reserve filler runs from add_uffd on (`start_reserve`).
        self.start_reserve()
    }

    /// Begin a run driven by the caller (see `Driven`). Fails with EBUSY
    /// as `run` does.
    pub fn drive_begin(&self) -> Result<Driven> {
        let inner = &self.inner;
        if !inner.life.claim() {
            return Err(Error::os(
                "monitor run",
                libc::EBUSY,
                "the monitor is already running",
            ));
        }
        if inner.life.rerun() {
            inner.prepare_rerun();
        }
        let exit = match ExitSignal::new() {
            Ok(e) => e,
            Err(e) => {
                inner.life.release();
                return Err(e);
            }
        };
        let mut helpers = Helpers {
            exit: Some(exit.clone()),
            ..Helpers::default()
        };
        // If a thread cannot be started, the first turn says Done and
        // `drive_end` stops those that were.
        let result = self.spawn_helpers(&mut helpers);
        if result.is_ok() {
            helpers.wait_started();
            inner.life.mark_ready();
        }
        Ok(Driven {
            helpers,
            exit,
            result,
        })
    }

    /// One turn of a driven run: serve what is ready without blocking (no
    /// workers), or see whether the workers are done; then say what to
    /// wait for. Blocks at most a millisecond (when spinning is on).
    pub fn drive_turn(&self, d: &mut Driven, poll_errno: i32) -> Turn {
        let inner = &self.inner;
        if poll_errno != 0 && d.result.is_ok() {
            d.result = Err(Error::os(
                "poll",
                poll_errno,
                "waiting for the monitor's input",
            ));
        }
        if d.result.is_err() || inner.life.stop_asked() {
            return Turn::Done;
        }
        if inner.config.workers > 0 {
            // The workers serve; a worker ends only once the monitor is
            // stopped, and fires `exit` as it does.
            d.exit.drain();
            if inner.life.stop_asked() {
                return Turn::Done;
            }
            return Turn::Wait {
                fd: d.exit.fd(),
                timeout_ms: -1,
            };
        }
        let mut st = inner.reader.lock_ok();
        // With spinning on, a turn spins (and then polls a millisecond)
        // as `run` does before it blocks.
        let timeout = if inner.config.spin_us > 0 { 1 } else { 0 };
        if let Err(e) = inner.iterate_guarded(&mut st, timeout) {
            d.result = Err(e);
            return Turn::Done;
        }
        if inner.life.stop_asked() {
            return Turn::Done;
        }
        // The epoll set holds the wake eventfd and every served uffd.
        Turn::Wait {
            fd: inner.epoll.as_raw_fd(),
            timeout_ms: if st.retry.is_empty() { -1 } else { 1 },
        }
    }

    /// End a driven run (stop first to end one early): join its threads,
    /// release the regions; what `run` would have returned.
    pub fn drive_end(&self, d: Driven) -> Result<()> {
        let Driven {
            mut helpers,
            mut result,
            ..
        } = d;
        if result.is_ok() && self.inner.config.workers > 0 {
            result = self.join_workers(&mut helpers);
        }
        let result = self.finish_run(helpers, result);
        self.inner.life.release();
        result
    }

    /// Start the monitor on its own thread; `Running::wait` joins it.
    pub fn start(&self) -> Result<Running> {
        self.claim_run("monitor start")?;
        let spawned = ExitSignal::new().and_then(|exit| {
            let me = self.clone();
            let fire = FireOnDrop(exit.clone());
            let sink = self.inner.panic_sink();
            let t = spawn_thread("uffd-monitor", move || {
                let _fire = fire;
                let _quiet = crate::uffd::quiet::Scope::enter(Some(sink));
                me.run_claimed()
            })?;
            Ok((t, exit))
        });
        let (t, exit) = match spawned {
            Ok(v) => v,
            Err(e) => {
                // No thread: the claim is given back.
                self.inner.life.release();
                return Err(e);
            }
        };
        // Wait until its threads are up and it reads events, so that the
        // caller's first fault is served and stop() right after is seen.
        while !self.inner.life.ready() && !t.is_finished() {
            std::thread::yield_now();
        }
        Ok(Running {
            threads: vec![t],
            exit,
        })
    }

    /// Ask the monitor to stop. Any thread, inside callbacks too; repeat
    /// calls do nothing more.
    pub fn stop(&self) {
        self.inner.request_stop(None);
    }

    /// Whether `run` is active (on any thread).
    pub fn is_running(&self) -> bool {
        self.inner.life.running()
    }

    /// Whether stop was requested.
    pub fn is_stopping(&self) -> bool {
        self.inner.life.stop_asked()
    }

    /// The monitor's epoll descriptor: readable when something is ready
    /// for `dispatch` (for callers with their own event loop).
    pub fn fd(&self) -> i32 {
        self.inner.epoll.as_raw_fd()
    }

    /// Handle what is ready, waiting up to `timeout_ms` (-1: forever).
    /// Returns how many sources were ready. Not while `run` is active.
    /// Forks are served as by `run`'s reader, from the reserves that the
    /// reserve thread (started by `add_uffd`) keeps ready, so that a fork
    /// storm cannot deadlock the dispatching thread.
    ///
    /// A stop (`stop`, or the engine stopping on an error) ends dispatching
    /// as it ends a run: the dispatch that sees it releases the faults and
    /// regions per the stop policies and returns the stop's error
    /// (ECANCELED for `stop`, else the errno that stopped the monitor), so
    /// that a `while dispatch(..) >= 0` loop ends instead of spinning on a
    /// readable descriptor. The next dispatch serves again, as a `run`
    /// after a stop does.
    pub fn dispatch(&self, timeout_ms: i32) -> Result<usize> {
        let inner = &self.inner;
        if inner.life.running() {
            return Err(Error::os(
                "monitor dispatch",
                libc::EBUSY,
                "the monitor is running on its own",
            ));
        }
        let mut st = inner.reader.try_lock().map_err(|_| {
            Error::os(
                "monitor dispatch",
                libc::EBUSY,
                "another thread is dispatching",
            )
        })?;
        if inner.life.rerun() {
            // The stop was delivered by an earlier dispatch: serve again.
            inner.prepare_rerun();
            self.start_reserve()?;
        }
        let result = if inner.life.stop_asked() {
            Ok(0)
        } else {
            inner.iterate_guarded(&mut st, timeout_ms)
        };
        if !inner.life.stop_asked() {
            return result;
        }
        drop(st);
        let stopped = self.end_dispatch();
        result.and(stopped.map(|()| 0))
    }

    /// The end of dispatching (a stop seen by `dispatch`): what
    /// `finish_run` does at the end of a run, less the run's own threads.
    /// Always an error: the stop's.
    fn end_dispatch(&self) -> Result<()> {
        let errno = self.release_and_finish();
        if let Some(e) = self.inner.loop_error.lock_ok().take() {
            return Err(e);
        }
        match errno {
            0 => Err(Error::os(
                "monitor dispatch",
                libc::ECANCELED,
                "the monitor was stopped (libuffd_monitor_stop); the next dispatch serves again",
            )),
            errno => Err(Error::os(
                "monitor dispatch",
                errno,
                "the monitor stopped on an error (see the log callback)",
            )),
        }
    }

    /// Complete a deferred fault from any thread. EAGAIN is retried for up
    /// to two seconds while the reader reads the pending event.
    pub fn complete(&self, token: FaultToken, action: Action) -> Result<Applied> {
        self.inner
            .complete(token, action)
            .map_err(|failed| failed.into_error(token))
    }

    /// Resolve a fault by its token, from anywhere: from the `on_fault`
    /// callback handling it (on that thread, for this monitor) it is the
    /// callback's own resolution, as `FaultCtx::resolve` (EAGAIN: the
    /// monitor retries the fault after reading the pending event and calls
    /// the callback again); any other fault (deferred, or a token kept
    /// from earlier) is completed as by `complete`. The C API resolves
    /// every fault through this.
    pub fn resolve(&self, token: FaultToken, action: Action) -> Result<Applied> {
        self.inner
            .resolve_from_caller(token, action)
            .map_err(|failed| failed.into_error(token))
    }

    /// Write back the dirty resident pages of the budgeted regions
    /// (`RegionOptions::max_resident`) of uffd `id` in `memory` through
    /// their sinks, without evicting them: a checkpoint of the region's
    /// file while the application runs (after it, the file holds every
    /// byte written before the call). The pages stay resident, clean and
    /// write-protected: a later write marks them dirty again. A write
    /// racing with the write-back of its page waits for it (a few
    /// microseconds), then lands and is in the next write-back. Returns
    /// the pages written back. EINVAL: no such uffd, or no budgeted region
    /// with a sink in `memory`; the first write-back error otherwise
    /// (that page stays dirty, the others are written), EAGAIN for a page
    /// kept busy by faults for 2 s. Not from the monitor's callbacks.
    pub fn writeback(&self, id: u32, memory: Range) -> Result<u64> {
        let Range { start, len } = memory;
        crate::uffd::check_range("write back", "range", start, len)?;
        match self.inner.budget_writeback(id, start, start + len)? {
            (n, true) => Ok(n),
            (_, false) => Err(Error::invalid(format!(
                "write back: no budgeted region with a write-back sink in [{start:#x}, +{len:#x}) of userfaultfd {id}"
            ))),
        }
    }

    /// The counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }
}

impl Running {
    /// Whether the monitor's thread has ended (`wait` returns at once).
    pub fn has_ended(&self) -> bool {
        self.exit.ended() > 0
    }

    /// What becomes readable (and stays so) when the monitor's thread
    /// ends, for a caller that waits with poll(2) itself.
    pub fn exit_signal(&self) -> Arc<ExitSignal> {
        self.exit.clone()
    }

    /// Wait for the monitor to stop; its result.
    pub fn wait(self) -> Result<()> {
        let mut result = Ok(());
        for t in self.threads {
            match t.join() {
                Ok(r) => {
                    if result.is_ok() {
                        result = r;
                    }
                }
                Err(_) => result = Err(Error::Internal("monitor thread panicked".into())),
            }
        }
        result
    }
}
