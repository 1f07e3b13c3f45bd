// SPDX-License-Identifier: MIT OR Apache-2.0
//! The monitor takes what the raw descriptor takes (issue 9, item 6):
//! blocking descriptors as well as non-blocking ones, their status flags
//! untouched; adopted descriptors of hugetlb memory with their real page
//! size; faults outside every region with the real page size; no livelock
//! when a fault can be neither resolved nor poisoned; add_region from
//! callbacks. Real kernel, real memory (anon, hugetlb).
#![allow(unsafe_code)]

mod common;
use common::*;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uffd::monitor::*;
use uffd::Range;
use uffd::*;

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64 * 31 + seed * 7) % 251 + 1) as u8)
        .collect()
}

fn buffer(data: &[u8]) -> Source {
    Source::Buffer {
        addr: data.as_ptr() as u64,
        len: data.len() as u64,
    }
}

fn status_flags(fd: i32) -> i32 {
    // SAFETY: F_GETFL on a descriptor the test owns.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    assert!(fl >= 0, "F_GETFL: {}", std::io::Error::last_os_error());
    fl
}

/// A blocking userfaultfd (no O_NONBLOCK), as a handler process receives
/// it from a VMM.
fn open_blocking(features: Features) -> Uffd {
    let u = Uffd::open(&OpenOptions {
        flags: OpenFlags::empty(),
        features,
        required: features,
    })
    .expect("open a blocking userfaultfd");
    assert_eq!(status_flags(u.as_raw_fd()) & libc::O_NONBLOCK, 0);
    u
}

/// Adopt a second descriptor of `u`'s file (as a separate handler process
/// would hold it): its memory is not known to be this process's.
fn adopt_dup(u: &Uffd) -> Uffd {
    let fd = u.as_fd().try_clone_to_owned().expect("dup");
    Uffd::adopt(fd, &OpenOptions::default())
        .map_err(|(e, _)| e)
        .expect("adopt")
}

