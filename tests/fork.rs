// SPDX-License-Identifier: MIT OR Apache-2.0
//! fork() and userfaultfd, on the real kernel. With EVENT_FORK, fork()
//! waits until a reader has read the FORK event, which carries a new uffd
//! serving the child's memory; without it the child's copies of registered
//! ranges are plain memory.
//!
//! A fork by one test would also raise FORK events on another test's
//! EVENT_FORK uffd (and block until they are read), so every test here
//! holds `FORK_LOCK` for its whole run. Children run only raw memory
//! accesses and `_exit`.
#![allow(unsafe_code)]

mod common;
use common::*;

use ::uffd::{
    CopyMode, Event, FaultFlags, Features, MoveMode, Msg, OpenOptions, Range, RegisterMode, Uffd,
    ZeropageMode,
};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const P: u64 = PAGE as u64;

static FORK_LOCK: Mutex<()> = Mutex::new(());

fn fork_lock() -> MutexGuard<'static, ()> {
    FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn kernel_has(f: Features) -> bool {
    let offered = ::uffd::probe().expect("probe").features;
    if !offered.contains(f) {
        eprintln!("SKIP: kernel lacks {:?}", f - offered);
        return false;
    }
    true
}

fn fork() -> i32 {
    // SAFETY: every caller's child only touches memory and calls _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    pid
}

fn child_exit(code: i32) -> ! {
    // SAFETY: ends the child without running destructors or atexit hooks.
    unsafe { libc::_exit(code) }
}

/// Wait for `pid` to exit (at most 10 s, then kill it and fail).
fn wait_child(pid: i32) -> i32 {
    let t0 = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                -1000 - status
            };
        }
        assert_eq!(r, 0, "waitpid: {}", std::io::Error::last_os_error());
        if t0.elapsed() > Duration::from_secs(10) {
            // SAFETY: our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("child {pid} hung");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Wait until a reader thread is past its start-up. A new thread
/// allocates while it starts (glibc's pthread_getattr_np, Rust's thread
/// bookkeeping); if the forking thread is already inside fork() holding
/// glibc's malloc locks, waiting for that very thread to read the FORK
/// event, neither ever proceeds (docs/kernel-semantics.md §6).
fn wait_ready(ready: &AtomicBool) {
    let t0 = Instant::now();
    while !ready.load(Ordering::SeqCst) {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "reader never started"
        );
        std::thread::yield_now();
    }
}

/// A thread reading `u`'s events until stopped: FORK descriptors go to the
/// channel, anything else is counted as unexpected.
struct EventReader {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<String>>,
}

impl EventReader {
    fn start(u: Arc<Uffd>, delay: Duration, tx: mpsc::Sender<OwnedFd>) -> EventReader {
        let stop = Arc::new(AtomicBool::new(false));
        let ready = Arc::new(AtomicBool::new(false));
        let (s, r) = (stop.clone(), ready.clone());
        let handle = std::thread::spawn(move || {
            let mut unexpected = Vec::with_capacity(16);
            let mut buf = [Msg::default(), Msg::default()];
            r.store(true, Ordering::SeqCst);
            std::thread::sleep(delay);
            while !s.load(Ordering::SeqCst) {
                let n = u.read_msgs(&mut buf, 20).expect("read events");
                for m in &mut buf[..n] {
                    match m.take_event(u.features()) {
                        Some(Event::Fork(fd)) => tx.send(fd).unwrap(),
                        other => unexpected.push(format!("{other:?}")),
                    }
                }
            }
            unexpected
        });
        wait_ready(&ready);
        EventReader { stop, handle }
    }

    /// Stop the thread; return the events it did not expect.
    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("reader thread")
    }
}

fn fd_flags(fd: i32) -> i32 {
    // SAFETY: F_GETFD reads no memory.
    unsafe { libc::fcntl(fd, libc::F_GETFD) }
}

