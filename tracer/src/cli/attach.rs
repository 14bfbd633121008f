//! `ktrace attach`: place entry and RET probes on a live process, show a live
//! table, and report exact counts, latencies and errors when the duration
//! ends, on Ctrl-C / SIGTERM, or when the target exits. Optionally writes
//! every call (arguments, caller stack) to a trace file for `ktrace flame`.

use std::{
    fs::File,
    io::{BufWriter, IsTerminal, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use analyzer::{
    summary::{Mode, ProcessSummary, Summary},
    trace::{End, Record, TraceWriter},
};
use clap::Args;

mod watch;

use super::{TargetArgs, live};
use crate::{
    aggregate::Outcome,
    attach::{
        Links, Options, Session,
        calibrate::{self, HitCost},
        config::Wants,
        events::{self, Symbolizer},
        filter::FilterSpec,
        privileges,
    },
    budget,
    error::Error,
    metrics::{self, Metrics},
    plan::{fields::CaptureSpec, goroutine},
    resolve::Binary,
    session::{self, Setup},
};
use watch::{Loop, Proc};

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
  ktrace attach --pid 4242 --funcs storage --filter 'key=/configmaps/my-ns/*' --args --output ns.trace
  # secret arguments (tokens, passwords) are recorded as <redacted N bytes>; this captures them in the clear
  ktrace attach --pid 4242 --funcs authn --args --unredacted-args --output authn.trace
  # Prometheus metrics (calls, errors, latency histograms) on http://127.0.0.1:9464/metrics while it runs
  ktrace attach --pid $(pgrep kube-apiserver) --funcs storage,authn,authz --serve-metrics 127.0.0.1:9464
  # several apiservers of one file, each counted apart (a pid per --json entry and metric series)
  ktrace attach --pid $(pgrep -d, -x kube-apiserver) --funcs storage --duration 30s --json
  # every process running the file, including ones started later (restarts, upgrades of other replicas)
  ktrace attach --binary /usr/local/bin/kube-apiserver --funcs storage --serve-metrics :9464
  # each request's method and path, read through the *http.Request at the handler's entry
  ktrace attach --pid 4242 --funcs 'k8s.io/apiserver/pkg/server.(*APIServerHandler).ServeHTTP' \
      --capture 'r.Method,r.URL.Path' --output requests.trace";

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("captured").args(["args", "capture"]).multiple(true))]
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
    /// Capture secret arguments and --capture fields (tokens, passwords, ...) in the clear, like any other
    #[arg(long, requires = "captured")]
    unredacted_args: bool,
    /// Read fields through a parameter at each call's entry: comma-separated PARAM.FIELD[.FIELD...] paths,
    /// e.g. 'r.Method,r.URL.Path' (pointers to structs and inline structs are followed; strings up to 128
    /// bytes, integers, bools and pointers are captured); at most 4 paths per function, 4 pointers per path.
    /// Each call's values go in the trace file's `args` under the path; secret-named fields are redacted
    #[arg(long, value_name = "PATHS", conflicts_with = "count_only")]
    capture: Option<String>,
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
    /// Keep the probes' estimated cost under PCT % of each traced process's CPU time: each
    /// function's RET probes are attached for a share of every 30 s window, sized from
    /// the per-hit cost and its call rate, and its latency is reported with that `sampled_fraction`;
    /// counts stay exact. 0 keeps every RET probe attached (every call timed)
    #[arg(long, value_name = "PCT", default_value_t = budget::DEFAULT_MAX_OVERHEAD)]
    max_overhead: f64,
    /// Same as --max-overhead 0: every RET probe stays attached and every call is timed
    #[arg(long)]
    no_budget: bool,
    /// The budget's rotation window: each function's RET probes are attached for its share of
    /// every window (in the first, every share starts at attach). Each start and end of a share
    /// writes breakpoints into the running target, which costs it too: shorter windows cost the
    /// target more (docs/benchmarks.md) but spread the timed calls more evenly
    #[arg(long, value_name = "DUR", value_parser = parse_window, default_value = "30s")]
    budget_window: Duration,
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
    /// Serve Prometheus metrics on http://ADDR/metrics while attached (calls, errors, latency
    /// histograms, sampled fraction, dropped events, the target's versions; see docs/metrics.md).
    /// ADDR is IP:PORT, HOST:PORT or :PORT (every interface); port 0 picks a free port, printed on stderr
    #[arg(long, value_name = "ADDR", value_parser = metrics::parse_addr)]
    serve_metrics: Option<SocketAddr>,
    /// Benchmarks only: load a bare counting program on the same sites instead of ktrace's
    #[arg(long, hide = true)]
    bare: bool,
}

