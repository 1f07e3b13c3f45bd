// SPDX-License-Identifier: MIT OR Apache-2.0
//! Thread cancellation (pthread_cancel) and the library's waits.
//!
//! glibc cancels a thread by a forced unwind (`_Unwind_ForcedUnwind`)
//! started from a cancellation point: read(2), poll(2), close(2),
//! write(2), pthread_join(3), nanosleep(2) ... when a cancel is pending,
//! or arrives while the thread blocks there. That unwind deallocates every
//! frame up to the thread's start. Rust allows it to cross only frames
//! with nothing to drop and no `catch_unwind` (plain old frames, RFC 2945),
//! reached through `extern "C-unwind"` calls: a Rust destructor or the
//! panic guard of src/ffi in its way aborts the process ("FATAL: exception
//! not rethrown"), and a call declared `extern "C"` (nounwind, as the libc
//! crate declares them) may not be unwound at all.
//!
//! So the library works in two modes:
//! - Everything it does behind the panic guard runs with cancellation
//!   disabled ([`NoCancel`]): a cancel request stays pending, and the
//!   libc calls made there (close, write, read, poll, pthread_join ...)
//!   never start an unwind.
//! - The few exported waits that are cancellation points (reading events,
//!   running a monitor and waiting for one) block through the functions
//!   below, called from the exported `extern "C-unwind"` function's own
//!   frame when it holds nothing to drop, outside the guard. A cancel
//!   acts there exactly as in read(2): the thread unwinds out of the call.

use std::os::raw::c_int;

/// glibc and musl: `PTHREAD_CANCEL_ENABLE`, `PTHREAD_CANCEL_DISABLE`.
const PTHREAD_CANCEL_ENABLE: c_int = 0;
const PTHREAD_CANCEL_DISABLE: c_int = 1;

extern "C" {
    // Not a cancellation point; never unwinds with deferred cancellation.
    fn pthread_setcancelstate(state: c_int, oldstate: *mut c_int) -> c_int;
}

// The same C functions as in the libc crate, declared as able to unwind:
// a forced unwind may leave them. Called only from the frames described
// in the module documentation.
#[allow(clashing_extern_declarations)]
extern "C-unwind" {
    fn pthread_testcancel();
    #[link_name = "poll"]
    fn poll_unwind(fds: *mut libc::pollfd, nfds: libc::nfds_t, timeout: c_int) -> c_int;
    #[link_name = "read"]
    fn read_unwind(fd: c_int, buf: *mut libc::c_void, count: libc::size_t) -> libc::ssize_t;
}

/// Cancellation disabled on this thread until dropped; the previous state
/// (enabled or not) is restored then. Nests.
pub struct NoCancel {
    old: c_int,
}

impl NoCancel {
    #[inline]
    pub fn new() -> NoCancel {
        let mut old = PTHREAD_CANCEL_ENABLE;
        // SAFETY: valid state and out-pointer; no other effect.
        unsafe { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &mut old) };
        NoCancel { old }
    }
}

impl Default for NoCancel {
    fn default() -> NoCancel {
        NoCancel::new()
    }
}

impl Drop for NoCancel {
    #[inline]
    fn drop(&mut self) {
        if self.old != PTHREAD_CANCEL_DISABLE {
            // SAFETY: as in `new`. Enabling deferred cancellation does not
            // act on a pending cancel (only a cancellation point does).
            unsafe { pthread_setcancelstate(self.old, std::ptr::null_mut()) };
        }
    }
}

/// Disable cancellation for the rest of the calling thread's life: for the
/// library's own threads, which nothing may unwind (a user callback on
/// them may call cancellation points).
pub fn disable_for_thread() {
    // SAFETY: valid state; glibc and musl accept a NULL old state.
    unsafe { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, std::ptr::null_mut()) };
}

/// A cancellation point: acts on a pending cancel.
///
/// Only from a frame with nothing to drop, outside the panic guard, whose
/// callers up to C are `extern "C-unwind"` or such frames too.
#[inline]
pub fn testcancel() {
    // SAFETY: no arguments; it may unwind, which its declaration allows.
    unsafe { pthread_testcancel() }
}

/// poll(2) `fd` for input, as a cancellation point. Returns the revents
/// (0 on timeout), or the errno. Same conditions as [`testcancel`].
#[inline]
pub fn poll_in(fd: c_int, timeout_ms: c_int) -> Result<i16, i32> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1; it may unwind, which its
    // declaration allows.
    let rc = unsafe { poll_unwind(&mut pfd, 1, timeout_ms) };
    if rc < 0 {
        return Err(super::last_errno());
    }
    Ok(if rc == 0 { 0 } else { pfd.revents })
}

/// read(2) into `len` bytes at `buf`, as a cancellation point. Returns the
/// bytes read, or the errno. Same conditions as [`testcancel`].
///
/// # Safety
/// `buf` is writable for `len` bytes, and any bytes are valid there.
#[inline]
pub unsafe fn read(fd: c_int, buf: *mut u8, len: usize) -> Result<usize, i32> {
    // SAFETY: the caller's contract; it may unwind, which its declaration
    // allows.
    let n = unsafe { read_unwind(fd, buf.cast(), len) };
    if n < 0 {
        return Err(super::last_errno());
    }
    Ok(n as usize)
}

/// A per-thread pointer whose owner is told when the thread exits, by any
/// way: returning, pthread_exit(), cancellation, the main thread included.
///
/// A pthread key with a destructor: glibc runs key destructors for every
/// exiting thread, where the destructors of Rust's thread-locals run
/// through __cxa_thread_atexit, which a cancelled main thread never
/// reaches (it would leave what it parked there unended forever).
pub struct ExitSlot {
    key: once_cell::sync::OnceCell<libc::pthread_key_t>,
    on_exit: unsafe extern "C" fn(*mut libc::c_void),
}

impl ExitSlot {
    /// A slot whose non-null value is passed to `on_exit` when a thread
    /// ends with it set. `on_exit` must not unwind.
    pub const fn new(on_exit: unsafe extern "C" fn(*mut libc::c_void)) -> ExitSlot {
        ExitSlot {
            key: once_cell::sync::OnceCell::new(),
            on_exit,
        }
    }

    fn key(&self) -> Result<libc::pthread_key_t, i32> {
        self.key
            .get_or_try_init(|| {
                let mut key: libc::pthread_key_t = 0;
                // SAFETY: valid out-pointer; the destructor is an
                // `extern "C"` function that lives as long as the program.
                let rc = unsafe { libc::pthread_key_create(&mut key, Some(self.on_exit)) };
                if rc != 0 {
                    Err(rc)
                } else {
                    Ok(key)
                }
            })
            .copied()
    }

    /// Make sure the slot can be used (the key exists): the errno else.
    pub fn ready(&self) -> Result<(), i32> {
        self.key().map(|_| ())
    }

    /// Set this thread's value (null: nothing to do at exit). The pointer
    /// is only stored and handed back, never dereferenced here.
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    pub fn set(&self, value: *const libc::c_void) {
        if let Ok(key) = self.key() {
            // SAFETY: a key of ours; the value is only ever handed back.
            unsafe { libc::pthread_setspecific(key, value) };
        }
    }

    /// This thread's value, leaving null in its place.
    pub fn take(&self) -> *const libc::c_void {
        let Some(&key) = self.key.get() else {
            return std::ptr::null();
        };
        // SAFETY: a key of ours.
        let v = unsafe { libc::pthread_getspecific(key) };
        if !v.is_null() {
            // SAFETY: as above.
            unsafe { libc::pthread_setspecific(key, std::ptr::null()) };
        }
        v
    }
}
