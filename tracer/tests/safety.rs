//! Root eBPF tests of what ktrace must never leak and what `--filter` keeps:
//! the bearer token the target's `load` client sends reaches traced Go
//! functions as a string argument, and must appear nowhere ktrace writes;
//! `--filter key=…` keeps exactly the calls for matching etcd keys and the
//! calls nested inside them. Real uprobes on the apiserver-shaped target,
//! real etcd.

mod common;

use std::{
    collections::BTreeSet,
    io::Read,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use analyzer::trace::{self, ArgValue, Trace as TraceFile};
use common::{STORE, Trace, calls, function, require_bpf};
use testkit::{Apiserver, Etcd, LoadSpec, Variant};

const CACHE: &str = "k8s.io/apiserver/pkg/authentication/token/cache.(*cachedTokenAuthenticator).AuthenticateToken";
const TOKENFILE: &str = "k8s.io/apiserver/pkg/authentication/token/tokenfile.(*TokenAuthenticator).AuthenticateToken";
const BEARER: &str = "k8s.io/apiserver/pkg/authentication/request/bearertoken.(*Authenticator).AuthenticateRequest";
const CLIENT_CALL: &str = "k8s.io/apiserver/pkg/storage/etcd3.(*Client).call";
const REGISTRY_CREATE: &str = "k8s.io/apiserver/pkg/registry/generic/registry.(*Store).Create";

fn store(m: &str) -> String {
    format!("{STORE}.{m}")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o7777
}

fn read_trace(p: &Path) -> TraceFile {
    trace::read(std::io::BufReader::new(std::fs::File::open(p).unwrap())).expect("a readable trace")
}

fn func_id(t: &TraceFile, symbol: &str) -> u32 {
    t.header()
        .unwrap()
        .functions
        .iter()
        .find(|f| f.symbol == symbol)
        .unwrap_or_else(|| panic!("{symbol} not traced"))
        .id
}

fn totals<'a>(t: &'a TraceFile, symbol: &str) -> &'a trace::FunctionStats {
    let id = func_id(t, symbol);
    t.functions.iter().find(|f| f.func == id).unwrap()
}

fn str_args<'a>(t: &'a TraceFile, symbol: &str, arg: &str) -> Vec<&'a str> {
    let id = func_id(t, symbol);
    t.calls
        .iter()
        .filter(|c| c.func == id)
        .map(|c| match c.args.get(arg) {
            Some(ArgValue::Str(s)) => s.as_str(),
            other => panic!("{symbol}: no string `{arg}`: {other:?} in {c:?}"),
        })
        .collect()
}

/// Every process below `pid`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
            out.push(child);
            out.extend(descendants(child));
        }
    }
    out
}

/// Runs `ktrace ARGS` under script(1), which gives it a pseudo-terminal as
/// stdout and stderr so it draws the live table; runs `during` once the
/// probes are placed, lets the table redraw, then stops ktrace with SIGINT.
/// Returns everything ktrace wrote to the terminal.
fn under_script(args: &[&str], during: impl FnOnce()) -> String {
    let quote = |a: &str| format!("'{}'", a.replace('\'', r"'\''"));
    let cmd = std::iter::once(quote(env!("CARGO_BIN_EXE_ktrace")))
        .chain(args.iter().map(|a| quote(a)))
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run script(1)");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = script.stdout.take().unwrap();
    let sink = Arc::clone(&seen);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let text = || String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !text().contains(" probes on ") {
        assert!(Instant::now() < deadline && script.try_wait().unwrap().is_none(), "ktrace never attached: {}", text());
        std::thread::sleep(Duration::from_millis(100));
    }
    during();
    // The table is redrawn once a second.
    std::thread::sleep(Duration::from_millis(2500));
    let ktrace = descendants(script.id())
        .into_iter()
        .find(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "ktrace"))
        .expect("ktrace runs under script");
    // SAFETY: kill(2) on a process this test started.
    unsafe { libc::kill(ktrace as i32, libc::SIGINT) };
    let status = script.wait().unwrap();
    reader.join().unwrap();
    let out = text();
    assert!(status.success(), "ktrace under script(1) failed ({status}): {out}");
    out
}

