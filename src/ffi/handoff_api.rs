// SPDX-License-Identifier: MIT OR Apache-2.0
//! The C ABI of the hand-off of a userfaultfd to a handler process
//! (crate::handoff): libuffd_send, libuffd_recv, libuffd_monitor_add_received,
//! libuffd_monitor_watch_peer.

use super::boundary::{guard, last_error_ptr};
use super::ext::copy_opts;
use super::handle::{borrow, into_c, Handle};
use super::monitor_api::{libuffd_monitor_add_region, monitor_of};
use super::types::{libuffd_handle, libuffd_monitor, libuffd_region_opts};
use crate::handoff::{self, RecvOptions, RegionDesc};
use crate::sys::wait::borrow_fd;
use crate::uffd::Error;
use std::os::fd::{IntoRawFd, OwnedFd};

/// The most regions one hand-off message describes.
pub const LIBUFFD_HANDOFF_MAX_REGIONS: u32 = 1024;
/// The hand-off wire format's version (the one this library speaks).
pub const LIBUFFD_HANDOFF_VERSION: u32 = 1;

/// libuffd_recv_opts.flags: refuse a peer whose uid (SO_PEERCRED) is not
/// libuffd_recv_opts.uid.
pub const LIBUFFD_RECV_CHECK_UID: u32 = 0x1;
/// libuffd_recv_opts.flags: refuse a peer whose pid (SO_PEERCRED) is not
/// libuffd_recv_opts.pid.
pub const LIBUFFD_RECV_CHECK_PID: u32 = 0x2;

/// One range of the sender's memory in a hand-off: what the handler needs
/// to serve it. start and len are in the sender's address space.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct libuffd_region_desc {
    /// The range's first address (aligned to page_size).
    pub start: *mut libc::c_void,
    /// Its length in bytes (a multiple of page_size, not 0).
    pub len: u64,
    /// The page size of the mapping: 4096, or 2 MiB for 2 MiB hugetlb
    /// memory (the handler cannot learn it from an adopted descriptor).
    pub page_size: u64,
    /// Where the range's first byte is in the page source (a file offset:
    /// libuffd_monitor_add_received() adds it to opts->fd_offset).
    pub source_offset: u64,
    /// The sender's tag, carried as is (libuffd_monitor_add_received()
    /// hands a non-zero tag to on_fault as region_data).
    pub tag: u64,
}

/// What libuffd_recv() requires of the peer (all zero: nothing, and no
/// time limit). Set sz to the struct's size.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct libuffd_recv_opts {
    /// sizeof(struct libuffd_recv_opts).
    pub sz: usize,
    /// LIBUFFD_RECV_CHECK_* flags.
    pub flags: u32,
    /// With LIBUFFD_RECV_CHECK_UID: the uid the peer must have.
    pub uid: u32,
    /// With LIBUFFD_RECV_CHECK_PID: the pid the peer must have.
    pub pid: i32,
    /// Give up with -ETIMEDOUT after this many milliseconds without a
    /// message (0: wait as long as the peer lives; its death or close is
    /// -ECONNRESET).
    pub timeout_ms: u32,
}

/// Who sent a hand-off (libuffd_recv()).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct libuffd_peer {
    /// Its pid (SO_PEERCRED; 0 if in a pid namespace not visible here).
    pub pid: i32,
    /// Its uid.
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
    /// A pidfd of it, opened as the message arrived (close-on-exec; the
    /// caller closes it), for libuffd_monitor_watch_peer() or poll(2): -1
    /// where the kernel has no pidfd_open(2) or the pid is not visible.
    pub pidfd: i32,
}

/// Send userfaultfd h and the description of its ranges to a handler
/// process over the connected Unix socket sock, in one message: the
/// descriptor in an SCM_RIGHTS control message, the n regions in the
/// versioned wire format of libuffd(7) HAND-OFF (magic, version, count;
/// per region address, length, page size, source offset, tag).
/// SOCK_SEQPACKET is recommended (a message keeps its boundaries);
/// SOCK_STREAM works. The ranges should be registered on h before (the
/// handler does not register them).
///
/// Thread safety: may be called from any thread.
///
/// Returns: 0, or -EINVAL (NULL handle, NULL regions with n > 0, more than
/// LIBUFFD_HANDOFF_MAX_REGIONS, a region the receiver would refuse: empty,
/// unaligned, bad page size, overlapping), or sendmsg(2)'s errno (-EPIPE:
/// the peer closed; -ENOTSOCK, -EBADF...).
///
/// Pointers: h NULL or a live handle; regions NULL or n readable elements.
#[no_mangle]
pub unsafe extern "C" fn libuffd_send(
    sock: i32,
    h: *const libuffd_handle,
    regions: *const libuffd_region_desc,
    n: usize,
) -> i32 {
    guard("libuffd_send", || {
        // SAFETY: contract above.
        let h = unsafe { borrow(h) }?;
        if sock < 0 {
            return Err(Error::invalid(format!(
                "libuffd_send: socket {sock} is negative"
            )));
        }
        if n > LIBUFFD_HANDOFF_MAX_REGIONS as usize {
            return Err(Error::invalid(format!(
                "libuffd_send: {n} regions: at most {LIBUFFD_HANDOFF_MAX_REGIONS}"
            )));
        }
        if regions.is_null() && n > 0 {
            return Err(Error::invalid("libuffd_send: regions is NULL"));
        }
        let list: Vec<RegionDesc> = if n == 0 {
            Vec::new()
        } else {
            // SAFETY: contract above: n readable elements.
            unsafe { std::slice::from_raw_parts(regions, n) }
                .iter()
                .map(|r| RegionDesc {
                    start: r.start as usize as u64,
                    len: r.len,
                    page_size: r.page_size,
                    source_offset: r.source_offset,
                    tag: r.tag,
                })
                .collect()
        };
        handoff::send(borrow_fd(sock), &h.uffd, &list)?;
        Ok(0)
    })
}

