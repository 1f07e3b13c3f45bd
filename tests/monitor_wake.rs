// SPDX-License-Identifier: MIT OR Apache-2.0
//! Issue 14 item 2: every change to a running monitor reaches its reader
//! within one poll round. A handle added while the reader sits in poll(2)
//! on its old set, a region added with PREFETCH while running, a handle
//! removed while its faults wait: each while faulting threads wait, each
//! under a watchdog (a thread that is never served fails the test).
#![allow(unsafe_code)]

mod common;
use common::kit::wait_finished;
use common::*;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uffd::monitor::*;
use uffd::CopyMode;
use uffd::*;

/// Tests here fork nothing, but serialise anyway: they count threads and
/// time, and two monitors side by side blur both.
static LOCK: Mutex<()> = Mutex::new(());

fn buffer_opts(data: &[u8], prefetch: bool) -> RegionOptions {
    RegionOptions {
        source: Source::Buffer {
            addr: data.as_ptr() as u64,
            len: data.len() as u64,
        },
        register: RegisterMode::MISSING,
        prefetch,
        ..Default::default()
    }
}

/// `n` threads each reading one page of `mem` (and returning it).
fn faulting_threads(mem: &Arc<Mem>, n: usize) -> Vec<std::thread::JoinHandle<Vec<u8>>> {
    (0..n)
        .map(|i| {
            let mem = mem.clone();
            std::thread::spawn(move || {
                let off = (i % (mem.len / PAGE)) * PAGE;
                mem.bytes()[off..off + PAGE].to_vec()
            })
        })
        .collect()
}

/// A handle added to a running monitor (its reader already in poll(2) on
/// the old set, with nothing else happening) is served: four threads
/// fault on its memory and all four get their pages. Before the fix the
/// reader never polled the new descriptor: the threads stayed blocked
/// (11 of 12 runs in the issue; here every run, since nothing else wakes
/// the reader).
fn add_handle_case(workers: u32, kind: Kind) {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let first = Mem::new(Kind::Anon, 4);
    let data0 = content(first.len, 1);
    let u0 = Arc::new(open_uffd(Features::empty()));
    let m = Monitor::new(
        Config {
            workers,
            ..Config::default()
        },
        Box::new(DefaultHandler),
    )
    .unwrap();
    let id0 = m.add_uffd(u0).unwrap();
    m.add_region(
        id0,
        handed(first.start(), first.len as u64),
        buffer_opts(&data0, false),
    )
    .unwrap();
    let run = m.start().unwrap();
    // Let the reader settle in poll(2).
    std::thread::sleep(Duration::from_millis(50));
    let mem = Arc::new(Mem::new(kind, 4));
    let data = content(mem.len, 2);
    let u = Arc::new(open_uffd(Features::empty()));
    let id = m.add_uffd(u).unwrap();
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        buffer_opts(&data, false),
    )
    .unwrap();
    let threads = faulting_threads(&mem, 4);
    for (i, t) in threads.iter().enumerate() {
        assert!(
            wait_finished(t, 5000),
            "{kind:?} workers={workers}: faulting thread {i} on a handle added while running was not served within 5 s"
        );
    }
    for (i, t) in threads.into_iter().enumerate() {
        let got = t.join().unwrap();
        let off = (i % (mem.len / kind.page())) * PAGE;
        let off = off.min(mem.len - PAGE);
        assert_eq!(&got[..], &data[off..off + PAGE], "thread {i}: page bytes");
    }
    m.stop();
    run.wait().unwrap();
}

#[test]
fn add_handle_while_running_is_served() {
    let _w = Watchdog::new("add_handle_while_running_is_served", 60);
    add_handle_case(0, Kind::Anon);
}

#[test]
fn add_handle_while_running_is_served_workers() {
    let _w = Watchdog::new("add_handle_while_running_is_served_workers", 60);
    add_handle_case(2, Kind::Anon);
}

#[test]
fn add_handle_while_running_is_served_shmem() {
    let _w = Watchdog::new("add_handle_while_running_is_served_shmem", 60);
    add_handle_case(0, Kind::ShmemShared);
}

