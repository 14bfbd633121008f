use super::*;
use crate::resolve::Source;

fn f(name: &str, entry: u64) -> Function {
    Function { name: name.into(), entry, end: entry + 1, file: None, line: None, source: Source::Symtab }
}

fn ff(name: &str, entry: u64, file: &str) -> Function {
    Function { file: Some(file.into()), ..f(name, entry) }
}

#[test]
fn globs_treat_go_punctuation_literally() {
    let create = "k8s.io/apiserver/pkg/storage/etcd3.(*store).Create";
    assert!(pattern_match(create, create));
    assert!(pattern_match("*etcd3.(*store).*", create));
    assert!(pattern_match("k8s.io/*/etcd3.(*store).Create", create));
    assert!(!pattern_match("*etcd3.(*store).Get", create));
    assert!(!pattern_match("k8s.io/apiserver", create));
    assert!(pattern_match("a*a", "aa"));
    assert!(!pattern_match("a*a", "a"));
    assert!(pattern_match("", ""));
    assert!(!pattern_match("", "x"));
}

#[test]
fn hash_matches_digits_only() {
    assert!(pattern_match("f.func#", "f.func1"));
    assert!(pattern_match("f.func#", "f.func12"));
    assert!(!pattern_match("f.func#", "f.func"));
    assert!(!pattern_match("f.func#", "f.func1.1"));
    assert!(!pattern_match("f.func#", "f.funcx"));
}

#[test]
fn pathological_globs_stay_fast() {
    let name = "a".repeat(5000);
    let pattern = format!("{}b", "*a".repeat(200));
    assert!(!pattern_match(&pattern, &name));
}

#[test]
fn select_dedups_and_keeps_order() {
    let fs = [f("p.A", 1), f("p.B", 2), f("q.A", 3)];
    let items = parse("p.B, *.A,p.A").unwrap();
    let got: Vec<u64> = select(&items, &fs).unwrap().iter().map(|f| f.entry).collect();
    assert_eq!(got, vec![2, 1, 3]);
}

#[test]
fn no_match_names_the_closest() {
    let fs = [f("etcd3.(*store).Create", 1), f("etcd3.(*store).Get", 2), f("main.main", 3)];
    let err = select(&parse("etcd3.(*store).Creat").unwrap(), &fs).unwrap_err();
    let SpecError::NoMatch { closest, .. } = &err else { panic!("{err:?}") };
    assert_eq!(closest[0], "etcd3.(*store).Create");
    assert!(err.to_string().contains("closest: etcd3.(*store).Create"));
}

#[test]
fn empty_spec_is_an_error() {
    assert_eq!(parse(" , ,"), Err(SpecError::Empty));
}

#[test]
fn presets_match_both_prefixes_and_value_receiver_wrappers() {
    let fs = [
        f("k8s.io/apiserver/pkg/storage/etcd3.(*store).Create", 1),
        f("k8s.io/kubernetes/vendor/k8s.io/apiserver/pkg/storage/etcd3.(*store).Get", 2),
        f("k8s.io/apiserver/pkg/storage/etcd3.(*store).Create.func1", 3),
        f("k8s.io/apiserver/pkg/authorization/union.unionAuthzHandler.Authorize", 4),
        f("k8s.io/apiserver/pkg/authorization/union.(*unionAuthzHandler).Authorize", 5),
        f("k8s.io/kubernetes/pkg/serviceaccount.(*jwtTokenAuthenticator[go.shape.struct {}]).AuthenticateToken", 6),
    ];
    let storage: Vec<u64> = select(&parse("storage").unwrap(), &fs).unwrap().iter().map(|f| f.entry).collect();
    assert_eq!(storage, vec![1, 2]);
    let authz: Vec<u64> = select(&parse("authz").unwrap(), &fs).unwrap().iter().map(|f| f.entry).collect();
    assert_eq!(authz, vec![4, 5]);
    let authn: Vec<u64> = select(&parse("authn").unwrap(), &fs).unwrap().iter().map(|f| f.entry).collect();
    assert_eq!(authn, vec![6]);
}

