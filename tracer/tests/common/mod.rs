//! Shared by the root eBPF test binaries: running `ktrace attach` in the
//! background, reading its summary, and comparing the target's text with
//! the binary file.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use analyzer::summary::{FunctionSummary, Summary};

pub const STORE: &str = "k8s.io/apiserver/pkg/storage/etcd3.(*store)";
pub const VENDOR: &str = "k8s.io/kubernetes/vendor/";

/// Panics (never skips) when this environment cannot run eBPF.
pub fn require_bpf() {
    if let Err(missing) = tracer::attach::privileges::check() {
        panic!("this test needs BPF and uprobes: {missing}");
    }
}

/// A `ktrace attach` run in the background, ready once its probes are placed.
pub struct Trace {
    pub child: Child,
    pub stderr: mpsc::Receiver<String>,
    /// What ktrace printed on stderr until its probes were placed.
    pub before: Vec<String>,
}

impl Trace {
    /// `ktrace attach --pid PID --funcs FUNCS --json --duration 120s EXTRA…`,
    /// with `--no-budget` unless EXTRA sets `--max-overhead`: these tests
    /// check exact errors and latency counts, which only a session that
    /// times every call has (under the default budget they cover the
    /// `sampled_fraction` of the time; tests/budget.rs tests that).
    pub fn start(pid: u32, funcs: &str, extra: &[&str]) -> Trace {
        Self::start_under(&[], pid, funcs, extra)
    }

    /// Like [`Trace::start`], with ktrace run by `wrapper` (a command and
    /// its arguments, e.g. `setpriv …`), when not empty.
    pub fn start_under(wrapper: &[&str], pid: u32, funcs: &str, extra: &[&str]) -> Trace {
        Self::spawn(wrapper, &["--pid", &pid.to_string()], funcs, extra)
    }

    /// Like [`Trace::start_under`], with the target given by `target`
    /// (`--pid A,B`, or `--binary PATH`).
    pub fn spawn(wrapper: &[&str], target: &[&str], funcs: &str, extra: &[&str]) -> Trace {
        let budget: &[&str] = if extra.iter().any(|a| a.starts_with("--max-overhead") || *a == "--no-budget") {
            &[]
        } else {
            &["--no-budget"]
        };
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_ktrace"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_ktrace")),
        };
        let mut child = cmd
            .arg("attach")
            .args(target)
            .args(["--funcs", funcs, "--json", "--duration", "120s"])
            .args(budget)
            .args(extra)
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
        let mut before = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(120)) {
                Ok(line) if line.contains(" probes on ") => break,
                Ok(line) => before.push(line),
                Err(e) => {
                    let _ = child.kill();
                    panic!("ktrace never reported its probes placed ({e}); status {:?}", child.wait());
                }
            }
        }
        Trace { child, stderr: rx, before }
    }

    /// Waits up to `timeout` for a line of ktrace's stderr that `pred`
    /// accepts, and returns it; the lines before it are kept in `before`.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(line) => self.before.push(line),
                Err(e) => panic!("ktrace never said {what} ({e}); it said: {:?}", self.before),
            }
        }
    }

    /// Stops the trace with SIGINT, as Ctrl-C would, and parses its summary;
    /// also returns what ktrace printed on stderr after its probes were placed.
    pub fn finish(self) -> (Summary, Vec<String>) {
        let (stdout, stderr) = self.finish_raw();
        let summary = serde_json::from_slice(&stdout).expect("ktrace --json prints a summary document");
        (summary, stderr)
    }

    /// Like [`Trace::finish`], but returns stdout as ktrace wrote it.
    pub fn finish_raw(self) -> (Vec<u8>, Vec<String>) {
        // SAFETY: kill(2) on our own child's PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let out = self.child.wait_with_output().expect("wait for ktrace");
        let stderr: Vec<String> = self.stderr.iter().collect();
        assert!(out.status.success(), "ktrace failed: {:?}; stderr: {stderr:?}", out.status);
        (out.stdout, stderr)
    }
}

pub fn function<'a>(summary: &'a Summary, symbol: &str) -> &'a FunctionSummary {
    summary
        .functions
        .iter()
        .find(|f| f.symbol == symbol)
        .unwrap_or_else(|| panic!("{symbol} missing from {summary:#?}"))
}

pub fn calls(summary: &Summary, symbol: &str) -> u64 {
    function(summary, symbol).calls
}

/// Reads `len` bytes of the target's memory at `addr` (Go links non-PIE, so
/// virtual addresses in the file are the runtime addresses).
pub fn read_mem(pid: u32, addr: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("open /proc/PID/mem");
    let mut buf = vec![0; len];
    mem.read_exact_at(&mut buf, addr).expect("read target text");
    buf
}

fn hex(v: &serde_json::Value) -> u64 {
    u64::from_str_radix(v.as_str().expect("hex string").trim_start_matches("0x"), 16).expect("hex address")
}

/// Every probe site `ktrace funcs` plans for `spec` (entry sites and RETs),
/// with the bytes the binary file holds there.
pub fn sites(binary: &Path, spec: &str) -> Vec<(u64, Vec<u8>)> {
    let out = Command::new(env!("CARGO_BIN_EXE_ktrace"))
        .args(["funcs", "--binary", binary.to_str().unwrap(), "--funcs", spec, "--json"])
        .output()
        .expect("run ktrace funcs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let file = tracer::resolve::Binary::open(binary).unwrap();
    let mut out = Vec::new();
    for f in v.as_array().expect("an array of functions") {
        let entry = hex(&f["entry"]);
        let mut addrs = vec![hex(&f["entry_site"])];
        for off in f["ret_offsets"].as_array().into_iter().flatten() {
            addrs.push(entry + off.as_u64().expect("offset"));
        }
        for a in addrs {
            out.push((a, file.text_at(a, 1).unwrap().to_vec()));
        }
    }
    out
}

/// Waits up to 5 s for the target's text at every site to equal the file.
pub fn text_restored(pid: u32, sites: &[(u64, Vec<u8>)]) -> Result<(), String> {
    for _ in 0..50 {
        let differing: Vec<u64> = sites.iter().filter(|(a, b)| read_mem(pid, *a, b.len()) != *b).map(|s| s.0).collect();
        if differing.is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let differing: Vec<String> =
        sites.iter().filter(|(a, b)| read_mem(pid, *a, b.len()) != *b).map(|s| format!("{:#x}", s.0)).collect();
    Err(format!("probes still in the target's text 5 s later at {differing:?}"))
}

/// Requests driven at the target from a background thread, round after
/// round, until stopped; every round must succeed.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u32>,
}

impl Load {
    /// Starts issuing `round(i)` for i = 0, 1, …
    pub fn start(
        api: &std::sync::Arc<testkit::Apiserver>,
        round: impl Fn(u32) -> testkit::LoadSpec + Send + 'static,
    ) -> Load {
        use std::sync::{Arc, atomic::Ordering};
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (api, flag) = (Arc::clone(api), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut i = 0;
            while !flag.load(Ordering::Relaxed) {
                let report = api.load(&round(i)).expect("the target serves under tracing");
                assert_eq!(report.errors, 0, "round {i}");
                i += 1;
            }
            i
        });
        Load { stop, thread }
    }

    /// Stops after the current round; returns how many rounds ran.
    pub fn stop(self) -> u32 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("the load thread failed")
    }
}
