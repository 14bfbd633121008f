//! `cargo xtask bench throughput` (issue 12, P2): requests/s of the real
//! kube-apiserver (release build) and of targets/apiserver under wrk (2
//! threads, 16 connections, GETs of one configmap with a bearer token: alice's
//! on the real server), untraced and with the storage, authn, authz and
//! admission presets traced in three ways, and with bare entry probes at the
//! same sites (the kernel's trap and a counter: the floor under count-only).
//! The configurations are interleaved, in a rotated order each pass, and
//! repeated. Besides requests/s, the server's CPU per request (utime + stime
//! of /proc/PID/stat over the window, divided by the requests wrk completed)
//! is reported: the kernel charges each probe hit to the thread that hit it,
//! so this figure includes the probes' cost and is steadier than requests/s
//! on a shared machine.

use std::{collections::BTreeMap, path::Path, thread, time::Duration};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use testkit::{Apiserver, Etcd, KubeApiserver, KubeVariant, LoadSpec, User, Variant};

use super::{
    Options, attach_has_flag, median,
    procfs::cpu_split_seconds,
    session::{Finished, Ktrace, Start, excerpt},
    verdict,
    wrk::{CONNECTIONS, THREADS, Wrk},
};
use crate::gotargets;

/// What is traced in every traced configuration.
const FUNCS: &str = "storage,authn,authz,admission";
/// Time between ktrace's probes going on and the window starting.
const SETTLE: Duration = Duration::from_secs(2);
/// Placing the probes includes reading the binary's symbols and DWARF.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(300);
/// Detaching perf_event probes one by one can take 0.1 s each.
const DETACH_TIMEOUT: Duration = Duration::from_secs(600);
/// Goals of issue 12, as fractions of untraced throughput.
const COUNT_ONLY_GOAL: f64 = 0.97;
const DEFAULT_LATENCY_GOAL: f64 = 0.95;

struct Config {
    label: &'static str,
    /// `ktrace attach` flags; `None`: untraced.
    flags: Option<&'static [&'static str]>,
    /// The `mode` its JSON summary must report.
    mode: Option<&'static str>,
}

const UNTRACED: usize = 0;
const COUNT_ONLY: usize = 1;
const DEFAULT_LATENCY: usize = 2;
const BARE: usize = 4;
const CONFIGS: [Config; 5] = [
    Config { label: "untraced", flags: None, mode: None },
    Config { label: "--count-only", flags: Some(&["--count-only"]), mode: Some("count-only") },
    Config { label: "latency, default budget", flags: Some(&[]), mode: Some("latency") },
    Config { label: "latency, --max-overhead 0", flags: Some(&["--max-overhead", "0"]), mode: Some("latency") },
    // The same entry sites with a program that only counts: what the
    // kernel's trap costs by itself, the floor under any count-only program.
    Config { label: "bare entry probes", flags: Some(&["--bare", "--count-only"]), mode: None },
];

/// The server under load, and the GET wrk repeats.
struct Server {
    name: String,
    /// Whose token the GETs carry.
    token_of: &'static str,
    pid: u32,
    wrk: Wrk,
}

pub fn run(root: &Path, ktrace: &Path, options: &Options) -> Result<()> {
    gotargets::build(root)?;
    // Checked before anything starts; the cached build is made by
    // `cargo xtask build-kube` (slow the first time), never from here.
    if options.servers.kube() {
        testkit::kube::binary(KubeVariant::Release)?;
    }
    let window = Duration::from_secs(options.seconds.into());
    let mut problems = Vec::new();
    if options.servers.kube() {
        let etcd = Etcd::start().context("starting etcd")?;
        eprintln!("bench: starting the real kube-apiserver (release build)");
        let kube = KubeApiserver::start(KubeVariant::Release, &etcd).context("starting kube-apiserver")?;
        let report = kube.load(&LoadSpec { creates: 1, ..LoadSpec::default() })?;
        let path = api_path(report.keys.first().context("load created no configmap")?)?;
        let server = Server {
            name: format!("kube-apiserver {} (release build)", crate::kube::VERSION),
            token_of: "alice's",
            pid: kube.pid(),
            wrk: Wrk::new(&format!("{}{path}", kube.url()), kube.token(User::Alice))?,
        };
        problems.extend(bench_server(ktrace, &server, window, options.reps)?);
    }
    if options.servers.bundled() {
        let etcd = Etcd::start().context("starting etcd")?;
        eprintln!("bench: starting targets/apiserver (optimized build)");
        let target = Apiserver::start(Variant::Optimized, &etcd).context("starting targets/apiserver")?;
        let spec = LoadSpec { namespace: "bench".into(), creates: 1, ..LoadSpec::default() };
        let report = target.load(&spec)?;
        let path = api_path(report.keys.first().context("load created no configmap")?)?;
        let server = Server {
            name: "targets/apiserver (optimized build)".into(),
            token_of: "the target's",
            pid: target.pid(),
            wrk: Wrk::new(&format!("{}{path}", target.url()), &target.token()?)?,
        };
        problems.extend(bench_server(ktrace, &server, window, options.reps)?);
    }
    if !problems.is_empty() {
        bail!("the figures above are incomplete or suspect:\n  {}", problems.join("\n  "));
    }
    Ok(())
}

