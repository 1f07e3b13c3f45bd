// SPDX-License-Identifier: MIT OR Apache-2.0
//! Helpers for the tests of every resolving operation on each memory kind
//! (tests/ops_anon.rs, ops_shmem.rs, ops_hugetlb.rs).

pub use super::raw;
pub use super::*;
// Not every test uses every name.
#[allow(unused_imports)]
pub use ::uffd::{
    probe, ContinueMode, CopyMode, Error, FaultFlags, Features, Ioctls, MoveMode, Msg, PoisonMode,
    Progress, Range, RegisterMode, Uffd, WriteprotectMode, ZeropageMode,
};
use std::os::unix::fs::FileExt;
pub use std::sync::Arc;
pub use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long to wait for a fault message that must come.
pub const FAULT_MS: i32 = 2000;

/// Whether the kernel offers `f`. When it does not, the test is
/// skipped with the reason printed; any other obstacle fails it.
pub fn kernel_has(f: Features, test: &str) -> bool {
    let offered = probe().expect("probe userfaultfd features").features;
    if offered.contains(f) {
        return true;
    }
    eprintln!("SKIP {test}: this kernel lacks {:?}", f - offered);
    false
}

/// Open a non-blocking uffd with `f`, or None (skip) if the kernel
/// lacks one of them.
pub fn uffd_with(f: Features, test: &str) -> Option<Uffd> {
    kernel_has(f, test).then(|| open_uffd(f))
}

/// Features that WP mode needs on `kind`.
pub fn wp_features(kind: Kind) -> Features {
    if kind == Kind::Anon {
        Features::PAGEFAULT_FLAG_WP
    } else {
        Features::PAGEFAULT_FLAG_WP | Features::WP_HUGETLBFS_SHMEM
    }
}

/// The feature MINOR mode needs on `kind`.
pub fn minor_feature(kind: Kind) -> Features {
    if kind.is_hugetlb() {
        Features::MINOR_HUGETLBFS
    } else {
        Features::MINOR_SHMEM
    }
}

/// Read the next message: it must be a fault at `addr` with `flags`.
pub fn expect_fault(u: &Uffd, addr: u64, flags: FaultFlags) {
    let f = next_fault(u, FAULT_MS);
    assert_eq!(f.address, addr, "fault address (fault {f:?})");
    assert_eq!(f.flags, flags, "fault flags (fault {f:?})");
}

/// The faulting thread must still be blocked `ms` from now.
pub fn assert_blocked<T>(h: &JoinHandle<T>, ms: u64, what: &str) {
    std::thread::sleep(Duration::from_millis(ms));
    assert!(
        !h.is_finished(),
        "{what}: the faulting thread is no longer blocked"
    );
}

