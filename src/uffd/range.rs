// SPDX-License-Identifier: MIT OR Apache-2.0
//! Checks on the address ranges libuffd's own functions take (the
//! monitor's regions). The userfaultfd operations do not use them: they
//! leave every argument to the kernel, whose errno is the answer, and
//! explain a refusal afterwards (see `diagnose`).

use super::error::{Error, Result};
use crate::sys::base_page_size;

/// Check `[start, start+len)`: non-empty, no wrap past the end of the
/// address space, and both ends aligned to the base page size. `what`
/// names the argument in the error message ("dst", "range", ...).
pub fn check_range(op: &str, what: &str, start: u64, len: u64) -> Result<()> {
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
