//! Root eBPF tests: a target in a container, i.e. in a mount namespace with
//! a root directory of its own (testkit's `Rootfs`: a copied static Go
//! binary, entered with pivot_root), so the path `/proc/PID/exe` gives
//! exists only inside it, or names another file on the host. ktrace must
//! read and probe the container's file, with exact counts. They never
//! skip: without BPF or root they fail, and say what is missing.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use common::{STORE, Trace, calls, require_bpf};
use testkit::{Apiserver, Etcd, LoadSpec, Rootfs, Variant, target_binary};
use tracer::resolve::Binary;

/// A path for the binary inside the container that the host does not have.
fn inside_path(test: &str) -> String {
    format!("/opt/ktrace-in-container-{test}-{}/kube-apiserver", std::process::id())
}

/// A directory created on the host for the test, removed on drop.
struct HostDir(PathBuf);

impl Drop for HostDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Traces the store of the containerized target under a known load and
/// checks the counts are exact, and the trace header names the file read
/// (below /proc/PID/root) and the container's build ID. Returns that ID.
fn trace_container(api: &Apiserver, inside: &str, namespace: &str) -> String {
    let pid = api.pid();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe, Path::new(inside), "the host names the file by its path inside the container");
    let store = |m: &str| format!("{STORE}.{m}");
    let funcs = ["Create", "Get", "Delete"].map(store).join(",");
    let dir = tempfile::tempdir().unwrap();
    let trace_file = dir.path().join("container.trace");
    let trace = Trace::start(pid, &funcs, &["--output", trace_file.to_str().unwrap()]);
    let spec = LoadSpec {
        namespace: namespace.into(),
        creates: 17,
        gets: 6,
        updates: 0,
        deletes: 4,
        missing_gets: 3,
        concurrency: 3,
    };
    let report = api.load(&spec).expect("drive load");
    assert_eq!(report.errors, 0);
    let (summary, _) = trace.finish();
    assert_eq!(summary.pid, Some(pid));
    assert_eq!(calls(&summary, &store("Create")), u64::from(spec.creates), "{summary:#?}");
    assert_eq!(calls(&summary, &store("Get")), u64::from(spec.gets + spec.missing_gets), "{summary:#?}");
    assert_eq!(calls(&summary, &store("Delete")), u64::from(spec.deletes), "{summary:#?}");

    let text = std::fs::read_to_string(&trace_file).unwrap();
    let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["binary"], format!("/proc/{pid}/root{inside}"), "{header}");
    let own = Binary::open(&target_binary(Variant::Optimized).unwrap()).unwrap().build_id().unwrap();
    assert_eq!(header["build_id"], own.as_str(), "{header}");
    assert!(api.is_alive(), "the target must survive tracing");
    own
}

/// The binary exists only in the container: ktrace reads it through
/// /proc/PID/root and counts exactly.
#[test]
fn traces_a_binary_only_the_container_has() {
    require_bpf();
    let inside = inside_path("only");
    assert!(!Path::new(&inside).exists(), "{inside} must not exist on the host");
    let etcd = Etcd::start().expect("start etcd");
    let rootfs = Rootfs::new().unwrap();
    let api = Apiserver::start_in_container(Variant::Optimized, &etcd, &rootfs, &inside).expect("start the target");
    trace_container(&api, &inside, "container-only");
}

