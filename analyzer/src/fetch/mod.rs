//! Getting a pprof profile: from a file, or from a server's /debug/pprof
//! over HTTP(S) with the credentials of a kubeconfig ([`kubeconfig`]).
//!
//! [`Source::parse`] decides what a `--pprof` argument means (a URL, a file,
//! or a profile name such as `heap` on the kubeconfig's server);
//! [`Source::fetch`] returns the body exactly as served (gzipped
//! profile.proto), checked to be a complete gzip stream. Every failure is a
//! one-line [`FetchError`]; none of them, and nothing in `Debug`, contains
//! a token.

mod http;
pub mod kubeconfig;

use std::{
    fmt,
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use kubeconfig::{Credentials, ExecPlugin};

use crate::pprof::{self, DecodeError};

/// The profiles /debug/pprof serves in profile.proto form.
pub const PROFILE_NAMES: &[&str] = &["profile", "heap", "allocs", "goroutine", "mutex", "block", "threadcreate"];

/// Why a profile could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The argument is neither a URL, a file nor a profile name.
    #[error("{0}")]
    Source(String),
    /// The kubeconfig could not be used.
    #[error("kubeconfig {0}")]
    Kubeconfig(String),
    /// An exec credential plugin failed.
    #[error("{0}")]
    Exec(String),
    /// Reading a local file failed.
    #[error("reading {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No TCP connection.
    #[error("connecting to {url}: {reason}")]
    Connect {
        /// What was fetched.
        url: String,
        /// Why.
        reason: String,
    },
    /// The TLS handshake failed; `reason` names the certificate problem.
    #[error("TLS with {url} failed: {reason}")]
    Tls {
        /// What was fetched.
        url: String,
        /// Why, e.g. which CA did not sign the server's certificate.
        reason: String,
    },
    /// 401: no or wrong credentials.
    #[error("{url}: 401 Unauthorized: {hint}")]
    Unauthorized {
        /// What was fetched.
        url: String,
        /// What was sent, and what to check.
        hint: String,
    },
    /// 403: authenticated, but RBAC does not allow it.
    #[error(
        "{url}: 403 Forbidden: user {user:?} needs an RBAC rule allowing verb \"get\" on nonResourceURLs \"/debug/pprof/*\" (cluster-admin has it)"
    )]
    Forbidden {
        /// What was fetched.
        url: String,
        /// The kubeconfig user.
        user: String,
    },
    /// 404: profiling is off, or there is no such profile.
    #[error(
        "{url}: 404 Not Found: profiling is disabled on this server (kube-apiserver --profiling=false), or it has no such profile"
    )]
    NotFound {
        /// What was fetched.
        url: String,
    },
    /// Any other status.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        /// What was fetched.
        url: String,
        /// HTTP status code.
        status: u16,
        /// The first line of the body.
        body: String,
    },
    /// No complete answer in time.
    #[error("{url}: timed out after {} s", .after.as_secs())]
    Timeout {
        /// What was fetched.
        url: String,
        /// How long ktrace waited.
        after: Duration,
    },
    /// The body was cut short.
    #[error("{url}: truncated body: {reason}")]
    Truncated {
        /// What was fetched.
        url: String,
        /// What was received.
        reason: String,
    },
    /// The body is not a gzipped profile.
    #[error("{url}: not a pprof profile: {reason}")]
    NotPprof {
        /// What was fetched.
        url: String,
        /// What it looks like instead.
        reason: String,
    },
}

impl FetchError {
    fn from_body(url: &str, e: DecodeError) -> FetchError {
        let url = url.to_string();
        match e {
            DecodeError::Truncated(n) => {
                FetchError::Truncated { url, reason: format!("the gzip stream ends early after {n} bytes") }
            }
            DecodeError::NotPprof(what) => FetchError::NotPprof { url, reason: what },
            other => FetchError::NotPprof { url, reason: other.to_string() },
        }
    }
}

/// Where a profile comes from.
#[derive(Clone)]
pub struct Source {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    File(PathBuf),
    Http(Box<HttpSource>),
}

#[derive(Clone)]
struct HttpSource {
    /// The URL without `seconds`.
    url: String,
    uri: hyper::Uri,
    /// Credentials, when the URL is the kubeconfig's server.
    creds: Option<Credentials>,
    exec: Option<ExecPlugin>,
    /// Why no credentials are sent, for a 401's hint.
    no_creds_why: Option<String>,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only the description: credentials stay out of logs.
        write!(f, "Source({})", self.describe())
    }
}

fn origin(uri: &hyper::Uri) -> Option<(String, String, u16)> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
    Some((scheme, host, port))
}