/// Wait up to `ms` for a thread that must not block.
pub fn wait_finished<T>(h: &JoinHandle<T>, ms: u64) -> bool {
    let end = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < end {
        if h.is_finished() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    h.is_finished()
}

/// No message may arrive within `ms`.
pub fn assert_no_event(u: &Uffd, ms: i32) {
    let mut buf = [Msg::default()];
    let n = u.read_msgs(&mut buf, ms).expect("read events");
    assert_eq!(
        n,
        0,
        "unexpected message: {:?}",
        buf[0].take_event(u.features())
    );
}

/// Give a thread whose fault message was just read the time to go to
/// sleep in the kernel. A DONTWAKE operation that lands before the
/// faulter re-checks its page tables would let it return without any
/// wake, and "still blocked" could then not be checked.
pub fn settle() {
    std::thread::sleep(Duration::from_millis(50));
}

/// Byte-for-byte comparison that reports the first difference instead
/// of printing megabytes.
#[track_caller]
pub fn assert_bytes(actual: &[u8], expected: &[u8], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    if let Some(i) = actual.iter().zip(expected).position(|(a, e)| a != e) {
        panic!(
            "{what}: byte {i} is {:#04x}, expected {:#04x}",
            actual[i], expected[i]
        );
    }
}

/// Page `i` of `mem` (touches it: must be resolved).
pub fn page_bytes(mem: &Mem, i: usize) -> &[u8] {
    let p = mem.kind.page();
    &mem.bytes()[i * p..(i + 1) * p]
}

/// Write `data` at `off` through the mapping.
pub fn fill(mem: &Mem, off: usize, data: &[u8]) {
    assert!(off + data.len() <= mem.len);
    // SAFETY: in bounds of a live, writable mapping.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), mem.addr.add(off), data.len()) };
}

/// Read `len` bytes at `off` of the memfd behind `mem` (its page
/// cache), without touching the mapping.
pub fn memfd_read(mem: &Mem, off: usize, len: usize) -> Vec<u8> {
    assert!(mem.memfd >= 0, "{:?} has no memfd", mem.kind);
    let mut v = vec![0u8; len];
    // SAFETY: valid buffer of `len` bytes and an open fd.
    let n = unsafe { libc::pread(mem.memfd, v.as_mut_ptr().cast(), len, off as i64) };
    assert_eq!(
        n,
        len as isize,
        "pread memfd: {}",
        std::io::Error::last_os_error()
    );
    v
}

pub const PM_UFFD_WP: u64 = 1 << 57;
pub const PM_PRESENT: u64 = 1 << 63;

/// This process's /proc/self/pagemap entry for `addr`.
pub fn pagemap(addr: u64) -> u64 {
    let f = std::fs::File::open("/proc/self/pagemap").expect("open /proc/self/pagemap");
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, addr / 4096 * 8)
        .expect("read pagemap");
    u64::from_ne_bytes(b)
}

/// Check a child's wait status: killed by SIGBUS.
#[track_caller]
pub fn assert_sigbus(status: i32, what: &str) {
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS,
        "{what}: the child was not killed by SIGBUS (status {status:#x}: exited={} code={} signaled={} signal={})",
        libc::WIFEXITED(status),
        libc::WEXITSTATUS(status),
        libc::WIFSIGNALED(status),
        libc::WTERMSIG(status)
    );
}

/// What a child does before touching memory: default SIGBUS action (the
/// Rust runtime's handler is inherited) and no core file.
fn child_prepare() {
    // SAFETY: plain syscalls on the child's own process state.
    unsafe {
        libc::signal(libc::SIGBUS, libc::SIG_DFL);
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &none);
    }
}

fn reap(pid: i32, flags: i32) -> Option<i32> {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r == pid {
            return Some(status);
        }
        if r == 0 {
            return None;
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(e.raw_os_error(), Some(libc::EINTR), "waitpid({pid}): {e}");
    }
}

/// fork() a child that reads the byte at `addr` and exits 0; return
/// its wait status. The child inherits the parent's page tables (for
/// private memory: uffd markers included) but, without EVENT_FORK, not
/// the registration.
pub fn fork_and_touch(addr: u64) -> i32 {
    // SAFETY: the child only makes async-signal-safe calls and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        child_prepare();
        // SAFETY: a live mapping of the parent, inherited.
        unsafe {
            std::ptr::read_volatile(addr as *const u8);
            libc::_exit(0);
        }
    }
    reap(pid, 0).expect("child status")
}

extern "C" fn vm_child_main(arg: *mut libc::c_void) -> libc::c_int {
    child_prepare();
    // SAFETY: the address is in a mapping of the shared address space,
    // kept alive by the parent until this child is reaped.
    unsafe {
        std::ptr::read_volatile(arg as *const u8);
        libc::_exit(0)
    }
}

/// A child process that shares this address space (clone(CLONE_VM),
/// own signal handlers and thread group) and reads one byte. Its fault
/// goes to our userfaultfd like a thread's would, and it can block on
/// it, but a SIGBUS kills only the child: how POISON is checked on a
/// really blocked access, and on shared memory whose poison markers a
/// fork() child does not inherit.
pub struct VmChild {
    pid: i32,
    reaped: bool,
    _stack: Vec<u8>,
}

