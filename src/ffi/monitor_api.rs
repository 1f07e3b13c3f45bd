// SPDX-License-Identifier: MIT OR Apache-2.0
//! The monitor's C ABI: a C callback table behind the Rust `Handler`.

use super::boundary::{guard, guard_void, FromErrno};
use super::ext::copy_opts;
use super::handle::borrow;
use super::types::*;
use crate::monitor::{
    Action, Applied, Config, Driven, ErrorPolicy, ExitSignal, FaultCtx, FaultToken, ForkVerdict,
    Handler, Monitor, RegionOptions, RemovePolicy, Running, Sink, Source, StopPolicy, Turn,
    Verdict, Writeback,
};
use crate::sys::cancel;
use crate::uffd::{Error, HandedOver, Range, RegisterMode};
use std::cell::Cell;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Mutex};

/// The callback table and user data, as the Rust engine sees them.
struct CHandler {
    ops: libuffd_monitor_ops,
    user: *mut libc::c_void,
    me: Arc<AtomicPtr<libuffd_monitor>>,
}

// SAFETY: the C contract of libuffd_monitor_new says callbacks and user_data
// may be used from the monitor's threads.
unsafe impl Send for CHandler {}
// SAFETY: as above.
unsafe impl Sync for CHandler {}

impl Handler for CHandler {
    fn on_fault(&self, ctx: &FaultCtx<'_>) -> Verdict {
        let Some(cb) = self.ops.on_fault else {
            return Verdict::UseSource;
        };
        let region = ctx.region;
        let f = libuffd_fault {
            address: ctx.fault.address as *mut libc::c_void,
            exact_address: ctx.fault.exact_address.unwrap_or(ctx.fault.address)
                as *mut libc::c_void,
            flags: ctx.fault.flags.bits() as u32,
            thread_id: ctx.fault.thread_id,
            page: ctx.token.page as *mut libc::c_void,
            page_size: ctx.token.page_size,
            region_start: region.map_or(0, |r| r.start) as *mut libc::c_void,
            region_offset: region.map_or(0, |r| r.source_offset),
            region_data: region.map_or(std::ptr::null_mut(), |r| r.user_data as *mut libc::c_void),
            handle_id: ctx.token.uffd_id,
            reserved: 0,
        };
        let _in_cb = InCallback::enter(self.me.load(Ordering::Acquire));
        // SAFETY: a C function pointer from the ops table, called with the
        // user's pointer, the monitor and a fault valid during the call.
        // The callback resolves through libuffd_monitor_copy() & co., which
        // go through Monitor::resolve: the engine knows the fault this
        // thread is handling (monitor/resolve.rs `CurrentFault`).
        let rc = unsafe { cb(self.user, self.me.load(Ordering::Acquire), &f) };
        match rc {
            LIBUFFD_ON_FAULT_HANDLED => Verdict::Resolved,
            LIBUFFD_ON_FAULT_USE_SOURCE => Verdict::UseSource,
            LIBUFFD_ON_FAULT_DEFER => Verdict::Defer,
            LIBUFFD_ON_FAULT_STOP => Verdict::Stop,
            LIBUFFD_ON_FAULT_RESOLVED_BY_CALLER => Verdict::ResolvedByCaller,
            e if e < 0 => Verdict::Error(-e),
            _ => Verdict::Error(libc::EINVAL),
        }
    }

    fn on_fork(&self, uffd_id: u32, fd: i32) -> ForkVerdict {
        let Some(cb) = self.ops.on_fork else {
            return ForkVerdict::Serve;
        };
        let _in_cb = InCallback::enter(self.me.load(Ordering::Acquire));
        // SAFETY: C callback with the documented arguments.
        match unsafe { cb(self.user, self.me.load(Ordering::Acquire), uffd_id, fd) } {
            LIBUFFD_ON_FORK_TAKEN => ForkVerdict::Taken,
            LIBUFFD_ON_FORK_CLOSE => ForkVerdict::Close,
            _ => ForkVerdict::Serve,
        }
    }

    fn on_remap(&self, id: u32, from: u64, to: u64, len: u64) {
        if let Some(cb) = self.ops.on_remap {
            let _in_cb = InCallback::enter(self.me.load(Ordering::Acquire));
            // SAFETY: C callback with the documented arguments.
            unsafe {
                cb(
                    self.user,
                    self.me.load(Ordering::Acquire),
                    id,
                    from as *mut libc::c_void,
                    to as *mut libc::c_void,
                    len,
                )
            }
        }
    }

    fn on_remove(&self, id: u32, start: u64, end: u64) {
        if let Some(cb) = self.ops.on_remove {
            let _in_cb = InCallback::enter(self.me.load(Ordering::Acquire));
            // SAFETY: C callback with the documented arguments.
            unsafe {
                cb(
                    self.user,
                    self.me.load(Ordering::Acquire),
                    id,
                    start as *mut libc::c_void,
                    end as *mut libc::c_void,
                )
            }
        }
    }

    fn on_unmap(&self, id: u32, start: u64, end: u64) {
        if let Some(cb) = self.ops.on_unmap {
            let _in_cb = InCallback::enter(self.me.load(Ordering::Acquire));
            // SAFETY: C callback with the documented arguments.
            unsafe {
                cb(
                    self.user,
                    self.me.load(Ordering::Acquire),
                    id,
                    start as *mut libc::c_void,
                    end as *mut libc::c_void,
                )
            }
        }
    }

    fn on_write(&self, token: FaultToken, user_data: u64) {
        if let Some(cb) = self.ops.on_write {
            let _in_cb = InCallback::enter(self.me.load(Ordering::Acquire));
            // SAFETY: C callback with the documented arguments.
            unsafe {
                cb(
                    self.user,
                    self.me.load(Ordering::Acquire),
                    token.uffd_id,
                    token.page as *mut libc::c_void,
                    token.page_size,
                    user_data as *mut libc::c_void,
                )
            }
        }
    }

    fn wants_log(&self) -> bool {
        self.ops.on_log.is_some()
    }

    fn on_writeback(&self, wb: &Writeback) -> Result<(), i32> {
        let Some(cb) = self.ops.on_writeback else {
            return Err(libc::ENOSYS);
        };
        let f = libuffd_fault {
            address: wb.page as *mut libc::c_void,
            exact_address: wb.page as *mut libc::c_void,
            flags: 0,
            thread_id: 0,
            page: wb.page as *mut libc::c_void,
            page_size: wb.len,
            region_start: wb.region.start as *mut libc::c_void,
            region_offset: wb.region.source_offset,
            region_data: wb.region.user_data as *mut libc::c_void,
            handle_id: wb.uffd_id,
            reserved: 0,
        };
        let _in_cb = InCallback::enter(self.me.load(Ordering::Acquire));
        // SAFETY: a C function pointer from the ops table, called with the
        // user's pointer, the monitor and a page description valid during
        // the call.
        match unsafe { cb(self.user, self.me.load(Ordering::Acquire), &f) } {
            0 => Ok(()),
            e if e < 0 => Err(-e),
            _ => Err(libc::EINVAL),
        }
    }

    fn on_log(&self, msg: &str) {
        if let Some(cb) = self.ops.on_log {
            let mut text = msg.as_bytes().to_vec();
            text.retain(|&b| b != 0);
            text.push(0);
            let _in_cb = InCallback::enter(self.me.load(Ordering::Acquire));
            // SAFETY: C callback; the text is NUL-terminated and lives
            // for the call.
            unsafe {
                cb(
                    self.user,
                    self.me.load(Ordering::Acquire),
                    text.as_ptr().cast(),
                )
            }
        }
    }
}

