// SPDX-License-Identifier: MIT OR Apache-2.0
//! Dirty tracking: which pages of a region were written since the last
//! clearing scan (`Monitor::dirty_scan`).
//!
//! A region added with `RegionOptions::track_dirty` is registered
//! MISSING|WP and every page the monitor places there (copies,
//! fault-around windows, prefetch, zero pages: a COPY of zeros with
//! MODE_WP, since ZEROPAGE cannot write-protect) is placed write-protected.
//! The whole range is also write-protected once when the region is added
//! (pages already present). Two paths, one per region, chosen at
//! `add_region` ([`DirtyPath`]):
//!
//! - **Sync** (the userfaultfd lacks WP_ASYNC): a write to a protected page
//!   is a WP fault that reaches the monitor; `Inner::dirty_write` (called
//!   from the WP branch of fault.rs) calls `Handler::on_write`, sets the
//!   page's bit in the region's bitmap and un-protects the page, which
//!   wakes the writer. A clearing scan re-protects the pages it reports.
//! - **Async** (the userfaultfd has WP_ASYNC): the kernel un-protects a
//!   written page itself, no fault reaches the monitor, and the page's
//!   uffd-wp bit is its dirty bit. A scan is one PAGEMAP_SCAN ioctl on
//!   /proc/self/pagemap (PAGE_IS_WRITTEN; with clear, WP_MATCHING |
//!   CHECK_WPASYNC: the written pages are returned and re-protected in the
//!   same page-table walk, so no write can fall between the two).
//!
//! Why no write is missed (sync). A page is writable only after the fault
//! path un-protected it, and the fault path sets the page's bit and
//! un-protects it under the region's lock; a clearing scan reads the bits,
//! re-protects the pages it reports and clears their bits under the same
//! lock. So a scan never sees "bit set, page not yet un-protected" (it
//! would clear the bit, and the later un-protect would leave the page
//! writable with its bit clear: every later write lost); it sees either
//! neither (the page is still protected: the pending write faults, and sets
//! the bit after the scan) or both (it reports the page and re-protects
//! it: a write after the scan returns faults again and sets the bit for the
//! next scan). A write that races with the scan itself lands before the
//! re-protect (the page was reported by this scan) or faults after it
//! (reported by the next).

use super::unpoisoned::{LockOk, RwOk};
use super::{FaultToken, Inner, Monitor};
use crate::sys::pagemap::{self, PageRegion, PmScanArg};
use crate::uffd::{Error, Features, Range, Result, Uffd, WriteprotectMode};
use once_cell::sync::OnceCell;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering::Acquire, Ordering::Release};
use std::sync::{Arc, Mutex, RwLock};

/// How a dirty-tracked region learns of writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirtyPath {
    /// Write-protect faults reach the monitor, which sets the page's bit
    /// in its bitmap and un-protects it (the userfaultfd lacks WP_ASYNC,
    /// or the region asked for it: `RegionOptions::dirty_sync`).
    Sync,
    /// The kernel un-protects written pages itself (the userfaultfd has
    /// WP_ASYNC); scans read and re-arm them with PAGEMAP_SCAN.
    Async,
}

/// One dirty-tracked region, as added (its addresses do not follow
/// mremap; `Monitor::remove_region` forgets it).
struct Tracked {
    uffd_id: u32,
    start: u64,
    len: u64,
    page_size: u64,
    path: DirtyPath,
    /// The caller's tag, for `Handler::on_write`.
    user_data: u64,
    /// Sync: bit i = page i written since the last clearing scan. The
    /// lock orders the fault path's mark + un-protect against a clearing
    /// scan's read + re-protect + clear (see the module doc). Async: empty;
    /// the lock serialises scans.
    bits: Mutex<Vec<u64>>,
}

impl Tracked {
    fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// The monitor's dirty-tracking state.
#[derive(Default)]
pub(crate) struct Dirty {
    /// Whether any region is tracked (the placement paths look no further
    /// when not: one load per fault).
    any: AtomicBool,
    regions: RwLock<Vec<Arc<Tracked>>>,
    /// /proc/self/pagemap, opened at the first async region.
    pagemap: OnceCell<OwnedFd>,
}

impl Dirty {
    fn find(&self, uffd_id: u32, addr: u64) -> Option<Arc<Tracked>> {
        if !self.any.load(Acquire) {
            return None;
        }
        self.regions
            .read_ok()
            .iter()
            .find(|t| t.uffd_id == uffd_id && t.start <= addr && addr < t.end())
            .cloned()
    }