impl AttachArgs {
    /// The overhead budget in % of the target's CPU, when one applies.
    fn budget(&self) -> Option<f64> {
        (!self.count_only && !self.bare && !self.no_budget && self.max_overhead > 0.0).then_some(self.max_overhead)
    }

    /// The `--capture`, parsed.
    fn capture(&self) -> Result<Option<CaptureSpec>, Error> {
        self.capture.as_deref().map(CaptureSpec::parse).transpose().map_err(Error::Input)
    }

    /// The `--filter`, parsed.
    fn filter(&self) -> Result<Option<FilterSpec>, Error> {
        self.filter.as_deref().map(FilterSpec::parse).transpose().map_err(Error::Input)
    }

    /// What the kernel side must record.
    fn wants(&self) -> Wants {
        Wants {
            latency: !self.count_only,
            events: self.output.is_some() || self.args || self.stacks || self.capture.is_some(),
            args: self.args,
            stacks: self.stacks,
            unredacted_args: self.unredacted_args,
        }
    }

    /// Checks the flags that depend on each other; returns the `--pprof`
    /// source and window.
    fn check(&self) -> Result<Option<(analyzer::fetch::Source, u64)>, Error> {
        if !(self.max_overhead >= 0.0 && self.max_overhead <= 100.0) {
            return Err(Error::Input("--max-overhead must be a percentage in [0, 100]".into()));
        }
        let Some(url) = &self.pprof else { return Ok(None) };
        let (Some(window), Some(_)) = (self.duration, &self.output) else {
            return Err(Error::Input(
                "--pprof needs --duration (the CPU profile covers the trace's window) and --output (it is stored in the trace file)"
                    .into(),
            ));
        };
        let source =
            analyzer::fetch::Source::parse(url, self.kubeconfig.as_deref()).map_err(|e| Error::Input(e.to_string()))?;
        Ok(Some((source, window.as_secs().max(1))))
    }
}

