// SPDX-License-Identifier: MIT OR Apache-2.0
//! Messages on the real kernel: page-fault details (flags, thread id, exact
//! address, huge-page masking), the non-cooperative events REMAP, REMOVE
//! and UNMAP (and that their originator blocks until they are read), the
//! read order (faults overtake events), batching, timeouts, and duplicate
//! fault messages.
//!
//! Every uffd with EVENT_* features is dropped before the memory it serves
//! (locals drop in reverse order), so a final munmap never waits for an
//! event nobody reads.
#![allow(unsafe_code)]

mod common;
use common::*;

use ::uffd::{
    CopyMode, Event, FaultFlags, Features, Msg, OpenOptions, Range, RegisterMode, Uffd,
    ZeropageMode,
};
use std::mem::ManuallyDrop;
use std::os::fd::AsRawFd;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const P: u64 = PAGE as u64;

/// Skip (return false) when the kernel lacks `f`.
fn kernel_has(f: Features) -> bool {
    let offered = ::uffd::probe().expect("probe").features;
    if !offered.contains(f) {
        eprintln!("SKIP: kernel lacks {:?}", f - offered);
        return false;
    }
    true
}

fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// Wait until the kernel has `n` unread fault messages queued.
fn wait_pending(u: &Uffd, n: u64) {
    let t0 = Instant::now();
    loop {
        let info = raw::fdinfo(u.as_raw_fd()).expect("fdinfo of a userfaultfd");
        if info.pending >= n {
            assert_eq!(info.pending, n, "more faults queued than expected");
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "only {} of {n} faults queued after 5 s",
            info.pending
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Wait until thread `tid` of this process sleeps uninterruptibly (state
/// D): how a task blocked on an unread userfaultfd event looks.
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
            "thread {tid} not blocked after 5 s (state {state:?})"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn madvise(addr: u64, len: u64, advice: i32) -> i32 {
    // SAFETY: advice on a mapping owned by the test.
    unsafe { libc::madvise(addr as *mut _, len as usize, advice) }
}

/// Start a thread that records its tid, then madvise()s; returns the tid
/// and the thread (whose result is madvise's return value).
fn madvise_thread(addr: u64, len: u64, advice: i32) -> (u32, std::thread::JoinHandle<i32>) {
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        tx.send(gettid()).unwrap();
        madvise(addr, len, advice)
    });
    (rx.recv().unwrap(), t)
}

fn read_batch(u: &Uffd, max: usize, timeout_ms: i32) -> Vec<Event> {
    let mut buf: Vec<Msg> = (0..max).map(|_| Msg::default()).collect();
    let n = u.read_msgs(&mut buf, timeout_ms).expect("read_msgs");
    buf[..n]
        .iter_mut()
        .map(|m| m.take_event(u.features()).expect("decodable"))
        .collect()
}

#[test]
fn read_and_write_fault_flags() {
    let _w = Watchdog::new("read_and_write_fault_flags", 60);
    let mem = Arc::new(Mem::new(Kind::Anon, 2));
    let u = open_uffd(Features::empty());
    u.register(Range::new(mem.start(), 2 * P), RegisterMode::MISSING)
        .unwrap();

    let t = reader(&mem, 10);
    let f = next_fault(&u, 5000);
    assert_eq!(f.address, mem.page_addr(0));
    assert_eq!(f.flags, FaultFlags::empty(), "read of a missing page");
    assert_eq!(f.exact_address, None);
    assert_eq!(f.thread_id, 0, "no THREAD_ID feature");
    let data = pattern(PAGE, 1);
    unsafe { u.copy_from_slice(mem.page_addr(0), &data, CopyMode::empty()) }.unwrap();
    assert_eq!(t.join().unwrap(), data[10]);

    let t = writer(&mem, PAGE + 5, 0xAB);
    let f = next_fault(&u, 5000);
    assert_eq!(f.address, mem.page_addr(1));
    assert_eq!(f.flags, FaultFlags::WRITE, "write to a missing page");
    unsafe { u.zeropage(Range::new(mem.page_addr(1), P), ZeropageMode::empty()) }.unwrap();
    t.join().unwrap();
    assert_eq!(mem.read(PAGE + 5), 0xAB);
    assert_eq!(mem.read(PAGE + 6), 0);
}

#[test]
fn thread_id_is_the_faulting_thread() {
    let _w = Watchdog::new("thread_id_is_the_faulting_thread", 60);
    if !kernel_has(Features::THREAD_ID) {
        return;
    }
    let mem = Arc::new(Mem::new(Kind::Anon, 2));
    let u = open_uffd(Features::THREAD_ID);
    u.register(Range::new(mem.start(), 2 * P), RegisterMode::MISSING)
        .unwrap();
    for page in 0..2 {
        let (tx, rx) = mpsc::channel();
        let m = mem.clone();
        let t = std::thread::spawn(move || {
            tx.send(gettid()).unwrap();
            m.read(page * PAGE)
        });
        let tid = rx.recv().unwrap();
        let f = next_fault(&u, 5000);
        assert_eq!(f.thread_id, tid, "fault must carry the faulter's gettid()");
        assert_ne!(f.thread_id, gettid());
        unsafe { u.zeropage(Range::new(mem.page_addr(page), P), ZeropageMode::empty()) }.unwrap();
        assert_eq!(t.join().unwrap(), 0);
    }
}

#[test]
fn exact_address_is_unmasked() {
    let _w = Watchdog::new("exact_address_is_unmasked", 60);
    if !kernel_has(Features::EXACT_ADDRESS) {
        return;
    }
    let mem = Arc::new(Mem::new(Kind::Anon, 2));
    let u = open_uffd(Features::EXACT_ADDRESS);
    u.register(Range::new(mem.start(), 2 * P), RegisterMode::MISSING)
        .unwrap();
    let t = writer(&mem, PAGE + 0x123, 7);
    let f = next_fault(&u, 5000);
    assert_eq!(f.exact_address, Some(mem.page_addr(1) + 0x123));
    assert_eq!(f.address, mem.page_addr(1), "address stays page-aligned");
    assert_eq!(f.flags, FaultFlags::WRITE);
    unsafe { u.zeropage(Range::new(mem.page_addr(1), P), ZeropageMode::empty()) }.unwrap();
    t.join().unwrap();
    assert_eq!(mem.read(PAGE + 0x123), 7);

    // Without the feature: masked, and no exact address.
    let mem2 = Arc::new(Mem::new(Kind::Anon, 1));
    let u2 = open_uffd(Features::empty());
    u2.register(Range::new(mem2.start(), P), RegisterMode::MISSING)
        .unwrap();
    let t = reader(&mem2, 0x777);
    let f = next_fault(&u2, 5000);
    assert_eq!(f.address, mem2.start());
    assert_eq!(f.exact_address, None);
    unsafe { u2.zeropage(Range::new(mem2.start(), P), ZeropageMode::empty()) }.unwrap();
    assert_eq!(t.join().unwrap(), 0);
}

#[test]
fn hugetlb_fault_address_is_huge_page_aligned_without_exact_address() {
    if common::skip_without_hugetlb(
        "hugetlb_fault_address_is_huge_page_aligned_without_exact_address",
    ) {
        return;
    }
    let _w = Watchdog::new(
        "hugetlb_fault_address_is_huge_page_aligned_without_exact_address",
        60,
    );
    if !kernel_has(Features::MISSING_HUGETLBFS | Features::EXACT_ADDRESS) {
        return;
    }
    let src = pattern(HUGE, 5);
    let off = 0x12345;
    for exact in [false, true] {
        let mem = Arc::new(Mem::new(Kind::Hugetlb, 1));
        let mut f = Features::MISSING_HUGETLBFS;
        if exact {
            f |= Features::EXACT_ADDRESS;
        }
        let u = open_uffd(f);
        u.register(Range::new(mem.start(), HUGE as u64), RegisterMode::MISSING)
            .unwrap();
        let t = reader(&mem, off);
        let fault = next_fault(&u, 5000);
        if exact {
            assert_eq!(fault.exact_address, Some(mem.start() + off as u64));
            assert_eq!(fault.address, (mem.start() + off as u64) & !(P - 1));
        } else {
            assert_eq!(fault.exact_address, None);
            assert_eq!(fault.address, mem.start(), "masked to the 2 MiB page");
            assert_eq!(fault.address % HUGE as u64, 0);
        }
        unsafe { u.copy_from_slice(mem.start(), &src, CopyMode::empty()) }.unwrap();
        assert_eq!(t.join().unwrap(), src[off]);
    }
}

#[test]
fn remap_event_moves_the_registration() {
    let _w = Watchdog::new("remap_event_moves_the_registration", 60);
    if !kernel_has(Features::EVENT_REMAP) {
        return;
    }
    let len = 4 * P;
    // The source is consumed by mremap: never munmap it again.
    let old = ManuallyDrop::new(Mem::new(Kind::Anon, 4));
    let dst = Arc::new(Mem::new(Kind::Anon, 4));
    let u = open_uffd(Features::EVENT_REMAP);
    u.register(Range::new(old.start(), len), RegisterMode::MISSING)
        .unwrap();
    unsafe { u.zeropage(Range::new(old.page_addr(0), P), ZeropageMode::empty()) }.unwrap();

    let (from, to) = (old.start(), dst.start());
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        tx.send(gettid()).unwrap();
        // SAFETY: moves our own mapping onto our own destination mapping.
        unsafe {
            libc::mremap(
                from as *mut _,
                len as usize,
                len as usize,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                to as *mut libc::c_void,
            ) as u64
        }
    });
    wait_blocked(rx.recv().unwrap());
    assert!(!t.is_finished(), "mremap must wait for the REMAP read");
    match next_event(&u, 5000) {
        Event::Remap {
            from: f,
            to: t2,
            len: l,
        } => {
            assert_eq!((f, t2, l), (from, to, len));
        }
        other => panic!("expected REMAP, got {other:?}"),
    }
    assert_eq!(t.join().unwrap(), to, "mremap returns the new address");
    // The populated page moved along; a missing page at the new address
    // still faults on this uffd.
    assert_eq!(dst.read(0), 0);
    let r = reader(&dst, 2 * PAGE + 1);
    let f = next_fault(&u, 5000);
    assert_eq!(f.address, dst.page_addr(2));
    let data = pattern(PAGE, 11);
    unsafe { u.copy_from_slice(dst.page_addr(2), &data, CopyMode::empty()) }.unwrap();
    assert_eq!(r.join().unwrap(), data[1]);
    // Nothing else is queued.
    assert!(read_batch(&u, 4, 0).is_empty());
    drop(u);
}

