// SPDX-License-Identifier: MIT OR Apache-2.0
//! A run driven turn by turn (`Monitor::drive_begin` / `drive_turn` /
//! `drive_end`), as the C API's cancellable libuffd_monitor_run does it:
//! it serves like `run`, with and without workers, excludes other runs,
//! and a run whose driver never comes back is ended by `stop` and
//! `drive_end` from another thread, releasing the faulting threads.

mod common;
use common::*;
use std::sync::Arc;
use uffd::monitor::*;
use uffd::*;

/// Take turns until the run is over, blocking in poll(2) as told; says
/// on `first_wait` when it is about to wait the first time.
fn drive(m: &Monitor, d: &mut Driven, first_wait: Option<std::sync::mpsc::Sender<()>>) -> usize {
    let mut waits = 0;
    let mut first_wait = first_wait;
    while let Turn::Wait { fd, timeout_ms } = m.drive_turn(d, 0) {
        waits += 1;
        if let Some(tx) = first_wait.take() {
            let _ = tx.send(());
        }
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        assert!(rc >= 0, "poll: {}", std::io::Error::last_os_error());
    }
    waits
}

fn monitor(workers: u32) -> Monitor {
    let config = Config {
        workers,
        ..Config::default()
    };
    Monitor::new(config, Box::new(DefaultHandler)).unwrap()
}

#[test]
fn driven_run_serves_and_stops() {
    let _w = Watchdog::new("driven_run_serves_and_stops", 60);
    for workers in [0, 2] {
        let pages = 64;
        let mem = Arc::new(Mem::new(Kind::Anon, pages));
        let src: Vec<u8> = (0..pages * PAGE).map(|i| (i * 13 % 251) as u8).collect();
        let u = Arc::new(open_uffd(Features::empty()));
        let m = monitor(workers);
        add_all(
            &m,
            &u,
            &mem,
            Source::Buffer {
                addr: src.as_ptr() as u64,
                len: src.len() as u64,
            },
        );
        let mut d = m.drive_begin().unwrap();
        assert!(m.is_running());
        let e = m.drive_begin().err().expect("a second run is refused");
        assert_eq!(e.errno(), libc::EBUSY);
        let e = m.dispatch(0).expect_err("dispatch is refused while driven");
        assert_eq!(e.errno(), libc::EBUSY);
        // Fault only once the driver waits: with nothing pending, its
        // first turn must end in a wait (whatever fault-around or spinning
        // would serve later without one).
        let (tx, rx) = std::sync::mpsc::channel();
        let driver = {
            let m = m.clone();
            std::thread::spawn(move || {
                let waits = drive(&m, &mut d, Some(tx));
                (waits, m.drive_end(d))
            })
        };
        rx.recv().expect("the driver waits before any fault");
        let readers: Vec<_> = (0..pages)
            .step_by(3)
            .map(|p| reader(&mem, p * PAGE + 9))
            .collect();
        for (k, r) in readers.into_iter().enumerate() {
            assert_eq!(r.join().unwrap(), src[k * 3 * PAGE + 9]);
        }
        m.stop();
        let (waits, result) = driver.join().unwrap();
        result.unwrap();
        assert!(waits > 0, "the driver never waited (workers {workers})");
        assert!(!m.is_running());
        assert!(m.stats().resolved > 0);
    }
}

#[test]
fn abandoned_driven_run_ends_from_another_thread() {
    let _w = Watchdog::new("abandoned_driven_run_ends_from_another_thread", 60);
    for workers in [0, 2] {
        let mem = Arc::new(Mem::new(Kind::Anon, 8));
        let u = Arc::new(open_uffd(Features::empty()));
        let m = monitor(workers);
        add_all(&m, &u, &mem, Source::Zero);
        let mut d = m.drive_begin().unwrap();
        // One turn, then the driver is gone (as a cancelled thread is).
        assert!(matches!(m.drive_turn(&mut d, 0), Turn::Wait { .. }));
        // Without workers a fault now has nobody serving it (workers
        // serve on their own) ...
        let blocked = reader(&mem, 3 * PAGE);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(blocked.is_finished(), workers > 0);
        // ... until the run is ended for the driver: stopped, the region
        // released, the faulting thread let go (it reads an empty page).
        m.stop();
        m.drive_end(d).unwrap();
        assert!(!m.is_running());
        assert_eq!(blocked.join().unwrap(), 0);
        // Released: pages read without a monitor.
        assert_eq!(mem.read(5 * PAGE), 0);
    }
}

#[test]
fn driven_run_reports_a_poll_failure() {
    let _w = Watchdog::new("driven_run_reports_a_poll_failure", 30);
    let m = monitor(0);
    let mut d = m.drive_begin().unwrap();
    assert_eq!(m.drive_turn(&mut d, libc::ENOMEM), Turn::Done);
    let e = m
        .drive_end(d)
        .expect_err("the poll failure is the run's result");
    assert_eq!(e.errno(), libc::ENOMEM);
    assert!(!m.is_running());
}