pub fn run(args: &AttachArgs) -> Result<(), Error> {
    let pprof = args.check()?;
    let filter = args.filter()?;
    let capture = args.capture()?;
    privileges::check()?;
    // Several --pid must run one file: said before the slow part.
    crate::target::check_one_file(args.target.pids())?;
    // Bound before the slow part, so a busy port fails at once.
    let metrics = args.serve_metrics.map(serve_metrics).transpose()?;
    // Every function of the binary is needed only to name the callers in
    // trace records: without a trace file, only those the spec selects are
    // read (the whole table is tens of MB on a kube-apiserver). Either
    // table goes before the DWARF is read, and so do the file's pages read
    // for it.
    let mut planned = args.target.plan(&args.funcs, args.symbols.as_deref(), args.output.is_none())?;
    let goexit = session::goexit_plan(&planned.binary, &planned.functions);
    let base_sym = if args.output.is_some() { Symbolizer::new(&planned.functions, 0) } else { Symbolizer::empty() };
    planned.functions = Vec::new();
    planned.binary.release_pages();
    crate::memory::trim();
    let regs = session::registers(&planned.binary);
    // Only the probed functions' parameters are asked for: the DWARF of
    // the others is read and given back.
    planned.types_for = Some(planned.plans.iter().map(|p| p.function.name.clone()).collect());
    let layouts = std::mem::take(&mut planned.plans)
        .into_iter()
        .map(|p| Ok((session::layout(&p.function, planned.params(&p.function)?, regs), p)))
        .collect::<Result<Vec<_>, Error>>()?;
    let goroutine = planned.goroutine_offsets()?;
    let mut fields = match &capture {
        Some(spec) => {
            let (layouts, plans): (Vec<_>, Vec<_>) = layouts.iter().map(|(l, p)| (l.clone(), p.clone())).unzip();
            let types = planned.types()?;
            let fields = session::resolve_fields(&planned.binary, spec, &plans, &layouts, types)?;
            if types.is_none() && fields.iter().any(|f| !f.is_empty()) {
                let go = planned.binary.build_info().map_or("an unknown Go", |b| b.go_version.as_str());
                eprintln!(
                    "ktrace: note: --capture field offsets for {go} come from ktrace's table (the binary has no DWARF)"
                );
            }
            fields
        }
        None => Vec::new(),
    };
    if !args.count_only {
        request_root_captures(&planned, &layouts, &mut fields)?;
    }
    if args.output.is_some() {
        let go = planned.binary.build_info().map_or("an unknown Go", |b| b.go_version.as_str());
        match goroutine {
            None => eprintln!(
                "ktrace: note: where {go} keeps goroutine ids is unknown (no DWARF, no --symbols, not in ktrace's table): calls carry no goid, and requests cannot be followed across goroutines"
            ),
            Some((o, _)) if o.parent_goid.is_none() => eprintln!(
                "ktrace: note: {go} has no runtime.g.parentGoid (Go 1.21+): requests cannot be followed across goroutines"
            ),
            Some((_, goroutine::Source::Table)) => {
                eprintln!(
                    "ktrace: note: goroutine id offsets for {go} come from ktrace's table (the binary has no DWARF)"
                )
            }
            Some(_) => {}
        }
    }
    // The types have given all they will: free them before the session (on
    // a kube-apiserver its DWARF holds hundreds of MB).
    planned.release_types();
    let (layouts, plans): (Vec<_>, Vec<_>) = layouts.into_iter().unzip();
    let setup = Setup::new(goexit, plans, layouts, args.wants(), filter.as_ref(), fields)?;
    crate::memory::trim();

    let binary = &planned.binary;
    for w in &setup.warnings {
        eprintln!("ktrace: warning: {w}");
    }
    let cost = calibrate(args);
    let mono_start = events::monotonic_ns();
    let start_unix_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let options = Options {
        count_only: args.count_only,
        bare: args.bare,
        filter: filter.as_ref().map(FilterSpec::to_kernel),
        goroutine: goroutine.map(|(o, _)| o),
        links: args.links,
        fields: setup.field_configs(),
    };
    let pids = args.target.pids().to_vec();
    // Several processes (several --pid, or --binary: every process running
    // the file, now and later): records and summaries name their process.
    let tagged = pids.len() != 1;
    // Ctrl-C and SIGTERM are caught from here on, before the probes are
    // placed: one that arrives before the watch loop starts ends it at its
    // first turn, with the summary, instead of killing ktrace.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let signals = {
        let _in_runtime = rt.enter();
        watch::Signals::catch()?
    };
    let sites = setup.sites();
    let attach_one = |pid: u32, at: Duration| -> Result<Proc, Error> {
        let session = Session::attach(Some(pid), binary, &sites, setup.goexit.as_ref(), &options)?;
        crate::target::check_runs(pid, binary)?;
        // Any function's entry gives the load bias.
        let bias = match setup.traced.first() {
            Some(t) => events::load_bias(pid, t.plan.function.entry, binary.file_offset(t.plan.function.entry)?),
            None => 0,
        };
        Ok(Proc::new(Some(pid), session, base_sym.with_bias(bias), setup.traced.len(), at))
    };
    let began = Instant::now();
    let mut procs = Vec::new();
    let mut finder = None;
    if pids.is_empty() {
        // --binary: what runs the file now; the watch loop finds the rest.
        let file = binary.file_id().ok_or_else(|| Error::Input("--binary: the file has no inode".into()))?;
        let path = args.target.binary.as_deref().and_then(|p| std::fs::canonicalize(p).ok());
        let mut known = std::collections::HashSet::new();
        let mut warned = std::collections::HashSet::new();
        let shown = args.target.binary.clone().unwrap_or_default();
        // One that cannot be traced (it exited meanwhile) is said and
        // skipped, as later ones are; if none can, the first error is the
        // session's.
        let mut first_error = None;
        for (pid, _) in find_new(file, path.as_deref(), &mut known, &mut warned) {
            match attach_one(pid, Duration::ZERO) {
                Ok(p) => procs.push(p),
                Err(e) => {
                    eprintln!("ktrace: warning: PID {pid} runs {}, but was not traced: {e}", shown.display());
                    first_error.get_or_insert(e);
                }
            }
        }
        if let (true, Some(e)) = (procs.is_empty(), first_error) {
            return Err(e);
        }
        if procs.is_empty() {
            eprintln!("ktrace: no process runs {} yet; waiting for one", shown.display());
        }
        let attach_one = &attach_one;
        finder = Some(move |at: Duration| -> Vec<Proc> {
            let mut out = Vec::new();
            for (pid, _) in find_new(file, path.as_deref(), &mut known, &mut warned) {
                match attach_one(pid, at) {
                    Ok(p) => {
                        if let Some(s) = p.session() {
                            eprintln!(
                                "ktrace: PID {pid} started running {}: {} probes placed in {:.2} s",
                                shown.display(),
                                s.probes,
                                s.attach_time.as_secs_f64()
                            );
                        }
                        out.push(p);
                    }
                    Err(e) => eprintln!("ktrace: warning: PID {pid} runs {}, but was not traced: {e}", shown.display()),
                }
            }
            out
        });
    } else {
        for &pid in &pids {
            procs.push(attach_one(pid, Duration::ZERO)?);
        }
    }
    binary.release_pages();
    crate::memory::trim();
    let started = Instant::now();
    announce(args, &procs, &setup, binary, cost, filter.as_ref());
    let first_pid = procs.first().and_then(|p| p.pid);
    if let Some(m) = &metrics {
        // What every session places (the same for each process), known
        // even before a process is found.
        let tracked = |id: u32| {
            setup.traced.get(id as usize).is_some_and(|t| {
                !args.count_only
                    && (args.bare || t.config.flags & tracer_common::CFG_TRACK != 0)
                    && !t.plan.rets.is_empty()
            })
        };
        let (target, functions) = metrics::describe(&setup, binary, first_pid, tracked);
        m.describe(target, functions);
    }
    let header_pid = if tagged { None } else { first_pid };
    let mut writer = match &args.output {
        Some(path) => Some(open_trace(path, args, &setup, binary, header_pid, start_unix_ns)?),
        None => None,
    };
    let captures = setup.captures();
    let mut state = Loop::new(procs, &setup.traced, &captures, cost, mono_start, writer.as_mut());
    state.began = began;
    state.window = args.budget_window;
    state.budget_on = args.budget().is_some() && cost.is_some();
    state.tagged = tagged;
    state.live = std::io::stderr().is_terminal() && !args.json;
    state.metrics = metrics.as_ref();
    let mut finder = finder;
    if let Some(f) = finder.as_mut() {
        state.finder = Some(f);
    }
    let (ended, profile) = state.run(&rt, signals, args, pprof)?;
    if let (Some(p), Some(w)) = (profile, state.writer.as_deref_mut()) {
        w.record(&Record::Profile(p))?;
    }
    let evicted: u64 = state.procs.iter().map(|p| p.pending.evicted).sum();
    if evicted > 0 {
        eprintln!(
            "ktrace: warning: --capture: the values of {evicted} calls waited past {} others for their call's event \
             and were dropped",
            events::MAX_PENDING
        );
    }
    if let Some(e) = state.write_error.take() {
        return Err(e.into());
    }
    let procs = std::mem::take(&mut state.procs);
    drop(state);
    finish(args, procs, &setup, started, ended, writer, filter.as_ref(), tagged)
}

