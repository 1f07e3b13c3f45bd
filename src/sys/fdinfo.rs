// SPDX-License-Identifier: MIT OR Apache-2.0
//! Parsing `/proc/self/fdinfo/<fd>` of a userfaultfd: the kernel prints
//! `API:\t<api>:<features>:<ioctls>` there, which is how an adopted fd's
//! negotiated features are learnt without a second (refused) UFFDIO_API.

/// What fdinfo says of a userfaultfd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UffdFdinfo {
    /// `ctx->features`, including the kernel's internal INITIALIZED bit.
    pub features: u64,
    /// Messages pending (unread faults).
    pub pending: u64,
    /// Faults waiting now: queued (pending) plus read but not yet woken.
    pub total: u64,
}

/// Read and parse the fdinfo of `fd` in the calling process. `Ok(None)`
/// means the file exists but is not a userfaultfd's.
pub fn read_uffd_fdinfo(fd: i32) -> Result<Option<UffdFdinfo>, i32> {
    let path = format!("/proc/self/fdinfo/{fd}");
    let text = std::fs::read_to_string(&path).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    Ok(parse_uffd_fdinfo(&text))
}

/// Parse fdinfo text; `None` unless it has the userfaultfd `API:` line.
pub fn parse_uffd_fdinfo(text: &str) -> Option<UffdFdinfo> {
    let mut info = UffdFdinfo {
        features: 0,
        pending: 0,
        total: 0,
    };
    let mut saw_api = false;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "pending" => info.pending = value.parse().ok()?,
            "total" => info.total = value.parse().ok()?,
            "API" => {
                let mut parts = value.split(':');
                let _api = parts.next()?;
                info.features = u64::from_str_radix(parts.next()?, 16).ok()?;
                saw_api = true;
            }
            _ => {}
        }
    }
    saw_api.then_some(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_format() {
        let text = "pos:\t0\nflags:\t02004002\nmnt_id:\t16\nino:\t1057\npending:\t2\ntotal:\t7\nAPI:\taa:80000100:c0000000000001ff\n";
        let info = parse_uffd_fdinfo(text).unwrap();
        assert_eq!(info.features, 0x8000_0100);
        assert_eq!(info.pending, 2);
        assert_eq!(info.total, 7);
    }

    #[test]
    fn rejects_other_files() {
        assert_eq!(parse_uffd_fdinfo("pos:\t0\nflags:\t02\n"), None);
    }
}