thread_local! {
    /// The monitor whose C callback this thread is running (null: none):
    /// libuffd_monitor_free() and libuffd_monitor_wait() of that monitor
    /// from inside it would wait for the callback itself (and free what it
    /// runs on), so they fail with EDEADLK instead.
    static IN_CALLBACK: Cell<*const libuffd_monitor> = const { Cell::new(std::ptr::null()) };
}

/// Marks the calling thread as running a callback of m until dropped.
struct InCallback(*const libuffd_monitor);

impl InCallback {
    fn enter(m: *const libuffd_monitor) -> InCallback {
        InCallback(IN_CALLBACK.with(|c| c.replace(m)))
    }
}

impl Drop for InCallback {
    fn drop(&mut self) {
        IN_CALLBACK.with(|c| c.set(self.0));
    }
}

/// EDEADLK if the calling thread is inside a callback of m.
fn not_in_callback(m: *const libuffd_monitor, func: &'static str) -> Result<(), Error> {
    if !m.is_null() && IN_CALLBACK.with(|c| c.get()) == m {
        return Err(Error::os(
            func,
            libc::EDEADLK,
            "called from inside one of this monitor's callbacks, which would wait for (and free) the callback itself; call it from another thread once the monitor is stopped",
        ));
    }
    Ok(())
}

/// What a libuffd_monitor * points to. The tag comes first
/// (handle.rs check_tag).
#[repr(C)]
pub(super) struct MonitorBox {
    tag: std::sync::atomic::AtomicU64,
    pub(super) monitor: Monitor,
    started: Mutex<Option<Running>>,
    /// The exit signal of the last start, kept open while the monitor
    /// lives so that a libuffd_monitor_wait() polling it never polls a
    /// closed (or reused) descriptor.
    last_exit: Mutex<Option<Arc<ExitSignal>>>,
    /// The state of a libuffd_monitor_run() between its turns.
    driven: Mutex<Option<Driven>>,
    user: *mut libc::c_void,
    user_free: Option<unsafe extern "C" fn(*mut libc::c_void)>,
    /// ops->on_writeback is set (LIBUFFD_REGION_WRITEBACK_CALLBACK needs it).
    has_writeback: bool,
}

/// The monitor whose libuffd_monitor_run() this thread is blocked in,
/// outside the panic guard (null at any other time, callbacks included).
///
/// If the thread is cancelled there, it never comes back to end the run.
/// The run is then ended as by libuffd_monitor_stop() (and the stop
/// policy applied to its regions) when the thread
/// exits (the slot's destructor), or earlier by the thread's next
/// libuffd_monitor_* call (a cleanup handler's libuffd_monitor_free()).
/// Until then the monitor counts as running: libuffd_monitor_free() from
/// another thread waits for it.
static PARKED: cancel::ExitSlot = cancel::ExitSlot::new(parked_at_exit);

/// PARKED's destructor: the thread exits with a run parked.
unsafe extern "C" fn parked_at_exit(mb: *mut libc::c_void) {
    end_abandoned_run(mb as *const MonitorBox);
}

fn set_parked(mb: *const MonitorBox) {
    PARKED.set(mb.cast());
}

/// End the run this thread abandoned (it was cancelled in it), if any.
fn end_parked_run() {
    end_abandoned_run(PARKED.take().cast());
}

fn end_abandoned_run(mb: *const MonitorBox) {
    if mb.is_null() {
        return;
    }
    guard_void(|| {
        let (monitor, driven) = {
            // SAFETY: a parked run keeps its monitor alive: the monitor
            // counts as running until `drive_end` below, and
            // libuffd_monitor_free() waits for that. The reference is not
            // used past this block.
            let mb = unsafe { &*mb };
            let d = mb.driven.lock().unwrap_or_else(|e| e.into_inner()).take();
            (mb.monitor.clone(), d)
        };
        monitor.stop();
        if let Some(d) = driven {
            let _ = monitor.drive_end(d);
        }
    });
}

impl Drop for MonitorBox {
    fn drop(&mut self) {
        self.monitor.stop();
        if let Some(r) = self
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = r.wait();
        }
        // libuffd_monitor_run() on another thread: it returns promptly once
        // stopped; wait for that before the user data goes.
        while self.monitor.is_running() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // And for the reserve filler (which may log through on_log).
        self.monitor.shut_down();
        if let Some(free) = self.user_free {
            // SAFETY: the finaliser the caller gave for its own pointer,
            // called exactly once, after the last callback.
            unsafe { free(self.user) }
        }
        // Last: callbacks still running above may use the monitor.
        self.tag.store(
            super::handle::DEAD_TAG,
            std::sync::atomic::Ordering::Release,
        );
    }
}

/// # Safety
/// `m` is NULL or a live monitor.
pub(super) unsafe fn monitor_ref<'a>(m: *const libuffd_monitor) -> Result<&'a MonitorBox, Error> {
    end_parked_run();
    if m.is_null() {
        return Err(Error::invalid("monitor is NULL"));
    }
    // SAFETY: per the contract, a pointer from libuffd (a monitor, or by
    // mistake another of its objects, which also start with a tag).
    unsafe { super::handle::check_tag(m.cast(), super::handle::MONITOR_TAG, "monitor") }?;
    // SAFETY: per the contract, a pointer from libuffd_monitor_new, not
    // freed (its tag says so).
    Ok(unsafe { &*(m as *const MonitorBox) })
}

/// The engine behind a C monitor pointer, for the other modules of the C
/// ABI (handoff_api.rs).
///
/// # Safety
/// As `monitor_ref`.
pub(super) unsafe fn monitor_of<'a>(m: *const libuffd_monitor) -> Result<&'a Monitor, Error> {
    // SAFETY: the caller's contract is monitor_ref's.
    Ok(&unsafe { monitor_ref(m) }?.monitor)
}

/// A LIBUFFD_ON_STOP_* value (None for 0: the default / the monitor's).
fn stop_policy_from_c(what: &str, v: u32) -> Result<Option<StopPolicy>, Error> {
    Ok(match v {
        LIBUFFD_ON_STOP_DEFAULT => None,
        LIBUFFD_ON_STOP_BLOCK => Some(StopPolicy::Block),
        LIBUFFD_ON_STOP_SIGBUS => Some(StopPolicy::Sigbus),
        LIBUFFD_ON_STOP_ZERO => Some(StopPolicy::ZeroFill),
        p => return Err(Error::invalid(format!("{what}: unknown stop_policy {p}"))),
    })
}

fn config_from_c(o: &libuffd_monitor_opts) -> Result<Config, Error> {
    let known = LIBUFFD_MONITOR_FIXED_WINDOW
        | LIBUFFD_MONITOR_NO_FORK_SERVE
        | LIBUFFD_MONITOR_NO_RELEASE_ON_STOP
        | LIBUFFD_MONITOR_HAND_OFF_ALL;
    if o.flags & !known != 0 {
        return Err(Error::invalid(format!(
            "libuffd_monitor_opts: unknown flags {:#x}",
            o.flags & !known
        )));
    }
    let mut stop_policy =
        stop_policy_from_c("libuffd_monitor_opts", o.stop_policy)?.unwrap_or_default();
    if o.flags & LIBUFFD_MONITOR_NO_RELEASE_ON_STOP != 0 {
        if !matches!(stop_policy, StopPolicy::Auto | StopPolicy::Block) {
            return Err(Error::invalid(
                "libuffd_monitor_opts: LIBUFFD_MONITOR_NO_RELEASE_ON_STOP contradicts stop_policy",
            ));
        }
        stop_policy = StopPolicy::Block;
    }
    let d = Config::default();
    Ok(Config {
        workers: o.workers,
        spin_us: o.spin_us,
        window_min: if o.window_min == 0 {
            d.window_min
        } else {
            o.window_min
        },
        window_max: if o.window_max == 0 {
            d.window_max.max(o.window_min)
        } else {
            o.window_max
        },
        adaptive: o.flags & LIBUFFD_MONITOR_FIXED_WINDOW == 0,
        batch: if o.batch == 0 { d.batch } else { o.batch },
        max_retries: if o.max_retries == 0 {
            d.max_retries
        } else {
            o.max_retries
        },
        error_policy: match o.error_policy {
            LIBUFFD_ON_ERROR_SIGBUS => ErrorPolicy::Sigbus,
            LIBUFFD_ON_ERROR_RETRY => ErrorPolicy::Retry,
            LIBUFFD_ON_ERROR_STOP => ErrorPolicy::Stop,
            p => {
                return Err(Error::invalid(format!(
                    "libuffd_monitor_opts: unknown error_policy {p}"
                )))
            }
        },
        remove_policy: match o.remove_policy {
            LIBUFFD_ON_REMOVE_ZERO => RemovePolicy::ZeroFill,
            LIBUFFD_ON_REMOVE_UNREGISTER => RemovePolicy::Unregister,
            LIBUFFD_ON_REMOVE_REFILL => RemovePolicy::Refill,
            p => {
                return Err(Error::invalid(format!(
                    "libuffd_monitor_opts: unknown remove_policy {p}"
                )))
            }
        },
        serve_forks: o.flags & LIBUFFD_MONITOR_NO_FORK_SERVE == 0,
        hand_off_all: o.flags & LIBUFFD_MONITOR_HAND_OFF_ALL != 0,
        stop_policy,
    })
}

