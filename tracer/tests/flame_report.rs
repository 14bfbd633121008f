//! `ktrace flame` on a trace: the latency export opened by `go tool pprof
//! -top`, and the merged HTML report opened in headless Chromium. The trace
//! is written with the tracer's own `TraceWriter`; the CPU profile with the
//! analyzer's profile builder. A missing tool fails the test under CI=true
//! and is reported as skipped otherwise.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use analyzer::{
    pprof::build::ProfileBuilder,
    trace::{Call, End, FORMAT, Header, Mode, TraceWriter, TracedFunction, VERSION},
};

const AUTHN: &str = "k8s.io/apiserver/pkg/endpoints/filters.withAuthentication.func1";
const HANDLER: &str = "k8s.io/apiserver/pkg/endpoints/handlers.createHandler.func1";
const CREATE: &str = "k8s.io/apiserver/pkg/storage/etcd3.(*store).Create";
const GET: &str = "k8s.io/apiserver/pkg/storage/etcd3.(*store).Get";

fn ktrace(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_ktrace")).args(args).output().expect("run ktrace");
    assert!(out.status.success(), "ktrace {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The tool's path, or `None` (skip) when it is missing outside CI.
fn require_tool(name: &str, candidates: &[&str]) -> Option<PathBuf> {
    let found = candidates.iter().map(PathBuf::from).find(|p| p.is_file()).or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).map(|d| d.join(name)).find(|p| p.is_file())
    });
    if found.is_none() {
        let msg = format!("{name} is not installed (cargo xtask setup installs it)");
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}");
        }
        eprintln!("SKIPPED: {msg}");
    }
    found
}

/// 200 requests: authn (1 ms self) → handler (2 ms self) → Create (5 ms) on
/// even requests and Get (0.5 ms) on odd ones, each on its own goroutine.
fn write_trace(path: &Path) {
    let f = |id, s: &str, g: &str| TracedFunction {
        id,
        symbol: s.into(),
        file: None,
        line: None,
        groups: vec![g.into()],
        phase: None,
    };
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        mode: Mode::Latency,
        pid: Some(4242),
        binary: "/usr/local/bin/kube-apiserver".into(),
        build_id: None,
        go_version: Some("go1.19.8".into()),
        start_unix_ns: 1_700_000_000_000_000_000,
        unredacted_args: Some(false),
        filter: None,
        functions: vec![f(0, AUTHN, "authn"), f(1, HANDLER, "handlers"), f(2, CREATE, "storage"), f(3, GET, "storage")],
    };
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut w = TraceWriter::new(file, &header).unwrap();
    let call = |func, g, start_ns, dur_ns, stack: &[&str]| Call {
        pid: None,
        func,
        g,
        goid: None,
        parent_goid: None,
        start_ns,
        dur_ns,
        error: Some(false),
        args: Default::default(),
        truncated: false,
        stack: stack.iter().map(|s| s.to_string()).collect(),
    };
    for i in 0..200u64 {
        let (g, t0) = (0xc000_0000 + i * 0x1000, i * 10_000_000);
        let (store, d) = if i % 2 == 0 { (2, 5_000_000) } else { (3, 500_000) };
        w.call(&call(0, g, t0, 3_000_000 + d, &["net/http.(*conn).serve"])).unwrap();
        w.call(&call(1, g, t0 + 500_000, 2_000_000 + d, &[AUTHN, "net/http.(*conn).serve"])).unwrap();
        w.call(&call(
            store,
            g,
            t0 + 1_000_000,
            d,
            &[
                "k8s.io/apiserver/pkg/registry/generic/registry.(*Store).Create",
                HANDLER,
                AUTHN,
                "net/http.(*conn).serve",
            ],
        ))
        .unwrap();
    }
    w.finish(&End { duration_ns: 2_000_000_000, dropped_events: 0, sampled_out: 0 }).unwrap();
}

