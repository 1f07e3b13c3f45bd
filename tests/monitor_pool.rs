// SPDX-License-Identifier: MIT OR Apache-2.0
//! The worker pool's hand-off rule, on the real kernel: with workers,
//! faults whose resolution may wait (a callback, here one that waits as a
//! network fetch would) go to the workers and run side by side; faults the
//! kernel resolves from memory (a Buffer source) stay on the reader,
//! unless the monitor is told to hand off every fault.
//!
//! Which thread resolved a fault is read from the callback (the monitor's
//! threads are named: "uffd-monitor" reads, "uffd-worker-N" work) and from
//! the `handed_off` counter.
#![allow(unsafe_code)]

mod common;
use common::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uffd::monitor::*;
use uffd::*;

/// Serves Callback regions from `src`, after waiting `delay` (a fetch),
/// counting the faults each thread resolved.
struct Fetcher {
    src: Vec<u8>,
    delay: Duration,
    by_thread: Mutex<HashMap<String, usize>>,
}

impl Handler for Fetcher {
    fn on_fault(&self, ctx: &FaultCtx<'_>) -> Verdict {
        let name = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_string();
        *self.by_thread.lock().unwrap().entry(name).or_default() += 1;
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        let Some(info) = ctx.region else {
            return Verdict::Error(libc::EFAULT);
        };
        let src = self.src.as_ptr() as u64 + info.source_offset;
        match ctx.resolve(Action::Copy(src)) {
            Ok(_) => Verdict::Resolved,
            Err(e) => Verdict::Error(e.errno()),
        }
    }
}

/// Serve `pages` anonymous pages with 4 workers, from a callback that
/// waits `delay` (or, with `buffer`, straight from memory), while `threads`
/// threads fault on all of them; check every byte and return how many
/// faults each thread's callbacks resolved, and the monitor's counters.
fn serve(
    pages: usize,
    threads: usize,
    delay: Duration,
    buffer: bool,
    hand_off_all: bool,
) -> (HashMap<String, usize>, StatsSnapshot) {
    let mem = Arc::new(Mem::new(Kind::Anon, pages));
    let src: Vec<u8> = (0..pages * PAGE).map(|i| (i % 251) as u8 + 1).collect();
    let handler = Arc::new(Fetcher {
        src: src.clone(),
        delay,
        by_thread: Mutex::new(HashMap::new()),
    });
    struct Shared(Arc<Fetcher>);
    impl Handler for Shared {
        fn on_fault(&self, ctx: &FaultCtx<'_>) -> Verdict {
            self.0.on_fault(ctx)
        }
    }
    let config = Config {
        workers: 4,
        hand_off_all,
        window_min: 1,
        window_max: 1,
        adaptive: false,
        ..Config::default()
    };
    let m = Monitor::new(config, Box::new(Shared(handler.clone()))).unwrap();
    let source = if buffer {
        Source::Buffer {
            addr: src.as_ptr() as u64,
            len: src.len() as u64,
        }
    } else {
        Source::Callback
    };
    add_all(&m, &Arc::new(open_uffd(Features::empty())), &mem, source);
    let run = m.start().unwrap();
    let faulters: Vec<_> = (0..threads)
        .map(|t| {
            let mem = mem.clone();
            let src = src.clone();
            std::thread::spawn(move || {
                for p in (t..pages).step_by(threads) {
                    let off = p * PAGE + 7;
                    assert_eq!(mem.read(off), src[off], "page {p}");
                }
            })
        })
        .collect();
    for f in faulters {
        f.join().unwrap();
    }
    m.stop();
    run.wait().unwrap();
    assert_eq!(mem.bytes(), &src[..], "region content");
    let counts = handler.by_thread.lock().unwrap().clone();
    let stats = m.stats();
    assert_eq!(
        stats.resolved, pages as u64,
        "one resolve per page: {stats:?}"
    );
    if !buffer {
        assert_eq!(
            counts.values().sum::<usize>(),
            pages,
            "one callback per page: {counts:?}"
        );
    }
    (counts, stats)
}

fn on_workers(counts: &HashMap<String, usize>) -> (usize, usize) {
    let busy = counts
        .keys()
        .filter(|n| n.starts_with("uffd-worker-"))
        .count();
    let faults = counts
        .iter()
        .filter(|(n, _)| n.starts_with("uffd-worker-"))
        .map(|(_, c)| c)
        .sum();
    (busy, faults)
}

/// Faults that take 300 us each to fetch go to the workers, and several
/// workers fetch at once.
#[test]
fn slow_callbacks_run_on_several_workers() {
    let _w = Watchdog::new("slow_callbacks_run_on_several_workers", 60);
    let pages = 256;
    let (counts, stats) = serve(pages, 4, Duration::from_micros(300), false, false);
    let (busy, faults) = on_workers(&counts);
    eprintln!(
        "slow callbacks: {counts:?}, handed off {}",
        stats.handed_off
    );
    assert!(busy >= 2, "faults ran on {busy} worker(s): {counts:?}");
    assert_eq!(faults, pages, "faults resolved off the workers: {counts:?}");
    assert_eq!(
        stats.handed_off,
        stats.faults - stats.coalesced,
        "{stats:?}"
    );
}

/// Copies from memory are resolved by the reader: a hand-off would cost
/// more than the copy.
#[test]
fn buffer_faults_stay_on_the_reader() {
    let _w = Watchdog::new("buffer_faults_stay_on_the_reader", 60);
    let (_, stats) = serve(1024, 4, Duration::ZERO, true, false);
    eprintln!("buffer source: {stats:?}");
    assert!(stats.faults >= 1024, "{stats:?}");
    assert_eq!(stats.handed_off, 0, "{stats:?}");
}

/// With hand_off_all, copies from memory go to the workers too.
#[test]
fn hand_off_all_sends_buffer_faults_to_workers() {
    let _w = Watchdog::new("hand_off_all_sends_buffer_faults_to_workers", 60);
    let (_, stats) = serve(1024, 4, Duration::ZERO, true, true);
    eprintln!("buffer source, hand off all: {stats:?}");
    assert_eq!(
        stats.handed_off,
        stats.faults - stats.coalesced,
        "{stats:?}"
    );
}

/// Cheap callbacks go to the workers as well (a callback may wait; the
/// monitor cannot tell which will).
#[test]
fn cheap_callbacks_go_to_workers() {
    let _w = Watchdog::new("cheap_callbacks_go_to_workers", 60);
    let pages = 512;
    let (counts, _) = serve(pages, 4, Duration::ZERO, false, false);
    let (_, faults) = on_workers(&counts);
    eprintln!("cheap callbacks: {counts:?}");
    assert_eq!(faults, pages, "faults not on workers: {counts:?}");
}
