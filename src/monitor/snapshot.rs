// SPDX-License-Identifier: MIT OR Apache-2.0
//! Write-protect snapshots: a consistent point-in-time copy of a range of
//! this process's memory while its writers keep running.
//!
//! `Snapshot::begin` registers the range on a userfaultfd of its own in
//! WP mode (with WP_UNPOPULATED, so that pages never touched are protected
//! too, and WP_HUGETLBFS_SHMEM for shmem and hugetlb) and write-protects it
//! whole: that instant is the snapshot's. From then on each page is copied
//! to the destination before its first write is let through: a write is a
//! WP fault, which a monitor (on its own thread) serves by copying the page
//! and then un-protecting it; meanwhile a background thread copies the
//! pages in order, un-protecting each once copied. A page is copied once,
//! under one lock, whichever comes first. When every page is copied the
//! range is left un-protected and unregistered, as it was.
//!
//! Errors (a page that cannot be read, a destination that cannot be
//! written) end the snapshot: the whole range is un-protected at once
//! (which wakes every blocked writer) and unregistered, and `wait` returns
//! the error: never a silently incomplete image, never a writer blocked for
//! ever. Dropping a snapshot that has not finished ends it the same way
//! (ECANCELED).

use super::unpoisoned::LockOk;
use super::{Config, FaultCtx, Handler, Monitor, Running, Verdict};
use crate::uffd::{
    Error, FaultFlags, Features, HandedOver, OpenFlags, OpenOptions, Range, RegisterMode, Result,
    Uffd, WriteprotectMode,
};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where a snapshot's bytes go.
#[derive(Debug)]
pub enum SnapshotDest {
    /// Memory of this process as long as the range (byte i of the range is
    /// copied to byte i of it). Handed over: nothing else may use it until
    /// the snapshot ends.
    Buffer(HandedOver),
    /// pwrite(2) to `fd` at `offset` + the byte's offset in the range. The
    /// descriptor is duplicated: the caller may close its own.
    Fd {
        /// The file (duplicated by `begin`).
        fd: i32,
        /// Where the range's first byte goes.
        offset: u64,
    },
}

enum Dest {
    Buffer(u64),
    Fd(OwnedFd, u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Copying,
    Done,
    Failed(i32, String),
}

struct State {
    copied: Vec<bool>,
    count: u64,
    phase: Phase,
}

struct Shared {
    uffd: Arc<Uffd>,
    start: u64,
    len: u64,
    page_size: u64,
    dest: Dest,
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn pages(&self) -> u64 {
        self.len / self.page_size
    }

    /// Copy page `i` unless copied (or the snapshot ended), then
    /// un-protect it (which wakes its writers). The copy, the mark and the
    /// un-protect are under the lock: a page is copied once, while still
    /// protected, and un-protected before the copier can end the snapshot
    /// (it does so under the lock, then unregisters the range). Released
    /// between the mark and the un-protect, a fault that copied the
    /// copier's last pages un-protected them after the unregister: ENOENT
    /// ended a complete snapshot with an error (tests/c/snapshot.c "exact
    /// hugetlb fd", one run in five).
    fn copy_page(&self, i: u64) {
        let mut st = self.state.lock_ok();
        if st.phase != Phase::Copying || st.copied[i as usize] {
            return;
        }
        let off = i * self.page_size;
        let r = match &self.dest {
            Dest::Buffer(addr) => {
                crate::sys::mem::copy_addr(addr + off, self.start + off, self.page_size).map_err(
                    |e| {
                        (
                            e,
                            format!(
                                "copying the page at {:#x} to the buffer at {:#x}",
                                self.start + off,
                                addr + off
                            ),
                        )
                    },
                )
            }
            Dest::Fd(fd, base) => crate::sys::mem::pwrite_addr(
                fd.as_fd(),
                self.start + off,
                self.page_size,
                base + off,
            )
            .map_err(|e| {
                (
                    e,
                    format!(
                        "pwrite of the page at {:#x} to the file at offset {:#x}",
                        self.start + off,
                        base + off
                    ),
                )
            }),
        };
        match r {
            Ok(()) => {
                st.copied[i as usize] = true;
                st.count += 1;
                let page = Range::new(self.start + off, self.page_size);
                let r = self.uffd.writeprotect(page, WriteprotectMode::empty());
                drop(st);
                if let Err(e) = r {
                    self.fail(e.errno(), format!("un-protecting a copied page: {e}"));
                }
            }
            Err((errno, what)) => {
                drop(st);
                self.fail(errno, what);
            }
        }
    }

