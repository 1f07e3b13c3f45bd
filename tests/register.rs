// SPDX-License-Identifier: MIT OR Apache-2.0
//! UFFDIO_REGISTER and UNREGISTER on the real kernel: the ioctl mask each
//! memory kind and mode combination returns (kernel-uapi.md §1.2), bad
//! arguments (mode 0, unknown mode bits, hugetlb misalignment, nothing
//! mapped: the kernel's EINVAL, with libuffd's text saying which), the
//! kernel's other refusals (EBUSY, MINOR on anonymous memory), and
//! UNREGISTER waking a blocked fault.

mod common;

use ::uffd::{probe, CopyMode, Error, FaultFlags, Features, Ioctls, Range, RegisterMode, Uffd};
use common::raw::{self, UffdioRange, UffdioRegister, UFFD_USER_MODE_ONLY};
use common::*;
use std::sync::Arc;
use std::time::Duration;

const M: RegisterMode = RegisterMode::MISSING;
const WP: RegisterMode = RegisterMode::WP;
const MINOR: RegisterMode = RegisterMode::MINOR;

/// Everything registration may need on any kind.
fn all_register_features() -> Features {
    Features::PAGEFAULT_FLAG_WP
        | Features::WP_HUGETLBFS_SHMEM
        | Features::MISSING_SHMEM
        | Features::MISSING_HUGETLBFS
        | Features::MINOR_SHMEM
        | Features::MINOR_HUGETLBFS
        | Features::POISON
        | Features::MOVE
}

/// Open with `f`, or None (skip, reason printed) if the kernel lacks some.
fn uffd_with(f: Features, test: &str) -> Option<Uffd> {
    let offered = probe().expect("probe userfaultfd features").features;
    if !offered.contains(f) {
        eprintln!("SKIP {test}: this kernel lacks {:?}", f - offered);
        return None;
    }
    Some(open_uffd(f))
}

/// MAP_SHARED|MAP_ANONYMOUS: shmem without a memfd. Unmapped on drop.
struct SharedAnon {
    addr: *mut libc::c_void,
    len: usize,
}

impl SharedAnon {
    fn new(len: usize) -> SharedAnon {
        // SAFETY: plain mmap, checked.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(
            addr != libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        SharedAnon { addr, len }
    }
}