impl VmChild {
    pub fn touch(addr: u64) -> VmChild {
        let mut stack = vec![0u8; 256 << 10];
        let top = (stack.as_mut_ptr() as usize + stack.len()) & !63;
        // SAFETY: the child runs vm_child_main on `stack`, which lives
        // until the child is reaped (Drop kills and reaps it first).
        let pid = unsafe {
            libc::clone(
                vm_child_main,
                top as *mut libc::c_void,
                libc::CLONE_VM | libc::SIGCHLD,
                addr as *mut libc::c_void,
            )
        };
        assert!(
            pid > 0,
            "clone(CLONE_VM): {}",
            std::io::Error::last_os_error()
        );
        VmChild {
            pid,
            reaped: false,
            _stack: stack,
        }
    }

    /// The wait status if the child has ended.
    pub fn try_wait(&mut self) -> Option<i32> {
        let s = reap(self.pid, libc::WNOHANG);
        self.reaped |= s.is_some();
        s
    }

    pub fn wait(&mut self) -> i32 {
        let s = reap(self.pid, 0).expect("child status");
        self.reaped = true;
        s
    }
}

impl Drop for VmChild {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: our own child.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let _ = reap(self.pid, 0);
        }
    }
}

// ----- scenarios, parameterised by memory kind -----

/// COPY (mode 0 or DONTWAKE) resolves a blocked MISSING read fault.
pub fn copy_case(name: &'static str, kind: Kind, mode: CopyMode) {
    let _w = Watchdog::new(name, 60);
    let page = kind.page();
    let mem = Arc::new(Mem::new(kind, 2));
    let u = open_uffd(Features::empty());
    let io = u
        .register(
            Range::new(mem.start(), mem.len as u64),
            RegisterMode::MISSING,
        )
        .unwrap();
    assert!(io.contains(Ioctls::COPY | Ioctls::WAKE), "ioctls {io:?}");
    let dst = mem.page_addr(1);
    let data = pattern(page, 0x31);
    let r = reader(&mem, page + 123);
    expect_fault(&u, dst, FaultFlags::empty());
    assert_blocked(&r, 20, "before COPY");
    if mode.contains(CopyMode::DONTWAKE) {
        settle();
        let p = unsafe { u.copy_from_slice(dst, &data, mode) }.unwrap();
        assert_eq!(
            p,
            Progress {
                done: page as u64,
                len: page as u64
            }
        );
        assert_blocked(&r, 100, "after COPY with DONTWAKE");
        u.wake(Range::new(dst, page as u64)).unwrap();
    } else {
        let p = unsafe { u.copy_from_slice(dst, &data, mode) }.unwrap();
        assert_eq!(
            p,
            Progress {
                done: page as u64,
                len: page as u64
            }
        );
    }
    assert_eq!(
        r.join().unwrap(),
        data[123],
        "value the faulting thread read"
    );
    assert_bytes(page_bytes(&mem, 1), &data, "copied page");
    match kind {
        // Shared memory: the data went to the page cache.
        Kind::ShmemShared | Kind::Hugetlb => assert_bytes(
            &memfd_read(&mem, page, page),
            &data,
            "page cache after COPY",
        ),
        // MAP_PRIVATE of a memfd: a private anonymous copy; the file
        // stays a hole.
        Kind::ShmemPrivate => assert_bytes(
            &memfd_read(&mem, page, page),
            &vec![0; page],
            "file behind a private COPY",
        ),
        _ => {}
    }
    assert_no_event(&u, 0);
}

