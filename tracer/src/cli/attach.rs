//! `ktrace attach`: place entry and RET probes on a live process, show a live
//! table, and report exact counts, latencies and errors when the duration
//! ends, on Ctrl-C / SIGTERM, or when the target exits. Optionally writes
//! every call (arguments, caller stack) to a trace file for `ktrace flame`.

use std::{
    collections::HashMap,
    fs::File,
    io::{BufWriter, IsTerminal, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use analyzer::{
    summary::{FunctionSummary, Mode, Summary},
    trace::{self, End, FunctionStats, Header, Record, TraceWriter, TracedFunction},
};
use clap::Args;

mod watch;

use super::{TargetArgs, live};
use crate::{
    attach::{
        FunctionCounts, Links, Options, Session, calibrate,
        config::{self, Captures, FilterArg, Wants},
        events::{self, Symbolizer},
        filter::FilterSpec,
        privileges,
    },
    budget,
    error::Error,
    plan::{Planner, ProbePlan, Target, abi, abi::Slot, amd64, secrets, signatures},
    resolve::Function,
    spec,
};
use watch::Loop;

pub const EXAMPLES: &str = "\
Examples:
  # latency, errors and counts of the etcd3 store of a running apiserver, live, for 30 seconds
  ktrace attach --pid $(pgrep kube-apiserver) --funcs storage --duration 30s
  # the whole request path; keep every call with its etcd key and caller stack in a trace file
  ktrace attach --pid 4242 --funcs storage,authn,authz,admission --args --stacks --output req.trace
  # every call timed, whatever it costs (default: RET probes rotate under 4 % of the target's CPU)
  ktrace attach --pid 4242 --funcs storage --no-budget --duration 10s
  # a larger budget: 10 % of the target's CPU for latency probes
  ktrace attach --pid 4242 --funcs storage,authn,authz,admission --max-overhead 10
  # cheapest mode: exact call counts and rates only (entry probes)
  ktrace attach --pid 4242 --funcs '*etcd3.(*store).*' --count-only --duration 5s --json
  # the same window's CPU profile stored with the trace, for `ktrace flame --trace req.trace --output report.html`
  ktrace attach --pid 4242 --funcs storage,authn --output req.trace --duration 30s \
      --pprof https://127.0.0.1:6443/debug/pprof/profile --kubeconfig ~/.kube/config
  # Delve breakpoint locations work unchanged
  ktrace attach --pid 4242 --funcs 'staging/src/k8s.io/apiserver/pkg/storage/etcd3/store.go:Create'
  # only the storage calls for one namespace's configmaps, and what runs inside them (decided in the kernel)
  ktrace attach --pid 4242 --funcs storage --filter 'key=/registry/configmaps/my-ns/*' --args --output ns.trace
  # secret arguments (tokens, passwords) are recorded as <redacted N bytes>; this captures them in the clear
  ktrace attach --pid 4242 --funcs authn --args --unredacted-args --output authn.trace";

#[derive(Debug, Args)]
pub struct AttachArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Comma-separated presets (authn, authz, admission, handlers, registry, cacher, storage, all),
    /// Go symbols with `*` globs, or Delve locations (path/file.go:Func)
    ///
    /// A `*` right after `(` is the pointer receiver's star, not a wildcard (`pkg.(*T).M` is one
    /// method); the grammar is the same as `ktrace funcs --help` describes.
    #[arg(long, value_name = "SPEC")]
    funcs: String,
    /// Stop after this long (e.g. 5s, 2m); default: until Ctrl-C or the target exits
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Print the JSON summary document at the end instead of a table
    #[arg(long)]
    json: bool,
    /// Entry probes only: exact counts and rates, no latency or errors (cheapest)
    #[arg(long)]
    count_only: bool,
    /// Capture arguments (the first non-secret string, e.g. the etcd key, and up to 4 integers/pointers);
    /// a secret argument (token, password, ...) is recorded as <redacted N bytes>, its bytes never read
    #[arg(long)]
    args: bool,
    /// Capture secret arguments (tokens, passwords, ...) in the clear, like any other
    #[arg(long, requires = "args")]
    unredacted_args: bool,
    /// Keep only calls whose string argument ARG matches PATTERN (exact, or a prefix when it ends in *),
    /// and calls nested inside them on the same goroutine; decided in the kernel, so counts are exact
    #[arg(long, value_name = "ARG=PATTERN", conflicts_with = "count_only")]
    filter: Option<String>,
    /// Record each call's caller stack (Go frame pointers)
    #[arg(long)]
    stacks: bool,
    /// Write every traced call and the histograms to this trace file (JSON Lines; see docs/trace-format.md)
    #[arg(long, value_name = "TRACE")]
    output: Option<PathBuf>,
    /// Stop counting a function called more than N times per second (0: never)
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_rate: u64,
    /// Keep the probes' estimated cost under PCT % of the target's CPU time (of one CPU without
    /// --pid): each function's RET probes are attached for a share of every 5 s window, sized from
    /// the per-hit cost and its call rate, and its latency is reported with that `sampled_fraction`;
    /// counts stay exact. 0 keeps every RET probe attached (every call timed)
    #[arg(long, value_name = "PCT", default_value_t = budget::DEFAULT_MAX_OVERHEAD)]
    max_overhead: f64,
    /// Same as --max-overhead 0: every RET probe stays attached and every call is timed
    #[arg(long)]
    no_budget: bool,
    /// How probes are tied to ktrace: `multi` (uprobe_multi links, Linux >= 6.6: attach and detach
    /// in one call each), `perf` (one perf_event per site), or `auto` (multi where the kernel has it)
    #[arg(long, value_enum, value_name = "KIND", default_value_t = Links::Auto)]
    links: Links,
    /// Also fetch the CPU profile for the same window from this /debug/pprof/profile URL (or a profile
    /// name on the kubeconfig's server) and store it in the trace file; needs --duration and --output
    #[arg(long, value_name = "URL")]
    pprof: Option<String>,
    /// Credentials for --pprof (default: $KUBECONFIG, else ~/.kube/config)
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// An unstripped build of the same source as a stripped target, for argument types (DWARF);
    /// refused unless it holds the same code at the same addresses for every traced function
    #[arg(long, value_name = "FILE")]
    symbols: Option<PathBuf>,
    /// Benchmarks only: load a bare counting program on the same sites instead of ktrace's
    #[arg(long, hide = true)]
    bare: bool,
}

/// Presets reported as groups in the trace header.
const GROUPS: [&str; 7] = ["authn", "authz", "admission", "storage", "registry", "cacher", "handlers"];

impl AttachArgs {
    /// The overhead budget in % of the target's CPU, when one applies.
    fn budget(&self) -> Option<f64> {
        (!self.count_only && !self.bare && !self.no_budget && self.max_overhead > 0.0).then_some(self.max_overhead)
    }
}

pub fn run(args: &AttachArgs) -> Result<(), Error> {
    if !(args.max_overhead >= 0.0 && args.max_overhead <= 100.0) {
        return Err(Error::Input("--max-overhead must be a percentage in [0, 100]".into()));
    }
    let filter = args.filter.as_deref().map(FilterSpec::parse).transpose().map_err(Error::Input)?;
    let pprof = match &args.pprof {
        None => None,
        Some(url) => {
            let (Some(window), Some(_)) = (args.duration, &args.output) else {
                return Err(Error::Input(
                    "--pprof needs --duration (the CPU profile covers the trace's window) and --output (it is stored in the trace file)"
                        .into(),
                ));
            };
            let source = analyzer::fetch::Source::parse(url, args.kubeconfig.as_deref())
                .map_err(|e| Error::Input(e.to_string()))?;
            Some((source, window.as_secs().max(1)))
        }
    };
    privileges::check()?;
    let mut planned = args.target.plan_all(&args.funcs, args.symbols.as_deref())?;
    let (layouts, goid_offset) = layouts(&planned)?;
    // The types have given all they will: free them before the session (on
    // a kube-apiserver its DWARF holds hundreds of MB).
    planned.release_types();
    let (binary, plans, functions) = (&planned.binary, &planned.plans, &planned.functions);
    let pid = args.target.pid;

    let wants = Wants {
        latency: !args.count_only,
        events: args.output.is_some() || args.args || args.stacks,
        args: args.args,
        stacks: args.stacks,
        unredacted_args: args.unredacted_args,
    };
    if let Some(f) = &filter {
        let found: Vec<FilterArg> = plans
            .iter()
            .zip(&layouts)
            .map(|(p, l)| match p.target {
                Target::Function => config::filter_arg(l.as_deref(), &f.arg),
                _ => FilterArg::Absent,
            })
            .collect();
        let labels: Vec<String> = plans.iter().map(ProbePlan::label).collect();
        for warning in f.check(labels.iter().map(String::as_str).zip(&found)).map_err(Error::Input)? {
            eprintln!("ktrace: warning: {warning}");
        }
    }
    let (configs, captures): (Vec<_>, Vec<_>) = plans
        .iter()
        .zip(&layouts)
        .map(|(p, slots)| config::build(p, slots.as_deref(), wants, filter.as_ref().map(|f| f.arg.as_str())))
        .unzip();
    let goexit = goexit_plan(binary, functions);

    let cost = if args.bare {
        None
    } else {
        match calibrate::measure() {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("ktrace: warning: cannot measure the per-hit cost on this host ({e}); no overhead estimate");
                None
            }
        }
    };
    if args.budget().is_some() && cost.is_none() {
        eprintln!(
            "ktrace: warning: without the per-hit cost there is no overhead budget; every RET probe stays attached"
        );
    }

    let mono_start = events::monotonic_ns();
    let start_unix_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let options = Options {
        count_only: args.count_only,
        bare: args.bare,
        filter: filter.as_ref().map(FilterSpec::to_kernel),
        goid_offset,
        links: args.links,
    };
    let mut session = Session::attach(pid, binary, plans, &configs, goexit.as_ref(), &options)?;
    binary.release_pages();
    let started = Instant::now();
    let who = pid.map_or_else(|| format!("every process running {}", binary.path().display()), |p| format!("PID {p}"));
    let until =
        args.duration.map_or_else(|| "until Ctrl-C".to_string(), |d| format!("for {}", humantime::format_duration(d)));
    let mode = if args.count_only { "counting" } else { "tracing" };
    eprintln!(
        "ktrace: {} probes on {} functions of {who} ({} single-stepped) placed in {:.2} s through {} links; {mode} {until}",
        session.probes,
        plans.len(),
        session.single_stepped,
        session.attach_time.as_secs_f64(),
        if session.batched() { "uprobe_multi" } else { "perf_event" },
    );
    if let (Some(pct), Some(_)) = (args.budget(), cost) {
        eprintln!(
            "ktrace: overhead budget {pct}% of the target's CPU: RET probes of costly functions rotate, their latency \
             is sampled (TIMED column, sampled_fraction); --max-overhead 0 times every call"
        );
    }
    report_args_and_filter(args, filter.as_ref(), plans, &captures);
    if let Some(c) = cost {
        eprintln!(
            "ktrace: per-hit cost on this host: {:.2} µs emulated, {:.2} µs single-stepped",
            c.emulated_ns / 1e3,
            c.single_stepped_ns / 1e3
        );
    }

    let mut writer = match &args.output {
        Some(path) => Some(open_trace(path, args, binary, plans, pid, start_unix_ns)?),
        None => None,
    };
    let bias = match (pid, functions.first()) {
        (Some(p), Some(f)) => events::load_bias(p, f.entry, binary.file_offset(f.entry)?),
        _ => 0,
    };
    let sym = Symbolizer::new(functions, bias);
    let mut state = Loop {
        session: &mut session,
        plans,
        captures: &captures,
        cost,
        mono_start,
        sym: &sym,
        writer: writer.as_mut(),
        stacks: HashMap::new(),
        detached: vec![None; plans.len()],
        last: None,
        sample_shift: 0,
        live: std::io::stderr().is_terminal() && !args.json,
        write_error: None,
        pid,
        shares: vec![1.0; plans.len()],
        began: Instant::now(),
        last_cpu: None,
        over_budget: false,
    };
    let (ended, profile) = state.run(args, pid, pprof)?;
    if let (Some(p), Some(w)) = (profile, state.writer.as_deref_mut()) {
        w.record(&Record::Profile(p))?;
    }
    let counts = state.session.counts()?;
    let stats = state.session.stats()?;
    let detached = std::mem::take(&mut state.detached);
    let duration = started.elapsed();
    let detach_time = state.session.detach_all();
    let fractions: Vec<Option<f64>> = (0..plans.len()).map(|i| state.session.sampled_fraction(i as u32)).collect();
    if let Some(e) = state.write_error.take() {
        return Err(e.into());
    }
    let attach_time = session.attach_time;
    let links = if session.batched() { "uprobe_multi" } else { "perf_event" };
    drop(session);
    if let Some(why) = ended {
        eprintln!("ktrace: {why}; summary so far:");
    }
    let skips: u64 = counts.iter().map(|c| c.counters.morestack_skips).sum();
    if skips > 0 {
        eprintln!("ktrace: {skips} stack-growth re-entries of a prologue were seen and not counted as calls");
    }
    let deep: u64 = counts.iter().map(|c| c.counters.depth_overflows).sum();
    if deep > 0 {
        eprintln!(
            "ktrace: {deep} calls nested deeper than {} traced calls on one goroutine were counted but not timed",
            tracer_common::MAX_DEPTH
        );
    }
    let unmatched = counts.iter().map(|c| c.counters.unmatched_returns).sum::<u64>();
    if unmatched > 0 {
        eprintln!(
            "ktrace: {unmatched} returns of calls that began before attach, while their latency was paused by the \
             budget, or were evicted, were not timed"
        );
    }
    let sampled: Vec<String> = counts
        .iter()
        .zip(&fractions)
        .filter(|(c, f)| c.counters.calls > 0 && f.is_some_and(|f| f < 1.0))
        .map(|(c, f)| format!("{} {:.0}%", c.symbol, f.unwrap_or(0.0) * 100.0))
        .collect();
    if !sampled.is_empty() {
        eprintln!(
            "ktrace: latency and errors were sampled under the overhead budget (share of the time timed): {}; \
             calls are exact",
            sampled.join(", ")
        );
    }
    if stats.goexit_cleanups > 0 {
        eprintln!(
            "ktrace: {} goroutines ended with traced calls in flight (a panic or runtime.Goexit); those calls were not timed",
            stats.goexit_cleanups
        );
    }
    let filtered: u64 = counts.iter().map(|c| c.counters.filtered).sum();
    if let Some(f) = &filter {
        eprintln!("ktrace: --filter {}: {filtered} calls left out; every count is of kept calls", f.text());
    }
    if stats.dropped + stats.sampled_out > 0 {
        eprintln!(
            "ktrace: call events: {} recorded, {} sampled out under load, {} dropped (ring buffer full); counts and histograms are exact",
            stats.emitted, stats.sampled_out, stats.dropped
        );
    }

    let mode = if args.count_only { Mode::CountOnly } else { Mode::Latency };
    let mut summary = summarize(mode, pid, &counts, &captures, &fractions, stats.dropped, duration);
    summary.attach_seconds = Some(attach_time.as_secs_f64());
    summary.detach_seconds = Some(detach_time.as_secs_f64());
    summary.links = Some(links.into());
    if let Some(mut w) = writer {
        for (id, (c, s)) in counts.iter().zip(&summary.functions).enumerate() {
            w.record(&Record::Function(FunctionStats {
                func: id as u32,
                calls: s.calls,
                errors: s.errors,
                latency_ns: s.latency_ns,
                histogram: c.hist.buckets(),
                detached: detached[id].clone(),
                sampled_fraction: s.sampled_fraction,
            }))?;
        }
        w.finish(&End {
            duration_ns: summary.duration_ns,
            dropped_events: stats.dropped,
            sampled_out: stats.sampled_out,
        })?;
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &summary).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        live::print_summary(&mut out, &summary, duration)?;
    }
    Ok(())
}

