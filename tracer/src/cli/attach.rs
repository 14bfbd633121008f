//! `ktrace attach`: place entry probes on a live process and report exact
//! call counts when the duration ends, on Ctrl-C / SIGTERM, or when the
//! target exits.

use std::{
    io::Write,
    path::Path,
    time::{Duration, Instant},
};

use analyzer::summary::{FunctionSummary, Mode, Summary};
use clap::Args;

use super::TargetArgs;
use crate::{
    attach::{FunctionCounts, Session, privileges},
    error::Error,
};

pub const EXAMPLES: &str = "\
Examples:
  # count etcd3 Create calls of a running apiserver for 10 seconds
  ktrace attach --pid $(pgrep kube-apiserver) \\
      --funcs 'k8s.io/apiserver/pkg/storage/etcd3.(*store).Create' --duration 10s
  # machine-readable summary at the end
  ktrace attach --pid 4242 --funcs '*etcd3.(*store).*' --duration 5s --json";

#[derive(Debug, Args)]
pub struct AttachArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Comma-separated presets (authn, authz, admission, handlers, registry, cacher, storage, all),
    /// Go symbols with `*` globs, or Delve locations (path/file.go:Func)
    #[arg(long, value_name = "SPEC")]
    funcs: String,
    /// Stop after this long (e.g. 5s, 2m); default: until Ctrl-C or the target exits
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Print the JSON summary document at the end instead of a table
    #[arg(long)]
    json: bool,
}

/// How often to check whether the target is still alive.
const LIVENESS_POLL: Duration = Duration::from_millis(200);

pub fn run(args: &AttachArgs) -> Result<(), Error> {
    privileges::check()?;
    let (binary, plans) = args.target.plan(&args.funcs)?;
    let pid = args.target.pid;

    let session = Session::attach(pid, &binary, &plans)?;
    let started = Instant::now();
    let who = pid.map_or_else(|| format!("every process running {}", binary.path().display()), |p| format!("PID {p}"));
    let until =
        args.duration.map_or_else(|| "until Ctrl-C".to_string(), |d| format!("for {}", humantime::format_duration(d)));
    eprintln!("ktrace: {} probes on {} functions of {who}; counting {until}", session.probes, plans.len());

    let ended = wait(args.duration, pid)?;
    let counts = session.counts()?;
    let duration = started.elapsed();
    drop(session);
    if let Some(why) = ended {
        eprintln!("ktrace: {why}; summary so far:");
    }
    let skips: u64 = counts.iter().map(|c| c.morestack_skips).sum();
    if skips > 0 {
        eprintln!("ktrace: {skips} stack-growth re-entries of a prologue were seen and not counted as calls");
    }

    let summary = summarize(pid, &counts, duration);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &summary).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        print_table(&mut out, &counts, duration)?;
    }
    Ok(())
}

/// Blocks until the duration ends (`None`), or returns why it ended early.
fn wait(duration: Option<Duration>, pid: Option<u32>) -> Result<Option<&'static str>, Error> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let deadline = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let target_exit = async {
            let Some(pid) = pid else { return std::future::pending().await };
            let proc_dir = format!("/proc/{pid}");
            let mut tick = tokio::time::interval(LIVENESS_POLL);
            loop {
                tick.tick().await;
                if !Path::new(&proc_dir).exists() {
                    return;
                }
            }
        };
        Ok(tokio::select! {
            () = deadline => None,
            r = tokio::signal::ctrl_c() => { r?; Some("interrupted") }
            _ = sigterm.recv() => Some("terminated"),
            () = target_exit => Some("the target exited"),
        })
    })
}

fn summarize(pid: Option<u32>, counts: &[FunctionCounts], duration: Duration) -> Summary {
    Summary {
        mode: Mode::CountOnly,
        pid,
        functions: counts
            .iter()
            .map(|c| FunctionSummary { symbol: c.symbol.clone(), calls: c.calls, errors: None, latency_ns: None })
            .collect(),
        dropped_events: 0,
        duration_ns: u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX),
    }
}

fn print_table(out: &mut impl Write, counts: &[FunctionCounts], duration: Duration) -> std::io::Result<()> {
    let secs = duration.as_secs_f64().max(1e-9);
    writeln!(out, "{:>12} {:>12}  FUNCTION", "CALLS", "RATE/s")?;
    for c in counts {
        writeln!(out, "{:>12} {:>12.1}  {}", c.calls, c.calls as f64 / secs, c.symbol)?;
    }
    writeln!(out, "({:.2} s)", duration.as_secs_f64())
}
