// SPDX-License-Identifier: MIT OR Apache-2.0
//! Copies between addresses of this process and to files, through the
//! kernel, so that a bad address is an error (EFAULT), never a crash:
//! what a write-protect snapshot (uffd/snapshot.rs) copies with.

use std::os::fd::{AsRawFd, BorrowedFd};

/// Copy `len` bytes from address `src` to address `dst` of this process
/// (process_vm_readv on ourselves: both ranges are checked by the kernel).
/// Err(errno) unless every byte was copied (EFAULT: an address that cannot
/// be read or written).
pub fn copy_addr(dst: u64, src: u64, len: u64) -> Result<(), i32> {
    let mut done = 0u64;
    while done < len {
        let local = libc::iovec {
            iov_base: (dst + done) as *mut libc::c_void,
            iov_len: (len - done) as usize,
        };
        let remote = libc::iovec {
            iov_base: (src + done) as *mut libc::c_void,
            iov_len: (len - done) as usize,
        };
        // SAFETY: no memory is touched by this process's code: the kernel
        // validates both ranges and fails with EFAULT instead of faulting.
        // The caller owns the destination's bytes (a snapshot buffer).
        let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        if n < 0 {
            let e = super::last_errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(libc::EFAULT);
        }
        done += n as u64;
    }
    Ok(())
}

/// pwrite(2) `len` bytes from address `src` to `fd` at `off`, until all
/// are written (short writes repeated). Err(errno) otherwise: a write of 0
/// bytes is EIO; EINTR is repeated, 1000 times in a row at most (a signal
/// storm must not hold the caller for ever). A bad address is EFAULT,
/// never a crash: the kernel reads the memory. The snapshot's file
/// destination and the budgets' write-back use it.
pub fn pwrite_addr(fd: BorrowedFd<'_>, src: u64, len: u64, off: u64) -> Result<(), i32> {
    // `pwrite` itself where off_t is 64-bit, pwrite64 where it is 32-bit
    // (arm, mips, x86): offsets past 2 GiB.
    #[cfg(target_pointer_width = "64")]
    let call = libc::pwrite;
    #[cfg(not(target_pointer_width = "64"))]
    let call = libc::pwrite64;
    let (mut done, mut eintr) = (0u64, 0u32);
    while done < len {
        // SAFETY: the kernel reads from `src` with copy_from_user (a bad
        // address is EFAULT); `fd` is live for the borrow.
        let n = unsafe {
            call(
                fd.as_raw_fd(),
                (src + done) as *const libc::c_void,
                (len - done) as usize,
                (off + done) as _,
            )
        };
        if n < 0 {
            let e = super::last_errno();
            if e == libc::EINTR && eintr < 1000 {
                eintr += 1;
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(libc::EIO);
        }
        done += n as u64;
    }
    Ok(())
}
