// SPDX-License-Identifier: MIT OR Apache-2.0
//! The signal mask of the threads the library creates.

/// The calling thread's signal mask before `block_all`; restored on drop.
pub struct Blocked(libc::sigset_t);

/// Block every signal in the calling thread until the returned guard is
/// dropped. A thread created meanwhile starts with every signal blocked
/// (it inherits its creator's mask), so a signal sent to the process is
/// never delivered to it: the library's threads run none of the host's
/// handlers. (glibc keeps the signals it needs for itself, such as the
/// one setuid(2) uses across threads, out of any mask.)
pub fn block_all() -> Blocked {
    // SAFETY: sigset_t is plain data; sigfillset initialises it.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid sigset pointers; pthread_sigmask only fails for a bad
    // `how`, and SIG_SETMASK is valid.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    Blocked(old)
}

impl Drop for Blocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by block_all.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}
