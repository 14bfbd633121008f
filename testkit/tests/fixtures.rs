//! End-to-end checks of the fixtures against a real etcd and the built Go
//! target. They need `cargo xtask build-targets` and an `etcd` binary, and
//! fail (never skip) without them.

use std::path::Path;

use anyhow::{Result, ensure};
use testkit::{Apiserver, Etcd, LoadSpec, Variant};

#[test]
fn load_counts_and_keys_land_in_etcd() -> Result<()> {
    let etcd = Etcd::start()?;
    let api = Apiserver::start(Variant::Optimized, &etcd)?;
    let spec = LoadSpec {
        namespace: "testkit-load".into(),
        creates: 5,
        gets: 3,
        updates: 2,
        deletes: 1,
        missing_gets: 2,
        concurrency: 2,
    };
    let report = api.load(&spec)?;
    assert_eq!(
        (report.creates, report.gets, report.updates, report.deletes, report.missing_gets, report.errors),
        (5, 3, 2, 1, 2, 0)
    );
    assert_eq!(report.keys.len(), 5);
    for key in &report.keys {
        assert!(key.starts_with("/registry/configmaps/testkit-load/"), "{key}");
    }
    // The load deletes the first created key and keeps the rest.
    let mut stored = etcd.keys_with_prefix("/registry/configmaps/testkit-load/")?;
    stored.sort();
    let mut expected = report.keys[1..].to_vec();
    expected.sort();
    assert_eq!(stored, expected);
    assert!(api.is_alive(), "server died: {}", api.stderr_tail(20));
    Ok(())
}

#[test]
fn every_path_needs_the_token() -> Result<()> {
    let etcd = Etcd::start()?;
    let api = Apiserver::start(Variant::Optimized, &etcd)?;
    assert_eq!(api.probe("GET", "/debug/pprof/", true)?, 200);
    assert_eq!(api.probe("GET", "/debug/pprof/", false)?, 401);
    assert_eq!(api.probe("GET", "/debug/pprof/heap", false)?, 401);
    assert_eq!(api.probe("GET", "/api/v1/namespaces/default/configmaps", false)?, 401);
    assert_eq!(api.probe("GET", "/api/v1/namespaces/default/configmaps/nope", true)?, 404);
    assert_eq!(api.probe("POST", "/ktrace/recurse?depth=500", true)?, 200);
    assert_eq!(api.probe("POST", "/ktrace/recurse?depth=0", true)?, 400);

    ensure!(api.url().starts_with("https://127.0.0.1:"), "url {}", api.url());
    let token = api.token()?;
    ensure!(token.len() == 64, "token {token:?}");
    let kubeconfig = std::fs::read_to_string(api.kubeconfig())?;
    ensure!(kubeconfig.contains(&format!("server: {}", api.url())));
    ensure!(kubeconfig.contains(&format!("token: {token}")));
    ensure!(std::fs::read_to_string(api.ca_cert())?.starts_with("-----BEGIN CERTIFICATE-----"));
    Ok(())
}

#[test]
fn every_variant_serves_and_stops() -> Result<()> {
    let etcd = Etcd::start()?;
    for v in Variant::ALL {
        let api = Apiserver::start(v, &etcd)?;
        let spec = LoadSpec {
            namespace: format!("variant-{v}"),
            creates: 2,
            gets: 1,
            updates: 1,
            deletes: 1,
            missing_gets: 1,
            ..LoadSpec::default()
        };
        let report = api.load(&spec)?;
        assert_eq!(report.errors, 0, "{v}");
        assert_eq!(etcd.keys_with_prefix(&format!("/registry/configmaps/variant-{v}/"))?.len(), 1, "{v}");
        let pid = api.pid();
        drop(api);
        // Dropped means terminated and reaped: not even a zombie is left.
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "{v}: pid {pid} still exists");
    }
    Ok(())
}
