//! Root eBPF tests of tracing several processes of one binary: two real
//! kube-apiservers (release build) on one real etcd, named by `--pid A,B`;
//! and `--binary PATH`, which also picks up a process started after attach
//! and one restarted mid-trace. Each process's figures are its own: the
//! loads differ in size, and every count must be exactly its process's.

mod common;

use std::{sync::Mutex, time::Duration};

use analyzer::summary::Summary;
use common::{Trace, require_bpf};
use testkit::{Etcd, KubeApiserver, KubeVariant, LoadSpec};

const CREATE: &str = "k8s.io/apiserver/pkg/storage/etcd3.(*store).Create";
/// Only the test namespaces' configmaps count (decided in the kernel), so
/// the servers' own background writes cannot move a count.
const FILTER: &str = "key=/configmaps/ktrace-*";

/// The tests here start several kube-apiservers each: one at a time on two
/// cores, and `--binary` must not see another test's servers.
static SERIAL: Mutex<()> = Mutex::new(());

/// `(*store).Create` calls of process `pid` in `summary`, which must list
/// it exactly once.
fn creates_of(summary: &Summary, pid: u32) -> u64 {
    let entries: Vec<_> = summary.functions.iter().filter(|f| f.symbol == CREATE && f.pid == Some(pid)).collect();
    assert_eq!(entries.len(), 1, "{CREATE} of PID {pid} once in {:?}", summary.functions);
    entries[0].calls
}

fn load_creates(api: &KubeApiserver, creates: u32) {
    let spec = LoadSpec { creates, concurrency: 2, ..Default::default() };
    let report = api.load(&spec).unwrap_or_else(|e| panic!("{e:#}\n{}", api.log_tail(20)));
    assert_eq!((report.creates, report.errors), (creates, 0));
}

#[test]
fn two_apiservers_on_one_etcd_are_counted_apart() {
    require_bpf();
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let etcd = Etcd::start().expect("start etcd");
    let a = KubeApiserver::start(KubeVariant::Release, &etcd).unwrap_or_else(|e| panic!("{e:#}"));
    let b = KubeApiserver::start(KubeVariant::Release, &etcd).unwrap_or_else(|e| panic!("{e:#}"));
    let pids = format!("{},{}", a.pid(), b.pid());
    let extra = ["--filter", FILTER, "--serve-metrics", "127.0.0.1:0"];
    let mut trace = Trace::spawn(&[], &["--pid", &pids], "storage", &extra);
    let addr = trace
        .before
        .iter()
        .find_map(|l| l.strip_prefix("ktrace: serving metrics on http://")?.strip_suffix("/metrics"))
        .expect("ktrace says where it serves metrics")
        .to_string();
    // A's probes are announced first (Trace::spawn waited for that), then B's.
    trace.wait_for("B's probes", Duration::from_secs(60), |l| {
        l.contains(" probes on ") && l.contains(&format!("of PID {} ", b.pid()))
    });
    std::thread::scope(|s| {
        s.spawn(|| load_creates(&a, 7));
        s.spawn(|| load_creates(&b, 4));
    });
    // The metrics name each process: its own series, its own counts.
    let (status, body) = testkit::http_get(&addr, "/metrics").expect("scrape ktrace");
    assert_eq!(status, 200);
    let series = |pid: u32| {
        let head = format!("ktrace_calls_total{{function=\"{CREATE}\",group=\"storage\",pid=\"{pid}\"}} ");
        body.lines().find_map(|l| l.strip_prefix(&head)).map(str::to_string)
    };
    assert_eq!(series(a.pid()).as_deref(), Some("7"), "{body}");
    assert_eq!(series(b.pid()).as_deref(), Some("4"));
    for api in [&a, &b] {
        let info = format!("ktrace_target_info{{pid=\"{}\",", api.pid());
        assert_eq!(body.lines().filter(|l| l.starts_with(&info)).count(), 1, "{body}");
    }
    let (summary, stderr) = trace.finish();
    eprintln!("processes: {:?}", summary.processes);
    assert_eq!(summary.pid, None, "several processes: no single pid");
    assert_eq!(creates_of(&summary, a.pid()), 7, "PID A made 7 creates");
    assert_eq!(creates_of(&summary, b.pid()), 4, "PID B made 4 creates");
    let listed: Vec<u32> = summary.processes.iter().map(|p| p.pid).collect();
    assert_eq!(listed, [a.pid(), b.pid()]);
    assert!(summary.processes.iter().all(|p| !p.exited && p.attached_ns == 0), "{:?}", summary.processes);
    // Every function once per process.
    let per = |pid| summary.functions.iter().filter(|f| f.pid == Some(pid)).count();
    assert_eq!(per(a.pid()), per(b.pid()));
    assert_eq!(per(a.pid()) * 2, summary.functions.len());
    assert!(!stderr.iter().any(|l| l.contains("error")), "{stderr:?}");
}

