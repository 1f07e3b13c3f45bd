// SPDX-License-Identifier: MIT OR Apache-2.0
//! Creating, adopting, inspecting and freeing handles; probing the kernel.

use super::boundary::{guard, guard_void, guard_with};
use super::ext::copy_opts;
use super::handle::{borrow, into_c, release, Handle};
use super::types::*;
use crate::uffd::{self, Error, Features, OpenFlags, OpenOptions, Uffd};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const KNOWN_OPEN_FLAGS: u32 = LIBUFFD_OPEN_NONBLOCK
    | LIBUFFD_OPEN_USER_ONLY
    | LIBUFFD_OPEN_NO_CLOEXEC
    | LIBUFFD_OPEN_NO_SYSCALL
    | LIBUFFD_OPEN_NO_DEV;

fn options_from_c(o: &libuffd_open_opts) -> Result<OpenOptions, Error> {
    let unknown = o.flags & !KNOWN_OPEN_FLAGS;
    if unknown != 0 {
        return Err(Error::invalid(format!(
            "libuffd_open_opts: unknown flags {unknown:#x}"
        )));
    }
    if o.reserved != 0 {
        return Err(Error::invalid("libuffd_open_opts: reserved must be 0"));
    }
    Ok(OpenOptions {
        flags: OpenFlags::from_bits_truncate(o.flags),
        features: Features::from_bits_retain(o.features),
        required: Features::from_bits_retain(o.required_features),
    })
}

fn write_out<T>(out: *mut T, value: T) {
    // SAFETY: every caller checked `out` for NULL first, and C promised it
    // points to writable storage for a T.
    unsafe { out.write(value) };
}

fn check_out<T>(func: &str, out: *mut T) -> Result<(), Error> {
    if out.is_null() {
        return Err(Error::invalid(format!("{func}: output pointer is NULL")));
    }
    Ok(())
}

/// Create a userfaultfd and negotiate its features.
///
/// Tries the userfaultfd(2) system call, then /dev/userfaultfd (unless
/// opts->flags excludes one of them). By default the fd is close-on-exec,
/// blocking, and traps faults taken in user and in kernel mode, like the
/// raw system call; LIBUFFD_OPEN_USER_ONLY asks for user-mode-only (see
/// libuffd_handle_flags() for which one a handle has).
/// opts->features are enabled where the kernel offers them;
/// opts->required_features must all be offered.
///
/// Ownership: on success *out is a new handle that the caller frees with
/// libuffd_handle_free(); on failure *out is not written.
///
/// Thread safety: may be called from any thread.
///
/// Returns: 0, or a negative errno:
/// -EINVAL (NULL out, bad opts, unknown flags), -E2BIG (opts from a newer
/// libuffd set fields this one lacks), -EOPNOTSUPP (a required feature is
/// missing; libuffd_last_error() names it), -EPERM / -EACCES (no path allowed
/// this process to create a userfaultfd; libuffd_last_error() lists each path
/// tried and why, and when kernel-mode faults were the obstacle names both
/// ways out: CAP_SYS_PTRACE or vm.unprivileged_userfaultfd=1, or
/// LIBUFFD_OPEN_USER_ONLY), -ENOSYS, -EMFILE, -ENOMEM.
///
/// Pointers: opts must be NULL or a libuffd_open_opts of opts->sz readable
/// bytes; out NULL or writable.
///
/// Example: a userfaultfd for the process's own faults (any user may), with
/// MOVE required; libuffd_last_error() says what was missing.
///
/// ```c
/// libuffd_handle *open_for_gc(void)
/// {
///         LIBUFFD_OPTS(libuffd_open_opts, o,
///                      .flags = LIBUFFD_OPEN_USER_ONLY,
///                      .features = LIBUFFD_FEATURE_MOVE,
///                      .required_features = LIBUFFD_FEATURE_MOVE);
///         libuffd_handle *h;
///         int rc = libuffd_open(&o, &h);
///
///         if (rc < 0) {
///                 fprintf(stderr, "%s\n", libuffd_last_error());
///                 return NULL;
///         }
///         return h;
/// }
/// ```
#[no_mangle]
pub unsafe extern "C" fn libuffd_open(
    opts: *const libuffd_open_opts,
    out: *mut *mut libuffd_handle,
) -> i32 {
    guard("libuffd_open", || {
        check_out("libuffd_open", out)?;
        // SAFETY: contract above.
        let o = unsafe { copy_opts("libuffd_open_opts", opts) }?;
        let uffd = Uffd::open(&options_from_c(&o)?)?;
        write_out(out, into_c(Handle::new(uffd)));
        Ok(0)
    })
}

