// SPDX-License-Identifier: MIT OR Apache-2.0
//! A callback that resolves faults with the handle's own operations (a
//! client with its own resolution code, issue 12 item 1) says so with
//! `Verdict::ResolvedByCaller`: the monitor wakes the page and counts it
//! resolved. Before, the only verdict was `Resolved`, which the monitor
//! checks against its own resolution: the fault was failed ("said it
//! resolved the fault but did not") and the thread got SIGBUS.
#![allow(unsafe_code)]

mod common;
use common::*;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use uffd::monitor::*;
use uffd::*;

/// Places each faulting page itself with UFFDIO_COPY (DONTWAKE when asked,
/// so that only the monitor's wake releases the thread).
struct PlacesItself {
    uffd: Arc<Uffd>,
    data: Arc<Vec<u8>>,
    base: u64,
    dontwake: bool,
    calls: Arc<AtomicU64>,
}

impl Handler for PlacesItself {
    fn on_fault(&self, ctx: &FaultCtx<'_>) -> Verdict {
        self.calls.fetch_add(1, SeqCst);
        let page = ctx.token.page;
        let off = (page - self.base) as usize;
        let mode = if self.dontwake {
            CopyMode::DONTWAKE
        } else {
            CopyMode::empty()
        };
        // SAFETY: the destination is the test's registered mapping, which
        // no Rust value borrows while faults are served; the source is
        // `data`, alive for the handler's life.
        let r = unsafe {
            self.uffd.copy(
                Range::new(page, ctx.token.page_size),
                self.data[off..].as_ptr(),
                mode,
            )
        };
        match r {
            Ok(_) => Verdict::ResolvedByCaller,
            Err(e) if e.errno() == libc::EEXIST => Verdict::ResolvedByCaller,
            Err(e) => Verdict::Error(e.errno()),
        }
    }
}

fn case(kind: Kind, dontwake: bool) {
    let pages = 8;
    let mem = Arc::new(Mem::new(kind, pages));
    let ps = kind.page();
    let data = Arc::new(pattern(mem.len, 29));
    let u = Arc::new(open_uffd(kind.missing_features()));
    let calls = Arc::new(AtomicU64::new(0));
    let h = PlacesItself {
        uffd: u.clone(),
        data: data.clone(),
        base: mem.start(),
        dontwake,
        calls: calls.clone(),
    };
    let m = Monitor::new(Config::default(), Box::new(h)).unwrap();
    add_all(&m, &u, &mem, Source::Callback);
    let run = m.start().unwrap();
    let readers: Vec<_> = (0..pages).map(|p| reader(&mem, p * ps + 17)).collect();
    for (p, t) in readers.into_iter().enumerate() {
        wait_for(&format!("page {p} ({kind:?}) to be served"), 10, || {
            t.is_finished()
        });
        assert_eq!(t.join().unwrap(), data[p * ps + 17], "page {p} ({kind:?})");
    }
    assert_eq!(mem.bytes(), &data[..], "{kind:?}: every byte");
    let s = m.stats();
    assert_eq!(s.failed, 0, "{s:?}");
    assert!(s.resolved >= pages as u64 / 2, "{s:?}");
    assert!(calls.load(SeqCst) >= pages as u64 / 2);
    m.stop();
    run.wait().unwrap();
}

#[test]
fn client_resolves_anon() {
    let _w = Watchdog::new("client_resolves_anon", 60);
    case(Kind::Anon, false);
    case(Kind::Anon, true);
}

#[test]
fn client_resolves_shmem() {
    let _w = Watchdog::new("client_resolves_shmem", 60);
    case(Kind::ShmemShared, true);
}

#[test]
fn client_resolves_hugetlb() {
    if common::skip_without_hugetlb("client_resolves_hugetlb") {
        return;
    }
    let _w = Watchdog::new("client_resolves_hugetlb", 60);
    case(Kind::Hugetlb, true);
}