/// Copy a callback table in: sized like every options struct (older
/// tables are shorter; a newer one's extra callbacks must be NULL), and
/// its size a whole number of members, never part of a function pointer.
///
/// # Safety
/// `ops` is NULL or points to `(*ops).sz` readable bytes.
unsafe fn ops_from_c(ops: *const libuffd_monitor_ops) -> Result<libuffd_monitor_ops, Error> {
    if !ops.is_null() {
        // SAFETY: the caller guarantees the first field is a readable size_t.
        let sz = unsafe { std::ptr::read_unaligned(ops.cast::<usize>()) };
        let word = std::mem::size_of::<usize>();
        if sz % word != 0 {
            return Err(Error::invalid(format!(
                "libuffd_monitor_ops: .sz {sz} is not a whole number of members (set it to sizeof(struct libuffd_monitor_ops))"
            )));
        }
    }
    // SAFETY: the caller's contract.
    unsafe { copy_opts("libuffd_monitor_ops", ops) }
}

/// Create a monitor.
///
/// opts may be NULL (defaults: the reader resolves faults itself, an
/// adaptive 1..512-page fault-around window, SIGBUS on errors, zero-fill
/// after REMOVE, forked children served, and on stop: SIGBUS for pages of
/// buffer, fd and callback regions never restored, zeros for the others;
/// see LIBUFFD_ON_STOP_DEFAULT).
/// ops, the callback table (its sz set as for every options struct), may
/// be NULL when every region has a page source. user_data is passed to every
/// callback; user_data_free, if not NULL, is called with it exactly once,
/// by libuffd_monitor_free(). On failure it is not called (the caller keeps
/// ownership) and *out is not written.
///
/// The monitor applies the events of each batch it reads before serving
/// the batch's faults, and serves a fault reported several times in a
/// batch once: libuffd(7), MONITOR DELIVERY ORDER, says why.
///
/// Thread safety: may be called from any thread.
///
/// Returns: 0, or -EINVAL (NULL out, bad opts, an ops->sz too small or
/// not a whole number of members), -E2BIG, -EMFILE.
///
/// Pointers: opts must be NULL or a libuffd_monitor_opts of opts->sz
/// readable bytes; ops NULL or a libuffd_monitor_ops of ops->sz readable
/// bytes; out NULL or writable.
///
/// Example: a monitor whose on_fault callback fills each page of a
/// LIBUFFD_SOURCE_CALLBACK region (4 KiB pages) with its page number; the
/// callback's buffer is the user_data, freed with the monitor (no workers:
/// one thread runs the callback).
///
/// ```c
/// static int32_t fill(void *user_data, libuffd_monitor *m, const libuffd_fault *f)
/// {
///         char *page = user_data;
///
///         if (f->page_size > 4096)
///                 return -EINVAL;
///         memset(page, (int)(f->region_offset / 4096), 4096);
///         return libuffd_monitor_copy(m, f, page) < 0 ? -EIO : LIBUFFD_ON_FAULT_HANDLED;
/// }
///
/// libuffd_monitor *new_filling_monitor(void)
/// {
///         LIBUFFD_OPTS(libuffd_monitor_ops, ops, .on_fault = fill);
///         libuffd_monitor *m;
///         char *page = malloc(4096);
///
///         if (!page || libuffd_monitor_new(NULL, &ops, page, free, &m) < 0) {
///                 free(page);
///                 return NULL;
///         }
///         return m;
/// }
/// ```
#[no_mangle]
pub unsafe extern "C" fn libuffd_monitor_new(
    opts: *const libuffd_monitor_opts,
    ops: *const libuffd_monitor_ops,
    user_data: *mut libc::c_void,
    user_data_free: Option<unsafe extern "C" fn(*mut libc::c_void)>,
    out: *mut *mut libuffd_monitor,
) -> i32 {
    guard("libuffd_monitor_new", || {
        if out.is_null() {
            return Err(Error::invalid("libuffd_monitor_new: out is NULL"));
        }
        // SAFETY: contract above.
        let o = unsafe { copy_opts("libuffd_monitor_opts", opts) }?;
        let config = config_from_c(&o)?;
        // SAFETY: contract above.
        let ops = unsafe { ops_from_c(ops) }?;
        let me = Arc::new(AtomicPtr::new(std::ptr::null_mut()));
        let has_writeback = ops.on_writeback.is_some();
        let handler = CHandler {
            ops,
            user: user_data,
            me: me.clone(),
        };
        let monitor = Monitor::new(config, Box::new(handler))?;
        let boxed = Box::new(MonitorBox {
            tag: std::sync::atomic::AtomicU64::new(super::handle::MONITOR_TAG),
            monitor,
            started: Mutex::new(None),
            last_exit: Mutex::new(None),
            driven: Mutex::new(None),
            user: user_data,
            user_free: user_data_free,
            has_writeback,
        });
        let ptr = Box::into_raw(boxed) as *mut libuffd_monitor;
        me.store(ptr, Ordering::Release);
        // SAFETY: checked non-NULL above.
        unsafe { out.write(ptr) };
        Ok(0)
    })
}

/// Serve a handle's faults and events with this monitor (the monitor
/// keeps its own reference: the handle may be freed by the caller
/// afterwards). Blocking and non-blocking handles are served alike, and
/// the descriptor's file status flags are left as they are (the file may
/// be shared with another process): a blocking one is read with
/// RWF_NOWAIT, so no read of the monitor ever waits. *id (may be NULL)
/// receives the handle's id, used by regions, faults and events. For a
/// handle with LIBUFFD_FEATURE_EVENT_FORK (unless
/// LIBUFFD_MONITOR_NO_FORK_SERVE) it starts the monitor's reserve thread,
/// which keeps what serving a fork needs ready (see
/// libuffd_monitor_dispatch()); libuffd_monitor_free() ends it.
///
/// Thread safety: may be called from any thread, also while running.
///
/// Returns: 0, or -EINVAL (NULL monitor or handle; a blocking handle on a
/// kernel whose userfaultfd does not take RWF_NOWAIT: set O_NONBLOCK).
///
/// Pointers: m must be NULL or a live monitor; h NULL or a live handle; id
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn libuffd_monitor_add_handle(
    m: *mut libuffd_monitor,
    h: *mut libuffd_handle,
    id: *mut u32,
) -> i32 {
    guard("libuffd_monitor_add_handle", || {
        // SAFETY: contract above.
        let mb = unsafe { monitor_ref(m) }?;
        // SAFETY: contract above.
        let h = unsafe { borrow(h) }?;
        let got = mb.monitor.add_uffd(h.uffd.clone())?;
        if !id.is_null() {
            // SAFETY: non-NULL and writable per the contract.
            unsafe { id.write(got) };
        }
        Ok(0)
    })
}

