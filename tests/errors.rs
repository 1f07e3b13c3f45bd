// SPDX-License-Identifier: MIT OR Apache-2.0
//! The error and race table of docs/kernel-semantics.md §5, on the kernel:
//! EEXIST, EAGAIN (event pending, and partial progress), ENOENT, ESRCH,
//! EINVAL (always the kernel's, explained by libuffd's diagnosis), EBUSY, and
//! the one-shot API handshake. Each error's `errno()` and its text are
//! checked.
#![allow(unsafe_code)]

mod common;
use common::*;

use ::uffd::{
    ContinueMode, CopyMode, Error, Event, Features, MoveMode, OpenOptions, PoisonMode, Range,
    RegisterMode, Uffd, WriteprotectMode, ZeropageMode,
};
use common::raw::{self, UffdioApi, UffdioRange, UffdioRegister, UFFD_API};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::{mpsc, Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

const P: u64 = PAGE as u64;

/// Tests register memory under a read lock; a test that munmaps a
/// registered range and then aims at the hole takes the write lock, so
/// that no other test of this binary can register fresh memory there.
static LAYOUT: RwLock<()> = RwLock::new(());

fn layout_shared() -> RwLockReadGuard<'static, ()> {
    LAYOUT.read().unwrap_or_else(|e| e.into_inner())
}

fn layout_exclusive() -> RwLockWriteGuard<'static, ()> {
    LAYOUT.write().unwrap_or_else(|e| e.into_inner())
}

fn kernel_has(f: Features) -> bool {
    let offered = ::uffd::probe().expect("probe").features;
    if !offered.contains(f) {
        eprintln!("SKIP: kernel lacks {:?}", f - offered);
        return false;
    }
    true
}

