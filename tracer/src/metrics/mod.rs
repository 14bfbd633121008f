//! `ktrace attach --serve-metrics ADDR`: the session's counters for
//! Prometheus, on `http://ADDR/metrics`, while attach runs.
//!
//! An output layer beside the live table: it never reads the kernel. The
//! watch loop hands it [`Reading`]s (the same counters its table and the
//! summary come from) through [`Metrics::publish`]; the HTTP server
//! ([`http`]) renders the latest one ([`exposition`]) on each scrape. The
//! maps are read by the loop alone, because the session is its own and
//! reading them is not free (one syscall per function and map): it
//! publishes at every 1 s tick, and, when a scrape is waiting, on its next
//! 50 ms drain, so a scrape sees counters at most about 50 ms old, and an
//! endpoint nobody scrapes costs a copy of the tick's counters. Every value is a sum of per-CPU kernel
//! counters that only grow, read by one thread in order, so what is served
//! never goes down while the process lives.

pub mod exposition;
mod http;

use std::{
    net::{SocketAddr, TcpListener, ToSocketAddrs},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::Duration,
};

use crate::{
    attach::FunctionCounts,
    resolve::{Binary, GoBuildInfo},
    session::Setup,
};

/// One traced function as its series are labelled.
#[derive(Clone, Debug)]
pub struct Function {
    /// The `function` label: its symbol (or line, or inlined copy), made
    /// unique within the session (see [`unique_names`]).
    pub name: String,
    /// The `group` label: its presets joined by `,`, empty when none.
    pub group: String,
    /// Whether its error result is read (`ktrace_errors_total`).
    pub errors: bool,
    /// Whether it has RET probes (histogram, sampled fraction).
    pub timed: bool,
}

/// What `ktrace_target_info` says about the traced binary.
#[derive(Clone, Debug, Default)]
pub struct TargetInfo {
    /// Go toolchain version from the build info, or `unknown`.
    pub go_version: String,
    /// See [`kubernetes_version`].
    pub kubernetes_version: String,
    /// Which module the Kubernetes version comes from, or `""`.
    pub kubernetes_version_from: &'static str,
    /// The executable's path.
    pub binary: String,
    /// Its build ID, or `""`.
    pub build_id: String,
}

/// One read of one traced process's counters.
#[derive(Clone, Debug, Default)]
pub struct Reading {
    /// The process (the `pid` label).
    pub pid: Option<u32>,
    /// Counters and histograms per function id.
    pub counts: Vec<FunctionCounts>,
    /// Each function's `sampled_fraction`.
    pub fractions: Vec<Option<f64>>,
    /// Call events lost to a full ring buffer.
    pub dropped: u64,
}

/// The Kubernetes version of a Go build and the module it was read from:
/// `k8s.io/kubernetes`'s version when the build lists it (as its main
/// module or a dependency), else `k8s.io/apiserver`'s `v0.X.Y` read as
/// `v1.X.Y` (the staging modules are tagged that way), else `unknown`.
/// Versions that name no release (`(devel)`, `v0.0.0`, pseudo-versions of
/// an untagged commit) do not count.
pub fn kubernetes_version(info: Option<&GoBuildInfo>) -> (String, &'static str) {
    let version_of =
        |path: &str| info.into_iter().flat_map(|i| &i.modules).find(|m| m.path == path).map(|m| m.version.as_str());
    if let Some(v) = version_of("k8s.io/kubernetes").filter(|v| release(v).is_some_and(|(major, _)| major >= 1)) {
        return (v.to_string(), "k8s.io/kubernetes");
    }
    if let Some(v) = version_of("k8s.io/apiserver")
        && let Some((0, rest)) = release(v)
        && !rest.starts_with("0.")
    {
        return (format!("v1.{rest}"), "k8s.io/apiserver");
    }
    ("unknown".into(), "")
}

