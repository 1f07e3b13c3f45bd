// SPDX-License-Identifier: MIT OR Apache-2.0
//! Page-size queries: PROCMAP_QUERY answers (this process and another
//! one) on every kind of memory.

mod common;
use common::*;
use uffd::{mapping_at, page_size_at, page_size_in};

#[test]
fn page_size_of_every_kind() {
    if common::skip_without_hugetlb("page_size_of_every_kind") {
        return;
    }
    let _w = Watchdog::new("page_size_of_every_kind", 60);
    for kind in [
        Kind::Anon,
        Kind::ShmemShared,
        Kind::ShmemPrivate,
        Kind::Hugetlb,
        Kind::HugetlbPrivate,
    ] {
        let mem = Mem::new(kind, 2);
        let inner = mem.page_addr(1) + 17;
        assert_eq!(page_size_at(inner).unwrap(), kind.page() as u64, "{kind:?}");
        let m = mapping_at(None, inner).unwrap().expect("mapped");
        assert_eq!(m.page_size, kind.page() as u64, "{kind:?}");
        assert!(m.start <= mem.start() && mem.start() + mem.len as u64 <= m.end);
    }
    // (That PROCMAP_QUERY and the smaps fallback agree is a unit test of
    // src/uffd/mappings.rs: the fallback is not public.)
}

#[test]
fn unmapped_address_is_enomem_and_none() {
    let _w = Watchdog::new("unmapped_address_is_enomem_and_none", 60);
    // Below vm.mmap_min_addr: never mapped, whatever other threads do.
    let a = 0x1000u64;
    assert_eq!(mapping_at(None, a).unwrap(), None);
    let e = page_size_at(a).unwrap_err();
    assert_eq!(e.errno(), libc::ENOMEM);
    assert!(e.to_string().contains("nothing is mapped"), "{e}");
}

#[test]
fn page_size_of_another_process() {
    if common::skip_without_hugetlb("page_size_of_another_process") {
        return;
    }
    let _w = Watchdog::new("page_size_of_another_process", 60);
    // The child inherits the hugetlb mapping and waits on a pipe; the
    // parent replaces its own copy with 4 KiB pages at the same address,
    // so the two processes' answers differ.
    let mem = Mem::new(Kind::HugetlbPrivate, 1);
    let addr = mem.start();
    let mut p = [0i32; 2];
    // SAFETY: pipe/fork/read/_exit; the child only blocks and exits.
    let pid = unsafe {
        assert_eq!(libc::pipe(p.as_mut_ptr()), 0);
        let pid = libc::fork();
        if pid == 0 {
            let mut b = 0u8;
            libc::close(p[1]);
            libc::read(p[0], (&mut b as *mut u8).cast(), 1);
            libc::_exit(0);
        }
        libc::close(p[0]);
        pid
    };
    // SAFETY: replaces our own mapping of `mem` (dropped after this test,
    // its munmap then removes the replacement).
    let p4k = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            HUGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    assert_eq!(p4k as u64, addr);
    let here = page_size_at(addr).unwrap();
    let there = page_size_in(pid, addr);
    // SAFETY: closing the pipe releases the child; reap it.
    unsafe {
        libc::close(p[1]);
        let mut st = 0;
        libc::waitpid(pid, &mut st, 0);
    }
    assert_eq!(here, PAGE as u64);
    assert_eq!(there.unwrap(), HUGE as u64);
}
