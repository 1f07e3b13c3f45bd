// SPDX-License-Identifier: MIT OR Apache-2.0
//! Remote page sources (`Source::Remote`): a page server on 127.0.0.1 in
//! another process (`monitor::serve_pages`) serves a file; the region's
//! content must equal the file, with 4 threads faulting at once and a
//! bound of 4 requests in flight; on anon, shmem and hugetlb. Then the
//! server dies mid-transfer (a request in flight): the faulting thread
//! gets SIGBUS instead of waiting for ever.
#![allow(unsafe_code)]

mod common;

use common::kit::assert_bytes;
use common::*;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use uffd::monitor::{serve_pages, Config, DefaultHandler, Monitor, RegionOptions, Source};
use uffd::{Range, RegisterMode};

fn memfd_with(data: &[u8]) -> OwnedFd {
    // SAFETY: a name and flags.
    let fd = unsafe { libc::memfd_create(c"pages".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: data is readable for its length.
    let n = unsafe { libc::pwrite(fd, data.as_ptr().cast(), data.len(), 0) };
    assert_eq!(n as usize, data.len());
    // SAFETY: new descriptor, ours.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A page server process for `data` on 127.0.0.1: (pid, a connected
/// client socket).
fn page_server(data: &[u8]) -> (i32, TcpStream) {
    let file = memfd_with(data);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    // SAFETY: fork; the child serves and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = match l.accept() {
            Ok((s, _)) => match serve_pages(s.as_fd(), file.as_fd()) {
                Ok(_) => 0,
                Err(_) => 2,
            },
            Err(_) => 3,
        };
        // SAFETY: leave without the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    drop(l);
    (pid, TcpStream::connect(addr).unwrap())
}

fn reap(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    status
}

const PAGES: usize = 16;

/// A page server (a thread) that holds its first reply until told: it
/// reports the first request on `asked`, waits for `go`, then answers
/// every request with 0xAB bytes. Returns (the client's socket, asked, go,
/// the thread, which returns the requests answered).
fn held_reply_server() -> (
    std::os::unix::net::UnixStream,
    std::sync::mpsc::Receiver<()>,
    std::sync::mpsc::Sender<()>,
    std::thread::JoinHandle<usize>,
) {
    let (client, server) = std::os::unix::net::UnixStream::pair().unwrap();
    let (asked_tx, asked_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let srv = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut req = [0u8; 24];
        let mut answered = 0;
        while (&server).read_exact(&mut req).is_ok() {
            if answered == 0 {
                asked_tx.send(()).unwrap();
                go_rx.recv().unwrap();
            }
            let len = u32::from_le_bytes(req[4..8].try_into().unwrap()) as usize;
            let mut reply = vec![0xABu8; 24 + len];
            reply[0..4].copy_from_slice(&0x5350_4655u32.to_le_bytes());
            reply[4..8].fill(0);
            reply[8..16].copy_from_slice(&req[8..16]);
            reply[16..20].copy_from_slice(&(len as u32).to_le_bytes());
            reply[20..24].fill(0);
            if (&server).write_all(&reply).is_err() {
                break;
            }
            answered += 1;
        }
        answered
    });
    (client, asked_rx, go_tx, srv)
}

fn remote_case(name: &'static str, kind: Kind) {
    let _w = Watchdog::new(name, 60);
    let ps = kind.page();
    // The server's file has a header page before the region's bytes: the
    // region starts at offset ps.
    let data = content((PAGES + 1) * ps, 33);
    let (server, conn) = page_server(&data);
    let mem = Arc::new(Mem::new(kind, PAGES));
    let u = Arc::new(open_uffd(kind.missing_features()));
    let m = Monitor::new(Config::default(), Box::new(DefaultHandler)).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        RegionOptions {
            source: Source::Remote {
                fd: conn.as_raw_fd(),
                offset: ps as u64,
                max_in_flight: 4,
            },
            register: RegisterMode::MISSING,
            ..Default::default()
        },
    )
    .unwrap();
    drop(conn); // the monitor holds its own duplicate
    let running = m.start().unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let mem = mem.clone();
            std::thread::spawn(move || {
                (0..PAGES)
                    .filter(|i| i % 4 == t)
                    .map(|i| (i, mem.read(i * ps + 17)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for t in threads {
        for (i, b) in t.join().unwrap() {
            assert_eq!(b, data[ps + i * ps + 17], "{name}: page {i}");
        }
    }
    assert_bytes(mem.bytes(), &data[ps..], name);
    let st = m.stats();
    assert_eq!(st.failed, 0);
    assert!(st.deferred >= 1, "{name}: {} deferred", st.deferred);
    m.stop();
    running.wait().unwrap();
    drop(m);
    // The monitor's connection closed with it: the server ends cleanly.
    assert_eq!(exit_code(reap(server)), 0, "{name}: page server");
}

#[test]
fn remote_anon() {
    remote_case("remote_anon", Kind::Anon);
}

#[test]
fn remote_shmem() {
    remote_case("remote_shmem", Kind::ShmemShared);
}

#[test]
fn remote_hugetlb() {
    if skip_without_hugetlb("remote_hugetlb") {
        return;
    }
    remote_case("remote_hugetlb", Kind::Hugetlb);
}

/// The server stops with a request in flight, then is killed: the
/// faulting thread gets SIGBUS (in a child process, the one that faults),
/// within the bound; the pages served before stay right.
#[test]
fn remote_server_dies_mid_transfer() {
    let _w = Watchdog::new("remote_server_dies_mid_transfer", 60);
    let data = content(PAGES * PAGE, 5);
    let (server, conn) = page_server(&data);
    let cfd = conn.as_raw_fd();
    let status = in_child(Duration::from_secs(20), move || {
        let mem = Mem::new(Kind::Anon, PAGES);
        let u = Arc::new(open_uffd(uffd::Features::empty()));
        let m = Monitor::new(Config::default(), Box::new(DefaultHandler)).unwrap();
        add_all(
            &m,
            &u,
            &mem,
            Source::Remote {
                fd: cfd,
                offset: 0,
                max_in_flight: 2,
            },
        );
        let _running = m.start().unwrap();
        for i in 0..4 {
            if mem.read(i * PAGE + 1) != data[i * PAGE + 1] {
                return 10;
            }
        }
        // SAFETY: signals to the server process.
        unsafe { libc::kill(server, libc::SIGSTOP) };
        let s = server;
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            // SAFETY: as above.
            unsafe { libc::kill(s, libc::SIGKILL) };
        });
        // Blocks (the request is in flight), then SIGBUS.
        let b = mem.read(8 * PAGE);
        b as i32 + 20
    });
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS,
        "the faulting child should die of SIGBUS, status {status:#x}"
    );
    drop(conn);
    let st = reap(server);
    assert!(libc::WIFSIGNALED(st));
}

/// The caller's socket outlives a monitor that used it: a second monitor
/// (or the caller) can use the same connection afterwards. Before, the
/// dropped monitor shut the socket down (shutdown(2) acts on the socket,
/// not on one descriptor), the server ended, and the second monitor's
/// faults failed with EPIPE: SIGBUS (seen in bench/handoff_bench.c).
#[test]
fn remote_socket_outlives_monitor() {
    let _w = Watchdog::new("remote_socket_outlives_monitor", 60);
    let data = content(PAGES * PAGE, 9);
    let (server, conn) = page_server(&data);
    let cfd = conn.as_raw_fd();
    let expect = data.clone();
    let status = in_child(Duration::from_secs(20), move || {
        for round in 0..3 {
            let mem = Mem::new(Kind::Anon, PAGES);
            let u = Arc::new(open_uffd(uffd::Features::empty()));
            let m = Monitor::new(Config::default(), Box::new(DefaultHandler)).unwrap();
            add_all(
                &m,
                &u,
                &mem,
                Source::Remote {
                    fd: cfd,
                    offset: 0,
                    max_in_flight: 0,
                },
            );
            let running = m.start().unwrap();
            if mem.bytes() != &expect[..] {
                return 10 + round;
            }
            m.stop();
            running.wait().unwrap();
        }
        0
    });
    assert_eq!(
        exit_code(status),
        0,
        "a later monitor could not use the socket"
    );
    drop(conn);
    assert_eq!(exit_code(reap(server)), 0);
}

/// A request the server refuses (past its file's end: ENODATA) fails
/// that fault only: SIGBUS for its thread, the pages before are served.
#[test]
fn remote_refused_request_is_sigbus() {
    let _w = Watchdog::new("remote_refused_request_is_sigbus", 60);
    let data = content(4 * PAGE, 6);
    let (server, conn) = page_server(&data);
    let cfd = conn.as_raw_fd();
    let expect = data.clone();
    let status = in_child(Duration::from_secs(20), move || {
        let mem = Mem::new(Kind::Anon, PAGES);
        let u = Arc::new(open_uffd(uffd::Features::empty()));
        let cfg = Config {
            window_max: 1,
            ..Config::default()
        };
        let m = Monitor::new(cfg, Box::new(DefaultHandler)).unwrap();
        add_all(
            &m,
            &u,
            &mem,
            Source::Remote {
                fd: cfd,
                offset: 0,
                max_in_flight: 1,
            },
        );
        let _running = m.start().unwrap();
        for i in 0..4 {
            if mem.read(i * PAGE + 3) != expect[i * PAGE + 3] {
                return 10;
            }
        }
        if m.stats().failed != 0 {
            return 11;
        }
        mem.read(6 * PAGE) as i32 + 20
    });
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS,
        "the fault past the server's file should get SIGBUS, status {status:#x}"
    );
    drop(conn);
    assert_eq!(exit_code(reap(server)), 0);
}