/// Fault on every page of `mem` from `threads` threads and compare with
/// `want`.
fn touch_all(mem: &Arc<Mem>, threads: usize, want: &[u8]) {
    let page = mem.kind.page();
    let pages = mem.len / page;
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let mem = mem.clone();
            std::thread::spawn(move || {
                for p in (t..pages).step_by(threads) {
                    mem.read(p * page + 3);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert!(
        mem.bytes() == want,
        "served contents differ from the source"
    );
}

// ---------------------------------------------------------------------
// 1. Blocking descriptors
// ---------------------------------------------------------------------

/// A blocking descriptor is served like a non-blocking one, and its
/// status flags are left as they were. With a batch of one message every
/// read is full, so the reader reads again at once and finds nothing:
/// that read must not wait (with a plain read(2) on a blocking descriptor
/// it would wait for the next fault, and stop could never end the run).
fn blocking_case(workers: u32) {
    let pages = 64;
    let mem = Arc::new(Mem::new(Kind::Anon, pages));
    let data = pattern(mem.len, 1);
    let u = Arc::new(open_blocking(Features::empty()));
    let m = Monitor::new(
        Config {
            batch: 1,
            workers,
            ..Default::default()
        },
        Box::new(DefaultHandler),
    )
    .unwrap();
    let id = m
        .add_uffd(u.clone())
        .expect("the monitor takes a blocking uffd");
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        RegionOptions {
            source: buffer(&data),
            register: RegisterMode::MISSING,
            ..Default::default()
        },
    )
    .unwrap();
    let run = m.start().unwrap();
    touch_all(&mem, 4, &data);
    // Nothing left to read: stop must end the run at once.
    std::thread::sleep(Duration::from_millis(20));
    m.stop();
    run.wait().unwrap();
    assert_eq!(
        status_flags(u.as_raw_fd()) & libc::O_NONBLOCK,
        0,
        "the monitor changed the descriptor's status flags"
    );
    let s = m.stats();
    assert_eq!(s.failed, 0, "{s:?}");
    assert!(s.resolved > 0, "{s:?}");
}

#[test]
fn blocking_fd_served() {
    let _w = Watchdog::new("blocking_fd_served", 60);
    blocking_case(0);
}

#[test]
fn blocking_fd_served_workers() {
    let _w = Watchdog::new("blocking_fd_served_workers", 60);
    blocking_case(3);
}

/// The caller's own loop (`fd` + `dispatch`) with an adopted blocking
/// descriptor: the monitor's descriptor becomes readable for its faults
/// (a blocking userfaultfd always reports POLLERR to poll(2), so it cannot
/// be waited on directly), and dispatch never waits on a read.
#[test]
fn blocking_adopted_fd_dispatch() {
    let _w = Watchdog::new("blocking_adopted_fd_dispatch", 60);
    let pages = 32;
    let mem = Arc::new(Mem::new(Kind::Anon, pages));
    let data = pattern(mem.len, 2);
    let owner = open_blocking(Features::empty());
    owner
        .register(
            Range::new(mem.start(), mem.len as u64),
            RegisterMode::MISSING,
        )
        .unwrap();
    let u = Arc::new(adopt_dup(&owner));
    assert!(!u.is_nonblocking());
    let m = Monitor::new(
        Config {
            batch: 1,
            ..Default::default()
        },
        Box::new(DefaultHandler),
    )
    .unwrap();
    let id = m
        .add_uffd(u.clone())
        .expect("the monitor takes a blocking uffd");
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        RegionOptions {
            source: buffer(&data),
            ..Default::default()
        },
    )
    .unwrap();
    let toucher = {
        let (mem, data) = (mem.clone(), data.clone());
        std::thread::spawn(move || touch_all(&mem, 2, &data))
    };
    let mut idle = 0;
    while !toucher.is_finished() {
        let mut pfd = libc::pollfd {
            fd: m.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, 100) };
        assert!(r >= 0);
        if m.dispatch(0).unwrap() == 0 {
            idle += 1;
        }
    }
    toucher.join().unwrap();
    // Nothing pending: the descriptor is not readable and dispatch(0)
    // returns at once (a busy POLLERR would make it always readable).
    let mut pfd = libc::pollfd {
        fd: m.fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let _ = m.dispatch(0);
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut pfd, 1, 50) };
    assert_eq!(r, 0, "the monitor's fd stays readable with nothing to do");
    assert_eq!(status_flags(u.as_raw_fd()) & libc::O_NONBLOCK, 0);
    let s = m.stats();
    eprintln!("dispatch rounds without work: {idle}; {s:?}");
    assert_eq!(s.failed, 0, "{s:?}");
    assert!(s.resolved > 0 && s.bytes >= mem.len as u64, "{s:?}");
}

/// A forked child of a blocking descriptor's process: the FORK event's
/// descriptor is the monitor's own (and the kernel does not let it take
/// RWF_NOWAIT), so the monitor makes it non-blocking and serves it; the
/// parent's descriptor keeps its flags.
#[test]
fn blocking_fd_fork_child_served() {
    let _w = Watchdog::new("blocking_fd_fork_child_served", 60);
    let _g = FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let pages = 16;
    let mem = Mem::new(Kind::Anon, pages);
    let data = pattern(mem.len, 3);
    let u = Arc::new(open_blocking(Features::EVENT_FORK));
    let m = Monitor::new(Config::default(), Box::new(DefaultHandler)).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        RegionOptions {
            source: buffer(&data),
            register: RegisterMode::MISSING,
            ..Default::default()
        },
    )
    .unwrap();
    let run = m.start().unwrap();
    assert_eq!(mem.read(0), data[0]);
    let (addr, want, len) = (mem.start(), data.as_ptr(), mem.len);
    // SAFETY: fork; the child only reads memory and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let mut ok = true;
        for i in (0..len).step_by(512) {
            // SAFETY: the child's copy of the mapping and of the source.
            let (a, b) = unsafe {
                (
                    std::ptr::read_volatile((addr as *const u8).add(i)),
                    *want.add(i),
                )
            };
            ok &= a == b;
        }
        // SAFETY: leave the child at once.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) }
    }
    let mut status = 0;
    // SAFETY: our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child saw wrong data or died: status {status:#x}"
    );
    m.stop();
    run.wait().unwrap();
    assert_eq!(status_flags(u.as_raw_fd()) & libc::O_NONBLOCK, 0);
    let s = m.stats();
    assert_eq!(s.forks, 1, "{s:?}");
    assert_eq!(s.failed, 0, "{s:?}");
}

