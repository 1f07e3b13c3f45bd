// SPDX-License-Identifier: MIT OR Apache-2.0
//! Monitor integration tests, on the real kernel: lazy loading from every
//! page source (Buffer, Fd, Zero, Callback, PageCache) on anonymous, shmem
//! and hugetlb memory; fault-around; defer-and-complete; the worker pool,
//! busy polling and prefetch; and dispatch mode (the caller's event loop).
//!
//! Every test runs under a watchdog: a fault nobody resolves aborts the
//! run instead of hanging it. A test that cannot run here (no huge pages,
//! a feature the kernel lacks) fails with the reason.
#![allow(unsafe_code)]

mod common;
use common::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use uffd::monitor::*;
use uffd::*;

// ---------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------

/// Byte-for-byte comparison that names the first differing page instead
/// of dumping megabytes.
fn check_bytes(got: &[u8], want: &[u8], page: usize, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if got != want {
        let i = got.iter().zip(want).position(|(a, b)| a != b).unwrap();
        let bad = got
            .chunks(page)
            .zip(want.chunks(page))
            .filter(|(a, b)| a != b)
            .count();
        panic!(
            "{what}: first difference at byte {i:#x} (page {}): got {:#04x}, want {:#04x}; {bad} page(s) differ",
            i / page,
            got[i],
            want[i]
        );
    }
}

/// A region source for the tests, with whatever must outlive the monitor.
enum TestSource {
    Buffer(Vec<u8>),
    /// An unlinked temporary file (or memfd) holding the content.
    Fd(std::fs::File),
    /// The same, read with zeros past end-of-file (`zero_past_eof`).
    FdZeroPastEof(std::fs::File),
    Zero,
    /// The handler copies from this buffer.
    Callback(Arc<Vec<u8>>),
}

