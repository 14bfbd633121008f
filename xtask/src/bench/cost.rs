//! `cargo xtask bench`: what tracing costs per call. One Go process
//! (`targets/bench`) calls `main.work` in a tight loop and prints the wall
//! and thread-CPU ns per call of every ~200 ms round; ktrace (release build)
//! attaches to that same process case after case, the cases interleaved and
//! repeated, so every case sees the same process, code layout and neighbours
//! on this shared machine. A case's figure is the median CPU ns/call of the
//! rounds that ran entirely while its probes were live: CPU time includes the
//! kernel's work on each hit but not the time other processes take. The bare
//! cases give the kernel's own trap cost at the same sites, so ktrace's own
//! work is the difference. See docs/benchmarks.md.
//!
//! Touches only the processes it starts; builds ktrace and the Go loop.

use std::{
    io::{BufRead, BufReader, Read},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{median, session::excerpt, verdict};
use crate::gotargets;

/// How long each case is measured (ktrace's `--duration`).
const WINDOW: Duration = Duration::from_secs(3);
/// How many times the whole sequence of cases runs.
const REPS: usize = 5;
/// Rounds this close to a window's edges are left out: a round's line is
/// read a little after the round ends, and ktrace's "probes on" line a
/// little after its counting clock starts.
const EDGE: Duration = Duration::from_millis(100);
/// Rounds the loop runs before the first case.
const WARMUP_ROUNDS: usize = 3;
/// Goal: ktrace's own work adds at most this over the bare probe at the same sites.
const OWN_WORK_GOAL: f64 = 0.20;
/// Goal (issue 12): ktrace's count-only probe costs at most this many times
/// a bare entry probe, both measured over the untraced loop.
const COUNT_ONLY_VS_BARE_GOAL: f64 = 1.2;
/// Goal: count-only costs at most this per call on a function with a stack check.
const COUNT_ONLY_GOAL_NS: f64 = 1000.0;

/// One line of the table.
struct Case {
    label: &'static str,
    /// `ktrace attach` flags; `None` measures the loop untraced.
    flags: Option<&'static [&'static str]>,
    /// The bare case at the same sites (an index into [`CASES`]).
    bare: Option<usize>,
    /// The `mode` the JSON summary must report.
    mode: Option<&'static str>,
}

const UNTRACED: usize = 0;
const COUNT_ONLY: usize = 2;
const CASES: [Case; 5] = [
    Case { label: "untraced", flags: None, bare: None, mode: None },
    Case { label: "bare uprobe at entry", flags: Some(&["--bare", "--count-only"]), bare: None, mode: None },
    Case { label: "ktrace count-only", flags: Some(&["--count-only"]), bare: Some(1), mode: Some("count-only") },
    Case { label: "bare uprobes at entry + RETs", flags: Some(&["--bare"]), bare: None, mode: None },
    Case { label: "ktrace latency", flags: Some(&[]), bare: Some(3), mode: Some("latency") },
];

pub fn run(root: &Path, ktrace: &Path) -> Result<()> {
    let common = common_flags(ktrace)?;
    let added = if common.is_empty() { String::new() } else { format!(" (every case adds `{}`)", common.join(" ")) };
    eprintln!("bench: benchmarking {}{added}", ktrace.display());
    let bin = gotargets::build_bench(root)?;

    let target = GoLoop::start(&bin)?;
    target.wait_rounds(WARMUP_ROUNDS, Duration::from_secs(10))?;
    eprintln!(
        "bench: loop PID {}; {REPS} passes over {} cases, {} s each",
        target.pid(),
        CASES.len(),
        WINDOW.as_secs()
    );

    let mut results: Vec<CaseResult> = CASES.iter().map(|_| CaseResult::default()).collect();
    let mut problems = Vec::new();
    for rep in 1..=REPS {
        for (case, result) in CASES.iter().zip(&mut results) {
            if result.not_run.is_some() {
                continue;
            }
            let progress = format!("bench: [{rep}/{REPS}] {}", case.label);
            match measure(&target, ktrace, &common, case)? {
                Measured::Rounds { rounds, note, problem } => {
                    eprintln!("{progress}: {} rounds, median {}{note}", rounds.len(), describe(&rounds));
                    if let Some(p) = problem {
                        problems.push(format!("{} (pass {rep}): {p}", case.label));
                    }
                    result.pass_medians.extend(median(&cpu(&rounds)));
                    result.rounds.extend(rounds);
                }
                Measured::NotRun(why) => {
                    eprintln!("{progress}: NOT RUN: {why}");
                    result.not_run = Some(why);
                }
            }
        }
    }
    drop(target);

    print_report(&results);
    let not_run: Vec<&str> =
        CASES.iter().zip(&results).filter(|(_, r)| r.not_run.is_some()).map(|(c, _)| c.label).collect();
    if !not_run.is_empty() {
        problems.push(format!("not measured: {}", not_run.join(", ")));
    }
    if !problems.is_empty() {
        bail!("the figures above are incomplete or suspect:\n  {}", problems.join("\n  "));
    }
    Ok(())
}