fn gettid() -> u32 {
    // SAFETY: no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

fn wait_blocked(tid: u32) {
    let t0 = Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        let state = stat.rsplit(')').next().unwrap().trim_start().chars().next();
        if state == Some('D') {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "thread {tid} not blocked (state {state:?})"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Assert `e` is the kernel's `errno` for `op`, with readable text.
#[track_caller]
fn assert_kernel(e: &Error, op: &str, errno: i32, name: &str) {
    assert_eq!(e.errno(), errno, "{e}");
    assert!(
        matches!(e, Error::Kernel { .. }),
        "not a kernel error: {e:?}"
    );
    let text = e.to_string();
    assert!(text.contains(op) && text.contains(name), "{text}");
    assert_eq!(e.is_exists(), errno == libc::EEXIST);
    assert_eq!(e.is_again(), errno == libc::EAGAIN);
}

/// Assert `e` is the kernel's EINVAL for a malformed argument (the kernel
/// is always asked: its errno is the one returned), with libuffd's
/// diagnosis naming the problem in the text.
#[track_caller]
fn assert_invalid(e: &Error, op: &str, words: &str) {
    assert_eq!(e.errno(), libc::EINVAL, "{e}");
    assert!(
        matches!(e, Error::Kernel { .. }),
        "{op}: the kernel was not asked: {e:?}"
    );
    let text = e.to_string();
    assert!(text.contains(op), "message must name {op}: {text}");
    assert!(text.contains(words), "message must say `{words}`: {text}");
    assert!(
        e.detail().is_some_and(|d| d.contains(words)),
        "the diagnosis must say `{words}`: {e:?}"
    );
    assert!(!e.is_again() && !e.is_exists());
}

#[test]
fn eexist_on_populated_page() {
    let _w = Watchdog::new("eexist_on_populated_page", 60);
    let _l = layout_shared();
    let mem = Mem::new(Kind::Anon, 2);
    let u = open_uffd(Features::empty());
    u.register(Range::new(mem.start(), 2 * P), RegisterMode::MISSING)
        .unwrap();
    let data = pattern(PAGE, 3);
    assert!(
        unsafe { u.zeropage(Range::new(mem.page_addr(0), P), ZeropageMode::empty()) }
            .unwrap()
            .is_complete()
    );
    let e = unsafe { u.copy_from_slice(mem.page_addr(0), &data, CopyMode::empty()) }.unwrap_err();
    assert_kernel(&e, "UFFDIO_COPY", libc::EEXIST, "EEXIST");
    let e =
        unsafe { u.zeropage(Range::new(mem.page_addr(0), P), ZeropageMode::empty()) }.unwrap_err();
    assert_kernel(&e, "UFFDIO_ZEROPAGE", libc::EEXIST, "EEXIST");

    assert!(
        unsafe { u.copy_from_slice(mem.page_addr(1), &data, CopyMode::empty()) }
            .unwrap()
            .is_complete()
    );
    let e =
        unsafe { u.zeropage(Range::new(mem.page_addr(1), P), ZeropageMode::empty()) }.unwrap_err();
    assert_kernel(&e, "UFFDIO_ZEROPAGE", libc::EEXIST, "EEXIST");
    let e = unsafe { u.copy_from_slice(mem.page_addr(1), &data, CopyMode::empty()) }.unwrap_err();
    assert!(e.is_exists());
    // Contents are the first resolution's.
    assert_eq!(mem.read(PAGE + 17), data[17]);
    assert_eq!(mem.read(17), 0);
    // EEXIST is "resolved": waking the (empty) range is fine.
    u.wake(Range::new(mem.start(), 2 * P)).unwrap();
}

#[test]
fn partial_progress_then_eexist_on_the_rest() {
    let _w = Watchdog::new("partial_progress_then_eexist_on_the_rest", 60);
    let _l = layout_shared();
    let mem = Mem::new(Kind::Anon, 3);
    let u = open_uffd(Features::empty());
    u.register(Range::new(mem.start(), 3 * P), RegisterMode::MISSING)
        .unwrap();
    unsafe { u.zeropage(Range::new(mem.page_addr(1), P), ZeropageMode::empty()) }.unwrap();
    let data = pattern(3 * PAGE, 6);
    // The kernel stops at page 1 and reports 1 page done (EAGAIN, copy=4096).
    let p = unsafe { u.copy_from_slice(mem.start(), &data, CopyMode::empty()) }.unwrap();
    assert_eq!((p.done, p.len), (P, 3 * P));
    assert!(!p.is_complete());
    // Continuing at start + done hits the populated page.
    let e = unsafe {
        u.copy_from_slice(
            mem.start() + p.done,
            &data[p.done as usize..],
            CopyMode::empty(),
        )
    }
    .unwrap_err();
    assert_kernel(&e, "UFFDIO_COPY", libc::EEXIST, "EEXIST");
    // ZEROPAGE reports progress the same way.
    let p = unsafe { u.zeropage(Range::new(mem.page_addr(2), P), ZeropageMode::empty()) }.unwrap();
    assert!(p.is_complete());
    assert_eq!(mem.read(5), data[5]);
    assert_eq!(mem.read(PAGE + 5), 0);
}

#[test]
fn eagain_while_remove_event_unread() {
    let _w = Watchdog::new("eagain_while_remove_event_unread", 60);
    if !kernel_has(Features::EVENT_REMOVE) {
        return;
    }
    let _l = layout_shared();
    let src = Mem::new(Kind::Anon, 1);
    src.write(0, 1);
    let mem = Mem::new(Kind::Anon, 2);
    let u = open_uffd(Features::EVENT_REMOVE);
    u.register(Range::new(mem.start(), 2 * P), RegisterMode::MISSING)
        .unwrap();
    unsafe { u.zeropage(Range::new(mem.page_addr(0), P), ZeropageMode::empty()) }.unwrap();

    let (addr, tx_rx) = (mem.page_addr(0), mpsc::channel());
    let tx = tx_rx.0;
    let t = std::thread::spawn(move || {
        tx.send(gettid()).unwrap();
        // SAFETY: advice on a mapping of the test.
        unsafe { libc::madvise(addr as *mut _, PAGE, libc::MADV_DONTNEED) }
    });
    wait_blocked(tx_rx.1.recv().unwrap());

    let data = pattern(PAGE, 4);
    let e = unsafe { u.copy_from_slice(mem.page_addr(1), &data, CopyMode::empty()) }.unwrap_err();
    assert_kernel(&e, "UFFDIO_COPY", libc::EAGAIN, "EAGAIN");
    assert!(e.to_string().contains("read events"), "{e}");
    let e =
        unsafe { u.zeropage(Range::new(mem.page_addr(1), P), ZeropageMode::empty()) }.unwrap_err();
    assert_kernel(&e, "UFFDIO_ZEROPAGE", libc::EAGAIN, "EAGAIN");
    let e = unsafe {
        u.move_pages(
            Range::new(mem.page_addr(1), P),
            src.start(),
            MoveMode::empty(),
        )
    }
    .unwrap_err();
    assert_kernel(&e, "UFFDIO_MOVE", libc::EAGAIN, "EAGAIN");
    let e = u
        .writeprotect(Range::new(mem.page_addr(1), P), WriteprotectMode::WP)
        .unwrap_err();
    assert_kernel(&e, "UFFDIO_WRITEPROTECT", libc::EAGAIN, "EAGAIN");

    // Drain the event; madvise then completes and the retry works.
    match next_event(&u, 5000) {
        Event::Remove { start, end } => assert_eq!((start, end), (addr, addr + P)),
        other => panic!("expected REMOVE, got {other:?}"),
    }
    assert_eq!(t.join().unwrap(), 0);
    assert!(
        unsafe { u.copy_from_slice(mem.page_addr(1), &data, CopyMode::empty()) }
            .unwrap()
            .is_complete()
    );
    // Page 0 was zapped by the madvise: COPY fills it again.
    assert!(
        unsafe { u.copy_from_slice(mem.page_addr(0), &data, CopyMode::empty()) }
            .unwrap()
            .is_complete()
    );
    assert_eq!(mem.read(10), data[10]);
    assert_eq!(mem.read(PAGE + 10), data[10]);
    drop(u);
}

#[test]
fn enoent_on_unregistered_range() {
    let _w = Watchdog::new("enoent_on_unregistered_range", 60);
    let _l = layout_shared();
    let mem = Mem::new(Kind::Anon, 2);
    let u = open_uffd(Features::empty());
    let data = pattern(PAGE, 1);
    let e = unsafe { u.copy_from_slice(mem.start(), &data, CopyMode::empty()) }.unwrap_err();
    assert_kernel(&e, "UFFDIO_COPY", libc::ENOENT, "ENOENT");
    let e = unsafe { u.zeropage(Range::new(mem.start(), P), ZeropageMode::empty()) }.unwrap_err();
    assert_kernel(&e, "UFFDIO_ZEROPAGE", libc::ENOENT, "ENOENT");
    // Registered, then unregistered: the same.
    u.register(Range::new(mem.start(), 2 * P), RegisterMode::MISSING)
        .unwrap();
    u.unregister(Range::new(mem.start(), 2 * P)).unwrap();
    let e = unsafe { u.copy_from_slice(mem.page_addr(1), &data, CopyMode::empty()) }.unwrap_err();
    assert_kernel(&e, "UFFDIO_COPY", libc::ENOENT, "ENOENT");
    assert_eq!(mem.read(PAGE), 0, "nothing was written");
}

#[test]
fn enoent_when_range_crosses_the_registered_vma_end() {
    let _w = Watchdog::new("enoent_when_range_crosses_the_registered_vma_end", 60);
    let _l = layout_shared();
    let mem = Mem::new(Kind::Anon, 2);
    let u = open_uffd(Features::empty());
    u.register(Range::new(mem.start(), 2 * P), RegisterMode::MISSING)
        .unwrap();
    let data = pattern(3 * PAGE, 1);
    let e = unsafe { u.copy_from_slice(mem.page_addr(1), &data[..2 * PAGE], CopyMode::empty()) }
        .unwrap_err();
    assert_kernel(&e, "UFFDIO_COPY", libc::ENOENT, "ENOENT");
    let e =
        unsafe { u.zeropage(Range::new(mem.start(), 3 * P), ZeropageMode::empty()) }.unwrap_err();
    assert_kernel(&e, "UFFDIO_ZEROPAGE", libc::ENOENT, "ENOENT");
}

#[test]
fn enoent_after_munmap() {
    let _w = Watchdog::new("enoent_after_munmap", 60);
    let _l = layout_exclusive();
    let mut mem = Mem::new(Kind::Anon, 2);
    let u = open_uffd(Features::empty());
    u.register(Range::new(mem.start(), 2 * P), RegisterMode::MISSING)
        .unwrap();
    let (start, data) = (mem.start(), pattern(PAGE, 1));
    mem.unmap();
    let e = unsafe { u.copy_from_slice(start, &data, CopyMode::empty()) }.unwrap_err();
    assert_kernel(&e, "UFFDIO_COPY", libc::ENOENT, "ENOENT");
    assert!(e.to_string().contains("unmapped"), "{e}");
    let e = unsafe { u.zeropage(Range::new(start + P, P), ZeropageMode::empty()) }.unwrap_err();
    assert_kernel(&e, "UFFDIO_ZEROPAGE", libc::ENOENT, "ENOENT");
    // WAKE needs no mapping.
    u.wake(Range::new(start, 2 * P)).unwrap();
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut p = [0i32; 2];
    // SAFETY: valid 2-int array.
    assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors.
    unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) }
}

/// The body of the ESRCH child: create and register a uffd on its own
/// copy of `[start, start+len)`, publish the fd number, wait, exit. Raw
/// system calls only (no allocation, no locks) between fork and _exit.
fn esrch_child(start: u64, len: u64, tell: i32, wait: i32, parent_ends: [i32; 2]) -> ! {
    // SAFETY: async-signal-safe calls only; the child ends in _exit.
    unsafe {
        // Our copies of the parent's pipe ends would keep `wait` from
        // ever reaching EOF.
        libc::close(parent_ends[0]);
        libc::close(parent_ends[1]);
        let fd = libc::syscall(323, libc::O_CLOEXEC | libc::O_NONBLOCK | 1) as i32;
        if fd < 0 {
            libc::_exit(10);
        }
        let b = BorrowedFd::borrow_raw(fd);
        let mut api = UffdioApi {
            api: UFFD_API,
            features: 0,
            ioctls: 0,
        };
        if raw::api(b, &mut api).is_err() {
            libc::_exit(11);
        }
        let mut reg = UffdioRegister {
            range: UffdioRange { start, len },
            mode: 1,
            ioctls: 0,
        };
        if raw::register(b, &mut reg).is_err() {
            libc::_exit(12);
        }
        if libc::write(tell, (&fd as *const i32).cast(), 4) != 4 {
            libc::_exit(13);
        }
        let mut c = 0u8;
        libc::read(wait, (&mut c as *mut u8).cast(), 1);
        libc::_exit(0);
    }
}

fn wait_child(pid: i32) -> i32 {
    let t0 = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                -1
            };
        }
        if t0.elapsed() > Duration::from_secs(10) {
            // SAFETY: our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("child {pid} hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn esrch_after_the_forked_owner_exits() {
    let _w = Watchdog::new("esrch_after_the_forked_owner_exits", 60);
    let _l = layout_shared();
    let mem = Mem::new(Kind::Anon, 2);
    let (tell_r, tell_w) = pipe();
    let (wait_r, wait_w) = pipe();
    let (start, len) = (mem.start(), 2 * P);
    let (tw, wr) = (tell_w.as_raw_fd(), wait_r.as_raw_fd());
    // SAFETY: the child only runs esrch_child (raw syscalls, then _exit).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        esrch_child(start, len, tw, wr, [tell_r.as_raw_fd(), wait_w.as_raw_fd()]);
    }
    drop(tell_w);
    drop(wait_r);
    let mut child_fd = 0i32;
    // SAFETY: reading 4 bytes into an i32.
    let n = unsafe { libc::read(tell_r.as_raw_fd(), (&mut child_fd as *mut i32).cast(), 4) };
    if n != 4 {
        panic!("child failed to set up (exit code {})", wait_child(pid));
    }
    // Take the child's uffd into this process.
    // SAFETY: plain pidfd syscalls; results checked.
    let fd = unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        assert!(
            pidfd >= 0,
            "pidfd_open: {}",
            std::io::Error::last_os_error()
        );
        let fd = libc::syscall(libc::SYS_pidfd_getfd, pidfd, child_fd, 0) as i32;
        let err = std::io::Error::last_os_error();
        libc::close(pidfd);
        assert!(fd >= 0, "pidfd_getfd: {err}");
        OwnedFd::from_raw_fd(fd)
    };
    let u = Uffd::adopt(fd, &OpenOptions::default())
        .map_err(|(e, _)| e)
        .expect("adopt the child's uffd");
    assert_eq!(u.features(), Features::empty());
    assert!(u.is_nonblocking());
    // While the child lives, COPY fills the child's memory (not ours).
    let data = pattern(PAGE, 2);
    assert!(
        unsafe { u.copy_from_slice(start, &data, CopyMode::empty()) }
            .unwrap()
            .is_complete()
    );
    assert_eq!(mem.read(0), 0, "our own page is untouched");

    drop(wait_w); // the child sees EOF and exits
    assert_eq!(wait_child(pid), 0);
    let e = unsafe { u.copy_from_slice(start + P, &data, CopyMode::empty()) }.unwrap_err();
    assert_kernel(&e, "UFFDIO_COPY", libc::ESRCH, "ESRCH");
    assert!(e.to_string().contains("exited"), "{e}");
    let e = unsafe { u.zeropage(Range::new(start + P, P), ZeropageMode::empty()) }.unwrap_err();
    assert_kernel(&e, "UFFDIO_ZEROPAGE", libc::ESRCH, "ESRCH");
}

