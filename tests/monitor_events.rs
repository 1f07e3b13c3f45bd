// SPDX-License-Identifier: MIT OR Apache-2.0
//! Monitor tests of the non-cooperative events, on the real kernel
//! (docs/kernel-semantics.md §4): REMOVE racing faults (zero-fill and
//! unregister policies), mremap of a served region (REMAP), munmap and
//! mmap(MAP_FIXED) over it (UNMAP), and fork (FORK: the child's memory is
//! served through the child's userfaultfd; a child that dies leaves ESRCH
//! behind; back-to-back forks must not deadlock the reader, §6).
//!
//! Every test in this file holds EVENTS_LOCK: a fork anywhere in the
//! process sends a FORK event to every EVENT_FORK userfaultfd of the
//! process and waits until it is read, and an munmap or madvise of a range
//! registered with EVENT_UNMAP/REMOVE waits for its event too. Serializing
//! keeps one test's events away from another test's monitor.
#![allow(unsafe_code)]

mod common;
use common::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use uffd::monitor::*;
use uffd::*;

// ---------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------

static EVENTS_LOCK: Mutex<()> = Mutex::new(());

fn serialize() -> MutexGuard<'static, ()> {
    EVENTS_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn check_bytes(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if got != want {
        let i = got.iter().zip(want).position(|(a, b)| a != b).unwrap();
        panic!(
            "{what}: first difference at byte {i:#x} (page {}): got {:#04x}, want {:#04x}",
            i / PAGE,
            got[i],
            want[i]
        );
    }
}

/// `len` bytes at `addr` (may fault).
fn bytes_at<'a>(addr: u64, len: usize) -> &'a [u8] {
    // SAFETY: the caller passes a live mapping.
    unsafe { std::slice::from_raw_parts(addr as *const u8, len) }
}

fn read_at(addr: u64) -> u8 {
    // SAFETY: the caller passes a live mapping.
    unsafe { std::ptr::read_volatile(addr as *const u8) }
}

/// A private anonymous mapping managed by hand (for tests that move or
/// unmap it, where `Mem`'s drop would unmap the wrong range).
fn map_anon(len: usize, prot: i32) -> u64 {
    // SAFETY: a fresh anonymous mapping.
    let a = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(
        a,
        libc::MAP_FAILED,
        "mmap: {}",
        std::io::Error::last_os_error()
    );
    a as u64
}

fn unmap(addr: u64, len: usize) {
    // SAFETY: the caller's own mapping.
    let r = unsafe { libc::munmap(addr as *mut libc::c_void, len) };
    assert_eq!(r, 0, "munmap: {}", std::io::Error::last_os_error());
}

fn madvise(addr: u64, len: usize, advice: i32) {
    // SAFETY: the caller's own mapping.
    let r = unsafe { libc::madvise(addr as *mut libc::c_void, len, advice) };
    assert_eq!(r, 0, "madvise: {}", std::io::Error::last_os_error());
}

fn buffer(data: &[u8]) -> Source {
    Source::Buffer {
        addr: data.as_ptr() as u64,
        len: data.len() as u64,
    }
}

fn missing(source: Source) -> RegionOptions {
    RegionOptions {
        source,
        register: RegisterMode::MISSING,
        ..Default::default()
    }
}

/// Records the events the monitor reports to its handler.
#[derive(Default)]
struct Recorder {
    remaps: Mutex<Vec<(u32, u64, u64, u64)>>,
    removes: Mutex<Vec<(u32, u64, u64)>>,
    unmaps: Mutex<Vec<(u32, u64, u64)>>,
    forks: AtomicU64,
}

struct Recording(Arc<Recorder>);

