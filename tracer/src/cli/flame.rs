//! `ktrace flame`: flamegraphs, folded stacks, profile downloads, the
//! latency export, and the merged wall-vs-CPU report. All the work is in the
//! analyzer crate; this module reads the arguments, fetches what they name,
//! and picks the output by `--format` or the output file's extension.

use std::{
    fs::File,
    io::{BufReader, Read},
    path::{Path, PathBuf},
};

use analyzer::{
    fetch::Source,
    flame::{self, FlameOptions, FlamePalette, Folded},
    latency::LatencyStacks,
    pprof::Profile,
    report::{self, CpuProfile, ReportError, ReportOptions},
    requests, timeline,
    trace::{self, Trace},
};
use clap::{Args, ValueEnum};

use crate::error::Error;

pub const EXAMPLES: &str = "\
Examples:
  # CPU flamegraph of a live apiserver (30 s profile; credentials from the kubeconfig)
  ktrace flame --pprof profile --seconds 30 --output cpu.svg
  # heap in use, from a URL, with an explicit kubeconfig
  ktrace flame --pprof https://10.0.0.1:6443/debug/pprof/heap --kubeconfig admin.conf --output heap.svg
  # where the traced calls spent wall time, and the merged wall-vs-CPU report
  ktrace flame --trace req.trace --output latency.svg
  ktrace flame --trace req.trace --pprof cpu.pb.gz --output report.html
  # what changed between two profiles (red grew, blue shrank)
  ktrace flame --pprof after.pb.gz --base before.pb.gz --output diff.svg
  # each API request as a timeline (Perfetto UI, chrome://tracing), traced with --funcs request,authn,…
  ktrace flame --trace req.trace --output requests.json
  # the trace's latency profile for `go tool pprof -top latency.pb.gz`
  ktrace flame --trace req.trace --output latency.pb.gz";

/// What to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Flamegraph SVG
    Svg,
    /// Folded stacks, `root;...;leaf weight` per line
    Folded,
    /// Merged report: self-contained page, plus .json and .svg files beside it
    Html,
    /// Merged report as JSON
    Json,
    /// The trace's requests as a timeline: Chrome Trace Event JSON, for Perfetto UI or chrome://tracing
    Timeline,
    /// gzipped profile.proto: the trace's latency profile, or the fetched profile as is
    Pprof,
}

#[derive(Debug, Args)]
pub struct FlameArgs {
    /// Trace file written by `ktrace attach --output`
    #[arg(long, value_name = "TRACE")]
    trace: Option<PathBuf>,
    /// Profile: a URL, a file, or a /debug/pprof name (profile, heap, allocs, goroutine, mutex, block,
    /// threadcreate) on the kubeconfig's server
    #[arg(long, value_name = "URL|FILE")]
    pprof: Option<String>,
    /// Kubeconfig for https URLs [default: $KUBECONFIG, else ~/.kube/config]
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// Length of a CPU profile (the request blocks this long)
    #[arg(long, value_name = "N")]
    seconds: Option<u64>,
    /// Draw a differential flamegraph against this profile or trace
    #[arg(long, value_name = "URL|FILE|TRACE")]
    base: Option<String>,
    /// Sample type to draw (e.g. alloc_space, inuse_objects, delay) [default: the profile's default]
    #[arg(long, value_name = "NAME")]
    sample_type: Option<String>,
    /// Output file
    #[arg(long, short, value_name = "OUT")]
    output: PathBuf,
    /// Output format [default: from OUT's extension: .svg, .folded, .html, .json (timeline), .pb.gz]
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Flamegraph title
    #[arg(long)]
    title: Option<String>,
    /// Colours from name hashes, so equal input gives identical files
    #[arg(long)]
    deterministic: bool,
}

fn input(e: impl std::fmt::Display) -> Error {
    Error::Input(e.to_string())
}

