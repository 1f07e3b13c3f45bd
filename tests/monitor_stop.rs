// SPDX-License-Identifier: MIT OR Apache-2.0
//! What a stop does to memory (issue 14, item 4): the stop policy per
//! monitor and per region (no silent zeros by default for regions whose
//! pages hold data), the counters of each path, restart after stop, stop
//! releasing deferred faults whose range was unmapped, and PREFETCH on a
//! region added while running. Real kernel, real memory (anon, shmem,
//! hugetlb); SIGBUS outcomes are checked in forked children.
#![allow(unsafe_code)]

mod common;
use common::kit::assert_sigbus;
use common::*;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uffd::monitor::*;
use uffd::*;
use uffd::{Range, WriteprotectMode};

/// Never-zero content.
fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 | 1).collect()
}

/// A lazy restore from a buffer, stopped half-way: page 0 was restored,
/// page 1 never was. After the stop, page 1 must not read as zeros: the
/// default policy (and Sigbus) gives SIGBUS; ZeroFill, asked for, gives
/// zeros; the restored page keeps its data either way. Exit codes: 0 read
/// back (value 0), 2 page 0 lost its data, 3 page 1 read non-zero.
fn lazy_restore_stopped(kind: Kind, policy: Option<StopPolicy>, per_region: bool) -> i32 {
    let mem = Mem::new(kind, 2);
    let ps = kind.page();
    let src = content(2 * ps);
    let u = Arc::new(open_uffd(kind.missing_features()));
    let config = Config {
        stop_policy: if per_region {
            StopPolicy::Block
        } else {
            policy.unwrap_or_default()
        },
        // One page per fault: page 1 stays unrestored.
        adaptive: false,
        ..Config::default()
    };
    let m = Monitor::new(config, Box::new(DefaultHandler)).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        RegionOptions {
            source: Source::Buffer {
                addr: src.as_ptr() as u64,
                len: src.len() as u64,
            },
            register: RegisterMode::MISSING,
            stop_policy: if per_region { policy } else { None },
            ..RegionOptions::default()
        },
    )
    .unwrap();
    let run = m.start().unwrap();
    if mem.read(5) != src[5] {
        return 2;
    }
    m.stop();
    run.wait().unwrap();
    if mem.read(7) != src[7] {
        return 2;
    }
    // Before the fix: the region was unregistered, this read 0, silently.
    let v = mem.read(ps + 9);
    if v != 0 {
        return 3;
    }
    0
}

#[test]
fn stop_default_no_silent_zeros_anon() {
    let _w = Watchdog::new("stop_default_no_silent_zeros_anon", 60);
    let st = in_child(Duration::from_secs(20), || {
        lazy_restore_stopped(Kind::Anon, None, false)
    });
    assert_sigbus(
        st,
        "a page never restored, read after the stop (default policy)",
    );
}

#[test]
fn stop_default_no_silent_zeros_shmem() {
    let _w = Watchdog::new("stop_default_no_silent_zeros_shmem", 60);
    let st = in_child(Duration::from_secs(20), || {
        lazy_restore_stopped(Kind::ShmemShared, None, false)
    });
    assert_sigbus(st, "shmem, default policy");
}

#[test]
fn stop_default_no_silent_zeros_hugetlb() {
    if common::skip_without_hugetlb("stop_default_no_silent_zeros_hugetlb") {
        return;
    }
    let _w = Watchdog::new("stop_default_no_silent_zeros_hugetlb", 60);
    let st = in_child(Duration::from_secs(20), || {
        lazy_restore_stopped(Kind::Hugetlb, None, false)
    });
    assert_sigbus(st, "hugetlb, default policy");
}

#[test]
fn stop_sigbus_per_region_overrides_monitor() {
    let _w = Watchdog::new("stop_sigbus_per_region_overrides_monitor", 60);
    let st = in_child(Duration::from_secs(20), || {
        lazy_restore_stopped(Kind::Anon, Some(StopPolicy::Sigbus), true)
    });
    assert_sigbus(st, "per-region Sigbus under a Block monitor");
}

