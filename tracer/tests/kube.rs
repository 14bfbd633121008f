//! Root eBPF tests on the real kube-apiserver v1.36.3 (built by `cargo
//! xtask build-kube`) against a real etcd: exact filtered storage counts,
//! NotFound errors, latency and etcd keys in all three builds (the stripped
//! one through `--symbols`), the authn/authz/admission presets on an
//! ordinary user's requests, and CPU flamegraphs from its `/debug/pprof`
//! with an RBAC-scoped kubeconfig.
//!
//! Each test starts its own etcd and apiserver. They run one at a time: two
//! real apiservers starting at once on two cores make readiness slow for
//! no gain.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Mutex;

use analyzer::summary::Summary;
use analyzer::trace::{self, ArgValue};
use common::{Trace, function, require_bpf};
use testkit::kube::{self, ETCD_PREFIX};
use testkit::{Etcd, KubeApiserver, KubeVariant, LoadSpec, User};

const STORE: &str = "k8s.io/apiserver/pkg/storage/etcd3.(*store)";
const ETCD_CLIENT: &str = "go.etcd.io/etcd/client/v3/kubernetes";
const RBAC: &str = "k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac.(*RBACAuthorizer).Authorize";

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn start(v: KubeVariant) -> (Etcd, KubeApiserver) {
    let etcd = Etcd::start().expect("start etcd");
    let api = KubeApiserver::start(v, &etcd).unwrap_or_else(|e| panic!("start kube-apiserver {v}: {e:#}"));
    (etcd, api)
}

/// The load every storage test drives as alice: N creates, M gets, K gets
/// of missing names and D deletes, in that order.
fn load_spec() -> LoadSpec {
    LoadSpec { creates: 9, gets: 6, missing_gets: 4, deletes: 5, concurrency: 3, ..Default::default() }
}

/// Filtered storage trace of one variant: exact counts, errors, ordered
/// percentiles and the captured keys.
fn storage_exact(v: KubeVariant) {
    require_bpf();
    let _one = serial();
    let (_etcd, api) = start(v);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("storage.trace");
    // The store is handed keys below the etcd prefix (store.go prepends
    // `/registry/` in prepareKey), so that is what the filter matches.
    let filter = format!("key=/configmaps/{}/*", api.namespace());
    let mut extra = vec!["--args", "--filter", &filter, "--output", path.to_str().unwrap()];
    let symbols;
    if v == KubeVariant::Stripped {
        symbols = kube::binary(KubeVariant::Release).expect("the release build gives the stripped one its DWARF");
        extra.extend(["--symbols", symbols.to_str().unwrap()]);
    }
    let trace = Trace::start(api.pid(), "storage", &extra);
    let spec = load_spec();
    let report = api.load(&spec).expect("load as alice");
    assert_eq!(report.errors, 0);
    let (summary, _) = trace.finish();

    let f = |m: &str| function(&summary, &format!("{STORE}.{m}"));
    assert_eq!(f("Create").calls, u64::from(spec.creates), "{v}: Create");
    assert_eq!(f("Delete").calls, u64::from(spec.deletes), "{v}: Delete");
    assert_eq!(f("Get").errors, Some(u64::from(spec.missing_gets)), "{v}: NotFound errors of Get");
    assert_eq!(f("Create").errors, Some(0), "{v}: Create errors");
    // The etcd client call inside each kept Create is kept too, though its
    // own key (`/registry/configmaps/…`) does not match the filter.
    assert_eq!(
        function(&summary, &format!("{ETCD_CLIENT}.(*Client).OptimisticPut")).calls,
        u64::from(spec.creates),
        "{v}: OptimisticPut nested in the kept Creates"
    );
    for m in ["Create", "Get", "Delete"] {
        let l = f(m).latency_ns.unwrap_or_else(|| panic!("{v}: {m} has no latency"));
        assert!(0 < l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max, "{v}: {m} {l:?}");
    }

    let t = trace::read(std::io::BufReader::new(std::fs::File::open(&path).unwrap())).expect("a readable trace");
    let create = t.header().unwrap().functions.iter().find(|h| h.symbol == format!("{STORE}.Create")).unwrap().id;
    let captured: BTreeSet<String> = t
        .calls
        .iter()
        .filter(|c| c.func == create)
        .map(|c| match c.args.get("key") {
            Some(ArgValue::Str(k)) => format!("{ETCD_PREFIX}{k}"),
            other => panic!("{v}: no key captured: {other:?} in {c:?}"),
        })
        .collect();
    // Goroutine ids come from the DWARF that gives the types: the target's
    // own, or for the stripped build the --symbols file's.
    for c in t.calls.iter().filter(|c| c.func == create) {
        assert!(c.goid.is_some_and(|id| id > 0), "{v}: no goroutine id in {c:?}");
    }
    let created: BTreeSet<String> = report.keys.iter().cloned().collect();
    assert_eq!(created.len(), spec.creates as usize);
    assert_eq!(captured, created, "{v}: captured keys are the keys the load created");
    // Nothing outside the namespace got through the filter: the store's
    // keys match it, and the etcd client calls nested in kept calls carry
    // the same keys with the etcd prefix.
    let mine = format!("/configmaps/{}/", api.namespace());
    for c in &t.calls {
        if let Some(ArgValue::Str(k)) = c.args.get("key") {
            let below_prefix = k.strip_prefix(ETCD_PREFIX).unwrap_or(k);
            assert!(below_prefix.starts_with(&mine), "{v}: {k} passed the filter");
        }
    }
}

