// SPDX-License-Identifier: MIT OR Apache-2.0
//! Every type and constant of the C ABI. Once released, nothing here is
//! renamed, renumbered, reordered or removed; additions go at the end of a
//! struct (behind its size field) or as new constants.
//!
//! Names use the `LIBUFFD_` / `libuffd_` prefixes and never a name of
//! `<linux/userfaultfd.h>`, so both headers can be included together.

// ---------------------------------------------------------------- version

/// Major version of this header (the soname's number).
pub const LIBUFFD_VERSION_MAJOR: u32 = 1;
/// Minor version of this header; a minor release only adds.
pub const LIBUFFD_VERSION_MINOR: u32 = 0;
/// Patch version of this header.
pub const LIBUFFD_VERSION_PATCH: u32 = 0;

// ------------------------------------------------------------ open flags

/// Open flag: make the descriptor O_NONBLOCK. Needed to poll/epoll it and
/// for libuffd_read_events() with a timeout other than -1.
pub const LIBUFFD_OPEN_NONBLOCK: u32 = 0x1;
/// Open flag: trap only faults taken in user mode (UFFD_USER_MODE_ONLY).
/// Without it, as with the raw userfaultfd(2) call, faults taken in kernel
/// mode are trapped too: read(2)/write(2)/O_DIRECT into registered memory,
/// KVM guest accesses, vhost. A VMM or a lazy restore needs that (the
/// default); it requires CAP_SYS_PTRACE, vm.unprivileged_userfaultfd=1 or
/// access to /dev/userfaultfd. A program whose memory is only touched by
/// its own user-space code (a garbage collector, a snapshot) can pass this
/// flag, which any process may use; kernel accesses to missing pages then
/// fail with EFAULT instead of waiting.
pub const LIBUFFD_OPEN_USER_ONLY: u32 = 0x2;
/// libuffd_handle_flags(): the handle adopted a descriptor made elsewhere,
/// whose user-mode-only setting the kernel does not report. Never an open
/// flag.
pub const LIBUFFD_HANDLE_MODE_UNKNOWN: u32 = 0x100;
/// Open flag: do not set close-on-exec (it is set by default).
pub const LIBUFFD_OPEN_NO_CLOEXEC: u32 = 0x4;
/// Open flag: do not try the userfaultfd(2) system call.
pub const LIBUFFD_OPEN_NO_SYSCALL: u32 = 0x8;
/// Open flag: do not try /dev/userfaultfd.
pub const LIBUFFD_OPEN_NO_DEV: u32 = 0x10;

// --------------------------------------------------------------- features

/// Feature: write-protect faults (register with LIBUFFD_REGISTER_WP).
pub const LIBUFFD_FEATURE_PAGEFAULT_FLAG_WP: u64 = 0x1;
/// Feature: fork() of the monitored process sends a FORK event carrying a
/// new fd for the child. Requesting it needs CAP_SYS_PTRACE.
pub const LIBUFFD_FEATURE_EVENT_FORK: u64 = 0x2;
/// Feature: mremap() of a registered range sends a REMAP event.
pub const LIBUFFD_FEATURE_EVENT_REMAP: u64 = 0x4;
/// Feature: madvise(DONTNEED/FREE/REMOVE) sends a REMOVE event.
pub const LIBUFFD_FEATURE_EVENT_REMOVE: u64 = 0x8;
/// Feature (probe only): MISSING mode works on hugetlbfs.
pub const LIBUFFD_FEATURE_MISSING_HUGETLBFS: u64 = 0x10;
/// Feature (probe only): MISSING mode works on shmem.
pub const LIBUFFD_FEATURE_MISSING_SHMEM: u64 = 0x20;
/// Feature: munmap() of a registered range sends an UNMAP event.
pub const LIBUFFD_FEATURE_EVENT_UNMAP: u64 = 0x40;
/// Feature: no fault messages; the faulting thread gets SIGBUS instead.
pub const LIBUFFD_FEATURE_SIGBUS: u64 = 0x80;
/// Feature: fault events carry the faulting thread's id.
pub const LIBUFFD_FEATURE_THREAD_ID: u64 = 0x100;
/// Feature: MINOR mode on hugetlbfs.
pub const LIBUFFD_FEATURE_MINOR_HUGETLBFS: u64 = 0x200;
/// Feature: MINOR mode on shmem.
pub const LIBUFFD_FEATURE_MINOR_SHMEM: u64 = 0x400;
/// Feature: fault addresses are exact instead of page-aligned.
pub const LIBUFFD_FEATURE_EXACT_ADDRESS: u64 = 0x800;
/// Feature: WP mode on shmem and hugetlbfs.
pub const LIBUFFD_FEATURE_WP_HUGETLBFS_SHMEM: u64 = 0x1000;
/// Feature: write-protecting anonymous memory also protects pages not yet
/// populated.
pub const LIBUFFD_FEATURE_WP_UNPOPULATED: u64 = 0x2000;
/// Feature: libuffd_poison() is available.
pub const LIBUFFD_FEATURE_POISON: u64 = 0x4000;
/// Feature: WP faults are resolved by the kernel without a message (dirty
/// tracking); implies WP_UNPOPULATED.
pub const LIBUFFD_FEATURE_WP_ASYNC: u64 = 0x8000;
/// Feature: libuffd_move() is available.
pub const LIBUFFD_FEATURE_MOVE: u64 = 0x10000;
/// Every feature this header knows (Linux 6.18). Newer kernels may offer
/// more bits; libuffd passes them through untouched.
pub const LIBUFFD_FEATURES_KNOWN: u64 = 0x1FFFF;

// ---------------------------------------------------------- registration

/// Register mode: trap accesses to missing pages.
pub const LIBUFFD_REGISTER_MISSING: u64 = 0x1;
/// Register mode: trap writes to write-protected pages.
pub const LIBUFFD_REGISTER_WP: u64 = 0x2;
/// Register mode: trap accesses to pages present in the page cache but not
/// mapped (shmem, hugetlbfs).
pub const LIBUFFD_REGISTER_MINOR: u64 = 0x4;

