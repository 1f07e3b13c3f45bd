//! Issue 14 item 3: fork storms never deadlock and never leak. One thread
//! forks 1000 times back to back (children reaped only after the storm)
//! while four threads keep faulting on a served region; no hang (SIGALRM
//! kills a hung run: a deadlocked process cannot even run the Watchdog,
//! which allocates), every byte right, and no descriptor left behind once
//! the children are gone. `STORM_RUNS` (default 3) repeats it; `make
//! soak-fork` runs it 20 times.
#![allow(unsafe_code)]

mod common;
use common::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uffd::monitor::*;
use uffd::*;

fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        for (o, b) in chunk.iter_mut().zip(x.to_le_bytes()) {
            *o = b | 1;
        }
    }
    v
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn storm_once(run_no: usize, forks: usize) {
    let pages = 64;
    let mem = Arc::new(Mem::new(Kind::Anon, pages));
    let data = Arc::new(content(mem.len, 77 + run_no as u64));
    let u = Arc::new(open_uffd(Features::EVENT_FORK));
    let m = Monitor::new(Config::default(), Box::new(DefaultHandler)).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        RegionOptions {
            source: Source::Buffer {
                addr: data.as_ptr() as u64,
                len: data.len() as u64,
            },
            register: RegisterMode::MISSING,
            ..Default::default()
        },
    )
    .unwrap();
    let run = m.start().unwrap();
    let fds_before = open_fds();
    let done = Arc::new(AtomicBool::new(false));
    let bad = Arc::new(AtomicU64::new(0));
    let faulters: Vec<_> = (0..4)
        .map(|t| {
            let (mem, data, done, bad) = (mem.clone(), data.clone(), done.clone(), bad.clone());
            std::thread::spawn(move || {
                let mut rounds = 0u64;
                while !done.load(SeqCst) {
                    for p in (t..pages).step_by(4) {
                        let off = p * PAGE;
                        if mem.bytes()[off..off + PAGE] != data[off..off + PAGE] {
                            bad.fetch_add(1, SeqCst);
                        }
                        // SAFETY: our own mapping; drops the page so that
                        // the next read faults again.
                        unsafe {
                            libc::madvise(
                                mem.addr.add(off) as *mut libc::c_void,
                                PAGE,
                                libc::MADV_DONTNEED,
                            )
                        };
                    }
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    // SAFETY: alarm(2); cancelled below.
    unsafe { libc::alarm(60) };
    let mut pids = Vec::with_capacity(forks);
    let t0 = Instant::now();
    for i in 0..forks {
        // SAFETY: fork; the child exits at once.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork {i}: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: leave the child at once.
            unsafe { libc::_exit(0) };
        }
        pids.push(pid);
    }
    let storm = t0.elapsed();
    for pid in pids {
        let mut st = 0;
        // SAFETY: our own child.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        assert_eq!(r, pid);
        assert!(
            libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
            "child {pid}: {st:#x}"
        );
    }
    done.store(true, SeqCst);
    let rounds: u64 = faulters.into_iter().map(|t| t.join().unwrap()).sum();
    // SAFETY: cancel the alarm.
    unsafe { libc::alarm(0) };
    // The children are gone: the monitor closes their descriptors.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut fds_after = open_fds();
    while fds_after > fds_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        fds_after = open_fds();
    }
    m.stop();
    run.wait().unwrap();
    let s = m.stats();
    eprintln!(
        "storm run {run_no}: {forks} forks in {:.2} s, {rounds} fault rounds, fds {fds_before} -> {fds_after}, {s:?}",
        storm.as_secs_f64()
    );
    assert_eq!(bad.load(SeqCst), 0, "pages read wrong");
    assert_eq!(s.forks, forks as u64, "{s:?}");
    assert_eq!(s.failed, 0, "{s:?}");
    assert!(
        fds_after <= fds_before,
        "{} descriptors left behind by {forks} forks",
        fds_after - fds_before
    );
}

/// CI runs it 3 times; `make soak-fork` 20 times.
#[test]
fn fork_storm_4_faulting_threads() {
    let runs: usize = std::env::var("STORM_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let forks: usize = std::env::var("STORM_FORKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    for r in 0..runs {
        storm_once(r, forks);
    }
    eprintln!("fork storm: {runs}/{runs} runs of {forks} forks x 4 faulting threads, no hang");
}