// ---------------------------------------------------------------------
// 3. Faults outside every region
// ---------------------------------------------------------------------

/// Records the page size of each fault and resolves it with zeros when it
/// is the mapping's; a wrong one stops the monitor (its stop releases the
/// thread), so that the test fails instead of hanging.
struct ZeroIfHuge {
    want: u64,
    seen: Mutex<Vec<(u64, u64, bool)>>,
}

impl Handler for ZeroIfHuge {
    fn on_fault(&self, ctx: &FaultCtx<'_>) -> Verdict {
        let t = ctx.token;
        self.seen
            .lock()
            .unwrap()
            .push((t.page, t.page_size, ctx.region.is_none()));
        if t.page_size != self.want {
            return Verdict::Stop;
        }
        match ctx.resolve(Action::Zero) {
            Ok(_) => Verdict::Resolved,
            Err(e) => Verdict::Error(e.errno()),
        }
    }
}

/// A fault in hugetlb memory registered with the monitor's userfaultfd but
/// in no region reaches the callback with the huge page size: resolving
/// it with that works (with 4096, as reported before, EINVAL).
fn outside_case(kind: Kind) {
    let mem = Arc::new(Mem::new(kind, 2));
    let u = Arc::new(open_uffd(Features::empty()));
    u.register(
        Range::new(mem.start(), mem.len as u64),
        RegisterMode::MISSING,
    )
    .unwrap();
    let h = Arc::new(ZeroIfHuge {
        want: HUGE as u64,
        seen: Mutex::new(Vec::new()),
    });
    struct Shared(Arc<ZeroIfHuge>);
    impl Handler for Shared {
        fn on_fault(&self, ctx: &FaultCtx<'_>) -> Verdict {
            self.0.on_fault(ctx)
        }
    }
    let m = Monitor::new(Config::default(), Box::new(Shared(h.clone()))).unwrap();
    m.add_uffd(u.clone()).unwrap();
    let run = m.start().unwrap();
    let reader = {
        let mem = mem.clone();
        std::thread::spawn(move || mem.read(HUGE + 12345))
    };
    let released = kit::wait_finished(&reader, 5000);
    if !released {
        // The range is in no region, so stopping does not release it.
        u.unregister(Range::new(mem.start(), mem.len as u64))
            .unwrap();
    }
    let v = reader.join().unwrap();
    m.stop();
    run.wait().unwrap();
    let seen = h.seen.lock().unwrap().clone();
    assert!(released, "the faulting thread was not served: {seen:x?}");
    assert_eq!(v, 0);
    assert!(!seen.is_empty(), "no fault reached the callback");
    for (page, ps, outside) in seen {
        assert!(outside, "the fault was in no region");
        assert_eq!(ps, HUGE as u64, "page size of the fault at {page:#x}");
        assert_eq!(page, mem.page_addr(1));
    }
    let s = m.stats();
    assert_eq!(s.failed, 0, "{s:?}");
}

#[test]
fn outside_fault_hugetlb_page_size() {
    if common::skip_without_hugetlb("outside_fault_hugetlb_page_size") {
        return;
    }
    let _w = Watchdog::new("outside_fault_hugetlb_page_size", 60);
    outside_case(Kind::Hugetlb);
}