/// Stop serving the handle with id handle_id (one added by
/// libuffd_monitor_add_handle(), or a forked child's), at once, running or
/// not: its regions are forgotten, its messages are no longer read (a
/// fault on it after this returns is for whoever reads the descriptor),
/// and the monitor's reader is woken so that it polls it no more. A
/// forked child's descriptor, which the monitor owns, is closed; an added
/// handle's stays open (the caller's handle, if not freed, still works).
/// Faults already read and deferred (LIBUFFD_ON_FAULT_DEFER) are the
/// caller's to complete.
///
/// A forked child's descriptor is also closed by the monitor on its own
/// once the child has exited (or exec'd).
///
/// Thread safety: may be called from any thread, also while running, and
/// from inside a callback.
///
/// Returns: 0, or -EINVAL (NULL monitor; no handle with that id is
/// served: never added, or removed already).
///
/// Pointers: m must be NULL or a live monitor.
#[no_mangle]
pub unsafe extern "C" fn libuffd_monitor_remove_handle(
    m: *mut libuffd_monitor,
    handle_id: u32,
) -> i32 {
    guard("libuffd_monitor_remove_handle", || {
        // SAFETY: contract above.
        let mb = unsafe { monitor_ref(m) }?;
        mb.monitor.remove_uffd(handle_id)?;
        Ok(0)
    })
}

/// Stop serving [start, start+len) of handle handle_id, running or not:
/// the regions there are forgotten (the parts of a region outside the range
/// stay served) and the range is unregistered from the userfaultfd, which
/// wakes the threads waiting there; with nobody serving it, a registered
/// range would leave later faults waiting for ever. The memory is the
/// caller's again: a page never placed now faults as without userfaultfd
/// (zeros for anonymous memory). Faults of the range being served from a
/// page source are waited out first; a fault a callback deferred resolves
/// as LIBUFFD_RESOLVE_GONE.
///
/// Thread safety: may be called from any thread, also while running, and
/// from inside a callback.
///
/// Returns: 0, or -EINVAL (NULL monitor; no handle with that id; a range
/// that wraps or is not page-aligned; no region of the handle in the
/// range), or the kernel's error from the unregister.
///
/// Pointers: m must be NULL or a live monitor. The range is only looked
/// at, never touched.
#[no_mangle]
pub unsafe extern "C" fn libuffd_monitor_remove_region(
    m: *mut libuffd_monitor,
    handle_id: u32,
    start: *mut libc::c_void,
    len: usize,
) -> i32 {
    guard("libuffd_monitor_remove_region", || {
        // SAFETY: contract above.
        let mb = unsafe { monitor_ref(m) }?;
        mb.monitor
            .remove_region(handle_id, Range::new(start as usize as u64, len as u64))?;
        Ok(0)
    })
}

/// Serve [start, start+len) of handle handle_id as opts says
/// (NULL: zero-fill, already registered). With opts->register_mode the
/// range is registered first. Regions of one handle may not overlap.
///
/// Thread safety: may be called from any thread, also while running, and
/// from inside any callback (on_fault, on_fork, on_remap, on_remove,
/// on_unmap, on_log): the region is served from the next fault on.
///
/// The region's page size is the mapping's for this process's own memory;
/// for an adopted descriptor's, give it in opts->page_size (see there).
///
/// Returns: 0, or -EINVAL (NULL monitor, unknown handle id, bad range,
/// misaligned for the page size, a page size that is not a power of two
/// of at least the base page size or not the mapping's, overlap, unknown
/// source, stop_policy or flags, NULL buffer, negative fd;
/// LIBUFFD_REGION_TRACK_DIRTY on a range the caller registered without
/// LIBUFFD_REGISTER_WP, LIBUFFD_REGION_DIRTY_SYNC on a handle with
/// LIBUFFD_FEATURE_WP_ASYNC, or WP_ASYNC tracking on another process's
/// handle, or together with max_resident; with max_resident: less than one
/// page, a source other than BUFFER or FD, PREFETCH, MINOR registration,
/// no write-back sink and no LIBUFFD_REGION_READ_ONLY, both sinks,
/// WRITEBACK_CALLBACK without ops->on_writeback, a writeback_fd that is
/// not the FD source's file or with a BUFFER source; a sink or READ_ONLY
/// without max_resident; reserved1 or reserved2 not 0), -EBADF (a source or
/// write-back fd that is not open), -EMFILE (no descriptor left for its
/// duplicate),
/// and libuffd_register()'s errors.
///
/// Pointers: m must be NULL or a live monitor; opts NULL or a
/// libuffd_region_opts of opts->sz readable bytes; opts->buffer readable
/// for opts->buffer_len bytes for as long as the monitor serves the region
/// (opts->fd is duplicated: the caller may close it once this returns).
///
/// Example: restore a snapshot file lazily: new memory of the file's size,
/// each page read from the file at its first touch and the rest in the
/// background (the monitor, with the handle id from
/// libuffd_monitor_add_handle(), is running or started later).
///
/// ```c
/// void *lazy_restore(libuffd_monitor *m, uint32_t id, int fd, size_t len)
/// {
///         void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
///                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
///         LIBUFFD_OPTS(libuffd_region_opts, ro,
///                      .source = LIBUFFD_SOURCE_FD,
///                      .flags = LIBUFFD_REGION_PREFETCH,
///                      .register_mode = LIBUFFD_REGISTER_MISSING,
///                      .fd = fd);
///
///         if (p == MAP_FAILED)
///                 return NULL;
///         if (libuffd_monitor_add_region(m, id, p, len, &ro) < 0) {
///                 munmap(p, len);
///                 return NULL;
///         }
///         return p; // fd may be closed: the monitor reads its own duplicate
/// }
/// ```
#[no_mangle]
pub unsafe extern "C" fn libuffd_monitor_add_region(
    m: *mut libuffd_monitor,
    handle_id: u32,
    start: *mut libc::c_void,
    len: usize,
    opts: *const libuffd_region_opts,
) -> i32 {
    guard("libuffd_monitor_add_region", || {
        // SAFETY: contract above.
        let mb = unsafe { monitor_ref(m) }?;
        // SAFETY: contract above.
        let o = unsafe { copy_opts("libuffd_region_opts", opts) }?;
        let known_flags = LIBUFFD_REGION_PREFETCH
            | LIBUFFD_REGION_ZERO_PAST_EOF
            | LIBUFFD_REGION_TRACK_DIRTY
            | LIBUFFD_REGION_DIRTY_SYNC
            | LIBUFFD_REGION_WRITEBACK_FD
            | LIBUFFD_REGION_WRITEBACK_CALLBACK
            | LIBUFFD_REGION_READ_ONLY;
        if o.flags & !known_flags != 0 {
            return Err(Error::invalid(format!(
                "libuffd_region_opts: unknown flags {:#x}",
                o.flags & !known_flags
            )));
        }
        let stop_policy = stop_policy_from_c("libuffd_region_opts", o.stop_policy)?;
        let sink = budget_sink_from_c(&o, mb.has_writeback)?;
        let source = match o.source {
            LIBUFFD_SOURCE_ZERO => Source::Zero,
            LIBUFFD_SOURCE_BUFFER => Source::Buffer {
                addr: o.buffer as u64,
                len: o.buffer_len,
            },
            LIBUFFD_SOURCE_FD => Source::Fd {
                fd: o.fd,
                offset: o.fd_offset,
                zero_past_eof: o.flags & LIBUFFD_REGION_ZERO_PAST_EOF != 0,
            },
            LIBUFFD_SOURCE_CALLBACK => Source::Callback,
            LIBUFFD_SOURCE_PAGE_CACHE => Source::PageCache,
            LIBUFFD_SOURCE_REMOTE => Source::Remote {
                fd: o.fd,
                offset: o.fd_offset,
                max_in_flight: o.max_in_flight,
            },
            s => {
                return Err(Error::invalid(format!(
                    "libuffd_region_opts: unknown source {s}"
                )))
            }
        };
        // SAFETY: the region's memory is the C caller's (see C_MEMORY in
        // ops_api.rs): no Rust value of libuffd lives there.
        let memory = unsafe { HandedOver::new(Range::of_ptr(start, len)) };
        mb.monitor.add_region(
            handle_id,
            memory,
            RegionOptions {
                source,
                register: RegisterMode::from_bits_retain(o.register_mode),
                prefetch: o.flags & LIBUFFD_REGION_PREFETCH != 0,
                user_data: o.data as u64,
                page_size: o.page_size,
                stop_policy,
                track_dirty: o.flags & LIBUFFD_REGION_TRACK_DIRTY != 0,
                dirty_sync: o.flags & LIBUFFD_REGION_DIRTY_SYNC != 0,
                max_resident: o.max_resident,
                sink,
                read_only: o.flags & LIBUFFD_REGION_READ_ONLY != 0,
            },
        )?;
        Ok(0)
    })
}