/// COPY_MODE_WP on a MISSING|WP range: the read completes, a later
/// write is a WP fault, and unprotecting lets it through.
pub fn copy_wp_case(name: &'static str, kind: Kind) {
    let _w = Watchdog::new(name, 60);
    let Some(u) = uffd_with(wp_features(kind), name) else {
        return;
    };
    let page = kind.page();
    let mem = Arc::new(Mem::new(kind, 1));
    let dst = mem.page_addr(0);
    let io = u
        .register(
            Range::new(mem.start(), mem.len as u64),
            RegisterMode::MISSING | RegisterMode::WP,
        )
        .unwrap();
    assert!(
        io.contains(Ioctls::COPY | Ioctls::WRITEPROTECT),
        "ioctls {io:?}"
    );
    let data = pattern(page, 0x52);
    let r = reader(&mem, 77);
    expect_fault(&u, dst, FaultFlags::empty());
    let p = unsafe { u.copy_from_slice(dst, &data, CopyMode::WP) }.unwrap();
    assert!(p.is_complete(), "{p:?}");
    assert_eq!(r.join().unwrap(), data[77]);
    assert_bytes(page_bytes(&mem, 0), &data, "page copied write-protected");
    assert_ne!(
        pagemap(dst) & PM_UFFD_WP,
        0,
        "pagemap uffd-wp bit after COPY_MODE_WP"
    );
    let w = writer(&mem, 1000, 0xEE);
    expect_fault(&u, dst, FaultFlags::WP | FaultFlags::WRITE);
    assert_blocked(&w, 100, "write to a page copied with MODE_WP");
    u.writeprotect(Range::new(dst, page as u64), WriteprotectMode::empty())
        .unwrap();
    w.join().unwrap();
    let mut expected = data.clone();
    expected[1000] = 0xEE;
    assert_bytes(
        page_bytes(&mem, 0),
        &expected,
        "page after the unprotected write",
    );
    assert_no_event(&u, 0);
}

/// Partial progress: a 2-page COPY whose 2nd page exists is EAGAIN
/// with 1 page done (decoded as Progress); one whose 1st page exists
/// is EEXIST.
pub fn partial_case(name: &'static str, kind: Kind) {
    let _w = Watchdog::new(name, 60);
    let page = kind.page();
    let mem = Arc::new(Mem::new(kind, 2));
    let u = open_uffd(Features::empty());
    u.register(
        Range::new(mem.start(), mem.len as u64),
        RegisterMode::MISSING,
    )
    .unwrap();
    let second = pattern(page, 0x40);
    assert!(
        unsafe { u.copy_from_slice(mem.page_addr(1), &second, CopyMode::empty()) }
            .unwrap()
            .is_complete()
    );
    let r = reader(&mem, 5);
    expect_fault(&u, mem.page_addr(0), FaultFlags::empty());
    let src = pattern(2 * page, 0x10);
    let p = unsafe { u.copy_from_slice(mem.page_addr(0), &src, CopyMode::empty()) }.unwrap();
    assert_eq!(
        p,
        Progress {
            done: page as u64,
            len: 2 * page as u64
        },
        "partial COPY"
    );
    assert!(!p.is_complete());
    // The part done was woken.
    assert_eq!(r.join().unwrap(), src[5]);
    assert_bytes(page_bytes(&mem, 0), &src[..page], "first page (copied)");
    assert_bytes(page_bytes(&mem, 1), &second, "second page (left alone)");
    let e = unsafe { u.copy_from_slice(mem.page_addr(0), &src, CopyMode::empty()) }.unwrap_err();
    assert!(e.is_exists(), "expected EEXIST, got {e}");
    assert_eq!(e.errno(), libc::EEXIST);
    assert!(!e.is_again());
    assert_bytes(
        page_bytes(&mem, 0),
        &src[..page],
        "first page after the refused COPY",
    );
}

