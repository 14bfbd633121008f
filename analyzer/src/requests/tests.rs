//! Stitching on synthetic traces shaped like kube-apiserver's: a root on
//! the connection's goroutine, authn/authz on the timeout filter's, and
//! admission/registry/storage on the finisher's.

use super::*;
use crate::trace::{FORMAT, Mode, VERSION};

const ROOT: u32 = 0;
const AUTHN_ENVELOPE: u32 = 1;
const AUTHN: u32 = 2;
const AUTHZ: u32 = 3;
const ADMIT: u32 = 4;
const REGISTRY: u32 = 5;
const STORAGE: u32 = 6;
const FINISHER: u32 = 7;

fn header() -> Header {
    let f = |id, s: &str, g: &str, phase: Option<&str>| TracedFunction {
        id,
        symbol: s.into(),
        file: None,
        line: None,
        groups: vec![g.into()],
        phase: phase.map(Into::into),
    };
    Header {
        format: FORMAT.into(),
        version: VERSION,
        mode: Mode::Latency,
        pid: Some(1),
        binary: "kube-apiserver".into(),
        build_id: None,
        go_version: None,
        start_unix_ns: 0,
        unredacted_args: Some(false),
        filter: None,
        functions: vec![
            f(ROOT, "k8s.io/apiserver/pkg/server.(*APIServerHandler).ServeHTTP", "request", Some("request")),
            f(AUTHN_ENVELOPE, "k8s.io/apiserver/pkg/endpoints/filters.withAuthentication.func1", "authn", None),
            f(AUTHN, "union.(*unionAuthRequestHandler).AuthenticateRequest", "authn", Some("authn")),
            f(AUTHZ, "union.unionAuthzHandler.Authorize", "authz", Some("authz")),
            f(ADMIT, "admission.(*auditHandler).Admit", "admission", Some("admission")),
            f(REGISTRY, "registry.(*Store).Create", "registry", Some("registry")),
            f(STORAGE, "etcd3.(*store).Create", "storage", Some("storage")),
            f(FINISHER, "finisher.finishRequest.func1", "handlers", None),
        ],
    }
}

fn call(func: u32, goid: u64, parent: u64, start_ns: u64, dur_ns: u64) -> Call {
    Call {
        pid: None,
        func,
        g: goid * 0x1000,
        goid: Some(goid),
        parent_goid: Some(parent),
        start_ns,
        dur_ns,
        error: None,
        args: Default::default(),
        truncated: false,
        stack: vec![],
    }
}

fn root(goid: u64, start_ns: u64, dur_ns: u64, method: &str, path: &str) -> Call {
    let mut c = call(ROOT, goid, 1, start_ns, dur_ns);
    c.args.insert(METHOD_ARG.into(), ArgValue::Str(method.into()));
    c.args.insert(PATH_ARG.into(), ArgValue::Str(path.into()));
    c
}

/// One create at `t` on connection goroutine `conn`, its timeout goroutine
/// `conn+1` and finisher goroutine `conn+2`: 100 µs in all.
pub(crate) fn create(conn: u64, t: u64, key: &str) -> Vec<Call> {
    let (timeout, finisher) = (conn + 1, conn + 2);
    let mut storage = call(STORAGE, finisher, timeout, t + 60, 20);
    storage.args.insert("key".into(), ArgValue::Str(key.into()));
    vec![
        root(conn, t, 100, "POST", "/api/v1/namespaces/ns/configmaps"),
        // The filter closure wraps the rest of the chain on the timeout goroutine.
        call(AUTHN_ENVELOPE, timeout, conn, t + 5, 90),
        call(AUTHN, timeout, conn, t + 6, 10),
        call(AUTHZ, timeout, conn, t + 20, 10),
        call(FINISHER, finisher, timeout, t + 35, 55),
        call(ADMIT, finisher, timeout, t + 40, 10),
        call(REGISTRY, finisher, timeout, t + 55, 30),
        storage,
    ]
}

pub(crate) fn trace(calls: Vec<Call>) -> Trace {
    Trace { header: Some(header()), calls, functions: vec![], profiles: vec![], end: None }
}