/// Bit in the ioctl mask of libuffd_register(): libuffd_wake() allowed.
pub const LIBUFFD_IOCTL_WAKE: u64 = 0x4;
/// Bit in the ioctl mask of libuffd_register(): libuffd_copy() allowed.
pub const LIBUFFD_IOCTL_COPY: u64 = 0x8;
/// Bit in the ioctl mask of libuffd_register(): libuffd_zeropage() allowed.
pub const LIBUFFD_IOCTL_ZEROPAGE: u64 = 0x10;
/// Bit in the ioctl mask of libuffd_register(): libuffd_move() allowed.
pub const LIBUFFD_IOCTL_MOVE: u64 = 0x20;
/// Bit in the ioctl mask of libuffd_register(): libuffd_writeprotect() allowed.
pub const LIBUFFD_IOCTL_WRITEPROTECT: u64 = 0x40;
/// Bit in the ioctl mask of libuffd_register(): libuffd_continue() allowed.
pub const LIBUFFD_IOCTL_CONTINUE: u64 = 0x80;
/// Bit in the ioctl mask of libuffd_register(): libuffd_poison() allowed.
pub const LIBUFFD_IOCTL_POISON: u64 = 0x100;

// ----------------------------------------------------------- op modes

/// libuffd_copy() mode: do not wake the faulting threads (wake later).
pub const LIBUFFD_COPY_DONTWAKE: u64 = 0x1;
/// libuffd_copy() mode: map the pages write-protected (needs a WP
/// registration).
pub const LIBUFFD_COPY_WP: u64 = 0x2;
/// libuffd_zeropage() mode: do not wake the faulting threads.
pub const LIBUFFD_ZEROPAGE_DONTWAKE: u64 = 0x1;
/// libuffd_writeprotect() mode: protect (without it: unprotect and wake).
pub const LIBUFFD_WRITEPROTECT_WP: u64 = 0x1;
/// libuffd_writeprotect() mode: when unprotecting, do not wake.
pub const LIBUFFD_WRITEPROTECT_DONTWAKE: u64 = 0x2;
/// libuffd_continue() mode: do not wake the faulting threads.
pub const LIBUFFD_CONTINUE_DONTWAKE: u64 = 0x1;
/// libuffd_continue() mode: map the pages write-protected.
pub const LIBUFFD_CONTINUE_WP: u64 = 0x2;
/// libuffd_poison() mode: do not wake the faulting threads.
pub const LIBUFFD_POISON_DONTWAKE: u64 = 0x1;
/// libuffd_move() mode: do not wake the faulting threads.
pub const LIBUFFD_MOVE_DONTWAKE: u64 = 0x1;
/// libuffd_move() mode: holes in the source count as moved instead of
/// failing with -ENOENT.
pub const LIBUFFD_MOVE_ALLOW_SRC_HOLES: u64 = 0x2;

// ---------------------------------------------------------------- events

/// Event kind: a thread faulted on registered memory (u.fault).
pub const LIBUFFD_EVENT_PAGEFAULT: u32 = 0x12;
/// Event kind: the monitored process forked (u.fork).
pub const LIBUFFD_EVENT_FORK: u32 = 0x13;
/// Event kind: a registered range was moved by mremap() (u.remap).
pub const LIBUFFD_EVENT_REMAP: u32 = 0x14;
/// Event kind: madvise() is dropping the pages of a range (u.range).
pub const LIBUFFD_EVENT_REMOVE: u32 = 0x15;
/// Event kind: a range was unmapped (u.range).
pub const LIBUFFD_EVENT_UNMAP: u32 = 0x16;

/// Fault flag: the access was a write.
pub const LIBUFFD_PAGEFAULT_FLAG_WRITE: u32 = 0x1;
/// Fault flag: a write to a write-protected page.
pub const LIBUFFD_PAGEFAULT_FLAG_WP: u32 = 0x2;
/// Fault flag: a minor fault (page in the page cache, not mapped).
pub const LIBUFFD_PAGEFAULT_FLAG_MINOR: u32 = 0x4;

/// Options for libuffd_open() and libuffd_handle_from_fd().
///
/// Set sz to sizeof(struct libuffd_open_opts) and every unused field to
/// zero (LIBUFFD_OPTS does both). All zero, or NULL instead of a struct,
/// means the defaults: close-on-exec, blocking, faults from user and
/// kernel mode trapped, no features.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct libuffd_open_opts {
    /// sizeof(struct libuffd_open_opts) as the caller was compiled with.
    pub sz: usize,
    /// LIBUFFD_OPEN_* flags.
    pub flags: u32,
    /// Must be zero.
    pub reserved: u32,
    /// Features wanted if the kernel offers them (LIBUFFD_FEATURE_*; unknown
    /// bits are passed to the kernel as they are). Those it lacks are left
    /// out of the negotiated set, without error.
    pub features: u64,
    /// Features without which the call fails with -EOPNOTSUPP.
    pub required_features: u64,
}

/// A page fault (event kind LIBUFFD_EVENT_PAGEFAULT).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct libuffd_fault_info {
    /// The faulting address, page-aligned (without EXACT_ADDRESS on
    /// hugetlb, aligned to the huge page, as the kernel reports it).
    pub address: *mut libc::c_void,
    /// The exact faulting address when LIBUFFD_FEATURE_EXACT_ADDRESS was
    /// negotiated; otherwise equal to address.
    pub exact_address: *mut libc::c_void,
    /// LIBUFFD_PAGEFAULT_FLAG_* bits. Neither WP nor MINOR: a missing-page fault.
    pub flags: u32,
    /// The faulting thread's id with LIBUFFD_FEATURE_THREAD_ID, else 0.
    pub thread_id: u32,
}

