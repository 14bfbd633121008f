//! Root eBPF tests of what `ktrace attach` records beyond counts: captured
//! arguments in the trace file, kill safety under load, and the per-function
//! rate ceiling. Real uprobes on the apiserver-shaped target, real etcd.

mod common;

use std::{collections::BTreeSet, sync::Arc, thread, time::Duration};

use analyzer::trace::{self, ArgValue};
use common::{Load, STORE, Trace, calls, require_bpf, sites, text_restored};
use testkit::{Apiserver, Etcd, LoadSpec, Variant};

/// The `key` argument captured at every `(*store).Create` entry equals the
/// keys the target wrote to etcd, and the trace file reads back with exact
/// per-function totals, stacks and errors.
#[test]
fn captured_keys_equal_the_keys_in_etcd() {
    require_bpf();
    let etcd = Etcd::start().expect("start etcd");
    let api = Apiserver::start(Variant::Optimized, &etcd).expect("start the target");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.trace");
    let funcs = format!("{STORE}.Create,{STORE}.Get");
    let trace = Trace::start(api.pid(), &funcs, &["--args", "--stacks", "--output", path.to_str().unwrap()]);
    let spec = LoadSpec {
        namespace: "keys".into(),
        creates: 17,
        gets: 5,
        missing_gets: 3,
        concurrency: 4,
        ..Default::default()
    };
    let report = api.load(&spec).expect("drive load");
    let (summary, _) = trace.finish();

    let t = trace::read(std::io::BufReader::new(std::fs::File::open(&path).unwrap())).expect("a readable trace");
    let create = t.header().unwrap().functions.iter().find(|f| f.symbol == format!("{STORE}.Create")).unwrap().id;
    let get = t.header().unwrap().functions.iter().find(|f| f.symbol == format!("{STORE}.Get")).unwrap().id;
    assert_eq!(t.header().unwrap().functions[create as usize].groups, ["storage"]);
    let captured: Vec<String> = t
        .calls
        .iter()
        .filter(|c| c.func == create)
        .map(|c| match c.args.get("key") {
            Some(ArgValue::Str(k)) => k.clone(),
            other => panic!("no key captured: {other:?} in {c:?}"),
        })
        .collect();
    let in_etcd: BTreeSet<String> = etcd.keys_with_prefix("/registry/configmaps/keys/").unwrap().into_iter().collect();
    assert_eq!(captured.len(), spec.creates as usize, "one event per call, none dropped at this rate");
    assert_eq!(captured.iter().cloned().collect::<BTreeSet<_>>(), in_etcd);
    assert_eq!(in_etcd, report.keys.iter().cloned().collect::<BTreeSet<_>>());

    // Errors per call: exactly the missing gets.
    let get_errors = t.calls.iter().filter(|c| c.func == get && c.error == Some(true)).count();
    assert_eq!(get_errors, spec.missing_gets as usize);
    // Stacks: the store is called by the generic registry.
    let c = t.calls.iter().find(|c| c.func == create).unwrap();
    assert!(c.stack.iter().any(|f| f.contains("registry.(*Store).Create")), "stack {:?}", c.stack);
    assert!(c.dur_ns >= 2_000_000 && c.g != 0, "{c:?}");
    // Totals in the file agree with the summary.
    let totals = t.functions.iter().find(|f| f.func == create).unwrap();
    assert_eq!(totals.calls, calls(&summary, &format!("{STORE}.Create")));
    assert_eq!(totals.histogram.iter().map(|b| b.count).sum::<u64>(), u64::from(spec.creates));
    assert_eq!(t.end.as_ref().expect("an end record").dropped_events, 0);
}