impl Handler for Recording {
    fn on_remap(&self, id: u32, from: u64, to: u64, len: u64) {
        self.0.remaps.lock().unwrap().push((id, from, to, len));
    }
    fn on_remove(&self, id: u32, start: u64, end: u64) {
        self.0.removes.lock().unwrap().push((id, start, end));
    }
    fn on_unmap(&self, id: u32, start: u64, end: u64) {
        self.0.unmaps.lock().unwrap().push((id, start, end));
    }
    fn on_fork(&self, _id: u32, _fd: i32) -> ForkVerdict {
        self.0.forks.fetch_add(1, SeqCst);
        ForkVerdict::Serve
    }
    fn on_log(&self, msg: &str) {
        eprintln!("monitor: {msg}");
    }
    fn wants_log(&self) -> bool {
        true
    }
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Wait for a forked child, killing it (and failing) after `timeout`.
fn wait_child(pid: i32, timeout: Duration) -> i32 {
    let deadline = Instant::now() + timeout;
    loop {
        let mut status = 0;
        // SAFETY: our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return status;
        }
        assert_eq!(r, 0, "waitpid: {}", std::io::Error::last_os_error());
        if Instant::now() > deadline {
            // SAFETY: our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("child {pid} still running after {timeout:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Wait (up to 10 s) for `f`: counters are updated after the event that
/// moves them has let the monitored thread go.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn exited_ok(status: i32) -> bool {
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}

// ---------------------------------------------------------------------
// (b) REMOVE racing faults
// ---------------------------------------------------------------------

/// Three threads fault all over a Buffer region while a fourth keeps
/// madvise(MADV_DONTNEED)ing its second half. Nothing may hang; the
/// first half always reads the source; the removed half reads the source
/// (before its first REMOVE) or zeros (after). After the race, one more
/// DONTNEED, and the removed half reads zeros: the zero-fill policy (or,
/// unregistered, the kernel's own zero pages) applies there.
fn remove_race_case(policy: RemovePolicy, workers: u32) {
    let _g = serialize();
    let pages = 256;
    let half = pages / 2;
    let mem = Arc::new(Mem::new(Kind::Anon, pages));
    let data = Arc::new(content(mem.len, 31));
    let u = Arc::new(open_uffd(Features::EVENT_REMOVE));
    let rec = Arc::new(Recorder::default());
    let config = Config {
        remove_policy: policy,
        workers,
        hand_off_all: workers > 0,
        ..Config::default()
    };
    let m = Monitor::new(config, Box::new(Recording(rec.clone()))).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        missing(buffer(&data)),
    )
    .unwrap();
    let run = m.start().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let progress: Arc<Vec<AtomicU64>> = Arc::new((0..3).map(|_| AtomicU64::new(0)).collect());
    let faulters: Vec<_> = (0..3u64)
        .map(|t| {
            let (mem, data, stop) = (mem.clone(), data.clone(), stop.clone());
            let progress = progress.clone();
            std::thread::spawn(move || {
                let mut x = 0x9E37 + t * 7919;
                let mut touched = 0u64;
                while !stop.load(SeqCst) {
                    let p = (xorshift(&mut x) % pages as u64) as usize;
                    let off = p * PAGE + (t as usize * 100);
                    let v = mem.read(off);
                    if p < half {
                        assert_eq!(v, data[off], "thread {t}: page {p} (never removed)");
                    } else {
                        assert!(
                            v == data[off] || v == 0,
                            "thread {t}: page {p} read {v:#x}: neither the source nor zero"
                        );
                    }
                    touched += 1;
                    progress[t as usize].store(touched, SeqCst);
                }
                touched
            })
        })
        .collect();
    let removed = mem.start() + (half * PAGE) as u64;
    let removed_len = half * PAGE;
    let seen = progress.clone();
    let remover = std::thread::spawn(move || {
        let mut calls = 0u64;
        for i in 0..300 {
            calls += 1;
            madvise(removed, removed_len, libc::MADV_DONTNEED);
            if i % 8 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        // On a loaded machine a faulting thread may not have been
        // scheduled yet: race on until each has read pages (bounded: a
        // thread stuck in a fault still fails the test below).
        let t0 = std::time::Instant::now();
        while seen.iter().any(|c| c.load(SeqCst) == 0) && t0.elapsed() < Duration::from_secs(10) {
            calls += 1;
            madvise(removed, removed_len, libc::MADV_DONTNEED);
            std::thread::sleep(Duration::from_millis(1));
        }
        calls
    });
    let madvise_calls = remover.join().expect("madvise thread");
    stop.store(true, SeqCst);
    for f in faulters {
        assert!(f.join().expect("faulting thread") > 0);
    }
    // Settled: one last DONTNEED, then the removed half must read zeros.
    madvise(removed, removed_len, libc::MADV_DONTNEED);
    check_bytes(
        bytes_at(removed, removed_len),
        &vec![0u8; removed_len],
        "removed half after REMOVE",
    );
    check_bytes(
        &mem.bytes()[..half * PAGE],
        &data[..half * PAGE],
        "half never removed",
    );
    m.stop();
    run.wait().unwrap();
    let s = m.stats();
    eprintln!("REMOVE race {policy:?} workers={workers}: {s:?}");
    assert!(s.removes > 0, "{s:?}");
    assert_eq!(rec.removes.lock().unwrap().len() as u64, s.removes);
    assert!(rec
        .removes
        .lock()
        .unwrap()
        .iter()
        .all(|&(i, a, b)| i == id && a == removed && b == removed + removed_len as u64));
    if policy == RemovePolicy::ZeroFill {
        // The registration is kept: every madvise gave an event (the
        // remover's calls, which depend on scheduling, plus the last one).
        assert_eq!(s.removes, madvise_calls + 1, "{s:?}");
    }
    assert_eq!(s.failed, 0, "no fault may fail: {s:?}");
    // An EAGAIN is retried once the REMOVE behind it is read: a few
    // retries per REMOVE. A fault retried while nobody reads (a worker
    // resolving off the reading path, with the reading left vacant) would
    // retry up to max_retries (1000) times.
    assert!(
        s.retried <= 10 * (s.removes + 1),
        "EAGAIN retried {} times for {} REMOVEs: {s:?}",
        s.retried,
        s.removes
    );
}

#[test]
fn remove_races_faults_zero_fill() {
    let _w = Watchdog::new("remove_races_faults_zero_fill", 60);
    remove_race_case(RemovePolicy::ZeroFill, 0);
}

#[test]
fn remove_races_faults_zero_fill_workers() {
    let _w = Watchdog::new("remove_races_faults_zero_fill_workers", 60);
    remove_race_case(RemovePolicy::ZeroFill, 2);
}

#[test]
fn remove_races_faults_unregister() {
    let _w = Watchdog::new("remove_races_faults_unregister", 60);
    remove_race_case(RemovePolicy::Unregister, 0);
}

#[test]
fn remove_races_faults_unregister_workers() {
    let _w = Watchdog::new("remove_races_faults_unregister_workers", 60);
    remove_race_case(RemovePolicy::Unregister, 2);
}

/// The REMOVE guarantee seen by the thread that calls madvise: once its
/// madvise(MADV_DONTNEED) has returned, it reads zeros in the range, even
/// while other threads' faults on that range are in flight (a fault read
/// before the REMOVE must not place stale source data after the zap).
/// Many short rounds, each on fresh pages of one big region, to hit the
/// window.
fn remove_then_read_case(workers: u32, rounds: usize) {
    let _g = serialize();
    let chunk = 16;
    let mem = Arc::new(Mem::new(Kind::Anon, chunk * rounds));
    let data = Arc::new(content(mem.len, 32));
    let u = Arc::new(open_uffd(Features::EVENT_REMOVE));
    let config = Config {
        workers,
        hand_off_all: workers > 0,
        adaptive: false,
        window_min: 1,
        ..Config::default()
    };
    let m = Monitor::new(config, Box::new(DefaultHandler)).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        missing(buffer(&data)),
    )
    .unwrap();
    let run = m.start().unwrap();
    let mut stale = Vec::new();
    for round in 0..rounds {
        let first = round * chunk;
        let go = Arc::new(std::sync::Barrier::new(3));
        let faulters: Vec<_> = (0..2usize)
            .map(|t| {
                let (mem, go) = (mem.clone(), go.clone());
                std::thread::spawn(move || {
                    go.wait();
                    for p in (first + t..first + chunk).step_by(2) {
                        mem.read(p * PAGE + 8);
                    }
                })
            })
            .collect();
        go.wait();
        madvise(mem.page_addr(first), chunk * PAGE, libc::MADV_DONTNEED);
        // Right after madvise returned: zeros, whatever the faulters do.
        for p in first..first + chunk {
            if mem.read(p * PAGE + 8) != 0 {
                stale.push((round, p - first));
            }
        }
        for f in faulters {
            f.join().unwrap();
        }
    }
    m.stop();
    run.wait().unwrap();
    let s = m.stats();
    eprintln!("remove-then-read workers={workers}: {s:?}");
    assert!(
        stale.is_empty(),
        "source data placed after MADV_DONTNEED returned (round, page): {stale:?}"
    );
    assert_eq!(s.removes, rounds as u64, "{s:?}");
    assert_eq!(s.failed, 0, "{s:?}");
}

#[test]
fn remove_then_read_zero() {
    let _w = Watchdog::new("remove_then_read_zero", 60);
    remove_then_read_case(0, 300);
}

#[test]
fn remove_then_read_zero_workers() {
    let _w = Watchdog::new("remove_then_read_zero_workers", 60);
    remove_then_read_case(2, 300);
}

// ---------------------------------------------------------------------
// (c) mremap of a served region (REMAP)
// ---------------------------------------------------------------------

/// Move a whole served region (MREMAP_MAYMOVE|MREMAP_FIXED onto a
/// reserved range) after some of its pages were populated: the populated
/// pages move with it, later faults at the new address are served the
/// right source bytes.
fn remap_whole_case(workers: u32) {
    let _g = serialize();
    let pages = 64;
    let len = pages * PAGE;
    let data = content(len, 33);
    let old = map_anon(len, libc::PROT_READ | libc::PROT_WRITE);
    let u = Arc::new(open_uffd(Features::EVENT_REMAP | Features::EVENT_UNMAP));
    let rec = Arc::new(Recorder::default());
    let config = Config {
        workers,
        hand_off_all: workers > 0,
        ..Config::default()
    };
    let m = Monitor::new(config, Box::new(Recording(rec.clone()))).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    m.add_region(id, handed(old, len as u64), missing(buffer(&data)))
        .unwrap();
    let run = m.start().unwrap();
    for p in [0usize, 1, 2, 10, 40] {
        assert_eq!(read_at(old + (p * PAGE) as u64 + 3), data[p * PAGE + 3]);
    }
    let reserved = map_anon(len, libc::PROT_NONE);
    // SAFETY: moving our own mapping onto our own reserved range.
    let to = unsafe {
        libc::mremap(
            old as *mut libc::c_void,
            len,
            len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            reserved as *mut libc::c_void,
        )
    };
    assert_ne!(
        to,
        libc::MAP_FAILED,
        "mremap: {}",
        std::io::Error::last_os_error()
    );
    let to = to as u64;
    assert_eq!(to, reserved);
    check_bytes(bytes_at(to, len), &data, "moved region");
    let s = m.stats();
    assert_eq!(s.remaps, 1, "{s:?}");
    assert_eq!(*rec.remaps.lock().unwrap(), vec![(id, old, to, len as u64)]);
    // Unmap while the monitor runs (EVENT_UNMAP waits for the read).
    unmap(to, len);
    m.stop();
    run.wait().unwrap();
    let s = m.stats();
    eprintln!(
        "remap workers={workers}: {s:?}; unmaps {:?}",
        rec.unmaps.lock().unwrap()
    );
    assert!(rec
        .unmaps
        .lock()
        .unwrap()
        .contains(&(id, to, to + len as u64)));
    assert_eq!(s.failed, 0, "{s:?}");
}

#[test]
fn remap_moves_whole_region() {
    let _w = Watchdog::new("remap_moves_whole_region", 60);
    remap_whole_case(0);
}

#[test]
fn remap_moves_whole_region_workers() {
    let _w = Watchdog::new("remap_moves_whole_region_workers", 60);
    remap_whole_case(2);
}

/// Move the middle of a region: the moved piece keeps its source offset,
/// the pieces left behind keep theirs.
#[test]
fn remap_moves_middle_piece() {
    let _w = Watchdog::new("remap_moves_middle_piece", 60);
    let _g = serialize();
    let pages = 48;
    let len = pages * PAGE;
    let data = content(len, 34);
    let old = map_anon(len, libc::PROT_READ | libc::PROT_WRITE);
    let u = Arc::new(open_uffd(Features::EVENT_REMAP | Features::EVENT_UNMAP));
    let rec = Arc::new(Recorder::default());
    let m = Monitor::new(Config::default(), Box::new(Recording(rec.clone()))).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    m.add_region(id, handed(old, len as u64), missing(buffer(&data)))
        .unwrap();
    let run = m.start().unwrap();
    let (a, b) = (16 * PAGE, 32 * PAGE);
    let piece = b - a;
    let reserved = map_anon(piece, libc::PROT_NONE);
    // SAFETY: moving part of our own mapping onto our own reserved range.
    let to = unsafe {
        libc::mremap(
            (old + a as u64) as *mut libc::c_void,
            piece,
            piece,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            reserved as *mut libc::c_void,
        )
    } as u64;
    assert_eq!(to, reserved, "mremap: {}", std::io::Error::last_os_error());
    check_bytes(bytes_at(to, piece), &data[a..b], "moved middle piece");
    check_bytes(bytes_at(old, a), &data[..a], "piece before");
    check_bytes(bytes_at(old + b as u64, len - b), &data[b..], "piece after");
    assert_eq!(
        *rec.remaps.lock().unwrap(),
        vec![(id, old + a as u64, to, piece as u64)]
    );
    unmap(to, piece);
    unmap(old, a);
    unmap(old + b as u64, len - b);
    m.stop();
    run.wait().unwrap();
    let s = m.stats();
    eprintln!("remap middle: {s:?}");
    assert_eq!(s.remaps, 1);
    assert_eq!(s.failed, 0, "{s:?}");
}

// ---------------------------------------------------------------------
// (d) munmap and mmap(MAP_FIXED) over a served region (UNMAP)
// ---------------------------------------------------------------------

#[test]
fn unmap_drops_region() {
    let _w = Watchdog::new("unmap_drops_region", 60);
    let _g = serialize();
    let pages = 32;
    let len = pages * PAGE;
    let data = content(len, 35);
    let other = content(8 * PAGE, 36);
    let base = map_anon(len, libc::PROT_READ | libc::PROT_WRITE);
    let u = Arc::new(open_uffd(Features::EVENT_UNMAP));
    let rec = Arc::new(Recorder::default());
    let m = Monitor::new(Config::default(), Box::new(Recording(rec.clone()))).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    m.add_region(id, handed(base, len as u64), missing(buffer(&data)))
        .unwrap();
    let run = m.start().unwrap();
    assert_eq!(read_at(base + 5), data[5]);
    // 1. mmap(MAP_FIXED) over pages 8..16: UNMAP of the old range.
    let hole = base + (8 * PAGE) as u64;
    // SAFETY: replacing part of our own mapping.
    let r = unsafe {
        libc::mmap(
            hole as *mut libc::c_void,
            8 * PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    assert_eq!(
        r as u64,
        hole,
        "mmap fixed: {}",
        std::io::Error::last_os_error()
    );
    // munmap returns once the event is read; the counter follows.
    wait_for("the first UNMAP counted", || m.stats().unmaps == 1);
    assert_eq!(
        *rec.unmaps.lock().unwrap(),
        vec![(id, hole, hole + (8 * PAGE) as u64)]
    );
    // The old region no longer covers the hole: a new region (another
    // source) can be added there, and faults get the new source.
    m.add_region(id, handed(hole, (8 * PAGE) as u64), missing(buffer(&other)))
        .expect("the unmapped range left the region table");
    // 2. munmap pages 24..32.
    unmap(base + (24 * PAGE) as u64, 8 * PAGE);
    wait_for("the second UNMAP counted", || m.stats().unmaps == 2);
    check_bytes(bytes_at(base, 8 * PAGE), &data[..8 * PAGE], "pages 0..8");
    check_bytes(bytes_at(hole, 8 * PAGE), &other, "new region in the hole");
    check_bytes(
        bytes_at(base + (16 * PAGE) as u64, 8 * PAGE),
        &data[16 * PAGE..24 * PAGE],
        "pages 16..24",
    );
    unmap(base, 24 * PAGE);
    m.stop();
    run.wait().unwrap();
    let s = m.stats();
    eprintln!("unmap: {s:?}");
    assert_eq!(s.unmaps, 3, "{s:?}");
    assert_eq!(s.failed, 0, "{s:?}");
}

/// Faults racing munmap of the range they fault on: every faulting thread
/// is released (COPY gets ENOENT: the fault is dropped and the thread
/// woken) or served; nothing hangs. Threads fault through a syscall-free
/// read, so a thread whose page vanished would die of SIGSEGV: they only
/// touch a part that stays mapped, while munmap takes neighbours.
#[test]
fn unmap_races_faults() {
    let _w = Watchdog::new("unmap_races_faults", 60);
    let _g = serialize();
    let u = Arc::new(open_uffd(Features::EVENT_UNMAP));
    let m = Monitor::new(Config::default(), Box::new(DefaultHandler)).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    let run = m.start().unwrap();
    let pages = 64;
    let len = pages * PAGE;
    let data = Arc::new(content(len, 37));
    for round in 0..20 {
        let base = map_anon(len, libc::PROT_READ | libc::PROT_WRITE);
        m.add_region(id, handed(base, len as u64), missing(buffer(&data)))
            .unwrap();
        let keep = 32 * PAGE; // pages 0..32 stay mapped
        let hs: Vec<_> = (0..2usize)
            .map(|t| {
                let data = data.clone();
                std::thread::spawn(move || {
                    for p in (t..32).step_by(2) {
                        let off = p * PAGE + 1;
                        assert_eq!(read_at(base + off as u64), data[off], "page {p}");
                    }
                })
            })
            .collect();
        // Unmap the other half page by page while they fault.
        for p in 32..pages {
            unmap(base + (p * PAGE) as u64, PAGE);
        }
        for h in hs {
            h.join()
                .unwrap_or_else(|_| panic!("round {round}: faulting thread"));
        }
        unmap(base, keep);
    }
    m.stop();
    run.wait().unwrap();
    let s = m.stats();
    eprintln!("unmap race: {s:?}");
    assert_eq!(s.unmaps, 20 * 33, "{s:?}");
    assert_eq!(s.failed, 0, "{s:?}");
}

// ---------------------------------------------------------------------
// (e) fork (FORK)
// ---------------------------------------------------------------------

/// In the child (no allocation, no locks): compare `len` bytes at `addr`
/// with `want`, faulting on the child's registered pages; _exit 0 if
/// equal, 1 if not.
fn child_check_and_exit(addr: u64, want: *const u8, len: usize) -> ! {
    let mut ok = true;
    for i in (0..len).step_by(64) {
        // SAFETY: the child's copy of our mapping and of the source.
        let (a, b) = unsafe {
            (
                std::ptr::read_volatile((addr as *const u8).add(i)),
                *want.add(i),
            )
        };
        if a != b {
            ok = false;
            break;
        }
    }
    // SAFETY: leave the child at once.
    unsafe { libc::_exit(if ok { 0 } else { 1 }) }
}

/// The forked child touches region pages it has not got yet: they are
/// served through the child's userfaultfd (the monitor serves forks by
/// default) with the right data, including pages the parent never
/// touched; pages the parent had are inherited.
fn fork_case(workers: u32) {
    let _g = serialize();
    let pages = 64;
    let mem = Mem::new(Kind::Anon, pages);
    let data = content(mem.len, 38);
    let u = Arc::new(open_uffd(Features::EVENT_FORK));
    let rec = Arc::new(Recorder::default());
    let config = Config {
        workers,
        hand_off_all: workers > 0,
        adaptive: false,
        window_min: 1,
        ..Config::default()
    };
    let m = Monitor::new(config, Box::new(Recording(rec.clone()))).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        missing(buffer(&data)),
    )
    .unwrap();
    let run = m.start().unwrap();
    for p in 0..8 {
        assert_eq!(mem.read(p * PAGE), data[p * PAGE]);
    }
    let before = m.stats();
    let (addr, want, len) = (mem.start(), data.as_ptr(), mem.len);
    // SAFETY: fork; the child only reads memory and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        child_check_and_exit(addr, want, len);
    }
    let st = wait_child(pid, Duration::from_secs(20));
    assert!(
        exited_ok(st),
        "child saw wrong data or died: status {st:#x}"
    );
    // The child's last faults are counted after it was woken.
    wait_for("the child's faults counted", || {
        m.stats().resolved - before.resolved >= (pages - 8) as u64
    });
    let s = m.stats();
    assert_eq!(s.forks, 1, "{s:?}");
    assert_eq!(rec.forks.load(SeqCst), 1);
    // The parent's own region is untouched by the child's faults.
    check_bytes(mem.bytes(), &data, "parent after the child");
    m.stop();
    run.wait().unwrap();
    let s = m.stats();
    eprintln!("fork workers={workers}: {s:?}");
    assert_eq!(s.failed, 0, "{s:?}");
}

#[test]
fn fork_child_served() {
    let _w = Watchdog::new("fork_child_served", 60);
    fork_case(0);
}

#[test]
fn fork_child_served_workers() {
    let _w = Watchdog::new("fork_child_served_workers", 60);
    fork_case(2);
}

/// Defers the child's faults (any uffd but the parent's) to a channel,
/// serves the parent's from `src`.
struct DeferChild {
    parent: u32,
    src: Arc<Vec<u8>>,
    tx: Mutex<mpsc::Sender<FaultToken>>,
}

impl Handler for DeferChild {
    fn on_fault(&self, ctx: &FaultCtx<'_>) -> Verdict {
        if ctx.token.uffd_id != self.parent {
            let _ = self.tx.lock().unwrap().send(ctx.token);
            return Verdict::Defer;
        }
        let off = ctx.region.map(|r| r.source_offset).unwrap_or(0);
        match ctx.resolve(Action::Copy(self.src.as_ptr() as u64 + off)) {
            Ok(_) => Verdict::Resolved,
            Err(e) if e.errno() == libc::EAGAIN => Verdict::Resolved,
            Err(e) => Verdict::Error(e.errno()),
        }
    }
}

/// The child dies (SIGKILL) while its fault is pending: completing the
/// fault afterwards meets ESRCH, which retires the child's userfaultfd
/// (counted as dropped), and the monitor goes on serving the parent.
#[test]
fn fork_child_killed_esrch_retires() {
    let _w = Watchdog::new("fork_child_killed_esrch_retires", 60);
    let _g = serialize();
    let mem = Mem::new(Kind::Anon, 16);
    let data = Arc::new(content(mem.len, 39));
    let u = Arc::new(open_uffd(Features::EVENT_FORK));
    let (tx, rx) = mpsc::channel();
    let handler = DeferChild {
        parent: 0,
        src: data.clone(),
        tx: Mutex::new(tx),
    };
    let m = Monitor::new(Config::default(), Box::new(handler)).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    assert_eq!(id, 0);
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        missing(Source::Callback),
    )
    .unwrap();
    let run = m.start().unwrap();
    let addr = mem.start();
    // SAFETY: fork; the child only touches memory (and is killed).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        read_at(addr + 3 * PAGE as u64);
        // SAFETY: leave the child (not reached: it is killed first).
        unsafe { libc::_exit(3) };
    }
    let tok = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(t) => t,
        Err(e) => {
            // SAFETY: our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            wait_child(pid, Duration::from_secs(10));
            panic!("the child's fault never reached the callback: {e}");
        }
    };
    assert_ne!(tok.uffd_id, id, "the fault came through the child's uffd");
    assert!(m.uffd(tok.uffd_id).is_some(), "the child's uffd is served");
    // SAFETY: our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let st = wait_child(pid, Duration::from_secs(10));
    assert!(
        libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL,
        "status {st:#x}"
    );
    let before = m.stats();
    let a = m
        .complete(tok, Action::Copy(data.as_ptr() as u64 + 3 * PAGE as u64))
        .expect("completing a dead child's fault is not an error");
    assert_eq!(a, Applied::Gone, "ESRCH: the child's memory is gone");
    assert!(
        m.uffd(tok.uffd_id).is_none(),
        "ESRCH retired the child's uffd"
    );
    let s = m.stats();
    assert_eq!(s.dropped, before.dropped + 1, "{s:?}");
    // The parent is still served.
    let off = 5 * PAGE + 7;
    assert_eq!(mem.read(off), data[off]);
    m.stop();
    run.wait().unwrap();
    let s = m.stats();
    eprintln!("fork + ESRCH: {s:?}");
    assert_eq!(s.forks, 1);
    assert_eq!(s.failed, 0, "{s:?}");
}