/// No more than `max_in_flight` requests are ever outstanding: a server
/// (a thread here) that answers only once requests stop coming sees at
/// most 2 at a time while 8 threads fault, and everything is served.
#[test]
fn remote_in_flight_bound() {
    let _w = Watchdog::new("remote_in_flight_bound", 60);
    let data = content(PAGES * PAGE, 8);
    let (client, server) = std::os::unix::net::UnixStream::pair().unwrap();
    let served = data.clone();
    let peak = std::thread::spawn(move || {
        let mut peak = 0usize;
        let mut pending: Vec<[u8; 24]> = Vec::new();
        let fd = server.as_raw_fd();
        loop {
            let mut p = [libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            }];
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(p.as_mut_ptr(), 1, 100) };
            if n > 0 {
                let mut req = [0u8; 24];
                use std::io::Read;
                if (&server).read_exact(&mut req).is_err() {
                    return peak;
                }
                pending.push(req);
                peak = peak.max(pending.len());
                continue;
            }
            // Quiet for 100 ms: answer everything outstanding.
            for req in pending.drain(..) {
                use std::io::Write;
                let len = u32::from_le_bytes(req[4..8].try_into().unwrap()) as usize;
                let off = u64::from_le_bytes(req[16..24].try_into().unwrap()) as usize;
                let mut hdr = [0u8; 24];
                hdr[0..4].copy_from_slice(&0x5350_4655u32.to_le_bytes());
                hdr[8..16].copy_from_slice(&req[8..16]);
                hdr[16..20].copy_from_slice(&(len as u32).to_le_bytes());
                if (&server).write_all(&hdr).is_err()
                    || (&server).write_all(&served[off..off + len]).is_err()
                {
                    return peak;
                }
            }
        }
    });
    let mem = Arc::new(Mem::new(Kind::Anon, PAGES));
    let u = Arc::new(open_uffd(uffd::Features::empty()));
    let cfg = Config {
        window_max: 1,
        ..Config::default()
    };
    let m = Monitor::new(cfg, Box::new(DefaultHandler)).unwrap();
    add_all(
        &m,
        &u,
        &mem,
        Source::Remote {
            fd: client.as_raw_fd(),
            offset: 0,
            max_in_flight: 2,
        },
    );
    drop(client);
    let running = m.start().unwrap();
    let threads: Vec<_> = (0..8).map(|t| reader(&mem, 2 * t * PAGE + 5)).collect();
    for (t, h) in threads.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), data[2 * t * PAGE + 5]);
    }
    m.stop();
    running.wait().unwrap();
    drop(m);
    let peak = peak.join().unwrap();
    assert_eq!(peak, 2, "requests outstanding at most: {peak} (bound 2)");
}

