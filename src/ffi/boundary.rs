// SPDX-License-Identifier: MIT OR Apache-2.0
//! The panic and error boundary every exported function goes through.
//!
//! `guard` runs the body under `catch_unwind`, turns an `Error` into
//! `-errno` (also setting the thread's `errno`, libbpf-style) and records
//! the error for `libuffd_last_error()`. Recording keeps the `Error` value
//! itself; the text is formatted only when somebody asks for it.
//!
//! The body runs with thread cancellation disabled (`NoCancel`): a
//! pthread_cancel() pending or arriving meanwhile waits for the next
//! cancellation point, and never starts a forced unwind among Rust frames
//! that have destructors or this `catch_unwind` (which would abort the
//! process). The exported waits that are cancellation points wait outside
//! the guard: see crate::sys::cancel.

use crate::sys::cancel::NoCancel;
use crate::uffd::Error;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Return types of exported functions: a value on success, `-errno` on
/// failure.
pub(crate) trait FromErrno {
    fn from_errno(errno: i32) -> Self;
}

impl FromErrno for i32 {
    fn from_errno(errno: i32) -> Self {
        -errno
    }
}

impl FromErrno for i64 {
    fn from_errno(errno: i32) -> Self {
        -(errno as i64)
    }
}

struct LastError {
    func: &'static str,
    error: Option<Error>,
    /// NUL-terminated text handed out by `libuffd_last_error`.
    text: Vec<u8>,
}

thread_local! {
    static LAST: RefCell<LastError> = const {
        RefCell::new(LastError { func: "", error: None, text: Vec::new() })
    };
}

/// Record `error` as the calling thread's last error.
pub(crate) fn record(func: &'static str, error: Error) -> i32 {
    let errno = error.errno();
    let _ = LAST.try_with(|l| {
        if let Ok(mut l) = l.try_borrow_mut() {
            l.func = func;
            l.error = Some(error);
        }
    });
    set_errno(errno);
    errno
}

fn set_errno(errno: i32) {
    // SAFETY: __errno_location returns this thread's errno slot, always
    // valid for writes.
    unsafe { *libc::__errno_location() = errno };
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}

/// Run `body` behind the boundary. `on_panic` runs if it panicked (used to
/// poison the handle involved).
pub(crate) fn guard_with<R: FromErrno>(
    func: &'static str,
    on_panic: impl FnOnce(),
    body: impl FnOnce() -> Result<R, Error>,
) -> R {
    let _no_cancel = NoCancel::new();
    // A panic in here is caught below: it must not print on stderr.
    let _quiet = crate::uffd::quiet::Scope::enter(None);
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => R::from_errno(record(func, e)),
        Err(payload) => {
            on_panic();
            // The hook kept the text with its location (uffd/quiet.rs).
            let msg =
                crate::uffd::quiet::take_pending().unwrap_or_else(|| panic_text(payload.as_ref()));
            R::from_errno(record(func, Error::Internal(msg)))
        }
    }
}

/// Run `body` like `guard`, for the exported functions that return
/// nothing (the `free` functions): a panic is swallowed.
pub(crate) fn guard_void(body: impl FnOnce()) {
    let _no_cancel = NoCancel::new();
    let _quiet = crate::uffd::quiet::Scope::enter(None);
    if catch_unwind(AssertUnwindSafe(body)).is_err() {
        let _ = crate::uffd::quiet::take_pending();
    }
}

/// `guard_with` for functions that involve no handle.
pub(crate) fn guard<R: FromErrno>(
    func: &'static str,
    body: impl FnOnce() -> Result<R, Error>,
) -> R {
    guard_with(func, || {}, body)
}

/// The text for `libuffd_last_error`: "function: detail", NUL-terminated,
/// valid until the thread's next libuffd call.
pub(crate) fn last_error_ptr() -> *const libc::c_char {
    static NONE: &[u8] = b"no error\0";
    LAST.try_with(|l| {
        let Ok(mut l) = l.try_borrow_mut() else {
            return NONE.as_ptr().cast();
        };
        let Some(error) = l.error.as_ref() else {
            return NONE.as_ptr().cast();
        };
        let mut text = format!("{}: {}", l.func, error).into_bytes();
        text.retain(|&b| b != 0);
        text.push(0);
        l.text = text;
        l.text.as_ptr().cast()
    })
    .unwrap_or(NONE.as_ptr().cast())
}
