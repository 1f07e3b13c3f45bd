// SPDX-License-Identifier: MIT OR Apache-2.0
//! `Uffd`: one userfaultfd, created (syscall, then /dev/userfaultfd) or
//! adopted, with its API handshake done and its features known.

use super::error::{Error, Result};
use super::features::{Features, Ioctls};
use crate::sys::{self, uapi::*};
use once_cell::sync::OnceCell;
use std::fmt::Write as _;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

bitflags::bitflags! {
    /// How to create a userfaultfd.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct OpenFlags: u32 {
        /// O_NONBLOCK: reads return at once; needed for poll/epoll and for
        /// timed reads.
        const NONBLOCK = 1 << 0;
        /// Trap only faults taken in user mode (UFFD_USER_MODE_ONLY). By
        /// default, as with the raw system call, faults taken in kernel
        /// mode are trapped too: read(2)/write(2)/O_DIRECT into registered
        /// memory, KVM guest accesses, vhost. That needs CAP_SYS_PTRACE,
        /// vm.unprivileged_userfaultfd=1 or access to /dev/userfaultfd;
        /// user-mode-only is what any process may create, and all that a
        /// program needs when only its own threads touch the memory (a
        /// garbage collector, a snapshotting database).
        const USER_ONLY = 1 << 1;
        /// Do not set close-on-exec (set by default).
        const NO_CLOEXEC = 1 << 2;
        /// Do not try the userfaultfd(2) system call.
        const NO_SYSCALL = 1 << 3;
        /// Do not try /dev/userfaultfd.
        const NO_DEV = 1 << 4;
    }
}

/// What to ask for when creating or adopting a userfaultfd.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    /// How to create the descriptor (ignored by [`Uffd::adopt`]).
    pub flags: OpenFlags,
    /// Features wanted if the kernel has them; the ones it lacks are left
    /// out of the negotiated set without error.
    pub features: Features,
    /// Features without which creation fails with EOPNOTSUPP.
    pub required: Features,
}

/// The path of the userfaultfd device node.
pub const DEV_PATH: &std::ffi::CStr = c"/dev/userfaultfd";

/// A userfaultfd whose API handshake is done.
#[derive(Debug)]
pub struct Uffd {
    fd: OwnedFd,
    features: Features,
    offered: Option<Features>,
    nonblocking: bool,
    /// Whether the fd traps user-mode faults only: known for fds created
    /// here (and their fork children), unknown for adopted ones (the
    /// kernel does not report it).
    user_only: Option<bool>,
    /// The process whose memory this uffd serves, when known to be ours:
    /// only then are this process's mappings the ones to describe when
    /// the kernel refuses an operation (see `diagnose`).
    owner_pid: Option<i32>,
}

/// What the kernel offers, learnt without spending a caller's fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Every feature UFFDIO_API reported as available.
    pub features: Features,
    /// The fd-level ioctl mask UFFDIO_API reported.
    pub ioctls: Ioctls,
}

static PROBE: OnceCell<Probe> = OnceCell::new();

/// Ask the kernel which features it supports. The first call creates a
/// throwaway userfaultfd, does the handshake with no features, reads the
/// offered set and closes it (UFFDIO_API may only be done once per fd, so
/// probing on the caller's fd would spend it); later calls are cached.
pub fn probe() -> Result<Probe> {
    PROBE
        .get_or_try_init(|| {
            // User-mode-only: any process may create that, and the
            // features offered do not depend on the mode.
            let fd = create_fd(OpenFlags::USER_ONLY)?;
            let mut api = UffdioApi {
                api: UFFD_API,
                ..Default::default()
            };
            sys::ioctl::api(fd.as_fd(), &mut api)
                .map_err(|e| Error::kernel(super::error::Op::Api, e, 0, 0))?;
            Ok(Probe {
                features: Features::from_bits_retain(api.features),
                ioctls: Ioctls::from_bits_retain(api.ioctls),
            })
        })
        .copied()
}

fn syscall_flags(flags: OpenFlags) -> i32 {
    let mut f = 0;
    if !flags.contains(OpenFlags::NO_CLOEXEC) {
        f |= libc::O_CLOEXEC;
    }
    if flags.contains(OpenFlags::NONBLOCK) {
        f |= libc::O_NONBLOCK;
    }
    if flags.contains(OpenFlags::USER_ONLY) {
        f |= UFFD_USER_MODE_ONLY;
    }
    f
}

