//! `cargo xtask fuzz [SECONDS]`: runs every cargo-fuzz target of `fuzz/` for
//! a bounded time, seeded with real tables cut from the Go test targets so
//! the fuzzer starts from well-formed input and mutates inward.

use std::{fs, path::Path, process::Command};

use anyhow::{Context, Result};

use crate::run;

/// Every fuzz target in `fuzz/Cargo.toml`.
const TARGETS: [&str; 7] = ["elf", "pclntab", "buildinfo", "symtab", "dwarf", "pprof", "trace"];

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
        if target == "pprof" || target == "trace" {
            write_generated_seeds(target, &corpus)?;
        } else if !seed.exists() {
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

/// Seeds for the analyzer's parsers, built with its own writers: a heap
/// profile (four sample types) and a CPU profile with an inlined frame, raw
/// (the fuzzer mutates protobuf, not gzip), and a small complete trace.
fn write_generated_seeds(target: &str, corpus: &Path) -> Result<()> {
    use analyzer::{pprof::build::ProfileBuilder, trace};
    use prost::Message;
    let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();
    if target == "pprof" {
        let mut heap = ProfileBuilder::new(&[
            ("alloc_objects", "count"),
            ("alloc_space", "bytes"),
            ("inuse_objects", "count"),
            ("inuse_space", "bytes"),
        ]);
        heap.period(("space", "bytes"), 524_288);
        heap.sample(&["runtime.malg", "main.main"], &[1, 100, 1, 100]);
        heap.sample(&["bytes.growSlice", "etcd3.(*store).Create", "main.main"], &[5, 4096, 2, 2048]);
        seeds.push(("seed-heap", heap.proto().encode_to_vec()));
        let mut cpu = ProfileBuilder::new(&[("samples", "count"), ("cpu", "nanoseconds")]);
        cpu.period(("cpu", "nanoseconds"), 10_000_000);
        let leaf = cpu.location("etcd3.(*store).Create", &["json.encode"]);
        let root = cpu.location("main.main", &[]);
        cpu.sample_ids(vec![leaf, root], &[3, 30_000_000]);
        seeds.push(("seed-cpu", cpu.proto().encode_to_vec()));
    } else {
        let header = trace::Header {
            format: trace::FORMAT.into(),
            version: trace::VERSION,
            mode: trace::Mode::Latency,
            pid: Some(1),
            binary: "/bin/x".into(),
            build_id: None,
            go_version: Some("go1.19".into()),
            start_unix_ns: 1,
            unredacted_args: Some(false),
            filter: None,
            functions: vec![trace::TracedFunction {
                id: 0,
                symbol: "k8s.io/apiserver/pkg/storage/etcd3.(*store).Create".into(),
                file: None,
                line: None,
                groups: vec!["storage".into()],
            }],
        };
        let mut w = trace::TraceWriter::new(Vec::new(), &header)?;
        w.call(&trace::Call {
            func: 0,
            g: 0xc000_1000,
            goid: Some(7),
            start_ns: 5,
            dur_ns: 2_000_000,
            error: Some(false),
            args: [("key".to_string(), trace::ArgValue::Str("/registry/configmaps/a/b".into()))].into_iter().collect(),
            truncated: false,
            stack: vec!["k8s.io/apiserver/pkg/registry/generic/registry.(*Store).Create".into()],
        })?;
        seeds.push(("seed-trace", w.finish(&trace::End { duration_ns: 9, dropped_events: 0, sampled_out: 0 })?));
    }
    for (name, bytes) in seeds {
        let path = corpus.join(name);
        if !path.exists() {
            fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}
