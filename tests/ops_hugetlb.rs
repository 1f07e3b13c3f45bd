// SPDX-License-Identifier: MIT OR Apache-2.0
//! Every resolving operation and mode on hugetlb memory with 2 MiB pages
//! (a MFD_HUGETLB memfd mapped MAP_SHARED, and MAP_PRIVATE|MAP_HUGETLB
//! anonymous memory), on the real kernel: COPY (plain, DONTWAKE, WP),
//! ZEROPAGE's refusal, WAKE, WRITEPROTECT, CONTINUE (+DONTWAKE, +WP) on
//! MINOR faults, POISON (+DONTWAKE) and partial progress. Needs reserved
//! huge pages (`echo 64 > /proc/sys/vm/nr_hugepages`); without them the
//! tests fail, they do not skip.

mod common;

use common::kit::*;

const SHARED: Kind = Kind::Hugetlb;
const PRIVATE: Kind = Kind::HugetlbPrivate;

#[test]
fn copy_shared() {
    if common::skip_without_hugetlb("copy_shared") {
        return;
    }
    copy_case("copy_shared", SHARED, CopyMode::empty());
}

#[test]
fn copy_private() {
    if common::skip_without_hugetlb("copy_private") {
        return;
    }
    copy_case("copy_private", PRIVATE, CopyMode::empty());
}

#[test]
fn copy_dontwake_then_wake_shared() {
    if common::skip_without_hugetlb("copy_dontwake_then_wake_shared") {
        return;
    }
    copy_case("copy_dontwake_then_wake_shared", SHARED, CopyMode::DONTWAKE);
}

#[test]
fn copy_dontwake_then_wake_private() {
    if common::skip_without_hugetlb("copy_dontwake_then_wake_private") {
        return;
    }
    copy_case(
        "copy_dontwake_then_wake_private",
        PRIVATE,
        CopyMode::DONTWAKE,
    );
}

#[test]
fn copy_wp_then_write_is_wp_fault_shared() {
    if common::skip_without_hugetlb("copy_wp_then_write_is_wp_fault_shared") {
        return;
    }
    copy_wp_case("copy_wp_then_write_is_wp_fault_shared", SHARED);
}

#[test]
fn copy_wp_then_write_is_wp_fault_private() {
    if common::skip_without_hugetlb("copy_wp_then_write_is_wp_fault_private") {
        return;
    }
    copy_wp_case("copy_wp_then_write_is_wp_fault_private", PRIVATE);
}

#[test]
fn copy_partial_progress_then_eexist_shared() {
    if common::skip_without_hugetlb("copy_partial_progress_then_eexist_shared") {
        return;
    }
    partial_case("copy_partial_progress_then_eexist_shared", SHARED);
}

#[test]
fn copy_partial_progress_then_eexist_private() {
    if common::skip_without_hugetlb("copy_partial_progress_then_eexist_private") {
        return;
    }
    partial_case("copy_partial_progress_then_eexist_private", PRIVATE);
}

/// ZEROPAGE is not supported on hugetlb: EINVAL, the range does not list
/// it, and the faulting thread stays blocked until a COPY.
fn zeropage_einval_case(name: &'static str, kind: Kind) {
    let _w = Watchdog::new(name, 60);
    let mem = Arc::new(Mem::new(kind, 1));
    let u = open_uffd(Features::empty());
    let io = u
        .register(Range::new(mem.start(), HUGE as u64), RegisterMode::MISSING)
        .unwrap();
    assert!(
        !io.contains(Ioctls::ZEROPAGE),
        "hugetlb range lists ZEROPAGE: {io:?}"
    );
    let r = reader(&mem, 4242);
    expect_fault(&u, mem.start(), FaultFlags::empty());
    for mode in [ZeropageMode::empty(), ZeropageMode::DONTWAKE] {
        let e = unsafe { u.zeropage(Range::new(mem.start(), HUGE as u64), mode) }.unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL, "ZEROPAGE mode {mode:?}: {e}");
    }
    assert_blocked(&r, 50, "after the refused ZEROPAGE");
    let data = pattern(HUGE, 0x17);
    assert!(
        unsafe { u.copy_from_slice(mem.start(), &data, CopyMode::empty()) }
            .unwrap()
            .is_complete()
    );
    assert_eq!(r.join().unwrap(), data[4242]);
    assert_bytes(
        page_bytes(&mem, 0),
        &data,
        "huge page copied after the refusal",
    );
}