/// `/api/v1/namespaces/NS/configmaps/NAME` from the etcd key
/// `/registry/configmaps/NS/NAME`.
fn api_path(key: &str) -> Result<String> {
    let rest = key.strip_prefix("/registry/configmaps/").with_context(|| format!("unexpected etcd key {key}"))?;
    let (ns, name) = rest.split_once('/').with_context(|| format!("unexpected etcd key {key}"))?;
    Ok(format!("/api/v1/namespaces/{ns}/configmaps/{name}"))
}

/// One window of one configuration.
struct Sample {
    per_second: f64,
    requests: u64,
    cpu_us_per_request: f64,
    /// The part of it spent in the kernel, where probe hits are handled.
    sys_us_per_request: f64,
    /// Calls counted by ktrace (one entry probe hit each) per request;
    /// `None` untraced.
    hits_per_request: Option<f64>,
}

#[derive(Default)]
struct ConfigResult {
    samples: Vec<Sample>,
    not_run: Option<String>,
    /// Default latency: functions called without a p50, per run.
    missing_p50: Vec<(usize, String, u64)>,
    /// Default latency: functions called, over all runs.
    called: usize,
    /// Count-only: calls per function summed over all runs.
    calls_by_function: BTreeMap<String, u64>,
}

fn bench_server(ktrace: &Path, server: &Server, window: Duration, reps: usize) -> Result<Vec<String>> {
    eprintln!(
        "bench: {} PID {}: warming up with {} s of untraced load",
        server.name,
        server.pid,
        window.as_secs().min(5)
    );
    server.wrk.run(window.min(Duration::from_secs(5)))?;
    // Flags this build lacks mark their configuration as not run.
    let budget_zero = attach_has_flag(ktrace, "--max-overhead")?;
    let mut results: Vec<ConfigResult> = CONFIGS.iter().map(|_| ConfigResult::default()).collect();
    let mut problems = Vec::new();
    for rep in 0..reps {
        for k in 0..CONFIGS.len() {
            // Each pass starts one configuration later, so none always
            // follows the same one.
            let i = (k + rep) % CONFIGS.len();
            let (config, result) = (&CONFIGS[i], &mut results[i]);
            if result.not_run.is_some() {
                continue;
            }
            let progress = format!("bench: {} [{}/{reps}] {}", short(&server.name), rep + 1, config.label);
            if config.flags.is_some_and(|f| f.contains(&"--max-overhead")) && !budget_zero {
                result.not_run = Some("ktrace attach has no --max-overhead".into());
                eprintln!("{progress}: NOT RUN: ktrace attach has no --max-overhead");
                continue;
            }
            match measure(ktrace, server, config, window)? {
                Measured::Sample { sample, summary, problem } => {
                    eprintln!(
                        "{progress}: {:.1} req/s, {:.0} µs CPU/request ({} requests)",
                        sample.per_second, sample.cpu_us_per_request, sample.requests
                    );
                    if let Some(p) = problem {
                        problems.push(format!("{}, {} (pass {}): {p}", short(&server.name), config.label, rep + 1));
                    }
                    if i == COUNT_ONLY
                        && let Some(summary) = &summary
                    {
                        for (symbol, calls, _) in called_functions(summary) {
                            *result.calls_by_function.entry(symbol).or_default() += calls;
                        }
                    }
                    if i == DEFAULT_LATENCY
                        && let Some(summary) = &summary
                    {
                        let called = called_functions(summary);
                        result.called += called.len();
                        for (symbol, calls, p50) in called {
                            if !p50 {
                                result.missing_p50.push((rep + 1, symbol, calls));
                            }
                        }
                    }
                    result.samples.push(sample);
                }
                Measured::NotRun(why) => {
                    eprintln!("{progress}: NOT RUN: {why}");
                    result.not_run = Some(why);
                }
            }
        }
    }
    print_report(server, window, reps, &results);
    for (config, result) in CONFIGS.iter().zip(&results) {
        if let Some(why) = &result.not_run {
            problems.push(format!("{}, {}: not run: {why}", short(&server.name), config.label));
        }
    }
    Ok(problems)
}

