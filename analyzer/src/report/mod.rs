//! The merged report of `ktrace flame --trace TRACE [--pprof …]`: for each
//! preset group and each traced function, exact calls and latency from the
//! trace, and how much of that wall time the CPU profile saw on a CPU. The
//! rest (the off-CPU share) is waiting: etcd, locks, webhooks.
//!
//! [`build`] computes the [`Report`]; [`table`] prints it for a terminal,
//! [`html`] makes one self-contained page with the flamegraphs inline, and
//! [`write`] writes the page, the JSON and the SVGs side by side.

pub mod html;
pub mod table;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use base64::Engine as _;
use serde::Serialize;

use crate::{
    flame::{FlameOptions, FlamePalette, Folded, render_svg},
    latency::LatencyStacks,
    pprof::{DecodeError, Profile},
    requests::{self, NodeKind, PHASES, Requests},
    trace::Trace,
};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The CPU profile did not decode.
    #[error("the CPU profile: {0}")]
    Profile(#[from] DecodeError),
    /// A profile stored in the trace is not base64.
    #[error("the profile stored in the trace is not base64: {0}")]
    Base64(String),
    /// The trace has no header, so its records name no functions. [`read`]
    /// never returns such a trace; a `Trace` built by hand can be one.
    ///
    /// [`read`]: crate::trace::read
    #[error("the trace has no header")]
    NoHeader,
    /// Writing an output file failed.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A CPU profile to merge, and where it came from.
#[derive(Clone, Debug)]
pub struct CpuProfile {
    /// The decoded profile.
    pub profile: Profile,
    /// URL or path, for the page.
    pub source: String,
    /// Its window, ns after the trace's start, when known (a profile stored
    /// in the trace says so exactly).
    pub window: Option<(u64, u64)>,
}

impl CpuProfile {
    /// The first `profile` (CPU) record stored in the trace, if any.
    pub fn from_trace(trace: &Trace) -> Result<Option<CpuProfile>, ReportError> {
        let Some(p) = trace.profiles.iter().find(|p| p.kind == "profile") else { return Ok(None) };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(p.data_base64.trim())
            .map_err(|e| ReportError::Base64(e.to_string()))?;
        Ok(Some(CpuProfile {
            profile: Profile::decode(&bytes)?,
            source: "stored in the trace".into(),
            window: Some((p.start_ns, p.duration_ns)),
        }))
    }
}

/// The whole report (also its JSON form).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// What was traced.
    pub trace: TraceInfo,
    /// The CPU profile merged in, if any.
    pub cpu_profile: Option<ProfileInfo>,
    /// One row per request phase (`authn` … `storage`, `other`), each with
    /// the *own* time of its calls: the time in a call not spent in a
    /// nested traced call, on its goroutine or on a goroutine its request
    /// started. No time is counted in two rows.
    pub groups: Vec<Row>,
    /// One row per traced function.
    pub functions: Vec<Row>,
    /// API requests rebuilt from the trace, when it traced a request root
    /// (the `request` preset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<RequestsSection>,
    /// Caveats about how numbers were obtained.
    pub notes: Vec<String>,
}

/// The per-request part of the report.
#[derive(Clone, Debug, Serialize)]
pub struct RequestsSection {
    /// Requests in the trace.
    pub count: usize,
    /// Traced calls that belonged to no request.
    pub calls_outside: usize,
    /// Per phase: share of request wall time, per-request p50/p99, CPU.
    pub phases: Vec<PhaseLine>,
    /// Per request kind (verb + resource).
    pub kinds: Vec<requests::KindRow>,
    /// The slowest requests, slowest first.
    pub slowest: Vec<Waterfall>,
}

/// One phase over all requests.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseLine {
    /// Wall-time figures.
    #[serde(flatten)]
    pub wall: requests::PhaseRow,
    /// CPU the profile saw in the phase's own frames (samples whose
    /// innermost traced frame is in the phase), ns.
    pub cpu_ns: Option<u64>,
}

