//! `cargo xtask bench memory` (issue 12, P5): the resident memory of the
//! ktrace process while it traces the storage, authn, authz and admission
//! presets of the real kube-apiserver (release build) under load, sampled
//! from /proc/PID/status every 10 s. The load is wrk's GETs of one configmap
//! as alice (as in the throughput benchmark) plus a loop of creates, gets,
//! updates and deletes of new configmaps, so ktrace sees new keys all along.

use std::{
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use testkit::{Etcd, KubeApiserver, KubeVariant, LoadSpec, User};

use super::{
    Options,
    procfs::{Memory, memory},
    session::{Ktrace, Start},
    verdict,
    wrk::Wrk,
};
use crate::gotargets;

const FUNCS: &str = "storage,authn,authz,admission";
const EVERY: Duration = Duration::from_secs(10);
/// The "first minute" of the goal.
const WARM: f64 = 60.0;
/// Goal: at most this much resident memory (10^6 bytes).
const GOAL_MB: f64 = 30.0;
/// Goal "flat after the first minute": the fitted growth from the first
/// minute to the end stays under this (10^6 bytes).
const FLAT_MB: f64 = 1.0;

/// One sample: seconds since the probes went on, and ktrace's memory.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Sample {
    t: f64,
    mem: Memory,
}

pub fn run(root: &Path, ktrace: &Path, options: &Options) -> Result<()> {
    gotargets::build(root)?;
    testkit::kube::binary(KubeVariant::Release)?;
    let length = Duration::from_secs(u64::from(options.minutes) * 60);
    let etcd = Etcd::start().context("starting etcd")?;
    eprintln!("bench: starting the real kube-apiserver (release build)");
    let kube = KubeApiserver::start(KubeVariant::Release, &etcd).context("starting kube-apiserver")?;
    let report = kube.load(&LoadSpec { creates: 1, ..LoadSpec::default() })?;
    let key = report.keys.first().context("load created no configmap")?;
    let (ns, name) = key
        .strip_prefix("/registry/configmaps/")
        .and_then(|r| r.split_once('/'))
        .with_context(|| format!("unexpected etcd key {key}"))?;
    let wrk = Wrk::new(&format!("{}/api/v1/namespaces/{ns}/configmaps/{name}", kube.url()), kube.token(User::Alice))?;

    let stop = AtomicBool::new(false);
    let samples = thread::scope(|scope| -> Result<Vec<Sample>> {
        // wrk runs longer than the measurement and is killed after it.
        let mut load = wrk.spawn(length + Duration::from_secs(600))?;
        // A failed round (a timeout under load) is counted, not fatal: it
        // does not make the memory figures wrong.
        let crud = scope.spawn(|| {
            let (mut rounds, mut failed, mut first_error) = (0u32, 0u32, None);
            while !stop.load(Ordering::Relaxed) {
                let spec =
                    LoadSpec { creates: 10, gets: 10, updates: 10, deletes: 10, concurrency: 2, ..LoadSpec::default() };
                rounds += 1;
                if let Err(e) = kube.load(&spec) {
                    failed += 1;
                    first_error.get_or_insert_with(|| format!("{e:#}"));
                }
            }
            (rounds, failed, first_error)
        });
        let result = sample(ktrace, kube.pid(), length);
        stop.store(true, Ordering::Relaxed);
        let _ = load.kill();
        let _ = load.wait();
        let (rounds, failed, first_error) = crud.join().map_err(|_| anyhow::anyhow!("the load thread panicked"))?;
        eprintln!("bench: the create/get/update/delete loop ran {rounds} rounds of 40 requests beside wrk");
        if let Some(e) = first_error {
            eprintln!("bench: {failed} of those rounds failed; the first: {e}");
        }
        result
    })?;
    drop(kube);
    drop(etcd);
    print_report(&samples, options.minutes);
    Ok(())
}

/// Traces `pid` for `length`, sampling ktrace's memory every [`EVERY`].
fn sample(ktrace: &Path, pid: u32, length: Duration) -> Result<Vec<Sample>> {
    let args: Vec<String> =
        ["--pid", &pid.to_string(), "--funcs", FUNCS, "--json"].iter().map(|s| s.to_string()).collect();
    let mut traced = Ktrace::spawn(ktrace, &args)?;
    let live_at = match traced.wait_live(Duration::from_secs(300))? {
        Start::Live(at, _) => at,
        Start::Rejected(why) => bail!("ktrace attach {} was refused: {why}", args.join(" ")),
    };
    eprintln!("bench: ktrace PID {} traces kube-apiserver PID {pid} for {} min", traced.pid(), length.as_secs() / 60);
    let mut samples = Vec::new();
    let mut next = live_at;
    loop {
        thread::sleep(next.saturating_duration_since(Instant::now()));
        if !traced.is_running() {
            bail!("ktrace exited after {:.0} s of {} s", live_at.elapsed().as_secs_f64(), length.as_secs());
        }
        let mem = memory(traced.pid())?;
        let t = live_at.elapsed().as_secs_f64();
        eprintln!(
            "bench: {t:>5.0} s  VmRSS {:>6.1} MB (anon {:.1}, file {:.1})  VmHWM {:>6.1} MB",
            mb(mem.rss),
            mb(mem.anon),
            mb(mem.file),
            mb(mem.hwm)
        );
        samples.push(Sample { t, mem });
        if live_at.elapsed() + Duration::from_millis(500) >= length {
            break;
        }
        next += EVERY;
    }
    traced.interrupt();
    traced.finish(Duration::from_secs(600))?;
    Ok(samples)
}

