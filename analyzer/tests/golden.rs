//! Golden files for flamegraph SVGs and folded stacks, in deterministic
//! mode. The inputs are generated here (a CPU profile with inlined frames,
//! a heap profile, a trace with nested calls), never committed as binaries.
//! After an intended change, re-bless with
//! `KTRACE_BLESS=1 cargo test -p analyzer --test golden` and review the diff.

use std::path::PathBuf;

use analyzer::{
    flame::{FlameOptions, FlamePalette, Folded, render_diff_svg, render_svg},
    latency::LatencyStacks,
    pprof::{Profile, build::ProfileBuilder},
    trace::{self, Call, End, FORMAT, Header, Mode, TraceWriter, TracedFunction, VERSION},
};

const STORE: &str = "k8s.io/apiserver/pkg/storage/etcd3.(*store)";
const AUTHN: &str = "k8s.io/apiserver/pkg/endpoints/filters.withAuthentication.func1";
const HANDLER: &str = "k8s.io/apiserver/pkg/endpoints/handlers.createHandler.func1";

fn check(name: &str, actual: &[u8]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/flame").join(name);
    if std::env::var_os("KTRACE_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with KTRACE_BLESS=1 to create it", path.display()));
    let (exp, act) = (String::from_utf8_lossy(&expected), String::from_utf8_lossy(actual));
    for (i, (e, a)) in exp.lines().zip(act.lines()).enumerate() {
        assert_eq!(a, e, "{name}: line {} differs (KTRACE_BLESS=1 re-blesses)", i + 1);
    }
    assert_eq!(act.lines().count(), exp.lines().count(), "{name}: line count differs");
}

fn cpu(extra_create: i64) -> Profile {
    let mut b = ProfileBuilder::new(&[("samples", "count"), ("cpu", "nanoseconds")]);
    b.period(("cpu", "nanoseconds"), 10_000_000);
    let serve = b.location("net/http.(*conn).serve", &[]);
    let authn = b.location(AUTHN, &[]);
    let handler = b.location(HANDLER, &[]);
    let create = b.location(&format!("{STORE}.Create"), &[]);
    // encoding/json was inlined into the store's encode helper.
    let encode = b.location(&format!("{STORE}.encode"), &["encoding/json.Marshal"]);
    let syscall = b.location("syscall.Syscall", &[]);
    b.sample_ids(vec![encode, create, handler, authn, serve], &[7, 70_000_000 + extra_create]);
    b.sample_ids(vec![syscall, create, handler, authn, serve], &[3, 30_000_000]);
    b.sample_ids(vec![authn, serve], &[2, 20_000_000]);
    b.sample(&["runtime.gcBgMarkWorker"], &[4, 40_000_000]);
    Profile::decode(&b.encode_gzip()).unwrap()
}

fn opts(title: &str, palette: FlamePalette) -> FlameOptions {
    FlameOptions { title: title.into(), count_name: "ns".into(), palette, deterministic: true, ..Default::default() }
}

fn svg(f: &Folded, o: &FlameOptions) -> Vec<u8> {
    let mut out = Vec::new();
    render_svg(f, o, &mut out).unwrap();
    out
}

fn folded_bytes(f: &Folded) -> Vec<u8> {
    let mut out = Vec::new();
    f.write(&mut out).unwrap();
    out
}

#[test]
fn cpu_profile() {
    let p = cpu(0);
    let f = p.fold(p.sample_index(None).unwrap()).unwrap();
    check("cpu.folded", &folded_bytes(&f));
    check("cpu.svg", &svg(&f, &opts("CPU", FlamePalette::Hot)));
}

#[test]
fn differential() {
    let base = cpu(0);
    let new = cpu(50_000_000);
    let fold = |p: &Profile| p.fold(1).unwrap();
    let mut out = Vec::new();
    render_diff_svg(&fold(&base), &fold(&new), &opts("CPU, new vs base", FlamePalette::Hot), &mut out).unwrap();
    check("diff.svg", &out);
}

#[test]
fn heap_sample_types() {
    let mut b = ProfileBuilder::new(&[
        ("alloc_objects", "count"),
        ("alloc_space", "bytes"),
        ("inuse_objects", "count"),
        ("inuse_space", "bytes"),
    ]);
    b.sample(&["bytes.growSlice", &format!("{STORE}.Create"), HANDLER], &[10, 40960, 1, 4096]);
    b.sample(&["runtime.malg", "runtime.newproc1"], &[2, 8192, 2, 8192]);
    let p = Profile::decode(&b.encode_gzip()).unwrap();
    let mut all = Vec::new();
    for (i, t) in p.sample_types().iter().enumerate() {
        all.extend_from_slice(format!("# {}\n", t.name).as_bytes());
        all.extend(folded_bytes(&p.fold(i).unwrap()));
    }
    check("heap.folded", &all);
}

/// A trace written with the tracer's own writer and read back: two
/// requests, authn wrapping a handler wrapping the store.
fn trace() -> trace::Trace {
    let f = |id, s: String, g: &str| TracedFunction {
        id,
        symbol: s,
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
        binary: "kube-apiserver".into(),
        build_id: None,
        go_version: Some("go1.19.8".into()),
        start_unix_ns: 1_700_000_000_000_000_000,
        unredacted_args: Some(false),
        filter: None,
        functions: vec![
            f(0, AUTHN.into(), "authn"),
            f(1, HANDLER.into(), "handlers"),
            f(2, format!("{STORE}.Create"), "storage"),
        ],
    };
    let c = |func, g, start_ns, dur_ns, stack: &[&str]| Call {
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
    let serve = "net/http.(*conn).serve";
    let calls = [
        c(0, 1, 0, 10_000_000, &["net/http.serverHandler.ServeHTTP", serve]),
        c(1, 1, 1_000_000, 8_000_000, &["net/http.HandlerFunc.ServeHTTP", AUTHN, serve]),
        c(
            2,
            1,
            2_000_000,
            5_000_000,
            &["k8s.io/apiserver/pkg/registry/generic/registry.(*Store).Create", HANDLER, AUTHN, serve],
        ),
        c(0, 2, 20_000_000, 4_000_000, &["net/http.serverHandler.ServeHTTP", serve]),
        c(1, 2, 20_500_000, 3_000_000, &[]),
    ];
    let mut w = TraceWriter::new(Vec::new(), &header).unwrap();
    for call in &calls {
        w.call(call).unwrap();
    }
    let bytes = w.finish(&End { duration_ns: 30_000_000, dropped_events: 0, sampled_out: 0 }).unwrap();
    trace::read(&bytes[..]).unwrap()
}

#[test]
fn latency_from_a_trace() {
    let l = LatencyStacks::of(&trace()).folded();
    check("latency.folded", &folded_bytes(&l));
    check("latency.svg", &svg(&l, &opts("Wall time of traced calls", FlamePalette::Io)));
    // Self times add up to the outermost calls' wall time.
    assert_eq!(l.total(), 14_000_000);
}
