//! `cargo xtask bench [cost|throughput|attach|memory|all] [OPTIONS]`: the
//! benchmarks of docs/benchmarks.md, each against a release build of ktrace.
//!
//! - `cost`: what tracing adds to one call of a Go loop (per-call cost);
//! - `throughput`: requests/s and CPU per request of the real kube-apiserver
//!   and of targets/apiserver under wrk, untraced, in three traced
//!   configurations and with bare entry probes, interleaved and repeated;
//! - `attach`: time to attach and to detach about 50, 200 and 600 probes on
//!   etcd, per kind of uprobe link when this ktrace can choose one;
//! - `memory`: ktrace's RSS while it traces the real kube-apiserver under load.
//!
//! A benchmark prints figures and pass/MISS verdicts and asserts nothing about
//! speed; the task fails when a case could not be run. Touches only the
//! processes it starts.

mod attach;
mod cost;
mod memory;
mod procfs;
mod session;
mod throughput;
mod wrk;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::{cargo, run as exec};

/// One benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bench {
    Cost,
    Throughput,
    Attach,
    Memory,
}

impl Bench {
    const ALL: [Bench; 4] = [Bench::Cost, Bench::Throughput, Bench::Attach, Bench::Memory];

    fn name(self) -> &'static str {
        match self {
            Bench::Cost => "cost",
            Bench::Throughput => "throughput",
            Bench::Attach => "attach",
            Bench::Memory => "memory",
        }
    }
}

/// Which servers the throughput benchmark measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Servers {
    Kube,
    Bundled,
    Both,
}

impl Servers {
    pub fn kube(self) -> bool {
        matches!(self, Servers::Kube | Servers::Both)
    }
    pub fn bundled(self) -> bool {
        matches!(self, Servers::Bundled | Servers::Both)
    }
}

/// The command line of `cargo xtask bench`.
#[derive(Debug, PartialEq)]
pub struct Options {
    benches: Vec<Bench>,
    /// Throughput: seconds of wrk per window.
    pub seconds: u32,
    /// Throughput and attach: passes over the interleaved cases.
    pub reps: usize,
    /// Memory: how long ktrace traces.
    pub minutes: u32,
    /// Throughput: which servers.
    pub servers: Servers,
}

impl Default for Options {
    fn default() -> Self {
        Options { benches: Bench::ALL.to_vec(), seconds: 20, reps: 3, minutes: 10, servers: Servers::Both }
    }
}

fn parse_args(args: &[String]) -> Result<Options> {
    let mut options = Options::default();
    let mut picked = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => options.seconds = number(it.next(), "--seconds")?,
            "--reps" => options.reps = number(it.next(), "--reps")? as usize,
            "--minutes" => options.minutes = number(it.next(), "--minutes")?,
            "--server" => {
                options.servers = match it.next().map(String::as_str) {
                    Some("kube") => Servers::Kube,
                    Some("bundled") => Servers::Bundled,
                    Some("both") => Servers::Both,
                    other => bail!("bench: --server takes kube, bundled or both, not {other:?}"),
                }
            }
            name if picked.is_none() && !name.starts_with('-') => {
                picked = Some(match name {
                    "all" => Bench::ALL.to_vec(),
                    _ => vec![
                        *Bench::ALL
                            .iter()
                            .find(|b| b.name() == name)
                            .with_context(|| format!("bench: unknown benchmark {name:?}"))?,
                    ],
                });
            }
            other => bail!("bench: unexpected argument {other:?}"),
        }
    }
    if let Some(benches) = picked {
        options.benches = benches;
    }
    Ok(options)
}

/// A flag's value: a whole number above 0.
fn number(value: Option<&String>, flag: &str) -> Result<u32> {
    let value = value.with_context(|| format!("bench: {flag} needs a value"))?;
    match value.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("bench: {flag} takes a whole number above 0, not {value:?}"),
    }
}

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let options = parse_args(args)?;
    let ktrace = ktrace_binary(root)?;
    let mut failed = Vec::new();
    for bench in &options.benches {
        eprintln!("bench: === {} ===", bench.name());
        let result = match bench {
            Bench::Cost => cost::run(root, &ktrace),
            Bench::Throughput => throughput::run(root, &ktrace, &options),
            Bench::Attach => attach::run(&ktrace, &options),
            Bench::Memory => memory::run(root, &ktrace, &options),
        };
        // One benchmark that cannot run does not stop the others.
        if let Err(e) = result {
            eprintln!("bench: {}: {e:#}", bench.name());
            failed.push(bench.name());
        }
    }
    if !failed.is_empty() {
        bail!("not every case could be run: see {} above", failed.join(", "));
    }
    Ok(())
}

/// The ktrace under test: `$KTRACE_BIN` (another commit's, an installed one),
/// else this tree's release build.
fn ktrace_binary(root: &Path) -> Result<PathBuf> {
    Ok(match std::env::var_os("KTRACE_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => {
            eprintln!("bench: building ktrace (release)");
            exec(cargo().current_dir(root).args(["build", "--release", "--quiet", "-p", "tracer", "--bin", "ktrace"]))?;
            root.join("target/release/ktrace")
        }
    })
}

/// True when `ktrace attach --help` lists `flag`: benchmarks pass flags an
/// older build lacks only when it has them.
fn attach_has_flag(ktrace: &Path, flag: &str) -> Result<bool> {
    let help = std::process::Command::new(ktrace)
        .args(["attach", "--help"])
        .output()
        .with_context(|| format!("cannot run {} attach --help", ktrace.display()))?;
    Ok(String::from_utf8_lossy(&help.stdout).contains(flag))
}

fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) { (v[mid - 1] + v[mid]) / 2.0 } else { v[mid] })
}

fn verdict(pass: bool) -> &'static str {
    if pass { "pass" } else { "MISS" }
}

#[cfg(test)]
mod tests {
    use super::{Bench, Options, Servers, median, parse_args};

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn no_arguments_run_everything_with_the_defaults() {
        assert_eq!(parse_args(&[]).unwrap(), Options::default());
        assert_eq!(parse_args(&args("all")).unwrap().benches, Bench::ALL.to_vec());
    }

    #[test]
    fn one_benchmark_and_its_options() {
        let o = parse_args(&args("memory --minutes 1")).unwrap();
        assert_eq!((o.benches, o.minutes), (vec![Bench::Memory], 1));
        let o = parse_args(&args("throughput --seconds 5 --reps 1 --server bundled")).unwrap();
        assert_eq!((o.benches, o.seconds, o.reps, o.servers), (vec![Bench::Throughput], 5, 1, Servers::Bundled));
        let o = parse_args(&args("--reps 2 attach")).unwrap();
        assert_eq!((o.benches, o.reps), (vec![Bench::Attach], 2));
    }

    #[test]
    fn bad_arguments_are_refused() {
        for bad in ["speed", "cost attach", "--minutes", "--minutes 0", "--minutes x", "--server all", "--fast"] {
            assert!(parse_args(&args(bad)).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
