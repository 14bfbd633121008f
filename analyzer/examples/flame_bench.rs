//! Benchmark: a synthesized CPU profile of about 1M samples, rendered to a
//! flamegraph SVG by ktrace's analyzer (decode + fold + render, what
//! `ktrace flame --pprof FILE --output x.svg` does) against
//! `go tool pprof -top` on the same file, in one run.
//!
//! `cargo run --release -p analyzer --example flame_bench [-- SAMPLES]`

use std::{
    process::Command,
    time::{Duration, Instant},
};

use analyzer::{
    flame::{FlameOptions, render_svg},
    pprof::{Profile, build::ProfileBuilder},
};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Shaped like an apiserver CPU profile: 3000 functions in 60 packages, a
/// few hundred inlined pairs, 40 000 distinct stacks 8–40 frames deep, and
/// `samples` samples spread over them with a skew towards a hot few.
/// With `aggregate`, identical stacks become one sample carrying their
/// count, as Go's profiler writes them; without, every sample is its own
/// message (the worst case for decoding).
fn synthesize(samples: usize, aggregate: bool) -> Vec<u8> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut b = ProfileBuilder::new(&[("samples", "count"), ("cpu", "nanoseconds")]);
    b.period(("cpu", "nanoseconds"), 10_000_000);
    b.window(1_700_000_000_000_000_000, 30_000_000_000);
    let names: Vec<String> =
        (0..3000).map(|i| format!("k8s.io/apiserver/pkg/pkg{:02}/sub.(*type{}).Method{}", i % 60, i / 60, i)).collect();
    let locs: Vec<u64> = (0..names.len())
        .map(|i| {
            if i % 10 == 0 {
                let inlined = &names[(i + 7) % names.len()];
                b.location(&names[i], &[inlined.as_str()])
            } else {
                b.location(&names[i], &[])
            }
        })
        .collect();
    let stacks: Vec<Vec<u64>> = (0..40_000)
        .map(|_| {
            let depth = 8 + rng.below(33) as usize;
            // Shared roots so the graph has real towers, random leaves.
            let mut s: Vec<u64> = (0..depth)
                .map(|d| {
                    if d < 4 {
                        locs[d * 7 + rng.below(3) as usize]
                    } else {
                        locs[rng.below(locs.len() as u64) as usize]
                    }
                })
                .collect();
            s.reverse();
            s
        })
        .collect();
    let mut counts = vec![0i64; stacks.len()];
    for _ in 0..samples {
        // Squaring skews towards low indices: a few hot stacks.
        let r = rng.below(1 << 16);
        let idx = ((r * r * stacks.len() as u64) >> 32) as usize;
        if aggregate {
            counts[idx] += 1;
        } else {
            b.sample_ids(stacks[idx].clone(), &[1, 10_000_000]);
        }
    }
    for (stack, &n) in stacks.iter().zip(&counts).filter(|(_, n)| **n > 0) {
        b.sample_ids(stack.clone(), &[n, n * 10_000_000]);
    }
    b.encode_gzip()
}

fn main() {
    let samples: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    for aggregate in [false, true] {
        println!(
            "== {}",
            if aggregate {
                "Go's shape: one message per distinct stack, with its count"
            } else {
                "one message per sample"
            }
        );
        run(samples, aggregate);
    }
}

fn run(samples: usize, aggregate: bool) {
    let t = Instant::now();
    let bytes = synthesize(samples, aggregate);
    let dir = std::env::temp_dir().join(format!("ktrace-flame-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("cpu.pb.gz");
    analyzer::files::write_private(&file, &bytes).expect("write profile");
    println!(
        "profile: {samples} samples, {:.1} MiB gzipped, made in {:.2?}",
        bytes.len() as f64 / (1 << 20) as f64,
        t.elapsed()
    );

    // Best of three, from the file, as `ktrace flame` would.
    let mut ours = Duration::MAX;
    let mut svg_len = 0;
    let mut stacks = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let data = std::fs::read(&file).expect("read profile");
        let p = Profile::decode(&data).expect("decode");
        let folded = p.fold(p.sample_index(None).expect("sample type")).expect("fold");
        let mut svg = Vec::new();
        render_svg(&folded, &FlameOptions { deterministic: true, ..Default::default() }, &mut svg).expect("render");
        ours = ours.min(t.elapsed());
        svg_len = svg.len();
        stacks = folded.len();
    }
    {
        // Where the time goes, once.
        let data = std::fs::read(&file).expect("read profile");
        let t = Instant::now();
        let raw = analyzer::pprof::gunzip(&data).expect("gunzip");
        let t_gz = t.elapsed();
        let t = Instant::now();
        let p = Profile::decode(&raw).expect("decode");
        let t_dec = t.elapsed();
        let t = Instant::now();
        let folded = p.fold(1).expect("fold");
        let t_fold = t.elapsed();
        let t = Instant::now();
        render_svg(&folded, &FlameOptions { deterministic: true, ..Default::default() }, Vec::new()).expect("render");
        println!(
            "  phases: gunzip {:.3} s ({} MiB), protobuf {:.3} s, fold {:.3} s, SVG {:.3} s",
            t_gz.as_secs_f64(),
            raw.len() >> 20,
            t_dec.as_secs_f64(),
            t_fold.as_secs_f64(),
            t.elapsed().as_secs_f64()
        );
    }
    println!(
        "ktrace flame (decode + fold + SVG): {:.3} s  ({stacks} distinct stacks, {} KiB SVG)",
        ours.as_secs_f64(),
        svg_len >> 10
    );

    let go = ["/usr/bin/go", "go"]
        .into_iter()
        .find(|g| Command::new(g).arg("version").output().is_ok_and(|o| o.status.success()));
    let Some(go) = go else {
        println!("go tool pprof: not installed (Debian golang-go); no ratio");
        return;
    };
    let mut theirs = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let out = Command::new(go)
            .args(["tool", "pprof", "-top", "-nodecount=20"])
            .arg(&file)
            .env("PPROF_TMPDIR", &dir)
            .output()
            .expect("run go tool pprof");
        assert!(out.status.success(), "go tool pprof: {}", String::from_utf8_lossy(&out.stderr));
        theirs = theirs.min(t.elapsed());
    }
    println!("go tool pprof -top:                 {:.3} s", theirs.as_secs_f64());
    println!("ratio (go tool pprof / ktrace flame): {:.1}x", theirs.as_secs_f64() / ours.as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);
}
