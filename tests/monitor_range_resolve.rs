// SPDX-License-Identifier: MIT OR Apache-2.0
//! Resolving with a length and the kernel's mode bits (issue 12 item 1):
//! a callback places several pages at once, write-protected, and learns
//! of the first write to each (dirty tracking); zero and continue ranges;
//! lengths that are not whole pages or run past the region are EINVAL.
//! Before, a callback could place one page, without mode bits: a clean page
//! could not be placed write-protected.
#![allow(unsafe_code)]

mod common;
use common::*;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use uffd::monitor::*;
use uffd::*;

const PAGES: usize = 8;

/// Missing fault: place 4 pages (the region's half) write-protected. WP
/// fault: note the page dirty and unprotect it. Also tries bad lengths.
struct DirtyTracker {
    data: Arc<Vec<u8>>,
    base: u64,
    dirty: Arc<Mutex<Vec<u64>>>,
    bad_len_errnos: Arc<Mutex<Vec<i32>>>,
    missing: Arc<AtomicU64>,
}

impl Handler for DirtyTracker {
    fn on_fault(&self, ctx: &FaultCtx<'_>) -> Verdict {
        let page = ctx.token.page;
        let ps = ctx.token.page_size;
        if ctx.fault.flags.contains(FaultFlags::WP) {
            self.dirty.lock().unwrap().push((page - self.base) / ps);
            return match ctx.resolve(Action::Unprotect) {
                Ok(_) => Verdict::Resolved,
                Err(e) => Verdict::Error(e.errno()),
            };
        }
        self.missing.fetch_add(1, SeqCst);
        let half = (page - self.base) / ps / 4 * 4;
        let first = self.base + half * ps;
        if first == page {
            // Bad lengths first: not whole pages, past the region.
            for len in [ps / 2, (PAGES as u64 + 1) * ps] {
                let e = ctx
                    .resolve(Action::CopyRange {
                        src: self.data.as_ptr() as u64,
                        len,
                        mode: CopyMode::WP,
                    })
                    .unwrap_err();
                self.bad_len_errnos.lock().unwrap().push(e.errno());
            }
        }
        let off = page - self.base;
        let len = first + 4 * ps - page;
        match ctx.resolve(Action::CopyRange {
            src: self.data.as_ptr() as u64 + off,
            len,
            mode: CopyMode::WP,
        }) {
            Ok(_) => Verdict::Resolved,
            Err(e) => Verdict::Error(e.errno()),
        }
    }
}

#[test]
fn copy_range_write_protected_tracks_dirty_pages() {
    let _w = Watchdog::new("copy_range_write_protected_tracks_dirty_pages", 60);
    let mem = Arc::new(Mem::new(Kind::Anon, PAGES));
    let data = Arc::new(pattern(mem.len, 3));
    let dirty = Arc::new(Mutex::new(Vec::new()));
    let bad = Arc::new(Mutex::new(Vec::new()));
    let missing = Arc::new(AtomicU64::new(0));
    let u = Arc::new(open_uffd(Features::PAGEFAULT_FLAG_WP));
    let h = DirtyTracker {
        data: data.clone(),
        base: mem.start(),
        dirty: dirty.clone(),
        bad_len_errnos: bad.clone(),
        missing: missing.clone(),
    };
    let m = Monitor::new(Config::default(), Box::new(h)).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        RegionOptions {
            source: Source::Callback,
            register: RegisterMode::MISSING | RegisterMode::WP,
            ..RegionOptions::default()
        },
    )
    .unwrap();
    let run = m.start().unwrap();
    // Reading every page: two missing faults (4 pages each), no WP fault.
    for p in 0..PAGES {
        assert_eq!(mem.read(p * PAGE + 11), data[p * PAGE + 11], "page {p}");
    }
    assert_eq!(missing.load(SeqCst), 2);
    assert!(dirty.lock().unwrap().is_empty(), "reads are not writes");
    // Writing pages 1 and 6: each one WP fault, noted.
    let w1 = writer(&mem, PAGE + 5, 0xEE);
    let w6 = writer(&mem, 6 * PAGE + 5, 0xDD);
    w1.join().unwrap();
    w6.join().unwrap();
    let mut d = dirty.lock().unwrap().clone();
    d.sort();
    assert_eq!(d, vec![1, 6]);
    assert_eq!(mem.read(PAGE + 5), 0xEE);
    assert_eq!(mem.read(6 * PAGE + 5), 0xDD);
    assert_eq!(mem.read(2 * PAGE + 5), data[2 * PAGE + 5]);
    assert_eq!(*bad.lock().unwrap(), vec![libc::EINVAL; 4]);
    assert_eq!(m.stats().failed, 0);
    m.stop();
    run.wait().unwrap();
}

/// ZeroRange over a callback region: one fault places 4 zero pages.
struct Zeros;
impl Handler for Zeros {
    fn on_fault(&self, ctx: &FaultCtx<'_>) -> Verdict {
        let ps = ctx.token.page_size;
        let left = ctx.region.map_or(ps, |r| r.start + r.len - ctx.token.page);
        match ctx.resolve(Action::ZeroRange {
            len: left.min(4 * ps),
        }) {
            Ok(_) => Verdict::Resolved,
            Err(e) => Verdict::Error(e.errno()),
        }
    }
}

