// SPDX-License-Identifier: MIT OR Apache-2.0
//! Resident-set budgets (issue 12 item 4): a region over a file with
//! `max_resident` a quarter of its size, random reads and writes from two
//! threads, every byte checked against a model; at the end the file plus
//! the resident memory equal the model. On anon, shmem and hugetlb, with
//! the drops made in place (no REMOVE events) and by the evictor thread
//! (REMOVE events on: the monitor's own madvise raises them). Also the
//! REMOVE policy Refill, write-back failures, read-only regions and bad
//! options.
#![allow(unsafe_code)]

mod common;
use common::*;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use uffd::monitor::*;
use uffd::*;

const THREADS: usize = 2;

/// Serves from the sources; the log goes to stderr (a test's output).
struct Logged;
impl Handler for Logged {
    fn on_log(&self, msg: &str) {
        eprintln!("monitor log: {msg}");
    }
    fn wants_log(&self) -> bool {
        true
    }
}

/// A file of `len` bytes holding `content(len, seed)`.
fn data_file(len: usize, seed: u64) -> (std::fs::File, Vec<u8>) {
    use std::io::Write;
    // A name of its own: tests run side by side in one process.
    static NTH: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "libuffd-budget-{}-{seed}-{len}-{}",
        std::process::id(),
        NTH.fetch_add(1, SeqCst)
    ));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let data = content(len, seed);
    f.write_all(&data).unwrap();
    (f, data)
}

fn pread_all(f: &std::fs::File, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut v = vec![0u8; len];
    f.read_exact_at(&mut v, 0).unwrap();
    v
}

/// Whether each page of `mem` is resident (mincore).
fn resident(mem: &Mem) -> Vec<bool> {
    let base = 4096;
    let mut v = vec![0u8; mem.len / base];
    // SAFETY: `v` has one byte per base page of the mapping.
    let r = unsafe { libc::mincore(mem.addr.cast(), mem.len, v.as_mut_ptr()) };
    assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
    let per = mem.kind.page() / base;
    (0..mem.len / mem.kind.page())
        .map(|p| v[p * per] & 1 != 0)
        .collect()
}

fn features(kind: Kind, remove: bool) -> Features {
    let mut f = kind.missing_features() | kit::wp_features(kind);
    if remove {
        f |= Features::EVENT_REMOVE;
    }
    f
}

struct Setup {
    mem: Mem,
    file: std::fs::File,
    monitor: Monitor,
    running: Option<Running>,
}

fn setup(
    test: &str,
    kind: Kind,
    pages: usize,
    budget_pages: usize,
    remove: bool,
    config: Config,
    seed: u64,
) -> Option<(Setup, Vec<u8>)> {
    if kind.is_hugetlb() && skip_without_hugetlb(test) {
        return None;
    }
    let u = kit::uffd_with(features(kind, remove), test)?;
    let mem = Mem::new(kind, pages);
    let (file, data) = data_file(mem.len, seed);
    let monitor = Monitor::new(config, Box::new(Logged)).unwrap();
    let id = monitor.add_uffd(Arc::new(u)).unwrap();
    monitor
        .add_region(
            id,
            handed(mem.start(), mem.len as u64),
            RegionOptions {
                source: Source::Fd {
                    fd: file.as_raw_fd(),
                    offset: 0,
                    zero_past_eof: false,
                },
                register: RegisterMode::MISSING,
                max_resident: (budget_pages * kind.page()) as u64,
                sink: Sink::Fd(file.as_raw_fd()),
                ..RegionOptions::default()
            },
        )
        .unwrap();
    let running = Some(monitor.start().unwrap());
    Some((
        Setup {
            mem,
            file,
            monitor,
            running,
        },
        data,
    ))
}

/// xorshift
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// The working-set test: `pages` pages (16: a budget of a quarter of them),
/// THREADS threads each reading and writing its own bytes (offset % THREADS
/// == thread) of random pages, checking each read against its model.
fn working_set(test: &'static str, kind: Kind, remove: bool, workers: u32, ops: usize) {
    working_set_of(test, kind, remove, workers, ops, 16, 4);
}

