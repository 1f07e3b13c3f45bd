// SPDX-License-Identifier: MIT OR Apache-2.0
//! Hand-off of a userfaultfd to a handler process (uffd::handoff): a child
//! process (the "VMM") maps memory, registers it and sends the descriptor
//! with the description of its ranges; this process (the handler) receives
//! it, serves the ranges from a file with a monitor, and the child checks
//! every byte. Anon, shmem and hugetlb. Then the bad-input matrix of
//! `recv` (each refusal with its errno, the descriptors closed), and a
//! handler whose peer is killed stopping within a bound.
#![allow(unsafe_code)]

mod common;

use common::*;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uffd::handoff::{self, RecvOptions, RegionDesc};
use uffd::monitor::{Config, DefaultHandler, Monitor, Source};
use uffd::{OpenFlags, OpenOptions, Range, RegisterMode, Uffd};

fn socketpair(kind: i32) -> (OwnedFd, OwnedFd) {
    let mut sv = [0i32; 2];
    // SAFETY: sv is a valid array of two ints.
    let r =
        unsafe { libc::socketpair(libc::AF_UNIX, kind | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) };
    assert_eq!(r, 0, "socketpair: {}", std::io::Error::last_os_error());
    // SAFETY: two new descriptors, ours.
    unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) }
}