fn read_sysctl_unprivileged() -> Option<String> {
    std::fs::read_to_string("/proc/sys/vm/unprivileged_userfaultfd")
        .ok()
        .map(|s| s.trim().to_string())
}

/// Create a raw userfaultfd, trying the system call and then the device.
/// On failure the error lists each path tried and why it failed.
pub(crate) fn create_fd(flags: OpenFlags) -> Result<OwnedFd> {
    let kflags = syscall_flags(flags);
    let mut attempts = String::new();
    let mut chosen_errno = 0;
    if !flags.contains(OpenFlags::NO_SYSCALL) {
        match sys::open::userfaultfd_syscall(kflags) {
            Ok(fd) => return Ok(fd),
            Err(e) => {
                let _ = write!(attempts, "userfaultfd(2): {}", super::error::strerror(e));
                if e == libc::EPERM && !flags.contains(OpenFlags::USER_ONLY) {
                    let sysctl = read_sysctl_unprivileged().unwrap_or_else(|| "?".into());
                    let _ = write!(
                        attempts,
                        " (trapping kernel-mode faults, the default, needs CAP_SYS_PTRACE or \
                         vm.unprivileged_userfaultfd=1, which is {sysctl}; a program that only \
                         needs faults of its own user-space accesses can pass \
                         LIBUFFD_OPEN_USER_ONLY / OpenFlags::USER_ONLY instead)"
                    );
                } else if e == libc::ENOSYS {
                    attempts.push_str(" (no userfaultfd in this kernel, or blocked by seccomp)");
                }
                chosen_errno = e;
            }
        }
    }
    if !flags.contains(OpenFlags::NO_DEV) {
        match sys::open::userfaultfd_dev(DEV_PATH, kflags) {
            Ok(fd) => return Ok(fd),
            Err((step, e)) => {
                if !attempts.is_empty() {
                    attempts.push_str("; ");
                }
                let _ = write!(
                    attempts,
                    "{} ({step}): {}",
                    DEV_PATH.to_str().unwrap_or("/dev/userfaultfd"),
                    super::error::strerror(e)
                );
                if e == libc::EACCES {
                    attempts.push_str(" (no permission on the device node)");
                }
                // The device's answer matters more than a syscall that
                // does not exist here.
                if chosen_errno == 0 || chosen_errno == libc::ENOSYS {
                    chosen_errno = e;
                }
            }
        }
    }
    if attempts.is_empty() {
        return Err(Error::invalid(
            "open: both NO_SYSCALL and NO_DEV were given: no way left to create a userfaultfd",
        ));
    }
    Err(Error::Open {
        errno: chosen_errno,
        attempts,
    })
}

/// Do the UFFDIO_API handshake on a fresh fd. `wanted` bits the kernel
/// lacks are dropped; missing `required` bits fail with EOPNOTSUPP.
fn negotiate(
    fd: BorrowedFd<'_>,
    wanted: Features,
    required: Features,
) -> Result<(Features, Features)> {
    let mut request = wanted | required;
    for attempt in 0..3 {
        let mut api = UffdioApi {
            api: UFFD_API,
            features: request.bits(),
            ioctls: 0,
        };
        match sys::ioctl::api(fd, &mut api) {
            Ok(()) => {
                let mut enabled = request;
                // The kernel turns WP_UNPOPULATED on with WP_ASYNC.
                if enabled.contains(Features::WP_ASYNC) {
                    enabled |= Features::WP_UNPOPULATED;
                }
                return Ok((enabled, Features::from_bits_retain(api.features)));
            }
            Err(libc::EINVAL) if attempt == 0 => {
                // Some requested bit is unknown to this kernel: find which.
                let offered = probe()?.features;
                let missing = required - offered;
                if !missing.is_empty() {
                    return Err(Error::MissingFeatures { missing, offered });
                }
                request = required | (wanted & offered);
            }
            Err(libc::EPERM)
                if request.contains(Features::EVENT_FORK)
                    && !required.contains(Features::EVENT_FORK) =>
            {
                // EVENT_FORK needs CAP_SYS_PTRACE; it was only wanted.
                request -= Features::EVENT_FORK;
            }
            Err(e) => {
                let detail = if e == libc::EPERM && request.contains(Features::EVENT_FORK) {
                    "EVENT_FORK needs CAP_SYS_PTRACE".to_string()
                } else if e == libc::EINVAL {
                    format!(
                        "the kernel refused features {} ({:#x})",
                        super::features::feature_names(request.bits()),
                        request.bits()
                    )
                } else {
                    String::new()
                };
                return Err(Error::os("UFFDIO_API", e, detail));
            }
        }
    }
    Err(Error::os(
        "UFFDIO_API",
        libc::EINVAL,
        "handshake did not converge",
    ))
}