#[test]
fn remap_then_unmap_order_with_both_features() {
    let _w = Watchdog::new("remap_then_unmap_order_with_both_features", 60);
    if !kernel_has(Features::EVENT_REMAP | Features::EVENT_UNMAP) {
        return;
    }
    let len = 2 * P;
    let old = ManuallyDrop::new(Mem::new(Kind::Anon, 2));
    let dst = Mem::new(Kind::Anon, 2);
    let u = open_uffd(Features::EVENT_REMAP | Features::EVENT_UNMAP);
    u.register(Range::new(old.start(), len), RegisterMode::MISSING)
        .unwrap();
    let (from, to) = (old.start(), dst.start());
    let t = std::thread::spawn(move || {
        // SAFETY: moves our own mapping onto our own destination mapping.
        unsafe {
            libc::mremap(
                from as *mut _,
                len as usize,
                len as usize,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                to as *mut libc::c_void,
            ) as u64
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !t.is_finished() {
        assert!(
            Instant::now() < deadline,
            "mremap still blocked; saw {seen:?}"
        );
        seen.extend(read_batch(&u, 4, 50));
    }
    assert_eq!(t.join().unwrap(), to);
    seen.extend(read_batch(&u, 4, 0));
    assert_eq!(
        seen.len(),
        2,
        "REMAP then one UNMAP of the old range: {seen:?}"
    );
    match &seen[0] {
        Event::Remap {
            from: f,
            to: t2,
            len: l,
        } => assert_eq!((*f, *t2, *l), (from, to, len)),
        other => panic!("REMAP must come first, got {other:?} (all: {seen:?})"),
    }
    match &seen[1] {
        Event::Unmap { start, end } => assert_eq!((*start, *end), (from, from + len)),
        other => panic!("then UNMAP of the old range, got {other:?} (all: {seen:?})"),
    }
    eprintln!("mremap events: {seen:?}");
    drop(u);
}

#[test]
fn remap_without_feature_unregisters_the_moved_range() {
    let _w = Watchdog::new("remap_without_feature_unregisters_the_moved_range", 60);
    let len = 2 * P;
    let old = ManuallyDrop::new(Mem::new(Kind::Anon, 2));
    let dst = Mem::new(Kind::Anon, 2);
    let u = open_uffd(Features::empty());
    u.register(Range::new(old.start(), len), RegisterMode::MISSING)
        .unwrap();
    // No event, so mremap does not block: safe on this thread.
    // SAFETY: moves our own mapping onto our own destination mapping.
    let r = unsafe {
        libc::mremap(
            old.start() as *mut _,
            len as usize,
            len as usize,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            dst.start() as *mut libc::c_void,
        ) as u64
    };
    assert_eq!(r, dst.start());
    // The moved range is no longer registered: reading it does not trap.
    assert_eq!(dst.read(PAGE + 3), 0);
    assert!(read_batch(&u, 4, 0).is_empty());
    let e = unsafe { u.zeropage(Range::new(dst.start(), P), ZeropageMode::empty()) }.unwrap_err();
    assert_eq!(e.errno(), libc::ENOENT, "{e}");
}

#[test]
fn remove_event_blocks_madvise_until_read() {
    let _w = Watchdog::new("remove_event_blocks_madvise_until_read", 60);
    if !kernel_has(Features::EVENT_REMOVE) {
        return;
    }
    let mem = Arc::new(Mem::new(Kind::Anon, 4));
    let u = open_uffd(Features::EVENT_REMOVE);
    u.register(Range::new(mem.start(), 4 * P), RegisterMode::MISSING)
        .unwrap();
    let data = pattern(4 * PAGE, 2);
    unsafe { u.copy_from_slice(mem.start(), &data, CopyMode::empty()) }.unwrap();

    let (tid, t) = madvise_thread(mem.page_addr(1), 2 * P, libc::MADV_DONTNEED);
    wait_blocked(tid);
    std::thread::sleep(Duration::from_millis(50));
    assert!(!t.is_finished(), "madvise must wait for the REMOVE read");
    match next_event(&u, 5000) {
        Event::Remove { start, end } => {
            assert_eq!(start, mem.page_addr(1));
            assert_eq!(end, mem.page_addr(3));
        }
        other => panic!("expected REMOVE, got {other:?}"),
    }
    assert_eq!(
        t.join().unwrap(),
        0,
        "madvise succeeds once the event is read"
    );
    // Outside the range: untouched. Inside: zapped but still registered,
    // so the next touch is an ordinary MISSING fault.
    assert_eq!(mem.read(0), data[0]);
    assert_eq!(mem.read(3 * PAGE), data[3 * PAGE]);
    let r = reader(&mem, PAGE + 9);
    let f = next_fault(&u, 5000);
    assert_eq!(f.address, mem.page_addr(1));
    unsafe { u.zeropage(Range::new(mem.page_addr(1), P), ZeropageMode::empty()) }.unwrap();
    assert_eq!(r.join().unwrap(), 0);
    drop(u);
}

#[test]
fn unmap_event_blocks_munmap_until_read() {
    let _w = Watchdog::new("unmap_event_blocks_munmap_until_read", 60);
    if !kernel_has(Features::EVENT_UNMAP) {
        return;
    }
    let mut mem = Mem::new(Kind::Anon, 3);
    let u = open_uffd(Features::EVENT_UNMAP);
    u.register(Range::new(mem.start(), 3 * P), RegisterMode::MISSING)
        .unwrap();
    let (start, end) = (mem.start(), mem.start() + 3 * P);
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        tx.send(gettid()).unwrap();
        mem.unmap();
    });
    wait_blocked(rx.recv().unwrap());
    assert!(!t.is_finished(), "munmap must wait for the UNMAP read");
    match next_event(&u, 5000) {
        Event::Unmap { start: s, end: e } => assert_eq!((s, e), (start, end)),
        other => panic!("expected UNMAP, got {other:?}"),
    }
    t.join().unwrap();
    assert!(read_batch(&u, 4, 0).is_empty());
}

#[test]
fn faults_overtake_events() {
    let _w = Watchdog::new("faults_overtake_events", 60);
    if !kernel_has(Features::EVENT_REMOVE) {
        return;
    }
    let mem = Arc::new(Mem::new(Kind::Anon, 2));
    let u = open_uffd(Features::EVENT_REMOVE);
    u.register(Range::new(mem.start(), 2 * P), RegisterMode::MISSING)
        .unwrap();
    unsafe { u.zeropage(Range::new(mem.page_addr(0), P), ZeropageMode::empty()) }.unwrap();

    // First the REMOVE event is queued...
    let (tid, m) = madvise_thread(mem.page_addr(0), P, libc::MADV_DONTNEED);
    wait_blocked(tid);
    // ...then a fault.
    let r = reader(&mem, PAGE);
    wait_pending(&u, 1);

    let ev = read_batch(&u, 4, 1000);
    assert_eq!(ev.len(), 2, "one read returns both: {ev:?}");
    match &ev[0] {
        Event::Pagefault(f) => assert_eq!(f.address, mem.page_addr(1)),
        other => panic!("the fault must be read first, got {other:?}"),
    }
    match &ev[1] {
        Event::Remove { start, end } => {
            assert_eq!((*start, *end), (mem.page_addr(0), mem.page_addr(1)))
        }
        other => panic!("then the REMOVE, got {other:?}"),
    }
    assert_eq!(m.join().unwrap(), 0);
    unsafe { u.zeropage(Range::new(mem.page_addr(1), P), ZeropageMode::empty()) }.unwrap();
    assert_eq!(r.join().unwrap(), 0);
    drop(u);
}

#[test]
fn batch_read_returns_several_faults() {
    let _w = Watchdog::new("batch_read_returns_several_faults", 60);
    let n = 4;
    let mem = Arc::new(Mem::new(Kind::Anon, n));
    let u = open_uffd(Features::empty());
    u.register(Range::new(mem.start(), n as u64 * P), RegisterMode::MISSING)
        .unwrap();
    let threads: Vec<_> = (0..n).map(|i| reader(&mem, i * PAGE + i)).collect();
    wait_pending(&u, n as u64);
    let ev = read_batch(&u, 8, 1000);
    assert_eq!(ev.len(), n, "one read returns every queued fault: {ev:?}");
    let mut addrs: Vec<u64> = ev
        .iter()
        .map(|e| match e {
            Event::Pagefault(f) => f.address,
            other => panic!("{other:?}"),
        })
        .collect();
    addrs.sort();
    let want: Vec<u64> = (0..n).map(|i| mem.page_addr(i)).collect();
    assert_eq!(addrs, want);
    let data = pattern(n * PAGE, 4);
    unsafe { u.copy_from_slice(mem.start(), &data, CopyMode::empty()) }.unwrap();
    for (i, t) in threads.into_iter().enumerate() {
        assert_eq!(t.join().unwrap(), data[i * PAGE + i]);
    }
    assert!(read_batch(&u, 8, 0).is_empty());
}

#[test]
fn nonblocking_read_of_empty_queue_returns_zero() {
    let _w = Watchdog::new("nonblocking_read_of_empty_queue_returns_zero", 60);
    let u = open_uffd(Features::empty());
    let mut buf = [Msg::default(), Msg::default()];
    let t0 = Instant::now();
    assert_eq!(u.read_msgs(&mut buf, 0).unwrap(), 0);
    assert!(t0.elapsed() < Duration::from_millis(200));
    assert!(buf[0].take_event(u.features()).is_none(), "nothing written");
}

#[test]
fn timed_read_returns_zero_after_timeout() {
    let _w = Watchdog::new("timed_read_returns_zero_after_timeout", 60);
    let u = open_uffd(Features::empty());
    let mut buf = [Msg::default()];
    let t0 = Instant::now();
    assert_eq!(u.read_msgs(&mut buf, 200).unwrap(), 0);
    let el = t0.elapsed();
    assert!(el >= Duration::from_millis(190), "returned early: {el:?}");
    assert!(el < Duration::from_millis(1500), "returned late: {el:?}");
}

#[test]
fn blocking_fd_with_timeout_is_einval() {
    let _w = Watchdog::new("blocking_fd_with_timeout_is_einval", 60);
    let u = Uffd::open(&OpenOptions::default()).unwrap();
    assert!(!u.is_nonblocking());
    let mut buf = [Msg::default()];
    for timeout in [0, 100] {
        let e = u.read_msgs(&mut buf, timeout).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL);
        assert!(e.to_string().contains("non-blocking"), "{e}");
    }
    // Other argument errors, on any fd.
    let nb = open_uffd(Features::empty());
    let e = nb.read_msgs(&mut buf, -2).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    let e = nb.read_msgs(&mut [], 0).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    assert!(e.to_string().contains("0 events"), "{e}");
}