fn working_set_of(
    test: &'static str,
    kind: Kind,
    remove: bool,
    workers: u32,
    ops: usize,
    pages: usize,
    budget: usize,
) {
    let _w = Watchdog::new(test, 120);
    let config = Config {
        workers,
        ..Config::default()
    };
    let Some((mut s, data)) = setup(test, kind, pages, budget, remove, config, 7) else {
        return;
    };
    let ps = kind.page();
    let mem_addr = s.mem.start();
    let len = s.mem.len;
    let checked = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let mut model = data.clone();
            let checked = checked.clone();
            std::thread::spawn(move || {
                let p = mem_addr as *mut u8;
                let mut x = 0x1234_5678_9abc_def1u64 ^ (t as u64 * 0x9E37_79B9);
                for _ in 0..ops {
                    let page = (next(&mut x) % pages as u64) as usize;
                    // A few bytes of the page: first, last, one at random.
                    let r = (next(&mut x) % (ps / THREADS) as u64) as usize;
                    let slots = [0, ps / THREADS - 1, r];
                    let write = next(&mut x) % 2 == 0;
                    for slot in slots {
                        let off = page * ps + slot * THREADS + t;
                        // SAFETY: inside the mapping; the monitor serves it.
                        let got = unsafe { std::ptr::read_volatile(p.add(off)) };
                        assert_eq!(
                            got, model[off],
                            "{test}: thread {t} read {got:#x} at page {page} offset {off:#x}, model says {:#x}",
                            model[off]
                        );
                        checked.fetch_add(1, SeqCst);
                        if write {
                            let v = (next(&mut x) as u8) | 1;
                            // SAFETY: as above; this thread's byte.
                            unsafe { std::ptr::write_volatile(p.add(off), v) };
                            model[off] = v;
                        }
                    }
                }
                model
            })
        })
        .collect();
    let models: Vec<Vec<u8>> = threads.into_iter().map(|h| h.join().unwrap()).collect();
    let mut model = data.clone();
    for (off, b) in model.iter_mut().enumerate() {
        *b = models[off % THREADS][off];
    }
    // Drops queued for the evictor thread settle.
    std::thread::sleep(std::time::Duration::from_millis(100));
    let st = s.monitor.stats();
    assert!(st.evictions > 0, "{test}: no eviction: {st:?}");
    assert!(st.writebacks > 0, "{test}: no write-back: {st:?}");
    assert_eq!(st.writeback_bytes, st.writebacks * ps as u64, "{test}");
    assert_eq!(st.writeback_failures, 0, "{test}: {st:?}");
    assert_eq!(st.failed, 0, "{test}: {st:?}");
    // The budget holds (up to the evictor's queue with REMOVE events).
    let res = resident(&s.mem);
    let n_res = res.iter().filter(|r| **r).count();
    assert!(
        n_res <= budget + if remove { 1 } else { 0 },
        "{test}: {n_res} pages resident, budget {budget}: {res:?} {st:?}"
    );
    assert!(st.resident_pages <= budget as u64 + 1, "{test}: {st:?}");
    // File + resident memory == model.
    let file = pread_all(&s.file, len);
    for (i, r) in res.iter().enumerate() {
        let range = i * ps..(i + 1) * ps;
        if *r {
            kit::assert_bytes(
                &s.mem.bytes()[range.clone()],
                &model[range],
                &format!("{test}: resident page {i}"),
            );
        } else {
            kit::assert_bytes(
                &file[range.clone()],
                &model[range],
                &format!("{test}: evicted page {i} in the file"),
            );
        }
    }
    // And every byte read through the monitor again.
    kit::assert_bytes(s.mem.bytes(), &model, &format!("{test}: read back"));
    s.monitor.stop();
    s.running.take().unwrap().wait().unwrap();
    eprintln!(
        "{test}: {} reads checked, {} evictions, {} write-backs",
        checked.load(SeqCst),
        st.evictions,
        st.writebacks
    );
}

#[test]
fn budget_anon_in_place() {
    working_set("budget_anon_in_place", Kind::Anon, false, 0, 20_000);
}

#[test]
fn budget_anon_evictor_thread() {
    working_set("budget_anon_evictor_thread", Kind::Anon, true, 0, 20_000);
}

#[test]
fn budget_anon_workers() {
    working_set("budget_anon_workers", Kind::Anon, true, 2, 20_000);
}

#[test]
fn budget_anon_workers_in_place() {
    working_set("budget_anon_workers_in_place", Kind::Anon, false, 2, 20_000);
}

#[test]
fn budget_shmem_in_place() {
    working_set("budget_shmem_in_place", Kind::ShmemShared, false, 0, 20_000);
}

#[test]
fn budget_shmem_evictor_thread() {
    working_set(
        "budget_shmem_evictor_thread",
        Kind::ShmemShared,
        true,
        0,
        20_000,
    );
}

/// Two pages for a budget of one, two writers and two workers: nearly
/// every access evicts the page the other thread writes, so writes race
/// with write-backs all the time; none may be lost.
#[test]
fn budget_writes_race_writebacks() {
    working_set_of(
        "budget_writes_race_writebacks",
        Kind::Anon,
        false,
        2,
        20_000,
        2,
        1,
    );
}

#[test]
fn budget_writes_race_writebacks_evictor() {
    working_set_of(
        "budget_writes_race_writebacks_evictor",
        Kind::Anon,
        true,
        2,
        20_000,
        2,
        1,
    );
}

#[test]
fn budget_hugetlb_private() {
    // 8 huge pages, a budget of 2: few of the machine's reserved pages.
    working_set_of(
        "budget_hugetlb_private",
        Kind::HugetlbPrivate,
        false,
        0,
        600,
        8,
        2,
    );
}

#[test]
fn budget_hugetlb_shared() {
    working_set_of("budget_hugetlb_shared", Kind::Hugetlb, true, 0, 600, 8, 2);
}

// A budget of 2048 pages evicts 8 at a time (budget.rs BATCH_DIVISOR),
// dropped together by one process_madvise: the same model checks, with the
// victims of one fault written back one by one and dropped as a batch.

#[test]
fn budget_batches_anon_in_place() {
    working_set_of(
        "budget_batches_anon_in_place",
        Kind::Anon,
        false,
        0,
        12_000,
        8192,
        2048,
    );
}

#[test]
fn budget_batches_anon_workers_in_place() {
    working_set_of(
        "budget_batches_anon_workers_in_place",
        Kind::Anon,
        false,
        2,
        12_000,
        8192,
        2048,
    );
}

#[test]
fn budget_batches_shmem_in_place() {
    working_set_of(
        "budget_batches_shmem_in_place",
        Kind::ShmemShared,
        false,
        0,
        12_000,
        8192,
        2048,
    );
}

