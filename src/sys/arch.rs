// SPDX-License-Identifier: MIT OR Apache-2.0
//! Per-architecture kernel constants: the `userfaultfd(2)` system call
//! number, and the `_IOC` encoding of ioctl request numbers, which is not
//! the same on every architecture (powerpc, mips and sparc have three
//! direction bits and a 13-bit size field, with `_IOC_NONE` = 1 and
//! `_IOC_WRITE` = 4; every other Linux architecture uses asm-generic's
//! layout). The system call number is libc's per-architecture
//! `SYS_userfaultfd` (282 on the asm-generic table, 323 on x86_64, 355 on
//! s390x, 364 on powerpc, 388 on arm, 4357 on mips o32...).
//!
//! Both are checked when this file is compiled for a target (`cargo check
//! --target T` in CI): the encoding against libc's own `_IO*` for that
//! target, the system call number against the kernel's table for the
//! architectures listed below. The unit tests check each layout against
//! the kernel's request numbers of x86_64, aarch64, arm, ppc64le, s390x,
//! riscv64 and mips on any host.

/// The `userfaultfd(2)` system call number of the target architecture.
pub const NR_USERFAULTFD: libc::c_long = libc::SYS_userfaultfd;

/// The bit layout of an ioctl request number (`_IOC(dir, type, nr, size)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IocLayout {
    /// `include/uapi/asm-generic/ioctl.h` (x86, arm, arm64, riscv, s390,
    /// loongarch, ...): nr in bits 0-7, type 8-15, size 16-29 (14 bits),
    /// direction 30-31 with NONE 0, WRITE 1, READ 2.
    Generic,
    /// `arch/{powerpc,mips,sparc}/include/uapi/asm/ioctl.h`: size 16-28
    /// (13 bits), direction 29-31 with NONE 1, READ 2, WRITE 4.
    ThreeDirBits,
}

/// The direction part of a request number, as the kernel's macros name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IocDir {
    /// `_IO`: no argument is copied.
    None,
    /// `_IOR`: the kernel writes the argument (userspace reads).
    Read,
    /// `_IOW`: the kernel reads the argument. No request libuffd issues is
    /// `_IOW`: only the layout tests encode it.
    #[cfg_attr(not(test), allow(dead_code))]
    Write,
    /// `_IOWR`: both.
    ReadWrite,
}

impl IocLayout {
    /// The layout of the architecture this crate is compiled for.
    pub const HOST: IocLayout = if cfg!(any(
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "mips32r6",
        target_arch = "mips64r6",
        target_arch = "sparc",
        target_arch = "sparc64"
    )) {
        IocLayout::ThreeDirBits
    } else {
        IocLayout::Generic
    };

    /// `_IOC(dir, ty, nr, size)` in this layout.
    pub const fn encode(self, dir: IocDir, ty: u8, nr: u8, size: usize) -> u64 {
        let (size_bits, none, read, write) = match self {
            IocLayout::Generic => (14, 0, 2, 1),
            IocLayout::ThreeDirBits => (13, 1, 2, 4),
        };
        let d: u64 = match dir {
            IocDir::None => none,
            IocDir::Read => read,
            IocDir::Write => write,
            IocDir::ReadWrite => read | write,
        };
        assert!(size < (1 << size_bits), "ioctl argument too large for _IOC");
        (d << (16 + size_bits)) | ((size as u64) << 16) | ((ty as u64) << 8) | nr as u64
    }
}

/// `_IO(ty, nr)` for the target.
pub const fn io(ty: u8, nr: u8) -> u64 {
    IocLayout::HOST.encode(IocDir::None, ty, nr, 0)
}

/// `_IOR(ty, nr, T)` for the target.
pub const fn ior<T>(ty: u8, nr: u8) -> u64 {
    IocLayout::HOST.encode(IocDir::Read, ty, nr, std::mem::size_of::<T>())
}