/// A fork of the monitored process (event kind LIBUFFD_EVENT_FORK).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct libuffd_fork_info {
    /// A new userfaultfd serving the child's memory, owned by the caller:
    /// close() it, after adopting it with libuffd_handle_from_fd() (which
    /// works on its own duplicate) if it is to be served.
    pub fd: i32,
    /// Zero.
    pub reserved: u32,
}

/// A move of registered memory (event kind LIBUFFD_EVENT_REMAP).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct libuffd_remap_info {
    /// Old start address.
    pub from: *mut libc::c_void,
    /// New start address.
    pub to: *mut libc::c_void,
    /// Old length in bytes.
    pub len: u64,
}

/// An address range [start, end) (events LIBUFFD_EVENT_REMOVE, _UNMAP).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct libuffd_range_info {
    /// First byte.
    pub start: *mut libc::c_void,
    /// One past the last byte.
    pub end: *mut libc::c_void,
}

/// The payload of a libuffd_event; which member is valid depends on kind.
#[repr(C)]
#[derive(Clone, Copy)]
pub union libuffd_event_data {
    /// LIBUFFD_EVENT_PAGEFAULT.
    pub fault: libuffd_fault_info,
    /// LIBUFFD_EVENT_FORK.
    pub fork: libuffd_fork_info,
    /// LIBUFFD_EVENT_REMAP.
    pub remap: libuffd_remap_info,
    /// LIBUFFD_EVENT_REMOVE and LIBUFFD_EVENT_UNMAP.
    pub range: libuffd_range_info,
    /// For a kind this header does not know: the kernel's three argument
    /// words as they came. For known kinds: the decoded member's bytes,
    /// then zeros.
    pub raw: [u64; 3],
}

/// One decoded userfaultfd event (32 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct libuffd_event {
    /// LIBUFFD_EVENT_*; a newer kernel's unknown code is passed as it is.
    pub kind: u32,
    /// Zero.
    pub reserved: u32,
    /// The payload, selected by kind.
    pub u: libuffd_event_data,
}

const _: () = assert!(std::mem::size_of::<libuffd_event>() == 32);
const _: () = assert!(std::mem::size_of::<libuffd_open_opts>() == 32);
// Two addresses (pointer-sized: 24 bytes on 64-bit, 16 on 32-bit targets),
// then flags and thread_id; the event union stays 32 bytes either way.
const _: () = assert!(
    std::mem::size_of::<libuffd_fault_info>() == 2 * std::mem::size_of::<*mut libc::c_void>() + 8
);

/// A userfaultfd: the descriptor, its negotiated features, and nothing
/// else. Create with libuffd_open() or libuffd_handle_from_fd(); release with
/// libuffd_handle_free(). Every function taking a handle may be called from
/// several threads at once.
pub struct libuffd_handle {
    _private: [u8; 0],
}

// ---------------------------------------------------------------- monitor

/// libuffd_monitor_opts.flags: keep the fault-around window fixed at
/// window_min instead of adapting it to the access pattern.
pub const LIBUFFD_MONITOR_FIXED_WINDOW: u32 = 0x1;
/// libuffd_monitor_opts.flags: do not serve forked children (their
/// userfaultfds are closed unless on_fork takes them).
pub const LIBUFFD_MONITOR_NO_FORK_SERVE: u32 = 0x2;
/// libuffd_monitor_opts.flags: the same as stop_policy LIBUFFD_ON_STOP_BLOCK
/// (kept for older callers; with it, stop_policy must be 0 or BLOCK).
pub const LIBUFFD_MONITOR_NO_RELEASE_ON_STOP: u32 = 0x4;
/// libuffd_monitor_opts.flags: hand every fault to the workers, however cheap
/// (without it they take only faults that may wait: a callback, a pread).
/// A copy from memory is faster done by the reader than handed off, unless
/// the machine has CPUs to spare for copying in parallel.
pub const LIBUFFD_MONITOR_HAND_OFF_ALL: u32 = 0x8;

/// Error policy: poison the page, so the faulting thread gets SIGBUS.
/// Where the poison fails too (memory without POISON support, a wrong
/// page size), the thread is woken to fault again; if the same fault
/// comes back failing 8 times, the monitor stops with the error
/// (libuffd_monitor_run()/libuffd_monitor_wait() return it) and its stop
/// releases the faulting threads, rather than serve the failure for ever.
pub const LIBUFFD_ON_ERROR_SIGBUS: u32 = 0;
/// Error policy: try the fault again (on_fault is called again, or the
/// source read again) while its thread stays blocked, after a pause of 1 ms
/// doubled after each failed try (at most 64 ms); each failed try counts in
/// failed. After 8 failed tries (about 127 ms) LIBUFFD_ON_ERROR_SIGBUS
/// applies to that fault: the page is poisoned and the thread gets SIGBUS.
/// A fault still waiting for its next try when the monitor stops is
/// released as the stop releases every blocked thread.
pub const LIBUFFD_ON_ERROR_RETRY: u32 = 1;
/// Error policy: poison the page and stop the monitor with the error.
pub const LIBUFFD_ON_ERROR_STOP: u32 = 2;

/// Stop policy (libuffd_monitor_opts.stop_policy,
/// libuffd_region_opts.stop_policy): what the end of a run (stop, an
/// error, LIBUFFD_ON_FAULT_STOP) does to a region's memory, for the threads
/// blocked in faults the monitor no longer serves and the pages not yet
/// placed. The default: LIBUFFD_ON_STOP_SIGBUS for regions with a buffer,
/// fd or callback source (pages not yet restored hold data: they never
/// silently read as zeros), LIBUFFD_ON_STOP_ZERO for ZERO and PAGE_CACHE
/// regions. In a region's options, 0 means the monitor's policy.
pub const LIBUFFD_ON_STOP_DEFAULT: u32 = 0;
/// Stop policy: leave the region registered. Threads blocked in its faults
/// stay blocked until the monitor runs again (libuffd_monitor_run() or
/// libuffd_monitor_start() after the stop: the new run wakes them to fault
/// afresh, and serves them) or the handle is freed. With it as the
/// monitor's policy, a stop wakes nothing.
pub const LIBUFFD_ON_STOP_BLOCK: u32 = 1;
/// Stop policy: poison every page of the region not yet placed
/// (UFFDIO_POISON), unregister it and wake its threads: they, and every
/// later access to those pages, get SIGBUS; pages already placed stay
/// readable. Where the kernel refuses the poison (no POISON support), the
/// documented fallback is LIBUFFD_ON_STOP_BLOCK, with a log line.
pub const LIBUFFD_ON_STOP_SIGBUS: u32 = 2;
/// Stop policy: unregister the region and wake its threads: pages not yet
/// placed read as zeros from then on (the behaviour of 1.0's
/// release-on-stop, now only on request for regions whose pages hold data).
pub const LIBUFFD_ON_STOP_ZERO: u32 = 3;