#[test]
fn fork_event_fd_serves_the_child_then_gives_esrch() {
    let _w = Watchdog::new("fork_event_fd_serves_the_child_then_gives_esrch", 60);
    let want = Features::EVENT_FORK | Features::THREAD_ID;
    if !kernel_has(want) {
        return;
    }
    let _g = fork_lock();
    let mem = Arc::new(Mem::new(Kind::Anon, 2));
    let src = Mem::new(Kind::Anon, 1);
    src.write(0, 1);
    let u = Arc::new(open_uffd(want));
    u.register(Range::new(mem.start(), 2 * P), RegisterMode::MISSING)
        .unwrap();
    let expected = pattern(PAGE, 21);
    let (tx, rx) = mpsc::channel();
    let events = EventReader::start(u.clone(), Duration::ZERO, tx);

    let pid = fork();
    if pid == 0 {
        // Child: both pages are missing in its copy; each touch faults on
        // the child's own uffd, served by the parent through the FORK fd.
        let ok = mem.bytes()[..PAGE] == expected[..];
        mem.write(PAGE + 3, 0x5A);
        let ok = ok && mem.read(PAGE + 3) == 0x5A && mem.read(PAGE + 4) == 0;
        child_exit(if ok { 0 } else { 1 });
    }
    let fd = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("FORK event before fork() returned");
    let cu = Uffd::adopt(fd, &OpenOptions::default())
        .map_err(|(e, _)| e)
        .expect("adopt the FORK fd");
    assert_eq!(
        cu.features(),
        u.features(),
        "the child ctx has the parent's features"
    );
    assert_eq!(
        cu.offered_features(),
        None,
        "already negotiated by the kernel"
    );
    assert!(
        cu.is_nonblocking(),
        "O_NONBLOCK inherited from the parent ctx"
    );
    assert_ne!(
        fd_flags(cu.as_raw_fd()) & libc::FD_CLOEXEC,
        0,
        "CLOEXEC inherited"
    );

    // MOVE is confined to the caller's own mm.
    let e = unsafe {
        cu.move_pages(
            Range::new(mem.page_addr(1), P),
            src.start(),
            MoveMode::empty(),
        )
    }
    .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL, "{e}");

    let f = next_fault(&cu, 5000);
    assert_eq!(f.address, mem.page_addr(0));
    assert_eq!(f.flags, FaultFlags::empty());
    assert_eq!(f.thread_id, pid as u32, "the child's main thread faulted");
    assert!(
        unsafe { cu.copy_from_slice(mem.page_addr(0), &expected, CopyMode::empty()) }
            .unwrap()
            .is_complete()
    );
    let f = next_fault(&cu, 5000);
    assert_eq!(f.address, mem.page_addr(1));
    assert_eq!(f.flags, FaultFlags::WRITE);
    assert!(
        unsafe { cu.zeropage(Range::new(mem.page_addr(1), P), ZeropageMode::empty()) }
            .unwrap()
            .is_complete()
    );
    assert_eq!(wait_child(pid), 0, "the child saw the data served to it");

    // The child is gone: its uffd has no mm left.
    let e =
        unsafe { cu.copy_from_slice(mem.page_addr(0), &expected, CopyMode::empty()) }.unwrap_err();
    assert_eq!(e.errno(), libc::ESRCH, "{e}");
    assert!(e.to_string().contains("ESRCH"), "{e}");
    let e =
        unsafe { cu.zeropage(Range::new(mem.page_addr(1), P), ZeropageMode::empty()) }.unwrap_err();
    assert_eq!(e.errno(), libc::ESRCH, "{e}");
    let mut buf = [Msg::default()];
    assert_eq!(cu.read_msgs(&mut buf, 0).unwrap(), 0);

    assert_eq!(events.finish(), Vec::<String>::new());
    // The parent's registration is its own: page 0 is still missing here.
    let r = reader(&mem, 7);
    let f = next_fault(&u, 5000);
    assert_eq!(f.address, mem.page_addr(0));
    assert_ne!(f.thread_id, pid as u32);
    unsafe { u.zeropage(Range::new(mem.page_addr(0), P), ZeropageMode::empty()) }.unwrap();
    assert_eq!(r.join().unwrap(), 0, "not the child's data");
}

#[test]
fn fork_blocks_until_the_fork_event_is_read() {
    let _w = Watchdog::new("fork_blocks_until_the_fork_event_is_read", 60);
    if !kernel_has(Features::EVENT_FORK) {
        return;
    }
    let _g = fork_lock();
    let mem = Mem::new(Kind::Anon, 1);
    let u = Arc::new(open_uffd(Features::EVENT_FORK));
    u.register(Range::new(mem.start(), P), RegisterMode::MISSING)
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let delay = Duration::from_millis(300);
    let t0 = Instant::now();
    let events = EventReader::start(u.clone(), delay, tx);
    let pid = fork();
    if pid == 0 {
        child_exit(0);
    }
    let took = t0.elapsed();
    assert!(
        took >= delay - Duration::from_millis(20),
        "fork() returned after {took:?}, before the reader read the event"
    );
    let fd = rx.recv_timeout(Duration::from_secs(5)).expect("FORK fd");
    assert!(fd_flags(fd.as_raw_fd()) >= 0);
    assert_eq!(wait_child(pid), 0);
    assert_eq!(events.finish(), Vec::<String>::new());
}

