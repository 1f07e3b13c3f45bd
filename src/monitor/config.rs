// SPDX-License-Identifier: MIT OR Apache-2.0
//! Monitor configuration and the callback interface.

use super::resolve::FaultCtx;

/// What to do when resolving a fault fails (a callback error, or an
/// operation that fails for a reason other than the races the monitor
/// handles itself). Every choice releases the faulting thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorPolicy {
    /// Poison the page: the faulting thread gets SIGBUS (the default).
    /// Where the poison fails too (memory without POISON support, a page
    /// size that is not the mapping's), the thread is woken to fault
    /// again; when the same fault has come back failing
    /// `UNRELEASABLE_TRIES` (8) times, the monitor stops with the error
    /// (`run`/`wait` return it) and its stop releases the faulting threads
    /// (`Config::stop_policy`): no fault livelocks.
    #[default]
    Sigbus,
    /// Try again: the thread stays blocked and the fault is offered again
    /// (to the callback, or read again from the source) after a pause of
    /// 1 ms, doubled after each failed try (at most 64 ms); each failed try
    /// counts in `failed`. After 8 failed tries (`ERROR_TRIES`, about
    /// 127 ms) the `Sigbus` policy applies to the fault: it is poisoned and
    /// its thread gets SIGBUS. Nothing retries for ever. A fault still
    /// waiting for its next try when the monitor stops is released as
    /// every blocked thread is (`Config::release_on_stop`).
    Retry,
    /// Poison the page (as `Sigbus`) and stop the monitor with the error.
    Stop,
}

/// What a stop does to the memory of the monitor's regions: to the
/// threads blocked in faults the monitor will no longer serve, and to the
/// pages not yet placed. Applied when a run ends (a stop, a `Verdict::Stop`,
/// `ErrorPolicy::Stop`, an internal error), per region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StopPolicy {
    /// Per region: `Sigbus` for regions with a buffer, fd or callback
    /// source (their pages not yet placed hold data that would be lost, so
    /// they must not silently read as zeros), `ZeroFill` for Zero and
    /// PageCache regions (unregistering gives what they would have given).
    /// The default.
    #[default]
    Auto,
    /// Leave the regions registered: threads blocked in faults stay
    /// blocked until the monitor runs again (a restart wakes them to fault
    /// afresh) or the userfaultfd is closed (every handle freed).
    Block,
    /// Poison every page of the region not yet placed (UFFDIO_POISON), then
    /// unregister it and wake the blocked threads: they, and any later
    /// access to those pages, get SIGBUS; placed pages stay readable.
    /// Fallback where the poison is refused (a kernel or memory without
    /// POISON support, an unmapped range): `Block`, with a log line, and
    /// counted in `stop_blocked`.
    Sigbus,
    /// Unregister the region and wake the blocked threads: pages not yet
    /// placed read as zeros from then on (what release-on-stop always did
    /// before stop policies existed). For data that can be lost: say so
    /// explicitly.
    ZeroFill,
}

/// What a REMOVE event (madvise DONTNEED/FREE/REMOVE) does to the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RemovePolicy {
    /// Later faults in the range get zero pages (what the application
    /// would see without userfaultfd). The default.
    #[default]
    ZeroFill,
    /// Unregister the range: later faults are ordinary kernel faults.
    Unregister,
    /// Keep serving the range from its source: later faults re-read the
    /// region's page source (a buffer, a file: what was there before, or
    /// what a budgeted region wrote back), as if the pages had never been
    /// placed. Regions whose source is zeros or a callback are unchanged
    /// by it (zeros; the callback is asked again).
    Refill,
}

/// Tuning and policies.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Worker threads resolving faults in parallel with the reader (0: the
    /// reader resolves faults itself). With workers, they take turns to
    /// read; the faults whose resolution may wait (Callback regions'
    /// faults, missing-page faults of Fd regions: a pread) run side by
    /// side, the worker that read one passing the reading on and resolving
    /// it. The reader resolves the others (copies from memory, zero pages,
    /// CONTINUE, write-protect faults) in place, which costs less than a
    /// hand-off; see `hand_off_all`.
    pub workers: u32,
    /// Hand every fault to the workers, however cheap: for machines with
    /// CPUs to spare, where copies from memory in parallel pay.
    pub hand_off_all: bool,
    /// Busy-poll the userfaultfds this long before sleeping (0: never).
    pub spin_us: u32,
    /// Fault-around window, in pages: a fault places at least `window_min`
    /// and at most `window_max` pages starting at the faulting one, and
    /// never more than 4 MiB (so two pages of 2 MiB hugetlb memory).
    pub window_min: u32,
    /// The largest fault-around window, in pages (see `window_min`).
    pub window_max: u32,
    /// Grow the window on sequential faults and shrink it on random ones;
    /// without it the window stays at `window_min`.
    pub adaptive: bool,
    /// Messages read per read(2).
    pub batch: u32,
    /// EAGAIN retries before the faulting thread is woken to fault afresh.
    pub max_retries: u32,
    /// What a fault whose resolution failed gets.
    pub error_policy: ErrorPolicy,
    /// What a REMOVE event (madvise) does to a region's pages.
    pub remove_policy: RemovePolicy,
    /// Serve a forked child's userfaultfd with its parent's regions.
    pub serve_forks: bool,
    /// What a stop does to the regions' memory (regions may override it:
    /// `RegionOptions::stop_policy`).
    pub stop_policy: StopPolicy,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            workers: 0,
            hand_off_all: false,
            spin_us: 0,
            window_min: 1,
            window_max: 512,
            adaptive: true,
            batch: 64,
            max_retries: 1000,
            error_policy: ErrorPolicy::Sigbus,
            remove_policy: RemovePolicy::ZeroFill,
            serve_forks: true,
            stop_policy: StopPolicy::Auto,
        }
    }
}