/// A TCP page server whose sockets nobody set TCP_NODELAY on (neither the
/// test nor the server's caller): page-sized replies to one thread
/// touching page after page must not wait on Nagle's algorithm. The
/// server sent each reply as a 24-byte header, then the data: the data, a
/// small segment sent while the header was unacked, waited for the
/// client's delayed ACK, ~45 ms a page: 128 pages in 5.7 s (failed so
/// before; c-examples/postcopy without TCP_NODELAY: 256 pages in 6 s).
#[test]
fn remote_tcp_replies_not_delayed() {
    let _w = Watchdog::new("remote_tcp_replies_not_delayed", 60);
    const N: usize = 128;
    let data = content(N * PAGE, 21);
    let (server, conn) = page_server(&data);
    let mem = Arc::new(Mem::new(Kind::Anon, N));
    let u = Arc::new(open_uffd(uffd::Features::empty()));
    let cfg = Config {
        window_min: 1,
        window_max: 1,
        adaptive: false,
        ..Config::default()
    };
    let m = Monitor::new(cfg, Box::new(DefaultHandler)).unwrap();
    add_all(
        &m,
        &u,
        &mem,
        Source::Remote {
            fd: conn.as_raw_fd(),
            offset: 0,
            max_in_flight: 0,
        },
    );
    drop(conn);
    let running = m.start().unwrap();
    let t0 = std::time::Instant::now();
    for i in 0..N {
        assert_eq!(mem.read(i * PAGE + 3), data[i * PAGE + 3], "page {i}");
    }
    let took = t0.elapsed();
    assert_bytes(mem.bytes(), &data, "remote_tcp_replies_not_delayed");
    assert_eq!(m.stats().failed, 0);
    m.stop();
    running.wait().unwrap();
    drop(m);
    assert_eq!(exit_code(reap(server)), 0);
    assert!(
        took < Duration::from_secs(1),
        "{N} one-page faults in a row over TCP took {took:?} (~40 ms each: Nagle)"
    );
}