#[test]
fn go_tool_pprof_reads_the_latency_export() {
    let Some(go) = require_tool("go", &["/usr/bin/go"]) else { return };
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.trace");
    write_trace(&trace);
    let pb = dir.path().join("latency.pb.gz");
    ktrace(&["flame", "--trace", trace.to_str().unwrap(), "--output", pb.to_str().unwrap()]);
    let out = Command::new(go)
        .args(["tool", "pprof", "-top", "-nodecount=10", "-sample_index=wall", "-unit=ms"])
        .arg(&pb)
        .env("HOME", dir.path())
        .env("PPROF_TMPDIR", dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "go tool pprof: {}", String::from_utf8_lossy(&out.stderr));
    // Self wall time: Create 100 × 5 ms = 500 ms, handler 400 ms, authn
    // 200 ms, Get 100 × 0.5 ms = 50 ms; 1150 ms in all.
    assert!(text.contains("of 1150ms total"), "{text}");
    let rows: Vec<(f64, &str)> = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            Some((cols.first()?.trim_end_matches("ms").parse().ok()?, *cols.last()?))
        })
        .filter(|(flat, _)| *flat > 0.0)
        .collect();
    let want = [(500.0, CREATE), (400.0, HANDLER), (200.0, AUTHN), (50.0, GET)];
    assert_eq!(rows.len(), want.len(), "{text}");
    assert!(text.contains("1150ms   100%  net/http.(*conn).serve"), "the root's cum is everything: {text}");
    for ((flat, name), (wflat, wname)) in rows.iter().zip(want) {
        assert_eq!((*name, *flat), (wname, wflat), "{text}");
    }
}

#[test]
fn the_merged_report_opens_in_headless_chromium() {
    let Some(chromium) = require_tool("chromium", &["/usr/bin/chromium"]) else { return };
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.trace");
    write_trace(&trace);
    // A CPU profile over the same window: Create on-CPU 100 ms of its 500.
    let mut b = ProfileBuilder::new(&[("samples", "count"), ("cpu", "nanoseconds")]);
    b.window(1_700_000_000_000_000_000, 2_000_000_000);
    b.sample(&["encoding/json.Marshal", CREATE, HANDLER, AUTHN, "net/http.(*conn).serve"], &[10, 100_000_000]);
    b.sample(&[AUTHN, "net/http.(*conn).serve"], &[5, 50_000_000]);
    let cpu = dir.path().join("cpu.pb.gz");
    std::fs::write(&cpu, b.encode_gzip()).unwrap();
    let html = dir.path().join("report.html");
    let out = ktrace(&[
        "flame",
        "--trace",
        trace.to_str().unwrap(),
        "--pprof",
        cpu.to_str().unwrap(),
        "--output",
        html.to_str().unwrap(),
        "--deterministic",
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("etcd3.(*store).Create") && table.contains("OFF-CPU"), "{table}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    let create = json["functions"].as_array().unwrap().iter().find(|f| f["name"] == CREATE).unwrap();
    assert_eq!(create["cpu_ns"], 100_000_000);
    assert!((create["off_cpu_share"].as_f64().unwrap() - 0.8).abs() < 1e-9, "{create}");

    let shot = dir.path().join("report.png");
    let base = |c: &mut Command| {
        c.args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1800"])
            .arg(format!("--user-data-dir={}", dir.path().join("profile").display()))
            .env("HOME", dir.path());
    };
    let mut c = Command::new(&chromium);
    base(&mut c);
    let out = c.arg(format!("--screenshot={}", shot.display())).arg(&html).output().unwrap();
    assert!(shot.is_file(), "no screenshot: {}", String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "screenshot of {} bytes", png.len());

    let mut c = Command::new(&chromium);
    base(&mut c);
    let out = c.arg("--dump-dom").arg(&html).output().unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("<table id=\"report\""), "no table in the DOM: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(dom.matches("<tr class=\"group\"").count(), 3, "authn, handlers, storage rows");
    for id in ["latency-flame", "cpu-flame"] {
        let at = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no {id} section"));
        assert!(dom[at..].contains("<svg"), "no svg in {id}");
    }
    assert!(dom.contains("etcd3.(*store).Create"));
}
