//! The overhead budget on a hot loop: `targets/bench` calls `main.work`
//! millions of times a second, so under any budget its RET probes rotate.
//! Root eBPF tests; they panic, never skip, where BPF is missing.

mod common;

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use common::{Trace, require_bpf, sites, text_restored};

const WORK: &str = "main.work";

/// The benchmark loop, killed when dropped.
struct Loop(Child);

impl Loop {
    fn start() -> Loop {
        Self::with_args(&[])
    }

    fn with_args(args: &[&str]) -> Loop {
        let bin = Self::binary();
        assert!(bin.is_file(), "{} is missing: run `cargo xtask build-targets`", bin.display());
        let child = Command::new(&bin).args(args).stdout(Stdio::null()).spawn().expect("start the loop");
        // Let it get going.
        thread::sleep(Duration::from_millis(300));
        Loop(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn binary() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/gotargets/bench/ktrace-bench")
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn trace_funcs(pid: u32, funcs: &str, extra: &[&str], secs: u64) -> (analyzer::summary::Summary, Vec<String>) {
    let trace = Trace::start(pid, funcs, extra);
    thread::sleep(Duration::from_secs(secs));
    // SAFETY: kill(2) on our own child's PID.
    unsafe { libc::kill(trace.child.id() as i32, libc::SIGINT) };
    trace.finish()
}

fn trace(pid: u32, extra: &[&str], secs: u64) -> (analyzer::summary::Summary, Vec<String>) {
    trace_funcs(pid, WORK, extra, secs)
}

/// Under a tiny budget the hot loop's RET probes rotate: the reported share
/// is well under 1, latency is still there, and the entry probes count on.
#[test]
fn rotating_rets_sample_latency_and_keep_counting() {
    require_bpf();
    let target = Loop::start();
    let sites = sites(&Loop::binary(), WORK);
    // 5 s windows: the RETs go and come back within the session.
    let (summary, stderr) = trace(target.pid(), &["--max-overhead", "0.01", "--budget-window", "5s"], 8);
    let f = common::function(&summary, WORK);
    let fraction = f.sampled_fraction.expect("latency mode reports a sampled_fraction");
    assert!(fraction > 0.0 && fraction < 0.5, "share {fraction}; {stderr:?}");
    let latency = f.latency_ns.expect("a rotated function keeps its latency");
    assert!(latency.p50 > 0, "{latency:?}");
    assert!(f.calls > 100_000, "entry probes stay on: {} calls", f.calls);
    assert!(
        stderr.iter().any(|l| l.contains("sampled under the overhead budget") && l.contains(WORK)),
        "the sampling is said on stderr: {stderr:?}"
    );
    text_restored(target.pid(), &sites).unwrap();
}

/// `main.slow` sleeps 5 ms per call, back to back on one goroutine, so a
/// call is in flight whenever its RET probes are removed, and another when
/// they come back. The RET of that second call finds the first call's frame;
/// timing it would report about a window's length (5 s). The epoch bumped at
/// each pause must make it drop that frame: every duration stays near 5 ms.
/// (About 200 calls a second: its least share, 100 calls of a 5 s window's
/// 1,000, is 10 %, so its RETs rotate.)
#[test]
fn a_frame_from_before_a_pause_is_never_timed() {
    require_bpf();
    let target = Loop::with_args(&["-slow", "5ms"]);
    // Three windows and a bit: the RETs go and come back at least twice.
    let extra = ["--max-overhead", "0.0001", "--budget-window", "5s"];
    let (summary, stderr) = trace_funcs(target.pid(), "main.slow", &extra, 17);
    let f = common::function(&summary, "main.slow");
    let fraction = f.sampled_fraction.expect("a sampled_fraction");
    assert!(fraction < 0.5, "the RETs must rotate: share {fraction}; {stderr:?}");
    let latency = f.latency_ns.expect("latency from the timed share");
    assert!(latency.p50 >= 5_000_000, "{latency:?}");
    assert!(latency.max < 1_000_000_000, "a duration spans a pause: {latency:?}; {stderr:?}");
    assert!(
        stderr.iter().any(|l| l.contains("were not timed")),
        "calls cut by a pause are said to be untimed: {stderr:?}"
    );
}

/// A function idle when ktrace attaches is rarely called, so its share is
/// all of the window and its RET probes stay on. When it is then called
/// about 100,000 times a second, the next plan (once a second) sees that
/// too late: until then every call would be single-stepped. Its allowance
/// of timed calls (100 in the first window, before any plan) takes its RETs
/// off within one rotation step (50 ms) of using it up.
///
/// The loop starts just after a plan, about 0.8 s before the next: without
/// the allowance that is some 50,000 timed calls; with it, 100 and what one
/// step of single-stepped calls adds (at most 10,000 at 5 µs a call).
#[test]
fn a_function_hot_after_attach_times_its_allowance_not_a_second_of_calls() {
    require_bpf();
    let target = Loop::with_args(&["-start-on-usr1"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hot.ktrace");
    let mut trace = Trace::start(target.pid(), WORK, &["--max-overhead", "4", "--output", path.to_str().unwrap()]);
    // The last line before the watch loop starts; plans come once a second
    // from then.
    trace.wait_for("the per-hit cost", Duration::from_secs(10), |l| l.contains("per-hit cost on this host"));
    thread::sleep(Duration::from_millis(1150));
    // SAFETY: kill(2) on our own child's PID.
    assert_eq!(unsafe { libc::kill(target.pid() as i32, libc::SIGUSR1) }, 0);
    thread::sleep(Duration::from_secs(2));
    // SAFETY: as above.
    unsafe { libc::kill(trace.child.id() as i32, libc::SIGINT) };
    let (summary, stderr) = trace.finish();
    let calls = common::calls(&summary, WORK);
    assert!(calls > 100_000, "the loop ran: {calls} calls; {stderr:?}");
    let file = std::fs::File::open(&path).unwrap();
    let t = analyzer::trace::read(std::io::BufReader::new(file)).unwrap();
    let f = t.functions.iter().find(|f| f.func == 0).expect("a record of main.work, the one function traced");
    let timed: u64 = f.histogram.iter().map(|b| b.count).sum();
    assert!(timed >= 100, "it times its allowance: {timed}; {stderr:?}");
    assert!(timed <= 15_000, "{timed} of {calls} calls timed: the RETs stayed on past the allowance; {stderr:?}");
}

/// `--max-overhead 0` and `--no-budget` keep every RET probe attached: every
/// call is timed and the share is exactly 1.
#[test]
fn no_budget_times_every_call() {
    require_bpf();
    let target = Loop::start();
    for flag in [&["--max-overhead", "0"][..], &["--no-budget"][..]] {
        let (summary, stderr) = trace(target.pid(), flag, 3);
        let f = common::function(&summary, WORK);
        assert_eq!(f.sampled_fraction, Some(1.0), "{flag:?}: {stderr:?}");
        assert!(f.latency_ns.is_some());
        assert!(!stderr.iter().any(|l| l.contains("sampled under the overhead budget")), "{flag:?}: {stderr:?}");
    }
}

/// Both kinds of links place the same probes: perf_event links and
/// uprobe_multi links count the same loop, and both report how long placing
/// and removing took; afterwards the text is the file's again.
#[test]
fn perf_and_multi_links_both_attach_and_detach_cleanly() {
    require_bpf();
    let target = Loop::start();
    let sites = sites(&Loop::binary(), WORK);
    for links in ["multi", "perf"] {
        let (summary, stderr) = trace(target.pid(), &["--links", links, "--no-budget"], 2);
        let kind = if links == "multi" { "uprobe_multi" } else { "perf_event" };
        assert_eq!(summary.links.as_deref(), Some(kind));
        assert!(common::calls(&summary, WORK) > 1000, "{links}: {stderr:?}");
        assert!(summary.attach_seconds.is_some_and(|s| s > 0.0), "{links}");
        assert!(summary.detach_seconds.is_some_and(|s| s > 0.0), "{links}");
        text_restored(target.pid(), &sites).unwrap();
    }
}

/// A --budget-window under a second is refused by the parser (exit 2).
#[test]
fn a_budget_window_under_a_second_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_ktrace"))
        .args(["attach", "--pid", "1", "--funcs", WORK, "--budget-window", "500ms"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 1s"), "{out:?}");
}

/// A --max-overhead over 100 % is one line and exit 3.
#[test]
fn a_budget_over_100_percent_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_ktrace"))
        .args(["attach", "--pid", "1", "--funcs", WORK, "--max-overhead", "150"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--max-overhead"), "{stderr}");
}

/// The target exits while its RET probes rotate: putting them back can no
/// longer work, and the session still ends as "the target exited", with its
/// summary and exit 0.
#[test]
fn the_target_exiting_mid_rotation_still_gives_the_summary() {
    require_bpf();
    let mut target = Loop::with_args(&["-slow", "2ms"]);
    let mut trace = Trace::start(target.pid(), "main.slow", &["--max-overhead", "0.0001"]);
    // Past the first budget tick and into the rotation, then kill the target.
    thread::sleep(Duration::from_secs(7));
    target.0.kill().unwrap();
    target.0.wait().unwrap();
    // ktrace notices within a drain tick (50 ms) and ends by itself.
    let mut ended = false;
    for _ in 0..200 {
        if trace.child.try_wait().unwrap().is_some() {
            ended = true;
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert!(ended, "ktrace did not end when its target did");
    let (summary, stderr) = trace.finish();
    assert!(stderr.iter().any(|l| l.contains("the target exited")), "{stderr:?}");
    assert!(common::calls(&summary, "main.slow") > 100, "{stderr:?}");
}
