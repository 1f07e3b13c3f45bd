// SPDX-License-Identifier: MIT OR Apache-2.0
//! The monitor's lifecycle: one state value and its transitions.
//!
//! ```text
//!                 claim (run/start/drive_begin; else EBUSY)
//!   ┌──────┐ ─────────────────────────────────────────────▶ ┌──────────┐
//!   │ Idle │                                                 │ Starting │
//!   └──────┘ ◀──────── release (no thread could start) ──── └──────────┘
//!     ▲  │ ask_stop: Idle + stop asked: the next run              │ mark_ready (helpers up,
//!     │  │ ends at once (its stop is kept by `rerun`)             ▼ the loop entered)
//!     │  │                                                 ┌─────────┐
//!     │  │                                                 │ Running │
//!     │  │                                                 └─────────┘
//!     │  │                               ask_stop (any thread)  │  also from Starting
//!     │  │                                                      ▼
//!     │  │                                                 ┌──────────┐
//!     │  │                                                 │ Stopping │ finishing: helpers
//!     │  │                                                 └──────────┘ joined, regions
//!     │  │                         finished (stop policies applied) │    released
//!     │  │                                  then release            ▼
//!     │  └──────────────────────────────────────────────────▶ ┌─────────┐
//!     └──────── rerun (the next run/start/dispatch) ───────── │ Stopped │
//!                                                             └─────────┘
//! ```
//!
//! `dispatch` never claims the run (it takes the reader instead): it is
//! refused (EBUSY) while a run is claimed, sees `Stopped` through `rerun`,
//! and a stop it delivers leaves the monitor `Stopped` (`finished`) as the
//! end of a run does. `ask_stop` is accepted in every state: while a run
//! is claimed it ends it; while idle or stopped it is kept for the next
//! run, which then ends at once (and is not `rerun`: the stop asked after
//! the last run's end must not be forgotten).
//!
//! The value is one byte of flags, so that every transition is a single
//! atomic step: `RUNNING` (a run is claimed), `READY` (its helpers are up
//! and it reads), `STOP` (stop asked: every loop checks it), `ENDED` (a run
//! or a dispatch ended on a stop and applied the stop policies: the next
//! one starts afresh, `Inner::prepare_rerun`). `state` names the
//! combination. Invariant: `ENDED` implies `STOP`.

use std::sync::atomic::{AtomicU8, Ordering::AcqRel, Ordering::Acquire};

const RUNNING: u8 = 1;
const READY: u8 = 2;
const STOP: u8 = 4;
const ENDED: u8 = 8;

/// The monitor's lifecycle states (see the module's diagram). Named for
/// the diagram and its tests; the monitor asks the narrower questions
/// below (`running`, `ready`, `stop_asked`).
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Never run, or restarted; `stop_asked` says whether a stop waits.
    Idle,
    /// A run is claimed; its threads are being started.
    Starting,
    /// The run reads and serves.
    Running,
    /// The run was asked to stop and is finishing.
    Stopping,
    /// A run (or a dispatch) ended on a stop; the next one starts afresh.
    Stopped,
}

/// The lifecycle value of one monitor.
pub(crate) struct Lifecycle(AtomicU8);

impl Lifecycle {
    /// `Idle`, no stop asked.
    pub(crate) const fn new() -> Lifecycle {
        Lifecycle(AtomicU8::new(0))
    }

    fn bits(&self) -> u8 {
        self.0.load(Acquire)
    }

