//! Prometheus's text exposition format (version 0.0.4) of one reading of a
//! session's counters: HELP and TYPE lines, escaped label values, and the
//! kernel's latency histograms turned into cumulative `le` buckets without
//! any re-bucketing. Pure: it writes to any `Write` and reads nothing else.

use std::io::{self, Write};

use tracer_common::hist::{bucket_bounds, bucket_of};

use super::{Function, Reading, TargetInfo};

/// The content type of this format, for the HTTP answer.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The longest duration with an `le` bucket of its own: 2^40 ns, about
/// 18 minutes (long watches end near 10). Every kernel bucket below it is
/// one `le`, so the set of series is the same from the first scrape to the
/// last (a bucket series that appeared late would start at the whole count
/// and break `rate()`); longer calls are counted in `+Inf`, `_count` and
/// `_sum`, exactly.
pub const MAX_LE_NS: u64 = 1 << 40;

/// Number of kernel buckets exposed as `le` series: those that end at or
/// below [`MAX_LE_NS`].
pub fn exposed_buckets() -> usize {
    bucket_of(MAX_LE_NS) as usize
}

/// `ns` nanoseconds as exact decimal seconds (`1500` → `0.0000015`): no
/// float rounding, so an `le` is exactly its bucket's edge.
pub fn seconds(ns: u64) -> String {
    let (s, frac) = (ns / 1_000_000_000, ns % 1_000_000_000);
    if frac == 0 {
        return s.to_string();
    }
    let digits = format!("{frac:09}");
    format!("{s}.{}", digits.trim_end_matches('0'))
}

/// A label value as the format wants it: `\`, `"` and newline escaped.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A HELP text as the format wants it: `\` and newline escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn family(out: &mut impl Write, name: &str, kind: &str, help: &str) -> io::Result<()> {
    writeln!(out, "# HELP {name} {}", escape_help(help))?;
    writeln!(out, "# TYPE {name} {kind}")
}

/// The labels of one function's series, without braces.
fn labels(f: &Function, pid: &str) -> String {
    format!("function=\"{}\",group=\"{}\",pid=\"{pid}\"", escape_label(&f.name), escape_label(&f.group))
}

const CALLS_HELP: &str = "Calls of the traced function counted by its entry probe (exact, never sampled; with \
--filter, kept calls only). group: the ktrace presets the function belongs to, joined by commas, empty when none.";
const ERRORS_HELP: &str = "Returns of the traced function with a non-nil error result, for functions whose error \
result ktrace can read; counted while its RET probes are attached (see ktrace_sampled_fraction).";
const DURATION_HELP: &str = "Wall time per call from entry to return on the same goroutine, from the in-kernel \
histograms (8 buckets per power of two; le is the largest whole nanosecond count of each bucket, up to 2^40 ns). \
Covers only the calls that returned while the RET probes were attached: the share of the time given by \
ktrace_sampled_fraction.";
const FRACTION_HELP: &str = "Share of the session so far during which the function's RET probes were attached \
(the overhead budget rotates them); ktrace_call_duration_seconds and ktrace_errors_total cover only that share, \
ktrace_calls_total all of it.";
const DROPPED_HELP: &str = "Per-call events lost because ktrace's ring buffer was full; counters and histograms \
never lose anything.";
const INFO_HELP: &str = "The traced binary. go_version: from its Go build info. kubernetes_version: the version of \
the module k8s.io/kubernetes in its build info, else k8s.io/apiserver's v0.X.Y read as v1.X.Y, else unknown; \
kubernetes_version_from says which.";

