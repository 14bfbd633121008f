//! `--capture` field paths on real uprobes: each request's method and path
//! read through the `*http.Request` of the outermost handler, on the real
//! kube-apiserver v1.36.3 (Go 1.26; offsets from its DWARF, and for the
//! stripped build from ktrace's table) and on the bundled apiserver-shaped
//! target (Go 1.19); a secret-named field redacted; and the one-line
//! errors for paths that do not resolve.
//!
//! The kube tests run one at a time: two real apiservers starting at once on
//! two cores make readiness slow for no gain.

mod common;

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Command, Output},
    sync::Mutex,
};

use analyzer::trace::{self, ArgValue, Trace as TraceFile};
use common::{Trace, require_bpf};
use testkit::{Apiserver, Etcd, KubeApiserver, KubeVariant, LoadSpec, Variant};

const SERVE_HTTP: &str = "k8s.io/apiserver/pkg/server.(*APIServerHandler).ServeHTTP";
const INSTALLER: &str = "k8s.io/apiserver/pkg/endpoints.(*APIInstaller).ServeHTTP";
const BEARER: &str = "k8s.io/apiserver/pkg/authentication/request/bearertoken.(*Authenticator).AuthenticateRequest";
const TOKENFILE: &str = "k8s.io/apiserver/pkg/authentication/token/tokenfile.(*TokenAuthenticator).AuthenticateToken";

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// ktrace handles SIGINT only once its loop runs, a moment after it reports
/// its probes placed; a small load can end sooner than that, and the
/// SIGINT that stops the trace would then kill it.
fn settle() {
    std::thread::sleep(std::time::Duration::from_secs(1));
}

fn read(path: &Path) -> TraceFile {
    trace::read(std::io::BufReader::new(std::fs::File::open(path).unwrap())).expect("a readable trace")
}

/// `(method, path)` of every call of `symbol` in the trace.
fn requests(t: &TraceFile, symbol: &str, method: &str, path: &str) -> Vec<(String, String)> {
    let id = t.header().unwrap().functions.iter().find(|f| f.symbol == symbol).expect("traced").id;
    let text = |v: Option<&ArgValue>| match v {
        Some(ArgValue::Str(s)) => s.clone(),
        other => panic!("not a string: {other:?}"),
    };
    t.calls.iter().filter(|c| c.func == id).map(|c| (text(c.args.get(method)), text(c.args.get(path)))).collect()
}

/// Counts of the creates (`POST …/configmaps`) and gets (`GET
/// …/configmaps/NAME`, by name) of namespace `ns` among `calls`.
fn tally(calls: &[(String, String)], ns: &str) -> (usize, BTreeMap<String, usize>) {
    let collection = format!("/api/v1/namespaces/{ns}/configmaps");
    let creates = calls.iter().filter(|(m, p)| m == "POST" && *p == collection).count();
    let mut gets = BTreeMap::new();
    for (m, p) in calls {
        if let Some(name) = p.strip_prefix(&format!("{collection}/"))
            && m == "GET"
        {
            *gets.entry(name.to_string()).or_default() += 1;
        }
    }
    (creates, gets)
}