#[test]
fn stop_zero_fill_on_request() {
    let _w = Watchdog::new("stop_zero_fill_on_request", 60);
    let st = in_child(Duration::from_secs(20), || {
        lazy_restore_stopped(Kind::Anon, Some(StopPolicy::ZeroFill), false)
    });
    assert_eq!(exit_code(st), 0, "ZeroFill: the unrestored page reads 0");
    let st = in_child(Duration::from_secs(20), || {
        lazy_restore_stopped(Kind::Anon, Some(StopPolicy::ZeroFill), true)
    });
    assert_eq!(exit_code(st), 0, "per-region ZeroFill");
}

/// Defers every fault and never completes it.
struct BlackHole;
impl Handler for BlackHole {
    fn on_fault(&self, _ctx: &FaultCtx<'_>) -> Verdict {
        Verdict::Defer
    }
}

/// Faults deferred and never completed when the monitor stops, with the
/// default policy (callback region: SIGBUS): every faulting thread dies of
/// SIGBUS, none reads zeros, none stays blocked. Before the fix they read
/// zeros (the region was unregistered).
#[test]
fn stop_default_deferred_faults_get_sigbus() {
    let _w = Watchdog::new("stop_default_deferred_faults_get_sigbus", 60);
    let st = in_child(Duration::from_secs(20), || {
        let mem = Arc::new(Mem::new(Kind::Anon, 4));
        let u = Arc::new(open_uffd(Features::empty()));
        let m = Monitor::new(Config::default(), Box::new(BlackHole)).unwrap();
        add_all(&m, &u, &mem, Source::Callback);
        let run = m.start().unwrap();
        let h = reader(&mem, PAGE + 3);
        let deadline = Instant::now() + Duration::from_secs(10);
        while m.stats().deferred < 1 {
            if Instant::now() > deadline {
                return 4;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        m.stop();
        run.wait().unwrap();
        // SIGBUS kills the child before this returns.
        let v = h.join().unwrap();
        10 + (v as i32 % 100)
    });
    assert_sigbus(st, "a deferred fault at stop, default policy");
}

/// The counters: faults left pending at a stop are counted by the path
/// that released them (Block: stop_blocked; ZeroFill: stop_zeroed).
#[test]
fn stop_counts_each_path() {
    let _w = Watchdog::new("stop_counts_each_path", 60);
    let threads = 3;
    // ZeroFill: the deferred faults are released to zero pages.
    let mem = Arc::new(Mem::new(Kind::Anon, threads * 2));
    let u = Arc::new(open_uffd(Features::empty()));
    let config = Config {
        stop_policy: StopPolicy::ZeroFill,
        ..Config::default()
    };
    let m = Monitor::new(config, Box::new(BlackHole)).unwrap();
    add_all(&m, &u, &mem, Source::Callback);
    let run = m.start().unwrap();
    let hs: Vec<_> = (0..threads).map(|t| reader(&mem, t * 2 * PAGE)).collect();
    wait_for("deferred", 10, || m.stats().deferred >= threads as u64);
    m.stop();
    run.wait().unwrap();
    for h in hs {
        assert_eq!(h.join().unwrap(), 0);
    }
    let s = m.stats();
    assert_eq!(
        (s.stop_zeroed, s.stop_sigbus, s.stop_blocked),
        (threads as u64, 0, 0),
        "{s:?}"
    );
    // Block: they stay blocked, and are counted so.
    let mem = Arc::new(Mem::new(Kind::Anon, threads * 2));
    let u = Arc::new(open_uffd(Features::empty()));
    let config = Config {
        stop_policy: StopPolicy::Block,
        ..Config::default()
    };
    let m = Monitor::new(config, Box::new(BlackHole)).unwrap();
    add_all(&m, &u, &mem, Source::Callback);
    let run = m.start().unwrap();
    let hs: Vec<_> = (0..threads).map(|t| reader(&mem, t * 2 * PAGE)).collect();
    wait_for("deferred", 10, || m.stats().deferred >= threads as u64);
    m.stop();
    run.wait().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        hs.iter().all(|h| !h.is_finished()),
        "Block keeps them blocked"
    );
    let s = m.stats();
    assert_eq!(
        (s.stop_zeroed, s.stop_sigbus, s.stop_blocked),
        (0, 0, threads as u64),
        "{s:?}"
    );
    drop(m);
    drop(u);
    for h in hs {
        assert_eq!(h.join().unwrap(), 0, "released when the handle is closed");
    }
}

/// Defers faults until `serve` is set, then serves them from `src`.
struct DeferThenServe {
    serve: Arc<AtomicBool>,
    src: Arc<Vec<u8>>,
}
impl Handler for DeferThenServe {
    fn on_fault(&self, ctx: &FaultCtx<'_>) -> Verdict {
        if !self.serve.load(SeqCst) {
            return Verdict::Defer;
        }
        let off = ctx.region.map(|r| r.source_offset).unwrap_or(0);
        match ctx.resolve(Action::Copy(self.src.as_ptr() as u64 + off)) {
            Ok(_) => Verdict::Resolved,
            Err(e) => Verdict::Error(e.errno()),
        }
    }
}

/// Restart after stop + wait works: with Block, the threads the stop left
/// blocked are woken by the new run, fault again and are served. Before
/// the fix the second run returned at once (the stop flag stayed set) and
/// served nothing: the threads stayed blocked (a timeout here).
#[test]
fn restart_after_stop_serves_blocked_threads() {
    let _w = Watchdog::new("restart_after_stop_serves_blocked_threads", 60);
    for workers in [0, 2] {
        let mem = Arc::new(Mem::new(Kind::Anon, 4));
        let src = Arc::new(content(4 * PAGE));
        let serve = Arc::new(AtomicBool::new(false));
        let u = Arc::new(open_uffd(Features::empty()));
        let config = Config {
            workers,
            hand_off_all: workers > 0,
            stop_policy: StopPolicy::Block,
            ..Config::default()
        };
        let h = DeferThenServe {
            serve: serve.clone(),
            src: src.clone(),
        };
        let m = Monitor::new(config, Box::new(h)).unwrap();
        add_all(&m, &u, &mem, Source::Callback);
        let run = m.start().unwrap();
        let t = reader(&mem, 2 * PAGE + 11);
        wait_for("deferred", 10, || m.stats().deferred >= 1);
        m.stop();
        run.wait().unwrap();
        std::thread::sleep(Duration::from_millis(30));
        assert!(!t.is_finished(), "Block: still blocked after the stop");
        serve.store(true, SeqCst);
        let run = m.start().expect("restart");
        wait_for(
            "the restarted monitor to serve the blocked thread",
            10,
            || t.is_finished(),
        );
        assert_eq!(t.join().unwrap(), src[2 * PAGE + 11], "workers={workers}");
        // And it serves new faults.
        assert_eq!(mem.read(3 * PAGE + 1), src[3 * PAGE + 1]);
        m.stop();
        run.wait().unwrap();
    }
}

/// A stop ends a caller's dispatch loop (`while dispatch(-1) is Ok`) with
/// ECANCELED, after applying the stop policy (Block: the thread faulting
/// later stays blocked, counted), and the next dispatch serves again, the
/// blocked thread included. Before the fix, dispatch went on returning
/// the ready count after a stop: the loop never ended (it spun on the
/// stop's wake-up, then slept in poll with nothing to serve).
#[test]
fn stop_ends_dispatch_loop_and_dispatch_resumes() {
    let _w = Watchdog::new("stop_ends_dispatch_loop_and_dispatch_resumes", 60);
    let mem = Arc::new(Mem::new(Kind::Anon, 4));
    let src = content(4 * PAGE);
    let u = Arc::new(open_uffd(Features::empty()));
    let config = Config {
        stop_policy: StopPolicy::Block,
        adaptive: false,
        ..Config::default()
    };
    let m = Arc::new(Monitor::new(config, Box::new(DefaultHandler)).unwrap());
    add_all(
        &m,
        &u,
        &mem,
        Source::Buffer {
            addr: src.as_ptr() as u64,
            len: src.len() as u64,
        },
    );
    let dispatch_loop = |m: &Arc<Monitor>| {
        let m = m.clone();
        std::thread::spawn(move || loop {
            if let Err(e) = m.dispatch(-1) {
                return e;
            }
        })
    };
    let d = dispatch_loop(&m);
    assert_eq!(mem.read(11), src[11]);
    m.stop();
    wait_for("the dispatch loop to end at the stop", 10, || {
        d.is_finished()
    });
    let e = d.join().unwrap();
    assert_eq!(e.errno(), libc::ECANCELED, "{e}");
    // Block: a fault after the stop waits; nothing dispatches.
    let t = reader(&mem, 2 * PAGE + 5);
    std::thread::sleep(Duration::from_millis(50));
    assert!(!t.is_finished(), "Block: the fault waits after the stop");
    // Dispatching again serves it, with the right bytes.
    let d = dispatch_loop(&m);
    wait_for(
        "the resumed dispatch to serve the waiting thread",
        10,
        || t.is_finished(),
    );
    assert_eq!(t.join().unwrap(), src[2 * PAGE + 5]);
    assert_eq!(mem.read(3 * PAGE + 1), src[3 * PAGE + 1]);
    m.stop();
    wait_for("the second loop to end", 10, || d.is_finished());
    assert_eq!(d.join().unwrap().errno(), libc::ECANCELED);
}

/// Restart after a stop that released the regions: they are gone from the
/// monitor (their memory was explicitly zero-filled), so they can be added
/// again and are served by the new run. Before the fix, the region was
/// still in the table (add refused: overlap) and the run served nothing.
#[test]
fn restart_after_zero_fill_stop_serves_readded_region() {
    let _w = Watchdog::new("restart_after_zero_fill_stop_serves_readded_region", 60);
    let mem = Arc::new(Mem::new(Kind::Anon, 4));
    let src = content(4 * PAGE);
    let u = Arc::new(open_uffd(Features::empty()));
    let config = Config {
        stop_policy: StopPolicy::ZeroFill,
        adaptive: false,
        ..Config::default()
    };
    let m = Monitor::new(config, Box::new(DefaultHandler)).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    let opts = RegionOptions {
        source: Source::Buffer {
            addr: src.as_ptr() as u64,
            len: src.len() as u64,
        },
        register: RegisterMode::MISSING,
        ..RegionOptions::default()
    };
    m.add_region(id, handed(mem.start(), mem.len as u64), opts)
        .unwrap();
    let run = m.start().unwrap();
    assert_eq!(mem.read(1), src[1]);
    m.stop();
    run.wait().unwrap();
    // Page 1 was never restored: released, explicitly, to zeros; drop it
    // again before serving the region anew.
    assert_eq!(mem.read(PAGE), 0);
    // SAFETY: our own mapping.
    unsafe {
        libc::madvise(
            mem.start() as *mut libc::c_void,
            mem.len,
            libc::MADV_DONTNEED,
        )
    };
    m.add_region(id, handed(mem.start(), mem.len as u64), opts)
        .expect("the released region can be added again");
    let run = m.start().expect("restart");
    let t = reader(&mem, 3 * PAGE + 5);
    wait_for("the restarted monitor to serve", 10, || t.is_finished());
    assert_eq!(t.join().unwrap(), src[3 * PAGE + 5]);
    assert_eq!(mem.read(PAGE + 2), src[PAGE + 2]);
    m.stop();
    run.wait().unwrap();
}

/// A deferred fault whose range was unmapped (and mapped again, by other
/// memory) before the stop: the stop releases it; the thread then reads
/// the new mapping. Before the fix, release unregistered nothing that
/// reached it and the thread stayed blocked for ever (a timeout here).
#[test]
fn stop_releases_deferred_fault_of_unmapped_range() {
    let _w = Watchdog::new("stop_releases_deferred_fault_of_unmapped_range", 60);
    for features in [Features::empty(), Features::EVENT_UNMAP] {
        let mem = Arc::new(Mem::new(Kind::Anon, 4));
        let u = Arc::new(open_uffd(features));
        let m = Monitor::new(Config::default(), Box::new(BlackHole)).unwrap();
        add_all(&m, &u, &mem, Source::Callback);
        let run = m.start().unwrap();
        let t = reader(&mem, PAGE + 7);
        wait_for("deferred", 10, || m.stats().deferred >= 1);
        // SAFETY: replace the mapping with fresh, unregistered memory at
        // the same address, holding 0x5a.
        unsafe {
            let p = libc::mmap(
                mem.start() as *mut libc::c_void,
                mem.len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            );
            assert_eq!(p as u64, mem.start());
            std::ptr::write_bytes(p.cast::<u8>(), 0x5a, mem.len);
        }
        std::thread::sleep(Duration::from_millis(20));
        assert!(!t.is_finished(), "still blocked before the stop");
        m.stop();
        run.wait().unwrap();
        wait_for("the stop to release the deferred fault", 10, || {
            t.is_finished()
        });
        assert_eq!(t.join().unwrap(), 0x5a, "features {features:?}");
        let s = m.stats();
        if features.contains(Features::EVENT_UNMAP) {
            assert_eq!(s.stop_zeroed, 1, "released to an ordinary fault: {s:?}");
        } else {
            // The monitor never learnt of the munmap: the fault is counted
            // by its (stale) region, whose poison was refused.
            assert_eq!(s.stop_zeroed + s.stop_blocked, 1, "{s:?}");
        }
    }
}

/// PREFETCH on a region added while the monitor runs is done, not
/// accepted and dropped (tests/monitor_wake.rs covers the same through
/// the statistics): the region fills with no fault.
#[test]
fn prefetch_added_while_running_is_done() {
    let _w = Watchdog::new("prefetch_added_while_running_is_done", 60);
    let mem = Arc::new(Mem::new(Kind::Anon, 4));
    let other = Arc::new(Mem::new(Kind::Anon, 4));
    let src = content(4 * PAGE);
    let u = Arc::new(open_uffd(Features::empty()));
    let m = Monitor::new(Config::default(), Box::new(DefaultHandler)).unwrap();
    let id = add_all(&m, &u, &mem, Source::Zero);
    let run = m.start().unwrap();
    let opts = RegionOptions {
        source: Source::Buffer {
            addr: src.as_ptr() as u64,
            len: src.len() as u64,
        },
        register: RegisterMode::MISSING,
        prefetch: true,
        ..RegionOptions::default()
    };
    m.add_region(id, handed(other.start(), other.len as u64), opts)
        .unwrap();
    wait_for("the late region prefetched", 10, || {
        m.stats().prefetched_bytes >= other.len as u64
    });
    let faults = m.stats().faults;
    assert_eq!(other.read(2 * PAGE + 3), src[2 * PAGE + 3]);
    assert_eq!(m.stats().faults, faults, "a prefetched page faulted");
    m.stop();
    run.wait().unwrap();
}

/// An Fd source's descriptor is the monitor's own duplicate: the caller
/// closes its descriptor right after adding the region, another file takes
/// the number, and faults still read the source file. Before the fix the
/// monitor read whatever file had the number (here: the wrong content).
#[test]
fn fd_source_is_duplicated() {
    let _w = Watchdog::new("fd_source_is_duplicated", 60);
    let src = content(4 * PAGE);
    let other: Vec<u8> = vec![0x77; 4 * PAGE];
    let file = |data: &[u8]| -> i32 {
        // SAFETY: memfd + write of our own buffer.
        unsafe {
            let fd = libc::memfd_create(c"libuffd-src".as_ptr(), libc::MFD_CLOEXEC);
            assert!(fd >= 0);
            assert_eq!(
                libc::pwrite(fd, data.as_ptr().cast(), data.len(), 0),
                data.len() as isize
            );
            fd
        }
    };
    let fd = file(&src);
    let mem = Arc::new(Mem::new(Kind::Anon, 4));
    let u = Arc::new(open_uffd(Features::empty()));
    let config = Config {
        adaptive: false,
        ..Config::default()
    };
    let m = Monitor::new(config, Box::new(DefaultHandler)).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        RegionOptions {
            source: Source::Fd {
                fd,
                offset: 0,
                zero_past_eof: false,
            },
            register: RegisterMode::MISSING,
            ..RegionOptions::default()
        },
    )
    .unwrap();
    // The caller's file goes away and another file takes its number. dup2
    // does both atomically: closing first and waiting for the number to be
    // reused races with the other tests of this binary, which run in
    // parallel and may take the lowest free number first.
    let other_fd = file(&other);
    // SAFETY: both are our own descriptors; dup2 closes the file on `fd`.
    let reused = unsafe { libc::dup2(other_fd, fd) };
    assert_eq!(reused, fd, "the number is taken by another file");
    // SAFETY: our own descriptor (the copy on `fd` stays open).
    unsafe { libc::close(other_fd) };
    let run = m.start().unwrap();
    assert_eq!(
        mem.bytes(),
        &src[..],
        "read from the source, not the reused number"
    );
    m.stop();
    run.wait().unwrap();
    // SAFETY: our own descriptor.
    unsafe { libc::close(reused) };
}