fn ktrace(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ktrace")).args(args).output().expect("run ktrace")
}

/// The bearer token reaches `(*cachedTokenAuthenticator).AuthenticateToken`
/// as its first string argument (`token`) and, on a cache miss,
/// `tokenfile.(*TokenAuthenticator).AuthenticateToken` (`value`). Traced with
/// `--args --stacks --output`, it appears nowhere: not in the live table
/// and stderr (a terminal, through script(1)), the trace file, the `--json`
/// summary, nor the report, JSON and SVGs `ktrace flame` renders from the
/// trace. It is recorded as `<redacted 64 bytes>`; counts and errors stay
/// exact, the etcd keys are still captured, and every file is 0600.
#[test]
fn secrets_never_leave_the_target() {
    require_bpf();
    let etcd = Etcd::start().expect("start etcd");
    let api = Apiserver::start(Variant::Optimized, &etcd).expect("start the target");
    let token = api.token().unwrap();
    assert_eq!(token.len(), 64, "the target's token is 64 hex digits");
    let pid = api.pid().to_string();
    let funcs = [CACHE, TOKENFILE, BEARER, &store("Create"), &store("Get")].join(",");
    let dir = tempfile::tempdir().unwrap();
    let trace_path = dir.path().join("authn.trace");
    // A world-readable file already there must end up private too.
    std::fs::write(&trace_path, "old").unwrap();
    std::fs::set_permissions(&trace_path, std::fs::Permissions::from_mode(0o644)).unwrap();

    // 1. On a terminal: live table, stderr and final table in one transcript.
    let spec = LoadSpec {
        namespace: "secret".into(),
        creates: 9,
        gets: 4,
        missing_gets: 3,
        concurrency: 3,
        ..Default::default()
    };
    let requests = u64::from(spec.creates + spec.gets + spec.missing_gets);
    let mut report = None;
    let args = ["attach", "--pid", &pid, "--funcs", &funcs, "--args", "--stacks", "--no-budget", "--output"];
    let transcript = under_script(&[&args[..], &[trace_path.to_str().unwrap()]].concat(), || {
        report = Some(api.load(&spec).expect("drive load"));
    });
    let report = report.unwrap();
    assert_eq!(report.errors, 0);
    assert!(transcript.contains("estimated probe overhead") && transcript.contains("\x1b[J"), "{transcript}");
    assert!(transcript.contains(CACHE), "the live table lists the function: {transcript}");
    assert!(transcript.contains("recorded as <redacted N bytes>"), "stderr says what is redacted: {transcript}");
    assert!(!transcript.contains(&token), "the token is on the terminal: {transcript}");

    let bytes = std::fs::read(&trace_path).unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains(&token), "the token is in the trace file");
    assert_eq!(mode(&trace_path), 0o600);
    let t = read_trace(&trace_path);
    assert_eq!(t.header().unwrap().unredacted_args, Some(false));
    let marker = "<redacted 64 bytes>";
    let tokens = str_args(&t, CACHE, "token");
    assert_eq!(tokens.len() as u64, requests, "one event per request");
    assert!(tokens.iter().all(|v| *v == marker), "{tokens:?}");
    let values = str_args(&t, TOKENFILE, "value");
    assert!(!values.is_empty(), "the first request misses the cache and reaches tokenfile");
    assert!(values.iter().all(|v| *v == marker), "{values:?}");
    // Exact counts and errors beside the redaction.
    let cache = totals(&t, CACHE);
    assert_eq!((cache.calls, cache.errors), (requests, Some(0)));
    assert_eq!(totals(&t, BEARER).calls, requests);
    assert_eq!(totals(&t, &store("Get")).errors, Some(u64::from(spec.missing_gets)));
    // The etcd key is still captured, in the same run.
    let keys: BTreeSet<&str> = str_args(&t, &store("Create"), "key").into_iter().collect();
    assert_eq!(keys, report.keys.iter().map(String::as_str).collect::<BTreeSet<_>>());
    assert_eq!(totals(&t, &store("Create")).calls, u64::from(spec.creates));

    // 2. What `ktrace flame` renders from that trace.
    let out = |name: &str| dir.path().join(name);
    for name in ["report.html", "summary.json", "latency.svg", "latency.folded", "latency.pb.gz"] {
        let output = out(name);
        let mut args = vec!["flame", "--trace", trace_path.to_str().unwrap(), "--output", output.to_str().unwrap()];
        // A .json name is the request timeline; this trace has no requests.
        if name.ends_with(".json") {
            args.extend(["--format", "json"]);
        }
        let run = ktrace(&args);
        assert!(run.status.success(), "{name}: {}", String::from_utf8_lossy(&run.stderr));
        for stream in [&run.stdout, &run.stderr] {
            assert!(!String::from_utf8_lossy(stream).contains(&token), "{name}: the token was printed");
        }
    }
    for name in ["report.html", "report.json", "report-latency.svg", "summary.json", "latency.svg", "latency.folded"] {
        let text = std::fs::read_to_string(out(name)).unwrap();
        assert!(text.contains("AuthenticateToken"), "{name} shows the traced function");
        assert!(!text.contains(&token), "the token is in {name}");
    }
    for name in ["report.html", "report.json", "report-latency.svg", "summary.json", "latency.svg", "latency.folded"]
        .into_iter()
        .chain(["latency.pb.gz"])
    {
        assert_eq!(mode(&out(name)), 0o600, "{name}");
    }

    // 3. The JSON summary and stderr of a piped run.
    let json_trace = dir.path().join("json.trace");
    let run = Trace::start(api.pid(), &funcs, &["--args", "--stacks", "--output", json_trace.to_str().unwrap()]);
    let spec = LoadSpec { namespace: "secret-json".into(), creates: 5, gets: 2, missing_gets: 2, ..Default::default() };
    assert_eq!(api.load(&spec).unwrap().errors, 0);
    let (stdout, stderr) = run.finish_raw();
    let stdout = String::from_utf8(stdout).unwrap();
    assert!(!stdout.contains(&token) && !stderr.iter().any(|l| l.contains(&token)), "{stdout} {stderr:?}");
    let summary: analyzer::summary::Summary = serde_json::from_str(&stdout).unwrap();
    let requests = u64::from(spec.creates + spec.gets + spec.missing_gets);
    assert_eq!(calls(&summary, CACHE), requests);
    assert_eq!(function(&summary, CACHE).errors, Some(0));
    assert_eq!(function(&summary, &store("Get")).errors, Some(u64::from(spec.missing_gets)));
    assert!(!String::from_utf8_lossy(&std::fs::read(&json_trace).unwrap()).contains(&token));
    assert_eq!(mode(&json_trace), 0o600);
    assert!(api.is_alive());
}

