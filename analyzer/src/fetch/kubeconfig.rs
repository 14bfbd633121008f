//! Reading a kubeconfig the way kubectl does, for the one thing ktrace needs
//! from it: how to reach and authenticate to the current context's server.
//! Supported: server, certificate-authority(-data), insecure-skip-tls-verify,
//! tls-server-name, client-certificate(-data)/client-key(-data), token,
//! tokenFile, username/password, and exec credential plugins. Relative file
//! paths are resolved against the kubeconfig's directory, as kubectl does.
//!
//! Secrets live in [`Secret`], whose `Debug` prints nothing of them.

use std::{
    fmt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use base64::Engine as _;
use serde::Deserialize;

use super::FetchError;

/// A string that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub(crate) String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What the current context says about reaching its server.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// The kubeconfig file read.
    pub path: PathBuf,
    /// Current context's user name (for error messages).
    pub user: String,
    /// `cluster.server`, without a trailing `/`.
    pub server: String,
    /// CA certificates (PEM), and where they came from.
    pub ca: Option<(Vec<u8>, String)>,
    /// `insecure-skip-tls-verify`.
    pub insecure: bool,
    /// `tls-server-name`.
    pub tls_server_name: Option<String>,
    /// Client certificate and key, PEM.
    pub client_cert: Option<(Vec<u8>, Secret)>,
    /// Bearer token (from `token`, `tokenFile` or an exec plugin).
    pub token: Option<Secret>,
    /// Basic auth.
    pub basic: Option<(String, Secret)>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct File {
    clusters: Vec<NamedCluster>,
    users: Vec<NamedUser>,
    contexts: Vec<NamedContext>,
    #[serde(rename = "current-context")]
    current_context: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NamedCluster {
    name: String,
    cluster: Cluster,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
struct Cluster {
    server: String,
    certificate_authority: Option<String>,
    certificate_authority_data: Option<String>,
    insecure_skip_tls_verify: bool,
    tls_server_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NamedUser {
    name: String,
    user: User,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
struct User {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    client_certificate: Option<String>,
    client_certificate_data: Option<String>,
    client_key: Option<String>,
    client_key_data: Option<String>,
    username: Option<String>,
    password: Option<String>,
    exec: Option<Exec>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Exec {
    command: String,
    args: Vec<String>,
    env: Option<Vec<EnvVar>>,
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct EnvVar {
    name: String,
    value: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ExecCredential {
    status: Option<ExecStatus>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ExecStatus {
    token: Option<String>,
    client_certificate_data: Option<String>,
    client_key_data: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NamedContext {
    name: String,
    context: Context,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Context {
    cluster: String,
    user: String,
}

/// The kubeconfig to read: `explicit`, else the first existing file of
/// `$KUBECONFIG`, else `~/.kube/config`. `None` when there is none (and
/// none was asked for).
pub fn locate(explicit: Option<&Path>) -> Result<Option<PathBuf>, FetchError> {
    if let Some(p) = explicit {
        if !p.is_file() {
            return Err(FetchError::Kubeconfig(format!("{}: no such file", p.display())));
        }
        return Ok(Some(p.to_path_buf()));
    }
    if let Some(list) = std::env::var_os("KUBECONFIG") {
        // kubectl merges every file of the list; the first that exists is
        // enough for one context.
        if let Some(p) = std::env::split_paths(&list).find(|p| p.is_file()) {
            return Ok(Some(p));
        }
    }
    Ok(std::env::var_os("HOME").map(|h| Path::new(&h).join(".kube/config")).filter(|p| p.is_file()))
}

fn err(path: &Path, what: impl fmt::Display) -> FetchError {
    FetchError::Kubeconfig(format!("{}: {what}", path.display()))
}

/// Reads the current context's server and credentials. Exec plugins are
/// run later, by [`Credentials::resolve_exec`], so parsing stays cheap.
pub fn load(path: &Path) -> Result<(Credentials, Option<ExecPlugin>), FetchError> {
    let bytes = std::fs::read(path).map_err(|e| err(path, e))?;
    let file: File = serde_yaml::from_slice(&bytes).map_err(|e| err(path, format!("not a kubeconfig: {e}")))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let ctx = if file.current_context.is_empty() {
        file.contexts.first().ok_or_else(|| err(path, "no contexts"))?
    } else {
        file.contexts
            .iter()
            .find(|c| c.name == file.current_context)
            .ok_or_else(|| err(path, format!("current-context {:?} is not among the contexts", file.current_context)))?
    };
    let cluster = &file
        .clusters
        .iter()
        .find(|c| c.name == ctx.context.cluster)
        .ok_or_else(|| err(path, format!("context {:?} names a missing cluster", ctx.name)))?
        .cluster;
    let user = file.users.iter().find(|u| u.name == ctx.context.user).map(|u| &u.user);
    if cluster.server.is_empty() {
        return Err(err(path, format!("cluster {:?} has no server", ctx.context.cluster)));
    }
    let read = |p: &str, what: &str| {
        let full = dir.join(p);
        std::fs::read(&full).map_err(|e| err(path, format!("{what} {}: {e}", full.display())))
    };
    let b64 = |d: &str, what: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(d.trim())
            .map_err(|e| err(path, format!("{what} is not base64: {e}")))
    };
    let mut c = Credentials {
        path: path.to_path_buf(),
        user: ctx.context.user.clone(),
        server: cluster.server.trim_end_matches('/').to_string(),
        insecure: cluster.insecure_skip_tls_verify,
        tls_server_name: cluster.tls_server_name.clone(),
        ..Default::default()
    };
    c.ca = match (&cluster.certificate_authority_data, &cluster.certificate_authority) {
        (Some(d), _) => Some((b64(d, "certificate-authority-data")?, "certificate-authority-data".into())),
        (None, Some(f)) => Some((read(f, "certificate-authority")?, format!("certificate-authority {f}"))),
        (None, None) => None,
    };
    let mut exec = None;
    if let Some(u) = user {
        let cert = match (&u.client_certificate_data, &u.client_certificate) {
            (Some(d), _) => Some(b64(d, "client-certificate-data")?),
            (None, Some(f)) => Some(read(f, "client-certificate")?),
            _ => None,
        };
        let key = match (&u.client_key_data, &u.client_key) {
            (Some(d), _) => Some(b64(d, "client-key-data")?),
            (None, Some(f)) => Some(read(f, "client-key")?),
            _ => None,
        };
        if let (Some(cert), Some(key)) = (cert, key) {
            c.client_cert = Some((cert, Secret(String::from_utf8_lossy(&key).into_owned())));
        }
        c.token = match (&u.token, &u.token_file) {
            (Some(t), _) if !t.is_empty() => Some(Secret(t.clone())),
            (_, Some(f)) => Some(Secret(String::from_utf8_lossy(&read(f, "tokenFile")?).trim().to_string())),
            _ => None,
        };
        if let (Some(n), Some(p)) = (&u.username, &u.password) {
            c.basic = Some((n.clone(), Secret(p.clone())));
        }
        if let Some(e) = &u.exec {
            exec = Some(ExecPlugin {
                command: e.command.clone(),
                args: e.args.clone(),
                env: e.env.iter().flatten().map(|v| (v.name.clone(), v.value.clone())).collect(),
                api_version: e.api_version.clone().unwrap_or_else(|| "client.authentication.k8s.io/v1".into()),
                dir: dir.to_path_buf(),
            });
        }
    }
    Ok((c, exec))
}

/// An exec credential plugin (`users[].user.exec`).
#[derive(Clone, Debug)]
pub struct ExecPlugin {
    command: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    api_version: String,
    dir: PathBuf,
}

impl ExecPlugin {
    /// Runs the plugin and adds the token or client certificate it prints
    /// (an `ExecCredential`) to `creds`. Blocking: call it off the runtime.
    pub fn run(&self, creds: &mut Credentials) -> Result<(), FetchError> {
        let fail = |what: String| FetchError::Exec(format!("exec plugin {:?}: {what}", self.command));
        // A relative command with a slash is relative to the kubeconfig.
        let cmd = if self.command.contains('/') { self.dir.join(&self.command) } else { PathBuf::from(&self.command) };
        let info = serde_json::json!({
            "apiVersion": self.api_version, "kind": "ExecCredential", "spec": { "interactive": false }
        });
        let out = Command::new(cmd)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("KUBERNETES_EXEC_INFO", info.to_string())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| fail(e.to_string()))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let first = stderr.lines().next().unwrap_or("").chars().take(200).collect::<String>();
            return Err(fail(format!("{}: {first}", out.status)));
        }
        let cred: ExecCredential =
            serde_json::from_slice(&out.stdout).map_err(|e| fail(format!("did not print an ExecCredential: {e}")))?;
        let status = cred.status.ok_or_else(|| fail("its ExecCredential has no status".into()))?;
        if let Some(t) = status.token {
            creds.token = Some(Secret(t));
        }
        if let (Some(cert), Some(key)) = (status.client_certificate_data, status.client_key_data) {
            creds.client_cert = Some((cert.into_bytes(), Secret(key)));
        }
        if creds.token.is_none() && creds.client_cert.is_none() {
            return Err(fail("its ExecCredential has neither a token nor a client certificate".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KC: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://10.0.0.1:6443/\n    certificate-authority: ca.pem\nusers:\n- name: u\n  user:\n    tokenFile: tok\n- name: e\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: ./plugin.sh\n      env:\n      - name: X\n        value: secret-from-exec\ncontexts:\n- name: a\n  context: {cluster: c, user: u}\n- name: b\n  context: {cluster: c, user: e}\ncurrent-context: a\n";

    #[test]
    fn reads_files_relative_to_the_kubeconfig_and_hides_tokens() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "PEM").unwrap();
        std::fs::write(dir.path().join("tok"), "s3cret\n").unwrap();
        std::fs::write(dir.path().join("config"), KC).unwrap();
        let (c, exec) = load(&dir.path().join("config")).unwrap();
        assert_eq!(c.server, "https://10.0.0.1:6443");
        assert_eq!(c.ca.as_ref().unwrap().0, b"PEM");
        assert_eq!(c.token, Some(Secret("s3cret".into())));
        assert!(exec.is_none());
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn runs_exec_plugins() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "PEM").unwrap();
        std::fs::write(dir.path().join("config"), KC.replace("current-context: a", "current-context: b")).unwrap();
        let plugin = dir.path().join("plugin.sh");
        std::fs::write(&plugin, "#!/bin/sh\necho '{\"status\":{\"token\":\"'$X'\"}}'\n").unwrap();
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (mut c, exec) = load(&dir.path().join("config")).unwrap();
        exec.unwrap().run(&mut c).unwrap();
        assert_eq!(c.token, Some(Secret("secret-from-exec".into())));
    }

    #[test]
    fn bad_kubeconfigs_are_one_line_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config");
        for (text, want) in [
            ("{{{", "not a kubeconfig"),
            ("contexts: []\n", "no contexts"),
            (&KC.replace("current-context: a", "current-context: zz") as &str, "current-context"),
            (&KC.replace("certificate-authority: ca.pem", "certificate-authority: nope") as &str, "nope"),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = load(&p).unwrap_err().to_string();
            assert!(e.contains(want) && !e.contains('\n'), "{e}");
        }
        assert!(locate(Some(&dir.path().join("missing"))).is_err());
    }
}
