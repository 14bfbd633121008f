//! One `ktrace attach` run under a benchmark: when it started, when its
//! probes were on (its `N probes on M functions …` line on stderr), when it
//! exited, and what it printed.

use std::{
    io::{BufRead, BufReader, Read},
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc::{self, RecvTimeoutError},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// A running `ktrace attach`; killed if dropped before [`Ktrace::finish`].
pub struct Ktrace {
    child: Option<Child>,
    /// What was run, for error messages.
    shown: String,
    pub spawned_at: Instant,
    live: mpsc::Receiver<(Instant, String)>,
    stderr: Option<JoinHandle<Vec<String>>>,
    stdout: Option<JoinHandle<String>>,
}

/// Its probes are on, or it refused its flags.
pub enum Start {
    /// When the "probes on" line arrived, and the line.
    Live(Instant, String),
    /// ktrace refused its command line before placing probes: a usage
    /// error (exit code 2, e.g. a flag this build lacks) or bad input (3, e.g.
    /// a value it does not take). Its error line.
    Rejected(String),
}

/// A run that ended.
pub struct Finished {
    pub exited_at: Instant,
    pub stdout: String,
    pub stderr: Vec<String>,
}

impl Ktrace {
    /// Runs `ktrace attach ARGS`.
    pub fn spawn(ktrace: &Path, args: &[String]) -> Result<Self> {
        let mut cmd = Command::new(ktrace);
        cmd.arg("attach").args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let shown = format!("ktrace attach {}", args.join(" "));
        let spawned_at = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("cannot run {shown}"))?;
        let (tx, live) = mpsc::channel();
        let stderr = child.stderr.take().context("ktrace stderr")?;
        let stderr = thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(" probes on ") {
                    let _ = tx.send((Instant::now(), line.clone()));
                }
                lines.push(line);
            }
            lines
        });
        let mut out = child.stdout.take().context("ktrace stdout")?;
        let stdout = thread::spawn(move || {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            text
        });
        Ok(Ktrace { child: Some(child), shown, spawned_at, live, stderr: Some(stderr), stdout: Some(stdout) })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits up to `timeout` for the probes to be on.
    pub fn wait_live(&mut self, timeout: Duration) -> Result<Start> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.live.recv_timeout(Duration::from_millis(50)) {
                Ok((at, line)) => return Ok(Start::Live(at, line)),
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Some(status) = self.try_wait()? {
                        return self.exited_early(status);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let finished = self.kill();
                    bail!("{} did not place its probes within {timeout:?}:\n{}", self.shown, excerpt(&finished));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.as_mut().context("ktrace already finished")?.wait()?;
                    return self.exited_early(status);
                }
            }
        }
    }

    fn exited_early(&mut self, status: ExitStatus) -> Result<Start> {
        let lines = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        self.child = None;
        if matches!(status.code(), Some(2 | 3)) {
            let error = lines.iter().find(|l| l.starts_with("error:")).or(lines.first());
            return Ok(Start::Rejected(error.map_or_else(|| status.to_string(), |l| l.trim().to_string())));
        }
        bail!("{} exited ({status}) before its probes were on:\n{}", self.shown, excerpt(&lines))
    }

    fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        Ok(match self.child.as_mut() {
            Some(child) => child.try_wait()?,
            None => None,
        })
    }

    /// True while ktrace runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None)) && self.child.is_some()
    }

    /// Ctrl-C: ktrace detaches and prints its summary.
    pub fn interrupt(&self) {
        if let Some(child) = &self.child
            && let Ok(pid) = libc::pid_t::try_from(child.id())
        {
            // SAFETY: kill(2) has no memory-safety preconditions; the pid is
            // our own unreaped child, so it cannot have been recycled.
            unsafe {
                libc::kill(pid, libc::SIGINT);
            }
        }
    }

    /// Waits up to `timeout` for ktrace to exit by itself; fails, with its
    /// stderr, unless it exits 0.
    pub fn finish(mut self, timeout: Duration) -> Result<Finished> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let lines = self.kill();
                bail!("{} did not exit within {timeout:?}:\n{}", self.shown, excerpt(&lines));
            }
            thread::sleep(Duration::from_millis(10));
        };
        let exited_at = Instant::now();
        self.child = None;
        let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let stdout = self.stdout.take().and_then(|h| h.join().ok()).unwrap_or_default();
        if !status.success() {
            bail!("{} failed ({status}):\n{}", self.shown, excerpt(&stderr));
        }
        Ok(Finished { exited_at, stdout, stderr })
    }

    /// Kills ktrace and returns its stderr.
    fn kill(&mut self) -> Vec<String> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default()
    }
}

impl Drop for Ktrace {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The number of probes in ktrace's `N probes on M functions of …` line.
pub fn probes_in(line: &str) -> Option<u64> {
    line.split(" probes on ").next()?.rsplit(' ').next()?.parse().ok()
}

/// ktrace's stderr, shortened: a verifier log can run to thousands of lines.
pub fn excerpt(lines: &[String]) -> String {
    const KEEP: usize = 8;
    if lines.len() <= 2 * KEEP {
        return lines.join("\n");
    }
    let skipped = format!("[... {} lines ...]", lines.len() - 2 * KEEP);
    let head = lines[..KEEP].iter().map(String::as_str);
    head.chain([skipped.as_str()])
        .chain(lines[lines.len() - KEEP..].iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::probes_in;

    #[test]
    fn probe_count_from_the_probes_on_line() {
        let line = "ktrace: 162 probes on 41 functions of PID 4242 (121 single-stepped); tracing for 2s";
        assert_eq!(probes_in(line), Some(162));
        assert_eq!(probes_in("ktrace: some probes on 3 functions"), None);
    }
}