/// The opt-in: with `--unredacted-args` the token is captured (so the test
/// above would see it if redaction broke), ktrace says so on stderr, and
/// the trace header records it.
#[test]
fn unredacted_args_capture_the_token() {
    require_bpf();
    let etcd = Etcd::start().expect("start etcd");
    let api = Apiserver::start(Variant::Optimized, &etcd).expect("start the target");
    let token = api.token().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clear.trace");
    let run = Trace::start(api.pid(), CACHE, &["--args", "--unredacted-args", "--output", path.to_str().unwrap()]);
    let spec = LoadSpec { namespace: "clear".into(), creates: 3, gets: 2, ..Default::default() };
    assert_eq!(api.load(&spec).unwrap().errors, 0);
    let (summary, stderr) = run.finish();
    assert!(stderr.iter().any(|l| l.contains("--unredacted-args") && l.contains("in the clear")), "{stderr:?}");
    assert_eq!(calls(&summary, CACHE), 5);
    let t = read_trace(&path);
    assert_eq!(t.header().unwrap().unredacted_args, Some(true));
    let tokens = str_args(&t, CACHE, "token");
    assert_eq!(tokens.len(), 5);
    assert!(tokens.iter().all(|v| *v == token), "the token in the clear: {tokens:?}");
    assert_eq!(mode(&path), 0o600);

    // The opt-in needs --args.
    let run = ktrace(&["attach", "--pid", &api.pid().to_string(), "--funcs", CACHE, "--unredacted-args"]);
    assert_eq!(run.status.code(), Some(2), "{}", String::from_utf8_lossy(&run.stderr));
}