#[derive(Default)]
struct CaseResult {
    /// Every round measured, over all passes.
    rounds: Vec<Round>,
    /// Each pass's median, to show how much passes disagree.
    pass_medians: Vec<f64>,
    /// Why the case could not be measured.
    not_run: Option<String>,
}

enum Measured {
    /// The rounds in the window; a note for the progress line; a failed
    /// sanity check.
    Rounds { rounds: Vec<Round>, note: String, problem: Option<String> },
    /// ktrace cannot run this case (an unknown flag, or the wrong mode).
    NotRun(String),
}

fn measure(target: &GoLoop, ktrace: &Path, common: &[&str], case: &Case) -> Result<Measured> {
    let Some(flags) = case.flags else {
        let start = Instant::now();
        thread::sleep(WINDOW);
        let rounds = target.rounds_within(start + EDGE, Instant::now() - EDGE);
        let problem = rounds.is_empty().then(|| "no complete round in the window".to_string());
        return Ok(Measured::Rounds { rounds, note: String::new(), problem });
    };
    let shown = if flags.is_empty() { "no flags".to_string() } else { flags.join(" ") };
    let attached = match attach(ktrace, target.pid(), common, flags)? {
        Ok(a) => a,
        Err(rejected) => return Ok(Measured::NotRun(format!("ktrace attach rejects `{shown}`: {rejected}"))),
    };
    // ktrace counts for WINDOW from just before it prints the line, and
    // detaches before it exits.
    let end = (attached.live_at + WINDOW).min(attached.exited_at) - EDGE;
    let rounds = target.rounds_within(attached.live_at + EDGE, end);
    let in_window: u64 = rounds.iter().map(|r| r.calls).sum();
    // Every call ktrace can have seen was made in a round that overlaps its
    // run. Its count may well exceed the window's: probes need not go on
    // and off at once, so calls at the edges can run at a cheaper rate.
    let while_alive = target.calls_during(attached.spawned_at, attached.exited_at)?;
    let note = format!(
        "; {} probes; ktrace counted {} calls, the measured rounds made {in_window}",
        attached.probes.map_or("?".into(), |n| n.to_string()),
        attached.calls.map_or("no".into(), |c| c.to_string())
    );
    if let (Some(want), Some(got)) = (case.mode, attached.mode.as_deref())
        && want != got
    {
        return Ok(Measured::NotRun(format!(
            "ktrace attach with `{shown}` ran in {got} mode, not {want} (it measured {}{note})",
            describe(&rounds)
        )));
    }
    let problem = match attached.calls {
        _ if rounds.is_empty() => Some("no complete round in the window".to_string()),
        None | Some(0) => Some(format!("the probes did not fire (calls = {:?})", attached.calls)),
        Some(calls) if calls < in_window => {
            Some(format!("ktrace counted {calls} calls but the loop made {in_window} while it counted"))
        }
        Some(calls) => (calls > while_alive)
            .then(|| format!("ktrace counted {calls} calls but the loop made only {while_alive} while it ran")),
    };
    Ok(Measured::Rounds { rounds, note, problem })
}

/// Flags every ktrace case gets, where this ktrace has them.
fn common_flags(ktrace: &Path) -> Result<Vec<&'static str>> {
    let help = Command::new(ktrace)
        .args(["attach", "--help"])
        .output()
        .with_context(|| format!("cannot run {} attach --help", ktrace.display()))?;
    let mut flags = Vec::new();
    // The loop calls main.work millions of times a second, far above the
    // default ceiling that detaches a hot function.
    if String::from_utf8_lossy(&help.stdout).contains("--max-rate") {
        flags.extend(["--max-rate", "0"]);
    }
    Ok(flags)
}

/// One `ktrace attach` run that got its probes in.
struct Attached {
    spawned_at: Instant,
    /// When the " probes on " line arrived.
    live_at: Instant,
    exited_at: Instant,
    /// How many probes ktrace says it placed.
    probes: Option<u64>,
    calls: Option<u64>,
    mode: Option<String>,
}

