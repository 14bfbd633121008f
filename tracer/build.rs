//! Builds the kernel-side programs (`tracer-ebpf`) for `bpfel-unknown-none`
//! and leaves the object in OUT_DIR, where `src/attach/mod.rs` embeds it, so
//! `ktrace` ships as one self-contained file.
//!
//! The eBPF crate needs `-Z build-std=core`, and rustup here cannot download
//! `rust-src`. Debian's rustc-web ships its library source, so the build runs
//! through the `debian-web` rustup toolchain that `cargo xtask setup` links.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("tracer/ sits in the workspace root").to_path_buf();
    let ebpf_dir = root.join("tracer-ebpf");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    for dir in ["tracer-ebpf/src", "tracer-common/src"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    for file in [
        "tracer-ebpf/Cargo.toml",
        "tracer-ebpf/Cargo.lock",
        "tracer-ebpf/.cargo/config.toml",
        "tracer-common/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    println!("cargo:rerun-if-env-changed=KTRACE_EBPF_TOOLCHAIN");

    let toolchain = env::var("KTRACE_EBPF_TOOLCHAIN").unwrap_or_else(|_| "debian-web".into());
    // A separate target dir: the outer cargo holds the lock on the main one.
    let target_dir = root.join("target").join("bpf");

    let mut cmd = Command::new("rustup");
    cmd.args(["run", &toolchain, "cargo", "build", "--release", "--locked"])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&ebpf_dir)
        .env("RUSTC_BOOTSTRAP", "1");
    // The outer cargo (and clippy, which wraps rustc) exports settings that
    // would leak into the nested build for a different target and compiler.
    for (key, _) in env::vars_os() {
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

    let status = match cmd.status() {
        Ok(s) => s,
        Err(e) => fail(&format!("cannot run rustup ({e})")),
    };
    if !status.success() {
        fail(&format!("building tracer-ebpf with toolchain `{toolchain}` failed ({status})"));
    }

    let built = target_dir.join("bpfel-unknown-none/release/tracer");
    copy(&built, &out_dir.join("tracer.bpf.o"));
}

fn copy(from: &Path, to: &Path) {
    if let Err(e) = std::fs::copy(from, to) {
        fail(&format!("cannot copy {} to {}: {e}", from.display(), to.display()));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    eprintln!(
        "hint: run `cargo xtask setup` (installs bpf-linker and links Debian's rustc-web as the `debian-web` toolchain)"
    );
    std::process::exit(1);
}
