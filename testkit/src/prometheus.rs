//! A real Prometheus server (Debian's `prometheus`, installed by `cargo
//! xtask setup`) on a loopback port, with its own config and TSDB in a
//! temporary directory, scraping the given targets every second; and a
//! client for its query API.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::etcd::http_request;
use crate::process::{Supervised, free_port, tail};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running Prometheus, stopped and reaped on drop.
pub struct Prometheus {
    child: Supervised,
    addr: String,
    log: PathBuf,
    // Dropped after the child is gone.
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus (from `$KTRACE_PROMETHEUS`, else `prometheus` on
    /// `PATH`) scraping `http://TARGET/metrics` of each of `targets`
    /// (`host:port`) every second as job `ktrace`, and waits for `/-/ready`.
    pub fn start(targets: &[String]) -> Result<Prometheus> {
        let dir = tempfile::Builder::new().prefix("ktrace-prometheus-").tempdir().context("creating a tempdir")?;
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: ktrace\n    static_configs:\n      - targets: [{}]\n",
            list.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        fs::write(&config_path, config).context("writing prometheus.yml")?;
        let addr = format!("127.0.0.1:{}", free_port()?);
        let log = dir.path().join("prometheus.log");
        let binary = std::env::var_os("KTRACE_PROMETHEUS").unwrap_or_else(|| "prometheus".into());
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(File::create(&log).context("creating prometheus.log")?)
            .stderr(File::options().append(true).open(&log)?)
            .spawn()
            .with_context(|| {
                format!("starting {} (Debian package prometheus; run `cargo xtask setup`)", binary.to_string_lossy())
            })?;
        let server = Prometheus { child: Supervised::new(child, Duration::from_secs(10)), addr, log, _dir: dir };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if !server.child.is_alive() {
                bail!("prometheus exited during start-up; log tail:\n{}", tail(&server.log, 20));
            }
            if matches!(http_request(&server.addr, "GET", "/-/ready", None), Ok((200, _))) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("prometheus not ready within {READY_TIMEOUT:?}; log tail:\n{}", tail(&server.log, 20));
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// `host:port` of its web API.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The `data.result` of the instant query `promql` at the current time.
    pub fn query(&self, promql: &str) -> Result<Vec<serde_json::Value>> {
        let path = format!("/api/v1/query?query={}", url_encode(promql));
        let (status, body) = http_request(&self.addr, "GET", &path, None)?;
        if status != 200 {
            bail!("query {promql:?}: HTTP {status}: {body}");
        }
        let v: serde_json::Value = serde_json::from_str(&body).with_context(|| format!("query {promql:?}: {body}"))?;
        match v["data"]["result"].as_array() {
            Some(r) => Ok(r.clone()),
            None => bail!("query {promql:?}: no data.result in {body}"),
        }
    }

    /// The last lines of its log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

/// Percent-encodes everything but unreserved characters.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn url_encoding() {
        assert_eq!(super::url_encode("a{b=\"c d\"}[1m]"), "a%7Bb%3D%22c%20d%22%7D%5B1m%5D");
    }
}
