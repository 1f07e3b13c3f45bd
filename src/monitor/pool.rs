// SPDX-License-Identifier: MIT OR Apache-2.0
//! Worker threads, leader/follower style: one worker at a time reads (the
//! leader, holding the reader state); when it reads a fault that may wait
//! (a callback, a pread: `Inner::hand_off_pays`) it keeps that fault,
//! passes the reading on to an idle worker and resolves the fault itself,
//! so that a fault costs no thread-to-thread hand-off on its way. Further
//! faults of the same batch go to a queue that idle workers take from.
//! The queue is preallocated; a full queue makes the leader resolve the
//! fault itself, so events are always read and EAGAIN retries always end.

use super::fault::{Handled, OnAgain, Pending};
use super::resolve::Scratch;
use super::unpoisoned::{unpoisoned, LockOk};
use super::Inner;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

const QUEUE_CAPACITY: usize = 4096;

struct State {
    queue: VecDeque<Pending>,
    /// A worker is reading (holds `Inner::reader`).
    leading: bool,
    shutdown: bool,
}

pub(crate) struct Pool {
    state: Mutex<State>,
    ready: Condvar,
    spin_us: u32,
}

/// What an idle worker does next.
enum Next {
    Resolve(Pending),
    Lead,
    Exit,
}

impl Pool {
    pub fn new(spin_us: u32) -> Pool {
        Pool {
            state: Mutex::new(State {
                queue: VecDeque::with_capacity(QUEUE_CAPACITY),
                leading: false,
                shutdown: false,
            }),
            ready: Condvar::new(),
            spin_us,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock_ok()
    }

    /// Queue a fault without waking a worker (see `wake`); false if the
    /// queue is full.
    pub fn push(&self, p: Pending) -> bool {
        let mut s = self.lock();
        if s.queue.len() >= QUEUE_CAPACITY {
            return false;
        }
        s.queue.push_back(p);
        true
    }

    /// Wake up to `n` workers for faults just queued: one wakeup per batch
    /// read, not per fault.
    pub fn wake(&self, n: usize) {
        if n >= 2 {
            self.ready.notify_all();
        } else if n == 1 {
            self.ready.notify_one();
        }
    }

    /// Queued faults first (the leader has moved on), then the reading if
    /// nobody reads; otherwise wait. After shutdown: the queue, then exit.
    fn next(&self) -> Next {
        if self.spin_us > 0 {
            let deadline = crate::sys::wait::now_ns() + self.spin_us as u64 * 1000;
            while crate::sys::wait::now_ns() < deadline {
                if let Ok(s) = self.state.try_lock() {
                    if !s.queue.is_empty() || !s.leading || s.shutdown {
                        break;
                    }
                }
                std::hint::spin_loop();
            }
        }
        let mut s = self.lock();
        loop {
            if let Some(p) = s.queue.pop_front() {
                return Next::Resolve(p);
            }
            if s.shutdown {
                return Next::Exit;
            }
            if !s.leading {
                s.leading = true;
                return Next::Lead;
            }
            s = unpoisoned(self.ready.wait(s));
        }
    }

    /// Take the reading if nobody has it.
    fn try_lead(&self) -> bool {
        let mut s = self.lock();
        let free = !s.leading && !s.shutdown;
        if free {
            s.leading = true;
        }
        free
    }

    /// Give up the reading and wake a worker to take it.
    fn stop_leading(&self) {
        self.lock().leading = false;
        self.ready.notify_one();
    }

    /// Ask the workers to finish what is queued and exit.
    pub fn shut_down(&self) {
        self.lock().shutdown = true;
        self.ready.notify_all();
    }
}

/// A worker: its loop, until the monitor stops and the queue is empty. A
/// panic in it is a bug in the engine (callbacks' panics are caught where
/// they are called); it stops the monitor with ENOTRECOVERABLE rather than
/// leave the other threads waiting for a reader that is gone.
pub(crate) fn work(inner: Arc<Inner>, pool: Arc<Pool>) {
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work_loop(&inner, &pool)));
    if run.is_err() {
        inner.fail_loop(inner.engine_panicked("a worker thread"));
        pool.shut_down();
    }
}

/// Holding the reading; given up on drop (unwinding too).
struct Leading<'a>(&'a Pool);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.0.stop_leading();
    }
}

fn work_loop(inner: &Inner, pool: &Pool) {
    let mut scratch = Scratch::default();
    loop {
        let mut retry = None;
        match pool.next() {
            Next::Resolve(p) => match resolve(inner, pool, &mut scratch, p) {
                None => continue,
                Some(p) => retry = Some(p),
            },
            Next::Exit => return,
            Next::Lead => {}
        }
        // Reading, until a fault is kept; then resolving it, which may
        // lead back here.
        loop {
            let kept = {
                let _leading = Leading(pool);
                lead(inner, retry.take())
            };
            if inner.life.stop_asked() {
                pool.shut_down();
            }
            let Some(p) = kept else { break };
            match resolve(inner, pool, &mut scratch, p) {
                None => break,
                Some(p) => retry = Some(p),
            }
        }
    }
}

/// Read and handle messages until a fault is kept (returned), or the
/// monitor stops. `retry` goes on the retry list first.
fn lead(inner: &Inner, retry: Option<Pending>) -> Option<Pending> {
    // Only the worker marked as leading takes this lock (dispatch() is
    // refused while the monitor runs): it never waits here.
    let mut st = inner.reader.lock_ok();
    st.retry.extend(retry);
    // Checked under the lock: a stop whose wakeup the previous leader
    // consumed is seen here, before this one would sleep in poll(2).
    while !inner.life.stop_asked() {
        if let Err(e) = inner.iterate_guarded(&mut st, -1) {
            inner.fail_loop(e);
            break;
        }
        if let Some(p) = st.kept.take() {
            return Some(p);
        }
    }
    st.kept.take()
}

/// Resolve a fault off the reading path. EAGAIN means an event waits to
/// be read: back off and retry while another worker reads, but if nobody
/// does, take the reading (the fault is returned, to go on the retry list
/// behind the event).
fn resolve(inner: &Inner, pool: &Pool, scratch: &mut Scratch, mut p: Pending) -> Option<Pending> {
    loop {
        let h = inner.handle_fault(scratch, p, OnAgain::Backoff);
        if h == Handled::Done {
            break;
        }
        p = p.next_try(h);
        if pool.try_lead() {
            return Some(p);
        }
    }
    None
}
