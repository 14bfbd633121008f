//! The Delve breakpoint list a user already has (the workflow ktrace
//! replaces) pastes into `--funcs` unchanged. `fixtures/seed-breakpoints.txt`
//! holds those locations, one per line, as users typed them after `(dlv) b`.

use tracer::{
    plan::sites::{self, ItemsError},
    resolve::Binary,
    spec::{self, Item, SpecError},
};

const LOCATIONS: &str = include_str!("fixtures/seed-breakpoints.txt");

/// Locations whose functions the apiserver-shaped target defines.
const IN_TARGET: &[&str] = &[
    "plugin/pkg/admission/limitranger/admission.go:Validate",
    "plugin/pkg/auth/authorizer/rbac/rbac.go:Authorize",
    "staging/src/k8s.io/apiserver/pkg/authentication/request/bearertoken/bearertoken.go:AuthenticateRequest",
    "staging/src/k8s.io/apiserver/pkg/authentication/request/union/union.go:AuthenticateRequest",
    "staging/src/k8s.io/apiserver/pkg/authentication/request/x509/x509.go:AuthenticateRequest",
    "staging/src/k8s.io/apiserver/pkg/authorization/union/union.go:Authorize",
    "staging/src/k8s.io/apiserver/pkg/endpoints/filters/authentication.go:withAuthentication",
    "staging/src/k8s.io/apiserver/pkg/endpoints/filters/authorization.go:withAuthorization",
    "staging/src/k8s.io/apiserver/pkg/endpoints/filters/requestinfo.go:WithRequestInfo",
    "staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go:Create",
    "staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go:Delete",
    "staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go:Get",
    "staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go:Update",
    "staging/src/k8s.io/apiserver/pkg/storage/etcd3/store.go:Create",
    "staging/src/k8s.io/apiserver/pkg/storage/etcd3/store.go:Delete",
    "staging/src/k8s.io/apiserver/pkg/storage/etcd3/store.go:Get",
    "staging/src/k8s.io/apiserver/pkg/storage/etcd3/store.go:GuaranteedUpdate",
];

#[test]
fn every_seed_location_parses_as_a_location() {
    let lines: Vec<&str> = LOCATIONS.lines().filter(|l| !l.is_empty()).collect();
    assert!(lines.len() >= 30, "fixture unexpectedly short");
    for line in lines {
        let items = spec::parse(line).unwrap();
        assert_eq!(items.len(), 1, "{line}");
        assert!(matches!(items[0], Item::FileFunc { .. } | Item::FileLine { .. }), "{line} parsed as {:?}", items[0]);
    }
}

#[test]
fn seed_locations_in_the_target_resolve_in_every_variant() {
    for variant in [testkit::Variant::Optimized, testkit::Variant::Debug, testkit::Variant::Gopath] {
        let binary = Binary::open(&testkit::target_binary(variant).unwrap()).unwrap();
        let functions = binary.functions().unwrap();
        for line in LOCATIONS.lines().filter(|l| !l.is_empty()) {
            let result = sites::plan_items(&binary, &functions, &spec::parse(line).unwrap());
            if IN_TARGET.contains(&line) {
                let got = result.unwrap_or_else(|e| panic!("{variant}: {line}: {e}"));
                assert!(!got.is_empty(), "{variant}: {line}");
            } else if let Err(err) = result {
                // Functions or files the target lacks, or that optimization
                // inlined away in this variant (`-N -l` keeps more), and
                // lines without code, fail with why.
                assert!(
                    matches!(
                        err,
                        ItemsError::Spec(
                            SpecError::NoMatch { .. } | SpecError::NoSuchFile { .. } | SpecError::LineHasNoCode { .. }
                        )
                    ),
                    "{line}: {err}"
                );
            }
        }
    }
}