/// The processes that run `file` and were not seen before (by PID and
/// start time, so a reused PID is a new process), as (PID, start time);
/// a process running another file at `path` (replaced by an upgrade) is
/// named once.
fn find_new(
    file: crate::target::FileId,
    path: Option<&Path>,
    known: &mut std::collections::HashSet<(u32, u64)>,
    warned: &mut std::collections::HashSet<(u32, u64)>,
) -> Vec<(u32, u64)> {
    use crate::target::{Seen, scan, start_time};
    let mut out = Vec::new();
    for seen in scan(file, path) {
        match seen {
            Seen::Runs(pid) => {
                let Some(t) = start_time(pid) else { continue };
                if known.len() < MAX_PROCESSES && known.insert((pid, t)) {
                    out.push((pid, t));
                } else if known.len() >= MAX_PROCESSES && warned.insert((0, 0)) {
                    eprintln!("ktrace: warning: {MAX_PROCESSES} processes traced; later ones are not");
                }
            }
            Seen::Replaced(pid) => {
                let Some(t) = start_time(pid) else { continue };
                if warned.insert((pid, t)) {
                    eprintln!(
                        "ktrace: warning: PID {pid} runs another file at {} (replaced since ktrace read it): not \
                         traced; run ktrace again for it",
                        path.map(Path::display).map(|d| d.to_string()).unwrap_or_default()
                    );
                }
            }
        }
    }
    out
}