/// The one error line of a failed run, with its exit code checked.
fn fails(out: &std::process::Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(out.status.code(), Some(code), "wanted exit {code}: {stderr}");
    if code == 3 {
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("ktrace: error:")).collect();
        assert_eq!(errors.len(), 1, "one error line: {stderr}");
    }
    stderr
}

/// `--filter key=/registry/configmaps/filt-in/*` while the load writes keys
/// in and out of that prefix: exactly the matching store calls are counted
/// (calls, NotFound errors, histograms), every captured key is under the
/// prefix, the etcd round trip `(*Client).call` (no `key` parameter) is
/// counted only inside kept store calls, and the store's caller
/// `registry.(*Store).Create` and the authenticator, never nested in one,
/// not at all. An exact pattern keeps one key. Bad filters are one-line
/// errors.
#[test]
fn filter_keeps_matching_keys_and_the_calls_nested_in_them() {
    require_bpf();
    let etcd = Etcd::start().expect("start etcd");
    let api = Apiserver::start(Variant::Optimized, &etcd).expect("start the target");
    let pid = api.pid().to_string();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("filtered.trace");
    let funcs = [&store("Create"), &store("Get"), CLIENT_CALL, REGISTRY_CREATE, CACHE].join(",");
    let prefix = "/registry/configmaps/filt-in/";
    let filter = format!("key={prefix}*");
    let run = Trace::start(api.pid(), &funcs, &["--filter", &filter, "--args", "--output", path.to_str().unwrap()]);
    let inside = LoadSpec {
        namespace: "filt-in".into(),
        creates: 7,
        gets: 4,
        missing_gets: 3,
        concurrency: 3,
        ..Default::default()
    };
    // Outside: another namespace, and one whose name only starts like it.
    let outside = LoadSpec {
        namespace: "filt-out".into(),
        creates: 5,
        gets: 6,
        missing_gets: 2,
        concurrency: 3,
        ..Default::default()
    };
    let near = LoadSpec { namespace: "filt-inx".into(), creates: 3, gets: 2, ..Default::default() };
    let report = api.load(&inside).unwrap();
    assert_eq!(report.errors, 0);
    assert_eq!(api.load(&outside).unwrap().errors, 0);
    assert_eq!(api.load(&near).unwrap().errors, 0);
    let (summary, stderr) = run.finish();

    let gets = u64::from(inside.gets + inside.missing_gets);
    assert_eq!(calls(&summary, &store("Create")), u64::from(inside.creates), "{summary:#?}");
    assert_eq!(calls(&summary, &store("Get")), gets, "{summary:#?}");
    assert_eq!(function(&summary, &store("Get")).errors, Some(u64::from(inside.missing_gets)));
    assert_eq!(function(&summary, &store("Create")).errors, Some(0));
    // One etcd round trip per kept Create and Get; none for the others.
    assert_eq!(calls(&summary, CLIENT_CALL), u64::from(inside.creates) + gets, "{summary:#?}");
    assert_eq!(calls(&summary, REGISTRY_CREATE), 0, "callers are not nested in a kept call");
    assert_eq!(calls(&summary, CACHE), 0);
    // Left out: each store call outside the prefix and its etcd round trip,
    // every registry Create, and every request's authentication.
    let requests = |s: &LoadSpec| s.creates + s.gets + s.missing_gets;
    let store_outside = requests(&outside) + requests(&near);
    let left_out = 2 * store_outside
        + (inside.creates + outside.creates + near.creates)
        + (requests(&inside) + requests(&outside) + requests(&near));
    assert!(
        stderr.iter().any(|l| l.contains(&format!("--filter {filter}: {left_out} calls left out"))),
        "{left_out} left out: {stderr:?}"
    );

    let t = read_trace(&path);
    assert_eq!(t.header().unwrap().filter.as_deref(), Some(filter.as_str()));
    let created: BTreeSet<&str> = str_args(&t, &store("Create"), "key").into_iter().collect();
    assert_eq!(created, report.keys.iter().map(String::as_str).collect::<BTreeSet<_>>());
    let got = str_args(&t, &store("Get"), "key");
    assert_eq!(got.len() as u64, gets);
    assert!(got.iter().all(|k| k.starts_with(prefix)), "{got:?}");
    let hist = |s: &str| totals(&t, s).histogram.iter().map(|b| b.count).sum::<u64>();
    assert_eq!(hist(&store("Create")), u64::from(inside.creates));
    assert_eq!(hist(&store("Get")), gets);
    assert_eq!(
        t.calls.iter().filter(|c| c.func == func_id(&t, CLIENT_CALL)).count() as u64,
        u64::from(inside.creates) + gets
    );

    // An exact pattern: one key, read three times.
    let key = &report.keys[0];
    let name = key.rsplit('/').next().unwrap();
    let run = Trace::start(api.pid(), &funcs, &["--filter", &format!("key={key}")]);
    for _ in 0..3 {
        assert_eq!(api.probe("GET", &format!("/api/v1/namespaces/filt-in/configmaps/{name}"), true).unwrap(), 200);
    }
    assert_eq!(api.probe("GET", "/api/v1/namespaces/filt-in/configmaps/nosuch", true).unwrap(), 404);
    let more = LoadSpec { namespace: "filt-in".into(), creates: 2, ..Default::default() };
    assert_eq!(api.load(&more).unwrap().errors, 0);
    let (summary, _) = run.finish();
    assert_eq!(calls(&summary, &store("Get")), 3);
    assert_eq!(function(&summary, &store("Get")).errors, Some(0));
    assert_eq!(calls(&summary, &store("Create")), 0);
    assert_eq!(calls(&summary, CLIENT_CALL), 3);

    // Bad filters: one line each, exit 3 (bad input) or 2 (usage).
    let attach = |extra: &[&str]| ktrace(&[&["attach", "--pid", &pid, "--funcs", &funcs][..], extra].concat());
    let e = fails(&attach(&["--filter", "nosuch=x"]), 3);
    assert!(e.contains("no traced function has a string parameter named `nosuch`"), "{e}");
    let e = fails(&attach(&["--filter", "token=x"]), 3);
    assert!(e.contains("credential") && e.contains("AuthenticateToken"), "{e}");
    let e = fails(&attach(&["--filter", &format!("key={}*", "k".repeat(129))]), 3);
    assert!(e.contains("at most 128"), "{e}");
    let e = fails(&attach(&["--filter", "key=/a*b"]), 3);
    assert!(e.contains("only a trailing *"), "{e}");
    fails(&attach(&["--filter", "key=x", "--count-only"]), 2);
    assert!(api.is_alive());
}