fn short(name: &str) -> &str {
    name.split(' ').next().unwrap_or(name)
}

enum Measured {
    Sample { sample: Sample, summary: Option<Value>, problem: Option<String> },
    NotRun(String),
}

fn measure(ktrace: &Path, server: &Server, config: &Config, window: Duration) -> Result<Measured> {
    let Some(flags) = config.flags else {
        let (sample, problem) = load_window(server, window)?;
        return Ok(Measured::Sample { sample, summary: None, problem });
    };
    let mut args: Vec<String> =
        ["--pid", &server.pid.to_string(), "--funcs", FUNCS, "--json"].iter().map(|s| s.to_string()).collect();
    args.extend(flags.iter().map(|s| s.to_string()));
    let mut traced = Ktrace::spawn(ktrace, &args)?;
    match traced.wait_live(ATTACH_TIMEOUT)? {
        Start::Live(..) => {}
        Start::Rejected(why) => return Ok(Measured::NotRun(format!("ktrace attach rejects it: {why}"))),
    }
    thread::sleep(SETTLE);
    let (mut sample, mut problem) = load_window(server, window)?;
    if !traced.is_running() {
        problem = Some("ktrace exited during the window".into());
    }
    traced.interrupt();
    let Finished { stdout, stderr, .. } = traced.finish(DETACH_TIMEOUT)?;
    let summary: Value = serde_json::from_str(&stdout)
        .with_context(|| format!("ktrace's --json summary is not JSON:\n{stdout}\n{}", excerpt(&stderr)))?;
    if let Some(want) = config.mode
        && summary["mode"].as_str() != Some(want)
    {
        return Ok(Measured::NotRun(format!("ktrace ran in {} mode, not {want}", summary["mode"])));
    }
    let calls = total_calls(&summary);
    if calls == 0 {
        problem = Some("ktrace counted no call of any traced function".into());
    }
    sample.hits_per_request = Some(calls as f64 / sample.requests.max(1) as f64);
    Ok(Measured::Sample { sample, summary: Some(summary), problem })
}

/// One wrk run, with the server's CPU time around it.
fn load_window(server: &Server, window: Duration) -> Result<(Sample, Option<String>)> {
    let before = cpu_split_seconds(server.pid)?;
    let run = server.wrk.run(window)?;
    let after = cpu_split_seconds(server.pid)?;
    let (user, sys) = (after.0 - before.0, after.1 - before.1);
    let cpu = user + sys;
    let problem = if run.requests == 0 {
        Some("wrk completed no request".to_string())
    } else if run.non_2xx > 0 {
        Some(format!("{} of {} responses were not 2xx", run.non_2xx, run.requests))
    } else {
        None
    };
    let sample = Sample {
        per_second: run.per_second,
        requests: run.requests,
        cpu_us_per_request: cpu * 1e6 / run.requests.max(1) as f64,
        sys_us_per_request: sys * 1e6 / run.requests.max(1) as f64,
        hits_per_request: None,
    };
    Ok((sample, problem))
}

/// Calls counted in a summary, all functions: entry probe hits (stack-growth
/// re-entries aside). They include the 2 s before the window and the
/// server's own background calls, so per request they are a slight
/// overestimate.
fn total_calls(summary: &Value) -> u64 {
    summary["functions"].as_array().map_or(0, |f| f.iter().filter_map(|f| f["calls"].as_u64()).sum())
}

