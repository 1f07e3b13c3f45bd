// SPDX-License-Identifier: MIT OR Apache-2.0
//! Hand-off of a userfaultfd to a handler process over a Unix socket.
//!
//! The process that owns the memory (a VMM, a restored process) opens a
//! userfaultfd, registers its ranges, and [`send`]s the descriptor with a
//! description of the ranges; the handler [`recv`]s it, checks it, and
//! serves the ranges with a [`Monitor`]
//! ([`add_to_monitor`]), stopping when the owner dies
//! ([`Monitor::stop_on_peer_exit`](crate::monitor::Monitor::stop_on_peer_exit)).
//!
//! # Wire format (version 1)
//!
//! One message (one sendmsg(2)) with the descriptor in an SCM_RIGHTS
//! control message and these bytes, every field little-endian:
//!
//! | offset | size | field                                           |
//! |--------|------|-------------------------------------------------|
//! | 0      | 4    | magic `0x4f484655` ("UFHO")                     |
//! | 4      | 2    | version (1)                                     |
//! | 6      | 2    | header size (32)                                |
//! | 8      | 4    | region count (at most [`MAX_REGIONS`])          |
//! | 12     | 4    | region entry size (40)                          |
//! | 16     | 8    | the sender's negotiated features                |
//! | 24     | 8    | reserved, 0                                     |
//! | 32 + 40 i | 40 | region i: start, length, page size, source offset, tag (5 × u64) |
//!
//! A receiver refuses (and closes the descriptor it came with): a
//! message shorter than its header says, or cut by the kernel
//! (MSG_TRUNC, MSG_CTRUNC) — EBADMSG; a wrong magic, version, header or
//! entry size — EPROTO; more regions than [`MAX_REGIONS`] — EMSGSIZE,
//! or than the caller has room for — ENOBUFS; a region that is empty,
//! not aligned to its page size, with a page size that is not a power of
//! two of at least the base page size, wrapping, or overlapping another —
//! EBADMSG; no descriptor, more than one, or one that is not a
//! userfaultfd — EBADF; a peer whose credentials are not the required
//! ones — EPERM; the peer closed before sending — ECONNRESET; no message
//! within the timeout — ETIMEDOUT.

use crate::monitor::{Monitor, RegionOptions, Source};
use crate::sys::socket;
use crate::uffd::{Error, HandedOver, OpenFlags, OpenOptions, Range, Result, Uffd};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// The message's magic number ("UFHO" in memory order).
pub const MAGIC: u32 = 0x4f48_4655;
/// The wire format's version.
pub const VERSION: u16 = 1;
/// Bytes of the header.
pub const HEADER_SIZE: usize = 32;
/// Bytes of each region entry.
pub const ENTRY_SIZE: usize = 40;
/// The most regions one message may describe.
pub const MAX_REGIONS: usize = 1024;

/// One range of the sender's memory, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RegionDesc {
    /// Its first address, in the sender's address space.
    pub start: u64,
    /// Its length in bytes (a multiple of `page_size`).
    pub len: u64,
    /// The page size of the mapping (4 KiB, 2 MiB for hugetlb...): the
    /// receiver cannot learn it from an adopted descriptor.
    pub page_size: u64,
    /// Where its first byte is in the page source (a file offset).
    pub source_offset: u64,
    /// The sender's tag, carried as is.
    pub tag: u64,
}

/// What a receiver requires of its peer (`None`: anything).
#[derive(Debug, Clone, Copy, Default)]
pub struct RecvOptions {
    /// The peer's uid (SO_PEERCRED) must be this.
    pub uid: Option<u32>,
    /// The peer's pid (SO_PEERCRED) must be this.
    pub pid: Option<i32>,
    /// Give up after this many milliseconds without a message (`None`:
    /// wait as long as the peer lives).
    pub timeout_ms: Option<u32>,
}

/// The peer of a socket, as the kernel recorded it (SO_PEERCRED).
#[derive(Debug)]
pub struct Peer {
    /// Its pid (0 if in a pid namespace this process cannot see).
    pub pid: i32,
    /// Its uid.
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
    /// A pidfd of it, opened as the message arrived (`None` where the
    /// kernel has no pidfd_open or the pid is not visible).
    pub pidfd: Option<OwnedFd>,
}

