//! Root eBPF tests of `ktrace attach --serve-metrics`: the real
//! kube-apiserver (release build) on a real etcd, traced with `--funcs
//! storage`, scraped every second by a real Prometheus server; what PromQL
//! says (call counts, errors, `histogram_quantile(0.5, …)`) must agree with
//! ktrace's own `--json` summary, and `promtool check metrics` must pass on
//! a real scrape.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Trace, require_bpf};
use testkit::{Etcd, KubeApiserver, KubeVariant, LoadSpec, Prometheus, http_get};
use tracer_common::hist::{bucket_bounds, bucket_of};

const STORE: &str = "k8s.io/apiserver/pkg/storage/etcd3.(*store)";

/// `host:port` ktrace said it serves on.
fn served_addr(trace: &Trace) -> String {
    trace
        .before
        .iter()
        .find_map(|l| l.strip_prefix("ktrace: serving metrics on http://")?.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("ktrace did not print where it serves metrics: {:?}", trace.before))
        .to_string()
}

fn scrape(addr: &str) -> String {
    let (status, body) = http_get(addr, "/metrics").expect("scrape ktrace");
    assert_eq!(status, 200, "{body}");
    body
}

/// The sum of every `ktrace_calls_total` series of a scrape.
fn total_calls(body: &str) -> u64 {
    body.lines()
        .filter(|l| l.starts_with("ktrace_calls_total{"))
        .map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()).expect("an integer count"))
        .sum()
}

/// `promtool check metrics` on `body`: it must pass with nothing to say.
fn promtool_check(body: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (Debian package prometheus; `cargo xtask setup` installs it)");
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {:?}: {said}", out.status);
}

/// One value per `function` label of an instant query's result.
fn by_function(prom: &Prometheus, promql: &str) -> BTreeMap<String, f64> {
    prom.query(promql)
        .unwrap_or_else(|e| panic!("{e:#}"))
        .iter()
        .map(|r| {
            let f = r["metric"]["function"].as_str().expect("a function label").to_string();
            let v = r["value"][1].as_str().expect("a value").parse::<f64>().expect("a number");
            (f, v)
        })
        .collect()
}