    /// Whether pages placed at `addr` of `uffd_id` must be placed
    /// write-protected (a dirty-tracked region). Cheap when nothing is
    /// tracked.
    pub(crate) fn protects(&self, uffd_id: u32, addr: u64) -> bool {
        self.any.load(Acquire) && self.find(uffd_id, addr).is_some()
    }

    /// The mode to place a page at `addr` of `uffd_id` with: write-protected
    /// in a tracked region (its first write must be seen), else none.
    pub(crate) fn copy_mode(&self, uffd_id: u32, addr: u64) -> crate::uffd::CopyMode {
        if self.protects(uffd_id, addr) {
            crate::uffd::CopyMode::WP
        } else {
            crate::uffd::CopyMode::empty()
        }
    }

    /// Whether `addr` of `uffd_id` is in a synchronously tracked region
    /// (its WP faults go to `Inner::dirty_write`).
    pub(crate) fn tracks_sync(&self, uffd_id: u32, addr: u64) -> bool {
        self.any.load(Acquire)
            && self
                .find(uffd_id, addr)
                .is_some_and(|t| t.path == DirtyPath::Sync)
    }

    /// Forget the tracked regions of `uffd_id` overlapping `[start, +len)`
    /// (`remove_region`, `remove_uffd`).
    pub(crate) fn forget(&self, uffd_id: u32, start: u64, len: u64) {
        if !self.any.load(Acquire) {
            return;
        }
        let mut v = self.regions.write_ok();
        v.retain(|t| {
            !(t.uffd_id == uffd_id && t.start < start.saturating_add(len) && start < t.end())
        });
    }
}

/// Set bit `i` of `bits`.
fn set_bit(bits: &mut [u64], i: u64) {
    if let Some(w) = bits.get_mut((i / 64) as usize) {
        *w |= 1 << (i % 64);
    }
}

fn get_bit(bits: &[u64], i: u64) -> bool {
    bits.get((i / 64) as usize)
        .is_some_and(|w| w & (1 << (i % 64)) != 0)
}

impl Inner {
    /// The WP-fault entry point of dirty tracking (fault.rs), for a WP
    /// fault where `Dirty::tracks_sync`: call `Handler::on_write`, mark the
    /// page dirty and un-protect it (waking the writer); the outcome.
    /// Called without the layout gate (the callback runs outside it). A
    /// region forgotten meanwhile: just un-protect.
    pub(crate) fn dirty_write(
        &self,
        token: FaultToken,
    ) -> std::result::Result<super::Applied, super::resolve::Failed> {
        let Some(t) = self
            .dirty
            .find(token.uffd_id, token.page)
            .filter(|t| t.path == DirtyPath::Sync)
        else {
            return self.apply(token, super::Action::Unprotect);
        };
        let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.handler.on_write(token, t.user_data)
        }));
        if called.is_err() {
            // The write is still recorded and let through.
            self.log(format_args!(
                "on_write callback panicked at {:#x}",
                token.page
            ));
        }
        super::stats::Stats::add(&self.stats.dirty_writes, 1);
        // Mark and un-protect as one step for a scan (module doc).
        let mut bits = t.bits.lock_ok();
        set_bit(&mut bits, (token.page - t.start) / t.page_size);
        let outcome = self.apply(token, super::Action::Unprotect);
        drop(bits);
        outcome
    }
}

/// The page-table walk that reports (and, with `clear`, re-protects) the
/// written pages of `[start, end)` through PAGEMAP_SCAN, calling `page(i)`
/// for page index i (of `ps`-byte pages from `base`). Bounded: each call
/// either reports runs or moves `walk_end` forward, else it stops.
fn pagemap_scan(
    fd: &OwnedFd,
    base: u64,
    ps: u64,
    start: u64,
    end: u64,
    clear: bool,
    mut page: impl FnMut(u64),
) -> std::result::Result<(), i32> {
    let mut out = [PageRegion::default(); 64];
    let mut at = start;
    while at < end {
        let mut arg = PmScanArg {
            flags: if clear {
                pagemap::PM_SCAN_WP_MATCHING | pagemap::PM_SCAN_CHECK_WPASYNC
            } else {
                0
            },
            start: at,
            end,
            category_mask: pagemap::PAGE_IS_WRITTEN,
            return_mask: pagemap::PAGE_IS_WRITTEN,
            ..PmScanArg::default()
        };
        let n = pagemap::scan(fd.as_fd(), &mut arg, &mut out)?;
        for r in &out[..n.min(out.len())] {
            let (a, b) = (r.start.max(start), r.end.min(end));
            let mut p = a - (a - base) % ps;
            while p < b {
                page((p - base) / ps);
                p += ps;
            }
        }
        if arg.walk_end <= at || arg.walk_end >= end {
            break;
        }
        at = arg.walk_end;
    }
    Ok(())
}