/// A reply that arrives after the application dropped the page
/// (madvise(DONTNEED), a REMOVE event: a balloon) must not put the
/// source's bytes back: the page reads as zeros, as it would without
/// userfaultfd, and as a local source gives (its placement holds the
/// layout gate). The server (a thread) holds its reply until the REMOVE
/// is through. Before, the reply thread placed the bytes without the gate
/// or a look at the region table: the page read 0xAB after the madvise
/// had returned.
#[test]
fn remote_reply_after_remove_is_not_placed() {
    let _w = Watchdog::new("remote_reply_after_remove_is_not_placed", 60);
    let (client, asked_rx, go_tx, srv) = held_reply_server();
    let mem = Arc::new(Mem::new(Kind::Anon, 4));
    let u = Arc::new(open_uffd(uffd::Features::EVENT_REMOVE));
    let cfg = Config {
        window_min: 1,
        window_max: 1,
        adaptive: false,
        ..Config::default()
    };
    let m = Monitor::new(cfg, Box::new(DefaultHandler)).unwrap();
    add_all(
        &m,
        &u,
        &mem,
        Source::Remote {
            fd: client.as_raw_fd(),
            offset: 0,
            max_in_flight: 4,
        },
    );
    drop(client);
    let running = m.start().unwrap();
    let faulting = reader(&mem, 7);
    asked_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the fault's request reached the server");
    // The balloon: drop page 0 while its reply is in flight.
    // SAFETY: the test's own mapping.
    let rc = unsafe { libc::madvise(mem.start() as *mut _, PAGE, libc::MADV_DONTNEED) };
    assert_eq!(rc, 0);
    go_tx.send(()).unwrap();
    let seen = faulting.join().unwrap();
    assert!(
        seen == 0 || seen == 0xAB,
        "the racing read sees the page before or after the drop: {seen:#x}"
    );
    assert_eq!(
        mem.read(7),
        0,
        "after madvise(DONTNEED) returned, page 0 must read zeros, not the late reply's bytes"
    );
    m.stop();
    running.wait().unwrap();
    drop(m);
    srv.join().unwrap();
}