/// The host holds another build of the same program at the same path (the
/// debug build: same functions, other addresses). ktrace still reads and
/// probes the container's file: had it read the host's, the probes would sit
/// on a file the target does not run and count nothing.
#[test]
fn a_host_file_at_the_same_path_is_not_read() {
    require_bpf();
    let inside = inside_path("shadowed");
    let host_dir = HostDir(Path::new(&inside).parent().unwrap().to_path_buf());
    assert!(!host_dir.0.exists(), "{} must not exist yet", host_dir.0.display());
    std::fs::create_dir_all(&host_dir.0).unwrap();
    let decoy = target_binary(Variant::Debug).unwrap();
    std::fs::copy(&decoy, &inside).unwrap();
    let decoy_id = Binary::open(&decoy).unwrap().build_id().unwrap();

    let etcd = Etcd::start().expect("start etcd");
    let rootfs = Rootfs::new().unwrap();
    let api = Apiserver::start_in_container(Variant::Optimized, &etcd, &rootfs, &inside).expect("start the target");
    let own = trace_container(&api, &inside, "container-shadowed");
    assert_ne!(own, decoy_id, "the two builds must differ for this test to mean anything");

    // `funcs --pid` plans on the container's file too: its entry address is
    // the optimized build's, not the host file's.
    let entry = |args: &[&str]| -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_ktrace"))
            .arg("funcs")
            .args(args)
            .args(["--funcs", &format!("{STORE}.Create"), "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["entry"].as_str().unwrap().to_string()
    };
    let optimized = target_binary(Variant::Optimized).unwrap();
    let by_pid = entry(&["--pid", &api.pid().to_string()]);
    assert_eq!(by_pid, entry(&["--binary", optimized.to_str().unwrap()]));
    assert_ne!(by_pid, entry(&["--binary", &inside]), "the host file has other addresses");
}

/// The capabilities deploy/daemonset.yaml grants, and no others: CAP_BPF
/// and CAP_PERFMON place uprobe_multi links, and CAP_SYS_PTRACE passes the
/// kernel's ptrace access check on /proc/PID/exe and /proc/PID/root of a
/// process whose capabilities are not a subset of ktrace's (the target runs
/// as root with all of them, as a static-pod kube-apiserver runs with the
/// runtime's default set). Without CAP_SYS_PTRACE ktrace fails in one line
/// with exit 4. Counts stay exact.
#[test]
fn the_daemonsets_capabilities_are_enough() {
    require_bpf();
    let inside = inside_path("caps");
    let etcd = Etcd::start().expect("start etcd");
    let rootfs = Rootfs::new().unwrap();
    let api = Apiserver::start_in_container(Variant::Optimized, &etcd, &rootfs, &inside).expect("start the target");
    let pid = api.pid().to_string();
    // Root's capabilities after exec are the bounding set; no_new_privs as
    // allowPrivilegeEscalation: false sets it.
    let setpriv = |caps: &str| {
        ["setpriv".to_string(), "--no-new-privs".into(), "--bounding-set".into(), format!("-all,{caps}"), "--".into()]
    };

    let without = setpriv("+bpf,+perfmon");
    let out = Command::new(&without[0])
        .args(&without[1..])
        .arg(env!("CARGO_BIN_EXE_ktrace"))
        .args(["attach", "--pid", &pid, "--funcs", &format!("{STORE}.Create"), "--count-only", "--duration", "1s"])
        .output()
        .expect("run setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("/proc/{pid}/exe")) && stderr.contains("CAP_SYS_PTRACE"), "{stderr}");

    let with = setpriv("+bpf,+perfmon,+sys_ptrace");
    let with: Vec<&str> = with.iter().map(String::as_str).collect();
    let create = format!("{STORE}.Create");
    let trace = Trace::start_under(&with, api.pid(), &create, &["--count-only", "--links", "multi"]);
    let trace_before = trace.before.clone();
    let spec = LoadSpec {
        namespace: "container-caps".into(),
        creates: 9,
        gets: 0,
        updates: 0,
        deletes: 0,
        missing_gets: 0,
        concurrency: 2,
    };
    assert_eq!(api.load(&spec).expect("drive load").errors, 0);
    let (summary, after) = trace.finish();
    assert_eq!(calls(&summary, &create), u64::from(spec.creates), "{summary:#?}");
    // The per-hit cost, which the overhead budget needs, is measured through
    // a uprobe_multi link when perf_event uprobes are not allowed.
    let said = [trace_before, after].concat();
    assert!(said.iter().any(|l| l.contains("per-hit cost on this host")), "{said:?}");
    assert!(!said.iter().any(|l| l.contains("cannot measure")), "{said:?}");
}

/// An upgrade replaced the file at the process's path (a rename over it)
/// while the old process runs: that path now holds another build, and the
/// kernel marks the running file deleted, so ktrace says so and reads it
/// through /proc/PID/exe; counts exact.
#[test]
fn a_binary_replaced_since_start_is_read_through_exe() {
    require_bpf();
    let inside = inside_path("replaced");
    let etcd = Etcd::start().expect("start etcd");
    let rootfs = Rootfs::new().unwrap();
    let api = Apiserver::start_in_container(Variant::Optimized, &etcd, &rootfs, &inside).expect("start the target");
    let installed = rootfs.host_path(&inside);
    let next = installed.with_extension("new");
    std::fs::copy(target_binary(Variant::Debug).unwrap(), &next).unwrap();
    std::fs::rename(&next, &installed).unwrap();

    let pid = api.pid();
    let create = format!("{STORE}.Create");
    let dir = tempfile::tempdir().unwrap();
    let trace_file = dir.path().join("replaced.trace");
    let trace = Trace::start(pid, &create, &["--output", trace_file.to_str().unwrap()]);
    assert!(
        trace
            .before
            .iter()
            .any(|l| l.contains("deleted or replaced since it started") && l.contains(&format!("/proc/{pid}/exe"))),
        "{:?}",
        trace.before
    );
    let spec = LoadSpec {
        namespace: "container-replaced".into(),
        creates: 8,
        gets: 0,
        updates: 0,
        deletes: 0,
        missing_gets: 0,
        concurrency: 2,
    };
    assert_eq!(api.load(&spec).expect("drive load").errors, 0);
    let (summary, _) = trace.finish();
    assert_eq!(calls(&summary, &create), u64::from(spec.creates), "{summary:#?}");
    let text = std::fs::read_to_string(&trace_file).unwrap();
    let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["binary"], format!("/proc/{pid}/exe"), "{header}");
    let own = Binary::open(&target_binary(Variant::Optimized).unwrap()).unwrap().build_id().unwrap();
    assert_eq!(header["build_id"], own.as_str(), "{header}");
}

/// The check after attach: a binary that is not the file the process runs
/// (as if it had exec'd another program meanwhile) is refused, naming both
/// build IDs; the file `target::open` read passes.
#[test]
fn a_process_running_another_file_is_refused_after_attach() {
    let bench = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/gotargets/bench/ktrace-bench");
    let mut child = Command::new(&bench).stdout(std::process::Stdio::null()).spawn().expect("run ktrace-bench");
    let pid = child.id();
    let (read, note) = tracer::target::open(pid).unwrap();
    assert_eq!(note, None);
    assert_eq!(read.path(), Path::new(&format!("/proc/{pid}/root{}", bench.canonicalize().unwrap().display())));
    tracer::target::check_runs(pid, &read).unwrap();
    let other = Binary::open(&target_binary(Variant::Optimized).unwrap()).unwrap();
    let err = tracer::target::check_runs(pid, &other).unwrap_err().to_string();
    let _ = child.kill();
    let _ = child.wait();
    assert!(err.contains("started another program") && err.contains(&read.build_id().unwrap()), "{err}");
    assert!(err.contains(&other.build_id().unwrap()), "{err}");
}
