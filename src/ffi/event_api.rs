//! Reading events.

use super::handle_api::with_handle;
use super::types::*;
use crate::uffd::{Error, Event, Msg};
use std::os::fd::IntoRawFd;

fn to_c(ev: Event) -> libuffd_event {
    // Start from zeros so that every byte of the union is defined, whatever
    // member the event fills (readers of `raw` see zeros past it).
    let mut u = libuffd_event_data { raw: [0; 3] };
    let kind = match ev {
        Event::Pagefault(f) => {
            u.fault = libuffd_fault_info {
                address: f.address,
                exact_address: f.exact_address.unwrap_or(f.address),
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
            u.remap = libuffd_remap_info { from, to, len };
            LIBUFFD_EVENT_REMAP
        }
        Event::Remove { start, end } => {
            u.range = libuffd_range_info { start, end };
            LIBUFFD_EVENT_REMOVE
        }
        Event::Unmap { start, end } => {
            u.range = libuffd_range_info { start, end };
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

/// Read up to `max` events into `events`, decoded.
///
/// `timeout_ms`: -1 waits until at least one event arrives; 0 returns at
/// once; > 0 waits at most that long. Any value but -1 needs a handle
/// opened with LIBUFFD_OPEN_NONBLOCK (the kernel cannot poll a blocking
/// userfaultfd). Finding nothing is not an error: the call returns 0. A
/// fault message may be stale (already resolved by another thread):
/// resolving it again gives -EEXIST, which is harmless.
///
/// A LIBUFFD_EVENT_FORK event carries a new descriptor that the caller
/// owns from then on (adopt it with libuffd_handle_from_fd() or close it).
///
/// Thread safety: may be called from several threads at once; each event
/// goes to exactly one of them.
///
/// Returns: the number of events written (0 to max), or -EINVAL (NULL
/// handle or events, max 0, timeout < -1, a timeout on a blocking handle),
/// -EINTR (a signal arrived while waiting).
///
/// # Safety
/// `h` is NULL or a live handle; `events` is NULL or has room for `max`
/// events.
#[no_mangle]
pub unsafe extern "C" fn libuffd_read_events(
    h: *mut libuffd_handle,
    events: *mut libuffd_event,
    max: usize,
    timeout_ms: i32,
) -> i32 {
    with_handle("libuffd_read_events", h, |u| {
        if events.is_null() {
            return Err(Error::invalid("libuffd_read_events: events is NULL"));
        }
        if max == 0 {
            return Err(Error::invalid("libuffd_read_events: max is 0"));
        }
        // One read is capped so the count fits the int return value.
        let max = max.min(4096);
        let n = {
            // SAFETY: `events` has room for `max` 32-byte events, and Msg
            // has the same size and alignment (asserted in types.rs and
            // sys::read::msgs_as_raw); any bytes are a valid Msg.
            let buf = unsafe { std::slice::from_raw_parts_mut(events.cast::<Msg>(), max) };
            u.read_msgs(buf, timeout_ms)?
        };
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
        Ok(n as i32)
    })
}