impl Drop for SharedAnon {
    fn drop(&mut self) {
        // SAFETY: our own mapping.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

/// The kernel-uapi.md §1.2 table, by mode: MISSING, WP, MISSING|WP,
/// MINOR, MINOR|MISSING, MINOR|WP, MINOR|WP|MISSING. None = EINVAL.
type Row = [(RegisterMode, Option<u64>); 7];

fn row(m: u64, wp: u64, minor: Option<u64>, minor_wp: Option<u64>) -> Row {
    [
        (M, Some(m)),
        (WP, Some(wp)),
        (M | WP, Some(wp)),
        (MINOR, minor),
        (MINOR | M, minor),
        (MINOR | WP, minor_wp),
        (MINOR | WP | M, minor_wp),
    ]
}

/// Anonymous private memory: no MINOR mode at all.
fn anon_row() -> Row {
    row(0x13C, 0x17C, None, None)
}

/// shmem, however mapped.
fn shmem_row() -> Row {
    row(0x13C, 0x17C, Some(0x1BC), Some(0x1FC))
}

/// hugetlb: no ZEROPAGE, no MOVE.
fn hugetlb_row() -> Row {
    row(0x10C, 0x14C, Some(0x18C), Some(0x1CC))
}

/// Register a fresh mapping (from `map`) with each mode of `row` on a fresh
/// uffd, and compare the mask (or the EINVAL) with the table.
fn check_row(
    name: &'static str,
    what: &str,
    map: &dyn Fn() -> (u64, u64, Box<dyn std::any::Any>),
    row: Row,
) {
    let _w = Watchdog::new(name, 60);
    if uffd_with(all_register_features(), name).is_none() {
        return;
    }
    for (mode, expected) in row {
        let u = open_uffd(all_register_features());
        let (start, len, _keep) = map();
        match (u.register(Range::new(start, len), mode), expected) {
            (Ok(io), Some(mask)) => {
                assert_eq!(io.bits(), mask, "{what} {mode:?}: ioctls {io:?}");
                // WAKE always; CONTINUE only with MINOR; WRITEPROTECT
                // only with WP.
                assert!(io.contains(Ioctls::WAKE));
                assert_eq!(
                    io.contains(Ioctls::CONTINUE),
                    mode.contains(MINOR),
                    "{what} {mode:?}"
                );
                assert_eq!(
                    io.contains(Ioctls::WRITEPROTECT),
                    mode.contains(WP),
                    "{what} {mode:?}"
                );
                u.unregister(Range::new(start, len)).unwrap();
            }
            (Err(e), None) => {
                assert_eq!(e.errno(), libc::EINVAL, "{what} {mode:?}: {e}");
                assert!(
                    matches!(e, Error::Kernel { .. }),
                    "{what} {mode:?}: the kernel's refusal expected: {e:?}"
                );
            }
            (got, want) => panic!("{what} {mode:?}: got {got:?}, table says {want:x?}"),
        }
    }
}

fn mem_map(kind: Kind) -> impl Fn() -> (u64, u64, Box<dyn std::any::Any>) {
    move || {
        let m = Mem::new(kind, 1);
        (
            m.start(),
            m.len as u64,
            Box::new(m) as Box<dyn std::any::Any>,
        )
    }
}

#[test]
fn masks_anon_private() {
    check_row(
        "masks_anon_private",
        "anon",
        &mem_map(Kind::Anon),
        anon_row(),
    );
}

#[test]
fn masks_shmem_memfd_shared() {
    check_row(
        "masks_shmem_memfd_shared",
        "memfd shared",
        &mem_map(Kind::ShmemShared),
        shmem_row(),
    );
}

#[test]
fn masks_shmem_memfd_private() {
    check_row(
        "masks_shmem_memfd_private",
        "memfd private",
        &mem_map(Kind::ShmemPrivate),
        shmem_row(),
    );
}

#[test]
fn masks_shmem_anon_shared() {
    let map = || {
        let m = SharedAnon::new(2 * PAGE);
        (
            m.addr as u64,
            m.len as u64,
            Box::new(m) as Box<dyn std::any::Any>,
        )
    };
    check_row(
        "masks_shmem_anon_shared",
        "MAP_SHARED|MAP_ANONYMOUS",
        &map,
        shmem_row(),
    );
}

#[test]
fn masks_hugetlb_shared() {
    if common::skip_without_hugetlb("masks_hugetlb_shared") {
        return;
    }
    check_row(
        "masks_hugetlb_shared",
        "hugetlb memfd",
        &mem_map(Kind::Hugetlb),
        hugetlb_row(),
    );
}

#[test]
fn masks_hugetlb_private() {
    if common::skip_without_hugetlb("masks_hugetlb_private") {
        return;
    }
    check_row(
        "masks_hugetlb_private",
        "hugetlb private",
        &mem_map(Kind::HugetlbPrivate),
        hugetlb_row(),
    );
}

/// A range over two kinds gets the intersection: a hugetlb part drops
/// ZEROPAGE and MOVE for the whole range. (Adjacent mappings of different
/// kinds are made with MAP_FIXED inside one reservation.)
#[test]
fn mask_of_mixed_range_is_the_intersection() {
    if common::skip_without_hugetlb("mask_of_mixed_range_is_the_intersection") {
        return;
    }
    let name = "mask_of_mixed_range_is_the_intersection";
    let _w = Watchdog::new(name, 60);
    let Some(u) = uffd_with(Features::MISSING_HUGETLBFS, name) else {
        return;
    };
    let total = 2 * HUGE;
    // SAFETY: a PROT_NONE reservation, then two MAP_FIXED mappings inside
    // it; all unmapped below.
    unsafe {
        let base = libc::mmap(
            std::ptr::null_mut(),
            total + HUGE,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert!(base != libc::MAP_FAILED);
        let start = (base as usize + HUGE - 1) & !(HUGE - 1);
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let a = libc::mmap(
            start as *mut _,
            HUGE,
            rw,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        );
        assert_eq!(a as usize, start);
        let h = libc::mmap(
            (start + HUGE) as *mut _,
            HUGE,
            rw,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB | libc::MAP_FIXED,
            -1,
            0,
        );
        assert_eq!(
            h as usize,
            start + HUGE,
            "MAP_HUGETLB: {}",
            std::io::Error::last_os_error()
        );
        let io = u.register(Range::new(start as u64, total as u64), M);
        libc::munmap(base, total + HUGE);
        assert_eq!(io.unwrap().bits(), 0x10C);
    }
}

/// Mode 0 and unknown mode bits: the kernel checks the mode before the
/// range, so even on an unmapped range the answer is its EINVAL, and the
/// text says what was wrong with the mode.
#[test]
fn bad_modes_are_the_kernels_einval() {
    let _w = Watchdog::new("bad_modes_are_the_kernels_einval", 60);
    let u = open_uffd(Features::empty());
    // Page 0: never mapped (below vm.mmap_min_addr).
    let (start, len) = (0u64, PAGE as u64);
    let e = u
        .register(Range::new(start, len), RegisterMode::empty())
        .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    assert!(matches!(e, Error::Kernel { .. }), "{e:?}");
    assert!(e.to_string().contains("mode is 0"), "{e}");
    for bits in [1u64 << 3, M.bits() | 1 << 3, 1 << 63, 0xF0] {
        let e = u
            .register(Range::new(start, len), RegisterMode::from_bits_retain(bits))
            .unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL, "mode {bits:#x}");
        assert!(e.to_string().contains("unknown mode bits"), "{e}");
    }
    // The raw ioctl agrees about these modes (on a mapped range).
    let mem = Mem::new(Kind::Anon, 1);
    for bits in [0u64, 1 << 3] {
        let mut arg = UffdioRegister {
            range: UffdioRange {
                start: mem.start(),
                len,
            },
            mode: bits,
            ioctls: 0,
        };
        assert_eq!(
            raw::register(u.fd(), &mut arg),
            Err(libc::EINVAL),
            "kernel, mode {bits:#x}"
        );
        let e = u
            .register(
                Range::new(mem.start(), len),
                RegisterMode::from_bits_retain(bits),
            )
            .unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL, "libuffd, mode {bits:#x}");
    }
    // And a good mode on the same fd still works: nothing was spent.
    assert_eq!(
        u.register(Range::new(mem.start(), len), M).unwrap().bits(),
        0x13C
    );
    // Unaligned or empty ranges: EINVAL, and the text names the problem.
    for (s, l, words) in [
        (mem.start() + 1, len, "not aligned"),
        (mem.start(), 100, "not a multiple"),
        (mem.start(), 0, "length is 0"),
    ] {
        let e = u.register(Range::new(s, l), M).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL, "[{s:#x}, +{l:#x})");
        assert!(e.to_string().contains(words), "[{s:#x}, +{l:#x}): {e}");
    }
}

