// SPDX-License-Identifier: MIT OR Apache-2.0
//! Counters and the fault-latency histogram, updated with relaxed atomics
//! (no locks, no allocation) and readable at any time.
//!
//! The counters are declared once, in [`counters!`]: each line there makes
//! a field of `Stats` (the live atomic), of [`StatsSnapshot`] (its value,
//! documented with the line's text) and of the copy into the C ABI's
//! `struct libuffd_monitor_stats` (src/ffi/monitor_api.rs), whose struct
//! literal names every counter: a counter missing from the C struct, or a
//! C field no counter feeds, does not compile. The C struct itself is
//! written out in src/ffi/types.rs because cbindgen reads it there (and
//! its layout is the ABI: its order is this table's).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Number of latency buckets: bucket i counts latencies in [2^i, 2^(i+1)) ns; the last
/// bucket also holds everything longer (about 2 s and up).
pub const LATENCY_BUCKETS: usize = 32;

/// The one list of the monitor's counters, in the C struct's order (the
/// latency histogram, which sits between `reads` and `handed_off` there,
/// is declared apart). Calls `$then! { /// doc \n name, ... }`.
macro_rules! counters {
    ($then:ident) => {
        $then! {
            /// Page-fault messages read.
            faults,
            /// FORK events read.
            forks,
            /// REMAP events read.
            remaps,
            /// REMOVE events read.
            removes,
            /// UNMAP events read.
            unmaps,
            /// Faults resolved by the monitor or a callback.
            resolved,
            /// Faults found already resolved (EEXIST), woken.
            eexist,
            /// Retries after EAGAIN.
            retried,
            /// Faults a callback deferred.
            deferred,
            /// Faults whose resolution failed (the error policy was applied).
            failed,
            /// Faults dropped because their range went away (ENOENT), or
            /// their process exited (ESRCH).
            dropped,
            /// Duplicate fault messages for a page resolved earlier in the batch.
            coalesced,
            /// Bytes placed by resolving faults (fault-around included).
            bytes,
            /// Bytes placed by the background prefetcher.
            prefetched_bytes,
            /// read(2) calls that returned messages.
            reads,
            /// Faults the reader handed to the workers.
            handed_off,
            /// Faults pending when a run ended (still queued, waiting for a
            /// retry, or deferred by a callback and not completed) whose
            /// threads the stop policy left blocked (`StopPolicy::Block`, or
            /// `Sigbus` where the poison was refused).
            stop_blocked,
            /// Such faults released into SIGBUS (`StopPolicy::Sigbus`).
            stop_sigbus,
            /// Such faults released to zero pages (`StopPolicy::ZeroFill`),
            /// or to an ordinary fault (a fault whose range was unmapped or
            /// moved since: the stop wakes it unless the monitor's policy is
            /// `Block`).
            stop_zeroed,
            /// read(2) calls that failed for want of a descriptor (EMFILE,
            /// ENFILE: a FORK event's new descriptor could not be made) and
            /// were tried again later; each is logged.
            read_failures,
            /// Forked children's descriptors closed because the child exited
            /// (or exec'd).
            children_closed,
            /// Forked children left unserved (their descriptor closed at
            /// once): a fork storm outran the reserves for a whole second
            /// (reserve.rs); logged.
            children_dropped,
            /// First writes to pages of synchronously dirty-tracked regions
            /// (WP faults marked dirty and un-protected; `on_write` calls).
            dirty_writes,
            /// `dirty_scan` calls that got past their argument checks.
            dirty_scans,
            /// Of those, scans of asynchronous (WP_ASYNC) regions: one
            /// PAGEMAP_SCAN ioctl each.
            dirty_scans_async,
            /// Pages of budgeted regions evicted (dropped after their
            /// write-back, if dirty).
            evictions,
            /// Dirty pages written back through a region's sink.
            writebacks,
            /// Bytes written back.
            writeback_bytes,
            /// Write-backs that failed (the page stayed resident and dirty;
            /// logged).
            writeback_failures,
            /// Pages of budgeted regions resident now (a level, not a count
            /// of events).
            resident_pages,
            /// PREFETCH regions whose background prefetch ended: every page
            /// placed or found present, or the rest given up after an error
            /// (logged; those pages come with their faults). Each region is
            /// counted once; a piece an event split off before the walk got
            /// there counts on its own, a piece removed (REMOVE, UNMAP)
            /// not at all. With no such event, the prefetch of n PREFETCH
            /// regions is done when this reaches n.
            prefetch_done_regions,
        }
    };
}
pub(crate) use counters;

macro_rules! declare_stats {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// Live counters of a monitor.
        #[derive(Default)]
        pub(crate) struct Stats {
            $(pub $name: AtomicU64,)*
            latency: [AtomicU64; LATENCY_BUCKETS],
        }

        /// A copy of a monitor's counters at one moment
        /// ([`Monitor::stats`](super::Monitor::stats)).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct StatsSnapshot {
            $($(#[doc = $doc])* pub $name: u64,)*
            /// Fault latency (message read to resolved) histogram: bucket i
            /// counts latencies in [2^i, 2^(i+1)) ns, the last one the rest.
            pub latency: [u64; LATENCY_BUCKETS],
        }

        impl Stats {
            /// The counters now.
            pub fn snapshot(&self) -> StatsSnapshot {
                let mut latency = [0u64; LATENCY_BUCKETS];
                for (o, a) in latency.iter_mut().zip(self.latency.iter()) {
                    *o = a.load(Relaxed);
                }
                StatsSnapshot {
                    $($name: self.$name.load(Relaxed),)*
                    latency,
                }
            }
        }
    };
}
counters!(declare_stats);

impl Stats {
    /// Add `n` to one counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// Count one fault latency.
    pub fn record_latency(&self, ns: u64) {
        let bucket = (63 - ns.max(1).leading_zeros() as usize).min(LATENCY_BUCKETS - 1);
        self.latency[bucket].fetch_add(1, Relaxed);
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

    #[test]
    fn every_counter_reaches_the_snapshot() {
        macro_rules! each {
            ($($(#[doc = $doc:literal])* $name:ident,)*) => {{
                let s = Stats::default();
                let mut n = 0;
                $(n += 1; Stats::add(&s.$name, n);)*
                let snap = s.snapshot();
                let mut m = 0;
                $(m += 1; assert_eq!(snap.$name, m, stringify!($name));)*
                m
            }};
        }
        assert_eq!(counters!(each), 31);
    }
}
