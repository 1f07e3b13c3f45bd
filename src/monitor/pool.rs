//! Worker threads that resolve faults in parallel while one reader reads.
//! The queue is preallocated; the reader never blocks on it (when it is
//! full the reader resolves the fault itself), so events are always read
//! promptly and workers' EAGAIN retries always end.

use super::engine::{Handled, OnAgain, Pending, Scratch};
use super::Inner;
use std::collections::VecDeque;
use std::sync::atomic::{
    AtomicBool,
    Ordering::{Acquire, Release},
};
use std::sync::{Arc, Condvar, Mutex};

const QUEUE_CAPACITY: usize = 4096;

pub(crate) struct Pool {
    queue: Mutex<VecDeque<Pending>>,
    ready: Condvar,
    shutdown: AtomicBool,
    spin_us: u32,
}

impl Pool {
    pub fn new(spin_us: u32) -> Pool {
        Pool {
            queue: Mutex::new(VecDeque::with_capacity(QUEUE_CAPACITY)),
            ready: Condvar::new(),
            shutdown: AtomicBool::new(false),
            spin_us,
        }
    }

    /// Queue a fault without waking a worker (see `wake`); false if the
    /// queue is full.
    pub fn push(&self, p: Pending) -> bool {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= QUEUE_CAPACITY {
            return false;
        }
        q.push_back(p);
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

    fn pop(&self) -> Option<Pending> {
        if self.spin_us > 0 {
            let deadline = crate::sys::wait::now_ns() + self.spin_us as u64 * 1000;
            while crate::sys::wait::now_ns() < deadline && !self.shutdown.load(Acquire) {
                if let Ok(mut q) = self.queue.try_lock() {
                    if let Some(p) = q.pop_front() {
                        return Some(p);
                    }
                }
                std::hint::spin_loop();
            }
        }
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(p) = q.pop_front() {
                return Some(p);
            }
            if self.shutdown.load(Acquire) {
                return None;
            }
            q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Ask the workers to finish what is queued and exit.
    pub fn shut_down(&self) {
        self.shutdown.store(true, Release);
        let _q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        self.ready.notify_all();
    }
}

/// A worker's loop: resolve queued faults until the pool shuts down.
pub(crate) fn work(inner: Arc<Inner>, pool: Arc<Pool>) {
    let mut scratch = Scratch::default();
    while let Some(mut p) = pool.pop() {
        while inner.handle_fault(&mut scratch, p, OnAgain::Backoff) == Handled::Retry {
            p.attempts += 1;
        }
    }
}