/// A hugetlb range not aligned to its 2 MiB pages: the kernel's EINVAL,
/// whose text names the 2048 KiB pages.
#[test]
fn hugetlb_misaligned_range_is_einval() {
    if common::skip_without_hugetlb("hugetlb_misaligned_range_is_einval") {
        return;
    }
    let _w = Watchdog::new("hugetlb_misaligned_range_is_einval", 60);
    let u = open_uffd(Features::empty());
    for kind in [Kind::Hugetlb, Kind::HugetlbPrivate] {
        let mem = Mem::new(kind, 2);
        let s = mem.start();
        let h = HUGE as u64;
        let p = PAGE as u64;
        for (start, len) in [(s + p, h), (s, p), (s, h + p), (s + h - p, 2 * p)] {
            let e = u.register(Range::new(start, len), M).unwrap_err();
            assert_eq!(e.errno(), libc::EINVAL, "{kind:?} [{start:#x}, +{len:#x})");
            assert!(matches!(e, Error::Kernel { .. }), "{e:?}");
            assert!(
                e.to_string().contains("2048 KiB"),
                "message should name the page size: {e}"
            );
            let mut arg = UffdioRegister {
                range: UffdioRange { start, len },
                mode: M.bits(),
                ioctls: 0,
            };
            assert_eq!(
                raw::register(u.fd(), &mut arg),
                Err(libc::EINVAL),
                "kernel, {kind:?}"
            );
            // UNREGISTER checks less (only a misaligned start): libuffd
            // answers as the raw ioctl does, and explains its EINVAL.
            let mut r = UffdioRange { start, len };
            let raw = raw::unregister(u.fd(), &mut r);
            let ours = u.unregister(Range::new(start, len));
            assert_eq!(
                ours.as_ref().map_err(|e| e.errno()),
                raw.as_ref().map_err(|e| *e),
                "unregister {kind:?} [{start:#x}, +{len:#x})"
            );
            if let Err(e) = ours {
                assert!(e.to_string().contains("2048 KiB"), "{e}");
            }
        }
        // Aligned is fine.
        assert_eq!(
            u.register(Range::new(s + h, h), M).unwrap().bits(),
            0x10C,
            "{kind:?}"
        );
        u.unregister(Range::new(s + h, h)).unwrap();
    }
}

