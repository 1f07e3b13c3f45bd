// SPDX-License-Identifier: MIT OR Apache-2.0
//! Helpers shared by the integration tests: real memory of each kind, a
//! watchdog that turns a hang into a loud failure, and threads that fault.
//!
//! The tests call the core's fill, move and poison operations (`unsafe
//! fn`: no Rust value may live in the memory they change) on `Mem`
//! mappings and other mappings made for the test, or on addresses nothing
//! is mapped at. No Rust value lives in those: they are written and read
//! through raw pointers, and the slices the tests take of them are
//! transient, taken after the page was filled. That is the contract every
//! `unsafe { u.copy(..) }` (and zeropage, continue_range, poison,
//! move_pages) of the tests relies on.
#![allow(dead_code)]
#![allow(unsafe_code)]

pub mod kit;
pub mod raw;

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;
use uffd::{Event, Fault, Features, Msg, OpenFlags, OpenOptions, Range, Uffd};

/// `[start, start+len)` handed over to a monitor. Test code only: the
/// tests hand over `Mem` mappings and other mappings made for them, in
/// which no Rust value lives (see the module's text), so the promise of
/// `HandedOver::new` holds for every call.
pub fn handed(start: u64, len: u64) -> uffd::HandedOver {
    // SAFETY: see above.
    unsafe { uffd::HandedOver::new(Range::new(start, len)) }
}

pub const PAGE: usize = 4096;
pub const HUGE: usize = 2 << 20;

/// Aborts the whole test process if not dropped within `secs`: a fault
/// nobody resolves must fail the run, not hang it.
pub struct Watchdog(Option<mpsc::Sender<()>>);

impl Watchdog {
    pub fn new(name: &'static str, secs: u64) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(secs))
            {
                eprintln!("WATCHDOG: test `{name}` still running after {secs}s: aborting");
                std::process::abort();
            }
        });
        Watchdog(Some(tx))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// The kinds of memory the tests run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// MAP_PRIVATE | MAP_ANONYMOUS.
    Anon,
    /// memfd, MAP_SHARED.
    ShmemShared,
    /// memfd, MAP_PRIVATE.
    ShmemPrivate,
    /// memfd with MFD_HUGETLB (2 MiB), MAP_SHARED.
    Hugetlb,
    /// MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB (2 MiB).
    HugetlbPrivate,
}

impl Kind {
    pub fn page(self) -> usize {
        match self {
            Kind::Hugetlb | Kind::HugetlbPrivate => HUGE,
            _ => PAGE,
        }
    }
    pub fn is_hugetlb(self) -> bool {
        matches!(self, Kind::Hugetlb | Kind::HugetlbPrivate)
    }
    /// The features that MISSING registration of this kind needs.
    pub fn missing_features(self) -> uffd::Features {
        match self {
            Kind::Anon => uffd::Features::empty(),
            Kind::ShmemShared | Kind::ShmemPrivate => uffd::Features::MISSING_SHMEM,
            Kind::Hugetlb | Kind::HugetlbPrivate => uffd::Features::MISSING_HUGETLBFS,
        }
    }
}

/// An mmapped region, unmapped (and its memfd closed) on drop.
pub struct Mem {
    pub addr: *mut u8,
    pub len: usize,
    pub kind: Kind,
    /// The memfd behind shmem/hugetlb kinds (-1 for anonymous memory).
    pub memfd: i32,
    unmapped: bool,
}

// SAFETY: the region is plain memory; tests coordinate access themselves.
unsafe impl Send for Mem {}
// SAFETY: as above.
unsafe impl Sync for Mem {}