/// A memfd holding `data` (the page source).
fn source_file(data: &[u8]) -> OwnedFd {
    // SAFETY: a name and flags.
    let fd = unsafe { libc::memfd_create(c"handoff-src".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: new descriptor, ours.
    let f = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut done = 0;
    while done < data.len() {
        // SAFETY: the tail of data is readable.
        let n = unsafe {
            libc::pwrite(
                fd,
                data[done..].as_ptr().cast(),
                data.len() - done,
                done as i64,
            )
        };
        assert!(n > 0);
        done += n as usize;
    }
    f
}

/// A listening SOCK_SEQPACKET socket at a fresh abstract address.
fn listener() -> (OwnedFd, libc::sockaddr_un) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    // SAFETY: socket takes integers.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0);
    // SAFETY: new descriptor, ours.
    let l = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: a zeroed sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as u16;
    let name = format!(
        "libuffd-handoff-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    for (i, b) in name.bytes().enumerate() {
        addr.sun_path[i + 1] = b as libc::c_char;
    }
    let len = (std::mem::size_of::<libc::sa_family_t>() + 1 + name.len()) as libc::socklen_t;
    // SAFETY: addr is a valid sockaddr_un of len bytes.
    let r = unsafe { libc::bind(fd, (&addr as *const libc::sockaddr_un).cast(), len) };
    assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
    // SAFETY: listen on our socket.
    assert_eq!(unsafe { libc::listen(fd, 4) }, 0);
    addr.sun_path[0] = 0;
    (l, addr)
}

fn addr_len(addr: &libc::sockaddr_un) -> libc::socklen_t {
    let n = addr.sun_path[1..].iter().position(|&c| c == 0).unwrap();
    (std::mem::size_of::<libc::sa_family_t>() + 1 + n) as libc::socklen_t
}

/// In the child: connect to the handler's address.
fn connect_to(addr: &libc::sockaddr_un) -> OwnedFd {
    // SAFETY: socket takes integers.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0);
    // SAFETY: addr is valid for addr_len bytes.
    let r = unsafe {
        libc::connect(
            fd,
            (addr as *const libc::sockaddr_un).cast(),
            addr_len(addr),
        )
    };
    assert_eq!(r, 0, "connect: {}", std::io::Error::last_os_error());
    // SAFETY: new descriptor, ours.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn accept(l: &OwnedFd) -> OwnedFd {
    // SAFETY: accept on our listening socket, no address wanted.
    let fd = unsafe {
        libc::accept4(
            l.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    assert!(fd >= 0, "accept: {}", std::io::Error::last_os_error());
    // SAFETY: new descriptor, ours.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn fork_child(f: impl FnOnce() -> i32) -> i32 {
    // SAFETY: fork; the child runs f and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        // SAFETY: leave without the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// Wait for child `pid` for up to `secs`; its raw status (kills it and
/// fails on timeout).
fn reap(pid: i32, secs: u64) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let mut status = 0;
        // SAFETY: our child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return status;
        }
        if Instant::now() > deadline {
            // SAFETY: our child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("child {pid} still running after {secs} s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn read_byte(fd: BorrowedFd<'_>) -> Option<u8> {
    let mut b = 0u8;
    // SAFETY: one writable byte.
    let n = unsafe { libc::read(fd.as_raw_fd(), (&mut b as *mut u8).cast(), 1) };
    (n == 1).then_some(b)
}

fn write_byte(fd: BorrowedFd<'_>, b: u8) {
    // SAFETY: one readable byte.
    let n = unsafe {
        libc::send(
            fd.as_raw_fd(),
            (&b as *const u8).cast(),
            1,
            libc::MSG_NOSIGNAL,
        )
    };
    assert_eq!(n, 1);
}

const PAGES: usize = 8;

/// The VMM: map `pages` of `kind` in two ranges (the second one's source
/// offset after the first), register, send, wait for "go", touch every
/// page from 4 threads, check each byte against `expect`.
fn vmm(kind: Kind, sock: OwnedFd, expect: Arc<Vec<u8>>) -> i32 {
    let ps = kind.page();
    let mem = Arc::new(Mem::new(kind, PAGES));
    let u = Uffd::open(&OpenOptions {
        flags: OpenFlags::NONBLOCK,
        features: kind.missing_features(),
        required: kind.missing_features(),
    })
    .unwrap();
    let half = (PAGES / 2 * ps) as u64;
    u.register(
        Range::new(mem.start(), mem.len as u64),
        RegisterMode::MISSING,
    )
    .unwrap();
    let regions = [
        RegionDesc {
            start: mem.start(),
            len: half,
            page_size: ps as u64,
            source_offset: 0,
            tag: 1,
        },
        RegionDesc {
            start: mem.start() + half,
            len: half,
            page_size: ps as u64,
            source_offset: half,
            tag: 2,
        },
    ];
    handoff::send(sock.as_fd(), &u, &regions).unwrap();
    if read_byte(sock.as_fd()) != Some(b'g') {
        return 3;
    }
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (mem, expect) = (mem.clone(), expect.clone());
            std::thread::spawn(move || {
                for i in (t..PAGES).step_by(4) {
                    let got = &mem.bytes()[i * ps..(i + 1) * ps];
                    if got != &expect[i * ps..(i + 1) * ps] {
                        return false;
                    }
                }
                true
            })
        })
        .collect();
    let ok = threads.into_iter().all(|t| t.join().unwrap());
    if ok {
        0
    } else {
        1
    }
}

fn handoff_case(name: &'static str, kind: Kind) {
    let _w = Watchdog::new(name, 60);
    let ps = kind.page();
    let data = Arc::new(content(PAGES * ps, 12));
    let file = source_file(&data);
    let (l, addr) = listener();
    let expect = data.clone();
    let pid = fork_child(move || vmm(kind, connect_to(&addr), expect));
    let parent_end = accept(&l);
    let got = handoff::recv(
        parent_end.as_fd(),
        &RecvOptions {
            pid: Some(pid),
            // SAFETY: getuid has no preconditions.
            uid: Some(unsafe { libc::getuid() }),
            timeout_ms: Some(10_000),
        },
    )
    .unwrap();
    assert_eq!(got.peer.pid, pid);
    assert_eq!(got.regions.len(), 2);
    assert_eq!(got.regions[1].page_size, ps as u64);
    assert_eq!(got.regions[1].tag, 2);
    let m = Monitor::new(Config::default(), Box::new(DefaultHandler)).unwrap();
    let id = m.add_uffd(Arc::new(got.uffd)).unwrap();
    let fd = file.as_raw_fd();
    // SAFETY: the ranges are the child's memory, not this process's.
    unsafe {
        handoff::add_to_monitor(&m, id, &got.regions, &|r: &RegionDesc| Source::Fd {
            fd,
            offset: r.source_offset,
            zero_past_eof: false,
        })
    }
    .unwrap();
    let watch = m.stop_on_peer_exit(got.peer.pidfd, None).unwrap();
    let running = m.start().unwrap();
    write_byte(parent_end.as_fd(), b'g');
    let status = reap(pid, 30);
    assert_eq!(exit_code(status), 0, "{name}: the VMM saw wrong bytes");
    assert!(m.stats().resolved >= PAGES as u64 / 2);
    // The VMM exited: the watch stops the handler.
    wait_for("the monitor to stop after the VMM exited", 5, || {
        watch.fired()
    });
    running.wait().unwrap();
}

#[test]
fn handoff_anon() {
    handoff_case("handoff_anon", Kind::Anon);
}

#[test]
fn handoff_shmem() {
    handoff_case("handoff_shmem", Kind::ShmemShared);
}

#[test]
fn handoff_hugetlb() {
    if skip_without_hugetlb("handoff_hugetlb") {
        return;
    }
    handoff_case("handoff_hugetlb", Kind::Hugetlb);
}

/// A SOCK_STREAM socket works too (the receiver reads the rest of the
/// message the header announces).
#[test]
fn handoff_stream_socket() {
    let _w = Watchdog::new("handoff_stream_socket", 30);
    let (a, b) = socketpair(libc::SOCK_STREAM);
    let u = open_uffd(uffd::Features::empty());
    let regions: Vec<RegionDesc> = (0..100)
        .map(|i| RegionDesc {
            start: 0x1000_0000 + i * 0x10000,
            len: 0x2000,
            page_size: 4096,
            source_offset: i * 0x2000,
            tag: i,
        })
        .collect();
    handoff::send(a.as_fd(), &u, &regions).unwrap();
    let got = handoff::recv(b.as_fd(), &RecvOptions::default()).unwrap();
    assert_eq!(got.regions, regions);
}

/// Send raw bytes with these descriptors (no check of ours in between).
fn send_raw(sock: BorrowedFd<'_>, data: &[u8], fds: &[i32]) {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut _,
        iov_len: data.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: a zeroed msghdr is an empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: pure computation.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE((fds.len() * 4) as u32) } as _;
        // SAFETY: the header and data fit in `control` (64 bytes).
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN((fds.len() * 4) as u32) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast(), fds.len());
        }
    }
    // SAFETY: msg describes live buffers.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    assert_eq!(
        n as usize,
        data.len(),
        "sendmsg: {}",
        std::io::Error::last_os_error()
    );
}