#[test]
fn a_request_is_followed_across_its_goroutines() {
    let t = trace(create(10, 1000, "/registry/configmaps/ns/a"));
    let r = stitch(&t);
    assert_eq!(r.requests.len(), 1);
    assert_eq!(r.outside, 0);
    let req = &r.requests[0];
    assert_eq!(req.calls, 7, "every call on the timeout and finisher goroutines belongs to it");
    assert_eq!(req.title(), "POST /api/v1/namespaces/ns/configmaps");
    assert_eq!(req.kind(), "create configmaps");
    // authn 10, authz 10, admission 10, registry 30 − 20, storage 20; the
    // rest (the envelope's and the finisher's own time, the root's) is other.
    assert_eq!(req.phase_ns, [10, 10, 10, 10, 20, 40]);
    assert_eq!(req.phase_ns.iter().sum::<u64>(), req.dur_ns);
}

#[test]
fn phases_nest_and_never_overlap() {
    let t = trace(create(10, 1000, "/registry/configmaps/ns/a"));
    let req = &stitch(&t).requests[0];
    // Every node lies within its parent, and siblings are disjoint.
    fn check(n: &Node) {
        let mut last_end = n.start_ns;
        for c in &n.children {
            assert!(c.start_ns >= n.start_ns && c.end_ns <= n.end_ns, "{c:?} outside {n:?}");
            assert!(c.start_ns >= last_end, "siblings overlap");
            last_end = c.end_ns;
            check(c);
        }
    }
    check(&req.tree);
    let phase_spans: Vec<(usize, &str)> = req
        .tree
        .walk()
        .into_iter()
        .filter_map(|(d, n)| match n.kind {
            NodeKind::Phase(p) => Some((d, PHASES[p])),
            _ => None,
        })
        .collect();
    // authn and authz inside the envelope (depth 2); admission and registry
    // inside the finisher closure; storage inside registry.
    assert_eq!(
        phase_spans,
        vec![(2, "authn"), (2, "authz"), (3, "admission"), (3, "registry"), (5, "storage")],
        "{:#?}",
        req.tree
    );
}

#[test]
fn successive_requests_on_one_connection_are_told_apart() {
    let mut calls = create(10, 1000, "/registry/configmaps/ns/a");
    calls.extend(create(10, 2000, "/registry/configmaps/ns/b").into_iter().map(|mut c| {
        // Same connection goroutine, new timeout and finisher goroutines.
        if c.goid != Some(10) {
            c.goid = c.goid.map(|g| g + 100);
            if c.parent_goid != Some(10) {
                c.parent_goid = c.parent_goid.map(|g| g + 100);
            }
        }
        c
    }));
    let t = trace(calls);
    let r = stitch(&t);
    assert_eq!(r.requests.len(), 2);
    for (req, key) in r.requests.iter().zip(["/a", "/b"]) {
        assert_eq!(req.calls, 7);
        let keys: Vec<String> = req
            .tree
            .walk()
            .into_iter()
            .filter_map(|(_, n)| match n.kind {
                NodeKind::Call(i) => t.calls[i].args.get("key").cloned(),
                _ => None,
            })
            .map(|v| format!("{v:?}"))
            .collect();
        assert_eq!(keys.len(), 1);
        assert!(keys[0].ends_with(&format!("{key}\")")), "{keys:?}");
    }
}

#[test]
fn background_calls_belong_to_no_request() {
    let mut calls = create(10, 1000, "/registry/configmaps/ns/a");
    // The watch cache's own storage read, on a goroutine no request started.
    calls.push(call(STORAGE, 500, 2, 1050, 10));
    // A call on the connection goroutine after its request ended.
    calls.push(call(AUTHN, 10, 1, 1200, 10));
    let r = stitch(&trace(calls));
    assert_eq!(r.requests[0].calls, 7);
    assert_eq!(r.outside, 2);
}

#[test]
fn a_call_that_outlives_its_request_is_cut() {
    let mut calls = create(10, 1000, "/registry/configmaps/ns/a");
    // A finisher left running after a timeout: storage ends after the root.
    calls.push(call(STORAGE, 12, 11, 1095, 50));
    let r = stitch(&trace(calls));
    let req = &r.requests[0];
    assert!(r.cut >= 1);
    assert_eq!(req.phase_ns.iter().sum::<u64>(), req.dur_ns, "phases still add up to the wall time");
}