/// The write-back sink a region's options name (the checks that need the
/// C struct; the rest is `Monitor::add_region`'s).
fn budget_sink_from_c(o: &libuffd_region_opts, has_writeback: bool) -> Result<Sink, Error> {
    let both = LIBUFFD_REGION_WRITEBACK_FD | LIBUFFD_REGION_WRITEBACK_CALLBACK;
    if o.reserved1 != 0 || o.reserved2 != 0 {
        return Err(Error::invalid(
            "libuffd_region_opts: reserved1 and reserved2 must be 0",
        ));
    }
    if o.flags & both == both {
        return Err(Error::invalid(
            "libuffd_region_opts: LIBUFFD_REGION_WRITEBACK_FD and LIBUFFD_REGION_WRITEBACK_CALLBACK together (one sink)",
        ));
    }
    if o.flags & LIBUFFD_REGION_WRITEBACK_CALLBACK != 0 && !has_writeback {
        return Err(Error::invalid(
            "libuffd_region_opts: LIBUFFD_REGION_WRITEBACK_CALLBACK without ops->on_writeback",
        ));
    }
    Ok(if o.flags & LIBUFFD_REGION_WRITEBACK_FD != 0 {
        Sink::Fd(o.writeback_fd)
    } else if o.flags & LIBUFFD_REGION_WRITEBACK_CALLBACK != 0 {
        Sink::Callback
    } else {
        Sink::None
    })
}

/// Run the monitor on the calling thread until libuffd_monitor_stop().
///
/// Callbacks (without workers) run on the calling thread, with thread
/// cancellation disabled.
///
/// Cancellation: a cancellation point, like read(2). A thread blocked here
/// (or entering with a cancel pending) that is pthread_cancel()ed unwinds
/// out of the call; a cancel that arrives while a callback runs acts once
/// the thread waits again. A run cancelled mid-way ends as if
/// libuffd_monitor_stop() had been called: the monitor is stopped and the
/// stop policy applied to its regions (libuffd_monitor_opts.stop_policy).
/// That ending is done when the cancelled thread exits (the main thread
/// too), or earlier by its next libuffd_monitor_* call (a cleanup handler
/// may call libuffd_monitor_free()); libuffd_monitor_free() from another
/// thread waits for it. A cancel pending at entry ends the thread before
/// the run begins: the monitor is left as it was.
///
/// Thread safety: one run (or start) at a time per monitor.
///
/// Returns: 0 when stopped, -EBUSY if already running, -EAGAIN (a thread,
/// or the thread-specific key that makes the run cancellable, could not
/// be created), or the errno that stopped it (LIBUFFD_ON_ERROR_STOP, a
/// fault that could be neither resolved nor poisoned, see
/// LIBUFFD_ON_ERROR_SIGBUS, or a failure reading events).
///
/// Pointers: m must be NULL or a live monitor.
#[no_mangle]
pub unsafe extern "C-unwind" fn libuffd_monitor_run(m: *mut libuffd_monitor) -> i32 {
    // The waits below are the only places a cancellation can act in this
    // call; this frame holds nothing to drop (see crate::sys::cancel).
    cancel::testcancel();
    let rc = guard("libuffd_monitor_run", || {
        // SAFETY: contract above.
        let mb = unsafe { monitor_ref(m) }?;
        PARKED.ready().map_err(|e| {
            Error::os(
                "pthread_key_create",
                e,
                "libuffd_monitor_run needs a thread-specific key to be cancellable",
            )
        })?;
        let d = mb.monitor.drive_begin()?;
        *mb.driven.lock().unwrap_or_else(|e| e.into_inner()) = Some(d);
        Ok(0)
    });
    if rc < 0 {
        return rc;
    }
    let mut poll_errno = 0;
    while let RunStep::Wait { fd, timeout_ms } = run_turn(m, poll_errno) {
        poll_errno = match cancel::poll_in(fd, timeout_ms) {
            Ok(_) | Err(libc::EINTR) => 0,
            Err(e) => e,
        };
    }
    guard("libuffd_monitor_run", || {
        // SAFETY: contract above.
        let mb = unsafe { monitor_ref(m) }?;
        let d = mb.driven.lock().unwrap_or_else(|e| e.into_inner()).take();
        match d {
            Some(d) => mb.monitor.drive_end(d).map(|()| 0),
            None => Err(Error::Internal(
                "libuffd_monitor_run: the run's state is gone".into(),
            )),
        }
    })
}

/// What libuffd_monitor_run() does after a turn.
#[derive(Clone, Copy)]
enum RunStep {
    Wait { fd: i32, timeout_ms: i32 },
    Done,
}

impl FromErrno for RunStep {
    fn from_errno(_: i32) -> Self {
        RunStep::Done
    }
}

/// One turn of libuffd_monitor_run(), behind the guard (callbacks run
/// here); parks the run on this thread when it says to wait.
fn run_turn(m: *mut libuffd_monitor, poll_errno: i32) -> RunStep {
    guard("libuffd_monitor_run", || {
        // Back from the wait: not parked (monitor_ref would end the run).
        set_parked(std::ptr::null());
        // SAFETY: libuffd_monitor_run's contract: `m` is live.
        let mb = unsafe { monitor_ref(m) }?;
        let mut driven = mb.driven.lock().unwrap_or_else(|e| e.into_inner());
        let Some(d) = driven.as_mut() else {
            return Ok(RunStep::Done);
        };
        Ok(match mb.monitor.drive_turn(d, poll_errno) {
            Turn::Done => RunStep::Done,
            Turn::Wait { fd, timeout_ms } => {
                set_parked(mb);
                RunStep::Wait { fd, timeout_ms }
            }
        })
    })
}

