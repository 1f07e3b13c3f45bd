// SPDX-License-Identifier: MIT OR Apache-2.0
//! Every resolving operation and mode on shmem (a memfd mapped MAP_SHARED,
//! and the same memfd mapped MAP_PRIVATE), on the real kernel: COPY
//! (plain, DONTWAKE, WP), ZEROPAGE (+DONTWAKE), WAKE, WRITEPROTECT (incl.
//! unpopulated pages and WP_ASYNC), CONTINUE (+DONTWAKE, +WP) on MINOR
//! faults, POISON (+DONTWAKE), partial progress, and MOVE's refusal.

mod common;

use common::kit::*;

const SHARED: Kind = Kind::ShmemShared;
const PRIVATE: Kind = Kind::ShmemPrivate;

#[test]
fn copy_shared() {
    copy_case("copy_shared", SHARED, CopyMode::empty());
}

#[test]
fn copy_private() {
    copy_case("copy_private", PRIVATE, CopyMode::empty());
}

#[test]
fn copy_dontwake_then_wake_shared() {
    copy_case("copy_dontwake_then_wake_shared", SHARED, CopyMode::DONTWAKE);
}

#[test]
fn copy_dontwake_then_wake_private() {
    copy_case(
        "copy_dontwake_then_wake_private",
        PRIVATE,
        CopyMode::DONTWAKE,
    );
}

#[test]
fn copy_wp_then_write_is_wp_fault_shared() {
    copy_wp_case("copy_wp_then_write_is_wp_fault_shared", SHARED);
}

#[test]
fn copy_wp_then_write_is_wp_fault_private() {
    copy_wp_case("copy_wp_then_write_is_wp_fault_private", PRIVATE);
}

#[test]
fn copy_partial_progress_then_eexist_shared() {
    partial_case("copy_partial_progress_then_eexist_shared", SHARED);
}

#[test]
fn copy_partial_progress_then_eexist_private() {
    partial_case("copy_partial_progress_then_eexist_private", PRIVATE);
}

/// On shared shmem an existing page-cache page (filled through the fd,
/// never mapped) is enough to stop a COPY: 1 of 2 pages done.
#[test]
fn copy_stops_at_page_cache_page_shared() {
    let name = "copy_stops_at_page_cache_page_shared";
    let _w = Watchdog::new(name, 60);
    let mem = Arc::new(Mem::new(SHARED, 2));
    let u = open_uffd(Features::empty());
    u.register(
        Range::new(mem.start(), mem.len as u64),
        RegisterMode::MISSING,
    )
    .unwrap();
    let cached = pattern(PAGE, 0x11);
    mem.pwrite_memfd(PAGE, &cached);
    let r = reader(&mem, 8);
    expect_fault(&u, mem.page_addr(0), FaultFlags::empty());
    let src = pattern(2 * PAGE, 0x22);
    let p = unsafe { u.copy_from_slice(mem.start(), &src, CopyMode::empty()) }.unwrap();
    assert_eq!(
        p,
        Progress {
            done: PAGE as u64,
            len: 2 * PAGE as u64
        }
    );
    assert_eq!(r.join().unwrap(), src[8]);
    assert_bytes(page_bytes(&mem, 0), &src[..PAGE], "copied page");
    assert_bytes(
        &memfd_read(&mem, PAGE, PAGE),
        &cached,
        "page cache page left alone",
    );
}

#[test]
fn zeropage_wakes_reader_shared() {
    zeropage_case(
        "zeropage_wakes_reader_shared",
        SHARED,
        ZeropageMode::empty(),
    );
}

#[test]
fn zeropage_wakes_reader_private() {
    zeropage_case(
        "zeropage_wakes_reader_private",
        PRIVATE,
        ZeropageMode::empty(),
    );
}

#[test]
fn zeropage_dontwake_then_wake_shared() {
    zeropage_case(
        "zeropage_dontwake_then_wake_shared",
        SHARED,
        ZeropageMode::DONTWAKE,
    );
}

#[test]
fn zeropage_dontwake_then_wake_private() {
    zeropage_case(
        "zeropage_dontwake_then_wake_private",
        PRIVATE,
        ZeropageMode::DONTWAKE,
    );
}