#[test]
fn a_parent_cycle_ends() {
    let mut calls = vec![root(10, 0, 100, "GET", "/healthz")];
    calls.push(call(AUTHN, 20, 21, 10, 5));
    calls.push(call(AUTHN, 21, 20, 10, 5));
    let r = stitch(&trace(calls));
    assert_eq!(r.outside, 2);
    assert_eq!(r.requests[0].kind(), "get /healthz");
}

#[test]
fn kinds() {
    let k = |m, p| {
        let (v, r) = kind(Some(m), Some(p));
        format!("{v} {r}")
    };
    assert_eq!(k("POST", "/api/v1/namespaces/ns/configmaps"), "create configmaps");
    assert_eq!(k("GET", "/api/v1/namespaces/ns/configmaps/a"), "get configmaps");
    assert_eq!(k("GET", "/api/v1/namespaces/ns/configmaps"), "list configmaps");
    assert_eq!(k("GET", "/api/v1/namespaces"), "list namespaces");
    assert_eq!(k("GET", "/api/v1/namespaces/ns"), "get namespaces");
    assert_eq!(k("PUT", "/api/v1/namespaces/ns/pods/p/status"), "update pods/status");
    assert_eq!(k("DELETE", "/apis/apps/v1/namespaces/ns/deployments"), "deletecollection deployments");
    assert_eq!(k("GET", "/healthz"), "get /healthz");
    assert_eq!(kind(None, None), ("?".into(), "?".into()));
}

#[test]
fn no_root_no_requests() {
    let mut t = trace(create(10, 1000, "/k"));
    t.calls.retain(|c| c.func != ROOT);
    let r = stitch(&t);
    assert!(r.requests.is_empty());
    assert_eq!(r.outside, 7);
}

#[test]
fn exclusive_time_counts_nested_time_once() {
    let mut calls = create(10, 1000, "/registry/configmaps/ns/a");
    // Background: a registry call with a storage call inside, on its own goroutine.
    calls.push(call(REGISTRY, 500, 2, 5000, 100));
    calls.push(call(STORAGE, 500, 2, 5010, 60));
    let t = trace(calls);
    let r = stitch(&t);
    let x = exclusive(&t, &r);
    // The request: its 100 ns split as before; the background tree: 40 ns
    // registry, 60 ns storage.
    assert_eq!(x.own_ns, [10, 10, 10, 10 + 40, 20 + 60, 40]);
    assert_eq!(x.own_ns.iter().sum::<u64>(), 100 + 100, "wall time of the outermost calls, once");
    // Phase entries: authn, authz, admission, registry, storage in the
    // request; registry and storage in the background tree.
    assert_eq!(x.entries, [1, 1, 1, 2, 2, 0]);
}

#[test]
fn a_hostile_nest_of_calls_is_cut_not_recursed_into() {
    // 100 000 calls each inside the previous one, on one goroutine.
    let mut calls = vec![root(10, 0, 1_000_000, "GET", "/healthz")];
    calls.extend((0..100_000u64).map(|i| call(STORAGE, 10, 1, i + 1, 1_000_000 - 2 * (i + 1))));
    let t = trace(calls);
    let r = stitch(&t);
    let depth = r.requests[0].tree.walk().into_iter().map(|(d, _)| d).max().unwrap();
    assert!(depth <= MAX_TREE_DEPTH + 1, "depth {depth}");
    assert!(r.cut >= 100_000 - MAX_TREE_DEPTH);
    let x = exclusive(&t, &r);
    assert_eq!(x.own_ns.iter().sum::<u64>(), 1_000_000);
}

#[test]
fn cpu_goes_to_the_innermost_traced_frame_with_a_phase() {
    let h = header();
    let sym = |id: u32| h.functions[id as usize].symbol.clone();
    let mut folded = crate::flame::Folded::default();
    // Storage under registry: storage. Work in the authn envelope but in
    // no authenticator: other. Under the finisher closure only: other.
    // Nothing traced: not request work.
    folded.add(&format!("net/http.(*conn).serve;{};{};{};json.Marshal", sym(FINISHER), sym(REGISTRY), sym(STORAGE)), 7);
    folded.add(&format!("{};{};encoding/json.Marshal", sym(ROOT), sym(AUTHN_ENVELOPE)), 5);
    folded.add(&format!("{};{}", sym(AUTHN_ENVELOPE), sym(AUTHN)), 3);
    folded.add(&format!("{};runtime.mallocgc", sym(FINISHER)), 2);
    folded.add("runtime.gcBgMarkWorker", 11);
    assert_eq!(cpu_by_phase(&h, &folded), [3, 0, 0, 0, 7, 5 + 2]);
}

