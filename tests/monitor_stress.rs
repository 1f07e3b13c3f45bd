// SPDX-License-Identifier: MIT OR Apache-2.0
//! Monitor stress test in the spirit of the kernel's uffd-stress
//! (tools/testing/selftests/mm/uffd-stress.c): several rounds; in each,
//! fresh memory is registered with a Buffer source whose content is
//! specific to the round, `THREADS` threads touch its pages in random
//! order (reading and checking a byte, or writing the expected byte back
//! to take write faults), and then a checksum of every page is compared
//! with the source's. Anonymous, shmem and hugetlb memory, with the reader
//! resolving faults alone (workers=0) and with two workers.
//!
//! One userfaultfd and one monitor serve all the rounds of a test: each
//! round's memory is unmapped at its end, and EVENT_UNMAP must drop its
//! region (else the next round's region, often at the same address, would
//! be refused as overlapping).
//!
//! The default is a few rounds, so that the file runs in seconds. Run it
//! longer with, for example:
//!
//! ```text
//! LIBUFFD_STRESS_ROUNDS=200 cargo test --release --test monitor_stress -- --nocapture
//! ```
//!
//! (each test's watchdog allows 60 s plus 1 s per round.)

mod common;
use common::*;
use std::sync::Arc;
use uffd::monitor::*;
use uffd::*;

const THREADS: usize = 4;
const DEFAULT_ROUNDS: usize = 4;

fn rounds() -> usize {
    match std::env::var("LIBUFFD_STRESS_ROUNDS") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("LIBUFFD_STRESS_ROUNDS={v:?} is not a number")),
        Err(_) => DEFAULT_ROUNDS,
    }
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Content of `page` in `round`: never zero, different for every page and
/// round.
fn fill_page(buf: &mut [u8], page: usize, round: usize) {
    let mut x = ((page as u64) << 20 ^ (round as u64) << 4 ^ 0x5EED)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        | 1;
    for chunk in buf.chunks_mut(8) {
        let w = xorshift(&mut x).to_le_bytes();
        for (o, b) in chunk.iter_mut().zip(w) {
            *o = b | 1;
        }
    }
}

/// FNV-1a over 8-byte words.
fn checksum(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for c in bytes.chunks(8) {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        h ^= u64::from_le_bytes(w);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn stress(name: &'static str, kind: Kind, pages: usize, workers: u32) {
    let rounds = rounds();
    let _w = Watchdog::new(name, 60 + rounds as u64);
    let ps = kind.page();
    let u = Arc::new(open_uffd(kind.missing_features() | Features::EVENT_UNMAP));
    let config = Config {
        workers,
        hand_off_all: workers > 0,
        ..Config::default()
    };
    let m = Monitor::new(config, Box::new(DefaultHandler)).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    let run = m.start().unwrap();
    let mut touches = 0u64;
    for round in 0..rounds {
        let mut src = vec![0u8; pages * ps];
        for (p, chunk) in src.chunks_mut(ps).enumerate() {
            fill_page(chunk, p, round);
        }
        let want: Vec<u64> = src.chunks(ps).map(checksum).collect();
        let src = Arc::new(src);
        let mem = Arc::new(Mem::new(kind, pages));
        m.add_region(
            id,
            handed(mem.start(), mem.len as u64),
            RegionOptions {
                source: Source::Buffer {
                    addr: src.as_ptr() as u64,
                    len: src.len() as u64,
                },
                register: RegisterMode::MISSING,
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| {
            panic!("round {round}: add_region (was the last round's region dropped?): {e}")
        });
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                let (mem, src) = (mem.clone(), src.clone());
                std::thread::spawn(move || {
                    let mut x =
                        ((round * THREADS + t) as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D);
                    // A random permutation of the pages (Fisher-Yates).
                    let mut order: Vec<usize> = (0..pages).collect();
                    for i in (1..pages).rev() {
                        let j = (xorshift(&mut x) % (i as u64 + 1)) as usize;
                        order.swap(i, j);
                    }
                    for p in order {
                        let off = p * ps + (xorshift(&mut x) % ps as u64) as usize;
                        if xorshift(&mut x) % 4 == 0 {
                            // A write fault, leaving the content as it is.
                            mem.write(off, src[off]);
                        } else {
                            let v = mem.read(off);
                            assert_eq!(
                                v, src[off],
                                "round {round}, thread {t}: page {p}, byte {off:#x}"
                            );
                        }
                    }
                    pages as u64
                })
            })
            .collect();
        for h in hs {
            touches += h.join().expect("faulting thread");
        }
        for (p, page) in mem.bytes().chunks(ps).enumerate() {
            assert_eq!(
                checksum(page),
                want[p],
                "round {round}: page {p} checksum differs from the source's"
            );
        }
        // munmap: the UNMAP event, read by the running monitor, drops the
        // region. Then the source may go.
        drop(mem);
        drop(src);
    }
    m.stop();
    run.wait().unwrap();
    let s = m.stats();
    eprintln!("{name}: {rounds} rounds, {touches} touches: {s:?}");
    assert_eq!(s.unmaps, rounds as u64, "one UNMAP per round: {s:?}");
    assert_eq!(s.failed, 0, "{s:?}");
    assert_eq!(
        s.faults,
        s.resolved + s.eexist + s.coalesced + s.dropped,
        "{s:?}"
    );
    assert_eq!(
        s.bytes,
        (rounds * pages * ps) as u64,
        "each page placed once: {s:?}"
    );
}

#[test]
fn stress_anon() {
    stress("stress_anon", Kind::Anon, 1024, 0);
}

#[test]
fn stress_anon_workers() {
    stress("stress_anon_workers", Kind::Anon, 1024, 2);
}

#[test]
fn stress_shmem() {
    stress("stress_shmem", Kind::ShmemShared, 1024, 0);
}

#[test]
fn stress_shmem_workers() {
    stress("stress_shmem_workers", Kind::ShmemShared, 1024, 2);
}

#[test]
fn stress_hugetlb() {
    if common::skip_without_hugetlb("stress_hugetlb") {
        return;
    }
    stress("stress_hugetlb", Kind::Hugetlb, 8, 0);
}

#[test]
fn stress_hugetlb_workers() {
    if common::skip_without_hugetlb("stress_hugetlb_workers") {
        return;
    }
    stress("stress_hugetlb_workers", Kind::Hugetlb, 8, 2);
}
