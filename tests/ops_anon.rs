// SPDX-License-Identifier: MIT OR Apache-2.0
//! Every resolving operation and mode on private anonymous memory, on the
//! real kernel: COPY (plain, DONTWAKE, WP), ZEROPAGE (+DONTWAKE), WAKE,
//! WRITEPROTECT (sync, WP_UNPOPULATED, WP_ASYNC), POISON (+DONTWAKE), MOVE
//! (+DONTWAKE, +ALLOW_SRC_HOLES) and partial progress. Each resolution is
//! checked on a thread (or child) really blocked on the fault, and the data
//! byte for byte.

mod common;

use common::kit::*;

const ANON: Kind = Kind::Anon;

#[test]
fn copy_wakes_reader() {
    copy_case("copy_wakes_reader", ANON, CopyMode::empty());
}

#[test]
fn copy_dontwake_then_wake() {
    copy_case("copy_dontwake_then_wake", ANON, CopyMode::DONTWAKE);
}

#[test]
fn copy_wp_then_write_is_wp_fault() {
    copy_wp_case("copy_wp_then_write_is_wp_fault", ANON);
}

#[test]
fn copy_partial_progress_then_eexist() {
    partial_case("copy_partial_progress_then_eexist", ANON);
}

#[test]
fn zeropage_wakes_reader() {
    zeropage_case("zeropage_wakes_reader", ANON, ZeropageMode::empty());
}

#[test]
fn zeropage_dontwake_then_wake() {
    zeropage_case("zeropage_dontwake_then_wake", ANON, ZeropageMode::DONTWAKE);
}

#[test]
fn writeprotect_fault_then_unprotect_wakes() {
    wp_case(
        "writeprotect_fault_then_unprotect_wakes",
        ANON,
        WriteprotectMode::empty(),
    );
}

#[test]
fn writeprotect_unprotect_dontwake_then_wake() {
    wp_case(
        "writeprotect_unprotect_dontwake_then_wake",
        ANON,
        WriteprotectMode::DONTWAKE,
    );
}

#[test]
fn writeprotect_wp_with_dontwake_is_einval() {
    wp_dontwake_rejected_case("writeprotect_wp_with_dontwake_is_einval", ANON);
}

/// Without WP_UNPOPULATED, WRITEPROTECT skips anonymous pages never
/// touched: a write to one proceeds with no message.
#[test]
fn wp_skips_unpopulated_without_feature() {
    let name = "wp_skips_unpopulated_without_feature";
    let _w = Watchdog::new(name, 60);
    let Some(u) = uffd_with(Features::PAGEFAULT_FLAG_WP, name) else {
        return;
    };
    assert!(!u.features().contains(Features::WP_UNPOPULATED));
    let mem = Arc::new(Mem::new(ANON, 1));
    u.register(Range::new(mem.start(), PAGE as u64), RegisterMode::WP)
        .unwrap();
    u.writeprotect(Range::new(mem.start(), PAGE as u64), WriteprotectMode::WP)
        .unwrap();
    let w = writer(&mem, 10, 0x11);
    if !wait_finished(&w, 1000) {
        panic!("a write to an unpopulated page blocked although WP_UNPOPULATED is off");
    }
    w.join().unwrap();
    assert_no_event(&u, 100);
    assert_eq!(mem.read(10), 0x11);
    assert_eq!(pagemap(mem.start()) & PM_UFFD_WP, 0);
}

/// With WP_UNPOPULATED, a never-touched page is protected too: the write
/// is a WP fault, released by unprotecting.
#[test]
fn wp_unpopulated_protects_none_ptes() {
    let name = "wp_unpopulated_protects_none_ptes";
    let _w = Watchdog::new(name, 60);
    let Some(u) = uffd_with(Features::PAGEFAULT_FLAG_WP | Features::WP_UNPOPULATED, name) else {
        return;
    };
    let mem = Arc::new(Mem::new(ANON, 2));
    u.register(Range::new(mem.start(), mem.len as u64), RegisterMode::WP)
        .unwrap();
    u.writeprotect(
        Range::new(mem.start(), mem.len as u64),
        WriteprotectMode::WP,
    )
    .unwrap();
    let w = writer(&mem, PAGE + 3, 0x22);
    expect_fault(&u, mem.page_addr(1), FaultFlags::WP | FaultFlags::WRITE);
    assert_blocked(&w, 100, "write to an unpopulated protected page");
    u.writeprotect(
        Range::new(mem.page_addr(1), PAGE as u64),
        WriteprotectMode::empty(),
    )
    .unwrap();
    w.join().unwrap();
    let mut expected = vec![0u8; PAGE];
    expected[3] = 0x22;
    assert_bytes(page_bytes(&mem, 1), &expected, "page after the write");
    assert_no_event(&u, 0);
}