/// What a fault callback decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The callback resolved the fault through its `FaultCtx`.
    Resolved,
    /// Serve the fault from the region's page source.
    UseSource,
    /// The callback kept the fault's token and will complete it later,
    /// from any thread, with `Monitor::complete`.
    Defer,
    /// Stop the monitor.
    Stop,
    /// The callback placed the page itself, with the handle's own
    /// operations (`Uffd::copy` & co., C `libuffd_copy()`), as a client
    /// with its own resolution code does. The monitor trusts it: it wakes
    /// the page (a copy with DONTWAKE, or a thread that faulted meanwhile,
    /// waits otherwise) and counts the fault resolved. A page that was in
    /// fact not placed makes the thread fault again and the callback is
    /// asked again: nothing is lost or hung, but a callback that keeps
    /// saying so without placing the page loops.
    ResolvedByCaller,
    /// The callback failed with this errno: the error policy applies.
    Error(i32),
}

/// What to do with a forked child's userfaultfd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForkVerdict {
    /// Serve it with the parent's regions (if `Config::serve_forks`).
    Serve,
    /// The callback took ownership of the descriptor: the monitor neither
    /// serves nor closes it.
    Taken,
    /// Close it (the child's registrations vanish).
    Close,
}

/// Callbacks. Every method has a default, so an empty handler serves all
/// regions from their sources. They run on the monitor's threads: the
/// reader (events) and, with workers, the workers (faults), so they must
/// be thread-safe. They must not fork, mremap, munmap or madvise memory
/// registered with the monitored userfaultfds (the kernel would wait for
/// the monitor to read the resulting event: a deadlock).
///
/// The event callbacks (`on_fork`, `on_remap`, `on_remove`, `on_unmap`)
/// run on the reader while it applies the event. `Monitor::add_region`
/// works from them (and from `on_fault`, on any thread); and, if the
/// monitored process forks from several
/// threads or in quick succession, they should not allocate (glibc's fork
/// holds the malloc locks while the kernel waits for the reader:
/// docs/kernel-semantics.md §6). The same goes for `on_log` when
/// `wants_log` is true (the message is formatted on the reader).
pub trait Handler: Send + Sync + 'static {
    /// A fault in a region whose source is `Callback` (or in no region).
    fn on_fault(&self, _ctx: &FaultCtx<'_>) -> Verdict {
        Verdict::UseSource
    }
    /// The monitored process forked; `fd` serves the child's memory.
    fn on_fork(&self, _uffd_id: u32, _fd: i32) -> ForkVerdict {
        ForkVerdict::Serve
    }
    /// A registered range moved.
    fn on_remap(&self, _uffd_id: u32, _from: u64, _to: u64, _len: u64) {}
    /// A registered range's pages are being dropped.
    fn on_remove(&self, _uffd_id: u32, _start: u64, _end: u64) {}
    /// A registered range was unmapped.
    fn on_unmap(&self, _uffd_id: u32, _start: u64, _end: u64) {}
    /// A first write to a page of a region with synchronous dirty tracking
    /// (`RegionOptions::track_dirty`, `DirtyPath::Sync`): the page
    /// (`token.page`, `token.page_size` bytes) is about to be marked dirty
    /// and un-protected; the writer waits until this returns. `user_data`
    /// is the region's. Runs on the thread serving the fault, outside the
    /// monitor's locks (it may call `dirty_scan`); it must not write the
    /// page itself (still protected: it would wait for itself).
    fn on_write(&self, _token: super::resolve::FaultToken, _user_data: u64) {}
    /// Write back a dirty page of a budgeted region whose sink is
    /// `Sink::Callback`, before it is evicted: store its `len` bytes at
    /// `page` (readable, write-protected while this runs) where the
    /// region's source will read them again (`region.source_offset`).
    /// Ok: the page is dropped; Err(errno): it stays resident and dirty
    /// (counted in `writeback_failures`, logged) and is tried again at a
    /// later eviction. Runs on the thread whose fault needs the room
    /// (the reader, without workers): it must not madvise, munmap or
    /// mremap registered memory. The default fails with ENOSYS.
    fn on_writeback(&self, _wb: &super::budget::Writeback) -> Result<(), i32> {
        Err(libc::ENOSYS)
    }
    /// An error the monitor handled (the text says how).
    fn on_log(&self, _msg: &str) {}
    /// Whether `on_log` does anything (saves formatting when not).
    fn wants_log(&self) -> bool {
        false
    }
}

/// A handler with every default: serve regions from their sources.
pub struct DefaultHandler;
impl Handler for DefaultHandler {}
