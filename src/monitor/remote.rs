// SPDX-License-Identifier: MIT OR Apache-2.0
//! Remote page sources (`Source::Remote`): a region's pages come from a
//! page server at the other end of a connected socket (Unix or TCP),
//! asynchronously. A fault sends a request and is deferred: the reader
//! goes on at once. A thread per connection ("uffd-remote") reads the
//! replies and completes each fault with the bytes (`Inner::complete`,
//! as `Monitor::complete` does). At most `max_in_flight` requests are
//! outstanding on a connection; the others wait in a queue and are sent
//! as replies come back. A PREFETCH region's other pages are asked for in
//! the background by the same thread, a chunk at a time, behind the
//! faults' requests (see "The background prefetch" below).
//!
//! Protocol (every field little-endian):
//! - request, 24 bytes: magic `0x52504655` ("UFPR"), length (u32), id
//!   (u64), offset (u64): "send `length` bytes of your file at `offset`";
//! - reply, 24 bytes then the data: magic `0x53504655` ("UFPS"), status
//!   (i32: 0, or a positive errno), id (u64, the request's), length (u32,
//!   the bytes that follow: the request's on success, 0 on error), 4
//!   bytes reserved.
//!
//! Failures: a reply with an error, a reply of the wrong length, or a
//! reply the thread cannot place fails that fault; a lost connection (the
//! server closed or died, a malformed reply) fails every fault pending on
//! it and every later one. A failed fault is poisoned (its thread gets
//! SIGBUS), counted in `failed`, logged, and with `ErrorPolicy::Stop` the
//! monitor stops; `ErrorPolicy::Retry` does not retry a remote fault (the
//! server said no, or is gone). No fault waits for ever.

use super::fault::{Handled, OnAgain, Pending};
use super::region::Source;
use super::resolve::{Action, Applied, Backoff, Failed, FaultToken};
use super::stats::Stats;
use super::unpoisoned::LockOk;
use super::unpoisoned::RwOk;
use super::{ErrorPolicy, Inner};
use crate::sys::socket;
use crate::uffd::{Error, Result};
use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// A request's magic ("UFPR").
pub const REQUEST_MAGIC: u32 = 0x5250_4655;
/// A reply's magic ("UFPS").
pub const REPLY_MAGIC: u32 = 0x5350_4655;
/// Bytes of a request, and of a reply's header.
pub const HEADER: usize = 24;
/// The longest request a server answers (larger: EINVAL).
pub const MAX_REQUEST: u32 = 4 << 20;
/// Requests in flight per connection when the region says 0.
pub const DEFAULT_IN_FLIGHT: u32 = 16;
/// The background prefetch's request, at most (at least one page).
pub const PREFETCH_CHUNK: u64 = 256 << 10;

pub(crate) struct Client {
    sock: OwnedFd,
    /// An eventfd fired when the monitor is dropped: the reply thread
    /// ends. (A shutdown(2) would do it too, but would cut the caller's
    /// own descriptors of the socket, which share it.)
    cancel: OwnedFd,
    /// (st_dev, st_ino) of the socket: regions naming the same socket
    /// (under any descriptor number) share the connection.
    ident: (u64, u64),
    max_in_flight: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// (request id, fault, bytes asked).
    in_flight: Vec<(u64, FaultToken, u32)>,
    /// (fault, offset, bytes to ask).
    queued: VecDeque<(FaultToken, u64, u32)>,
    /// Why the connection is unusable (errno, text).
    dead: Option<(i32, String)>,
    /// The background prefetch (PREFETCH regions of this connection):
    /// where it goes on, (uffd id, address); None: from the table's start.
    pf_cursor: Option<(u32, u64)>,
    /// Its request out, at most one: (request id, what it asked).
    pf_out: Option<(u64, Chunk)>,
    /// No PREFETCH region of this connection was left at the last look:
    /// replies do not look again until `prefetch_kick_all` (a run's start,
    /// a region added).
    pf_idle: bool,
}

