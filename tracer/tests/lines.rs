//! `file.go:LINE` locations against two independent oracles: Go's own
//! `go tool objdump` (which prints `file.go:LINE` for every instruction)
//! and the DWARF line program. Lines are found in the target's Go source by
//! a marker statement, so edits to the source do not break the test.

use std::{collections::BTreeSet, path::Path, process::Command};

use testkit::Variant;
use tracer::{
    plan::{EntryKind, Target, sites},
    resolve::Binary,
    spec,
};

const STORE: &str = "staging/src/k8s.io/apiserver/pkg/storage/etcd3/store.go";
const ERRORS: &str = "staging/src/k8s.io/apiserver/pkg/storage/errors.go";

/// Line number (1-based) of the only source line of `file` containing `marker`.
fn line_of(file: &str, marker: &str) -> u32 {
    let path = testkit::workspace_root().join("targets/apiserver").join(file);
    let src = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let hits: Vec<usize> = src.lines().enumerate().filter(|(_, l)| l.contains(marker)).map(|(i, _)| i + 1).collect();
    assert_eq!(hits.len(), 1, "marker {marker:?} must occur once in {file}");
    hits[0] as u32
}

fn hex(v: &serde_json::Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// `ktrace funcs --json` for one location: (enclosing symbol, site, kind).
fn ktrace_sites(binary: &Path, location: &str) -> Vec<(String, u64, serde_json::Value)> {
    let out = Command::new(env!("CARGO_BIN_EXE_ktrace"))
        .args(["funcs", "--binary", binary.to_str().unwrap(), "--funcs", location, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{location}: {}", String::from_utf8_lossy(&out.stderr));
    let docs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    docs.iter()
        .map(|d| {
            assert_eq!(hex(&d["entry"]), hex(&d["entry_site"]), "a line's entry is its site");
            assert_eq!(d["ret_offsets"].as_array().unwrap().len(), 0);
            (d["symbol"].as_str().unwrap().to_string(), hex(&d["entry_site"]), d["entry_kind"].clone())
        })
        .collect()
}

/// One instruction of `go tool objdump`: `file.go:LINE`, address, mnemonic, operands.
struct Objdump {
    pos: String,
    addr: u64,
    text: String,
}

fn objdump(binary: &Path, symbol: &str) -> Vec<Objdump> {
    let escaped: String =
        symbol.chars().flat_map(|c| if "\\.+*?()|[]{}^$".contains(c) { vec!['\\', c] } else { vec![c] }).collect();
    let out = Command::new("go")
        .args(["tool", "objdump", "-s", &format!("^{escaped}$")])
        .arg(binary)
        .output()
        .expect("run go tool objdump");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("TEXT "))
        .filter_map(|l| {
            let mut cols = l.split('\t').map(str::trim).filter(|c| !c.is_empty());
            let pos = cols.next()?.to_string();
            let addr = u64::from_str_radix(cols.next()?.trim_start_matches("0x"), 16).ok()?;
            let _bytes = cols.next();
            Some(Objdump { pos, addr, text: cols.collect::<Vec<_>>().join(" ") })
        })
        .collect()
}

/// The oracle's answer: the lowest instruction at `base:line` after the
/// stack-guard branch (the first conditional jump after `CMPQ 0x10(R14)`)
/// and before the morestack block it jumps to, which Go puts at the end.
fn oracle_site(listing: &[Objdump], base: &str, line: u32) -> Option<u64> {
    let want = format!("{base}:{line}");
    let cmp = listing.iter().take(8).position(|i| i.text.contains("0x10(R14)"));
    let (after, before) = match cmp.and_then(|c| listing.get(c + 1)).filter(|j| j.text.starts_with('J')) {
        Some(jcc) => {
            let target = jcc
                .text
                .split_whitespace()
                .nth(1)
                .and_then(|t| u64::from_str_radix(t.trim_start_matches("0x"), 16).ok());
            (jcc.addr + 1, target.unwrap_or(u64::MAX))
        }
        None => (0, u64::MAX),
    };
    listing.iter().filter(|i| i.pos == want && i.addr >= after && i.addr < before).map(|i| i.addr).min()
}

fn check_line(variant: Variant, oracle: Variant, file: &str, marker: &str, min_sites: usize) {
    let line = line_of(file, marker);
    let binary = testkit::target_binary(variant).unwrap();
    let location = format!("{file}:{line}");
    let got = ktrace_sites(&binary, &location);
    assert!(got.len() >= min_sites, "{variant}: {location} gave {got:?}");
    let base = file.rsplit('/').next().unwrap();
    let oracle_binary = testkit::target_binary(oracle).unwrap();
    for (symbol, site, kind) in &got {
        assert_eq!(kind["kind"], "line", "{variant}: {kind}");
        assert_eq!(kind["line"], line, "{variant}: {kind}");
        let listing = objdump(&oracle_binary, symbol);
        assert!(!listing.is_empty(), "{variant}: objdump knows no {symbol}");
        let want = oracle_site(&listing, base, line);
        assert_eq!(Some(*site), want, "{variant}: {location} in {symbol}");
    }
    eprintln!("{variant}: {location}: {} site(s) agree with go tool objdump", got.len());
}

#[test]
fn store_lines_match_objdump_in_every_variant() {
    for (variant, oracle) in [
        (Variant::Optimized, Variant::Optimized),
        (Variant::Debug, Variant::Debug),
        (Variant::Stripped, Variant::Optimized),
        (Variant::Gopath, Variant::Gopath),
    ] {
        check_line(variant, oracle, STORE, "time.Sleep(createDelay)", 1);
        check_line(variant, oracle, STORE, "return decode(resp.Kvs[0].Value, out, resp.Kvs[0].ModRevision)", 1);
    }
}

/// A line of a function that optimization inlines everywhere: its code is
/// in the callers, and every caller gets a site; `-N -l` keeps it out of line.
#[test]
fn an_inlined_line_has_a_site_in_each_caller() {
    let marker = "return &StorageError{Code: ErrCodeInvalidObj";
    check_line(Variant::Optimized, Variant::Optimized, ERRORS, marker, 2);
    check_line(Variant::Stripped, Variant::Optimized, ERRORS, marker, 2);
    check_line(Variant::Debug, Variant::Debug, ERRORS, marker, 1);
}

/// The DWARF line program agrees with the pclntab on every site: the site
/// starts a DWARF row for the same line, and no earlier row of that line
/// lies between the stack guard and it.
#[test]
fn sites_agree_with_the_dwarf_line_program() {
    for variant in [Variant::Optimized, Variant::Debug, Variant::Gopath] {
        let binary = Binary::open(&testkit::target_binary(variant).unwrap()).unwrap();
        let functions = binary.functions().unwrap();
        let dwarf = binary.dwarf().unwrap().expect("this variant has DWARF");
        for (file, marker) in [
            (STORE, "time.Sleep(createDelay)"),
            (STORE, "return decode(resp.Kvs[0].Value"),
            (ERRORS, "return &StorageError{Code: ErrCodeInvalidObj"),
        ] {
            let line = line_of(file, marker);
            let items = spec::parse(&format!("{file}:{line}")).unwrap();
            let plans = sites::plan_items(&binary, &functions, &items).unwrap();
            let suffix = file.strip_prefix("staging/src/").unwrap();
            let rows = dwarf.line_ranges(&mut |f| spec::path_suffix(f, suffix));
            let mut checked = BTreeSet::new();
            for plan in &plans {
                assert_eq!(plan.entry_kind, EntryKind::Body);
                assert!(matches!(&plan.target, Target::Line { line: l, .. } if *l == line));
                let guard = planner_guard(&binary, &functions, &plan.function);
                let first = rows
                    .iter()
                    .filter(|r| r.function == plan.function.entry && r.line == line && r.start > guard)
                    .map(|r| r.start)
                    .min();
                assert_eq!(first, Some(plan.entry.addr), "{variant}: {} per DWARF", plan.label());
                checked.insert(plan.function.entry);
            }
            // And DWARF knows no function with code at the line that the plans miss.
            let dwarf_functions: BTreeSet<u64> = rows.iter().filter(|r| r.line == line).map(|r| r.function).collect();
            assert_eq!(checked, dwarf_functions, "{variant}: functions with code at {file}:{line}");
        }
    }
}

/// Address of the function's stack-guard branch (0 without one).
fn planner_guard(binary: &Binary, functions: &[tracer::resolve::Function], f: &tracer::resolve::Function) -> u64 {
    let plan = tracer::plan::Planner::new(binary, functions).plan(f).unwrap();
    match plan.entry_kind {
        EntryKind::StackGuard { .. } => plan.entry.addr,
        _ => 0,
    }
}

#[test]
fn a_line_without_code_names_the_nearest_lines_with_code() {
    let binary = testkit::target_binary(Variant::Optimized).unwrap();
    // The doc comment above Create has no code; Create's own line has.
    let comment = line_of(STORE, "// Create stores obj only if key does not exist yet.");
    let func = line_of(STORE, "func (s *store) Create(");
    let out = Command::new(env!("CARGO_BIN_EXE_ktrace"))
        .args(["funcs", "--binary", binary.to_str().unwrap(), "--funcs", &format!("{STORE}:{comment}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no code at this line"), "{stderr}");
    assert!(stderr.contains(&func.to_string()), "names line {func}: {stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_ktrace"))
        .args(["funcs", "--binary", binary.to_str().unwrap(), "--funcs", "no/such/file.go:10"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no code in the binary comes from a file ending in"));
}
