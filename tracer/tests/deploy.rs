//! deploy/ against the real kube-apiserver v1.36.3 (testkit, on a real
//! etcd): every Kubernetes object of the manifests is sent by the admin
//! user with a server-side dry run (`dryRun=All`, which runs defaulting,
//! validation and admission and persists nothing) and strict field
//! validation (`fieldValidation=Strict`: an unknown or duplicated field is
//! an error, not a dropped field), and must be accepted as written. A
//! misspelled field must be refused, which shows the check can fail. The
//! Prometheus scrape configuration goes through `promtool check config`.
//! These need no BPF, but the real kube-apiserver binary and etcd: missing
//! ones fail the test, never skip it.
//!
//! The DaemonSet's entrypoint itself is run too (root, eBPF): its script, as
//! the manifest has it, in a PID namespace of its own with the bundled
//! target, as the pod would run beside a kube-apiserver.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde::Deserialize;
use serde_json::Value;
use testkit::{Etcd, KubeApiserver, KubeVariant, LoadSpec, User, Variant, target_binary};

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every document of a YAML file, as JSON.
fn objects(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(deploy_dir().join(file)).unwrap_or_else(|e| panic!("deploy/{file}: {e}"));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("deploy/{file}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// The collection an object is created in: `/api/v1/namespaces`,
/// `/apis/apps/v1/namespaces/NS/daemonsets`, …
fn collection(object: &Value) -> String {
    let api = object["apiVersion"].as_str().expect("apiVersion");
    let resource = match object["kind"].as_str().expect("kind") {
        "Namespace" => "namespaces",
        "Service" => "services",
        "DaemonSet" => "daemonsets",
        other => panic!("add the resource name of kind {other} here"),
    };
    let base = if api.contains('/') { format!("/apis/{api}") } else { format!("/api/{api}") };
    match object["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{base}/namespaces/{ns}/{resource}"),
        None => format!("{base}/{resource}"),
    }
}

/// POSTs `object` as the admin, with `query`; the status and the body.
fn create(api: &KubeApiserver, dir: &Path, object: &Value, query: &str) -> (u16, String) {
    let file = dir.join("object.json");
    std::fs::write(&file, serde_json::to_vec(object).unwrap()).unwrap();
    api.request(User::Admin, "POST", &format!("{}{query}", collection(object)), Some(&file))
        .unwrap_or_else(|e| panic!("{e:#}"))
}

const DRY_RUN: &str = "?dryRun=All&fieldValidation=Strict";

/// Dry-runs `object`: it must be accepted (201) and come back as the object
/// the server would store. Returns that object.
fn dry_run(api: &KubeApiserver, dir: &Path, file: &str, object: &Value) -> Value {
    let (status, body) = create(api, dir, object, DRY_RUN);
    assert_eq!(status, 201, "deploy/{file}: {} {}: {body}", object["kind"], object["metadata"]["name"]);
    serde_json::from_str(&body).unwrap()
}

#[test]
fn manifests_pass_a_strict_server_side_dry_run() {
    let etcd = Etcd::start().unwrap_or_else(|e| panic!("{e:#}"));
    let api = KubeApiserver::start(KubeVariant::Release, &etcd).unwrap_or_else(|e| panic!("{e:#}"));
    let dir = tempfile::tempdir().unwrap();

    // Every manifest of deploy/ is either an API object checked here or the
    // scrape configuration checked by promtool below.
    let mut files: Vec<String> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    assert_eq!(files, ["daemonset.yaml", "namespace.yaml", "prometheus-scrape.yaml", "service.yaml"]);

    // A dry run creates nothing, and the namespaced objects need their
    // namespace: dry-run it, then create it for real.
    let namespaces = objects("namespace.yaml");
    assert_eq!(namespaces.len(), 1);
    dry_run(&api, dir.path(), "namespace.yaml", &namespaces[0]);
    let (status, body) = create(&api, dir.path(), &namespaces[0], "?fieldValidation=Strict");
    assert_eq!(status, 201, "{body}");

    let mut kinds = Vec::new();
    for file in ["daemonset.yaml", "service.yaml"] {
        for object in objects(file) {
            let stored = dry_run(&api, dir.path(), file, &object);
            kinds.push(stored["kind"].as_str().unwrap().to_string());
            if stored["kind"] == "DaemonSet" {
                // What the server understood, after defaulting.
                let pod = &stored["spec"]["template"]["spec"];
                assert_eq!(pod["hostPID"], true, "{pod}");
                let security = &pod["containers"][0]["securityContext"];
                assert_eq!(security["privileged"], false, "{security}");
                assert_eq!(security["capabilities"]["add"], serde_json::json!(["BPF", "PERFMON", "SYS_PTRACE"]));
                assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
                let probe = &pod["containers"][0]["readinessProbe"]["httpGet"];
                assert_eq!((probe["path"].as_str(), probe["port"].as_str()), (Some("/metrics"), Some("metrics")));
                let tolerated: Vec<&str> =
                    pod["tolerations"].as_array().unwrap().iter().filter_map(|t| t["key"].as_str()).collect();
                assert!(tolerated.contains(&"node-role.kubernetes.io/control-plane"), "{tolerated:?}");
                let resources = &pod["containers"][0]["resources"];
                assert!(resources["requests"].is_object() && resources["limits"].is_object(), "{resources}");
            }
        }
    }
    assert_eq!(kinds, ["DaemonSet", "Service"]);

    // The check can fail: a misspelled field (hostPid for hostPID) is
    // refused under strict validation, where a plain create would drop it.
    let mut daemonset = objects("daemonset.yaml").remove(0);
    let pod = daemonset["spec"]["template"]["spec"].as_object_mut().unwrap();
    let host_pid = pod.remove("hostPID").unwrap();
    pod.insert("hostPid".into(), host_pid);
    let (status, body) = create(&api, dir.path(), &daemonset, DRY_RUN);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown field") && body.contains("hostPid"), "{body}");
    assert!(api.is_alive());
}

/// `promtool check config` on the scrape configuration: it must pass, and a
/// misspelled key must fail it.
#[test]
fn the_scrape_config_passes_promtool() {
    let check = |path: &Path| {
        let out = Command::new("promtool")
            .args(["check", "config"])
            .arg(path)
            .output()
            .expect("run promtool (Debian package prometheus; `cargo xtask setup` installs it)");
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), said)
    };
    let good = deploy_dir().join("prometheus-scrape.yaml");
    let (ok, said) = check(&good);
    assert!(ok, "promtool check config: {said}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(&good).unwrap();
    assert!(text.contains("scrape_interval:"));
    std::fs::write(&bad, text.replace("scrape_interval:", "scrape_intervall:")).unwrap();
    let (ok, said) = check(&bad);
    assert!(!ok && said.contains("scrape_intervall"), "{said}");
}

