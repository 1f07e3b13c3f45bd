// SPDX-License-Identifier: MIT OR Apache-2.0
//! Locks taken through poison.
//!
//! A poisoned lock only means that some thread panicked while it held the
//! guard. The monitor's callbacks run outside its locks and under
//! `catch_unwind`, and no lock's data is left half-updated across a call
//! that could panic, so the data behind a poisoned lock is still whole:
//! refusing it would turn one caught panic into a stuck monitor (a thread
//! never released). Every lock and condvar wait of the monitor therefore
//! goes through these helpers, which return the guard, poison or not.

use std::sync::{LockResult, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// `Mutex::lock`, poison or not.
pub(crate) trait LockOk<T: ?Sized> {
    fn lock_ok(&self) -> MutexGuard<'_, T>;
}

/// `RwLock::read` and `RwLock::write`, poison or not.
pub(crate) trait RwOk<T: ?Sized> {
    fn read_ok(&self) -> RwLockReadGuard<'_, T>;
    fn write_ok(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> LockOk<T> for Mutex<T> {
    fn lock_ok(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: ?Sized> RwOk<T> for RwLock<T> {
    fn read_ok(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write_ok(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The value of a condvar wait (or any `LockResult`), poison or not.
pub(crate) fn unpoisoned<G>(r: LockResult<G>) -> G {
    r.unwrap_or_else(|e| e.into_inner())
}