/// A stripped build has no DWARF: the table of known kube-apiserver
/// signatures locates `key` for `--filter` and marks the authenticators'
/// token parameters secret.
#[test]
fn stripped_builds_filter_and_redact_from_the_signature_table() {
    require_bpf();
    let etcd = Etcd::start().expect("start etcd");
    let api = Apiserver::start(Variant::Stripped, &etcd).expect("start the target");
    let token = api.token().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let funcs = [&store("Create"), &store("Get"), CACHE, TOKENFILE].join(",");

    let path = dir.path().join("redacted.trace");
    let run = Trace::start(api.pid(), &funcs, &["--args", "--output", path.to_str().unwrap()]);
    let spec = LoadSpec { namespace: "strip-all".into(), creates: 3, gets: 2, ..Default::default() };
    assert_eq!(api.load(&spec).unwrap().errors, 0);
    let (summary, _) = run.finish();
    assert_eq!(calls(&summary, CACHE), 5);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(&token), "the token is in the trace of a stripped build");
    let t = read_trace(&path);
    assert!(str_args(&t, CACHE, "token").iter().all(|v| *v == "<redacted 64 bytes>"));
    assert!(str_args(&t, TOKENFILE, "value").iter().all(|v| *v == "<redacted 64 bytes>"));
    assert_eq!(str_args(&t, &store("Create"), "key").len(), 3, "the key is still captured");

    let prefix = "/registry/configmaps/strip-in/";
    let run = Trace::start(api.pid(), &funcs, &["--filter", &format!("key={prefix}*")]);
    let inside = LoadSpec { namespace: "strip-in".into(), creates: 4, gets: 2, missing_gets: 1, ..Default::default() };
    let outside =
        LoadSpec { namespace: "strip-out".into(), creates: 3, gets: 3, missing_gets: 2, ..Default::default() };
    assert_eq!(api.load(&inside).unwrap().errors, 0);
    assert_eq!(api.load(&outside).unwrap().errors, 0);
    let (summary, _) = run.finish();
    assert_eq!(calls(&summary, &store("Create")), 4);
    assert_eq!(calls(&summary, &store("Get")), 3);
    assert_eq!(function(&summary, &store("Get")).errors, Some(1));
    assert_eq!(calls(&summary, CACHE), 0, "not nested in a kept call");
}

