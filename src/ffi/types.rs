//! Every type and constant of the C ABI. Once released, nothing here is
//! renamed, renumbered, reordered or removed; additions go at the end of a
//! struct (behind its size field) or as new constants.
//!
//! Names use the `LIBUFFD_` / `uffd_` prefixes and never a name of
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
/// for uffd_read_events() with a timeout other than -1.
pub const LIBUFFD_OPEN_NONBLOCK: u32 = 0x1;
/// Open flag: also trap faults taken in kernel mode (a system call or KVM
/// touching registered memory). Without it the fd is user-mode-only (the
/// default: it is all an unprivileged process may create, and it closes a
/// known exploit pattern). Needs CAP_SYS_PTRACE,
/// vm.unprivileged_userfaultfd=1, or access to /dev/userfaultfd.
pub const LIBUFFD_OPEN_KERNEL_FAULTS: u32 = 0x2;
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
/// Feature: uffd_poison() is available.
pub const LIBUFFD_FEATURE_POISON: u64 = 0x4000;
/// Feature: WP faults are resolved by the kernel without a message (dirty
/// tracking); implies WP_UNPOPULATED.
pub const LIBUFFD_FEATURE_WP_ASYNC: u64 = 0x8000;
/// Feature: uffd_move() is available.
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

/// Bit in the ioctl mask of uffd_register(): uffd_wake() allowed.
pub const LIBUFFD_IOCTL_WAKE: u64 = 0x4;
/// Bit in the ioctl mask of uffd_register(): uffd_copy() allowed.
pub const LIBUFFD_IOCTL_COPY: u64 = 0x8;
/// Bit in the ioctl mask of uffd_register(): uffd_zeropage() allowed.
pub const LIBUFFD_IOCTL_ZEROPAGE: u64 = 0x10;
/// Bit in the ioctl mask of uffd_register(): uffd_move() allowed.
pub const LIBUFFD_IOCTL_MOVE: u64 = 0x20;
/// Bit in the ioctl mask of uffd_register(): uffd_writeprotect() allowed.
pub const LIBUFFD_IOCTL_WRITEPROTECT: u64 = 0x40;
/// Bit in the ioctl mask of uffd_register(): uffd_continue() allowed.
pub const LIBUFFD_IOCTL_CONTINUE: u64 = 0x80;
/// Bit in the ioctl mask of uffd_register(): uffd_poison() allowed.
pub const LIBUFFD_IOCTL_POISON: u64 = 0x100;

// ----------------------------------------------------------- op modes

/// uffd_copy() mode: do not wake the faulting threads (wake later).
pub const LIBUFFD_COPY_DONTWAKE: u64 = 0x1;
/// uffd_copy() mode: map the pages write-protected (needs a WP
/// registration).
pub const LIBUFFD_COPY_WP: u64 = 0x2;
/// uffd_zeropage() mode: do not wake the faulting threads.
pub const LIBUFFD_ZEROPAGE_DONTWAKE: u64 = 0x1;
/// uffd_writeprotect() mode: protect (without it: unprotect and wake).
pub const LIBUFFD_WRITEPROTECT_WP: u64 = 0x1;
/// uffd_writeprotect() mode: when unprotecting, do not wake.
pub const LIBUFFD_WRITEPROTECT_DONTWAKE: u64 = 0x2;
/// uffd_continue() mode: do not wake the faulting threads.
pub const LIBUFFD_CONTINUE_DONTWAKE: u64 = 0x1;
/// uffd_continue() mode: map the pages write-protected.
pub const LIBUFFD_CONTINUE_WP: u64 = 0x2;
/// uffd_poison() mode: do not wake the faulting threads.
pub const LIBUFFD_POISON_DONTWAKE: u64 = 0x1;
/// uffd_move() mode: do not wake the faulting threads.
pub const LIBUFFD_MOVE_DONTWAKE: u64 = 0x1;
/// uffd_move() mode: holes in the source count as moved instead of
/// failing with -ENOENT.
pub const LIBUFFD_MOVE_ALLOW_SRC_HOLES: u64 = 0x2;

// ---------------------------------------------------------------- events

