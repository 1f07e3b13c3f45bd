// SPDX-License-Identifier: MIT OR Apache-2.0
//! The userfaultfd uAPI of Linux 6.18, defined here rather than taken from
//! the system headers: this machine's headers are 6.1 and lack MOVE, POISON
//! and WP_ASYNC. Values are checked against the kernel's in the unit tests
//! at the bottom of this file.

/// `UFFD_API`: the only API version the kernel accepts.
pub const UFFD_API: u64 = 0xAA;

/// `UFFD_USER_MODE_ONLY`: trap user-mode faults only.
pub const UFFD_USER_MODE_ONLY: i32 = 1;

/// `USERFAULTFD_IOC_NEW` on `/dev/userfaultfd`: `_IO(0xAA, 0x00)`.
pub const USERFAULTFD_IOC_NEW: u64 = io(UFFDIO, 0x00);

/// The `userfaultfd(2)` system call number (per architecture, from libc).
pub const NR_USERFAULTFD: libc::c_long = super::arch::NR_USERFAULTFD;

// ioctl request numbers, with the target's `_IOC` encoding (src/sys/arch.rs).
use super::arch::{io, ior, iowr};
const UFFDIO: u8 = 0xAA;
pub const UFFDIO_REGISTER: u64 = iowr::<UffdioRegister>(UFFDIO, 0x00);
pub const UFFDIO_UNREGISTER: u64 = ior::<UffdioRange>(UFFDIO, 0x01);
pub const UFFDIO_WAKE: u64 = ior::<UffdioRange>(UFFDIO, 0x02);
pub const UFFDIO_COPY: u64 = iowr::<UffdioCopy>(UFFDIO, 0x03);
pub const UFFDIO_ZEROPAGE: u64 = iowr::<UffdioRangeOp>(UFFDIO, 0x04);
pub const UFFDIO_MOVE: u64 = iowr::<UffdioMove>(UFFDIO, 0x05);
pub const UFFDIO_WRITEPROTECT: u64 = iowr::<UffdioWriteprotect>(UFFDIO, 0x06);
pub const UFFDIO_CONTINUE: u64 = iowr::<UffdioRangeOp>(UFFDIO, 0x07);
pub const UFFDIO_POISON: u64 = iowr::<UffdioRangeOp>(UFFDIO, 0x08);
pub const UFFDIO_API: u64 = iowr::<UffdioApi>(UFFDIO, 0x3F);

// Bit numbers of the ioctls, as reported in `uffdio_api.ioctls` and
// `uffdio_register.ioctls`.
pub const NR_REGISTER: u32 = 0x00;
pub const NR_UNREGISTER: u32 = 0x01;
pub const NR_WAKE: u32 = 0x02;
pub const NR_COPY: u32 = 0x03;
pub const NR_ZEROPAGE: u32 = 0x04;
pub const NR_MOVE: u32 = 0x05;
pub const NR_WRITEPROTECT: u32 = 0x06;
pub const NR_CONTINUE: u32 = 0x07;
pub const NR_POISON: u32 = 0x08;
pub const NR_API: u32 = 0x3F;

// Feature bits (uffdio_api.features).
pub const UFFD_FEATURE_PAGEFAULT_FLAG_WP: u64 = 1 << 0;
pub const UFFD_FEATURE_EVENT_FORK: u64 = 1 << 1;
pub const UFFD_FEATURE_EVENT_REMAP: u64 = 1 << 2;
pub const UFFD_FEATURE_EVENT_REMOVE: u64 = 1 << 3;
pub const UFFD_FEATURE_MISSING_HUGETLBFS: u64 = 1 << 4;
pub const UFFD_FEATURE_MISSING_SHMEM: u64 = 1 << 5;
pub const UFFD_FEATURE_EVENT_UNMAP: u64 = 1 << 6;
pub const UFFD_FEATURE_SIGBUS: u64 = 1 << 7;
pub const UFFD_FEATURE_THREAD_ID: u64 = 1 << 8;
pub const UFFD_FEATURE_MINOR_HUGETLBFS: u64 = 1 << 9;
pub const UFFD_FEATURE_MINOR_SHMEM: u64 = 1 << 10;
pub const UFFD_FEATURE_EXACT_ADDRESS: u64 = 1 << 11;
pub const UFFD_FEATURE_WP_HUGETLBFS_SHMEM: u64 = 1 << 12;
pub const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
pub const UFFD_FEATURE_POISON: u64 = 1 << 14;
pub const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
pub const UFFD_FEATURE_MOVE: u64 = 1 << 16;
/// Kernel-internal marker the kernel ORs into `ctx->features` once the API
/// handshake is done; visible in `/proc/<pid>/fdinfo`.
pub const UFFD_FEATURE_INITIALIZED: u64 = 1 << 31;