/// REMOVE policy: later faults in the removed range get zero pages.
pub const LIBUFFD_ON_REMOVE_ZERO: u32 = 0;
/// REMOVE policy: unregister the removed range.
pub const LIBUFFD_ON_REMOVE_UNREGISTER: u32 = 1;
/// REMOVE policy: refill from the source. Later faults in the removed
/// range re-read the region's source (buffer, file) as if the pages had
/// never been placed; ZERO and CALLBACK regions are unchanged by it. The
/// pages a budgeted region evicts always come back this way.
pub const LIBUFFD_ON_REMOVE_REFILL: u32 = 2;

/// Region source: zero-filled pages.
pub const LIBUFFD_SOURCE_ZERO: u32 = 0;
/// Region source: a buffer of this process (buffer, buffer_len).
pub const LIBUFFD_SOURCE_BUFFER: u32 = 1;
/// Region source: pread() from fd at fd_offset. Short reads and EINTR
/// are retried until each page is complete. A page that the file ends
/// inside or before (end-of-file inside the region, a file truncated while
/// the monitor runs) and a read error (EIO...) fail that fault: the error
/// policy applies, the failed counter counts it and on_log names the file
/// offset; no page is ever made of zeros the file does not hold, unless the
/// region has LIBUFFD_REGION_ZERO_PAST_EOF.
pub const LIBUFFD_SOURCE_FD: u32 = 2;
/// Region source: the on_fault callback resolves every fault.
pub const LIBUFFD_SOURCE_CALLBACK: u32 = 3;
/// Region source: the page cache (MINOR faults, resolved by CONTINUE).
pub const LIBUFFD_SOURCE_PAGE_CACHE: u32 = 4;
/// Region source: a page server at the other end of the connected socket
/// fd (Unix or TCP), fd_offset its offset of the region's first byte, at
/// most max_in_flight requests outstanding (0: 16). Faults are deferred
/// and completed as replies arrive: the monitor never waits on the
/// network. The socket is duplicated; regions naming one socket share the
/// connection; the monitor reads the socket while it lives (nobody else
/// may meanwhile; it is the caller's again after libuffd_monitor_free()).
/// A fault asks for its fault-around window (whole pages, at most 4 MiB).
/// On a TCP socket the monitor sets TCP_NODELAY (on the socket the
/// caller shares): a request must not wait for the ACK of an earlier one.
/// With LIBUFFD_REGION_PREFETCH the monitor also pulls the pages nobody
/// touched, in the background: first-touched pages first, the rest in
/// order (the post-copy pattern, c-examples/postcopy.c; see the flag).
/// A refused request or a lost connection (the server died)
/// fails the faults concerned (SIGBUS, counted in failed). Protocol, and a
/// server: libuffd_page_server_serve().
pub const LIBUFFD_SOURCE_REMOTE: u32 = 5;

/// libuffd_region_opts.flags: populate the region in the background, under
/// libuffd_monitor_run()/start() (not libuffd_monitor_dispatch()); a region
/// added while the monitor runs is prefetched too. Pages already present
/// (faulted first) are skipped; the bytes placed are counted in
/// prefetched_bytes. A LIBUFFD_SOURCE_REMOTE region is fetched in order,
/// in requests of 256 KiB (at least a page), one at a time per
/// connection, counted in max_in_flight and sent only when no fault's
/// request waits: faults' requests go first. A failed prefetch request
/// (the server refused it, e.g. ENODATA past the end of its file) is
/// logged and leaves the rest of the region to its faults, which succeed
/// or fail on their own. The prefetch ends with the run: a stop does not
/// wait for it. The flag is accepted and does nothing for
/// LIBUFFD_SOURCE_CALLBACK regions, whose pages come only with their
/// faults. Done: the prefetch_done_regions counter
/// (libuffd_monitor_get_stats()) counts each PREFETCH region whose
/// prefetch ended; with no REMOVE, UNMAP or mremap splitting them, the
/// prefetch of n regions is done when it reaches n.
pub const LIBUFFD_REGION_PREFETCH: u32 = 0x1;
/// libuffd_region_opts.flags, LIBUFFD_SOURCE_FD: bytes past end-of-file
/// read as zeros (a page the file ends inside is padded with zeros, a page
/// past it is a zero page) instead of failing the fault.
pub const LIBUFFD_REGION_ZERO_PAST_EOF: u32 = 0x2;
/// libuffd_region_opts.flags: track which pages are written
/// (libuffd_monitor_dirty_scan()). The range is registered MISSING|WP
/// (LIBUFFD_REGISTER_WP is added to register_mode; with register_mode 0
/// the caller's own registration must include WP, else -EINVAL), pages
/// already present are write-protected by libuffd_monitor_add_region()
/// (tracking starts clean: their data stays, their next writes are
/// recorded), every page the monitor places there is placed
/// write-protected, and writes are recorded: with LIBUFFD_FEATURE_WP_ASYNC on the handle by the kernel
/// (read with PAGEMAP_SCAN, no fault reaches the monitor), else by the
/// monitor on each first write's WP fault (on_write, then un-protect). A
/// range the caller registered WP without MISSING on anonymous memory needs
/// LIBUFFD_FEATURE_WP_UNPOPULATED for the latter: without it pages never
/// touched are not protected, and their first writes are not seen.
pub const LIBUFFD_REGION_TRACK_DIRTY: u32 = 0x4;
/// libuffd_region_opts.flags, with LIBUFFD_REGION_TRACK_DIRTY: insist on
/// the synchronous path (WP faults through the monitor); -EINVAL on a
/// handle with LIBUFFD_FEATURE_WP_ASYNC, whose WP faults the kernel
/// resolves itself.
pub const LIBUFFD_REGION_DIRTY_SYNC: u32 = 0x8;
/// libuffd_region_opts.flags, with max_resident: dirty pages are written
/// back to writeback_fd (pwrite at the page's source offset) before they
/// are evicted. It must be the LIBUFFD_SOURCE_FD source's file (checked:
/// -EINVAL otherwise, and with a buffer source), so that evicted pages
/// come back with what was written back. Duplicated like fd.
pub const LIBUFFD_REGION_WRITEBACK_FD: u32 = 0x10;
/// libuffd_region_opts.flags, with max_resident: dirty pages are written
/// back by ops->on_writeback (which must be set: -EINVAL otherwise).
pub const LIBUFFD_REGION_WRITEBACK_CALLBACK: u32 = 0x20;
/// libuffd_region_opts.flags, with max_resident and no write-back sink:
/// the caller declares that the application does not write the region. A
/// page written anyway is never evicted (it stays resident, over the
/// budget if need be): nothing is lost. A budgeted region with neither a
/// sink nor this flag is refused (-EINVAL).
pub const LIBUFFD_REGION_READ_ONLY: u32 = 0x40;

