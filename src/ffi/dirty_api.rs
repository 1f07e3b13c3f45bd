// SPDX-License-Identifier: MIT OR Apache-2.0
//! Dirty tracking's C ABI: libuffd_monitor_dirty_scan(); and the budgets' write-back
//! without eviction, libuffd_monitor_writeback().

use super::boundary::guard;
use super::monitor_api::monitor_ref;
use super::types::libuffd_monitor;
use crate::uffd::{Error, Range};

/// libuffd_monitor_dirty_scan() flags: re-arm (write-protect again) the
/// pages reported, in the same call.
pub const LIBUFFD_DIRTY_CLEAR: u32 = 0x1;

/// Which pages of [addr, addr + len) were written since the last clearing
/// scan, in a region of handle handle_id added with
/// LIBUFFD_REGION_TRACK_DIRTY. Bit i of bitmap (word i / 64, bit i % 64)
/// is page i of the range, in the region's page size (2 MiB pages on
/// 2 MiB hugetlb memory); the first ceil(pages / 64) words are written,
/// bits past the last page zero. With LIBUFFD_DIRTY_CLEAR the reported
/// pages are re-armed in the same call: a write after this returns is
/// reported by a later scan, never lost, with writers running concurrently
/// (a write racing with the scan is reported by this scan or the next).
///
/// The path is the region's: with LIBUFFD_FEATURE_WP_ASYNC on the handle,
/// one PAGEMAP_SCAN ioctl on /proc/self/pagemap (Linux 6.7+;
/// PAGE_IS_WRITTEN, with LIBUFFD_DIRTY_CLEAR also PM_SCAN_WP_MATCHING |
/// PM_SCAN_CHECK_WPASYNC: written pages found and re-protected in one page
/// table walk); without it, the bitmap the monitor fills on WP faults, and
/// UFFDIO_WRITEPROTECT to re-arm. libuffd_monitor_stats counts both
/// (dirty_scans) and the asynchronous ones (dirty_scans_async).
///
/// Thread safety: any thread, running or not, concurrently with writers
/// and other scans (scans of one region are serialised).
///
/// Returns: the number of written pages (>= 0), or -EINVAL (NULL monitor
/// or bitmap, unknown flags, unknown handle id, a range not inside one
/// tracked region or not aligned to its pages), -ERANGE (words is less
/// than ceil(pages / 64): the result does not fit, as the kernel says for
/// a buffer too small), or the errno of the ioctl that failed (a failed
/// clearing scan keeps every page it would have reported for the next).
///
/// Pointers: m must be NULL or a live monitor; bitmap NULL or writable
/// for words uint64_t.
#[no_mangle]
pub unsafe extern "C" fn libuffd_monitor_dirty_scan(
    m: *mut libuffd_monitor,
    handle_id: u32,
    addr: *mut libc::c_void,
    len: usize,
    flags: u32,
    bitmap: *mut u64,
    words: usize,
) -> i64 {
    guard("libuffd_monitor_dirty_scan", || {
        // SAFETY: contract above.
        let mb = unsafe { monitor_ref(m) }?;
        if flags & !LIBUFFD_DIRTY_CLEAR != 0 {
            return Err(Error::invalid(format!(
                "unknown flags {:#x}",
                flags & !LIBUFFD_DIRTY_CLEAR
            )));
        }
        if bitmap.is_null() {
            return Err(Error::invalid("bitmap is NULL"));
        }
        // SAFETY: contract above: `words` writable u64 at `bitmap`.
        let out = unsafe { std::slice::from_raw_parts_mut(bitmap, words) };
        let n = mb.monitor.dirty_scan(
            handle_id,
            Range::new(addr as usize as u64, len as u64),
            flags & LIBUFFD_DIRTY_CLEAR != 0,
            out,
        )?;
        Ok(n as i64)
    })
}

/// Write back the dirty resident pages of the budgeted regions
/// (libuffd_region_opts.max_resident) of handle handle_id in
/// [addr, addr + len) through their sinks (writeback_fd or
/// on_writeback), without evicting them: a checkpoint of the region's
/// file while the application runs. When this returns 0 or more, the file
/// holds every byte written to the range before the call. The pages stay
/// resident, clean and write-protected (a later write marks them dirty
/// again); a write racing with its page's write-back waits for it, then
/// lands, and is in the next write-back or eviction. Counted in
/// libuffd_monitor_stats (writebacks, writeback_bytes,
/// writeback_failures).
///
/// Thread safety: any thread but the monitor's own callbacks, while the
/// monitor runs or not (a stopped monitor's budgeted pages are written
/// back too).
///
/// Returns: the number of pages written back (>= 0), or -EINVAL (NULL
/// monitor, unknown handle id, a bad range, no budgeted region with a
/// write-back sink in the range), -EAGAIN (a page kept busy by faults for
/// 2 s, not written back), or the errno of the first write-back that
/// failed (that page stays dirty; the others are written back).
///
/// Pointers: m must be NULL or a live monitor.
///
/// Example: checkpoint a buffer pool's file, then make it durable.
///
/// ```c
/// int checkpoint(libuffd_monitor *m, uint32_t id, void *pool,
///                size_t len, int file_fd)
/// {
///         int64_t n = libuffd_monitor_writeback(m, id, pool, len);
///
///         if (n < 0)
///                 return (int)n;
///         return fsync(file_fd) == 0 ? 0 : -errno;
/// }
/// ```
#[no_mangle]
pub unsafe extern "C" fn libuffd_monitor_writeback(
    m: *mut libuffd_monitor,
    handle_id: u32,
    addr: *mut libc::c_void,
    len: usize,
) -> i64 {
    guard("libuffd_monitor_writeback", || {
        // SAFETY: contract above.
        let mb = unsafe { monitor_ref(m) }?;
        let n = mb
            .monitor
            .writeback(handle_id, Range::new(addr as usize as u64, len as u64))?;
        Ok(n as i64)
    })
}
