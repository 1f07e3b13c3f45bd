// SPDX-License-Identifier: MIT OR Apache-2.0
//! Creating a userfaultfd and negotiating its features, on the real kernel:
//! the creation flags (blocking, close-on-exec, user-mode-only, the two
//! creation paths), the feature handshake (unknown wanted bits dropped,
//! unknown required bits refused), adopting descriptors made elsewhere, and
//! the error an unprivileged process gets when every path is closed.
#![allow(unsafe_code)]

mod common;
use common::*;

use ::uffd::{
    CopyMode, Error, FaultFlags, Features, Ioctls, Msg, OpenFlags, OpenOptions, Range,
    RegisterMode, Uffd,
};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ALL_6_18: u64 = 0x1FFFF;
const INITIALIZED: u64 = 1 << 31;

fn fd_flags(fd: i32) -> i32 {
    // SAFETY: F_GETFD reads no memory.
    let r = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    assert!(r >= 0, "F_GETFD({fd}): {}", std::io::Error::last_os_error());
    r
}

fn status_flags(fd: i32) -> i32 {
    // SAFETY: F_GETFL reads no memory.
    let r = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    assert!(r >= 0, "F_GETFL({fd}): {}", std::io::Error::last_os_error());
    r
}

/// `ctx->features` as the kernel prints it in fdinfo (with INITIALIZED).
fn kernel_features(fd: i32) -> u64 {
    raw::fdinfo(fd).expect("fdinfo of a userfaultfd").features
}

/// Faults queued or read but not yet woken, as fdinfo counts them (a
/// snapshot, not a cumulative count).
fn kernel_waiting_faults(fd: i32) -> u64 {
    let i = raw::fdinfo(fd).expect("fdinfo of a userfaultfd");
    i.pending + i.total
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut p = [0i32; 2];
    // SAFETY: p is a valid 2-int array.
    assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) }
}