/// (symbol, calls, has a p50) of every function of a summary with calls > 0.
fn called_functions(summary: &Value) -> Vec<(String, u64, bool)> {
    let Some(functions) = summary["functions"].as_array() else { return Vec::new() };
    functions
        .iter()
        .filter_map(|f| {
            let calls = f["calls"].as_u64().filter(|&c| c > 0)?;
            let symbol = f["symbol"].as_str().unwrap_or("?").to_string();
            Some((symbol, calls, f["latency_ns"]["p50"].is_u64()))
        })
        .collect()
}

fn print_report(server: &Server, window: Duration, reps: usize, results: &[ConfigResult]) {
    let rps: Vec<Option<f64>> =
        results.iter().map(|r| median(&r.samples.iter().map(|s| s.per_second).collect::<Vec<_>>())).collect();
    let cpu: Vec<Option<f64>> =
        results.iter().map(|r| median(&r.samples.iter().map(|s| s.cpu_us_per_request).collect::<Vec<_>>())).collect();
    let sys: Vec<Option<f64>> =
        results.iter().map(|r| median(&r.samples.iter().map(|s| s.sys_us_per_request).collect::<Vec<_>>())).collect();
    let hits: Vec<Option<f64>> = results
        .iter()
        .map(|r| median(&r.samples.iter().filter_map(|s| s.hits_per_request).collect::<Vec<_>>()))
        .collect();
    // Throughput kept, by requests/s and by CPU per request (the share of
    // untraced throughput a CPU-bound server would keep).
    let by_rps = |i: usize| Some(rps[i]? / rps[UNTRACED]?);
    let by_cpu = |i: usize| Some(cpu[UNTRACED]? / cpu[i]?);
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0));

    println!();
    println!(
        "throughput of {}, PID {}: wrk -t{THREADS} -c{CONNECTIONS}, GETs of one configmap with {} token, {} s windows, \
         {reps} interleaved passes; traced: --funcs {FUNCS}",
        server.name,
        server.pid,
        server.token_of,
        window.as_secs()
    );
    println!(
        "{:<28} {:>9} {:>8} {:>11} {:>8} {:>11} {:>9}  PASSES (req/s; µs CPU/req)",
        "CONFIGURATION", "REQ/S", "VS UNTR", "µs CPU/REQ", "VS UNTR", "µs SYS/REQ", "HITS/REQ"
    );
    for (i, (config, result)) in CONFIGS.iter().zip(results).enumerate() {
        if let Some(why) = &result.not_run {
            println!("{:<28} not run: {why}", config.label);
            continue;
        }
        let passes: Vec<String> =
            result.samples.iter().map(|s| format!("{:.0}; {:.0}", s.per_second, s.cpu_us_per_request)).collect();
        println!(
            "{:<28} {:>9} {:>8} {:>11} {:>8} {:>11} {:>9}  {}",
            config.label,
            rps[i].map_or("-".into(), |v| format!("{v:.1}")),
            if i == UNTRACED { "-".into() } else { pct(by_rps(i)) },
            cpu[i].map_or("-".into(), |v| format!("{v:.0}")),
            if i == UNTRACED { "-".into() } else { pct(by_cpu(i)) },
            sys[i].map_or("-".into(), |v| format!("{v:.0}")),
            hits[i].map_or("-".into(), |v| format!("{v:.1}")),
            passes.join(" | ")
        );
    }
    // What one entry hit costs in the server, from count-only against
    // untraced: the figure the budget's calibrated per-hit cost stands for.
    if let (Some(c), Some(u), Some(h)) = (cpu[COUNT_ONLY], cpu[UNTRACED], hits[COUNT_ONLY])
        && h > 0.0
    {
        let (sc, su) = (sys[COUNT_ONLY].unwrap_or(0.0), sys[UNTRACED].unwrap_or(0.0));
        println!(
            "count-only costs {:.1} µs of CPU per request over untraced ({:.1} µs of it in the kernel): \
             {:.2} µs per entry hit at {h:.1} hits per request",
            c - u,
            sc - su,
            (c - u) / h
        );
    }
    if let (Some(b), Some(u), Some(h)) = (cpu[BARE], cpu[UNTRACED], hits[BARE])
        && h > 0.0
    {
        let (sb, su) = (sys[BARE].unwrap_or(0.0), sys[UNTRACED].unwrap_or(0.0));
        println!(
            "bare entry probes (the kernel's trap and a counter, no ktrace program) cost {:.1} µs of CPU per request \
             over untraced ({:.1} µs of it in the kernel): {:.2} µs per hit; they keep {} by req/s and {} by \
             CPU/request (no count-only program costs less at these sites)",
            b - u,
            sb - su,
            (b - u) / h,
            pct(by_rps(BARE)),
            pct(by_cpu(BARE))
        );
    }
    print_hits_by_function(&results[COUNT_ONLY]);
    for (i, goal) in [(COUNT_ONLY, COUNT_ONLY_GOAL), (DEFAULT_LATENCY, DEFAULT_LATENCY_GOAL)] {
        let what = format!("goal: {} keeps >= {:.0}% of untraced", CONFIGS[i].label, goal * 100.0);
        let show = |v: Option<f64>| {
            v.map_or("not measured".to_string(), |v| format!("{:.1}% ({})", v * 100.0, verdict(v >= goal)))
        };
        println!("{what}: by req/s {}; by CPU/request {}", show(by_rps(i)), show(by_cpu(i)));
    }
    let latency = &results[DEFAULT_LATENCY];
    if latency.samples.is_empty() {
        println!("goal: a latency_ns.p50 for every called function (default budget): not measured");
    } else if latency.missing_p50.is_empty() {
        println!(
            "goal: a latency_ns.p50 for every called function (default budget): pass ({} called functions over {} runs)",
            latency.called,
            latency.samples.len()
        );
    } else {
        println!(
            "goal: a latency_ns.p50 for every called function (default budget): MISS ({} of {} called functions over {} runs)",
            latency.missing_p50.len(),
            latency.called,
            latency.samples.len()
        );
        for (rep, symbol, calls) in &latency.missing_p50 {
            println!("MISS: pass {rep}: {symbol}: {calls} calls, no latency_ns.p50");
        }
    }
}

