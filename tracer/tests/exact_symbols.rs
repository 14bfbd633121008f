//! Issue 9: the `*` of a pointer receiver is not a wildcard. On Debian's
//! etcd (`etcd-server`, installed by `cargo xtask setup`), an exact method
//! selects exactly that method, and a glob inside the receiver selects only
//! the receivers it spells. The etcd binary is required: without it this
//! test fails, it never passes by skipping.

use std::process::Command;

const ETCD: &str = "/usr/bin/etcd";
const PUT: &str = "go.etcd.io/etcd/etcdserver.(*EtcdServer).Put";

/// The symbols `ktrace funcs --json` lists for `spec`.
fn selected(spec: &str) -> Vec<String> {
    assert!(std::path::Path::new(ETCD).is_file(), "{ETCD} missing: install etcd-server (cargo xtask setup)");
    let out = Command::new(env!("CARGO_BIN_EXE_ktrace"))
        .args(["funcs", "--binary", ETCD, "--funcs", spec, "--json"])
        .output()
        .expect("run ktrace funcs");
    assert!(out.status.success(), "{spec}: {}", String::from_utf8_lossy(&out.stderr));
    let docs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("funcs --json is an array");
    docs.iter().map(|d| d["symbol"].as_str().expect("symbol").to_string()).collect()
}

#[test]
fn an_exact_pointer_method_selects_one_function() {
    assert_eq!(selected(PUT), [PUT]);
}

#[test]
fn a_glob_inside_the_receiver_keeps_the_receiver_star_literal() {
    assert_eq!(selected("go.etcd.io/etcd/etcdserver.(*Etcd*).Put"), [PUT]);
    // The receiver the old grammar also took is still there to be globbed.
    let all_puts = selected("go.etcd.io/etcd/etcdserver.(**).Put");
    assert!(all_puts.contains(&"go.etcd.io/etcd/etcdserver.(*reqV2HandlerEtcdServer).Put".to_string()), "{all_puts:?}");
    assert!(all_puts.contains(&PUT.to_string()), "{all_puts:?}");
}

#[test]
fn a_leading_glob_still_globs_the_package() {
    let got = selected("*etcdserver.(*EtcdServer).Put");
    assert_eq!(got, [PUT]);
}