#[test]
fn budget_batches_anon_evictor_thread() {
    working_set_of(
        "budget_batches_anon_evictor_thread",
        Kind::Anon,
        true,
        0,
        12_000,
        8192,
        2048,
    );
}

/// A write to a missing page of a budgeted region is one fault: the page
/// is placed writable and counted dirty (before, it was placed
/// write-protected and the write faulted a second time). A read is placed
/// write-protected: its first write is a second fault, which marks it
/// dirty. Both reach the file at write-back; an untouched page does not.
fn write_fault_case(test: &'static str, kind: Kind) {
    let _w = Watchdog::new(test, 60);
    // Fault counts are what is checked: no fault-around.
    let config = Config {
        adaptive: false,
        ..Config::default()
    };
    let Some((s, data)) = setup(test, kind, 8, 4, false, config, 73) else {
        return;
    };
    let ps = kind.page();
    let mut model = data.clone();
    s.mem.write(ps + 5, 0xD1);
    model[ps + 5] = 0xD1;
    let st = s.monitor.stats();
    assert_eq!(st.faults, 1, "{test}: a write to a missing page: {st:?}");
    assert_eq!(s.mem.read(2 * ps + 5), data[2 * ps + 5]);
    s.mem.write(2 * ps + 6, 0xD2);
    model[2 * ps + 6] = 0xD2;
    let st = s.monitor.stats();
    assert_eq!(st.faults, 3, "{test}: a read, then a write: {st:?}");
    assert_eq!(s.mem.read(3 * ps), data[3 * ps]);
    let range = Range::new(s.mem.start(), s.mem.len as u64);
    assert_eq!(s.monitor.writeback(0, range).unwrap(), 2, "{test}");
    assert_eq!(pread_all(&s.file, s.mem.len), model, "{test}: the file");
    // Clean and protected again: the next write faults and is written back.
    s.mem.write(ps + 9, 0xD3);
    model[ps + 9] = 0xD3;
    assert_eq!(s.monitor.stats().faults, 5, "{test}");
    assert_eq!(s.monitor.writeback(0, range).unwrap(), 1, "{test}");
    assert_eq!(
        pread_all(&s.file, s.mem.len),
        model,
        "{test}: the file again"
    );
}

#[test]
fn write_fault_is_one_fault_anon() {
    write_fault_case("write_fault_is_one_fault_anon", Kind::Anon);
}

#[test]
fn write_fault_is_one_fault_shmem() {
    write_fault_case("write_fault_is_one_fault_shmem", Kind::ShmemShared);
}

#[test]
fn write_fault_is_one_fault_hugetlb() {
    write_fault_case("write_fault_is_one_fault_hugetlb", Kind::Hugetlb);
}

/// A sequential scan of a budgeted region (a table scan in a buffer pool):
/// fault-around places the pages after the faulting one into the room the
/// batch eviction leaves, so the scan takes a fraction of a fault per page
/// (before: one fault per page, `pages` faults), the budget holds, every
/// byte read is the file's; then a second scan writes every page, a
/// checkpoint writes them back, and file + memory equal the model.
fn scan_case(
    test: &'static str,
    kind: Kind,
    pages: usize,
    budget: usize,
    max_faults: u64,
    max_mixed_faults: u64,
) {
    let _w = Watchdog::new(test, 60);
    let Some((s, data)) = setup(test, kind, pages, budget, false, Config::default(), 79) else {
        return;
    };
    let ps = kind.page();
    for p in 0..pages {
        for off in [p * ps, p * ps + ps / 2, p * ps + ps - 1] {
            assert_eq!(s.mem.read(off), data[off], "{test}: scan, page {p}");
        }
    }
    let st = s.monitor.stats();
    eprintln!("{test}: read scan of {pages} pages: {st:?}");
    assert!(
        st.faults <= max_faults,
        "{test}: {} faults for a scan of {pages} pages (at most {max_faults})",
        st.faults
    );
    assert!(st.evictions > 0, "{test}: {st:?}");
    assert!(st.resident_pages <= budget as u64, "{test}: {st:?}");
    let n_res = resident(&s.mem).iter().filter(|r| **r).count();
    assert!(
        n_res <= budget,
        "{test}: {n_res} pages resident, budget {budget}"
    );
    // A mixed scan: every other page written. The written pages that the
    // fault-around placed write-protected fault once more; those faults
    // must not shrink the window (before: about one fault per page).
    let mut model = data.clone();
    let before = s.monitor.stats().faults;
    for p in 0..pages {
        let off = p * ps + 3;
        if p % 2 == 1 {
            s.mem.write(off, (p as u8) ^ 0x3C);
            model[off] = (p as u8) ^ 0x3C;
        } else {
            assert_eq!(s.mem.read(off), data[off], "{test}: mixed scan, page {p}");
        }
    }
    let mixed = s.monitor.stats().faults - before;
    eprintln!("{test}: mixed scan of {pages} pages: {mixed} faults");
    assert!(
        mixed <= max_mixed_faults,
        "{test}: {mixed} faults for a mixed scan of {pages} pages (at most {max_mixed_faults})"
    );
    // Written scan, checkpoint, read back.
    for p in 0..pages {
        let off = p * ps + 7;
        s.mem.write(off, (p as u8) ^ 0x5A);
        model[off] = (p as u8) ^ 0x5A;
    }
    let range = Range::new(s.mem.start(), s.mem.len as u64);
    s.monitor.writeback(0, range).unwrap();
    let file = pread_all(&s.file, s.mem.len);
    kit::assert_bytes(&file, &model, &format!("{test}: the file"));
    kit::assert_bytes(s.mem.bytes(), &model, &format!("{test}: read back"));
    let st = s.monitor.stats();
    assert_eq!(st.failed, 0, "{test}: {st:?}");
    assert!(st.resident_pages <= budget as u64, "{test}: {st:?}");
}