/// ZEROPAGE (mode 0 or DONTWAKE) resolves a blocked read with zeros;
/// the page can be written afterwards with no further message.
pub fn zeropage_case(name: &'static str, kind: Kind, mode: ZeropageMode) {
    let _w = Watchdog::new(name, 60);
    let page = kind.page();
    let mem = Arc::new(Mem::new(kind, 2));
    let u = open_uffd(Features::empty());
    let io = u
        .register(
            Range::new(mem.start(), mem.len as u64),
            RegisterMode::MISSING,
        )
        .unwrap();
    assert!(io.contains(Ioctls::ZEROPAGE), "ioctls {io:?}");
    let dst = mem.page_addr(1);
    let r = reader(&mem, page + 9);
    expect_fault(&u, dst, FaultFlags::empty());
    if mode.contains(ZeropageMode::DONTWAKE) {
        settle();
        let p = unsafe { u.zeropage(Range::new(dst, page as u64), mode) }.unwrap();
        assert_eq!(
            p,
            Progress {
                done: page as u64,
                len: page as u64
            }
        );
        assert_blocked(&r, 100, "after ZEROPAGE with DONTWAKE");
        u.wake(Range::new(dst, page as u64)).unwrap();
    } else {
        let p = unsafe { u.zeropage(Range::new(dst, page as u64), mode) }.unwrap();
        assert_eq!(
            p,
            Progress {
                done: page as u64,
                len: page as u64
            }
        );
    }
    assert_eq!(r.join().unwrap(), 0);
    assert_bytes(page_bytes(&mem, 1), &vec![0u8; page], "zero page");
    mem.write(page + 9, 0x77);
    assert_eq!(mem.read(page + 9), 0x77);
    assert_no_event(&u, 0);
    // A second ZEROPAGE on the populated page is EEXIST.
    let e = unsafe { u.zeropage(Range::new(dst, page as u64), ZeropageMode::empty()) }.unwrap_err();
    assert!(e.is_exists(), "{e}");
}

/// WRITEPROTECT: protect, a write faults with WP|WRITE and stays
/// blocked; unprotect (mode 0 wakes; DONTWAKE needs an explicit wake).
pub fn wp_case(name: &'static str, kind: Kind, unprotect_mode: WriteprotectMode) {
    let _w = Watchdog::new(name, 60);
    let Some(u) = uffd_with(wp_features(kind), name) else {
        return;
    };
    let page = kind.page();
    let mem = Arc::new(Mem::new(kind, 2));
    let d0 = pattern(page, 0x61);
    let d1 = pattern(page, 0x62);
    fill(&mem, 0, &d0);
    fill(&mem, page, &d1);
    let io = u
        .register(Range::new(mem.start(), mem.len as u64), RegisterMode::WP)
        .unwrap();
    assert!(
        io.contains(Ioctls::WRITEPROTECT | Ioctls::WAKE),
        "ioctls {io:?}"
    );
    u.writeprotect(
        Range::new(mem.start(), mem.len as u64),
        WriteprotectMode::WP,
    )
    .unwrap();
    // Reads are not trapped.
    assert_bytes(page_bytes(&mem, 0), &d0, "protected page 0 read");
    let p1 = mem.page_addr(1);
    let w = writer(&mem, page + 77, 0xA5);
    expect_fault(&u, p1, FaultFlags::WP | FaultFlags::WRITE);
    assert_blocked(&w, 100, "write to a protected page");
    if unprotect_mode.contains(WriteprotectMode::DONTWAKE) {
        u.writeprotect(Range::new(p1, page as u64), unprotect_mode)
            .unwrap();
        assert_blocked(&w, 100, "after unprotect with DONTWAKE");
        u.wake(Range::new(p1, page as u64)).unwrap();
    } else {
        u.writeprotect(Range::new(p1, page as u64), unprotect_mode)
            .unwrap();
    }
    w.join().unwrap();
    let mut e1 = d1.clone();
    e1[77] = 0xA5;
    assert_bytes(page_bytes(&mem, 1), &e1, "page 1 after the write");
    // Page 1 is writable now, page 0 still protected.
    mem.write(page + 78, 0xA6);
    let w0 = writer(&mem, 5, 0x5A);
    expect_fault(&u, mem.page_addr(0), FaultFlags::WP | FaultFlags::WRITE);
    assert_blocked(&w0, 20, "write to still-protected page 0");
    u.writeprotect(
        Range::new(mem.page_addr(0), page as u64),
        WriteprotectMode::empty(),
    )
    .unwrap();
    w0.join().unwrap();
    let mut e0 = d0.clone();
    e0[5] = 0x5A;
    assert_bytes(page_bytes(&mem, 0), &e0, "page 0 after the write");
    assert_eq!(mem.read(page + 78), 0xA6);
    assert_no_event(&u, 0);
}

