//! The command line's contract for bad input: one line on stderr, a
//! documented exit code, never a panic.

use std::process::{Command, Output};

use testkit::Variant;

fn ktrace(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ktrace")).args(args).output().expect("run ktrace")
}

fn assert_one_line_error(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line expected, got: {stderr}");
    assert!(stderr.starts_with("ktrace: error: "), "{stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn help_has_examples() {
    for sub in ["funcs", "attach"] {
        let out = ktrace(&[sub, "--help"]);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Examples:"), "{sub} --help: {text}");
        assert!(text.contains("--funcs"), "{sub} --help: {text}");
    }
}

#[test]
fn wrong_pid() {
    let out = ktrace(&["funcs", "--pid", "999999999", "--funcs", "main.main"]);
    assert_one_line_error(&out, 3, "no process with PID 999999999");
}

/// A process with no executable file: PID 2, the kernel's kthreadd.
#[test]
fn kernel_thread() {
    assert_eq!(std::fs::read_to_string("/proc/2/comm").unwrap().trim(), "kthreadd");
    let out = ktrace(&["funcs", "--pid", "2", "--funcs", "main.main"]);
    assert_one_line_error(&out, 3, "PID 2 runs no executable file");
}

#[test]
fn not_an_elf_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "just text\n").unwrap();
    let out = ktrace(&["funcs", "--binary", path.to_str().unwrap(), "--funcs", "main.main"]);
    assert_one_line_error(&out, 3, "not a valid ELF file");
}

#[test]
fn missing_file() {
    let out = ktrace(&["funcs", "--binary", "/nonexistent/kube-apiserver", "--funcs", "main.main"]);
    assert_one_line_error(&out, 3, "cannot read /nonexistent/kube-apiserver");
}

#[test]
fn not_a_go_binary() {
    let out = ktrace(&["funcs", "--binary", "/bin/true", "--funcs", "main.main"]);
    assert_one_line_error(&out, 3, "not a Go binary");
}

#[test]
fn no_match_suggests_the_closest_symbol() {
    let bin = testkit::target_binary(Variant::Optimized).unwrap();
    let out = ktrace(&[
        "funcs",
        "--binary",
        bin.to_str().unwrap(),
        "--funcs",
        "k8s.io/apiserver/pkg/storage/etcd3.(*store).Creat",
    ]);
    assert_one_line_error(&out, 3, "closest: k8s.io/apiserver/pkg/storage/etcd3.(*store).Create");
}

#[test]
fn without_privileges_attach_says_what_is_missing() {
    // Drop to nobody with no capabilities: the check must name CAP_BPF and
    // CAP_PERFMON before anything touches the kernel.
    let bin = testkit::target_binary(Variant::Optimized).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"])
        .arg(env!("CARGO_BIN_EXE_ktrace"))
        .args(["attach", "--binary", bin.to_str().unwrap(), "--funcs", "main.main", "--duration", "1s"])
        .output()
        .expect("run setpriv (util-linux)");
    assert_one_line_error(&out, 4, "missing: CAP_BPF, CAP_PERFMON");
}

