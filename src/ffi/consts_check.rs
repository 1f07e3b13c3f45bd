// SPDX-License-Identifier: MIT OR Apache-2.0
//! Compile-time proof that every `LIBUFFD_*` constant of the C header
//! equals the value it stands for: the uAPI's (src/sys/uapi.rs) for the
//! kernel's flags, event codes and features, and the Rust type's for
//! libuffd's own flags. The header's constants have to be written out in
//! src/ffi for cbindgen; these assertions make a wrong one a build error.
//! The test at the bottom checks that no `LIBUFFD_*` constant is left
//! out of these lists.

use super::handoff_api::*;
use super::types::*;
use crate::sys::uapi as k;
use crate::uffd::{Features, OpenFlags};

/// `const` assertions that each pair is equal.
macro_rules! same {
    ($($c:ident == $v:expr,)*) => {
        $(const _: () = assert!($c as u64 == $v as u64, stringify!($c));)*
        /// The names checked above (for the completeness test).
        #[cfg(test)]
        const CHECKED: &[&str] = &[$(stringify!($c)),*];
    };
}

/// Every named feature bit, or'ed (the unnamed `_` flag keeps unknown
/// bits and is skipped).
const fn named_features() -> u64 {
    let flags = <Features as bitflags::Flags>::FLAGS;
    let mut i = 0;
    let mut all = 0;
    while i < flags.len() {
        if flags[i].is_named() {
            all |= flags[i].value().bits();
        }
        i += 1;
    }
    all
}

