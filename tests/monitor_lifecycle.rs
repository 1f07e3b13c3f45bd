// SPDX-License-Identifier: MIT OR Apache-2.0
//! The monitor's lifecycle (src/monitor/lifecycle.rs, docs/DESIGN.md §5):
//! new → running → stopping → stopped, and a stopped monitor runs again
//! (run, start, dispatch); a stop asked while idle ends the next run at
//! once; starts racing each other; run, start and dispatch while running
//! (EBUSY). Real kernel, real memory.
#![allow(unsafe_code)]

mod common;
use common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
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

fn zero_monitor(mem: &Mem, u: &Arc<Uffd>, workers: u32) -> Monitor {
    let m = Monitor::new(
        Config {
            adaptive: false,
            workers,
            // The region stays served across the stops.
            stop_policy: StopPolicy::Block,
            ..Config::default()
        },
        Box::new(DefaultHandler),
    )
    .unwrap();
    add_all(&m, u, mem, Source::Zero);
    m
}

/// Holds each fault in its callback until `go` is set, then zero-fills it.
struct Hold {
    inside: Arc<AtomicUsize>,
    go: Arc<AtomicBool>,
}
impl Handler for Hold {
    fn on_fault(&self, ctx: &FaultCtx<'_>) -> Verdict {
        self.inside.fetch_add(1, SeqCst);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.go.load(SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        match ctx.resolve(Action::Zero) {
            Ok(_) => Verdict::Resolved,
            Err(e) => Verdict::Error(e.errno()),
        }
    }
}

/// new → running → stopping → stopped, each state seen from outside: a
/// new monitor neither runs nor stops; started, it runs and serves; asked
/// to stop while a fault is in its callback, it is stopping (still
/// running) until the callback returns; then stopped (not running, the
/// stop still reported), and the run ends cleanly.
#[test]
fn new_running_stopping_stopped() {
    let _w = Watchdog::new("new_running_stopping_stopped", 60);
    for workers in [0, 2] {
        let mem = Arc::new(Mem::new(Kind::Anon, 8));
        let u = Arc::new(open_uffd(Features::empty()));
        let (inside, go) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(true)),
        );
        let h = Hold {
            inside: inside.clone(),
            go: go.clone(),
        };
        let m = Monitor::new(
            Config {
                workers,
                hand_off_all: workers > 0,
                ..Config::default()
            },
            Box::new(h),
        )
        .unwrap();
        add_all(&m, &u, &mem, Source::Callback);
        assert!(!m.is_running() && !m.is_stopping(), "new");
        let run = m.start().unwrap();
        assert!(m.is_running() && !m.is_stopping(), "running");
        assert_eq!(mem.read(5), 0, "running: serves");
        go.store(false, SeqCst);
        let t = reader(&mem, 3 * PAGE + 1);
        wait_for("the fault in its callback", 10, || inside.load(SeqCst) == 2);
        m.stop();
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            m.is_running() && m.is_stopping(),
            "stopping: the run finishes its callback first (workers={workers})"
        );
        go.store(true, SeqCst);
        assert_eq!(t.join().unwrap(), 0);
        run.wait().expect("a stopped run ends cleanly");
        assert!(!m.is_running() && m.is_stopping(), "stopped");
    }
}