/// What the SIGBUS stop costs (run by hand: `cargo test --release --test
/// monitor_stop stop_cost -- --ignored --nocapture`): a 256 MiB buffer
/// region, none of it restored (one poison call), and all of it restored
/// (the poison walks past every page: one call per present page).
#[test]
#[ignore]
fn stop_cost() {
    let _w = Watchdog::new("stop_cost", 300);
    let pages = 65536;
    for restored in [false, true] {
        let mem = Arc::new(Mem::new(Kind::Anon, pages));
        if restored {
            // SAFETY: our own mapping, before it is registered.
            unsafe { std::ptr::write_bytes(mem.start() as *mut u8, 1, mem.len) };
        }
        let src = vec![7u8; mem.len];
        let u = Arc::new(open_uffd(Features::empty()));
        let m = Monitor::new(Config::default(), Box::new(DefaultHandler)).unwrap();
        let id = m.add_uffd(u.clone()).unwrap();
        m.add_region(
            id,
            handed(mem.start(), mem.len as u64),
            RegionOptions {
                source: Source::Buffer {
                    addr: src.as_ptr() as u64,
                    len: src.len() as u64,
                },
                register: RegisterMode::MISSING,
                ..RegionOptions::default()
            },
        )
        .unwrap();
        let run = m.start().unwrap();
        let t0 = Instant::now();
        m.stop();
        run.wait().unwrap();
        println!(
            "stop with SIGBUS policy, 256 MiB region, {}: {:?}",
            if restored {
                "every page present"
            } else {
                "no page present"
            },
            t0.elapsed()
        );
    }
}

