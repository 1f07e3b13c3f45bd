// SPDX-License-Identifier: MIT OR Apache-2.0
//! Dirty tracking (issue 12 item 2): regions added with `track_dirty` place
//! their pages write-protected and `Monitor::dirty_scan` reports the pages
//! written since the last clearing scan, synchronously (WP faults through
//! the monitor) or asynchronously (WP_ASYNC + PAGEMAP_SCAN), on anonymous,
//! shmem and hugetlb memory. The invariant: no write is missed, with
//! writers running concurrently with the scans.
#![allow(unsafe_code)]

mod common;
use common::kit::wp_features;
use common::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use uffd::monitor::*;
use uffd::*;

/// Counts `on_write` calls by page.
#[derive(Default)]
struct Writes {
    pages: Mutex<Vec<u64>>,
}

struct H(Arc<Writes>);
impl Handler for H {
    fn on_write(&self, token: FaultToken, user_data: u64) {
        assert_eq!(user_data, 77);
        self.0.pages.lock().unwrap().push(token.page);
    }
}

struct Setup {
    mem: Arc<Mem>,
    m: Monitor,
    id: u32,
    running: Option<Running>,
    writes: Arc<Writes>,
    data: Vec<u8>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.m.stop();
        if let Some(r) = self.running.take() {
            r.wait().unwrap();
        }
    }
}

fn features(kind: Kind, asynchronous: bool) -> Features {
    let mut f = wp_features(kind) | kind.missing_features();
    if asynchronous {
        f |= Features::WP_ASYNC | Features::WP_UNPOPULATED;
    }
    f
}

fn setup(kind: Kind, pages: usize, asynchronous: bool) -> Setup {
    let mem = Arc::new(Mem::new(kind, pages));
    let data = content(mem.len, 11);
    let writes = Arc::new(Writes::default());
    let m = Monitor::new(Config::default(), Box::new(H(writes.clone()))).unwrap();
    let u = Arc::new(open_uffd(features(kind, asynchronous)));
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
            track_dirty: true,
            user_data: 77,
            ..Default::default()
        },
    )
    .unwrap();
    let want = if asynchronous {
        DirtyPath::Async
    } else {
        DirtyPath::Sync
    };
    assert_eq!(m.dirty_path(id, mem.start()), Some(want));
    let running = Some(m.start().unwrap());
    Setup {
        mem,
        m,
        id,
        running,
        writes,
        data,
    }
}

fn scan(s: &Setup, clear: bool) -> Vec<usize> {
    let pages = s.mem.len / s.mem.kind.page();
    let mut bits = vec![0u64; pages.div_ceil(64)];
    let n =
        s.m.dirty_scan(
            s.id,
            Range::new(s.mem.start(), s.mem.len as u64),
            clear,
            &mut bits,
        )
        .unwrap();
    let set: Vec<usize> = (0..pages)
        .filter(|i| bits[i / 64] & (1 << (i % 64)) != 0)
        .collect();
    assert_eq!(n as usize, set.len(), "count = bits set");
    set
}

fn basic(name: &'static str, kind: Kind, asynchronous: bool) {
    if kind.is_hugetlb() && skip_without_hugetlb(name) {
        return;
    }
    let _w = Watchdog::new(name, 60);
    let pages = if kind.is_hugetlb() { 4 } else { 16 };
    let s = setup(kind, pages, asynchronous);
    let ps = kind.page();
    // Reads place pages (write-protected): nothing is dirty.
    for i in 0..pages / 2 {
        assert_eq!(s.mem.read(i * ps + 9), s.data[i * ps + 9], "page {i}");
    }
    assert_eq!(
        scan(&s, true),
        Vec::<usize>::new(),
        "{name}: reads are not writes"
    );
    // Writes: to placed pages, and to a page never touched.
    let written = [1, pages / 2, pages - 1];
    for &i in &written {
        s.mem.write(i * ps + 5, 0xA5);
    }
    assert_eq!(scan(&s, false), written, "{name}: without clear");
    assert_eq!(scan(&s, true), written, "{name}: clear reports them too");
    assert_eq!(scan(&s, true), Vec::<usize>::new(), "{name}: re-armed");
    // A write after the clearing scan is reported by the next one.
    s.mem.write(written[0] * ps + 6, 0x5A);
    assert_eq!(scan(&s, true), vec![written[0]], "{name}: rewrite");
    // Contents: the source's, with the writes.
    for i in 0..pages {
        let mut want = s.data[i * ps..(i + 1) * ps].to_vec();
        if written.contains(&i) {
            want[5] = 0xA5;
        }
        if i == written[0] {
            want[6] = 0x5A;
        }
        assert!(
            kit::page_bytes(&s.mem, i) == &want[..],
            "{name}: page {i} content"
        );
    }
    let st = s.m.stats();
    assert!(st.dirty_scans >= 5);
    if asynchronous {
        assert_eq!(st.dirty_scans_async, st.dirty_scans);
        assert_eq!(
            st.dirty_writes, 0,
            "{name}: no WP fault reaches the monitor"
        );
        assert!(s.writes.pages.lock().unwrap().is_empty());
    } else {
        assert_eq!(st.dirty_scans_async, 0);
        assert!(st.dirty_writes >= 4, "{name}: {st:?}");
        let w = s.writes.pages.lock().unwrap();
        for &i in &written {
            assert!(w.contains(&s.mem.page_addr(i)), "{name}: on_write page {i}");
        }
    }
}

