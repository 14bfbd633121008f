//! Every file `ktrace flame` writes is private (mode 0600): each output
//! format, the report's sibling files, a profile copied as is, and a file
//! that already existed world-readable. The umask is cleared first, so a
//! file created without an explicit mode would come out 0666 and fail.
//! (The trace file of `ktrace attach --output` is checked by the root test
//! `safety::secrets_never_leave_the_target`.) Not root: no probes.

use std::{os::unix::fs::PermissionsExt, path::Path, process::Command};

use analyzer::{
    pprof::build::ProfileBuilder,
    trace::{Call, End, FORMAT, Header, Mode, TraceWriter, TracedFunction, VERSION},
};

const CREATE: &str = "k8s.io/apiserver/pkg/storage/etcd3.(*store).Create";

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o7777
}

fn write_trace(path: &Path) {
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        mode: Mode::Latency,
        pid: Some(1),
        binary: "/proc/1/exe".into(),
        build_id: None,
        go_version: None,
        start_unix_ns: 1_700_000_000_000_000_000,
        unredacted_args: Some(false),
        filter: None,
        functions: vec![TracedFunction {
            id: 0,
            symbol: CREATE.into(),
            file: None,
            line: None,
            groups: vec![],
            phase: None,
        }],
    };
    let mut w = TraceWriter::new(std::fs::File::create(path).unwrap(), &header).unwrap();
    for i in 0..10u64 {
        w.call(&Call {
            pid: None,
            func: 0,
            g: 0xc000_0000 + i,
            goid: None,
            parent_goid: None,
            start_ns: i * 1_000_000,
            dur_ns: 500_000,
            error: Some(false),
            args: Default::default(),
            truncated: false,
            stack: vec!["k8s.io/apiserver/pkg/registry/generic/registry.(*Store).Create".into()],
        })
        .unwrap();
    }
    w.finish(&End { duration_ns: 1_000_000_000, dropped_events: 0, sampled_out: 0 }).unwrap();
}

#[test]
fn every_file_flame_writes_is_private() {
    // SAFETY: umask(2) has no preconditions; this binary has this one test,
    // so no other thread creates files meanwhile.
    unsafe { libc::umask(0) };
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let trace = p("t.trace");
    write_trace(&trace);
    let mut b = ProfileBuilder::new(&[("samples", "count"), ("cpu", "nanoseconds")]);
    b.window(1_700_000_000_000_000_000, 1_000_000_000);
    b.sample(&["encoding/json.Marshal", CREATE], &[3, 30_000_000]);
    std::fs::write(p("cpu.pb.gz"), b.encode_gzip()).unwrap();
    std::fs::set_permissions(p("cpu.pb.gz"), std::fs::Permissions::from_mode(0o644)).unwrap();
    // An output that exists already, readable by everyone.
    std::fs::write(p("old.svg"), "old").unwrap();
    std::fs::set_permissions(p("old.svg"), std::fs::Permissions::from_mode(0o666)).unwrap();

    let (t, cpu) = (trace.to_str().unwrap(), p("cpu.pb.gz").to_str().unwrap().to_string());
    let runs: [(&[&str], &str); 7] = [
        (&["--trace", t], "latency.svg"),
        (&["--trace", t], "old.svg"),
        (&["--trace", t], "latency.folded"),
        (&["--trace", t], "latency.pb.gz"),
        (&["--trace", t, "--format", "json"], "report.json"),
        (&["--trace", t, "--pprof", &cpu], "merged.html"),
        (&["--pprof", &cpu], "copy.pb.gz"),
    ];
    for (args, out) in runs {
        let run = Command::new(env!("CARGO_BIN_EXE_ktrace"))
            .arg("flame")
            .args(args)
            .args(["--output", p(out).to_str().unwrap()])
            .output()
            .unwrap();
        assert!(run.status.success(), "{out}: {}", String::from_utf8_lossy(&run.stderr));
    }
    assert_eq!(std::fs::read(p("copy.pb.gz")).unwrap(), std::fs::read(p("cpu.pb.gz")).unwrap(), "a copy as is");
    for name in [
        "latency.svg",
        "old.svg",
        "latency.folded",
        "latency.pb.gz",
        "report.json",
        "merged.html",
        "merged.json",
        "merged-latency.svg",
        "merged-cpu.svg",
        "copy.pb.gz",
    ] {
        assert_eq!(mode(&p(name)), 0o600, "{name}");
    }
}