/// Run the monitor on a thread of its own (plus its workers); returns at
/// once. libuffd_monitor_wait() joins it. Every thread the library creates
/// (this one, workers, the prefetcher, the reserve thread) blocks all
/// signals, so a signal sent to the process is handled on the host's
/// threads only.
///
/// Thread safety: any thread; one run (or start) at a time.
///
/// Returns: 0, -EBUSY (already running), -EAGAIN (no thread).
///
/// Pointers: m must be NULL or a live monitor.
///
/// Example: the whole life of a monitor: new memory whose len bytes (whole
/// pages) are served from data by the monitor's own thread at each first
/// touch, read back, then the monitor stopped and freed.
///
/// ```c
/// int restore_and_check(const char *data, size_t len)
/// {
///         LIBUFFD_OPTS(libuffd_open_opts, oo, .flags = LIBUFFD_OPEN_USER_ONLY);
///         LIBUFFD_OPTS(libuffd_region_opts, ro,
///                      .source = LIBUFFD_SOURCE_BUFFER,
///                      .register_mode = LIBUFFD_REGISTER_MISSING,
///                      .buffer = data, .buffer_len = len);
///         libuffd_handle *h = NULL;
///         libuffd_monitor *m = NULL;
///         uint32_t id;
///         char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
///                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
///         int rc = p == MAP_FAILED ? -ENOMEM : libuffd_open(&oo, &h);
///
///         if (rc == 0)
///                 rc = libuffd_monitor_new(NULL, NULL, NULL, NULL, &m);
///         if (rc == 0)
///                 rc = libuffd_monitor_add_handle(m, h, &id);
///         if (rc == 0)
///                 rc = libuffd_monitor_add_region(m, id, p, len, &ro);
///         if (rc == 0)
///                 rc = libuffd_monitor_start(m);
///         if (rc == 0 && memcmp(p, data, len) != 0) // faults, served
///                 rc = -EIO;
///         libuffd_monitor_free(m); // stops the run, joins its thread
///         libuffd_handle_free(h);
///         if (p != MAP_FAILED)
///                 munmap(p, len);
///         return rc;
/// }
/// ```
#[no_mangle]
pub unsafe extern "C" fn libuffd_monitor_start(m: *mut libuffd_monitor) -> i32 {
    guard("libuffd_monitor_start", || {
        // SAFETY: contract above.
        let mb = unsafe { monitor_ref(m) }?;
        let mut started = mb.started.lock().unwrap_or_else(|e| e.into_inner());
        if started.is_some() {
            return Err(Error::os(
                "libuffd_monitor_start",
                libc::EBUSY,
                "already started",
            ));
        }
        let running = mb.monitor.start()?;
        *mb.last_exit.lock().unwrap_or_else(|e| e.into_inner()) = Some(running.exit_signal());
        *started = Some(running);
        Ok(0)
    })
}

/// Ask the monitor to stop; returns at once. Safe from any thread,
/// including from inside a callback; calling it again does nothing more.
/// When the loop ends, each region's stop policy decides what becomes of
/// the threads still blocked in its faults and of its pages not yet
/// placed (LIBUFFD_ON_STOP_*: by default SIGBUS for buffer, fd and
/// callback regions, never silent zeros; zeros for the others); the
/// counters stop_blocked, stop_sigbus and stop_zeroed of
/// libuffd_monitor_get_stats() say how many pending faults went each way.
///
/// Restart: once the run has ended (libuffd_monitor_wait() returned, or
/// libuffd_monitor_run() did), libuffd_monitor_start() or
/// libuffd_monitor_run() runs the monitor again: regions the stop
/// unregistered (SIGBUS, ZERO) are gone from it (add them again), those
/// left registered (BLOCK) are served, and the threads the stop left
/// blocked are woken to fault again. A stop asked while no run is active
/// ends the next run at once.
///
/// Returns: 0, or -EINVAL for NULL (or not a monitor).
///
/// Pointers: m must be NULL or a live monitor.
#[no_mangle]
pub unsafe extern "C" fn libuffd_monitor_stop(m: *mut libuffd_monitor) -> i32 {
    guard("libuffd_monitor_stop", || {
        // SAFETY: contract above.
        unsafe { monitor_ref(m) }?.monitor.stop();
        Ok(0)
    })
}

/// Wait for a monitor started with libuffd_monitor_start() to stop.
///
/// Cancellation: a cancellation point, like pthread_join(3). A thread
/// blocked here (or entering with a cancel pending) that is
/// pthread_cancel()ed unwinds out of the call and the monitor runs on, as
/// a thread waited for by a cancelled pthread_join() does: stop, wait for
/// and free it later as usual.
///
/// Thread safety: any thread but the monitor's own (not from a callback:
/// -EDEADLK there).
///
/// Returns: what the run returned (0 or -errno), -EINVAL if it was not
/// started (or m is not a monitor), -EDEADLK from inside one of its
/// callbacks.
///
/// Pointers: m must be NULL or a live monitor.
#[no_mangle]
pub unsafe extern "C-unwind" fn libuffd_monitor_wait(m: *mut libuffd_monitor) -> i32 {
    // The wait below is the only place a cancellation can act in this
    // call; this frame holds nothing to drop (see crate::sys::cancel).
    cancel::testcancel();
    let mut join = false;
    loop {
        let step = guard("libuffd_monitor_wait", || {
            // SAFETY: contract above.
            let mb = unsafe { monitor_ref(m) }?;
            not_in_callback(m, "libuffd_monitor_wait")?;
            let mut started = mb.started.lock().unwrap_or_else(|e| e.into_inner());
            let Some(running) = started.as_ref() else {
                return Err(Error::invalid(
                    "libuffd_monitor_wait: the monitor was not started",
                ));
            };
            if !join && !running.has_ended() {
                return Ok(WaitStep::Wait(running.exit_signal().fd()));
            }
            // Ended (or poll failed): joining returns at once (or blocks
            // without a cancellation point).
            let running = started.take();
            drop(started);
            match running {
                Some(r) => r.wait().map(|()| WaitStep::Done(0)),
                None => Ok(WaitStep::Done(0)),
            }
        });
        match step {
            WaitStep::Done(rc) => return rc,
            // The descriptor stays open while the monitor lives
            // (MonitorBox::last_exit), and readable once the thread ends.
            WaitStep::Wait(fd) => match cancel::poll_in(fd, -1) {
                Ok(_) | Err(libc::EINTR) => {}
                Err(_) => join = true,
            },
        }
    }
}

/// What libuffd_monitor_wait() does next.
#[derive(Clone, Copy)]
enum WaitStep {
    Wait(i32),
    Done(i32),
}

impl FromErrno for WaitStep {
    fn from_errno(errno: i32) -> Self {
        WaitStep::Done(-errno)
    }
}

/// The monitor's descriptor, for callers with their own event loop: it
/// becomes readable when libuffd_monitor_dispatch() has work. Borrowed: do not
/// close it.
///
/// Returns: the descriptor, or -EINVAL for NULL.
///
/// Pointers: m must be NULL or a live monitor.
#[no_mangle]
pub unsafe extern "C" fn libuffd_monitor_fd(m: *const libuffd_monitor) -> i32 {
    guard("libuffd_monitor_fd", || {
        // SAFETY: contract above.
        Ok(unsafe { monitor_ref(m) }?.monitor.fd())
    })
}

/// Handle whatever is ready, waiting up to timeout_ms (0: do not wait;
/// -1: wait). For callers that poll libuffd_monitor_fd() themselves; workers
/// and prefetch run only under libuffd_monitor_run()/start(). Forked
/// children are served as by the monitor's own thread, without allocating
/// while the forking thread holds the C library's malloc locks: a helper
/// thread (started by libuffd_monitor_add_handle() for a handle with
/// LIBUFFD_FEATURE_EVENT_FORK, signals blocked) keeps what that needs
/// ready, so a storm of forks does not deadlock the dispatching thread.
///
/// Thread safety: one dispatcher at a time; not while running.
///
/// Cancellation: not a cancellation point, even when it waits. For a wait
/// that can be cancelled, poll(2) libuffd_monitor_fd() yourself and call
/// this with timeout 0.
///
/// Stop: libuffd_monitor_stop() (from any thread, a callback included)
/// ends dispatching as it ends a run. The dispatch that sees the stop
/// releases the waiting faults and the regions per the stop policies (as
/// a run's end does) and returns -ECANCELED, or the error that stopped the
/// monitor (e.g. -EIO under LIBUFFD_ON_ERROR_STOP), so that a loop
/// while (libuffd_monitor_dispatch(m, -1) >= 0) ends. The next dispatch
/// serves again.
///
/// Returns: the number of ready sources handled (0 on timeout), -EBUSY
/// (running, or another thread dispatching), -EINTR, -ECANCELED (stopped),
/// or the error the monitor stopped on.
///
/// Pointers: m must be NULL or a live monitor.
#[no_mangle]
pub unsafe extern "C" fn libuffd_monitor_dispatch(m: *mut libuffd_monitor, timeout_ms: i32) -> i32 {
    guard("libuffd_monitor_dispatch", || {
        // SAFETY: contract above.
        let mb = unsafe { monitor_ref(m) }?;
        if timeout_ms < -1 {
            return Err(Error::invalid("libuffd_monitor_dispatch: timeout below -1"));
        }
        Ok(mb.monitor.dispatch(timeout_ms)?.min(i32::MAX as usize) as i32)
    })
}

