//! Root eBPF tests: real uprobes on the apiserver-shaped Go target, serving
//! real HTTPS requests backed by a real etcd. They never skip: without BPF
//! they fail, and say what is missing.

mod common;

use common::{STORE, Trace, VENDOR, calls, function, read_mem, require_bpf, sites, text_restored};
use testkit::{Apiserver, Etcd, LoadSpec, Variant};

const AUTHN: [&str; 3] = [
    "k8s.io/apiserver/pkg/endpoints/filters.withAuthentication.func1",
    "k8s.io/apiserver/pkg/authentication/request/bearertoken.(*Authenticator).AuthenticateRequest",
    "k8s.io/apiserver/pkg/authentication/token/cache.(*cachedTokenAuthenticator).AuthenticateToken",
];
const AUTHZ: [&str; 2] = [
    "k8s.io/apiserver/pkg/endpoints/filters.withAuthorization.func1",
    "k8s.io/apiserver/pkg/endpoints/filters.GetAuthorizerAttributes",
];
const RBAC: &str = "k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac.(*RBACAuthorizer).Authorize";
const ADMISSION: [&str; 4] = [
    "k8s.io/apiserver/pkg/admission.(*chainAdmissionHandler).Admit",
    "k8s.io/apiserver/pkg/admission.chainAdmissionHandler.Admit",
    "k8s.io/apiserver/pkg/admission.(*chainAdmissionHandler).Validate",
    "k8s.io/apiserver/pkg/admission.chainAdmissionHandler.Validate",
];

/// N requests of each kind give exactly the calls targets/apiserver/README.md
/// lists per request, for storage, authn, authz and admission symbols, with
/// exact error counts and wall-clock latency.
fn exact_counts(variant: Variant) {
    require_bpf();
    let etcd = Etcd::start().expect("start etcd");
    let api = Apiserver::start(variant, &etcd).expect("start the target");
    let prefix = if matches!(variant, Variant::Gopath) { VENDOR } else { "" };
    let store = |m: &str| format!("{prefix}{STORE}.{m}");
    let vendored = |s: &str| format!("{prefix}{s}");
    let mut symbols: Vec<String> = ["Create", "Get", "GuaranteedUpdate", "Delete"].map(store).to_vec();
    symbols.extend(AUTHN.iter().chain(&AUTHZ).chain(&ADMISSION).map(|s| vendored(s)));
    symbols.push(RBAC.to_string());

    let trace = Trace::start(api.pid(), &symbols.join(","), &[]);
    let spec = LoadSpec {
        namespace: format!("exact-{}", variant.name()),
        creates: 23,
        gets: 7,
        updates: 5,
        deletes: 3,
        missing_gets: 4,
        concurrency: 4,
    };
    let report = api.load(&spec).expect("drive load");
    assert_eq!(report.errors, 0);
    let (summary, _) = trace.finish();

    assert_eq!(summary.pid, Some(api.pid()));
    let requests = u64::from(spec.creates + spec.gets + spec.updates + spec.deletes + spec.missing_gets);
    let mutations = u64::from(spec.creates + spec.updates + spec.deletes);
    assert_eq!(calls(&summary, &store("Create")), u64::from(spec.creates), "{summary:#?}");
    assert_eq!(calls(&summary, &store("Get")), u64::from(spec.gets + spec.missing_gets), "{summary:#?}");
    assert_eq!(calls(&summary, &store("GuaranteedUpdate")), u64::from(spec.updates), "{summary:#?}");
    assert_eq!(calls(&summary, &store("Delete")), u64::from(spec.deletes), "{summary:#?}");
    for s in AUTHN.iter().chain(&AUTHZ) {
        assert_eq!(calls(&summary, &vendored(s)), requests, "{s}");
    }
    assert_eq!(calls(&summary, RBAC), requests);
    for s in ADMISSION {
        assert_eq!(calls(&summary, &vendored(s)), mutations, "{s}");
    }

    // Errors: a function whose last result is `error` counts a non-nil one.
    // Types come from DWARF; the stripped build has none, so the store's
    // come from the table of known signatures and the admission chain's are
    // not measured (null, never a made-up 0).
    let errors = |m: &str| function(&summary, &store(m)).errors;
    assert_eq!(errors("Get"), Some(u64::from(spec.missing_gets)), "a Get of a missing key returns NotFound");
    assert_eq!(errors("Create"), Some(0));
    assert_eq!(errors("Delete"), Some(0));
    let bearer = vendored(AUTHN[1]);
    assert_eq!(function(&summary, &bearer).errors, Some(0), "every request has a valid token");
    for s in ADMISSION {
        let expected = if variant == Variant::Stripped { None } else { Some(0) };
        assert_eq!(function(&summary, &vendored(s)).errors, expected, "{s}");
    }

    // Latency: every Create sleeps at least 2 ms after its etcd round trip
    // (the goroutine parks, so it may come back on another thread).
    let create = function(&summary, &store("Create")).latency_ns.expect("latency of Create");
    assert!(create.p50 >= 2_000_000, "p50 {create:?}");
    assert!(create.sum >= u64::from(spec.creates) * 2_000_000, "sum {create:?}");
    assert!(create.max < 10_000_000_000, "a wall latency, not garbage: {create:?}");
    assert!(create.p50 <= create.p90 && create.p90 <= create.p99 && create.p99 <= create.max, "{create:?}");
    assert!(api.is_alive(), "the target must survive tracing");
}

