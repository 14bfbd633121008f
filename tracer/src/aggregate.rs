//! What a session's counters mean: rates between two reads, the estimated
//! probe cost, the summary document, the trace file's per-function records
//! and the warnings printed at the end. Everything here is arithmetic on
//! what [`crate::attach::Session`] read from the kernel; nothing prints.

use std::time::{Duration, Instant};

use analyzer::{
    summary::{FunctionSummary, Mode, Summary},
    trace::FunctionStats,
};
use tracer_common::GlobalStats;

use crate::{
    attach::{FunctionCounts, calibrate::HitCost},
    session::Traced,
};

/// One read of every function's counters.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// When it was read.
    pub at: Instant,
    /// Counters per function id.
    pub counts: Vec<FunctionCounts>,
    /// Call events emitted so far.
    pub events: u64,
}

/// Per-second rates between two snapshots, per function id.
#[derive(Clone, Debug, Default)]
pub struct Rates {
    /// Kept calls (entry hits that counted).
    pub calls: Vec<f64>,
    /// Entry hits, kept or left out by `--filter`: every one costs.
    pub entries: Vec<f64>,
    /// RET hits, timed or not.
    pub returns: Vec<f64>,
    /// Call events emitted.
    pub events: f64,
    /// Seconds between the snapshots.
    pub secs: f64,
}

impl Rates {
    /// The rates from `before` to `now`.
    pub fn between(before: &Snapshot, now: &Snapshot) -> Self {
        let secs = now.at.duration_since(before.at).as_secs_f64().max(1e-3);
        let per_sec = |f: fn(&FunctionCounts) -> u64| -> Vec<f64> {
            now.counts.iter().zip(&before.counts).map(|(n, b)| f(n).saturating_sub(f(b)) as f64 / secs).collect()
        };
        Self {
            calls: per_sec(|c| c.counters.calls),
            entries: per_sec(|c| c.counters.calls + c.counters.filtered),
            returns: per_sec(|c| c.counters.returns + c.counters.unmatched_returns),
            events: now.events.saturating_sub(before.events) as f64 / secs,
            secs,
        }
    }
}

/// Estimated CPU cost of the probes, in ns of CPU per second: entry hits of
/// the functions still counted (`counting[i]`) at their sites' cost, and
/// RET hits, single-stepped.
pub fn probe_cost_ns(traced: &[Traced], counting: &[bool], cost: &HitCost, rates: &Rates) -> (f64, f64) {
    let entries = traced
        .iter()
        .enumerate()
        .filter(|(i, _)| counting.get(*i).copied().unwrap_or(false))
        .map(|(i, t)| rates.entries.get(i).copied().unwrap_or(0.0) * cost.of(t.plan.entry.emulated))
        .sum();
    let rets = rates.returns.iter().map(|r| r * cost.single_stepped_ns).sum();
    (entries, rets)
}

/// `ns_per_sec` of CPU as % of one CPU.
pub fn percent_of_cpu(ns_per_sec: f64) -> f64 {
    ns_per_sec / 1e7
}

/// What the session measured, per function.
pub struct Outcome<'a> {
    /// Counting only, or latency too.
    pub mode: Mode,
    /// The traced process.
    pub pid: Option<u32>,
    /// The final counters.
    pub counts: &'a [FunctionCounts],
    /// Each function's `sampled_fraction` (latency mode).
    pub fractions: &'a [Option<f64>],
    /// The session's own counters.
    pub stats: GlobalStats,
    /// From attach to the final read.
    pub duration: Duration,
}