/// SIGKILL at random moments while the target serves load, 20 times: the
/// target stays alive and its text equals the file at every probe site.
#[test]
fn kill_nine_under_load_twenty_times() {
    require_bpf();
    let etcd = Etcd::start().expect("start etcd");
    let api = Arc::new(Apiserver::start(Variant::Optimized, &etcd).expect("start the target"));
    let spec = "storage,authn,authz,admission";
    let sites = sites(api.binary(), spec);
    let load = Load::start(&api, |round| LoadSpec {
        namespace: format!("kill-{round}"),
        creates: 10,
        gets: 10,
        updates: 5,
        deletes: 5,
        missing_gets: 2,
        concurrency: 4,
    });
    // A fixed-seed generator: "random" moments that a failure can reproduce.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for i in 0..20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let trace = Trace::start(api.pid(), spec, &["--args", "--stacks"]);
        thread::sleep(Duration::from_millis(x % 700));
        let mut child = trace.child;
        child.kill().expect("SIGKILL ktrace");
        child.wait().expect("reap ktrace");
        assert!(api.is_alive(), "the target died after kill {i}");
        text_restored(api.pid(), &sites).unwrap_or_else(|e| panic!("kill {i}: {e}"));
    }
    assert!(load.stop() > 0);
    assert_eq!(api.probe("GET", "/healthz", true).unwrap(), 200);
}

/// A function over --max-rate is detached with a warning; the target keeps
/// serving and the other functions' counts stay exact.
#[test]
fn over_max_rate_is_detached_and_the_rest_stays_exact() {
    require_bpf();
    let etcd = Etcd::start().expect("start etcd");
    let api = Apiserver::start(Variant::Optimized, &etcd).expect("start the target");
    let recurse = "k8s.io/kubernetes/pkg/ktracetest.Recurse";
    let create = format!("{STORE}.Create");
    let trace = Trace::start(api.pid(), &format!("{recurse},{create}"), &["--max-rate", "1000"]);
    assert_eq!(api.probe("POST", "/ktrace/recurse?depth=20000", true).unwrap(), 200);
    // The ceiling is checked once a second.
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(api.probe("POST", "/ktrace/recurse?depth=20000", true).unwrap(), 200, "still serving");
    let spec = LoadSpec { namespace: "rate".into(), creates: 9, concurrency: 3, ..Default::default() };
    assert_eq!(api.load(&spec).unwrap().errors, 0);
    let (summary, stderr) = trace.finish();

    assert!(
        stderr.iter().any(|l| l.contains(recurse) && l.contains("over --max-rate 1000") && l.contains("detached")),
        "no detach warning: {stderr:?}"
    );
    assert_eq!(calls(&summary, recurse), 20_000, "counted until detached, not after");
    assert_eq!(calls(&summary, &create), 9);
    assert!(api.is_alive());
}

/// On a terminal the table is redrawn about once a second, with the
/// estimated overhead from the measured per-hit cost.
#[test]
fn live_table_on_a_terminal() {
    require_bpf();
    let etcd = Etcd::start().expect("start etcd");
    let api = Arc::new(Apiserver::start(Variant::Optimized, &etcd).expect("start the target"));
    let load = Load::start(&api, |round| LoadSpec {
        namespace: format!("live-{round}"),
        creates: 5,
        gets: 5,
        ..Default::default()
    });
    // script(1) gives ktrace a pseudo-terminal as stdout and stderr.
    let cmd = format!("{} attach --pid {} --funcs storage --duration 4s", env!("CARGO_BIN_EXE_ktrace"), api.pid());
    let out = std::process::Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().expect("run script(1)");
    load.stop();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let redraws = text.matches("estimated probe overhead: ").count();
    assert!((2..=5).contains(&redraws), "{redraws} redraws in 4 s: {text}");
    assert!(text.contains("% of a CPU"), "an overhead estimate: {text}");
    assert!(text.contains("\x1b[J"), "redrawn in place: {text}");
    assert!(text.contains(&format!("{STORE}.Create")), "{text}");
}

