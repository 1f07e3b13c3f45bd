// SPDX-License-Identifier: MIT OR Apache-2.0
//! Reading events.

use super::boundary::{guard, FromErrno};
use super::handle_api::with_handle;
use super::types::*;
use crate::sys::cancel;
use crate::sys::wait::now_ns;
use crate::uffd::{Error, Event, Msg, Uffd};
use std::os::fd::{AsRawFd, IntoRawFd};

fn to_c(ev: Event) -> libuffd_event {
    // Start from zeros so that every byte of the union is defined, whatever
    // member the event fills (readers of `raw` see zeros past it).
    let mut u = libuffd_event_data { raw: [0; 3] };
    let kind = match ev {
        Event::Pagefault(f) => {
            u.fault = libuffd_fault_info {
                address: f.address as *mut libc::c_void,
                exact_address: f.exact_address.unwrap_or(f.address) as *mut libc::c_void,
                flags: f.flags.bits() as u32,
                thread_id: f.thread_id,
            };
            LIBUFFD_EVENT_PAGEFAULT
        }
        Event::Fork(fd) => {
            u.fork = libuffd_fork_info {
                fd: fd.into_raw_fd(),
                reserved: 0,
            };
            LIBUFFD_EVENT_FORK
        }
        Event::Remap { from, to, len } => {
            u.remap = libuffd_remap_info {
                from: from as *mut libc::c_void,
                to: to as *mut libc::c_void,
                len,
            };
            LIBUFFD_EVENT_REMAP
        }
        Event::Remove { start, end } => {
            u.range = libuffd_range_info {
                start: start as *mut libc::c_void,
                end: end as *mut libc::c_void,
            };
            LIBUFFD_EVENT_REMOVE
        }
        Event::Unmap { start, end } => {
            u.range = libuffd_range_info {
                start: start as *mut libc::c_void,
                end: end as *mut libc::c_void,
            };
            LIBUFFD_EVENT_UNMAP
        }
        Event::Unknown { code, args } => {
            u.raw = args;
            code as u32
        }
    };
    libuffd_event {
        kind,
        reserved: 0,
        u,
    }
}

/// Read up to max events into events, decoded.
///
/// timeout_ms: -1 waits until at least one event arrives; 0 returns at
/// once; > 0 waits at most that long. Any value but -1 needs a handle
/// opened with LIBUFFD_OPEN_NONBLOCK (the kernel cannot poll a blocking
/// userfaultfd). Finding nothing is not an error: the call returns 0. A
/// fault message may be stale (already resolved by another thread):
/// resolving it again gives -EEXIST, which is harmless.
///
/// A LIBUFFD_EVENT_FORK event carries a new descriptor that the caller
/// owns from then on (adopt it with libuffd_handle_from_fd() or close it).
///
/// Waiting for something else too (a shutdown pipe or eventfd, other
/// descriptors): open the handle with LIBUFFD_OPEN_NONBLOCK, poll(2) or
/// epoll its libuffd_handle_fd() for POLLIN together with the other
/// descriptors, and when it is readable call
/// libuffd_read_events(h, events, max, 0) (it may return 0: another
/// thread read the events first):
///
/// ```c
/// struct pollfd fds[2] = { { libuffd_handle_fd(h), POLLIN, 0 },
///                          { shutdown_fd, POLLIN, 0 } };
/// while (poll(fds, 2, -1) >= 0 || errno == EINTR) {
///         if (fds[1].revents)
///                 break;
///         if (fds[0].revents & POLLIN)
///                 n = libuffd_read_events(h, events, max, 0);
/// }
/// ```
///
/// Cancellation: a cancellation point, like read(2). A thread blocked here
/// (or entering with a cancel pending) that is pthread_cancel()ed unwinds
/// out of the call without reading anything; the handle stays usable. On
/// a non-blocking handle the call waits in poll(2) and reads with
/// cancellation disabled, so a cancellation never loses an event; on a
/// blocking handle it waits in read(2) itself, as the raw fd would.
///
/// Thread safety: may be called from several threads at once; each event
/// goes to exactly one of them.
///
/// Returns: the number of events written (0 to max), or -EINVAL (NULL
/// handle or events, max 0, timeout < -1, a timeout on a blocking handle),
/// -EINTR (a signal arrived while waiting).
///
/// Pointers: h must be NULL or a live handle; events NULL or room for max
/// events.
///
/// Example: a fault-handling thread that fills every faulting page with
/// zeros (anonymous memory, base pages), until the handle reports an error.
///
/// ```c
/// void *zero_filler(void *arg)
/// {
///         libuffd_handle *h = arg;
///         size_t ps = (size_t)sysconf(_SC_PAGESIZE);
///         struct libuffd_event ev[16];
///
///         for (;;) {
///                 int n = libuffd_read_events(h, ev, 16, -1);
///                 if (n == -EINTR)
///                         continue;
///                 if (n < 0)
///                         return NULL;
///                 for (int i = 0; i < n; i++) {
///                         if (ev[i].kind != LIBUFFD_EVENT_PAGEFAULT)
///                                 continue;
///                         void *page = ev[i].u.fault.address;
///                         if (libuffd_zeropage(h, page, ps, 0) == -EEXIST)
///                                 libuffd_wake(h, page, ps);
///                 }
///         }
/// }
/// ```
#[no_mangle]
pub unsafe extern "C-unwind" fn libuffd_read_events(
    h: *mut libuffd_handle,
    events: *mut libuffd_event,
    max: usize,
    timeout_ms: i32,
) -> i32 {
    // This frame holds nothing to drop: the waits below are cancellation
    // points and a cancellation unwinds through it (see crate::sys::cancel).
    // Everything else happens behind the guard, with cancellation off.
    cancel::testcancel();
    let deadline = if timeout_ms > 0 {
        now_ns().saturating_add(timeout_ms as u64 * 1_000_000)
    } else {
        0
    };
    loop {
        match read_step(h, events, max, timeout_ms) {
            ReadStep::Done(rc) => return rc,
            ReadStep::Poll(fd) => {
                let wait = if deadline == 0 {
                    -1
                } else {
                    let left = deadline.saturating_sub(now_ns());
                    if left == 0 {
                        return 0;
                    }
                    left.div_ceil(1_000_000).min(i32::MAX as u64) as i32
                };
                match cancel::poll_in(fd, wait) {
                    Ok(revents) if revents & libc::POLLERR != 0 => {
                        return fail(Error::os(
                            "poll",
                            libc::EIO,
                            "the userfaultfd reported POLLERR",
                        ))
                    }
                    Ok(_) => {}
                    Err(e) => return fail(Error::os("poll", e, "")),
                }
            }
            ReadStep::Read(fd) => {
                let len = max.min(MAX_READ) * std::mem::size_of::<libuffd_event>();
                // SAFETY: `events` has room for `max` events (contract
                // above); any bytes are valid there until decoded.
                return match unsafe { cancel::read(fd, events.cast(), len) } {
                    Ok(bytes) => decode_step(h, events, bytes / std::mem::size_of::<Msg>()),
                    Err(e) => fail(Error::os("read", e, "")),
                };
            }
        }
    }
}