fn one_region() -> Vec<u8> {
    handoff::encode(
        0,
        &[RegionDesc {
            start: 0x4000_0000,
            len: 0x4000,
            page_size: 4096,
            source_offset: 0,
            tag: 7,
        }],
    )
}

/// A pipe whose read end travels in the message: after a refused
/// message, writing to the write end fails with EPIPE if the receiver
/// closed the read end it got.
struct Probe {
    read: Option<OwnedFd>,
    write: OwnedFd,
}

impl Probe {
    fn new() -> Probe {
        let mut p = [0i32; 2];
        // SAFETY: p is two ints.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: new descriptors, ours.
        unsafe {
            Probe {
                read: Some(OwnedFd::from_raw_fd(p[0])),
                write: OwnedFd::from_raw_fd(p[1]),
            }
        }
    }

    fn fd(&self) -> i32 {
        self.read.as_ref().unwrap().as_raw_fd()
    }

    /// Whether a reader is left (the received copy still open).
    fn reader_open(&mut self) -> bool {
        // SAFETY: SIGPIPE ignored for the test process below; one byte.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        assert!(self.read.is_none(), "close the test's own read end first");
        let b = 0u8;
        // SAFETY: one readable byte.
        let n = unsafe { libc::write(self.write.as_raw_fd(), (&b as *const u8).cast(), 1) };
        n == 1
    }
}

fn expect_refused(data: &[u8], fds: &[i32], errno: i32, words: &str) {
    let (a, b) = socketpair(libc::SOCK_SEQPACKET);
    send_raw(a.as_fd(), data, fds);
    let e = handoff::recv(b.as_fd(), &RecvOptions::default()).unwrap_err();
    assert_eq!(e.errno(), errno, "{words}: got {e}");
    let text = e.to_string();
    assert!(
        text.contains(words),
        "message {text:?} should say {words:?}"
    );
}