fn format_of(args: &FlameArgs) -> Result<Format, Error> {
    if let Some(f) = args.format {
        return Ok(f);
    }
    let name = args.output.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let by_ext = [
        (".svg", Format::Svg),
        (".folded", Format::Folded),
        (".txt", Format::Folded),
        (".html", Format::Html),
        (".htm", Format::Html),
        (".json", Format::Timeline),
        (".pb.gz", Format::Pprof),
        (".pb", Format::Pprof),
        (".pprof", Format::Pprof),
    ];
    by_ext.iter().find(|(e, _)| name.ends_with(e)).map(|(_, f)| *f).ok_or_else(|| {
        Error::Input(format!(
            "--output {}: give --format, or end the name in .svg, .folded, .html, .json or .pb.gz",
            args.output.display()
        ))
    })
}

fn read_trace(path: &Path) -> Result<Trace, Error> {
    let f = File::open(path).map_err(|e| input(format!("{}: {e}", path.display())))?;
    trace::read(BufReader::new(f)).map_err(|e| input(format!("{}: {e}", path.display())))
}

/// True when `arg` is a file that starts like a trace (JSON), not a profile.
fn is_trace_file(arg: &str) -> bool {
    let mut head = [0u8; 1];
    File::open(arg).and_then(|mut f| f.read_exact(&mut head)).is_ok() && head[0] == b'{'
}

fn fetch(rt: &tokio::runtime::Runtime, arg: &str, args: &FlameArgs, seconds: Option<u64>) -> Result<Vec<u8>, Error> {
    let source = Source::parse(arg, args.kubeconfig.as_deref()).map_err(input)?;
    let seconds = seconds.filter(|_| source.is_cpu_url());
    rt.block_on(source.fetch_with_progress(seconds, true)).map_err(input)
}

fn decode(bytes: &[u8], what: &str) -> Result<Profile, Error> {
    Profile::decode(bytes).map_err(|e| input(format!("{what}: {e}")))
}

fn fold(p: &Profile, sample_type: Option<&str>, what: &str) -> Result<(Folded, String), Error> {
    let idx = p.sample_index(sample_type).map_err(|e| input(format!("{what}: {e}")))?;
    let unit = p.sample_types()[idx].unit.clone();
    Ok((p.fold(idx).map_err(|e| input(format!("{what}: {e}")))?, unit))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    analyzer::files::write_private(path, bytes).map_err(|source| Error::Write { path: path.into(), source })
}

/// A report that could not be written is not the input's fault; one that
/// could not be computed is.
fn report_error(e: ReportError) -> Error {
    match e {
        ReportError::Write { path, source } => Error::Write { path, source },
        other => input(other),
    }
}

/// The merged report: HTML (with its JSON and SVGs beside it) or JSON, and
/// the table on stdout.
fn write_report(
    args: &FlameArgs,
    format: Format,
    trace: &Trace,
    pprof_bytes: Option<&[u8]>,
    what: &str,
) -> Result<(), Error> {
    let cpu = match pprof_bytes {
        Some(b) => Some(CpuProfile { profile: decode(b, what)?, source: what.to_string(), window: None }),
        None => None,
    };
    let opts = ReportOptions { deterministic: args.deterministic };
    let rep = if format == Format::Html {
        let (rep, w) = report::write(trace, cpu.as_ref(), &args.output, &opts).map_err(report_error)?;
        let svgs = [w.latency_svg, w.cpu_svg].into_iter().flatten();
        let also: Vec<String> = std::iter::once(w.json).chain(svgs).map(|p| p.display().to_string()).collect();
        eprintln!("ktrace: wrote {} (and {})", w.html.display(), also.join(", "));
        rep
    } else {
        let rep = report::build(trace, cpu.as_ref()).map_err(report_error)?;
        let json = serde_json::to_vec_pretty(&rep).map_err(std::io::Error::from)?;
        write_file(&args.output, &json)?;
        rep
    };
    print!("{}", report::table::render(&rep));
    Ok(())
}

