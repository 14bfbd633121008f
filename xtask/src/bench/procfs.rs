//! What the benchmarks read from /proc: a process's CPU time (utime + stime
//! of /proc/PID/stat, every thread included) and its memory (VmRSS, VmHWM of
//! /proc/PID/status).

use std::fs;

use anyhow::{Context, Result};

/// (utime, stime) in clock ticks from the text of /proc/PID/stat. The
/// command name (field 2) is in parentheses and may itself hold spaces and
/// parentheses, so fields are counted from the last `)`: field 3 (state)
/// comes first, utime is field 14 and stime field 15.
pub fn parse_stat_split(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some((utime, stime))
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// CPU seconds the process has used so far in user mode and in the kernel
/// (where its uprobe hits are handled), all threads.
pub fn cpu_split_seconds(pid: u32) -> Result<(f64, f64)> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let (u, s) = parse_stat_split(&stat).with_context(|| format!("no utime/stime in {path}: {stat:?}"))?;
    Ok((u as f64 / ticks_per_second(), s as f64 / ticks_per_second()))
}

/// The value in kB of a `Key:   1234 kB` line of /proc/PID/status.
pub fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// A process's memory, in kB, from /proc/PID/status.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Memory {
    /// Resident set.
    pub rss: u64,
    /// Peak resident set.
    pub hwm: u64,
    /// Resident anonymous memory (the heap among it).
    pub anon: u64,
    /// Resident pages of mapped files (such as a target binary ktrace maps
    /// to read its symbols); the kernel can drop these under pressure.
    pub file: u64,
}

/// Parses the memory lines of /proc/PID/status.
pub fn parse_memory(status: &str) -> Option<Memory> {
    let get = |key| parse_status_kb(status, key);
    Some(Memory { rss: get("VmRSS")?, hwm: get("VmHWM")?, anon: get("RssAnon")?, file: get("RssFile")? })
}

/// The memory of a running process.
pub fn memory(pid: u32) -> Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_memory(&status).with_context(|| format!("no VmRSS, VmHWM, RssAnon or RssFile in {path}"))
}

#[cfg(test)]
mod tests {
    use super::{Memory, parse_memory, parse_stat_split, parse_status_kb};

    #[test]
    fn stat_ticks_are_utime_and_stime() {
        // Fields 14 and 15 are 1500 and 250.
        let stat = "4242 (kube-apiserver) S 1 4242 4242 0 -1 4194560 9000 0 3 0 1500 250 0 0 20 0 17 0 1000 \
                    900000000 20000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(parse_stat_split(stat), Some((1500, 250)));
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let stat = "7 (a) b (c) R 1 7 7 0 -1 0 0 0 0 0 11 22 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_stat_split(stat), Some((11, 22)));
    }

    #[test]
    fn truncated_or_garbled_stat_gives_nothing() {
        assert_eq!(parse_stat_split("4242 (x) S 1 2 3"), None);
        assert_eq!(parse_stat_split("no parenthesis at all"), None);
        assert_eq!(parse_stat_split("1 (x) S 1 1 1 0 -1 0 0 0 0 0 ten 22 0"), None);
    }

    #[test]
    fn status_values_in_kb() {
        let status = "Name:\tktrace\nVmPeak:\t  120000 kB\nVmHWM:\t   24576 kB\nVmRSS:\t   20480 kB\nThreads:\t4\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(20480));
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(24576));
        assert_eq!(parse_status_kb(status, "Threads"), None);
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
        // A key that is a prefix of another must not match it.
        assert_eq!(parse_status_kb("VmRSSx:\t1 kB\n", "VmRSS"), None);
    }

    #[test]
    fn memory_of_a_process() {
        let status = "VmPeak:\t 900000 kB\nVmHWM:\t  844200 kB\nVmRSS:\t  745400 kB\n\
                      RssAnon:\t   20400 kB\nRssFile:\t  725000 kB\nRssShmem:\t       0 kB\n";
        assert_eq!(parse_memory(status), Some(Memory { rss: 745400, hwm: 844200, anon: 20400, file: 725000 }));
        assert_eq!(parse_memory("VmRSS:\t1 kB\nVmHWM:\t2 kB\n"), None);
    }
}
