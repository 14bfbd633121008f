//! `cargo xtask demo`: the whole product on the real kube-apiserver v1.36.3
//! (built from the Go module proxy by `build-kube`; `--bundled` uses the
//! apiserver-shaped target instead, which starts in a second). It sets up,
//! builds ktrace and the targets, starts a real etcd and the apiserver on
//! loopback, drives create/get/update/delete traffic as an ordinary RBAC
//! user, and traces the request path while it runs (a live table on a
//! terminal): on kube-apiserver every request from its outermost handler to
//! etcd, on the bundled target the storage, authn, authz and admission
//! presets. It keeps every call and the CPU profile of the same window in a
//! trace file, then renders the merged wall-vs-CPU report and its
//! flamegraphs, and on kube-apiserver the request timeline.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    thread,
};

use anyhow::{Context, Result};
use testkit::{Apiserver, Etcd, KubeApiserver, KubeVariant, LoadReport, LoadSpec, User, Variant};

use crate::{cargo, gotargets, kube, run as exec, setup};

/// What the demo traces on the bundled target.
const FUNCS: &str = "storage,authn,authz,admission";
/// On the real kube-apiserver: the same, plus the request roots (each API
/// request is rebuilt across its goroutines) and the registry.
const KUBE_FUNCS: &str = "request,authn,authz,admission,registry,storage";
const DURATION: &str = "8s";

/// The server the demo traces.
enum Server {
    Kube(KubeApiserver),
    Bundled(Apiserver),
}

impl Server {
    fn pid(&self) -> u32 {
        match self {
            Server::Kube(s) => s.pid(),
            Server::Bundled(s) => s.pid(),
        }
    }
    fn url(&self) -> &str {
        match self {
            Server::Kube(s) => s.url(),
            Server::Bundled(s) => s.url(),
        }
    }
    /// The kubeconfig of the user the load runs as (alice on the real
    /// server, who may read `/debug/pprof/*`).
    fn kubeconfig(&self) -> PathBuf {
        match self {
            Server::Kube(s) => s.kubeconfig(User::Alice),
            Server::Bundled(s) => s.kubeconfig().to_path_buf(),
        }
    }
    fn load(&self, spec: &LoadSpec) -> Result<LoadReport> {
        match self {
            Server::Kube(s) => s.load(spec),
            Server::Bundled(s) => s.load(spec),
        }
    }
}

pub fn run(root: &Path, bundled: bool) -> Result<()> {
    setup::run()?;
    gotargets::build(root)?;
    if !bundled {
        kube::build(root)?;
    }
    eprintln!("demo: building ktrace");
    exec(cargo().current_dir(root).args(["build", "--quiet", "-p", "tracer", "--bin", "ktrace"]))?;
    let ktrace = root.join("target/debug/ktrace");

    let etcd = Etcd::start().context("starting etcd")?;
    let apiserver = Arc::new(if bundled {
        eprintln!("demo: starting etcd and the apiserver-shaped target (optimized build)");
        Server::Bundled(Apiserver::start(Variant::Optimized, &etcd).context("starting the target")?)
    } else {
        eprintln!(
            "demo: starting etcd and the real kube-apiserver {} (release build; /readyz takes 10-30 s)",
            kube::VERSION
        );
        Server::Kube(KubeApiserver::start(KubeVariant::Release, &etcd).context("starting kube-apiserver")?)
    });
    eprintln!("demo: apiserver PID {} serving {}", apiserver.pid(), apiserver.url());

    let stop = Arc::new(AtomicBool::new(false));
    let creates = Arc::new(AtomicU32::new(0));
    let load = {
        let (apiserver, stop, creates) = (Arc::clone(&apiserver), Arc::clone(&stop), Arc::clone(&creates));
        thread::spawn(move || -> Result<()> {
            let mut round = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let spec = LoadSpec {
                    namespace: format!("demo-{round}"),
                    creates: 20,
                    gets: 20,
                    updates: 10,
                    deletes: 10,
                    missing_gets: 2,
                    concurrency: 4,
                };
                let report = apiserver.load(&spec)?;
                creates.fetch_add(report.creates, Ordering::Relaxed);
                round += 1;
            }
            Ok(())
        })
    };

    let out_dir = root.join("target/demo");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let trace = out_dir.join("demo.trace");
    let funcs = if bundled { FUNCS } else { KUBE_FUNCS };
    eprintln!(
        "demo: ktrace attach --pid {} --funcs {funcs} --args --stacks --output {} --duration {DURATION} --no-budget \\\n      --pprof {}/debug/pprof/profile --kubeconfig {}",
        apiserver.pid(),
        trace.display(),
        apiserver.url(),
        apiserver.kubeconfig().display()
    );
    let kubeconfig = apiserver.kubeconfig();
    let traced = exec(Command::new(&ktrace).args([
        "attach",
        "--pid",
        &apiserver.pid().to_string(),
        "--funcs",
        funcs,
        "--args",
        "--stacks",
        "--output",
        trace.to_str().context("non-UTF-8 path")?,
        "--duration",
        DURATION,
        // The report splits every request into phases, which needs every
        // call timed: under the default budget this load would leave most
        // RET probes attached a sixth of the time (docs/requests.md).
        "--no-budget",
        "--pprof",
        &format!("{}/debug/pprof/profile", apiserver.url()),
        "--kubeconfig",
        kubeconfig.to_str().context("non-UTF-8 path")?,
    ]));
    stop.store(true, Ordering::Relaxed);
    let load_result = load.join().map_err(|_| anyhow::anyhow!("the load thread panicked"))?;
    traced?;
    load_result?;
    eprintln!(
        "demo: the load generator issued {} creates in all (it ran a little longer than the trace)",
        creates.load(Ordering::Relaxed)
    );
    let report = out_dir.join("report.html");
    eprintln!("demo: ktrace flame --trace {} --output {}", trace.display(), report.display());
    exec(Command::new(&ktrace).args([
        "flame",
        "--trace",
        trace.to_str().context("non-UTF-8 path")?,
        "--output",
        report.to_str().context("non-UTF-8 path")?,
    ]))?;
    let timeline = out_dir.join("requests.json");
    if !bundled {
        eprintln!("demo: ktrace flame --trace {} --output {}", trace.display(), timeline.display());
        exec(Command::new(&ktrace).args([
            "flame",
            "--trace",
            trace.to_str().context("non-UTF-8 path")?,
            "--output",
            timeline.to_str().context("non-UTF-8 path")?,
        ]))?;
    }
    eprintln!("demo: trace file (every call with its etcd key and caller stack): {}", trace.display());
    eprintln!("demo: merged wall-vs-CPU report (open in a browser): {}", report.display());
    for (what, name) in [
        ("each request as a timeline (ui.perfetto.dev, chrome://tracing)", "requests.json"),
        ("report as JSON", "report.json"),
        ("latency flamegraph", "report-latency.svg"),
        ("CPU flamegraph", "report-cpu.svg"),
    ] {
        let path = out_dir.join(name);
        if path.exists() {
            eprintln!("demo: {what}: {}", path.display());
        }
    }
    Ok(())
}