impl Source {
    /// Interprets a `--pprof` argument: an `http(s)://` URL (a bare server
    /// URL means its CPU profile), an existing file, or a profile name
    /// (`profile`, `heap`, …, or a `/debug/pprof/…` path) on the current
    /// kubeconfig context's server. The kubeconfig is `kubeconfig`, else
    /// `$KUBECONFIG`, else `~/.kube/config`; its credentials are sent only
    /// to its own server.
    pub fn parse(arg: &str, kubeconfig: Option<&Path>) -> Result<Source, FetchError> {
        let lower = arg.to_ascii_lowercase();
        let is_url = lower.starts_with("http://") || lower.starts_with("https://");
        if !is_url && Path::new(arg).is_file() {
            return Ok(Source { inner: Inner::File(arg.into()) });
        }
        let is_name = PROFILE_NAMES.contains(&arg) || arg.starts_with("/debug/pprof/");
        if !is_url && !is_name {
            return Err(FetchError::Source(format!(
                "--pprof {arg:?}: no such file, and not a URL or a profile name ({})",
                PROFILE_NAMES.join(", ")
            )));
        }
        let loaded = match kubeconfig::locate(kubeconfig)? {
            Some(p) => Some(kubeconfig::load(&p)?),
            None => None,
        };
        let url = if is_url {
            arg.to_string()
        } else {
            let (c, _) = loaded.as_ref().ok_or_else(|| {
                FetchError::Source(format!("--pprof {arg}: a profile name needs a kubeconfig for the server's address"))
            })?;
            let path = if arg.starts_with('/') { arg.to_string() } else { format!("/debug/pprof/{arg}") };
            format!("{}{path}", c.server)
        };
        let mut uri: hyper::Uri =
            url.parse().map_err(|e| FetchError::Source(format!("--pprof {url:?} is not a URL: {e}")))?;
        let mut url = url;
        if uri.path() == "/" || uri.path().is_empty() {
            url = format!("{}/debug/pprof/profile", url.trim_end_matches('/'));
            uri = url.parse().map_err(|e| FetchError::Source(format!("--pprof {url:?} is not a URL: {e}")))?;
        }
        let want = origin(&uri).ok_or_else(|| FetchError::Source(format!("--pprof {url:?} has no host")))?;
        let (mut creds, mut exec, mut no_creds_why) = (None, None, None);
        match loaded {
            Some((c, e)) => {
                let server_origin = c.server.parse::<hyper::Uri>().ok().as_ref().and_then(origin);
                if server_origin.as_ref() == Some(&want) {
                    creds = Some(c);
                    exec = e;
                } else {
                    no_creds_why = Some(format!(
                        "no credentials were sent: the URL is not the server of kubeconfig {} ({})",
                        c.path.display(),
                        c.server
                    ));
                }
            }
            None => no_creds_why = Some("no credentials were sent: no kubeconfig found (give --kubeconfig)".into()),
        }
        Ok(Source { inner: Inner::Http(Box::new(HttpSource { url, uri, creds, exec, no_creds_why })) })
    }

    /// A local file as a source.
    pub fn file(path: impl Into<PathBuf>) -> Source {
        Source { inner: Inner::File(path.into()) }
    }

    /// The URL or path, for messages.
    pub fn describe(&self) -> String {
        match &self.inner {
            Inner::File(p) => p.display().to_string(),
            Inner::Http(h) => h.url.clone(),
        }
    }

    /// True for a CPU profile URL (`…/profile`), which takes `seconds`.
    pub fn is_cpu_url(&self) -> bool {
        matches!(&self.inner, Inner::Http(h) if h.uri.path().ends_with("/profile"))
    }

    /// Fetches the profile quietly; `seconds` is added to a URL as
    /// `?seconds=N` (a CPU profile then covers the next N seconds). Returns
    /// the body as served, checked to be a whole gzip stream.
    pub async fn fetch(&self, seconds: Option<u64>) -> Result<Vec<u8>, FetchError> {
        self.fetch_with_progress(seconds, false).await
    }

    /// Like [`Source::fetch`]; with `progress`, while the server collects a
    /// `seconds`-long profile, stderr shows a spinner with the time left
    /// (a TTY) or one line saying what is being waited for (not a TTY).
    pub async fn fetch_with_progress(&self, seconds: Option<u64>, progress: bool) -> Result<Vec<u8>, FetchError> {
        let h = match &self.inner {
            Inner::File(p) => {
                let bytes =
                    std::fs::read(p).map_err(|e| FetchError::File { path: p.clone(), reason: e.to_string() })?;
                check_body(&p.display().to_string(), &bytes)?;
                return Ok(bytes);
            }
            Inner::Http(h) => h,
        };
        let mut h = (**h).clone();
        if let (Some(exec), Some(creds)) = (h.exec.take(), h.creds.as_mut()) {
            let mut c = creds.clone();
            *creds = tokio::task::spawn_blocking(move || exec.run(&mut c).map(|()| c))
                .await
                .map_err(|e| FetchError::Exec(format!("exec plugin: {e}")))??;
        }
        let mut url = h.url.clone();
        if let Some(s) = seconds.filter(|_| !h.url.contains("seconds=")) {
            url.push(if h.uri.query().is_some() { '&' } else { '?' });
            url.push_str(&format!("seconds={s}"));
        }
        let uri: hyper::Uri = url.parse().map_err(|e| FetchError::Source(format!("{url:?}: {e}")))?;
        let timeout = Duration::from_secs(seconds.unwrap_or(0) + 30);
        let request = http::get(&uri, &h, timeout);
        let body = if progress { with_progress(request, seconds.unwrap_or(0), &h.url).await } else { request.await }?;
        check_body(&h.url, &body)?;
        Ok(body)
    }
}

