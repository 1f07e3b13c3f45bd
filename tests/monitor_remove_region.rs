// SPDX-License-Identifier: MIT OR Apache-2.0
//! `Monitor::remove_region` (issue 12 item 1): part of a region stops
//! being served while the rest stays; the removed range is unregistered,
//! so a thread waiting there (a fault the callback deferred) is released
//! instead of waiting for ever, and the memory faults as without
//! userfaultfd; bad ranges and ids are EINVAL. Before, there was no way to
//! take a region back from a running monitor short of removing the whole
//! handle.
#![allow(unsafe_code)]

mod common;
use common::*;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use uffd::monitor::*;
use uffd::*;

/// Serves pages 0..4 of the region from `data`; defers the others (the
/// thread waits), counting them.
struct HalfServed {
    data: Arc<Vec<u8>>,
    base: u64,
    deferred: Arc<AtomicU64>,
}

impl Handler for HalfServed {
    fn on_fault(&self, ctx: &FaultCtx<'_>) -> Verdict {
        let off = ctx.token.page - self.base;
        if off >= 4 * PAGE as u64 {
            self.deferred.fetch_add(1, SeqCst);
            return Verdict::Defer;
        }
        match ctx.resolve(Action::Copy(self.data.as_ptr() as u64 + off)) {
            Ok(_) => Verdict::Resolved,
            Err(e) => Verdict::Error(e.errno()),
        }
    }
}

#[test]
fn remove_part_of_a_region_while_a_thread_waits_there() {
    let _w = Watchdog::new("remove_part_of_a_region_while_a_thread_waits_there", 60);
    let mem = Arc::new(Mem::new(Kind::Anon, 8));
    let data = Arc::new(pattern(mem.len, 41));
    let deferred = Arc::new(AtomicU64::new(0));
    let u = Arc::new(open_uffd(Features::empty()));
    let h = HalfServed {
        data: data.clone(),
        base: mem.start(),
        deferred: deferred.clone(),
    };
    let m = Monitor::new(
        Config {
            adaptive: false,
            ..Config::default()
        },
        Box::new(h),
    )
    .unwrap();
    let id = add_all(&m, &u, &mem, Source::Callback);
    let run = m.start().unwrap();
    assert_eq!(mem.read(PAGE + 3), data[PAGE + 3]);
    // A thread waits on page 6 (deferred, never completed).
    let t = reader(&mem, 6 * PAGE + 9);
    wait_for("the fault on page 6 to be deferred", 10, || {
        deferred.load(SeqCst) >= 1
    });
    assert!(!t.is_finished());
    // Take pages 4..8 back: the waiting thread is released and reads what
    // the memory holds without userfaultfd (anonymous: zeros).
    m.remove_region(
        id,
        Range::new(mem.start() + 4 * PAGE as u64, 4 * PAGE as u64),
    )
    .unwrap();
    wait_for(
        "the thread waiting in the removed range to be released",
        10,
        || t.is_finished(),
    );
    assert_eq!(t.join().unwrap(), 0);
    assert_eq!(mem.read(5 * PAGE), 0, "not served any more, not hung");
    // The rest of the region is still served.
    assert_eq!(mem.read(2 * PAGE + 5), data[2 * PAGE + 5]);
    // Bad input: the same range again, a range outside every region, an
    // unknown id, a misaligned or wrapping range.
    let again = m.remove_region(id, Range::new(mem.start() + 4 * PAGE as u64, PAGE as u64));
    assert_eq!(again.unwrap_err().errno(), libc::EINVAL);
    assert_eq!(
        m.remove_region(id + 7, Range::new(mem.start(), PAGE as u64))
            .unwrap_err()
            .errno(),
        libc::EINVAL
    );
    assert_eq!(
        m.remove_region(id, Range::new(mem.start() + 1, PAGE as u64))
            .unwrap_err()
            .errno(),
        libc::EINVAL
    );
    assert_eq!(
        m.remove_region(id, Range::new(u64::MAX - 4095, 8192))
            .unwrap_err()
            .errno(),
        libc::EINVAL
    );
    let s = m.stats();
    assert_eq!(s.failed, 0, "{s:?}");
    m.stop();
    run.wait().unwrap();
}

/// The whole region, then adding it again: served afresh.
#[test]
fn remove_whole_region_then_add_again() {
    let _w = Watchdog::new("remove_whole_region_then_add_again", 60);
    let mem = Arc::new(Mem::new(Kind::ShmemShared, 4));
    let data = pattern(mem.len, 7);
    let u = Arc::new(open_uffd(Features::MISSING_SHMEM));
    let m = Monitor::new(Config::default(), Box::new(DefaultHandler)).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    let opts = || RegionOptions {
        source: Source::Buffer {
            addr: data.as_ptr() as u64,
            len: data.len() as u64,
        },
        register: RegisterMode::MISSING,
        ..RegionOptions::default()
    };
    m.add_region(id, handed(mem.start(), mem.len as u64), opts())
        .unwrap();
    let run = m.start().unwrap();
    m.remove_region(id, Range::new(mem.start(), mem.len as u64))
        .unwrap();
    m.add_region(id, handed(mem.start(), mem.len as u64), opts())
        .unwrap();
    assert_eq!(mem.bytes(), &data[..]);
    m.stop();
    run.wait().unwrap();
}

/// A budgeted region's resident pages stop counting in `resident_pages`
/// when the region is removed (`remove_region`) and when its handle is
/// (`remove_uffd`). Before, remove_region forgot the region but not its
/// budget: the counter stayed at 4 for good (found writing
/// c-examples/buffer-pool).
#[test]
fn removing_a_budgeted_region_forgets_its_resident_pages() {
    let _w = Watchdog::new("removing_a_budgeted_region_forgets_its_resident_pages", 30);
    let pages = 16;
    let data = Arc::new(content(pages * PAGE, 41));
    let budgeted = |m: &Monitor, id: u32, mem: &Mem| {
        m.add_region(
            id,
            handed(mem.start(), mem.len as u64),
            RegionOptions {
                source: Source::Buffer {
                    addr: data.as_ptr() as u64,
                    len: data.len() as u64,
                },
                register: RegisterMode::MISSING,
                max_resident: 4 * PAGE as u64,
                read_only: true,
                ..RegionOptions::default()
            },
        )
        .unwrap();
    };
    let m = Monitor::new(Config::default(), Box::new(DefaultHandler)).unwrap();
    let (a, b) = (Mem::new(Kind::Anon, pages), Mem::new(Kind::Anon, pages));
    let ua = Arc::new(open_uffd(Features::empty()));
    let ub = Arc::new(open_uffd(Features::empty()));
    let ida = m.add_uffd(ua).unwrap();
    let idb = m.add_uffd(ub).unwrap();
    budgeted(&m, ida, &a);
    budgeted(&m, idb, &b);
    let run = m.start().unwrap();
    for p in 0..pages {
        assert_eq!(a.read(p * PAGE + 1), data[p * PAGE + 1]);
        assert_eq!(b.read(p * PAGE + 2), data[p * PAGE + 2]);
    }
    // Counters are complete once the faulting threads' pages are counted.
    wait_for("8 pages resident", 10, || m.stats().resident_pages == 8);
    m.remove_region(ida, Range::new(a.start(), a.len as u64))
        .unwrap();
    assert_eq!(m.stats().resident_pages, 4, "region a's 4 pages forgotten");
    m.remove_uffd(idb).unwrap();
    assert_eq!(m.stats().resident_pages, 0, "handle b's 4 pages forgotten");
    m.stop();
    run.wait().unwrap();
}