/// A stopped monitor runs again, by each way in: start, run, and
/// dispatch; each serves a new fault, and the stop is forgotten.
#[test]
fn restart_after_stop_by_run_start_and_dispatch() {
    let _w = Watchdog::new("restart_after_stop_by_run_start_and_dispatch", 60);
    let mem = Arc::new(Mem::new(Kind::Anon, 16));
    let u = Arc::new(open_uffd(Features::empty()));
    let m = zero_monitor(&mem, &u, 0);
    let mut page = 0;
    let mut touch = |m: &Monitor| {
        page += 1;
        assert_eq!(mem.read(page * PAGE + 7), 0);
        assert!(!m.is_stopping());
    };
    for round in 0..3 {
        // start
        let run = m.start().unwrap();
        touch(&m);
        m.stop();
        run.wait().unwrap();
        assert!(!m.is_running() && m.is_stopping(), "round {round}");
        // run, on another thread
        let r = {
            let m = m.clone();
            std::thread::spawn(move || m.run())
        };
        wait_for("the run to begin", 10, || {
            m.is_running() && !m.is_stopping()
        });
        touch(&m);
        m.stop();
        r.join().unwrap().unwrap();
        assert!(!m.is_running() && m.is_stopping());
        // dispatch, while a thread faults
        let t = reader(&mem, (13 + round) * PAGE);
        let mut served = false;
        for _ in 0..1000 {
            m.dispatch(10).expect("dispatch after a stop serves again");
            assert!(!m.is_stopping());
            if t.is_finished() {
                served = true;
                break;
            }
        }
        assert!(served, "dispatch served the fault");
        assert_eq!(t.join().unwrap(), 0);
        m.stop();
        assert_eq!(m.dispatch(0).unwrap_err().errno(), libc::ECANCELED);
    }
    assert!(m.stats().resolved >= 9);
}

/// A stop asked while nothing runs is kept for the next run, which ends at
/// once (cleanly, serving nothing); the run after that serves. Alike for
/// start and for dispatch (which says ECANCELED).
#[test]
fn stop_while_idle_ends_the_next_run_at_once() {
    let _w = Watchdog::new("stop_while_idle_ends_the_next_run_at_once", 60);
    let mem = Arc::new(Mem::new(Kind::Anon, 8));
    let u = Arc::new(open_uffd(Features::empty()));
    let m = zero_monitor(&mem, &u, 0);
    // Before any run.
    m.stop();
    assert!(!m.is_running() && m.is_stopping());
    m.run()
        .expect("the run asked to stop before it began ends cleanly");
    assert_eq!(m.stats().resolved, 0);
    // After a run (the monitor stopped), by start.
    let run = m.start().unwrap();
    assert_eq!(mem.read(PAGE), 0);
    m.stop();
    run.wait().unwrap();
    m.stop();
    let run = m.start().unwrap();
    run.wait()
        .expect("a started run asked to stop before ends at once");
    assert_eq!(m.stats().resolved, 1);
    // By dispatch.
    m.stop();
    assert_eq!(m.dispatch(-1).unwrap_err().errno(), libc::ECANCELED);
    // And the next run serves.
    let run = m.start().unwrap();
    assert!(!m.is_stopping());
    assert_eq!(mem.read(2 * PAGE), 0);
    m.stop();
    run.wait().unwrap();
    assert_eq!(m.stats().resolved, 2);
}

/// While a run is active (started, or `run` on another thread, with or
/// without workers), run, start and dispatch are refused with EBUSY, and
/// the active run goes on serving.
#[test]
fn run_start_and_dispatch_while_running_are_ebusy() {
    let _w = Watchdog::new("run_start_and_dispatch_while_running_are_ebusy", 60);
    for workers in [0, 2] {
        let mem = Arc::new(Mem::new(Kind::Anon, 8));
        let u = Arc::new(open_uffd(Features::empty()));
        let m = zero_monitor(&mem, &u, workers);
        for by_run in [false, true] {
            let (started, r) = if by_run {
                let mc = m.clone();
                let r = std::thread::spawn(move || mc.run());
                wait_for("the run to begin", 10, || m.is_running());
                (None, Some(r))
            } else {
                (Some(m.start().unwrap()), None)
            };
            assert_eq!(m.run().unwrap_err().errno(), libc::EBUSY);
            assert_eq!(m.start().err().map(|e| e.errno()), Some(libc::EBUSY));
            assert_eq!(m.dispatch(0).unwrap_err().errno(), libc::EBUSY);
            let off = if by_run { 6 * PAGE } else { 2 * PAGE };
            assert_eq!(mem.read(off + 9), 0, "still serving (workers={workers})");
            m.stop();
            if let Some(run) = started {
                run.wait().unwrap();
            }
            if let Some(r) = r {
                r.join().unwrap().unwrap();
            }
            assert!(!m.is_running());
        }
    }
}
