//! The overhead budget of latency tracing. Entry probes stay on all the
//! time, so counts stay exact; what costs is the RET probes, which the
//! kernel single-steps (about 13–24 µs a hit in a VM, against about 1 µs
//! for an emulated entry there). Under a budget each function's RET
//! probes are attached for a share of every [`WINDOW`] and removed for the
//! rest, the shares sized from the per-hit cost measured at start and each
//! function's call rate, so the probes' cost stays under `--max-overhead` %
//! of the target's own CPU time. Every called function keeps at least its
//! [`least_share`] of each window, which times [`TIMED_CALLS_PER_WINDOW`]
//! of its calls (every call of a function called less often); none loses
//! its latency silently. The share a function actually got is reported with its
//! latency as `sampled_fraction`.

use std::time::Duration;

/// One rotation: a function with share `f` has its RET probes attached for
/// `f * WINDOW` of each window.
///
/// Every start and end of a slice places or removes probes in the running
/// target, which costs it too (breakpoints written into its text), so
/// windows are long: on a loaded kube-apiserver with about 100 functions
/// rotating, latency mode cost about 80 µs per request more than counting
/// with 5 s windows, and about 20 µs with 30 s (docs/benchmarks.md).
pub const WINDOW: Duration = Duration::from_secs(30);
/// Calls of a function its least share times in each window: enough for
/// its percentiles. A function called less often than that keeps its RET
/// probes all the time: it costs little (at most 3.3 calls a second, 30 to
/// 70 µs of CPU a second at 10–20 µs a single-step), every call of it
/// is timed, and its probes are not placed and removed again each time its
/// rate moves between none and a few. A function called often needs a
/// smaller share: at kube-apiserver's 2,000–3,000 GETs a second, a flat 2 %
/// of a 30 s window (the rule until then) timed over a thousand calls of
/// each of the ~30 functions a GET crosses.
pub const TIMED_CALLS_PER_WINDOW: f64 = 100.0;
/// The shortest slice: rotation is checked every 50 ms, so a shorter slice
/// could fall between two checks and time nothing.
pub const MIN_SLICE: Duration = Duration::from_millis(150);
/// A share this close to 1 is treated as 1: the probes stay attached.
const FULL: f64 = 0.999;
/// The default `--max-overhead`: % of the target's CPU time. Throughput of a
/// CPU-bound server falls by about PCT / (100 + PCT), so 4 % keeps ≥ 96 %.
pub const DEFAULT_MAX_OVERHEAD: f64 = 4.0;

/// The least share of a window for a function called `rate` times a
/// second: the share that times [`TIMED_CALLS_PER_WINDOW`] of its calls
/// (all of the window for a function called less often), but never a slice
/// shorter than [`MIN_SLICE`].
pub fn least_share(rate: f64, window: Duration) -> f64 {
    let secs = window.as_secs_f64().max(1e-3);
    let shortest = (MIN_SLICE.as_secs_f64() / secs).min(1.0);
    if rate.is_nan() || rate * secs <= TIMED_CALLS_PER_WINDOW {
        return 1.0;
    }
    (TIMED_CALLS_PER_WINDOW / (rate * secs)).max(shortest)
}

/// A function's call rate smoothed over about one `window`: the rate of the
/// last `secs` seconds (`rate`) weighed into the previous smoothed rate
/// (none at the first tick: the rate itself). A function called in a burst
/// (twenty calls in one second, then none) is not sized as if it were
/// called that often all the time, and its share does not swing with every
/// second's count; a function that becomes hot reaches its rate within
/// about a window.
pub fn smoothed_rate(previous: Option<f64>, rate: f64, secs: f64, window: Duration) -> f64 {
    let rate = if rate.is_finite() { rate.max(0.0) } else { 0.0 };
    match previous {
        None => rate,
        Some(p) => {
            let weight = 1.0 - (-secs.max(0.0) / window.as_secs_f64().max(1e-3)).exp();
            p + (rate - p) * weight
        }
    }
}