#[test]
fn outside_fault_hugetlb_private_page_size() {
    if common::skip_without_hugetlb("outside_fault_hugetlb_private_page_size") {
        return;
    }
    let _w = Watchdog::new("outside_fault_hugetlb_private_page_size", 60);
    outside_case(Kind::HugetlbPrivate);
}

// ---------------------------------------------------------------------
// 4. No livelock
// ---------------------------------------------------------------------

/// A region given the wrong page size (4 KiB on hugetlb memory, as an
/// adopted descriptor's regions got by default): zero-filling the fault
/// fails with EINVAL, and so does poisoning it, so the default SIGBUS
/// policy can only wake the thread, which faults again. After a bounded
/// number of tries the monitor stops with the error and its stop releases
/// the thread (before, the monitor logged EINVAL for ever and the thread
/// never returned).
fn livelock_case(workers: u32, policy: ErrorPolicy) {
    let mem = Arc::new(Mem::new(Kind::Hugetlb, 2));
    let owner = open_uffd(Features::empty());
    let u = Arc::new(adopt_dup(&owner));
    let logs = Arc::new(AtomicU64::new(0));
    struct CountLogs(Arc<AtomicU64>);
    impl Handler for CountLogs {
        fn on_log(&self, _msg: &str) {
            self.0.fetch_add(1, SeqCst);
        }
        fn wants_log(&self) -> bool {
            true
        }
    }
    let m = Monitor::new(
        Config {
            workers,
            hand_off_all: workers > 0,
            error_policy: policy,
            ..Default::default()
        },
        Box::new(CountLogs(logs.clone())),
    )
    .unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        RegionOptions {
            source: Source::Zero,
            register: RegisterMode::MISSING,
            ..wrong_page_size()
        },
    )
    .unwrap();
    let run = m.start().unwrap();
    let reader = {
        let mem = mem.clone();
        std::thread::spawn(move || mem.read(HUGE + 7))
    };
    let e = run
        .wait()
        .expect_err("the monitor must stop with the error");
    assert_eq!(e.errno(), libc::EINVAL, "{e}");
    assert!(e.to_string().contains("poison"), "{e}");
    assert!(
        kit::wait_finished(&reader, 5000),
        "the faulting thread was not released by the stop"
    );
    assert_eq!(reader.join().unwrap(), 0);
    let s = m.stats();
    eprintln!(
        "livelock (workers={workers}, {policy:?}): {e}; {s:?}; logs {}",
        logs.load(SeqCst)
    );
    assert!(s.failed >= 1, "{s:?}");
    assert!(s.failed <= 64, "bounded: {s:?}");
}

#[test]
fn unreleasable_fault_stops_monitor() {
    if common::skip_without_hugetlb("unreleasable_fault_stops_monitor") {
        return;
    }
    let _w = Watchdog::new("unreleasable_fault_stops_monitor", 60);
    livelock_case(0, ErrorPolicy::Sigbus);
}

#[test]
fn unreleasable_fault_stops_monitor_workers() {
    if common::skip_without_hugetlb("unreleasable_fault_stops_monitor_workers") {
        return;
    }
    let _w = Watchdog::new("unreleasable_fault_stops_monitor_workers", 60);
    livelock_case(2, ErrorPolicy::Sigbus);
}

/// Region options with a page size that is not the memory's (4 KiB on a
/// hugetlb mapping of an adopted descriptor).
fn wrong_page_size() -> RegionOptions {
    RegionOptions {
        page_size: 4096,
        ..Default::default()
    }
}

// ---------------------------------------------------------------------
// 2. Adopted descriptors of hugetlb memory
// ---------------------------------------------------------------------

/// Forking tests (and the test with an EVENT_FORK descriptor) take turns.
static FORK_LOCK: Mutex<()> = Mutex::new(());

fn pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both were just created and are owned by nobody else.
    unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    }
}

/// The byte a guest expects at offset `i` of its memory.
fn guest_byte(i: usize) -> u8 {
    ((i as u64 * 31 + 5 * 7) % 251 + 1) as u8
}