#[test]
fn storage_exact_debug() {
    storage_exact(KubeVariant::Debug);
}

#[test]
fn storage_exact_release() {
    storage_exact(KubeVariant::Release);
}

#[test]
fn storage_exact_stripped_with_symbols() {
    storage_exact(KubeVariant::Stripped);
}

/// authn, authz and admission see alice's requests; RBAC decides each one
/// (admin's never reach it: system:masters is let through before RBAC).
#[test]
fn authn_authz_admission_see_an_ordinary_users_requests() {
    require_bpf();
    let _one = serial();
    let (_etcd, api) = start(KubeVariant::Release);
    // With arguments captured, alice's bearer token (the token cache's
    // and the token file's string argument) must still leave no trace.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authn.trace");
    let trace =
        Trace::start(api.pid(), "authn,authz,admission", &["--args", "--stacks", "--output", path.to_str().unwrap()]);
    let spec = load_spec();
    let report = api.load(&spec).expect("load as alice");
    assert_eq!(report.errors, 0);
    let (summary, stderr) = trace.finish();
    let token = api.token(User::Alice);
    let written = std::fs::read_to_string(&path).expect("the trace file");
    assert!(written.contains("<redacted"), "the token arguments are marked as redacted");
    assert!(!written.contains(token), "alice's token is in the trace file");
    assert!(!stderr.iter().any(|l| l.contains(token)), "alice's token is on stderr");
    assert!(!serde_json::to_string(&summary).unwrap().contains(token));
    let requests = u64::from(spec.creates + spec.gets + spec.missing_gets + spec.deletes);
    let calls = |s: &str| summary.functions.iter().filter(|f| f.symbol.contains(s)).map(|f| f.calls).max();
    let rbac = calls(RBAC).unwrap_or_else(|| panic!("{RBAC} not traced: {}", symbols(&summary)));
    assert!(rbac >= requests, "RBAC decided {rbac} times for {requests} requests of alice");
    let bearer = calls("bearertoken.(*Authenticator).AuthenticateRequest").expect("bearer-token authenticator traced");
    assert!(bearer >= requests, "bearer token authenticator ran {bearer} times for {requests} requests");
    let admit = calls("admission.chainAdmissionHandler.Admit")
        .or_else(|| calls("admission.(*chainAdmissionHandler).Admit"))
        .unwrap_or_else(|| panic!("no admission chain traced: {}", symbols(&summary)));
    assert!(admit >= u64::from(spec.creates), "the admission chain ran {admit} times for {} creates", spec.creates);
}

