//! `cargo xtask demo`: the whole product on the bundled target. It sets up,
//! builds ktrace and the Go target, starts a real etcd and the
//! apiserver-shaped target on loopback, drives create/get/update/delete
//! traffic, and traces the storage, authn, authz and admission presets while
//! it runs (a live table on a terminal), keeping every call in a trace file.

use std::{
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    thread,
};

use anyhow::{Context, Result};
use testkit::{Apiserver, Etcd, LoadSpec, Variant};

use crate::{cargo, gotargets, run as exec, setup};

const FUNCS: &str = "storage,authn,authz,admission";
const DURATION: &str = "8s";

pub fn run(root: &Path) -> Result<()> {
    setup::run()?;
    gotargets::build(root)?;
    eprintln!("demo: building ktrace");
    exec(cargo().current_dir(root).args(["build", "--quiet", "-p", "tracer", "--bin", "ktrace"]))?;
    let ktrace = root.join("target/debug/ktrace");

    eprintln!("demo: starting etcd and the apiserver-shaped target (optimized build)");
    let etcd = Etcd::start().context("starting etcd")?;
    let apiserver = Arc::new(Apiserver::start(Variant::Optimized, &etcd).context("starting the target")?);
    eprintln!("demo: target PID {} serving {}", apiserver.pid(), apiserver.url());

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
    eprintln!(
        "demo: ktrace attach --pid {} --funcs {FUNCS} --args --stacks --output {} --duration {DURATION}",
        apiserver.pid(),
        trace.display()
    );
    let traced = exec(Command::new(&ktrace).args([
        "attach",
        "--pid",
        &apiserver.pid().to_string(),
        "--funcs",
        FUNCS,
        "--args",
        "--stacks",
        "--output",
        trace.to_str().context("non-UTF-8 path")?,
        "--duration",
        DURATION,
    ]));
    stop.store(true, Ordering::Relaxed);
    let load_result = load.join().map_err(|_| anyhow::anyhow!("the load thread panicked"))?;
    traced?;
    load_result?;
    eprintln!(
        "demo: the load generator issued {} creates in all (it ran a little longer than the trace)",
        creates.load(Ordering::Relaxed)
    );
    eprintln!("demo: trace file (every call with its etcd key and caller stack): {}", trace.display());
    Ok(())
}
