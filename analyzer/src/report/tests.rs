//! Report arithmetic on a small synthetic trace and CPU profile.

use super::*;
use crate::{
    pprof::build::ProfileBuilder,
    trace::{Call, End, FORMAT, FunctionStats, Header, LatencyNs, Mode, TracedFunction, VERSION},
};

const H: &str = "k8s.io/apiserver/pkg/endpoints/handlers.createHandler.func1";
const S: &str = "k8s.io/apiserver/pkg/storage/etcd3.(*store).Create";

fn call(func: u32, g: u64, start_ns: u64, dur_ns: u64) -> Call {
    Call {
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
        stack: vec![],
    }
}

fn trace() -> Trace {
    let f = |id, s: &str, g: &str| TracedFunction {
        id,
        symbol: s.into(),
        file: None,
        line: None,
        groups: vec![g.into()],
        phase: None,
    };
    let stats = |func, calls, sum, max| FunctionStats {
        pid: None,
        func,
        calls,
        errors: Some(0),
        latency_ns: Some(LatencyNs { p50: max, p90: max, p99: max, max, sum }),
        histogram: vec![],
        detached: None,
        sampled_fraction: Some(1.0),
    };
    Trace {
        header: Some(Header {
            format: FORMAT.into(),
            version: VERSION,
            mode: Mode::Latency,
            pid: Some(1),
            binary: "kube-apiserver".into(),
            build_id: None,
            go_version: None,
            start_unix_ns: 1_000_000_000,
            unredacted_args: Some(false),
            filter: None,
            functions: vec![f(0, H, "handlers"), f(1, S, "storage")],
        }),
        // Two requests of 100 ms, each with a 60 ms Create inside.
        calls: vec![
            call(0, 1, 0, 100_000_000),
            call(1, 1, 20_000_000, 60_000_000),
            call(0, 2, 0, 100_000_000),
            call(1, 2, 30_000_000, 60_000_000),
        ],
        functions: vec![stats(0, 2, 200_000_000, 100_000_000), stats(1, 2, 120_000_000, 60_000_000)],
        profiles: vec![],
        end: Some(End { duration_ns: 200_000_000, dropped_events: 0, sampled_out: 0 }),
    }
}

fn cpu() -> CpuProfile {
    let mut b = ProfileBuilder::new(&[("samples", "count"), ("cpu", "nanoseconds")]);
    b.window(1_000_000_000, 200_000_000);
    b.sample(&[S, H, "net/http.(*conn).serve"], &[3, 30_000_000]);
    b.sample(&[H, "net/http.(*conn).serve"], &[1, 10_000_000]);
    b.sample(&["runtime.gcBgMarkWorker"], &[5, 50_000_000]);
    CpuProfile { profile: Profile::decode(&b.encode_gzip()).unwrap(), source: "test".into(), window: None }
}

#[test]
fn cpu_and_off_cpu_shares() {
    let r = build(&trace(), Some(&cpu())).unwrap();
    let s = r.functions.iter().find(|f| f.name == S).unwrap();
    assert_eq!((s.calls, s.wall_ns, s.cpu_ns), (2, Some(120_000_000), Some(30_000_000)));
    assert!((s.off_cpu_share.unwrap() - 0.75).abs() < 1e-9);
    let h = r.functions.iter().find(|f| f.name == H).unwrap();
    assert_eq!(h.cpu_ns, Some(40_000_000));
    let g = r.groups.iter().find(|g| g.name == "storage").unwrap();
    assert_eq!((g.calls, g.p50_ns, g.max_ns, g.wall_ns), (2, Some(60_000_000), Some(60_000_000), Some(120_000_000)));
    assert_eq!(r.cpu_profile.as_ref().unwrap().overlap_ns, Some(200_000_000));
    let table = table::render(&r);
    assert!(table.contains("etcd3.(*store).Create") && table.contains("75%"), "{table}");
}