/// WP_ASYNC: writes to protected pages (populated or not) proceed with no
/// message; the kernel clears the uffd-wp bit, which pagemap shows.
#[test]
fn wp_async_writes_proceed_without_message() {
    let name = "wp_async_writes_proceed_without_message";
    let _w = Watchdog::new(name, 60);
    let Some(u) = uffd_with(Features::PAGEFAULT_FLAG_WP | Features::WP_ASYNC, name) else {
        return;
    };
    assert!(
        u.features().contains(Features::WP_UNPOPULATED),
        "WP_ASYNC implies WP_UNPOPULATED: {:?}",
        u.features()
    );
    let mem = Arc::new(Mem::new(ANON, 2));
    let d0 = pattern(PAGE, 0x70);
    fill(&mem, 0, &d0);
    u.register(Range::new(mem.start(), mem.len as u64), RegisterMode::WP)
        .unwrap();
    u.writeprotect(
        Range::new(mem.start(), mem.len as u64),
        WriteprotectMode::WP,
    )
    .unwrap();
    assert_ne!(
        pagemap(mem.page_addr(0)) & PM_UFFD_WP,
        0,
        "page 0 protected"
    );
    let w = {
        let mem = mem.clone();
        std::thread::spawn(move || {
            mem.write(10, 0xE1);
            mem.write(PAGE + 20, 0xE2);
        })
    };
    if !wait_finished(&w, 1000) {
        panic!("a write to a WP_ASYNC-protected page blocked");
    }
    w.join().unwrap();
    assert_no_event(&u, 200);
    let mut e0 = d0.clone();
    e0[10] = 0xE1;
    let mut e1 = vec![0u8; PAGE];
    e1[20] = 0xE2;
    assert_bytes(page_bytes(&mem, 0), &e0, "page 0");
    assert_bytes(page_bytes(&mem, 1), &e1, "page 1");
    assert_eq!(
        pagemap(mem.page_addr(0)) & PM_UFFD_WP,
        0,
        "page 0 written: wp bit gone"
    );
    assert_eq!(
        pagemap(mem.page_addr(1)) & PM_UFFD_WP,
        0,
        "page 1 written: wp bit gone"
    );
    // Re-arm: protected again, and again written without a message.
    u.writeprotect(
        Range::new(mem.start(), mem.len as u64),
        WriteprotectMode::WP,
    )
    .unwrap();
    assert_ne!(
        pagemap(mem.page_addr(0)) & PM_UFFD_WP,
        0,
        "page 0 re-protected"
    );
    mem.write(11, 0xE3);
    assert_eq!(pagemap(mem.page_addr(0)) & PM_UFFD_WP, 0);
    assert_ne!(
        pagemap(mem.page_addr(1)) & PM_UFFD_WP,
        0,
        "page 1 untouched since re-arm"
    );
    assert_eq!(mem.read(11), 0xE3);
    assert_no_event(&u, 0);
}

#[test]
fn poison_wakes_blocked_child_into_sigbus() {
    poison_blocked_case(
        "poison_wakes_blocked_child_into_sigbus",
        ANON,
        PoisonMode::empty(),
    );
}

#[test]
fn poison_dontwake_then_wake() {
    poison_blocked_case("poison_dontwake_then_wake", ANON, PoisonMode::DONTWAKE);
}

#[test]
fn poison_then_fork_child_gets_sigbus() {
    poison_fork_case("poison_then_fork_child_gets_sigbus", ANON);
}

/// A MOVE source: anonymous memory kept out of fork() children (other
/// tests in this file fork; a source page shared with a child would make
/// MOVE fail with EBUSY).
fn move_source(pages: usize) -> Mem {
    let src = Mem::new(ANON, pages);
    // SAFETY: madvise on our own mapping.
    let rc = unsafe { libc::madvise(src.addr.cast(), src.len, libc::MADV_DONTFORK) };
    assert_eq!(
        rc,
        0,
        "madvise(DONTFORK): {}",
        std::io::Error::last_os_error()
    );
    src
}

