// SPDX-License-Identifier: MIT OR Apache-2.0
//! The background prefetcher: populates prefetch regions from their
//! sources, chunk by chunk, while demand faults are served by the reader.
//! It takes no lock that a demand fault needs while it copies (the kernel
//! places each page atomically; a page a fault placed first comes back as
//! EEXIST and is skipped), so it never delays a fault behind it.
//!
//! Remote regions are prefetched by their connection's reply thread
//! (remote.rs), which this thread starts going at the run's start.
//!
//! A region whose prefetch ended (every page placed or found present, or
//! given up after an error, logged) has its `prefetch` flag cleared and is
//! counted in `prefetch_done_regions`: a later run does not walk it again,
//! and a region added while the walk is past it (it sorts before the
//! cursor) is found when the walk wraps around.

use super::region::Source;
use super::resolve::Scratch;
use super::resolve::{Applied, Failed, FaultToken};
use super::stats::Stats;
use super::unpoisoned::RwOk;
use super::Inner;
use std::sync::Arc;

const CHUNK_BYTES: u64 = 4 << 20;

/// Run until every prefetch region is populated or the monitor stops.
pub(crate) fn run(inner: Arc<Inner>) {
    inner.remote_prefetch_kick_all();
    let mut scratch = Scratch::default();
    let mut cursor: Option<(u32, u64)> = None; // (uffd, next address)
    loop {
        if inner.life.stop_asked() {
            return;
        }
        // The layout gate, from the lookup to the ioctl (see
        // `Inner::layout`): no stale source data after a REMOVE.
        let gate = inner.layout.read_ok();
        // The next prefetch region at or after the cursor.
        let next = {
            let t = inner.regions.read_ok();
            let found = t
                .iter()
                // A page size still unknown (an adopted descriptor's region,
                // learnt at its first fault) is not guessed at.
                .filter(|r| {
                    r.prefetch
                        && r.source != Source::Callback
                        && !matches!(r.source, Source::Remote { .. })
                        && r.page_size != 0
                })
                .filter(|r| cursor.is_none_or(|(id, a)| (r.uffd_id, r.end()) > (id, a)))
                .map(|r| {
                    let from = match cursor {
                        Some((id, a)) if id == r.uffd_id && a > r.start => a,
                        _ => r.start,
                    };
                    (
                        r.uffd_id,
                        from,
                        r.end(),
                        r.page_size,
                        r.source,
                        r.source_offset + (from - r.start),
                    )
                })
                .next();
            found
        };
        let Some((id, from, end, ps, source, offset)) = next else {
            if cursor.take().is_some() {
                continue; // once more from the start
            }
            return;
        };
        // Chunks of 4 MiB (at least one page): big enough to amortise the
        // ioctl, small enough that stop is prompt.
        let pages = ((end - from) / ps).min((CHUNK_BYTES / ps).max(1)).max(1);
        let token = FaultToken {
            uffd_id: id,
            page: from,
            page_size: ps,
        };
        let cm = inner.dirty.copy_mode(token.uffd_id, token.page);
        let served = inner.serve_source(&mut scratch, token, source, offset, pages, cm);
        drop(gate);
        let step = match served {
            Ok(Applied::Resolved(n)) => {
                Stats::add(&inner.stats.prefetched_bytes, n);
                n.max(ps)
            }
            // A page already there (a fault got it first): skip it.
            Ok(Applied::AlreadyResolved) => ps,
            Ok(Applied::Gone) => end - from,
            Err(Failed::Again) => {
                std::thread::sleep(std::time::Duration::from_micros(100));
                0
            }
            Err(Failed::Error(e)) => {
                inner.log(format_args!(
                    "prefetch at {from:#x}: {e}; skipping the rest of the region"
                ));
                end - from
            }
        };
        if from + step >= end {
            inner.prefetch_finished(id, from, end);
        }
        cursor = Some((id, from + step));
    }
}

impl Inner {
    /// The prefetch of the region of `id` at `at`, ending at `end`, ended:
    /// its flag cleared, counted in `prefetch_done_regions`.
    fn prefetch_finished(&self, id: u32, at: u64, end: u64) {
        let mut t = self.regions.write_ok();
        let Some(r) = t.find_mut(id, at) else { return };
        if !r.prefetch || r.end() != end {
            return;
        }
        r.prefetch = false;
        drop(t);
        Stats::add(&self.stats.prefetch_done_regions, 1);
    }
}