/// Nothing mapped in the range: EINVAL, as the kernel says (libuffd once
/// said ENOMEM here); the text says nothing is mapped there.
#[test]
fn unmapped_range_is_einval() {
    let _w = Watchdog::new("unmapped_range_is_einval", 60);
    let u = open_uffd(Features::empty());
    // A range below vm.mmap_min_addr: nobody (no test running in parallel
    // either) can map anything there.
    let min: u64 = std::fs::read_to_string("/proc/sys/vm/mmap_min_addr")
        .expect("read vm.mmap_min_addr")
        .trim()
        .parse()
        .unwrap();
    let (start, len) = (0u64, PAGE as u64);
    assert!(
        min >= len,
        "vm.mmap_min_addr is {min}: page 0 could be mapped, no range is surely unmapped"
    );
    let e = u.register(Range::new(start, len), M).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL, "{e}");
    assert!(e.to_string().contains("nothing is mapped"), "{e}");
    let e = u.unregister(Range::new(start, len)).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL, "{e}");
    assert!(e.to_string().contains("nothing is mapped"), "{e}");
    let mut arg = UffdioRegister {
        range: UffdioRange { start, len },
        mode: M.bits(),
        ioctls: 0,
    };
    assert_eq!(
        raw::register(u.fd(), &mut arg),
        Err(libc::EINVAL),
        "kernel alone"
    );
    // Nothing there to fill either.
    let e = unsafe { u.copy_from_slice(start, &[0u8; PAGE], CopyMode::empty()) }.unwrap_err();
    assert_eq!(e.errno(), libc::ENOENT, "COPY to nothing: {e}");
}

/// A range already registered with another userfaultfd: EBUSY, until the
/// first one lets go.
#[test]
fn second_uffd_on_same_range_is_ebusy() {
    if common::skip_without_hugetlb("second_uffd_on_same_range_is_ebusy") {
        return;
    }
    let _w = Watchdog::new("second_uffd_on_same_range_is_ebusy", 60);
    let u1 = open_uffd(Features::empty());
    let u2 = open_uffd(Features::empty());
    for kind in [Kind::Anon, Kind::ShmemShared, Kind::Hugetlb] {
        let mem = Mem::new(kind, 2);
        let len = mem.len as u64;
        u1.register(Range::new(mem.start(), len), M).unwrap();
        let e = u2.register(Range::new(mem.start(), len), M).unwrap_err();
        assert_eq!(e.errno(), libc::EBUSY, "{kind:?}: {e}");
        assert!(matches!(e, Error::Kernel { .. }), "{e:?}");
        // Overlapping only in part is just as busy.
        let page = kind.page() as u64;
        let e = u2
            .register(Range::new(mem.page_addr(1), page), WP)
            .unwrap_err();
        assert_eq!(e.errno(), libc::EBUSY, "{kind:?} partial: {e}");
        // The same fd may re-register (change the mode of) its own range.
        u1.register(Range::new(mem.start(), len), M).unwrap();
        u1.unregister(Range::new(mem.start(), len)).unwrap();
        u2.register(Range::new(mem.start(), len), M).unwrap();
        u2.unregister(Range::new(mem.start(), len)).unwrap();
    }
}

