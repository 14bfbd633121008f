//! The report as a terminal table: groups first, then each group's
//! functions indented under it, durations in human units.

use std::fmt::Write as _;

use super::{PhaseLine, Report, RequestsSection, Row, Waterfall};
use crate::requests::{KindRow, PHASES};

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
    let mut lines: Vec<Vec<String>> = vec![COLUMNS.map(String::from).to_vec()];
    for g in &report.groups {
        lines.push(cells(g.name.clone(), g).to_vec());
        for f in report.functions.iter().filter(|f| f.row.as_deref() == Some(g.name.as_str())) {
            lines.push(cells(format!("  {}", short(&f.name)), f).to_vec());
        }
    }
    let mut out = grid(&lines);
    if let Some(p) = &report.cpu_profile {
        let _ = writeln!(out, "CPU: {} from {} ({} in {})", p.sample_type, p.source, p.total, p.unit);
    } else {
        let _ = writeln!(out, "CPU: no profile (give --pprof, or trace with `ktrace attach --pprof`)");
    }
    if let Some(r) = &report.requests {
        out.push('\n');
        out.push_str(&requests(r));
    }
    for n in &report.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

/// Left-aligned first column, right-aligned others, two spaces apart.
fn grid(lines: &[Vec<String>]) -> String {
    let n = lines.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; n];
    for l in lines {
        for (w, c) in widths.iter_mut().zip(l) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for l in lines {
        for (i, (c, w)) in l.iter().zip(&widths).enumerate() {
            let pad = " ".repeat(w - c.chars().count());
            if i == 0 {
                let _ = write!(out, "{c}{pad}");
            } else {
                let _ = write!(out, "  {pad}{c}");
            }
        }
        out.push('\n');
    }
    out
}

/// Width of a waterfall's bar area, in characters.
const BAR: usize = 40;
/// Lines of one waterfall in a terminal.
const MAX_SPANS: usize = 40;

/// Column titles of the per-phase request table.
pub fn phase_header() -> Vec<String> {
    ["PHASE", "SHARE", "REQUESTS", "P50/REQ", "P99/REQ", "WALL", "CPU"].map(String::from).to_vec()
}

/// One phase's cells, in [`phase_header`] order.
pub fn phase_cells(p: &PhaseLine) -> Vec<String> {
    vec![
        p.wall.phase.clone(),
        share(Some(p.wall.share)),
        p.wall.requests.to_string(),
        opt(p.wall.p50_ns),
        opt(p.wall.p99_ns),
        duration(p.wall.wall_ns),
        opt(p.cpu_ns),
    ]
}

/// Column titles of the per-kind request table.
pub fn kind_header() -> Vec<String> {
    let mut head: Vec<String> = ["KIND", "COUNT", "P50", "P99"].map(String::from).to_vec();
    head.extend(PHASES.iter().map(|p| p.to_ascii_uppercase()));
    head
}

/// One kind's cells, in [`kind_header`] order.
pub fn kind_cells(k: &KindRow) -> Vec<String> {
    let mut l = vec![k.kind.clone(), k.count.to_string(), opt(k.p50_ns), opt(k.p99_ns)];
    l.extend(k.phase_share.iter().map(|s| share(Some(*s))));
    l
}

/// The requests part: phases, kinds, and the slowest requests as waterfalls.
pub fn requests(r: &RequestsSection) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "REQUESTS: {} ({} traced calls outside any request)", r.count, r.calls_outside);
    let phases: Vec<Vec<String>> = r.phases.iter().map(phase_cells).collect();
    out.push_str(&grid(&[vec![phase_header()], phases].concat()));
    out.push('\n');
    let kinds: Vec<Vec<String>> = r.kinds.iter().map(kind_cells).collect();
    out.push_str(&grid(&[vec![kind_header()], kinds].concat()));
    for w in &r.slowest {
        out.push('\n');
        out.push_str(&waterfall(w));
    }
    out
}

/// One request as indented spans with bars on a common time axis.
pub fn waterfall(w: &Waterfall) -> String {
    let mut out = String::new();
    let split: Vec<String> = PHASES
        .iter()
        .zip(w.phase_ns)
        .filter(|(_, ns)| *ns > 0)
        .map(|(p, ns)| format!("{p} {}", duration(ns)))
        .collect();
    let _ = writeln!(out, "{}  {}  [{}]", w.title, duration(w.dur_ns), split.join(", "));
    let scale = |ns: u64| if w.dur_ns == 0 { 0 } else { (ns as u128 * BAR as u128 / w.dur_ns as u128) as usize };
    // Phases always; calls when they take at least 1 % of the request.
    let shown: Vec<_> =
        w.spans.iter().filter(|s| s.cat != "call" || s.dur_ns.saturating_mul(100) >= w.dur_ns).collect();
    let hidden = w.spans.len() - shown.len().min(MAX_SPANS);
    for s in shown.into_iter().take(MAX_SPANS) {
        let from = scale(s.offset_ns).min(BAR - 1);
        let len = scale(s.dur_ns).clamp(1, BAR - from);
        let bar = format!("{}{}{}", " ".repeat(from), "#".repeat(len), " ".repeat(BAR - from - len));
        let label = &s.label;
        let _ = writeln!(
            out,
            "  |{bar}| {:>9} {:>9}  {}{}{}",
            format!("+{}", duration(s.offset_ns)),
            duration(s.dur_ns),
            "  ".repeat(s.depth),
            label,
            if s.error { " (error)" } else { "" }
        );
    }
    if hidden > 0 {
        let _ =
            writeln!(out, "  … {hidden} more spans (shorter calls; the HTML report and the timeline have them all)");
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