/// The guest process (a forked child, raw system calls only): map 2 huge
/// pages, open a userfaultfd with `features`, register the memory, tell
/// the parent the descriptor and address, then read the memory from a
/// second thread-free loop and _exit 0 if it is what the handler serves.
fn guest(features: u64, tell: i32) -> ! {
    // SAFETY: raw system calls on the child's own memory and descriptors.
    unsafe {
        let len = 2 * HUGE;
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB,
            -1,
            0,
        );
        if addr == libc::MAP_FAILED {
            libc::_exit(20);
        }
        let fd = libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) as i32;
        if fd < 0 {
            libc::_exit(21);
        }
        let mut api = [0xaau64, features, 0]; // struct uffdio_api
        if libc::ioctl(fd, 0xc018aa3f, api.as_mut_ptr()) != 0 {
            libc::_exit(22);
        }
        // struct uffdio_register { range { start, len }, mode, ioctls }
        let mut reg = [addr as u64, len as u64, 1u64, 0];
        if libc::ioctl(fd, 0xc020aa00, reg.as_mut_ptr()) != 0 {
            libc::_exit(23);
        }
        let msg = [fd as u64, addr as u64];
        if libc::write(tell, msg.as_ptr().cast(), 16) != 16 {
            libc::_exit(24);
        }
        let mut ok = true;
        for i in (0..len).step_by(4096 * 7 + 13) {
            ok &= std::ptr::read_volatile((addr as *const u8).add(i)) == guest_byte(i);
        }
        libc::_exit(if ok { 0 } else { 1 })
    }
}

/// A handler process serving a 2 MiB hugetlb guest through the guest's
/// descriptor (taken with pidfd_getfd, adopted): with the region's page
/// size given (`page_size`), or learnt from the faulting thread's
/// mappings (THREAD_ID), the guest reads its data. Returns the guest's
/// exit status and the monitor's result.
fn adopted_guest_case(features: u64, page_size: u64) -> (i32, Result<()>) {
    let _g = FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (tell_r, tell_w) = pipe();
    let tw = tell_w.as_raw_fd();
    // SAFETY: the child runs `guest` (raw system calls, then _exit).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        guest(features, tw);
    }
    drop(tell_w);
    let mut msg = [0u64; 2];
    // SAFETY: reading 16 bytes into a [u64; 2].
    let n = unsafe { libc::read(tell_r.as_raw_fd(), msg.as_mut_ptr().cast(), 16) };
    let wait = |pid: i32| {
        let mut status = 0;
        for _ in 0..2000 {
            // SAFETY: our own child.
            if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                return status;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // SAFETY: our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, &mut status, 0);
        }
        panic!("guest {pid} hung");
    };
    if n != 16 {
        panic!("guest failed to set up: status {:#x}", wait(pid));
    }
    let (child_fd, addr) = (msg[0] as i32, msg[1]);
    // SAFETY: plain pidfd syscalls; results checked.
    let fd = unsafe {
        use std::os::fd::FromRawFd;
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        assert!(
            pidfd >= 0,
            "pidfd_open: {}",
            std::io::Error::last_os_error()
        );
        let fd = libc::syscall(libc::SYS_pidfd_getfd, pidfd, child_fd, 0) as i32;
        let err = std::io::Error::last_os_error();
        libc::close(pidfd);
        assert!(fd >= 0, "pidfd_getfd: {err}");
        std::os::fd::OwnedFd::from_raw_fd(fd)
    };
    let u = Arc::new(
        Uffd::adopt(fd, &OpenOptions::default())
            .map_err(|(e, _)| e)
            .expect("adopt the guest's uffd"),
    );
    assert!(!u.serves_this_process());
    let data: Vec<u8> = (0..2 * HUGE).map(guest_byte).collect();
    let m = Monitor::new(Config::default(), Box::new(DefaultHandler)).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    m.add_region(
        id,
        handed(addr, 2 * HUGE as u64),
        RegionOptions {
            source: buffer(&data),
            page_size,
            ..Default::default()
        },
    )
    .unwrap();
    let run = m.start().unwrap();
    let status = wait(pid);
    m.stop();
    (status, run.wait())
}

