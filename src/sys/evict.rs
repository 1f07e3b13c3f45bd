// SPDX-License-Identifier: MIT OR Apache-2.0
//! What evicting a page of a budgeted region takes from the kernel besides
//! its write-back (`sys::mem::pwrite_addr`): drop it (madvise(2)), tell
//! whether it is still there (mincore(2)) and which file a sink is (fstat).

use std::os::fd::{AsRawFd, BorrowedFd};

/// madvise(2) `advice` over `[addr, addr+len)`.
pub fn madvise(addr: u64, len: u64, advice: i32) -> Result<(), i32> {
    // SAFETY: madvise on memory handed over to the monitor (no Rust value
    // lives there); the kernel checks the range (ENOMEM when unmapped).
    let r = unsafe { libc::madvise(addr as *mut libc::c_void, len as usize, advice) };
    if r < 0 {
        Err(super::last_errno())
    } else {
        Ok(())
    }
}

/// (device, inode) of an open file, to tell whether two descriptors name
/// one file.
pub fn file_id(fd: BorrowedFd<'_>) -> Result<(u64, u64), i32> {
    // SAFETY: a zeroed stat is a valid out-parameter for fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is writable; fstat fails with EBADF on a closed number.
    let r = unsafe { libc::fstat(fd.as_raw_fd(), &mut st) };
    if r < 0 {
        Err(super::last_errno())
    } else {
        Ok((st.st_dev as u64, st.st_ino as u64))
    }
}

/// Whether the page at `addr` (`len` bytes, one page of the mapping) is
/// resident (mincore(2)): a page dropped by madvise is not.
pub fn is_resident(addr: u64, len: u64) -> Result<bool, i32> {
    let base = super::base_page_size();
    let mut vec = [0u8; 1];
    // One base page is enough: for a huge page, mincore reports each of
    // its base pages alike.
    let _ = len;
    // SAFETY: `vec` has room for the one base page asked about; the kernel
    // checks the range (ENOMEM when unmapped).
    let r = unsafe { libc::mincore(addr as *mut libc::c_void, base as usize, vec.as_mut_ptr()) };
    if r < 0 {
        Err(super::last_errno())
    } else {
        Ok(vec[0] & 1 != 0)
    }
}
