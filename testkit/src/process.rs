//! Child-process plumbing shared by the fixtures: loopback ports, graceful
//! termination with a SIGKILL fallback, and log tails for error messages.

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A server process the fixture owns: stopped (SIGTERM, then SIGKILL after
/// `grace`) and reaped on drop.
pub(crate) struct Supervised {
    // A Mutex because `try_wait` needs `&mut` and `is_alive` takes `&self`.
    child: Mutex<Child>,
    grace: Duration,
}

impl Supervised {
    pub(crate) fn new(child: Child, grace: Duration) -> Supervised {
        Supervised { child: Mutex::new(child), grace }
    }

    /// True while the process has not exited.
    pub(crate) fn is_alive(&self) -> bool {
        match self.child.lock() {
            Ok(mut child) => matches!(child.try_wait(), Ok(None)),
            Err(_) => false,
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let child = match self.child.get_mut() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        terminate(child, self.grace);
    }
}

/// Runs a `probe` command of the Go target and returns the HTTP status it
/// printed.
pub(crate) fn probe_status(cmd: &mut Command, method: &str, path: &str) -> Result<u16> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("running probe {method} {path}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("probe {method} {path} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    stdout.trim().parse().with_context(|| format!("probe printed {stdout:?}, not a status code"))
}

/// A loopback port that was free a moment ago. Another process can take it
/// before the caller binds it; callers retry start-up instead of assuming.
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// SIGTERM, then SIGKILL after `grace`; always reaps so no zombie remains.
pub(crate) fn terminate(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our
        // own unreaped child, so it cannot have been recycled.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The last `lines` lines of a log file, for error messages.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(data) => {
            let text = String::from_utf8_lossy(&data);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(no log at {}: {e})", path.display()),
    }
}