/// Where one function's arguments live, when its types are known.
type Layout = Option<Vec<Slot>>;

/// Argument layouts of every plan and the offset of `runtime.g.goid`: DWARF
/// types when the binary (or --symbols) has them; else the table of known
/// kube-apiserver signatures (release builds are stripped).
fn layouts(planned: &super::Planned) -> Result<(Vec<Layout>, Option<u64>), Error> {
    let layouts = planned
        .plans
        .iter()
        .map(|p| {
            let slots = planned
                .params(&p.function)?
                .map(|params| {
                    let params = abi::with_implicit_receiver(&p.function.name, p.function.file.as_deref(), params);
                    abi::layout(&params, &amd64::REGISTERS)
                })
                .or_else(|| signatures::known(&p.function.name, &amd64::REGISTERS));
            Ok(slots.map(|mut slots| {
                secrets::mark(&p.function.name, &mut slots);
                slots
            }))
        })
        .collect::<Result<_, Error>>()?;
    Ok((layouts, planned.goid_offset()?))
}

/// Says on stderr what happens to secret arguments and which functions
/// `--filter` decides by value. Names only: never a value.
fn report_args_and_filter(args: &AttachArgs, filter: Option<&FilterSpec>, plans: &[ProbePlan], captures: &[Captures]) {
    if args.unredacted_args {
        eprintln!(
            "ktrace: warning: --unredacted-args: secret arguments (tokens, passwords, keys) are captured in the clear{}",
            if args.output.is_some() { " and written to the trace file" } else { "" }
        );
    } else if args.args {
        let secrets: Vec<String> = plans
            .iter()
            .zip(captures)
            .filter_map(|(p, c)| c.secret.as_ref().map(|s| format!("{s} of {}", p.label())))
            .collect();
        if !secrets.is_empty() {
            eprintln!(
                "ktrace: {} secret argument{} recorded as <redacted N bytes>, never read: {}",
                secrets.len(),
                if secrets.len() == 1 { "" } else { "s" },
                secrets.join(", ")
            );
        }
    }
    if let Some(f) = filter {
        let with = captures.iter().filter(|c| c.filter).count();
        eprintln!(
            "ktrace: --filter {}: {with} of {} functions have `{}` and keep a call when it matches; the others keep \
             calls nested inside a kept call on the same goroutine",
            f.text(),
            plans.len(),
            f.arg
        );
    }
}