#[test]
fn basic_anon_sync() {
    basic("basic_anon_sync", Kind::Anon, false);
}
#[test]
fn basic_anon_async() {
    basic("basic_anon_async", Kind::Anon, true);
}
#[test]
fn basic_shmem_sync() {
    basic("basic_shmem_sync", Kind::ShmemShared, false);
}
#[test]
fn basic_shmem_async() {
    basic("basic_shmem_async", Kind::ShmemShared, true);
}
#[test]
fn basic_hugetlb_sync() {
    basic("basic_hugetlb_sync", Kind::Hugetlb, false);
}
#[test]
fn basic_hugetlb_async() {
    basic("basic_hugetlb_async", Kind::Hugetlb, true);
}

/// 4 writers write random pages while a scanner scans with clear; the
/// model: per page, `started` (bumped before a write) and `done` (after).
/// A write that started after scan k returned and was done before scan
/// k+1 began must be reported by scan k+1 (it may be reported earlier
/// too, never later: that would be a lost write).
fn concurrent(name: &'static str, kind: Kind, asynchronous: bool) {
    if kind.is_hugetlb() && skip_without_hugetlb(name) {
        return;
    }
    let _w = Watchdog::new(name, 120);
    let pages = if kind.is_hugetlb() { 8 } else { 256 };
    let s = setup(kind, pages, asynchronous);
    let ps = kind.page();
    let started: Arc<Vec<AtomicU64>> = Arc::new((0..pages).map(|_| AtomicU64::new(0)).collect());
    let done: Arc<Vec<AtomicU64>> = Arc::new((0..pages).map(|_| AtomicU64::new(0)).collect());
    let last: Arc<Vec<AtomicU64>> = Arc::new((0..pages).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let (mem, started, done, last, stop) = (
            s.mem.clone(),
            started.clone(),
            done.clone(),
            last.clone(),
            stop.clone(),
        );
        writers.push(std::thread::spawn(move || {
            let mut x = 0x9E37_79B9u64 * (w + 1);
            let mut n = 0u64;
            while !stop.load(SeqCst) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Each writer owns the pages p with p % 4 == w.
                let p = ((x % (pages as u64 / 4)) * 4 + w) as usize;
                n += 1;
                let v = (n % 250 + 1) as u8;
                started[p].fetch_add(1, SeqCst);
                mem.write(p * ps + 100 + w as usize, v);
                last[p].store(v as u64, SeqCst);
                done[p].fetch_add(1, SeqCst);
                if n % 64 == 0 {
                    std::thread::yield_now();
                }
            }
        }));
    }
    let mut after_prev: Vec<u64> = started.iter().map(|a| a.load(SeqCst)).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(1500);
    let mut scans = 0;
    let mut reported = 0;
    let check = |after_prev: &Vec<u64>, before: &Vec<u64>, got: &[usize], what: &str| {
        for p in 0..pages {
            if before[p] > after_prev[p] {
                assert!(
                    got.contains(&p),
                    "{name}: {what}: page {p} written (writes {}..{}) after the previous scan, not reported",
                    after_prev[p],
                    before[p]
                );
            }
        }
    };
    while std::time::Instant::now() < deadline {
        let before: Vec<u64> = done.iter().map(|a| a.load(SeqCst)).collect();
        let got = scan(&s, true);
        let after: Vec<u64> = started.iter().map(|a| a.load(SeqCst)).collect();
        check(&after_prev, &before, &got, "during");
        reported += got.len();
        after_prev = after;
        scans += 1;
    }
    stop.store(true, SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    let before: Vec<u64> = done.iter().map(|a| a.load(SeqCst)).collect();
    let got = scan(&s, true);
    check(&after_prev, &before, &got, "final");
    assert_eq!(
        scan(&s, true),
        Vec::<usize>::new(),
        "{name}: quiet after the writers"
    );
    // Nothing lost in memory either: each page holds its writers' last values.
    for p in 0..pages {
        let w = p % 4;
        let v = last[p].load(SeqCst) as u8;
        if started[p].load(SeqCst) > 0 {
            assert_eq!(s.mem.read(p * ps + 100 + w), v, "{name}: page {p}");
        } else {
            assert_eq!(s.mem.read(p * ps + 100 + w), s.data[p * ps + 100 + w]);
        }
    }
    assert!(
        scans > 3 && reported > 0,
        "{name}: {scans} scans, {reported} reported"
    );
}

