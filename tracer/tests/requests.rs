//! Requests, not functions, on the real kube-apiserver v1.36.3 and a real
//! etcd: alice makes N creates and M gets of configmaps in her namespace,
//! ktrace traces the request path from the outermost handler down to etcd,
//! and `ktrace flame --output requests.json` must hold exactly those
//! requests, each with its phases nested inside it, even though every
//! create runs on three goroutines (the connection's, the timeout filter's
//! and the finisher's).

mod common;

use std::{collections::BTreeMap, path::Path, process::Command, sync::Mutex};

use analyzer::{
    requests::{self, NodeKind, PHASES},
    trace,
};
use common::{Trace, require_bpf};
use serde_json::Value;
use testkit::{Etcd, KubeApiserver, KubeVariant, LoadSpec, kube::ETCD_PREFIX};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const FUNCS: &str = "request,authn,authz,admission,handlers,registry,storage";

fn ktrace(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ktrace")).args(args).output().expect("run ktrace")
}

/// One traced load on `v`: the trace, alice's namespace and the created keys.
fn traced_load(v: KubeVariant, dir: &Path, spec: &LoadSpec) -> (trace::Trace, String, Vec<String>) {
    let etcd = Etcd::start().expect("start etcd");
    let api = KubeApiserver::start(v, &etcd).unwrap_or_else(|e| panic!("start kube-apiserver {v}: {e:#}"));
    let path = dir.join("req.trace");
    // The stripped build gets no --symbols: goroutine ids and the request
    // fields come from ktrace's tables of Go releases.
    let extra = ["--args", "--output", path.to_str().unwrap()];
    let t = Trace::start(api.pid(), FUNCS, &extra);
    let report = api.load(spec).expect("load as alice");
    assert_eq!(report.errors, 0);
    let (_summary, _) = t.finish();
    let trace = trace::read(std::io::BufReader::new(std::fs::File::open(&path).unwrap())).expect("a readable trace");
    (trace, api.namespace().to_string(), report.keys)
}

fn str_arg<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get("args")?.get(key)?.as_str()
}