/// A monitor serving all of `mem` from the remote `conn`, PREFETCH on.
fn prefetching(mem: &Mem, kind: Kind, conn: i32, offset: u64, in_flight: u32) -> Monitor {
    prefetching_with(Config::default(), mem, kind, conn, offset, in_flight)
}

fn prefetching_with(
    cfg: Config,
    mem: &Mem,
    kind: Kind,
    conn: i32,
    offset: u64,
    in_flight: u32,
) -> Monitor {
    let u = Arc::new(open_uffd(kind.missing_features()));
    let m = Monitor::new(cfg, Box::new(DefaultHandler)).unwrap();
    let id = m.add_uffd(u).unwrap();
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        RegionOptions {
            source: Source::Remote {
                fd: conn,
                offset,
                max_in_flight: in_flight,
            },
            register: RegisterMode::MISSING,
            prefetch: true,
            ..Default::default()
        },
    )
    .unwrap();
    m
}

/// PREFETCH on a remote region: every page arrives without any access
/// (no fault at all), counted in prefetched_bytes, the region counted
/// done; the content equals the server's file. Before, the prefetcher
/// skipped remote regions: prefetched_bytes stayed 0 and the wait for
/// prefetch_done_regions timed out.
fn remote_prefetch_case(name: &'static str, kind: Kind, pages: usize) {
    let _w = Watchdog::new(name, 60);
    let ps = kind.page();
    let data = content((pages + 1) * ps, 71);
    let (server, conn) = page_server(&data);
    let mem = Mem::new(kind, pages);
    let m = prefetching(&mem, kind, conn.as_raw_fd(), ps as u64, 4);
    drop(conn);
    let running = m.start().unwrap();
    wait_for(name, 20, || m.stats().prefetch_done_regions == 1);
    let st = m.stats();
    assert_eq!(st.faults, 0, "{name}: nothing touched, no fault");
    assert_eq!(st.prefetched_bytes, mem.len as u64, "{name}");
    assert_eq!(st.failed, 0);
    assert_bytes(mem.bytes(), &data[ps..], name);
    assert_eq!(m.stats().faults, 0, "{name}: every page was there");
    m.stop();
    running.wait().unwrap();
    drop(m);
    assert_eq!(exit_code(reap(server)), 0, "{name}: page server");
}

#[test]
fn remote_prefetch_anon() {
    // 300 pages: five requests of 64 pages, the last one short.
    remote_prefetch_case("remote_prefetch_anon", Kind::Anon, 300);
}

#[test]
fn remote_prefetch_shmem() {
    remote_prefetch_case("remote_prefetch_shmem", Kind::ShmemShared, 300);
}

#[test]
fn remote_prefetch_hugetlb() {
    if skip_without_hugetlb("remote_prefetch_hugetlb") {
        return;
    }
    remote_prefetch_case("remote_prefetch_hugetlb", Kind::Hugetlb, 6);
}

