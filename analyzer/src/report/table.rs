//! The report as a terminal table: groups first, then each group's
//! functions indented under it, durations in human units.

use std::fmt::Write as _;

use super::{Report, Row};

/// `1.23ms`-style duration.
pub fn duration(ns: u64) -> String {
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.1}µs", f / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2}ms", f / 1e6)
    } else {
        format!("{:.2}s", f / 1e9)
    }
}

fn opt(v: Option<u64>) -> String {
    v.map(duration).unwrap_or_else(|| "-".into())
}

/// `42%`, or `-`.
pub fn share(v: Option<f64>) -> String {
    v.map(|s| format!("{:.0}%", s * 100.0)).unwrap_or_else(|| "-".into())
}

/// The symbol without its package path: `etcd3.(*store).Create`.
pub fn short(symbol: &str) -> &str {
    // The package path ends at the last '/' before the first '.' after it;
    // `(*T)` and line probes contain no '/' after that, but the type
    // arguments of a generic (`(*T[go.shape.struct { a k8s.io/x.y }]).M`)
    // may, so only the part before the first '[' is searched.
    let head = symbol.find('[').map_or(symbol, |i| &symbol[..i]);
    let func_start = head.rfind('/').map(|i| i + 1).unwrap_or(0);
    &symbol[func_start..]
}

/// The cells of one row, in column order.
pub fn cells(name: String, r: &Row) -> [String; 9] {
    [
        name,
        r.calls.to_string(),
        opt(r.p50_ns),
        opt(r.p99_ns),
        opt(r.max_ns),
        opt(r.wall_ns),
        opt(r.cpu_ns),
        share(r.off_cpu_share),
        share(r.timed),
    ]
}

/// Column titles.
/// TIMED: the share of the trace the function's latency was measured in
/// (100% unless the overhead budget rotated its RET probes).
pub const COLUMNS: [&str; 9] = ["GROUP / FUNCTION", "CALLS", "P50", "P99", "MAX", "WALL", "CPU", "OFF-CPU", "TIMED"];

/// Renders the table.
pub fn render(report: &Report) -> String {
    let mut lines: Vec<[String; 9]> = vec![COLUMNS.map(String::from)];
    for g in &report.groups {
        lines.push(cells(g.name.clone(), g));
        for f in
            report.functions.iter().filter(|f| f.groups.contains(&g.name) || (g.name == "other" && f.groups.is_empty()))
        {
            lines.push(cells(format!("  {}", short(&f.name)), f));
        }
    }
    let mut widths = [0usize; 9];
    for l in &lines {
        for (w, c) in widths.iter_mut().zip(l) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for l in &lines {
        for (i, (c, w)) in l.iter().zip(widths).enumerate() {
            let pad = w - c.chars().count();
            if i == 0 {
                let _ = write!(out, "{c}{}", " ".repeat(pad));
            } else {
                let _ = write!(out, "  {}{c}", " ".repeat(pad));
            }
        }
        out.push('\n');
    }
    if let Some(p) = &report.cpu_profile {
        let _ = writeln!(out, "CPU: {} from {} ({} in {})", p.sample_type, p.source, p.total, p.unit);
    } else {
        let _ = writeln!(out, "CPU: no profile (give --pprof, or trace with `ktrace attach --pprof`)");
    }
    for n in &report.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(duration(999), "999ns");
        assert_eq!(duration(1_500), "1.5µs");
        assert_eq!(duration(2_345_678), "2.35ms");
        assert_eq!(short("k8s.io/apiserver/pkg/storage/etcd3.(*store).Create"), "etcd3.(*store).Create");
        assert_eq!(short("main.f"), "main.f");
        assert_eq!(
            short(
                "k8s.io/kubernetes/pkg/serviceaccount.(*jwtTokenAuthenticator[k8s.io/kubernetes/pkg/serviceaccount.privateClaims]).AuthenticateToken"
            ),
            "serviceaccount.(*jwtTokenAuthenticator[k8s.io/kubernetes/pkg/serviceaccount.privateClaims]).AuthenticateToken"
        );
        assert_eq!(share(Some(0.925)), "92%");
    }
}