/// One function nested in itself with different keys:
/// `ktracetest.Lookup(K, 2)` runs `Lookup` at three levels with keys K,
/// K/child, K/child/child, and `Leaf` (no key) before and after each nested
/// call. A `Lookup` whose key matches is kept, and so is every call nested
/// in it on the goroutine, other `Lookup`s with other keys included; a
/// left-out outer `Lookup` must not swallow the kept inner ones, and its
/// own `Leaf`s after they returned stay left out.
#[test]
fn filter_keeps_every_call_nested_in_a_kept_one() {
    require_bpf();
    let etcd = Etcd::start().expect("start etcd");
    let api = Apiserver::start(Variant::Optimized, &etcd).expect("start the target");
    let (lookup, leaf) = ("k8s.io/kubernetes/pkg/ktracetest.Lookup", "k8s.io/kubernetes/pkg/ktracetest.Leaf");
    let funcs = format!("{lookup},{leaf}");
    let get = |key: &str| {
        assert_eq!(api.probe("POST", &format!("/ktrace/lookup?key={key}&depth=2"), true).unwrap(), 200);
    };
    let dir = tempfile::tempdir().unwrap();

    // Exact: only the outer Lookup of /a matches; the two inner Lookups and
    // all six Leafs run inside it.
    let path = dir.path().join("exact.trace");
    let run = Trace::start(api.pid(), &funcs, &["--filter", "key=/a", "--args", "--output", path.to_str().unwrap()]);
    get("/a");
    get("/b");
    let (summary, _) = run.finish();
    assert_eq!((calls(&summary, lookup), calls(&summary, leaf)), (3, 6), "{summary:#?}");
    let t = read_trace(&path);
    let mut keys = str_args(&t, lookup, "key");
    keys.sort();
    assert_eq!(keys, ["/a", "/a/child", "/a/child/child"]);
    // The outer Lookup encloses every kept Leaf: it was closed by its own RET.
    let outer = t
        .calls
        .iter()
        .find(|c| c.func == func_id(&t, lookup) && c.args.get("key") == Some(&ArgValue::Str("/a".into())))
        .unwrap();
    let leaves: Vec<_> = t.calls.iter().filter(|c| c.func == func_id(&t, leaf)).collect();
    assert_eq!(leaves.len(), 6);
    for l in &leaves {
        assert!(
            outer.start_ns <= l.start_ns && l.start_ns + l.dur_ns <= outer.start_ns + outer.dur_ns,
            "{outer:?} {l:?}"
        );
    }

    // Prefix: the inner two Lookups of /a match, the outer does not; the
    // outer's own two Leafs run outside any kept call.
    let run = Trace::start(api.pid(), &funcs, &["--filter", "key=/a/child*"]);
    get("/a");
    get("/b");
    let (summary, _) = run.finish();
    assert_eq!((calls(&summary, lookup), calls(&summary, leaf)), (2, 4), "{summary:#?}");
    let timed = function(&summary, lookup).latency_ns.expect("the kept Lookups are timed");
    assert!(timed.max < 1_000_000_000, "{timed:?}");
}