#[test]
fn adopted_hugetlb_guest_page_size_given() {
    if common::skip_without_hugetlb("adopted_hugetlb_guest_page_size_given") {
        return;
    }
    let _w = Watchdog::new("adopted_hugetlb_guest_page_size_given", 60);
    let (status, result) = adopted_guest_case(0, HUGE as u64);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the guest saw wrong data or died: status {status:#x}"
    );
    result.unwrap();
}

#[test]
fn region_page_size_checked() {
    if common::skip_without_hugetlb("region_page_size_checked") {
        return;
    }
    let _w = Watchdog::new("region_page_size_checked", 60);
    let mem = Mem::new(Kind::Hugetlb, 1);
    let u = Arc::new(open_uffd(Features::empty()));
    let m = Monitor::new(Config::default(), Box::new(DefaultHandler)).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    for bad in [3u64, 1000, 2048, 4096 * 3] {
        let e = m
            .add_region(
                id,
                handed(mem.start(), mem.len as u64),
                RegionOptions {
                    page_size: bad,
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL, "{e}");
        assert!(e.to_string().contains("power of two"), "{e}");
    }
    // This process's own memory: a page size other than the mapping's is
    // refused, the mapping's accepted.
    let e = m
        .add_region(
            id,
            handed(mem.start(), mem.len as u64),
            RegionOptions {
                page_size: 4096,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL, "{e}");
    assert!(e.to_string().contains("2048 KiB pages"), "{e}");
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        RegionOptions {
            page_size: HUGE as u64,
            register: RegisterMode::MISSING,
            ..Default::default()
        },
    )
    .unwrap();
}

/// The same guest without a page size given, its descriptor reporting
/// thread ids: the monitor asks the faulting thread's mappings
/// (PROCMAP_QUERY on /proc/<tid>/maps) at the region's first fault.
#[test]
fn adopted_hugetlb_guest_page_size_learnt() {
    if common::skip_without_hugetlb("adopted_hugetlb_guest_page_size_learnt") {
        return;
    }
    let _w = Watchdog::new("adopted_hugetlb_guest_page_size_learnt", 60);
    let thread_id = Features::THREAD_ID.bits();
    let (status, result) = adopted_guest_case(thread_id, 0);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the guest saw wrong data or died: status {status:#x} ({result:?})"
    );
    result.unwrap();
}

// ---------------------------------------------------------------------
// 5. add_region from callbacks
// ---------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum From {
    Fault,
    Remap,
    Remove,
    Unmap,
    Fork,
}

/// Adds region `b` from the callback `from` (once) and records how that
/// went. Region `a`'s faults (a Callback region) are served from `a_src`.
struct AddFrom {
    from: From,
    /// The monitor whose handler this is: a reference cycle, broken at
    /// the end of the test (`take`), or the monitor would leak.
    m: Mutex<Option<Monitor>>,
    id: AtomicU64,
    a_src: Vec<u8>,
    b: (u64, u64),
    b_src: Vec<u8>,
    result: Mutex<Option<std::result::Result<(), i32>>>,
}

impl AddFrom {
    fn add(&self, from: From) {
        if from != self.from || self.result.lock().unwrap().is_some() {
            return;
        }
        let Some(m) = self.m.lock().unwrap().clone() else {
            return;
        };
        let r = m.add_region(
            self.id.load(SeqCst) as u32,
            handed(self.b.0, self.b.1),
            RegionOptions {
                source: buffer(&self.b_src),
                register: RegisterMode::MISSING,
                ..Default::default()
            },
        );
        *self.result.lock().unwrap() = Some(r.map_err(|e| e.errno()));
    }
}

struct AddFromHandler(Arc<AddFrom>);