/// Receive a userfaultfd and the description of its ranges sent with
/// libuffd_send() on the connected Unix socket sock; on success *out is a
/// new handle of it (free it with libuffd_handle_free()), regions[0..count)
/// the ranges, checked, and *peer (if not NULL) who sent it.
///
/// Checked, each refusal closing every descriptor that came with the
/// message and consuming it: the peer's credentials (opts->flags); the
/// message's length (-EBADMSG: shorter than its header says, or cut by the
/// kernel, MSG_TRUNC/MSG_CTRUNC); its magic, version and sizes (-EPROTO: not
/// a libuffd hand-off, or another version); the region count (-EMSGSIZE
/// above LIBUFFD_HANDOFF_MAX_REGIONS, -ENOBUFS above cap); each region
/// (-EBADMSG: empty, wrapping, not aligned to its page size, a page size
/// that is not a power of two of at least the base page size, overlapping
/// another); the descriptors (-EBADF: none, more than one, or one that is
/// not a userfaultfd, as its anonymous inode "[userfaultfd]" tells).
///
/// Thread safety: may be called from any thread; one receiver per socket.
///
/// Returns: the number of regions (>= 0), or -EINVAL (negative sock, NULL
/// out, NULL regions with cap > 0, unknown flags), -EPERM (the peer's uid
/// or pid is not the required one), -ECONNRESET (the peer closed without
/// sending), -ETIMEDOUT (opts->timeout_ms passed), the refusals above, or
/// recvmsg(2)'s errno (-ENOTSOCK...).
///
/// Pointers: opts NULL or a libuffd_recv_opts of opts->sz readable bytes;
/// out NULL or writable; regions NULL or cap writable elements; peer NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn libuffd_recv(
    sock: i32,
    opts: *const libuffd_recv_opts,
    out: *mut *mut libuffd_handle,
    regions: *mut libuffd_region_desc,
    cap: usize,
    peer: *mut libuffd_peer,
) -> i32 {
    guard("libuffd_recv", || {
        if out.is_null() {
            return Err(Error::invalid("libuffd_recv: out is NULL"));
        }
        if sock < 0 {
            return Err(Error::invalid(format!(
                "libuffd_recv: socket {sock} is negative"
            )));
        }
        if regions.is_null() && cap > 0 {
            return Err(Error::invalid(
                "libuffd_recv: regions is NULL but cap is not 0",
            ));
        }
        // SAFETY: contract above.
        let o = unsafe { copy_opts("libuffd_recv_opts", opts) }?;
        let known = LIBUFFD_RECV_CHECK_UID | LIBUFFD_RECV_CHECK_PID;
        if o.flags & !known != 0 {
            return Err(Error::invalid(format!(
                "libuffd_recv_opts: unknown flags {:#x}",
                o.flags & !known
            )));
        }
        let r = handoff::recv(
            borrow_fd(sock),
            &RecvOptions {
                uid: (o.flags & LIBUFFD_RECV_CHECK_UID != 0).then_some(o.uid),
                pid: (o.flags & LIBUFFD_RECV_CHECK_PID != 0).then_some(o.pid),
                timeout_ms: (o.timeout_ms != 0).then_some(o.timeout_ms),
            },
        )?;
        if r.regions.len() > cap {
            return Err(Error::os(
                "libuffd_recv",
                libc::ENOBUFS,
                format!(
                    "the message describes {} regions, the array has room for {cap}: the descriptor was closed",
                    r.regions.len()
                ),
            ));
        }
        for (i, d) in r.regions.iter().enumerate() {
            // SAFETY: i < cap writable elements (contract above).
            unsafe {
                regions.add(i).write(libuffd_region_desc {
                    start: d.start as usize as *mut libc::c_void,
                    len: d.len,
                    page_size: d.page_size,
                    source_offset: d.source_offset,
                    tag: d.tag,
                })
            };
        }
        if !peer.is_null() {
            let p = libuffd_peer {
                pid: r.peer.pid,
                uid: r.peer.uid,
                gid: r.peer.gid,
                pidfd: r.peer.pidfd.map_or(-1, |f| f.into_raw_fd()),
            };
            // SAFETY: peer is writable (contract above).
            unsafe { peer.write(p) };
        }
        let count = r.regions.len() as i32;
        // SAFETY: out is writable (checked non-NULL, contract above).
        unsafe { out.write(into_c(Handle::new(r.uffd))) };
        Ok(count)
    })
}

