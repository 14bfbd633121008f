//! Which Linux capabilities tracing needs, decided from the `CapEff:` line of
//! `/proc/self/status`. Shared by `ktrace` and `cargo xtask setup` so both
//! give the same answer.

/// `CAP_SYS_ADMIN` (include/uapi/linux/capability.h).
pub const CAP_SYS_ADMIN: u32 = 21;
/// `CAP_PERFMON`.
pub const CAP_PERFMON: u32 = 38;
/// `CAP_BPF`.
pub const CAP_BPF: u32 = 39;

/// Parses the effective capability set out of `/proc/self/status` text.
pub fn effective(status: &str) -> Option<u64> {
    let value = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(value.trim(), 16).ok()
}

/// Names the capabilities `caps` lacks for placing uprobes, or `None` when
/// it has CAP_SYS_ADMIN or both CAP_BPF and CAP_PERFMON.
pub fn missing(caps: u64) -> Option<&'static str> {
    let has = |n: u32| caps & (1 << n) != 0;
    if has(CAP_SYS_ADMIN) {
        return None;
    }
    match (has(CAP_BPF), has(CAP_PERFMON)) {
        (true, true) => None,
        (true, false) => Some("CAP_PERFMON"),
        (false, true) => Some("CAP_BPF"),
        (false, false) => Some("CAP_BPF, CAP_PERFMON"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_capeff() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(effective(status), Some(0x1ff_ffff_ffff));
        assert_eq!(effective("Name: x\n"), None);
        assert_eq!(effective("CapEff:\tzz\n"), None);
    }

    #[test]
    fn root_or_bpf_plus_perfmon_is_enough() {
        assert_eq!(missing(1 << CAP_SYS_ADMIN), None);
        assert_eq!(missing((1 << CAP_BPF) | (1 << CAP_PERFMON)), None);
        assert_eq!(missing(1 << CAP_BPF), Some("CAP_PERFMON"));
        assert_eq!(missing(1 << CAP_PERFMON), Some("CAP_BPF"));
        assert_eq!(missing(0), Some("CAP_BPF, CAP_PERFMON"));
    }
}