/// Adopt an existing userfaultfd descriptor: the handle works on its own
/// duplicate of it.
///
/// For a descriptor received from another process or carried by a
/// LIBUFFD_EVENT_FORK event. If its API handshake was already done, its
/// negotiated features are read from /proc/self/fdinfo and checked against
/// opts->required_features; otherwise the handshake is done here with
/// opts (features and required_features). opts->flags must be 0: the
/// descriptor keeps its own flags.
///
/// Ownership: fd stays the caller's, always: the handle duplicates it
/// (F_DUPFD_CLOEXEC: a new descriptor number, close-on-exec, sharing the
/// same open file and its status flags) and closes only its duplicate when
/// freed. Close your fd when you no longer need it, at once if you like:
/// a number closed and reused meanwhile never reaches the handle. On failure
/// the duplicate is closed again and *out is not written.
/// libuffd_handle_fd() returns the duplicate.
///
/// Thread safety: may be called from any thread.
///
/// Returns: 0, or -EINVAL (negative fd, not a userfaultfd, NULL out,
/// non-zero opts->flags), -EBADF, -E2BIG, -EOPNOTSUPP (a required feature
/// is not enabled on this fd), -EMFILE (no descriptor left for the
/// duplicate).
///
/// Pointers: opts must be NULL or a libuffd_open_opts of opts->sz readable
/// bytes; out NULL or writable. fd may be any number.
#[no_mangle]
pub unsafe extern "C" fn libuffd_handle_from_fd(
    fd: i32,
    opts: *const libuffd_open_opts,
    out: *mut *mut libuffd_handle,
) -> i32 {
    guard("libuffd_handle_from_fd", || {
        check_out("libuffd_handle_from_fd", out)?;
        if fd < 0 {
            return Err(Error::invalid(format!(
                "libuffd_handle_from_fd: fd {fd} is negative"
            )));
        }
        // SAFETY: contract above.
        let o = unsafe { copy_opts("libuffd_open_opts", opts) }?;
        let opts = options_from_c(&o)?;
        if !opts.flags.is_empty() {
            return Err(Error::invalid(
                "libuffd_handle_from_fd: opts->flags must be 0 (an adopted fd keeps its own flags)",
            ));
        }
        // SAFETY: F_GETFD only checks that the descriptor is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(Error::os(
                "libuffd_handle_from_fd",
                libc::EBADF,
                format!("fd {fd} is not open"),
            ));
        }
        // The handle's own descriptor: the caller keeps (and closes) `fd`.
        // SAFETY: F_DUPFD_CLOEXEC on an open descriptor (checked).
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            let errno = std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EMFILE);
            return Err(Error::os(
                "libuffd_handle_from_fd",
                errno,
                format!("duplicating fd {fd} (F_DUPFD_CLOEXEC)"),
            ));
        }
        // SAFETY: `dup` was just created and is owned by nobody else.
        let owned = unsafe { OwnedFd::from_raw_fd(dup) };
        match Uffd::adopt(owned, &opts) {
            Ok(uffd) => {
                write_out(out, into_c(Handle::new(uffd)));
                Ok(0)
            }
            // The duplicate is closed; `fd` is untouched.
            Err((e, _dup)) => Err(e),
        }
    })
}

/// Free a handle, closing its descriptor (faulting threads then resume
/// without userfaultfd and registrations vanish, as on close()).
///
/// NULL is accepted and ignored. Call it exactly once per handle, when no
/// other thread is using it. A pointer that is not a live handle (a
/// monitor, or a handle already freed, where its type tag tells) is left
/// alone: errno is set to EINVAL and libuffd_last_error() says why.
///
/// Cancellation: not a cancellation point; it always completes (a
/// pending cancellation acts at the thread's next cancellation point).
///
/// Pointers: h must be NULL or a handle not yet freed.
#[no_mangle]
pub unsafe extern "C" fn libuffd_handle_free(h: *mut libuffd_handle) {
    if h.is_null() {
        return;
    }
    guard_void(|| {
        // SAFETY: contract above.
        if let Err(e) = unsafe { release(h) } {
            super::boundary::record("libuffd_handle_free", e);
        }
    });
}

