//! The Rust object behind `libuffd_handle *`, and checked conversions from
//! the pointers C passes in.

use super::types::libuffd_handle;
use crate::uffd::{Error, Uffd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What a `libuffd_handle *` points to: an `Arc` so that later objects (the
/// monitor) can share it; C holds one reference.
pub(crate) struct Handle {
    pub uffd: Arc<Uffd>,
    /// Set when a panic escaped an operation on this handle; every later
    /// call fails with -ENOTRECOVERABLE.
    poisoned: AtomicBool,
}

impl Handle {
    pub fn new(uffd: Uffd) -> Arc<Handle> {
        Arc::new(Handle {
            uffd: Arc::new(uffd),
            poisoned: AtomicBool::new(false),
        })
    }

    pub fn poison(&self) {
        self.poisoned.store(true, Ordering::Release);
    }
}

/// Give one reference to C.
pub(crate) fn into_c(h: Arc<Handle>) -> *mut libuffd_handle {
    Arc::into_raw(h) as *mut libuffd_handle
}

/// Borrow the handle behind a C pointer, rejecting NULL and poisoned ones.
///
/// # Safety
/// `ptr` is NULL or a pointer returned by `into_c` and not yet freed.
pub(crate) unsafe fn borrow<'a>(ptr: *const libuffd_handle) -> Result<&'a Handle, Error> {
    if ptr.is_null() {
        return Err(Error::invalid("handle is NULL"));
    }
    // SAFETY: per the contract, ptr came from Arc::into_raw of a Handle
    // and C still holds that reference, so it points to a live Handle.
    let h = unsafe { &*(ptr as *const Handle) };
    if h.poisoned.load(Ordering::Acquire) {
        return Err(Error::Internal(
            "this handle was poisoned by an earlier internal error; free it".into(),
        ));
    }
    Ok(h)
}

/// Take C's reference back (for libuffd_handle_free).
///
/// # Safety
/// `ptr` is a pointer returned by `into_c`, freed at most once.
pub(crate) unsafe fn release(ptr: *mut libuffd_handle) {
    // SAFETY: per the contract, this reverses exactly one Arc::into_raw.
    drop(unsafe { Arc::from_raw(ptr as *const Handle) });
}
