// SPDX-License-Identifier: MIT OR Apache-2.0
//! Flag sets: features, registration modes, ioctl masks, fault flags and
//! per-operation modes. Unknown bits are kept (`from_bits_retain`) so that
//! features of kernels newer than 6.18 pass through untouched.

use crate::sys::uapi as k;

bitflags::bitflags! {
    /// `uffdio_api.features` bits: what a userfaultfd may do beyond
    /// anonymous MISSING faults. Their names here are the one list of
    /// feature names ([`feature_names`] and the error texts use it).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Features: u64 {
        /// WP registration and write-protect faults on anonymous memory.
        const PAGEFAULT_FLAG_WP = k::UFFD_FEATURE_PAGEFAULT_FLAG_WP;
        /// FORK events: a forked child's memory gets its own userfaultfd.
        const EVENT_FORK = k::UFFD_FEATURE_EVENT_FORK;
        /// REMAP events (mremap of a registered range).
        const EVENT_REMAP = k::UFFD_FEATURE_EVENT_REMAP;
        /// REMOVE events (madvise DONTNEED/FREE/REMOVE).
        const EVENT_REMOVE = k::UFFD_FEATURE_EVENT_REMOVE;
        /// MISSING registration of hugetlbfs memory.
        const MISSING_HUGETLBFS = k::UFFD_FEATURE_MISSING_HUGETLBFS;
        /// MISSING registration of shmem memory.
        const MISSING_SHMEM = k::UFFD_FEATURE_MISSING_SHMEM;
        /// UNMAP events (munmap of a registered range).
        const EVENT_UNMAP = k::UFFD_FEATURE_EVENT_UNMAP;
        /// Faults raise SIGBUS instead of sending messages.
        const SIGBUS = k::UFFD_FEATURE_SIGBUS;
        /// Fault messages carry the faulting thread's id.
        const THREAD_ID = k::UFFD_FEATURE_THREAD_ID;
        /// MINOR registration of hugetlbfs memory.
        const MINOR_HUGETLBFS = k::UFFD_FEATURE_MINOR_HUGETLBFS;
        /// MINOR registration of shmem memory.
        const MINOR_SHMEM = k::UFFD_FEATURE_MINOR_SHMEM;
        /// Fault messages carry the unmasked faulting address.
        const EXACT_ADDRESS = k::UFFD_FEATURE_EXACT_ADDRESS;
        /// WP registration of hugetlbfs and shmem memory.
        const WP_HUGETLBFS_SHMEM = k::UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
        /// Write protection applies to pages not populated yet.
        const WP_UNPOPULATED = k::UFFD_FEATURE_WP_UNPOPULATED;
        /// UFFDIO_POISON.
        const POISON = k::UFFD_FEATURE_POISON;
        /// Write-protect faults resolved by the kernel itself.
        const WP_ASYNC = k::UFFD_FEATURE_WP_ASYNC;
        /// UFFDIO_MOVE.
        const MOVE = k::UFFD_FEATURE_MOVE;
        // Keep bits this crate does not know by name.
        const _ = !0;
    }
}

bitflags::bitflags! {
    /// `uffdio_register.mode` bits: which faults of a range are reported.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct RegisterMode: u64 {
        /// Faults on missing pages.
        const MISSING = k::UFFDIO_REGISTER_MODE_MISSING;
        /// Writes to write-protected pages.
        const WP = k::UFFDIO_REGISTER_MODE_WP;
        /// Faults on pages present in the page cache but not mapped.
        const MINOR = k::UFFDIO_REGISTER_MODE_MINOR;
    }
}

bitflags::bitflags! {
    /// The ioctl mask the kernel returns (`1 << _UFFDIO_x`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Ioctls: u64 {
        /// UFFDIO_REGISTER.
        const REGISTER = 1 << k::NR_REGISTER;
        /// UFFDIO_UNREGISTER.
        const UNREGISTER = 1 << k::NR_UNREGISTER;
        /// UFFDIO_WAKE.
        const WAKE = 1 << k::NR_WAKE;
        /// UFFDIO_COPY.
        const COPY = 1 << k::NR_COPY;
        /// UFFDIO_ZEROPAGE.
        const ZEROPAGE = 1 << k::NR_ZEROPAGE;
        /// UFFDIO_MOVE.
        const MOVE = 1 << k::NR_MOVE;
        /// UFFDIO_WRITEPROTECT.
        const WRITEPROTECT = 1 << k::NR_WRITEPROTECT;
        /// UFFDIO_CONTINUE.
        const CONTINUE = 1 << k::NR_CONTINUE;
        /// UFFDIO_POISON.
        const POISON = 1 << k::NR_POISON;
        /// UFFDIO_API.
        const API = 1 << k::NR_API;
        const _ = !0;
    }
}