#[test]
fn scan_faults_around_anon() {
    // Batches of 16 (a quarter of the budget is more): about 4096/16.
    scan_case("scan_faults_around_anon", Kind::Anon, 4096, 1024, 600, 2600);
}

#[test]
fn scan_faults_around_shmem() {
    scan_case(
        "scan_faults_around_shmem",
        Kind::ShmemShared,
        4096,
        1024,
        600,
        2600,
    );
}

#[test]
fn scan_faults_around_hugetlb() {
    // 12 huge pages, a budget of 8: batches of 2 (a quarter).
    scan_case(
        "scan_faults_around_hugetlb",
        Kind::HugetlbPrivate,
        12,
        8,
        9,
        12,
    );
}

/// A checkpoint asked for right after a write that faulted its page in
/// includes that write. The page is placed writable for the write fault,
/// and the copy wakes the writer before the monitor has marked the page
/// resident and dirty: the checkpoint must wait for that, not take the
/// page for clean. scan_faults_around_hugetlb lost the last page's write
/// that way (the file kept the old byte; the page was in memory with the
/// new one).
fn writeback_after_write_fault_case(test: &'static str, kind: Kind, pages: usize, budget: usize) {
    let _w = Watchdog::new(test, 60);
    let Some((s, data)) = setup(test, kind, pages, budget, false, Config::default(), 83) else {
        return;
    };
    let ps = kind.page();
    let mut model = data.clone();
    for p in 0..pages {
        // Every page is missing when written (each visited once, in order).
        let off = p * ps + 11;
        let v = (p as u8) ^ 0xC3;
        s.mem.write(off, v);
        model[off] = v;
        let range = Range::new(s.mem.start() + (p * ps) as u64, ps as u64);
        let n = s.monitor.writeback(0, range).unwrap();
        let mut b = [0u8; 1];
        std::os::unix::fs::FileExt::read_exact_at(&s.file, &mut b, off as u64).unwrap();
        assert_eq!(
            b[0], v,
            "{test}: page {p}: the file after a checkpoint of the page just written ({n} written back)"
        );
    }
    assert_eq!(pread_all(&s.file, s.mem.len), model, "{test}: the file");
}

#[test]
fn writeback_right_after_write_faults_anon() {
    writeback_after_write_fault_case(
        "writeback_right_after_write_faults_anon",
        Kind::Anon,
        256,
        32,
    );
}

#[test]
fn writeback_right_after_write_faults_shmem() {
    writeback_after_write_fault_case(
        "writeback_right_after_write_faults_shmem",
        Kind::ShmemShared,
        256,
        32,
    );
}

#[test]
fn writeback_right_after_write_faults_hugetlb() {
    writeback_after_write_fault_case(
        "writeback_right_after_write_faults_hugetlb",
        Kind::HugetlbPrivate,
        12,
        4,
    );
}

/// REMOVE policy Refill: after the application's madvise(DONTNEED), the
/// next read gets the source's bytes again (ZeroFill: zeros), on a plain
/// region and on a budgeted one.
fn refill_case(test: &'static str, kind: Kind, budgeted: bool, policy: RemovePolicy) {
    let _w = Watchdog::new(test, 30);
    if kind.is_hugetlb() && skip_without_hugetlb(test) {
        return;
    }
    let Some(u) = kit::uffd_with(features(kind, true), test) else {
        return;
    };
    let mem = Mem::new(kind, 4);
    let (file, data) = data_file(mem.len, 11);
    let monitor = Monitor::new(
        Config {
            remove_policy: policy,
            ..Config::default()
        },
        Box::new(DefaultHandler),
    )
    .unwrap();
    let id = monitor.add_uffd(Arc::new(u)).unwrap();
    let ps = kind.page();
    monitor
        .add_region(
            id,
            handed(mem.start(), mem.len as u64),
            RegionOptions {
                source: Source::Fd {
                    fd: file.as_raw_fd(),
                    offset: 0,
                    zero_past_eof: false,
                },
                register: RegisterMode::MISSING,
                max_resident: if budgeted { 2 * ps as u64 } else { 0 },
                sink: if budgeted {
                    Sink::Fd(file.as_raw_fd())
                } else {
                    Sink::None
                },
                ..RegionOptions::default()
            },
        )
        .unwrap();
    let running = monitor.start().unwrap();
    assert_eq!(mem.read(ps + 3), data[ps + 3]);
    mem.write(ps + 3, data[ps + 3] ^ 0xff);
    // The application drops page 1 (its write goes with it).
    let advice = if kind == Kind::Anon || kind == Kind::HugetlbPrivate {
        libc::MADV_DONTNEED
    } else {
        libc::MADV_REMOVE
    };
    // SAFETY: page 1 of the mapping.
    let r = unsafe { libc::madvise(mem.addr.add(ps).cast(), ps, advice) };
    assert_eq!(r, 0, "{test}: madvise: {}", std::io::Error::last_os_error());
    let expect = match policy {
        RemovePolicy::Refill => data[ps..2 * ps].to_vec(),
        _ => vec![0u8; ps],
    };
    kit::assert_bytes(
        &mem.bytes()[ps..2 * ps],
        &expect,
        &format!("{test}: page 1 after madvise"),
    );
    // The rest reads as the file.
    kit::assert_bytes(&mem.bytes()[2 * ps..], &data[2 * ps..], test);
    let st = monitor.stats();
    assert!(st.removes >= 1, "{test}: {st:?}");
    monitor.stop();
    running.wait().unwrap();
}