/// on_fault return: the callback resolved the fault (libuffd_monitor_copy()
/// and friends).
pub const LIBUFFD_ON_FAULT_HANDLED: i32 = 0;
/// on_fault return: serve the fault from the region's source.
pub const LIBUFFD_ON_FAULT_USE_SOURCE: i32 = 1;
/// on_fault return: the callback kept a copy of the fault and will resolve
/// it later, from any thread.
pub const LIBUFFD_ON_FAULT_DEFER: i32 = 2;
/// on_fault return: stop the monitor.
pub const LIBUFFD_ON_FAULT_STOP: i32 = 3;
/// on_fault return: the callback placed the page itself with the handle's
/// own operations (libuffd_copy(), libuffd_zeropage(), ... on the handle
/// the fault came from), as a client with its own resolution code does. The
/// monitor trusts it: it wakes the page (a copy with LIBUFFD_COPY_DONTWAKE
/// left the thread waiting) and counts the fault resolved. A page that was
/// not in fact placed makes the thread fault again and on_fault is called
/// again: nothing is lost, but a callback that keeps returning this
/// without placing the page loops.
pub const LIBUFFD_ON_FAULT_RESOLVED_BY_CALLER: i32 = 4;

/// on_fork return: serve the child with the parent's regions.
pub const LIBUFFD_ON_FORK_SERVE: i32 = 0;
/// on_fork return: the callback took ownership of the descriptor.
pub const LIBUFFD_ON_FORK_TAKEN: i32 = 1;
/// on_fork return: close the child's descriptor.
pub const LIBUFFD_ON_FORK_CLOSE: i32 = 2;

/// Resolution result: resolved now.
pub const LIBUFFD_RESOLVE_DONE: i32 = 0;
/// Resolution result: it had been resolved by someone else; the waiter was
/// woken.
pub const LIBUFFD_RESOLVE_ALREADY_DONE: i32 = 1;
/// Resolution result: the range or the process went away.
pub const LIBUFFD_RESOLVE_GONE: i32 = 2;

/// Number of buckets of libuffd_monitor_stats.latency_log2_ns.
pub const LIBUFFD_LATENCY_BUCKETS: u32 = 32;

/// Monitor options (all zero: the defaults). Set sz to the struct's size.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct libuffd_monitor_opts {
    /// sizeof(struct libuffd_monitor_opts).
    pub sz: usize,
    /// Worker threads resolving faults in parallel (0: the monitor's
    /// thread does). They take turns to read; faults whose resolution may
    /// wait (those of CALLBACK regions, missing-page faults of FD regions:
    /// a pread) run side by side, the worker that read one passing the
    /// reading on and resolving it. Other faults (copies from memory, zero
    /// pages, CONTINUE, write-protect faults) the reading worker resolves
    /// in place, which costs less than a hand-off (see
    /// LIBUFFD_MONITOR_HAND_OFF_ALL).
    pub workers: u32,
    /// Busy-poll this many microseconds before sleeping (0: never).
    pub spin_us: u32,
    /// Fault-around window in pages, minimum (0: 1).
    pub window_min: u32,
    /// Fault-around window in pages, maximum (0: 512); a fault never places
    /// more than 4 MiB.
    pub window_max: u32,
    /// LIBUFFD_MONITOR_* flags.
    pub flags: u32,
    /// LIBUFFD_ON_ERROR_*.
    pub error_policy: u32,
    /// LIBUFFD_ON_REMOVE_*.
    pub remove_policy: u32,
    /// Messages per read (0: 64; at most 4096).
    pub batch: u32,
    /// EAGAIN retries before a thread is woken to fault afresh (0: 1000).
    pub max_retries: u32,
    /// LIBUFFD_ON_STOP_* (0: the default, see LIBUFFD_ON_STOP_DEFAULT).
    /// Unless it is LIBUFFD_ON_STOP_BLOCK, a stop also wakes every thread
    /// blocked in a fault the monitor read and never resolved (a deferred
    /// fault never completed, even one whose range was unmapped since).
    pub stop_policy: u32,
}