/// Demand faults during the prefetch are served (their requests go
/// first): 4 threads read pages from the end backwards (the prefetch goes
/// forwards) while 32 MiB are prefetched; every byte right, no read
/// waits anywhere near a second (a sanity bound, not a timing test).
#[test]
fn remote_prefetch_with_demand_faults() {
    let name = "remote_prefetch_with_demand_faults";
    let _w = Watchdog::new(name, 60);
    let pages = 8192;
    let data = content(pages * PAGE, 5);
    let (server, conn) = page_server(&data);
    let mem = Arc::new(Mem::new(Kind::Anon, pages));
    let m = prefetching(&mem, Kind::Anon, conn.as_raw_fd(), 0, 4);
    drop(conn);
    let running = m.start().unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let mem = mem.clone();
            std::thread::spawn(move || {
                let mut worst = Duration::ZERO;
                let mut got = Vec::new();
                for i in (0..pages).rev().filter(|i| i % 4 == t).step_by(7) {
                    let at = std::time::Instant::now();
                    got.push((i, mem.read(i * PAGE + 9)));
                    worst = worst.max(at.elapsed());
                }
                (worst, got)
            })
        })
        .collect();
    for t in threads {
        let (worst, got) = t.join().unwrap();
        assert!(
            worst < Duration::from_secs(1),
            "{name}: a read took {worst:?}"
        );
        for (i, b) in got {
            assert_eq!(b, data[i * PAGE + 9], "{name}: page {i}");
        }
    }
    wait_for(name, 20, || m.stats().prefetch_done_regions == 1);
    assert_bytes(mem.bytes(), &data, name);
    let st = m.stats();
    assert_eq!(st.failed, 0);
    assert!(st.faults > 0, "{name}: no demand fault");
    // Each page placed once: by a fault (with its window) or the prefetch.
    assert_eq!(
        st.bytes + st.prefetched_bytes,
        mem.len as u64,
        "{name}: {st:?}"
    );
    m.stop();
    running.wait().unwrap();
    drop(m);
    assert_eq!(exit_code(reap(server)), 0, "{name}: page server");
}

/// The region runs past the end of the server's file: the prefetch
/// request that meets the end is refused (ENODATA), the rest of the region
/// is left to its faults, and nothing is poisoned: the region counts as
/// done, no fault failed, a page the file holds but the prefetch did not
/// get to is served on demand, and the pages before it came without a
/// fault.
#[test]
fn remote_prefetch_past_eof() {
    let name = "remote_prefetch_past_eof";
    let _w = Watchdog::new(name, 60);
    let (pages, file_pages) = (160, 100);
    let data = content(file_pages * PAGE, 12);
    let (server, conn) = page_server(&data);
    let mem = Mem::new(Kind::Anon, pages);
    let m = prefetching(&mem, Kind::Anon, conn.as_raw_fd(), 0, 4);
    drop(conn);
    let running = m.start().unwrap();
    wait_for(name, 20, || m.stats().prefetch_done_regions == 1);
    let st = m.stats();
    assert_eq!(st.failed, 0, "{name}: a prefetch failure is no fault's");
    assert_eq!(st.faults, 0, "{name}");
    // Chunks of 64 pages: pages 0..64 came, 64..128 was refused.
    assert_eq!(st.prefetched_bytes, 64 * PAGE as u64, "{name}");
    assert_bytes(&mem.bytes()[..64 * PAGE], &data[..64 * PAGE], name);
    assert_eq!(m.stats().faults, 0, "{name}: pages 0..64 were there");
    assert_eq!(mem.read(90 * PAGE + 3), data[90 * PAGE + 3], "{name}");
    let st = m.stats();
    assert_eq!((st.faults, st.failed), (1, 0), "{name}");
    m.stop();
    running.wait().unwrap();
    drop(m);
    assert_eq!(exit_code(reap(server)), 0, "{name}: page server");
}