/// The requests as a Chrome Trace Event file, and the requests part of the
/// report on stdout.
fn write_timeline(args: &FlameArgs, trace: &Trace) -> Result<(), Error> {
    let stitched = requests::stitch(trace);
    if stitched.requests.is_empty() {
        return Err(Error::Input(format!(
            "{}: no requests in the trace: trace the request roots too (`ktrace attach --funcs request,authn,authz,admission,registry,storage --output …`)",
            args.trace.as_deref().unwrap_or(Path::new("-")).display()
        )));
    }
    let doc = timeline::chrome_trace(trace, &stitched);
    let json = serde_json::to_vec(&doc).map_err(std::io::Error::from)?;
    write_file(&args.output, &json)?;
    if let Some(r) = report::requests_section(trace, &stitched, None) {
        print!("{}", report::table::requests(&r));
    }
    for n in &stitched.notes {
        eprintln!("ktrace: note: {n}");
    }
    eprintln!(
        "ktrace: wrote {} ({} requests; open it in https://ui.perfetto.dev or chrome://tracing)",
        args.output.display(),
        stitched.requests.len()
    );
    Ok(())
}

pub fn run(args: &FlameArgs) -> Result<(), Error> {
    let format = format_of(args)?;
    if args.trace.is_none() && args.pprof.is_none() {
        return Err(Error::Input("give --trace TRACE, --pprof URL|FILE, or both".into()));
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let trace = args.trace.as_deref().map(read_trace).transpose()?;
    let pprof_bytes = args.pprof.as_deref().map(|p| fetch(&rt, p, args, args.seconds)).transpose()?;
    let what = args.pprof.clone().unwrap_or_default();

    match format {
        Format::Pprof => {
            let bytes = match (&trace, pprof_bytes) {
                (Some(t), _) => LatencyStacks::of(t).to_pprof(t),
                (None, Some(b)) => b,
                (None, None) => unreachable!("checked above"),
            };
            write_file(&args.output, &bytes)?;
        }
        Format::Timeline => {
            let trace = trace.ok_or_else(|| Error::Input("the request timeline needs --trace TRACE".into()))?;
            return write_timeline(args, &trace);
        }
        Format::Html | Format::Json => {
            let trace = trace.ok_or_else(|| Error::Input("the report needs --trace TRACE".into()))?;
            return write_report(args, format, &trace, pprof_bytes.as_deref(), &what);
        }
        Format::Svg | Format::Folded => {
            let (folded, unit, default_title, palette) = match (&pprof_bytes, &trace) {
                (Some(b), _) => {
                    let p = decode(b, &what)?;
                    let (f, unit) = fold(&p, args.sample_type.as_deref(), &what)?;
                    let palette = if unit == "bytes" { FlamePalette::Mem } else { FlamePalette::Hot };
                    (f, unit, format!("{} ({what})", p.kind()), palette)
                }
                (None, Some(t)) => (
                    LatencyStacks::of(t).folded(),
                    "nanoseconds".into(),
                    "Wall time of traced calls".into(),
                    FlamePalette::Io,
                ),
                (None, None) => unreachable!("checked above"),
            };
            if format == Format::Folded {
                let mut out = Vec::new();
                folded.write(&mut out)?;
                write_file(&args.output, &out)?;
            } else {
                let opts = FlameOptions {
                    title: args.title.clone().unwrap_or(default_title),
                    count_name: if unit == "nanoseconds" { "ns".into() } else { unit },
                    palette,
                    deterministic: args.deterministic,
                    ..Default::default()
                };
                let mut out = Vec::new();
                match &args.base {
                    Some(base) => {
                        let base_folded = if is_trace_file(base) {
                            LatencyStacks::of(&read_trace(Path::new(base))?).folded()
                        } else {
                            let b = fetch(&rt, base, args, args.seconds)?;
                            fold(&decode(&b, base)?, args.sample_type.as_deref(), base)?.0
                        };
                        flame::render_diff_svg(&base_folded, &folded, &opts, &mut out)
                    }
                    None => flame::render_svg(&folded, &opts, &mut out),
                }
                .map_err(|e| input(format!("rendering: {e}")))?;
                write_file(&args.output, &out)?;
            }
        }
    }
    eprintln!("ktrace: wrote {}", args.output.display());
    Ok(())
}