/// One request drawn as nested spans.
#[derive(Clone, Debug, Serialize)]
pub struct Waterfall {
    /// `METHOD path`.
    pub title: String,
    /// `verb resource`.
    pub kind: String,
    /// Start, ns after the trace's start.
    pub start_ns: u64,
    /// Wall time, ns.
    pub dur_ns: u64,
    /// Own time per phase, indexed like [`requests::PHASES`].
    pub phase_ns: [u64; 6],
    /// Its spans, depth first.
    pub spans: Vec<Span>,
}

/// One bar of a waterfall.
#[derive(Clone, Debug, Serialize)]
pub struct Span {
    /// Nesting depth (0: the request).
    pub depth: usize,
    /// `request`, `phase` or `call`.
    pub cat: &'static str,
    /// Phase name, or the call's function with its etcd key and error.
    pub label: String,
    /// Start, ns after the request's start.
    pub offset_ns: u64,
    /// Length, ns.
    pub dur_ns: u64,
    /// The call returned an error.
    pub error: bool,
}

/// Requests drawn as waterfalls in the report.
pub const SLOWEST: usize = 5;

/// The trace's identity and window.
#[derive(Clone, Debug, Serialize)]
pub struct TraceInfo {
    /// Traced binary.
    pub binary: String,
    /// Traced PID.
    pub pid: Option<u32>,
    /// The processes the trace's records name, when the header names none
    /// (a trace of several processes); empty for a single-process trace.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pids: Vec<u32>,
    /// Start, ns since the Unix epoch.
    pub start_unix_ns: u64,
    /// Length, ns.
    pub duration_ns: u64,
    /// Call records in the file.
    pub call_records: u64,
    /// Call events lost in the kernel.
    pub dropped_events: u64,
}

/// The merged profile.
#[derive(Clone, Debug, Serialize)]
pub struct ProfileInfo {
    /// URL or path.
    pub source: String,
    /// Sample type used (`cpu`).
    pub sample_type: String,
    /// Its unit (`nanoseconds`).
    pub unit: String,
    /// Sum over all samples, in `unit`.
    pub total: u64,
    /// Part of the trace window the profile covers, ns.
    pub overlap_ns: Option<u64>,
}

/// One line of the table.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Row {
    /// Group name or Go symbol.
    pub name: String,
    /// The function's groups (empty for a group row).
    pub groups: Vec<String>,
    /// The phase row a function is listed under (`None` for a group row).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<String>,
    /// Calls (for a phase row: the calls that entered the phase from
    /// outside it, so nested calls of one phase count once).
    pub calls: u64,
    /// Calls that returned an error.
    pub errors: Option<u64>,
    /// Median latency, ns.
    pub p50_ns: Option<u64>,
    /// 99th percentile, ns.
    pub p99_ns: Option<u64>,
    /// Slowest call, ns.
    pub max_ns: Option<u64>,
    /// Total wall time of the calls, ns.
    pub wall_ns: Option<u64>,
    /// CPU time of profile samples whose stack holds the function, ns.
    pub cpu_ns: Option<u64>,
    /// 1 − CPU / wall over the profile's window: the time spent waiting.
    pub off_cpu_share: Option<f64>,
    /// Share of the trace during which the function's RET probes were
    /// attached (`sampled_fraction`); latency comes from that share.
    pub timed: Option<f64>,
}

/// The Go function a traced symbol runs in (`file.go:12 in F` → `F`).
fn frame_of(symbol: &str) -> &str {
    symbol.rsplit_once(" in ").map(|(_, f)| f).unwrap_or(symbol)
}