#[test]
fn unknown_mode_bits_are_einval_on_every_op() {
    let _w = Watchdog::new("unknown_mode_bits_are_einval_on_every_op", 60);
    let _l = layout_shared();
    let mem = Mem::new(Kind::Anon, 2);
    let other = Mem::new(Kind::Anon, 1);
    let u = open_uffd(Features::empty());
    u.register(Range::new(mem.start(), 2 * P), RegisterMode::MISSING)
        .unwrap();
    let (a, s) = (mem.start(), other.start());
    let cases: Vec<(&str, Result<(), Error>)> = vec![
        (
            "UFFDIO_REGISTER",
            u.register(Range::new(a, P), RegisterMode::from_bits_retain(1 << 3))
                .map(|_| ()),
        ),
        (
            "UFFDIO_COPY",
            unsafe {
                u.copy(
                    Range::new(a, P),
                    (s) as usize as *const u8,
                    CopyMode::from_bits_retain(1 << 2),
                )
            }
            .map(|_| ()),
        ),
        (
            "UFFDIO_ZEROPAGE",
            unsafe { u.zeropage(Range::new(a, P), ZeropageMode::from_bits_retain(1 << 1)) }
                .map(|_| ()),
        ),
        (
            "UFFDIO_WRITEPROTECT",
            u.writeprotect(Range::new(a, P), WriteprotectMode::from_bits_retain(1 << 2)),
        ),
        (
            "UFFDIO_CONTINUE",
            unsafe { u.continue_range(Range::new(a, P), ContinueMode::from_bits_retain(1 << 2)) }
                .map(|_| ()),
        ),
        (
            "UFFDIO_POISON",
            unsafe { u.poison(Range::new(a, P), PoisonMode::from_bits_retain(1 << 1)) }.map(|_| ()),
        ),
        (
            "UFFDIO_MOVE",
            unsafe { u.move_pages(Range::new(a, P), s, MoveMode::from_bits_retain(1 << 2)) }
                .map(|_| ()),
        ),
        (
            "UFFDIO_COPY",
            unsafe {
                u.copy(
                    Range::new(a, P),
                    (s) as usize as *const u8,
                    CopyMode::from_bits_retain(1 << 63),
                )
            }
            .map(|_| ()),
        ),
    ];
    for (op, r) in cases {
        let e = r.expect_err(op);
        assert_invalid(&e, op, "unknown mode bits");
    }
    // WRITEPROTECT: WP and DONTWAKE are each valid, not together.
    let e = u
        .writeprotect(
            Range::new(a, P),
            WriteprotectMode::WP | WriteprotectMode::DONTWAKE,
        )
        .unwrap_err();
    assert_invalid(&e, "UFFDIO_WRITEPROTECT", "together");
    // Nothing was mapped by any of them: page 0 is still missing.
    let e = unsafe { u.zeropage(Range::new(a, P), ZeropageMode::empty()) };
    assert!(e.unwrap().is_complete());
}