/// WP together with DONTWAKE: the kernel's EINVAL, which libuffd explains.
pub fn wp_dontwake_rejected_case(name: &'static str, kind: Kind) {
    let _w = Watchdog::new(name, 60);
    let Some(u) = uffd_with(wp_features(kind), name) else {
        return;
    };
    let mem = Mem::new(kind, 1);
    u.register(Range::new(mem.start(), mem.len as u64), RegisterMode::WP)
        .unwrap();
    let both = WriteprotectMode::WP | WriteprotectMode::DONTWAKE;
    let e = u
        .writeprotect(Range::new(mem.start(), mem.len as u64), both)
        .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    assert!(matches!(e, Error::Kernel { .. }), "{e:?}");
    assert!(e.to_string().contains("MODE_DONTWAKE together"), "{e}");
    // The raw ioctl says the same.
    let mut arg = raw::UffdioWriteprotect {
        range: raw::UffdioRange {
            start: mem.start(),
            len: mem.len as u64,
        },
        mode: both.bits(),
    };
    assert_eq!(raw::writeprotect(u.fd(), &mut arg), Err(libc::EINVAL));
    // Each half alone is fine.
    u.writeprotect(
        Range::new(mem.start(), mem.len as u64),
        WriteprotectMode::WP,
    )
    .unwrap();
    u.writeprotect(
        Range::new(mem.start(), mem.len as u64),
        WriteprotectMode::DONTWAKE,
    )
    .unwrap();
}

/// Put `data` at `off` in the page cache behind `mem`, without mapping
/// it in `mem` (pwrite for shmem; hugetlbfs has no write(), so an
/// unregistered alias mapping).
pub fn fill_page_cache(mem: &Mem, off: usize, data: &[u8]) {
    if mem.kind.is_hugetlb() {
        mem.fill_via_alias(off, data);
    } else {
        mem.pwrite_memfd(off, data);
    }
}

/// CONTINUE (mode 0, DONTWAKE or WP) resolves a blocked MINOR read
/// fault on a page-cache page.
pub fn continue_case(name: &'static str, kind: Kind, mode: ContinueMode) {
    let _w = Watchdog::new(name, 60);
    let wp = mode.contains(ContinueMode::WP);
    let feats = minor_feature(kind)
        | if wp {
            wp_features(kind)
        } else {
            Features::empty()
        };
    let Some(u) = uffd_with(feats, name) else {
        return;
    };
    let page = kind.page();
    let mem = Arc::new(Mem::new(kind, 2));
    let data = pattern(page, 0x93);
    fill_page_cache(&mem, page, &data);
    let reg = if wp {
        RegisterMode::MINOR | RegisterMode::WP
    } else {
        RegisterMode::MINOR
    };
    let io = u
        .register(Range::new(mem.start(), mem.len as u64), reg)
        .unwrap();
    assert!(io.contains(Ioctls::CONTINUE), "ioctls {io:?}");
    let dst = mem.page_addr(1);
    let r = reader(&mem, page + 321);
    expect_fault(&u, dst, FaultFlags::MINOR);
    assert_blocked(&r, 20, "before CONTINUE");
    if mode.contains(ContinueMode::DONTWAKE) {
        settle();
        let p = unsafe { u.continue_range(Range::new(dst, page as u64), mode) }.unwrap();
        assert_eq!(
            p,
            Progress {
                done: page as u64,
                len: page as u64
            }
        );
        assert_blocked(&r, 100, "after CONTINUE with DONTWAKE");
        u.wake(Range::new(dst, page as u64)).unwrap();
    } else {
        let p = unsafe { u.continue_range(Range::new(dst, page as u64), mode) }.unwrap();
        assert_eq!(
            p,
            Progress {
                done: page as u64,
                len: page as u64
            }
        );
    }
    assert_eq!(r.join().unwrap(), data[321]);
    assert_bytes(page_bytes(&mem, 1), &data, "page mapped by CONTINUE");
    if wp {
        let w = writer(&mem, page + 9, 0xC3);
        expect_fault(&u, dst, FaultFlags::WP | FaultFlags::WRITE);
        assert_blocked(&w, 100, "write to a page mapped with CONTINUE_MODE_WP");
        u.writeprotect(Range::new(dst, page as u64), WriteprotectMode::empty())
            .unwrap();
        w.join().unwrap();
        assert_eq!(mem.read(page + 9), 0xC3);
        assert_eq!(
            memfd_read(&mem, page + 9, 1)[0],
            0xC3,
            "the write reached the page cache"
        );
    }
    assert_no_event(&u, 0);
}