/// End to end on a live target: `attach --pprof` stores the CPU profile of
/// the trace's own window in the trace file, and `flame` merges the two into
/// a report where the storage calls have wall time, CPU time and an off-CPU
/// share (Create sleeps, so most of its wall time is off CPU).
#[test]
fn attach_with_pprof_then_flame_report() {
    require_bpf();
    let etcd = Etcd::start().expect("start etcd");
    let api = Arc::new(Apiserver::start(Variant::Optimized, &etcd).expect("start the target"));
    let load = Load::start(&api, |round| LoadSpec {
        namespace: format!("merge-{round}"),
        creates: 10,
        gets: 10,
        concurrency: 4,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let trace_path = dir.path().join("merged.trace");
    let url = format!("{}/debug/pprof/profile", api.url());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ktrace"))
        .args(["attach", "--pid", &api.pid().to_string(), "--funcs", "storage,authn", "--duration", "4s"])
        .args(["--output", trace_path.to_str().unwrap(), "--pprof", &url])
        .args(["--kubeconfig", api.kubeconfig().to_str().unwrap(), "--json"])
        .output()
        .expect("run ktrace attach");
    load.stop();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The kubeconfig's token goes to the server and nowhere else: not to
    // stdout, stderr, or the trace file (nor, below, the report).
    let token = api.token().unwrap();
    assert!(!stderr.contains(&token), "the token must never be printed");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&token), "the token is in the JSON summary");
    assert!(
        !String::from_utf8_lossy(&std::fs::read(&trace_path).unwrap()).contains(&token),
        "the token is in the trace"
    );

    // A token the server refuses: the error names the cause, not the token.
    let wrong = "not-the-token-0123456789abcdef";
    let bad_kubeconfig = dir.path().join("kubeconfig-bad");
    std::fs::write(&bad_kubeconfig, std::fs::read_to_string(api.kubeconfig()).unwrap().replace(&token, wrong)).unwrap();
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_ktrace"))
        .args(["attach", "--pid", &api.pid().to_string(), "--funcs", "storage", "--duration", "1s"])
        .args(["--output", dir.path().join("bad.trace").to_str().unwrap(), "--pprof", &url])
        .args(["--kubeconfig", bad_kubeconfig.to_str().unwrap()])
        .output()
        .expect("run ktrace attach");
    let bad_err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(3), "{bad_err}");
    assert!(bad_err.contains("401"), "{bad_err}");
    let everything = format!("{bad_err}{}", String::from_utf8_lossy(&bad.stdout));
    assert!(!everything.contains(wrong) && !everything.contains(&token), "a token was printed: {everything}");

    let t = trace::read(std::io::BufReader::new(std::fs::File::open(&trace_path).unwrap())).unwrap();
    assert_eq!(t.profiles.len(), 1, "the CPU profile is stored with the trace");
    assert_eq!(t.profiles[0].duration_ns, 4_000_000_000);

    let report = dir.path().join("report.html");
    let flame = std::process::Command::new(env!("CARGO_BIN_EXE_ktrace"))
        .args(["flame", "--trace", trace_path.to_str().unwrap(), "--output", report.to_str().unwrap()])
        .output()
        .expect("run ktrace flame");
    assert!(flame.status.success(), "{}", String::from_utf8_lossy(&flame.stderr));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).expect("report.json");
    let text = json.to_string();
    assert!(text.contains("etcd3.(*store).Create"), "{text}");
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("<svg") && html.contains("etcd3.(*store).Create"), "an HTML report with flamegraphs");
    for (name, text) in [("report.html", &html), ("report.json", &text)] {
        assert!(!text.contains(&token), "the kubeconfig's token is in {name}");
    }
    for stream in [&flame.stdout, &flame.stderr] {
        assert!(!String::from_utf8_lossy(stream).contains(&token), "ktrace flame printed the token");
    }
    // Create's wall time includes a 2 ms sleep per call; CPU is a fraction of it.
    let create = find_row(&json, &format!("{STORE}.Create")).expect("a Create row");
    let wall = create["wall_ns"].as_u64().expect("wall time");
    let cpu = create["cpu_ns"].as_u64().expect("CPU time from the stored profile");
    assert!(wall >= 2_000_000 * create["calls"].as_u64().unwrap(), "{create}");
    assert!(cpu < wall, "{create}");
    assert!(create["off_cpu_share"].as_f64().unwrap() > 0.5, "Create mostly waits: {create}");
}