/// `calls` as made by process `pid`.
pub(crate) fn in_process(pid: u32, calls: Vec<Call>) -> Vec<Call> {
    calls.into_iter().map(|c| Call { pid: Some(pid), ..c }).collect()
}

/// A trace of several processes: the header names none, every call its own.
pub(crate) fn multi_trace(calls: Vec<Call>) -> Trace {
    let mut t = trace(calls);
    if let Some(h) = t.header.as_mut() {
        h.pid = None;
    }
    t
}

/// The storage keys in a request's tree.
fn keys(t: &Trace, req: &Request) -> Vec<String> {
    req.tree
        .walk()
        .into_iter()
        .filter_map(|(_, n)| match n.kind {
            NodeKind::Call(i) => match t.calls[i].args.get("key") {
                Some(ArgValue::Str(k)) => Some(k.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[test]
fn two_processes_with_the_same_goroutines_are_never_mixed() {
    // Both processes serve a create on goroutines 10, 11 and 12, and the
    // requests overlap: process 2's starts 30 ns into process 1's.
    let mut calls = in_process(1, create(10, 1000, "/registry/configmaps/ns/a"));
    calls.extend(in_process(2, create(10, 1030, "/registry/configmaps/ns/b")));
    // Process 3's goroutine 11, started by its goroutine 99, during both
    // requests: not the timeout goroutine of either.
    calls.push(Call { pid: Some(3), ..call(AUTHN, 11, 99, 1050, 10) });
    let t = multi_trace(calls);
    let r = stitch(&t);
    assert_eq!(r.requests.len(), 2);
    assert_eq!(r.outside_calls, vec![t.calls.len() - 1], "only process 3's call is outside");
    for (req, pid, key) in
        [(&r.requests[0], 1, "/registry/configmaps/ns/a"), (&r.requests[1], 2, "/registry/configmaps/ns/b")]
    {
        assert_eq!((req.pid, req.goid), (Some(pid), 10));
        assert_eq!(req.calls, 7);
        for (_, n) in req.tree.walk() {
            if let NodeKind::Call(i) | NodeKind::Request(i) = n.kind {
                assert_eq!(t.calls[i].pid, Some(pid), "{n:?} in the request of pid {pid}");
            }
        }
        assert_eq!(keys(&t, req), [key]);
        assert_eq!(req.phase_ns, [10, 10, 10, 10, 20, 40]);
        assert_eq!(r.cut, 0);
    }
}

#[test]
fn a_request_without_its_path_names_its_process() {
    let mut c = root(10, 0, 100, "GET", "/healthz");
    c.args.clear();
    let single = stitch(&trace(vec![c.clone()]));
    assert_eq!(single.requests[0].title(), "request on goroutine 10");
    assert_eq!(single.requests[0].pid, None);
    let multi = stitch(&multi_trace(in_process(3, vec![c])));
    assert_eq!(multi.requests[0].title(), "request on goroutine 10 of pid 3");
}

#[test]
fn background_goroutines_of_two_processes_nest_apart() {
    // Goroutine 500 of process 1 runs a registry call for 100 ns; goroutine
    // 500 of process 2 a storage call within that time.
    let t = multi_trace(vec![
        Call { pid: Some(1), ..call(REGISTRY, 500, 2, 5000, 100) },
        Call { pid: Some(2), ..call(STORAGE, 500, 2, 5010, 60) },
    ]);
    let r = stitch(&t);
    assert_eq!(r.outside, 2);
    let x = exclusive(&t, &r);
    // Nothing nests: the registry call's 100 ns are all its own.
    assert_eq!(x.own_ns, [0, 0, 0, 100, 60, 0]);
    assert_eq!(x.entries, [0, 0, 0, 1, 1, 0]);
}
