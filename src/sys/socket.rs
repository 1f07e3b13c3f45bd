// SPDX-License-Identifier: MIT OR Apache-2.0
//! Sockets for the hand-off of a userfaultfd to a handler process and for
//! the page-server protocol: sendmsg/recvmsg with SCM_RIGHTS, the peer's
//! credentials (SO_PEERCRED), pidfd_open, and plain sends and receives
//! that never raise SIGPIPE.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Descriptors a received message may carry before the control buffer is
/// full (the kernel then sets MSG_CTRUNC and drops the rest).
pub const MAX_FDS: usize = 4;

/// One message received with `recv_with_fds`.
#[derive(Debug)]
pub struct Received {
    /// Bytes written into the buffer.
    pub len: usize,
    /// The message was longer than the buffer (MSG_TRUNC).
    pub truncated: bool,
    /// The control data did not fit (MSG_CTRUNC): descriptors were dropped.
    pub ctruncated: bool,
    /// The descriptors it carried, owned (close-on-exec).
    pub fds: Vec<OwnedFd>,
}

/// Send `data` with `fds` attached (SCM_RIGHTS; none if empty), in one
/// sendmsg(2), MSG_NOSIGNAL. Returns the bytes sent or the errno.
pub fn send_with_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[i32]) -> Result<usize, i32> {
    if fds.len() > MAX_FDS {
        return Err(libc::EINVAL);
    }
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // u64 for the alignment cmsghdr needs.
    let mut control = [0u64; 16];
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE((fds.len() * 4) as u32) } as usize;
    // SAFETY: an all-zero msghdr is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points to `control` (128 bytes, aligned),
        // which holds CMSG_SPACE(4 * MAX_FDS) bytes; the header and its
        // data are written inside it.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN((fds.len() * 4) as u32) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr(),
                libc::CMSG_DATA(c).cast::<i32>(),
                fds.len(),
            );
        }
    }
    loop {
        // SAFETY: msg describes live buffers (data, control) for the call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = super::last_errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

/// Receive one message into `buf`, with up to `MAX_FDS` descriptors
/// (MSG_CMSG_CLOEXEC). `Ok` with len 0 and no descriptor: the peer closed.
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> Result<Received, i32> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 16];
    // SAFETY: an all-zero msghdr is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE((MAX_FDS * 4) as u32) } as _;
    let n = loop {
        // SAFETY: msg describes `buf` and `control`, both writable and
        // alive for the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = super::last_errno();
        if e != libc::EINTR {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of
    // well-formed cmsghdrs; the CMSG_* macros walk them within it. Every
    // descriptor of an SCM_RIGHTS message is new in this process and
    // owned by nobody: taken into an OwnedFd once.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<i32>();
                let bytes = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..bytes / 4 {
                    let fd = std::ptr::read_unaligned(data.add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Received {
        len: n,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        ctruncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
        fds,
    })
}

/// The socket's type (SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM).
pub fn socket_type(sock: BorrowedFd<'_>) -> Result<i32, i32> {
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: v and len are valid for getsockopt's int option.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut v as *mut i32).cast(),
            &mut len,
        )
    };
    if r < 0 {
        Err(super::last_errno())
    } else {
        Ok(v)
    }
}

/// The peer's credentials as the kernel recorded them at connect (or
/// socketpair) time: (pid, uid, gid).
pub fn peer_cred(sock: BorrowedFd<'_>) -> Result<(i32, u32, u32), i32> {
    let mut c = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: c and len are valid for SO_PEERCRED's struct ucred.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut c as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r < 0 {
        Err(super::last_errno())
    } else {
        Ok((c.pid, c.uid, c.gid))
    }
}

/// pidfd_open(2) of `pid` (close-on-exec by definition).
pub fn pidfd_open(pid: i32) -> Result<OwnedFd, i32> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(super::last_errno());
    }
    // SAFETY: the fd was just created and belongs to nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// send(2) all of `data` (MSG_NOSIGNAL: a closed peer is EPIPE, not a
/// signal), retrying short sends and EINTR.
pub fn send_all(sock: BorrowedFd<'_>, mut data: &[u8]) -> Result<(), i32> {
    while !data.is_empty() {
        // SAFETY: data is a valid readable buffer of its length.
        let n = unsafe {
            libc::send(
                sock.as_raw_fd(),
                data.as_ptr().cast(),
                data.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = super::last_errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        data = &data[n as usize..];
    }
    Ok(())
}

/// Fill all of `buf` from the socket (recv, retrying short reads and
/// EINTR). `Ok(false)`: the peer closed before the first byte;
/// `Err(EPIPE)`: it closed in the middle.
pub fn recv_exact(sock: BorrowedFd<'_>, buf: &mut [u8]) -> Result<bool, i32> {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: the tail of buf is writable for its length.
        let n = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                buf[got..].as_mut_ptr().cast(),
                buf.len() - got,
                0,
            )
        };
        if n < 0 {
            let e = super::last_errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return if got == 0 {
                Ok(false)
            } else {
                Err(libc::EPIPE)
            };
        }
        got += n as usize;
    }
    Ok(true)
}

/// shutdown(2) both directions: a thread blocked in recv on it returns.
pub fn shutdown(sock: BorrowedFd<'_>) {
    // SAFETY: shutdown on a descriptor has no memory-safety preconditions.
    let _ = unsafe { libc::shutdown(sock.as_raw_fd(), libc::SHUT_RDWR) };
}

/// Set TCP_NODELAY on a TCP socket: small messages go out at once instead
/// of waiting for the peer's ACK of earlier ones (Nagle). The errno for
/// other sockets (EOPNOTSUPP for a Unix socket), which callers may ignore.
pub fn set_nodelay(sock: BorrowedFd<'_>) -> Result<(), i32> {
    let one: libc::c_int = 1;
    // SAFETY: the option value points to a c_int of the given length.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(super::last_errno())
    } else {
        Ok(())
    }
}

/// The name /proc/self/fd/<fd> links to ("anon_inode:[userfaultfd]" for a
/// userfaultfd, "pipe:[...]" for a pipe).
pub fn fd_link(fd: BorrowedFd<'_>) -> Result<String, i32> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

/// One recv(2) of at most `buf.len()` bytes (EINTR retried); 0: the peer
/// closed.
pub fn recv_some(sock: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, i32> {
    loop {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = super::last_errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}