/// N creates and M gets of configmaps as alice: the trace holds exactly N
/// `POST …/configmaps` and M `GET …/configmaps/<name>` of the names created.
fn kube_requests(v: KubeVariant, symbols: bool) {
    require_bpf();
    let _one = serial();
    let etcd = Etcd::start().expect("start etcd");
    let api = KubeApiserver::start(v, &etcd).unwrap_or_else(|e| panic!("start kube-apiserver {v}: {e:#}"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("requests.trace");
    let mut extra = vec!["--capture", "r.Method,r.URL.Path", "--output", path.to_str().unwrap(), "--no-budget"];
    let release = testkit::kube::binary(KubeVariant::Release).expect("the release build");
    if symbols {
        extra.extend(["--symbols", release.to_str().unwrap()]);
    }
    let trace = Trace::start(api.pid(), SERVE_HTTP, &extra);
    let spec = LoadSpec { creates: 7, gets: 11, concurrency: 3, ..Default::default() };
    let report = api.load(&spec).expect("load as alice");
    settle();
    assert_eq!(report.errors, 0);
    let (_, stderr) = trace.finish();
    assert!(!stderr.iter().any(|l| l.contains("--capture") && l.contains("dropped")), "{stderr:?}");

    let t = read(&path);
    let calls = requests(&t, SERVE_HTTP, "r.Method", "r.URL.Path");
    let (creates, gets) = tally(&calls, api.namespace());
    eprintln!(
        "{v}: {} ServeHTTP calls, {creates} creates, {} gets of {} names",
        calls.len(),
        gets.values().sum::<usize>(),
        gets.len()
    );
    assert_eq!(creates, spec.creates as usize, "{v}: POST …/configmaps in {calls:?}");
    assert_eq!(gets.values().sum::<usize>(), spec.gets as usize, "{v}: GET …/configmaps/NAME in {calls:?}");
    let created: Vec<String> = report.keys.iter().map(|k| k.rsplit('/').next().unwrap().to_string()).collect();
    assert!(gets.keys().all(|n| created.contains(n)), "{v}: gets of names never created: {gets:?} vs {created:?}");
    assert_eq!(t.end.as_ref().expect("an end record").dropped_events, 0);
}

#[test]
fn kube_release_request_method_and_path_from_dwarf() {
    kube_requests(KubeVariant::Release, false);
}

#[test]
fn kube_stripped_request_method_and_path_from_the_table() {
    kube_requests(KubeVariant::Stripped, false);
}

#[test]
fn kube_stripped_request_method_and_path_from_symbols() {
    kube_requests(KubeVariant::Stripped, true);
}

/// The same on the bundled target (Go 1.19): its `(*APIInstaller).ServeHTTP`
/// takes `req *http.Request`; and through the table of the stripped build
/// on the bearer-token authenticator, which every request passes.
#[test]
fn bundled_go119_request_method_and_path() {
    require_bpf();
    let etcd = Etcd::start().expect("start etcd");
    for (variant, symbol) in [(Variant::Optimized, INSTALLER), (Variant::Stripped, BEARER)] {
        let api = Apiserver::start(variant, &etcd).expect("start the target");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.trace");
        let trace = Trace::start(
            api.pid(),
            symbol,
            &["--capture", "req.Method,req.URL.Path,req.ContentLength", "--output", path.to_str().unwrap()],
        );
        let ns = format!("capture-{variant}");
        let spec = LoadSpec { namespace: ns.clone(), creates: 6, gets: 9, concurrency: 2, ..Default::default() };
        let report = api.load(&spec).expect("drive load");
        assert_eq!(report.errors, 0);
        settle();
        trace.finish();
        let t = read(&path);
        let calls = requests(&t, symbol, "req.Method", "req.URL.Path");
        let (creates, gets) = tally(&calls, &ns);
        eprintln!("{variant}: {} calls, {creates} creates, {} gets", calls.len(), gets.values().sum::<usize>());
        assert_eq!(creates, spec.creates as usize, "{variant}: {calls:?}");
        assert_eq!(gets.values().sum::<usize>(), spec.gets as usize, "{variant}: {calls:?}");
        // An integer leaf: the body length of each create, none of a get.
        let id = t.header().unwrap().functions.iter().find(|f| f.symbol == symbol).unwrap().id;
        let posts =
            t.calls.iter().filter(|c| c.func == id && c.args.get("req.Method") == Some(&ArgValue::Str("POST".into())));
        for c in posts {
            assert!(matches!(c.args.get("req.ContentLength"), Some(ArgValue::Int(1..))), "{c:?}");
        }
    }
}

/// `a.token` of the token-file authenticator is its configured token: a
/// secret-named field, so only its length leaves the target, unless
/// `--unredacted-args`.
#[test]
fn a_secret_field_is_redacted_unless_asked() {
    require_bpf();
    let etcd = Etcd::start().expect("start etcd");
    let dir = tempfile::tempdir().unwrap();
    for unredacted in [false, true] {
        // A fresh server each time: the token cache in front of the token
        // file remembers a token for 10 s.
        let api = Apiserver::start(Variant::Optimized, &etcd).expect("start the target");
        let token = api.token().expect("the target's token");
        let path = dir.path().join(format!("token-{unredacted}.trace"));
        let mut extra = vec!["--capture", "a.token", "--output", path.to_str().unwrap()];
        if unredacted {
            extra.push("--unredacted-args");
        }
        let trace = Trace::start(api.pid(), TOKENFILE, &extra);
        let spec = LoadSpec { namespace: format!("secret-{unredacted}"), creates: 3, ..Default::default() };
        assert_eq!(api.load(&spec).expect("drive load").errors, 0);
        settle();
        let (_, stderr) = trace.finish();
        let written = std::fs::read_to_string(&path).unwrap();
        let t = read(&path);
        let values: Vec<&ArgValue> = t.calls.iter().filter_map(|c| c.args.get("a.token")).collect();
        assert!(!values.is_empty(), "no call of the token authenticator captured");
        if unredacted {
            assert!(values.iter().all(|v| **v == ArgValue::Str(token.clone())), "{values:?}");
        } else {
            let marker = ArgValue::Str(format!("<redacted {} bytes>", token.len()));
            assert!(values.iter().all(|v| **v == marker), "{values:?}");
            assert!(!written.contains(&token), "the token is in the trace file");
            assert!(!stderr.iter().any(|l| l.contains(&token)), "the token is on stderr");
            assert!(stderr.iter().any(|l| l.contains("a.token of") && l.contains("redacted")), "{stderr:?}");
        }
    }
}

fn ktrace(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ktrace")).args(args).output().expect("run ktrace")
}

/// `ktrace attach --binary BIN --funcs FUNCS --capture PATHS`, which fails
/// before placing any probe.
fn capture_error(variant: Variant, funcs: &str, paths: &str, needle: &str) {
    let bin = testkit::target_binary(variant).unwrap();
    let out = ktrace(&[
        "attach",
        "--binary",
        bin.to_str().unwrap(),
        "--funcs",
        funcs,
        "--capture",
        paths,
        "--duration",
        "1s",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{paths}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{paths}: one line expected, got: {stderr}");
    assert!(stderr.starts_with("ktrace: error: --capture"), "{stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
}

#[test]
fn paths_that_do_not_resolve_fail_in_one_line() {
    require_bpf();
    let opt = Variant::Optimized;
    capture_error(opt, INSTALLER, "req.Methd", "net/http.Request has no field Methd; it has Method, URL, Proto, ");
    capture_error(opt, INSTALLER, "r.Method", "no traced function has a parameter named `r`; they have: a, req, w");
    capture_error(
        opt,
        INSTALLER,
        "req.Response.Request.Response.Request.Method",
        "req.Response.Request.Response.Request is the 5th pointer on the path; ktrace follows at most 4",
    );
    capture_error(opt, INSTALLER, "req.Body.Read", "req.Body is an interface (io.ReadCloser)");
    capture_error(opt, INSTALLER, "req.Header.Accept", "req.Header is a map (net/http.Header)");
    capture_error(opt, INSTALLER, "w.Header", "w is an interface (net/http.ResponseWriter)");
    capture_error(
        opt,
        INSTALLER,
        "req.Method,req.Host,req.RequestURI,req.URL.Path,req.URL.RawQuery",
        "5 paths apply to k8s.io/apiserver/pkg/endpoints.(*APIInstaller).ServeHTTP",
    );
    // A stripped build: the table's fields only, and a hint for the rest.
    capture_error(Variant::Stripped, BEARER, "req.Proto", "has no field Proto; it has Method, URL, ContentLength");
    capture_error(Variant::Stripped, BEARER, "req.Proto", "give --symbols");
}

/// A stripped build without `--symbols` says its offsets come from the table.
#[test]
fn the_table_says_so() {
    require_bpf();
    let bin = testkit::target_binary(Variant::Stripped).unwrap();
    let args = ["attach", "--binary", bin.to_str().unwrap(), "--funcs", BEARER, "--capture", "req.Method"];
    let out = ktrace(&[&args[..], &["--duration", "1s", "--json"]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("--capture field offsets for go1.19.8 come from ktrace's table"), "{stderr}");
}

/// `--capture` is parsed before anything is read: bad syntax is bad input.
#[test]
fn bad_capture_syntax_is_bad_input() {
    let out = ktrace(&["attach", "--binary", "/bin/true", "--funcs", "x", "--capture", "r"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("name a field of r"));
    let out = ktrace(&["attach", "--binary", "/bin/true", "--funcs", "x", "--capture", "r.A", "--count-only"]);
    assert_eq!(out.status.code(), Some(2), "--capture needs call events: clap refuses it with --count-only");
}

/// `ktrace funcs --capture` shows where each path is read: the parameter's
/// register, the pointer fields followed and the leaf.
#[test]
fn funcs_shows_where_each_path_is_read() {
    let bin = testkit::target_binary(Variant::Optimized).unwrap();
    let args =
        ["funcs", "--binary", bin.to_str().unwrap(), "--funcs", INSTALLER, "--capture", "req.Method,req.URL.Path"];
    let out = ktrace(&[&args[..], &["--json"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v[0]["captures"],
        serde_json::json!([
            {"path": "req.Method", "base": {"registers": ["RDI"]}, "hops": [], "leaf_offset": 0, "leaf": "string", "secret": false},
            {"path": "req.URL.Path", "base": {"registers": ["RDI"]}, "hops": [16], "leaf_offset": 56, "leaf": "string", "secret": false},
        ])
    );
    let out = ktrace(&args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("capture req.URL.Path=RDI->+16->+56:string"), "{text}");
}