#[test]
fn prometheus_agrees_with_the_summary() {
    require_bpf();
    let etcd = Etcd::start().expect("start etcd");
    let api = KubeApiserver::start(KubeVariant::Release, &etcd).unwrap_or_else(|e| panic!("{e:#}"));
    // Only the test namespace's keys count (decided in the kernel), and
    // calls nested in them: nothing moves once the load has ended, so the
    // last scrape and the final summary hold the same counts.
    let filter = format!("key=/configmaps/{}/*", api.namespace());
    let trace = Trace::start(api.pid(), "storage", &["--serve-metrics", "127.0.0.1:0", "--filter", &filter]);
    let addr = served_addr(&trace);
    assert_ne!(addr.rsplit(':').next(), Some("0"), "the real port is printed");
    let (status, _) = http_get(&addr, "/").expect("GET /");
    assert_eq!(status, 404, "any path but /metrics");
    assert_eq!(http_get(&addr, "/metrics/x").expect("GET").0, 404);

    let prom = Prometheus::start(std::slice::from_ref(&addr)).unwrap_or_else(|e| panic!("{e:#}"));
    let spec = LoadSpec { creates: 20, gets: 30, missing_gets: 7, deletes: 10, concurrency: 4, ..Default::default() };
    let report = api.load(&spec).expect("load as alice");
    assert_eq!(report.errors, 0);

    // Quiet now: wait until Prometheus has scraped the final counts.
    std::thread::sleep(Duration::from_millis(1500));
    let body = scrape(&addr);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, body.as_bytes()).unwrap();
    let zipped = gz.finish().unwrap().len();
    eprintln!("a scrape: {} lines, {} bytes, {zipped} gzipped", body.lines().count(), body.len());
    promtool_check(&body);
    let total = total_calls(&body);
    assert!(total >= u64::from(spec.creates + spec.gets + spec.missing_gets + spec.deletes), "{total}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = prom.query("sum(ktrace_calls_total)").unwrap_or_else(|e| panic!("{e:#}"));
        let v = seen.first().and_then(|r| r["value"][1].as_str()).and_then(|v| v.parse::<f64>().ok());
        if v == Some(total as f64) {
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus never saw {total} calls: {seen:?}\n{}", prom.log_tail(20));
        std::thread::sleep(Duration::from_millis(300));
    }
    // No counter went down between any two scrapes of the session.
    for family in ["ktrace_calls_total", "ktrace_errors_total", "ktrace_call_duration_seconds_bucket"] {
        let resets = prom.query(&format!("sum(resets({family}[10m]))")).unwrap();
        assert_eq!(resets.first().and_then(|r| r["value"][1].as_str()), Some("0"), "{family}: {resets:?}");
    }
    let up = prom.query("up{job=\"ktrace\"}").unwrap();
    assert_eq!(up.first().and_then(|r| r["value"][1].as_str()), Some("1"), "{up:?}");
    let calls = by_function(&prom, "ktrace_calls_total");
    let errors = by_function(&prom, "ktrace_errors_total");
    let p50 = by_function(&prom, "histogram_quantile(0.5, ktrace_call_duration_seconds_bucket)");
    let counts = by_function(&prom, "ktrace_call_duration_seconds_count");
    let info = prom.query("ktrace_target_info").unwrap();
    let fractions = by_function(&prom, "ktrace_sampled_fraction");
    let (summary, _) = trace.finish();
    drop(prom);

    let label = |k: &str| info[0]["metric"][k].as_str().unwrap_or_default().to_string();
    assert_eq!(label("kubernetes_version"), "v1.36.3", "{info:?}");
    assert_eq!(label("kubernetes_version_from"), "k8s.io/kubernetes");
    assert!(label("go_version").starts_with("go1."), "{info:?}");
    assert_eq!(label("pid"), api.pid().to_string());
    assert_eq!(label("binary"), api.binary().display().to_string());
    assert!(!label("build_id").is_empty(), "{info:?}");

    assert_eq!(calls[&format!("{STORE}.Create")], f64::from(spec.creates), "PromQL Create calls");
    assert_eq!(calls[&format!("{STORE}.Delete")], f64::from(spec.deletes), "PromQL Delete calls");
    assert_eq!(errors[&format!("{STORE}.Get")], f64::from(spec.missing_gets), "PromQL NotFound errors of Get");
    let mut compared = 0;
    for f in &summary.functions {
        eprintln!(
            "{}: ktrace calls {} errors {:?} p50 {:?} ns | PromQL calls {:?} errors {:?} p50 {:?} s count {:?}",
            f.symbol,
            f.calls,
            f.errors,
            f.latency_ns.map(|l| l.p50),
            calls.get(&f.symbol),
            errors.get(&f.symbol),
            p50.get(&f.symbol),
            counts.get(&f.symbol),
        );
        assert_eq!(calls.get(&f.symbol), Some(&(f.calls as f64)), "{}: calls", f.symbol);
        if let Some(e) = f.errors {
            assert_eq!(errors.get(&f.symbol), Some(&(e as f64)), "{}: errors", f.symbol);
        }
        // --no-budget: every RET probe stays attached.
        assert_eq!(fractions.get(&f.symbol), f.sampled_fraction.as_ref(), "{}: sampled fraction", f.symbol);
        let Some(latency) = f.latency_ns else { continue };
        // ktrace reports the largest whole ns of the median's bucket (or
        // the max); PromQL interpolates inside the same bucket, between
        // the previous bucket's le and this one's.
        let (lo, hi) = bucket_bounds(bucket_of(latency.p50));
        let promql_ns = p50[&f.symbol] * 1e9;
        assert!(
            promql_ns >= (lo - 1) as f64 - 0.5 && promql_ns <= (hi - 1) as f64 + 0.5,
            "{}: PromQL p50 {promql_ns} ns is not in ktrace's p50 bucket [{lo}, {hi}) of {}",
            f.symbol,
            latency.p50
        );
        compared += 1;
    }
    assert!(compared >= 3, "Create, Get and Delete at least have latency: {summary:#?}");
}

/// A port that cannot be bound is one line and exit 1, before any probe.
#[test]
fn a_busy_port_is_one_line_and_exit_1() {
    require_bpf();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_ktrace"))
        .args(["attach", "--pid", &std::process::id().to_string(), "--funcs", "storage", "--serve-metrics", &addr])
        .output()
        .expect("run ktrace");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with(&format!("ktrace: error: --serve-metrics {addr}: cannot listen: ")), "{stderr}");
}