#[test]
fn without_event_fork_the_child_is_unregistered() {
    let _w = Watchdog::new("without_event_fork_the_child_is_unregistered", 60);
    let _g = fork_lock();
    let mem = Mem::new(Kind::Anon, 2);
    let u = open_uffd(Features::THREAD_ID);
    u.register(Range::new(mem.start(), 2 * P), RegisterMode::MISSING)
        .unwrap();
    unsafe { u.zeropage(Range::new(mem.page_addr(1), P), ZeropageMode::empty()) }.unwrap();
    let t0 = Instant::now();
    let pid = fork();
    if pid == 0 {
        // Would hang (no one serves it) if the registration were kept.
        let ok = mem.read(5) == 0 && mem.read(PAGE + 5) == 0;
        mem.write(9, 1);
        child_exit(if ok && mem.read(9) == 1 { 0 } else { 1 });
    }
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "fork() must not wait"
    );
    assert_eq!(wait_child(pid), 0);
    let mut buf = [Msg::default()];
    assert_eq!(u.read_msgs(&mut buf, 50).unwrap(), 0, "no event, no fault");
    // The parent's page 0 is still registered and missing.
    let mem = Arc::new(mem);
    let r = reader(&mem, 5);
    assert_eq!(next_fault(&u, 5000).address, mem.page_addr(0));
    unsafe { u.zeropage(Range::new(mem.page_addr(0), P), ZeropageMode::empty()) }.unwrap();
    assert_eq!(r.join().unwrap(), 0);
}

fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t with one bit set, for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn unpin() {
    // SAFETY: as above, all CPUs this machine may have.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for c in 0..libc::CPU_SETSIZE as usize {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// docs/kernel-semantics.md §6: glibc's fork() holds the malloc locks while the
/// kernel waits for the FORK read, so a reader that allocates between
/// reads can deadlock against the next fork. The library's read path must
/// not allocate: back-to-back forks on one CPU, read by a loop that only
/// calls `read_msgs` and `take_event`, must all complete.
#[test]
fn back_to_back_forks_with_an_allocation_free_reader() {
    let _w = Watchdog::new("back_to_back_forks_with_an_allocation_free_reader", 60);
    if !kernel_has(Features::EVENT_FORK) {
        return;
    }
    const N: usize = 60;
    let _g = fork_lock();
    let mem = Mem::new(Kind::Anon, 1);
    let u = Arc::new(open_uffd(Features::EVENT_FORK | Features::THREAD_ID));
    u.register(Range::new(mem.start(), P), RegisterMode::MISSING)
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicBool::new(false));
    let (uu, s, r) = (u.clone(), stop.clone(), ready.clone());
    let reader = std::thread::spawn(move || {
        pin_to_cpu0();
        let mut fds: Vec<OwnedFd> = Vec::with_capacity(N + 16);
        let mut other = 0usize;
        let mut buf = [
            Msg::default(),
            Msg::default(),
            Msg::default(),
            Msg::default(),
        ];
        let features = uu.features();
        // From here on, nothing on this thread allocates.
        r.store(true, Ordering::SeqCst);
        while !s.load(Ordering::SeqCst) {
            let n = match uu.read_msgs(&mut buf, 10) {
                Ok(n) => n,
                Err(_) => {
                    other += 1000;
                    break;
                }
            };
            for m in &mut buf[..n] {
                match m.take_event(features) {
                    Some(Event::Fork(fd)) if fds.len() < fds.capacity() => fds.push(fd),
                    _ => other += 1,
                }
            }
        }
        (fds, other)
    });
    wait_ready(&ready);
    pin_to_cpu0();
    let mut pids = [0i32; N];
    for p in pids.iter_mut() {
        let pid = fork();
        if pid == 0 {
            child_exit(0);
        }
        *p = pid;
    }
    unpin();
    for pid in pids {
        assert_eq!(wait_child(pid), 0);
    }
    stop.store(true, Ordering::SeqCst);
    let (fds, other) = reader.join().unwrap();
    assert_eq!(other, 0, "unexpected events or read errors");
    assert_eq!(fds.len(), N, "one FORK event per fork");
    for fd in fds {
        let c = Uffd::adopt(fd, &OpenOptions::default())
            .map_err(|(e, _)| e)
            .unwrap();
        assert_eq!(c.features(), u.features());
    }
}
