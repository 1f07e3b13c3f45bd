// SPDX-License-Identifier: MIT OR Apache-2.0
mod common;
use common::*;
use std::sync::Arc;
use uffd::monitor::*;
use uffd::*;

#[test]
fn lazy_load_from_buffer_anon() {
    let _w = Watchdog::new("lazy_load_from_buffer_anon", 60);
    let pages = 256;
    let mem = Arc::new(Mem::new(Kind::Anon, pages));
    let src: Vec<u8> = (0..pages * PAGE).map(|i| (i * 7 % 251) as u8).collect();
    let u = Arc::new(open_uffd(Features::empty()));
    let m = Monitor::new(Config::default(), Box::new(DefaultHandler)).unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
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
    .unwrap();
    let run = m.start().unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let mem = mem.clone();
            std::thread::spawn(move || {
                let mut sum = 0u64;
                for p in (t..pages).step_by(4) {
                    sum += mem.read(p * PAGE + 5) as u64;
                }
                sum
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(mem.bytes(), &src[..]);
    m.stop();
    run.wait().unwrap();
    let s = m.stats();
    eprintln!("{s:?}");
    assert!(s.resolved > 0);
}