/// An update runs admission inside the store's `GuaranteedUpdate`, on one
/// goroutine, so with these four presets its innermost traced calls nest
/// deeper than 12 (the old limit of calls in flight per goroutine): the
/// webhook dispatchers' calls were counted and never timed. Every one of
/// them must be timed now.
#[test]
fn updates_time_the_admission_nested_in_the_store() {
    require_bpf();
    let _one = serial();
    let (_etcd, api) = start(KubeVariant::Release);
    let trace = Trace::start(api.pid(), "storage,authn,authz,admission", &[]);
    let spec = LoadSpec { creates: 6, updates: 40, concurrency: 4, ..Default::default() };
    let report = api.load(&spec).expect("load as alice");
    assert_eq!(report.errors, 0);
    let (summary, stderr) = trace.finish();
    assert!(!stderr.iter().any(|l| l.contains("nested deeper")), "calls left untimed: {stderr:?}");
    let update = function(&summary, &format!("{STORE}.GuaranteedUpdate"));
    assert!(update.calls >= u64::from(spec.updates), "{} GuaranteedUpdates", update.calls);
    let dispatch =
        function(&summary, "k8s.io/apiserver/pkg/admission/plugin/webhook/mutating.(*mutatingDispatcher).Dispatch");
    assert!(dispatch.calls >= u64::from(spec.updates), "{} dispatches for {} updates", dispatch.calls, spec.updates);
    let l = dispatch.latency_ns.expect("the mutating webhook dispatcher is timed");
    assert!(0 < l.p50 && l.p50 <= l.max, "{l:?}");
}

fn symbols(summary: &Summary) -> String {
    summary.functions.iter().map(|f| format!("{} ({})", f.symbol, f.calls)).collect::<Vec<_>>().join(", ")
}

/// `ktrace flame --pprof profile` as alice (allowed `/debug/pprof/*`) draws
/// the apiserver's own code; as bob it fails with one line naming the rule.
#[test]
fn cpu_flamegraph_with_rbac_and_the_403_that_names_the_rule() {
    let _one = serial();
    let (_etcd, api) = start(KubeVariant::Release);
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("cpu.svg");
    let busy = std::thread::scope(|s| {
        let load = s.spawn(|| api.load(&LoadSpec { creates: 40, gets: 200, concurrency: 4, ..Default::default() }));
        let out = Command::new(env!("CARGO_BIN_EXE_ktrace"))
            .args(["flame", "--pprof", "profile", "--seconds", "3", "--output"])
            .arg(&svg)
            .arg("--kubeconfig")
            .arg(api.kubeconfig(User::Alice))
            .output()
            .expect("run ktrace flame");
        assert!(load.join().expect("load thread").is_ok());
        out
    });
    assert!(busy.status.success(), "ktrace flame as alice: {}", String::from_utf8_lossy(&busy.stderr));
    let text = std::fs::read_to_string(&svg).expect("an SVG");
    assert!(text.contains("k8s.io/apiserver"), "no k8s.io/apiserver frame in the CPU flamegraph");

    let denied = Command::new(env!("CARGO_BIN_EXE_ktrace"))
        .args(["flame", "--pprof", "profile", "--seconds", "1", "--output"])
        .arg(dir.path().join("bob.svg"))
        .arg("--kubeconfig")
        .arg(api.kubeconfig(User::Bob))
        .output()
        .expect("run ktrace flame");
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(!denied.status.success(), "bob has no RBAC rule for /debug/pprof, yet flame succeeded");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    assert!(errors[0].contains("403") && errors[0].contains("nonResourceURLs \"/debug/pprof/*\""), "{stderr}");
    assert!(!stderr.contains(api.token(User::Bob)), "the token leaked into the error");
    assert!(!dir.path().join("bob.svg").exists(), "a failed fetch left an output file");
}
