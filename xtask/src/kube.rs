//! Builds the real kube-apiserver from the Go module proxy: the module in
//! `targets/kube-apiserver` holds only go.mod and go.sum (k8s.io/kubernetes
//! v1.36.3 and a `replace` for each staging module), and `go build` fetches
//! the source into the module cache.
//!
//! Three variants, cached under `~/.cache/ktrace/kube-apiserver/<variant>/`
//! (or `$KTRACE_CACHE/kube-apiserver/…`) so that a machine builds each once:
//! a variant is rebuilt only when go.mod, go.sum, the flags or the Go
//! version change (the `stamp` file beside the binary records them).
//!
//! - `debug`: `-gcflags=all=-N -l`, the build the seeds run under Delve;
//! - `release`: as Kubernetes ships it (`-trimpath`, `CGO_ENABLED=0`,
//!   `-tags=selinux,notest`, the version ldflags), but unstripped;
//! - `stripped`: the release build linked with `-s -w`, the shape of the
//!   official binaries (only `.gopclntab` and `.go.buildinfo` left).
//!
//! A cold build prints one progress line every 20 s (packages compiled of
//! the total) and, at the end, its wall time, its largest process's peak RSS
//! and the binary size, which `build.json` keeps.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// Source directory, relative to the workspace root.
const MODULE_DIR: &str = "targets/kube-apiserver";
/// The package built.
const PACKAGE: &str = "k8s.io/kubernetes/cmd/kube-apiserver";
/// The Kubernetes version go.mod requires; the version ldflags repeat it.
pub const VERSION: &str = "v1.36.3";
/// Go 1.26 is what k8s.io/kubernetes v1.36 declares (`go 1.26.0`).
const GO_MIN_MINOR: u32 = 26;

/// Variant names, in build order (stripped reuses release's compiled packages).
pub const VARIANTS: [&str; 3] = ["release", "stripped", "debug"];

/// Where the builds live (testkit finds them there).
pub use testkit::kube::cache_dir;

/// The Go that builds Kubernetes: `$KTRACE_GO`, else the machine's
/// /usr/local/go (Go 1.26.8), never whatever `go` PATH finds first
/// (Debian's /usr/bin/go is 1.19, which cannot build it).
pub fn go_binary() -> PathBuf {
    std::env::var_os("KTRACE_GO").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/local/go/bin/go"))
}

fn ldflags() -> String {
    let minor = VERSION.split('.').nth(1).unwrap_or("0");
    let mut flags = Vec::new();
    for pkg in ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"] {
        for (k, v) in [("gitVersion", VERSION), ("gitMajor", "1"), ("gitMinor", minor), ("gitTreeState", "clean")] {
            flags.push(format!("-X '{pkg}.{k}={v}'"));
        }
    }
    flags.join(" ")
}

/// The `go build` arguments of one variant, before `-o`.
fn build_args(variant: &str) -> Result<Vec<String>> {
    let release = || vec!["-trimpath".to_string(), "-tags=selinux,notest".to_string()];
    Ok(match variant {
        "release" => [release(), vec![format!("-ldflags={}", ldflags())]].concat(),
        "stripped" => [release(), vec![format!("-ldflags={} -s -w", ldflags())]].concat(),
        // Kubernetes' own debug build (DBG=1) keeps full paths: no -trimpath.
        "debug" => vec![
            "-tags=selinux,notest".to_string(),
            "-gcflags=all=-N -l".to_string(),
            format!("-ldflags={}", ldflags()),
        ],
        other => bail!("unknown kube-apiserver variant {other}"),
    })
}

/// Builds every variant that is missing or out of date.
pub fn build(root: &Path) -> Result<()> {
    let src = root.join(MODULE_DIR);
    ensure!(src.join("go.mod").is_file(), "{} has no go.mod", src.display());
    let go = go_binary();
    let version = go_version(&go)?;
    let inputs = format!(
        "{}\n{}\n{version}",
        fs::read_to_string(src.join("go.mod")).context("reading go.mod")?,
        fs::read_to_string(src.join("go.sum")).context("reading go.sum")?
    );
    for variant in VARIANTS {
        let dir = cache_dir().join(variant);
        let bin = dir.join("kube-apiserver");
        let args = build_args(variant)?;
        let stamp = format!("{:016x}", fnv1a(format!("{inputs}\n{}", args.join("\n")).as_bytes()));
        if bin.is_file() && fs::read_to_string(dir.join("stamp")).is_ok_and(|s| s.trim() == stamp) {
            continue;
        }
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let stats = build_variant(&go, &src, variant, &args, &dir.join("kube-apiserver.tmp"))?;
        fs::rename(dir.join("kube-apiserver.tmp"), &bin).with_context(|| format!("renaming to {}", bin.display()))?;
        fs::write(dir.join("build.json"), stats.to_json(variant)).context("writing build.json")?;
        fs::write(dir.join("stamp"), &stamp).context("writing stamp")?;
    }
    Ok(())
}