/// At most this many processes in one session: each has its own maps in
/// the kernel (about 30 MB with its ring buffers and stack map).
const MAX_PROCESSES: usize = 32;

/// Each request root (the `request` preset's outermost handler) also
/// captures its request's method and path, which name the request in the
/// report and the timeline; merged with the user's `--capture` paths.
fn request_root_captures(
    planned: &super::Planned,
    layouts: &[(session::Layout, crate::plan::ProbePlan)],
    fields: &mut Vec<Vec<crate::plan::fields::Resolved>>,
) -> Result<(), Error> {
    use crate::spec::presets::{REQUEST_ROOTS, any_matches};
    let is_root = |p: &crate::plan::ProbePlan| any_matches(REQUEST_ROOTS, &p.function.name, p.function.file.as_deref());
    if !layouts.iter().any(|(_, p)| is_root(p)) {
        return Ok(());
    }
    let spec = CaptureSpec::parse(REQUEST_FIELDS).map_err(Error::Input)?;
    // Only the roots: other functions may have an `r` parameter too.
    let (roots, plans): (Vec<_>, Vec<_>) =
        layouts.iter().map(|(l, p)| (if is_root(p) { l.clone() } else { None }, p.clone())).unzip();
    let defaults = session::resolve_fields_where_present(&planned.binary, &spec, &plans, &roots, planned.types()?)?;
    fields.resize(layouts.len(), Vec::new());
    for ((mine, preset), (_, plan)) in fields.iter_mut().zip(defaults).zip(layouts) {
        if !preset.is_empty() {
            *mine =
                crate::plan::fields::merge(&plan.function.name, std::mem::take(mine), preset).map_err(Error::Input)?;
        }
    }
    Ok(())
}

/// What a request root captures by default.
const REQUEST_FIELDS: &str = "r.Method,r.URL.Path";

/// Parses `--budget-window`: a duration of at least one second.
fn parse_window(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(1) {
        return Err(format!("{s}: the window must be at least 1s"));
    }
    Ok(d)
}

/// Listens on `--serve-metrics` and says where (the real port when 0 was asked).
fn serve_metrics(addr: SocketAddr) -> Result<Metrics, Error> {
    let m = Metrics::serve(addr).map_err(|source| Error::Serve { addr, source })?;
    eprintln!("ktrace: serving metrics on http://{}/metrics", m.addr);
    Ok(m)
}

/// Measures the per-hit cost, or says why there is no estimate.
fn calibrate(args: &AttachArgs) -> Option<HitCost> {
    if args.bare {
        return None;
    }
    let cost = match calibrate::measure() {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("ktrace: warning: cannot measure the per-hit cost on this host ({e}); no overhead estimate");
            None
        }
    };
    if args.budget().is_some() && cost.is_none() {
        eprintln!(
            "ktrace: warning: without the per-hit cost there is no overhead budget; every RET probe stays attached"
        );
    }
    cost
}

/// Says what was placed, what it costs, and what happens to secrets.
fn announce(
    args: &AttachArgs,
    procs: &[Proc],
    setup: &Setup,
    binary: &Binary,
    cost: Option<HitCost>,
    filter: Option<&FilterSpec>,
) {
    let until =
        args.duration.map_or_else(|| "until Ctrl-C".to_string(), |d| format!("for {}", humantime::format_duration(d)));
    let mode = if args.count_only { "counting" } else { "tracing" };
    let every = args.target.binary.is_some();
    for p in procs {
        let Some(session) = p.session() else { continue };
        let who =
            p.pid.map_or_else(|| format!("every process running {}", binary.path().display()), |p| format!("PID {p}"));
        eprintln!(
            "ktrace: {} probes on {} functions of {who} ({} single-stepped) placed in {:.2} s through {} links; {mode} {until}",
            session.probes,
            setup.traced.len(),
            session.single_stepped,
            session.attach_time.as_secs_f64(),
            links_name(session),
        );
    }
    if every {
        eprintln!(
            "ktrace: processes that start running {} are traced too, from when ktrace finds them (within {} ms)",
            args.target.binary.as_deref().unwrap_or(Path::new("")).display(),
            watch::RESCAN_EVERY.as_millis()
        );
    }
    if let (Some(pct), Some(_)) = (args.budget(), cost) {
        eprintln!(
            "ktrace: overhead budget {pct}% of the target's CPU: RET probes of costly functions rotate, their latency \
             is sampled (TIMED column, sampled_fraction); --max-overhead 0 times every call"
        );
    }
    for notice in setup.notices(args.args, args.unredacted_args, args.output.is_some(), filter) {
        eprintln!("ktrace: {notice}");
    }
    if let Some(c) = cost {
        eprintln!(
            "ktrace: per-hit cost on this host: {:.2} µs emulated, {:.2} µs single-stepped",
            c.emulated_ns / 1e3,
            c.single_stepped_ns / 1e3
        );
    }
}