#[test]
fn bad_ranges_are_einval_on_every_op() {
    let _w = Watchdog::new("bad_ranges_are_einval_on_every_op", 60);
    let _l = layout_shared();
    let mem = Mem::new(Kind::Anon, 2);
    let other = Mem::new(Kind::Anon, 2);
    let u = open_uffd(Features::empty());
    u.register(Range::new(mem.start(), 2 * P), RegisterMode::MISSING)
        .unwrap();
    let base = mem.start();
    let o = other.start();
    type Op<'a> = Box<dyn Fn(u64, u64) -> Result<(), Error> + 'a>;
    let ops: Vec<(&str, Op)> = vec![
        (
            "UFFDIO_REGISTER",
            Box::new(|s, l| {
                u.register(Range::new(s, l), RegisterMode::MISSING)
                    .map(|_| ())
            }),
        ),
        (
            "UFFDIO_UNREGISTER",
            Box::new(|s, l| u.unregister(Range::new(s, l))),
        ),
        ("UFFDIO_WAKE", Box::new(|s, l| u.wake(Range::new(s, l)))),
        (
            "UFFDIO_COPY",
            Box::new(|s, l| {
                unsafe {
                    u.copy(
                        Range::new(s, l),
                        (o) as usize as *const u8,
                        CopyMode::empty(),
                    )
                }
                .map(|_| ())
            }),
        ),
        (
            "UFFDIO_ZEROPAGE",
            Box::new(|s, l| {
                unsafe { u.zeropage(Range::new(s, l), ZeropageMode::empty()) }.map(|_| ())
            }),
        ),
        (
            "UFFDIO_WRITEPROTECT",
            Box::new(|s, l| u.writeprotect(Range::new(s, l), WriteprotectMode::empty())),
        ),
        (
            "UFFDIO_CONTINUE",
            Box::new(|s, l| {
                unsafe { u.continue_range(Range::new(s, l), ContinueMode::empty()) }.map(|_| ())
            }),
        ),
        (
            "UFFDIO_POISON",
            Box::new(|s, l| unsafe { u.poison(Range::new(s, l), PoisonMode::empty()) }.map(|_| ())),
        ),
        (
            "UFFDIO_MOVE",
            Box::new(|s, l| {
                unsafe { u.move_pages(Range::new(s, l), o, MoveMode::empty()) }.map(|_| ())
            }),
        ),
        // The same checks on MOVE's source.
        (
            "UFFDIO_MOVE",
            Box::new(|s, l| {
                unsafe { u.move_pages(Range::new(o, l), s, MoveMode::empty()) }.map(|_| ())
            }),
        ),
    ];
    let top = u64::MAX - P + 1; // page-aligned, so only the wrap is wrong
    for (name, op) in &ops {
        assert_invalid(&op(base, 0).unwrap_err(), name, "length is 0");
        assert_invalid(&op(base + 1, P).unwrap_err(), name, "is not aligned");
        assert_invalid(&op(base + 8, P).unwrap_err(), name, "is not aligned");
        assert_invalid(&op(base, P + 1).unwrap_err(), name, "is not a multiple");
        assert_invalid(&op(base, P / 2).unwrap_err(), name, "is not a multiple");
        assert_invalid(&op(top, 2 * P).unwrap_err(), name, "wraps");
        assert_invalid(&op(base, u64::MAX - P + 1).unwrap_err(), name, "wraps");
    }
    // COPY's source may be unaligned, but may not wrap.
    let e = unsafe {
        u.copy(
            Range::new(base, 2 * P),
            (top) as usize as *const u8,
            CopyMode::empty(),
        )
    }
    .unwrap_err();
    assert_invalid(&e, "UFFDIO_COPY", "wraps");
    assert!(e.to_string().contains("src"), "{e}");
    // The registration is intact after all that.
    assert!(
        unsafe { u.zeropage(Range::new(base, 2 * P), ZeropageMode::empty()) }
            .unwrap()
            .is_complete()
    );
}