#[test]
fn refill_anon() {
    refill_case("refill_anon", Kind::Anon, false, RemovePolicy::Refill);
}

#[test]
fn refill_shmem() {
    refill_case(
        "refill_shmem",
        Kind::ShmemShared,
        false,
        RemovePolicy::Refill,
    );
}

#[test]
fn refill_hugetlb() {
    refill_case(
        "refill_hugetlb",
        Kind::HugetlbPrivate,
        false,
        RemovePolicy::Refill,
    );
}

#[test]
fn refill_budgeted_anon() {
    refill_case(
        "refill_budgeted_anon",
        Kind::Anon,
        true,
        RemovePolicy::Refill,
    );
}

#[test]
fn zero_fill_budgeted_anon() {
    refill_case(
        "zero_fill_budgeted_anon",
        Kind::Anon,
        true,
        RemovePolicy::ZeroFill,
    );
}

/// A sink that cannot be written (the file opened read-only): dirty pages
/// stay resident and dirty, counted; nothing written is lost.
#[test]
fn writeback_failure_keeps_the_page() {
    let test = "writeback_failure_keeps_the_page";
    let _w = Watchdog::new(test, 30);
    let kind = Kind::Anon;
    let Some(u) = kit::uffd_with(features(kind, false), test) else {
        return;
    };
    let pages = 16;
    let mem = Mem::new(kind, pages);
    let (file, data) = data_file(mem.len, 3);
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    let ro = std::fs::File::open(path).unwrap();
    let monitor = Monitor::new(Config::default(), Box::new(DefaultHandler)).unwrap();
    let id = monitor.add_uffd(Arc::new(u)).unwrap();
    monitor
        .add_region(
            id,
            handed(mem.start(), mem.len as u64),
            RegionOptions {
                source: Source::Fd {
                    fd: file.as_raw_fd(),
                    offset: 0,
                    zero_past_eof: false,
                },
                register: RegisterMode::MISSING,
                max_resident: 4 * PAGE as u64,
                sink: Sink::Fd(ro.as_raw_fd()),
                ..RegionOptions::default()
            },
        )
        .unwrap();
    let running = monitor.start().unwrap();
    let mut model = data.clone();
    for p in 0..pages {
        model[p * PAGE + 1] = !data[p * PAGE + 1];
        mem.write(p * PAGE + 1, model[p * PAGE + 1]);
    }
    for p in 0..pages {
        kit::assert_bytes(
            kit::page_bytes(&mem, p),
            &model[p * PAGE..(p + 1) * PAGE],
            test,
        );
    }
    let st = monitor.stats();
    assert!(st.writeback_failures > 0, "{test}: {st:?}");
    assert_eq!(st.writebacks, 0, "{test}: {st:?}");
    // The file was never written.
    assert_eq!(pread_all(&file, mem.len), data, "{test}: file changed");
    monitor.stop();
    running.wait().unwrap();
}

/// A read-only region (no sink): clean pages are evicted and come back;
/// a page written anyway is kept resident, its bytes intact.
#[test]
fn read_only_region() {
    let test = "read_only_region";
    let _w = Watchdog::new(test, 30);
    let kind = Kind::Anon;
    let Some(u) = kit::uffd_with(features(kind, false), test) else {
        return;
    };
    let pages = 16;
    let mem = Mem::new(kind, pages);
    let (file, data) = data_file(mem.len, 5);
    let monitor = Monitor::new(Config::default(), Box::new(DefaultHandler)).unwrap();
    let id = monitor.add_uffd(Arc::new(u)).unwrap();
    monitor
        .add_region(
            id,
            handed(mem.start(), mem.len as u64),
            RegionOptions {
                source: Source::Fd {
                    fd: file.as_raw_fd(),
                    offset: 0,
                    zero_past_eof: false,
                },
                register: RegisterMode::MISSING,
                max_resident: 4 * PAGE as u64,
                read_only: true,
                ..RegionOptions::default()
            },
        )
        .unwrap();
    let running = monitor.start().unwrap();
    mem.write(5, 0xee);
    for round in 0..3 {
        for p in 0..pages {
            let mut want = data[p * PAGE..(p + 1) * PAGE].to_vec();
            if p == 0 {
                want[5] = 0xee;
            }
            kit::assert_bytes(
                kit::page_bytes(&mem, p),
                &want,
                &format!("{test} round {round}"),
            );
        }
    }
    let st = monitor.stats();
    assert!(st.evictions > 0, "{test}: {st:?}");
    assert_eq!(st.writebacks, 0, "{test}: {st:?}");
    assert!(resident(&mem)[0], "{test}: the written page was evicted");
    monitor.stop();
    running.wait().unwrap();
}