fn check(v: KubeVariant) {
    require_bpf();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    // Concurrency 3: requests overlap, on several connections.
    let spec = LoadSpec { creates: 8, gets: 5, concurrency: 3, ..Default::default() };
    let (trace, ns, keys) = traced_load(v, dir.path(), &spec);

    // The analyzer's view, printed for whoever reads a failure.
    let stitched = requests::stitch(&trace);
    if let Ok(rep) = analyzer::report::build(&trace, None)
        && let Some(r) = &rep.requests
    {
        eprintln!("{}", analyzer::report::table::requests(r));
    }
    let creates_path = format!("/api/v1/namespaces/{ns}/configmaps");
    let creates: Vec<&requests::Request> = stitched
        .requests
        .iter()
        .filter(|r| r.method.as_deref() == Some("POST") && r.path.as_deref() == Some(&*creates_path))
        .collect();
    assert_eq!(creates.len(), spec.creates as usize, "{v}: creates; notes {:?}", stitched.notes);
    for r in &stitched.requests {
        assert_eq!(r.phase_ns.iter().sum::<u64>(), r.dur_ns, "{v}: phases add up to the wall time of {}", r.title());
    }
    // Each create hops goroutines (timeout filter, finisher): its calls ran
    // on at least three goroutines and are still one request.
    for r in &creates {
        let goids: std::collections::BTreeSet<u64> = r
            .tree
            .walk()
            .into_iter()
            .filter_map(|(_, n)| match n.kind {
                NodeKind::Call(i) | NodeKind::Request(i) => trace.calls[i].goid,
                NodeKind::Phase(_) => None,
            })
            .collect();
        assert!(goids.len() >= 3, "{v}: a create on {goids:?}: the request's goroutines were not followed");
        for p in ["authn", "authz", "admission", "storage"] {
            let i = PHASES.iter().position(|x| *x == p).unwrap();
            assert!(r.phase_ns[i] > 0, "{v}: create {} has no {p} time: {:?}", r.title(), r.phase_ns);
        }
    }

    // The timeline export.
    let trace_path = dir.path().join("req.trace");
    let out_path = dir.path().join("requests.json");
    let out = ktrace(&["flame", "--trace", trace_path.to_str().unwrap(), "--output", out_path.to_str().unwrap()]);
    assert!(out.status.success(), "{v}: ktrace flame: {}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&std::fs::read(&out_path).unwrap()).expect("JSON");
    let events = doc["traceEvents"].as_array().expect("traceEvents");
    let complete: Vec<&Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    let requests: Vec<&Value> = complete.iter().filter(|e| e["cat"] == "request").copied().collect();
    let named = |name: &str| requests.iter().filter(|e| e["name"] == name).count();
    assert_eq!(named(&format!("POST {creates_path}")), spec.creates as usize, "{v}: POST requests in requests.json");
    let gets = requests
        .iter()
        .filter(|e| e["name"].as_str().is_some_and(|n| n.starts_with(&format!("GET {creates_path}/"))))
        .count();
    assert_eq!(gets, spec.gets as usize, "{v}: GET requests in requests.json");

    let mut stored_keys = Vec::new();
    for req in &requests {
        let (rs, rd) = (req["ts"].as_f64().unwrap(), req["dur"].as_f64().unwrap());
        let re = rs + rd;
        let inside: Vec<&Value> =
            complete.iter().filter(|e| e["tid"] == req["tid"] && e["cat"] != "request").copied().collect();
        // No phase or call extends outside its request (timestamps are µs
        // with ns precision).
        for e in &inside {
            let (s, d) = (e["ts"].as_f64().unwrap(), e["dur"].as_f64().unwrap());
            assert!(s >= rs - 1e-3 && s + d <= re + 1e-3, "{v}: {e} outside {req}");
        }
        // Top-level phases: not inside another phase.
        let phases: Vec<(f64, f64)> = inside
            .iter()
            .filter(|e| e["cat"] == "phase")
            .map(|e| (e["ts"].as_f64().unwrap(), e["dur"].as_f64().unwrap()))
            .collect();
        let top: f64 = phases
            .iter()
            .filter(|(s, d)| !phases.iter().any(|(s2, d2)| (s2, d2) != (s, d) && s2 <= s && s + d <= s2 + d2))
            .map(|(_, d)| d)
            .sum();
        assert!(top <= rd + 1e-3, "{v}: top-level phases {top} µs > request {rd} µs");
        if req["name"] == format!("POST {creates_path}") {
            let has = |p: &str| inside.iter().any(|e| e["cat"] == "phase" && e["name"] == p);
            for p in ["authn", "authz", "admission", "storage"] {
                assert!(has(p), "{v}: create without a {p} phase: {req}");
            }
            // The storage span carries the key the create wrote.
            let key = inside
                .iter()
                .filter(|e| {
                    e["cat"] == "call" && e["name"].as_str().is_some_and(|n| n.ends_with("etcd3.(*store).Create"))
                })
                .filter_map(|e| str_arg(e, "key"))
                .next()
                .unwrap_or_else(|| panic!("{v}: no etcd3 Create with a key in {req}"));
            stored_keys.push(format!("{ETCD_PREFIX}{}", key.trim_start_matches(ETCD_PREFIX)));
        }
    }
    stored_keys.sort();
    let mut want = keys.clone();
    want.sort();
    assert_eq!(stored_keys, want, "{v}: each create's storage span carries the key it wrote");

    // Calls that ran on other goroutines of a request are on its row.
    let rows: BTreeMap<String, usize> = requests.iter().map(|e| (e["tid"].to_string(), 1)).collect();
    assert_eq!(rows.len(), requests.len(), "{v}: one row (tid) per request");

    if v == KubeVariant::Release {
        waterfalls_in_chromium(dir.path(), &trace_path, &creates_path, &spec);
    }
}

/// The HTML report's request section, rendered by headless Chromium: a
/// screenshot, and the DOM after layout (phase and kind tables, one
/// waterfall per slow request, every bar inside its track).
fn waterfalls_in_chromium(dir: &Path, trace_path: &Path, creates_path: &str, spec: &LoadSpec) {
    let chromium = Path::new("/usr/bin/chromium");
    if !chromium.is_file() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium is not installed (cargo xtask setup installs it)"
        );
        eprintln!("SKIPPED: chromium is not installed");
        return;
    }
    let html = dir.join("report.html");
    let out = ktrace(&["flame", "--trace", trace_path.to_str().unwrap(), "--output", html.to_str().unwrap()]);
    assert!(out.status.success(), "ktrace flame: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    // The server may serve requests of its own while the trace runs (a GET
    // of /openapi/v3 was seen), so the load's rows are checked by kind.
    let kind_count = |kind: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(kind) && l[kind.len()..].starts_with(' '))?;
        line[kind.len()..].split_whitespace().next()?.parse().ok()
    };
    assert_eq!(kind_count("create configmaps"), Some(u64::from(spec.creates)), "{text}");
    assert_eq!(kind_count("get configmaps"), Some(u64::from(spec.gets)), "{text}");
    let total: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("REQUESTS: "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no REQUESTS line: {text}"));
    assert!(total >= u64::from(spec.creates + spec.gets), "{total} requests: {text}");
    let base = |c: &mut Command| {
        c.args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,2400"])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .env("HOME", dir);
    };
    let shot = dir.join("report.png");
    let mut c = Command::new(chromium);
    base(&mut c);
    let out = c.arg(format!("--screenshot={}", shot.display())).arg(&html).output().unwrap();
    assert!(shot.is_file(), "no screenshot: {}", String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "screenshot of {} bytes", png.len());
    if let Ok(keep) = std::env::var("KTRACE_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }

    let mut c = Command::new(chromium);
    base(&mut c);
    let out = c.arg("--dump-dom").arg(&html).output().unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("<section id=\"requests\""), "no requests section: {}", String::from_utf8_lossy(&out.stderr));
    let section = &dom[dom.find("<section id=\"requests\"").unwrap()..];
    let phases_table = &section[section.find("<table id=\"phases\"").expect("a phase table")..];
    let phases_table = &phases_table[..phases_table.find("</table>").unwrap()];
    assert_eq!(phases_table.matches("<tr>").count(), 1 + PHASES.len(), "header + one row per phase");
    assert!(section.contains("<table id=\"kinds\""));
    let waterfalls: Vec<&str> = section.split("<div class=\"waterfall\"").skip(1).collect();
    assert_eq!(waterfalls.len(), analyzer::report::SLOWEST, "one waterfall per slow request");
    for w in &waterfalls {
        assert!(w.contains("data-cat=\"request\"") && w.contains("data-cat=\"phase\""), "{w}");
        // Every bar lies inside its track: left + width ≤ 100 %.
        for style in w.split("class=\"wf-bar").skip(1) {
            let num = |key: &str| -> f64 {
                let at = style.find(key).unwrap() + key.len();
                style[at..].split('%').next().unwrap().parse().unwrap()
            };
            let (left, width) = (num("left:"), num("width:"));
            assert!(left >= 0.0 && width >= 0.0 && left + width <= 100.001, "bar at {left}% + {width}%");
        }
    }
    assert!(section.contains(&format!("POST {creates_path}")) || section.contains(&format!("GET {creates_path}/")));
}

#[test]
fn requests_are_stitched_across_goroutines_release() {
    check(KubeVariant::Release);
}

#[test]
fn requests_are_stitched_across_goroutines_stripped() {
    check(KubeVariant::Stripped);
}

#[test]
fn requests_are_stitched_across_goroutines_debug() {
    check(KubeVariant::Debug);
}