/// docs/kernel-semantics.md §6: back-to-back forks pinned to one CPU. glibc's
/// fork takes the malloc locks before the kernel waits for the FORK event
/// to be read, so a reader that allocates between reads can deadlock with
/// the next fork. `forks` forks (each child exits at once) must complete.
/// A deadlock here also blocks the Watchdog (it allocates to print), so
/// this test arms alarm(2) too: SIGALRM kills the process, allocation-free.
fn back_to_back_case(forks: u64, verdict: ForkVerdict) {
    struct Verdicts(ForkVerdict);
    impl Handler for Verdicts {
        fn on_fork(&self, _id: u32, _fd: i32) -> ForkVerdict {
            self.0
        }
    }
    let _g = serialize();
    // Pin this thread (and so the monitor threads it creates) to one CPU.
    // SAFETY: plain affinity calls on the calling thread.
    let saved = unsafe {
        let mut saved: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut saved);
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        let cpu = (0..libc::CPU_SETSIZE as usize)
            .find(|&c| libc::CPU_ISSET(c, &saved))
            .unwrap_or(0);
        libc::CPU_SET(cpu, &mut one);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one),
            0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );
        saved
    };
    let mem = Mem::new(Kind::Anon, 4);
    let data = content(mem.len, 40);
    let u = Arc::new(open_uffd(Features::EVENT_FORK));
    let m = Monitor::new(Config::default(), Box::new(Verdicts(verdict))).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        missing(buffer(&data)),
    )
    .unwrap();
    let run = m.start().unwrap();
    // SAFETY: alarm(2); cancelled below.
    unsafe { libc::alarm(50) };
    for i in 0..forks {
        // SAFETY: fork; the child exits at once.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork {i}: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: leave the child at once.
            unsafe { libc::_exit(0) };
        }
        let st = wait_child(pid, Duration::from_secs(10));
        assert!(exited_ok(st), "fork {i}: status {st:#x}");
    }
    // SAFETY: cancel the alarm; restore this thread's affinity.
    unsafe {
        libc::alarm(0);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &saved)
    };
    check_bytes(mem.bytes(), &data, "parent after forks");
    m.stop();
    run.wait().unwrap();
    let s = m.stats();
    eprintln!("back-to-back forks ({verdict:?}): {s:?}");
    assert_eq!(s.forks, forks, "{s:?}");
    assert_eq!(s.failed, 0, "{s:?}");
}