impl Uffd {
    /// Create a userfaultfd and negotiate features.
    pub fn open(opts: &OpenOptions) -> Result<Uffd> {
        let fd = create_fd(opts.flags)?;
        let (features, offered) = negotiate(fd.as_fd(), opts.features, opts.required)?;
        Ok(Uffd {
            fd,
            features,
            offered: Some(offered),
            nonblocking: opts.flags.contains(OpenFlags::NONBLOCK),
            user_only: Some(opts.flags.contains(OpenFlags::USER_ONLY)),
            owner_pid: Some(std::process::id() as i32),
        })
    }

    /// Adopt an existing userfaultfd (received from another process, or
    /// carried by a FORK event). If its handshake is done, its features are
    /// read from /proc/self/fdinfo and checked against `opts.required`;
    /// otherwise the handshake is done here with `opts`. `opts.flags` is
    /// ignored: the fd keeps its own flags. On failure the descriptor is
    /// handed back with the error, unclosed.
    pub fn adopt(fd: OwnedFd, opts: &OpenOptions) -> std::result::Result<Uffd, (Error, OwnedFd)> {
        match Self::adopt_parts(&fd, opts) {
            Ok((features, offered, nonblocking)) => Ok(Uffd {
                fd,
                features,
                offered,
                nonblocking,
                user_only: None,
                owner_pid: None,
            }),
            Err(e) => Err((e, fd)),
        }
    }

    fn adopt_parts(fd: &OwnedFd, opts: &OpenOptions) -> Result<(Features, Option<Features>, bool)> {
        let raw = fd.as_raw_fd();
        let info = sys::fdinfo::read_uffd_fdinfo(raw)
            .map_err(|e| {
                Error::os(
                    "adopt fd",
                    e,
                    format!("cannot read /proc/self/fdinfo/{raw}"),
                )
            })?
            .ok_or_else(|| Error::invalid(format!("adopt fd: fd {raw} is not a userfaultfd")))?;
        let nonblocking = sys::open::status_flags(fd.as_fd())
            .map_err(|e| Error::os("fcntl(F_GETFL)", e, ""))?
            & libc::O_NONBLOCK
            != 0;
        let (features, offered) = if info.features & UFFD_FEATURE_INITIALIZED != 0 {
            let features = Features::from_bits_retain(info.features & !UFFD_FEATURE_INITIALIZED);
            let missing = opts.required - features;
            if !missing.is_empty() {
                return Err(Error::MissingFeatures {
                    missing,
                    offered: features,
                });
            }
            (features, None)
        } else {
            let (f, o) = negotiate(fd.as_fd(), opts.features, opts.required)?;
            (f, Some(o))
        };
        Ok((features, offered, nonblocking))
    }

    /// Wrap the descriptor a FORK event carried. The child's userfaultfd
    /// has its parent's features and flags, so nothing needs reading:
    /// this path allocates nothing, which matters on a thread that reads
    /// FORK events while the monitored process may fork again.
    pub fn from_fork(fd: OwnedFd, parent: &Uffd) -> Uffd {
        Uffd {
            fd,
            features: parent.features,
            offered: parent.offered,
            nonblocking: parent.nonblocking,
            user_only: parent.user_only,
            owner_pid: None,
        }
    }

    /// The negotiated (enabled) features.
    pub fn features(&self) -> Features {
        self.features
    }

    /// The features the kernel offered at the handshake, when this handle
    /// did the handshake itself.
    pub fn offered_features(&self) -> Option<Features> {
        self.offered
    }

    /// Whether the fd is O_NONBLOCK.
    pub fn is_nonblocking(&self) -> bool {
        self.nonblocking
    }

    /// Whether the fd traps user-mode faults only (`Some(true)`), faults
    /// from kernel mode too (`Some(false)`), or `None` when the handle
    /// adopted an fd made elsewhere, whose mode the kernel does not report.
    pub fn user_mode_only(&self) -> Option<bool> {
        self.user_only
    }

    /// Whether the memory this uffd serves is known to be the calling
    /// process's own.
    pub fn serves_this_process(&self) -> bool {
        self.owner_pid == Some(std::process::id() as i32)
    }

    /// The descriptor, borrowed.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsFd for Uffd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Uffd {
    fn as_raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}
