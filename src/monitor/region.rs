// SPDX-License-Identifier: MIT OR Apache-2.0
//! The table of served regions: which uffd, which addresses, where their
//! pages come from. REMAP, UNMAP and REMOVE events rewrite it so that later
//! faults are served from the right place.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Where the pages of a region come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Zero-filled pages.
    Zero,
    /// Bytes of this process's memory at `addr` (e.g. an mmapped
    /// snapshot), `len` long; pages past its end are zero-filled.
    Buffer {
        /// The buffer's address.
        addr: u64,
        /// Its length in bytes.
        len: u64,
    },
    /// pread(2) from `fd` at `offset` (`Monitor::add_region` duplicates
    /// `fd`: the region holds the monitor's duplicate, the caller may close
    /// its own). Short reads and EINTR are retried until each page is
    /// complete. A page the file ends in or before (EOF inside the region),
    /// and any read error, fail that fault (the error policy applies,
    /// `failed` counts it, the log names the offset); unless
    /// `zero_past_eof`, which asks for zeros past end-of-file instead.
    Fd {
        /// The file (duplicated by `add_region`).
        fd: i32,
        /// The file offset of the region's first page.
        offset: u64,
        /// Zeros past end-of-file instead of a failed fault.
        zero_past_eof: bool,
    },
    /// The monitor's fault callback decides.
    Callback,
    /// MINOR faults: map the page already in the page cache (CONTINUE).
    PageCache,
    /// Pages fetched from a page server over the connected socket `fd`
    /// (Unix or TCP; the protocol: `serve_pages`), asynchronously:
    /// a fault sends a request and is deferred, and completed when the
    /// reply arrives; the reader never waits on the network.
    /// `Monitor::add_region` duplicates `fd`; regions naming one socket
    /// share its connection; a TCP socket gets TCP_NODELAY (requests go
    /// out at once). The monitor reads the socket while it lives:
    /// nobody else may read it meanwhile (it is the caller's again once
    /// the monitor is dropped). A lost connection fails the region's
    /// pending and later faults (SIGBUS; see `serve_pages` for the
    /// protocol).
    Remote {
        /// The connected socket (duplicated by `add_region`).
        fd: i32,
        /// The server's offset of the region's first byte.
        offset: u64,
        /// Requests outstanding at most on the connection (0: 16); set by
        /// the first region naming the socket.
        max_in_flight: u32,
    },
}

/// One served range of one uffd.
#[derive(Debug)]
pub struct Region {
    pub uffd_id: u32,
    pub start: u64,
    pub len: u64,
    /// 0: not known yet (a region of an adopted descriptor whose owner is
    /// asked at the first fault: `Inner::learn_page_size`).
    pub page_size: u64,
    pub source: Source,
    /// Offset into the source of `start` (changes when a region is split;
    /// not when it is moved by mremap).
    pub source_offset: u64,
    /// Prefetch this region in the background.
    pub prefetch: bool,
    /// The caller's tag, handed back to callbacks.
    pub user_data: u64,
    /// What a stop does to it (None: the monitor's `Config::stop_policy`).
    pub stop_policy: Option<super::StopPolicy>,
    /// Adaptive fault-around state: current window (pages) and the page
    /// index a sequential reader would fault on next.
    pub window: AtomicU64,
    pub next_page: AtomicU64,
    /// The resident-set budget (`RegionOptions::max_resident`), shared by
    /// the region's pieces.
    pub budget: Option<std::sync::Arc<super::budget::Budget>>,
}

impl Clone for Region {
    fn clone(&self) -> Region {
        Region {
            uffd_id: self.uffd_id,
            start: self.start,
            len: self.len,
            page_size: self.page_size,
            source: self.source,
            source_offset: self.source_offset,
            prefetch: self.prefetch,
            user_data: self.user_data,
            stop_policy: self.stop_policy,
            window: AtomicU64::new(self.window.load(Relaxed)),
            next_page: AtomicU64::new(self.next_page.load(Relaxed)),
            budget: self.budget.clone(),
        }
    }
}

impl Region {
    pub fn end(&self) -> u64 {
        self.start + self.len
    }