/// Runs `ktrace attach` for [`WINDOW`]. The inner `Err` is ktrace's own
/// usage error (exit code 2 before any probe was placed): a flag this build
/// does not have yet.
fn attach(ktrace: &Path, pid: u32, common: &[&str], flags: &[&str]) -> Result<Result<Attached, String>> {
    let mut cmd = Command::new(ktrace);
    cmd.args(["attach", "--pid", &pid.to_string(), "--funcs", gotargets::BENCH_FUNC])
        .args(["--duration", &format!("{}s", WINDOW.as_secs()), "--json"])
        .args(common)
        .args(flags)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let spawned_at = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("cannot run {cmd:?}"))?;
    let stderr = child.stderr.take().context("ktrace stderr")?;
    let lines = thread::spawn(move || {
        let mut live = None;
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if live.is_none() && line.contains(" probes on ") {
                live = Some((Instant::now(), line.clone()));
            }
            lines.push(line);
        }
        (live, lines)
    });
    let mut json = String::new();
    child.stdout.take().context("ktrace stdout")?.read_to_string(&mut json).context("reading ktrace's output")?;
    let status = child.wait()?;
    let exited_at = Instant::now();
    let (live, lines) = lines.join().map_err(|_| anyhow::anyhow!("the stderr reader panicked"))?;
    if !status.success() {
        if status.code() == Some(2) && live.is_none() {
            let error = lines.iter().find(|l| l.starts_with("error:")).or(lines.first());
            return Ok(Err(error.map_or_else(|| format!("{status}"), |l| l.trim().to_string())));
        }
        bail!("{cmd:?} failed ({status}):\n{}", excerpt(&lines));
    }
    let Some((live_at, line)) = live else {
        bail!("{cmd:?} never said its probes were on:\n{}", excerpt(&lines));
    };
    // "ktrace: 2 probes on 1 functions of PID 42; ..."
    let probes = line.split(" probes on ").next().and_then(|s| s.rsplit(' ').next()).and_then(|n| n.parse().ok());
    Ok(Ok(Attached {
        spawned_at,
        live_at,
        exited_at,
        probes,
        calls: json_value(&json, "calls").and_then(|v| v.parse().ok()),
        mode: json_value(&json, "mode").map(|v| v.trim_matches('"').to_string()),
    }))
}