impl State {
    /// Requests out, the prefetch's included.
    fn out(&self) -> usize {
        self.in_flight.len() + self.pf_out.is_some() as usize
    }
}

/// One background prefetch request: `len` bytes of the region of
/// `uffd_id` from `addr`, at the server's `offset`; the region (as it was
/// when asked) ends at `region_end`.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    uffd_id: u32,
    addr: u64,
    len: u64,
    page_size: u64,
    offset: u64,
    region_end: u64,
}

/// The monitor's connections; their reply threads are told to end when
/// the monitor is dropped (the socket itself is left as it is: the
/// caller may use it again).
#[derive(Default)]
pub(crate) struct Remotes {
    list: Mutex<Vec<Arc<Client>>>,
}

impl Drop for Remotes {
    fn drop(&mut self) {
        for c in self.list.lock_ok().iter() {
            crate::sys::wait::eventfd_signal(c.cancel.as_fd());
        }
    }
}

fn ident(fd: i32) -> Result<(u64, u64)> {
    let meta = std::fs::metadata(format!("/proc/self/fd/{fd}")).map_err(|e| {
        Error::os(
            "fstat",
            e.raw_os_error().unwrap_or(libc::EBADF),
            format!("remote source socket {fd}"),
        )
    })?;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if !meta.file_type().is_socket() {
        return Err(Error::os(
            "add region",
            libc::ENOTSOCK,
            format!("remote source fd {fd} is not a socket"),
        ));
    }
    Ok((meta.dev(), meta.ino()))
}

impl Inner {
    /// The connection for socket `fd` (a region's `Source::Remote`),
    /// made on first use: the socket duplicated and its reply thread
    /// started. Returns the connection's own descriptor number, which the
    /// region keeps in its source.
    pub(crate) fn remote_connect(self: &Arc<Self>, fd: i32, max_in_flight: u32) -> Result<i32> {
        let id = ident(fd)?;
        let mut list = self.remotes.list.lock_ok();
        if let Some(c) = list.iter().find(|c| c.ident == id) {
            return Ok(c.sock.as_raw_fd());
        }
        let sock = crate::sys::dupfd::dup_cloexec(fd).map_err(|e| {
            Error::os(
                "add region",
                e,
                format!("duplicating the remote source socket {fd}"),
            )
        })?;
        // Requests are 24 bytes: on TCP, each goes out at once rather than
        // wait behind the ACK of an earlier one (Nagle); not TCP: no-op.
        let _ = socket::set_nodelay(sock.as_fd());
        let cancel = crate::sys::wait::eventfd().map_err(|e| Error::os("eventfd", e, ""))?;
        let client = Arc::new(Client {
            sock,
            cancel,
            ident: id,
            max_in_flight: if max_in_flight == 0 {
                DEFAULT_IN_FLIGHT
            } else {
                max_in_flight
            } as usize,
            state: Mutex::new(State::default()),
        });
        let (weak, c) = (Arc::downgrade(self), client.clone());
        let sink = self.panic_sink();
        super::spawn_thread("uffd-remote", move || {
            let _quiet = crate::uffd::quiet::Scope::enter(Some(sink));
            replies(weak, c)
        })?;
        let raw = client.sock.as_raw_fd();
        list.push(client);
        Ok(raw)
    }

    fn remote_client(&self, fd: i32) -> Option<Arc<Client>> {
        self.remotes
            .list
            .lock_ok()
            .iter()
            .find(|c| c.sock.as_raw_fd() == fd)
            .cloned()
    }

