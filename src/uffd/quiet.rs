// SPDX-License-Identifier: MIT OR Apache-2.0
//! A good guest: a panic inside libuffd never prints on the host's stderr.
//!
//! Rust's default panic hook prints "thread '…' panicked at …" on stderr
//! before any `catch_unwind` sees the panic, so even a panic the library
//! catches and turns into -ENOTRECOVERABLE (or a log line) would write to
//! the host's stderr. The only way to stop that is a panic hook, and the
//! hook is global, so this one is installed to change nothing for anybody
//! else:
//!
//! - It acts only for panics raised while the panicking thread runs
//!   library code: an exported C function (inside its panic boundary), a
//!   monitor's own thread, or `Monitor::run` on the caller's thread
//!   (`Scope`, a thread-local depth). Those go to the log of the monitor
//!   the thread works for (its `on_log`), or nowhere; never to stderr.
//!   The hook itself only keeps the text (`PENDING`): calling a log
//!   callback from inside the hook would abort the process if it
//!   panicked too. The monitor's next log line, or the end of the scope,
//!   delivers it, outside the hook. Panics of the log callback itself
//!   are dropped (`Suppress`).
//! - Every other panic goes to the hook that was installed before (the
//!   default one, or the host's), exactly as if this hook did not exist.
//! - It is installed once, the first time library code is entered, by
//!   taking the current hook and chaining to it. A host that sets its own
//!   hook later replaces it (its choice: library panics then go to its
//!   hook); a host that takes the hook gets this one, which still chains.
//!
//! For C hosts there is nothing to chain to but the default hook:
//! libuffd.so (and libuffd.a) carry their own copy of the Rust runtime,
//! whose hook only ever sees libuffd's own panics.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Once};

/// Where a thread's library panics are reported (a monitor's log).
pub type PanicSink = Arc<dyn Fn(&str) + Send + Sync>;

thread_local! {
    /// How deep the thread is in library code (0: host code).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// The log for this thread's library panics, if any.
    static SINK: RefCell<Option<PanicSink>> = const { RefCell::new(None) };
    /// The text of the thread's first library panic not yet logged. A
    /// fixed buffer, not a String: a thread-local without a destructor
    /// needs no registration with the C library (`__cxa_thread_atexit_impl`,
    /// which calls calloc) on its first use, and its first use may be on a
    /// monitor's reader while a fork() elsewhere holds the malloc locks
    /// until the reader reads its FORK message (seen: 1000-fork storms on a
    /// loaded machine hung with the reader in that calloc, via `log`).
    static PENDING: RefCell<PanicText> = const { RefCell::new(PanicText { len: 0, buf: [0; PANIC_TEXT_MAX] }) };
    /// Inside a log callback: its panics are dropped, not logged.
    static SUPPRESS: Cell<u32> = const { Cell::new(0) };
}

/// The text of the calling thread's library panic not yet logged.
pub fn take_pending() -> Option<String> {
    PENDING
        .try_with(|p| p.try_borrow_mut().ok().and_then(|mut p| p.take()))
        .ok()
        .flatten()
}

/// Longest panic text kept (longer ones are cut at a character boundary).
const PANIC_TEXT_MAX: usize = 1024;

/// A panic's text in a fixed buffer (no destructor: see `PENDING`).
struct PanicText {
    len: usize,
    buf: [u8; PANIC_TEXT_MAX],
}

impl PanicText {
    /// Keep `msg` unless a text is already kept (the first panic wins).
    fn keep(&mut self, msg: &str) {
        if self.len > 0 {
            return;
        }
        let mut n = msg.len().min(PANIC_TEXT_MAX);
        while !msg.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[..n].copy_from_slice(&msg.as_bytes()[..n]);
        self.len = n;
    }

    fn take(&mut self) -> Option<String> {
        if self.len == 0 {
            return None;
        }
        let text = String::from_utf8_lossy(&self.buf[..self.len]).into_owned();
        self.len = 0;
        Some(text)
    }
}

/// While alive, the calling thread's panics are dropped (around a log
/// callback: a panicking log has nowhere to be logged).
pub struct Suppress;

impl Suppress {
    pub fn enter() -> Suppress {
        let _ = SUPPRESS.try_with(|s| s.set(s.get() + 1));
        Suppress
    }
}

impl Drop for Suppress {
    fn drop(&mut self) {
        let _ = SUPPRESS.try_with(|s| s.set(s.get().saturating_sub(1)));
    }
}

static INSTALL: Once = Once::new();

/// Install the chained hook (once per process).
fn install() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let ours = DEPTH.try_with(|d| d.get() > 0).unwrap_or(false);
            if !ours {
                return previous(info);
            }
            let msg = format!(
                "internal panic in thread '{}' at {}: {}",
                std::thread::current().name().unwrap_or("<unnamed>"),
                info.location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_else(|| "<unknown>".into()),
                payload_text(info.payload())
            );
            if SUPPRESS.try_with(|s| s.get() > 0).unwrap_or(true) {
                return;
            }
            // Kept, not logged here (see the module's text).
            let _ = PENDING.try_with(|p| {
                if let Ok(mut p) = p.try_borrow_mut() {
                    p.keep(&msg);
                }
            });
        }));
    });
}

fn payload_text(p: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = p.downcast_ref::<&str>() {
        s
    } else if let Some(s) = p.downcast_ref::<String>() {
        s
    } else {
        "non-text payload"
    }
}

/// The calling thread runs library code until this is dropped: its panics
/// stay off stderr (and go to `sink`, when given, replacing the thread's
/// sink for the duration).
pub struct Scope {
    prev_sink: Option<Option<PanicSink>>,
}

impl Scope {
    pub fn enter(sink: Option<PanicSink>) -> Scope {
        install();
        let _ = DEPTH.try_with(|d| d.set(d.get() + 1));
        let prev_sink = sink.map(|s| {
            SINK.try_with(|cur| {
                cur.try_borrow_mut()
                    .map(|mut c| c.replace(s))
                    .ok()
                    .flatten()
            })
            .ok()
            .flatten()
        });
        Scope { prev_sink }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let Some(prev) = self.prev_sink.take() {
            // Deliver what the thread's last panic left, unless it is
            // unwinding (a panic in the sink would then abort).
            if !std::thread::panicking() {
                let sink = SINK.try_with(|s| s.borrow().clone()).ok().flatten();
                if let (Some(sink), Some(msg)) = (sink, take_pending()) {
                    sink(&msg);
                }
            }
            let _ = SINK.try_with(|cur| {
                if let Ok(mut c) = cur.try_borrow_mut() {
                    *c = prev;
                }
            });
        }
        let _ = DEPTH.try_with(|d| d.set(d.get().saturating_sub(1)));
    }
}