/// The trace record that stores a fetched profile with the trace (what
/// `ktrace attach --pprof URL` writes once the body arrives): `kind` is the
/// /debug/pprof name (`profile` for CPU), `start_ns` when fetching started,
/// after the trace's `start_unix_ns`, and `duration_ns` the window it covers.
pub fn profile_record(kind: &str, start_ns: u64, duration_ns: u64, body: &[u8]) -> crate::trace::Profile {
    use base64::Engine as _;
    crate::trace::Profile {
        kind: kind.to_string(),
        start_ns,
        duration_ns,
        data_base64: base64::engine::general_purpose::STANDARD.encode(body),
    }
}

/// Checks that `body` is a complete gzip stream (or an uncompressed
/// profile), so a cut-short download is reported here, not later.
fn check_body(url: &str, body: &[u8]) -> Result<(), FetchError> {
    let r = if pprof::is_gzip(body) { pprof::gunzip(body).map(drop) } else { pprof::Profile::decode(body).map(drop) };
    r.map_err(|e| FetchError::from_body(url, e))
}

async fn with_progress<F>(request: F, seconds: u64, url: &str) -> Result<Vec<u8>, FetchError>
where
    F: std::future::Future<Output = Result<Vec<u8>, FetchError>>,
{
    let mut err = std::io::stderr();
    if !err.is_terminal() {
        if seconds > 0 {
            let _ = writeln!(err, "ktrace: collecting a {seconds} s profile from {url}");
        }
        return request.await;
    }
    const SPIN: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tokio::pin!(request);
    let mut i = 0usize;
    let out = loop {
        tokio::select! {
            r = &mut request => break r,
            _ = tick.tick() => {
                let left = seconds.saturating_sub(start.elapsed().as_secs());
                let what = if left > 0 { format!("{left} s left") } else { "downloading".into() };
                let _ = write!(err, "\r\x1b[K{} fetching {url}: {what}", SPIN[i % SPIN.len()]);
                let _ = err.flush();
                i += 1;
            }
        }
    };
    let _ = write!(err, "\r\x1b[K");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_names_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let kc = dir.path().join("kc");
        std::fs::write(
            &kc,
            "clusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:6443'}\nusers:\n- name: u\n  user: {token: tok-123}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n",
        )
        .unwrap();
        let s = Source::parse("heap", Some(&kc)).unwrap();
        assert_eq!(s.describe(), "https://127.0.0.1:6443/debug/pprof/heap");
        assert!(!format!("{s:?}").contains("tok-123"));
        let s = Source::parse("https://127.0.0.1:6443", Some(&kc)).unwrap();
        assert!(s.is_cpu_url());
        let Inner::Http(h) = &s.inner else { panic!() };
        assert!(h.creds.is_some());
        let s = Source::parse("https://10.1.1.1:6443/debug/pprof/heap", Some(&kc)).unwrap();
        let Inner::Http(h) = &s.inner else { panic!() };
        assert!(h.creds.is_none() && h.no_creds_why.is_some());
        let f = dir.path().join("p.pb.gz");
        std::fs::write(&f, b"x").unwrap();
        assert!(matches!(Source::parse(f.to_str().unwrap(), None).unwrap().inner, Inner::File(_)));
        assert!(Source::parse("nonsense", Some(&kc)).is_err());
    }

    #[test]
    fn fetching_can_run_on_a_spawned_task() {
        fn send<T: Send + 'static>(_: T) {}
        let s = Source::file("/nonexistent");
        send(async move { s.fetch(Some(1)).await });
    }

    #[test]
    fn a_stored_profile_reads_back_in_the_report() {
        let mut b = crate::pprof::build::ProfileBuilder::new(&[("samples", "count"), ("cpu", "nanoseconds")]);
        b.sample(&["main.f"], &[1, 10]);
        let r = profile_record("profile", 5, 10, &b.encode_gzip());
        let t = crate::trace::Trace { profiles: vec![r], ..Default::default() };
        let cpu = crate::report::CpuProfile::from_trace(&t).unwrap().unwrap();
        assert_eq!(cpu.window, Some((5, 10)));
        assert_eq!(cpu.profile.fold(1).unwrap().total(), 10);
    }
}
