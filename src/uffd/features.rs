// SPDX-License-Identifier: MIT OR Apache-2.0
//! Flag sets: features, registration modes, ioctl masks, fault flags and
//! per-operation modes. Unknown bits are kept (`from_bits_retain`) so that
//! features of kernels newer than 6.18 pass through untouched.

use crate::sys::uapi as k;

bitflags::bitflags! {
    /// `uffdio_api.features` bits.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Features: u64 {
        const PAGEFAULT_FLAG_WP = k::UFFD_FEATURE_PAGEFAULT_FLAG_WP;
        const EVENT_FORK = k::UFFD_FEATURE_EVENT_FORK;
        const EVENT_REMAP = k::UFFD_FEATURE_EVENT_REMAP;
        const EVENT_REMOVE = k::UFFD_FEATURE_EVENT_REMOVE;
        const MISSING_HUGETLBFS = k::UFFD_FEATURE_MISSING_HUGETLBFS;
        const MISSING_SHMEM = k::UFFD_FEATURE_MISSING_SHMEM;
        const EVENT_UNMAP = k::UFFD_FEATURE_EVENT_UNMAP;
        const SIGBUS = k::UFFD_FEATURE_SIGBUS;
        const THREAD_ID = k::UFFD_FEATURE_THREAD_ID;
        const MINOR_HUGETLBFS = k::UFFD_FEATURE_MINOR_HUGETLBFS;
        const MINOR_SHMEM = k::UFFD_FEATURE_MINOR_SHMEM;
        const EXACT_ADDRESS = k::UFFD_FEATURE_EXACT_ADDRESS;
        const WP_HUGETLBFS_SHMEM = k::UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
        const WP_UNPOPULATED = k::UFFD_FEATURE_WP_UNPOPULATED;
        const POISON = k::UFFD_FEATURE_POISON;
        const WP_ASYNC = k::UFFD_FEATURE_WP_ASYNC;
        const MOVE = k::UFFD_FEATURE_MOVE;
        // Keep bits this crate does not know by name.
        const _ = !0;
    }
}

bitflags::bitflags! {
    /// `uffdio_register.mode` bits.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct RegisterMode: u64 {
        const MISSING = k::UFFDIO_REGISTER_MODE_MISSING;
        const WP = k::UFFDIO_REGISTER_MODE_WP;
        const MINOR = k::UFFDIO_REGISTER_MODE_MINOR;
    }
}

bitflags::bitflags! {
    /// The ioctl mask the kernel returns (`1 << _UFFDIO_x`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Ioctls: u64 {
        const REGISTER = 1 << k::NR_REGISTER;
        const UNREGISTER = 1 << k::NR_UNREGISTER;
        const WAKE = 1 << k::NR_WAKE;
        const COPY = 1 << k::NR_COPY;
        const ZEROPAGE = 1 << k::NR_ZEROPAGE;
        const MOVE = 1 << k::NR_MOVE;
        const WRITEPROTECT = 1 << k::NR_WRITEPROTECT;
        const CONTINUE = 1 << k::NR_CONTINUE;
        const POISON = 1 << k::NR_POISON;
        const API = 1 << k::NR_API;
        const _ = !0;
    }
}

bitflags::bitflags! {
    /// What kind of access faulted (`uffd_msg.arg.pagefault.flags`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct FaultFlags: u64 {
        const WRITE = k::UFFD_PAGEFAULT_FLAG_WRITE;
        const WP = k::UFFD_PAGEFAULT_FLAG_WP;
        const MINOR = k::UFFD_PAGEFAULT_FLAG_MINOR;
        const _ = !0;
    }
}

/// Mode bits each operation accepts; the kernel refuses anything else
/// with EINVAL (used to explain that refusal).
pub mod modes {
    use crate::sys::uapi as k;
    pub const COPY: u64 = k::UFFDIO_COPY_MODE_DONTWAKE | k::UFFDIO_COPY_MODE_WP;
    pub const ZEROPAGE: u64 = k::UFFDIO_ZEROPAGE_MODE_DONTWAKE;
    pub const WRITEPROTECT: u64 =
        k::UFFDIO_WRITEPROTECT_MODE_WP | k::UFFDIO_WRITEPROTECT_MODE_DONTWAKE;
    pub const CONTINUE: u64 = k::UFFDIO_CONTINUE_MODE_DONTWAKE | k::UFFDIO_CONTINUE_MODE_WP;
    pub const POISON: u64 = k::UFFDIO_POISON_MODE_DONTWAKE;
    pub const MOVE: u64 = k::UFFDIO_MOVE_MODE_DONTWAKE | k::UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES;
    pub const REGISTER: u64 = k::UFFDIO_REGISTER_MODE_MISSING
        | k::UFFDIO_REGISTER_MODE_WP
        | k::UFFDIO_REGISTER_MODE_MINOR;
}

const FEATURE_NAMES: [(u64, &str); 17] = [
    (k::UFFD_FEATURE_PAGEFAULT_FLAG_WP, "PAGEFAULT_FLAG_WP"),
    (k::UFFD_FEATURE_EVENT_FORK, "EVENT_FORK"),
    (k::UFFD_FEATURE_EVENT_REMAP, "EVENT_REMAP"),
    (k::UFFD_FEATURE_EVENT_REMOVE, "EVENT_REMOVE"),
    (k::UFFD_FEATURE_MISSING_HUGETLBFS, "MISSING_HUGETLBFS"),
    (k::UFFD_FEATURE_MISSING_SHMEM, "MISSING_SHMEM"),
    (k::UFFD_FEATURE_EVENT_UNMAP, "EVENT_UNMAP"),
    (k::UFFD_FEATURE_SIGBUS, "SIGBUS"),
    (k::UFFD_FEATURE_THREAD_ID, "THREAD_ID"),
    (k::UFFD_FEATURE_MINOR_HUGETLBFS, "MINOR_HUGETLBFS"),
    (k::UFFD_FEATURE_MINOR_SHMEM, "MINOR_SHMEM"),
    (k::UFFD_FEATURE_EXACT_ADDRESS, "EXACT_ADDRESS"),
    (k::UFFD_FEATURE_WP_HUGETLBFS_SHMEM, "WP_HUGETLBFS_SHMEM"),
    (k::UFFD_FEATURE_WP_UNPOPULATED, "WP_UNPOPULATED"),
    (k::UFFD_FEATURE_POISON, "POISON"),
    (k::UFFD_FEATURE_WP_ASYNC, "WP_ASYNC"),
    (k::UFFD_FEATURE_MOVE, "MOVE"),
];

/// Human-readable names of the bits in `mask`: "MOVE|POISON|bit17".
pub fn feature_names(mask: u64) -> String {
    let mut out = String::new();
    for bit in 0..64 {
        let b = 1u64 << bit;
        if mask & b == 0 {
            continue;
        }
        if !out.is_empty() {
            out.push('|');
        }
        match FEATURE_NAMES.iter().find(|(v, _)| *v == b) {
            Some((_, name)) => out.push_str(name),
            None => out.push_str(&format!("bit{bit}")),
        }
    }
    if out.is_empty() {
        out.push_str("none");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_known_and_unknown_bits() {
        assert_eq!(feature_names(0x10000 | 0x4000), "POISON|MOVE");
        assert_eq!(feature_names(1 << 17), "bit17");
        assert_eq!(feature_names(0), "none");
    }

    #[test]
    fn unknown_bits_are_retained() {
        let f = Features::from_bits_retain(1 << 20 | 1);
        assert_eq!(f.bits(), 1 << 20 | 1);
        assert!(f.contains(Features::PAGEFAULT_FLAG_WP));
    }
}