/// Threads blocked in write-protect and MINOR faults are released by a
/// stop too: an unregister wakes only threads waiting on missing pages, so
/// the stop must wake the rest itself. A write to a write-protected page
/// and a read of a page-cache page, both deferred by the callback and
/// never completed; the stop (ZeroFill, so the threads live) lets both
/// finish with the right bytes.
#[test]
fn stop_releases_wp_and_minor_waiters() {
    let _w = Watchdog::new("stop_releases_wp_and_minor_waiters", 60);
    // Write-protect, anonymous memory.
    let anon = Arc::new(Mem::new(Kind::Anon, 1));
    anon.write(0, 0x11);
    let u = Arc::new(open_uffd(Features::PAGEFAULT_FLAG_WP));
    // MINOR, shmem: the page is in the page cache already.
    let shm = Arc::new(Mem::new(Kind::ShmemShared, 1));
    shm.pwrite_memfd(0, &[0x5a; 64]);
    let u2 = Arc::new(open_uffd(Features::MINOR_SHMEM));
    let config = Config {
        stop_policy: StopPolicy::ZeroFill,
        ..Config::default()
    };
    let m = Monitor::new(config, Box::new(BlackHole)).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    m.add_region(
        id,
        handed(anon.start(), anon.len as u64),
        RegionOptions {
            source: Source::Callback,
            register: RegisterMode::WP,
            ..RegionOptions::default()
        },
    )
    .unwrap();
    // WriteprotectMode::WP.
    u.writeprotect(
        Range::new(anon.start(), anon.len as u64),
        WriteprotectMode::WP,
    )
    .unwrap();
    let id2 = m.add_uffd(u2.clone()).unwrap();
    m.add_region(
        id2,
        handed(shm.start(), shm.len as u64),
        RegionOptions {
            source: Source::Callback,
            register: RegisterMode::MINOR,
            ..RegionOptions::default()
        },
    )
    .unwrap();
    let run = m.start().unwrap();
    let w = writer(&anon, 8, 0x22);
    let r = reader(&shm, 3);
    wait_for("both faults deferred", 10, || m.stats().deferred >= 2);
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !w.is_finished() && !r.is_finished(),
        "deferred faults keep their threads"
    );
    m.stop();
    run.wait().unwrap();
    let t0 = Instant::now();
    while !(w.is_finished() && r.is_finished()) {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "stop left a thread blocked (write-protect: {}, minor: {})",
            !w.is_finished(),
            !r.is_finished()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    w.join().unwrap();
    assert_eq!(r.join().unwrap(), 0x5a);
    assert_eq!(anon.read(8), 0x22);
    assert_eq!(anon.read(0), 0x11);
}