/// `vMAJOR.MINOR.PATCH[-pre]` as (MAJOR, `MINOR.PATCH[-pre]`), when `v`
/// names a tagged release; a pseudo-version (`…-20240101120000-abcdef123456`)
/// does not.
fn release(v: &str) -> Option<(u64, &str)> {
    let rest = v.strip_prefix('v')?;
    let (major, rest) = rest.split_once('.')?;
    let core = rest.split(['-', '+']).next()?;
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mut parts = core.split('.');
    let well_formed = parts.next().is_some_and(numeric) && parts.next().is_some_and(numeric) && parts.next().is_none();
    let pseudo = rest.split(['-', '.']).any(|p| p.len() == 14 && numeric(p));
    if !numeric(major) || !well_formed || pseudo {
        return None;
    }
    Some((major.parse().ok()?, rest))
}

/// Series names for `labels`, one per traced function: a name shared by
/// several (an inlined callee copied twice into one caller, instantiations
/// a stripped binary names alike) gets ` at 0xADDR` (its probe site) on
/// each copy, since one scrape must not hold the same series twice.
pub fn unique_names(labels: &[(String, u64)]) -> Vec<String> {
    labels
        .iter()
        .map(|(name, addr)| {
            if labels.iter().filter(|(n, _)| n == name).count() > 1 {
                format!("{name} at {addr:#x}")
            } else {
                name.clone()
            }
        })
        .collect()
}

/// The target and the series of a session: `tracked(id)` says whether
/// function `id` got RET probes; `pid`: a process running the binary, for
/// the path it gives it.
pub fn describe(
    setup: &Setup,
    binary: &Binary,
    pid: Option<u32>,
    tracked: impl Fn(u32) -> bool,
) -> (TargetInfo, Vec<Function>) {
    let (kubernetes_version, kubernetes_version_from) = kubernetes_version(binary.build_info());
    // /proc/PID/exe names the file the process runs as the process sees it
    // (inside its own mount namespace), the same across restarts; the path
    // ktrace read it through (below /proc/PID/root) holds the PID.
    let path = binary.path();
    let named = pid.and_then(|p| std::fs::read_link(format!("/proc/{p}/exe")).ok());
    let binary_name = named.unwrap_or_else(|| path.to_path_buf()).display().to_string();
    let target = TargetInfo {
        go_version: binary.build_info().map_or_else(|| "unknown".into(), |b| b.go_version.clone()),
        kubernetes_version,
        kubernetes_version_from,
        binary: binary_name,
        build_id: binary.build_id().unwrap_or_default(),
    };
    let labels: Vec<(String, u64)> = setup.traced.iter().map(|t| (t.plan.label(), t.plan.entry.addr)).collect();
    let functions = unique_names(&labels)
        .into_iter()
        .zip(&setup.traced)
        .enumerate()
        .map(|(id, (name, t))| Function {
            name,
            group: t.groups.join(","),
            errors: t.captures.errors,
            timed: tracked(id as u32),
        })
        .collect();
    (target, functions)
}

/// What the server renders, set once the probes are placed.
#[derive(Default)]
struct State {
    described: Option<(TargetInfo, Vec<Function>)>,
    latest: Option<Arc<[Reading]>>,
    /// Readings published so far.
    generation: u64,
    /// A scrape is waiting for a fresh reading.
    wanted: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    fresh: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere leaves the counters as they were: keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How long a scrape waits for the watch loop's next reading before it is
/// answered with the previous one.
const FRESH_WAIT: Duration = Duration::from_millis(200);

/// The `/metrics` endpoint of one session.
pub struct Metrics {
    shared: Arc<Shared>,
    /// The address bound (the real port when ADDR asked for port 0).
    pub addr: SocketAddr,
}

impl Metrics {
    /// Binds `addr` and serves from a thread of its own: 503 until
    /// [`Metrics::describe`] and the first [`Metrics::publish`], then the
    /// latest reading.
    pub fn serve(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        http::spawn(listener, Arc::clone(&shared))?;
        Ok(Self { shared, addr })
    }