#[test]
fn writeprotect_fault_then_unprotect_wakes_shared() {
    wp_case(
        "writeprotect_fault_then_unprotect_wakes_shared",
        SHARED,
        WriteprotectMode::empty(),
    );
}

#[test]
fn writeprotect_fault_then_unprotect_wakes_private() {
    wp_case(
        "writeprotect_fault_then_unprotect_wakes_private",
        PRIVATE,
        WriteprotectMode::empty(),
    );
}

#[test]
fn writeprotect_unprotect_dontwake_then_wake_shared() {
    wp_case(
        "writeprotect_unprotect_dontwake_then_wake_shared",
        SHARED,
        WriteprotectMode::DONTWAKE,
    );
}

#[test]
fn writeprotect_unprotect_dontwake_then_wake_private() {
    wp_case(
        "writeprotect_unprotect_dontwake_then_wake_private",
        PRIVATE,
        WriteprotectMode::DONTWAKE,
    );
}

#[test]
fn writeprotect_wp_with_dontwake_is_einval() {
    wp_dontwake_rejected_case("writeprotect_wp_with_dontwake_is_einval", SHARED);
}

/// File memory protects pages that are not mapped (pte markers) without
/// WP_UNPOPULATED: a write to one is a WP fault.
#[test]
fn writeprotect_covers_unmapped_pages_shared() {
    let name = "writeprotect_covers_unmapped_pages_shared";
    let _w = Watchdog::new(name, 60);
    let Some(u) = uffd_with(wp_features(SHARED), name) else {
        return;
    };
    assert!(!u.features().contains(Features::WP_UNPOPULATED));
    let mem = Arc::new(Mem::new(SHARED, 1));
    let data = pattern(PAGE, 0x5E);
    mem.pwrite_memfd(0, &data); // in the page cache, not mapped
    u.register(Range::new(mem.start(), PAGE as u64), RegisterMode::WP)
        .unwrap();
    u.writeprotect(Range::new(mem.start(), PAGE as u64), WriteprotectMode::WP)
        .unwrap();
    let w = writer(&mem, 12, 0x99);
    expect_fault(&u, mem.start(), FaultFlags::WP | FaultFlags::WRITE);
    assert_blocked(&w, 100, "write to an unmapped protected shmem page");
    u.writeprotect(
        Range::new(mem.start(), PAGE as u64),
        WriteprotectMode::empty(),
    )
    .unwrap();
    w.join().unwrap();
    let mut expected = data.clone();
    expected[12] = 0x99;
    assert_bytes(
        &memfd_read(&mem, 0, PAGE),
        &expected,
        "page cache after the write",
    );
}

/// WP_ASYNC on shmem: writes to protected pages proceed, no message.
#[test]
fn wp_async_writes_proceed_without_message_shared() {
    let name = "wp_async_writes_proceed_without_message_shared";
    let _w = Watchdog::new(name, 60);
    let feats = Features::PAGEFAULT_FLAG_WP | Features::WP_HUGETLBFS_SHMEM | Features::WP_ASYNC;
    let Some(u) = uffd_with(feats, name) else {
        return;
    };
    let mem = Arc::new(Mem::new(SHARED, 2));
    let d0 = pattern(PAGE, 0x71);
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
        panic!("a write to a WP_ASYNC-protected shmem page blocked");
    }
    w.join().unwrap();
    assert_no_event(&u, 200);
    let mut e0 = d0.clone();
    e0[10] = 0xE1;
    let mut e1 = vec![0u8; PAGE];
    e1[20] = 0xE2;
    assert_bytes(&memfd_read(&mem, 0, PAGE), &e0, "page 0");
    assert_bytes(&memfd_read(&mem, PAGE, PAGE), &e1, "page 1");
    assert_eq!(
        pagemap(mem.page_addr(0)) & PM_UFFD_WP,
        0,
        "page 0 written: wp bit gone"
    );
}

#[test]
fn continue_wakes_reader() {
    continue_case("continue_wakes_reader", SHARED, ContinueMode::empty());
}