#[test]
fn kernel_einval_for_unsupported_combinations() {
    let _w = Watchdog::new("kernel_einval_for_unsupported_combinations", 60);
    let _l = layout_shared();
    let mem = Mem::new(Kind::Anon, 1);
    let u = open_uffd(Features::empty());
    // MINOR is not for anonymous memory.
    let e = u
        .register(Range::new(mem.start(), P), RegisterMode::MINOR)
        .unwrap_err();
    assert_kernel(&e, "UFFDIO_REGISTER", libc::EINVAL, "EINVAL");
    u.register(Range::new(mem.start(), P), RegisterMode::MISSING)
        .unwrap();
    // COPY_MODE_WP needs a WP registration.
    let data = pattern(PAGE, 1);
    let e = unsafe { u.copy_from_slice(mem.start(), &data, CopyMode::WP) }.unwrap_err();
    assert_kernel(&e, "UFFDIO_COPY", libc::EINVAL, "EINVAL");
    // CONTINUE is not for anonymous memory.
    let e =
        unsafe { u.continue_range(Range::new(mem.start(), P), ContinueMode::empty()) }.unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL, "{e}");
}

#[test]
fn zeropage_on_hugetlb_is_kernel_einval() {
    if common::skip_without_hugetlb("zeropage_on_hugetlb_is_kernel_einval") {
        return;
    }
    let _w = Watchdog::new("zeropage_on_hugetlb_is_kernel_einval", 60);
    if !kernel_has(Features::MISSING_HUGETLBFS) {
        return;
    }
    let _l = layout_shared();
    let mem = Mem::new(Kind::Hugetlb, 1);
    let u = open_uffd(Features::MISSING_HUGETLBFS);
    u.register(Range::new(mem.start(), HUGE as u64), RegisterMode::MISSING)
        .unwrap();
    let e = unsafe { u.zeropage(Range::new(mem.start(), HUGE as u64), ZeropageMode::empty()) }
        .unwrap_err();
    assert_kernel(&e, "UFFDIO_ZEROPAGE", libc::EINVAL, "EINVAL");
    assert!(e.to_string().contains("hugetlb"), "{e}");
}

