// SPDX-License-Identifier: MIT OR Apache-2.0
//! Write-protect snapshots' C ABI: libuffd_snapshot_begin(), _wait(),
//! _progress(), _free().

use super::boundary::guard;
use super::ext::copy_opts;
use super::handle::{check_tag, DEAD_TAG, SNAPSHOT_TAG};
use crate::monitor::{Snapshot, SnapshotDest};
use crate::uffd::{Error, HandedOver, Range};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// libuffd_snapshot_opts.dest: copy into memory (buffer).
pub const LIBUFFD_SNAPSHOT_TO_BUFFER: u32 = 1;
/// libuffd_snapshot_opts.dest: pwrite(2) to a file (fd, fd_offset).
pub const LIBUFFD_SNAPSHOT_TO_FD: u32 = 2;

/// Where a snapshot goes (libuffd_snapshot_begin()). Set sz (LIBUFFD_OPTS
/// does) and dest.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct libuffd_snapshot_opts {
    /// sizeof(struct libuffd_snapshot_opts).
    pub sz: usize,
    /// LIBUFFD_SNAPSHOT_TO_BUFFER or LIBUFFD_SNAPSHOT_TO_FD (no default:
    /// 0 is -EINVAL).
    pub dest: u32,
    /// LIBUFFD_SNAPSHOT_TO_FD: the file, written with pwrite(2) at
    /// fd_offset + the byte's offset in the range. Duplicated
    /// (F_DUPFD_CLOEXEC): the caller may close its own once begin returns.
    pub fd: i32,
    /// LIBUFFD_SNAPSHOT_TO_BUFFER: len writable bytes, byte i of the range
    /// copied to byte i; not to be used by the caller until the snapshot
    /// has ended (libuffd_snapshot_wait() returned other than -ETIMEDOUT,
    /// or libuffd_snapshot_free()).
    pub buffer: *mut libc::c_void,
    /// LIBUFFD_SNAPSHOT_TO_FD: file offset of the range's first byte.
    pub fd_offset: u64,
}

impl Default for libuffd_snapshot_opts {
    fn default() -> Self {
        libuffd_snapshot_opts {
            sz: 0,
            dest: 0,
            fd: 0,
            buffer: std::ptr::null_mut(),
            fd_offset: 0,
        }
    }
}

/// A write-protect snapshot in progress. Create with
/// libuffd_snapshot_begin(); free with libuffd_snapshot_free().
pub struct libuffd_snapshot {
    _private: [u8; 0],
}

#[repr(C)]
struct SnapshotBox {
    tag: AtomicU64,
    snap: Snapshot,
}

/// # Safety
/// `s` is NULL or a pointer from libuffd (see check_tag).
unsafe fn snapshot_ref<'a>(s: *const libuffd_snapshot) -> Result<&'a SnapshotBox, Error> {
    if s.is_null() {
        return Err(Error::invalid("snapshot is NULL"));
    }
    // SAFETY: per the contract, a pointer from libuffd.
    unsafe { check_tag(s.cast(), SNAPSHOT_TAG, "snapshot") }?;
    // SAFETY: tagged as a live snapshot box.
    Ok(unsafe { &*(s as *const SnapshotBox) })
}

/// Begin a write-protect snapshot of [addr, addr + len) of this process's
/// memory (anonymous, shmem or hugetlb; aligned to its mapping's pages)
/// into opts's destination: a consistent point-in-time image while the
/// process's threads keep writing.
///
/// The range is registered on a userfaultfd of the snapshot's own in WP
/// mode (LIBUFFD_FEATURE_WP_UNPOPULATED: pages never touched are protected
/// too; LIBUFFD_FEATURE_WP_HUGETLBFS_SHMEM for shmem and hugetlb) and
/// write-protected whole: the image is the memory as it is when this
/// returns. Each page is then copied to the destination before its first
/// write is let through (the write-protect fault copies it, then
/// un-protects it), while a background thread copies the rest in order.
/// When every page is copied, the range is left un-protected and
/// unregistered, as it was. The range must not be registered on another
/// userfaultfd, nor unmapped or remapped while the snapshot runs. System
/// calls that write into the range (read(2) into it) wait for the page's
/// copy like any writer; only where kernel-mode faults may not be trapped
/// (vm.unprivileged_userfaultfd = 0 and no access to /dev/userfaultfd) is
/// the snapshot's userfaultfd user-mode only, and such a call then fails
/// with EFAULT while the snapshot runs.
///
/// An error while copying (a page that cannot be read, a destination that
/// cannot be written, pwrite failing) ends the snapshot: the range is
/// un-protected at once (blocked writers go on) and unregistered, and
/// libuffd_snapshot_wait() returns the error. Never a silently incomplete
/// image, never a writer blocked for ever.
///
/// Thread safety: any thread. The snapshot's threads block every signal.
///
/// Returns: 0 and *out, or -EINVAL (NULL addr, out or opts; len 0; a
/// misaligned range; dest not one of LIBUFFD_SNAPSHOT_TO_*; a NULL buffer,
/// or one that overlaps the range;
/// a negative fd; an fd_offset + len past 2^63 - 1), -EBADF (fd not open),
/// -EOPNOTSUPP (the kernel lacks WP or WP_UNPOPULATED), -ENOMEM (addr is
/// not mapped), or the errno with which the kernel refused to register or
/// write-protect the range (the range is then left as it was).
///
/// Pointers: addr..addr+len mapped in this process; opts a
/// libuffd_snapshot_opts of opts->sz readable bytes; opts->buffer writable
/// for len bytes until the snapshot has ended; out writable.
#[no_mangle]
pub unsafe extern "C" fn libuffd_snapshot_begin(
    addr: *mut libc::c_void,
    len: usize,
    opts: *const libuffd_snapshot_opts,
    out: *mut *mut libuffd_snapshot,
) -> i32 {
    guard("libuffd_snapshot_begin", || {
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        if opts.is_null() {
            return Err(Error::invalid(
                "opts is NULL: a snapshot needs a destination (dest)",
            ));
        }
        if addr.is_null() {
            return Err(Error::invalid("addr is NULL"));
        }
        // SAFETY: contract above.
        let o = unsafe { copy_opts("libuffd_snapshot_opts", opts) }?;
        let dest = match o.dest {
            LIBUFFD_SNAPSHOT_TO_BUFFER => {
                if o.buffer.is_null() {
                    return Err(Error::invalid("opts->buffer is NULL"));
                }
                // SAFETY: the buffer is the C caller's, writable for len
                // bytes until the snapshot ends (contract above): no Rust
                // value of libuffd lives there.
                SnapshotDest::Buffer(unsafe {
                    HandedOver::new(Range::new(o.buffer as usize as u64, len as u64))
                })
            }
            LIBUFFD_SNAPSHOT_TO_FD => SnapshotDest::Fd {
                fd: o.fd,
                offset: o.fd_offset,
            },
            d => {
                return Err(Error::invalid(format!(
                    "opts->dest is {d}: set LIBUFFD_SNAPSHOT_TO_BUFFER or LIBUFFD_SNAPSHOT_TO_FD"
                )))
            }
        };
        let snap = Snapshot::begin(Range::new(addr as usize as u64, len as u64), dest)?;
        let b = Box::new(SnapshotBox {
            tag: AtomicU64::new(SNAPSHOT_TAG),
            snap,
        });
        // SAFETY: `out` is writable (contract above).
        unsafe { *out = Box::into_raw(b) as *mut libuffd_snapshot };
        Ok(0)
    })
}