/// The `q` quantile of sorted values (nearest rank), or `None` when empty.
pub(crate) fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// CPU time (ns) per sample weight unit, and the folded CPU stacks.
fn cpu_folded(cpu: &CpuProfile) -> Result<(Folded, ProfileInfo), ReportError> {
    let p = &cpu.profile;
    let idx = p.sample_index(Some("cpu")).or_else(|_| p.sample_index(None))?;
    let t = &p.sample_types()[idx];
    let folded = p.fold(idx)?;
    let info = ProfileInfo {
        source: cpu.source.clone(),
        sample_type: t.name.clone(),
        unit: t.unit.clone(),
        total: folded.total(),
        overlap_ns: None,
    };
    Ok((folded, info))
}

/// Computes the report. `cpu` defaults to a CPU profile stored in the trace.
pub fn build(trace: &Trace, cpu: Option<&CpuProfile>) -> Result<Report, ReportError> {
    let header = trace.header().ok_or(ReportError::NoHeader)?;
    let stored;
    let cpu = match cpu {
        Some(c) => Some(c),
        None => {
            stored = CpuProfile::from_trace(trace)?;
            stored.as_ref()
        }
    };
    let duration_ns = trace
        .end
        .as_ref()
        .map(|e| e.duration_ns)
        .unwrap_or_else(|| trace.calls.iter().map(|c| c.start_ns.saturating_add(c.dur_ns)).max().unwrap_or(0));
    let mut notes = Vec::new();
    if trace.end.is_none() {
        notes.push("the trace has no end record (ktrace was stopped early); totals cover what was written".into());
    }

    // The profile's window relative to the trace's start.
    let mut cpu_data = None;
    if let Some(c) = cpu {
        let (folded, mut info) = cpu_folded(c)?;
        let window = c.window.or_else(|| {
            let (start, dur) = c.profile.window()?;
            Some((start.saturating_sub(header.start_unix_ns), dur))
        });
        let ns = info.unit == "nanoseconds";
        if !ns {
            notes.push(format!(
                "the profile's {} is in {}, not nanoseconds: no off-CPU share",
                info.sample_type, info.unit
            ));
        }
        let clip = window.map(|(s, d)| (s, s.saturating_add(d)));
        if let Some((s, e)) = clip {
            info.overlap_ns = Some(e.min(duration_ns).saturating_sub(s.min(duration_ns)));
        } else {
            notes.push("the CPU profile does not say when it was taken; assuming it covers the trace".into());
        }
        cpu_data = Some((folded, info, clip, ns));
    }

    // Share of each function's recorded wall time inside the profile window.
    let in_window = |start: u64, dur: u64| -> u64 {
        match cpu_data.as_ref().and_then(|d| d.2) {
            Some((ws, we)) => start.saturating_add(dur).min(we).saturating_sub(start.max(ws)),
            None => dur,
        }
    };
    struct Acc {
        durs: Vec<u64>,
        sum: u64,
        win: u64,
        errors: u64,
        has_error: bool,
    }
    let mut acc: HashMap<u32, Acc> = HashMap::new();
    for c in &trace.calls {
        let a = acc.entry(c.func).or_insert(Acc { durs: vec![], sum: 0, win: 0, errors: 0, has_error: false });
        a.durs.push(c.dur_ns);
        a.sum = a.sum.saturating_add(c.dur_ns);
        a.win = a.win.saturating_add(in_window(c.start_ns, c.dur_ns));
        if let Some(e) = c.error {
            a.has_error = true;
            a.errors += e as u64;
        }
    }
    // One record per function and process: their totals over the processes.
    let stats = trace.function_totals();
    let pids = trace.pids();
    if pids.len() > 1 {
        notes.push(format!(
            "the trace holds {} processes (pids {}): each function's figures add up all of them",
            pids.len(),
            pids.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
        ));
    }

    let cpu_where = |pred: &dyn Fn(&str) -> bool| cpu_data.as_ref().map(|(f, ..)| f.total_where(pred));
    let off_cpu = |cpu: Option<u64>, wall_window: Option<u64>| -> Option<f64> {
        let (_, _, _, ns) = cpu_data.as_ref()?;
        let (cpu, wall) = (cpu?, wall_window?);
        (*ns && wall > 0).then(|| (1.0 - cpu as f64 / wall as f64).clamp(0.0, 1.0))
    };

    let rows_of = requests::rows_of(header);
    let mut functions = Vec::new();
    for f in &header.functions {
        let a = acc.get(&f.id);
        let mut durs = a.map(|a| a.durs.clone()).unwrap_or_default();
        durs.sort_unstable();
        let s = stats.get(&f.id);
        let lat = s.and_then(|s| s.latency_ns);
        let calls = s.map(|s| s.calls).unwrap_or(durs.len() as u64);
        let timed = s.and_then(|s| s.sampled_fraction);
        // Under the overhead budget only some calls were timed: the wall
        // time of all calls is their mean times the exact count.
        let timed_calls: u64 = s.map(|s| s.histogram.iter().fold(0u64, |a, b| a.saturating_add(b.count))).unwrap_or(0);
        let wall = match (lat, timed) {
            (Some(l), Some(f)) if f < 1.0 && timed_calls > 0 => {
                Some((l.sum as f64 / timed_calls as f64 * calls as f64) as u64)
            }
            _ => lat.map(|l| l.sum).or_else(|| a.map(|a| a.sum)),
        };
        // Scale the exact total by the share of recorded time in the window.
        let wall_window = match (wall, a) {
            (Some(w), Some(a)) if a.sum > 0 => Some((w as f64 * a.win as f64 / a.sum as f64) as u64),
            (w, _) => w,
        };
        let frame = frame_of(&f.symbol);
        let cpu = cpu_where(&|fr: &str| fr == frame);
        functions.push(Row {
            name: f.symbol.clone(),
            groups: f.groups.clone(),
            row: rows_of.get(f.id as usize).map(|r| r.to_string()),
            calls,
            errors: s.and_then(|s| s.errors).or_else(|| a.filter(|a| a.has_error).map(|a| a.errors)),
            p50_ns: lat.map(|l| l.p50).or_else(|| quantile(&durs, 0.5)),
            p99_ns: lat.map(|l| l.p99).or_else(|| quantile(&durs, 0.99)),
            max_ns: lat.map(|l| l.max).or_else(|| durs.last().copied()),
            wall_ns: wall,
            cpu_ns: cpu,
            off_cpu_share: off_cpu(cpu, wall_window),
            timed,
        });
    }

    let stitched = requests::stitch(trace);
    let phase_cpu = cpu_data.as_ref().map(|(f, ..)| requests::cpu_by_phase(header, f));
    // The share of the trace the profile covers scales wall time to the
    // profile's window for the off-CPU share of a phase.
    let covered = match cpu_data.as_ref().map(|d| d.2) {
        Some(Some((s, e))) if duration_ns > 0 => {
            e.min(duration_ns).saturating_sub(s.min(duration_ns)) as f64 / duration_ns as f64
        }
        _ => 1.0,
    };
    let groups = group_rows(trace, &functions, &stitched, phase_cpu, covered, &off_cpu, &mut notes);
    let requests = requests_section(trace, &stitched, phase_cpu);
    notes.extend(stitched.notes.iter().cloned());
    let mut cpu_profile = cpu_data.map(|d| d.1);
    if let Some(info) = cpu_profile.as_mut()
        && info.overlap_ns == Some(0)
    {
        notes.push("the CPU profile's window does not overlap the trace's".into());
    }
    Ok(Report {
        trace: TraceInfo {
            binary: header.binary.clone(),
            pid: header.pid,
            pids: if header.pid.is_none() { pids } else { vec![] },
            start_unix_ns: header.start_unix_ns,
            duration_ns,
            call_records: trace.calls.len() as u64,
            dropped_events: trace.end.as_ref().map(|e| e.dropped_events).unwrap_or(0),
        },
        cpu_profile,
        groups,
        functions,
        requests,
        notes,
    })
}