/// kB (as /proc reports them, 1024 bytes) to MB (10^6 bytes).
fn mb(kb: u64) -> f64 {
    kb as f64 * 1024.0 / 1e6
}

/// Least-squares slope of (t, y), per second.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let (mt, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let var: f64 = points.iter().map(|p| (p.0 - mt).powi(2)).sum();
    if var == 0.0 {
        return None;
    }
    Some(points.iter().map(|p| (p.0 - mt) * (p.1 - my)).sum::<f64>() / var)
}

/// The sample closest to `t` seconds.
fn at(samples: &[Sample], t: f64) -> Option<Sample> {
    samples.iter().copied().min_by(|a, b| (a.t - t).abs().total_cmp(&(b.t - t).abs()))
}

fn print_report(samples: &[Sample], minutes: u32) {
    println!();
    println!(
        "memory of ktrace attach --funcs {FUNCS} on kube-apiserver (release build) under load, \
         {minutes} min, a sample every {} s (MB = 10^6 bytes)",
        EVERY.as_secs()
    );
    let max = |f: fn(&Memory) -> u64| samples.iter().map(|s| f(&s.mem)).max().unwrap_or(0);
    let hwm = max(|m| m.hwm);
    let show = |s: Option<Sample>| {
        s.map_or("-".into(), |s| {
            format!("{:.1} MB (anon {:.1}, file {:.1}; {:.0} s)", mb(s.mem.rss), mb(s.mem.anon), mb(s.mem.file), s.t)
        })
    };
    println!(
        "VmRSS: max {:.1} MB (anon max {:.1}, file max {:.1}); at 1 min {}; at the end {}; VmHWM (peak) {:.1} MB",
        mb(max(|m| m.rss)),
        mb(max(|m| m.anon)),
        mb(max(|m| m.file)),
        show(at(samples, WARM)),
        show(samples.last().copied()),
        mb(hwm)
    );
    let after: Vec<(f64, f64)> = samples.iter().filter(|s| s.t >= WARM - 1.0).map(|s| (s.t, mb(s.mem.rss))).collect();
    let fitted = slope(&after);
    match (fitted, after.first(), after.last()) {
        (Some(per_s), Some(first), Some(end)) => {
            let growth = per_s * (end.0 - first.0);
            println!(
                "slope after the first minute: {:+.3} MB/min over {} samples; fitted growth {growth:+.2} MB",
                per_s * 60.0,
                after.len()
            );
            let anon: Vec<(f64, f64)> =
                samples.iter().filter(|s| s.t >= WARM - 1.0).map(|s| (s.t, mb(s.mem.anon))).collect();
            if let Some(anon) = slope(&anon) {
                println!("slope of RssAnon after the first minute: {:+.3} MB/min", anon * 60.0);
            }
            println!(
                "goal: flat after the first minute (fitted growth <= {FLAT_MB} MB): {}",
                verdict(growth <= FLAT_MB)
            );
        }
        _ => println!(
            "goal: flat after the first minute: not measured (fewer than 2 samples after the first minute; use --minutes 2 or more)"
        ),
    }
    println!("goal: <= {GOAL_MB} MB (VmHWM): {:.1} MB ({})", mb(hwm), verdict(mb(hwm) <= GOAL_MB));
}

#[cfg(test)]
mod tests {
    use super::{Memory, Sample, at, mb, slope};

    #[test]
    fn slope_of_a_line_and_of_too_few_points() {
        let line: Vec<(f64, f64)> = (0..7).map(|i| (60.0 + 10.0 * f64::from(i), 20.0 + 0.5 * f64::from(i))).collect();
        assert!((slope(&line).unwrap() - 0.05).abs() < 1e-12);
        let flat: Vec<(f64, f64)> = (0..5).map(|i| (f64::from(i), 12.0)).collect();
        assert_eq!(slope(&flat), Some(0.0));
        assert_eq!(slope(&[(60.0, 20.0)]), None);
        assert_eq!(slope(&[(60.0, 20.0), (60.0, 21.0)]), None);
    }

    #[test]
    fn the_sample_nearest_a_time() {
        let s = |t| Sample { t, mem: Memory::default() };
        let samples = [s(0.1), s(10.2), s(50.1), s(60.3), s(70.2)];
        assert_eq!(at(&samples, 60.0).map(|x| x.t), Some(60.3));
        assert_eq!(at(&[], 60.0), None);
    }

    #[test]
    fn kb_to_mb() {
        assert!((mb(29297) - 30.000128).abs() < 1e-6);
    }
}
