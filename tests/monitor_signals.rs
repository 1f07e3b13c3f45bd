// SPDX-License-Identifier: MIT OR Apache-2.0
//! The threads the library creates block every signal (issue 9, item 6):
//! a host's SIGUSR1 sent to the process is never handled on the
//! monitor's thread, its workers, the prefetcher or the reserve thread.
//!
//! Runs in a forked child, whose only thread at first (its leader) is
//! this test's: the kernel delivers a process-directed signal to the
//! leader when it does not block it, so the child's host threads all
//! block SIGUSR1 once the monitor is running; only a library thread that
//! does not block it could then take one. At the end the leader unblocks
//! it and takes what is pending, so the handler does run, on a host
//! thread.
#![allow(unsafe_code)]

mod common;
use common::*;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;
use uffd::monitor::*;
use uffd::*;

const SLOTS: usize = 4096;
static HANDLED_ON: [AtomicU32; SLOTS] = [const { AtomicU32::new(0) }; SLOTS];
static HANDLED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_usr1(_sig: libc::c_int) {
    // Async-signal-safe: gettid and atomics.
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() } as u32;
    let i = HANDLED.fetch_add(1, SeqCst);
    if i < SLOTS {
        HANDLED_ON[i].store(tid, SeqCst);
    }
}

fn set_usr1_blocked(blocked: bool) {
    // SAFETY: plain signal-mask calls on the calling thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        let how = if blocked {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// The ids and names of this process's threads whose name starts with
/// "uffd-" (the library's).
fn library_threads() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let tid: u32 = e.file_name().to_string_lossy().parse().unwrap();
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let comm = comm.trim().to_string();
        if comm.starts_with("uffd-") {
            out.push((tid, comm));
        }
    }
    out
}

/// The child's test; its exit code: 0 pass, 2 a library thread handled
/// the signal, 3 the signal was never handled, 4 no library thread found.
fn child() -> i32 {
    // SAFETY: installing a handler that only uses async-signal-safe code.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_usr1 as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
    set_usr1_blocked(false);
    // A monitor with every kind of library thread: workers, the
    // prefetcher, the reserve thread (EVENT_FORK), the monitor's own.
    let pages = 512;
    let mem = Arc::new(Mem::new(Kind::Anon, pages));
    let lazy = Arc::new(Mem::new(Kind::Anon, pages));
    let data: Vec<u8> = (0..mem.len).map(|i| (i % 251) as u8 + 1).collect();
    let u = Arc::new(open_uffd(Features::EVENT_FORK));
    let m = Monitor::new(
        Config {
            workers: 3,
            hand_off_all: true,
            ..Default::default()
        },
        Box::new(DefaultHandler),
    )
    .unwrap();
    let id = m.add_uffd(u.clone()).unwrap();
    let src = Source::Buffer {
        addr: data.as_ptr() as u64,
        len: data.len() as u64,
    };
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        RegionOptions {
            source: src,
            register: RegisterMode::MISSING,
            ..Default::default()
        },
    )
    .unwrap();
    m.add_region(
        id,
        handed(lazy.start(), lazy.len as u64),
        RegionOptions {
            source: src,
            register: RegisterMode::MISSING,
            prefetch: true,
            ..Default::default()
        },
    )
    .unwrap();
    let run = m.start().unwrap();
    // The monitor's thread starts the others: give them a moment to show
    // up in /proc (a loaded machine may take a while).
    let mut lib = library_threads();
    for _ in 0..200 {
        if lib.len() >= 5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        lib = library_threads();
    }
    if lib.len() < 5 {
        eprintln!("library threads: {lib:?}");
        return 4;
    }
    // From here on no host thread takes SIGUSR1: the leader blocks it,
    // and the threads it creates inherit that.
    set_usr1_blocked(true);
    let faulter = {
        let mem = mem.clone();
        std::thread::spawn(move || {
            for p in 0..pages {
                mem.read(p * PAGE + 1);
            }
        })
    };
    let sender = std::thread::spawn(|| {
        for _ in 0..2000 {
            // SAFETY: signal our own process.
            unsafe { libc::kill(libc::getpid(), libc::SIGUSR1) };
            std::thread::yield_now();
        }
    });
    sender.join().unwrap();
    faulter.join().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let on_library = HANDLED.load(SeqCst);
    // The leader takes the pending one now.
    set_usr1_blocked(false);
    m.stop();
    run.wait().unwrap();
    let lib_tids: Vec<u32> = lib.iter().map(|(t, _)| *t).collect();
    let n = HANDLED.load(SeqCst).min(SLOTS);
    let wrong: Vec<u32> = (0..n)
        .map(|i| HANDLED_ON[i].load(SeqCst))
        .filter(|t| lib_tids.contains(t))
        .collect();
    if !wrong.is_empty() || on_library != 0 {
        eprintln!(
            "SIGUSR1 handled {} times on library threads {lib:?} (before unblocking: {on_library})",
            wrong.len()
        );
        return 2;
    }
    if n == 0 {
        return 3;
    }
    0
}

#[test]
fn library_threads_block_signals() {
    let _w = Watchdog::new("library_threads_block_signals", 60);
    // SAFETY: fork; the child runs `child` and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = std::panic::catch_unwind(child).unwrap_or(101);
        // SAFETY: leave the child without the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed: {}",
        if libc::WIFEXITED(status) {
            format!("exit {}", libc::WEXITSTATUS(status))
        } else {
            format!("status {status:#x}")
        }
    );
}