/// Phase rows: each phase's own time over the whole trace (see
/// [`requests::exclusive`]), its entries as calls, and the percentiles of
/// one entry's own time.
fn group_rows(
    trace: &Trace,
    functions: &[Row],
    stitched: &Requests,
    phase_cpu: Option<[u64; 6]>,
    covered: f64,
    off_cpu: &dyn Fn(Option<u64>, Option<u64>) -> Option<f64>,
    notes: &mut Vec<String>,
) -> Vec<Row> {
    let listed = |p: &'static str| functions.iter().filter(move |f| f.row.as_deref() == Some(p));
    if trace.calls.is_empty() {
        // No call records (count-only, or no events): only per-function
        // totals exist, and nested calls cannot be told apart.
        if functions.iter().any(|f| f.wall_ns.is_some()) {
            notes.push(
                "the trace has no call records: a group's WALL adds up its functions' totals, nested calls included"
                    .into(),
            );
        }
        return PHASES
            .iter()
            .filter(|p| listed(p).next().is_some())
            .map(|p| Row {
                name: p.to_string(),
                groups: vec![],
                row: None,
                calls: listed(p).fold(0u64, |a, f| a.saturating_add(f.calls)),
                errors: listed(p).filter_map(|f| f.errors).reduce(|a, b| a.saturating_add(b)),
                p50_ns: None,
                p99_ns: None,
                max_ns: None,
                wall_ns: listed(p).filter_map(|f| f.wall_ns).reduce(|a, b| a.saturating_add(b)),
                cpu_ns: None,
                off_cpu_share: None,
                timed: None,
            })
            .collect();
    }
    if trace.end.as_ref().is_some_and(|e| e.sampled_out > 0 || e.dropped_events > 0) {
        notes.push("call records were sampled or dropped: group rows add up the recorded calls only".into());
    }
    let x = requests::exclusive(trace, stitched);
    let mut rows = Vec::new();
    for (p, name) in PHASES.iter().enumerate() {
        if x.own_ns[p] == 0 && listed(name).next().is_none() {
            continue;
        }
        let mut own: Vec<u64> = x.spans.iter().filter(|s| s.phase == p).map(|s| s.own_ns).collect();
        own.sort_unstable();
        let wall = x.own_ns[p];
        let cpu = phase_cpu.map(|c| c[p]);
        rows.push(Row {
            name: name.to_string(),
            groups: vec![],
            row: None,
            calls: x.entries[p],
            errors: listed(name).filter_map(|f| f.errors).reduce(|a, b| a.saturating_add(b)),
            p50_ns: quantile(&own, 0.5),
            p99_ns: quantile(&own, 0.99),
            max_ns: own.last().copied(),
            wall_ns: Some(wall),
            cpu_ns: cpu,
            off_cpu_share: off_cpu(cpu, Some((wall as f64 * covered) as u64)),
            timed: None,
        });
    }
    rows
}