impl Mem {
    /// Map `pages` pages of `kind`. Panics (fails the test) if the memory
    /// cannot be had, e.g. no huge pages reserved: never a silent skip.
    pub fn new(kind: Kind, pages: usize) -> Mem {
        if kind.is_hugetlb() {
            if let Some(why) = hugetlb_unavailable() {
                panic!("{kind:?} memory cannot be had ({why}): the test must start with skip_without_hugetlb");
            }
        }
        let len = pages * kind.page();
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: plain mmap/memfd calls; results are checked.
        unsafe {
            let (fd, flags) = match kind {
                Kind::Anon => (-1, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS),
                Kind::HugetlbPrivate => (
                    -1,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB,
                ),
                Kind::ShmemShared | Kind::ShmemPrivate | Kind::Hugetlb => {
                    let mut mflags = libc::MFD_CLOEXEC;
                    if kind == Kind::Hugetlb {
                        mflags |= libc::MFD_HUGETLB;
                    }
                    let fd = libc::memfd_create(c"libuffd-test".as_ptr(), mflags);
                    assert!(
                        fd >= 0,
                        "memfd_create({kind:?}): {}",
                        std::io::Error::last_os_error()
                    );
                    assert_eq!(
                        libc::ftruncate(fd, len as i64),
                        0,
                        "ftruncate: {}",
                        std::io::Error::last_os_error()
                    );
                    let f = if kind == Kind::ShmemPrivate {
                        libc::MAP_PRIVATE
                    } else {
                        libc::MAP_SHARED
                    };
                    (fd, f)
                }
            };
            let addr = libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0);
            assert!(
                addr != libc::MAP_FAILED,
                "mmap {kind:?} x{pages}: {} (hugetlb needs `echo 64 > /proc/sys/vm/nr_hugepages`)",
                std::io::Error::last_os_error()
            );
            Mem {
                addr: addr.cast(),
                len,
                kind,
                memfd: fd,
                unmapped: false,
            }
        }
    }

    pub fn start(&self) -> u64 {
        self.addr as u64
    }

    /// Address of page `i`.
    pub fn page_addr(&self, i: usize) -> u64 {
        self.start() + (i * self.kind.page()) as u64
    }

    /// Read one byte (may fault).
    pub fn read(&self, off: usize) -> u8 {
        assert!(off < self.len);
        // SAFETY: in bounds of a live mapping.
        unsafe { std::ptr::read_volatile(self.addr.add(off)) }
    }

    /// Write one byte (may fault).
    pub fn write(&self, off: usize, v: u8) {
        assert!(off < self.len);
        // SAFETY: in bounds of a live, writable mapping.
        unsafe { std::ptr::write_volatile(self.addr.add(off), v) }
    }

    /// The whole region as a slice (touches every page: may fault).
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: live mapping of `len` bytes.
        unsafe { std::slice::from_raw_parts(self.addr, self.len) }
    }

    /// Write `data` at `off` through the memfd (fills the page cache
    /// without touching the mapping: what MINOR faults need).
    pub fn pwrite_memfd(&self, off: usize, data: &[u8]) {
        assert!(self.memfd >= 0, "{:?} has no memfd", self.kind);
        // SAFETY: valid buffer and fd.
        let n = unsafe { libc::pwrite(self.memfd, data.as_ptr().cast(), data.len(), off as i64) };
        assert_eq!(
            n as usize,
            data.len(),
            "pwrite: {}",
            std::io::Error::last_os_error()
        );
    }

    /// For hugetlb memfds (no pwrite): fill the page cache through a
    /// second, unregistered shared mapping of the same memfd.
    pub fn fill_via_alias(&self, off: usize, data: &[u8]) {
        assert!(self.memfd >= 0);
        // SAFETY: a new shared mapping of the same file, unmapped below.
        unsafe {
            let alias = libc::mmap(
                std::ptr::null_mut(),
                self.len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.memfd,
                0,
            );
            assert!(
                alias != libc::MAP_FAILED,
                "alias mmap: {}",
                std::io::Error::last_os_error()
            );
            std::ptr::copy_nonoverlapping(data.as_ptr(), (alias as *mut u8).add(off), data.len());
            libc::munmap(alias, self.len);
        }
    }

    /// munmap now (later drop does nothing).
    pub fn unmap(&mut self) {
        if !self.unmapped {
            // SAFETY: our own mapping.
            unsafe { libc::munmap(self.addr.cast(), self.len) };
            self.unmapped = true;
        }
    }
}

impl Drop for Mem {
    fn drop(&mut self) {
        self.unmap();
        if self.memfd >= 0 {
            // SAFETY: our own fd.
            unsafe { libc::close(self.memfd) };
        }
    }
}

/// A non-blocking uffd with `features` wanted and required.
pub fn open_uffd(features: Features) -> Uffd {
    Uffd::open(&OpenOptions {
        flags: OpenFlags::NONBLOCK,
        features,
        required: features,
    })
    .expect("open userfaultfd")
}

/// Read one event, waiting up to `ms` (fails the test on timeout).
pub fn next_event(u: &Uffd, ms: i32) -> Event {
    let mut buf = [Msg::default()];
    let n = u.read_msgs(&mut buf, ms).expect("read events");
    assert_eq!(n, 1, "no event within {ms} ms");
    buf[0].take_event(u.features()).expect("decodable event")
}

/// Read one event and require a page fault.
pub fn next_fault(u: &Uffd, ms: i32) -> Fault {
    match next_event(u, ms) {
        Event::Pagefault(f) => f,
        other => panic!("expected a page fault, got {other:?}"),
    }
}

/// Start a thread that reads byte `off` of `mem` (faulting) and returns it.
pub fn reader(mem: &std::sync::Arc<Mem>, off: usize) -> JoinHandle<u8> {
    let mem = mem.clone();
    std::thread::spawn(move || mem.read(off))
}

/// Start a thread that writes `v` at byte `off` of `mem` (faulting).
pub fn writer(mem: &std::sync::Arc<Mem>, off: usize, v: u8) -> JoinHandle<()> {
    let mem = mem.clone();
    std::thread::spawn(move || mem.write(off, v))
}