/// Writes every family of `readings`, one per traced process: their
/// series differ by the `pid` label. `functions[i]` describes each
/// reading's `counts[i]`.
pub fn write(
    out: &mut impl Write,
    target: &TargetInfo,
    functions: &[Function],
    readings: &[Reading],
) -> io::Result<()> {
    let pid = |r: &Reading| r.pid.map(|p| p.to_string()).unwrap_or_default();
    family(out, "ktrace_target_info", "gauge", INFO_HELP)?;
    for r in readings {
        writeln!(
            out,
            "ktrace_target_info{{pid=\"{}\",go_version=\"{}\",kubernetes_version=\"{}\",kubernetes_version_from=\"{}\",\
             binary=\"{}\",build_id=\"{}\"}} 1",
            pid(r),
            escape_label(&target.go_version),
            escape_label(&target.kubernetes_version),
            escape_label(target.kubernetes_version_from),
            escape_label(&target.binary),
            escape_label(&target.build_id),
        )?;
    }
    // (reading, function id, function, counts) of every series.
    let rows = || {
        readings.iter().flat_map(|r| functions.iter().zip(&r.counts).enumerate().map(move |(i, (f, c))| (r, i, f, c)))
    };

    family(out, "ktrace_calls_total", "counter", CALLS_HELP)?;
    for (r, _, f, c) in rows() {
        writeln!(out, "ktrace_calls_total{{{}}} {}", labels(f, &pid(r)), c.counters.calls)?;
    }
    family(out, "ktrace_errors_total", "counter", ERRORS_HELP)?;
    for (r, _, f, c) in rows().filter(|(_, _, f, _)| f.timed && f.errors) {
        writeln!(out, "ktrace_errors_total{{{}}} {}", labels(f, &pid(r)), c.counters.errors)?;
    }
    family(out, "ktrace_call_duration_seconds", "histogram", DURATION_HELP)?;
    for (r, _, f, c) in rows().filter(|(_, _, f, _)| f.timed) {
        let l = labels(f, &pid(r));
        let mut cumulative = 0u64;
        for i in 0..exposed_buckets() {
            cumulative += c.hist.counts.get(i).copied().unwrap_or(0);
            // Durations are whole nanoseconds, so the bucket [lo, hi) holds
            // exactly the calls of at most hi - 1 ns.
            let (_, hi) = bucket_bounds(i as u32);
            writeln!(out, "ktrace_call_duration_seconds_bucket{{{l},le=\"{}\"}} {cumulative}", seconds(hi - 1))?;
        }
        // Every matched return is in exactly one bucket, so the total is
        // the matched returns; +Inf and _count are that same figure.
        let count = c.hist.count();
        writeln!(out, "ktrace_call_duration_seconds_bucket{{{l},le=\"+Inf\"}} {count}")?;
        writeln!(out, "ktrace_call_duration_seconds_sum{{{l}}} {}", seconds(c.hist.sum))?;
        writeln!(out, "ktrace_call_duration_seconds_count{{{l}}} {count}")?;
    }
    family(out, "ktrace_sampled_fraction", "gauge", FRACTION_HELP)?;
    for (r, i, f, _) in rows().filter(|(_, _, f, _)| f.timed) {
        let fraction = r.fractions.get(i).copied().flatten().unwrap_or(0.0);
        writeln!(out, "ktrace_sampled_fraction{{{}}} {fraction}", labels(f, &pid(r)))?;
    }
    family(out, "ktrace_dropped_events_total", "counter", DROPPED_HELP)?;
    writeln!(out, "ktrace_dropped_events_total {}", readings.iter().map(|r| r.dropped).sum::<u64>())
}

#[cfg(test)]
mod tests {
    use analyzer::hist::Histogram;
    use tracer_common::{FuncCounters, hist::BUCKETS};

    use super::*;
    use crate::attach::FunctionCounts;

    fn function(name: &str, group: &str) -> Function {
        Function { name: name.into(), group: group.into(), errors: true, timed: true }
    }

    fn counts(samples_ns: &[u64], errors: u64) -> FunctionCounts {
        let mut hist = Histogram { counts: vec![0; BUCKETS as usize], ..Default::default() };
        for &s in samples_ns {
            hist.counts[bucket_of(s) as usize] += 1;
            hist.sum += s;
            hist.max = hist.max.max(s);
        }
        let n = samples_ns.len() as u64;
        FunctionCounts {
            symbol: String::new(),
            counters: FuncCounters { calls: n + 2, returns: n, errors, sum_ns: hist.sum, ..Default::default() },
            hist,
        }
    }

    fn target() -> TargetInfo {
        TargetInfo {
            go_version: "go1.26.8".into(),
            kubernetes_version: "v1.36.3".into(),
            kubernetes_version_from: "k8s.io/kubernetes",
            binary: "/usr/bin/kube \"apiserver\"".into(),
            build_id: "abc".into(),
        }
    }

    fn render(functions: &[Function], reading: &Reading) -> String {
        let mut out = Vec::new();
        let reading = Reading { pid: Some(42), ..reading.clone() };
        write(&mut out, &target(), functions, &[reading]).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// (le, value) of every bucket line of `name`'s histogram.
    fn buckets<'a>(text: &'a str, function_label: &str) -> Vec<(&'a str, u64)> {
        let prefix = format!("ktrace_call_duration_seconds_bucket{{function=\"{function_label}\"");
        text.lines()
            .filter(|l| l.starts_with(&prefix))
            .map(|l| {
                let le = l.split("le=\"").nth(1).unwrap().split('"').next().unwrap();
                (le, l.rsplit(' ').next().unwrap().parse().unwrap())
            })
            .collect()
    }

