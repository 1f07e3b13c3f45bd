// SPDX-License-Identifier: MIT OR Apache-2.0
//! The monitor's lifecycle (docs/DESIGN.md §5): new → running → stopping →
//! stopped, and a stopped monitor runs again. Here: starts racing each
//! other, and a run while started. Real kernel, real memory.
#![allow(unsafe_code)]

mod common;
use common::*;
use std::sync::{Arc, Barrier};
use uffd::monitor::*;
use uffd::*;

/// Eight threads call `start` at once, 20 times over: exactly one gets a
/// running monitor, the others EBUSY, and the one serves. Before the fix
/// `start` looked at `running` without claiming it: two racing starts
/// both spawned a thread, and the loser's `wait` returned EBUSY from a
/// run the caller had been told was started.
#[test]
fn racing_starts_start_once() {
    let _w = Watchdog::new("racing_starts_start_once", 120);
    let mem = Arc::new(Mem::new(Kind::Anon, 32));
    let u = Arc::new(open_uffd(Features::empty()));
    let m = Monitor::new(
        Config {
            adaptive: false,
            // The region stays served across the stops (each round faults
            // on a fresh page of it).
            stop_policy: StopPolicy::Block,
            ..Config::default()
        },
        Box::new(DefaultHandler),
    )
    .unwrap();
    add_all(&m, &u, &mem, Source::Zero);
    for round in 0..20 {
        let barrier = Arc::new(Barrier::new(8));
        let racers: Vec<_> = (0..8)
            .map(|_| {
                let (m, b) = (m.clone(), barrier.clone());
                std::thread::spawn(move || {
                    b.wait();
                    m.start()
                })
            })
            .collect();
        let mut started = Vec::new();
        let mut busy = 0;
        for r in racers {
            match r.join().unwrap() {
                Ok(run) => started.push(run),
                Err(e) => {
                    assert_eq!(e.errno(), libc::EBUSY, "{e}");
                    busy += 1;
                }
            }
        }
        assert_eq!(started.len(), 1, "round {round}: {busy} EBUSY");
        // The one started serves.
        assert_eq!(mem.read(round * PAGE + 3), 0);
        // And a run on this thread meanwhile is refused.
        assert_eq!(m.run().unwrap_err().errno(), libc::EBUSY);
        m.stop();
        for run in started {
            run.wait().expect("the started run ends cleanly");
        }
        assert!(!m.is_running());
    }
    assert_eq!(m.stats().resolved, 20);
}