#[test]
fn recv_bad_input_matrix() {
    let _w = Watchdog::new("recv_bad_input_matrix", 30);
    let u = open_uffd(uffd::Features::empty());
    let ufd = u.fd().as_raw_fd();
    let good = one_region();

    // Truncated: the header announces a region the bytes do not hold.
    let mut probe = Probe::new();
    expect_refused(
        &good[..good.len() - 8],
        &[probe.fd()],
        libc::EBADMSG,
        "must have",
    );
    probe.read = None;
    assert!(
        !probe.reader_open(),
        "the descriptor of a truncated message was not closed"
    );

    // Shorter than a header.
    expect_refused(&good[..10], &[ufd], libc::EBADMSG, "truncated");

    // Wrong magic.
    let mut bad = good.clone();
    bad[0] ^= 0xff;
    let mut probe = Probe::new();
    expect_refused(&bad, &[probe.fd()], libc::EPROTO, "bad magic");
    probe.read = None;
    assert!(
        !probe.reader_open(),
        "the descriptor of a bad-magic message was not closed"
    );

    // Wrong version.
    let mut bad = good.clone();
    bad[4] = 9;
    expect_refused(&bad, &[ufd], libc::EPROTO, "version 9");

    // A pipe instead of a userfaultfd.
    let mut probe = Probe::new();
    expect_refused(&good, &[probe.fd()], libc::EBADF, "not a userfaultfd");
    probe.read = None;
    assert!(
        !probe.reader_open(),
        "the non-uffd descriptor was not closed"
    );

    // No descriptor.
    expect_refused(&good, &[], libc::EBADF, "0 descriptors");

    // Two descriptors (both closed).
    let mut probe = Probe::new();
    expect_refused(&good, &[ufd, probe.fd()], libc::EBADF, "2 descriptors");
    probe.read = None;
    assert!(!probe.reader_open(), "the second descriptor was not closed");

    // Oversized count.
    let mut bad = good.clone();
    bad[8..12].copy_from_slice(&5000u32.to_le_bytes());
    expect_refused(&bad, &[ufd], libc::EMSGSIZE, "5000 regions");

    // Longer than the largest message: cut by the kernel (MSG_TRUNC).
    let mut big = handoff::encode(0, &[]);
    big.resize(
        handoff::HEADER_SIZE + (handoff::MAX_REGIONS + 2) * handoff::ENTRY_SIZE,
        0,
    );
    expect_refused(&big, &[ufd], libc::EBADMSG, "MSG_TRUNC");

    // More descriptors than the control buffer holds (MSG_CTRUNC).
    let many = [ufd; 6];
    expect_refused(&good, &many, libc::EBADMSG, "MSG_CTRUNC");

    // Malformed regions: unaligned, bad page size, overlapping.
    let r = |start, len, ps| RegionDesc {
        start,
        len,
        page_size: ps,
        source_offset: 0,
        tag: 0,
    };
    for (regions, words) in [
        (vec![r(0x4000_0800, 0x1000, 4096)], "not aligned"),
        (vec![r(0x4000_0000, 0x1000, 3000)], "not a power of two"),
        (vec![r(0x4000_0000, 0, 4096)], "empty"),
        (
            vec![r(0x4000_0000, 0x3000, 4096), r(0x4000_2000, 0x1000, 4096)],
            "overlap",
        ),
    ] {
        expect_refused(&handoff::encode(0, &regions), &[ufd], libc::EBADMSG, words);
        // The sender refuses them too, before sending.
        let (a, _b) = socketpair(libc::SOCK_SEQPACKET);
        let e = handoff::send(a.as_fd(), &u, &regions).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL, "send {words}: {e}");
    }
}