fn zero_case(kind: Kind) {
    let mem = Arc::new(Mem::new(kind, 4));
    let u = Arc::new(open_uffd(kind.missing_features()));
    let m = Monitor::new(Config::default(), Box::new(Zeros)).unwrap();
    add_all(&m, &u, &mem, Source::Callback);
    let run = m.start().unwrap();
    assert!(mem.bytes().iter().all(|&b| b == 0));
    assert_eq!(
        m.stats().faults,
        1,
        "{kind:?}: one fault placed all 4 pages"
    );
    m.stop();
    run.wait().unwrap();
}

#[test]
fn zero_range_anon_and_hugetlb() {
    let _w = Watchdog::new("zero_range_anon_and_hugetlb", 60);
    zero_case(Kind::Anon);
    zero_case(Kind::ShmemShared);
    if !common::skip_without_hugetlb("zero_range_anon_and_hugetlb (hugetlb part)") {
        zero_case(Kind::Hugetlb);
    }
}

/// MINOR faults resolved 4 pages at a time with `ContinueRange`: the page
/// cache (filled behind the mapping's back) is mapped, one fault per 4
/// pages.
struct ContinueFour;
impl Handler for ContinueFour {
    fn on_fault(&self, ctx: &FaultCtx<'_>) -> Verdict {
        let ps = ctx.token.page_size;
        let left = ctx.region.map_or(ps, |r| r.start + r.len - ctx.token.page);
        match ctx.resolve(Action::ContinueRange {
            len: left.min(4 * ps),
            mode: ContinueMode::empty(),
        }) {
            Ok(_) => Verdict::Resolved,
            Err(e) => Verdict::Error(e.errno()),
        }
    }
}

#[test]
fn continue_range_maps_page_cache_pages() {
    let _w = Watchdog::new("continue_range_maps_page_cache_pages", 60);
    let mem = Arc::new(Mem::new(Kind::ShmemShared, PAGES));
    let data = content(mem.len, 19);
    mem.pwrite_memfd(0, &data);
    let u = Arc::new(open_uffd(Features::MINOR_SHMEM));
    let m = Monitor::new(Config::default(), Box::new(ContinueFour)).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        RegionOptions {
            source: Source::Callback,
            register: RegisterMode::MINOR,
            ..RegionOptions::default()
        },
    )
    .unwrap();
    let run = m.start().unwrap();
    assert_eq!(mem.bytes(), &data[..]);
    let s = m.stats();
    assert_eq!(s.faults, 2, "one fault per 4 pages: {s:?}");
    assert_eq!(s.failed, 0, "{s:?}");
    m.stop();
    run.wait().unwrap();
}

/// MOVE with a length: each missing fault moves 4 pages out of a staging
/// buffer (the GC-compaction and post-copy pattern: pages handed over, not
/// copied). Bad lengths are EINVAL.
struct MoveFour {
    staging: Arc<Mem>,
    base: u64,
    bad_len_errnos: Arc<Mutex<Vec<i32>>>,
}

impl Handler for MoveFour {
    fn on_fault(&self, ctx: &FaultCtx<'_>) -> Verdict {
        let ps = ctx.token.page_size;
        let off = ctx.token.page - self.base;
        let left = ctx.region.map_or(ps, |r| r.start + r.len - ctx.token.page);
        if off == 0 {
            for len in [ps / 2, left + ps] {
                let e = ctx
                    .resolve(Action::MoveRange {
                        src: handed(self.staging.start() + off, len),
                        mode: MoveMode::empty(),
                    })
                    .unwrap_err();
                self.bad_len_errnos.lock().unwrap().push(e.errno());
            }
        }
        match ctx.resolve(Action::MoveRange {
            src: handed(self.staging.start() + off, left.min(4 * ps)),
            mode: MoveMode::empty(),
        }) {
            Ok(_) => Verdict::Resolved,
            Err(e) => Verdict::Error(e.errno()),
        }
    }
}

#[test]
fn move_range_hands_pages_over_four_at_a_time() {
    let _w = Watchdog::new("move_range_hands_pages_over_four_at_a_time", 60);
    let mem = Arc::new(Mem::new(Kind::Anon, PAGES));
    let staging = Arc::new(Mem::new(Kind::Anon, PAGES));
    let data = content(mem.len, 23);
    for (i, &b) in data.iter().enumerate() {
        staging.write(i, b);
    }
    let u = Arc::new(open_uffd(Features::MOVE));
    let bad = Arc::new(Mutex::new(Vec::new()));
    let h = MoveFour {
        staging: staging.clone(),
        base: mem.start(),
        bad_len_errnos: bad.clone(),
    };
    let m = Monitor::new(Config::default(), Box::new(h)).unwrap();
    add_all(&m, &u, &mem, Source::Callback);
    let run = m.start().unwrap();
    assert_eq!(mem.bytes(), &data[..]);
    let s = m.stats();
    assert_eq!(s.faults, 2, "one fault per 4 pages: {s:?}");
    assert_eq!(s.failed, 0, "{s:?}");
    assert_eq!(*bad.lock().unwrap(), vec![libc::EINVAL; 2]);
    // The pages left the staging buffer: it reads as fresh zero pages.
    assert!(staging.bytes().iter().all(|&b| b == 0));
    m.stop();
    run.wait().unwrap();
}