/// The raw value of the first `"key": value` in a JSON document (enough for
/// ktrace's summary, whose first `calls` is `functions[0].calls`; xtask has
/// no JSON parser and does not need one for two scalars).
fn json_value<'a>(doc: &'a str, key: &str) -> Option<&'a str> {
    let rest = &doc[doc.find(&format!("\"{key}\""))? + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = rest.find([',', '}', '\n']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

fn print_report(results: &[CaseResult]) {
    let medians: Vec<Option<f64>> = results.iter().map(|r| median(&cpu(&r.rounds))).collect();
    let untraced = medians[UNTRACED];
    // What the probes add: the case minus the untraced loop.
    let added = |i: usize| Some(medians[i]? - untraced?);
    let vs_bare = |i: usize| Some(added(i)? / added(CASES[i].bare?)?);

    println!();
    println!(
        "per-call cost of {}: the loop thread's CPU ns per call, median of ~200 ms rounds over {REPS} passes",
        gotargets::BENCH_FUNC
    );
    println!(
        "{:<32} {:>6} {:>9} {:>14} {:>7} {:>9}  PASS MEDIANS",
        "CASE", "ROUNDS", "NS/CALL", "MINUS UNTRACED", "VS BARE", "WALL NS"
    );
    for (i, (case, result)) in CASES.iter().zip(results).enumerate() {
        let label = format!("{}. {}", i + 1, case.label);
        if let Some(why) = &result.not_run {
            println!("{label:<32} not run: {why}");
            continue;
        }
        let cell = |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
        let passes: Vec<String> = result.pass_medians.iter().map(|m| format!("{m:.1}")).collect();
        println!(
            "{label:<32} {:>6} {:>9} {:>14} {:>7} {:>9}  {}",
            result.rounds.len(),
            cell(medians[i], 1),
            if i == UNTRACED { "-".to_string() } else { cell(added(i), 1) },
            vs_bare(i).map_or("-".to_string(), |r| format!("{r:.2}x")),
            cell(median(&wall(&result.rounds)), 1),
            passes.join(" "),
        );
    }
    println!();
    for (i, case) in CASES.iter().enumerate() {
        let Some(bare) = case.bare else { continue };
        let what = format!("{} adds <= {:.0}% over {}", case.label, OWN_WORK_GOAL * 100.0, CASES[bare].label);
        match vs_bare(i) {
            Some(r) => println!("goal: {what}: {:+.1}% ({})", (r - 1.0) * 100.0, verdict(r - 1.0 <= OWN_WORK_GOAL)),
            None => println!("goal: {what}: not measured"),
        }
    }
    // Issue 12 states the count-only goal as a ratio: what ktrace's
    // count-only probe adds per call, against what the bare probe adds.
    let what = format!(
        "{} <= {COUNT_ONLY_VS_BARE_GOAL:.1}x {} (issue 12)",
        CASES[COUNT_ONLY].label,
        CASES[CASES[COUNT_ONLY].bare.unwrap_or(COUNT_ONLY)].label
    );
    match vs_bare(COUNT_ONLY) {
        Some(r) => println!("goal: {what}: {r:.2}x ({})", verdict(r <= COUNT_ONLY_VS_BARE_GOAL)),
        None => println!("goal: {what}: not measured"),
    }
    let what = format!("{} costs <= {:.0} ns per call over untraced", CASES[COUNT_ONLY].label, COUNT_ONLY_GOAL_NS);
    match added(COUNT_ONLY) {
        Some(ns) => println!("goal: {what}: {ns:.1} ns ({})", verdict(ns <= COUNT_ONLY_GOAL_NS)),
        None => println!("goal: {what}: not measured"),
    }
}

/// CPU ns per call of each round: the figure the table is built on.
fn cpu(rounds: &[Round]) -> Vec<f64> {
    rounds.iter().map(|r| r.cpu_ns_per_call).collect()
}

/// Wall ns per call of each round, shown for reference.
fn wall(rounds: &[Round]) -> Vec<f64> {
    rounds.iter().map(|r| r.wall_ns_per_call).collect()
}

/// "X ns/call CPU (Y wall)" for a progress line.
fn describe(rounds: &[Round]) -> String {
    let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    format!("{} ns/call CPU ({} wall)", show(median(&cpu(rounds))), show(median(&wall(rounds))))
}

/// One `round <i> <ns_per_call> <calls> <cpu_ns_per_call>` line, timed by
/// when it arrived.
#[derive(Clone, Copy)]
struct Round {
    start: Instant,
    end: Instant,
    wall_ns_per_call: f64,
    calls: u64,
    /// The loop thread's CPU time per call: it includes the kernel's work
    /// on each probe hit but not time lost to other processes, so it is
    /// the steadier figure on a shared machine.
    cpu_ns_per_call: f64,
}

/// The Go loop, with a thread collecting its rounds. Killed when dropped.
struct GoLoop {
    child: Child,
    rounds: Arc<Mutex<Vec<Round>>>,
}

impl GoLoop {
    fn start(bin: &Path) -> Result<Self> {
        let mut child = Command::new(bin)
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take().context("loop stdout")?;
        let rounds = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&rounds);
        thread::spawn(move || {
            // A round starts when the previous one ends; the first has no
            // known start and is dropped.
            let mut last = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let now = Instant::now();
                let fields: Vec<&str> = line.split_whitespace().collect();
                let [_, _, wall, calls, cpu] = fields[..] else { continue };
                let (Ok(wall_ns_per_call), Ok(calls), Ok(cpu_ns_per_call)) = (wall.parse(), calls.parse(), cpu.parse())
                else {
                    continue;
                };
                if let Some(start) = last.replace(now) {
                    let round = Round { start, end: now, wall_ns_per_call, calls, cpu_ns_per_call };
                    sink.lock().unwrap_or_else(|e| e.into_inner()).push(round);
                }
            }
        });
        Ok(Self { child, rounds })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_rounds(&self, n: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.rounds.lock().unwrap_or_else(|e| e.into_inner()).len() < n {
            if Instant::now() > deadline {
                bail!("the bench loop printed fewer than {n} rounds in {timeout:?}");
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Calls made in the rounds that overlap `from..to`, once a round has
    /// ended after `to`.
    fn calls_during(&self, from: Instant, to: Instant) -> Result<u64> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let rounds = self.rounds.lock().unwrap_or_else(|e| e.into_inner());
                if rounds.last().is_some_and(|r| r.end >= to) {
                    return Ok(rounds.iter().filter(|r| r.end > from && r.start < to).map(|r| r.calls).sum());
                }
            }
            if Instant::now() > deadline {
                bail!("the bench loop stopped printing rounds");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn rounds_within(&self, from: Instant, to: Instant) -> Vec<Round> {
        let rounds = self.rounds.lock().unwrap_or_else(|e| e.into_inner());
        rounds.iter().filter(|r| r.start >= from && r.end <= to).copied().collect()
    }
}

impl Drop for GoLoop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::json_value;

    #[test]
    fn reads_calls_and_mode_from_the_summary() {
        let doc = r#"{
  "mode": "count-only",
  "pid": 1,
  "functions": [ { "symbol": "main.work", "calls": 5593640, "errors": null, "latency_ns": null } ],
  "dropped_events": 0
}"#;
        assert_eq!(json_value(doc, "calls"), Some("5593640"));
        assert_eq!(json_value(doc, "mode"), Some("\"count-only\""));
        assert_eq!(json_value(doc, "missing"), None);
    }
}
