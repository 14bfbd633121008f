//! `cargo xtask <task>`: everything a fresh machine needs to build, demo and
//! test ktrace, so nothing has to be installed by hand.

mod bench;
mod demo;
mod fuzz;
mod gotargets;
mod kube;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  setup          install apt packages, bpf-linker and the debian-web toolchain; check the kernel and privileges
  build-targets  build the apiserver-shaped Go target in its four variants
  build-kube     build the real kube-apiserver (from the Go module proxy) in its debug, release and
                 stripped variants, cached in ~/.cache/ktrace/kube-apiserver (slow the first time)
  demo [--bundled]
                 set up, build, start etcd and the real kube-apiserver (--bundled: the apiserver-shaped
                 target), drive load as an ordinary RBAC user, trace storage,authn,authz,admission with
                 the CPU profile of the same window, and render the merged report
  lint           only the fmt and clippy gates of `test` (workspace, tracer-ebpf, fuzz)
  test           set up, build the Go targets, check fmt and clippy, run every test (root eBPF tests included),
                 then fuzz every binary parser for a bounded time
  fuzz [SECS]    fuzz every binary parser for SECS seconds each (default 30)
  bench [cost|throughput|attach|memory|all] [--seconds N] [--reps N] [--minutes N] [--server kube|bundled|both]
                 build ktrace (release; KTRACE_BIN=PATH benchmarks another binary) and run the benchmarks of
                 docs/benchmarks.md (default all; needs root): cost: per-call cost on a Go loop; throughput:
                 the real kube-apiserver and the bundled target under wrk (--seconds per window, default 20;
                 --reps interleaved passes, default 3; --server which); attach: attach/detach time of about
                 50/200/600 probes (--reps passes); memory: ktrace's RSS tracing kube-apiserver under load
                 (--minutes, default 10)";

/// How long `test` fuzzes each parser.
const FUZZ_SECONDS: u32 = 30;

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    let root = workspace_root();
    let result = match task.as_deref() {
        Some("setup") => setup::run(),
        Some("build-targets") => gotargets::build(&root).and_then(|()| gotargets::build_bench(&root).map(drop)),
        Some("build-kube") => kube::build(&root),
        Some("demo") => match std::env::args().nth(2).as_deref() {
            None => demo::run(&root, false),
            Some("--bundled") => demo::run(&root, true),
            Some(other) => Err(anyhow::anyhow!("demo: unknown option {other} (the only one is --bundled)")),
        },
        Some("test") => test(&root),
        Some("lint") => lint(&root),
        Some("bench") => bench::run(&root, &std::env::args().skip(2).collect::<Vec<_>>()),
        Some("fuzz") => match std::env::args().nth(2).map_or(Ok(FUZZ_SECONDS), |s| s.parse::<u32>()) {
            Ok(seconds) => {
                setup::run().and_then(|()| gotargets::build(&root)).and_then(|()| fuzz::fuzz(&root, seconds))
            }
            Err(e) => Err(anyhow::anyhow!("fuzz: SECS must be a whole number of seconds ({e})")),
        },
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask/ sits in the workspace root").to_path_buf()
}

/// Runs a command to completion, failing with its command line when it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn test(root: &Path) -> Result<()> {
    setup::run()?;
    gotargets::build(root)?;
    gotargets::build_bench(root)?;
    kube::build(root)?;
    lint(root)?;
    eprintln!("xtask: cargo test");
    let (passed, failed) = cargo_test(root)?;
    fuzz::fuzz(root, FUZZ_SECONDS)?;
    // The fuzzers' statistics come last otherwise; end on the test totals.
    println!("xtask: {passed} passed, {failed} failed");
    Ok(())
}

/// Format and clippy gates over the workspace and over the two crates that
/// sit outside it: tracer-ebpf (built for bpfel-unknown-none by Debian's
/// rustc-web, the way tracer/build.rs builds it) and fuzz/ (built by
/// nightly, the way `cargo fuzz` builds it). `cargo fmt --all` stops at the
/// workspace's members, so each is checked by its own manifest.
fn lint(root: &Path) -> Result<()> {
    eprintln!("xtask: cargo fmt --check");
    run(cargo().current_dir(root).args(["fmt", "--all", "--check"]))?;
    for krate in ["tracer-ebpf", "fuzz"] {
        run(cargo().current_dir(root.join(krate)).args(["fmt", "--check"]))?;
    }
    eprintln!("xtask: cargo clippy");
    run(cargo().current_dir(root).args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    eprintln!("xtask: cargo clippy (tracer-ebpf, bpfel-unknown-none)");
    run(ebpf_clippy(root).args(["--", "-D", "warnings"]))?;
    eprintln!("xtask: cargo clippy (fuzz)");
    run(Command::new("cargo").current_dir(root.join("fuzz")).args([
        "+nightly",
        "clippy",
        "--locked",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

/// `cargo clippy` over tracer-ebpf with the toolchain, flags and target
/// directory tracer/build.rs builds it with, so it reuses that build.
fn ebpf_clippy(root: &Path) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", setup::EBPF_TOOLCHAIN, "cargo", "clippy", "--release", "--locked", "--target-dir"])
        .arg(root.join("target/bpf"))
        .current_dir(root.join("tracer-ebpf"))
        .env("RUSTC_BOOTSTRAP", "1");
    // This process runs under cargo, whose settings would leak into a build
    // for another target by another compiler (as in tracer/build.rs).
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let leaks = key.starts_with("CARGO_")
            || key.starts_with("RUSTC")
            || key.starts_with("RUSTDOC")
            || key == "RUSTFLAGS"
            || key == "RUSTUP_TOOLCHAIN";
        if leaks && key != "CARGO_HOME" {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Runs the workspace tests, echoing their output, and totals the
/// `test result:` lines of every test binary.
fn cargo_test(root: &Path) -> Result<(u64, u64)> {
    use std::io::{BufRead, BufReader};
    let mut child = cargo()
        .current_dir(root)
        .args(["test", "--workspace", "--no-fail-fast"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("cannot run cargo test")?;
    let stdout = child.stdout.take().context("cargo test stdout")?;
    let (mut passed, mut failed) = (0, 0);
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            passed += count(rest, " passed");
            failed += count(rest, " failed");
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("cargo test failed ({status}): {passed} passed, {failed} failed");
    }
    Ok((passed, failed))
}

/// The number before `what` in `ok. 12 passed; 0 failed; …`.
fn count(summary: &str, what: &str) -> u64 {
    summary
        .split(';')
        .find_map(|part| {
            part.trim().trim_start_matches("ok. ").trim_start_matches("FAILED. ").strip_suffix(what.trim_start())
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn totals_come_from_cargo_test_summaries() {
        let ok = "ok. 12 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s";
        assert_eq!((count(ok, " passed"), count(ok, " failed")), (12, 0));
        let bad = "FAILED. 3 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.10s";
        assert_eq!((count(bad, " passed"), count(bad, " failed")), (3, 2));
        assert_eq!(count("garbage", " passed"), 0);
    }
}
