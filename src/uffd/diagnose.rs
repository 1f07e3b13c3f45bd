// SPDX-License-Identifier: MIT OR Apache-2.0
//! Why the kernel refused: libuffd's diagnosis of a failed userfaultfd
//! ioctl, made only after the refusal.
//!
//! Every operation asks the kernel first and returns exactly its errno;
//! this module only writes the text behind `libuffd_last_error()`. It
//! repeats the kernel's argument checks in the kernel's order (so the text
//! names the check that fired), and for the errnos that depend on the
//! memory it looks at what is mapped in the range. It runs only when an
//! error's text is formatted, never when the error is made: a refusal
//! costs the ioctl and nothing more (no allocation, no /proc read) until
//! somebody asks why, which matters to the monitor's reader. The mappings
//! described are those at the time of asking.

use super::error::{Call, Op};
use super::features::modes;
use crate::sys::base_page_size;
use crate::sys::uapi::*;
use std::fmt::Write as _;

/// The arguments of one refused ioctl, whole.
#[derive(Debug, Clone, Copy)]
struct Args {
    op: Op,
    /// The destination (or only) range.
    start: u64,
    len: u64,
    /// COPY's and MOVE's source address.
    src: Option<u64>,
    mode: u64,
}

/// Why the kernel refused `op` on `[addr, addr+len)` (with `call`'s other
/// arguments) with `errno`, when something stands out.
pub(crate) fn explain(op: Op, errno: i32, addr: u64, len: u64, call: Call) -> Option<String> {
    let a = Args {
        op,
        start: addr,
        len,
        src: call.src,
        mode: call.mode,
    };
    match errno {
        libc::EEXIST | libc::ESRCH | libc::EINTR => None,
        libc::EAGAIN => argument_problem(&a).map(|p| {
            format!(
                "a non-cooperative event is queued unread (the kernel checks that first): read events, then retry; \
                 the arguments would be refused then: {p}"
            )
        }),
        // Arguments the kernel finds malformed are always EINVAL; any other
        // errno means they passed its checks.
        libc::EINVAL => {
            argument_problem(&a).or_else(|| memory_problem(&a, errno, call.own_memory))
        }
        _ => memory_problem(&a, errno, call.own_memory),
    }
}

/// The first of the kernel's argument checks that `call` fails, in the
/// kernel's order, as text.
fn argument_problem(c: &Args) -> Option<String> {
    match c.op {
        Op::Register => {
            if c.mode == 0 {
                return Some("mode is 0; give at least one of MISSING, WP, MINOR".into());
            }
            mode_problem(c.mode, modes::REGISTER)
                .or_else(|| range_problem("range", c.start, c.len, true))
        }
        Op::Unregister | Op::Wake => range_problem("range", c.start, c.len, true),
        Op::Copy => range_problem("src", c.src.unwrap_or(0), c.len, false)
            .or_else(|| range_problem("dst", c.start, c.len, true))
            .or_else(|| mode_problem(c.mode, modes::COPY)),
        Op::Zeropage => range_problem("range", c.start, c.len, true)
            .or_else(|| mode_problem(c.mode, modes::ZEROPAGE)),
        Op::Continue => range_problem("range", c.start, c.len, true)
            .or_else(|| mode_problem(c.mode, modes::CONTINUE)),
        Op::Poison => range_problem("range", c.start, c.len, true)
            .or_else(|| mode_problem(c.mode, modes::POISON)),
        Op::Writeprotect => range_problem("range", c.start, c.len, true)
            .or_else(|| mode_problem(c.mode, modes::WRITEPROTECT))
            .or_else(|| {
                (c.mode == modes::WRITEPROTECT).then(|| {
                    "MODE_WP and MODE_DONTWAKE together make no sense (protecting never wakes)"
                        .to_string()
                })
            }),
        Op::Move => range_problem("dst", c.start, c.len, true)
            .or_else(|| range_problem("src", c.src.unwrap_or(0), c.len, true))
            .or_else(|| mode_problem(c.mode, modes::MOVE)),
        _ => None,
    }
}