#[test]
fn funcs_json_plans_the_stack_guard_entry() {
    let bin = testkit::target_binary(Variant::Stripped).unwrap();
    let sym = "k8s.io/apiserver/pkg/storage/etcd3.(*store).Create";
    let out = ktrace(&["funcs", "--binary", bin.to_str().unwrap(), "--funcs", sym, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = &v[0];
    assert_eq!(f["symbol"], sym);
    assert_eq!(f["source"], "pclntab", "a stripped build has no .symtab");
    assert_eq!(f["entry_kind"]["kind"], "stack_guard");
    assert_eq!(f["entry_emulated"], true);
    assert!(!f["ret_offsets"].as_array().unwrap().is_empty());
    assert!(f["file"].as_str().unwrap().ends_with("staging/src/k8s.io/apiserver/pkg/storage/etcd3/store.go"), "{f}");
}

#[test]
fn funcs_places_arguments_by_the_register_abi() {
    let bin = testkit::target_binary(Variant::Optimized).unwrap();
    let sym = "k8s.io/apiserver/pkg/storage/etcd3.(*store).Create";
    let out = ktrace(&["funcs", "--binary", bin.to_str().unwrap(), "--funcs", sym, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let args = v[0]["args"].as_array().expect("DWARF gives argument types");
    let at = |name: &str| {
        args.iter().find(|a| a["name"] == name).unwrap_or_else(|| panic!("{name}: {args:?}"))["location"].clone()
    };
    assert_eq!(at("key"), serde_json::json!({"registers": ["RDI", "RSI"]}));
    assert_eq!(at("ttl"), serde_json::json!({"stack": 0}));
    assert_eq!(at("~r0"), serde_json::json!({"registers": ["RAX", "RBX"]}));

    // The generated pointer wrapper of a value method: its DWARF omits the
    // receiver, which still takes RAX, so ctx moves to RBX:RCX.
    let wrapper = "k8s.io/apiserver/pkg/authorization/union.(*unionAuthzHandler).Authorize";
    let out = ktrace(&["funcs", "--binary", bin.to_str().unwrap(), "--funcs", wrapper, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ctx = v[0]["args"].as_array().unwrap().iter().find(|a| a["name"] == "ctx").unwrap().clone();
    assert_eq!(ctx["location"], serde_json::json!({"registers": ["RBX", "RCX"]}), "{v}");

    let stripped = testkit::target_binary(Variant::Stripped).unwrap();
    let out = ktrace(&["funcs", "--binary", stripped.to_str().unwrap(), "--funcs", sym, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v[0]["args"].is_null(), "no types without DWARF");
}

/// A small valid trace: one function, one call, an end record.
fn write_trace(path: &std::path::Path) {
    use analyzer::trace::{Call, End, FORMAT, Header, Mode, TraceWriter, TracedFunction, VERSION};
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        mode: Mode::Latency,
        pid: None,
        binary: "x".into(),
        build_id: None,
        go_version: None,
        start_unix_ns: 1_700_000_000_000_000_000,
        unredacted_args: Some(false),
        filter: None,
        functions: vec![TracedFunction {
            id: 0,
            symbol: "main.f".into(),
            file: None,
            line: None,
            groups: vec![],
            phase: None,
        }],
    };
    let mut w = TraceWriter::new(std::fs::File::create(path).unwrap(), &header).unwrap();
    let stack = vec!["main.main".into()];
    let call = Call {
        pid: None,
        func: 0,
        g: 1,
        goid: None,
        parent_goid: None,
        start_ns: 0,
        dur_ns: 1000,
        error: Some(false),
        args: Default::default(),
        truncated: false,
        stack,
    };
    w.call(&call).unwrap();
    w.finish(&End { duration_ns: 1_000_000, dropped_events: 0, sampled_out: 0 }).unwrap();
}

#[test]
fn flame_output_that_cannot_be_written_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.trace");
    write_trace(&trace);
    // A regular file where a directory should be: unwritable even for root.
    let not_a_dir = dir.path().join("plain");
    std::fs::write(&not_a_dir, "").unwrap();
    let missing_dir = dir.path().join("missing");
    for out_dir in [&missing_dir, &not_a_dir] {
        for name in ["out.svg", "out.json", "out.html", "out.pb.gz", "out.folded"] {
            let output = out_dir.join(name);
            let mut args = vec!["flame", "--trace", trace.to_str().unwrap(), "--output", output.to_str().unwrap()];
            // A .json file is the request timeline; this trace has no
            // requests, so ask for the report's JSON.
            if name.ends_with(".json") {
                args.extend(["--format", "json"]);
            }
            let out = ktrace(&args);
            assert_one_line_error(&out, 1, &format!("writing {}", output.display()));
        }
    }
}

#[test]
fn a_timeline_of_a_trace_without_requests_says_what_to_trace() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.trace");
    write_trace(&trace);
    let output = dir.path().join("requests.json");
    let out = ktrace(&["flame", "--trace", trace.to_str().unwrap(), "--output", output.to_str().unwrap()]);
    assert_one_line_error(&out, 3, "no requests in the trace: trace the request roots too");
    assert!(!output.exists());
}

#[test]
fn flame_bad_input_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.trace");
    std::fs::write(&trace, "not a trace\n").unwrap();
    let output = dir.path().join("out.svg");
    let out = ktrace(&["flame", "--trace", trace.to_str().unwrap(), "--output", output.to_str().unwrap()]);
    assert_one_line_error(&out, 3, "not a ktrace trace record");
    assert!(!output.exists(), "nothing is written for bad input");
}
