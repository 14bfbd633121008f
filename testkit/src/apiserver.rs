//! The Go test target in `serve` mode, and its `load` and `probe` client
//! modes run from the same binary so client and server always match.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::process::{Supervised, probe_status, tail, terminate};
use crate::{Etcd, LoadReport, LoadSpec, Rootfs, Variant, target_binary};

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running test target, stopped (SIGTERM, then SIGKILL) and reaped on drop.
pub struct Apiserver {
    child: Supervised,
    pid: u32,
    url: String,
    binary: PathBuf,
    kubeconfig: PathBuf,
    ca_cert: PathBuf,
    token: PathBuf,
    stderr_log: PathBuf,
    _dir: TempDir,
}

impl Apiserver {
    /// Starts variant `v` against `etcd` on a free loopback port and waits
    /// (up to 20 s) for its `READY https://…` line.
    pub fn start(v: Variant, etcd: &Etcd) -> Result<Apiserver> {
        let binary = target_binary(v)?;
        let dir =
            tempfile::Builder::new().prefix("ktrace-apiserver-").tempdir().context("creating apiserver tempdir")?;
        let data = dir.path().join("data");
        let mut cmd = Command::new(&binary);
        cmd.arg("serve").args(["--etcd-servers", etcd.client_url(), "--bind", "127.0.0.1:0", "--data-dir"]).arg(&data);
        Self::launch(v, cmd, binary, data, dir)
    }

    /// Like [`Apiserver::start`], but in a container: a copy of the binary
    /// at `inside` (an absolute path) in `rootfs`, run in a mount namespace
    /// whose root is `rootfs`, with its data directory at `/data` there.
    /// Its network is the host's, so it reaches `etcd` on loopback, and
    /// [`Apiserver::load`] and [`Apiserver::probe`] run the host's copy.
    pub fn start_in_container(v: Variant, etcd: &Etcd, rootfs: &Rootfs, inside: &str) -> Result<Apiserver> {
        let binary = target_binary(v)?;
        rootfs.install(&binary, inside)?;
        let dir =
            tempfile::Builder::new().prefix("ktrace-apiserver-").tempdir().context("creating apiserver tempdir")?;
        let mut cmd = rootfs.command(inside)?;
        cmd.arg("serve").args(["--etcd-servers", etcd.client_url(), "--bind", "127.0.0.1:0", "--data-dir", "/data"]);
        Self::launch(v, cmd, binary, rootfs.host_path("/data"), dir)
    }

    /// Runs `cmd` (the server), with `data` its data directory as the host
    /// sees it, and waits for its READY line.
    fn launch(v: Variant, mut cmd: Command, binary: PathBuf, data: PathBuf, dir: TempDir) -> Result<Apiserver> {
        let stderr_log = dir.path().join("stderr.log");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_log).context("creating apiserver stderr log")?)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id();

        // A thread reads stdout so the wait below can time out, and keeps
        // draining it afterwards so the target never blocks on a full pipe.
        let stdout = child.stdout.take().context("apiserver stdout not captured")?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });

        let deadline = Instant::now() + READY_TIMEOUT;
        let url = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("READY ") {
                        break url.trim().to_string();
                    }
                }
                Err(e) => {
                    let why = match e {
                        RecvTimeoutError::Timeout => format!("no READY line within {READY_TIMEOUT:?}"),
                        RecvTimeoutError::Disconnected => "stdout closed before the READY line".to_string(),
                    };
                    terminate(&mut child, Duration::from_secs(2));
                    let status = child.try_wait().ok().flatten().map(|s| s.to_string()).unwrap_or_default();
                    bail!("{} serve ({v}): {why} {status}; stderr tail:\n{}", binary.display(), tail(&stderr_log, 20));
                }
            }
        };

        Ok(Apiserver {
            child: Supervised::new(child, Duration::from_secs(5)),
            pid,
            url,
            binary,
            kubeconfig: data.join("kubeconfig"),
            ca_cert: data.join("ca.crt"),
            token: data.join("token"),
            stderr_log,
            _dir: dir,
        })
    }

    /// Process id of the server, for attaching the tracer.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Base URL, `https://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Kubeconfig with the server URL, inline CA data and the bearer token.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The bearer token every request needs.
    pub fn token(&self) -> Result<String> {
        let token = fs::read_to_string(&self.token).with_context(|| format!("reading {}", self.token.display()))?;
        Ok(token.trim().to_string())
    }

    /// PEM file of the CA that signed the serving certificate.
    pub fn ca_cert(&self) -> &Path {
        &self.ca_cert
    }

    /// The binary this server runs (and that `load`/`probe` run).
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The server's stderr so far, for diagnosing a failed test.
    pub fn stderr_tail(&self, lines: usize) -> String {
        tail(&self.stderr_log, lines)
    }

    /// Runs the binary's `load` mode against this server. Fails if any
    /// request had an unexpected outcome (the error quotes the report and
    /// the client's stderr).
    pub fn load(&self, spec: &LoadSpec) -> Result<LoadReport> {
        crate::run_load(&self.binary, &self.kubeconfig, spec)
    }

    /// Makes one request with the binary's `probe` mode and returns the HTTP
    /// status. `method` is e.g. "GET"; `path` may carry a query string.
    pub fn probe(&self, method: &str, path: &str, with_token: bool) -> Result<u16> {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("probe").arg("--kubeconfig").arg(&self.kubeconfig).args(["--method", method, "--path", path]);
        if !with_token {
            cmd.arg("--no-token");
        }
        probe_status(&mut cmd, method, path)
    }

    /// True while the server process has not exited.
    pub fn is_alive(&self) -> bool {
        self.child.is_alive()
    }
}