#[test]
fn fork_back_to_back_one_cpu() {
    let _w = Watchdog::new("fork_back_to_back_one_cpu", 60);
    back_to_back_case(300, ForkVerdict::Serve);
}

#[test]
fn fork_back_to_back_one_cpu_close() {
    let _w = Watchdog::new("fork_back_to_back_one_cpu_close", 60);
    back_to_back_case(300, ForkVerdict::Close);
}

/// The same 300 back-to-back forks on one CPU, served by the caller's own
/// loop (`dispatch`, on a thread pinned to the same CPU) instead of the
/// monitor's thread: dispatch must follow the reader's rule too (no
/// allocation while serving a FORK, reserve.rs), else it deadlocks with
/// the next fork, which holds glibc's malloc locks.
fn dispatch_back_to_back_case(forks: u64) {
    let _g = serialize();
    // SAFETY: plain affinity calls on the calling thread (the dispatcher
    // thread, created below, inherits the mask).
    let saved = unsafe {
        let mut saved: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut saved);
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        let cpu = (0..libc::CPU_SETSIZE as usize)
            .find(|&c| libc::CPU_ISSET(c, &saved))
            .unwrap_or(0);
        libc::CPU_SET(cpu, &mut one);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one),
            0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );
        saved
    };
    let mem = Mem::new(Kind::Anon, 4);
    let data = content(mem.len, 41);
    let u = Arc::new(open_uffd(Features::EVENT_FORK));
    let m = Monitor::new(Config::default(), Box::new(DefaultHandler)).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        missing(buffer(&data)),
    )
    .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let (up_tx, up_rx) = mpsc::channel::<()>();
    let dispatcher = {
        let (m, done) = (m.clone(), done.clone());
        std::thread::spawn(move || {
            m.dispatch(0).expect("dispatch");
            up_tx.send(()).unwrap();
            while !done.load(SeqCst) {
                m.dispatch(20).expect("dispatch");
            }
        })
    };
    // A thread's start allocates (the runtime's bookkeeping): forking
    // while it starts would deadlock in the test, not in the monitor.
    up_rx.recv().unwrap();
    // SAFETY: alarm(2); cancelled below. A deadlock here also blocks the
    // Watchdog (it allocates to print): SIGALRM kills the process.
    unsafe { libc::alarm(50) };
    // Back to back: the children are reaped afterwards, so that the next
    // fork (malloc locks held) follows the previous one's FORK event at
    // once, while the dispatcher may still be serving it.
    let mut pids = Vec::with_capacity(forks as usize);
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
    for (i, pid) in pids.into_iter().enumerate() {
        let st = wait_child(pid, Duration::from_secs(10));
        assert!(exited_ok(st), "fork {i}: status {st:#x}");
    }
    // SAFETY: cancel the alarm; restore this thread's affinity.
    unsafe {
        libc::alarm(0);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &saved)
    };
    let check = {
        let (start, len) = (mem.start(), mem.len);
        std::thread::spawn(move || bytes_at(start, len).to_vec())
    };
    while !check.is_finished() {
        std::thread::sleep(Duration::from_millis(1));
    }
    check_bytes(&check.join().unwrap(), &data, "parent after forks");
    done.store(true, SeqCst);
    dispatcher.join().unwrap();
    m.stop();
    let s = m.stats();
    eprintln!("back-to-back forks through dispatch: {s:?}");
    assert_eq!(s.forks, forks, "{s:?}");
    assert_eq!(s.failed, 0, "{s:?}");
}

#[test]
fn fork_back_to_back_one_cpu_dispatch() {
    let _w = Watchdog::new("fork_back_to_back_one_cpu_dispatch", 60);
    dispatch_back_to_back_case(300);
}