// Registration modes.
pub const UFFDIO_REGISTER_MODE_MISSING: u64 = 1 << 0;
pub const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
pub const UFFDIO_REGISTER_MODE_MINOR: u64 = 1 << 2;

// Per-ioctl mode bits.
pub const UFFDIO_COPY_MODE_DONTWAKE: u64 = 1 << 0;
pub const UFFDIO_COPY_MODE_WP: u64 = 1 << 1;
pub const UFFDIO_ZEROPAGE_MODE_DONTWAKE: u64 = 1 << 0;
pub const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;
pub const UFFDIO_WRITEPROTECT_MODE_DONTWAKE: u64 = 1 << 1;
pub const UFFDIO_CONTINUE_MODE_DONTWAKE: u64 = 1 << 0;
pub const UFFDIO_CONTINUE_MODE_WP: u64 = 1 << 1;
pub const UFFDIO_POISON_MODE_DONTWAKE: u64 = 1 << 0;
pub const UFFDIO_MOVE_MODE_DONTWAKE: u64 = 1 << 0;
pub const UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES: u64 = 1 << 1;

// Event codes and fault flags of `struct uffd_msg`.
pub const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
pub const UFFD_EVENT_FORK: u8 = 0x13;
pub const UFFD_EVENT_REMAP: u8 = 0x14;
pub const UFFD_EVENT_REMOVE: u8 = 0x15;
pub const UFFD_EVENT_UNMAP: u8 = 0x16;

/// Whether `code` is one of the events above.
pub fn is_known_event(code: u8) -> bool {
    (UFFD_EVENT_PAGEFAULT..=UFFD_EVENT_UNMAP).contains(&code)
}
pub const UFFD_PAGEFAULT_FLAG_WRITE: u64 = 1 << 0;
pub const UFFD_PAGEFAULT_FLAG_WP: u64 = 1 << 1;
pub const UFFD_PAGEFAULT_FLAG_MINOR: u64 = 1 << 2;

/// `struct uffdio_api`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UffdioApi {
    pub api: u64,
    pub features: u64,
    pub ioctls: u64,
}

/// `struct uffdio_range`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UffdioRange {
    pub start: u64,
    pub len: u64,
}

/// `struct uffdio_register`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UffdioRegister {
    pub range: UffdioRange,
    pub mode: u64,
    pub ioctls: u64,
}

/// `struct uffdio_copy`; `copy` is the kernel's result field.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UffdioCopy {
    pub dst: u64,
    pub src: u64,
    pub len: u64,
    pub mode: u64,
    pub copy: i64,
}

/// `struct uffdio_move`; `moved` is the kernel's `move` result field.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UffdioMove {
    pub dst: u64,
    pub src: u64,
    pub len: u64,
    pub mode: u64,
    pub moved: i64,
}

/// The shape shared by `uffdio_zeropage`, `uffdio_continue` and
/// `uffdio_poison`: a range, a mode, and a signed result field.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UffdioRangeOp {
    pub range: UffdioRange,
    pub mode: u64,
    pub result: i64,
}

/// `struct uffdio_writeprotect` (no result field).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UffdioWriteprotect {
    pub range: UffdioRange,
    pub mode: u64,
}