#[test]
fn pids_of_different_files_are_refused_in_one_line() {
    require_bpf();
    let me = std::process::id().to_string();
    // `sleep` runs another file than this test.
    let mut other = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ktrace"))
        .args(["attach", "--pid", &format!("{me},{}", other.id()), "--funcs", "main.main", "--duration", "1s"])
        .output()
        .unwrap();
    let _ = other.kill();
    let _ = other.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let said = format!("PID {} runs", other.id());
    assert!(stderr.contains(&said) && stderr.contains("one ktrace traces one file"), "{stderr}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ktrace"))
        .args(["attach", "--pid", &format!("{me},{me}"), "--funcs", "main.main", "--duration", "1s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("given twice"), "{stderr}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ktrace"))
        .args(["funcs", "--pid", &format!("{me},{me}"), "--funcs", "main.main"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("give one --pid"), "{stderr}");
}

/// `--binary`: a server running at attach, one started after it, and the
/// first one restarted (stopped, then started again as a new process),
/// each counted exactly from when ktrace says it found it.
#[test]
fn binary_follows_processes_started_later_and_restarts() {
    require_bpf();
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let binary = testkit::kube::binary(KubeVariant::Release).unwrap_or_else(|e| panic!("{e:#}"));
    let etcd = Etcd::start().expect("start etcd");
    let first = KubeApiserver::start(KubeVariant::Release, &etcd).unwrap_or_else(|e| panic!("{e:#}"));
    let mut trace = Trace::spawn(&[], &["--binary", binary.to_str().unwrap()], "storage", &["--filter", FILTER]);
    trace.wait_for("that it follows new processes", Duration::from_secs(10), |l| {
        l.contains("processes that start running") && l.contains("are traced too")
    });
    let found = |trace: &mut Trace, pid: u32| {
        trace.wait_for(&format!("that it found PID {pid}"), Duration::from_secs(30), |l| {
            l.starts_with(&format!("ktrace: PID {pid} started running"))
        })
    };
    load_creates(&first, 3);

    // Started after attach: found while it starts up (it takes seconds to
    // be ready), so the load after start() is all counted.
    let later = KubeApiserver::start(KubeVariant::Release, &etcd).unwrap_or_else(|e| panic!("{e:#}"));
    found(&mut trace, later.pid());
    load_creates(&later, 5);

    // A restart: the first server stops, and a new process of the same file
    // takes its place.
    let first_pid = first.pid();
    drop(first);
    trace.wait_for(&format!("that PID {first_pid} exited"), Duration::from_secs(30), |l| {
        l == format!("ktrace: PID {first_pid} exited; its figures so far are kept")
    });
    let restarted = KubeApiserver::start(KubeVariant::Release, &etcd).unwrap_or_else(|e| panic!("{e:#}"));
    found(&mut trace, restarted.pid());
    load_creates(&restarted, 2);

    let (summary, _) = trace.finish();
    eprintln!("processes: {:?}", summary.processes);
    assert_eq!(creates_of(&summary, first_pid), 3);
    assert_eq!(creates_of(&summary, later.pid()), 5);
    assert_eq!(creates_of(&summary, restarted.pid()), 2);
    let p = |pid| summary.processes.iter().find(|p| p.pid == pid).unwrap_or_else(|| panic!("PID {pid} listed"));
    assert!(p(first_pid).exited && p(first_pid).attached_ns == 0);
    assert!(!p(later.pid()).exited && p(later.pid()).attached_ns > 0);
    assert!(p(restarted.pid()).attached_ns > p(later.pid()).attached_ns);
}

/// A trace file of two servers (`--output` with `--pid A,B`): every call
/// names its process, and `ktrace flame` rebuilds each server's requests
/// apart, though both runtimes number their goroutines alike: each POST
/// of a namespace is in the process that served it, exactly as many as
/// were made.
#[test]
fn a_trace_of_two_apiservers_keeps_their_requests_apart() {
    require_bpf();
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let etcd = Etcd::start().expect("start etcd");
    let a = KubeApiserver::start(KubeVariant::Release, &etcd).unwrap_or_else(|e| panic!("{e:#}"));
    let b = KubeApiserver::start(KubeVariant::Release, &etcd).unwrap_or_else(|e| panic!("{e:#}"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.trace");
    let pids = format!("{},{}", a.pid(), b.pid());
    let extra = ["--args", "--output", path.to_str().unwrap()];
    let mut trace = Trace::spawn(&[], &["--pid", &pids], "request,authn,authz,admission,storage", &extra);
    trace.wait_for("B's probes", Duration::from_secs(60), |l| l.contains(&format!("of PID {} ", b.pid())));
    std::thread::scope(|s| {
        s.spawn(|| load_creates(&a, 6));
        s.spawn(|| load_creates(&b, 3));
    });
    let (summary, _) = trace.finish();
    let t = analyzer::trace::read(std::io::BufReader::new(std::fs::File::open(&path).unwrap())).expect("a trace");
    assert_eq!(t.header().unwrap().pid, None);
    assert!(t.calls.iter().all(|c| c.pid == Some(a.pid()) || c.pid == Some(b.pid())), "every call names its process");
    // One function record per process, and their totals are the summary's.
    let totals = t.function_totals();
    let id = t.header().unwrap().functions.iter().position(|f| f.symbol == CREATE).expect("Create traced") as u32;
    assert_eq!(totals[&id].calls, creates_of(&summary, a.pid()) + creates_of(&summary, b.pid()));
    assert_eq!(t.functions.iter().filter(|f| f.func == id).count(), 2);

    let stitched = analyzer::requests::stitch(&t);
    for (api, n) in [(&a, 6), (&b, 3)] {
        let path = format!("/api/v1/namespaces/{}/configmaps", api.namespace());
        let posts: Vec<_> = stitched
            .requests
            .iter()
            .filter(|r| r.method.as_deref() == Some("POST") && r.path.as_deref() == Some(path.as_str()))
            .collect();
        assert_eq!(posts.len(), n, "POSTs to {path}; notes {:?}", stitched.notes);
        assert!(posts.iter().all(|r| r.pid == Some(api.pid())), "each in the process that served it");
    }
    // And `ktrace flame` takes the file: report and timeline.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ktrace"))
        .args(["flame", "--trace", path.to_str().unwrap(), "--output"])
        .arg(dir.path().join("requests.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `--binary` with no process running the file: ktrace waits, says so,
/// traces a process that starts meanwhile, and one that never comes leaves
/// an empty summary with a warning, not an error.
#[test]
fn binary_waits_for_a_process_and_says_when_none_came() {
    require_bpf();
    let bench = testkit::workspace_root().join("target/gotargets/bench/ktrace-bench");
    assert!(bench.exists(), "{} (cargo xtask build-targets)", bench.display());
    let ktrace = |secs: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ktrace"))
            .args(["attach", "--binary", bench.to_str().unwrap(), "--funcs", "main.work", "--count-only"])
            .args(["--json", "--duration", secs])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let out = ktrace("1s").wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("no process runs") && stderr.contains("waiting for one"), "{stderr}");
    assert!(stderr.contains("no process ran") && stderr.contains("nothing was traced"), "{stderr}");
    let summary: Summary = serde_json::from_slice(&out.stdout).unwrap();
    assert!(summary.functions.is_empty() && summary.processes.is_empty(), "{summary:?}");

    // One that starts a second after attach is found and counted.
    let child = ktrace("6s");
    std::thread::sleep(Duration::from_secs(2));
    let mut target = std::process::Command::new(&bench).stdout(std::process::Stdio::null()).spawn().unwrap();
    let out = child.wait_with_output().unwrap();
    let _ = target.kill();
    let _ = target.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("PID {} started running", target.id())), "{stderr}");
    let summary: Summary = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary.processes.len(), 1, "{summary:?}");
    assert!(summary.processes[0].attached_ns >= 1_000_000_000, "{summary:?}");
    assert!(summary.functions[0].calls > 0 && summary.functions[0].pid == Some(target.id()), "{summary:?}");
}