/// A received hand-off.
#[derive(Debug)]
pub struct Received {
    /// The userfaultfd, adopted.
    pub uffd: Uffd,
    /// The ranges it serves, checked.
    pub regions: Vec<RegionDesc>,
    /// Who sent it.
    pub peer: Peer,
}

fn put(buf: &mut Vec<u8>, v: &[u8]) {
    buf.extend_from_slice(v);
}

/// Encode a hand-off message (the bytes; the descriptor travels beside).
pub fn encode(features: u64, regions: &[RegionDesc]) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_SIZE + ENTRY_SIZE * regions.len());
    put(&mut b, &MAGIC.to_le_bytes());
    put(&mut b, &VERSION.to_le_bytes());
    put(&mut b, &(HEADER_SIZE as u16).to_le_bytes());
    put(&mut b, &(regions.len() as u32).to_le_bytes());
    put(&mut b, &(ENTRY_SIZE as u32).to_le_bytes());
    put(&mut b, &features.to_le_bytes());
    put(&mut b, &0u64.to_le_bytes());
    for r in regions {
        for v in [r.start, r.len, r.page_size, r.source_offset, r.tag] {
            put(&mut b, &v.to_le_bytes());
        }
    }
    b
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn bad(errno: i32, what: String) -> Error {
    Error::os("libuffd_recv", errno, what)
}

/// The region count the header of `b` announces, after checking the
/// header itself (`b` holds at least HEADER_SIZE bytes).
fn check_header(b: &[u8]) -> Result<usize> {
    let magic = u32_at(b, 0);
    if magic != MAGIC {
        return Err(bad(
            libc::EPROTO,
            format!("bad magic {magic:#010x} (a hand-off message starts with {MAGIC:#010x}): not a libuffd hand-off"),
        ));
    }
    let (version, hsize, esize) = (u16_at(b, 4), u16_at(b, 6), u32_at(b, 12));
    if version != VERSION || hsize as usize != HEADER_SIZE || esize as usize != ENTRY_SIZE {
        return Err(bad(
            libc::EPROTO,
            format!("wire format version {version} (header {hsize} bytes, entries {esize}): this library speaks version {VERSION} ({HEADER_SIZE}, {ENTRY_SIZE})"),
        ));
    }
    let count = u32_at(b, 8) as usize;
    if count > MAX_REGIONS {
        return Err(bad(
            libc::EMSGSIZE,
            format!("{count} regions announced: at most {MAX_REGIONS}"),
        ));
    }
    Ok(count)
}

/// Decode and check a whole message (header and `count` entries).
pub fn decode(b: &[u8]) -> Result<(u64, Vec<RegionDesc>)> {
    if b.len() < HEADER_SIZE {
        return Err(bad(
            libc::EBADMSG,
            format!("truncated: {} bytes, a header has {HEADER_SIZE}", b.len()),
        ));
    }
    let count = check_header(b)?;
    let want = HEADER_SIZE + count * ENTRY_SIZE;
    if b.len() != want {
        return Err(bad(
            libc::EBADMSG,
            format!(
                "{} bytes for {count} regions: the message must have {want}",
                b.len()
            ),
        ));
    }
    let features = u64_at(b, 16);
    let base = crate::sys::base_page_size();
    let mut regions: Vec<RegionDesc> = (0..count)
        .map(|i| {
            let at = HEADER_SIZE + i * ENTRY_SIZE;
            RegionDesc {
                start: u64_at(b, at),
                len: u64_at(b, at + 8),
                page_size: u64_at(b, at + 16),
                source_offset: u64_at(b, at + 24),
                tag: u64_at(b, at + 32),
            }
        })
        .collect();
    for (i, r) in regions.iter().enumerate() {
        let ps = r.page_size;
        if !ps.is_power_of_two() || ps < base {
            return Err(bad(
                libc::EBADMSG,
                format!("region {i}: page size {ps:#x} is not a power of two of at least {base}"),
            ));
        }
        if r.len == 0
            || r.start % ps != 0
            || r.len % ps != 0
            || r.start.checked_add(r.len).is_none()
        {
            return Err(bad(
                libc::EBADMSG,
                format!(
                    "region {i}: [{:#x}, +{:#x}) is empty, wraps or is not aligned to its {} KiB pages",
                    r.start,
                    r.len,
                    ps / 1024
                ),
            ));
        }
    }
    let mut sorted: Vec<(usize, RegionDesc)> = regions.iter().copied().enumerate().collect();
    sorted.sort_by_key(|(_, r)| r.start);
    for w in sorted.windows(2) {
        if w[0].1.start + w[0].1.len > w[1].1.start {
            return Err(bad(
                libc::EBADMSG,
                format!("regions {} and {} overlap", w[0].0, w[1].0),
            ));
        }
    }
    regions.shrink_to_fit();
    Ok((features, regions))
}

