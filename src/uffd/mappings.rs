// SPDX-License-Identifier: MIT OR Apache-2.0
//! What is mapped at an address, and with which page size: one
//! PROCMAP_QUERY per address (see sys::procmap), with `/proc/<pid>/smaps`
//! ("KernelPageSize") as the fallback for kernels before 6.11.

use super::error::{Error, Result};

/// One mapping of the calling process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// The first address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Page size the kernel uses for this mapping (4 KiB, or hugetlb's).
    pub page_size: u64,
}

/// Parse smaps text into mappings (header line, then "KernelPageSize:").
pub(crate) fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("KernelPageSize:") {
            let kb: u64 = rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .unwrap_or(4);
            if let Some(last) = out.last_mut() {
                last.page_size = kb * 1024;
            }
            continue;
        }
        // Header lines look like "7f00-7f10 rw-p ...": a hex range first.
        let first = line.split(' ').next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(s), Ok(e)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                out.push(Mapping {
                    start: s,
                    end: e,
                    page_size: crate::sys::base_page_size(),
                });
            }
        }
    }
    out
}

/// The mapping of process `pid` (None: this process) that covers `addr`,
/// or `None` when nothing is mapped there.
///
/// Asks the kernel with PROCMAP_QUERY (Linux 6.11+), which costs the same
/// whatever the size of the process and allocates nothing. Older kernels
/// lack it; there the answer comes from `/proc/<pid>/smaps`, read up to the
/// mapping in question (its cost grows with the mappings before it).
pub fn mapping_at(pid: Option<i32>, addr: u64) -> Result<Option<Mapping>> {
    match crate::sys::procmap::query(pid, addr) {
        Ok(v) => Ok(v.map(|v| Mapping {
            start: v.start,
            end: v.end,
            page_size: v.page_size,
        })),
        Err(libc::ENOTTY) | Err(libc::EINVAL) => mapping_at_from_smaps(pid, addr),
        Err(e) => Err(Error::os(
            "PROCMAP_QUERY",
            e,
            format!(
                "asking /proc/{}/maps what is mapped at {addr:#x}",
                pid_name(pid)
            ),
        )),
    }
}

fn pid_name(pid: Option<i32>) -> String {
    pid.map_or_else(|| "self".to_string(), |p| p.to_string())
}

/// `mapping_at` for kernels without PROCMAP_QUERY: smaps, read in order and
/// parsed up to the mapping that covers `addr`.
pub(crate) fn mapping_at_from_smaps(pid: Option<i32>, addr: u64) -> Result<Option<Mapping>> {
    let path = format!("/proc/{}/smaps", pid_name(pid));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::os("read smaps", e.raw_os_error().unwrap_or(libc::EIO), path))?;
    Ok(parse_smaps(&text)
        .into_iter()
        .find(|m| m.start <= addr && addr < m.end))
}

/// The page size of the mapping containing `addr` in this process:
/// the huge-page size for hugetlb memory, the base page size otherwise.
/// ENOMEM when nothing is mapped there.
pub fn page_size_at(addr: u64) -> Result<u64> {
    page_size_of(None, addr)
}

/// `page_size_at` for the memory of another process (or thread: a
/// thread id names its process's memory too), e.g. the owner of a
/// userfaultfd received over a socket.
pub fn page_size_in(pid: i32, addr: u64) -> Result<u64> {
    page_size_of(Some(pid), addr)
}

fn page_size_of(pid: Option<i32>, addr: u64) -> Result<u64> {
    mapping_at(pid, addr)?.map(|m| m.page_size).ok_or_else(|| {
        Error::os(
            "page size lookup",
            libc::ENOMEM,
            format!("nothing is mapped at {addr:#x} in /proc/{}", pid_name(pid)),
        )
    })
}

#[cfg(test)]
#[allow(unsafe_code)] // the test's own mappings
mod tests {
    use super::*;

    /// A mapping made for a test, unmapped on drop.
    struct Map(*mut libc::c_void, usize);

    impl Map {
        /// `len` bytes: anonymous, or of a fresh memfd (`memfd_flags`).
        fn new(len: usize, mmap_flags: i32, memfd_flags: Option<u32>) -> Map {
            // SAFETY: plain memfd/ftruncate/mmap calls; results checked.
            unsafe {
                let fd = match memfd_flags {
                    Some(f) => {
                        let fd = libc::memfd_create(c"mapping-test".as_ptr(), f);
                        assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
                        assert_eq!(libc::ftruncate(fd, len as i64), 0);
                        fd
                    }
                    None => -1,
                };
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    mmap_flags,
                    fd,
                    0,
                );
                if fd >= 0 {
                    libc::close(fd);
                }
                assert_ne!(
                    p,
                    libc::MAP_FAILED,
                    "mmap: {}",
                    std::io::Error::last_os_error()
                );
                Map(p, len)
            }
        }
    }

    impl Drop for Map {
        fn drop(&mut self) {
            // SAFETY: our own mapping.
            unsafe { libc::munmap(self.0, self.1) };
        }
    }

    /// PROCMAP_QUERY and the smaps fallback agree, on every kind of
    /// memory (moved here from tests/page_size.rs: the fallback is not
    /// public).
    #[test]
    fn procmap_query_agrees_with_smaps() {
        let huge = 2 << 20;
        let anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        let kinds = [
            ("anon", 4096, anon, None),
            ("shmem", 4096, libc::MAP_SHARED, Some(0)),
            ("shmem private", 4096, libc::MAP_PRIVATE, Some(0)),
            ("hugetlb", huge, libc::MAP_SHARED, Some(libc::MFD_HUGETLB)),
            ("hugetlb private", huge, anon | libc::MAP_HUGETLB, None),
        ];
        for (what, page, flags, memfd) in kinds {
            let map = Map::new(2 * page, flags, memfd);
            let inner = map.0 as u64 + page as u64 + 17;
            assert_eq!(page_size_at(inner).unwrap(), page as u64, "{what}");
            // The mapping's bounds may change between the two reads (an
            // mmap by another thread next to it merges with it): read
            // again until both agree.
            let (mut fast, mut slow);
            let mut tries = 0;
            loop {
                fast = mapping_at(None, inner).unwrap().expect("mapped");
                slow = mapping_at_from_smaps(None, inner).unwrap().expect("mapped");
                tries += 1;
                if fast == slow || tries == 20 {
                    break;
                }
            }
            assert_eq!(fast, slow, "{what}: PROCMAP_QUERY and smaps disagree");
            assert!(fast.start <= map.0 as u64 && map.0 as u64 + 2 * page as u64 <= fast.end);
        }
        // Below vm.mmap_min_addr: never mapped.
        assert_eq!(mapping_at_from_smaps(None, 0x1000).unwrap(), None);
    }

    #[test]
    fn parses_page_sizes() {
        let text = "7f0000000000-7f0000400000 rw-s 00000000 00:10 1 /anon_hugepage (deleted)\nSize: 4096 kB\nKernelPageSize:     2048 kB\n7f0000400000-7f0000401000 rw-p 00000000 00:00 0\nKernelPageSize:        4 kB\n";
        let m = parse_smaps(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].page_size, 2 << 20);
        assert_eq!(m[1].page_size, 4096);
        assert_eq!(m[1].start, 0x7f0000400000);
    }
}