same! {
    LIBUFFD_FEATURE_PAGEFAULT_FLAG_WP == k::UFFD_FEATURE_PAGEFAULT_FLAG_WP,
    LIBUFFD_FEATURE_EVENT_FORK == k::UFFD_FEATURE_EVENT_FORK,
    LIBUFFD_FEATURE_EVENT_REMAP == k::UFFD_FEATURE_EVENT_REMAP,
    LIBUFFD_FEATURE_EVENT_REMOVE == k::UFFD_FEATURE_EVENT_REMOVE,
    LIBUFFD_FEATURE_MISSING_HUGETLBFS == k::UFFD_FEATURE_MISSING_HUGETLBFS,
    LIBUFFD_FEATURE_MISSING_SHMEM == k::UFFD_FEATURE_MISSING_SHMEM,
    LIBUFFD_FEATURE_EVENT_UNMAP == k::UFFD_FEATURE_EVENT_UNMAP,
    LIBUFFD_FEATURE_SIGBUS == k::UFFD_FEATURE_SIGBUS,
    LIBUFFD_FEATURE_THREAD_ID == k::UFFD_FEATURE_THREAD_ID,
    LIBUFFD_FEATURE_MINOR_HUGETLBFS == k::UFFD_FEATURE_MINOR_HUGETLBFS,
    LIBUFFD_FEATURE_MINOR_SHMEM == k::UFFD_FEATURE_MINOR_SHMEM,
    LIBUFFD_FEATURE_EXACT_ADDRESS == k::UFFD_FEATURE_EXACT_ADDRESS,
    LIBUFFD_FEATURE_WP_HUGETLBFS_SHMEM == k::UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
    LIBUFFD_FEATURE_WP_UNPOPULATED == k::UFFD_FEATURE_WP_UNPOPULATED,
    LIBUFFD_FEATURE_POISON == k::UFFD_FEATURE_POISON,
    LIBUFFD_FEATURE_WP_ASYNC == k::UFFD_FEATURE_WP_ASYNC,
    LIBUFFD_FEATURE_MOVE == k::UFFD_FEATURE_MOVE,
    LIBUFFD_FEATURES_KNOWN == named_features(),
    LIBUFFD_REGISTER_MISSING == k::UFFDIO_REGISTER_MODE_MISSING,
    LIBUFFD_REGISTER_WP == k::UFFDIO_REGISTER_MODE_WP,
    LIBUFFD_REGISTER_MINOR == k::UFFDIO_REGISTER_MODE_MINOR,
    LIBUFFD_IOCTL_WAKE == 1u64 << k::NR_WAKE,
    LIBUFFD_IOCTL_COPY == 1u64 << k::NR_COPY,
    LIBUFFD_IOCTL_ZEROPAGE == 1u64 << k::NR_ZEROPAGE,
    LIBUFFD_IOCTL_MOVE == 1u64 << k::NR_MOVE,
    LIBUFFD_IOCTL_WRITEPROTECT == 1u64 << k::NR_WRITEPROTECT,
    LIBUFFD_IOCTL_CONTINUE == 1u64 << k::NR_CONTINUE,
    LIBUFFD_IOCTL_POISON == 1u64 << k::NR_POISON,
    LIBUFFD_COPY_DONTWAKE == k::UFFDIO_COPY_MODE_DONTWAKE,
    LIBUFFD_COPY_WP == k::UFFDIO_COPY_MODE_WP,
    LIBUFFD_ZEROPAGE_DONTWAKE == k::UFFDIO_ZEROPAGE_MODE_DONTWAKE,
    LIBUFFD_WRITEPROTECT_WP == k::UFFDIO_WRITEPROTECT_MODE_WP,
    LIBUFFD_WRITEPROTECT_DONTWAKE == k::UFFDIO_WRITEPROTECT_MODE_DONTWAKE,
    LIBUFFD_CONTINUE_DONTWAKE == k::UFFDIO_CONTINUE_MODE_DONTWAKE,
    LIBUFFD_CONTINUE_WP == k::UFFDIO_CONTINUE_MODE_WP,
    LIBUFFD_POISON_DONTWAKE == k::UFFDIO_POISON_MODE_DONTWAKE,
    LIBUFFD_MOVE_DONTWAKE == k::UFFDIO_MOVE_MODE_DONTWAKE,
    LIBUFFD_MOVE_ALLOW_SRC_HOLES == k::UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES,
    LIBUFFD_EVENT_PAGEFAULT == k::UFFD_EVENT_PAGEFAULT,
    LIBUFFD_EVENT_FORK == k::UFFD_EVENT_FORK,
    LIBUFFD_EVENT_REMAP == k::UFFD_EVENT_REMAP,
    LIBUFFD_EVENT_REMOVE == k::UFFD_EVENT_REMOVE,
    LIBUFFD_EVENT_UNMAP == k::UFFD_EVENT_UNMAP,
    LIBUFFD_PAGEFAULT_FLAG_WRITE == k::UFFD_PAGEFAULT_FLAG_WRITE,
    LIBUFFD_PAGEFAULT_FLAG_WP == k::UFFD_PAGEFAULT_FLAG_WP,
    LIBUFFD_PAGEFAULT_FLAG_MINOR == k::UFFD_PAGEFAULT_FLAG_MINOR,
    // libuffd's own values, also declared by a Rust type.
    LIBUFFD_OPEN_NONBLOCK == OpenFlags::NONBLOCK.bits(),
    LIBUFFD_OPEN_USER_ONLY == OpenFlags::USER_ONLY.bits(),
    LIBUFFD_OPEN_NO_CLOEXEC == OpenFlags::NO_CLOEXEC.bits(),
    LIBUFFD_OPEN_NO_SYSCALL == OpenFlags::NO_SYSCALL.bits(),
    LIBUFFD_OPEN_NO_DEV == OpenFlags::NO_DEV.bits(),
    LIBUFFD_LATENCY_BUCKETS == crate::monitor::LATENCY_BUCKETS,
    LIBUFFD_HANDOFF_MAX_REGIONS == crate::handoff::MAX_REGIONS,
    LIBUFFD_HANDOFF_VERSION == crate::handoff::VERSION,
}

