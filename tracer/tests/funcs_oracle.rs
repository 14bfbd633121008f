//! `ktrace funcs --funcs all` against an independent oracle: Go's own
//! `go tool objdump` listing of the same functions. Entries and every RET
//! offset must agree, for all four build variants of the target.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Command,
};

use testkit::Variant;

/// Per function: entry address and RET offsets from the entry.
type Listing = BTreeMap<String, (u64, BTreeSet<u64>)>;

fn ktrace_funcs(binary: &Path) -> Listing {
    let out = Command::new(env!("CARGO_BIN_EXE_ktrace"))
        .args(["funcs", "--binary", binary.to_str().unwrap(), "--funcs", "all", "--json"])
        .output()
        .expect("run ktrace funcs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("funcs --json is an array");
    v.iter()
        .map(|f| {
            let entry = u64::from_str_radix(f["entry"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
            let rets = f["ret_offsets"].as_array().unwrap().iter().map(|r| r.as_u64().unwrap()).collect();
            (f["symbol"].as_str().unwrap().to_string(), (entry, rets))
        })
        .collect()
}

fn regex_escape(s: &str) -> String {
    s.chars().fold(String::new(), |mut out, c| {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
        out
    })
}

/// Parses `go tool objdump -s` output: a `TEXT name(SB) file` header per
/// function, then one line per instruction with the address in column 2.
fn objdump(binary: &Path, symbols: &[&String]) -> Listing {
    let alternation = symbols.iter().map(|s| regex_escape(s)).collect::<Vec<_>>().join("|");
    let out = Command::new("go")
        .args(["tool", "objdump", "-s", &format!("^({alternation})$")])
        .arg(binary)
        .output()
        .expect("run go tool objdump");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut listing = Listing::new();
    let mut current: Option<String> = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(rest) = line.strip_prefix("TEXT ") {
            current = rest.split("(SB)").next().map(str::to_string);
            continue;
        }
        let (Some(name), mut cols) = (&current, line.split_whitespace()) else { continue };
        let (Some(_pos), Some(addr)) = (cols.next(), cols.next()) else { continue };
        let Ok(addr) = u64::from_str_radix(addr.trim_start_matches("0x"), 16) else { continue };
        let mnemonic = cols.nth(1).unwrap_or_default();
        let entry = listing.entry(name.clone()).or_insert((addr, BTreeSet::new()));
        if mnemonic == "RET" {
            entry.1.insert(addr - entry.0);
        }
    }
    listing
}

fn check(variant: Variant, oracle_binary: Variant) {
    let binary = testkit::target_binary(variant).unwrap();
    let got = ktrace_funcs(&binary);
    // Every storage, authn, authz and admission function the target defines.
    for needle in [
        "etcd3.(*store).Create",
        "withAuthentication.func1",
        "unionAuthzHandler.Authorize",
        "chainAdmissionHandler.Admit",
    ] {
        assert!(got.keys().any(|k| k.ends_with(needle)), "{variant}: `all` lacks {needle}: {:?}", got.keys());
    }
    // objdump needs a symbol table, so the stripped build is checked against
    // the optimized one: same sources and flags, so the same code layout.
    let oracle_path = testkit::target_binary(oracle_binary).unwrap();
    let names: Vec<&String> = got.keys().collect();
    let want = objdump(&oracle_path, &names);
    assert_eq!(got.len(), want.len(), "{variant}: objdump found {:?}", want.keys());
    for (name, (entry, rets)) in &got {
        let (want_entry, want_rets) = &want[name];
        assert_eq!(entry, want_entry, "{variant}: entry of {name}");
        assert_eq!(rets, want_rets, "{variant}: RET offsets of {name}");
    }
    eprintln!("{variant}: {} functions agree with go tool objdump", got.len());
}

#[test]
fn optimized_matches_objdump() {
    check(Variant::Optimized, Variant::Optimized);
}

#[test]
fn debug_matches_objdump() {
    check(Variant::Debug, Variant::Debug);
}

#[test]
fn gopath_matches_objdump() {
    check(Variant::Gopath, Variant::Gopath);
}

#[test]
fn stripped_resolves_through_pclntab_to_the_same_sites() {
    check(Variant::Stripped, Variant::Optimized);
}