    /// A missing-page fault of a remote region: request the page and
    /// the `window - 1` after it (the fault-around window, at most
    /// `MAX_REQUEST` bytes), defer.
    pub(crate) fn remote_fault(
        &self,
        p: Pending,
        token: FaultToken,
        fd: i32,
        offset: u64,
        window: u64,
        on_again: OnAgain,
    ) -> Handled {
        let pages = window.clamp(1, (MAX_REQUEST as u64 / token.page_size).max(1));
        let len = (pages * token.page_size) as u32;
        let Some(client) = self.remote_client(fd) else {
            let e = Error::invalid("remote source: no connection for this region");
            return self.fail(p, token, &e, on_again);
        };
        Stats::add(&self.stats.deferred, 1);
        self.deferred_open(token);
        match client.request(token, offset, len) {
            Ok(()) => Handled::Done,
            Err(e) => {
                self.deferred_done(token);
                self.fail(p, token, &e, on_again)
            }
        }
    }

    /// Place a reply's bytes for the deferred fault `t` of the connection
    /// `fd`: the faulting page and the rest of the window, or the faulting
    /// page alone when the window no longer fits its region (removed or
    /// split meanwhile).
    ///
    /// Under the layout gate, and only if the table still serves the page
    /// from this connection, as a local source's placement is: a REMOVE
    /// (madvise DONTNEED of a balloon), UNMAP or `remove_region` read
    /// while the request was out changed what the page must hold, and
    /// the kernel drops the page only after the monitor has read the
    /// REMOVE, so bytes placed later would stay (stale data where the
    /// application expects zeros). Then the thread is only woken: it
    /// faults again and is served as the table says now. EAGAIN (an event
    /// pending) is retried with the gate released, so the reader can take
    /// it to apply the event; for 2 s at most, as `complete` does.
    fn place_reply(
        &self,
        t: FaultToken,
        fd: i32,
        buf: &[u8],
    ) -> std::result::Result<Applied, Failed> {
        self.deferred_done(t);
        let mut backoff = Backoff::new(Duration::from_secs(2));
        loop {
            let r = {
                let _gate = self.layout.read_ok();
                let still_ours =
                    self.regions.read_ok().find(t.uffd_id, t.page).is_some_and(
                        |r| matches!(r.source, Source::Remote { fd: f, .. } if f == fd),
                    );
                if !still_ours {
                    let _ = self.apply(t, Action::Wake);
                    Ok(Applied::Gone)
                } else {
                    let mode = self.dirty.copy_mode(t.uffd_id, t.page);
                    let copy = |len: u64| Action::CopyRange {
                        src: buf.as_ptr() as u64,
                        len,
                        mode,
                    };
                    match self.apply(t, copy(buf.len() as u64)) {
                        Err(Failed::Error(e))
                            if e.errno() == libc::EINVAL && buf.len() as u64 > t.page_size =>
                        {
                            self.apply(t, copy(t.page_size))
                        }
                        r => r,
                    }
                }
            };
            match r {
                Err(Failed::Again) if backoff.pause() => {
                    Stats::add(&self.stats.retried, 1);
                }
                Ok(a) => {
                    self.count_applied(a, t.page_size);
                    return Ok(a);
                }
                Err(f) => return Err(f),
            }
        }
    }

    /// A deferred remote fault failed: poison it (SIGBUS), count, log.
    fn remote_failed(&self, t: FaultToken, e: &Error) {
        self.deferred_done(t);
        Stats::add(&self.stats.failed, 1);
        self.log(format_args!(
            "remote page source: fault at {:#x}: {e}",
            t.page
        ));
        let _ = self.poison_quietly(t);
        let _ = self.apply(t, Action::Wake);
        if self.config.error_policy == ErrorPolicy::Stop {
            self.request_stop(Some(e.errno()));
        }
    }
}

fn request_bytes(id: u64, offset: u64, len: u32) -> [u8; HEADER] {
    let mut b = [0u8; HEADER];
    b[0..4].copy_from_slice(&REQUEST_MAGIC.to_le_bytes());
    b[4..8].copy_from_slice(&len.to_le_bytes());
    b[8..16].copy_from_slice(&id.to_le_bytes());
    b[16..24].copy_from_slice(&offset.to_le_bytes());
    b
}