#[test]
fn zeropage_is_einval_shared() {
    if common::skip_without_hugetlb("zeropage_is_einval_shared") {
        return;
    }
    zeropage_einval_case("zeropage_is_einval_shared", SHARED);
}

#[test]
fn zeropage_is_einval_private() {
    if common::skip_without_hugetlb("zeropage_is_einval_private") {
        return;
    }
    zeropage_einval_case("zeropage_is_einval_private", PRIVATE);
}

#[test]
fn writeprotect_fault_then_unprotect_wakes_shared() {
    if common::skip_without_hugetlb("writeprotect_fault_then_unprotect_wakes_shared") {
        return;
    }
    wp_case(
        "writeprotect_fault_then_unprotect_wakes_shared",
        SHARED,
        WriteprotectMode::empty(),
    );
}

#[test]
fn writeprotect_fault_then_unprotect_wakes_private() {
    if common::skip_without_hugetlb("writeprotect_fault_then_unprotect_wakes_private") {
        return;
    }
    wp_case(
        "writeprotect_fault_then_unprotect_wakes_private",
        PRIVATE,
        WriteprotectMode::empty(),
    );
}

#[test]
fn writeprotect_unprotect_dontwake_then_wake_shared() {
    if common::skip_without_hugetlb("writeprotect_unprotect_dontwake_then_wake_shared") {
        return;
    }
    wp_case(
        "writeprotect_unprotect_dontwake_then_wake_shared",
        SHARED,
        WriteprotectMode::DONTWAKE,
    );
}

#[test]
fn writeprotect_unprotect_dontwake_then_wake_private() {
    if common::skip_without_hugetlb("writeprotect_unprotect_dontwake_then_wake_private") {
        return;
    }
    wp_case(
        "writeprotect_unprotect_dontwake_then_wake_private",
        PRIVATE,
        WriteprotectMode::DONTWAKE,
    );
}

#[test]
fn writeprotect_wp_with_dontwake_is_einval() {
    if common::skip_without_hugetlb("writeprotect_wp_with_dontwake_is_einval") {
        return;
    }
    wp_dontwake_rejected_case("writeprotect_wp_with_dontwake_is_einval", SHARED);
}

/// Operations on hugetlb must cover whole huge pages.
#[test]
fn ops_need_huge_page_alignment() {
    if common::skip_without_hugetlb("ops_need_huge_page_alignment") {
        return;
    }
    let name = "ops_need_huge_page_alignment";
    let _w = Watchdog::new(name, 60);
    let Some(u) = uffd_with(wp_features(SHARED) | Features::POISON, name) else {
        return;
    };
    let mem = Mem::new(SHARED, 1);
    u.register(
        Range::new(mem.start(), HUGE as u64),
        RegisterMode::MISSING | RegisterMode::WP,
    )
    .unwrap();
    let data = pattern(PAGE, 1);
    let e = unsafe { u.copy_from_slice(mem.start(), &data, CopyMode::empty()) }.unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL, "4 KiB COPY into a huge page: {e}");
    let e = unsafe { u.copy_from_slice(mem.start() + PAGE as u64, &data, CopyMode::empty()) }
        .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL, "COPY at a misaligned address: {e}");
    let e =
        unsafe { u.poison(Range::new(mem.start(), PAGE as u64), PoisonMode::empty()) }.unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL, "4 KiB POISON: {e}");
    // Nothing was mapped by the refused calls.
    assert!(
        unsafe { u.poison(Range::new(mem.start(), HUGE as u64), PoisonMode::empty()) }
            .unwrap()
            .is_complete()
    );
}

#[test]
fn continue_wakes_reader() {
    if common::skip_without_hugetlb("continue_wakes_reader") {
        return;
    }
    continue_case("continue_wakes_reader", SHARED, ContinueMode::empty());
}

