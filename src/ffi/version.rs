// SPDX-License-Identifier: MIT OR Apache-2.0
//! Run-time version queries.

use super::types::*;

/// The version of the loaded library as (major << 16) | (minor << 8) |
/// patch; compare with LIBUFFD_VERSION_MAJOR/MINOR/PATCH of the header.
///
/// Thread safety: may be called from any thread.
#[no_mangle]
pub extern "C" fn libuffd_version() -> u32 {
    (LIBUFFD_VERSION_MAJOR << 16) | (LIBUFFD_VERSION_MINOR << 8) | LIBUFFD_VERSION_PATCH
}

/// The version of the loaded library as a static string, "1.0.0".
///
/// Thread safety: may be called from any thread.
#[no_mangle]
pub extern "C" fn libuffd_version_string() -> *const libc::c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_version_matches_cargo() {
        let v = format!("{LIBUFFD_VERSION_MAJOR}.{LIBUFFD_VERSION_MINOR}.{LIBUFFD_VERSION_PATCH}");
        assert_eq!(v, env!("CARGO_PKG_VERSION"));
        assert_eq!(libuffd_version(), 0x010000);
    }
}