#[test]
fn a_profile_stored_in_the_trace_is_used_and_windows_clip() {
    let mut t = trace();
    let mut b = ProfileBuilder::new(&[("samples", "count"), ("cpu", "nanoseconds")]);
    b.sample(&[S], &[1, 10_000_000]);
    t.profiles.push(crate::trace::Profile {
        kind: "profile".into(),
        start_ns: 0,
        duration_ns: 50_000_000,
        data_base64: base64::engine::general_purpose::STANDARD.encode(b.encode_gzip()),
    });
    let r = build(&t, None).unwrap();
    let s = r.functions.iter().find(|f| f.name == S).unwrap();
    assert_eq!(s.cpu_ns, Some(10_000_000));
    // Create ran 20..80 ms and 30..90 ms; the window is 0..50 ms: 50 ms of 120.
    assert!((s.off_cpu_share.unwrap() - 0.8).abs() < 1e-9, "{:?}", s.off_cpu_share);
    assert_eq!(r.cpu_profile.unwrap().source, "stored in the trace");
}

#[test]
fn without_a_profile_cpu_is_null() {
    let r = build(&trace(), None).unwrap();
    assert!(r.functions.iter().all(|f| f.cpu_ns.is_none() && f.off_cpu_share.is_none()));
    let v = serde_json::to_value(&r).unwrap();
    assert!(v["functions"][0]["cpu_ns"].is_null());
}

#[test]
fn write_makes_a_self_contained_page() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let (_, w) = write(&trace(), Some(&cpu()), &html, &ReportOptions { deterministic: true }).unwrap();
    let page = std::fs::read_to_string(&w.html).unwrap();
    // Each inferno SVG nests its frames in an inner <svg id="frames">.
    assert_eq!(page.matches("<svg id=\"frames\"").count(), 2);
    assert!(page.contains("id=\"latency-flame\"") && page.contains("id=\"cpu-flame\""));
    // Nothing is fetched: no scripts, links or remote sources.
    for bad in ["<script", "<link", "src=\"http", "href=\"http", "url(http"] {
        assert!(!page.contains(bad), "{bad}");
    }
    assert!(w.latency_svg.unwrap().is_file() && w.cpu_svg.unwrap().is_file() && w.json.is_file());
}

#[test]
fn a_trace_without_a_header_is_an_error_not_a_panic() {
    let headerless = Trace { header: None, ..trace() };
    assert!(matches!(build(&headerless, None), Err(ReportError::NoHeader)));
}

/// A function record of `samples` in process `pid`, as the tracer writes one.
fn stats_of(func: u32, pid: u32, samples: &[u64]) -> FunctionStats {
    use tracer_common::hist::{BUCKETS, bucket_of};
    let mut h = crate::hist::Histogram { counts: vec![0; BUCKETS as usize], sum: 0, max: 0 };
    for &s in samples {
        h.counts[bucket_of(s) as usize] += 1;
        h.sum += s;
        h.max = h.max.max(s);
    }
    FunctionStats {
        pid: Some(pid),
        func,
        calls: samples.len() as u64,
        errors: Some(1),
        latency_ns: h.latency(),
        histogram: h.buckets(),
        detached: None,
        sampled_fraction: Some(1.0),
    }
}

