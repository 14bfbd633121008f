//! The live table `ktrace attach` redraws on a terminal about once a second,
//! and the table it prints at the end.

use std::{io::Write, time::Duration};

use analyzer::summary::{LatencyNs, Summary};

/// One function's line.
pub struct Row {
    /// The function's name, with `[PID] ` before it when several processes are traced.
    pub symbol: String,
    pub calls: u64,
    pub rate: f64,
    pub errors: Option<u64>,
    pub latency: Option<LatencyNs>,
    /// Share of the time its RET probes were attached, when they exist.
    pub timed: Option<f64>,
    pub detached: bool,
}

use analyzer::summary::format_ns as ns;

/// A share as a whole percentage; below 1 % with one decimal.
fn percent(f: f64) -> String {
    let p = f * 100.0;
    if p > 0.0 && p < 1.0 { format!("{p:.1}%") } else { format!("{p:.0}%") }
}

fn dash<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "-".into(), f)
}

fn header(out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:>10} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>6}  FUNCTION",
        "CALLS", "RATE/s", "ERRORS", "P50", "P90", "P99", "MAX", "TIMED"
    )
}

fn row(
    out: &mut impl Write,
    calls: u64,
    rate: Option<f64>,
    errors: Option<u64>,
    l: Option<LatencyNs>,
    timed: Option<f64>,
    name: &str,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{:>10} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>6}  {}",
        calls,
        dash(rate, |r| format!("{r:.1}")),
        dash(errors, |e| e.to_string()),
        dash(l, |l| ns(l.p50)),
        dash(l, |l| ns(l.p90)),
        dash(l, |l| ns(l.p99)),
        dash(l, |l| ns(l.max)),
        dash(timed, percent),
        name
    )
}

/// Number of lines the last `draw` wrote, to move back over them.
static DRAWN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Redraws the live table in place on a terminal.
pub fn draw(out: &mut impl Write, rows: &[Row], overhead_pct: Option<f64>, sample_shift: u32) {
    let mut buf = Vec::new();
    clear(&mut buf);
    let _ = header(&mut buf);
    for r in rows {
        let name = if r.detached { format!("{} (detached)", r.symbol) } else { r.symbol.to_string() };
        let _ = row(&mut buf, r.calls, Some(r.rate), r.errors, r.latency, r.timed, &name);
    }
    let overhead = overhead_pct.map_or_else(|| "unknown".into(), |p| format!("{p:.2}% of a CPU"));
    let sampling =
        if sample_shift == 0 { String::new() } else { format!("; call events sampled 1 in {}", 1u64 << sample_shift) };
    let _ = writeln!(buf, "estimated probe overhead: {overhead}{sampling}");
    DRAWN.store(rows.len() + 2, std::sync::atomic::Ordering::Relaxed);
    let _ = out.write_all(&buf);
    let _ = out.flush();
}

/// Erases the table `draw` last wrote.
pub fn clear(out: &mut impl Write) {
    let n = DRAWN.swap(0, std::sync::atomic::Ordering::Relaxed);
    if n > 0 {
        // Cursor up n lines, then erase to the end of the screen.
        let _ = write!(out, "\x1b[{n}A\x1b[J");
    }
}

/// The final table.
pub fn print_summary(out: &mut impl Write, summary: &Summary, duration: Duration) -> std::io::Result<()> {
    let secs = duration.as_secs_f64().max(1e-9);
    header(out)?;
    for f in &summary.functions {
        // Several processes: each function once per process.
        let name = match f.pid {
            Some(pid) if summary.pid.is_none() => format!("[{pid}] {}", f.symbol),
            _ => f.symbol.clone(),
        };
        row(out, f.calls, Some(f.calls as f64 / secs), f.errors, f.latency_ns, f.sampled_fraction, &name)?;
    }
    writeln!(out, "({:.2} s, {} call events dropped)", duration.as_secs_f64(), summary.dropped_events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(ns(999), "999ns");
        assert_eq!(ns(2_100_000), "2.10ms");
        assert_eq!(ns(1_500), "1.5µs");
        assert_eq!(ns(3_000_000_000), "3.00s");
    }

    #[test]
    fn draw_then_clear_moves_back_over_the_table() {
        let rows = [Row {
            symbol: "main.f".into(),
            calls: 3,
            rate: 1.5,
            errors: Some(1),
            latency: None,
            timed: Some(0.125),
            detached: true,
        }];
        let mut out = Vec::new();
        draw(&mut out, &rows, Some(0.5), 2);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("main.f (detached)")
                && text.contains("0.50% of a CPU")
                && text.contains("1 in 4")
                && text.contains(" 12%  main.f"),
            "{text}"
        );
        let mut out = Vec::new();
        clear(&mut out);
        assert_eq!(out, b"\x1b[3A\x1b[J");
    }
}