/// UNREGISTER wakes a thread blocked on a MISSING fault in the range: it
/// retries without userfaultfd and reads zeros.
fn unregister_wakes_case(name: &'static str, kind: Kind) {
    let _w = Watchdog::new(name, 60);
    let u = open_uffd(Features::empty());
    let mem = Arc::new(Mem::new(kind, 2));
    let page = kind.page();
    u.register(Range::new(mem.start(), mem.len as u64), M)
        .unwrap();
    let r = reader(&mem, page + 17);
    let f = next_fault(&u, 2000);
    assert_eq!(f.address, mem.page_addr(1));
    assert_eq!(f.flags, FaultFlags::empty());
    std::thread::sleep(Duration::from_millis(100));
    assert!(!r.is_finished(), "the faulting thread should be blocked");
    u.unregister(Range::new(mem.start(), mem.len as u64))
        .unwrap();
    assert_eq!(r.join().unwrap(), 0);
    assert!(
        mem.bytes()[page..2 * page].iter().all(|&b| b == 0),
        "page after unregister"
    );
    // No longer trapped: page 0 faults in normally.
    assert_eq!(mem.read(0), 0);
    let mut buf = [::uffd::Msg::default()];
    assert_eq!(
        u.read_msgs(&mut buf, 0).unwrap(),
        0,
        "no message after unregister"
    );
}

#[test]
fn unregister_wakes_missing_fault_anon() {
    unregister_wakes_case("unregister_wakes_missing_fault_anon", Kind::Anon);
}

#[test]
fn unregister_wakes_missing_fault_shmem() {
    unregister_wakes_case("unregister_wakes_missing_fault_shmem", Kind::ShmemShared);
}

#[test]
fn unregister_wakes_missing_fault_hugetlb() {
    if common::skip_without_hugetlb("unregister_wakes_missing_fault_hugetlb") {
        return;
    }
    unregister_wakes_case("unregister_wakes_missing_fault_hugetlb", Kind::Hugetlb);
}

/// This thread's `syscr` (read system calls) from /proc/thread-self/io.
fn thread_read_syscalls() -> u64 {
    let text = std::fs::read_to_string("/proc/thread-self/io").expect("read /proc/thread-self/io");
    text.lines()
        .find_map(|l| l.strip_prefix("syscr:"))
        .expect("syscr line")
        .trim()
        .parse()
        .unwrap()
}

/// Registration costs the ioctl: a register+unregister pair reads nothing
/// (no /proc/self/smaps or maps), on a handle from `Uffd::open` and on an
/// adopted one alike, for anonymous and hugetlb memory. Counted with this
/// thread's read(2) calls, not timed. Before, each call read all of
/// /proc/self/smaps on opened handles.
#[test]
fn register_and_unregister_read_nothing() {
    if common::skip_without_hugetlb("register_and_unregister_read_nothing") {
        return;
    }
    let _w = Watchdog::new("register_and_unregister_read_nothing", 60);
    let opened = open_uffd(Features::MISSING_HUGETLBFS);
    // SAFETY: the raw system call has no memory-safety preconditions.
    let raw = unsafe {
        libc::syscall(
            libc::SYS_userfaultfd,
            libc::O_CLOEXEC | libc::O_NONBLOCK | UFFD_USER_MODE_ONLY,
        )
    };
    assert!(raw >= 0, "userfaultfd: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor that nothing else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw as i32) };
    let adopted = Uffd::adopt(
        fd,
        &::uffd::OpenOptions {
            features: Features::MISSING_HUGETLBFS,
            ..Default::default()
        },
    )
    .map_err(|(e, _)| e)
    .expect("adopt");
    for kind in [Kind::Anon, Kind::Hugetlb] {
        let mem = Mem::new(kind, 1);
        for (name, u) in [("opened", &opened), ("adopted", &adopted)] {
            // Warm up (first calls may initialise lazily).
            u.register(Range::new(mem.start(), mem.len as u64), M)
                .unwrap();
            u.unregister(Range::new(mem.start(), mem.len as u64))
                .unwrap();
            // What reading the counter itself costs, between two readings.
            let a = thread_read_syscalls();
            let itself = thread_read_syscalls() - a;
            let before = thread_read_syscalls();
            for _ in 0..100 {
                u.register(Range::new(mem.start(), mem.len as u64), M)
                    .unwrap();
                u.unregister(Range::new(mem.start(), mem.len as u64))
                    .unwrap();
            }
            let reads = thread_read_syscalls() - before;
            assert!(
                reads <= itself,
                "{kind:?} {name}: 100 register+unregister pairs made {} read(2) calls",
                reads - itself
            );
        }
    }
}