impl Client {
    /// Send the request now if fewer than `max_in_flight` are out, else
    /// queue it. An error: the connection is gone.
    fn request(&self, t: FaultToken, offset: u64, len: u32) -> Result<()> {
        let mut st = self.state.lock_ok();
        if let Some((errno, why)) = &st.dead {
            return Err(Error::os("remote page source", *errno, why.clone()));
        }
        if st.out() >= self.max_in_flight {
            st.queued.push_back((t, offset, len));
            return Ok(());
        }
        self.send_locked(&mut st, t, offset, len)
    }

    fn send_locked(&self, st: &mut State, t: FaultToken, offset: u64, len: u32) -> Result<()> {
        let id = self.send_request(st, offset, len)?;
        st.in_flight.push((id, t, len));
        Ok(())
    }

    /// Send one request; its id. An error: the connection is gone (the
    /// reply thread then meets the end of the stream and fails what is
    /// pending).
    fn send_request(&self, st: &mut State, offset: u64, len: u32) -> Result<u64> {
        let id = st.next_id;
        st.next_id += 1;
        let req = request_bytes(id, offset, len);
        if let Err(e) = socket::send_all(self.sock.as_fd(), &req) {
            let why = format!("sending a request to the page server failed (errno {e})");
            st.dead = Some((e, why.clone()));
            socket::shutdown(self.sock.as_fd());
            return Err(Error::os("remote page source", e, why));
        }
        Ok(id)
    }

    /// Send the demand requests that wait, as far as `max_in_flight`
    /// allows; a fault whose request could not be sent.
    fn drain_locked(&self, st: &mut State) -> Option<(FaultToken, Error)> {
        let mut err = None;
        while st.out() < self.max_in_flight && st.dead.is_none() {
            let Some((t, off, n)) = st.queued.pop_front() else {
                break;
            };
            if let Err(e) = self.send_locked(st, t, off, n) {
                err = Some((t, e));
            }
        }
        err
    }
}

// The background prefetch of remote regions (`RegionOptions::prefetch`).
// Each connection walks its PREFETCH regions in (uffd, address) order, one
// request of at most `PREFETCH_CHUNK` bytes out at a time, sent only when no
// demand request waits in the queue and `max_in_flight` has room (the
// prefetch's request counts): a fault's request never queues behind it.
// The reply thread places each reply as a fault's is (under the layout
// gate, only where the table still serves those pages from this
// connection at the offsets asked, pages already present skipped), then
// asks for the next chunk. A failed request leaves the rest of its region
// to the faults (logged). The walk goes on only while a run is on: a reply
// that comes after the stop is dropped.
impl Inner {
    /// Start (or go on with) the background prefetch of every connection:
    /// at a run's start and when a PREFETCH region is added while running.
    pub(crate) fn remote_prefetch_kick_all(&self) {
        let list: Vec<Arc<Client>> = self.remotes.list.lock_ok().clone();
        for c in list {
            c.state.lock_ok().pf_idle = false;
            self.remote_prefetch_kick(&c);
        }
    }

    /// Send the connection's next prefetch request if it may go now.
    fn remote_prefetch_kick(&self, c: &Client) {
        if !self.life.running() || self.life.stop_asked() {
            return;
        }
        let mut st = c.state.lock_ok();
        if st.dead.is_some()
            || st.pf_idle
            || st.pf_out.is_some()
            || !st.queued.is_empty()
            || st.out() >= c.max_in_flight
        {
            return;
        }
        let Some(ch) = self.remote_next_chunk(c.sock.as_raw_fd(), &mut st.pf_cursor) else {
            st.pf_idle = true;
            return;
        };
        if let Ok(id) = c.send_request(&mut st, ch.offset, ch.len as u32) {
            st.pf_out = Some((id, ch));
        }
    }