    /// End the snapshot with an error (the first one wins): un-protect
    /// the whole range at once, waking every blocked writer.
    fn fail(&self, errno: i32, what: String) {
        {
            let mut st = self.state.lock_ok();
            if st.phase != Phase::Copying {
                return;
            }
            st.phase = Phase::Failed(errno, what);
        }
        let _ = self
            .uffd
            .writeprotect(Range::new(self.start, self.len), WriteprotectMode::empty());
        self.changed.notify_all();
    }
}

struct SnapHandler(Arc<Shared>);

impl Handler for SnapHandler {
    fn on_fault(&self, ctx: &FaultCtx<'_>) -> Verdict {
        let s = &self.0;
        let page = ctx.token.page;
        if ctx.fault.flags.contains(FaultFlags::WP) && page >= s.start && page < s.start + s.len {
            s.copy_page((page - s.start) / s.page_size);
        }
        // Copied (or failed: the range is un-protected): let it through.
        match ctx.resolve(super::Action::Unprotect) {
            Ok(_) => Verdict::Resolved,
            Err(e) => Verdict::Error(e.errno()),
        }
    }
}

/// A write-protect snapshot in progress (see the module doc).
pub struct Snapshot {
    shared: Arc<Shared>,
    monitor: Monitor,
    threads: Mutex<Option<(Running, JoinHandle<()>)>>,
}

impl Snapshot {
    /// Begin a snapshot of `memory` (this process's anonymous, shmem or
    /// hugetlb memory; page-aligned to its mapping's pages) into `dest`.
    /// When this returns, the range is write-protected: its contents at
    /// this instant are what the snapshot holds.
    ///
    /// Errors: EINVAL (empty or misaligned range, a NULL buffer, a buffer
    /// shorter than the range or overlapping it, a negative fd), EBADF (a
    /// fd that is not open), EOPNOTSUPP (the kernel lacks
    /// PAGEFAULT_FLAG_WP or WP_UNPOPULATED), the register and
    /// write-protect errors of the kernel (write protection refused: the
    /// range is left as it was).
    pub fn begin(memory: Range, dest: SnapshotDest) -> Result<Snapshot> {
        let Range { start, len } = memory;
        crate::uffd::check_range("snapshot", "range", start, len)?;
        let ps = crate::uffd::page_size_at(start)?;
        if start % ps != 0 || len % ps != 0 {
            return Err(Error::invalid(format!(
                "snapshot: [{start:#x}, +{len:#x}) is not aligned to the mapping's {} KiB pages",
                ps / 1024
            )));
        }
        let dest = match dest {
            SnapshotDest::Buffer(h) => {
                let b = h.range();
                if b.start == 0 {
                    return Err(Error::invalid("snapshot: the destination buffer is NULL"));
                }
                if b.len < len {
                    return Err(Error::invalid(format!(
                        "snapshot: the destination buffer has {:#x} bytes; the range has {len:#x}",
                        b.len
                    )));
                }
                if b.start < start + len && start < b.start.saturating_add(len) {
                    // Its copies would write protected pages of the range
                    // and wait for themselves.
                    return Err(Error::invalid(format!(
                        "snapshot: the destination buffer at {:#x} overlaps the range [{start:#x}, +{len:#x})",
                        b.start
                    )));
                }
                Dest::Buffer(b.start)
            }
            SnapshotDest::Fd { fd, offset } => {
                if fd < 0 {
                    return Err(Error::invalid(format!(
                        "snapshot: destination fd {fd} is negative"
                    )));
                }
                if offset.checked_add(len).is_none_or(|e| e > i64::MAX as u64) {
                    return Err(Error::invalid(format!(
                        "snapshot: offset {offset:#x} + {len:#x} overflows a file offset"
                    )));
                }
                let dup = crate::sys::dupfd::dup_cloexec(fd).map_err(|e| {
                    Error::os(
                        "snapshot",
                        e,
                        format!("duplicating the destination fd {fd}"),
                    )
                })?;
                Dest::Fd(dup, offset)
            }
        };
        // Kernel-mode faults trapped too: a system call that writes into
        // the range (read(2) into it) waits for the page's copy instead of
        // failing with EFAULT. Where that mode is not allowed (EPERM:
        // vm.unprivileged_userfaultfd = 0 without /dev/userfaultfd access),
        // user-mode faults only: such a system call then fails with EFAULT
        // while the snapshot runs.
        let open = |flags| {
            Uffd::open(&OpenOptions {
                flags,
                features: Features::PAGEFAULT_FLAG_WP
                    | Features::WP_UNPOPULATED
                    | Features::WP_HUGETLBFS_SHMEM,
                required: Features::PAGEFAULT_FLAG_WP | Features::WP_UNPOPULATED,
            })
        };
        let uffd = match open(OpenFlags::NONBLOCK) {
            Err(e) if matches!(e.errno(), libc::EPERM | libc::EACCES) => {
                open(OpenFlags::NONBLOCK | OpenFlags::USER_ONLY)
            }
            r => r,
        };
        let uffd = Arc::new(uffd?);
        uffd.register(memory, RegisterMode::WP)?;
        let shared = Arc::new(Shared {
            uffd: uffd.clone(),
            start,
            len,
            page_size: ps,
            dest,
            state: Mutex::new(State {
                copied: vec![false; (len / ps) as usize],
                count: 0,
                phase: Phase::Copying,
            }),
            changed: Condvar::new(),
        });
        let undo = |e: Error| {
            let _ = uffd.unregister(memory);
            e
        };
        let monitor = Monitor::new(
            Config {
                serve_forks: false,
                ..Config::default()
            },
            Box::new(SnapHandler(shared.clone())),
        )
        .map_err(undo)?;
        monitor.add_uffd(uffd.clone()).map_err(undo)?;
        // The instant of the snapshot. Before the monitor's thread starts:
        // a writer's fault meanwhile waits in the userfaultfd's queue, and
        // a caller holding its writers across `begin` (for a consistent
        // instant) holds them for the ioctl, not for a thread's start.
        if let Err(e) = uffd.writeprotect(memory, WriteprotectMode::WP) {
            let _ = uffd.writeprotect(memory, WriteprotectMode::empty());
            return Err(undo(e));
        }
        let running = match monitor.start() {
            Ok(r) => r,
            Err(e) => {
                let _ = uffd.writeprotect(memory, WriteprotectMode::empty());
                return Err(undo(e));
            }
        };
        let s = shared.clone();
        let m = monitor.clone();
        let copier = super::spawn_thread("uffd-snapshot", move || copy_all(s, m));
        let copier = match copier {
            Ok(t) => t,
            Err(e) => {
                shared.fail(e.errno(), "starting the copier thread".into());
                monitor.stop();
                let _ = running.wait();
                return Err(undo(e));
            }
        };
        Ok(Snapshot {
            shared,
            monitor,
            threads: Mutex::new(Some((running, copier))),
        })
    }