/// Send `uffd` and the description of `regions` over the connected Unix
/// socket `sock` (SOCK_SEQPACKET recommended; on SOCK_STREAM, which has
/// no message boundaries, send nothing else before the receiver has read
/// it), in one message. The regions are checked as a receiver would (EINVAL).
pub fn send(sock: BorrowedFd<'_>, uffd: &Uffd, regions: &[RegionDesc]) -> Result<()> {
    if regions.len() > MAX_REGIONS {
        return Err(Error::invalid(format!(
            "libuffd_send: {} regions: at most {MAX_REGIONS}",
            regions.len()
        )));
    }
    let msg = encode(uffd.features().bits(), regions);
    if let Err(e) = decode(&msg) {
        return Err(Error::invalid(format!("libuffd_send: {e}")));
    }
    let n = socket::send_with_fds(sock, &msg, &[uffd.fd().as_raw_fd()])
        .map_err(|e| Error::os("sendmsg", e, "sending the userfaultfd (SCM_RIGHTS)"))?;
    if n != msg.len() {
        return Err(Error::os(
            "sendmsg",
            libc::EMSGSIZE,
            format!("sent {n} of {} bytes", msg.len()),
        ));
    }
    Ok(())
}

/// Wait for `sock` to be readable within `deadline` (None: no limit).
fn wait_readable(sock: BorrowedFd<'_>, deadline: Option<std::time::Instant>) -> Result<()> {
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(bad(
                        libc::ETIMEDOUT,
                        "no hand-off message within the timeout".into(),
                    ));
                }
                left.as_millis().clamp(1, i32::MAX as u128) as i32
            }
        };
        let mut p = [libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        match crate::sys::wait::poll_fds(&mut p, ms) {
            Ok(n) if n > 0 => return Ok(()),
            Ok(_) => continue,
            Err(libc::EINTR) => continue,
            Err(e) => return Err(Error::os("poll", e, "waiting for the hand-off message")),
        }
    }
}

/// Whether `fd` is a userfaultfd: its anonymous inode is `[userfaultfd]`
/// (made by userfaultfd(2) or /dev/userfaultfd alike).
pub fn is_userfaultfd(fd: BorrowedFd<'_>) -> Result<bool> {
    let link = socket::fd_link(fd).map_err(|e| Error::os("readlink", e, "/proc/self/fd"))?;
    Ok(link == "anon_inode:[userfaultfd]")
}