/// A region added with PREFETCH while the monitor runs is prefetched
/// (before the fix the prefetcher, started only by run(), had already
/// ended or was never started, and the flag was accepted and ignored).
#[test]
fn add_region_prefetch_while_running() {
    let _w = Watchdog::new("add_region_prefetch_while_running", 60);
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let first = Mem::new(Kind::Anon, 4);
    let data0 = content(first.len, 3);
    let u = Arc::new(open_uffd(Features::empty()));
    let m = Monitor::new(Config::default(), Box::new(DefaultHandler)).unwrap();
    let id = m.add_uffd(u).unwrap();
    m.add_region(
        id,
        handed(first.start(), first.len as u64),
        buffer_opts(&data0, false),
    )
    .unwrap();
    let run = m.start().unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let mem = Arc::new(Mem::new(Kind::Anon, 64));
    let data = content(mem.len, 4);
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        buffer_opts(&data, true),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while m.stats().prefetched_bytes < mem.len as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let s = m.stats();
    assert_eq!(
        s.prefetched_bytes, mem.len as u64,
        "a region added with PREFETCH while running was not prefetched within 5 s: {s:?}"
    );
    // Prefetched, not faulted: reading it now raises no fault.
    let faults = s.faults;
    assert_eq!(mem.bytes(), &data[..]);
    assert_eq!(m.stats().faults, faults, "pages were not in place");
    m.stop();
    run.wait().unwrap();
}

/// Faults of a callback region deferred by the callback: their threads
/// wait. The handle is then removed from the running monitor: the monitor
/// no longer reads it (a later fault goes to the caller's own read) and
/// no longer knows its id; the caller resolves what waits. Unknown ids
/// and a second remove are refused with EINVAL.
#[test]
fn remove_handle_while_running() {
    let _w = Watchdog::new("remove_handle_while_running", 60);
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    struct Deferring(Arc<AtomicU64>);
    impl Handler for Deferring {
        fn on_fault(&self, _ctx: &FaultCtx<'_>) -> Verdict {
            self.0.fetch_add(1, SeqCst);
            Verdict::Defer
        }
    }
    let seen = Arc::new(AtomicU64::new(0));
    let m = Monitor::new(Config::default(), Box::new(Deferring(seen.clone()))).unwrap();
    let mem = Arc::new(Mem::new(Kind::Anon, 8));
    let data = content(mem.len, 5);
    let u = Arc::new(open_uffd(Features::empty()));
    let id = m.add_uffd(u.clone()).unwrap();
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        RegionOptions {
            source: Source::Callback,
            register: RegisterMode::MISSING,
            ..Default::default()
        },
    )
    .unwrap();
    let run = m.start().unwrap();
    // Four threads on pages 0..4: deferred, they wait.
    let threads = faulting_threads(&mem, 4);
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.load(SeqCst) < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(seen.load(SeqCst), 4, "the deferred faults were not seen");
    m.remove_uffd(id).unwrap();
    assert!(m.uffd(id).is_none(), "a removed handle is still served");
    let e = m.remove_uffd(id).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL, "{e}");
    let e = m.remove_uffd(12345).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL, "{e}");
    // A later fault (page 6) is the caller's to read now.
    let late = {
        let mem = mem.clone();
        std::thread::spawn(move || mem.bytes()[6 * PAGE])
    };
    let f = next_fault(&u, 3000);
    assert_eq!(f.address & !(PAGE as u64 - 1), mem.page_addr(6));
    assert_eq!(
        seen.load(SeqCst),
        4,
        "the monitor still reads a removed handle"
    );
    for p in [0usize, 1, 2, 3, 6] {
        let src = &data[p * PAGE..(p + 1) * PAGE];
        unsafe { u.copy_from_slice(mem.page_addr(p), src, CopyMode::empty()) }.unwrap();
    }
    for (i, t) in threads.into_iter().enumerate() {
        assert!(wait_finished(&t, 3000), "thread {i} not released");
        assert_eq!(&t.join().unwrap()[..], &data[i * PAGE..(i + 1) * PAGE]);
    }
    assert!(wait_finished(&late, 3000));
    assert_eq!(late.join().unwrap(), data[6 * PAGE]);
    m.stop();
    run.wait().unwrap();
}
