// SPDX-License-Identifier: MIT OR Apache-2.0
//! Checks on the address ranges libuffd's own functions take (the
//! monitor's regions). The userfaultfd operations do not use them: they
//! leave every argument to the kernel, whose errno is the answer, and
//! explain a refusal afterwards (see `diagnose`).

use super::error::{Error, Result};
use crate::sys::base_page_size;

/// An address range `[start, start + len)` in the memory a userfaultfd
/// serves (this process's, or another's when the descriptor came from a
/// FORK event or over a socket).
///
/// Plain numbers, checked by nobody but the kernel: the operations pass
/// them as given, so a range the kernel refuses gets exactly the kernel's
/// errno (and libuffd's explanation in the error's text).
///
/// ```
/// use uffd::Range;
/// let buf = [0u8; 64];
/// let r = Range::of_ptr(buf.as_ptr(), buf.len());
/// assert_eq!(r.len, 64);
/// assert_eq!(r.end(), r.start + 64);
/// assert_eq!(Range::new(0x1000, 0x2000).end(), 0x3000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Range {
    /// The first address.
    pub start: u64,
    /// The length in bytes.
    pub len: u64,
}

impl Range {
    /// `[start, start + len)`.
    pub const fn new(start: u64, len: u64) -> Range {
        Range { start, len }
    }

    /// The range of `len` bytes at `ptr` (in this process).
    pub fn of_ptr<T>(ptr: *const T, len: usize) -> Range {
        Range::new(ptr as usize as u64, len as u64)
    }

    /// The address one past the end (wrapping, as the kernel would see a
    /// range that wraps: it refuses it).
    pub const fn end(&self) -> u64 {
        self.start.wrapping_add(self.len)
    }
}

/// A [`Range`] handed over to userfaultfd: memory in which no Rust value
/// or reference of this process lives (a mapping made for the purpose, or
/// another process's memory), so that the kernel may place pages there,
/// move them out or poison them behind the compiler's back.
///
/// The monitor takes one wherever it will change memory on the caller's
/// behalf ([`Monitor::add_region`](crate::monitor::Monitor::add_region),
/// [`Action::Move`](crate::monitor::Action::Move)). Only the caller can
/// know it, so making one is `unsafe`:
///
/// ```compile_fail,E0133
/// let v = vec![0u8; 4096];
/// let h = uffd::HandedOver::new(uffd::Range::of_ptr(v.as_ptr(), v.len()));
/// ```
///
/// ```
/// use uffd::{HandedOver, Range};
/// // SAFETY: a fresh anonymous mapping; no Rust value lives in it.
/// let p = unsafe {
///     libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE,
///                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
/// };
/// assert_ne!(p, libc::MAP_FAILED);
/// // SAFETY: as above, for as long as the mapping is used with userfaultfd.
/// let h = unsafe { HandedOver::new(Range::of_ptr(p, 4096)) };
/// assert_eq!(h.range().len, 4096);
/// # unsafe { libc::munmap(p, 4096) };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandedOver(Range);

impl HandedOver {
    /// The caller's promise that `range` is memory userfaultfd may change.
    ///
    /// # Safety
    ///
    /// As long as this value, or a copy, is in use (given to a monitor
    /// that may still serve it), no Rust value or reference of this
    /// process may cover `range` (see [`Uffd::copy`](crate::Uffd::copy)):
    /// its bytes will be whatever the kernel places there.
    #[allow(unsafe_code)] // the declaration only: the contract is the caller's
    pub const unsafe fn new(range: Range) -> HandedOver {
        HandedOver(range)
    }

    /// The range.
    pub const fn range(&self) -> Range {
        self.0
    }
}

/// Check `[start, start+len)`: non-empty, no wrap past the end of the
/// address space, and both ends aligned to the base page size. `what`
/// names the argument in the error message ("dst", "range", ...).
pub(crate) fn check_range(op: &str, what: &str, start: u64, len: u64) -> Result<()> {
    let page = base_page_size();
    if len == 0 {
        return Err(Error::invalid(format!("{op}: {what} length is 0")));
    }
    if start.checked_add(len).is_none() {
        return Err(Error::invalid(format!(
            "{op}: {what} [{start:#x}, +{len:#x}) wraps past the end of the address space"
        )));
    }
    if start % page != 0 {
        return Err(Error::invalid(format!(
            "{op}: {what} start {start:#x} is not aligned to the {page}-byte page size"
        )));
    }
    if len % page != 0 {
        return Err(Error::invalid(format!(
            "{op}: {what} length {len:#x} is not a multiple of the {page}-byte page size"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_ranges() {
        let p = base_page_size();
        assert!(check_range("t", "range", 0, 0).is_err());
        assert!(check_range("t", "range", 1, p).is_err());
        assert!(check_range("t", "range", p, p + 1).is_err());
        assert!(check_range("t", "range", u64::MAX - p + 1, 2 * p).is_err());
        assert!(check_range("t", "range", p, p).is_ok());
        let e = check_range("COPY", "dst", 0, 0).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL);
        assert!(e.to_string().contains("length is 0"));
    }
}