/// Receive a hand-off from `sock` (see the module's text for what is
/// refused, and with which errno). Every descriptor of a refused message
/// is closed.
pub fn recv(sock: BorrowedFd<'_>, opts: &RecvOptions) -> Result<Received> {
    let (pid, uid, gid) = socket::peer_cred(sock).map_err(|e| {
        Error::os(
            "getsockopt(SO_PEERCRED)",
            e,
            "a connected Unix socket is needed",
        )
    })?;
    if let Some(want) = opts.uid {
        if want != uid {
            return Err(bad(libc::EPERM, format!("peer uid {uid}, {want} required")));
        }
    }
    if let Some(want) = opts.pid {
        if want != pid {
            return Err(bad(libc::EPERM, format!("peer pid {pid}, {want} required")));
        }
    }
    let stream = socket::socket_type(sock).map_err(|e| Error::os("getsockopt(SO_TYPE)", e, ""))?
        == libc::SOCK_STREAM;
    let deadline = opts
        .timeout_ms
        .map(|ms| std::time::Instant::now() + std::time::Duration::from_millis(ms as u64));
    wait_readable(sock, deadline)?;
    // One byte more than the largest message: a longer one is cut (TRUNC).
    let cap = HEADER_SIZE + MAX_REGIONS * ENTRY_SIZE + 1;
    let mut buf = vec![0u8; cap];
    // The pidfd first: the peer is connected, so its pid is still its.
    let pidfd = if pid > 0 {
        socket::pidfd_open(pid).ok()
    } else {
        None
    };
    let got = socket::recv_with_fds(sock, &mut buf)
        .map_err(|e| Error::os("recvmsg", e, "receiving the hand-off message"))?;
    // From here on `got.fds` is dropped (closed) on every error.
    let mut len = got.len;
    if len == 0 && got.fds.is_empty() {
        return Err(bad(
            libc::ECONNRESET,
            "the peer closed the socket without sending".into(),
        ));
    }
    if got.ctruncated {
        return Err(bad(
            libc::EBADMSG,
            "control data truncated (MSG_CTRUNC): more descriptors than expected".into(),
        ));
    }
    if got.truncated || len >= cap {
        return Err(bad(
            libc::EBADMSG,
            format!(
                "message longer than the largest hand-off ({} bytes): cut (MSG_TRUNC)",
                cap - 1
            ),
        ));
    }
    if stream && len > 0 {
        // A stream has no message boundaries: read the rest of the header,
        // then the rest it announces.
        let mut want = HEADER_SIZE;
        let mut counted = false;
        while len < want || !counted {
            if len >= HEADER_SIZE && !counted {
                want = HEADER_SIZE + check_header(&buf[..len])? * ENTRY_SIZE;
                counted = true;
                continue;
            }
            wait_readable(sock, deadline)?;
            let n = socket::recv_some(sock, &mut buf[len..want])
                .map_err(|e| Error::os("recv", e, "reading the hand-off message"))?;
            if n == 0 {
                break;
            }
            len += n;
        }
    }
    let (_features, regions) = decode(&buf[..len])?;
    let mut fds = got.fds;
    if fds.len() != 1 {
        return Err(bad(
            libc::EBADF,
            format!(
                "the message carried {} descriptors: a hand-off carries exactly one",
                fds.len()
            ),
        ));
    }
    let fd = fds.pop().expect("one descriptor");
    if !is_userfaultfd(fd.as_fd())? {
        let what = socket::fd_link(fd.as_fd()).unwrap_or_default();
        return Err(bad(
            libc::EBADF,
            format!("the descriptor received is {what}, not a userfaultfd"),
        ));
    }
    let uffd = Uffd::adopt(
        fd,
        &OpenOptions {
            flags: OpenFlags::empty(),
            features: crate::uffd::Features::empty(),
            required: crate::uffd::Features::empty(),
        },
    )
    .map_err(|(e, _fd)| e)?;
    Ok(Received {
        uffd,
        regions,
        peer: Peer {
            pid,
            uid,
            gid,
            pidfd,
        },
    })
}

/// Serve each of `regions` of the monitor's userfaultfd `id` (a received
/// one), with its page size; `source` gives each region's page source
/// (e.g. `Source::Fd` at `region.source_offset`). The sender registered
/// the ranges: they are not registered again.
///
/// # Safety
///
/// As [`HandedOver::new`] for every region: the ranges are the sender's
/// memory (another process's); if the sender was this very process, no
/// Rust value may live in them.
#[allow(unsafe_code)] // the declaration; the contract is the caller's
pub unsafe fn add_to_monitor(
    monitor: &Monitor,
    id: u32,
    regions: &[RegionDesc],
    source: &dyn Fn(&RegionDesc) -> Source,
) -> Result<()> {
    for r in regions {
        // SAFETY: the caller's promise above.
        let memory = unsafe { HandedOver::new(Range::new(r.start, r.len)) };
        monitor.add_region(
            id,
            memory,
            RegionOptions {
                source: source(r),
                page_size: r.page_size,
                user_data: r.tag,
                ..RegionOptions::default()
            },
        )?;
    }
    Ok(())
}