#[test]
fn ebusy_registering_a_range_owned_by_another_uffd() {
    let _w = Watchdog::new("ebusy_registering_a_range_owned_by_another_uffd", 60);
    // Exclusive: the test relies on close releasing u1's ranges, which a
    // child forked meanwhile by another test would delay (it inherits the
    // descriptor until it exits).
    let _l = layout_exclusive();
    let mem = Mem::new(Kind::Anon, 4);
    let u1 = open_uffd(Features::empty());
    let u2 = open_uffd(Features::empty());
    u1.register(Range::new(mem.start(), 2 * P), RegisterMode::MISSING)
        .unwrap();
    for (s, l) in [
        (mem.start(), 2 * P),
        (mem.page_addr(1), 2 * P),
        (mem.start(), 4 * P),
    ] {
        let e = u2
            .register(Range::new(s, l), RegisterMode::MISSING)
            .unwrap_err();
        assert_kernel(&e, "UFFDIO_REGISTER", libc::EBUSY, "EBUSY");
        assert!(e.to_string().contains("another userfaultfd"), "{e}");
    }
    // The free part is fine, and the owner may re-register its own range.
    u2.register(Range::new(mem.page_addr(2), 2 * P), RegisterMode::MISSING)
        .unwrap();
    u1.register(Range::new(mem.start(), 2 * P), RegisterMode::MISSING)
        .unwrap();
    // Once the owner closes, the range is free.
    drop(u1);
    u2.register(Range::new(mem.start(), 2 * P), RegisterMode::MISSING)
        .unwrap();
}

