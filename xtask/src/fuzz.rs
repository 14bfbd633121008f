//! `cargo xtask fuzz [SECONDS]`: runs every cargo-fuzz target of `fuzz/` for
//! a bounded time, seeded with real tables cut from the Go test targets so
//! the fuzzer starts from well-formed input and mutates inward.

use std::{fs, path::Path, process::Command};

use anyhow::{Context, Result};

use crate::run;

/// Every fuzz target in `fuzz/Cargo.toml`.
const TARGETS: [&str; 5] = ["elf", "pclntab", "buildinfo", "symtab", "dwarf"];

/// The section each target's seed is cut from; `None` takes the whole file.
fn seed_section(target: &str) -> Option<&'static str> {
    match target {
        "pclntab" => Some(".gopclntab"),
        "buildinfo" => Some(".go.buildinfo"),
        _ => None,
    }
}

pub fn fuzz(root: &Path, seconds: u32) -> Result<()> {
    let seed_binary = root.join("target/gotargets/stripped/kube-apiserver");
    let unstripped = root.join("target/gotargets/optimized/kube-apiserver");
    for target in TARGETS {
        let corpus = root.join("target/fuzz-corpus").join(target);
        fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
        let seed = corpus.join("seed-kube-apiserver");
        if !seed.exists() {
            match seed_section(target) {
                Some(section) => run(Command::new("objcopy")
                    .args(["-O", "binary", "--only-section", section])
                    .arg(&unstripped)
                    .arg(&seed))?,
                None => {
                    // DWARF needs the unstripped build; the rest start from
                    // the stripped one, which is what production resolves.
                    let from = if target == "dwarf" { &unstripped } else { &seed_binary };
                    fs::copy(from, &seed).with_context(|| format!("seeding from {}", from.display()))?;
                }
            }
        }
        eprintln!("xtask fuzz: {target} for {seconds} s");
        run(Command::new("cargo")
            .args(["+nightly", "fuzz", "run", "--fuzz-dir"])
            .arg(root.join("fuzz"))
            .arg(target)
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .args(["-max_len=67108864", "-rss_limit_mb=4096", "-print_final_stats=1"])
            .current_dir(root))?;
    }
    Ok(())
}