fn write_fd(fd: i32, data: &[u8]) -> isize {
    // SAFETY: valid buffer of data.len() bytes.
    unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

fn opts(flags: OpenFlags, features: Features, required: Features) -> OpenOptions {
    OpenOptions {
        flags,
        features,
        required,
    }
}

/// Prove a uffd works end to end: a thread reads a registered missing page,
/// the fault arrives, COPY resolves it, the thread sees the data.
fn fault_roundtrip(u: &Uffd) {
    let mem = Arc::new(Mem::new(Kind::Anon, 1));
    u.register(Range::new(mem.start(), PAGE as u64), RegisterMode::MISSING)
        .expect("register");
    let t = reader(&mem, 100);
    let f = if u.is_nonblocking() {
        next_fault(u, 5000)
    } else {
        next_fault(u, -1)
    };
    assert_eq!(f.address, mem.start());
    let data = pattern(PAGE, 7);
    let p = unsafe { u.copy_from_slice(mem.start(), &data, CopyMode::empty()) }.expect("copy");
    assert!(p.is_complete());
    assert_eq!(t.join().unwrap(), data[100]);
}

#[test]
fn default_open_is_cloexec_blocking_and_traps_user_faults() {
    let _w = Watchdog::new("default_open_is_cloexec_blocking_and_traps_user_faults", 60);
    let u = Uffd::open(&OpenOptions::default()).expect("default open");
    let fd = u.as_raw_fd();
    assert_ne!(
        fd_flags(fd) & libc::FD_CLOEXEC,
        0,
        "default fd must be CLOEXEC"
    );
    assert_eq!(
        status_flags(fd) & libc::O_NONBLOCK,
        0,
        "default fd must block"
    );
    assert!(!u.is_nonblocking());
    assert_eq!(u.features(), Features::empty());
    assert_eq!(kernel_features(fd), INITIALIZED);
    fault_roundtrip(&u);
}

#[test]
fn user_only_open_kernel_access_gets_efault() {
    let _w = Watchdog::new("user_only_open_kernel_access_gets_efault", 60);
    let mem = Mem::new(Kind::Anon, 2);
    let u = Uffd::open(&opts(
        OpenFlags::USER_ONLY,
        Features::empty(),
        Features::empty(),
    ))
    .expect("user-mode-only open");
    assert_eq!(u.user_mode_only(), Some(true));
    u.register(
        Range::new(mem.start(), 2 * PAGE as u64),
        RegisterMode::MISSING,
    )
    .unwrap();
    let (r, w) = pipe();
    assert_eq!(write_fd(w.as_raw_fd(), b"hello"), 5);
    // read(2) writes INTO the missing page from kernel mode: no trap, EFAULT.
    // SAFETY: the destination is a live mapping of ours.
    let n = unsafe { libc::read(r.as_raw_fd(), mem.addr.cast(), 5) };
    assert_eq!(
        n, -1,
        "kernel-mode write to a user-mode-only page must fail"
    );
    assert_eq!(errno(), libc::EFAULT);
    // write(2) reads FROM the missing page in kernel mode: EFAULT as well.
    // SAFETY: the source is a live mapping of ours.
    let n = unsafe { libc::write(w.as_raw_fd(), mem.addr.add(PAGE).cast(), 5) };
    assert_eq!(n, -1, "kernel-mode read of a user-mode-only page must fail");
    assert_eq!(errno(), libc::EFAULT);
    // No thread is left waiting on the uffd.
    assert_eq!(kernel_waiting_faults(u.as_raw_fd()), 0);
}

#[test]
fn default_open_traps_syscall_accesses() {
    let _w = Watchdog::new("default_open_traps_syscall_accesses", 60);
    let mem = Arc::new(Mem::new(Kind::Anon, 2));
    let u = Uffd::open(&opts(
        OpenFlags::NONBLOCK,
        Features::empty(),
        Features::empty(),
    ))
    .expect("open with the default mode");
    assert_eq!(u.user_mode_only(), Some(false));
    u.register(
        Range::new(mem.start(), 2 * PAGE as u64),
        RegisterMode::MISSING,
    )
    .unwrap();
    let (r, w) = pipe();
    assert_eq!(write_fd(w.as_raw_fd(), b"hello"), 5);

    // read(2) into page 0, offset 16: the kernel's copy_to_user traps.
    let m = mem.clone();
    let rfd = r.as_raw_fd();
    let t = std::thread::spawn(move || {
        // SAFETY: the destination is inside the live mapping `m`.
        unsafe { libc::read(rfd, m.addr.add(16).cast(), 5) }
    });
    let f = next_fault(&u, 5000);
    assert_eq!(f.address, mem.start());
    assert!(
        f.flags.contains(FaultFlags::WRITE),
        "read(2) into the page is a write fault: {f:?}"
    );
    let data = pattern(PAGE, 3);
    unsafe { u.copy_from_slice(mem.start(), &data, CopyMode::empty()) }.unwrap();
    assert_eq!(
        t.join().unwrap(),
        5,
        "read(2) completes after the fault is resolved"
    );
    let b = mem.bytes();
    assert_eq!(&b[..16], &data[..16]);
    assert_eq!(&b[16..21], b"hello");
    assert_eq!(&b[21..PAGE], &data[21..]);

    // write(2) from page 1: the kernel's copy_from_user traps with a read fault.
    let m = mem.clone();
    let wfd = w.as_raw_fd();
    let t = std::thread::spawn(move || {
        // SAFETY: the source is inside the live mapping `m`.
        unsafe { libc::write(wfd, m.addr.add(PAGE).cast(), 64) }
    });
    let f = next_fault(&u, 5000);
    assert_eq!(f.address, mem.page_addr(1));
    assert!(
        !f.flags.contains(FaultFlags::WRITE),
        "write(2) from the page is a read fault: {f:?}"
    );
    let data = pattern(PAGE, 9);
    unsafe { u.copy_from_slice(mem.page_addr(1), &data, CopyMode::empty()) }.unwrap();
    assert_eq!(t.join().unwrap(), 64);
    let mut got = [0u8; 64];
    // SAFETY: valid buffer.
    let n = unsafe { libc::read(r.as_raw_fd(), got.as_mut_ptr().cast(), 64) };
    assert_eq!(n, 64);
    assert_eq!(&got[..], &data[..64]);
    assert_eq!(kernel_waiting_faults(u.as_raw_fd()), 0);
}

#[test]
fn nonblock_flag() {
    let _w = Watchdog::new("nonblock_flag", 60);
    let u = Uffd::open(&opts(
        OpenFlags::NONBLOCK,
        Features::empty(),
        Features::empty(),
    ))
    .unwrap();
    assert_ne!(status_flags(u.as_raw_fd()) & libc::O_NONBLOCK, 0);
    assert_ne!(fd_flags(u.as_raw_fd()) & libc::FD_CLOEXEC, 0);
    assert!(u.is_nonblocking());
    let mut buf = [Msg::default(), Msg::default()];
    let t0 = Instant::now();
    assert_eq!(u.read_msgs(&mut buf, 0).unwrap(), 0);
    assert!(t0.elapsed() < Duration::from_millis(500));
    fault_roundtrip(&u);
}

#[test]
fn no_cloexec_flag() {
    let _w = Watchdog::new("no_cloexec_flag", 60);
    let u = Uffd::open(&opts(
        OpenFlags::NO_CLOEXEC,
        Features::empty(),
        Features::empty(),
    ))
    .unwrap();
    assert_eq!(fd_flags(u.as_raw_fd()) & libc::FD_CLOEXEC, 0);
    assert_eq!(status_flags(u.as_raw_fd()) & libc::O_NONBLOCK, 0);
    let u = Uffd::open(&opts(
        OpenFlags::NO_CLOEXEC | OpenFlags::NONBLOCK,
        Features::empty(),
        Features::empty(),
    ))
    .unwrap();
    assert_eq!(fd_flags(u.as_raw_fd()) & libc::FD_CLOEXEC, 0);
    assert_ne!(status_flags(u.as_raw_fd()) & libc::O_NONBLOCK, 0);
}

#[test]
fn syscall_only_and_device_only_both_work_as_root() {
    let _w = Watchdog::new("syscall_only_and_device_only_both_work_as_root", 60);
    for only in [OpenFlags::NO_DEV, OpenFlags::NO_SYSCALL] {
        for extra in [OpenFlags::empty(), OpenFlags::USER_ONLY] {
            let flags = only | extra | OpenFlags::NONBLOCK;
            let u = Uffd::open(&opts(flags, Features::THREAD_ID, Features::THREAD_ID))
                .unwrap_or_else(|e| panic!("open with {flags:?}: {e}"));
            assert_eq!(u.features(), Features::THREAD_ID, "{flags:?}");
            assert_eq!(
                kernel_features(u.as_raw_fd()),
                INITIALIZED | Features::THREAD_ID.bits()
            );
            assert_ne!(fd_flags(u.as_raw_fd()) & libc::FD_CLOEXEC, 0);
            fault_roundtrip(&u);
        }
    }
}

#[test]
fn no_syscall_and_no_dev_together_is_einval() {
    let _w = Watchdog::new("no_syscall_and_no_dev_together_is_einval", 60);
    let e = Uffd::open(&opts(
        OpenFlags::NO_SYSCALL | OpenFlags::NO_DEV,
        Features::empty(),
        Features::empty(),
    ))
    .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    let text = e.to_string();
    assert!(
        text.contains("NO_SYSCALL") && text.contains("NO_DEV"),
        "{text}"
    );
}

#[test]
fn probe_offers_all_17_features_of_6_18() {
    let _w = Watchdog::new("probe_offers_all_17_features_of_6_18", 60);
    let p = ::uffd::probe().expect("probe");
    assert_eq!(
        p.features.bits(),
        ALL_6_18,
        "features offered by this 6.18 kernel"
    );
    // UFFD_API_IOCTLS = REGISTER | UNREGISTER | API.
    assert_eq!(p.ioctls.bits(), 0x8000_0000_0000_0003);
    assert!(p
        .ioctls
        .contains(Ioctls::REGISTER | Ioctls::UNREGISTER | Ioctls::API));
    // probe() is cached and stable.
    assert_eq!(::uffd::probe().unwrap(), p);
}

#[test]
fn open_reports_offered_and_enables_exactly_the_wanted_features() {
    let _w = Watchdog::new(
        "open_reports_offered_and_enables_exactly_the_wanted_features",
        60,
    );
    let want = Features::THREAD_ID | Features::EXACT_ADDRESS | Features::EVENT_REMOVE;
    let u = Uffd::open(&opts(OpenFlags::empty(), want, Features::empty())).unwrap();
    assert_eq!(u.features(), want);
    assert_eq!(u.offered_features().map(|f| f.bits()), Some(ALL_6_18));
    assert_eq!(kernel_features(u.as_raw_fd()), INITIALIZED | want.bits());

    // Everything at once (EVENT_FORK included: root has CAP_SYS_PTRACE).
    let all = Features::from_bits_retain(ALL_6_18);
    let u = Uffd::open(&opts(OpenFlags::empty(), all, all)).unwrap();
    assert_eq!(u.features().bits(), ALL_6_18);
    assert_eq!(kernel_features(u.as_raw_fd()), INITIALIZED | ALL_6_18);
}

#[test]
fn wanted_unknown_bit_is_dropped_silently() {
    let _w = Watchdog::new("wanted_unknown_bit_is_dropped_silently", 60);
    let bit40 = Features::from_bits_retain(1 << 40);
    let u = Uffd::open(&opts(
        OpenFlags::empty(),
        Features::THREAD_ID | bit40,
        Features::empty(),
    ))
    .expect("an unknown wanted bit must not fail the open");
    assert_eq!(u.features(), Features::THREAD_ID);
    assert!(!u.features().contains(bit40));
    assert_eq!(
        kernel_features(u.as_raw_fd()),
        INITIALIZED | Features::THREAD_ID.bits()
    );
    // Required known bits stay while an unknown wanted one is dropped.
    let u = Uffd::open(&opts(
        OpenFlags::empty(),
        bit40 | Features::MOVE,
        Features::EXACT_ADDRESS,
    ))
    .unwrap();
    assert_eq!(u.features(), Features::MOVE | Features::EXACT_ADDRESS);
}

#[test]
fn required_unknown_bit_is_eopnotsupp_naming_the_bit() {
    let _w = Watchdog::new("required_unknown_bit_is_eopnotsupp_naming_the_bit", 60);
    let bit40 = Features::from_bits_retain(1 << 40);
    let e = Uffd::open(&opts(OpenFlags::empty(), Features::THREAD_ID, bit40)).unwrap_err();
    assert_eq!(e.errno(), libc::EOPNOTSUPP);
    assert!(!e.is_again() && !e.is_exists());
    let text = e.to_string();
    assert!(text.contains("bit40"), "{text}");
    assert!(matches!(e, Error::MissingFeatures { missing, .. } if missing.bits() == 1 << 40));
}

#[test]
fn wp_async_implies_wp_unpopulated() {
    let _w = Watchdog::new("wp_async_implies_wp_unpopulated", 60);
    let u = Uffd::open(&opts(
        OpenFlags::empty(),
        Features::WP_ASYNC | Features::PAGEFAULT_FLAG_WP,
        Features::WP_ASYNC,
    ))
    .unwrap();
    assert!(
        u.features().contains(Features::WP_UNPOPULATED),
        "{:?}",
        u.features()
    );
    assert_eq!(
        u.features(),
        Features::WP_ASYNC | Features::PAGEFAULT_FLAG_WP | Features::WP_UNPOPULATED
    );
    // The library's view matches the kernel's.
    assert_eq!(
        kernel_features(u.as_raw_fd()),
        INITIALIZED | u.features().bits()
    );
}

#[test]
fn adopt_fresh_raw_fd_does_the_handshake() {
    let _w = Watchdog::new("adopt_fresh_raw_fd_does_the_handshake", 60);
    // SAFETY: userfaultfd(O_CLOEXEC | UFFD_USER_MODE_ONLY), no handshake.
    let raw = unsafe { libc::syscall(323, libc::O_CLOEXEC | 1) };
    assert!(
        raw >= 0,
        "userfaultfd(2): {}",
        std::io::Error::last_os_error()
    );
    let raw = raw as i32;
    assert_eq!(kernel_features(raw), 0, "not negotiated yet");
    // SAFETY: fresh descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let want = Features::THREAD_ID | Features::EXACT_ADDRESS;
    let u = Uffd::adopt(fd, &opts(OpenFlags::NONBLOCK, want, Features::empty()))
        .map_err(|(e, _)| e)
        .expect("adopt");
    assert_eq!(u.as_raw_fd(), raw);
    assert_eq!(u.features(), want);
    assert_eq!(u.offered_features().map(|f| f.bits()), Some(ALL_6_18));
    assert_eq!(kernel_features(raw), INITIALIZED | want.bits());
    // The fd keeps its own flags (opts.flags is ignored): it is blocking.
    assert!(!u.is_nonblocking());
    fault_roundtrip(&u);
}

#[test]
fn adopt_negotiated_fd_reads_features_back() {
    let _w = Watchdog::new("adopt_negotiated_fd_reads_features_back", 60);
    let want = Features::THREAD_ID | Features::EXACT_ADDRESS | Features::EVENT_REMOVE;
    let orig = open_uffd(want);
    // SAFETY: dup of a live fd gives a new owned descriptor.
    let dup = unsafe { libc::fcntl(orig.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    assert!(dup >= 0);
    // SAFETY: fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(dup) };
    // Ask for other features: the handshake is done, so they are ignored.
    let u = Uffd::adopt(
        fd,
        &opts(
            OpenFlags::empty(),
            Features::MOVE | Features::POISON,
            Features::empty(),
        ),
    )
    .map_err(|(e, _)| e)
    .expect("adopt negotiated fd");
    assert_eq!(u.features(), want, "features read back from fdinfo");
    assert_eq!(u.offered_features(), None, "no handshake was done by adopt");
    assert!(u.is_nonblocking(), "O_NONBLOCK is shared with the original");
    assert_eq!(kernel_features(dup), INITIALIZED | want.bits());
    // The adopted handle serves faults (same ctx).
    fault_roundtrip(&u);
    // The features it decodes with include EXACT_ADDRESS.
    assert!(u.features().contains(Features::EXACT_ADDRESS));
}

#[test]
fn adopt_non_uffd_fails_and_hands_fd_back() {
    let _w = Watchdog::new("adopt_non_uffd_fails_and_hands_fd_back", 60);
    let (r, w) = pipe();
    let wraw = w.as_raw_fd();
    let (e, back) = Uffd::adopt(w, &OpenOptions::default()).expect_err("a pipe is not a uffd");
    assert_eq!(e.errno(), libc::EINVAL);
    assert!(e.to_string().contains("not a userfaultfd"), "{e}");
    assert_eq!(back.as_raw_fd(), wraw, "the same fd is handed back");
    // It is still open and still the pipe's write end.
    assert!(fd_flags(wraw) >= 0);
    assert_eq!(write_fd(back.as_raw_fd(), b"x"), 1);
    let mut c = [0u8; 1];
    // SAFETY: valid buffer.
    assert_eq!(
        unsafe { libc::read(r.as_raw_fd(), c.as_mut_ptr().cast(), 1) },
        1
    );
    assert_eq!(c[0], b'x');
}

#[test]
fn adopt_required_feature_not_enabled_is_eopnotsupp() {
    let _w = Watchdog::new("adopt_required_feature_not_enabled_is_eopnotsupp", 60);
    let orig = open_uffd(Features::THREAD_ID);
    // SAFETY: dup of a live fd.
    let dup = unsafe { libc::fcntl(orig.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    assert!(dup >= 0);
    // SAFETY: fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(dup) };
    let (e, back) = Uffd::adopt(
        fd,
        &opts(
            OpenFlags::empty(),
            Features::empty(),
            Features::EXACT_ADDRESS,
        ),
    )
    .expect_err("EXACT_ADDRESS was not negotiated on that fd");
    assert_eq!(e.errno(), libc::EOPNOTSUPP);
    assert!(e.to_string().contains("EXACT_ADDRESS"), "{e}");
    assert_eq!(back.as_raw_fd(), dup);
    // Handed back intact: adopting it without the requirement works.
    let u = Uffd::adopt(back, &OpenOptions::default())
        .map_err(|(e, _)| e)
        .unwrap();
    assert_eq!(u.features(), Features::THREAD_ID);
}

#[test]
fn adopt_fresh_fd_with_unknown_required_bit_keeps_it_unspent() {
    let _w = Watchdog::new(
        "adopt_fresh_fd_with_unknown_required_bit_keeps_it_unspent",
        60,
    );
    // SAFETY: userfaultfd(O_CLOEXEC | UFFD_USER_MODE_ONLY).
    let raw = unsafe { libc::syscall(323, libc::O_CLOEXEC | 1) };
    assert!(raw >= 0);
    // SAFETY: fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    let bit40 = Features::from_bits_retain(1 << 40);
    let (e, back) = Uffd::adopt(fd, &opts(OpenFlags::empty(), Features::empty(), bit40))
        .expect_err("bit 40 cannot be had");
    assert_eq!(e.errno(), libc::EOPNOTSUPP);
    assert!(e.to_string().contains("bit40"), "{e}");
    assert_eq!(kernel_features(back.as_raw_fd()), 0, "handshake not spent");
    let u = Uffd::adopt(
        back,
        &opts(OpenFlags::empty(), Features::MOVE, Features::MOVE),
    )
    .map_err(|(e, _)| e)
    .unwrap();
    assert_eq!(u.features(), Features::MOVE);
}

// ---- unprivileged creation, in a forked child --------------------------

/// Run `f` in a forked child and return its exit code and what it wrote.
/// The child only runs `f` and `_exit`s; it never unwinds into the test
/// harness.
fn in_child(f: fn() -> String) -> (i32, String) {
    let (r, w) = pipe();
    // SAFETY: fork; the child only runs `f`, writes to the pipe and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let out = std::panic::catch_unwind(f).unwrap_or_else(|_| "PANIC".to_string());
        let mut b = out.as_bytes();
        while !b.is_empty() {
            let n = write_fd(w.as_raw_fd(), b);
            if n <= 0 {
                break;
            }
            b = &b[n as usize..];
        }
        // SAFETY: terminate the child without running any destructor.
        unsafe { libc::_exit(0) };
    }
    drop(w);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    loop {
        let mut pfd = libc::pollfd {
            fd: r.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 100) };
        let mut buf = [0u8; 4096];
        // SAFETY: valid buffer.
        let n = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 {
            break;
        }
        if n > 0 {
            out.extend_from_slice(&buf[..n as usize]);
        }
        if Instant::now() > deadline {
            // SAFETY: our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("child {pid} did not finish");
        }
    }
    let mut status = 0;
    // SAFETY: our own child; the pipe hit EOF so it is exiting.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, String::from_utf8_lossy(&out).into_owned())
}

/// Drop to uid/gid 65534 (nobody), losing every capability.
fn become_nobody() -> Result<(), String> {
    // SAFETY: plain credential syscalls in a single-threaded child.
    unsafe {
        if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0
            || libc::syscall(libc::SYS_setresgid, 65534, 65534, 65534) != 0
            || libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) != 0
        {
            return Err(format!("setresuid: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn describe(r: Result<Uffd, Error>) -> String {
    match r {
        Ok(u) => format!("OK {:#x}", u.features().bits()),
        Err(e) => format!("ERR {} {}", e.errno(), e),
    }
}

fn unprivileged_scenarios() -> String {
    if let Err(e) = become_nobody() {
        return format!("SETUP {e}");
    }
    let none = Features::empty();
    [
        // 0: kernel faults (the default): both paths closed.
        describe(Uffd::open(&OpenOptions::default())),
        // 1: user-mode-only is open to anyone.
        describe(Uffd::open(&opts(OpenFlags::USER_ONLY, none, none))),
        // 2: only the device, which only root may open.
        describe(Uffd::open(&opts(
            OpenFlags::NO_SYSCALL | OpenFlags::USER_ONLY,
            none,
            none,
        ))),
        // 3: EVENT_FORK only wanted: dropped (needs CAP_SYS_PTRACE).
        describe(Uffd::open(&opts(
            OpenFlags::USER_ONLY,
            Features::EVENT_FORK | Features::THREAD_ID,
            none,
        ))),
        // 4: EVENT_FORK required: refused.
        describe(Uffd::open(&opts(
            OpenFlags::USER_ONLY,
            none,
            Features::EVENT_FORK,
        ))),
    ]
    .join("\n")
}

#[test]
fn unprivileged_open_errors_name_every_path() {
    let _w = Watchdog::new("unprivileged_open_errors_name_every_path", 60);
    let (code, out) = in_child(unprivileged_scenarios);
    eprintln!("unprivileged child:\n{out}");
    assert_eq!(code, 0, "child output: {out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "child output: {out}");

    // 0: both paths tried and both named.
    let l = lines[0];
    assert!(l.starts_with(&format!("ERR {} ", libc::EPERM)), "{l}");
    assert!(l.contains("userfaultfd(2)") && l.contains("EPERM"), "{l}");
    assert!(l.contains("vm.unprivileged_userfaultfd"), "{l}");
    // ... and both ways out: privilege, or asking for user-mode-only.
    assert!(
        l.contains("CAP_SYS_PTRACE") && l.contains("USER_ONLY"),
        "{l}"
    );
    assert!(
        l.contains("/dev/userfaultfd") && l.contains("EACCES"),
        "{l}"
    );

    // 1: the user-mode-only syscall path works for nobody.
    assert_eq!(lines[1], "OK 0x0");

    // 2: the device alone: EACCES.
    let l = lines[2];
    assert!(l.starts_with(&format!("ERR {} ", libc::EACCES)), "{l}");
    assert!(
        l.contains("/dev/userfaultfd") && !l.contains("userfaultfd(2)"),
        "{l}"
    );

    // 3: wanted EVENT_FORK dropped, THREAD_ID kept.
    assert_eq!(lines[3], format!("OK {:#x}", Features::THREAD_ID.bits()));

    // 4: required EVENT_FORK: EPERM naming the capability.
    let l = lines[4];
    assert!(l.starts_with(&format!("ERR {} ", libc::EPERM)), "{l}");
    assert!(l.contains("CAP_SYS_PTRACE"), "{l}");
}
