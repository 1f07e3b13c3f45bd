// SPDX-License-Identifier: MIT OR Apache-2.0
//! Stopping a handler's monitor when the process that handed it the
//! userfaultfd dies: a thread ("uffd-peer") polls the peer's pidfd
//! (readable when it exits) and the hand-off socket (POLLHUP/POLLRDHUP
//! when the peer's end closes, which its death does too) and stops the
//! monitor. The memory it served is gone with its owner, so the faults
//! still deferred there are moot: the stop releases what remains.

use super::{Inner, Monitor};
use crate::sys::wait;
use crate::uffd::{Error, Result};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

/// How often the watcher checks that its monitor still exists and runs
/// (it also wakes at once for the peer, or for `PeerWatch`'s drop).
const CHECK_MS: i32 = 100;

/// A running watch (`Monitor::stop_on_peer_exit`). Dropping it ends the
/// watch (joined); `detach` leaves it running until the peer dies, the
/// monitor's run ends, or the monitor is dropped.
pub struct PeerWatch {
    cancel: Arc<OwnedFd>,
    fired: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PeerWatch {
    /// Whether the peer died and the monitor was stopped for it.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// Let the watch run on its own.
    pub fn detach(mut self) {
        self.thread.take();
    }
}

impl Drop for PeerWatch {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            wait::eventfd_signal(self.cancel.as_fd());
            let _ = t.join();
        }
    }
}

impl Monitor {
    /// Stop this monitor when the peer dies: when `pidfd` (a pidfd of the
    /// peer, e.g. `handoff::Peer::pidfd`) becomes readable, or `sock` (the
    /// hand-off socket) hangs up. Either may be `None`, not both. Both are
    /// the watch's own (pass duplicates to keep yours). The watch ends by
    /// itself once it fired, once a run of the monitor it saw has ended,
    /// or when the monitor is dropped; it holds no reference that keeps
    /// the monitor alive.
    pub fn stop_on_peer_exit(
        &self,
        pidfd: Option<OwnedFd>,
        sock: Option<OwnedFd>,
    ) -> Result<PeerWatch> {
        if pidfd.is_none() && sock.is_none() {
            return Err(Error::invalid(
                "stop on peer exit: neither a pidfd nor a socket to watch",
            ));
        }
        let cancel = Arc::new(wait::eventfd().map_err(|e| Error::os("eventfd", e, ""))?);
        let fired = Arc::new(AtomicBool::new(false));
        let weak = Arc::downgrade(&self.inner);
        let (c, f) = (cancel.clone(), fired.clone());
        let thread = super::spawn_thread("uffd-peer", move || watch(weak, pidfd, sock, c, f))?;
        Ok(PeerWatch {
            cancel,
            fired,
            thread: Some(thread),
        })
    }
}

fn watch(
    inner: Weak<Inner>,
    pidfd: Option<OwnedFd>,
    sock: Option<OwnedFd>,
    cancel: Arc<OwnedFd>,
    fired: Arc<AtomicBool>,
) {
    let mut saw_running = false;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: cancel.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pidfd.as_ref().map_or(-1, |f| f.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sock.as_ref().map_or(-1, |f| f.as_raw_fd()),
                events: libc::POLLRDHUP,
                revents: 0,
            },
        ];
        let r = wait::poll_fds(&mut fds, CHECK_MS);
        if fds[0].revents != 0 {
            return;
        }
        let Some(inner) = inner.upgrade() else { return };
        let peer_gone = fds[1].revents != 0
            || fds[2].revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0;
        if peer_gone {
            fired.store(true, Ordering::Release);
            inner.log(format_args!(
                "the peer died (or closed the hand-off socket): stopping"
            ));
            inner.request_stop(None);
            return;
        }
        if let Err(e) = r {
            if e != libc::EINTR {
                inner.log(format_args!(
                    "peer watch: poll failed (errno {e}): watch ended"
                ));
                return;
            }
        }
        let running = inner.life.running();
        if saw_running && !running {
            return;
        }
        saw_running |= running;
    }
}