fn move_case(name: &'static str, mode: MoveMode) {
    let _w = Watchdog::new(name, 60);
    let Some(u) = uffd_with(Features::MOVE, name) else {
        return;
    };
    let dst = Arc::new(Mem::new(ANON, 2));
    let src = move_source(2);
    let data = pattern(PAGE, 0xB0);
    fill(&src, PAGE, &data);
    let io = u
        .register(
            Range::new(dst.start(), dst.len as u64),
            RegisterMode::MISSING,
        )
        .unwrap();
    assert!(io.contains(Ioctls::MOVE), "ioctls {io:?}");
    let r = reader(&dst, PAGE + 600);
    expect_fault(&u, dst.page_addr(1), FaultFlags::empty());
    assert_blocked(&r, 20, "before MOVE");
    if mode.contains(MoveMode::DONTWAKE) {
        settle();
    }
    let p = unsafe {
        u.move_pages(
            Range::new(dst.page_addr(1), PAGE as u64),
            src.page_addr(1),
            mode,
        )
    }
    .unwrap();
    assert_eq!(
        p,
        Progress {
            done: PAGE as u64,
            len: PAGE as u64
        }
    );
    if mode.contains(MoveMode::DONTWAKE) {
        assert_blocked(&r, 100, "after MOVE with DONTWAKE");
        u.wake(Range::new(dst.page_addr(1), PAGE as u64)).unwrap();
    }
    assert_eq!(r.join().unwrap(), data[600]);
    assert_bytes(page_bytes(&dst, 1), &data, "moved page at dst");
    // The source is empty now: no page mapped, and reading gives zeros.
    assert_eq!(
        pagemap(src.page_addr(1)) & PM_PRESENT,
        0,
        "src page still present after MOVE"
    );
    assert_bytes(page_bytes(&src, 1), &vec![0u8; PAGE], "src after MOVE");
    assert_no_event(&u, 0);
}

#[test]
fn move_wakes_reader_and_empties_src() {
    move_case("move_wakes_reader_and_empties_src", MoveMode::empty());
}

#[test]
fn move_dontwake_then_wake() {
    move_case("move_dontwake_then_wake", MoveMode::DONTWAKE);
}

/// A hole in src: ENOENT without ALLOW_SRC_HOLES; with it the hole counts
/// as moved (dst stays empty, so the woken reader faults again).
#[test]
fn move_src_hole_enoent_unless_allowed() {
    let name = "move_src_hole_enoent_unless_allowed";
    let _w = Watchdog::new(name, 60);
    let Some(u) = uffd_with(Features::MOVE, name) else {
        return;
    };
    let dst = Arc::new(Mem::new(ANON, 2));
    let src = move_source(2);
    let data = pattern(PAGE, 0xC0);
    fill(&src, 0, &data); // page 0 populated, page 1 a hole
    u.register(
        Range::new(dst.start(), dst.len as u64),
        RegisterMode::MISSING,
    )
    .unwrap();
    let r = reader(&dst, PAGE + 1);
    expect_fault(&u, dst.page_addr(1), FaultFlags::empty());
    let e = unsafe {
        u.move_pages(
            Range::new(dst.page_addr(1), PAGE as u64),
            src.page_addr(1),
            MoveMode::empty(),
        )
    }
    .unwrap_err();
    assert_eq!(e.errno(), libc::ENOENT, "{e}");
    assert_blocked(&r, 50, "after a refused MOVE");
    // Both pages at once: the page and the hole move.
    let p = unsafe {
        u.move_pages(
            Range::new(dst.start(), 2 * PAGE as u64),
            src.start(),
            MoveMode::ALLOW_SRC_HOLES,
        )
    }
    .unwrap();
    assert_eq!(
        p,
        Progress {
            done: 2 * PAGE as u64,
            len: 2 * PAGE as u64
        }
    );
    assert_bytes(page_bytes(&dst, 0), &data, "moved page");
    assert_eq!(
        pagemap(src.page_addr(0)) & PM_PRESENT,
        0,
        "src page 0 left behind"
    );
    // dst page 1 received a hole: the woken reader faults again.
    expect_fault(&u, dst.page_addr(1), FaultFlags::empty());
    assert!(unsafe {
        u.zeropage(
            Range::new(dst.page_addr(1), PAGE as u64),
            ZeropageMode::empty(),
        )
    }
    .unwrap()
    .is_complete());
    assert_eq!(r.join().unwrap(), 0);
    assert_bytes(page_bytes(&src, 0), &vec![0u8; PAGE], "src after MOVE");
}

/// MINOR mode does not exist for anonymous memory.
#[test]
fn minor_register_on_anon_is_einval() {
    let name = "minor_register_on_anon_is_einval";
    let _w = Watchdog::new(name, 60);
    let Some(u) = uffd_with(Features::MINOR_SHMEM, name) else {
        return;
    };
    let mem = Mem::new(ANON, 1);
    let e = u
        .register(Range::new(mem.start(), PAGE as u64), RegisterMode::MINOR)
        .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL, "{e}");
    // And CONTINUE on a MISSING-registered anonymous range is refused.
    u.register(Range::new(mem.start(), PAGE as u64), RegisterMode::MISSING)
        .unwrap();
    let e =
        unsafe { u.continue_range(Range::new(mem.start(), PAGE as u64), ContinueMode::empty()) }
            .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL, "{e}");
}