fn resolve_c(
    func: &'static str,
    m: *mut libuffd_monitor,
    f: *const libuffd_fault,
    action: Action,
) -> i32 {
    guard(func, || {
        // SAFETY: the exported callers' contract: NULL or live.
        let mb = unsafe { monitor_ref(m) }?;
        if f.is_null() {
            return Err(Error::invalid(format!("{func}: fault is NULL")));
        }
        // SAFETY: non-NULL, and the caller promised a valid libuffd_fault.
        let fault = unsafe { *f };
        let ps = fault.page_size;
        let page = fault.page as u64;
        if !ps.is_power_of_two() || ps < crate::sys::base_page_size() || page % ps != 0 {
            return Err(Error::invalid(format!(
                "{func}: not a fault from this monitor (page {page:#x}, page size {ps})"
            )));
        }
        let token = FaultToken {
            uffd_id: fault.handle_id,
            page,
            page_size: ps,
        };
        // Inside on_fault, the fault being handled (the pointer given or a
        // copy of it) is resolved as the callback's own, so the monitor
        // knows and retries it on EAGAIN; any other as a completion.
        let applied = mb.monitor.resolve(token, action)?;
        Ok(match applied {
            Applied::Resolved(_) => LIBUFFD_RESOLVE_DONE,
            Applied::AlreadyResolved => LIBUFFD_RESOLVE_ALREADY_DONE,
            Applied::Gone => LIBUFFD_RESOLVE_GONE,
        })
    })
}

/// Resolve a fault by copying f->page_size bytes from src. From the
/// on_fault callback, or later from any thread for a deferred fault.
///
/// Returns: LIBUFFD_RESOLVE_DONE, LIBUFFD_RESOLVE_ALREADY_DONE (someone had; the
/// waiter was woken), LIBUFFD_RESOLVE_GONE (range or process gone), or -EINVAL,
/// -EFAULT (bad src), -EAGAIN (an event is pending: inside on_fault the
/// monitor retries the fault and calls the callback again; elsewhere it
/// was retried for 2 s first), and the kernel's other errors.
///
/// Pointers: m must be NULL or a live monitor; f NULL or a fault from this
/// monitor.
#[no_mangle]
pub unsafe extern "C" fn libuffd_monitor_copy(
    m: *mut libuffd_monitor,
    f: *const libuffd_fault,
    src: *const libc::c_void,
) -> i32 {
    if src.is_null() {
        return guard("libuffd_monitor_copy", || {
            Err(Error::invalid("libuffd_monitor_copy: src is NULL"))
        });
    }
    resolve_c("libuffd_monitor_copy", m, f, Action::Copy(src as u64))
}

/// Resolve a fault by copying len bytes from src to f->page and the pages
/// after it, with the kernel's mode bits: LIBUFFD_COPY_WP places them
/// write-protected (the first write to each then faults with
/// LIBUFFD_PAGEFAULT_FLAG_WP: dirty tracking, in a region registered with
/// LIBUFFD_REGISTER_WP as well), LIBUFFD_COPY_DONTWAKE leaves the thread
/// waiting. len is a whole number of f->page_size pages inside the fault's
/// region (one page for a fault in no region). From the on_fault callback,
/// or later from any thread for a deferred fault.
///
/// Returns: as libuffd_monitor_copy(), and -EINVAL for a len of no whole
/// pages or past the region's end; -EINVAL, -EPERM or -EOPNOTSUPP from the
/// kernel for mode bits it refuses.
///
/// Pointers: m must be NULL or a live monitor; f NULL or a fault from this
/// monitor; src readable for len bytes.
#[no_mangle]
pub unsafe extern "C" fn libuffd_monitor_copy_range(
    m: *mut libuffd_monitor,
    f: *const libuffd_fault,
    src: *const libc::c_void,
    len: usize,
    mode: u64,
) -> i32 {
    if src.is_null() {
        return guard("libuffd_monitor_copy_range", || {
            Err(Error::invalid("libuffd_monitor_copy_range: src is NULL"))
        });
    }
    let action = Action::CopyRange {
        src: src as usize as u64,
        len: len as u64,
        mode: crate::uffd::CopyMode::from_bits_retain(mode),
    };
    resolve_c("libuffd_monitor_copy_range", m, f, action)
}

/// Resolve a fault with zeros over len bytes from f->page (hugetlb too):
/// len as for libuffd_monitor_copy_range(). Returns as
/// libuffd_monitor_copy_range().
///
/// Pointers: m must be NULL or a live monitor; f NULL or a fault from this
/// monitor.
#[no_mangle]
pub unsafe extern "C" fn libuffd_monitor_zero_range(
    m: *mut libuffd_monitor,
    f: *const libuffd_fault,
    len: usize,
) -> i32 {
    resolve_c(
        "libuffd_monitor_zero_range",
        m,
        f,
        Action::ZeroRange { len: len as u64 },
    )
}

/// Resolve a minor fault by mapping the page-cache pages over len bytes
/// from f->page, with the kernel's mode bits (LIBUFFD_CONTINUE_WP maps them
/// write-protected). len as for libuffd_monitor_copy_range(). Returns as
/// libuffd_monitor_copy_range().
///
/// Pointers: m must be NULL or a live monitor; f NULL or a fault from this
/// monitor.
#[no_mangle]
pub unsafe extern "C" fn libuffd_monitor_continue_range(
    m: *mut libuffd_monitor,
    f: *const libuffd_fault,
    len: usize,
    mode: u64,
) -> i32 {
    let action = Action::ContinueRange {
        len: len as u64,
        mode: crate::uffd::ContinueMode::from_bits_retain(mode),
    };
    resolve_c("libuffd_monitor_continue_range", m, f, action)
}

/// Resolve a fault with zeros (hugetlb too). Returns as libuffd_monitor_copy().
///
/// Pointers: m must be NULL or a live monitor; f NULL or a fault from this
/// monitor.
#[no_mangle]
pub unsafe extern "C" fn libuffd_monitor_zero(
    m: *mut libuffd_monitor,
    f: *const libuffd_fault,
) -> i32 {
    resolve_c("libuffd_monitor_zero", m, f, Action::Zero)
}

/// Resolve a minor fault by mapping the page-cache page. Returns as
/// libuffd_monitor_copy().
///
/// Pointers: m must be NULL or a live monitor; f NULL or a fault from this
/// monitor.
#[no_mangle]
pub unsafe extern "C" fn libuffd_monitor_continue(
    m: *mut libuffd_monitor,
    f: *const libuffd_fault,
) -> i32 {
    resolve_c("libuffd_monitor_continue", m, f, Action::Continue)
}