    /// The next chunk of the connection `fd`'s PREFETCH regions from
    /// `cursor` (moved past it), wrapping once to the table's start (a
    /// region added before the cursor); None: none left.
    fn remote_next_chunk(&self, fd: i32, cursor: &mut Option<(u32, u64)>) -> Option<Chunk> {
        let t = self.regions.read_ok();
        for _ in 0..2 {
            let at = *cursor;
            let found = t
                .iter()
                .filter(|r| {
                    r.prefetch
                        && r.page_size != 0
                        && r.page_size <= MAX_REQUEST as u64
                        && matches!(r.source, Source::Remote { fd: f, .. } if f == fd)
                })
                .find(|r| at.is_none_or(|(id, a)| (r.uffd_id, r.end()) > (id, a)));
            let Some(r) = found else {
                // Once more from the start, if not there already.
                cursor.take()?;
                continue;
            };
            let Source::Remote { offset: base, .. } = r.source else {
                return None;
            };
            let from = match at {
                Some((id, a)) if id == r.uffd_id && a > r.start => a,
                _ => r.start,
            };
            let ps = r.page_size;
            let cap = (PREFETCH_CHUNK.min(MAX_REQUEST as u64) / ps).max(1);
            let len = ((r.end() - from) / ps).clamp(1, cap) * ps;
            *cursor = Some((r.uffd_id, from + len));
            return Some(Chunk {
                uffd_id: r.uffd_id,
                addr: from,
                len,
                page_size: ps,
                offset: base
                    .wrapping_add(r.source_offset)
                    .wrapping_add(from - r.start),
                region_end: r.end(),
            });
        }
        None
    }

    /// A prefetch reply: place it, or give the region up.
    fn remote_prefetch_reply(&self, c: &Client, ch: Chunk, status: i32, buf: &[u8]) {
        // The run ended: the prefetch with it. The chunk is asked again
        // from its start by a later run (pages placed meanwhile: EEXIST).
        let stopped = || {
            let mut st = c.state.lock_ok();
            if st
                .pf_cursor
                .is_some_and(|(id, a)| id == ch.uffd_id && a > ch.addr)
            {
                st.pf_cursor = Some((ch.uffd_id, ch.addr));
            }
        };
        if !self.life.running() || self.life.stop_asked() {
            return stopped();
        }
        let fd = c.sock.as_raw_fd();
        let failure = if status != 0 {
            Some(Error::os(
                "remote prefetch",
                status,
                "the page server refused the request",
            ))
        } else if buf.len() as u64 != ch.len {
            Some(Error::os(
                "remote prefetch",
                libc::EBADMSG,
                format!("the page server sent {} bytes for {}", buf.len(), ch.len),
            ))
        } else {
            let (placed, err) = self.remote_place_chunk(fd, ch, buf);
            Stats::add(&self.stats.prefetched_bytes, placed);
            if err.is_none() && self.life.stop_asked() {
                return stopped(); // maybe cut short
            }
            err
        };
        if let Some(e) = failure {
            self.log(format_args!(
                "remote prefetch of [{:#x}, +{:#x}) (server offset {:#x}): {e}; the rest of the region is left to its faults",
                ch.addr, ch.len, ch.offset
            ));
            self.remote_prefetch_finished(fd, ch);
            let mut st = c.state.lock_ok();
            if st
                .pf_cursor
                .is_some_and(|(id, a)| id == ch.uffd_id && a <= ch.region_end)
            {
                st.pf_cursor = Some((ch.uffd_id, ch.region_end));
            }
        } else if ch.addr + ch.len >= ch.region_end {
            self.remote_prefetch_finished(fd, ch);
        }
    }

    /// The walk reached the end of the region of `ch` (or gave it up):
    /// every PREFETCH piece of it from the chunk on is done (an event may
    /// have split it while the chunk was out: the pieces kept are done
    /// too), counted once in `prefetch_done_regions`.
    fn remote_prefetch_finished(&self, fd: i32, ch: Chunk) {
        let mut done = false;
        for r in self.regions.write_ok().vec_mut().iter_mut() {
            if r.uffd_id == ch.uffd_id
                && r.prefetch
                && r.end() > ch.addr
                && r.end() <= ch.region_end
                && matches!(r.source, Source::Remote { fd: f, .. } if f == fd)
            {
                r.prefetch = false;
                done = true;
            }
        }
        if done {
            Stats::add(&self.stats.prefetch_done_regions, 1);
        }
    }