/// The handle's file descriptor, borrowed: valid until libuffd_handle_free();
/// do not close it. Use it with poll/epoll (open with LIBUFFD_OPEN_NONBLOCK).
///
/// Thread safety: may be called from any thread.
///
/// Returns: the descriptor (>= 0), or -EINVAL for a NULL handle.
///
/// Pointers: h must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn libuffd_handle_fd(h: *const libuffd_handle) -> i32 {
    guard("libuffd_handle_fd", || {
        // SAFETY: contract above.
        let h = unsafe { borrow(h) }?;
        Ok(h.uffd.as_raw_fd())
    })
}

/// How the handle's descriptor behaves: a mask of LIBUFFD_OPEN_NONBLOCK
/// (the descriptor is O_NONBLOCK now), LIBUFFD_OPEN_NO_CLOEXEC (it is not
/// close-on-exec now) and LIBUFFD_OPEN_USER_ONLY (it traps user-mode faults
/// only), plus LIBUFFD_HANDLE_MODE_UNKNOWN when the handle adopted a
/// descriptor made elsewhere (libuffd_handle_from_fd()), whose
/// user-mode-only setting the kernel does not report.
///
/// Thread safety: may be called from any thread.
///
/// Returns: the mask (>= 0), or -EINVAL (NULL handle), -EBADF.
///
/// Pointers: h must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn libuffd_handle_flags(h: *const libuffd_handle) -> i32 {
    guard("libuffd_handle_flags", || {
        // SAFETY: contract above.
        let h = unsafe { borrow(h) }?;
        let status = crate::sys::open::status_flags(h.uffd.fd())
            .map_err(|e| Error::os("fcntl(F_GETFL)", e, ""))?;
        let cloexec = crate::sys::open::is_cloexec(h.uffd.fd())
            .map_err(|e| Error::os("fcntl(F_GETFD)", e, ""))?;
        let mut out = 0u32;
        if status & libc::O_NONBLOCK != 0 {
            out |= LIBUFFD_OPEN_NONBLOCK;
        }
        if !cloexec {
            out |= LIBUFFD_OPEN_NO_CLOEXEC;
        }
        match h.uffd.user_mode_only() {
            Some(true) => out |= LIBUFFD_OPEN_USER_ONLY,
            Some(false) => {}
            None => out |= LIBUFFD_HANDLE_MODE_UNKNOWN,
        }
        Ok(out as i32)
    })
}

/// The features negotiated for this handle (LIBUFFD_FEATURE_* bits plus
/// any newer bits the kernel enabled), written to *features.
///
/// Thread safety: may be called from any thread.
///
/// Returns: 0, or -EINVAL (NULL handle or pointer).
///
/// Pointers: h must be NULL or a live handle; features NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn libuffd_handle_features(
    h: *const libuffd_handle,
    features: *mut u64,
) -> i32 {
    guard("libuffd_handle_features", || {
        // SAFETY: contract above.
        let h = unsafe { borrow(h) }?;
        check_out("libuffd_handle_features", features)?;
        write_out(features, h.uffd.features().bits());
        Ok(0)
    })
}

/// Report every feature the running kernel offers, without spending a
/// caller's descriptor.
///
/// The first call creates a throwaway user-mode-only userfaultfd, does the
/// API handshake on it and closes it (the handshake can be done only once
/// per descriptor); the answer is cached for the process.
///
/// Thread safety: may be called from any thread.
///
/// Returns: 0 with *features written, or -EINVAL (NULL pointer), or the
/// error libuffd_open() would give (-EPERM, -EACCES, -ENOSYS ...).
///
/// Pointers: features must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn libuffd_probe_features(features: *mut u64) -> i32 {
    guard("libuffd_probe_features", || {
        check_out("libuffd_probe_features", features)?;
        let p = uffd::probe()?;
        write_out(features, p.features.bits());
        Ok(0)
    })
}