    /// Says what is traced; scrapes are answered from now on.
    pub fn describe(&self, target: TargetInfo, functions: Vec<Function>) {
        self.shared.lock().described = Some((target, functions));
    }

    /// True when a scrape waits for a reading fresher than the last one.
    pub fn wanted(&self) -> bool {
        self.shared.lock().wanted
    }

    /// Makes `readings` (one per traced process) the ones served.
    pub fn publish(&self, readings: Vec<Reading>) {
        let mut state = self.shared.lock();
        state.latest = Some(readings.into());
        state.generation += 1;
        state.wanted = false;
        drop(state);
        self.shared.fresh.notify_all();
    }
}

/// The body of one scrape, or `None` before the session is described and
/// its counters first read.
fn scrape(shared: &Shared) -> Option<Vec<u8>> {
    let mut state = shared.lock();
    state.described.as_ref()?;
    let seen = state.generation;
    state.wanted = true;
    let (state, _) =
        shared.fresh.wait_timeout_while(state, FRESH_WAIT, |s| s.generation == seen).unwrap_or_else(|p| p.into_inner());
    let (target, functions) = state.described.clone()?;
    let reading = state.latest.clone()?;
    drop(state);
    let mut body = Vec::with_capacity(64 * 1024);
    exposition::write(&mut body, &target, &functions, &reading).ok()?;
    Some(body)
}

/// Parses `--serve-metrics ADDR`: `IP:PORT`, `[IPv6]:PORT`, `:PORT` (every
/// IPv4 interface) or `HOST:PORT` (its first address).
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| format!("{s:?}: the port must be a number from 0 to 65535"))?;
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    s.to_socket_addrs()
        .map_err(|e| format!("{s:?} is not HOST:PORT ({e})"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::Module;

    fn info(modules: &[(&str, &str)]) -> GoBuildInfo {
        GoBuildInfo {
            go_version: "go1.26.8".into(),
            main_path: None,
            module_version: None,
            modules: modules.iter().map(|(p, v)| Module { path: (*p).into(), version: (*v).into() }).collect(),
        }
    }

    #[test]
    fn kubernetes_version_from_the_module_then_apiserver() {
        let k = |m: &[(&str, &str)]| kubernetes_version(Some(&info(m)));
        assert_eq!(k(&[("k8s.io/kubernetes", "v1.36.3"), ("k8s.io/apiserver", "v0.36.3")]).0, "v1.36.3");
        assert_eq!(k(&[("k8s.io/kubernetes", "(devel)"), ("k8s.io/apiserver", "v0.30.1")]).0, "v1.30.1");
        assert_eq!(k(&[("k8s.io/apiserver", "v0.31.0-rc.1")]), ("v1.31.0-rc.1".into(), "k8s.io/apiserver"));
        assert_eq!(k(&[("k8s.io/kubernetes", "v1.36.3")]).1, "k8s.io/kubernetes");
        // Official builds replace staging modules by directories: v0.0.0.
        assert_eq!(k(&[("k8s.io/kubernetes", "(devel)"), ("k8s.io/apiserver", "v0.0.0")]).0, "unknown");
        assert_eq!(k(&[("k8s.io/apiserver", "v0.0.0-20240101120000-abcdef123456")]).0, "unknown");
        assert_eq!(k(&[]), ("unknown".into(), ""));
        assert_eq!(kubernetes_version(None).0, "unknown");
    }

    #[test]
    fn shared_names_get_their_sites() {
        let names = unique_names(&[("a".into(), 1), ("b".into(), 2), ("a".into(), 3)]);
        assert_eq!(names, ["a at 0x1", "b", "a at 0x3"]);
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_addr("127.0.0.1:0").unwrap(), "127.0.0.1:0".parse().unwrap());
        assert_eq!(parse_addr(":9100").unwrap(), "0.0.0.0:9100".parse().unwrap());
        assert_eq!(parse_addr("[::1]:80").unwrap(), "[::1]:80".parse().unwrap());
        assert!(parse_addr(":x").is_err());
        assert!(parse_addr("nonsense").is_err());
    }
}
