//! The real kube-apiserver (built by `cargo xtask build-kube`) on loopback
//! against a real etcd, set up as a small cluster would be:
//!
//! - a fresh CA and a serving certificate for 127.0.0.1 signed by it, and a
//!   service-account signing key (the Go target's `certs` mode makes them);
//! - a static token file with three users: `admin` in `system:masters`
//!   (which the privileged-group authorizer lets through before RBAC),
//!   `alice`, an ordinary user whom RBAC lets manage configmaps in one test
//!   namespace and read `/debug/pprof/*`, and `bob`, who may do nothing;
//! - `--authorization-mode=Node,RBAC`, the default admission plugins and
//!   profiling on;
//! - one kubeconfig per user, with the CA inline.
//!
//! It is ready when `/readyz` answers 200 and alice's RBAC rules are in
//! force. The Go target's `load` and `probe` modes drive it as any user.

use std::fmt;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tempfile::TempDir;

use crate::process::{Supervised, free_port, probe_status, tail};
use crate::{Etcd, LoadReport, LoadSpec, Variant, target_binary};

/// The debug build runs every request unoptimized, and start-up creates
/// the bootstrap RBAC policy, priority classes and system namespaces.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// The etcd key prefix (`--etcd-prefix`, kube-apiserver's default).
pub const ETCD_PREFIX: &str = "/registry";

/// A build of the real kube-apiserver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KubeVariant {
    /// `-gcflags=all=-N -l`, no `-trimpath`: what the seeds run under Delve.
    Debug,
    /// As Kubernetes ships it (`-trimpath`, CGO off), with symbols and DWARF.
    Release,
    /// The release build linked with `-s -w`: only `.gopclntab` is left.
    Stripped,
}

impl KubeVariant {
    /// Every variant.
    pub const ALL: [KubeVariant; 3] = [KubeVariant::Debug, KubeVariant::Release, KubeVariant::Stripped];

    /// The variant's name, also its cache directory.
    pub fn name(self) -> &'static str {
        match self {
            KubeVariant::Debug => "debug",
            KubeVariant::Release => "release",
            KubeVariant::Stripped => "stripped",
        }
    }
}

impl fmt::Display for KubeVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `$KTRACE_CACHE/kube-apiserver`, else `~/.cache/ktrace/kube-apiserver`
/// (where `cargo xtask build-kube` puts the builds).
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("KTRACE_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(&std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache/ktrace")
    });
    base.join("kube-apiserver")
}

/// Path of a built variant; fails when it has not been built.
pub fn binary(v: KubeVariant) -> Result<PathBuf> {
    let path = cache_dir().join(v.name()).join("kube-apiserver");
    ensure!(path.is_file(), "kube-apiserver {v} not found at {}; run `cargo xtask build-kube`", path.display());
    Ok(path)
}

/// Who a request is sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum User {
    /// In `system:masters`: allowed everything, never reaches RBAC.
    Admin,
    /// Ordinary user: configmaps in the test namespace, `/debug/pprof/*`.
    Alice,
    /// Ordinary user with no RBAC rules at all.
    Bob,
}

impl User {
    fn name(self) -> &'static str {
        match self {
            User::Admin => "admin",
            User::Alice => "alice",
            User::Bob => "bob",
        }
    }
}

/// A running kube-apiserver, stopped (SIGTERM, then SIGKILL) and reaped on drop.
pub struct KubeApiserver {
    child: Supervised,
    pid: u32,
    url: String,
    binary: PathBuf,
    /// The Go test target, whose `load`/`probe` modes are the clients.
    client: PathBuf,
    namespace: String,
    tokens: [(User, String); 3],
    dir: TempDir,
    log: PathBuf,
}

