// SPDX-License-Identifier: MIT OR Apache-2.0
//! Monitor race and failure tests, on the real kernel (docs/kernel-semantics.md
//! §5): many threads faulting on one page (EEXIST and coalescing), stop
//! while threads are blocked in faults, and the error policies (SIGBUS,
//! Retry, Stop) for callbacks that fail or panic.
//!
//! SIGBUS outcomes are checked in forked child processes: the child builds
//! its own uffd and monitor, faults, and the parent checks how it died.
//! Forking tests are serialized (FORK_LOCK). No test in this file uses
//! EVENT_FORK, so a fork here never waits for a monitor.
#![allow(unsafe_code)]

mod common;
use common::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use uffd::monitor::*;
use uffd::*;

// ---------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------

fn check_bytes(got: &[u8], want: &[u8], page: usize, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if got != want {
        let i = got.iter().zip(want).position(|(a, b)| a != b).unwrap();
        panic!(
            "{what}: first difference at byte {i:#x} (page {}): got {:#04x}, want {:#04x}",
            i / page,
            got[i],
            want[i]
        );
    }
}

/// Serves Callback regions by copying from `src` at the source offset.
struct CopyFrom {
    src: Arc<Vec<u8>>,
}

impl Handler for CopyFrom {
    fn on_fault(&self, ctx: &FaultCtx<'_>) -> Verdict {
        let off = ctx.region.map(|r| r.source_offset).unwrap_or(0);
        match ctx.resolve(Action::Copy(self.src.as_ptr() as u64 + off)) {
            Ok(_) => Verdict::Resolved,
            Err(e) if e.errno() == libc::EAGAIN => Verdict::Resolved,
            Err(e) => Verdict::Error(e.errno()),
        }
    }
}

/// A wait status in words, for assertion messages.
fn describe(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exited with {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("status {status:#x}")
    }
}

fn assert_sigbus(status: i32) {
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS,
        "the child should have died of SIGBUS; it {}",
        describe(status)
    );
}

// ---------------------------------------------------------------------
// (a) One page, many threads at once: EEXIST and coalescing
// ---------------------------------------------------------------------

