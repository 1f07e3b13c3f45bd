// SPDX-License-Identifier: MIT OR Apache-2.0
//! A good guest (issue 14, item 6): a panic inside the library never
//! prints on the host's stderr; it goes to the monitor's log. The panic
//! hook the library installs chains to the host's for every other panic.
//!
//! No test harness (Cargo.toml: harness = false): the harness captures
//! output, which would hide what the library writes on stderr. The test
//! redirects file descriptor 2 to a pipe and reads what arrived.
#![allow(unsafe_code)]

mod common;
use common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use uffd::monitor::*;
use uffd::*;

static HOST_HOOK_CALLS: AtomicUsize = AtomicUsize::new(0);

/// Panics at its first fault, then resolves with zeros.
struct PanicOnce {
    panicked: AtomicBool,
    log: Arc<Mutex<Vec<String>>>,
}

impl Handler for PanicOnce {
    fn on_fault(&self, ctx: &FaultCtx<'_>) -> Verdict {
        if !self.panicked.swap(true, SeqCst) {
            panic!("test callback panics on purpose");
        }
        match ctx.resolve(Action::Zero) {
            Ok(_) => Verdict::Resolved,
            Err(e) => Verdict::Error(e.errno()),
        }
    }
    fn wants_log(&self) -> bool {
        true
    }
    fn on_log(&self, msg: &str) {
        self.log.lock().unwrap().push(msg.to_string());
    }
}

/// Everything written to fd 2 while `f` runs.
fn stderr_of(f: impl FnOnce()) -> String {
    let mut fds = [0i32; 2];
    // SAFETY: plain pipe/dup/dup2 on descriptors this function owns.
    unsafe {
        assert_eq!(
            libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK),
            0
        );
        let saved = libc::dup(2);
        assert!(saved >= 0);
        libc::dup2(fds[1], 2);
        f();
        libc::dup2(saved, 2);
        libc::close(saved);
        libc::close(fds[1]);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len());
            if n <= 0 {
                break;
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
        libc::close(fds[0]);
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn main() {
    let _w = Watchdog::new("quiet_panics", 60);
    // The host's hook, like the default one: it writes on stderr.
    std::panic::set_hook(Box::new(|info| {
        HOST_HOOK_CALLS.fetch_add(1, SeqCst);
        eprintln!("HOST HOOK: {info}");
    }));

    // A panic in a callback on the monitor's thread (caught by the
    // monitor, the error policy applied: Retry, so the fault is offered
    // again and served).
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut value = 0xffu8;
    let err = stderr_of(|| {
        let mem = Arc::new(Mem::new(Kind::Anon, 2));
        let u = Arc::new(open_uffd(Features::empty()));
        let config = Config {
            error_policy: ErrorPolicy::Retry,
            ..Config::default()
        };
        let h = PanicOnce {
            panicked: AtomicBool::new(false),
            log: log.clone(),
        };
        let m = Monitor::new(config, Box::new(h)).unwrap();
        add_all(&m, &u, &mem, Source::Callback);
        let run = m.start().unwrap();
        value = reader(&mem, 3).join().unwrap();
        m.stop();
        run.wait().unwrap();
    });
    let mut failures = Vec::new();
    if value != 0 {
        failures.push(format!(
            "the fault was not served after the panic: read {value}"
        ));
    }
    if !err.is_empty() {
        failures.push(format!(
            "the library wrote on stderr (before the fix: the default panic hook's \"thread 'uffd-monitor' panicked\"): {err:?}"
        ));
    }
    if HOST_HOOK_CALLS.load(SeqCst) != 0 {
        failures.push("the library's panic reached the host's hook".into());
    }
    let logged = log.lock().unwrap().join("\n");
    if !logged.contains("internal panic") || !logged.contains("test callback panics on purpose") {
        failures.push(format!("the panic is not in the monitor's log: {logged:?}"));
    }

    // A panic of the host's own still reaches the host's hook (chained).
    let err = stderr_of(|| {
        let _ = std::panic::catch_unwind(|| panic!("the host's own panic"));
    });
    if HOST_HOOK_CALLS.load(SeqCst) != 1 || !err.contains("HOST HOOK") {
        failures.push(format!(
            "a host panic must reach the host's hook: {} calls, stderr {err:?}",
            HOST_HOOK_CALLS.load(SeqCst)
        ));
    }

    if failures.is_empty() {
        println!("quiet_panics: ok (library panic logged, not printed; host hook chained)");
    } else {
        for f in &failures {
            eprintln!("quiet_panics: FAIL: {f}");
        }
        std::process::exit(1);
    }
}