/// Resolve a write-protect fault by removing the protection from the page.
/// Returns as libuffd_monitor_copy().
///
/// Pointers: m must be NULL or a live monitor; f NULL or a fault from this
/// monitor.
#[no_mangle]
pub unsafe extern "C" fn libuffd_monitor_unprotect(
    m: *mut libuffd_monitor,
    f: *const libuffd_fault,
) -> i32 {
    resolve_c("libuffd_monitor_unprotect", m, f, Action::Unprotect)
}

/// Resolve a fault by poisoning the page: the thread gets SIGBUS. Returns
/// as libuffd_monitor_copy().
///
/// Pointers: m must be NULL or a live monitor; f NULL or a fault from this
/// monitor.
#[no_mangle]
pub unsafe extern "C" fn libuffd_monitor_poison(
    m: *mut libuffd_monitor,
    f: *const libuffd_fault,
) -> i32 {
    resolve_c("libuffd_monitor_poison", m, f, Action::Poison)
}

/// Resolve a fault by moving the page at src (anonymous private memory
/// of this process) into place. Returns as libuffd_monitor_copy().
///
/// Pointers: m must be NULL or a live monitor; f NULL or a fault from this
/// monitor.
#[no_mangle]
pub unsafe extern "C" fn libuffd_monitor_move(
    m: *mut libuffd_monitor,
    f: *const libuffd_fault,
    src: *mut libc::c_void,
) -> i32 {
    if src.is_null() {
        return guard("libuffd_monitor_move", || {
            Err(Error::invalid("libuffd_monitor_move: src is NULL"))
        });
    }
    // The fault's page size, when `f` is there (resolve_c refuses a NULL
    // or malformed one before the action is looked at).
    let ps = if f.is_null() {
        0
    } else {
        // SAFETY: non-NULL, and the caller promised a valid libuffd_fault.
        unsafe { (*f).page_size }
    };
    // SAFETY: the memory at `src` is the C caller's (see C_MEMORY in
    // ops_api.rs): no Rust value of libuffd lives there.
    let src = unsafe { HandedOver::new(Range::new(src as usize as u64, ps)) };
    resolve_c("libuffd_monitor_move", m, f, Action::Move(src))
}

/// Resolve a fault by moving len bytes of pages at src (anonymous private
/// memory of this process; the pages leave it) to f->page and the pages
/// after it, with the kernel's mode bits (LIBUFFD_MOVE_DONTWAKE,
/// LIBUFFD_MOVE_ALLOW_SRC_HOLES). len as for libuffd_monitor_copy_range():
/// whole pages of the fault's size, inside the fault's region.
///
/// Returns: as libuffd_monitor_copy(), and -EINVAL for a NULL src or a len
/// of no whole pages or past the region's end; otherwise the kernel's
/// errno for UFFDIO_MOVE with these arguments (-ENOENT for a hole in src
/// without LIBUFFD_MOVE_ALLOW_SRC_HOLES, -EBUSY for a source page shared
/// with another process, ...).
///
/// Pointers: m must be NULL or a live monitor; f NULL or a fault from this
/// monitor; src NULL or len bytes of the caller's anonymous memory.
#[no_mangle]
pub unsafe extern "C" fn libuffd_monitor_move_range(
    m: *mut libuffd_monitor,
    f: *const libuffd_fault,
    src: *mut libc::c_void,
    len: usize,
    mode: u64,
) -> i32 {
    if src.is_null() {
        return guard("libuffd_monitor_move_range", || {
            Err(Error::invalid("libuffd_monitor_move_range: src is NULL"))
        });
    }
    // SAFETY: the memory at `src` is the C caller's (see C_MEMORY in
    // ops_api.rs): no Rust value of libuffd lives there.
    let src = unsafe { HandedOver::new(Range::new(src as usize as u64, len as u64)) };
    let action = Action::MoveRange {
        src,
        mode: crate::uffd::MoveMode::from_bits_retain(mode),
    };
    resolve_c("libuffd_monitor_move_range", m, f, action)
}

// The C struct from the Rust snapshot, field by field as
// crate::monitor::counters! lists them: a counter the C struct lacks, or a
// C field no counter feeds, fails to compile.
macro_rules! c_stats {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        fn c_stats(s: &crate::monitor::StatsSnapshot, sz: usize) -> libuffd_monitor_stats {
            libuffd_monitor_stats {
                sz,
                latency_log2_ns: s.latency,
                $($name: s.$name,)*
            }
        }
    };
}
crate::monitor::counters!(c_stats);

/// Copy the monitor's counters into *stats (set stats->sz first; a
/// smaller, older struct gets the members it has). Readable at any time.
///
/// A fault is counted (resolved, bytes, latency) when its resolution has
/// returned, which can be after the faulting thread resumed: counters read
/// right after an access may not include that access's fault yet. Once
/// the run has ended (libuffd_monitor_wait() returned) they are complete.
///
/// Returns: 0, or -EINVAL (NULL, or sz smaller than sizeof(size_t)).
///
/// Pointers: m must be NULL or a live monitor; stats NULL or writable for
/// stats->sz bytes.
#[no_mangle]
pub unsafe extern "C" fn libuffd_monitor_get_stats(
    m: *const libuffd_monitor,
    stats: *mut libuffd_monitor_stats,
) -> i32 {
    guard("libuffd_monitor_get_stats", || {
        // SAFETY: contract above.
        let mb = unsafe { monitor_ref(m) }?;
        if stats.is_null() {
            return Err(Error::invalid("libuffd_monitor_get_stats: stats is NULL"));
        }
        // SAFETY: the first member is the caller's size_t.
        let sz = unsafe { std::ptr::read_unaligned(stats.cast::<usize>()) };
        if sz < std::mem::size_of::<usize>() {
            return Err(Error::invalid(
                "libuffd_monitor_get_stats: set stats->sz = sizeof(struct libuffd_monitor_stats)",
            ));
        }
        let n = sz.min(std::mem::size_of::<libuffd_monitor_stats>());
        let out = c_stats(&mb.monitor.stats(), n);
        // SAFETY: `n` bytes are writable at `stats` (the caller's size)
        // and readable in `out`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&out as *const libuffd_monitor_stats).cast::<u8>(),
                stats.cast::<u8>(),
                n,
            )
        };
        Ok(0)
    })
}

/// Stop the monitor, wait for its threads, apply the stop policy to its
/// regions (libuffd_monitor_opts.stop_policy), call user_data_free, and
/// free it. NULL is ignored.
///
/// Misuse is refused, not acted on (the function returns nothing: errno is
/// set and libuffd_last_error() says why): from inside one of this
/// monitor's callbacks, EDEADLK (it would wait for, and free, the running
/// callback); a pointer that is not a live monitor (a handle, or a monitor
/// already freed, where its type tag tells), EINVAL.
///
/// A libuffd_monitor_run() cancelled on another thread is ended first: this
/// waits until that thread has exited (or called into the monitor again).
///
/// Cancellation: not a cancellation point; it always completes (a
/// pending cancellation acts at the thread's next cancellation point).
///
/// Pointers: m must be NULL or a live monitor, freed at most once.
#[no_mangle]
pub unsafe extern "C" fn libuffd_monitor_free(m: *mut libuffd_monitor) {
    if m.is_null() {
        return;
    }
    guard_void(|| {
        end_parked_run();
        // SAFETY: contract above (a pointer of another kind, or a freed
        // one where it can be told, is refused by its tag).
        let checked = unsafe {
            super::handle::check_tag(
                m.cast(),
                super::handle::MONITOR_TAG,
                "libuffd_monitor_free: monitor",
            )
        }
        .and_then(|()| not_in_callback(m, "libuffd_monitor_free"));
        if let Err(e) = checked {
            // Left alone: the caller is told through errno and
            // libuffd_last_error().
            super::boundary::record("libuffd_monitor_free", e);
            return;
        }
        // SAFETY: per the contract, the Box from libuffd_monitor_new.
        drop(unsafe { Box::from_raw(m as *mut MonitorBox) });
    });
}