impl Outcome<'_> {
    /// The `--json` summary document (without the attach and detach times).
    pub fn summary(&self, traced: &[Traced]) -> Summary {
        let functions = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let fraction = self.fractions.get(i).copied().flatten();
                let timed = self.mode == Mode::Latency && (fraction.is_some() || c.counters.returns > 0);
                let errors_measured = traced.get(i).is_some_and(|t| t.captures.errors);
                FunctionSummary {
                    symbol: c.symbol.clone(),
                    pid: self.pid,
                    calls: c.counters.calls,
                    errors: (timed && errors_measured).then_some(c.counters.errors),
                    latency_ns: if timed { c.hist.latency() } else { None },
                    sampled_fraction: if self.mode == Mode::Latency { fraction } else { None },
                }
            })
            .collect();
        Summary {
            mode: self.mode,
            pid: self.pid,
            functions,
            processes: Vec::new(),
            dropped_events: self.stats.dropped,
            duration_ns: u64::try_from(self.duration.as_nanos()).unwrap_or(u64::MAX),
            attach_seconds: None,
            detach_seconds: None,
            links: None,
        }
    }

    /// The trace file's per-function records, from the summary's entries
    /// of this process (`functions`); `tagged`: each record names the
    /// process (a trace of several).
    pub fn records(
        &self,
        functions: &[FunctionSummary],
        detached: &[Option<String>],
        tagged: bool,
    ) -> Vec<FunctionStats> {
        self.counts
            .iter()
            .zip(functions)
            .enumerate()
            .map(|(id, (c, s))| FunctionStats {
                pid: if tagged { self.pid } else { None },
                func: id as u32,
                calls: s.calls,
                errors: s.errors,
                latency_ns: s.latency_ns,
                histogram: c.hist.buckets(),
                detached: detached.get(id).cloned().flatten(),
                sampled_fraction: s.sampled_fraction,
            })
            .collect()
    }

    /// What the user must know about how complete the figures are, one line
    /// each.
    pub fn warnings(&self, filter: Option<&str>) -> Vec<String> {
        let sum = |f: fn(&FunctionCounts) -> u64| -> u64 { self.counts.iter().map(f).sum() };
        let mut out = Vec::new();
        let skips = sum(|c| c.counters.morestack_skips);
        if skips > 0 {
            out.push(format!("{skips} stack-growth re-entries of a prologue were seen and not counted as calls"));
        }
        let deep = sum(|c| c.counters.depth_overflows);
        if deep > 0 {
            out.push(format!(
                "{deep} calls nested deeper than {} traced calls on one goroutine were counted but not timed",
                tracer_common::MAX_DEPTH
            ));
        }
        let unmatched = sum(|c| c.counters.unmatched_returns);
        if unmatched > 0 {
            out.push(format!(
                "{unmatched} returns of calls that began before attach, while their latency was paused by the \
                 budget, or were evicted, were not timed"
            ));
        }
        let sampled: Vec<String> = self
            .counts
            .iter()
            .zip(self.fractions)
            .filter(|(c, f)| c.counters.calls > 0 && f.is_some_and(|f| f < 1.0))
            .map(|(c, f)| format!("{} {:.0}%", c.symbol, f.unwrap_or(0.0) * 100.0))
            .collect();
        if !sampled.is_empty() {
            out.push(format!(
                "latency and errors were sampled under the overhead budget (share of the time timed): {}; \
                 calls are exact",
                sampled.join(", ")
            ));
        }
        if self.stats.goexit_cleanups > 0 {
            out.push(format!(
                "{} goroutines ended with traced calls in flight (a panic or runtime.Goexit); those calls were not timed",
                self.stats.goexit_cleanups
            ));
        }
        if let Some(f) = filter {
            let filtered = sum(|c| c.counters.filtered);
            out.push(format!("--filter {f}: {filtered} calls left out; every count is of kept calls"));
        }
        let s = &self.stats;
        if s.captures_dropped > 0 {
            out.push(format!(
                "--capture: {} records sent, {} dropped (their ring buffer was full); those calls have no field \
                 values",
                s.captures, s.captures_dropped
            ));
        }
        if s.dropped + s.sampled_out > 0 {
            out.push(format!(
                "call events: {} recorded, {} sampled out under load, {} dropped (ring buffer full); counts and \
                 histograms are exact",
                s.emitted, s.sampled_out, s.dropped
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use analyzer::hist::Histogram;
    use tracer_common::FuncCounters;

    use super::*;

    fn counts(calls: u64, returns: u64, filtered: u64) -> FunctionCounts {
        FunctionCounts {
            symbol: "main.f".into(),
            counters: FuncCounters { calls, returns, filtered, ..Default::default() },
            hist: Histogram::default(),
        }
    }

    #[test]
    fn rates_are_per_second_and_count_left_out_entries_as_hits() {
        let t0 = Instant::now();
        let before = Snapshot { at: t0, counts: vec![counts(10, 5, 0)], events: 0 };
        let now = Snapshot { at: t0 + Duration::from_secs(2), counts: vec![counts(30, 9, 4)], events: 8 };
        let r = Rates::between(&before, &now);
        assert_eq!(r.calls, vec![10.0]);
        assert_eq!(r.entries, vec![12.0]);
        assert_eq!(r.returns, vec![2.0]);
        assert_eq!(r.events, 4.0);
    }

    #[test]
    fn warnings_name_sampled_functions_and_what_was_left_out() {
        let c = [counts(5, 1, 3)];
        let o = Outcome {
            mode: Mode::Latency,
            pid: None,
            counts: &c,
            fractions: &[Some(0.25)],
            stats: GlobalStats::default(),
            duration: Duration::from_secs(1),
        };
        let w = o.warnings(Some("key=/a*"));
        assert!(w.iter().any(|l| l.contains("main.f 25%")), "{w:?}");
        assert!(w.iter().any(|l| l.contains("--filter key=/a*: 3 calls left out")), "{w:?}");
        let s = o.summary(&[]);
        assert_eq!(s.functions[0].sampled_fraction, Some(0.25));
        assert_eq!(s.functions[0].errors, None, "no errors without an error result");
    }
}