/// `struct uffd_msg`: 32 packed bytes; `arg` is the 24-byte union seen as
/// three u64 words (pagefault: flags, address, ptid in the low half of the
/// third word; fork: ufd in the low half of the first; remap: from, to,
/// len; remove/unmap: start, end).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UffdMsg {
    pub event: u8,
    pub reserved1: u8,
    pub reserved2: u16,
    pub reserved3: u32,
    pub arg: [u64; 3],
}

const _: () = assert!(std::mem::size_of::<UffdMsg>() == 32);
const _: () = assert!(std::mem::size_of::<UffdioApi>() == 24);
const _: () = assert!(std::mem::size_of::<UffdioRegister>() == 32);
const _: () = assert!(std::mem::size_of::<UffdioCopy>() == 40);
const _: () = assert!(std::mem::size_of::<UffdioMove>() == 40);
const _: () = assert!(std::mem::size_of::<UffdioRangeOp>() == 32);
const _: () = assert!(std::mem::size_of::<UffdioWriteprotect>() == 24);

#[cfg(test)]
mod tests {
    use super::*;

    /// Request numbers as listed in the kernel-uapi reference (x86_64; the
    /// same on every asm-generic `_IOC` architecture; the others are
    /// checked in src/sys/arch.rs).
    #[test]
    #[cfg(not(any(
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "sparc",
        target_arch = "sparc64"
    )))]
    fn ioctl_numbers_match_kernel() {
        assert_eq!(UFFDIO_REGISTER, 0xC020AA00);
        assert_eq!(UFFDIO_UNREGISTER, 0x8010AA01);
        assert_eq!(UFFDIO_WAKE, 0x8010AA02);
        assert_eq!(UFFDIO_COPY, 0xC028AA03);
        assert_eq!(UFFDIO_ZEROPAGE, 0xC020AA04);
        assert_eq!(UFFDIO_MOVE, 0xC028AA05);
        assert_eq!(UFFDIO_WRITEPROTECT, 0xC018AA06);
        assert_eq!(UFFDIO_CONTINUE, 0xC020AA07);
        assert_eq!(UFFDIO_POISON, 0xC020AA08);
        assert_eq!(UFFDIO_API, 0xC018AA3F);
        assert_eq!(USERFAULTFD_IOC_NEW, 0x0000AA00);
    }

    #[test]
    fn feature_bits_cover_6_18() {
        let all = [
            UFFD_FEATURE_PAGEFAULT_FLAG_WP,
            UFFD_FEATURE_EVENT_FORK,
            UFFD_FEATURE_EVENT_REMAP,
            UFFD_FEATURE_EVENT_REMOVE,
            UFFD_FEATURE_MISSING_HUGETLBFS,
            UFFD_FEATURE_MISSING_SHMEM,
            UFFD_FEATURE_EVENT_UNMAP,
            UFFD_FEATURE_SIGBUS,
            UFFD_FEATURE_THREAD_ID,
            UFFD_FEATURE_MINOR_HUGETLBFS,
            UFFD_FEATURE_MINOR_SHMEM,
            UFFD_FEATURE_EXACT_ADDRESS,
            UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
            UFFD_FEATURE_WP_UNPOPULATED,
            UFFD_FEATURE_POISON,
            UFFD_FEATURE_WP_ASYNC,
            UFFD_FEATURE_MOVE,
        ];
        assert_eq!(all.iter().fold(0, |a, b| a | b), 0x1FFFF);
        assert_eq!(UFFD_EVENT_PAGEFAULT, 0x12);
        assert_eq!(UFFD_EVENT_UNMAP, 0x16);
    }

    /// The installed 6.1 header has the older values; they must agree.
    #[test]
    fn agrees_with_libc_where_libc_has_them() {
        assert_eq!(UFFDIO_REGISTER_MODE_MINOR, 1 << 2);
        assert_eq!(UFFD_PAGEFAULT_FLAG_MINOR, 4);
    }
}