fn mode_problem(mode: u64, allowed: u64) -> Option<String> {
    let unknown = mode & !allowed;
    (unknown != 0)
        .then(|| format!("unknown mode bits {unknown:#x} (this operation accepts {allowed:#x})"))
}

/// The smallest address a mapping may have (vm.mmap_min_addr).
fn mmap_min_addr() -> u64 {
    std::fs::read_to_string("/proc/sys/vm/mmap_min_addr")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The top of the user address space with 4-level page tables; with
/// 5-level tables it is higher, so this is only used for wording.
const USER_TOP_4LEVEL: u64 = (1 << 47) - 4096;

/// The kernel's validate_range (`aligned_start`) or
/// validate_unaligned_range, check by check.
fn range_problem(what: &str, start: u64, len: u64, aligned_start: bool) -> Option<String> {
    let page = base_page_size();
    if aligned_start && start % page != 0 {
        return Some(format!(
            "{what} start {start:#x} is not aligned to the {page}-byte page size"
        ));
    }
    if len % page != 0 {
        return Some(format!(
            "length {len:#x} is not a multiple of the {page}-byte page size"
        ));
    }
    if len == 0 {
        return Some("length is 0".to_string());
    }
    match start.checked_add(len) {
        None => Some(format!(
            "{what} [{start:#x}, +{len:#x}) wraps past the end of the address space"
        )),
        Some(end) if end > USER_TOP_4LEVEL => Some(format!(
            "{what} [{start:#x}, {end:#x}) reaches past the top of the user address space ({USER_TOP_4LEVEL:#x} with 4-level page tables)"
        )),
        Some(_) => None,
    }
}

/// One line of /proc/self/maps, with the page size of hugetlb mappings.
#[derive(Debug, Clone)]
struct Vma {
    start: u64,
    end: u64,
    perms: String,
    name: String,
    page_size: u64,
}

impl Vma {
    fn shared(&self) -> bool {
        self.perms.as_bytes().get(3) == Some(&b's')
    }
    fn writable(&self) -> bool {
        self.perms.as_bytes().get(1) == Some(&b'w')
    }
    fn hugetlb(&self) -> bool {
        self.page_size > base_page_size()
    }
    /// Anonymous private memory (heap, stack, MAP_PRIVATE|MAP_ANONYMOUS).
    fn anon_private(&self) -> bool {
        !self.shared() && !self.hugetlb() && (self.name.is_empty() || self.name.starts_with('['))
    }
    fn shmem(&self) -> bool {
        !self.hugetlb()
            && (self.name.starts_with("/memfd:")
                || self.name.starts_with("/dev/zero")
                || self.name.starts_with("/SYSV")
                || self.name.starts_with("/dev/shm/")
                || (self.shared() && self.name.is_empty()))
    }
    fn describe(&self) -> String {
        let what = if self.hugetlb() {
            format!("hugetlb memory with {} KiB pages", self.page_size / 1024)
        } else if self.anon_private() {
            "anonymous private memory".to_string()
        } else if self.shmem() {
            "shmem".to_string()
        } else {
            "a file mapping".to_string()
        };
        let name = if self.name.is_empty() {
            String::new()
        } else {
            format!(" {}", self.name)
        };
        format!(
            "[{:#x}, {:#x}) is {what} ({}{name})",
            self.start, self.end, self.perms
        )
    }
}

/// The mappings of this process that intersect `[start, end)`, from
/// /proc/self/maps (which does not walk page tables); the page size is
/// asked per hugetlb-looking mapping only.
fn vmas_in(start: u64, end: u64) -> Option<Vec<Vma>> {
    let text = std::fs::read_to_string("/proc/self/maps").ok()?;
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some((a, b)) = fields.next().and_then(|r| r.split_once('-')) else {
            continue;
        };
        let (Ok(s), Ok(e)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        if s >= end || e <= start {
            continue;
        }
        let perms = fields.next().unwrap_or("").to_string();
        let name = fields.skip(3).collect::<Vec<_>>().join(" ");
        out.push(Vma {
            start: s,
            end: e,
            perms,
            name,
            page_size: base_page_size(),
        });
    }
    for v in &mut out {
        if let Ok(ps) = super::mappings::page_size_at(v.start) {
            v.page_size = ps;
        }
    }
    Some(out)
}

/// What in the memory of `[start, start+len)` (and `src`) explains
/// `errno`, for the errnos that depend on the memory.
fn memory_problem(c: &Args, errno: i32, own_memory: bool) -> Option<String> {
    let relevant = match c.op {
        Op::Register => matches!(errno, libc::EINVAL | libc::EPERM),
        Op::Unregister => errno == libc::EINVAL,
        Op::Copy | Op::Zeropage | Op::Continue | Op::Poison | Op::Move => errno == libc::EINVAL,
        _ => false,
    };
    if !relevant {
        return None;
    }
    let text = memory_text(c, errno)?;
    Some(if own_memory {
        text
    } else {
        format!("if this userfaultfd serves this process's memory: {text}")
    })
}

fn memory_text(c: &Args, errno: i32) -> Option<String> {
    let (start, end) = (c.start, c.start.saturating_add(c.len));
    let vmas = vmas_in(start, end)?;
    if vmas.is_empty() {
        let min = mmap_min_addr();
        return Some(if start < min {
            format!(
                "nothing is mapped in [{start:#x}, {end:#x}) (nothing can be below vm.mmap_min_addr, {min:#x})"
            )
        } else {
            format!("nothing is mapped in [{start:#x}, {end:#x})")
        });
    }
    let first = &vmas[0];
    let last = &vmas[vmas.len() - 1];
    let mut holes = String::new();
    let mut at = start;
    for v in &vmas {
        if v.start > at {
            let _ = write!(holes, " [{at:#x}, {:#x})", v.start);
        }
        at = v.end;
    }
    if at < end {
        let _ = write!(holes, " [{at:#x}, {end:#x})");
    }
    // Huge-page alignment, as the kernel checks it (first and last mapping).
    for v in [first, last] {
        if !v.hugetlb() {
            continue;
        }
        let ps = v.page_size;
        let start_in = v.start <= start && start < v.end;
        let end_in = v.start < end && end <= v.end;
        if (start_in && start % ps != 0) || (end_in && end % ps != 0) {
            return Some(format!(
                "[{start:#x}, {end:#x}) is not aligned to the {} KiB pages of the hugetlb mapping [{:#x}, {:#x})",
                ps / 1024,
                v.start,
                v.end
            ));
        }
    }
    match (c.op, errno) {
        (Op::Register, libc::EPERM) => {
            if let Some(v) = vmas.iter().find(|v| v.shared() && !v.writable()) {
                return Some(format!(
                    "{}: a shared mapping without write permission cannot be registered (the file is read-only or write-sealed)",
                    v.describe()
                ));
            }
        }
        (Op::Register, _) => {
            let mode = c.mode;
            if mode & UFFDIO_REGISTER_MODE_MINOR != 0 {
                if let Some(v) = vmas.iter().find(|v| v.anon_private()) {
                    return Some(format!(
                        "{}: MINOR registration needs shmem or hugetlb memory",
                        v.describe()
                    ));
                }
            }
            if let Some(v) = vmas
                .iter()
                .find(|v| !v.anon_private() && !v.shmem() && !v.hugetlb())
            {
                return Some(format!(
                    "{}: userfaultfd serves only anonymous, shmem/memfd and hugetlb memory",
                    v.describe()
                ));
            }
            if mode & UFFDIO_REGISTER_MODE_WP != 0 {
                if let Some(v) = vmas.iter().find(|v| !v.anon_private()) {
                    return Some(format!(
                        "{}: WP registration of shmem or hugetlb memory needs the WP_HUGETLBFS_SHMEM feature (and WP_ASYNC handles cannot register it at all)",
                        v.describe()
                    ));
                }
            }
        }
        (Op::Zeropage, _) if first.hugetlb() => {
            return Some(format!(
                "{}: ZEROPAGE does not support hugetlb; use COPY with a zeroed buffer",
                first.describe()
            ));
        }
        (Op::Continue, _) if first.anon_private() => {
            return Some(format!(
                "{}: CONTINUE maps existing page-cache pages, of shmem or hugetlb memory registered with MINOR",
                first.describe()
            ));
        }
        (Op::Move, _) => {
            if let Some(v) = vmas.iter().find(|v| !v.anon_private()) {
                return Some(format!(
                    "dst {}: MOVE needs anonymous private memory",
                    v.describe()
                ));
            }
            if let Some(src) = c.src {
                let svmas = vmas_in(src, src.saturating_add(c.len)).unwrap_or_default();
                if let Some(v) = svmas.iter().find(|v| !v.anon_private()) {
                    return Some(format!(
                        "src {}: MOVE needs anonymous private memory",
                        v.describe()
                    ));
                }
            }
        }
        (Op::Copy | Op::Poison | Op::Continue, _) if first.hugetlb() => {
            let ps = first.page_size;
            if start % ps != 0 || c.len % ps != 0 {
                return Some(format!(
                    "{}: the range must be aligned to its {} KiB pages",
                    first.describe(),
                    ps / 1024
                ));
            }
        }
        _ => {}
    }
    if !holes.is_empty() {
        return Some(format!(
            "not everything in [{start:#x}, {end:#x}) is mapped: unmapped{holes}"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(op: Op, start: u64, len: u64, mode: u64) -> Args {
        Args {
            op,
            start,
            len,
            src: None,
            mode,
        }
    }

    #[test]
    fn argument_checks_in_kernel_order() {
        let p = base_page_size();
        let base = 0x7000_0000_0000u64;
        let t = |c: Args| argument_problem(&c).unwrap_or_default();
        assert!(t(call(Op::Wake, base, 0, 0)).contains("length is 0"));
        assert!(t(call(Op::Wake, base + 1, 0, 0)).contains("not aligned"));
        assert!(t(call(Op::Wake, base, p + 1, 0)).contains("not a multiple"));
        assert!(t(call(Op::Wake, u64::MAX - p + 1, 2 * p, 0)).contains("wraps"));
        assert!(t(call(Op::Register, base, p, 0)).contains("mode is 0"));
        // The kernel checks the mode before the range.
        assert!(t(call(Op::Register, base, 0, 8)).contains("unknown mode bits 0x8"));
        // ... but for the fill operations the range first.
        assert!(t(call(Op::Zeropage, base, 0, 8)).contains("length is 0"));
        assert!(t(call(Op::Zeropage, base, p, 8)).contains("unknown mode bits"));
        assert!(t(call(Op::Writeprotect, base, p, 3)).contains("MODE_DONTWAKE"));
        assert_eq!(argument_problem(&call(Op::Wake, base, p, 0)), None);
        let mut c = call(Op::Copy, base, p, 0);
        c.src = Some(u64::MAX - p + 1);
        assert!(t(c).starts_with("src"), "{}", t(c));
        c.src = Some(base + 1);
        assert_eq!(argument_problem(&c), None, "COPY's src may be unaligned");
    }

    #[test]
    fn routine_errors_carry_no_text() {
        let c = Call {
            src: Some(0x1000),
            mode: 0,
            own_memory: true,
        };
        let base = 0x7000_0000_0000;
        assert_eq!(explain(Op::Copy, libc::EEXIST, base, 4096, c), None);
        assert_eq!(explain(Op::Copy, libc::EAGAIN, base, 4096, c), None);
        let t = explain(Op::Copy, libc::EAGAIN, base, 0, c).unwrap();
        assert!(t.contains("length is 0") && t.contains("event"), "{t}");
        // Any errno but EINVAL means the arguments passed the kernel's checks.
        assert_eq!(explain(Op::Copy, libc::ENOENT, base + 1, 0, c), None);
        // Refusals are plain values: the text is made when displayed.
        let e = super::super::Error::Kernel {
            op: Op::Copy,
            errno: libc::EINVAL,
            addr: base,
            len: 0,
            call: Some(c),
        };
        assert!(e.to_string().contains("length is 0"), "{e}");
        assert!(e.detail().unwrap().contains("length is 0"));
    }
}