/// `_IOWR(ty, nr, T)` for the target.
pub const fn iowr<T>(ty: u8, nr: u8) -> u64 {
    IocLayout::HOST.encode(IocDir::ReadWrite, ty, nr, std::mem::size_of::<T>())
}

// Cross-checks on every target this is compiled for: libc's own `_IO*`
// (per-architecture since libc 0.2.172) give the same numbers.
const _: () = assert!(io(0xAA, 0) == libc::_IO(0xAA, 0) as u32 as u64);
const _: () = assert!(ior::<[u64; 2]>(0xAA, 1) == libc::_IOR::<[u64; 2]>(0xAA, 1) as u32 as u64);
const _: () = assert!(iowr::<[u64; 4]>(0xAA, 0) == libc::_IOWR::<[u64; 4]>(0xAA, 0) as u32 as u64);
const _: () =
    assert!(iowr::<[u64; 13]>(b'f', 17) == libc::_IOWR::<[u64; 13]>(b'f' as u32, 17) as u32 as u64);

// The kernel's userfaultfd system call numbers (arch/*/kernel/syscalls/
// *.tbl and include/uapi/asm-generic/unistd.h): libc must agree.
#[cfg(target_arch = "x86_64")]
const _: () = assert!(
    NR_USERFAULTFD
        == if cfg!(target_pointer_width = "32") {
            0x4000_0000 + 323
        } else {
            323
        }
);
#[cfg(target_arch = "x86")]
const _: () = assert!(NR_USERFAULTFD == 374);
#[cfg(any(
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "riscv32",
    target_arch = "loongarch64"
))]
const _: () = assert!(NR_USERFAULTFD == 282);
#[cfg(target_arch = "arm")]
const _: () = assert!(NR_USERFAULTFD == 388);
#[cfg(any(target_arch = "powerpc", target_arch = "powerpc64"))]
const _: () = assert!(NR_USERFAULTFD == 364);
#[cfg(target_arch = "s390x")]
const _: () = assert!(NR_USERFAULTFD == 355);
#[cfg(target_arch = "mips")]
const _: () = assert!(NR_USERFAULTFD == 4000 + 357);
#[cfg(target_arch = "mips64")]
const _: () = assert!(NR_USERFAULTFD == 5000 + 317 || NR_USERFAULTFD == 6000 + 321);
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const _: () = assert!(NR_USERFAULTFD == 352);

#[cfg(test)]
mod tests {
    use super::*;

    /// The userfaultfd request numbers of one architecture, as its kernel
    /// headers define them (`_IOWR(UFFDIO, _UFFDIO_REGISTER, struct
    /// uffdio_register)` and so on, worked out with that architecture's
    /// `_IOC`), in the order of `requests`.
    struct Kernel {
        arch: &'static str,
        layout: IocLayout,
        numbers: [u64; 11],
    }

    /// (name, direction, nr, size of the argument struct).
    const REQUESTS: [(&str, IocDir, u8, usize); 11] = [
        ("UFFDIO_REGISTER", IocDir::ReadWrite, 0x00, 32),
        ("UFFDIO_UNREGISTER", IocDir::Read, 0x01, 16),
        ("UFFDIO_WAKE", IocDir::Read, 0x02, 16),
        ("UFFDIO_COPY", IocDir::ReadWrite, 0x03, 40),
        ("UFFDIO_ZEROPAGE", IocDir::ReadWrite, 0x04, 32),
        ("UFFDIO_MOVE", IocDir::ReadWrite, 0x05, 40),
        ("UFFDIO_WRITEPROTECT", IocDir::ReadWrite, 0x06, 24),
        ("UFFDIO_CONTINUE", IocDir::ReadWrite, 0x07, 32),
        ("UFFDIO_POISON", IocDir::ReadWrite, 0x08, 32),
        ("UFFDIO_API", IocDir::ReadWrite, 0x3F, 24),
        ("USERFAULTFD_IOC_NEW", IocDir::None, 0x00, 0),
    ];