/// A temporary file with `data`, already unlinked: the fd keeps it.
fn temp_file(data: &[u8], tag: &str) -> std::fs::File {
    use std::io::Write;
    let path = std::env::temp_dir().join(format!(
        "libuffd-monitor-{}-{tag}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("create temp file");
    std::fs::remove_file(&path).expect("unlink temp file");
    f.write_all(data).expect("write temp file");
    f
}

/// A memfd (plain shmem) with `data`.
fn memfd_with(data: &[u8]) -> std::fs::File {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    // SAFETY: plain memfd_create; the result is checked and owned below.
    let fd = unsafe { libc::memfd_create(c"libuffd-src".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a fresh descriptor we own.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    f.write_all(data).expect("write memfd");
    f
}

/// A handler that serves Callback regions by copying from `src` at the
/// fault's source offset, counting its calls.
struct CopyFrom {
    src: Arc<Vec<u8>>,
    calls: AtomicU64,
}

impl Handler for CopyFrom {
    fn on_fault(&self, ctx: &FaultCtx<'_>) -> Verdict {
        self.calls.fetch_add(1, SeqCst);
        let Some(info) = ctx.region else {
            return Verdict::Error(libc::EFAULT);
        };
        let off = info.source_offset as usize;
        assert!(off + ctx.token.page_size as usize <= self.src.len());
        match ctx.resolve(Action::Copy(self.src.as_ptr() as u64 + off as u64)) {
            Ok(_) => Verdict::Resolved,
            // EAGAIN: the monitor calls us again after reading the event.
            Err(e) if e.errno() == libc::EAGAIN => Verdict::Resolved,
            Err(e) => Verdict::Error(e.errno()),
        }
    }
}

/// `threads` threads fault on every page of `mem` (thread t takes pages
/// t, t+threads, ...); even threads read, odd ones write the expected byte
/// back (a write fault). Each checks the byte it touched.
fn fault_in_parallel(mem: &Arc<Mem>, expected: &Arc<Vec<u8>>, threads: usize) {
    let ps = mem.kind.page();
    let pages = mem.len / ps;
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let mem = mem.clone();
            let want = expected.clone();
            std::thread::spawn(move || {
                for p in (t..pages).step_by(threads) {
                    let off = p * ps + (t * 977 + p * 13) % ps;
                    if t % 2 == 0 {
                        let v = mem.read(off);
                        assert_eq!(v, want[off], "thread {t}: byte {off:#x} (page {p})");
                    } else {
                        mem.write(off, want[off]);
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().expect("faulting thread");
    }
}

/// Lazy-load a `pages`-page region of `kind` from `source` with `threads`
/// faulting threads, then compare every byte with what the source holds
/// (`expected`, zero-padded past a short source).
fn lazy_load(
    kind: Kind,
    pages: usize,
    source: TestSource,
    expected: Vec<u8>,
    threads: usize,
    config: Config,
) -> StatsSnapshot {
    let mem = Arc::new(Mem::new(kind, pages));
    assert_eq!(expected.len(), mem.len);
    let u = Arc::new(open_uffd(kind.missing_features()));
    let (src, handler): (Source, Box<dyn Handler>) = match &source {
        TestSource::Buffer(b) => (
            Source::Buffer {
                addr: b.as_ptr() as u64,
                len: b.len() as u64,
            },
            Box::new(DefaultHandler),
        ),
        TestSource::Fd(f) | TestSource::FdZeroPastEof(f) => (
            Source::Fd {
                fd: std::os::fd::AsRawFd::as_raw_fd(f),
                offset: 0,
                zero_past_eof: matches!(source, TestSource::FdZeroPastEof(_)),
            },
            Box::new(DefaultHandler),
        ),
        TestSource::Zero => (Source::Zero, Box::new(DefaultHandler)),
        TestSource::Callback(b) => (
            Source::Callback,
            Box::new(CopyFrom {
                src: b.clone(),
                calls: AtomicU64::new(0),
            }),
        ),
    };
    let m = Monitor::new(config, handler).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        RegionOptions {
            source: src,
            register: RegisterMode::MISSING,
            ..Default::default()
        },
    )
    .unwrap();
    let run = m.start().unwrap();
    let expected = Arc::new(expected);
    fault_in_parallel(&mem, &expected, threads);
    check_bytes(mem.bytes(), &expected, kind.page(), &format!("{kind:?}"));
    m.stop();
    run.wait().unwrap();
    let s = m.stats();
    eprintln!("{kind:?}: {s:?}");
    assert_eq!(s.failed, 0, "no fault may fail: {s:?}");
    assert!(s.faults > 0 && s.resolved > 0, "{s:?}");
    assert_eq!(
        s.faults,
        s.resolved + s.eexist + s.coalesced + s.dropped,
        "every fault message is resolved, found resolved, or coalesced: {s:?}"
    );
    // Every byte the monitor placed was asked for.
    assert!(s.bytes <= mem.len as u64, "{s:?}");
    drop(mem);
    drop(source);
    s
}

// ---------------------------------------------------------------------
// 1. Lazy loading from each source, on each kind of memory
// ---------------------------------------------------------------------

const THREADS: usize = 4;

fn pages_for(kind: Kind) -> usize {
    if kind.is_hugetlb() {
        4
    } else {
        256
    }
}

fn buffer_case(kind: Kind) {
    let pages = pages_for(kind);
    let data = content(pages * kind.page(), 1);
    let s = lazy_load(
        kind,
        pages,
        TestSource::Buffer(data.clone()),
        data,
        THREADS,
        Config::default(),
    );
    assert_eq!(
        s.bytes,
        (pages * kind.page()) as u64,
        "every page placed once"
    );
}

fn fd_case(kind: Kind, memfd: bool) {
    let pages = pages_for(kind);
    let data = content(pages * kind.page(), 2);
    let f = if memfd {
        memfd_with(&data)
    } else {
        temp_file(&data, "fd")
    };
    lazy_load(
        kind,
        pages,
        TestSource::Fd(f),
        data,
        THREADS,
        Config::default(),
    );
}

fn zero_case(kind: Kind) {
    let pages = pages_for(kind);
    let len = pages * kind.page();
    lazy_load(
        kind,
        pages,
        TestSource::Zero,
        vec![0u8; len],
        THREADS,
        Config::default(),
    );
}

fn callback_case(kind: Kind) {
    let pages = pages_for(kind);
    let data = Arc::new(content(pages * kind.page(), 3));
    let s = lazy_load(
        kind,
        pages,
        TestSource::Callback(data.clone()),
        (*data).clone(),
        THREADS,
        Config::default(),
    );
    assert_eq!(
        s.bytes,
        (pages * kind.page()) as u64,
        "one page per callback copy"
    );
}

#[test]
fn buffer_anon() {
    let _w = Watchdog::new("buffer_anon", 60);
    buffer_case(Kind::Anon);
}

#[test]
fn buffer_shmem() {
    let _w = Watchdog::new("buffer_shmem", 60);
    buffer_case(Kind::ShmemShared);
}

#[test]
fn buffer_hugetlb() {
    if common::skip_without_hugetlb("buffer_hugetlb") {
        return;
    }
    let _w = Watchdog::new("buffer_hugetlb", 60);
    buffer_case(Kind::Hugetlb);
}

#[test]
fn fd_tmpfile_anon() {
    let _w = Watchdog::new("fd_tmpfile_anon", 60);
    fd_case(Kind::Anon, false);
}

#[test]
fn fd_memfd_shmem() {
    let _w = Watchdog::new("fd_memfd_shmem", 60);
    fd_case(Kind::ShmemShared, true);
}

#[test]
fn fd_tmpfile_hugetlb() {
    if common::skip_without_hugetlb("fd_tmpfile_hugetlb") {
        return;
    }
    let _w = Watchdog::new("fd_tmpfile_hugetlb", 60);
    fd_case(Kind::Hugetlb, false);
}

#[test]
fn zero_anon() {
    let _w = Watchdog::new("zero_anon", 60);
    zero_case(Kind::Anon);
}

#[test]
fn zero_shmem() {
    let _w = Watchdog::new("zero_shmem", 60);
    zero_case(Kind::ShmemShared);
}

/// hugetlb has no ZEROPAGE: the monitor copies from a zeroed huge page.
#[test]
fn zero_hugetlb() {
    if common::skip_without_hugetlb("zero_hugetlb") {
        return;
    }
    let _w = Watchdog::new("zero_hugetlb", 60);
    zero_case(Kind::Hugetlb);
}

#[test]
fn callback_anon() {
    let _w = Watchdog::new("callback_anon", 60);
    callback_case(Kind::Anon);
}

#[test]
fn callback_shmem() {
    let _w = Watchdog::new("callback_shmem", 60);
    callback_case(Kind::ShmemShared);
}

#[test]
fn callback_hugetlb() {
    if common::skip_without_hugetlb("callback_hugetlb") {
        return;
    }
    let _w = Watchdog::new("callback_hugetlb", 60);
    callback_case(Kind::Hugetlb);
}

/// A Buffer shorter than the region: whole pages past its end are zeros,
/// the page straddling its end is the buffer's tail padded with zeros.
fn short_buffer_case(kind: Kind, pages: usize, buf_len: usize) {
    let data = content(buf_len, 4);
    let mut expected = vec![0u8; pages * kind.page()];
    expected[..buf_len].copy_from_slice(&data);
    let s = lazy_load(
        kind,
        pages,
        TestSource::Buffer(data),
        expected,
        THREADS,
        Config::default(),
    );
    assert_eq!(s.bytes, (pages * kind.page()) as u64, "{s:?}");
}

#[test]
fn short_buffer_anon() {
    let _w = Watchdog::new("short_buffer_anon", 60);
    short_buffer_case(Kind::Anon, 64, 21 * PAGE + 1234);
}

#[test]
fn short_buffer_shmem() {
    let _w = Watchdog::new("short_buffer_shmem", 60);
    short_buffer_case(Kind::ShmemShared, 64, 40 * PAGE + 1);
}

#[test]
fn short_buffer_hugetlb() {
    if common::skip_without_hugetlb("short_buffer_hugetlb") {
        return;
    }
    let _w = Watchdog::new("short_buffer_hugetlb", 60);
    short_buffer_case(Kind::Hugetlb, 4, HUGE + HUGE / 2 + 100);
}

/// A short file read with `zero_past_eof`: bytes past end-of-file read
/// as zeros (pread path).
#[test]
fn fd_short_file_anon() {
    let _w = Watchdog::new("fd_short_file_anon", 60);
    let pages = 64;
    let file_len = 10 * PAGE + 100;
    let data = content(file_len, 5);
    let mut expected = vec![0u8; pages * PAGE];
    expected[..file_len].copy_from_slice(&data);
    lazy_load(
        Kind::Anon,
        pages,
        TestSource::FdZeroPastEof(temp_file(&data, "short")),
        expected,
        THREADS,
        Config::default(),
    );
}

/// The Fd source at a non-zero file offset.
#[test]
fn fd_offset_anon() {
    let _w = Watchdog::new("fd_offset_anon", 60);
    let pages = 32;
    let skip = 3 * PAGE;
    let data = content(skip + pages * PAGE, 6);
    let f = temp_file(&data, "offset");
    let mem = Arc::new(Mem::new(Kind::Anon, pages));
    let u = Arc::new(open_uffd(Features::empty()));
    let m = Monitor::new(Config::default(), Box::new(DefaultHandler)).unwrap();
    let id = m.add_uffd(u).unwrap();
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        RegionOptions {
            source: Source::Fd {
                fd: std::os::fd::AsRawFd::as_raw_fd(&f),
                offset: skip as u64,
                zero_past_eof: false,
            },
            register: RegisterMode::MISSING,
            ..Default::default()
        },
    )
    .unwrap();
    let run = m.start().unwrap();
    let want = Arc::new(data[skip..].to_vec());
    fault_in_parallel(&mem, &want, 3);
    check_bytes(mem.bytes(), &want, PAGE, "fd at offset");
    m.stop();
    run.wait().unwrap();
}

/// PageCache (MINOR) regions: the page cache is filled behind the
/// mapping's back (memfd pwrite, or an unregistered alias for hugetlb);
/// faults are MINOR and resolved by CONTINUE. Pages left out of the cache
/// are not trapped (MINOR only) and read as zeros.
fn page_cache_case(kind: Kind, pages: usize) {
    let feature = if kind.is_hugetlb() {
        Features::MINOR_HUGETLBFS
    } else {
        Features::MINOR_SHMEM
    };
    let ps = kind.page();
    let mem = Arc::new(Mem::new(kind, pages));
    let data = content(mem.len, 7);
    let mut expected = vec![0u8; mem.len];
    // Fill every page but every fourth one.
    for p in (0..pages).filter(|p| p % 4 != 3) {
        let r = p * ps..(p + 1) * ps;
        if kind.is_hugetlb() {
            mem.fill_via_alias(r.start, &data[r.clone()]);
        } else {
            mem.pwrite_memfd(r.start, &data[r.clone()]);
        }
        expected[r.clone()].copy_from_slice(&data[r]);
    }
    let u = Arc::new(open_uffd(feature));
    let m = Monitor::new(Config::default(), Box::new(DefaultHandler)).unwrap();
    let id = m.add_uffd(u).unwrap();
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        RegionOptions {
            source: Source::PageCache,
            register: RegisterMode::MINOR,
            ..Default::default()
        },
    )
    .unwrap();
    let run = m.start().unwrap();
    let expected = Arc::new(expected);
    fault_in_parallel(&mem, &expected, THREADS);
    check_bytes(mem.bytes(), &expected, ps, &format!("page cache {kind:?}"));
    m.stop();
    run.wait().unwrap();
    let s = m.stats();
    eprintln!("{kind:?} MINOR: {s:?}");
    assert!(s.faults > 0 && s.resolved > 0, "MINOR faults served: {s:?}");
    assert_eq!(s.failed, 0, "{s:?}");
}

#[test]
fn page_cache_minor_shmem() {
    let _w = Watchdog::new("page_cache_minor_shmem", 60);
    page_cache_case(Kind::ShmemShared, 128);
}

#[test]
fn page_cache_minor_hugetlb() {
    if common::skip_without_hugetlb("page_cache_minor_hugetlb") {
        return;
    }
    let _w = Watchdog::new("page_cache_minor_hugetlb", 60);
    page_cache_case(Kind::Hugetlb, 4);
}

// ---------------------------------------------------------------------
// 2. Fault-around
// ---------------------------------------------------------------------

/// One thread reads one byte of each page, in `order`; returns the stats.
fn access_pattern(config: Config, pages: usize, order: &[usize]) -> StatsSnapshot {
    let mem = Mem::new(Kind::Anon, pages);
    let data = content(mem.len, 8);
    let u = Arc::new(open_uffd(Features::empty()));
    let m = Monitor::new(config, Box::new(DefaultHandler)).unwrap();
    let id = m.add_uffd(u).unwrap();
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
    for &p in order {
        let off = p * PAGE + 100;
        assert_eq!(mem.read(off), data[off], "page {p}");
    }
    check_bytes(mem.bytes(), &data, PAGE, "fault-around");
    m.stop();
    run.wait().unwrap();
    // Counters are updated after the faulting thread is woken: read them
    // once the monitor has stopped.
    let s = m.stats();
    eprintln!("{s:?}");
    assert_eq!(s.failed, 0);
    assert_eq!(s.bytes, mem.len as u64, "every page placed exactly once");
    s
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut x = seed | 1;
    for i in (1..n).rev() {
        let j = (xorshift(&mut x) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

#[test]
fn fault_around_sequential_adaptive() {
    let _w = Watchdog::new("fault_around_sequential_adaptive", 60);
    let pages = 4096;
    let order: Vec<usize> = (0..pages).collect();
    let s = access_pattern(Config::default(), pages, &order);
    // Sequential access grows the window to 64 pages: far fewer faults
    // than pages.
    assert!(
        s.bytes >= s.faults * PAGE as u64 * 16,
        "sequential access should place >= 16 pages per fault: {} bytes for {} faults",
        s.bytes,
        s.faults
    );
    assert!(s.faults < pages as u64 / 16, "{s:?}");
}

#[test]
fn fault_around_fixed_single_page() {
    let _w = Watchdog::new("fault_around_fixed_single_page", 60);
    let pages = 512;
    let order: Vec<usize> = (0..pages).collect();
    let config = Config {
        adaptive: false,
        window_min: 1,
        ..Config::default()
    };
    let s = access_pattern(config, pages, &order);
    assert_eq!(s.faults, pages as u64, "one fault per page: {s:?}");
    assert_eq!(s.resolved, pages as u64, "{s:?}");
    assert_eq!(s.bytes, s.resolved * PAGE as u64, "one page per fault");
}

#[test]
fn fault_around_fixed_window_of_eight() {
    let _w = Watchdog::new("fault_around_fixed_window_of_eight", 60);
    let pages = 512;
    let order: Vec<usize> = (0..pages).collect();
    let config = Config {
        adaptive: false,
        window_min: 8,
        window_max: 8,
        ..Config::default()
    };
    let s = access_pattern(config, pages, &order);
    assert_eq!(s.resolved, pages as u64 / 8, "{s:?}");
    assert_eq!(s.faults, pages as u64 / 8, "{s:?}");
}

#[test]
fn fault_around_random_stays_small() {
    let _w = Watchdog::new("fault_around_random_stays_small", 60);
    let pages = 2048;
    let order = shuffled(pages, 0x1234_5678);
    let s = access_pattern(Config::default(), pages, &order);
    assert!(
        s.bytes <= s.faults * PAGE as u64 * 2,
        "random access must not fault around much: {} bytes for {} faults",
        s.bytes,
        s.faults
    );
    assert!(s.faults >= pages as u64 / 2, "{s:?}");
}

// ---------------------------------------------------------------------
// 3. Defer and complete
// ---------------------------------------------------------------------

/// Defers every fault, handing its token (and source offset) to a channel.
struct Deferrer {
    tx: Mutex<mpsc::Sender<(FaultToken, u64)>>,
}

impl Handler for Deferrer {
    fn on_fault(&self, ctx: &FaultCtx<'_>) -> Verdict {
        let off = ctx.region.map(|r| r.source_offset).unwrap_or(0);
        self.tx.lock().unwrap().send((ctx.token, off)).unwrap();
        Verdict::Defer
    }
}

fn defer_case(kind: Kind, pages: usize, workers: u32) {
    let mem = Arc::new(Mem::new(kind, pages));
    let data = Arc::new(content(mem.len, 9));
    let (tx, rx) = mpsc::channel();
    let u = Arc::new(open_uffd(kind.missing_features()));
    let config = Config {
        workers,
        hand_off_all: workers > 0,
        ..Config::default()
    };
    let m = Monitor::new(config, Box::new(Deferrer { tx: Mutex::new(tx) })).unwrap();
    let id = m.add_uffd(u).unwrap();
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
    let done = Arc::new(AtomicBool::new(false));
    // The completer: another thread, completing each token with a copy.
    let completer = {
        let m = m.clone();
        let data = data.clone();
        let done = done.clone();
        let ps = kind.page() as u64;
        std::thread::spawn(move || {
            let mut n = 0u64;
            loop {
                let (tok, off) = match rx.recv_timeout(Duration::from_millis(20)) {
                    Ok(x) => x,
                    Err(_) if done.load(SeqCst) => break,
                    Err(_) => continue,
                };
                assert_eq!(tok.page_size, ps);
                // A little later, as an asynchronous fetch would.
                std::thread::sleep(Duration::from_micros(200));
                let a = m
                    .complete(tok, Action::Copy(data.as_ptr() as u64 + off))
                    .expect("complete");
                assert!(
                    matches!(a, Applied::Resolved(_) | Applied::AlreadyResolved),
                    "{a:?}"
                );
                n += 1;
            }
            n
        })
    };
    fault_in_parallel(&mem, &data, THREADS.min(pages));
    check_bytes(mem.bytes(), &data, kind.page(), "deferred");
    m.stop();
    run.wait().unwrap();
    done.store(true, SeqCst);
    let completed = completer.join().unwrap();
    let s = m.stats();
    eprintln!("defer {kind:?}: {s:?}");
    assert_eq!(s.deferred, completed, "every deferral counted: {s:?}");
    assert!(s.deferred >= 1, "{s:?}");
    // Each page was placed by exactly one completion.
    assert_eq!(s.resolved, pages as u64, "{s:?}");
    assert_eq!(s.failed, 0, "{s:?}");
}

#[test]
fn defer_and_complete_anon() {
    let _w = Watchdog::new("defer_and_complete_anon", 60);
    defer_case(Kind::Anon, 64, 0);
}

#[test]
fn defer_and_complete_anon_workers() {
    let _w = Watchdog::new("defer_and_complete_anon_workers", 60);
    defer_case(Kind::Anon, 64, 2);
}

#[test]
fn defer_and_complete_hugetlb() {
    if common::skip_without_hugetlb("defer_and_complete_hugetlb") {
        return;
    }
    let _w = Watchdog::new("defer_and_complete_hugetlb", 60);
    defer_case(Kind::Hugetlb, 2, 0);
}

// ---------------------------------------------------------------------
// 5. Workers, busy polling, prefetch
// ---------------------------------------------------------------------

fn workers_case(kind: Kind, workers: u32, spin_us: u32) {
    let pages = if kind.is_hugetlb() { 8 } else { 1024 };
    let data = content(pages * kind.page(), 10 + workers as u64);
    let config = Config {
        workers,
        hand_off_all: workers > 0,
        spin_us,
        ..Config::default()
    };
    lazy_load(
        kind,
        pages,
        TestSource::Buffer(data.clone()),
        data,
        THREADS,
        config,
    );
}

#[test]
fn workers_two_anon() {
    let _w = Watchdog::new("workers_two_anon", 60);
    workers_case(Kind::Anon, 2, 0);
}

#[test]
fn workers_four_spin_anon() {
    let _w = Watchdog::new("workers_four_spin_anon", 60);
    workers_case(Kind::Anon, 4, 100);
}

#[test]
fn workers_two_spin_shmem() {
    let _w = Watchdog::new("workers_two_spin_shmem", 60);
    workers_case(Kind::ShmemShared, 2, 50);
}

#[test]
fn workers_four_hugetlb() {
    if common::skip_without_hugetlb("workers_four_hugetlb") {
        return;
    }
    let _w = Watchdog::new("workers_four_hugetlb", 60);
    workers_case(Kind::Hugetlb, 4, 0);
}

#[test]
fn spin_without_workers_anon() {
    let _w = Watchdog::new("spin_without_workers_anon", 60);
    workers_case(Kind::Anon, 0, 200);
}

/// Callback regions served by workers: the callback runs on them.
#[test]
fn callback_on_workers_anon() {
    let _w = Watchdog::new("callback_on_workers_anon", 60);
    let pages = 512;
    let data = Arc::new(content(pages * PAGE, 11));
    let config = Config {
        workers: 4,
        hand_off_all: true,
        ..Config::default()
    };
    lazy_load(
        Kind::Anon,
        pages,
        TestSource::Callback(data.clone()),
        (*data).clone(),
        THREADS,
        config,
    );
}

/// How many pages of `[addr, addr+len)` are resident (mincore).
fn resident_pages(addr: u64, len: usize) -> usize {
    let mut vec = vec![0u8; len.div_ceil(PAGE)];
    // SAFETY: a live mapping of `len` bytes; vec has one byte per page.
    let r = unsafe { libc::mincore(addr as *mut libc::c_void, len, vec.as_mut_ptr()) };
    assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
    vec.iter().filter(|&&b| b & 1 != 0).count()
}

/// Prefetch: after a few demand faults and no more, the background
/// prefetcher populates the rest; each page is placed once (by a fault or
/// by the prefetcher), so prefetched bytes + faulted bytes = region size.
fn prefetch_case(kind: Kind, pages: usize, workers: u32) {
    let mem = Arc::new(Mem::new(kind, pages));
    let data = content(mem.len, 12);
    let u = Arc::new(open_uffd(kind.missing_features()));
    let config = Config {
        workers,
        hand_off_all: workers > 0,
        ..Config::default()
    };
    let m = Monitor::new(config, Box::new(DefaultHandler)).unwrap();
    let id = m.add_uffd(u).unwrap();
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        RegionOptions {
            source: Source::Buffer {
                addr: data.as_ptr() as u64,
                len: data.len() as u64,
            },
            register: RegisterMode::MISSING,
            prefetch: true,
            ..Default::default()
        },
    )
    .unwrap();
    let run = m.start().unwrap();
    // A few demand faults, racing the prefetcher.
    let demand = if kind.is_hugetlb() { 1 } else { 16 };
    for p in shuffled(pages, 77).into_iter().take(demand) {
        let off = p * kind.page() + 1;
        assert_eq!(mem.read(off), data[off], "demand fault on page {p}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let s = loop {
        let s = m.stats();
        if s.prefetched_bytes + s.bytes >= mem.len as u64 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "prefetch did not populate the region in 20 s: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(
        s.prefetched_bytes + s.bytes,
        mem.len as u64,
        "each page placed exactly once: {s:?}"
    );
    assert!(s.prefetched_bytes > 0, "{s:?}");
    assert_eq!(
        resident_pages(mem.start(), mem.len),
        mem.len / PAGE,
        "every page resident after prefetch"
    );
    let faults_before = m.stats().faults;
    check_bytes(mem.bytes(), &data, kind.page(), "prefetched");
    assert_eq!(
        m.stats().faults,
        faults_before,
        "reading a prefetched region must not fault"
    );
    m.stop();
    run.wait().unwrap();
    eprintln!("prefetch {kind:?}: {:?}", m.stats());
}

#[test]
fn prefetch_anon() {
    let _w = Watchdog::new("prefetch_anon", 60);
    prefetch_case(Kind::Anon, 4096, 0);
}

#[test]
fn prefetch_shmem_workers() {
    let _w = Watchdog::new("prefetch_shmem_workers", 60);
    prefetch_case(Kind::ShmemShared, 2048, 2);
}

#[test]
fn prefetch_hugetlb() {
    if common::skip_without_hugetlb("prefetch_hugetlb") {
        return;
    }
    let _w = Watchdog::new("prefetch_hugetlb", 60);
    prefetch_case(Kind::Hugetlb, 8, 0);
}

// ---------------------------------------------------------------------
// 6. Dispatch mode: the caller's own event loop
// ---------------------------------------------------------------------

#[test]
fn dispatch_mode_poll_loop() {
    let _w = Watchdog::new("dispatch_mode_poll_loop", 60);
    let pages = 256;
    let mem = Arc::new(Mem::new(Kind::Anon, pages));
    let data = Arc::new(content(mem.len, 13));
    let u = Arc::new(open_uffd(Features::empty()));
    let m = Monitor::new(Config::default(), Box::new(DefaultHandler)).unwrap();
    let id = m.add_uffd(u).unwrap();
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
    // Adding the handle woke the reader (so that a running one polls
    // it): the first dispatch sees that; then nothing is ready, and
    // dispatch(0) returns at once with 0.
    assert_eq!(m.dispatch(0).unwrap(), 1);
    assert_eq!(m.dispatch(0).unwrap(), 0);
    let done = Arc::new(AtomicBool::new(false));
    let faulter = {
        let (mem, data, done) = (mem.clone(), data.clone(), done.clone());
        std::thread::spawn(move || {
            for p in shuffled(pages, 99) {
                let off = p * PAGE + 7;
                assert_eq!(mem.read(off), data[off], "page {p}");
            }
            done.store(true, SeqCst);
        })
    };
    let mut ready_rounds = 0;
    while !done.load(SeqCst) {
        let mut pfd = libc::pollfd {
            fd: m.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, 20) };
        assert!(r >= 0, "poll: {}", std::io::Error::last_os_error());
        if r > 0 {
            assert_eq!(pfd.revents & (libc::POLLERR | libc::POLLHUP), 0);
            if m.dispatch(0).unwrap() > 0 {
                ready_rounds += 1;
            }
        }
    }
    faulter.join().unwrap();
    assert!(!m.is_running(), "dispatch mode runs no thread");
    check_bytes(mem.bytes(), &data, PAGE, "dispatch mode");
    let s = m.stats();
    eprintln!("dispatch: {s:?} in {ready_rounds} ready rounds");
    assert!(ready_rounds > 0 && s.resolved > 0, "{s:?}");
    assert_eq!(s.bytes, mem.len as u64, "{s:?}");
    assert_eq!(s.failed, 0);
}