    /// Place a prefetch reply's bytes: each piece of the chunk the table
    /// still serves from connection `fd` at the offsets asked, under the
    /// layout gate (as `place_reply`); pages already present are skipped.
    /// Bytes placed, and the error that ended it early.
    fn remote_place_chunk(&self, fd: i32, ch: Chunk, buf: &[u8]) -> (u64, Option<Error>) {
        enum Step {
            Skip(u64),
            Did(std::result::Result<Applied, Failed>, u64),
        }
        let (ps, end) = (ch.page_size, ch.addr + ch.len);
        let (mut at, mut placed) = (ch.addr, 0u64);
        let mut backoff = Backoff::new(Duration::from_secs(2));
        while at < end {
            if self.life.stop_asked() {
                break;
            }
            let step = {
                let _gate = self.layout.read_ok();
                let piece = self.regions.read_ok().find(ch.uffd_id, at).map(|r| {
                    let want = ch.offset.wrapping_add(at - ch.addr);
                    let ours = r.page_size == ps
                        && matches!(r.source, Source::Remote { fd: f, offset: base, .. }
                            if f == fd && base.wrapping_add(r.source_offset).wrapping_add(at - r.start) == want);
                    (ours, r.end().min(end))
                });
                match piece {
                    None => Step::Skip(at + ps),
                    Some((false, to)) => Step::Skip(to),
                    Some((true, to)) => {
                        let t = FaultToken {
                            uffd_id: ch.uffd_id,
                            page: at,
                            page_size: ps,
                        };
                        let mode = self.dirty.copy_mode(ch.uffd_id, at);
                        let src = buf[(at - ch.addr) as usize..].as_ptr() as u64;
                        let len = to - at;
                        Step::Did(self.apply(t, Action::CopyRange { src, len, mode }), to)
                    }
                }
            };
            match step {
                Step::Skip(to) => at = to,
                // Partial progress: the kernel stopped at a page already
                // there (EEXIST next time: skipped) or for an event.
                Step::Did(Ok(Applied::Resolved(n)), _) => {
                    placed += n;
                    at += n.max(ps);
                }
                Step::Did(Ok(Applied::AlreadyResolved), _) => at += ps,
                Step::Did(Ok(Applied::Gone), to) => at = to,
                Step::Did(Err(Failed::Again), _) if backoff.pause() => {}
                Step::Did(Err(f), _) => {
                    let t = FaultToken {
                        uffd_id: ch.uffd_id,
                        page: at,
                        page_size: ps,
                    };
                    return (placed, Some(f.into_error(t)));
                }
            }
        }
        (placed, None)
    }
}