/// "go1.26.8" from `go version`; refuses a Go older than 1.26.
fn go_version(go: &Path) -> Result<String> {
    let out = Command::new(go)
        .arg("version")
        .output()
        .with_context(|| format!("running {} (set KTRACE_GO to a Go ≥ 1.26)", go.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().nth(2).context("`go version` printed no version")?.to_string();
    let minor: u32 =
        version.strip_prefix("go1.").and_then(|r| r.split('.').next()).and_then(|m| m.parse().ok()).unwrap_or(0);
    ensure!(
        minor >= GO_MIN_MINOR,
        "{} is {version}; kube-apiserver {VERSION} needs Go ≥ 1.{GO_MIN_MINOR} (set KTRACE_GO)",
        go.display()
    );
    Ok(version)
}

struct Stats {
    wall: Duration,
    max_rss_kb: i64,
    size: u64,
    packages: usize,
}

impl Stats {
    fn to_json(&self, variant: &str) -> String {
        format!(
            "{{\"variant\":\"{variant}\",\"wall_s\":{:.1},\"largest_process_max_rss_kb\":{},\"size_bytes\":{},\"packages_compiled\":{}}}\n",
            self.wall.as_secs_f64(),
            self.max_rss_kb,
            self.size,
            self.packages
        )
    }
}

fn go_command(go: &Path, src: &Path) -> Command {
    let mut cmd = Command::new(go);
    cmd.current_dir(src)
        .env("CGO_ENABLED", "0")
        .env("GOTOOLCHAIN", "local")
        .env("GOWORK", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GO111MODULE", "on");
    cmd
}

fn build_variant(go: &Path, src: &Path, variant: &str, args: &[String], out: &Path) -> Result<Stats> {
    let start = Instant::now();
    eprintln!("kube: downloading the modules of k8s.io/kubernetes {VERSION} (cached after the first time)");
    let download = go_command(go, src).args(["mod", "download"]).output().context("running go mod download")?;
    ensure!(
        download.status.success(),
        "go mod download failed (is the Go module proxy reachable?): {}",
        String::from_utf8_lossy(&download.stderr).trim()
    );
    let total = count_packages(go, src)?;
    eprintln!("kube: building kube-apiserver {VERSION} ({variant}): up to {total} packages to compile");
    let mut child = go_command(go, src)
        .arg("build")
        .arg("-v")
        .args(args)
        .arg("-o")
        .arg(out)
        .arg(PACKAGE)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting go build")?;
    let stderr = child.stderr.take().context("go build stderr")?;
    let mut compiled = 0usize;
    let mut errors = Vec::new();
    let mut last = Instant::now();
    for line in BufReader::new(stderr).lines() {
        let line = line.context("reading go build output")?;
        // `-v` names each package as it is compiled; anything with a space
        // is a diagnostic.
        if line.contains(' ') || line.starts_with('#') {
            errors.push(line);
        } else {
            compiled += 1;
        }
        if last.elapsed() >= Duration::from_secs(20) {
            eprintln!("kube: {variant}: {compiled}/{total} packages compiled, {:.0}s", start.elapsed().as_secs_f64());
            last = Instant::now();
        }
    }
    let (code, max_rss_kb) = wait_with_rusage(child.id())?;
    if code != 0 {
        bail!("go build of kube-apiserver ({variant}) failed (exit {code}):\n{}", errors.join("\n"));
    }
    let stats = Stats {
        wall: start.elapsed(),
        max_rss_kb,
        size: fs::metadata(out).map(|m| m.len()).unwrap_or(0),
        packages: compiled,
    };
    eprintln!(
        "kube: {variant} built in {:.0}s ({} packages compiled, the rest cached; {} MB; largest process peaked at {} MB)",
        stats.wall.as_secs_f64(),
        stats.packages,
        stats.size / 1_000_000,
        stats.max_rss_kb / 1024
    );
    Ok(stats)
}

fn count_packages(go: &Path, src: &Path) -> Result<usize> {
    let out = go_command(go, src)
        .args(["list", "-deps", "-tags=selinux,notest", PACKAGE])
        .output()
        .context("running go list")?;
    ensure!(out.status.success(), "go list -deps {PACKAGE} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    Ok(String::from_utf8_lossy(&out.stdout).lines().count())
}

/// Reaps `pid` and returns its exit code (or 128 + signal) and the peak
/// RSS of the largest process in its tree: wait4's rusage covers the child
/// and the descendants it waited for (the compilers and the linker under
/// `go build`), and std's `Child::wait` does not return it.
fn wait_with_rusage(pid: u32) -> Result<(i32, i64)> {
    let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `status` and `usage` are valid for writes; `pid` is our own
    // unreaped child, so it cannot name another process.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    ensure!(rc == pid, "waiting for go build: {}", std::io::Error::last_os_error());
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
    Ok((code, usage.ru_maxrss))
}

/// FNV-1a, 64 bits: enough to notice a changed go.mod, and no dependency.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_differ_where_they_must() {
        let release = build_args("release").unwrap();
        let stripped = build_args("stripped").unwrap();
        let debug = build_args("debug").unwrap();
        assert!(release.contains(&"-trimpath".to_string()) && stripped.contains(&"-trimpath".to_string()));
        assert!(stripped.iter().any(|a| a.ends_with(" -s -w")) && !release.iter().any(|a| a.contains("-s -w")));
        assert!(debug.contains(&"-gcflags=all=-N -l".to_string()));
        assert!(release.iter().any(|a| a.contains("component-base/version.gitVersion=v1.36.3")));
        assert!(build_args("other").is_err());
    }

    #[test]
    fn stamp_changes_with_input() {
        assert_ne!(fnv1a(b"go.mod a"), fnv1a(b"go.mod b"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }
}