/// Shares of each window, from what each function's RET probes would cost if
/// always attached (`costs[i]`, ns of CPU per second) and the budget
/// (`budget_ns`, ns of CPU per second) they must share. `pinned[i]`
/// functions keep their probes whatever the cost (the `--filter` anchors:
/// their RETs end the kept calls), and their cost comes off the budget
/// first. Cheap functions get all they need; the budget left is split
/// evenly among the rest (water-filling), never below each one's least
/// share `least[i]` (see [`least_share`]; all of the window where missing).
/// Returns the shares and whether the least shares alone exceed the
/// budget.
pub fn allocate(budget_ns: f64, costs: &[f64], least: &[f64], pinned: &[bool]) -> (Vec<f64>, bool) {
    let mut shares = vec![1.0; costs.len()];
    let mut left = budget_ns;
    let mut open: Vec<usize> = Vec::with_capacity(costs.len());
    for (i, &c) in costs.iter().enumerate() {
        if pinned.get(i).copied().unwrap_or(false) {
            left -= c.max(0.0);
        } else if c > 0.0 {
            open.push(i);
        }
    }
    open.sort_by(|&a, &b| costs[a].total_cmp(&costs[b]));
    let mut over = false;
    let n = open.len();
    for (k, &i) in open.iter().enumerate() {
        let share_of_budget = left.max(0.0) / (n - k) as f64;
        let mut f = (share_of_budget / costs[i]).min(1.0);
        let floor = least.get(i).copied().unwrap_or(1.0);
        if f < floor {
            f = floor;
            over = true;
        }
        if f >= FULL {
            f = 1.0;
        }
        shares[i] = f;
        left -= f * costs[i];
    }
    (shares, over)
}

/// Whether function `i`, with share `fraction`, has its RET probes attached
/// at `t` since the session began, with windows of `window` (default
/// [`WINDOW`]). In the first window every slice starts
/// at once, at the beginning, so even a session shorter than a window times
/// every called function early; from the second on, each function's slice
/// starts at its own phase of the window, so the slices of different
/// functions spread over the window instead of all starting together.
pub fn on_at(i: usize, fraction: f64, t: Duration, window: Duration) -> bool {
    if fraction >= FULL {
        return true;
    }
    windows_of(i, t, window).fract() < fraction
}

/// Which of function `i`'s windows `t` falls in: 0 for the first window of
/// the session, then counting from there, each function's windows
/// starting at its own phase (see [`on_at`]).
pub fn window_index(i: usize, t: Duration, window: Duration) -> u64 {
    windows_of(i, t, window).floor() as u64
}

/// Windows since the session began, shifted by function `i`'s phase from
/// the second window on.
fn windows_of(i: usize, t: Duration, window: Duration) -> f64 {
    let windows = t.as_secs_f64() / window.as_secs_f64().max(1e-3);
    // Phases by the golden ratio: any run of functions spreads evenly.
    let phase = if windows < 1.0 { 0.0 } else { (i as f64 * 0.618_033_988_749_895).fract() };
    windows + phase
}

/// How many calls a function may time in one window: twice what its share
/// is expected to time at its smoothed call rate `rate`, and never fewer
/// than [`TIMED_CALLS_PER_WINDOW`]. Shares are sized from rates measured
/// once a second and smoothed over a window, so a function idle when its
/// share was sized (all of the window: it is rarely called) that is then
/// called thousands of times a second would single-step every call until
/// the rates catch up; past its allowance its RET probes come off until its
/// next window.
pub fn allowance(share: f64, rate: f64, window: Duration) -> u64 {
    let expected = share.clamp(0.0, 1.0) * rate * window.as_secs_f64();
    let calls = if expected.is_finite() { (2.0 * expected).ceil() } else { 0.0 };
    // Saturating float-to-int conversion.
    (calls.max(TIMED_CALLS_PER_WINDOW)) as u64
}