/// How a region is served (libuffd_monitor_add_region()). Set sz; every
/// other field zero means its default: zero pages, the range registered
/// already, the monitor's stop policy, the page size asked.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct libuffd_region_opts {
    /// sizeof(struct libuffd_region_opts).
    pub sz: usize,
    /// LIBUFFD_SOURCE_*.
    pub source: u32,
    /// LIBUFFD_REGION_* flags.
    pub flags: u32,
    /// Register the range with these LIBUFFD_REGISTER_* modes first; 0 if
    /// the caller registered it already.
    pub register_mode: u64,
    /// LIBUFFD_SOURCE_BUFFER: the first byte of the region's contents.
    pub buffer: *const libc::c_void,
    /// LIBUFFD_SOURCE_BUFFER: bytes available at buffer (pages past them
    /// are zero-filled).
    pub buffer_len: u64,
    /// LIBUFFD_SOURCE_FD: the file to pread; LIBUFFD_SOURCE_REMOTE: the
    /// connected socket to the page server (only these two sources read
    /// this field: for the others any value, 0 included, is ignored).
    /// For LIBUFFD_SOURCE_FD, libuffd_monitor_add_region()
    /// duplicates it (F_DUPFD_CLOEXEC) and reads its duplicate, closed
    /// with the monitor: the caller may close its own at once. The file's
    /// end inside the region fails faults there, unless
    /// LIBUFFD_REGION_ZERO_PAST_EOF.
    pub fd: i32,
    /// LIBUFFD_ON_STOP_* for this region (0: the monitor's stop_policy).
    pub stop_policy: u32,
    /// LIBUFFD_SOURCE_FD: file offset of the region's first byte
    /// (LIBUFFD_SOURCE_REMOTE: the server's offset of it). An offset
    /// that overflows (past 2^63 - 1) fails the faults it concerns with
    /// EOVERFLOW.
    pub fd_offset: u64,
    /// Handed to on_fault as region_data.
    pub data: *mut libc::c_void,
    /// The page size of the memory (0: ask). For a handle of this
    /// process's own memory the monitor reads the mapping's page size
    /// itself, and a different value here is refused (-EINVAL). For a
    /// descriptor adopted from another process (libuffd_handle_from_fd())
    /// the monitor cannot know it beforehand: give it here (2 MiB for a
    /// 2 MiB hugetlb guest); with 0 it is asked of the faulting thread's
    /// mappings at the region's first fault when the descriptor has
    /// LIBUFFD_FEATURE_THREAD_ID, else the base page size is assumed.
    /// Added in 1.0: older, shorter structs (see sz) mean 0.
    pub page_size: u64,
    /// LIBUFFD_SOURCE_REMOTE: requests outstanding at most on the
    /// connection (0: 16); the first region naming a socket sets it.
    /// Older, shorter structs (see sz) mean 0.
    pub max_in_flight: u32,
    /// Must be 0.
    pub reserved1: u32,
    /// Resident-set budget in bytes (0: none; rounded down to whole pages,
    /// at least one). Before a fault would place more, the monitor evicts
    /// the least-recently-faulted resident pages of the region, writing
    /// dirty ones back first (LIBUFFD_REGION_WRITEBACK_FD or
    /// LIBUFFD_REGION_WRITEBACK_CALLBACK; or LIBUFFD_REGION_READ_ONLY),
    /// then dropping them (MADV_REMOVE for shared memory, MADV_DONTNEED
    /// for private and hugetlb memory); an evicted page comes back from
    /// the source at its next fault. A full budget is brought down by a
    /// batch (1/256 of it, 1 to 16 pages) dropped in one system call;
    /// faults in sequence (a scan) place the following pages too, as many
    /// as the budget has room for (fault-around within the budget).
    /// Pages faulted by a read are placed write-protected (their first
    /// write is seen once, to mark them dirty); pages faulted by a write
    /// are placed writable and counted dirty at once: register_mode gets
    /// LIBUFFD_REGISTER_WP added, and a caller that registered the range
    /// itself registers it MISSING|WP. Only LIBUFFD_SOURCE_BUFFER and
    /// LIBUFFD_SOURCE_FD regions, without LIBUFFD_REGION_PREFETCH or MINOR
    /// registration, with a known page size. With LIBUFFD_FEATURE_EVENT_REMOVE on the handle the
    /// drops are made by the monitor's evictor thread (a madvise on the
    /// monitor's own thread would wait for itself to read the REMOVE
    /// event): the resident set may then exceed the budget by up to 64
    /// pages while they are made. Counted in libuffd_monitor_stats
    /// (evictions, writebacks, writeback_bytes, writeback_failures,
    /// resident_pages).
    ///
    /// Dirty pages are written back when they are evicted, and by
    /// libuffd_monitor_writeback() (a checkpoint: written back in place,
    /// kept resident). Neither a stop, libuffd_monitor_remove_region() nor
    /// libuffd_monitor_free() writes them: an application that needs the
    /// file complete (a clean shutdown) calls libuffd_monitor_writeback()
    /// first. After a stop the evicted pages are poisoned by the default
    /// stop policy (their data is in the source); after
    /// libuffd_monitor_remove_region() they read as the memory does without
    /// userfaultfd (zeros for anonymous memory).
    pub max_resident: u64,
    /// LIBUFFD_REGION_WRITEBACK_FD: the file dirty pages are written to.
    pub writeback_fd: i32,
    /// Must be 0.
    pub reserved2: u32,
}

impl Default for libuffd_region_opts {
    fn default() -> Self {
        libuffd_region_opts {
            sz: 0,
            source: 0,
            flags: 0,
            register_mode: 0,
            buffer: std::ptr::null(),
            buffer_len: 0,
            fd: 0,
            stop_policy: 0,
            fd_offset: 0,
            data: std::ptr::null_mut(),
            page_size: 0,
            max_in_flight: 0,
            reserved1: 0,
            max_resident: 0,
            writeback_fd: 0,
            reserved2: 0,
        }
    }
}