/// Whether a byte of a region can be read without a fault hanging: used
/// after close/unregister checks.
pub fn pattern(page: usize, seed: u8) -> Vec<u8> {
    (0..page)
        .map(|i| seed.wrapping_add((i % 251) as u8))
        .collect()
}

/// Give `u` to monitor `m` and serve all of `mem` (registered MISSING)
/// from `source`; returns the uffd's id.
pub fn add_all(
    m: &uffd::monitor::Monitor,
    u: &std::sync::Arc<Uffd>,
    mem: &Mem,
    source: uffd::monitor::Source,
) -> u32 {
    let id = m.add_uffd(u.clone()).unwrap();
    m.add_region(
        id,
        handed(mem.start(), mem.len as u64),
        uffd::monitor::RegionOptions {
            source,
            register: uffd::RegisterMode::MISSING,
            ..Default::default()
        },
    )
    .unwrap();
    id
}

/// Held around every fork of a test binary (`in_child`, and tests that
/// fork themselves): a child forked while another test's thread holds a
/// lock (the panic hook's, stderr's, malloc's) would inherit it held.
pub static FORK_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Run `child` in a forked child process (its return value is the exit
/// code; a panic exits 101) and return the raw wait status. The child runs
/// without core files and with SIGBUS at its default action (several tests
/// expect it to die of SIGBUS). It is killed, and the test fails, if it
/// outlives `timeout` (hung or spinning).
pub fn in_child(timeout: Duration, child: impl FnOnce() -> i32) -> i32 {
    let _g = FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: fork; the child runs `child` and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let zero = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain setrlimit / signal.
        unsafe {
            libc::setrlimit(libc::RLIMIT_CORE, &zero);
            libc::signal(libc::SIGBUS, libc::SIG_DFL);
        }
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(101);
        // SAFETY: leave the child at once, without running the parent's
        // atexit handlers or destructors.
        unsafe { libc::_exit(code) };
    }
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let mut status = 0;
        // SAFETY: our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return status;
        }
        assert_eq!(r, 0, "waitpid: {}", std::io::Error::last_os_error());
        if std::time::Instant::now() > deadline {
            // SAFETY: our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("child {pid} still running after {timeout:?} (hung or spinning): killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Poll `f` every 2 ms until it holds; fail the test after `secs`.
pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Reserved 2 MiB huge pages the hugetlb tests need (they map up to 8 at
/// once, two tests at a time).
pub const HUGEPAGES_NEEDED: u64 = 32;

/// Why the hugetlb tests cannot run on this machine, or None: they need
/// the default huge page size to be 2 MiB and HUGEPAGES_NEEDED pages
/// reserved (`make test` reserves them when run as root). Setting
/// LIBUFFD_TEST_NO_HUGETLB skips them as if there were none.
pub fn hugetlb_unavailable() -> Option<String> {
    if std::env::var_os("LIBUFFD_TEST_NO_HUGETLB").is_some() {
        return Some("LIBUFFD_TEST_NO_HUGETLB is set".into());
    }
    let info = match std::fs::read_to_string("/proc/meminfo") {
        Ok(s) => s,
        Err(e) => return Some(format!("/proc/meminfo unreadable: {e}")),
    };
    let field = |name: &str| -> Option<u64> {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    match (field("HugePages_Total:"), field("Hugepagesize:")) {
        (None, _) | (_, None) => Some("the kernel has no hugetlb support".into()),
        (_, Some(kb)) if kb != 2048 => Some(format!(
            "the default huge page size is {kb} kB, not 2048 kB"
        )),
        (Some(n), _) if n < HUGEPAGES_NEEDED => Some(format!(
            "{n} huge pages reserved, {HUGEPAGES_NEEDED} needed \
             (as root: echo 64 > /proc/sys/vm/nr_hugepages; make test does it)"
        )),
        _ => None,
    }
}

/// At the start of a test that needs hugetlb memory: when it cannot run
/// here, prints "SKIP <test>: <reason>" where it is seen (the process's
/// stderr, which the test harness does not capture) and returns true, so
/// that the test returns; otherwise false.
pub fn skip_without_hugetlb(test: &str) -> bool {
    use std::io::Write;
    match hugetlb_unavailable() {
        Some(why) => {
            let _ = writeln!(std::io::stderr(), "SKIP {test}: {why}");
            true
        }
        None => false,
    }
}

/// Never-zero pseudo-random content (xorshift from `seed`): what a page
/// source serves, so that a page left zero, or served from the wrong
/// offset, shows.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        for (o, b) in chunk.iter_mut().zip(x.to_le_bytes()) {
            *o = b | 1;
        }
    }
    v
}

/// The exit code of a child that exited normally (`in_child`); fails the
/// test, naming the signal, if it did not.
pub fn exit_code(status: i32) -> i32 {
    assert!(
        libc::WIFEXITED(status),
        "the child did not exit normally: status {status:#x} (signal {})",
        libc::WTERMSIG(status)
    );
    libc::WEXITSTATUS(status)
}
