// SPDX-License-Identifier: MIT OR Apache-2.0
//! What is mapped at an address, and with which page size: one
//! PROCMAP_QUERY per address (see sys::procmap), with `/proc/<pid>/smaps`
//! ("KernelPageSize") as the fallback for kernels before 6.11.

use super::error::{Error, Result};

/// One mapping of the calling process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// Page size the kernel uses for this mapping (4 KiB, or hugetlb's).
    pub page_size: u64,
}

/// Parse smaps text into mappings (header line, then "KernelPageSize:").
pub fn parse_smaps(text: &str) -> Vec<Mapping> {
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
pub fn mapping_at_from_smaps(pid: Option<i32>, addr: u64) -> Result<Option<Mapping>> {
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
mod tests {
    use super::*;

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