/// A fault handed to on_fault. Copy it to defer the fault; the copy is
/// what libuffd_monitor_copy() and friends take.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct libuffd_fault {
    /// The faulting address as reported (page-aligned).
    pub address: *mut libc::c_void,
    /// The exact address with LIBUFFD_FEATURE_EXACT_ADDRESS, else address.
    pub exact_address: *mut libc::c_void,
    /// LIBUFFD_PAGEFAULT_FLAG_* bits.
    pub flags: u32,
    /// Faulting thread id with LIBUFFD_FEATURE_THREAD_ID, else 0.
    pub thread_id: u32,
    /// The faulting page, aligned to page_size.
    pub page: *mut libc::c_void,
    /// The page size of the memory at the fault (4096, or the hugetlb
    /// size): the region's; for a fault in no region, the mapping's, as
    /// the memory's owner maps it (the base page size when that cannot
    /// be learnt).
    pub page_size: u64,
    /// Start of the region the fault is in (NULL if in none).
    pub region_start: *mut libc::c_void,
    /// Offset of page in the region's source.
    pub region_offset: u64,
    /// The region's data pointer.
    pub region_data: *mut libc::c_void,
    /// Which of the monitor's handles the fault came from.
    pub handle_id: u32,
    /// Zero.
    pub reserved: u32,
}

/// Monitor callbacks (libuffd_monitor_new()). Every callback may be NULL;
/// set sz to sizeof(struct libuffd_monitor_ops) (LIBUFFD_OPTS does), as for
/// every options struct: callbacks are only ever appended. Every callback
/// receives the user_data given to libuffd_monitor_new() and the monitor.
///
/// Callbacks run on the monitor's threads (faults on workers, when there
/// are workers): they must be thread-safe, and must not fork, mremap,
/// munmap or madvise registered memory (the kernel would wait on the
/// monitor: deadlock).
///
/// A callback must return normally: it must not throw a C++ exception out
/// of itself (mark C++ callbacks noexcept, or catch everything inside),
/// nor longjmp/siglongjmp out of it, nor end its thread (pthread_exit).
/// Any of these unwinds or jumps over the library's frames: the fault in
/// hand is never released, locks stay held, and the process may abort.
/// libuffd_monitor_free() and libuffd_monitor_wait() of the same monitor
/// from inside a callback fail with EDEADLK.
#[repr(C)]
#[derive(Default, Clone, Copy)]
pub struct libuffd_monitor_ops {
    /// sizeof(struct libuffd_monitor_ops).
    pub sz: usize,
    /// A fault in a LIBUFFD_SOURCE_CALLBACK region, or in no region.
    /// Returns LIBUFFD_ON_FAULT_* or a negative errno (the error policy then
    /// releases the thread). NULL: such faults fall to the error policy.
    pub on_fault: Option<
        unsafe extern "C" fn(
            user_data: *mut libc::c_void,
            m: *mut libuffd_monitor,
            f: *const libuffd_fault,
        ) -> i32,
    >,
    /// The monitored process forked; fd is the child's userfaultfd.
    /// Returns LIBUFFD_ON_FORK_*. NULL: serve the child.
    pub on_fork: Option<
        unsafe extern "C" fn(
            user_data: *mut libc::c_void,
            m: *mut libuffd_monitor,
            handle_id: u32,
            fd: i32,
        ) -> i32,
    >,
    /// A registered range moved (mremap()): the len bytes that were at
    /// from are now at to, and its regions moved with them.
    pub on_remap: Option<
        unsafe extern "C" fn(
            user_data: *mut libc::c_void,
            m: *mut libuffd_monitor,
            handle_id: u32,
            from: *mut libc::c_void,
            to: *mut libc::c_void,
            len: u64,
        ),
    >,
    /// The pages of the registered range [start, end) are being dropped by
    /// madvise().
    pub on_remove: Option<
        unsafe extern "C" fn(
            user_data: *mut libc::c_void,
            m: *mut libuffd_monitor,
            handle_id: u32,
            start: *mut libc::c_void,
            end: *mut libc::c_void,
        ),
    >,
    /// The registered range [start, end) was unmapped (its regions are
    /// gone).
    pub on_unmap: Option<
        unsafe extern "C" fn(
            user_data: *mut libc::c_void,
            m: *mut libuffd_monitor,
            handle_id: u32,
            start: *mut libc::c_void,
            end: *mut libc::c_void,
        ),
    >,
    /// An error the monitor handled, as text valid during the call.
    pub on_log: Option<
        unsafe extern "C" fn(
            user_data: *mut libc::c_void,
            m: *mut libuffd_monitor,
            msg: *const libc::c_char,
        ),
    >,
    /// The first write to a page of a LIBUFFD_REGION_TRACK_DIRTY region on
    /// the synchronous path (handle without LIBUFFD_FEATURE_WP_ASYNC): the
    /// page [page, page + page_size) is about to be marked dirty and
    /// un-protected; the writing thread waits until this returns.
    /// region_data is the region's libuffd_region_opts.data. It must not
    /// write the page (still protected: it would wait for itself). NULL:
    /// just mark and un-protect. Added in 1.0 (older, shorter tables, see
    /// sz, have none).
    pub on_write: Option<
        unsafe extern "C" fn(
            user_data: *mut libc::c_void,
            m: *mut libuffd_monitor,
            handle_id: u32,
            page: *mut libc::c_void,
            page_size: u64,
            region_data: *mut libc::c_void,
        ),
    >,
    /// Write back a dirty page of a LIBUFFD_REGION_WRITEBACK_CALLBACK
    /// region before it is evicted: page->page (readable, write-protected
    /// while the callback runs) holds page->page_size bytes to store where
    /// the region's source reads them (page->region_offset). The fault
    /// fields say which page: address and page are the page,
    /// region_start, region_offset, region_data and handle_id the region's,
    /// flags 0. Returns 0, or a negative errno: the page then stays
    /// resident and dirty (writeback_failures, on_log) and is tried again
    /// at a later eviction. Runs on the thread whose fault needs the room.
    pub on_writeback: Option<
        unsafe extern "C" fn(
            user_data: *mut libc::c_void,
            m: *mut libuffd_monitor,
            page: *const libuffd_fault,
        ) -> i32,
    >,
}