/// A slow page server (a thread answering each request 5 ms late, over a
/// Unix socket pair): a stop in the middle of the prefetch returns at
/// once, and nothing more is placed after it; a second run (the region
/// kept by `StopPolicy::Block`) finishes the prefetch, the chunk whose
/// reply the stop dropped included.
#[test]
fn remote_prefetch_stop_is_prompt() {
    let name = "remote_prefetch_stop_is_prompt";
    let _w = Watchdog::new(name, 60);
    let pages = 4096;
    let data = Arc::new(content(pages * PAGE, 9));
    let (client, server) = std::os::unix::net::UnixStream::pair().unwrap();
    let served = data.clone();
    let srv = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut answered = 0;
        loop {
            let mut req = [0u8; 24];
            if (&server).read_exact(&mut req).is_err() {
                return answered;
            }
            std::thread::sleep(Duration::from_millis(5));
            let len = u32::from_le_bytes(req[4..8].try_into().unwrap()) as usize;
            let off = u64::from_le_bytes(req[16..24].try_into().unwrap()) as usize;
            let mut reply = vec![0u8; 24];
            reply[0..4].copy_from_slice(&0x5350_4655u32.to_le_bytes());
            reply[8..16].copy_from_slice(&req[8..16]);
            reply[16..20].copy_from_slice(&(len as u32).to_le_bytes());
            reply.extend_from_slice(&served[off..off + len]);
            if (&server).write_all(&reply).is_err() {
                return answered;
            }
            answered += 1;
        }
    });
    let mem = Mem::new(Kind::Anon, pages);
    // Block: the stop leaves the region served (the default for a remote
    // region, SIGBUS, poisons the pages not there and drops it).
    let cfg = Config {
        stop_policy: uffd::monitor::StopPolicy::Block,
        ..Config::default()
    };
    let m = prefetching_with(cfg, &mem, Kind::Anon, client.as_raw_fd(), 0, 4);
    drop(client);
    let running = m.start().unwrap();
    wait_for(name, 20, || m.stats().prefetched_bytes > 0);
    let at = std::time::Instant::now();
    m.stop();
    running.wait().unwrap();
    let took = at.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "{name}: stop took {took:?}"
    );
    // A reply being placed as the stop came may still land; then nothing.
    std::thread::sleep(Duration::from_millis(20));
    let after = m.stats().prefetched_bytes;
    assert!(
        after < mem.len as u64,
        "{name}: the prefetch was done already"
    );
    std::thread::sleep(Duration::from_millis(50));
    let st = m.stats();
    assert_eq!(st.prefetched_bytes, after, "{name}: placed after the stop");
    assert_eq!(st.prefetch_done_regions, 0);
    // A second run goes on to the end.
    let running = m.start().unwrap();
    wait_for(name, 30, || m.stats().prefetch_done_regions == 1);
    let st = m.stats();
    assert_eq!(st.prefetched_bytes, mem.len as u64, "{name}: {st:?}");
    assert_bytes(mem.bytes(), &data, name);
    assert_eq!(m.stats().faults, 0, "{name}: every page was there");
    m.stop();
    running.wait().unwrap();
    drop(m);
    let answered = srv.join().unwrap();
    // One request out at a time: at most one answered and dropped at the
    // stop, asked again by the second run.
    assert!(answered <= pages / 64 + 1, "{name}: {answered} answered");
}

