//! The report as a terminal table: groups first, then each group's
//! functions indented under it, durations in human units.

use std::fmt::Write as _;

use super::{Report, Row};

/// `1.23ms`-style duration.
pub use crate::summary::format_ns as duration;

fn opt(v: Option<u64>) -> String {
    v.map(duration).unwrap_or_else(|| "-".into())
}

/// `42%`, or `-`.
pub fn share(v: Option<f64>) -> String {
    v.map(|s| format!("{:.0}%", s * 100.0)).unwrap_or_else(|| "-".into())
}

/// The symbol without its package path: `etcd3.(*store).Create`.
pub use crate::symbol::without_package_path as short;

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
