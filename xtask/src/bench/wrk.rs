//! The load generator of the throughput and memory benchmarks: `wrk`
//! (Debian package `wrk`, which `cargo xtask setup` installs) doing GETs of
//! one URL with a bearer token. The token goes in a private Lua script, not
//! on wrk's command line, where any user could read it in `ps`.

use std::{
    fs,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use tempfile::TempDir;

/// wrk's threads and connections (issue 12: 2 threads, 16 connections).
pub const THREADS: u32 = 2;
pub const CONNECTIONS: u32 = 16;

/// What one wrk run reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WrkResult {
    /// Requests completed (`N requests in T`).
    pub requests: u64,
    /// The run's length as wrk measured it.
    pub seconds: f64,
    /// `Requests/sec:`.
    pub per_second: f64,
    /// `Non-2xx or 3xx responses:` (0 when wrk prints no such line).
    pub non_2xx: u64,
    /// Connect, read, write errors and timeouts (`Socket errors:`).
    pub socket_errors: u64,
}

/// Parses wrk's summary (wrk 4.x).
pub fn parse(output: &str) -> Option<WrkResult> {
    let mut requests = None;
    let mut per_second = None;
    let mut non_2xx = 0;
    let mut socket_errors = 0;
    for line in output.lines().map(str::trim) {
        if let Some((n, rest)) = line.split_once(" requests in ") {
            let elapsed = rest.split(',').next()?;
            requests = Some((n.trim().parse::<u64>().ok()?, parse_duration(elapsed.trim())?));
        } else if let Some(v) = line.strip_prefix("Requests/sec:") {
            per_second = Some(v.trim().parse::<f64>().ok()?);
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = v.trim().parse().ok()?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for part in v.split(',') {
                socket_errors += part.split_whitespace().nth(1)?.parse::<u64>().ok()?;
            }
        }
    }
    let (requests, seconds) = requests?;
    Some(WrkResult { requests, seconds, per_second: per_second?, non_2xx, socket_errors })
}

/// wrk's durations: `812.34us`, `5.01ms`, `10.00s`, `1.00m`, `2.00h`.
fn parse_duration(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (value, unit) = text.split_at(split);
    let value: f64 = value.parse().ok()?;
    let scale = match unit {
        "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    Some(value * scale)
}

/// GETs of one URL with `Authorization: Bearer TOKEN`.
pub struct Wrk {
    url: String,
    script: PathBuf,
    _dir: TempDir,
}

impl Wrk {
    pub fn new(url: &str, token: &str) -> Result<Self> {
        ensure!(token.chars().all(|c| c.is_ascii_alphanumeric()), "the bearer token is not alphanumeric");
        let dir = tempfile::Builder::new().prefix("ktrace-wrk-").tempdir().context("creating wrk tempdir")?;
        let script = dir.path().join("token.lua");
        let mut file = fs::File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&script)
            .with_context(|| format!("creating {}", script.display()))?;
        writeln!(file, "wrk.headers[\"Authorization\"] = \"Bearer {token}\"").context("writing the wrk script")?;
        Ok(Wrk { url: url.to_string(), script, _dir: dir })
    }

    fn command(&self, duration: Duration) -> Command {
        let mut cmd = Command::new("wrk");
        cmd.arg(format!("-t{THREADS}"))
            .arg(format!("-c{CONNECTIONS}"))
            .arg(format!("-d{}s", duration.as_secs().max(1)))
            .args(["--timeout", "10s", "-s"])
            .arg(&self.script)
            .arg(&self.url)
            .stdin(Stdio::null());
        cmd
    }

    /// One run of `duration`; fails when wrk fails or its report is unreadable.
    pub fn run(&self, duration: Duration) -> Result<WrkResult> {
        let out = self.command(duration).output().context("cannot run wrk; `cargo xtask setup` installs it")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!("wrk failed ({}): {}{}", out.status, stdout.trim(), String::from_utf8_lossy(&out.stderr).trim());
        }
        parse(&stdout).with_context(|| format!("cannot read wrk's report:\n{stdout}"))
    }

    /// A run in the background, for load under another measurement.
    pub fn spawn(&self, duration: Duration) -> Result<Child> {
        self.command(duration)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run wrk; `cargo xtask setup` installs it")
    }
}

#[cfg(test)]
mod tests {
    use super::{WrkResult, parse, parse_duration};

    const CLEAN: &str = "\
Running 20s test @ https://127.0.0.1:36789/api/v1/namespaces/ktrace-1a2b3c4d/configmaps/load-1-0
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.32ms    2.11ms  41.57ms   79.41%
    Req/Sec     1.52k   131.20     1.90k    70.25%
  60512 requests in 20.01s, 38.45MB read
Requests/sec:   3024.09
Transfer/sec:      1.92MB
";

    #[test]
    fn a_clean_run() {
        let r = parse(CLEAN).unwrap();
        assert_eq!(r, WrkResult { requests: 60512, seconds: 20.01, per_second: 3024.09, non_2xx: 0, socket_errors: 0 });
    }

    #[test]
    fn errors_and_failed_responses_are_counted() {
        let text = CLEAN.replace(
            "Requests/sec:",
            "  Socket errors: connect 1, read 2, write 0, timeout 4\n  Non-2xx or 3xx responses: 17\nRequests/sec:",
        );
        let r = parse(&text).unwrap();
        assert_eq!((r.socket_errors, r.non_2xx), (7, 17));
    }

    #[test]
    fn a_run_that_did_not_finish_has_no_result() {
        assert_eq!(parse(""), None);
        assert_eq!(parse(&CLEAN.replace("Requests/sec:   3024.09", "")), None);
        assert_eq!(parse(&CLEAN.replace("60512 requests", "many requests")), None);
    }

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("812.50us"), Some(812.5e-6));
        assert_eq!(parse_duration("5.00ms"), Some(5e-3));
        assert_eq!(parse_duration("10.00s"), Some(10.0));
        assert_eq!(parse_duration("1.50m"), Some(90.0));
        assert_eq!(parse_duration("10.00"), None);
        assert_eq!(parse_duration("3.00d"), None);
    }
}