/// A balloon drops pages of a PREFETCH region (madvise(DONTNEED): a
/// REMOVE) while the prefetch's request is out: its reply fills the rest
/// and leaves the dropped pages alone (they read zeros, as a local
/// source's would), and the region still counts as one done.
#[test]
fn remote_prefetch_reply_after_remove() {
    let name = "remote_prefetch_reply_after_remove";
    let _w = Watchdog::new(name, 60);
    let (client, asked_rx, go_tx, srv) = held_reply_server();
    let mem = Mem::new(Kind::Anon, 8);
    let u = Arc::new(open_uffd(uffd::Features::EVENT_REMOVE));
    let m = Monitor::new(Config::default(), Box::new(DefaultHandler)).unwrap();
    let id = m.add_uffd(u).unwrap();
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        RegionOptions {
            source: Source::Remote {
                fd: client.as_raw_fd(),
                offset: 0,
                max_in_flight: 4,
            },
            register: RegisterMode::MISSING,
            prefetch: true,
            ..Default::default()
        },
    )
    .unwrap();
    drop(client);
    let running = m.start().unwrap();
    asked_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the prefetch's request reached the server");
    // SAFETY: the test's own mapping.
    let rc = unsafe {
        libc::madvise(
            (mem.start() + 2 * PAGE as u64) as *mut _,
            2 * PAGE,
            libc::MADV_DONTNEED,
        )
    };
    assert_eq!(rc, 0);
    go_tx.send(()).unwrap();
    wait_for(name, 20, || m.stats().prefetch_done_regions >= 1);
    let st = m.stats();
    assert_eq!(st.prefetch_done_regions, 1, "{name}");
    assert_eq!(st.prefetched_bytes, 6 * PAGE as u64, "{name}");
    for p in [0, 1, 4, 5, 6, 7] {
        assert_eq!(mem.read(p * PAGE + 100), 0xAB, "{name}: page {p}");
    }
    assert_eq!(m.stats().faults, 0, "{name}: the pages kept were there");
    for p in [2, 3] {
        assert_eq!(mem.read(p * PAGE + 100), 0, "{name}: dropped page {p}");
    }
    m.stop();
    running.wait().unwrap();
    drop(m);
    assert_eq!(srv.join().unwrap(), 1, "{name}: one request, no walk again");
}

/// A dirty-tracked remote region (sync path): the pages a fault's reply
/// places are write-protected like every source's, so the first write to
/// each is seen. Before, the reply thread placed them writable: a write
/// after the read went unreported (found when remote prefetch placed its
/// pages write-protected and the faults' replies did not).
#[test]
fn remote_pages_of_a_tracked_region_are_placed_protected() {
    let _w = Watchdog::new("remote_pages_of_a_tracked_region_are_placed_protected", 60);
    let data = content(8 * PAGE, 12);
    let (server, conn) = page_server(&data);
    let mem = Arc::new(Mem::new(Kind::Anon, 8));
    let u = Arc::new(open_uffd(uffd::Features::PAGEFAULT_FLAG_WP));
    let cfg = Config {
        window_max: 1,
        ..Config::default()
    };
    let m = Monitor::new(cfg, Box::new(DefaultHandler)).unwrap();
    let id = m.add_uffd(u).unwrap();
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        RegionOptions {
            source: Source::Remote {
                fd: conn.as_raw_fd(),
                offset: 0,
                max_in_flight: 2,
            },
            register: RegisterMode::MISSING,
            track_dirty: true,
            ..RegionOptions::default()
        },
    )
    .unwrap();
    let running = m.start().unwrap();
    for p in 0..8 {
        assert_eq!(mem.read(p * PAGE + 1), data[p * PAGE + 1], "page {p}");
    }
    mem.write(2 * PAGE + 5, 0x77);
    mem.write(6 * PAGE + 5, 0x66);
    let mut bits = [0u64; 1];
    let n = m
        .dirty_scan(id, Range::new(mem.start(), mem.len as u64), true, &mut bits)
        .unwrap();
    assert_eq!(
        (n, bits[0]),
        (2, (1 << 2) | (1 << 6)),
        "written pages reported"
    );
    m.stop();
    running.wait().unwrap();
    drop(m);
    drop(conn);
    assert_eq!(exit_code(reap(server)), 0);
}
