//! Root eBPF tests: real uprobes on the apiserver-shaped Go target, serving
//! real HTTPS requests backed by a real etcd. They never skip: without BPF
//! they fail, and say what is missing.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use analyzer::summary::Summary;
use testkit::{Apiserver, Etcd, LoadSpec, Variant};

const STORE: &str = "k8s.io/apiserver/pkg/storage/etcd3.(*store)";
const VENDOR: &str = "k8s.io/kubernetes/vendor/";

fn require_bpf() {
    if let Err(missing) = tracer::attach::privileges::check() {
        panic!("this test needs BPF and uprobes: {missing}");
    }
}

/// A `ktrace attach` run in the background, ready once its probes are placed.
struct Trace {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

impl Trace {
    fn start(pid: u32, funcs: &str) -> Trace {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ktrace"))
            .args(["attach", "--pid", &pid.to_string(), "--funcs", funcs, "--json", "--duration", "120s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ktrace");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[ktrace] {line}");
                let _ = tx.send(line);
            }
        });
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.contains(" probes on ") => break,
                Ok(_) => continue,
                Err(e) => {
                    let _ = child.kill();
                    panic!("ktrace never reported its probes placed ({e}); status {:?}", child.wait());
                }
            }
        }
        Trace { child, stderr: rx }
    }

    /// Stops the trace with SIGINT, as Ctrl-C would, and parses its summary;
    /// also returns what ktrace printed on stderr after its probes were placed.
    fn finish(self) -> (Summary, Vec<String>) {
        // SAFETY: kill(2) on our own child's PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let out = self.child.wait_with_output().expect("wait for ktrace");
        assert!(out.status.success(), "ktrace failed: {:?}", out.status);
        let summary = serde_json::from_slice(&out.stdout).expect("ktrace --json prints a summary document");
        (summary, self.stderr.iter().collect())
    }
}

fn calls(summary: &Summary, symbol: &str) -> u64 {
    summary
        .functions
        .iter()
        .find(|f| f.symbol == symbol)
        .unwrap_or_else(|| panic!("{symbol} missing from {summary:?}"))
        .calls
}

fn exact_counts(variant: Variant) {
    require_bpf();
    let etcd = Etcd::start().expect("start etcd");
    let api = Apiserver::start(variant, &etcd).expect("start the target");
    let prefix = if matches!(variant, Variant::Gopath) { VENDOR } else { "" };
    let sym = |m: &str| format!("{prefix}{STORE}.{m}");
    let funcs = ["Create", "Get", "GuaranteedUpdate", "Delete"].map(sym).join(",");

    let trace = Trace::start(api.pid(), &funcs);
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
    assert_eq!(calls(&summary, &sym("Create")), u64::from(spec.creates), "{summary:#?}");
    assert_eq!(calls(&summary, &sym("Get")), u64::from(spec.gets + spec.missing_gets), "{summary:#?}");
    assert_eq!(calls(&summary, &sym("GuaranteedUpdate")), u64::from(spec.updates), "{summary:#?}");
    assert_eq!(calls(&summary, &sym("Delete")), u64::from(spec.deletes), "{summary:#?}");
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
    let trace = Trace::start(api.pid(), "k8s.io/kubernetes/pkg/ktracetest.Recurse");
    let depth: u32 = 2000;
    let status = api.probe("POST", &format!("/ktrace/recurse?depth={depth}"), true).expect("recurse request");
    assert_eq!(status, 200);
    let (summary, stderr) = trace.finish();
    assert_eq!(calls(&summary, "k8s.io/kubernetes/pkg/ktracetest.Recurse"), u64::from(depth));
    // Without growth this test would prove nothing about the guard site.
    assert!(
        stderr.iter().any(|l| l.contains("stack-growth re-entries")),
        "the recursion never grew the stack; stderr: {stderr:?}"
    );
}

/// Reads `len` bytes of the target's memory at `addr` (Go links non-PIE, so
/// virtual addresses in the file are the runtime addresses).
fn read_mem(pid: u32, addr: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("open /proc/PID/mem");
    let mut buf = vec![0; len];
    mem.read_exact_at(&mut buf, addr).expect("read target text");
    buf
}

/// The entry site and its bytes in the binary file, from `ktrace funcs --json`
/// and the resolver.
fn entry_site(binary: &std::path::Path, symbol: &str) -> (u64, Vec<u8>) {
    let out = Command::new(env!("CARGO_BIN_EXE_ktrace"))
        .args(["funcs", "--binary", binary.to_str().unwrap(), "--funcs", symbol, "--json"])
        .output()
        .expect("run ktrace funcs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let site = u64::from_str_radix(v[0]["entry_site"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    let file = tracer::resolve::Binary::open(binary).unwrap();
    (site, file.text_at(site, 8).unwrap().to_vec())
}

/// SIGKILL gives ktrace no chance to clean up; the kernel must remove the
/// probes when its file descriptors close. The target keeps serving, and its
/// text equals the file again.
#[test]
fn sigkill_leaves_no_probe_behind() {
    require_bpf();
    let etcd = Etcd::start().expect("start etcd");
    let api = Apiserver::start(Variant::Optimized, &etcd).expect("start the target");
    let symbol = format!("{STORE}.Create");
    let (site, file_bytes) = entry_site(api.binary(), &symbol);
    assert_eq!(read_mem(api.pid(), site, 8), file_bytes, "untouched before tracing");

    let trace = Trace::start(api.pid(), &symbol);
    let live = read_mem(api.pid(), site, 8);
    assert_eq!(live[0], 0xcc, "a live uprobe shows as int3 in the target's text");
    assert_eq!(live[1..], file_bytes[1..]);

    let mut child = trace.child;
    child.kill().expect("SIGKILL ktrace");
    child.wait().expect("reap ktrace");
    let mut restored = false;
    for _ in 0..50 {
        if read_mem(api.pid(), site, 8) == file_bytes {
            restored = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(restored, "probe still in the target's text 5 s after ktrace was killed");
    let spec = LoadSpec { namespace: "after-kill".into(), creates: 3, ..Default::default() };
    assert_eq!(api.load(&spec).expect("the target still serves").creates, 3);
    assert!(api.is_alive());
}