impl Monitor {
    /// Start tracking writes in `[start, +len)` (`RegionOptions::track_dirty`),
    /// called by `add_region` once the range is registered: choose the
    /// path, allocate the bitmap, write-protect the range. EINVAL when the
    /// range is not registered for write-protect faults.
    pub(crate) fn dirty_add(
        &self,
        uffd: &Uffd,
        id: u32,
        range: Range,
        page_size: u64,
        opts: &super::RegionOptions,
    ) -> Result<()> {
        let inner = &self.inner;
        let asynchronous = uffd.features().contains(Features::WP_ASYNC);
        if asynchronous && opts.dirty_sync {
            return Err(Error::invalid(
                "add region: dirty_sync asked, but this userfaultfd has WP_ASYNC: the kernel resolves its write-protect faults itself and the monitor never sees them (open it without LIBUFFD_FEATURE_WP_ASYNC for synchronous tracking)",
            ));
        }
        if asynchronous && !uffd.serves_this_process() {
            return Err(Error::invalid(
                "add region: asynchronous dirty tracking (WP_ASYNC) scans this process's page tables; this userfaultfd serves another process",
            ));
        }
        let ps = if page_size == 0 {
            crate::sys::base_page_size()
        } else {
            page_size
        };
        let pages = range.len / ps;
        let path = if asynchronous {
            DirtyPath::Async
        } else {
            DirtyPath::Sync
        };
        if path == DirtyPath::Async {
            let fd = inner.dirty.pagemap.get_or_try_init(|| {
                pagemap::open_self().map_err(|e| Error::os("open", e, "/proc/self/pagemap"))
            })?;
            // Probe: a kernel without PAGEMAP_SCAN (before 6.7) says ENOTTY
            // (or EINVAL); it has no WP_ASYNC either, so this only fails on
            // a kernel that refuses the ioctl otherwise.
            pagemap_scan(fd, range.start, ps, range.start, range.start + ps, false, |_| {})
                .map_err(|e| {
                    Error::os(
                        "PAGEMAP_SCAN",
                        e,
                        "probing asynchronous dirty tracking on /proc/self/pagemap (Linux 6.7+); open the userfaultfd without WP_ASYNC for synchronous tracking",
                    )
                })?;
        }
        // Arm: the pages already present become write-protected (those
        // placed later are placed so). Refused where the range is not
        // registered in WP mode.
        uffd.writeprotect(range, WriteprotectMode::WP).map_err(|e| {
            if matches!(e.errno(), libc::ENOENT | libc::EINVAL) {
                Error::invalid(format!(
                    "add region: dirty tracking needs [{:#x}, +{:#x}) registered for write-protect faults (LIBUFFD_REGISTER_WP with MISSING; with register_mode 0 the caller registers it and must include WP): {e}",
                    range.start, range.len
                ))
            } else {
                e
            }
        })?;
        let words = if path == DirtyPath::Sync {
            pages.div_ceil(64) as usize
        } else {
            0
        };
        let t = Arc::new(Tracked {
            uffd_id: id,
            start: range.start,
            len: range.len,
            page_size: ps,
            path,
            user_data: opts.user_data,
            bits: Mutex::new(vec![0; words]),
        });
        inner.dirty.regions.write_ok().push(t);
        inner.dirty.any.store(true, Release);
        Ok(())
    }

    /// The dirty-tracking path of the tracked region of uffd `id` at
    /// `addr`, if one tracks it.
    pub fn dirty_path(&self, id: u32, addr: u64) -> Option<DirtyPath> {
        self.inner.dirty.find(id, addr).map(|t| t.path)
    }