/// `threads` threads meet at a barrier before each page and all touch it
/// at once. Every thread must read the page's data; each page is placed
/// exactly once (window 1), every other message is a duplicate found
/// resolved (EEXIST) or coalesced in a batch.
fn same_page_case(kind: Kind, pages: usize, threads: usize, workers: u32, callback: bool) {
    let ps = kind.page();
    let mem = Arc::new(Mem::new(kind, pages));
    let data = Arc::new(content(mem.len, 21));
    let u = Arc::new(open_uffd(kind.missing_features()));
    let config = Config {
        workers,
        hand_off_all: workers > 0,
        adaptive: false,
        window_min: 1,
        ..Config::default()
    };
    let (handler, source): (Box<dyn Handler>, Source) = if callback {
        (Box::new(CopyFrom { src: data.clone() }), Source::Callback)
    } else {
        (
            Box::new(DefaultHandler),
            Source::Buffer {
                addr: data.as_ptr() as u64,
                len: data.len() as u64,
            },
        )
    };
    let m = Monitor::new(config, handler).unwrap();
    add_all(&m, &u, &mem, source);
    let run = m.start().unwrap();
    let barrier = Arc::new(Barrier::new(threads));
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (mem, data, barrier) = (mem.clone(), data.clone(), barrier.clone());
            std::thread::spawn(move || {
                for p in 0..pages {
                    barrier.wait();
                    let off = p * ps + t * 64;
                    if t % 3 == 2 {
                        mem.write(off, data[off]);
                    } else {
                        assert_eq!(mem.read(off), data[off], "thread {t}, page {p}");
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().expect("faulting thread");
    }
    check_bytes(mem.bytes(), &data, ps, "same page");
    m.stop();
    run.wait().unwrap();
    let s = m.stats();
    eprintln!("same page {kind:?} workers={workers} callback={callback}: {s:?}");
    assert_eq!(s.failed, 0, "{s:?}");
    assert_eq!(
        s.resolved, pages as u64,
        "each page placed exactly once: {s:?}"
    );
    assert_eq!(s.bytes, mem.len as u64, "{s:?}");
    assert_eq!(
        s.faults,
        s.resolved + s.eexist + s.coalesced,
        "every duplicate message is EEXIST or coalesced: {s:?}"
    );
    // Whether the threads really met on a page is up to the scheduler (on
    // a loaded 2-CPU machine they may run one after the other): say so
    // rather than fail; the counts above hold either way.
    if s.faults == s.resolved {
        eprintln!("note: no duplicate fault message this run ({threads} threads): {s:?}");
    }
}

#[test]
fn same_page_many_threads_anon() {
    let _w = Watchdog::new("same_page_many_threads_anon", 60);
    same_page_case(Kind::Anon, 64, 8, 0, false);
}

#[test]
fn same_page_many_threads_anon_workers() {
    let _w = Watchdog::new("same_page_many_threads_anon_workers", 60);
    same_page_case(Kind::Anon, 64, 8, 4, false);
}

#[test]
fn same_page_many_threads_callback_workers() {
    let _w = Watchdog::new("same_page_many_threads_callback_workers", 60);
    same_page_case(Kind::Anon, 64, 8, 2, true);
}

#[test]
fn same_page_many_threads_shmem() {
    let _w = Watchdog::new("same_page_many_threads_shmem", 60);
    same_page_case(Kind::ShmemShared, 64, 8, 2, false);
}

#[test]
fn same_page_many_threads_hugetlb() {
    if common::skip_without_hugetlb("same_page_many_threads_hugetlb") {
        return;
    }
    let _w = Watchdog::new("same_page_many_threads_hugetlb", 60);
    same_page_case(Kind::Hugetlb, 4, 8, 2, false);
}

// ---------------------------------------------------------------------
// (f) Stop while threads are blocked in faults
// ---------------------------------------------------------------------

/// Defers every fault and never completes it.
struct BlackHole;
impl Handler for BlackHole {
    fn on_fault(&self, _ctx: &FaultCtx<'_>) -> Verdict {
        Verdict::Defer
    }
}

fn stop_releases_case(workers: u32) {
    let threads = 4;
    let mem = Arc::new(Mem::new(Kind::Anon, threads * 2));
    let u = Arc::new(open_uffd(Features::empty()));
    let config = Config {
        workers,
        hand_off_all: workers > 0,
        // Zeros for pages never restored, asked for explicitly (the
        // default for a callback region is SIGBUS: tests/monitor_stop.rs).
        stop_policy: StopPolicy::ZeroFill,
        ..Config::default()
    };
    let m = Monitor::new(config, Box::new(BlackHole)).unwrap();
    add_all(&m, &u, &mem, Source::Callback);
    let run = m.start().unwrap();
    let hs: Vec<_> = (0..threads)
        .map(|t| reader(&mem, t * 2 * PAGE + 3))
        .collect();
    wait_for("every thread's fault deferred", 10, || {
        m.stats().deferred >= threads as u64
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        hs.iter().all(|h| !h.is_finished()),
        "deferred faults must keep their threads blocked"
    );
    m.stop();
    run.wait().unwrap();
    // StopPolicy::ZeroFill unregistered the region: the threads fault
    // again, normally, and read fresh zero pages.
    for h in hs {
        assert_eq!(h.join().unwrap(), 0);
    }
    let s = m.stats();
    assert_eq!(s.deferred, threads as u64, "{s:?}");
    assert_eq!(s.stop_zeroed, threads as u64, "{s:?}");
    assert_eq!(s.stop_sigbus + s.stop_blocked, 0, "{s:?}");
    assert_eq!(s.failed, 0, "{s:?}");
}

#[test]
fn stop_releases_blocked_threads() {
    let _w = Watchdog::new("stop_releases_blocked_threads", 60);
    stop_releases_case(0);
}

#[test]
fn stop_releases_blocked_threads_workers() {
    let _w = Watchdog::new("stop_releases_blocked_threads_workers", 60);
    stop_releases_case(2);
}

/// With StopPolicy::Block, stopping leaves blocked threads blocked (the
/// registration stays); closing the userfaultfd (dropping the monitor and
/// every handle) releases them.
#[test]
fn stop_without_release_then_close() {
    let _w = Watchdog::new("stop_without_release_then_close", 60);
    let mem = Arc::new(Mem::new(Kind::Anon, 4));
    let u = Arc::new(open_uffd(Features::empty()));
    let config = Config {
        stop_policy: StopPolicy::Block,
        ..Config::default()
    };
    let m = Monitor::new(config, Box::new(BlackHole)).unwrap();
    add_all(&m, &u, &mem, Source::Callback);
    let run = m.start().unwrap();
    let h = reader(&mem, PAGE + 1);
    wait_for("the fault deferred", 10, || m.stats().deferred >= 1);
    m.stop();
    run.wait().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(!h.is_finished(), "still blocked: nothing released it");
    drop(m);
    drop(u);
    assert_eq!(h.join().unwrap(), 0, "released by close");
}

/// A callback that says Stop: the monitor stops; StopPolicy::ZeroFill
/// frees the thread whose fault was not resolved.
#[test]
fn verdict_stop_stops_and_releases() {
    let _w = Watchdog::new("verdict_stop_stops_and_releases", 60);
    struct StopNow;
    impl Handler for StopNow {
        fn on_fault(&self, _ctx: &FaultCtx<'_>) -> Verdict {
            Verdict::Stop
        }
    }
    let mem = Arc::new(Mem::new(Kind::Anon, 4));
    let u = Arc::new(open_uffd(Features::empty()));
    let config = Config {
        stop_policy: StopPolicy::ZeroFill,
        ..Config::default()
    };
    let m = Monitor::new(config, Box::new(StopNow)).unwrap();
    add_all(&m, &u, &mem, Source::Callback);
    let run = m.start().unwrap();
    let h = reader(&mem, 2 * PAGE);
    run.wait().expect("a Stop verdict is not an error");
    assert!(m.is_stopping());
    assert_eq!(h.join().unwrap(), 0);
}

// ---------------------------------------------------------------------
// (g) Error policies
// ---------------------------------------------------------------------

/// Fails every fault with EIO.
struct FailWith(i32);
impl Handler for FailWith {
    fn on_fault(&self, _ctx: &FaultCtx<'_>) -> Verdict {
        Verdict::Error(self.0)
    }
}

/// Panics on every fault.
struct Panicker;
impl Handler for Panicker {
    fn on_fault(&self, _ctx: &FaultCtx<'_>) -> Verdict {
        panic!("test callback panics on purpose");
    }
}

/// In a child: a Callback region served by `handler`; the child's main
/// thread faults on it. Returns only if the fault came back (a failure).
fn child_faults_on_callback_region(handler: Box<dyn Handler>, config: Config) -> i32 {
    let mem = Mem::new(Kind::Anon, 4);
    let u = Arc::new(open_uffd(Features::empty()));
    let m = Monitor::new(config, handler).unwrap();
    add_all(&m, &u, &mem, Source::Callback);
    let _run = m.start().unwrap();
    let v = mem.read(PAGE + 5);
    // Reaching this line means no SIGBUS.
    10 + (v as i32 % 100)
}

#[test]
fn callback_error_default_policy_sigbus() {
    let _w = Watchdog::new("callback_error_default_policy_sigbus", 60);
    let st = in_child(Duration::from_secs(20), || {
        child_faults_on_callback_region(Box::new(FailWith(libc::EIO)), Config::default())
    });
    assert_sigbus(st);
}

#[test]
fn callback_panic_default_policy_sigbus() {
    let _w = Watchdog::new("callback_panic_default_policy_sigbus", 60);
    let st = in_child(Duration::from_secs(20), || {
        // Keep the expected panic's message out of the test output.
        std::panic::set_hook(Box::new(|_| {}));
        child_faults_on_callback_region(Box::new(Panicker), Config::default())
    });
    assert_sigbus(st);
}

/// A source region whose source fails (pread on a closed descriptor):
/// the default policy poisons the page.
#[test]
fn source_error_default_policy_sigbus() {
    let _w = Watchdog::new("source_error_default_policy_sigbus", 60);
    let st = in_child(Duration::from_secs(20), || {
        let mem = Mem::new(Kind::Anon, 4);
        let u = Arc::new(open_uffd(Features::empty()));
        let m = Monitor::new(Config::default(), Box::new(DefaultHandler)).unwrap();
        // A descriptor number that is not open is refused when the region
        // is added (the monitor duplicates the source's descriptor).
        let id = m.add_uffd(u.clone()).unwrap();
        let e = m
            .add_region(
                id,
                handed(mem.start(), mem.len as u64),
                RegionOptions {
                    source: Source::Fd {
                        fd: 999_999,
                        offset: 0,
                        zero_past_eof: false,
                    },
                    register: RegisterMode::MISSING,
                    ..RegionOptions::default()
                },
            )
            .expect_err("a closed source fd");
        if e.errno() != libc::EBADF {
            return 3;
        }
        // One open for writing only: every pread fails (EBADF).
        // SAFETY: plain open.
        let bad_fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        assert!(bad_fd >= 0);
        m.add_region(
            id,
            handed(mem.start(), mem.len as u64),
            RegionOptions {
                source: Source::Fd {
                    fd: bad_fd,
                    offset: 0,
                    zero_past_eof: false,
                },
                register: RegisterMode::MISSING,
                ..RegionOptions::default()
            },
        )
        .unwrap();
        let _run = m.start().unwrap();
        let v = mem.read(5);
        10 + (v as i32 % 100)
    });
    assert_sigbus(st);
}

/// Fails the first `fail` calls (error or panic), then copies.
struct FailThenCopy {
    src: Arc<Vec<u8>>,
    fail: u64,
    panic: bool,
    calls: AtomicU64,
}

impl Handler for FailThenCopy {
    fn on_fault(&self, ctx: &FaultCtx<'_>) -> Verdict {
        let n = self.calls.fetch_add(1, SeqCst);
        if n < self.fail {
            if self.panic {
                panic!("test callback panics on purpose (call {n})");
            }
            return Verdict::Error(libc::EIO);
        }
        let off = ctx.region.map(|r| r.source_offset).unwrap_or(0);
        match ctx.resolve(Action::Copy(self.src.as_ptr() as u64 + off)) {
            Ok(_) => Verdict::Resolved,
            Err(e) if e.errno() == libc::EAGAIN => Verdict::Resolved,
            Err(e) => Verdict::Error(e.errno()),
        }
    }
}

/// ErrorPolicy::Retry: the failed fault is woken, faults again, and the
/// callback is offered it again; the second call resolves it. A callback
/// that panics is treated the same (the monitor survives it), and so is a
/// log callback that panics on the failure's message (`log_panics`), on
/// the monitor's thread or on a worker.
fn retry_case(panic: bool, log_panics: bool, workers: u32) {
    // Callbacks panic here, on this process's threads: a fork (in_child)
    // while one of them holds the panic machinery's locks (the hook, the
    // stderr lock) left the child hung in its own panic or set_hook.
    let _g = FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let pages = 8;
    let mem = Arc::new(Mem::new(Kind::Anon, pages));
    let data = Arc::new(content(mem.len, 22));
    let u = Arc::new(open_uffd(Features::empty()));
    let config = Config {
        error_policy: ErrorPolicy::Retry,
        workers,
        hand_off_all: workers > 0,
        ..Config::default()
    };
    let handler = Arc::new(FailThenCopy {
        src: data.clone(),
        fail: 1,
        panic,
        calls: AtomicU64::new(0),
    });
    struct Shared(Arc<FailThenCopy>, bool, Arc<AtomicU64>);
    impl Handler for Shared {
        fn on_fault(&self, ctx: &FaultCtx<'_>) -> Verdict {
            self.0.on_fault(ctx)
        }
        fn wants_log(&self) -> bool {
            self.1
        }
        fn on_log(&self, msg: &str) {
            self.2.fetch_add(1, SeqCst);
            panic!("log callback panics on {msg:?}");
        }
    }
    let logged = Arc::new(AtomicU64::new(0));
    let shared = Shared(handler.clone(), log_panics, logged.clone());
    let m = Monitor::new(config, Box::new(shared)).unwrap();
    add_all(&m, &u, &mem, Source::Callback);
    let run = m.start().unwrap();
    let off = 3 * PAGE + 9;
    assert_eq!(mem.read(off), data[off], "served on the second try");
    assert_eq!(
        handler.calls.load(SeqCst),
        2,
        "called again after the failure"
    );
    // The monitor is still alive and serves the rest.
    check_bytes(mem.bytes(), &data, PAGE, "after a failed callback");
    m.stop();
    run.wait().expect("Retry does not stop the monitor");
    let s = m.stats();
    eprintln!("retry (panic={panic}, log_panics={log_panics}, workers={workers}): {s:?}");
    assert_eq!(s.failed, 1, "{s:?}");
    assert_eq!(s.resolved, pages as u64, "{s:?}");
    if log_panics {
        assert!(logged.load(SeqCst) >= 1, "the failure was logged");
    }
}

#[test]
fn error_policy_retry_calls_again() {
    let _w = Watchdog::new("error_policy_retry_calls_again", 60);
    retry_case(false, false, 0);
}

#[test]
fn callback_panic_retry_policy_survives() {
    let _w = Watchdog::new("callback_panic_retry_policy_survives", 60);
    retry_case(true, false, 0);
}

#[test]
fn log_callback_panic_is_ignored() {
    let _w = Watchdog::new("log_callback_panic_is_ignored", 60);
    retry_case(false, true, 0);
}

#[test]
fn log_callback_panic_is_ignored_workers() {
    let _w = Watchdog::new("log_callback_panic_is_ignored_workers", 60);
    retry_case(false, true, 2);
}

static GOT_SIGBUS: AtomicBool = AtomicBool::new(false);

extern "C" fn park_on_sigbus(_sig: libc::c_int) {
    GOT_SIGBUS.store(true, SeqCst);
    loop {
        // SAFETY: async-signal-safe; the thread waits here for _exit.
        unsafe { libc::pause() };
    }
}

/// ErrorPolicy::Stop: the fault is poisoned (the faulting thread gets
/// SIGBUS) and run() returns an error carrying the callback's errno. In a
/// child whose SIGBUS handler parks the faulting thread, so that the
/// child's main thread can check what run() returned.
#[test]
fn error_policy_stop_returns_errno() {
    let _w = Watchdog::new("error_policy_stop_returns_errno", 60);
    let st = in_child(Duration::from_secs(20), || {
        // SAFETY: installing a handler in the single-threaded child.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = park_on_sigbus as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut()) != 0 {
                return 2;
            }
        }
        let mem = Arc::new(Mem::new(Kind::Anon, 4));
        let u = Arc::new(open_uffd(Features::empty()));
        let config = Config {
            error_policy: ErrorPolicy::Stop,
            ..Config::default()
        };
        let m = Monitor::new(config, Box::new(FailWith(libc::EIO))).unwrap();
        add_all(&m, &u, &mem, Source::Callback);
        let _faulter = reader(&mem, 2 * PAGE);
        let r = m.run();
        match r {
            Err(e) if e.errno() == libc::EIO => {}
            Err(_) => return 3,
            Ok(()) => return 4,
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !GOT_SIGBUS.load(SeqCst) {
            if Instant::now() > deadline {
                return 5;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if m.stats().failed != 1 {
            return 6;
        }
        0
    });
    assert!(
        libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
        "child {} (2: sigaction, 3: wrong errno, 4: run() returned Ok, 5: no SIGBUS, 6: failed != 1, 101: panic)",
        describe(st)
    );
}