bitflags::bitflags! {
    /// What kind of access faulted (`uffd_msg.arg.pagefault.flags`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct FaultFlags: u64 {
        /// The access was a write.
        const WRITE = k::UFFD_PAGEFAULT_FLAG_WRITE;
        /// A write to a write-protected page (WP registration).
        const WP = k::UFFD_PAGEFAULT_FLAG_WP;
        /// A page present in the page cache but not mapped (MINOR).
        const MINOR = k::UFFD_PAGEFAULT_FLAG_MINOR;
        const _ = !0;
    }
}

bitflags::bitflags! {
    /// Modes of [`Uffd::copy`](crate::Uffd::copy). Bits this crate does not
    /// name are passed to the kernel as given (it refuses them: EINVAL).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct CopyMode: u64 {
        /// Do not wake the faulting threads (wake them later with
        /// [`Uffd::wake`](crate::Uffd::wake)).
        const DONTWAKE = k::UFFDIO_COPY_MODE_DONTWAKE;
        /// Map the copied pages write-protected (needs a WP registration).
        const WP = k::UFFDIO_COPY_MODE_WP;
    }
}

bitflags::bitflags! {
    /// Modes of [`Uffd::zeropage`](crate::Uffd::zeropage).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct ZeropageMode: u64 {
        /// Do not wake the faulting threads.
        const DONTWAKE = k::UFFDIO_ZEROPAGE_MODE_DONTWAKE;
    }
}

bitflags::bitflags! {
    /// Modes of [`Uffd::writeprotect`](crate::Uffd::writeprotect): `WP`
    /// protects; no `WP` unprotects (and wakes, unless `DONTWAKE`). The
    /// kernel refuses `WP | DONTWAKE` (EINVAL).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct WriteprotectMode: u64 {
        /// Protect the range (without it: unprotect).
        const WP = k::UFFDIO_WRITEPROTECT_MODE_WP;
        /// When unprotecting, do not wake the faulting threads.
        const DONTWAKE = k::UFFDIO_WRITEPROTECT_MODE_DONTWAKE;
    }
}

bitflags::bitflags! {
    /// Modes of [`Uffd::continue_range`](crate::Uffd::continue_range).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct ContinueMode: u64 {
        /// Do not wake the faulting threads.
        const DONTWAKE = k::UFFDIO_CONTINUE_MODE_DONTWAKE;
        /// Map the pages write-protected (needs a WP registration).
        const WP = k::UFFDIO_CONTINUE_MODE_WP;
    }
}

bitflags::bitflags! {
    /// Modes of [`Uffd::poison`](crate::Uffd::poison).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct PoisonMode: u64 {
        /// Do not wake the faulting threads.
        const DONTWAKE = k::UFFDIO_POISON_MODE_DONTWAKE;
    }
}

bitflags::bitflags! {
    /// Modes of [`Uffd::move_pages`](crate::Uffd::move_pages).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct MoveMode: u64 {
        /// Do not wake the faulting threads.
        const DONTWAKE = k::UFFDIO_MOVE_MODE_DONTWAKE;
        /// Skip source holes instead of failing with ENOENT.
        const ALLOW_SRC_HOLES = k::UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES;
    }
}

/// Mode bits each operation accepts, from the flag types above; the
/// kernel refuses anything else with EINVAL (used to explain that
/// refusal).
pub(crate) mod modes {
    use super::*;
    pub const COPY: u64 = CopyMode::all().bits();
    pub const ZEROPAGE: u64 = ZeropageMode::all().bits();
    pub const WRITEPROTECT: u64 = WriteprotectMode::all().bits();
    pub const CONTINUE: u64 = ContinueMode::all().bits();
    pub const POISON: u64 = PoisonMode::all().bits();
    pub const MOVE: u64 = MoveMode::all().bits();
    pub const REGISTER: u64 = RegisterMode::all().bits();
}

/// Human-readable names of the bits in `mask`: "MOVE|POISON|bit17". The
/// names are those of [`Features`]' constants.
pub fn feature_names(mask: u64) -> String {
    use bitflags::Flags as _;
    let mut out = String::new();
    for bit in 0..64 {
        let b = 1u64 << bit;
        if mask & b == 0 {
            continue;
        }
        if !out.is_empty() {
            out.push('|');
        }
        match Features::FLAGS
            .iter()
            .find(|f| f.is_named() && f.value().bits() == b)
        {
            Some(f) => out.push_str(f.name()),
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