/// The name of one feature bit, as in its LIBUFFD_FEATURE_* constant
/// without the prefix: "MOVE" for LIBUFFD_FEATURE_MOVE. For tools that
/// print or parse feature lists (libuffd-probe(1)): loop over the 64 bits
/// of libuffd_probe_features()'s answer, or find a name's bit.
///
/// The names are the library's own list (the one libuffd_last_error()
/// texts use), so a program and the library never disagree on them.
///
/// Thread safety: may be called from any thread.
///
/// Returns: a static, NUL-terminated string, or NULL when bit is not
/// exactly one bit this library names (0, several bits, or a bit of a
/// newer kernel); libuffd_last_error() is not set.
///
/// Example: print the features this kernel offers, one per line.
///
/// ```c
/// void print_features(void)
/// {
///         uint64_t f;
///
///         if (libuffd_probe_features(&f) < 0)
///                 return;
///         for (int i = 0; i < 64; i++)
///                 if (f & (1ULL << i)) {
///                         const char *name = libuffd_feature_name(1ULL << i);
///                         printf("%s\n", name ? name : "(newer than this libuffd)");
///                 }
/// }
/// ```
#[no_mangle]
pub extern "C" fn libuffd_feature_name(bit: u64) -> *const libc::c_char {
    use bitflags::Flags as _;
    static NAMES: once_cell::sync::Lazy<Vec<(u64, std::ffi::CString)>> =
        once_cell::sync::Lazy::new(|| {
            Features::FLAGS
                .iter()
                .filter(|f| f.is_named())
                .filter_map(|f| {
                    std::ffi::CString::new(f.name())
                        .ok()
                        .map(|c| (f.value().bits(), c))
                })
                .collect()
        });
    if !bit.is_power_of_two() {
        return std::ptr::null();
    }
    std::panic::catch_unwind(|| {
        NAMES
            .iter()
            .find(|(b, _)| *b == bit)
            .map_or(std::ptr::null(), |(_, name)| name.as_ptr())
    })
    .unwrap_or(std::ptr::null())
}

/// Whether the running kernel offers every feature in mask.
///
/// Thread safety: may be called from any thread.
///
/// Returns: 1 (all offered), 0 (some missing; libuffd_last_error() is not
/// set), -EINVAL (mask is 0), or a probing error as libuffd_probe_features().
#[no_mangle]
pub extern "C" fn libuffd_feature_supported(mask: u64) -> i32 {
    guard("libuffd_feature_supported", || {
        if mask == 0 {
            return Err(Error::invalid("libuffd_feature_supported: mask is 0"));
        }
        let p = uffd::probe()?;
        Ok(i32::from(p.features.bits() & mask == mask))
    })
}

/// The page size of the memory mapped at addr in this process: 4096, or
/// the huge-page size of a hugetlb mapping. Registration and resolving
/// operations on hugetlb memory must be aligned to it.
///
/// Cost: one PROCMAP_QUERY ioctl on /proc/self/maps (Linux 6.11+), which
/// does not grow with the size of the process; older kernels fall back to
/// reading /proc/self/smaps up to the mapping.
///
/// Thread safety: may be called from any thread.
///
/// Returns: the page size in bytes, or -ENOMEM (nothing mapped at addr).
#[no_mangle]
pub extern "C" fn libuffd_page_size(addr: *const libc::c_void) -> i64 {
    guard("libuffd_page_size", || {
        Ok(uffd::page_size_at(addr as u64)? as i64)
    })
}

/// Panic-guarded access for operations on a handle: a panic poisons it.
pub(crate) fn with_handle<R: super::boundary::FromErrno>(
    func: &'static str,
    h: *const libuffd_handle,
    body: impl FnOnce(&Uffd) -> Result<R, Error>,
) -> R {
    // SAFETY: every exported caller has `h` NULL or live by contract.
    let handle = unsafe { borrow(h) };
    match handle {
        Err(e) => guard(func, || Err(e)),
        Ok(handle) => guard_with(func, || handle.poison(), || body(&handle.uffd)),
    }
}