#[test]
fn recv_peer_checks() {
    let _w = Watchdog::new("recv_peer_checks", 30);
    let u = open_uffd(uffd::Features::empty());
    // Wrong uid / pid required: EPERM, nothing read.
    let (a, b) = socketpair(libc::SOCK_SEQPACKET);
    handoff::send(a.as_fd(), &u, &[]).unwrap();
    // SAFETY: getuid has no preconditions.
    let me = unsafe { libc::getuid() };
    let e = handoff::recv(
        b.as_fd(),
        &RecvOptions {
            uid: Some(me + 1),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.errno(), libc::EPERM, "{e}");
    let e = handoff::recv(
        b.as_fd(),
        &RecvOptions {
            pid: Some(1),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.errno(), libc::EPERM, "{e}");
    // The right ones: received (zero regions is a valid hand-off).
    let got = handoff::recv(
        b.as_fd(),
        &RecvOptions {
            uid: Some(me),
            pid: Some(std::process::id() as i32),
            timeout_ms: Some(1000),
        },
    )
    .unwrap();
    assert!(got.regions.is_empty());
    // Nothing more comes: ETIMEDOUT within the bound.
    let t = Instant::now();
    let e = handoff::recv(
        b.as_fd(),
        &RecvOptions {
            timeout_ms: Some(100),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.errno(), libc::ETIMEDOUT, "{e}");
    assert!(t.elapsed() < Duration::from_secs(2));
    // The peer closes: ECONNRESET.
    drop(a);
    let e = handoff::recv(b.as_fd(), &RecvOptions::default()).unwrap_err();
    assert_eq!(e.errno(), libc::ECONNRESET, "{e}");
}

/// The handler's peer is killed (SIGKILL) while a thread of it waits in a
/// fault the handler defers for ever: the monitor stops within a bound.
#[test]
fn handler_stops_when_peer_killed() {
    let _w = Watchdog::new("handler_stops_when_peer_killed", 30);
    for use_pidfd in [true, false] {
        let (l, addr) = listener();
        let pid = fork_child(move || {
            let child_end = connect_to(&addr);
            let mem = Mem::new(Kind::Anon, 4);
            let u = open_uffd(uffd::Features::empty());
            u.register(
                Range::new(mem.start(), mem.len as u64),
                RegisterMode::MISSING,
            )
            .unwrap();
            let d = RegionDesc {
                start: mem.start(),
                len: mem.len as u64,
                page_size: 4096,
                source_offset: 0,
                tag: 0,
            };
            handoff::send(child_end.as_fd(), &u, &[d]).unwrap();
            // Fault on a page nobody will serve; killed meanwhile.
            mem.read(0) as i32
        });
        let parent_end = accept(&l);
        let got = handoff::recv(parent_end.as_fd(), &RecvOptions::default()).unwrap();
        struct Never;
        impl uffd::monitor::Handler for Never {
            fn on_fault(&self, _: &uffd::monitor::FaultCtx<'_>) -> uffd::monitor::Verdict {
                uffd::monitor::Verdict::Defer
            }
        }
        let m = Monitor::new(Config::default(), Box::new(Never)).unwrap();
        let id = m.add_uffd(Arc::new(got.uffd)).unwrap();
        // SAFETY: the child's memory.
        unsafe { handoff::add_to_monitor(&m, id, &got.regions, &|_| Source::Callback) }.unwrap();
        let watch = if use_pidfd {
            m.stop_on_peer_exit(got.peer.pidfd, None).unwrap()
        } else {
            m.stop_on_peer_exit(None, Some(parent_end)).unwrap()
        };
        let running = m.start().unwrap();
        wait_for("the child's fault", 10, || m.stats().deferred >= 1);
        // SAFETY: our child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let killed = Instant::now();
        let status = reap(pid, 10);
        assert!(libc::WIFSIGNALED(status));
        wait_for("the handler to stop", 3, || {
            watch.fired() && !m.is_running()
        });
        running.wait().unwrap();
        let took = killed.elapsed();
        assert!(took < Duration::from_secs(3), "stopped after {took:?}");
    }
}

/// On a SOCK_STREAM socket a message may arrive in pieces, even inside
/// its header: the receiver reads on until it has all of it.
#[test]
fn handoff_stream_in_pieces() {
    let _w = Watchdog::new("handoff_stream_in_pieces", 30);
    let u = open_uffd(uffd::Features::empty());
    let msg = one_region();
    let (a, b) = socketpair(libc::SOCK_STREAM);
    send_raw(a.as_fd(), &msg[..10], &[u.fd().as_raw_fd()]);
    let rest = msg[10..].to_vec();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        for chunk in rest.chunks(20) {
            send_raw(a.as_fd(), chunk, &[]);
            std::thread::sleep(Duration::from_millis(10));
        }
        a
    });
    let got = handoff::recv(
        b.as_fd(),
        &RecvOptions {
            timeout_ms: Some(5000),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(got.regions.len(), 1);
    assert_eq!(got.regions[0].tag, 7);
    drop(writer.join().unwrap());
}