/// Wait up to timeout_ms milliseconds (-1: no limit; 0: just look) for the
/// snapshot to end.
///
/// Thread safety: any thread; several may wait at once.
///
/// Returns: 0 when every page was copied (the image is complete; the range
/// is un-protected and unregistered), -ETIMEDOUT if it is still copying,
/// -EINVAL (NULL, or not a snapshot; timeout_ms below -1), or the errno
/// that ended it (-EFAULT: a page or the buffer could not be accessed; a
/// pwrite(2) errno such as -EBADF, -ENOSPC, -EIO; -ECANCELED), with the
/// detail in libuffd_last_error(): the image is then incomplete.
///
/// Pointers: s NULL or a live snapshot.
#[no_mangle]
pub unsafe extern "C" fn libuffd_snapshot_wait(s: *mut libuffd_snapshot, timeout_ms: i32) -> i32 {
    guard("libuffd_snapshot_wait", || {
        // SAFETY: contract above.
        let b = unsafe { snapshot_ref(s) }?;
        if timeout_ms < -1 {
            return Err(Error::invalid(format!(
                "timeout_ms is {timeout_ms}: -1 (no limit) or more"
            )));
        }
        let t = (timeout_ms >= 0).then(|| Duration::from_millis(timeout_ms as u64));
        if b.snap.wait(t)? {
            Ok(0)
        } else {
            Err(Error::os(
                "snapshot",
                libc::ETIMEDOUT,
                format!("still copying after {timeout_ms} ms"),
            ))
        }
    })
}

/// How far the snapshot is: *copied pages of *total (either pointer may
/// be NULL), in the mapping's page size.
///
/// Returns: 0, or -EINVAL (NULL or not a snapshot).
///
/// Pointers: s NULL or a live snapshot; copied, total NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn libuffd_snapshot_progress(
    s: *const libuffd_snapshot,
    copied: *mut u64,
    total: *mut u64,
) -> i32 {
    guard("libuffd_snapshot_progress", || {
        // SAFETY: contract above.
        let b = unsafe { snapshot_ref(s) }?;
        let (c, t) = b.snap.progress();
        // SAFETY: NULL or writable (contract above).
        unsafe {
            if !copied.is_null() {
                *copied = c;
            }
            if !total.is_null() {
                *total = t;
            }
        }
        Ok(0)
    })
}

/// End the snapshot (one still copying is ended with -ECANCELED: its range
/// un-protected and unregistered, its threads joined) and free it. NULL is
/// ignored; a pointer that is not a live snapshot is refused (errno
/// EINVAL, libuffd_last_error() says why).
///
/// Pointers: s NULL or a live snapshot, not used after this.
#[no_mangle]
pub unsafe extern "C" fn libuffd_snapshot_free(s: *mut libuffd_snapshot) {
    if s.is_null() {
        return;
    }
    let _: i32 = guard("libuffd_snapshot_free", || {
        // SAFETY: contract above.
        unsafe { check_tag(s.cast(), SNAPSHOT_TAG, "snapshot") }?;
        // SAFETY: tagged as a live snapshot box made by Box::into_raw.
        let b = unsafe { Box::from_raw(s as *mut SnapshotBox) };
        b.tag.store(DEAD_TAG, Ordering::Release);
        drop(b);
        Ok(0)
    });
}