#[test]
fn continue_dontwake_then_wake() {
    if common::skip_without_hugetlb("continue_dontwake_then_wake") {
        return;
    }
    continue_case(
        "continue_dontwake_then_wake",
        SHARED,
        ContinueMode::DONTWAKE,
    );
}

#[test]
fn continue_wp_then_write_is_wp_fault() {
    if common::skip_without_hugetlb("continue_wp_then_write_is_wp_fault") {
        return;
    }
    continue_case(
        "continue_wp_then_write_is_wp_fault",
        SHARED,
        ContinueMode::WP,
    );
}

#[test]
fn continue_resolves_minor_write_fault() {
    if common::skip_without_hugetlb("continue_resolves_minor_write_fault") {
        return;
    }
    continue_write_case("continue_resolves_minor_write_fault", SHARED);
}

#[test]
fn continue_without_page_cache_page_is_efault() {
    if common::skip_without_hugetlb("continue_without_page_cache_page_is_efault") {
        return;
    }
    continue_hole_case("continue_without_page_cache_page_is_efault", SHARED);
}

#[test]
fn poison_wakes_blocked_child_into_sigbus_shared() {
    if common::skip_without_hugetlb("poison_wakes_blocked_child_into_sigbus_shared") {
        return;
    }
    poison_blocked_case(
        "poison_wakes_blocked_child_into_sigbus_shared",
        SHARED,
        PoisonMode::empty(),
    );
}

#[test]
fn poison_dontwake_then_wake_shared() {
    if common::skip_without_hugetlb("poison_dontwake_then_wake_shared") {
        return;
    }
    poison_blocked_case(
        "poison_dontwake_then_wake_shared",
        SHARED,
        PoisonMode::DONTWAKE,
    );
}

#[test]
fn poison_wakes_blocked_child_into_sigbus_private() {
    if common::skip_without_hugetlb("poison_wakes_blocked_child_into_sigbus_private") {
        return;
    }
    poison_blocked_case(
        "poison_wakes_blocked_child_into_sigbus_private",
        PRIVATE,
        PoisonMode::empty(),
    );
}

/// fork() copies a private hugetlb mapping's page tables with the poison
/// markers (a shared one's are not copied; see the CLONE_VM tests above).
#[test]
fn poison_then_fork_child_gets_sigbus_private() {
    if common::skip_without_hugetlb("poison_then_fork_child_gets_sigbus_private") {
        return;
    }
    poison_fork_case("poison_then_fork_child_gets_sigbus_private", PRIVATE);
}

/// MOVE is for anonymous memory only; hugetlb ranges do not even list it.
#[test]
fn move_on_hugetlb_is_einval() {
    if common::skip_without_hugetlb("move_on_hugetlb_is_einval") {
        return;
    }
    let name = "move_on_hugetlb_is_einval";
    let _w = Watchdog::new(name, 60);
    let Some(u) = uffd_with(Features::MOVE, name) else {
        return;
    };
    let dst = Mem::new(PRIVATE, 1);
    let src = Mem::new(PRIVATE, 1);
    // SAFETY: madvise on our own mapping.
    unsafe { libc::madvise(src.addr.cast(), src.len, libc::MADV_DONTFORK) };
    let data = pattern(HUGE, 0x66);
    fill(&src, 0, &data);
    let io = u
        .register(Range::new(dst.start(), HUGE as u64), RegisterMode::MISSING)
        .unwrap();
    assert!(
        !io.contains(Ioctls::MOVE),
        "hugetlb range lists MOVE: {io:?}"
    );
    let e = unsafe {
        u.move_pages(
            Range::new(dst.start(), HUGE as u64),
            src.start(),
            MoveMode::empty(),
        )
    }
    .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL, "{e}");
    assert_bytes(page_bytes(&src, 0), &data, "MOVE source after the refusal");
}

#[test]
fn poison_on_shared_not_seen_by_fork_child() {
    if common::skip_without_hugetlb("poison_on_shared_not_seen_by_fork_child") {
        return;
    }
    poison_shared_fork_case("poison_on_shared_not_seen_by_fork_child", SHARED);
}