#[test]
fn exact_counts_optimized() {
    exact_counts(Variant::Optimized);
}

#[test]
fn exact_counts_debug() {
    exact_counts(Variant::Debug);
}

#[test]
fn exact_counts_stripped() {
    exact_counts(Variant::Stripped);
}

#[test]
fn exact_counts_gopath() {
    exact_counts(Variant::Gopath);
}

/// Deep recursion on a fresh goroutine forces the stack to grow at the entry
/// of the recursive function. The entry probe sits on the stack-guard branch
/// and skips the morestack pass, so each call counts once.
#[test]
fn stack_growth_counts_each_call_once() {
    require_bpf();
    let etcd = Etcd::start().expect("start etcd");
    let api = Apiserver::start(Variant::Optimized, &etcd).expect("start the target");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recurse.trace");
    let recurse = "k8s.io/kubernetes/pkg/ktracetest.Recurse";
    let trace = Trace::start(api.pid(), recurse, &["--output", path.to_str().unwrap()]);
    let depth: u32 = 2000;
    let status = api.probe("POST", &format!("/ktrace/recurse?depth={depth}"), true).expect("recurse request");
    assert_eq!(status, 200);
    let (summary, stderr) = trace.finish();
    assert_eq!(calls(&summary, recurse), u64::from(depth));
    // Without growth this test would prove nothing about the guard site.
    assert!(
        stderr.iter().any(|l| l.contains("stack-growth re-entries")),
        "the recursion never grew the stack; stderr: {stderr:?}"
    );

    // A goroutine keeps MAX_DEPTH traced calls in flight; deeper calls are
    // counted, not timed, and must not steal the outer calls' frames: the
    // timed calls are the outermost ones, each enclosing the next.
    let t = analyzer::trace::read(std::io::BufReader::new(std::fs::File::open(&path).unwrap())).unwrap();
    let max_depth = tracer_common::MAX_DEPTH;
    assert_eq!(t.functions[0].histogram.iter().map(|b| b.count).sum::<u64>(), max_depth as u64);
    let mut timed: Vec<_> = t.calls.iter().map(|c| (c.start_ns, c.start_ns + c.dur_ns)).collect();
    timed.sort_unstable();
    assert_eq!(timed.len(), max_depth);
    for pair in timed.windows(2) {
        let ((outer_start, outer_end), (inner_start, inner_end)) = (pair[0], pair[1]);
        assert!(outer_start < inner_start && inner_end < outer_end, "not nested: {timed:?}");
    }
}

/// SIGKILL gives ktrace no chance to clean up; the kernel must remove the
/// probes when its file descriptors close. The target keeps serving, and its
/// text equals the file again at every entry and RET site.
#[test]
fn sigkill_leaves_no_probe_behind() {
    require_bpf();
    let etcd = Etcd::start().expect("start etcd");
    let api = Apiserver::start(Variant::Optimized, &etcd).expect("start the target");
    let symbol = format!("{STORE}.Create");
    let sites = sites(api.binary(), &symbol);
    assert!(sites.len() > 1, "an entry and RET sites: {sites:?}");
    text_restored(api.pid(), &sites).expect("untouched before tracing");

    let trace = Trace::start(api.pid(), &symbol, &[]);
    for (addr, bytes) in &sites {
        assert_eq!(read_mem(api.pid(), *addr, 1), [0xcc], "a live uprobe shows as int3 at {addr:#x}");
        assert_ne!(bytes[0], 0xcc);
    }

    let mut child = trace.child;
    child.kill().expect("SIGKILL ktrace");
    child.wait().expect("reap ktrace");
    text_restored(api.pid(), &sites).unwrap();
    let spec = LoadSpec { namespace: "after-kill".into(), creates: 3, ..Default::default() };
    assert_eq!(api.load(&spec).expect("the target still serves").creates, 3);
    assert!(api.is_alive());
}

/// Ctrl-C the moment ktrace says its probes are placed: the signal is
/// caught from before attach, so it ends the session with its summary and
/// trace end record, never kills ktrace. With the handler set only when
/// the watch loop started, this failed: ktrace died of the SIGINT (exit
/// status 2 from the shell's view, no summary). Five runs, as the window
/// is milliseconds wide.
#[test]
fn ctrl_c_right_after_attach_still_gives_the_summary() {
    require_bpf();
    let etcd = Etcd::start().expect("start etcd");
    let api = Apiserver::start(Variant::Optimized, &etcd).expect("start the target");
    let dir = tempfile::tempdir().unwrap();
    for i in 0..5 {
        let path = dir.path().join(format!("t{i}.trace"));
        let trace = Trace::start(api.pid(), "storage", &["--output", path.to_str().unwrap()]);
        let (summary, _) = trace.finish();
        assert_eq!(summary.pid, Some(api.pid()));
        let t = analyzer::trace::read(std::io::BufReader::new(std::fs::File::open(&path).unwrap())).unwrap();
        assert!(t.end.is_some(), "run {i}: the trace has its end record");
    }
}