/// Event kind: a thread faulted on registered memory (`u.fault`).
pub const LIBUFFD_EVENT_PAGEFAULT: u32 = 0x12;
/// Event kind: the monitored process forked (`u.fork`).
pub const LIBUFFD_EVENT_FORK: u32 = 0x13;
/// Event kind: a registered range was moved by mremap() (`u.remap`).
pub const LIBUFFD_EVENT_REMAP: u32 = 0x14;
/// Event kind: madvise() is dropping the pages of a range (`u.range`).
pub const LIBUFFD_EVENT_REMOVE: u32 = 0x15;
/// Event kind: a range was unmapped (`u.range`).
pub const LIBUFFD_EVENT_UNMAP: u32 = 0x16;

/// Fault flag: the access was a write.
pub const LIBUFFD_FAULT_WRITE: u32 = 0x1;
/// Fault flag: a write to a write-protected page.
pub const LIBUFFD_FAULT_WP: u32 = 0x2;
/// Fault flag: a minor fault (page in the page cache, not mapped).
pub const LIBUFFD_FAULT_MINOR: u32 = 0x4;

/// Options for uffd_open() and uffd_handle_from_fd().
///
/// Set `sz` to `sizeof(struct uffd_open_opts)` and every unused field to
/// zero (`LIBUFFD_OPTS_INIT` does both). Passing NULL instead of a struct
/// means all defaults: close-on-exec, blocking, user-mode-only, no
/// features.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct uffd_open_opts {
    /// `sizeof(struct uffd_open_opts)` as the caller was compiled with.
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
#[derive(Debug, Default, Clone, Copy)]
pub struct uffd_fault_info {
    /// The faulting address, page-aligned (without EXACT_ADDRESS on
    /// hugetlb, aligned to the huge page, as the kernel reports it).
    pub address: u64,
    /// The exact faulting address when LIBUFFD_FEATURE_EXACT_ADDRESS was
    /// negotiated; otherwise equal to `address`.
    pub exact_address: u64,
    /// LIBUFFD_FAULT_* bits. Neither WP nor MINOR: a missing-page fault.
    pub flags: u32,
    /// The faulting thread's id with LIBUFFD_FEATURE_THREAD_ID, else 0.
    pub thread_id: u32,
}

/// A fork of the monitored process (event kind LIBUFFD_EVENT_FORK).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct uffd_fork_info {
    /// A new userfaultfd serving the child's memory, owned by the caller:
    /// adopt it with uffd_handle_from_fd() or close() it.
    pub fd: i32,
    /// Zero.
    pub reserved: u32,
}

/// A move of registered memory (event kind LIBUFFD_EVENT_REMAP).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct uffd_remap_info {
    /// Old start address.
    pub from: u64,
    /// New start address.
    pub to: u64,
    /// Old length in bytes.
    pub len: u64,
}

/// An address range `[start, end)` (events LIBUFFD_EVENT_REMOVE, _UNMAP).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct uffd_range_info {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// The payload of a uffd_event; which member is valid depends on `kind`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union uffd_event_data {
    /// LIBUFFD_EVENT_PAGEFAULT.
    pub fault: uffd_fault_info,
    /// LIBUFFD_EVENT_FORK.
    pub fork: uffd_fork_info,
    /// LIBUFFD_EVENT_REMAP.
    pub remap: uffd_remap_info,
    /// LIBUFFD_EVENT_REMOVE and LIBUFFD_EVENT_UNMAP.
    pub range: uffd_range_info,
    /// For a kind this header does not know: the kernel's three argument
    /// words as they came. For known kinds: the decoded member's bytes,
    /// then zeros.
    pub raw: [u64; 3],
}

/// One decoded userfaultfd event (32 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct uffd_event {
    /// LIBUFFD_EVENT_*; a newer kernel's unknown code is passed as it is.
    pub kind: u32,
    /// Zero.
    pub reserved: u32,
    /// The payload, selected by `kind`.
    pub u: uffd_event_data,
}

const _: () = assert!(std::mem::size_of::<uffd_event>() == 32);
const _: () = assert!(std::mem::size_of::<uffd_open_opts>() == 32);
const _: () = assert!(std::mem::size_of::<uffd_fault_info>() == 24);

/// A userfaultfd: the descriptor, its negotiated features, and nothing
/// else. Create with uffd_open() or uffd_handle_from_fd(); release with
/// uffd_handle_free(). Every function taking a handle may be called from
/// several threads at once.
pub struct uffd_handle {
    _private: [u8; 0],
}