impl Handler for AddFromHandler {
    fn on_fault(&self, ctx: &FaultCtx<'_>) -> Verdict {
        self.0.add(From::Fault);
        let off = ctx.region.map_or(0, |r| r.source_offset) as usize;
        let src = self.0.a_src[off..].as_ptr() as u64;
        match ctx.resolve(Action::Copy(src)) {
            Ok(_) => Verdict::Resolved,
            Err(e) => Verdict::Error(e.errno()),
        }
    }
    fn on_fork(&self, _id: u32, _fd: i32) -> ForkVerdict {
        self.0.add(From::Fork);
        ForkVerdict::Close
    }
    fn on_remap(&self, _id: u32, _from: u64, _to: u64, _len: u64) {
        self.0.add(From::Remap);
    }
    fn on_remove(&self, _id: u32, _start: u64, _end: u64) {
        self.0.add(From::Remove);
    }
    fn on_unmap(&self, _id: u32, _start: u64, _end: u64) {
        self.0.add(From::Unmap);
    }
}

/// `add_region` called from inside callback `from` returns (here: works)
/// instead of waiting for the layout gate its own thread holds; the new
/// region is then served.
fn add_from_case(from: From, workers: u32) {
    let _g = FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let pages = 16;
    let a = Mem::new(Kind::Anon, pages);
    let b = Arc::new(Mem::new(Kind::Anon, pages));
    let spare = Mem::new(Kind::Anon, 1);
    let h = Arc::new(AddFrom {
        from,
        m: Mutex::new(None),
        id: AtomicU64::new(0),
        a_src: pattern(a.len, 7),
        b: (b.start(), b.len as u64),
        b_src: pattern(b.len, 8),
        result: Mutex::new(None),
    });
    let features = Features::EVENT_REMAP
        | Features::EVENT_REMOVE
        | Features::EVENT_UNMAP
        | if from == From::Fork {
            Features::EVENT_FORK
        } else {
            Features::empty()
        };
    let u = Arc::new(open_uffd(features));
    let m = Monitor::new(
        Config {
            workers,
            hand_off_all: workers > 0,
            ..Default::default()
        },
        Box::new(AddFromHandler(h.clone())),
    )
    .unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    h.id.store(id as u64, SeqCst);
    *h.m.lock().unwrap() = Some(m.clone());
    m.add_region(
        id,
        handed(a.start(), a.len as u64),
        RegionOptions {
            source: Source::Callback,
            register: RegisterMode::MISSING,
            ..Default::default()
        },
    )
    .unwrap();
    let run = m.start().unwrap();
    match from {
        From::Fault => assert_eq!(a.read(PAGE + 1), h.a_src[PAGE + 1]),
        From::Remove => {
            assert_eq!(a.read(1), h.a_src[1]);
            // SAFETY: our own mapping.
            assert_eq!(
                unsafe { libc::madvise(a.addr.cast(), PAGE, libc::MADV_DONTNEED) },
                0
            );
        }
        From::Unmap => {
            // SAFETY: our own mapping (its last page; Mem's drop unmaps
            // the rest, and unmapping a hole again is harmless).
            assert_eq!(
                unsafe { libc::munmap(a.addr.add(a.len - PAGE).cast(), PAGE) },
                0
            );
        }
        From::Remap => {
            // SAFETY: moving a page of our own mapping onto our own spare
            // page.
            let to = unsafe {
                libc::mremap(
                    a.addr.cast(),
                    PAGE,
                    PAGE,
                    libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                    spare.addr as *mut libc::c_void,
                )
            };
            assert_ne!(to, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
        }
        From::Fork => {
            // SAFETY: fork; the child exits at once.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                // SAFETY: leave the child at once.
                unsafe { libc::_exit(0) };
            }
            let mut st = 0;
            // SAFETY: our own child.
            assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
        }
    }
    let t0 = std::time::Instant::now();
    let result = loop {
        if let Some(r) = *h.result.lock().unwrap() {
            break r;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "add_region called from {from:?} (workers={workers}) never returned"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(result, Ok(()), "add_region from {from:?}");
    // The region added from the callback is served.
    let reader = {
        let b = b.clone();
        std::thread::spawn(move || b.bytes().to_vec())
    };
    assert!(kit::wait_finished(&reader, 5000), "region b not served");
    assert!(reader.join().unwrap() == h.b_src, "region b's contents");
    m.stop();
    run.wait().unwrap();
    h.m.lock().unwrap().take();
}

#[test]
fn add_region_from_on_fault() {
    let _w = Watchdog::new("add_region_from_on_fault", 60);
    add_from_case(From::Fault, 0);
}

#[test]
fn add_region_from_on_fault_workers() {
    let _w = Watchdog::new("add_region_from_on_fault_workers", 60);
    add_from_case(From::Fault, 2);
}

#[test]
fn add_region_from_on_remap() {
    let _w = Watchdog::new("add_region_from_on_remap", 60);
    add_from_case(From::Remap, 0);
}

#[test]
fn add_region_from_on_remove() {
    let _w = Watchdog::new("add_region_from_on_remove", 60);
    add_from_case(From::Remove, 0);
}

#[test]
fn add_region_from_on_unmap_workers() {
    let _w = Watchdog::new("add_region_from_on_unmap_workers", 60);
    add_from_case(From::Unmap, 2);
}

#[test]
fn add_region_from_on_fork() {
    let _w = Watchdog::new("add_region_from_on_fork", 60);
    add_from_case(From::Fork, 0);
}

/// A region split under the monitor (one page in its middle unregistered
/// by hand, which splits the mapping): the fault-around window from a page
/// before the hole runs past the registered mapping's end, and the kernel
/// refuses the whole window with ENOENT. The faulting page must still be
/// served, with the right bytes (docs/kernel-semantics.md §5.4). Before
/// the fix the thread was woken as for a vanished range, faulted again,
/// and never got its page (the fuzzer's hang: 100,000 faults in 2 s).
fn split_region_case(kind: Kind, source_is_buffer: bool) {
    let pages = 16;
    let mem = Arc::new(Mem::new(kind, pages));
    let ps = kind.page();
    let data = pattern(mem.len, 3);
    let u = Arc::new(open_uffd(kind.missing_features()));
    let config = Config {
        window_min: 8,
        window_max: 64,
        ..Config::default()
    };
    let m = Monitor::new(config, Box::new(DefaultHandler)).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    let source = if source_is_buffer {
        buffer(&data)
    } else {
        Source::Zero
    };
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        RegionOptions {
            source,
            register: RegisterMode::MISSING,
            ..RegionOptions::default()
        },
    )
    .unwrap();
    let run = m.start().unwrap();
    // The hole: page 3 is no longer registered (the mapping is split).
    u.unregister(Range::new(mem.start() + 3 * ps as u64, ps as u64))
        .unwrap();
    let want = |p: usize| -> u8 {
        if source_is_buffer {
            data[p * ps + 7]
        } else {
            0
        }
    };
    for p in [1usize, 0, 2, 5, 15] {
        let t = reader(&mem, p * ps + 7);
        wait_for(&format!("page {p} ({kind:?}) to be served"), 10, || {
            t.is_finished()
        });
        assert_eq!(t.join().unwrap(), want(p), "page {p} ({kind:?})");
    }
    let s = m.stats();
    assert!(s.faults < 50, "faults re-raised over and over: {s:?}");
    m.stop();
    run.wait().unwrap();
}

#[test]
fn split_region_zero_anon() {
    let _w = Watchdog::new("split_region_zero_anon", 60);
    split_region_case(Kind::Anon, false);
}

#[test]
fn split_region_buffer_anon() {
    let _w = Watchdog::new("split_region_buffer_anon", 60);
    split_region_case(Kind::Anon, true);
}

#[test]
fn split_region_buffer_shmem() {
    let _w = Watchdog::new("split_region_buffer_shmem", 60);
    split_region_case(Kind::ShmemShared, true);
}
