// SPDX-License-Identifier: MIT OR Apache-2.0
//! What is mapped at one address, asked of the kernel without walking the
//! process: the PROCMAP_QUERY ioctl on `/proc/<pid>/maps` (Linux 6.11 and
//! later) answers for the one mapping that covers an address, at a cost
//! that does not depend on how many mappings the process has or how much
//! of them is resident. `/proc/<pid>/smaps`, by contrast, walks the page
//! tables of every mapping to print its counters.
//!
//! Nothing here allocates: the path is formatted into a stack buffer, so
//! the monitor's reader may call it (see monitor/reserve.rs for why the
//! reader must not allocate).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `struct procmap_query` of `<linux/fs.h>` (6.11+): 104 bytes.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct ProcmapQuery {
    size: u64,
    query_flags: u64,
    query_addr: u64,
    vma_start: u64,
    vma_end: u64,
    vma_flags: u64,
    vma_page_size: u64,
    vma_offset: u64,
    inode: u64,
    dev_major: u32,
    dev_minor: u32,
    vma_name_size: u32,
    build_id_size: u32,
    vma_name_addr: u64,
    build_id_addr: u64,
}
const _: () = assert!(std::mem::size_of::<ProcmapQuery>() == 104);

/// `PROCMAP_QUERY`: `_IOWR('f', 17, struct procmap_query)`, with the
/// target's `_IOC` encoding (0xC0686611 on x86_64).
pub const PROCMAP_QUERY: u64 = super::arch::iowr::<ProcmapQuery>(b'f', 17);

/// `PROCMAP_QUERY_FILE_BACKED_VMA`: query flag, only file-backed mappings.
const _FILE_BACKED_VMA: u64 = 0x20;

/// One mapping, as PROCMAP_QUERY describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    /// The kernel's page size for this mapping (`vma_kernel_pagesize`):
    /// the huge-page size for hugetlb, the base page size otherwise.
    pub page_size: u64,
    /// PROCMAP_QUERY_VMA_* bits.
    pub flags: u64,
}

/// "/proc/self/maps" or "/proc/<pid>/maps", NUL-terminated, in `buf`.
fn maps_path(pid: Option<i32>, buf: &mut [u8; 32]) -> &std::ffi::CStr {
    let mut n = 0;
    let mut put = |bytes: &[u8], n: &mut usize| {
        buf[*n..*n + bytes.len()].copy_from_slice(bytes);
        *n += bytes.len();
    };
    put(b"/proc/", &mut n);
    match pid {
        None => put(b"self", &mut n),
        Some(p) => {
            let mut digits = [0u8; 10];
            let mut v = p.unsigned_abs();
            let mut i = digits.len();
            loop {
                i -= 1;
                digits[i] = b'0' + (v % 10) as u8;
                v /= 10;
                if v == 0 {
                    break;
                }
            }
            put(&digits[i..], &mut n);
        }
    }
    put(b"/maps\0", &mut n);
    std::ffi::CStr::from_bytes_with_nul(&buf[..n]).unwrap_or(c"/proc/self/maps")
}

/// Open the maps file of `pid` (None: this process), close-on-exec.
pub fn open_maps(pid: Option<i32>) -> Result<OwnedFd, i32> {
    let mut buf = [0u8; 32];
    let path = maps_path(pid, &mut buf);
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(super::last_errno());
    }
    // SAFETY: the descriptor was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The mapping that covers `addr`, asked on an open maps file. `Ok(None)`:
/// nothing is mapped at `addr`. `Err(ENOTTY)`: the kernel has no
/// PROCMAP_QUERY (before 6.11).
pub fn query_fd(maps: &OwnedFd, addr: u64) -> Result<Option<Vma>, i32> {
    let mut q = ProcmapQuery {
        size: std::mem::size_of::<ProcmapQuery>() as u64,
        query_addr: addr,
        ..Default::default()
    };
    // SAFETY: `maps` is an open /proc/<pid>/maps; PROCMAP_QUERY reads and
    // writes one `struct procmap_query` whose size is given in `q.size`,
    // and no name or build-id buffer is passed (both sizes are 0).
    let rc = unsafe {
        libc::ioctl(
            maps.as_raw_fd(),
            PROCMAP_QUERY as _,
            &mut q as *mut ProcmapQuery,
        )
    };
    if rc < 0 {
        return match super::last_errno() {
            libc::ENOENT => Ok(None),
            e => Err(e),
        };
    }
    Ok(Some(Vma {
        start: q.vma_start,
        end: q.vma_end,
        page_size: q.vma_page_size,
        flags: q.vma_flags,
    }))
}

/// The mapping of `pid` (None: this process) that covers `addr`.
pub fn query(pid: Option<i32>, addr: u64) -> Result<Option<Vma>, i32> {
    let maps = open_maps(pid)?;
    query_fd(&maps, addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_paths_without_allocating() {
        let mut b = [0u8; 32];
        assert_eq!(maps_path(None, &mut b).to_bytes(), b"/proc/self/maps");
        let mut b = [0u8; 32];
        assert_eq!(maps_path(Some(0), &mut b).to_bytes(), b"/proc/0/maps");
        let mut b = [0u8; 32];
        assert_eq!(
            maps_path(Some(i32::MAX), &mut b).to_bytes(),
            b"/proc/2147483647/maps"
        );
    }

    #[test]
    fn request_number_is_the_kernels() {
        // _IOWR('f', 17, struct procmap_query) as <linux/fs.h> of 6.11
        // computes it on x86_64 and arm64.
        assert_eq!(PROCMAP_QUERY, 0xC068_6611);
    }
}
