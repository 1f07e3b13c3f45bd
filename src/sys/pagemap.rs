// SPDX-License-Identifier: MIT OR Apache-2.0
//! PAGEMAP_SCAN (Linux 6.7+): an ioctl on an open `/proc/<pid>/pagemap`
//! that walks a range of the process's page tables and returns runs of
//! pages matching a category mask, optionally write-protecting the matched
//! pages in the same walk (userfaultfd WP_ASYNC dirty tracking). The
//! constants and struct layouts are the kernel uAPI's
//! (include/uapi/linux/fs.h: `struct pm_scan_arg`, `struct page_region`,
//! `PM_SCAN_*`, `PAGE_IS_*`), checked in the unit tests below against the
//! values in the kernel header.

use super::arch::iowr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// `struct page_region`: one run `[start, end)` of pages sharing the
/// reported `categories` (masked by `return_mask`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageRegion {
    pub start: u64,
    pub end: u64,
    pub categories: u64,
}

/// `struct pm_scan_arg`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PmScanArg {
    /// `sizeof(struct pm_scan_arg)`.
    pub size: u64,
    pub flags: u64,
    pub start: u64,
    pub end: u64,
    /// Out: where the walk ended (the vector filled, or `end`).
    pub walk_end: u64,
    /// Address of a `PageRegion` array.
    pub vec: u64,
    pub vec_len: u64,
    pub max_pages: u64,
    pub category_inverted: u64,
    pub category_mask: u64,
    pub category_anyof_mask: u64,
    pub return_mask: u64,
}

/// `PROCFS_IOCTL_MAGIC`.
const PROCFS_IOCTL_MAGIC: u8 = b'f';
/// `PAGEMAP_SCAN = _IOWR('f', 16, struct pm_scan_arg)`.
pub const PAGEMAP_SCAN: u64 = iowr::<PmScanArg>(PROCFS_IOCTL_MAGIC, 16);

/// Write-protect the pages that match (async-WP userfaultfd ranges).
pub const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
/// Fail (EPERM) if the range holds memory that is not async-WP.
pub const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;

/// Page category: written since it was last write-protected (its uffd-wp
/// bit is clear). (The other categories, PAGE_IS_WPALLOWED 1 << 0,
/// PAGE_IS_FILE 1 << 2, PAGE_IS_PRESENT 1 << 3, ..., are not used here.)
pub const PAGE_IS_WRITTEN: u64 = 1 << 1;

/// Open this process's pagemap (O_RDONLY | O_CLOEXEC).
pub fn open_self() -> Result<OwnedFd, i32> {
    // SAFETY: a NUL-terminated path literal; open has no other
    // memory-safety preconditions.
    let fd = unsafe {
        libc::open(
            c"/proc/self/pagemap".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(super::last_errno());
    }
    // SAFETY: a descriptor just opened, owned by nobody else.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// PAGEMAP_SCAN: fills `out` with matching runs; returns how many. The
/// struct's `vec`/`vec_len` are set from `out` here, `size` too.
pub fn scan(fd: BorrowedFd<'_>, arg: &mut PmScanArg, out: &mut [PageRegion]) -> Result<usize, i32> {
    arg.size = std::mem::size_of::<PmScanArg>() as u64;
    arg.vec = out.as_mut_ptr() as u64;
    arg.vec_len = out.len() as u64;
    // SAFETY: `fd` is live for the borrow; `arg` is a `pm_scan_arg` as the
    // request encodes (size 96, read and written); `vec` points to
    // `vec_len` writable `page_region`s (`out`), which the kernel writes
    // with copy_to_user (a bad address would be EFAULT, not UB).
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), PAGEMAP_SCAN as _, arg as *mut PmScanArg) };
    if rc < 0 {
        Err(super::last_errno())
    } else {
        Ok(rc as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_kernel_uapi() {
        assert_eq!(std::mem::size_of::<PmScanArg>(), 96);
        assert_eq!(std::mem::size_of::<PageRegion>(), 24);
        // include/uapi/linux/fs.h, Linux 6.7+.
        assert_eq!(PAGEMAP_SCAN, 0xC060_6610);
        assert_eq!(PM_SCAN_WP_MATCHING, 1);
        assert_eq!(PM_SCAN_CHECK_WPASYNC, 2);
        assert_eq!(PAGE_IS_WRITTEN, 2);
    }
}