/// `LIBUFFD_*` constants that are the C ABI's own (enumerations of
/// `int` fields, C-only flag words, the version, which a unit test of
/// version.rs ties to Cargo.toml): nothing else declares them.
#[cfg(test)]
const C_ONLY: &[&str] = &[
    "LIBUFFD_VERSION_MAJOR",
    "LIBUFFD_VERSION_MINOR",
    "LIBUFFD_VERSION_PATCH",
    "LIBUFFD_HANDLE_MODE_UNKNOWN",
    "LIBUFFD_MONITOR_FIXED_WINDOW",
    "LIBUFFD_MONITOR_NO_FORK_SERVE",
    "LIBUFFD_MONITOR_NO_RELEASE_ON_STOP",
    "LIBUFFD_MONITOR_HAND_OFF_ALL",
    "LIBUFFD_ON_ERROR_SIGBUS",
    "LIBUFFD_ON_ERROR_RETRY",
    "LIBUFFD_ON_ERROR_STOP",
    "LIBUFFD_ON_STOP_DEFAULT",
    "LIBUFFD_ON_STOP_BLOCK",
    "LIBUFFD_ON_STOP_SIGBUS",
    "LIBUFFD_ON_STOP_ZERO",
    "LIBUFFD_ON_REMOVE_ZERO",
    "LIBUFFD_ON_REMOVE_UNREGISTER",
    "LIBUFFD_ON_REMOVE_REFILL",
    "LIBUFFD_SOURCE_ZERO",
    "LIBUFFD_SOURCE_BUFFER",
    "LIBUFFD_SOURCE_FD",
    "LIBUFFD_SOURCE_CALLBACK",
    "LIBUFFD_SOURCE_PAGE_CACHE",
    "LIBUFFD_SOURCE_REMOTE",
    "LIBUFFD_REGION_PREFETCH",
    "LIBUFFD_REGION_ZERO_PAST_EOF",
    "LIBUFFD_REGION_TRACK_DIRTY",
    "LIBUFFD_REGION_DIRTY_SYNC",
    "LIBUFFD_DIRTY_CLEAR",
    "LIBUFFD_SNAPSHOT_TO_BUFFER",
    "LIBUFFD_SNAPSHOT_TO_FD",
    "LIBUFFD_REGION_WRITEBACK_FD",
    "LIBUFFD_REGION_WRITEBACK_CALLBACK",
    "LIBUFFD_REGION_READ_ONLY",
    "LIBUFFD_ON_FAULT_HANDLED",
    "LIBUFFD_ON_FAULT_USE_SOURCE",
    "LIBUFFD_ON_FAULT_DEFER",
    "LIBUFFD_ON_FAULT_STOP",
    "LIBUFFD_ON_FAULT_RESOLVED_BY_CALLER",
    "LIBUFFD_ON_FORK_SERVE",
    "LIBUFFD_ON_FORK_TAKEN",
    "LIBUFFD_ON_FORK_CLOSE",
    "LIBUFFD_RESOLVE_DONE",
    "LIBUFFD_RESOLVE_ALREADY_DONE",
    "LIBUFFD_RESOLVE_GONE",
    "LIBUFFD_RECV_CHECK_UID",
    "LIBUFFD_RECV_CHECK_PID",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `pub const LIBUFFD_*` in src/ffi is either checked above or
    /// listed as the C ABI's own, and nothing is listed twice.
    #[test]
    fn every_constant_is_accounted_for() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/ffi");
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for line in text.lines() {
                    if let Some(rest) = line.trim_start().strip_prefix("pub const LIBUFFD_") {
                        let name = rest.split(':').next().unwrap().trim();
                        found.push(format!("LIBUFFD_{name}"));
                    }
                }
            }
        }
        assert!(found.len() > 50, "parsed only {} constants", found.len());
        for name in &found {
            let n = CHECKED.iter().chain(C_ONLY).filter(|c| *c == name).count();
            assert_eq!(
                n, 1,
                "{name}: listed {n} times in consts_check.rs (want once)"
            );
        }
        for name in CHECKED.iter().chain(C_ONLY) {
            assert!(found.iter().any(|f| f == name), "{name}: no such constant");
        }
    }
}