impl KubeApiserver {
    /// Starts variant `v` against `etcd` on a free loopback port, waits for
    /// `/readyz`, and creates the test namespace and alice's RBAC rules.
    pub fn start(v: KubeVariant, etcd: &Etcd) -> Result<KubeApiserver> {
        let binary = binary(v)?;
        let client = target_binary(Variant::Optimized)?;
        let dir = tempfile::Builder::new().prefix("ktrace-kube-").tempdir().context("creating kube tempdir")?;
        let d = dir.path();
        run_ok(Command::new(&client).args(["certs", "--dir"]).arg(d), "certs")?;
        let tokens = [(User::Admin, random_hex(16)?), (User::Alice, random_hex(16)?), (User::Bob, random_hex(16)?)];
        let csv: String = tokens
            .iter()
            .enumerate()
            .map(|(i, (u, t))| {
                let groups = if *u == User::Admin { ",\"system:masters\"" } else { "" };
                format!("{t},{},{}{groups}\n", u.name(), i + 1)
            })
            .collect();
        write_private(&d.join("tokens.csv"), &csv)?;

        let port = free_port()?;
        let url = format!("https://127.0.0.1:{port}");
        let ca = fs::read(d.join("ca.crt")).context("reading ca.crt")?;
        for (user, token) in &tokens {
            write_private(&d.join(format!("{}.kubeconfig", user.name())), &kubeconfig(&url, &ca, user.name(), token))?;
        }

        let log = d.join("kube-apiserver.log");
        let path = |f: &str| d.join(f).display().to_string();
        let child = Command::new(&binary)
            .arg(format!("--etcd-servers={}", etcd.client_url()))
            .arg(format!("--etcd-prefix={ETCD_PREFIX}"))
            .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
            .arg(format!("--secure-port={port}"))
            .arg(format!("--cert-dir={}", path("generated")))
            .arg(format!("--tls-cert-file={}", path("serving.crt")))
            .arg(format!("--tls-private-key-file={}", path("serving.key")))
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!("--service-account-key-file={}", path("sa.key")))
            .arg(format!("--service-account-signing-key-file={}", path("sa.key")))
            .arg(format!("--token-auth-file={}", path("tokens.csv")))
            .args(["--authorization-mode=Node,RBAC", "--service-cluster-ip-range=10.0.0.0/24"])
            .args(["--endpoint-reconciler-type=none", "--profiling=true"])
            .stdin(Stdio::null())
            .stdout(File::create(&log).context("creating kube-apiserver log")?)
            .stderr(File::options().append(true).open(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id();
        let namespace = format!("ktrace-{}", random_hex(4)?);
        let server = KubeApiserver {
            child: Supervised::new(child, Duration::from_secs(10)),
            pid,
            url,
            binary,
            client,
            namespace,
            tokens,
            dir,
            log,
        };
        server.wait_ready(v)?;
        server.grant_alice()?;
        Ok(server)
    }

    fn wait_ready(&self, v: KubeVariant) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if !self.is_alive() {
                bail!("kube-apiserver ({v}) exited during start-up; log tail:\n{}", self.log_tail(30));
            }
            if matches!(self.probe(User::Admin, "GET", "/readyz", None), Ok(200)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "kube-apiserver ({v}): /readyz not 200 within {READY_TIMEOUT:?}; log tail:\n{}",
                    self.log_tail(30)
                );
            }
            thread::sleep(Duration::from_millis(500));
        }
    }

    /// The test namespace, a Role and RoleBinding for configmaps in it, and
    /// a ClusterRole and binding for `/debug/pprof/*`, all for alice; then
    /// waits until RBAC's informers let her list configmaps.
    fn grant_alice(&self) -> Result<()> {
        let ns = &self.namespace;
        let rbac = "/apis/rbac.authorization.k8s.io/v1";
        let subject = r#"[{"kind":"User","name":"alice","apiGroup":"rbac.authorization.k8s.io"}]"#;
        let objects = [
            ("/api/v1/namespaces".to_string(), format!(r#"{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"{ns}"}}}}"#)),
            (
                format!("{rbac}/namespaces/{ns}/roles"),
                format!(
                    r#"{{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{{"name":"configmaps","namespace":"{ns}"}},
                    "rules":[{{"apiGroups":[""],"resources":["configmaps"],"verbs":["*"]}}]}}"#
                ),
            ),
            (
                format!("{rbac}/namespaces/{ns}/rolebindings"),
                format!(
                    r#"{{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{{"name":"alice-configmaps","namespace":"{ns}"}},
                    "roleRef":{{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"configmaps"}},"subjects":{subject}}}"#
                ),
            ),
            (
                format!("{rbac}/clusterroles"),
                r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"ktrace-pprof"},
                "rules":[{"nonResourceURLs":["/debug/pprof/*"],"verbs":["get"]}]}"#
                    .to_string(),
            ),
            (
                format!("{rbac}/clusterrolebindings"),
                format!(
                    r#"{{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{{"name":"alice-pprof"}},
                    "roleRef":{{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"ktrace-pprof"}},"subjects":{subject}}}"#
                ),
            ),
        ];
        for (i, (path, body)) in objects.iter().enumerate() {
            let file = self.dir.path().join(format!("object-{i}.json"));
            fs::write(&file, body).context("writing an RBAC object")?;
            let status = self.probe(User::Admin, "POST", path, Some(&file))?;
            // 409: the cluster-scoped objects survive in a reused etcd.
            ensure!(status == 201 || status == 409, "POST {path} as admin answered {status}");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let list = format!("/api/v1/namespaces/{ns}/configmaps");
        loop {
            match self.probe(User::Alice, "GET", &list, None)? {
                200 => return Ok(()),
                s if Instant::now() > deadline => bail!("alice still gets {s} listing configmaps after 30 s"),
                _ => thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Process id of the server.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The binary the server runs.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The namespace alice may use.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The kubeconfig of `user` (server, CA data and bearer token).
    pub fn kubeconfig(&self, user: User) -> PathBuf {
        self.dir.path().join(format!("{}.kubeconfig", user.name()))
    }

    /// The bearer token of `user`.
    pub fn token(&self, user: User) -> &str {
        self.tokens.iter().find(|(u, _)| *u == user).map(|(_, t)| t.as_str()).unwrap_or_default()
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Runs the Go target's `load` mode as alice in the test namespace
    /// (`spec.namespace` is ignored). The report's keys are etcd keys,
    /// `/registry/configmaps/<ns>/<name>`.
    pub fn load(&self, spec: &LoadSpec) -> Result<LoadReport> {
        let spec = LoadSpec { namespace: self.namespace.clone(), ..spec.clone() };
        crate::run_load(&self.client, &self.kubeconfig(User::Alice), &spec)
    }

    /// One request as `user`, optionally with a JSON body; the HTTP status.
    pub fn probe(&self, user: User, method: &str, path: &str, body: Option<&Path>) -> Result<u16> {
        let mut cmd = Command::new(&self.client);
        cmd.arg("probe").arg("--kubeconfig").arg(self.kubeconfig(user)).args(["--method", method, "--path", path]);
        if let Some(body) = body {
            cmd.arg("--body").arg(body);
        }
        probe_status(&mut cmd, method, path)
    }

    /// Like [`KubeApiserver::probe`], and also returns the response body,
    /// for what the server said (a created object, or why it refused).
    pub fn request(&self, user: User, method: &str, path: &str, body: Option<&Path>) -> Result<(u16, String)> {
        let output = self.dir.path().join(format!("response-{}.json", random_hex(8)?));
        let mut cmd = Command::new(&self.client);
        cmd.arg("probe").arg("--kubeconfig").arg(self.kubeconfig(user)).args(["--method", method, "--path", path]);
        cmd.arg("--output").arg(&output);
        if let Some(body) = body {
            cmd.arg("--body").arg(body);
        }
        let status = probe_status(&mut cmd, method, path)?;
        let text = fs::read_to_string(&output).with_context(|| format!("reading the response to {method} {path}"))?;
        let _ = fs::remove_file(&output);
        Ok((status, text))
    }

    /// True while the server has not exited.
    pub fn is_alive(&self) -> bool {
        self.child.is_alive()
    }
}

/// The kubeconfig layout the Go target's client modes (and ktrace) read.
fn kubeconfig(server: &str, ca_pem: &[u8], user: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: ktrace\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {}\nusers:\n- name: {user}\n  user:\n    token: {token}\n\
         contexts:\n- name: ktrace\n  context:\n    cluster: ktrace\n    user: {user}\ncurrent-context: ktrace\n",
        base64(ca_pem)
    )
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).context("reading /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

fn run_ok(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("running {what}"))?;
    ensure!(out.status.success(), "{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_pads_like_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