/// A write to a page-cache page is a MINOR|WRITE fault; after
/// CONTINUE the write lands in the shared page cache.
pub fn continue_write_case(name: &'static str, kind: Kind) {
    let _w = Watchdog::new(name, 60);
    let Some(u) = uffd_with(minor_feature(kind), name) else {
        return;
    };
    let page = kind.page();
    let mem = Arc::new(Mem::new(kind, 1));
    let data = pattern(page, 0x24);
    fill_page_cache(&mem, 0, &data);
    u.register(Range::new(mem.start(), mem.len as u64), RegisterMode::MINOR)
        .unwrap();
    let w = writer(&mem, 4000, 0x4D);
    expect_fault(&u, mem.page_addr(0), FaultFlags::MINOR | FaultFlags::WRITE);
    assert_blocked(&w, 20, "before CONTINUE");
    assert!(unsafe {
        u.continue_range(
            Range::new(mem.page_addr(0), page as u64),
            ContinueMode::empty(),
        )
    }
    .unwrap()
    .is_complete());
    w.join().unwrap();
    let mut expected = data.clone();
    expected[4000] = 0x4D;
    assert_bytes(
        page_bytes(&mem, 0),
        &expected,
        "mapping after CONTINUE and write",
    );
    assert_bytes(
        &memfd_read(&mem, 0, page),
        &expected,
        "page cache after CONTINUE and write",
    );
}

/// CONTINUE where the page cache has no page: EFAULT.
pub fn continue_hole_case(name: &'static str, kind: Kind) {
    let _w = Watchdog::new(name, 60);
    let Some(u) = uffd_with(minor_feature(kind), name) else {
        return;
    };
    let mem = Mem::new(kind, 1);
    u.register(Range::new(mem.start(), mem.len as u64), RegisterMode::MINOR)
        .unwrap();
    let e = unsafe {
        u.continue_range(
            Range::new(mem.start(), mem.len as u64),
            ContinueMode::empty(),
        )
    }
    .unwrap_err();
    assert_eq!(e.errno(), libc::EFAULT, "{e}");
}

