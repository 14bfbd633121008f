//! `cargo xtask setup`: idempotent, and quiet when there is nothing to do.
//! Installs what a fresh Debian 12 machine lacks (the recipe verified in
//! README's "Set up") and checks what the kernel and this process must have.

use std::{path::Path, process::Command};

use anyhow::{Context, Result, bail};
use tracer_common::caps;

use crate::run as exec;

/// Debian packages: LLVM 22 for bpf-linker, Debian's rustc-web (its bundled
/// library source makes `-Z build-std=core` possible offline) with its
/// clippy (the lint gate over tracer-ebpf), Go 1.19 for the test targets,
/// a real etcd, wrk for `cargo xtask bench`, and Prometheus (the server
/// and promtool) for the `--serve-metrics` tests.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "rust-web-clippy",
    "golang-go",
    "etcd-server",
    "etcd-client",
    "chromium",
    "wrk",
    "prometheus",
];

const BPF_LINKER_VERSION: &str = "0.13.0";
const TOOLCHAIN: &str = "debian-web";
/// The rustup toolchain that builds and lints tracer-ebpf.
pub const EBPF_TOOLCHAIN: &str = TOOLCHAIN;
const CARGO_FUZZ_VERSION: &str = "0.13.2";

pub fn run() -> Result<()> {
    apt()?;
    bpf_linker()?;
    cargo_fuzz()?;
    toolchain()?;
    check_kernel()?;
    check_privileges()
}

fn apt() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES.iter().copied().filter(|p| !dpkg_installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask setup: installing {}", missing.join(" "));
    exec(Command::new("apt-get").args(["update", "-q"]))?;
    exec(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn cargo_bin(name: &str) -> std::path::PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(Into::into)
        .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").unwrap_or_default()).join(".cargo"));
    home.join("bin").join(name)
}

/// True when `~/.cargo/bin/NAME --version` runs and names `version`.
fn cargo_tool_installed(name: &str, version: &str) -> bool {
    Command::new(cargo_bin(name))
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(version))
}

fn bpf_linker() -> Result<()> {
    if cargo_tool_installed("bpf-linker", BPF_LINKER_VERSION) {
        return Ok(());
    }
    eprintln!(
        "xtask setup: building bpf-linker {BPF_LINKER_VERSION} against Debian's LLVM 22 (about 2 minutes on 2 cores)"
    );
    exec(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("LLVM_PREFIX", "/usr/lib/llvm-22")
            .env("LLVM_SYS_221_PREFIX", "/usr/lib/llvm-22")
            .env("CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS", "fallback"),
    )
}

/// cargo-fuzz drives libFuzzer through rustup's nightly, which ships with
/// the machine image; only the cargo subcommand needs installing.
fn cargo_fuzz() -> Result<()> {
    if cargo_tool_installed("cargo-fuzz", CARGO_FUZZ_VERSION) {
        return Ok(());
    }
    eprintln!("xtask setup: installing cargo-fuzz {CARGO_FUZZ_VERSION}");
    exec(Command::new("cargo").args(["install", "cargo-fuzz", "--locked", "--version", CARGO_FUZZ_VERSION]))
}

fn toolchain() -> Result<()> {
    let list = Command::new("rustup").args(["toolchain", "list"]).output().context("cannot run rustup")?;
    if String::from_utf8_lossy(&list.stdout).lines().any(|l| l.starts_with(TOOLCHAIN)) {
        return Ok(());
    }
    eprintln!("xtask setup: linking Debian's rustc-web as the `{TOOLCHAIN}` toolchain");
    exec(Command::new("rustup").args(["toolchain", "link", TOOLCHAIN, "/usr"]))
}

fn check_kernel() -> Result<()> {
    let mut missing = Vec::new();
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        missing.push("BTF (/sys/kernel/btf/vmlinux; CONFIG_DEBUG_INFO_BTF)");
    }
    if !Path::new("/sys/bus/event_source/devices/uprobe").exists() {
        missing.push("the uprobe PMU (/sys/bus/event_source/devices/uprobe; CONFIG_UPROBE_EVENTS)");
    }
    // BPF_MAP_CREATE with an all-zero attribute: EINVAL proves the syscall
    // exists; ENOSYS means the kernel was built without it.
    let attr = [0u8; 64];
    // SAFETY: the kernel reads at most `attr.len()` bytes from a valid buffer.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, 0, attr.as_ptr(), attr.len()) };
    if rc < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
        missing.push("the bpf() syscall (CONFIG_BPF_SYSCALL)");
    }
    if !missing.is_empty() {
        bail!("the kernel lacks {}", missing.join(", "));
    }
    Ok(())
}

fn check_privileges() -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let effective = caps::effective(&status).context("no CapEff line in /proc/self/status")?;
    match caps::missing(effective) {
        None => Ok(()),
        Some(missing) => bail!("tracing needs root, or CAP_BPF and CAP_PERFMON (missing: {missing})"),
    }
}