/// The requests part, when the trace has request roots.
pub fn requests_section(trace: &Trace, stitched: &Requests, phase_cpu: Option<[u64; 6]>) -> Option<RequestsSection> {
    if stitched.requests.is_empty() {
        return None;
    }
    let phases = stitched
        .phase_rows()
        .into_iter()
        .enumerate()
        .map(|(p, wall)| PhaseLine { wall, cpu_ns: phase_cpu.map(|c| c[p]) })
        .collect();
    let slowest = stitched
        .slowest(SLOWEST)
        .into_iter()
        .map(|r| Waterfall {
            title: r.title(),
            kind: r.kind(),
            start_ns: r.start_ns,
            dur_ns: r.dur_ns,
            phase_ns: r.phase_ns,
            spans: r
                .tree
                .walk()
                .into_iter()
                .map(|(depth, n)| Span {
                    depth,
                    cat: match n.kind {
                        NodeKind::Request(_) => "request",
                        NodeKind::Phase(_) => "phase",
                        NodeKind::Call(_) => "call",
                    },
                    label: requests::label(trace, r, n),
                    offset_ns: n.start_ns.saturating_sub(r.start_ns),
                    dur_ns: n.dur_ns(),
                    error: matches!(n.kind, NodeKind::Call(i) if trace.calls[i].error == Some(true)),
                })
                .collect(),
        })
        .collect();
    Some(RequestsSection {
        count: stitched.requests.len(),
        calls_outside: stitched.outside,
        phases,
        kinds: stitched.kind_rows(),
        slowest,
    })
}