#[test]
fn continue_dontwake_then_wake() {
    continue_case(
        "continue_dontwake_then_wake",
        SHARED,
        ContinueMode::DONTWAKE,
    );
}

#[test]
fn continue_wp_then_write_is_wp_fault() {
    continue_case(
        "continue_wp_then_write_is_wp_fault",
        SHARED,
        ContinueMode::WP,
    );
}

#[test]
fn continue_resolves_minor_write_fault() {
    continue_write_case("continue_resolves_minor_write_fault", SHARED);
}

#[test]
fn continue_without_page_cache_page_is_efault() {
    continue_hole_case("continue_without_page_cache_page_is_efault", SHARED);
}

#[test]
fn poison_wakes_blocked_child_into_sigbus_shared() {
    poison_blocked_case(
        "poison_wakes_blocked_child_into_sigbus_shared",
        SHARED,
        PoisonMode::empty(),
    );
}

#[test]
fn poison_dontwake_then_wake_shared() {
    poison_blocked_case(
        "poison_dontwake_then_wake_shared",
        SHARED,
        PoisonMode::DONTWAKE,
    );
}

#[test]
fn poison_wakes_blocked_child_into_sigbus_private() {
    poison_blocked_case(
        "poison_wakes_blocked_child_into_sigbus_private",
        PRIVATE,
        PoisonMode::empty(),
    );
}

/// fork() copies a private mapping's page tables, poison markers included.
/// (A MAP_SHARED mapping's page tables are not copied: a fork child of
/// shared shmem refaults from the page cache and never sees the poison,
/// which is why the shared case above uses a CLONE_VM child.)
#[test]
fn poison_then_fork_child_gets_sigbus_private() {
    poison_fork_case("poison_then_fork_child_gets_sigbus_private", PRIVATE);
}

/// MOVE is for anonymous memory only: shmem at either end is EINVAL,
/// although the register mask of a shmem range advertises it.
#[test]
fn move_on_shmem_is_einval() {
    let name = "move_on_shmem_is_einval";
    let _w = Watchdog::new(name, 60);
    let Some(u) = uffd_with(Features::MOVE, name) else {
        return;
    };
    let shm = Arc::new(Mem::new(SHARED, 1));
    let anon = Mem::new(Kind::Anon, 1);
    // SAFETY: madvise on our own mapping (keeps the source out of fork
    // children of other tests).
    unsafe { libc::madvise(anon.addr.cast(), anon.len, libc::MADV_DONTFORK) };
    let data = pattern(PAGE, 0xD0);
    fill(&anon, 0, &data);
    let io = u
        .register(Range::new(shm.start(), PAGE as u64), RegisterMode::MISSING)
        .unwrap();
    assert!(io.contains(Ioctls::MOVE), "ioctls {io:?}");
    let r = reader(&shm, 3);
    expect_fault(&u, shm.start(), FaultFlags::empty());
    let e = unsafe {
        u.move_pages(
            Range::new(shm.start(), PAGE as u64),
            anon.start(),
            MoveMode::empty(),
        )
    }
    .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL, "MOVE anon -> shmem: {e}");
    assert_blocked(&r, 50, "after the refused MOVE");
    // The source page did not move.
    assert_bytes(page_bytes(&anon, 0), &data, "MOVE source after the refusal");
    // shmem as the source, anonymous (registered) destination.
    let dst = Mem::new(Kind::Anon, 1);
    u.register(Range::new(dst.start(), PAGE as u64), RegisterMode::MISSING)
        .unwrap();
    let e = unsafe {
        u.move_pages(
            Range::new(dst.start(), PAGE as u64),
            shm.start(),
            MoveMode::empty(),
        )
    }
    .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL, "MOVE shmem -> anon: {e}");
    // Release the reader the ordinary way.
    assert!(
        unsafe { u.copy_from_slice(shm.start(), &data, CopyMode::empty()) }
            .unwrap()
            .is_complete()
    );
    assert_eq!(r.join().unwrap(), data[3]);
}

#[test]
fn poison_on_shared_not_seen_by_fork_child() {
    poison_shared_fork_case("poison_on_shared_not_seen_by_fork_child", SHARED);
}
