// SPDX-License-Identifier: MIT OR Apache-2.0
//! eventfd, epoll and pread: what the monitor waits on and reads with.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// A new non-blocking, close-on-exec eventfd.
pub fn eventfd() -> Result<OwnedFd, i32> {
    // SAFETY: eventfd takes two integers and returns a new fd or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(super::last_errno());
    }
    // SAFETY: the fd was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Add 1 to an eventfd's counter (makes it readable).
pub fn eventfd_signal(fd: BorrowedFd<'_>) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64; an eventfd write cannot
    // fail except with EAGAIN at the counter's maximum, which still leaves
    // it readable.
    let _ = unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

/// Reset an eventfd's counter to 0.
pub fn eventfd_drain(fd: BorrowedFd<'_>) {
    let mut v: u64 = 0;
    // SAFETY: reads 8 bytes into a valid u64 (EAGAIN when already 0).
    let _ = unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
}

/// A new close-on-exec epoll instance.
pub fn epoll_create() -> Result<OwnedFd, i32> {
    // SAFETY: no memory is passed.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        return Err(super::last_errno());
    }
    // SAFETY: new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// epoll_ctl(2) `op` for `fd` on `ep` with `events`, tagged `token`.
fn epoll_ctl(
    ep: BorrowedFd<'_>,
    op: libc::c_int,
    fd: BorrowedFd<'_>,
    events: libc::c_int,
    token: u64,
) -> Result<(), i32> {
    let mut ev = libc::epoll_event {
        events: events as u32,
        u64: token,
    };
    // SAFETY: `ep` and `fd` are live descriptors for the borrows, and `ev`
    // is a valid event struct (the kernel ignores it for EPOLL_CTL_DEL).
    let rc = unsafe { libc::epoll_ctl(ep.as_raw_fd(), op, fd.as_raw_fd(), &mut ev) };
    if rc < 0 {
        Err(super::last_errno())
    } else {
        Ok(())
    }
}

/// Watch `fd` for input on `ep`, tagging events with `token`.
pub fn epoll_add(ep: BorrowedFd<'_>, fd: BorrowedFd<'_>, token: u64) -> Result<(), i32> {
    epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN, token)
}

/// Watch `fd` for input on `ep`, edge-triggered: one event per wakeup of
/// the file's wait queue (its readiness as poll(2) reports it does not
/// matter: a blocking userfaultfd always reports POLLERR).
pub fn epoll_add_edge(ep: BorrowedFd<'_>, fd: BorrowedFd<'_>, token: u64) -> Result<(), i32> {
    epoll_ctl(
        ep,
        libc::EPOLL_CTL_ADD,
        fd,
        libc::EPOLLIN | libc::EPOLLET,
        token,
    )
}

/// Stop watching `fd`. A failure (already removed) is harmless.
pub fn epoll_del(ep: BorrowedFd<'_>, fd: BorrowedFd<'_>) {
    let _ = epoll_ctl(ep, libc::EPOLL_CTL_DEL, fd, 0, 0);
}

/// Re-arm an edge-triggered watch of `fd` on `ep` (EPOLL_CTL_MOD): if
/// `fd` is readable now, a new edge is reported, so that input left
/// unread is not forgotten until the next one. A failure (the fd was
/// removed meanwhile) is harmless.
pub fn epoll_rearm_edge(ep: BorrowedFd<'_>, fd: BorrowedFd<'_>, token: u64) {
    let _ = epoll_ctl(
        ep,
        libc::EPOLL_CTL_MOD,
        fd,
        libc::EPOLLIN | libc::EPOLLET,
        token,
    );
}

/// Wait for events; returns the tokens of the ready fds in `out`.
pub fn epoll_wait(ep: BorrowedFd<'_>, out: &mut [u64], timeout_ms: i32) -> Result<usize, i32> {
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 16];
    let max = out.len().min(evs.len()) as i32;
    // SAFETY: `evs` has room for `max` events.
    let n = unsafe { libc::epoll_wait(ep.as_raw_fd(), evs.as_mut_ptr(), max, timeout_ms) };
    if n < 0 {
        return Err(super::last_errno());
    }
    for i in 0..n as usize {
        out[i] = evs[i].u64;
    }
    Ok(n as usize)
}

/// pread(2) into `buf` at `offset`; returns the bytes read.
pub fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> Result<usize, i32> {
    // `pread` itself where off_t is 64-bit (a host's pread interposer sees
    // the call), pread64 where off_t is 32-bit (arm, mips, x86).
    #[cfg(target_pointer_width = "64")]
    let call = libc::pread;
    #[cfg(not(target_pointer_width = "64"))]
    let call = libc::pread64;
    // SAFETY: `buf` is writable for its length.
    let n = unsafe {
        call(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            offset as _,
        )
    };
    if n < 0 {
        Err(super::last_errno())
    } else {
        Ok(n as usize)
    }
}

/// An anonymous private mapping of `len` bytes for scratch buffers that
/// must be page-aligned (hugetlb zero pages, pread buffers).
pub struct ScratchMap {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is owned memory; access is synchronised by owners.
unsafe impl Send for ScratchMap {}
// SAFETY: as above; shared access is read-only unless owners coordinate.
unsafe impl Sync for ScratchMap {}

impl ScratchMap {
    pub fn new(len: usize) -> Result<ScratchMap, i32> {
        // SAFETY: anonymous mapping; result checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(super::last_errno());
        }
        Ok(ScratchMap { ptr: p.cast(), len })
    }

    pub fn addr(&self) -> u64 {
        self.ptr as u64
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: our own mapping of `len` bytes, borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for ScratchMap {
    fn drop(&mut self) {
        // SAFETY: our own mapping.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Monotonic nanoseconds (CLOCK_MONOTONIC).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Borrow a descriptor number the caller promised to keep open.
pub fn borrow_fd<'a>(fd: i32) -> BorrowedFd<'a> {
    // SAFETY: callers pass descriptors that a region's owner keeps open
    // for the region's lifetime (documented on the page-source API); a
    // closed one makes pread fail with EBADF, which is reported.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// Copy `dst.len()` bytes from address `src` of this process, through the
/// kernel (process_vm_readv on ourselves) so that a bad address is an
/// error, not a crash. Bytes that cannot be read are left zero.
pub fn copy_from_addr(dst: &mut [u8], src: u64) {
    let local = libc::iovec {
        iov_base: dst.as_mut_ptr().cast(),
        iov_len: dst.len(),
    };
    let remote = libc::iovec {
        iov_base: src as *mut libc::c_void,
        iov_len: dst.len(),
    };
    // SAFETY: `local` describes our writable buffer; the kernel validates
    // `remote` and returns an error instead of faulting.
    let _ = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
}

/// poll(2) a set of descriptors; returns how many have events.
pub fn poll_fds(fds: &mut [libc::pollfd], timeout_ms: i32) -> Result<usize, i32> {
    // SAFETY: `fds` is a valid, writable array of its length.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        Err(super::last_errno())
    } else {
        Ok(n as usize)
    }
}
