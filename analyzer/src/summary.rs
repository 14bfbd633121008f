//! The summary document printed by `ktrace attach --json` (a contract,
//! documented for users in the README): one object with a `functions` array, `dropped_events` and
//! `duration_ns`. Fields a mode does not measure are `null`, never a made-up 0.

use serde::{Deserialize, Serialize};

/// What a session measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Entry probes only: exact call counts, no latency or errors.
    CountOnly,
    /// Entry and RET probes: counts, latency and errors.
    Latency,
}

/// Latency percentiles of one function, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyNs {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest observed.
    pub max: u64,
    /// Sum over all calls.
    pub sum: u64,
}

/// One traced function.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionSummary {
    /// Fully qualified Go symbol.
    pub symbol: String,
    /// The process these figures are of. With several processes
    /// (`--binary`, several `--pid`s) each function has one entry per
    /// process; absent when no single process was traced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Exact number of calls.
    pub calls: u64,
    /// Calls that returned a non-nil error; `null` when not measured.
    pub errors: Option<u64>,
    /// Latency; `null` when not measured.
    pub latency_ns: Option<LatencyNs>,
    /// Share of the session during which the function's RET probes were
    /// attached: 1.0 when every call was timed, less when `--max-overhead`
    /// rotated them, and `errors` and `latency_ns` cover only that share;
    /// `null` when not measured (count-only).
    #[serde(default)]
    pub sampled_fraction: Option<f64>,
}

/// The whole document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// What was measured.
    pub mode: Mode,
    /// PID of the traced process, when exactly one was traced.
    pub pid: Option<u32>,
    /// Every traced function, in the order they were resolved; with several
    /// processes, the functions of each process in turn (see `processes`).
    pub functions: Vec<FunctionSummary>,
    /// Every process traced, in the order ktrace found them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<ProcessSummary>,
    /// Per-call events lost to a full ring buffer (counters never drop).
    pub dropped_events: u64,
    /// Wall time between attach and the final read.
    pub duration_ns: u64,
    /// How long placing the probes took, in seconds.
    #[serde(default)]
    pub attach_seconds: Option<f64>,
    /// How long removing them took, in seconds.
    #[serde(default)]
    pub detach_seconds: Option<f64>,
    /// How the probes were tied to ktrace: `uprobe_multi` or `perf_event`.
    #[serde(default)]
    pub links: Option<String>,
}

/// One process of a session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessSummary {
    /// Its PID.
    pub pid: u32,
    /// When its probes were placed, in ns after the session began (0 for
    /// the processes found at attach; later for ones started since).
    pub attached_ns: u64,
    /// How long it was traced, ns: until it exited or the session ended.
    pub traced_ns: u64,
    /// Whether it exited while traced.
    pub exited: bool,
}

/// A duration in nanoseconds with a unit a person reads at a glance:
/// `999ns`, `1.5µs`, `2.35ms`, `3.00s`. Every table and page ktrace prints
/// uses this one.
pub fn format_ns(ns: u64) -> String {
    let f = ns as f64;
    match ns {
        0..1_000 => format!("{ns}ns"),
        1_000..1_000_000 => format!("{:.1}µs", f / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2}ms", f / 1e6),
        _ => format!("{:.2}s", f / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_contract_field_names() {
        let s = Summary {
            mode: Mode::CountOnly,
            pid: Some(42),
            functions: vec![FunctionSummary {
                symbol: "main.f".into(),
                pid: Some(42),
                calls: 3,
                errors: None,
                latency_ns: None,
                sampled_fraction: None,
            }],
            processes: vec![],
            dropped_events: 0,
            duration_ns: 5,
            attach_seconds: Some(0.25),
            detach_seconds: None,
            links: Some("uprobe_multi".into()),
        };
        let v: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert_eq!(v["functions"][0]["symbol"], "main.f");
        assert_eq!(v["functions"][0]["calls"], 3);
        assert!(v["functions"][0]["latency_ns"].is_null());
        assert_eq!(v["dropped_events"], 0);
        assert_eq!(v["duration_ns"], 5);
        assert_eq!(v["mode"], "count-only");
        let back: Summary = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }
}
