//! Test fixtures for ktrace's integration tests: a throw-away etcd, a real
//! Prometheus server, and the Go test target (`targets/apiserver`, built by
//! `cargo xtask build-targets`) serving on loopback, plus the target's own `load` and `probe` client modes
//! for driving exact, known request counts.
//!
//! Every fixture owns its temporary directory and child process, and kills
//! and reaps the child on drop, so a failing test leaves nothing running.
//! Environment problems (no etcd, binaries not built) are errors with a
//! message saying what to do, never panics.

#![deny(missing_docs)]

mod apiserver;
mod container;
mod etcd;
pub mod kube;
mod process;
mod prometheus;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

pub use apiserver::Apiserver;
pub use container::Rootfs;
pub use etcd::Etcd;
pub use kube::{KubeApiserver, KubeVariant, User};
pub use prometheus::Prometheus;

/// One HTTP/1.1 GET of `path` on `addr` (`host:port`, no TLS); returns the
/// status and body.
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    etcd::http_request(addr, "GET", path, None)
}

/// One build variant of the Go test target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Default `go build`: inlining on, DWARF present.
    Optimized,
    /// `-gcflags=all=-N -l`: no optimization, no inlining.
    Debug,
    /// `-ldflags=-s -w`: no symbol table and no DWARF, like release builds.
    Stripped,
    /// GOPATH build: apiserver symbols carry the `k8s.io/kubernetes/vendor/` prefix.
    Gopath,
}

impl Variant {
    /// Every variant, in build order.
    pub const ALL: [Variant; 4] = [Variant::Optimized, Variant::Debug, Variant::Stripped, Variant::Gopath];

    /// The variant's name, which is also its directory under `target/gotargets/`.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Optimized => "optimized",
            Variant::Debug => "debug",
            Variant::Stripped => "stripped",
            Variant::Gopath => "gopath",
        }
    }

    /// Prefix of every `k8s.io/apiserver` symbol in this variant's binary.
    pub fn apiserver_symbol_prefix(self) -> &'static str {
        match self {
            Variant::Gopath => "k8s.io/kubernetes/vendor/k8s.io/apiserver/pkg/",
            _ => "k8s.io/apiserver/pkg/",
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The workspace root: the parent of this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Path of a built variant, `<root>/target/gotargets/<name>/kube-apiserver`.
///
/// Fails if the binary has not been built yet.
pub fn target_binary(v: Variant) -> Result<PathBuf> {
    let path = workspace_root().join("target/gotargets").join(v.name()).join("kube-apiserver");
    if !path.is_file() {
        bail!("Go test target {} not found at {}; run `cargo xtask build-targets`", v.name(), path.display());
    }
    Ok(path)
}

/// Request counts for [`Apiserver::load`]. The target issues exactly these
/// requests, in this order: `creates` (distinct new names), `gets` and
/// `updates` cycling over the created names, `deletes` of the first
/// `deletes` created names, and `missing_gets` of names that never existed
/// (each must answer 404).
#[derive(Debug, Default, Clone)]
pub struct LoadSpec {
    /// Namespace of the configmaps; `"default"` when empty.
    pub namespace: String,
    /// Creates (POST), each a new name.
    pub creates: u32,
    /// Gets (GET) of created names; needs `creates > 0`.
    pub gets: u32,
    /// Updates (PUT) of created names; needs `creates > 0`.
    pub updates: u32,
    /// Deletes (DELETE); at most `creates`.
    pub deletes: u32,
    /// Gets of names that do not exist, expecting 404.
    pub missing_gets: u32,
    /// Requests in flight at once; 0 means 1.
    pub concurrency: u32,
}

/// What the target's `load` mode reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct LoadReport {
    /// Creates issued.
    pub creates: u32,
    /// Gets of existing objects issued.
    pub gets: u32,
    /// Updates issued.
    pub updates: u32,
    /// Deletes issued.
    pub deletes: u32,
    /// Gets of missing objects issued.
    pub missing_gets: u32,
    /// etcd keys of the created objects in creation order
    /// (`/registry/configmaps/<ns>/<name>`); the first `deletes` of them
    /// have been deleted again.
    pub keys: Vec<String>,
    /// Requests with an unexpected outcome.
    pub errors: u32,
}

/// Runs the Go target's `load` mode with `kubeconfig`. Fails if any request
/// had an unexpected outcome (the error quotes the report and the client's
/// stderr).
pub fn run_load(client: &Path, kubeconfig: &Path, spec: &LoadSpec) -> Result<LoadReport> {
    let namespace = if spec.namespace.is_empty() { "default" } else { spec.namespace.as_str() };
    let mut cmd = Command::new(client);
    cmd.arg("load").arg("--kubeconfig").arg(kubeconfig).args(["--namespace", namespace]);
    for (flag, n) in [
        ("--creates", spec.creates),
        ("--gets", spec.gets),
        ("--updates", spec.updates),
        ("--deletes", spec.deletes),
        ("--missing-gets", spec.missing_gets),
        ("--concurrency", spec.concurrency.max(1)),
    ] {
        cmd.arg(flag).arg(n.to_string());
    }
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("running {} load", client.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("load {spec:?} failed ({}):\nstdout: {}\nstderr: {}", out.status, stdout.trim(), stderr.trim());
    }
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).context("load printed no report")?;
    serde_json::from_str(line).with_context(|| format!("parsing load report {line:?}"))
}