#[test]
fn duplicate_fault_message_resolves_with_eexist_then_wake() {
    let _w = Watchdog::new("duplicate_fault_message_resolves_with_eexist_then_wake", 60);
    let mem = Arc::new(Mem::new(Kind::Anon, 1));
    let u = open_uffd(Features::empty());
    u.register(Range::new(mem.start(), P), RegisterMode::MISSING)
        .unwrap();
    let a = reader(&mem, 1);
    let b = reader(&mem, 2000);
    wait_pending(&u, 2);
    let ev = read_batch(&u, 4, 1000);
    assert_eq!(ev.len(), 2, "{ev:?}");
    for e in &ev {
        match e {
            Event::Pagefault(f) => assert_eq!(f.address, mem.start()),
            other => panic!("{other:?}"),
        }
    }
    // Resolve the first message without waking anybody.
    let data = pattern(PAGE, 8);
    let p = unsafe { u.copy_from_slice(mem.start(), &data, CopyMode::DONTWAKE) }.unwrap();
    assert!(p.is_complete());
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !a.is_finished() && !b.is_finished(),
        "DONTWAKE must not wake"
    );
    // The second message is stale: EEXIST, and the waiters still need a wake.
    let e = unsafe { u.copy_from_slice(mem.start(), &data, CopyMode::empty()) }.unwrap_err();
    assert!(e.is_exists(), "{e}");
    assert_eq!(e.errno(), libc::EEXIST);
    assert!(!a.is_finished() && !b.is_finished(), "EEXIST does not wake");
    u.wake(Range::new(mem.start(), P)).unwrap();
    assert_eq!(a.join().unwrap(), data[1]);
    assert_eq!(b.join().unwrap(), data[2000]);
    assert!(read_batch(&u, 4, 0).is_empty());
}

#[test]
fn fault_resolved_before_read_leaves_nothing_queued() {
    let _w = Watchdog::new("fault_resolved_before_read_leaves_nothing_queued", 60);
    let mem = Arc::new(Mem::new(Kind::Anon, 1));
    let u = open_uffd(Features::empty());
    u.register(Range::new(mem.start(), P), RegisterMode::MISSING)
        .unwrap();
    let r = reader(&mem, 5);
    wait_pending(&u, 1);
    // Resolved (and woken) before anybody reads the message.
    unsafe { u.zeropage(Range::new(mem.start(), P), ZeropageMode::empty()) }.unwrap();
    assert_eq!(r.join().unwrap(), 0);
    let mut buf = [Msg::default()];
    assert_eq!(
        u.read_msgs(&mut buf, 100).unwrap(),
        0,
        "a woken fault is dequeued"
    );
}