/// Fill `buf` from the connection, or learn that the monitor is gone
/// (`Ok(None)`). `Ok(Some(false))`: the server closed before the first
/// byte; `Err(EPIPE)`: in the middle.
fn recv_or_cancel(c: &Client, buf: &mut [u8]) -> std::result::Result<Option<bool>, i32> {
    let mut got = 0;
    while got < buf.len() {
        let mut fds = [
            libc::pollfd {
                fd: c.cancel.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: c.sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        match crate::sys::wait::poll_fds(&mut fds, -1) {
            Ok(_) => {}
            Err(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
        if fds[0].revents != 0 {
            return Ok(None);
        }
        if fds[1].revents == 0 {
            continue;
        }
        let n = socket::recv_some(c.sock.as_fd(), &mut buf[got..])?;
        if n == 0 {
            return if got == 0 {
                Ok(Some(false))
            } else {
                Err(libc::EPIPE)
            };
        }
        got += n;
    }
    Ok(Some(true))
}

/// The reply thread of one connection.
fn replies(weak: Weak<Inner>, c: Arc<Client>) {
    let mut buf: Vec<u8> = Vec::new();
    let lost = |errno: i32, why: String| {
        let pending: Vec<FaultToken> = {
            let mut st = c.state.lock_ok();
            st.dead = Some((errno, why.clone()));
            let mut v: Vec<FaultToken> = st.in_flight.drain(..).map(|(_, t, _)| t).collect();
            v.extend(st.queued.drain(..).map(|(t, _, _)| t));
            v
        };
        socket::shutdown(c.sock.as_fd());
        if let Some(inner) = weak.upgrade() {
            let e = Error::os("remote page source", errno, why);
            for t in pending {
                inner.remote_failed(t, &e);
            }
        }
    };
    loop {
        let mut hdr = [0u8; HEADER];
        match recv_or_cancel(&c, &mut hdr) {
            Ok(None) => return,
            Ok(Some(true)) => {}
            Ok(Some(false)) => {
                return lost(
                    libc::ECONNRESET,
                    "the page server closed the connection".into(),
                )
            }
            Err(e) => {
                return lost(
                    e,
                    format!("reading from the page server failed (errno {e})"),
                )
            }
        }
        let word = |a: usize| u32::from_le_bytes([hdr[a], hdr[a + 1], hdr[a + 2], hdr[a + 3]]);
        let magic = word(0);
        let status = word(4) as i32;
        let id = u64::from_le_bytes(hdr[8..16].try_into().expect("8 bytes"));
        let len = word(16);
        if magic != REPLY_MAGIC || len > MAX_REQUEST || status < 0 {
            return lost(
                libc::EPROTO,
                format!("malformed reply from the page server (magic {magic:#x}, status {status}, length {len})"),
            );
        }
        buf.resize(len as usize, 0);
        match recv_or_cancel(&c, &mut buf) {
            Ok(None) => return,
            Ok(Some(true)) => {}
            Ok(Some(false)) if len == 0 => {}
            Ok(Some(false)) => {
                return lost(
                    libc::ECONNRESET,
                    "the page server closed the connection mid-reply".into(),
                )
            }
            Err(e) => {
                return lost(e, format!("the page server's reply was cut (errno {e})"));
            }
        }
        let Some(inner) = weak.upgrade() else { return };
        // The background prefetch's request: placed, then its slot freed
        // for the waiting demand requests, and the next chunk asked.
        let prefetch = {
            let st = c.state.lock_ok();
            st.pf_out.filter(|(i, _)| *i == id).map(|(_, ch)| ch)
        };
        if let Some(ch) = prefetch {
            inner.remote_prefetch_reply(&c, ch, status, &buf);
            let send_err = {
                let mut st = c.state.lock_ok();
                st.pf_out = None;
                c.drain_locked(&mut st)
            };
            if let Some((t, e)) = send_err {
                inner.remote_failed(t, &e);
            }
            inner.remote_prefetch_kick(&c);
            continue;
        }
        // The request answered, and the next queued one sent.
        let (token, send_err) = {
            let mut st = c.state.lock_ok();
            let token = st
                .in_flight
                .iter()
                .position(|(i, _, _)| *i == id)
                .map(|at| {
                    let (_, t, asked) = st.in_flight.swap_remove(at);
                    (t, asked)
                });
            let err = c.drain_locked(&mut st);
            (token, err)
        };
        if let Some((t, e)) = send_err {
            inner.remote_failed(t, &e);
        }
        // The prefetch waits while demand requests queue; they are out now.
        inner.remote_prefetch_kick(&c);
        let Some((t, asked)) = token else {
            drop(inner);
            return lost(
                libc::EPROTO,
                format!("the page server answered request {id}, which was not asked"),
            );
        };
        if status != 0 {
            let e = Error::os(
                "remote page source",
                status,
                format!(
                    "the page server refused {} bytes at the region's page {:#x}",
                    t.page_size, t.page
                ),
            );
            inner.remote_failed(t, &e);
        } else if len != asked {
            let e = Error::os(
                "remote page source",
                libc::EBADMSG,
                format!("the page server sent {len} bytes for a request of {asked}"),
            );
            inner.remote_failed(t, &e);
        } else {
            if let Err(f) = inner.place_reply(t, c.sock.as_raw_fd(), &buf) {
                inner.remote_failed(t, &f.into_error(t));
            }
        }
    }
}

/// Serve pages of `file` to a remote page source (`Source::Remote`) at
/// the other end of `sock` until the client closes the connection.
/// Returns the number of requests answered.
///
/// Protocol (every field little-endian): a request is 24 bytes, magic
/// `0x52504655` ("UFPR"), length (u32), id (u64), file offset (u64); the
/// reply is a 24-byte header, magic `0x53504655` ("UFPS"), status (i32: 0
/// or a positive errno), the request's id (u64), the length of the data
/// that follows (u32: the request's, or 0 on error), 4 zero bytes; then
/// the data. A request past the file's end is answered ENODATA, one
/// longer than 4 MiB EINVAL, a read error with its errno; a malformed
/// request ends the service with EPROTO. Each reply is one send, header
/// and data together; a TCP socket gets TCP_NODELAY.
pub fn serve_pages(
    sock: std::os::fd::BorrowedFd<'_>,
    file: std::os::fd::BorrowedFd<'_>,
) -> Result<u64> {
    // Each reply is one send of its header and data, on a TCP socket with
    // TCP_NODELAY: a header sent alone, then the data, left the data
    // waiting for the client's delayed ACK of the header (~40 ms a reply).
    let _ = socket::set_nodelay(sock);
    // The reply: its header, then the data read into place after it.
    let mut buf: Vec<u8> = Vec::new();
    let mut served = 0u64;
    loop {
        let mut req = [0u8; HEADER];
        match socket::recv_exact(sock, &mut req) {
            Ok(true) => {}
            Ok(false) => return Ok(served),
            Err(libc::ECONNRESET) => return Ok(served),
            Err(e) => return Err(Error::os("page server", e, "reading a request")),
        }
        let magic = u32::from_le_bytes(req[0..4].try_into().expect("4 bytes"));
        let len = u32::from_le_bytes(req[4..8].try_into().expect("4 bytes"));
        let id = u64::from_le_bytes(req[8..16].try_into().expect("8 bytes"));
        let offset = u64::from_le_bytes(req[16..24].try_into().expect("8 bytes"));
        if magic != REQUEST_MAGIC {
            return Err(Error::os(
                "page server",
                libc::EPROTO,
                format!("bad request magic {magic:#x}: not a libuffd page client"),
            ));
        }
        let mut status = 0;
        if len > MAX_REQUEST {
            status = libc::EINVAL;
        } else {
            buf.resize(HEADER + len as usize, 0);
            let mut got = 0;
            while HEADER + got < buf.len() {
                match crate::sys::wait::pread(file, &mut buf[HEADER + got..], offset + got as u64) {
                    Ok(0) => {
                        status = libc::ENODATA;
                        break;
                    }
                    Ok(n) => got += n,
                    Err(libc::EINTR) => {}
                    Err(e) => {
                        status = e;
                        break;
                    }
                }
            }
        }
        let body = if status == 0 { len } else { 0 };
        buf.resize(HEADER + body as usize, 0);
        let hdr = &mut buf[..HEADER];
        hdr.fill(0);
        hdr[0..4].copy_from_slice(&REPLY_MAGIC.to_le_bytes());
        hdr[4..8].copy_from_slice(&status.to_le_bytes());
        hdr[8..16].copy_from_slice(&id.to_le_bytes());
        hdr[16..20].copy_from_slice(&body.to_le_bytes());
        match socket::send_all(sock, &buf) {
            Ok(()) => served += 1,
            Err(libc::EPIPE) | Err(libc::ECONNRESET) => return Ok(served),
            Err(e) => return Err(Error::os("page server", e, "sending a reply")),
        }
    }
}
