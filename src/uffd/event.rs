// SPDX-License-Identifier: MIT OR Apache-2.0
//! Reading and decoding userfaultfd messages.

use super::error::{Error, Op, Result};
use super::features::{FaultFlags, Features};
use super::handle::Uffd;
use crate::sys::{self, uapi::*};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

/// One raw message as read(2) returns it (32 bytes). Decode it with
/// [`Msg::take_event`].
///
/// Not `Clone`: a FORK message carries a descriptor, which the decoded
/// [`Event::Fork`] owns; a copy of the message would let it be owned twice
/// (and closed twice).
///
/// ```compile_fail,E0599
/// let m = uffd::Msg::default();
/// let copy = m.clone(); // error[E0599]: no method named `clone`
/// ```
///
/// ```
/// // A message is read into, then decoded once.
/// let mut m = uffd::Msg::default();
/// assert!(m.take_event(uffd::Features::empty()).is_none()); // nothing read
/// ```
#[derive(Debug, Default)]
#[repr(transparent)]
pub struct Msg(pub(crate) UffdMsg);

impl Msg {
    /// The kernel's event code (0x12 PAGEFAULT ... 0x16 UNMAP).
    pub fn code(&self) -> u8 {
        self.0.event
    }

    /// Decode the message. A FORK message's descriptor is moved into the
    /// returned event, and the record is cleared so that the descriptor
    /// can never be owned twice; decoding a cleared record gives `None`.
    pub fn take_event(&mut self, features: Features) -> Option<Event> {
        let m = std::mem::take(&mut self.0);
        let a = m.arg;
        Some(match m.event {
            0 => return None,
            UFFD_EVENT_PAGEFAULT => {
                let raw = a[1];
                let page = sys::base_page_size();
                let exact = features.contains(Features::EXACT_ADDRESS);
                Event::Pagefault(Fault {
                    address: if exact { raw & !(page - 1) } else { raw },
                    exact_address: exact.then_some(raw),
                    flags: FaultFlags::from_bits_retain(a[0]),
                    thread_id: (a[2] & 0xffff_ffff) as u32,
                })
            }
            UFFD_EVENT_FORK => {
                Event::Fork(sys::read::take_fork_fd((a[0] & 0xffff_ffff) as u32 as i32))
            }
            UFFD_EVENT_REMAP => Event::Remap {
                from: a[0],
                to: a[1],
                len: a[2],
            },
            UFFD_EVENT_REMOVE => Event::Remove {
                start: a[0],
                end: a[1],
            },
            UFFD_EVENT_UNMAP => Event::Unmap {
                start: a[0],
                end: a[1],
            },
            code => Event::Unknown { code, args: a },
        })
    }
}

/// A page fault a thread is waiting on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// The faulting address, aligned to the base page (or, without
    /// EXACT_ADDRESS on hugetlb, to the huge page, as the kernel reports).
    pub address: u64,
    /// The unmasked address, when EXACT_ADDRESS was negotiated.
    pub exact_address: Option<u64>,
    /// WRITE, WP, MINOR; none of WP/MINOR means a MISSING fault.
    pub flags: FaultFlags,
    /// The faulting thread's id, when THREAD_ID was negotiated (else 0).
    pub thread_id: u32,
}

/// A decoded userfaultfd message.
#[derive(Debug)]
pub enum Event {
    /// A thread faulted and waits for the page to be resolved.
    Pagefault(Fault),
    /// The monitored process forked; this fd serves the child's memory
    /// (owned here, once: see [`Msg`]). Adopt it with [`Uffd::from_fork`].
    Fork(OwnedFd),
    /// A registered range moved with mremap(); `len` is the old length.
    Remap {
        /// The old start.
        from: u64,
        /// The new start.
        to: u64,
        /// The old length.
        len: u64,
    },
    /// madvise(DONTNEED/FREE/REMOVE) is about to drop `[start, end)`.
    Remove {
        /// First address.
        start: u64,
        /// One past the last address.
        end: u64,
    },
    /// `[start, end)` was unmapped.
    Unmap {
        /// First address.
        start: u64,
        /// One past the last address.
        end: u64,
    },
    /// An event code this library does not know (a newer kernel's).
    Unknown {
        /// The event code.
        code: u8,
        /// The message's argument words.
        args: [u64; 3],
    },
}

impl Uffd {
    /// Read up to `buf.len()` messages. `timeout_ms`: -1 waits until at
    /// least one message arrives, 0 returns at once, > 0 waits at most that
    /// long. Returns how many messages were read: 0 means nothing arrived
    /// in time (a fault resolved meanwhile counts as nothing, not an error).
    /// A timeout other than -1 needs an O_NONBLOCK fd, because the kernel
    /// cannot poll a blocking userfaultfd.
    pub fn read_msgs(&self, buf: &mut [Msg], timeout_ms: i32) -> Result<usize> {
        if buf.is_empty() {
            return Err(Error::invalid("read events: buffer holds 0 events"));
        }
        if timeout_ms < -1 {
            return Err(Error::invalid(format!(
                "read events: timeout {timeout_ms} ms is invalid (use -1 to wait forever)"
            )));
        }
        // SAFETY-free cast: Msg is repr(transparent) over UffdMsg.
        let raw: &mut [UffdMsg] = Msg::as_raw_slice(buf);
        if !self.is_nonblocking() {
            if timeout_ms != -1 {
                return Err(Error::invalid(
                    "read events: a timeout needs a non-blocking userfaultfd (open it with the NONBLOCK flag)",
                ));
            }
            return sys::read::read_msgs(self.fd(), raw).map_err(|e| kernel_read_err(Op::Read, e));
        }
        let deadline =
            (timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(timeout_ms as u64));
        loop {
            match sys::read::read_msgs(self.fd(), raw) {
                Ok(n) => return Ok(n),
                Err(libc::EAGAIN) => {}
                Err(e) => return Err(kernel_read_err(Op::Read, e)),
            }
            let wait = match (timeout_ms, deadline) {
                (0, _) => return Ok(0),
                (-1, _) => -1,
                (_, Some(d)) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(0);
                    }
                    left.as_millis().clamp(1, i32::MAX as u128) as i32
                }
                _ => -1,
            };
            match sys::read::poll_in(self.fd(), wait) {
                Ok(0) if deadline.is_some() => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(0);
                    }
                }
                Ok(revents) if revents & libc::POLLERR != 0 => {
                    return Err(Error::os(
                        "poll",
                        libc::EIO,
                        "the userfaultfd reported POLLERR",
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(kernel_read_err(Op::Poll, e)),
            }
        }
    }
}

fn kernel_read_err(op: Op, errno: i32) -> Error {
    Error::os(op.name(), errno, "")
}

impl Msg {
    fn as_raw_slice(buf: &mut [Msg]) -> &mut [UffdMsg] {
        sys::read::msgs_as_raw(buf)
    }
}