    /// Wait up to `timeout` (None: no limit) for the snapshot to end:
    /// Ok(true) when every page is copied, Ok(false) on timeout, the error
    /// that ended it otherwise. Once it has ended, the range is
    /// un-protected and unregistered.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.shared.state.lock_ok();
        loop {
            match &st.phase {
                Phase::Done => break,
                Phase::Failed(..) => break,
                Phase::Copying => {}
            }
            match deadline {
                None => {
                    st = self
                        .shared
                        .changed
                        .wait(st)
                        .unwrap_or_else(|e| e.into_inner())
                }
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(false);
                    }
                    st = self
                        .shared
                        .changed
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        let phase = st.phase.clone();
        drop(st);
        // Ended: join the threads (they finish the clean-up).
        self.join();
        match phase {
            Phase::Failed(errno, what) => Err(Error::os(
                "snapshot",
                errno,
                format!(
                    "{what}; the snapshot is incomplete and was ended (the range is un-protected)"
                ),
            )),
            _ => Ok(true),
        }
    }

    /// (pages copied, pages in all).
    pub fn progress(&self) -> (u64, u64) {
        let st = self.shared.state.lock_ok();
        (st.count, self.shared.pages())
    }

    /// The snapshot's page size (the mapping's).
    pub fn page_size(&self) -> u64 {
        self.shared.page_size
    }

    /// Join the copier and the monitor's thread (the copier unregisters
    /// the range before it ends). Holding the lock throughout: a second
    /// waiter returns only once the first has joined them.
    fn join(&self) {
        let mut t = self.threads.lock_ok();
        if let Some((running, copier)) = t.take() {
            let _ = copier.join();
            let _ = running.wait();
        }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        self.shared.fail(
            libc::ECANCELED,
            "the snapshot was freed before it ended".into(),
        );
        self.join();
        self.monitor.shut_down();
    }
}

/// The background copier: every page in order, then the end (un-protect
/// and unregister the range, stop the monitor).
fn copy_all(s: Arc<Shared>, m: Monitor) {
    for i in 0..s.pages() {
        if s.state.lock_ok().phase != Phase::Copying {
            break;
        }
        s.copy_page(i);
    }
    // Ended first, under the lock: no page is between its copy and its
    // un-protect now, and none will be (copy_page returns at once).
    {
        let mut st = s.state.lock_ok();
        if st.phase == Phase::Copying {
            st.phase = Phase::Done;
        }
    }
    let range = Range::new(s.start, s.len);
    // Un-protected already (each page once copied; all at once on
    // failure); unregistering wakes anything still waiting. `wait`
    // returns only once this thread is joined.
    let _ = s.uffd.writeprotect(range, WriteprotectMode::empty());
    let _ = s.uffd.unregister(range);
    m.stop();
    s.changed.notify_all();
}