#[test]
fn second_api_handshake_is_refused_and_adopt_does_not_retry_it() {
    let _w = Watchdog::new(
        "second_api_handshake_is_refused_and_adopt_does_not_retry_it",
        60,
    );
    let want = Features::THREAD_ID | Features::EVENT_REMOVE;
    let u = open_uffd(want);
    let fdinfo = |fd: i32| raw::fdinfo(fd).expect("fdinfo of a userfaultfd").features;
    let before = fdinfo(u.as_raw_fd());
    assert_eq!(before, (1 << 31) | want.bits());
    // The kernel refuses a second UFFDIO_API on the same file.
    let mut api = UffdioApi {
        api: UFFD_API,
        features: Features::MOVE.bits(),
        ioctls: 0,
    };
    assert_eq!(raw::api(u.as_fd(), &mut api), Err(libc::EINVAL));
    assert_eq!(fdinfo(u.as_raw_fd()), before, "features unchanged");
    // Adopting a duplicate reads the features instead of re-negotiating.
    // SAFETY: dup of a live fd.
    let dup = unsafe { libc::fcntl(u.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    assert!(dup >= 0);
    // SAFETY: fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(dup) };
    let opts = OpenOptions {
        features: Features::MOVE,
        ..Default::default()
    };
    let a = Uffd::adopt(fd, &opts).map_err(|(e, _)| e).unwrap();
    assert_eq!(a.features(), want);
    assert_eq!(a.offered_features(), None);
    assert_eq!(fdinfo(a.as_raw_fd()), before);
}

#[test]
fn errors_are_usable_across_threads() {
    let _w = Watchdog::new("errors_are_usable_across_threads", 60);
    // The error type can be sent to the thread that reports it.
    let _l = layout_shared();
    let mem = Arc::new(Mem::new(Kind::Anon, 1));
    let u = Arc::new(open_uffd(Features::empty()));
    let (m, uu) = (mem.clone(), u.clone());
    let e = std::thread::spawn(move || {
        unsafe { uu.zeropage(Range::new(m.start(), P), ZeropageMode::empty()) }.unwrap_err()
    })
    .join()
    .unwrap();
    assert_kernel(&e, "UFFDIO_ZEROPAGE", libc::ENOENT, "ENOENT");
}