/// Options of [`write`].
#[derive(Clone, Debug, Default)]
pub struct ReportOptions {
    /// Deterministic flamegraph colours (tests).
    pub deterministic: bool,
}

/// What [`write`] wrote.
#[derive(Clone, Debug)]
pub struct Written {
    /// The self-contained page.
    pub html: PathBuf,
    /// The report as JSON.
    pub json: PathBuf,
    /// The latency flamegraph, when the trace has call records.
    pub latency_svg: Option<PathBuf>,
    /// The CPU flamegraph, when a CPU profile was merged.
    pub cpu_svg: Option<PathBuf>,
}

/// Builds the report and writes `html`, and beside it `<stem>.json`,
/// `<stem>-latency.svg` and `<stem>-cpu.svg` (interactive, unlike the
/// static copies inside the page). This is what `cargo xtask demo` calls.
pub fn write(
    trace: &Trace,
    cpu: Option<&CpuProfile>,
    html_path: &Path,
    opts: &ReportOptions,
) -> Result<(Report, Written), ReportError> {
    // Decode a stored profile once, here, rather than again inside build().
    let stored;
    let cpu = match cpu {
        Some(c) => Some(c),
        None => {
            stored = CpuProfile::from_trace(trace)?;
            stored.as_ref()
        }
    };
    let report = build(trace, cpu)?;
    let sibling = |suffix: &str| {
        let stem = html_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "report".into());
        html_path.with_file_name(format!("{stem}{suffix}"))
    };
    let save = |path: &Path, bytes: &[u8]| {
        crate::files::write_private(path, bytes).map_err(|source| ReportError::Write { path: path.into(), source })
    };
    let latency = LatencyStacks::of(trace).folded();
    let latency_svg = svg(&latency, "Wall time of traced calls", "ns", FlamePalette::Io, opts.deterministic);
    let cpu_svg = match cpu {
        Some(c) => {
            let (folded, info) = cpu_folded(c)?;
            let title = format!("CPU ({}, {})", info.sample_type, c.source);
            svg(&folded, &title, &info.unit, FlamePalette::Hot, opts.deterministic)
        }
        None => None,
    };
    let page = html::page(&report, latency_svg.as_deref(), cpu_svg.as_deref());
    save(html_path, page.as_bytes())?;
    let json = sibling(".json");
    let text = serde_json::to_vec_pretty(&report).unwrap_or_default();
    save(&json, &text)?;
    let mut written = Written { html: html_path.into(), json, latency_svg: None, cpu_svg: None };
    if let Some(s) = &latency_svg {
        let p = sibling("-latency.svg");
        save(&p, s.as_bytes())?;
        written.latency_svg = Some(p);
    }
    if let Some(s) = &cpu_svg {
        let p = sibling("-cpu.svg");
        save(&p, s.as_bytes())?;
        written.cpu_svg = Some(p);
    }
    Ok((report, written))
}

fn svg(folded: &Folded, title: &str, unit: &str, palette: FlamePalette, deterministic: bool) -> Option<String> {
    let opts = FlameOptions {
        title: title.into(),
        count_name: if unit == "nanoseconds" { "ns".into() } else { unit.into() },
        palette,
        deterministic,
        ..Default::default()
    };
    let mut out = Vec::new();
    render_svg(folded, &opts, &mut out).ok()?;
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests;