/// Bad options: EINVAL with a reason.
#[test]
fn budget_bad_options() {
    let test = "budget_bad_options";
    let _w = Watchdog::new(test, 30);
    let Some(u) = kit::uffd_with(features(Kind::Anon, false), test) else {
        return;
    };
    let mem = Mem::new(Kind::Anon, 4);
    let (file, _) = data_file(mem.len, 1);
    let (other, _) = data_file(mem.len, 2);
    let monitor = Monitor::new(Config::default(), Box::new(DefaultHandler)).unwrap();
    let id = monitor.add_uffd(Arc::new(u)).unwrap();
    let fd_source = Source::Fd {
        fd: file.as_raw_fd(),
        offset: 0,
        zero_past_eof: false,
    };
    let buf = vec![1u8; mem.len];
    let base = RegionOptions {
        source: fd_source,
        register: RegisterMode::MISSING,
        max_resident: 2 * PAGE as u64,
        sink: Sink::Fd(file.as_raw_fd()),
        ..RegionOptions::default()
    };
    let cases: Vec<(&str, RegionOptions, &str)> = vec![
        (
            "less than a page",
            RegionOptions {
                max_resident: 100,
                ..base
            },
            "less than one",
        ),
        (
            "no sink",
            RegionOptions {
                sink: Sink::None,
                ..base
            },
            "needs a write-back sink",
        ),
        (
            "zero source",
            RegionOptions {
                source: Source::Zero,
                ..base
            },
            "cannot give them back",
        ),
        (
            "buffer + fd sink",
            RegionOptions {
                source: Source::Buffer {
                    addr: buf.as_ptr() as u64,
                    len: buf.len() as u64,
                },
                ..base
            },
            "cannot feed a buffer",
        ),
        (
            "another file",
            RegionOptions {
                sink: Sink::Fd(other.as_raw_fd()),
                ..base
            },
            "source's file",
        ),
        (
            "negative sink",
            RegionOptions {
                sink: Sink::Fd(-1),
                ..base
            },
            "negative",
        ),
        (
            "prefetch",
            RegionOptions {
                prefetch: true,
                ..base
            },
            "prefetch",
        ),
        (
            "minor",
            RegionOptions {
                register: RegisterMode::MISSING | RegisterMode::MINOR,
                ..base
            },
            "MINOR",
        ),
        (
            "sink, no budget",
            RegionOptions {
                max_resident: 0,
                ..base
            },
            "without max_resident",
        ),
    ];
    for (what, opts, text) in cases {
        let e = monitor
            .add_region(id, handed(mem.start(), mem.len as u64), opts)
            .expect_err(what);
        assert!(
            e.errno() == libc::EINVAL || (what == "negative sink" && e.errno() == libc::EBADF),
            "{what}: {e}"
        );
        assert!(e.to_string().contains(text), "{what}: {e}");
    }
    // None of them left a region or a registration behind: a good one
    // is accepted.
    monitor
        .add_region(id, handed(mem.start(), mem.len as u64), base)
        .unwrap();
}

/// The callback sink over a buffer source: `Handler::on_writeback` stores
/// each dirty page in the buffer the source reads, and evicted pages come
/// back with it. With REMOVE events (the evictor thread drops the pages)
/// and workers.
struct BufferSink {
    buf: u64,
    calls: Arc<AtomicU64>,
}

impl Handler for BufferSink {
    fn on_writeback(&self, wb: &Writeback) -> std::result::Result<(), i32> {
        if wb.page < wb.region.start || wb.len != PAGE as u64 {
            return Err(libc::EINVAL);
        }
        // SAFETY: the page is readable (write-protected, resident) for the
        // call; the buffer is the test's, len bytes at source_offset.
        unsafe {
            std::ptr::copy_nonoverlapping(
                wb.page as *const u8,
                (self.buf + wb.region.source_offset) as *mut u8,
                wb.len as usize,
            )
        };
        self.calls.fetch_add(1, SeqCst);
        Ok(())
    }
}

#[test]
fn callback_sink_buffer_source() {
    let test = "callback_sink_buffer_source";
    let _w = Watchdog::new(test, 60);
    let kind = Kind::Anon;
    let Some(u) = kit::uffd_with(features(kind, true), test) else {
        return;
    };
    let pages = 32;
    let mem = Mem::new(kind, pages);
    let data = content(mem.len, 9);
    // The source buffer: its own mapping (the callback writes it).
    let src = Mem::new(Kind::Anon, pages);
    kit::fill(&src, 0, &data);
    let calls = Arc::new(AtomicU64::new(0));
    let monitor = Monitor::new(
        Config {
            workers: 2,
            ..Config::default()
        },
        Box::new(BufferSink {
            buf: src.start(),
            calls: calls.clone(),
        }),
    )
    .unwrap();
    let id = monitor.add_uffd(Arc::new(u)).unwrap();
    monitor
        .add_region(
            id,
            handed(mem.start(), mem.len as u64),
            RegionOptions {
                source: Source::Buffer {
                    addr: src.start(),
                    len: src.len as u64,
                },
                register: RegisterMode::MISSING,
                max_resident: 8 * PAGE as u64,
                sink: Sink::Callback,
                ..RegionOptions::default()
            },
        )
        .unwrap();
    let running = monitor.start().unwrap();
    let mut model = data.clone();
    let mut x = 77u64;
    for _ in 0..5000 {
        let off = (next(&mut x) % mem.len as u64) as usize;
        if next(&mut x) % 2 == 0 {
            let v = next(&mut x) as u8;
            mem.write(off, v);
            model[off] = v;
        } else {
            assert_eq!(mem.read(off), model[off], "{test}: offset {off:#x}");
        }
    }
    kit::assert_bytes(mem.bytes(), &model, test);
    let st = monitor.stats();
    assert!(st.evictions > 0 && st.writebacks > 0, "{test}: {st:?}");
    assert_eq!(calls.load(SeqCst), st.writebacks, "{test}");
    assert_eq!(st.writeback_failures, 0, "{test}: {st:?}");
    monitor.stop();
    running.wait().unwrap();
}

