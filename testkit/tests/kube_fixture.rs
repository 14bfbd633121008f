//! The real kube-apiserver fixture end to end: it becomes ready on a real
//! etcd, the ordinary user's load lands in etcd under her namespace, RBAC
//! keeps the user without rules out, and `system:masters` bypasses RBAC.
//! Needs `cargo xtask build-kube` and `cargo xtask build-targets`; fails
//! (never skips) without them.

use anyhow::{Result, ensure};
use testkit::{Etcd, KubeApiserver, KubeVariant, LoadSpec, User};

#[test]
fn alice_loads_bob_is_forbidden_admin_bypasses_rbac() -> Result<()> {
    let etcd = Etcd::start()?;
    let api = KubeApiserver::start(KubeVariant::Release, &etcd)?;
    let spec =
        LoadSpec { creates: 4, gets: 3, updates: 2, deletes: 2, missing_gets: 2, concurrency: 2, ..Default::default() };
    let report = api.load(&spec)?;
    ensure!(report.errors == 0, "{report:?}");
    let prefix = format!("/registry/configmaps/{}/", api.namespace());
    let mut stored = etcd.keys_with_prefix(&prefix)?;
    stored.sort();
    let mut kept = report.keys[2..].to_vec();
    kept.sort();
    assert_eq!(stored, kept, "the creates minus the deletes are in etcd");

    let list = format!("/api/v1/namespaces/{}/configmaps", api.namespace());
    assert_eq!(api.probe(User::Bob, "GET", &list, None)?, 403);
    assert_eq!(api.probe(User::Alice, "GET", "/api/v1/namespaces/default/configmaps", None)?, 403);
    assert_eq!(api.probe(User::Admin, "GET", "/api/v1/namespaces/default/configmaps", None)?, 200);
    assert_eq!(api.probe(User::Alice, "GET", "/debug/pprof/", None)?, 200);
    assert_eq!(api.probe(User::Bob, "GET", "/debug/pprof/", None)?, 403);
    assert!(api.is_alive(), "{}", api.log_tail(20));
    Ok(())
}