/// A child killed (SIGKILL) and reaped on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The DaemonSet's command and script, run as the pod would: in a PID
/// namespace where the only kube-apiserver is the bundled target (so the
/// script's pgrep finds it and no other), with the manifest's environment
/// and `ktrace` on the PATH. /metrics must answer 503 (or not yet listen)
/// until the probes are placed, then 200 with exact call counts.
#[test]
fn the_entrypoint_attaches_and_becomes_ready() {
    common::require_bpf();
    let container = &objects("daemonset.yaml")[0]["spec"]["template"]["spec"]["containers"][0];
    let command: Vec<String> = container["command"]
        .as_array()
        .unwrap()
        .iter()
        .chain(container["args"].as_array().unwrap())
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(command[..2], ["/bin/sh", "-c"], "{command:?}");
    let port = container["ports"][0]["containerPort"].as_u64().unwrap();
    let addr = format!("127.0.0.1:{port}");
    assert!(testkit::http_get(&addr, "/metrics").is_err(), "port {port} is already taken on this host");

    let etcd = Etcd::start().unwrap_or_else(|e| panic!("{e:#}"));
    let target = target_binary(Variant::Optimized).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("target.out");
    let ktrace = PathBuf::from(env!("CARGO_BIN_EXE_ktrace"));
    let path = format!("{}:{}", ktrace.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    // The target in the background, then the manifest's command in its place.
    let wrapper =
        r#""$TARGET" serve --etcd-servers "$ETCD" --bind 127.0.0.1:0 --data-dir "$DATA" >"$OUT" 2>&1 & exec "$@""#;
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--kill-child", "--mount-proc", "--", "/bin/sh", "-c", wrapper, "sh"]).args(&command);
    for e in container["env"].as_array().unwrap() {
        cmd.env(e["name"].as_str().unwrap(), e["value"].as_str().unwrap());
    }
    cmd.env("PATH", path).env("TARGET", &target).env("ETCD", etcd.client_url()).env("DATA", &data).env("OUT", &out);
    let stderr = dir.path().join("entrypoint.err");
    let pod = Killed(
        cmd.stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("run unshare (util-linux)"),
    );

    let log = || std::fs::read_to_string(&stderr).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut not_ready = Vec::new();
    let ready = loop {
        assert!(Instant::now() < deadline, "not ready within 60 s; seen {not_ready:?}; stderr:\n{}", log());
        match testkit::http_get(&addr, "/metrics") {
            Ok((200, _)) => break true,
            Ok((status, _)) => not_ready.push(status),
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(ready);
    eprintln!("before ready: {} answers, all 503: {not_ready:?}", not_ready.len());
    assert!(not_ready.iter().all(|s| *s == 503), "before attach: {not_ready:?}");
    while !std::fs::read_to_string(&out).unwrap_or_default().contains("READY ") {
        assert!(
            Instant::now() < deadline,
            "the target never became ready: {}",
            std::fs::read_to_string(&out).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let spec = LoadSpec {
        namespace: "entrypoint".into(),
        creates: 11,
        gets: 5,
        updates: 0,
        deletes: 2,
        missing_gets: 0,
        concurrency: 2,
    };
    let report = testkit::run_load(&target, &data.join("kubeconfig"), &spec).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(report.errors, 0);
    let (status, body) = testkit::http_get(&addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    let calls = |method: &str| -> u64 {
        let prefix = format!("ktrace_calls_total{{function=\"{}.{method}\"", common::STORE);
        let line = body.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {prefix} in:\n{body}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(calls("Create"), u64::from(spec.creates));
    assert_eq!(calls("Delete"), u64::from(spec.deletes));
    assert!(!body.contains("ktrace_call_duration_seconds_bucket"), "--count-only has no histograms");
    assert!(log().contains("through uprobe_multi links"), "{}", log());
    drop(pod);
}