    const GENERIC: [u64; 11] = [
        0xC020AA00, 0x8010AA01, 0x8010AA02, 0xC028AA03, 0xC020AA04, 0xC028AA05, 0xC018AA06,
        0xC020AA07, 0xC020AA08, 0xC018AA3F, 0x0000AA00,
    ];
    // READ is 2 << 29 (0x40000000) and NONE 1 << 29 (0x20000000); READ|WRITE
    // is 6 << 29, the same bits as the generic 3 << 30.
    const THREE_DIR_BITS: [u64; 11] = [
        0xC020AA00, 0x4010AA01, 0x4010AA02, 0xC028AA03, 0xC020AA04, 0xC028AA05, 0xC018AA06,
        0xC020AA07, 0xC020AA08, 0xC018AA3F, 0x2000AA00,
    ];

    const KERNELS: [Kernel; 7] = [
        Kernel {
            arch: "x86_64",
            layout: IocLayout::Generic,
            numbers: GENERIC,
        },
        Kernel {
            arch: "aarch64",
            layout: IocLayout::Generic,
            numbers: GENERIC,
        },
        Kernel {
            arch: "arm",
            layout: IocLayout::Generic,
            numbers: GENERIC,
        },
        Kernel {
            arch: "s390x",
            layout: IocLayout::Generic,
            numbers: GENERIC,
        },
        Kernel {
            arch: "riscv64",
            layout: IocLayout::Generic,
            numbers: GENERIC,
        },
        Kernel {
            arch: "powerpc64",
            layout: IocLayout::ThreeDirBits,
            numbers: THREE_DIR_BITS,
        },
        Kernel {
            arch: "mips",
            layout: IocLayout::ThreeDirBits,
            numbers: THREE_DIR_BITS,
        },
    ];

    #[test]
    fn every_architecture_encodes_the_kernels_numbers() {
        for k in &KERNELS {
            for (i, (name, dir, nr, size)) in REQUESTS.iter().enumerate() {
                let got = k.layout.encode(*dir, 0xAA, *nr, *size);
                assert_eq!(
                    got, k.numbers[i],
                    "{name} on {}: {got:#x} != kernel's {:#x}",
                    k.arch, k.numbers[i]
                );
            }
        }
    }

    #[test]
    fn host_layout_is_the_targets() {
        let arch = std::env::consts::ARCH;
        let three = matches!(
            arch,
            "powerpc" | "powerpc64" | "mips" | "mips64" | "sparc" | "sparc64"
        );
        assert_eq!(IocLayout::HOST == IocLayout::ThreeDirBits, three, "{arch}");
        if let Some(k) = KERNELS.iter().find(|k| k.arch == arch) {
            assert_eq!(IocLayout::HOST, k.layout);
        }
    }

    /// The directions are the kernel's own bits: `_IOC_DIR` of a request
    /// number gives them back, and sizes up to each layout's limit fit.
    #[test]
    fn fields_decode_back() {
        for layout in [IocLayout::Generic, IocLayout::ThreeDirBits] {
            let size_bits = if layout == IocLayout::Generic { 14 } else { 13 };
            let max = (1usize << size_bits) - 1;
            let n = layout.encode(IocDir::ReadWrite, b'f', 17, max);
            assert_eq!((n >> 16) & ((1 << size_bits) - 1), max as u64);
            assert_eq!((n >> 8) & 0xFF, b'f' as u64);
            assert_eq!(n & 0xFF, 17);
            assert!(n >> 32 == 0, "{layout:?}: request numbers are 32-bit");
        }
        assert_eq!(
            IocLayout::Generic.encode(IocDir::Write, 0xAA, 1, 8) >> 30,
            1
        );
        assert_eq!(
            IocLayout::ThreeDirBits.encode(IocDir::Write, 0xAA, 1, 8) >> 29,
            4
        );
    }
}