/// The report row named `name`, wherever the JSON nests it.
fn find_row<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    match v {
        serde_json::Value::Object(m) if m.get("name").and_then(|n| n.as_str()) == Some(name) => Some(v),
        serde_json::Value::Object(m) => m.values().find_map(|x| find_row(x, name)),
        serde_json::Value::Array(a) => a.iter().find_map(|x| find_row(x, name)),
        _ => None,
    }
}

/// Under a budget no function can meet, one called in a few bursts (31
/// creates) is still timed at every call: its least share is all of the
/// window, since it makes fewer than 100 calls a window (the hot loop of
/// tests/budget.rs is the one whose RETs rotate). Counts stay exact, and
/// after SIGTERM every site's text equals the file again.
#[test]
fn max_overhead_keeps_every_ret_of_a_rarely_called_function() {
    require_bpf();
    let etcd = Etcd::start().expect("start etcd");
    let api = Apiserver::start(Variant::Optimized, &etcd).expect("start the target");
    let create = format!("{STORE}.Create");
    let sites = sites(api.binary(), &create);
    // A budget no traced function can meet.
    let trace = Trace::start(api.pid(), &create, &["--max-overhead", "0.0001"]);
    let warm = LoadSpec { namespace: "budget-warm".into(), creates: 20, concurrency: 4, ..Default::default() };
    assert_eq!(api.load(&warm).unwrap().errors, 0);
    thread::sleep(Duration::from_millis(2500));
    let spec = LoadSpec { namespace: "budget".into(), creates: 11, concurrency: 2, ..Default::default() };
    assert_eq!(api.load(&spec).unwrap().errors, 0);
    // SIGTERM instead of SIGINT: the same clean end.
    // SAFETY: kill(2) on our own child's PID.
    unsafe { libc::kill(trace.child.id() as i32, libc::SIGTERM) };
    let out = trace.child.wait_with_output().unwrap();
    let stderr: Vec<String> = trace.stderr.iter().collect();
    assert!(out.status.success(), "{stderr:?}");
    let summary: analyzer::summary::Summary = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        !stderr.iter().any(|l| l.contains("sampled under the overhead budget") && l.contains(&create)),
        "{stderr:?}"
    );
    let f = common::function(&summary, &create);
    assert_eq!(f.sampled_fraction, Some(1.0), "{stderr:?}");
    let latency = f.latency_ns.expect("every create timed");
    // Each create waits for etcd: 31 of them sum to at least 31 × 1 ms.
    assert!(latency.p50 > 0 && latency.sum >= 31_000_000, "{latency:?}");
    assert!(stderr.iter().any(|l| l.contains("terminated")), "{stderr:?}");
    assert_eq!(calls(&summary, &create), 31, "counting goes on without the RET probes");
    text_restored(api.pid(), &sites).unwrap();
}

/// --count-only: entry probes only, exact counts, no latency or errors.
#[test]
fn count_only_counts_exactly_and_measures_nothing_else() {
    require_bpf();
    let etcd = Etcd::start().expect("start etcd");
    let api = Apiserver::start(Variant::Stripped, &etcd).expect("start the target");
    let trace = Trace::start(api.pid(), "storage", &["--count-only"]);
    let spec = LoadSpec { namespace: "count".into(), creates: 6, gets: 4, missing_gets: 2, ..Default::default() };
    assert_eq!(api.load(&spec).unwrap().errors, 0);
    let (summary, _) = trace.finish();
    assert_eq!(summary.mode, analyzer::summary::Mode::CountOnly);
    assert_eq!(calls(&summary, &format!("{STORE}.Create")), 6);
    let get = common::function(&summary, &format!("{STORE}.Get"));
    assert_eq!((get.calls, get.errors, get.latency_ns), (6, None, None));
}
