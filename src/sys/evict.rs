// SPDX-License-Identifier: MIT OR Apache-2.0
//! What evicting a page of a budgeted region takes from the kernel besides
//! its write-back (`sys::mem::pwrite_addr`): drop it (madvise(2)), or
//! several at once (process_madvise(2) of the calling process), tell
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

/// `PIDFD_SELF_THREAD_GROUP` (linux/pidfd.h, Linux 6.15): "the calling
/// process" where a pidfd is expected; not in libc yet.
const PIDFD_SELF_THREAD_GROUP: libc::c_int = -10001;

/// Most ranges one `madvise_ranges` call takes.
pub const MAX_RANGES: usize = 16;

/// process_madvise(2) of the calling process: `advice` over each of
/// `ranges` (address, length), at most `MAX_RANGES`, in one system call
/// (since Linux 6.16 with one TLB flush for the lot, where one madvise per
/// range flushes once per range). The kernel advises the ranges in order
/// and stops at the first that fails: Ok(bytes) is the length of the
/// ranges done before it (all of them when it is their total). Err is the
/// errno when none was done, which is also what a kernel without it gives
/// (ENOSYS; EBADF before 6.15, which has no PIDFD_SELF; EINVAL for
/// MADV_DONTNEED or MADV_REMOVE of oneself before 6.13): the caller then
/// advises range by range.
pub fn madvise_ranges(ranges: &[(u64, u64)], advice: i32) -> Result<u64, i32> {
    assert!(ranges.len() <= MAX_RANGES, "at most MAX_RANGES ranges");
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_RANGES];
    for (v, &(addr, len)) in iov.iter_mut().zip(ranges) {
        v.iov_base = addr as *mut libc::c_void;
        v.iov_len = len as usize;
    }
    // SAFETY: the kernel reads `ranges.len()` iovecs from `iov` (that many
    // are filled in); the ranges are memory handed over to the monitor (no
    // Rust value lives there), checked by the kernel like madvise's.
    let r = unsafe {
        libc::syscall(
            libc::SYS_process_madvise,
            PIDFD_SELF_THREAD_GROUP,
            iov.as_ptr(),
            ranges.len(),
            advice,
            0u32,
        )
    };
    if r < 0 {
        Err(super::last_errno())
    } else {
        Ok(r as u64)
    }
}