/// CPU time the process has used so far (user + system, all threads), in
/// ns, from `/proc/PID/stat`. Probe hits run in the target's context, so
/// their cost is in this figure too.
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_ns_of_stat(&stat, clock_ticks())
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// utime + stime of a `/proc/PID/stat` line, in ns. The command name may
/// hold spaces and parentheses, so fields are counted after the last `)`.
fn cpu_ns_of_stat(stat: &str, ticks_per_sec: u64) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime.checked_add(stime)?;
    ticks.checked_mul(1_000_000_000)?.checked_div(ticks_per_sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cheap_functions_keep_every_ret_and_the_budget_is_shared() {
        // Budget 1000 ns/s; costs 10, 100, 5000, 20000.
        let (shares, over) = allocate(1000.0, &[10.0, 100.0, 5000.0, 20000.0], &[0.02; 4], &[false; 4]);
        assert_eq!(&shares[..2], &[1.0, 1.0]);
        assert!(!over);
        // 890 left for two: 445 each.
        assert!((shares[2] - 445.0 / 5000.0).abs() < 1e-9, "{shares:?}");
        assert!((shares[3] - 445.0 / 20000.0).abs() < 1e-9, "{shares:?}");
        let spent: f64 = shares.iter().zip([10.0, 100.0, 5000.0, 20000.0]).map(|(f, c)| f * c).sum();
        assert!(spent <= 1000.0 + 1e-6, "{spent}");
    }

    #[test]
    fn an_uncalled_function_costs_nothing_and_keeps_its_rets() {
        let (shares, _) = allocate(0.0, &[0.0, 50.0], &[0.02; 2], &[false, false]);
        assert_eq!(shares[0], 1.0);
        assert_eq!(shares[1], 0.02);
    }

    #[test]
    fn no_called_function_goes_below_the_minimum_and_that_is_reported() {
        let (shares, over) = allocate(10.0, &[1e6, 2e6, 3e6], &[0.02; 3], &[false; 3]);
        assert!(shares.iter().all(|&f| f == 0.02), "{shares:?}");
        assert!(over);
    }

    #[test]
    fn a_function_called_often_has_a_smaller_least_share_but_never_a_slice_under_the_shortest() {
        // Called 3/s: 90 calls a 30 s window, fewer than 100: every one timed.
        assert_eq!(least_share(3.0, WINDOW), 1.0);
        assert_eq!(least_share(0.0, WINDOW), 1.0);
        assert_eq!(least_share(f64::NAN, WINDOW), 1.0);
        // Called 10/s: 100 of its 300 calls.
        assert!((least_share(10.0, WINDOW) - 1.0 / 3.0).abs() < 1e-12);
        // Called 100/s: 100 calls in 1 s, 3.3 % of the window.
        assert!((least_share(100.0, WINDOW) - 1.0 / 30.0).abs() < 1e-12);
        // Called 3,000/s: 33 ms would do, but the slice stays 150 ms.
        assert!((least_share(3000.0, WINDOW) - 0.15 / 30.0).abs() < 1e-12);
        // A 1 s window: 150 ms is 15 %.
        assert!((least_share(1e5, Duration::from_secs(1)) - 0.15).abs() < 1e-12);
        // Under a budget the least shares alone exceed, the rare function
        // keeps every RET and the hot one gets its least share.
        let least = [least_share(2.0, WINDOW), least_share(3000.0, WINDOW)];
        let (shares, over) = allocate(1.0, &[2.0 * 10_000.0, 3000.0 * 10_000.0], &least, &[false; 2]);
        assert!(over);
        assert_eq!(shares[0], 1.0);
        assert!((shares[1] - 0.15 / 30.0).abs() < 1e-12, "{shares:?}");
    }

    #[test]
    fn a_burst_is_smoothed_over_the_window_and_a_steady_rate_is_kept() {
        // The first tick takes the rate as it is.
        assert_eq!(smoothed_rate(None, 2500.0, 1.0, WINDOW), 2500.0);
        assert_eq!(smoothed_rate(None, f64::NAN, 1.0, WINDOW), 0.0);
        // Twenty calls in one second after none: well under 100 a window,
        // so every RET stays.
        let burst = smoothed_rate(Some(0.0), 20.0, 1.0, WINDOW);
        assert!(burst < 1.0 && burst > 0.5, "{burst}");
        assert_eq!(least_share(burst, WINDOW), 1.0);
        // A steady rate stays where it is.
        assert!((smoothed_rate(Some(2500.0), 2500.0, 1.0, WINDOW) - 2500.0).abs() < 1e-9);
        // A function that becomes hot gets most of the way in a window.
        let mut r = Some(0.0);
        for _ in 0..30 {
            r = Some(smoothed_rate(r, 1000.0, 1.0, WINDOW));
        }
        let r = r.unwrap();
        assert!(r > 600.0 && r < 700.0, "{r}");
    }

    #[test]
    fn pinned_functions_keep_their_rets_and_pay_first() {
        let (shares, _) = allocate(1000.0, &[900.0, 1000.0], &[0.02; 2], &[true, false]);
        assert_eq!(shares[0], 1.0);
        assert!((shares[1] - 0.1).abs() < 1e-9, "{shares:?}");
    }

    #[test]
    fn the_allowance_is_twice_the_expected_calls_and_at_least_the_least() {
        let w = Duration::from_secs(30);
        // Idle when sized: the least.
        assert_eq!(allowance(1.0, 0.0, w), TIMED_CALLS_PER_WINDOW as u64);
        assert_eq!(allowance(1.0, 2.0, w), 120);
        // 10 calls a second, all of the window: 300 expected.
        assert_eq!(allowance(1.0, 10.0, w), 600);
        // 2,000 a second at 0.5 %: 300 expected.
        assert_eq!(allowance(0.005, 2000.0, w), 600);
        assert_eq!(allowance(0.5, f64::NAN, w), TIMED_CALLS_PER_WINDOW as u64);
        assert_eq!(allowance(0.5, f64::INFINITY, w), TIMED_CALLS_PER_WINDOW as u64);
        assert_eq!(allowance(1.0, 1e300, w), u64::MAX);
    }

    #[test]
    fn window_indexes_count_each_functions_windows() {
        let w = Duration::from_secs(30);
        let at = |s: f64| Duration::from_secs_f64(s);
        // The first window is the same for everyone.
        assert_eq!(window_index(0, at(0.0), w), 0);
        assert_eq!(window_index(7, at(29.9), w), 0);
        // Function 0 has phase 0; function 1 starts its windows 0.618 early.
        assert_eq!(window_index(0, at(30.0), w), 1);
        assert_eq!(window_index(0, at(59.9), w), 1);
        assert_eq!(window_index(1, at(30.0), w), 1);
        assert_eq!(window_index(1, at(42.0), w), 2);
        // Never back: the index only grows.
        let mut last = 0;
        for k in 0..1000 {
            let i = window_index(3, at(k as f64 * 0.1), w);
            assert!(i >= last);
            last = i;
        }
        // From the second window on, a new index begins where a slice
        // begins. (At the end of the first window a function enters its
        // second part-way, at its phase.)
        for k in 301..1000 {
            let (t0, t1) = (at((k - 1) as f64 * 0.1), at(k as f64 * 0.1));
            if window_index(5, t1, w) != window_index(5, t0, w) {
                assert!(on_at(5, 0.05, t1, w), "a slice starts with window {}", window_index(5, t1, w));
            }
        }
    }

    #[test]
    fn a_function_is_on_for_its_share_of_the_window() {
        for (i, fraction) in [(0, 0.02), (1, 0.25), (7, 0.5), (3, 0.9)] {
            let steps = 10_000;
            let on = (0..steps)
                .filter(|k| on_at(i, fraction, WINDOW.mul_f64(3.0 * *k as f64 / steps as f64), WINDOW))
                .count();
            let got = on as f64 / steps as f64;
            assert!((got - fraction).abs() < 0.005, "function {i}: {got} for {fraction}");
        }
        assert!(on_at(5, 1.0, Duration::from_millis(1234), WINDOW));
        // The first window starts every slice at once.
        for i in 0..50 {
            assert!(
                on_at(i, 0.02, Duration::ZERO, WINDOW) && on_at(i, 0.02, WINDOW.mul_f64(0.019), WINDOW),
                "function {i}"
            );
            assert!(!on_at(i, 0.02, WINDOW.mul_f64(0.021), WINDOW), "function {i}");
        }
        // Later windows spread them: not all on at one instant.
        let t = WINDOW.mul_f64(1.01);
        assert!((0..50).filter(|&i| on_at(i, 0.02, t, WINDOW)).count() < 5);
    }

    #[test]
    fn cpu_time_from_stat_counts_after_the_name() {
        let line = "4242 (kube api) server) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 1 0 0";
        assert_eq!(cpu_ns_of_stat(line, 100), Some(3_000_000_000));
        assert_eq!(cpu_ns_of_stat("4242 (x) S 1 2", 100), None);
        assert_eq!(cpu_ns_of_stat("no paren", 100), None);
        let own = process_cpu_ns(std::process::id());
        assert!(own.is_some(), "this process's own stat must parse");
    }
}