/// `runtime.goexit1`, where a dying goroutine's abandoned calls are dropped.
fn goexit_plan(binary: &crate::resolve::Binary, functions: &[Function]) -> Option<ProbePlan> {
    let f = functions.iter().find(|f| f.name == "runtime.goexit1")?;
    Planner::new(binary, functions).plan(f).ok()
}

fn open_trace(
    path: &Path,
    args: &AttachArgs,
    binary: &crate::resolve::Binary,
    plans: &[ProbePlan],
    pid: Option<u32>,
    start_unix_ns: u64,
) -> Result<TraceWriter<BufWriter<File>>, Error> {
    let traced: Vec<Function> = plans.iter().map(|p| p.function.clone()).collect();
    let mut groups = vec![Vec::new(); plans.len()];
    for group in GROUPS {
        let Ok(items) = spec::parse(group) else { continue };
        let Ok(members) = spec::select(&items, &traced) else { continue };
        for m in members {
            if let Some(i) = traced.iter().position(|f| std::ptr::eq(f, m)) {
                groups[i].push(group.to_string());
            }
        }
    }
    let header = Header {
        format: trace::FORMAT.into(),
        version: trace::VERSION,
        mode: if args.count_only { Mode::CountOnly } else { Mode::Latency },
        pid,
        binary: binary.path().display().to_string(),
        build_id: binary.build_id(),
        go_version: binary.build_info().map(|b| b.go_version.clone()),
        start_unix_ns,
        unredacted_args: Some(args.unredacted_args),
        filter: args.filter.as_deref().and_then(|f| FilterSpec::parse(f).ok()).map(|f| f.text()),
        functions: plans
            .iter()
            .zip(groups)
            .enumerate()
            .map(|(id, (p, groups))| TracedFunction {
                id: id as u32,
                symbol: p.label(),
                file: p.function.file.clone(),
                line: p.function.line,
                groups,
            })
            .collect(),
    };
    // Private: a trace holds etcd keys and the shape of the server's traffic.
    let file = analyzer::files::create_private(path).map_err(|source| Error::Write { path: path.into(), source })?;
    Ok(TraceWriter::new(BufWriter::new(file), &header)?)
}

fn summarize(
    mode: Mode,
    pid: Option<u32>,
    counts: &[FunctionCounts],
    captures: &[Captures],
    fractions: &[Option<f64>],
    dropped_events: u64,
    duration: Duration,
) -> Summary {
    Summary {
        mode,
        pid,
        functions: counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let fraction = fractions.get(i).copied().flatten();
                let timed = mode == Mode::Latency && (fraction.is_some() || c.counters.returns > 0);
                FunctionSummary {
                    symbol: c.symbol.clone(),
                    calls: c.counters.calls,
                    errors: (timed && captures[i].errors).then_some(c.counters.errors),
                    latency_ns: if timed { c.hist.latency() } else { None },
                    sampled_fraction: if mode == Mode::Latency { fraction } else { None },
                }
            })
            .collect(),
        dropped_events,
        duration_ns: u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX),
        attach_seconds: None,
        detach_seconds: None,
        links: None,
    }
}