/// Whether `madvise_ranges` failing with `errno` (nothing done) may mean
/// this kernel lacks it rather than that the first range failed: ENOSYS
/// (no process_madvise), EBADF (no PIDFD_SELF), EINVAL or EPERM (advice
/// not allowed through it). ENOMEM (a range not mapped) and the like are
/// the range's own errors.
pub fn vector_unsupported(errno: i32) -> bool {
    matches!(
        errno,
        libc::ENOSYS | libc::EBADF | libc::EINVAL | libc::EPERM
    )
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

/// Memory for the unit tests of eviction (here and in `monitor::budget`):
/// a mapping unmapped on drop.
#[cfg(test)]
pub(crate) mod testing {
    /// What to map.
    #[derive(Clone, Copy, Debug)]
    pub(crate) enum Kind {
        /// Private anonymous memory, 4 KiB pages.
        Anon,
        /// A shared mapping of a memfd (shmem), 4 KiB pages.
        Shmem,
        /// Private hugetlb memory, 2 MiB pages.
        Hugetlb,
    }

    /// A mapping of `pages` pages of `page_size` bytes, each touched once.
    pub(crate) struct Map {
        pub(crate) addr: u64,
        pub(crate) len: u64,
        pub(crate) page_size: u64,
        memfd: Option<std::os::fd::OwnedFd>,
    }

    impl Map {
        /// None when the kernel refuses (hugetlb without reserved pages).
        pub(crate) fn new(kind: Kind, pages: u64) -> Option<Map> {
            use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
            let page_size = match kind {
                Kind::Hugetlb => 2 << 20,
                _ => super::super::base_page_size(),
            };
            let len = pages * page_size;
            let (flags, memfd) = match kind {
                Kind::Anon => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, None),
                Kind::Hugetlb => (
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB,
                    None,
                ),
                Kind::Shmem => {
                    // SAFETY: a NUL-terminated name; the fd is ours.
                    let fd = unsafe { libc::memfd_create(c"evict-test".as_ptr(), 0) };
                    assert!(fd >= 0, "memfd_create");
                    // SAFETY: `fd` was just created and is owned here.
                    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                    // SAFETY: ftruncate of our memfd.
                    assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), len as i64) }, 0);
                    (libc::MAP_SHARED, Some(fd))
                }
            };
            let fd = memfd.as_ref().map_or(-1, |f| f.as_raw_fd());
            // SAFETY: a fresh mapping chosen by the kernel.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    flags,
                    fd,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return None;
            }
            let m = Map {
                addr: p as u64,
                len,
                page_size,
                memfd,
            };
            for i in 0..pages {
                m.write(i, 0xA5);
            }
            Some(m)
        }

        /// Write `v` to the first byte of page `i`.
        pub(crate) fn write(&self, i: u64, v: u8) {
            assert!(i * self.page_size < self.len);
            // SAFETY: inside the mapping, which is ours and writable.
            unsafe { std::ptr::write_volatile((self.addr + i * self.page_size) as *mut u8, v) }
        }

        /// The first byte of page `i` (faults it in again if dropped).
        pub(crate) fn read(&self, i: u64) -> u8 {
            assert!(i * self.page_size < self.len);
            // SAFETY: inside the mapping, which is ours and readable.
            unsafe { std::ptr::read_volatile((self.addr + i * self.page_size) as *const u8) }
        }

        /// Whether page `i` is resident.
        pub(crate) fn resident(&self, i: u64) -> bool {
            super::is_resident(self.addr + i * self.page_size, self.page_size).unwrap()
        }

        /// Unmap page `i` (leaving a hole).
        pub(crate) fn unmap(&self, i: u64) {
            // SAFETY: a page of our mapping, not touched after this.
            let r = unsafe {
                libc::munmap(
                    (self.addr + i * self.page_size) as *mut libc::c_void,
                    self.page_size as usize,
                )
            };
            assert_eq!(r, 0);
        }

        /// Whether it is a shared memfd mapping (its drop punches the file).
        pub(crate) fn is_shared(&self) -> bool {
            self.memfd.is_some()
        }
    }

    impl Drop for Map {
        fn drop(&mut self) {
            // SAFETY: our mapping (a hole in it is fine for munmap).
            unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len as usize) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Kind, Map};
    use super::*;

    fn ranges_drop(kind: Kind) {
        let Some(m) = Map::new(kind, 6) else {
            eprintln!("skipped: no {kind:?} memory (hugetlb: echo 64 > /proc/sys/vm/nr_hugepages)");
            return;
        };
        let ps = m.page_size;
        let advice = if m.is_shared() {
            libc::MADV_REMOVE
        } else {
            libc::MADV_DONTNEED
        };
        // Pages 0-1 (one range), 3, 5: three ranges, one call.
        let r = [
            (m.addr, 2 * ps),
            (m.addr + 3 * ps, ps),
            (m.addr + 5 * ps, ps),
        ];
        assert_eq!(madvise_ranges(&r, advice), Ok(4 * ps), "{kind:?}");
        for (i, gone) in [
            (0, true),
            (1, true),
            (2, false),
            (3, true),
            (4, false),
            (5, true),
        ] {
            assert_eq!(m.resident(i), !gone, "{kind:?}: page {i}");
            // Dropped pages read zeros again (private and shared alike:
            // MADV_REMOVE frees the memfd's pages too).
            assert_eq!(m.read(i), if gone { 0 } else { 0xA5 }, "{kind:?}: page {i}");
        }
    }

    #[test]
    fn madvise_ranges_anon() {
        ranges_drop(Kind::Anon);
    }

    #[test]
    fn madvise_ranges_shmem() {
        ranges_drop(Kind::Shmem);
    }

    #[test]
    fn madvise_ranges_hugetlb() {
        ranges_drop(Kind::Hugetlb);
    }

    /// The kernel stops at the first range that fails: the bytes of the
    /// ranges before it, or its errno when it is the first.
    #[test]
    fn madvise_ranges_stops_at_a_hole() {
        let m = Map::new(Kind::Anon, 4).unwrap();
        let ps = m.page_size;
        m.unmap(2);
        let r = [
            (m.addr, ps),
            (m.addr + ps, ps),
            (m.addr + 2 * ps, ps),
            (m.addr + 3 * ps, ps),
        ];
        assert_eq!(madvise_ranges(&r, libc::MADV_DONTNEED), Ok(2 * ps));
        assert!(!m.resident(0) && !m.resident(1) && m.resident(3));
        let e = madvise_ranges(&r[2..], libc::MADV_DONTNEED).unwrap_err();
        assert_eq!(e, libc::ENOMEM);
        assert!(!vector_unsupported(e));
        // MADV_REMOVE of private memory: the advice's own EINVAL.
        assert_eq!(
            madvise_ranges(&r[3..], libc::MADV_REMOVE),
            Err(libc::EINVAL)
        );
    }
}