/// Driven by `dispatch` from the test's own loop, REMOVE events on: the
/// evictor thread's madvise waits for the dispatching thread to read its
/// REMOVE, never for itself.
#[test]
fn budget_dispatch_with_remove_events() {
    let test = "budget_dispatch_with_remove_events";
    let _w = Watchdog::new(test, 60);
    let kind = Kind::Anon;
    let Some(u) = kit::uffd_with(features(kind, true), test) else {
        return;
    };
    let pages = 16;
    let mem = Mem::new(kind, pages);
    let (file, data) = data_file(mem.len, 13);
    let monitor = Monitor::new(Config::default(), Box::new(Logged)).unwrap();
    let id = monitor.add_uffd(Arc::new(u)).unwrap();
    monitor
        .add_region(
            id,
            handed(mem.start(), mem.len as u64),
            RegionOptions {
                source: Source::Fd {
                    fd: file.as_raw_fd(),
                    offset: 0,
                    zero_past_eof: false,
                },
                register: RegisterMode::MISSING,
                max_resident: 4 * PAGE as u64,
                sink: Sink::Fd(file.as_raw_fd()),
                ..RegionOptions::default()
            },
        )
        .unwrap();
    let addr = mem.start();
    let len = mem.len;
    let expect = data.clone();
    let app = std::thread::spawn(move || {
        let p = addr as *mut u8;
        let mut model = expect;
        let mut x = 5u64;
        for _ in 0..3000 {
            let off = (next(&mut x) % len as u64) as usize;
            // SAFETY: inside the mapping, served by the dispatching thread.
            let got = unsafe { std::ptr::read_volatile(p.add(off)) };
            assert_eq!(got, model[off], "offset {off:#x}");
            let v = next(&mut x) as u8;
            // SAFETY: as above.
            unsafe { std::ptr::write_volatile(p.add(off), v) };
            model[off] = v;
        }
        model
    });
    while !app.is_finished() {
        monitor.dispatch(10).unwrap();
    }
    let model = app.join().unwrap();
    let st = monitor.stats();
    assert!(st.evictions > 0 && st.writebacks > 0, "{test}: {st:?}");
    // Reading it all back needs the dispatching thread too.
    let reader = std::thread::spawn(move || {
        // SAFETY: the mapping, alive until the test ends (joined below).
        let b = unsafe { std::slice::from_raw_parts(addr as *const u8, len) };
        b == &model[..]
    });
    while !reader.is_finished() {
        monitor.dispatch(10).unwrap();
    }
    assert!(reader.join().unwrap(), "{test}: read back differs");
    let _ = data;
}

/// Stop (policy Block) and run again, REMOVE events on: drops queued for
/// the evictor when the run stopped are given back (the pages stay,
/// clean), and the next run goes on evicting; every byte survives.
#[test]
fn budget_stop_and_rerun() {
    let test = "budget_stop_and_rerun";
    let _w = Watchdog::new(test, 60);
    let kind = Kind::Anon;
    let Some(u) = kit::uffd_with(features(kind, true), test) else {
        return;
    };
    let pages = 16;
    let mem = Mem::new(kind, pages);
    let (file, data) = data_file(mem.len, 17);
    let monitor = Monitor::new(
        Config {
            stop_policy: StopPolicy::Block,
            ..Config::default()
        },
        Box::new(Logged),
    )
    .unwrap();
    let id = monitor.add_uffd(Arc::new(u)).unwrap();
    monitor
        .add_region(
            id,
            handed(mem.start(), mem.len as u64),
            RegionOptions {
                source: Source::Fd {
                    fd: file.as_raw_fd(),
                    offset: 0,
                    zero_past_eof: false,
                },
                register: RegisterMode::MISSING,
                max_resident: 4 * PAGE as u64,
                sink: Sink::Fd(file.as_raw_fd()),
                ..RegionOptions::default()
            },
        )
        .unwrap();
    let mut model = data.clone();
    let mut x = 21u64;
    for round in 0..3 {
        let running = monitor.start().unwrap();
        for _ in 0..2000 {
            let off = (next(&mut x) % mem.len as u64) as usize;
            assert_eq!(
                mem.read(off),
                model[off],
                "{test}: round {round}, offset {off:#x}"
            );
            let v = next(&mut x) as u8;
            mem.write(off, v);
            model[off] = v;
        }
        monitor.stop();
        running.wait().unwrap();
    }
    let st = monitor.stats();
    assert!(st.evictions > 0 && st.writebacks > 0, "{test}: {st:?}");
    // Served once more to read everything back.
    let running = monitor.start().unwrap();
    kit::assert_bytes(mem.bytes(), &model, test);
    monitor.stop();
    running.wait().unwrap();
}

// ---------------------------------------------------------------------
// Write-back without eviction (Monitor::writeback, C
// libuffd_monitor_writeback): a checkpoint of the file while the
// application runs. Before, dirty resident pages reached the file only
// when evicted: c-examples/buffer-pool had to pwrite every resident page
// itself, clean ones too, and they were written again at eviction.
// ---------------------------------------------------------------------