/// POISON resolves a really blocked access (in a CLONE_VM child) into
/// SIGBUS; with DONTWAKE the child stays blocked until WAKE.
pub fn poison_blocked_case(name: &'static str, kind: Kind, mode: PoisonMode) {
    let _w = Watchdog::new(name, 60);
    let Some(u) = uffd_with(Features::POISON, name) else {
        return;
    };
    let page = kind.page() as u64;
    let mem = Mem::new(kind, 1);
    let io = u
        .register(
            Range::new(mem.start(), mem.len as u64),
            RegisterMode::MISSING,
        )
        .unwrap();
    assert!(io.contains(Ioctls::POISON), "ioctls {io:?}");
    let dst = mem.page_addr(0);
    let mut child = VmChild::touch(dst + 10);
    expect_fault(&u, dst, FaultFlags::empty());
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(
        child.try_wait().is_none(),
        "child should be blocked on the fault"
    );
    if mode.contains(PoisonMode::DONTWAKE) {
        settle();
        let p = unsafe { u.poison(Range::new(dst, page), mode) }.unwrap();
        assert_eq!(
            p,
            Progress {
                done: page,
                len: page
            }
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            child.try_wait().is_none(),
            "child released by POISON with DONTWAKE"
        );
        u.wake(Range::new(dst, page)).unwrap();
    } else {
        let p = unsafe { u.poison(Range::new(dst, page), mode) }.unwrap();
        assert_eq!(
            p,
            Progress {
                done: page,
                len: page
            }
        );
    }
    assert_sigbus(child.wait(), "access to a poisoned page");
    // A second POISON sees the poisoned slot as populated...
    let e = unsafe { u.poison(Range::new(dst, page), PoisonMode::empty()) }.unwrap_err();
    assert!(e.is_exists(), "second POISON: {e}");
    // ...but COPY may overwrite a pte marker, the poison one included
    // (the kernel installs over "none or marker" ptes): the page is
    // usable again.
    let data = pattern(page as usize, 0x3C);
    assert!(unsafe { u.copy_from_slice(dst, &data, CopyMode::empty()) }
        .unwrap()
        .is_complete());
    assert_bytes(page_bytes(&mem, 0), &data, "page copied over the poison");
}

/// On MAP_SHARED memory fork() does not copy the page tables, so a
/// fork child never sees the parent's poison marker (it refaults from
/// the page cache and exits normally) while a CLONE_VM child, using the
/// parent's own page tables, dies by SIGBUS. Why the shared-memory
/// POISON tests use CLONE_VM children.
pub fn poison_shared_fork_case(name: &'static str, kind: Kind) {
    let _w = Watchdog::new(name, 60);
    let Some(u) = uffd_with(Features::POISON, name) else {
        return;
    };
    let page = kind.page() as u64;
    let mem = Mem::new(kind, 1);
    u.register(
        Range::new(mem.start(), mem.len as u64),
        RegisterMode::MISSING,
    )
    .unwrap();
    assert!(
        unsafe { u.poison(Range::new(mem.start(), page), PoisonMode::empty()) }
            .unwrap()
            .is_complete()
    );
    let st = fork_and_touch(mem.start());
    assert!(
        libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
        "fork child of shared memory: status {st:#x} (expected a normal exit)"
    );
    let mut child = VmChild::touch(mem.start());
    assert_sigbus(child.wait(), "CLONE_VM child on the poisoned page");
    assert_no_event(&u, 0);
}

/// POISON pages nobody faulted on (mode 0 and DONTWAKE), then fork
/// children that touch them: both die by SIGBUS. Only for private
/// memory, where fork copies the page tables with their poison
/// markers.
pub fn poison_fork_case(name: &'static str, kind: Kind) {
    let _w = Watchdog::new(name, 60);
    let Some(u) = uffd_with(Features::POISON, name) else {
        return;
    };
    let page = kind.page() as u64;
    let mem = Mem::new(kind, 2);
    u.register(
        Range::new(mem.start(), mem.len as u64),
        RegisterMode::MISSING,
    )
    .unwrap();
    let p = unsafe { u.poison(Range::new(mem.page_addr(0), page), PoisonMode::empty()) }.unwrap();
    assert_eq!(
        p,
        Progress {
            done: page,
            len: page
        }
    );
    let p = unsafe { u.poison(Range::new(mem.page_addr(1), page), PoisonMode::DONTWAKE) }.unwrap();
    assert_eq!(
        p,
        Progress {
            done: page,
            len: page
        }
    );
    assert_sigbus(
        fork_and_touch(mem.page_addr(0)),
        "page poisoned with mode 0",
    );
    assert_sigbus(
        fork_and_touch(mem.page_addr(1) + 100),
        "page poisoned with DONTWAKE",
    );
    assert_no_event(&u, 0);
}