fn links_name(session: &Session) -> &'static str {
    if session.batched() { "uprobe_multi" } else { "perf_event" }
}

/// Reads the final counters, removes the probes, and reports: warnings on
/// stderr, the records in the trace file, the summary on stdout.
#[allow(clippy::too_many_arguments)]
fn finish(
    args: &AttachArgs,
    mut procs: Vec<Proc>,
    setup: &Setup,
    started: Instant,
    ended: Option<&str>,
    writer: Option<TraceWriter<BufWriter<File>>>,
    filter: Option<&FilterSpec>,
    tagged: bool,
) -> Result<(), Error> {
    let detach_start = Instant::now();
    for p in &mut procs {
        p.close(false)?;
    }
    let detach_time = detach_start.elapsed();
    let duration = started.elapsed();
    if let Some(why) = ended {
        eprintln!("ktrace: {why}; summary so far:");
    }
    let mode = if args.count_only { Mode::CountOnly } else { Mode::Latency };
    let mut summary = Summary {
        mode,
        pid: if tagged { None } else { procs.first().and_then(|p| p.pid) },
        functions: Vec::new(),
        processes: Vec::new(),
        dropped_events: 0,
        duration_ns: u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX),
        attach_seconds: None,
        detach_seconds: Some(detach_time.as_secs_f64()),
        links: None,
    };
    let (mut writer, mut sampled_out) = (writer, 0);
    for p in &procs {
        let Some(c) = &p.closed else { continue };
        let outcome = Outcome {
            mode,
            pid: p.pid,
            counts: &c.counts,
            fractions: &c.fractions,
            stats: c.stats,
            duration: c.duration,
        };
        let who = p.pid.filter(|_| tagged).map_or_else(String::new, |pid| format!("PID {pid}: "));
        for w in outcome.warnings(filter.map(FilterSpec::text).as_deref()) {
            eprintln!("ktrace: {who}{w}");
        }
        let mine = outcome.summary(&setup.traced);
        if let Some(w) = writer.as_mut() {
            for record in outcome.records(&mine.functions, &p.detached, tagged) {
                w.record(&Record::Function(record))?;
            }
        }
        summary.functions.extend(mine.functions);
        summary.dropped_events += c.stats.dropped;
        sampled_out += c.stats.sampled_out;
        if p.attached_at.is_zero() {
            *summary.attach_seconds.get_or_insert(0.0) += c.attach_time.as_secs_f64();
        }
        summary.links.get_or_insert_with(|| if c.batched { "uprobe_multi" } else { "perf_event" }.into());
        if let Some(pid) = p.pid {
            summary.processes.push(ProcessSummary {
                pid,
                attached_ns: u64::try_from(p.attached_at.as_nanos()).unwrap_or(u64::MAX),
                traced_ns: u64::try_from(c.duration.as_nanos()).unwrap_or(u64::MAX),
                exited: c.exited,
            });
        }
    }
    if procs.is_empty()
        && let Some(path) = &args.target.binary
    {
        eprintln!("ktrace: warning: no process ran {} while ktrace watched: nothing was traced", path.display());
    }
    if let Some(w) = writer {
        w.finish(&End { duration_ns: summary.duration_ns, dropped_events: summary.dropped_events, sampled_out })?;
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

fn open_trace(
    path: &Path,
    args: &AttachArgs,
    setup: &Setup,
    binary: &Binary,
    pid: Option<u32>,
    start_unix_ns: u64,
) -> Result<TraceWriter<BufWriter<File>>, Error> {
    let mut header = setup.header(binary, !args.count_only, pid, start_unix_ns);
    header.unredacted_args = Some(args.unredacted_args);
    header.filter = args.filter().ok().flatten().map(|f| f.text());
    // Private: a trace holds etcd keys and the shape of the server's traffic.
    let file = analyzer::files::create_private(path).map_err(|source| Error::Write { path: path.into(), source })?;
    Ok(TraceWriter::new(BufWriter::new(file), &header)?)
}