/// One read is capped so the count fits the int return value.
const MAX_READ: usize = 4096;

/// What libuffd_read_events() does next.
#[derive(Clone, Copy)]
enum ReadStep {
    /// Return this.
    Done(i32),
    /// Wait for the non-blocking fd to become readable, then step again.
    Poll(i32),
    /// Block in read(2) on the blocking fd.
    Read(i32),
}

impl FromErrno for ReadStep {
    fn from_errno(errno: i32) -> Self {
        ReadStep::Done(-errno)
    }
}

fn fail(e: Error) -> i32 {
    guard("libuffd_read_events", || -> Result<i32, Error> { Err(e) })
}

/// Check the arguments and, on a non-blocking handle, read what is there.
fn read_step(
    h: *mut libuffd_handle,
    events: *mut libuffd_event,
    max: usize,
    timeout_ms: i32,
) -> ReadStep {
    with_handle("libuffd_read_events", h, |u| {
        if events.is_null() {
            return Err(Error::invalid("libuffd_read_events: events is NULL"));
        }
        if max == 0 {
            return Err(Error::invalid("libuffd_read_events: max is 0"));
        }
        if timeout_ms < -1 {
            return Err(Error::invalid(format!(
                "read events: timeout {timeout_ms} ms is invalid (use -1 to wait forever)"
            )));
        }
        if !u.is_nonblocking() {
            if timeout_ms != -1 {
                return Err(Error::invalid(
                    "read events: a timeout needs a non-blocking userfaultfd (open it with the NONBLOCK flag)",
                ));
            }
            return Ok(ReadStep::Read(u.as_raw_fd()));
        }
        let max = max.min(MAX_READ);
        // SAFETY: `events` has room for `max` 32-byte events, and Msg
        // has the same size and alignment (asserted in types.rs and
        // sys::read::msgs_as_raw); any bytes are a valid Msg.
        let buf = unsafe { std::slice::from_raw_parts_mut(events.cast::<Msg>(), max) };
        let n = u.read_msgs(buf, 0)?;
        if n > 0 {
            return Ok(ReadStep::Done(decode(u, events, n)));
        }
        Ok(if timeout_ms == 0 {
            ReadStep::Done(0)
        } else {
            ReadStep::Poll(u.as_raw_fd())
        })
    })
}

/// Decode n records that read(2) left in events.
fn decode_step(h: *mut libuffd_handle, events: *mut libuffd_event, n: usize) -> i32 {
    with_handle("libuffd_read_events", h, |u| Ok(decode(u, events, n)))
}

/// Decode, in place, the n raw records at events.
fn decode(u: &Uffd, events: *mut libuffd_event, n: usize) -> i32 {
    let features = u.features();
    for i in 0..n {
        // SAFETY: i < n <= max; the record was just written by read().
        let mut msg = unsafe { std::ptr::read(events.add(i).cast::<Msg>()) };
        let ev = msg.take_event(features).map(to_c).unwrap_or(libuffd_event {
            kind: 0,
            reserved: 0,
            u: libuffd_event_data { raw: [0; 3] },
        });
        // SAFETY: same slot, writable, now holding a decoded event.
        unsafe { events.add(i).write(ev) };
    }
    n as i32
}