#[test]
fn preset_closures_are_confirmed_by_source_file() {
    let fs = [
        ff(
            "k8s.io/apiserver/pkg/endpoints/filters.withAuthentication.func1",
            1,
            "/src/staging/src/k8s.io/apiserver/pkg/endpoints/filters/authentication.go",
        ),
        ff(
            "k8s.io/apiserver/pkg/endpoints/filters.withAuthentication.func1.1",
            2,
            "/src/staging/src/k8s.io/apiserver/pkg/endpoints/filters/authentication.go",
        ),
        ff("k8s.io/apiserver/pkg/endpoints/filters.withAuthentication.func2", 3, "/elsewhere/other.go"),
    ];
    let got: Vec<u64> = select(&parse("authn").unwrap(), &fs).unwrap().iter().map(|f| f.entry).collect();
    assert_eq!(got, vec![1]);
}

#[test]
fn unknown_preset_like_word_is_a_symbol() {
    assert_eq!(parse("storagex").unwrap(), vec![Item::Symbol("storagex".into())]);
    assert_eq!(parse("all").unwrap(), vec![Item::Preset("all".into())]);
}

#[test]
fn delve_locations_parse() {
    assert_eq!(
        parse("staging/src/k8s.io/apiserver/pkg/storage/etcd3/store.go:Create").unwrap(),
        vec![Item::FileFunc { file: "k8s.io/apiserver/pkg/storage/etcd3/store.go".into(), func: "Create".into() }]
    );
    assert_eq!(
        parse("staging/src/k8s.io/apiserver/pkg/endpoints/filters/authentication.go:56").unwrap(),
        vec![Item::FileLine { file: "k8s.io/apiserver/pkg/endpoints/filters/authentication.go".into(), line: 56 }]
    );
    assert_eq!(
        parse("plugin/pkg/auth/authorizer/rbac/rbac.go:Authorize").unwrap(),
        vec![Item::FileFunc { file: "plugin/pkg/auth/authorizer/rbac/rbac.go".into(), func: "Authorize".into() }]
    );
}

#[test]
fn delve_locations_match_by_path_suffix_and_method_name() {
    let store = "/w/targets/apiserver/staging/src/k8s.io/apiserver/pkg/storage/etcd3/store.go";
    let fs = [
        ff("k8s.io/apiserver/pkg/storage/etcd3.(*store).Create", 1, store),
        ff("k8s.io/apiserver/pkg/storage/etcd3.(*store).Get", 2, store),
        ff("k8s.io/apiserver/pkg/registry/generic/registry.(*Store).Create", 3, "/w/x/registry/store.go"),
        ff("k8s.io/apiserver/pkg/storage/etcd3.(*store).Create", 4, "/w/notstore.go"),
    ];
    let items = parse("staging/src/k8s.io/apiserver/pkg/storage/etcd3/store.go:Create").unwrap();
    let got: Vec<u64> = select(&items, &fs).unwrap().iter().map(|f| f.entry).collect();
    assert_eq!(got, vec![1]);
    let items = parse("etcd3/store.go:(*store).Get").unwrap();
    let got: Vec<u64> = select(&items, &fs).unwrap().iter().map(|f| f.entry).collect();
    assert_eq!(got, vec![2]);
}

#[test]
fn inlined_factory_falls_back_to_its_closures() {
    let file = "/w/staging/src/k8s.io/apiserver/pkg/endpoints/filters/authentication.go";
    let fs = [
        ff("k8s.io/apiserver/pkg/endpoints/filters.withAuthentication.func1", 1, file),
        ff("k8s.io/apiserver/pkg/endpoints/filters.withAuthentication.func1.1", 2, file),
    ];
    let items =
        parse("staging/src/k8s.io/apiserver/pkg/endpoints/filters/authentication.go:withAuthentication").unwrap();
    let got: Vec<u64> = select(&items, &fs).unwrap().iter().map(|f| f.entry).collect();
    assert_eq!(got, vec![1]);
}

#[test]
fn line_locations_report_unsupported() {
    let fs = [f("main.main", 1)];
    let err = select(&parse("main.go:12").unwrap(), &fs).unwrap_err();
    assert!(matches!(err, SpecError::LineUnsupported(_)), "{err}");
}

#[test]
fn edit_distance_basics() {
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("same", "same"), 0);
}