    /// Which pages of `range` (in a region of uffd `id` added with
    /// `RegionOptions::track_dirty`) were written since the last clearing
    /// scan: bit i of `bitmap` (word i / 64, bit i % 64) is page i of the
    /// range, in the region's page size (2 MiB pages on 2 MiB hugetlb
    /// memory); bits past the range's last page are zero. Returns how many
    /// pages were written. With `clear`, the reported pages are re-armed
    /// (write-protected again) in the same call: a write after this
    /// returns is reported by a later scan, never lost (with writers
    /// running concurrently too; a write racing with the scan is reported
    /// by this scan or the next).
    ///
    /// The path is the region's ([`Monitor::dirty_path`]): `Sync` reads the
    /// bitmap the WP faults filled and re-protects with UFFDIO_WRITEPROTECT;
    /// `Async` is one PAGEMAP_SCAN walk (PAGE_IS_WRITTEN, with clear
    /// PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC). Stats: `dirty_scans`,
    /// `dirty_scans_async`.
    ///
    /// Errors: EINVAL (unknown id, a range not page-aligned or not inside
    /// one tracked region), ERANGE (`bitmap` has fewer than
    /// ceil(pages / 64) words: the kernel's errno for a result buffer too
    /// small), the ioctl's errno otherwise (the bits of a failed clearing
    /// scan are kept: nothing reported is lost).
    pub fn dirty_scan(
        &self,
        id: u32,
        range: Range,
        clear: bool,
        bitmap: &mut [u64],
    ) -> Result<u64> {
        let inner = &self.inner;
        if inner.uffd(id).is_none() {
            return Err(Error::invalid(format!(
                "dirty scan: no userfaultfd with id {id} is served"
            )));
        }
        let Range { start, len } = range;
        let t = inner
            .dirty
            .find(id, start)
            .filter(|t| len > 0 && start.checked_add(len).is_some_and(|e| e <= t.end()))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "dirty scan: [{start:#x}, +{len:#x}) is not inside one dirty-tracked region of userfaultfd {id} (add it with track_dirty)"
                ))
            })?;
        let ps = t.page_size;
        if (start - t.start) % ps != 0 || len % ps != 0 {
            return Err(Error::invalid(format!(
                "dirty scan: [{start:#x}, +{len:#x}) is not aligned to the region's {} KiB pages",
                ps / 1024
            )));
        }
        let pages = len / ps;
        let words = pages.div_ceil(64) as usize;
        if bitmap.len() < words {
            return Err(Error::os(
                "dirty scan",
                libc::ERANGE,
                format!(
                    "the bitmap has {} words; {pages} pages need {words}",
                    bitmap.len()
                ),
            ));
        }
        let first = (start - t.start) / ps;
        bitmap[..words].fill(0);
        let mut count = 0u64;
        super::stats::Stats::add(&inner.stats.dirty_scans, 1);
        match t.path {
            DirtyPath::Sync => {
                let uffd = inner
                    .uffd(id)
                    .ok_or_else(|| Error::invalid("dirty scan: the userfaultfd was removed"))?;
                let mut bits = t.bits.lock_ok();
                for i in 0..pages {
                    if get_bit(&bits, first + i) {
                        set_bit(bitmap, i);
                        count += 1;
                    }
                }
                if clear && count > 0 {
                    // Re-arm each run of reported pages, then clear their
                    // bits: under the lock (module doc). A failure keeps
                    // every bit (reported again by the next scan).
                    let mut i = 0;
                    while i < pages {
                        if !get_bit(bitmap, i) {
                            i += 1;
                            continue;
                        }
                        let mut j = i;
                        while j < pages && get_bit(bitmap, j) {
                            j += 1;
                        }
                        uffd.writeprotect(
                            Range::new(start + i * ps, (j - i) * ps),
                            WriteprotectMode::WP,
                        )?;
                        i = j;
                    }
                    for i in 0..pages {
                        if get_bit(bitmap, i) {
                            let b = first + i;
                            bits[(b / 64) as usize] &= !(1u64 << (b % 64));
                        }
                    }
                }
            }
            DirtyPath::Async => {
                super::stats::Stats::add(&inner.stats.dirty_scans_async, 1);
                let fd = inner
                    .dirty
                    .pagemap
                    .get()
                    .ok_or_else(|| Error::invalid("dirty scan: pagemap not open"))?;
                let _serial = t.bits.lock_ok();
                pagemap_scan(fd, start, ps, start, start + len, clear, |i| {
                    if i < pages && !get_bit(bitmap, i) {
                        set_bit(bitmap, i);
                        count += 1;
                    }
                })
                .map_err(|e| {
                    Error::os(
                        "PAGEMAP_SCAN",
                        e,
                        format!("scanning [{start:#x}, +{len:#x}) for written pages"),
                    )
                })?;
            }
        }
        Ok(count)
    }
}