fn writeback_case(test: &str, kind: Kind) {
    let _w = Watchdog::new("writeback_case", 60);
    let (pages, budget) = (16, 8);
    let Some((s, data)) = setup(test, kind, pages, budget, false, Config::default(), 71) else {
        return;
    };
    let ps = kind.page();
    let mut model = data.clone();
    // Pages 0..4 read, pages 1 and 3 written: 2 dirty resident pages.
    for p in 0..4 {
        assert_eq!(s.mem.read(p * ps + 9), data[p * ps + 9]);
    }
    for p in [1usize, 3] {
        s.mem.write(p * ps + 100, 0xA0 + p as u8);
        model[p * ps + 100] = 0xA0 + p as u8;
    }
    let before = s.monitor.stats();
    let range = Range::new(s.mem.start(), s.mem.len as u64);
    assert_eq!(s.monitor.writeback(0, range).unwrap(), 2, "{test}");
    let after = s.monitor.stats();
    assert_eq!(
        pread_all(&s.file, s.mem.len),
        model,
        "{test}: the file after write-back"
    );
    assert_eq!(after.evictions, before.evictions, "{test}: nothing evicted");
    assert_eq!(after.resident_pages, before.resident_pages, "{test}");
    assert_eq!(after.writebacks, before.writebacks + 2, "{test}");
    // Clean now: nothing to write; a new write makes the page dirty again.
    assert_eq!(s.monitor.writeback(0, range).unwrap(), 0, "{test}");
    s.mem.write(3 * ps + 7, 0x5C);
    model[3 * ps + 7] = 0x5C;
    assert_eq!(s.monitor.writeback(0, range).unwrap(), 1, "{test}");
    assert_eq!(
        pread_all(&s.file, s.mem.len),
        model,
        "{test}: second write-back"
    );
    // The memory still reads the written bytes (resident, not refetched).
    assert_eq!(kit::page_bytes(&s.mem, 3), &model[3 * ps..4 * ps], "{test}");
}

#[test]
fn writeback_anon() {
    writeback_case("writeback_anon", Kind::Anon);
}

#[test]
fn writeback_shmem() {
    writeback_case("writeback_shmem", Kind::ShmemShared);
}

#[test]
fn writeback_hugetlb() {
    writeback_case("writeback_hugetlb", Kind::Hugetlb);
}

/// Writers keep writing while checkpoints run: after the writers stop and
/// a last write-back, the file equals the model (evicted pages were
/// written at their eviction, resident ones by the write-backs); no write
/// is lost to a write-back racing with it.
#[test]
fn writeback_races_writers() {
    let test = "writeback_races_writers";
    let _w = Watchdog::new(test, 60);
    let (pages, budget) = (32, 8);
    let Some((s, data)) = setup(
        test,
        Kind::Anon,
        pages,
        budget,
        false,
        Config::default(),
        72,
    ) else {
        return;
    };
    let s = Arc::new(s);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Writer t owns the pages p with p % 2 == t and writes a counter at
    // byte 64 of each (the last value written is the model's).
    let writers: Vec<_> = (0..2usize)
        .map(|t| {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut last = vec![None::<u8>; pages];
                let mut x = 0x1234_5678u64 + t as u64;
                let mut n = 0u8;
                while !stop.load(SeqCst) {
                    let p = 2 * (next(&mut x) as usize % (pages / 2)) + t;
                    n = n.wrapping_add(1).max(1);
                    s.mem.write(p * PAGE + 64, n);
                    last[p] = Some(n);
                }
                last
            })
        })
        .collect();
    let range = Range::new(s.mem.start(), s.mem.len as u64);
    let mut written = 0;
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_millis(800) {
        written += s.monitor.writeback(0, range).unwrap();
    }
    stop.store(true, SeqCst);
    let mut model = data.clone();
    for w in writers {
        for (p, v) in w.join().unwrap().into_iter().enumerate() {
            if let Some(v) = v {
                model[p * PAGE + 64] = v;
            }
        }
    }
    s.monitor.writeback(0, range).unwrap();
    assert!(written > 0, "the checkpoints wrote pages back");
    assert_eq!(pread_all(&s.file, s.mem.len), model, "{test}: the file");
    for p in 0..pages {
        assert_eq!(
            kit::page_bytes(&s.mem, p),
            &model[p * PAGE..(p + 1) * PAGE],
            "page {p}"
        );
    }
}

/// Bad input: an unknown id, a range with no budgeted region, a budgeted
/// region without a sink (read-only) are EINVAL.
#[test]
fn writeback_bad_input() {
    let test = "writeback_bad_input";
    let _w = Watchdog::new(test, 30);
    let Some((s, _)) = setup(test, Kind::Anon, 8, 4, false, Config::default(), 73) else {
        return;
    };
    let range = Range::new(s.mem.start(), s.mem.len as u64);
    assert_eq!(
        s.monitor.writeback(9, range).unwrap_err().errno(),
        libc::EINVAL
    );
    let other = Mem::new(Kind::Anon, 4);
    let e = s
        .monitor
        .writeback(0, Range::new(other.start(), other.len as u64))
        .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    assert!(e.to_string().contains("no budgeted region"), "{e}");
    assert_eq!(
        s.monitor
            .writeback(0, Range::new(s.mem.start() + 1, 4096))
            .unwrap_err()
            .errno(),
        libc::EINVAL
    );
}