    fn value(text: &str, series: &str) -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .to_string()
    }

    #[test]
    fn seconds_are_exact_decimals() {
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(1), "0.000000001");
        assert_eq!(seconds(1_500), "0.0000015");
        assert_eq!(seconds(2_000_000_000), "2");
        assert_eq!(seconds((1 << 40) - 1), "1099.511627775");
    }

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        // Go's generic shapes keep their characters.
        let shape = "k8s.io/x.(*T[go.shape.*uint8,go.shape.struct { A int }]).M";
        assert_eq!(escape_label(shape), shape);
        let text = render(&[function("f\"\\\n", "")], &Reading { counts: vec![counts(&[], 0)], ..Reading::default() });
        assert!(text.contains(r#"ktrace_calls_total{function="f\"\\\n",group="",pid="42"} 2"#), "{text}");
        assert!(text.contains(r#"binary="/usr/bin/kube \"apiserver\"""#), "{text}");
    }

    #[test]
    fn buckets_are_cumulative_and_inf_is_the_count() {
        // 3 calls near 1 µs, 2 near 1 ms, 1 near 1 s, 1 over the last le.
        let samples = [1_000, 1_010, 1_100, 1_000_000, 1_050_000, 1_000_000_000, (1 << 41) + 5];
        let f = [function("main.f", "storage,cacher")];
        let reading = Reading { counts: vec![counts(&samples, 1)], fractions: vec![Some(0.5)], dropped: 3, pid: None };
        let text = render(&f, &reading);
        let b = buckets(&text, "main.f");
        assert_eq!(b.len(), exposed_buckets() + 1);
        assert_eq!(b.last(), Some(&("+Inf", 7)));
        assert!(b.windows(2).all(|w| w[0].1 <= w[1].1), "not cumulative");
        let at = |ns: u64| b.iter().find(|(le, _)| *le == seconds(ns)).map(|(_, v)| *v);
        // bucket_of(1_000) = [960, 1024): its le is 1023 ns, and it holds 1_000 and 1_010.
        assert_eq!(at(1_023), Some(2));
        assert_eq!(at(1_151), Some(3), "1_100 is in [1024, 1152)");
        assert_eq!(at(1_048_575), Some(4), "1_000_000 is in [983040, 1048576)");
        assert_eq!(at(1_179_647), Some(5), "1_050_000 is in [1048576, 1179648)");
        assert_eq!(b[exposed_buckets() - 1], ("1099.511627775", 6), "the last le: 2^40 - 1 ns");
        let series = r#"{function="main.f",group="storage,cacher",pid="42"}"#;
        assert_eq!(value(&text, &format!("ktrace_call_duration_seconds_count{series}")), "7");
        assert_eq!(
            value(&text, &format!("ktrace_call_duration_seconds_sum{series}")),
            seconds(samples.iter().sum::<u64>())
        );
        assert_eq!(value(&text, &format!("ktrace_calls_total{series}")), "9");
        assert_eq!(value(&text, &format!("ktrace_errors_total{series}")), "1");
        assert_eq!(value(&text, &format!("ktrace_sampled_fraction{series}")), "0.5");
        assert_eq!(value(&text, "ktrace_dropped_events_total"), "3");
    }

    #[test]
    fn families_have_help_and_type_and_untimed_functions_only_calls() {
        let f = [function("a", ""), Function { timed: false, ..function("b", "") }];
        let reading = Reading { counts: vec![counts(&[5], 0), counts(&[], 0)], ..Reading::default() };
        let text = render(&f, &reading);
        for (name, kind) in [
            ("ktrace_target_info", "gauge"),
            ("ktrace_calls_total", "counter"),
            ("ktrace_errors_total", "counter"),
            ("ktrace_call_duration_seconds", "histogram"),
            ("ktrace_sampled_fraction", "gauge"),
            ("ktrace_dropped_events_total", "counter"),
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
            assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name}");
        }
        assert!(text.contains("ktrace_calls_total{function=\"b\""));
        assert!(!text.contains("_bucket{function=\"b\""));
        assert!(!text.contains("ktrace_errors_total{function=\"b\""));
        assert!(!text.contains("ktrace_sampled_fraction{function=\"b\""));
        assert!(text.contains(r#"kubernetes_version="v1.36.3",kubernetes_version_from="k8s.io/kubernetes""#));
    }
}
