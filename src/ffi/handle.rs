// SPDX-License-Identifier: MIT OR Apache-2.0
//! The Rust object behind `libuffd_handle *`, and checked conversions from
//! the pointers C passes in.

use super::types::libuffd_handle;
use crate::uffd::{Error, Uffd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// The first word of every object libuffd hands to C (`Handle`,
/// `MonitorBox`): what it is, so that a pointer of the wrong kind (a
/// monitor passed as a handle) or a freed one is refused with -EINVAL
/// where it can be told, instead of being used as the wrong type.
pub(crate) const HANDLE_TAG: u64 = u64::from_le_bytes(*b"uffd.HDL");
pub(crate) const MONITOR_TAG: u64 = u64::from_le_bytes(*b"uffd.MON");
/// Written over the tag when the object is freed.
pub(crate) const SNAPSHOT_TAG: u64 = u64::from_le_bytes(*b"uffd.SNP");
pub(crate) const DEAD_TAG: u64 = u64::from_le_bytes(*b"uffd.DED");

/// Check the tag at `ptr` (non-NULL) against `want`.
///
/// # Safety
/// `ptr` points to at least 8 readable bytes (every object libuffd gives C
/// starts with its tag; a pointer of another kind from libuffd does too;
/// a freed one is read as the detection of misuse it is there for).
pub(crate) unsafe fn check_tag(
    ptr: *const libc::c_void,
    want: u64,
    what: &str,
) -> Result<(), Error> {
    let kind = |t: u64| match t {
        HANDLE_TAG => "a libuffd_handle",
        MONITOR_TAG => "a libuffd_monitor",
        SNAPSHOT_TAG => "a libuffd_snapshot",
        DEAD_TAG => "an object already freed",
        _ => "not an object of libuffd (a wrong or freed pointer)",
    };
    if ptr as usize % std::mem::align_of::<AtomicU64>() != 0 {
        return Err(Error::invalid(format!(
            "{what} {ptr:p} is misaligned: not a pointer libuffd returned"
        )));
    }
    // SAFETY: aligned (checked) and readable per the contract; atomic, as
    // the owner writes it when it frees the object.
    let tag = unsafe { (*(ptr as *const AtomicU64)).load(Ordering::Acquire) };
    if tag == want {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "{what} {ptr:p} is {}, not {}",
        kind(tag),
        kind(want)
    )))
}

/// What a `libuffd_handle *` points to: an `Arc` so that later objects (the
/// monitor) can share it; C holds one reference. The tag comes first.
#[repr(C)]
pub(crate) struct Handle {
    tag: AtomicU64,
    pub uffd: Arc<Uffd>,
    /// Set when a panic escaped an operation on this handle; every later
    /// call fails with -ENOTRECOVERABLE.
    poisoned: AtomicBool,
}

impl Handle {
    pub fn new(uffd: Uffd) -> Arc<Handle> {
        Arc::new(Handle {
            tag: AtomicU64::new(HANDLE_TAG),
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
    // SAFETY: per the contract, ptr came from libuffd (a handle, or by
    // mistake another of its objects, which also start with a tag).
    unsafe { check_tag(ptr.cast(), HANDLE_TAG, "handle") }?;
    // SAFETY: per the contract, ptr came from Arc::into_raw of a Handle
    // (its tag says so) and C still holds that reference.
    let h = unsafe { &*(ptr as *const Handle) };
    if h.poisoned.load(Ordering::Acquire) {
        return Err(Error::Internal(
            "this handle was poisoned by an earlier internal error; free it".into(),
        ));
    }
    Ok(h)
}

/// Take C's reference back (for libuffd_handle_free). A pointer that is
/// not a live handle (its tag) is refused and left alone.
///
/// # Safety
/// `ptr` is non-NULL, a pointer returned by `into_c`, freed at most once
/// (what `check_tag` can tell of a violation is refused).
pub(crate) unsafe fn release(ptr: *mut libuffd_handle) -> Result<(), Error> {
    // SAFETY: per the contract.
    unsafe { check_tag(ptr.cast(), HANDLE_TAG, "libuffd_handle_free: handle") }?;
    // SAFETY: per the contract, this reverses exactly one Arc::into_raw;
    // the tag is marked dead first (C held the only reference).
    let h = unsafe { Arc::from_raw(ptr as *const Handle) };
    h.tag.store(DEAD_TAG, Ordering::Release);
    drop(h);
    Ok(())
}