#[test]
fn concurrent_anon_sync() {
    concurrent("concurrent_anon_sync", Kind::Anon, false);
}
#[test]
fn concurrent_anon_async() {
    concurrent("concurrent_anon_async", Kind::Anon, true);
}
#[test]
fn concurrent_shmem_sync() {
    concurrent("concurrent_shmem_sync", Kind::ShmemShared, false);
}
#[test]
fn concurrent_shmem_async() {
    concurrent("concurrent_shmem_async", Kind::ShmemShared, true);
}
#[test]
fn concurrent_hugetlb_sync() {
    concurrent("concurrent_hugetlb_sync", Kind::Hugetlb, false);
}
#[test]
fn concurrent_hugetlb_async() {
    concurrent("concurrent_hugetlb_async", Kind::Hugetlb, true);
}

#[test]
fn bad_input() {
    let _w = Watchdog::new("dirty bad_input", 30);
    let s = setup(Kind::Anon, 128, false);
    let start = s.mem.start();
    let len = s.mem.len as u64;
    let mut bits = vec![0u64; 2];
    let e =
        s.m.dirty_scan(99, Range::new(start, len), false, &mut bits)
            .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    assert!(e.to_string().contains("no userfaultfd with id 99"), "{e}");
    let e =
        s.m.dirty_scan(s.id, Range::new(start, len + 4096), false, &mut bits)
            .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    assert!(
        e.to_string()
            .contains("not inside one dirty-tracked region"),
        "{e}"
    );
    let e =
        s.m.dirty_scan(s.id, Range::new(start + 1, 4096), false, &mut bits)
            .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL, "{e}");
    let mut one = vec![0u64; 1];
    let e =
        s.m.dirty_scan(s.id, Range::new(start, len), false, &mut one)
            .unwrap_err();
    assert_eq!(e.errno(), libc::ERANGE);
    assert!(e.to_string().contains("128 pages need 2"), "{e}");
    // A sub-range is fine, with one word.
    assert_eq!(
        s.m.dirty_scan(s.id, Range::new(start + 4096, 64 * 4096), true, &mut one)
            .unwrap(),
        0
    );

    // A caller-registered range without WP is refused; so is dirty_sync
    // on a WP_ASYNC userfaultfd.
    let mem = Mem::new(Kind::Anon, 4);
    let u = Arc::new(open_uffd(Features::PAGEFAULT_FLAG_WP));
    u.register(
        Range::new(mem.start(), mem.len as u64),
        RegisterMode::MISSING,
    )
    .unwrap();
    let id = s.m.add_uffd(u).unwrap();
    let e =
        s.m.add_region(
            id,
            handed(mem.start(), mem.len as u64),
            RegionOptions {
                track_dirty: true,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    assert!(e.to_string().contains("must include WP"), "{e}");
    let mem2 = Mem::new(Kind::Anon, 4);
    let ua = Arc::new(open_uffd(features(Kind::Anon, true)));
    let ida = s.m.add_uffd(ua.clone()).unwrap();
    let e =
        s.m.add_region(
            ida,
            handed(mem2.start(), mem2.len as u64),
            RegionOptions {
                register: RegisterMode::MISSING,
                track_dirty: true,
                dirty_sync: true,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    assert!(e.to_string().contains("WP_ASYNC"), "{e}");
    // Refused before anything stays registered: the range can be added.
    s.m.add_region(
        ida,
        handed(mem2.start(), mem2.len as u64),
        RegionOptions {
            register: RegisterMode::MISSING,
            track_dirty: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(s.m.dirty_path(ida, mem2.start()), Some(DirtyPath::Async));
    // remove_region forgets the tracking.
    s.m.remove_region(ida, Range::new(mem2.start(), mem2.len as u64))
        .unwrap();
    assert_eq!(s.m.dirty_path(ida, mem2.start()), None);
}

/// Every other page written: more runs than one PAGEMAP_SCAN result array
/// holds (the walk resumes at `walk_end`), and as many re-protected runs
/// on the sync path. A scan of a sub-range reports and re-arms only that
/// part (bit 0 = the sub-range's first page); the rest stays reported.
fn many_runs(name: &'static str, asynchronous: bool) {
    let _w = Watchdog::new(name, 60);
    let pages = 1024;
    let s = setup(Kind::Anon, pages, asynchronous);
    for i in (0..pages).step_by(2) {
        s.mem.write(i * PAGE + 1, 1);
    }
    // The second half, from an odd page: its written pages are odd bits.
    let (from, n) = (301usize, 700usize);
    let mut bits = vec![0u64; n.div_ceil(64)];
    let got =
        s.m.dirty_scan(
            s.id,
            Range::new(s.mem.page_addr(from), (n * PAGE) as u64),
            true,
            &mut bits,
        )
        .unwrap();
    let want: Vec<usize> = (0..n).filter(|i| (from + i) % 2 == 0).collect();
    let have: Vec<usize> = (0..n)
        .filter(|i| bits[i / 64] & (1 << (i % 64)) != 0)
        .collect();
    assert_eq!(have, want, "{name}: sub-range bits");
    assert_eq!(got as usize, want.len());
    // The whole range: what the sub-range scan did not cover.
    let all = scan(&s, true);
    let rest: Vec<usize> = (0..pages)
        .filter(|p| p % 2 == 0 && !(from..from + n).contains(p))
        .collect();
    assert_eq!(all, rest, "{name}: the rest");
    assert_eq!(scan(&s, true), Vec::<usize>::new());
}

#[test]
fn many_runs_sync() {
    many_runs("many_runs_sync", false);
}
#[test]
fn many_runs_async() {
    many_runs("many_runs_async", true);
}

/// Zero pages and the prefetcher's 4 MiB chunks are placed
/// write-protected too (zero pages as COPYs of the zero buffer with
/// MODE_WP, in chunks of its size): after the prefetch nothing is dirty,
/// and exactly the pages written then are reported.
fn zero_prefetch(name: &'static str, kind: Kind, asynchronous: bool) {
    if kind.is_hugetlb() && skip_without_hugetlb(name) {
        return;
    }
    let _w = Watchdog::new(name, 60);
    let pages = if kind.is_hugetlb() { 4 } else { 3000 };
    let mem = Mem::new(kind, pages);
    let m = Monitor::new(Config::default(), Box::new(DefaultHandler)).unwrap();
    let u = Arc::new(open_uffd(features(kind, asynchronous)));
    let id = m.add_uffd(u).unwrap();
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        RegionOptions {
            source: Source::Zero,
            register: RegisterMode::MISSING,
            prefetch: true,
            track_dirty: true,
            ..Default::default()
        },
    )
    .unwrap();
    let running = m.start().unwrap();
    wait_for("prefetch", 30, || {
        m.stats().prefetched_bytes >= mem.len as u64
    });
    let ps = kind.page();
    let mut bits = vec![0u64; pages.div_ceil(64)];
    let r = Range::new(mem.start(), mem.len as u64);
    assert_eq!(m.dirty_scan(id, r, true, &mut bits).unwrap(), 0, "{name}");
    let written = [0, pages / 3, pages - 1];
    for &p in &written {
        mem.write(p * ps + 7, 1);
    }
    assert_eq!(m.dirty_scan(id, r, true, &mut bits).unwrap(), 3, "{name}");
    for &p in &written {
        assert!(bits[p / 64] & (1 << (p % 64)) != 0, "{name}: page {p}");
    }
    assert_eq!(mem.read(5), 0);
    // No missing fault: the prefetch placed every page (the only faults
    // are the sync path's three WP faults).
    let st = m.stats();
    assert_eq!(st.faults, st.dirty_writes, "{name}: {st:?}");
    assert_eq!(st.dirty_writes, if asynchronous { 0 } else { 3 }, "{name}");
    m.stop();
    running.wait().unwrap();
}

#[test]
fn zero_prefetch_anon_sync() {
    zero_prefetch("zero_prefetch_anon_sync", Kind::Anon, false);
}
#[test]
fn zero_prefetch_anon_async() {
    zero_prefetch("zero_prefetch_anon_async", Kind::Anon, true);
}
#[test]
fn zero_prefetch_shmem_sync() {
    zero_prefetch("zero_prefetch_shmem_sync", Kind::ShmemShared, false);
}
#[test]
fn zero_prefetch_hugetlb_async() {
    zero_prefetch("zero_prefetch_hugetlb_async", Kind::Hugetlb, true);
}