    /// The piece `[a, b)` of this region (must lie inside it).
    fn piece(&self, a: u64, b: u64) -> Region {
        let mut r = self.clone();
        r.start = a;
        r.len = b - a;
        r.source_offset = self.source_offset + (a - self.start);
        r
    }
}

/// Regions ordered by (uffd, start); they never overlap within a uffd.
#[derive(Debug, Default)]
pub struct RegionTable {
    regions: Vec<Region>,
}

impl RegionTable {
    pub fn with_capacity(n: usize) -> RegionTable {
        RegionTable {
            regions: Vec::with_capacity(n),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Region> {
        self.regions.iter()
    }

    /// Index of the region of `uffd_id` containing `addr`.
    pub fn find(&self, uffd_id: u32, addr: u64) -> Option<&Region> {
        let i = self
            .regions
            .partition_point(|r| (r.uffd_id, r.start) <= (uffd_id, addr));
        let r = self.regions.get(i.checked_sub(1)?)?;
        (r.uffd_id == uffd_id && addr < r.end()).then_some(r)
    }

    /// `find`, for changing the region in place.
    pub fn find_mut(&mut self, uffd_id: u32, addr: u64) -> Option<&mut Region> {
        let i = self
            .regions
            .partition_point(|r| (r.uffd_id, r.start) <= (uffd_id, addr));
        let r = self.regions.get_mut(i.checked_sub(1)?)?;
        (r.uffd_id == uffd_id && addr < r.end()).then_some(r)
    }

    /// Whether `[start, start+len)` of `uffd_id` overlaps a region.
    pub fn overlaps(&self, uffd_id: u32, start: u64, len: u64) -> bool {
        self.regions
            .iter()
            .any(|r| r.uffd_id == uffd_id && r.start < start + len && start < r.end())
    }

    pub fn insert(&mut self, r: Region) {
        let i = self
            .regions
            .partition_point(|x| (x.uffd_id, x.start) < (r.uffd_id, r.start));
        self.regions.insert(i, r);
    }

    /// The vector itself, for `reserve::grow`.
    pub(crate) fn vec_mut(&mut self) -> &mut Vec<Region> {
        &mut self.regions
    }

    // The updates below run on the reader while it handles events. They
    // work in place, without temporaries, so that they allocate nothing
    // while the table has spare capacity (kept by `reserve`; see there why
    // the reader must not allocate).

    /// Split the region of `uffd_id` that strictly contains `addr` in two.
    fn split_at(&mut self, uffd_id: u32, addr: u64) {
        let i = self
            .regions
            .partition_point(|r| (r.uffd_id, r.start) <= (uffd_id, addr));
        let Some(i) = i.checked_sub(1) else { return };
        let r = &self.regions[i];
        if r.uffd_id != uffd_id || addr <= r.start || addr >= r.end() {
            return;
        }
        let (a, b) = (r.piece(r.start, addr), r.piece(addr, r.end()));
        self.regions[i] = a;
        self.regions.insert(i + 1, b);
    }

    /// Split so that `[start, end)` is covered by whole regions, and
    /// return the index range of those regions.
    fn isolate(&mut self, uffd_id: u32, start: u64, end: u64) -> std::ops::Range<usize> {
        self.split_at(uffd_id, start);
        self.split_at(uffd_id, end);
        let lo = self
            .regions
            .partition_point(|r| (r.uffd_id, r.start) < (uffd_id, start));
        let hi = self
            .regions
            .partition_point(|r| (r.uffd_id, r.start) < (uffd_id, end));
        lo..hi
    }

    /// UNMAP: forget `[start, end)`.
    pub fn unmap(&mut self, uffd_id: u32, start: u64, end: u64) {
        let range = self.isolate(uffd_id, start, end);
        self.regions.drain(range);
    }

    /// REMOVE with zero-fill: later faults in `[start, end)` get zeros.
    pub fn zero_fill(&mut self, uffd_id: u32, start: u64, end: u64) {
        let range = self.isolate(uffd_id, start, end);
        for p in &mut self.regions[range] {
            if p.source != Source::PageCache {
                p.source = Source::Zero;
            }
            p.prefetch = false;
        }
    }

    /// REMAP: `[from, from+len)` moved to `to`; pieces keep their sources.
    pub fn remap(&mut self, uffd_id: u32, from: u64, to: u64, len: u64) {
        if self.isolate(uffd_id, from, from + len).is_empty() {
            return;
        }
        // The destination may have held other regions (MREMAP_FIXED);
        // the kernel refuses overlapping source and destination.
        self.unmap(uffd_id, to, to + len);
        let range = self.isolate(uffd_id, from, from + len);
        for p in &mut self.regions[range] {
            p.start = to + (p.start - from);
        }
        // In place, no allocation (unlike a stable sort).
        self.regions.sort_unstable_by_key(|r| (r.uffd_id, r.start));
    }

    /// Copy every region of `parent` for `child` (fork: same addresses).
    /// `child` is a newer uffd than `parent` (a larger id), so the copies
    /// sort after the originals and the loop's range stays valid.
    pub fn duplicate(&mut self, parent: u32, child: u32) {
        let lo = self.regions.partition_point(|r| r.uffd_id < parent);
        let hi = self.regions.partition_point(|r| r.uffd_id <= parent);
        for i in lo..hi {
            let mut c = self.regions[i].clone();
            c.uffd_id = child;
            c.prefetch = false;
            // The child's copy of the memory is not the parent's budget.
            c.budget = None;
            self.insert(c);
        }
    }

    /// Drop every region of `uffd_id`.
    pub fn retire(&mut self, uffd_id: u32) {
        self.regions.retain(|r| r.uffd_id != uffd_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: u32, start: u64, len: u64) -> Region {
        Region {
            uffd_id: id,
            start,
            len,
            page_size: 4096,
            source: Source::Buffer {
                addr: 0x10_0000,
                len,
            },
            source_offset: 0,
            prefetch: false,
            user_data: 0,
            stop_policy: None,
            window: AtomicU64::new(1),
            next_page: AtomicU64::new(0),
            budget: None,
        }
    }

    #[test]
    fn find_respects_bounds_and_uffd() {
        let mut t = RegionTable::default();
        t.insert(region(0, 0x1000, 0x3000));
        t.insert(region(1, 0x1000, 0x1000));
        assert!(t.find(0, 0x0fff).is_none());
        assert_eq!(t.find(0, 0x3fff).unwrap().start, 0x1000);
        assert!(t.find(0, 0x4000).is_none());
        assert_eq!(t.find(1, 0x1000).unwrap().uffd_id, 1);
        assert!(t.find(1, 0x2000).is_none());
    }

    #[test]
    fn remap_moves_a_middle_piece_and_keeps_offsets() {
        let mut t = RegionTable::default();
        t.insert(region(0, 0x10000, 0x4000));
        t.remap(0, 0x11000, 0x90000, 0x1000);
        let moved = t.find(0, 0x90000).unwrap();
        assert_eq!(moved.source_offset, 0x1000);
        assert_eq!(moved.len, 0x1000);
        assert!(t.find(0, 0x11000).is_none());
        assert_eq!(t.find(0, 0x12000).unwrap().source_offset, 0x2000);
        assert_eq!(t.find(0, 0x10000).unwrap().len, 0x1000);
    }

    #[test]
    fn unmap_and_zero_fill_split() {
        let mut t = RegionTable::default();
        t.insert(region(0, 0x10000, 0x4000));
        t.unmap(0, 0x10000, 0x11000);
        assert!(t.find(0, 0x10000).is_none());
        t.zero_fill(0, 0x12000, 0x13000);
        assert_eq!(t.find(0, 0x12000).unwrap().source, Source::Zero);
        assert_ne!(t.find(0, 0x13000).unwrap().source, Source::Zero);
        assert_eq!(t.find(0, 0x13000).unwrap().source_offset, 0x3000);
    }

    #[test]
    fn duplicate_for_fork() {
        let mut t = RegionTable::default();
        t.insert(region(0, 0x10000, 0x4000));
        t.duplicate(0, 7);
        assert_eq!(t.find(7, 0x11000).unwrap().source_offset, 0);
        t.retire(0);
        assert!(t.find(0, 0x11000).is_none());
        assert!(t.find(7, 0x11000).is_some());
    }
}