    /// The current state.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn state(&self) -> State {
        let b = self.bits();
        match (
            b & RUNNING != 0,
            b & READY != 0,
            b & STOP != 0,
            b & ENDED != 0,
        ) {
            (true, _, true, _) => State::Stopping,
            (true, true, false, _) => State::Running,
            (true, false, false, _) => State::Starting,
            (false, _, _, true) => State::Stopped,
            (false, _, _, false) => State::Idle,
        }
    }

    /// Idle/Stopped → Starting: claim the run. False (EBUSY) when a run
    /// is claimed already: the one place a run is claimed, so that of
    /// racing claims exactly one wins.
    pub(crate) fn claim(&self) -> bool {
        self.0.fetch_or(RUNNING, AcqRel) & RUNNING == 0
    }

    /// Starting → Running: the helpers are up and the loop is entered.
    pub(crate) fn mark_ready(&self) {
        self.0.fetch_or(READY, AcqRel);
    }

    /// Stopped → Idle (no stop asked): true when the last run ended on a
    /// stop, which the caller then undoes (`Inner::prepare_rerun`). In
    /// one step, so that a stop asked right after is kept.
    pub(crate) fn rerun(&self) -> bool {
        let mut cur = self.bits();
        loop {
            if cur & ENDED == 0 {
                return false;
            }
            match self
                .0
                .compare_exchange(cur, cur & !(ENDED | STOP), AcqRel, Acquire)
            {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Any state: ask for a stop. A claimed run goes to Stopping; Idle
    /// keeps it for the next run; Stopped becomes Idle with the stop
    /// asked, so that the next run is no `rerun` and ends at once.
    pub(crate) fn ask_stop(&self) {
        let mut cur = self.bits();
        loop {
            match self
                .0
                .compare_exchange(cur, (cur & !ENDED) | STOP, AcqRel, Acquire)
            {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }

    /// The end of a run begins (Running/Starting → Stopping): stop asked,
    /// no longer reading.
    pub(crate) fn finishing(&self) {
        let mut cur = self.bits();
        loop {
            match self
                .0
                .compare_exchange(cur, (cur & !READY) | STOP, AcqRel, Acquire)
            {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }

    /// The stop policies are applied: the next run or dispatch starts
    /// afresh (→ Stopped once the claim is released; a dispatch holds
    /// none).
    pub(crate) fn finished(&self) {
        self.0.fetch_or(ENDED, AcqRel);
    }

    /// Give the claim back (the run returned, or its thread could not be
    /// started): → Stopped, or Idle.
    pub(crate) fn release(&self) {
        self.0.fetch_and(!RUNNING, AcqRel);
    }

    /// Whether a run is claimed (Starting, Running, Stopping).
    pub(crate) fn running(&self) -> bool {
        self.bits() & RUNNING != 0
    }

    /// Whether the run reads (Running).
    pub(crate) fn ready(&self) -> bool {
        self.bits() & READY != 0
    }

    /// Whether a stop is asked (Stopping, Stopped, or Idle with a stop
    /// waiting): the check of every loop.
    pub(crate) fn stop_asked(&self) -> bool {
        self.bits() & STOP != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_goes_round_the_diagram() {
        let l = Lifecycle::new();
        assert_eq!(l.state(), State::Idle);
        assert!(l.claim());
        assert!(!l.claim(), "a second claim is EBUSY");
        assert_eq!(l.state(), State::Starting);
        l.mark_ready();
        assert_eq!(l.state(), State::Running);
        l.ask_stop();
        assert_eq!(l.state(), State::Stopping);
        l.finishing();
        l.finished();
        assert_eq!(l.state(), State::Stopping, "until the claim is given back");
        l.release();
        assert_eq!(l.state(), State::Stopped);
        assert!(l.rerun());
        assert!(!l.rerun());
        assert_eq!(l.state(), State::Idle);
        assert!(!l.stop_asked());
    }

    #[test]
    fn a_stop_while_idle_or_stopped_waits_for_the_next_run() {
        let l = Lifecycle::new();
        l.ask_stop();
        assert_eq!(l.state(), State::Idle);
        assert!(l.stop_asked());
        assert!(l.claim());
        assert!(!l.rerun(), "not a rerun: the stop is kept");
        assert!(l.stop_asked());
        l.finishing();
        l.finished();
        l.release();
        assert_eq!(l.state(), State::Stopped);
        l.ask_stop();
        assert_eq!(l.state(), State::Idle);
        assert!(!l.rerun() && l.stop_asked());
    }
}