/// Each function has one record per process: the rows add them up, and
/// percentiles come from the merged histogram, not from the last record.
#[test]
fn function_rows_add_up_the_processes() {
    let mut t = trace();
    t.header.as_mut().unwrap().pid = None;
    for (c, pid) in t.calls.iter_mut().zip([1, 1, 2, 2]) {
        c.pid = Some(pid);
    }
    let (ms, one, two) = (1_000_000, [10, 20, 30], [70, 80]);
    let scaled = |v: &[u64]| v.iter().map(|x| x * ms).collect::<Vec<_>>();
    t.functions = vec![
        stats_of(0, 1, &[100 * ms]),
        stats_of(1, 1, &scaled(&one)),
        stats_of(0, 2, &[100 * ms]),
        stats_of(1, 2, &scaled(&two)),
    ];
    let r = build(&t, None).unwrap();
    let s = r.functions.iter().find(|f| f.name == S).unwrap();
    assert_eq!((s.calls, s.errors, s.wall_ns), (5, Some(2), Some(210 * ms)));
    // The median of 10, 20, 30, 70, 80 ms is 30 ms (its bucket's top, capped
    // by nothing); process 2's alone would be 70 ms.
    let (_, hi) = tracer_common::hist::bucket_bounds(tracer_common::hist::bucket_of(30 * ms));
    assert_eq!((s.p50_ns, s.max_ns), (Some(hi - 1), Some(80 * ms)));
    assert_eq!(r.functions.iter().find(|f| f.name == H).unwrap().calls, 2);
    assert_eq!((r.trace.pid, &r.trace.pids), (None, &vec![1, 2]));
    assert!(r.notes.iter().any(|n| n.contains("2 processes (pids 1, 2)")), "{:?}", r.notes);
    assert!(html::page(&r, None, None).contains("(PID 1, 2)"));
    // A single-process trace says nothing of processes.
    let single = build(&trace(), None).unwrap();
    assert!(single.trace.pids.is_empty() && !single.notes.iter().any(|n| n.contains("processes")));
    assert!(serde_json::to_value(&single).unwrap()["trace"].get("pids").is_none());
}

/// What the trace fuzz target runs, on a hostile trace of several
/// processes: no panic, whatever the pids, goroutines and histograms say.
#[test]
fn a_hostile_trace_of_several_processes_does_not_panic() {
    let text = r#"{"type":"header","format":"ktrace-trace","version":1,"mode":"latency","pid":null,"binary":"x","build_id":null,"go_version":null,"start_unix_ns":18446744073709551615,"functions":[{"id":0,"symbol":"a","file":null,"line":null,"groups":["request"],"phase":"request"},{"id":1,"symbol":"b","file":null,"line":null,"groups":["storage"]}]}
{"type":"call","func":0,"pid":4294967295,"g":0,"goid":1,"parent_goid":2,"start_ns":18446744073709551615,"dur_ns":18446744073709551615}
{"type":"call","func":1,"pid":0,"g":0,"goid":2,"parent_goid":1,"start_ns":5,"dur_ns":18446744073709551615}
{"type":"call","func":1,"g":0,"goid":1,"parent_goid":2,"start_ns":0,"dur_ns":1}
{"type":"call","func":0,"pid":0,"g":0,"goid":1,"parent_goid":1,"start_ns":3,"dur_ns":0}
{"type":"function","func":1,"pid":0,"calls":18446744073709551615,"errors":18446744073709551615,"latency_ns":{"p50":1,"p90":1,"p99":1,"max":18446744073709551615,"sum":18446744073709551615},"histogram":[{"lo":18446744073709551615,"hi":0,"count":18446744073709551615}],"sampled_fraction":0.0}
{"type":"function","func":1,"pid":1,"calls":18446744073709551615,"errors":null,"latency_ns":null,"histogram":[{"lo":0,"hi":1,"count":18446744073709551615}],"sampled_fraction":1e300}
{"type":"function","func":1,"calls":0,"errors":1,"latency_ns":null,"histogram":[]}
"#;
    let t = crate::trace::read(text.as_bytes()).unwrap();
    let reqs = requests::stitch(&t);
    let _ = crate::timeline::chrome_trace(&t, &reqs);
    let _ = requests::exclusive(&t, &reqs);
    let r = build(&t, None).unwrap();
    assert_eq!(r.trace.pids, vec![0, 1, u32::MAX]);
    assert_eq!(r.functions[1].calls, u64::MAX);
    assert!(r.functions[1].timed.is_some_and(|f| (0.0..=1.0).contains(&f)), "{:?}", r.functions[1].timed);
    let _ = html::page(&r, None, None);
    let _ = table::render(&r);
}