/// ktrace attaching while one goroutine calls a traced function thousands
/// of times a millisecond (`ktracetest.Spin`, keys alternating `/spin/in`
/// and `/spin/out`). Were an entry probe live before its function's RET
/// probes, the calls in between would leave frames no RET pops; once a
/// goroutine's frames (`MAX_DEPTH`) fill that way it is never timed again, and under
/// `--filter` a stale kept `Lookup` at the bottom would keep every later
/// nested `Leaf`. Four attaches in a row: each must time its calls and keep
/// at most two `Leaf`s per kept `Lookup`. Before RET probes were placed
/// first, about half the attaches failed this way.
#[test]
fn attaching_to_a_hot_goroutine_leaves_no_stale_frames() {
    require_bpf();
    let etcd = Etcd::start().expect("start etcd");
    let api = Arc::new(Apiserver::start(Variant::Optimized, &etcd).expect("start the target"));
    let (lookup, leaf) = ("k8s.io/kubernetes/pkg/ktracetest.Lookup", "k8s.io/kubernetes/pkg/ktracetest.Leaf");
    for i in 0..4 {
        // A fresh 5 s spin per attach, so each attach lands in a running loop.
        let spinner = {
            let api = Arc::clone(&api);
            std::thread::spawn(move || api.probe("POST", "/ktrace/spin?key=/spin&ms=5000", true).unwrap())
        };
        std::thread::sleep(Duration::from_millis(300));
        let run =
            Trace::start(api.pid(), &format!("{lookup},{leaf}"), &["--filter", "key=/spin/in", "--max-rate", "0"]);
        std::thread::sleep(Duration::from_millis(1000));
        let (summary, stderr) = run.finish();
        assert_eq!(spinner.join().unwrap(), 200);
        assert!(!stderr.iter().any(|l| l.contains("nested deeper")), "attach {i}: stale frames: {stderr:?}");
        let kept = calls(&summary, lookup);
        assert!(kept > 100, "attach {i}: the spin ran: {summary:#?}");
        assert!(function(&summary, lookup).latency_ns.is_some(), "attach {i}: timed: {summary:#?}");
        // Functions are attached one after another, so Leaf may start
        // counting later than Lookup (under load, by thousands of calls);
        // it can never keep more than the two Leafs of each kept Lookup
        // (and the few calls between reading the two counters), as it
        // would with a stale kept Lookup frame.
        let leaves = calls(&summary, leaf);
        assert!(leaves > 0 && leaves <= 2 * kept + 8, "attach {i}: {leaves} Leafs for {kept} kept Lookups");
    }
}