/// Monitor counters (libuffd_monitor_get_stats()). Set sz before the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct libuffd_monitor_stats {
    /// sizeof(struct libuffd_monitor_stats).
    pub sz: usize,
    /// Page-fault messages read.
    pub faults: u64,
    /// FORK events.
    pub forks: u64,
    /// REMAP events.
    pub remaps: u64,
    /// REMOVE events.
    pub removes: u64,
    /// UNMAP events.
    pub unmaps: u64,
    /// Faults resolved.
    pub resolved: u64,
    /// Faults found already resolved (EEXIST) and woken.
    pub eexist: u64,
    /// EAGAIN retries.
    pub retried: u64,
    /// Faults deferred by the callback.
    pub deferred: u64,
    /// Faults that failed (the error policy released the thread).
    pub failed: u64,
    /// Faults dropped: their range went away or their process exited.
    pub dropped: u64,
    /// Duplicate messages for a page already handled in the same batch.
    pub coalesced: u64,
    /// Bytes placed by fault handling (fault-around included).
    pub bytes: u64,
    /// Bytes placed by the background prefetcher.
    pub prefetched_bytes: u64,
    /// read() calls that returned messages.
    pub reads: u64,
    /// Fault latency (message read to resolved): bucket i counts latencies
    /// in [2^i, 2^(i+1)) nanoseconds; the last bucket holds the rest.
    pub latency_log2_ns: [u64; 32],
    /// Faults the reader handed to the workers (see
    /// libuffd_monitor_opts.workers).
    pub handed_off: u64,
    /// Faults pending when a run ended (still queued, waiting for a retry,
    /// or deferred by on_fault and not completed) whose threads the stop policy left blocked
    /// (LIBUFFD_ON_STOP_BLOCK, or SIGBUS where the poison was refused).
    pub stop_blocked: u64,
    /// Such faults released into SIGBUS (LIBUFFD_ON_STOP_SIGBUS).
    pub stop_sigbus: u64,
    /// Such faults released to zero pages (LIBUFFD_ON_STOP_ZERO), or to an
    /// ordinary fault (a fault whose range was unmapped or moved since:
    /// the stop wakes it unless the monitor's policy is
    /// LIBUFFD_ON_STOP_BLOCK).
    pub stop_zeroed: u64,
    /// Reads of a userfaultfd that failed for want of a descriptor
    /// (EMFILE/ENFILE while a FORK message waited): counted, logged and
    /// read again, never fatal.
    pub read_failures: u64,
    /// Forked children's userfaultfds closed because the child exited.
    pub children_closed: u64,
    /// Forked children left unserved because no room was ready for them
    /// (logged): their memory faults as without userfaultfd.
    pub children_dropped: u64,
    /// First writes to pages of synchronously dirty-tracked regions (WP
    /// faults marked dirty and un-protected; on_write calls).
    pub dirty_writes: u64,
    /// libuffd_monitor_dirty_scan() calls that got past their argument
    /// checks.
    pub dirty_scans: u64,
    /// Of those, scans of asynchronous (LIBUFFD_FEATURE_WP_ASYNC) regions:
    /// one PAGEMAP_SCAN ioctl each.
    pub dirty_scans_async: u64,
    /// Pages of budgeted regions evicted (libuffd_region_opts.max_resident).
    pub evictions: u64,
    /// Dirty pages written back before their eviction.
    pub writebacks: u64,
    /// Bytes written back.
    pub writeback_bytes: u64,
    /// Write-backs that failed: the page stayed resident and dirty (logged).
    pub writeback_failures: u64,
    /// Pages of budgeted regions resident now, all regions together (a
    /// level, not a count; no peak is kept: sample it for one).
    pub resident_pages: u64,
    /// LIBUFFD_REGION_PREFETCH regions whose background prefetch ended:
    /// every page placed or found present, or the rest given up after an
    /// error (logged; those pages come with their faults). Each region
    /// counts once; a piece an event (REMOVE, UNMAP, mremap) split off
    /// before the prefetch got there counts on its own, a removed piece not
    /// at all. With no such event, the prefetch of n PREFETCH regions is
    /// done when this reaches n.
    pub prefetch_done_regions: u64,
}

/// A fault-handling engine over one or more handles. Create with
/// libuffd_monitor_new(); free with libuffd_monitor_free().
pub struct libuffd_monitor {
    _private: [u8; 0],
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: T is a repr(C) struct of integers and pointers without
        // padding (checked by the size assertion of each caller); reading its
        // bytes is reading initialised memory.
        unsafe {
            std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
        .to_vec()
    }

    /// Zero means default for every field, in C and in Rust alike: a C
    /// caller's memset(0) struct (what LIBUFFD_OPTS starts from) and the
    /// Rust Default are the same bytes.
    #[test]
    fn zeroed_options_are_the_defaults() {
        assert_eq!(std::mem::size_of::<libuffd_open_opts>(), 32);
        assert!(bytes(&libuffd_open_opts::default()).iter().all(|&b| b == 0));
        assert_eq!(std::mem::size_of::<libuffd_monitor_opts>(), 48);
        assert!(bytes(&libuffd_monitor_opts::default())
            .iter()
            .all(|&b| b == 0));
        assert_eq!(std::mem::size_of::<libuffd_region_opts>(), 96);
        assert!(
            bytes(&libuffd_region_opts::default())
                .iter()
                .all(|&b| b == 0),
            "libuffd_region_opts::default() is not all zeros: {:?}",
            libuffd_region_opts::default()
        );
        assert_eq!(std::mem::size_of::<libuffd_monitor_ops>(), 9 * 8);
        assert!(bytes(&libuffd_monitor_ops::default())
            .iter()
            .all(|&b| b == 0));
    }
}