/// Serve the n received regions of handle handle_id (a handle made by
/// libuffd_recv() and added with libuffd_monitor_add_handle()), each as
/// libuffd_monitor_add_region() would with opts, except: the page size is
/// the region's (regions[i].page_size, so hugetlb ranges need no guess),
/// LIBUFFD_SOURCE_FD reads at opts->fd_offset + regions[i].source_offset
/// (likewise LIBUFFD_SOURCE_REMOTE), LIBUFFD_SOURCE_BUFFER at opts->buffer +
/// regions[i].source_offset, and a non-zero tag is the region's on_fault
/// region_data (else opts->data). opts->register_mode is usually 0 (the
/// sender registered). Regions added before a failure stay added.
///
/// Thread safety: as libuffd_monitor_add_region().
///
/// Returns: 0, or libuffd_monitor_add_region()'s errors (-EINVAL: NULL
/// monitor, NULL regions with n > 0, NULL opts...).
///
/// Pointers: m NULL or a live monitor; regions NULL or n readable
/// elements; opts NULL or a libuffd_region_opts of opts->sz readable bytes.
#[no_mangle]
pub unsafe extern "C" fn libuffd_monitor_add_received(
    m: *mut libuffd_monitor,
    handle_id: u32,
    regions: *const libuffd_region_desc,
    n: usize,
    opts: *const libuffd_region_opts,
) -> i32 {
    guard("libuffd_monitor_add_received", || {
        // SAFETY: contract above.
        unsafe { monitor_of(m) }?;
        if regions.is_null() && n > 0 {
            return Err(Error::invalid(
                "libuffd_monitor_add_received: regions is NULL",
            ));
        }
        // SAFETY: contract above.
        let mut base = unsafe { copy_opts("libuffd_region_opts", opts) }?;
        base.sz = std::mem::size_of::<libuffd_region_opts>();
        for i in 0..n {
            // SAFETY: i < n readable elements (contract above).
            let d = unsafe { *regions.add(i) };
            let mut o = base;
            o.page_size = d.page_size;
            o.fd_offset = base.fd_offset.wrapping_add(d.source_offset);
            if !base.buffer.is_null() {
                o.buffer =
                    (base.buffer as usize).wrapping_add(d.source_offset as usize) as *const _;
                o.buffer_len = base.buffer_len.saturating_sub(d.source_offset);
            }
            if d.tag != 0 {
                o.data = d.tag as usize as *mut libc::c_void;
            }
            // SAFETY: m was checked live; o is a whole struct on our stack.
            let rc =
                unsafe { libuffd_monitor_add_region(m, handle_id, d.start, d.len as usize, &o) };
            if rc < 0 {
                // SAFETY: the text libuffd_monitor_add_region just recorded.
                let why = unsafe { std::ffi::CStr::from_ptr(last_error_ptr()) };
                return Err(Error::os(
                    "libuffd_monitor_add_received",
                    -rc,
                    format!("region {i} of {n}: {}", why.to_string_lossy()),
                ));
            }
        }
        Ok(0)
    })
}

/// Stop monitor m when the peer that handed it its userfaultfd dies: when
/// pidfd (libuffd_peer.pidfd) becomes readable, or sock (the hand-off
/// socket) hangs up, whichever comes first. Either may be -1, not both.
/// Both are duplicated: the caller keeps (and closes) its own. A thread
/// ("uffd-peer") watches them and calls libuffd_monitor_stop(); the stop
/// policy then releases the faults still pending (the memory went with
/// its owner). The watch ends by itself when it fired, when a run of the
/// monitor it saw has ended, or when the monitor is freed.
///
/// Thread safety: may be called from any thread, before or during a run.
///
/// Returns: 0, or -EINVAL (NULL monitor, both -1), -EBADF (a descriptor
/// that is not open), -EMFILE, -EAGAIN (no thread).
///
/// Pointers: m NULL or a live monitor.
#[no_mangle]
pub unsafe extern "C" fn libuffd_monitor_watch_peer(
    m: *mut libuffd_monitor,
    pidfd: i32,
    sock: i32,
) -> i32 {
    guard("libuffd_monitor_watch_peer", || {
        // SAFETY: contract above.
        let monitor = unsafe { monitor_of(m) }?;
        if pidfd < 0 && sock < 0 {
            return Err(Error::invalid(
                "libuffd_monitor_watch_peer: pidfd and sock are both -1: nothing to watch",
            ));
        }
        let dup = |fd: i32| -> Result<Option<OwnedFd>, Error> {
            if fd < 0 {
                return Ok(None);
            }
            crate::sys::dupfd::dup_cloexec(fd).map(Some).map_err(|e| {
                Error::os(
                    "libuffd_monitor_watch_peer",
                    e,
                    format!("duplicating descriptor {fd}"),
                )
            })
        };
        let (p, s) = (dup(pidfd)?, dup(sock)?);
        monitor.stop_on_peer_exit(p, s)?.detach();
        Ok(0)
    })
}
