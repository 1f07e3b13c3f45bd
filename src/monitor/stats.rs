//! Counters and the fault-latency histogram, updated with relaxed atomics
//! (no locks, no allocation) and readable at any time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Number of latency buckets: bucket i counts latencies in [2^i, 2^(i+1)) ns; the last
/// bucket also holds everything longer (about 2 s and up).
pub const LATENCY_BUCKETS: usize = 32;

/// Live counters of a monitor.
#[derive(Default)]
pub(crate) struct Stats {
    pub faults: AtomicU64,
    pub forks: AtomicU64,
    pub remaps: AtomicU64,
    pub removes: AtomicU64,
    pub unmaps: AtomicU64,
    pub resolved: AtomicU64,
    pub eexist: AtomicU64,
    pub retried: AtomicU64,
    pub deferred: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
    pub coalesced: AtomicU64,
    pub bytes: AtomicU64,
    pub prefetched_bytes: AtomicU64,
    pub reads: AtomicU64,
    pub handed_off: AtomicU64,
    pub stop_blocked: AtomicU64,
    pub stop_sigbus: AtomicU64,
    pub stop_zeroed: AtomicU64,
    pub read_failures: AtomicU64,
    pub children_closed: AtomicU64,
    pub children_dropped: AtomicU64,
    latency: [AtomicU64; LATENCY_BUCKETS],
}

/// A copy of a monitor's counters at one moment
/// ([`Monitor::stats`](super::Monitor::stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Page-fault messages read.
    pub faults: u64,
    /// FORK events read.
    pub forks: u64,
    /// REMAP events read.
    pub remaps: u64,
    /// REMOVE events read.
    pub removes: u64,
    /// UNMAP events read.
    pub unmaps: u64,
    /// Faults resolved by the monitor or a callback.
    pub resolved: u64,
    /// Faults found already resolved (EEXIST), woken.
    pub eexist: u64,
    /// Retries after EAGAIN.
    pub retried: u64,
    /// Faults a callback deferred.
    pub deferred: u64,
    /// Faults whose resolution failed (the error policy was applied).
    pub failed: u64,
    /// Faults dropped because their range went away (ENOENT), or their
    /// process exited (ESRCH).
    pub dropped: u64,
    /// Duplicate fault messages for a page resolved earlier in the batch.
    pub coalesced: u64,
    /// Bytes placed by resolving faults (fault-around included).
    pub bytes: u64,
    /// Bytes placed by the background prefetcher.
    pub prefetched_bytes: u64,
    /// read(2) calls that returned messages.
    pub reads: u64,
    /// read(2) calls that failed for want of a descriptor (EMFILE,
    /// ENFILE: a FORK event's new descriptor could not be made) and were
    /// tried again later; each is logged.
    pub read_failures: u64,
    /// Forked children's descriptors closed because the child exited (or
    /// exec'd).
    pub children_closed: u64,
    /// Forked children left unserved (their descriptor closed at once):
    /// a fork storm outran the reserves for a whole second (reserve.rs);
    /// logged.
    pub children_dropped: u64,
    /// Fault latency (message read to resolved) histogram, log2 ns buckets.
    pub latency: [u64; LATENCY_BUCKETS],
    /// Faults the reader handed to the workers.
    pub handed_off: u64,
    /// Faults pending when a run ended (still queued, waiting for a retry,
    /// or deferred by a callback and not completed) whose threads the stop
    /// policy left blocked (`StopPolicy::Block`, or `Sigbus` where the
    /// poison was refused).
    pub stop_blocked: u64,
    /// Such faults released into SIGBUS (`StopPolicy::Sigbus`).
    pub stop_sigbus: u64,
    /// Such faults released to zero pages (`StopPolicy::ZeroFill`), or to
    /// an ordinary fault (a fault whose range was unmapped or moved since:
    /// the stop wakes it unless the monitor's policy is `Block`).
    pub stop_zeroed: u64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn record_latency(&self, ns: u64) {
        let bucket = (63 - ns.max(1).leading_zeros() as usize).min(LATENCY_BUCKETS - 1);
        self.latency[bucket].fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let mut latency = [0u64; LATENCY_BUCKETS];
        for (o, a) in latency.iter_mut().zip(self.latency.iter()) {
            *o = a.load(Relaxed);
        }
        StatsSnapshot {
            faults: self.faults.load(Relaxed),
            forks: self.forks.load(Relaxed),
            remaps: self.remaps.load(Relaxed),
            removes: self.removes.load(Relaxed),
            unmaps: self.unmaps.load(Relaxed),
            resolved: self.resolved.load(Relaxed),
            eexist: self.eexist.load(Relaxed),
            retried: self.retried.load(Relaxed),
            deferred: self.deferred.load(Relaxed),
            failed: self.failed.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            coalesced: self.coalesced.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            prefetched_bytes: self.prefetched_bytes.load(Relaxed),
            reads: self.reads.load(Relaxed),
            latency,
            handed_off: self.handed_off.load(Relaxed),
            stop_blocked: self.stop_blocked.load(Relaxed),
            stop_sigbus: self.stop_sigbus.load(Relaxed),
            stop_zeroed: self.stop_zeroed.load(Relaxed),
            read_failures: self.read_failures.load(Relaxed),
            children_closed: self.children_closed.load(Relaxed),
            children_dropped: self.children_dropped.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_log2() {
        let s = Stats::default();
        s.record_latency(0);
        s.record_latency(1500);
        s.record_latency(u64::MAX);
        let snap = s.snapshot();
        assert_eq!(snap.latency[0], 1);
        assert_eq!(snap.latency[10], 1);
        assert_eq!(snap.latency[LATENCY_BUCKETS - 1], 1);
    }
}