/// Where count-only's entry hits come from: the functions hit at least once
/// per 20 requests, most hit first.
fn print_hits_by_function(count_only: &ConfigResult) {
    let requests = count_only.samples.iter().map(|s| s.requests).sum();
    if requests == 0 {
        return;
    }
    let rows = hits_by_function(&count_only.calls_by_function, requests, 0.05);
    println!("count-only hits per request by function (>= 0.05; all runs):");
    for (symbol, per_request) in rows {
        println!("  {per_request:>6.2}  {symbol}");
    }
}

/// (symbol, calls per request) of the functions called at least `min` times
/// per request, most called first.
fn hits_by_function(calls: &BTreeMap<String, u64>, requests: u64, min: f64) -> Vec<(String, f64)> {
    let mut rows: Vec<(String, f64)> = calls
        .iter()
        .map(|(symbol, &calls)| (symbol.clone(), calls as f64 / requests as f64))
        .filter(|&(_, per_request)| per_request >= min)
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rows
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{api_path, called_functions, hits_by_function};

    #[test]
    fn the_get_path_of_an_etcd_key() {
        assert_eq!(
            api_path("/registry/configmaps/ns-1/load-7-0").unwrap(),
            "/api/v1/namespaces/ns-1/configmaps/load-7-0"
        );
        assert!(api_path("/registry/secrets/ns/x").is_err());
        assert!(api_path("/registry/configmaps/no-name").is_err());
    }

    #[test]
    fn called_functions_and_whether_they_have_a_p50() {
        let summary = serde_json::json!({
            "mode": "latency",
            "functions": [
                { "symbol": "a", "calls": 5, "latency_ns": { "p50": 10, "p90": 20, "p99": 30, "max": 31, "sum": 60 } },
                { "symbol": "b", "calls": 0, "latency_ns": null },
                { "symbol": "c", "calls": 3, "latency_ns": null },
            ]
        });
        assert_eq!(called_functions(&summary), vec![("a".to_string(), 5, true), ("c".to_string(), 3, false)]);
    }

    #[test]
    fn hits_by_function_keeps_the_frequent_ones_most_hit_first() {
        let calls: BTreeMap<String, u64> =
            [("a".to_string(), 100), ("b".to_string(), 600), ("c".to_string(), 4), ("d".to_string(), 100)].into();
        assert_eq!(
            hits_by_function(&calls, 100, 0.05),
            vec![("b".to_string(), 6.0), ("a".to_string(), 1.0), ("d".to_string(), 1.0)]
        );
    }
}
