//! Resolution on the real kube-apiserver v1.36.3 (Go 1.26.8, `-trimpath
//! -tags=selinux,notest`), in the three cached variants: `debug`
//! (`-gcflags=all=-N -l`), `release`, and `stripped` (`-ldflags=-s -w`).
//!
//! Oracles: `go tool nm` on the release and debug builds. The stripped build
//! has no symbol table; it is checked against the release build's nm after
//! this test proves the two hold the same code (same name, entry and bytes
//! for every selected function: `-s -w` drops tables, not code).
//!
//! The binaries are big and take long to build, so they are built once by
//! the lead's build script into `$HOME/.cache/ktrace/kube-apiserver/`. Under
//! `CI=true` a missing binary fails these tests; elsewhere they say so and
//! return.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::Instant,
};

use tracer::{
    plan::{Target, sites},
    resolve::{Binary, Function},
    spec::{self, Item},
};

use testkit::KubeVariant as Kube;

/// The cached build of `v`, or `None` outside CI when it has not been built.
fn kube(v: Kube) -> Option<PathBuf> {
    match testkit::kube::binary(v) {
        Ok(path) => Some(path),
        Err(e) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{e:#}");
            eprintln!("{e:#}; not checked (CI=true makes this a failure)");
            None
        }
    }
}

/// Every build, or `None` when one is missing outside CI.
fn all_builds() -> Option<BTreeMap<Kube, PathBuf>> {
    Kube::ALL.into_iter().map(|v| kube(v).map(|p| (v, p))).collect()
}

/// `go tool nm` text symbols: name → address.
fn nm(binary: &Path) -> &'static BTreeMap<String, u64> {
    static CACHE: OnceLock<std::sync::Mutex<BTreeMap<PathBuf, &'static BTreeMap<String, u64>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap();
    cache.entry(binary.to_path_buf()).or_insert_with(|| {
        let out = Command::new("go").args(["tool", "nm"]).arg(binary).output().expect("run go tool nm");
        assert!(out.status.success(), "go tool nm: {}", String::from_utf8_lossy(&out.stderr));
        let mut syms = BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut cols = line.trim_start().splitn(3, ' ');
            let (Some(addr), Some(kind), Some(name)) = (cols.next(), cols.next(), cols.next()) else { continue };
            if kind == "T" || kind == "t" {
                syms.insert(name.to_string(), u64::from_str_radix(addr, 16).expect("nm address"));
            }
        }
        Box::leak(Box::new(syms))
    })
}

/// A binary opened once, with its functions.
struct Opened {
    binary: Binary,
    functions: Vec<Function>,
}

fn open(path: &Path) -> Opened {
    let binary = Binary::open(path).unwrap_or_else(|e| panic!("{e}"));
    let functions = binary.functions().unwrap();
    Opened { binary, functions }
}

/// (name, entry) of every out-of-line function `spec` selects.
fn select(o: &Opened, spec: &str) -> BTreeSet<(String, u64)> {
    let items = spec::parse(spec).unwrap();
    let mut out = BTreeSet::new();
    for item in &items {
        let got = spec::select_item(item, &o.functions).unwrap_or_else(|e| panic!("{spec}: {e}"));
        out.extend(got.into_iter().map(|f| (f.name.clone(), f.entry)));
    }
    out
}

const PRESETS: [&str; 7] = ["authn", "authz", "admission", "handlers", "registry", "cacher", "storage"];

const A: &str = "k8s.io/apiserver/pkg/";

/// Functions of kube-apiserver.md sections 2–3, verified present in the
/// release and debug builds with `go tool nm`, that each preset must select
/// (relative to `A` unless they start with another module).
const MUST: &[(&str, &[&str])] = &[
    (
        "authn",
        &[
            "endpoints/filters.withAuthentication.func1",
            "authentication/request/union.(*unionAuthRequestHandler).AuthenticateRequest",
            "authentication/group.(*AuthenticatedGroupAdder).AuthenticateRequest",
            "authentication/request/x509.(*Verifier).AuthenticateRequest",
            "authentication/request/headerrequest.(*requestHeaderAuthRequestHandler).AuthenticateRequest",
            "authentication/request/x509.(*Authenticator).AuthenticateRequest",
            "authentication/request/bearertoken.(*Authenticator).AuthenticateRequest",
            "authentication/request/websocket.(*ProtocolAuthenticator).AuthenticateRequest",
            "authentication/request/anonymous.(*Authenticator).AuthenticateRequest",
            "authentication/token/cache.(*cachedTokenAuthenticator).AuthenticateToken",
            "authentication/token/cache.(*cachedTokenAuthenticator).doAuthenticateToken",
            "authentication/token/cache.(*cachedTokenAuthenticator).doAuthenticateToken.func1",
            "authentication/token/union.(*unionAuthTokenHandler).AuthenticateToken",
            "authentication/authenticator.(*audAgnosticTokenAuthenticator).AuthenticateToken",
            "authentication/token/tokenfile.(*TokenAuthenticator).AuthenticateToken",
            "k8s.io/kubernetes/pkg/serviceaccount.(*jwtTokenAuthenticator[k8s.io/kubernetes/pkg/serviceaccount.privateClaims]).AuthenticateToken",
            "k8s.io/kubernetes/pkg/serviceaccount.(*jwtTokenAuthenticator[k8s.io/kubernetes/pkg/serviceaccount.legacyPrivateClaims]).AuthenticateToken",
            "k8s.io/apiserver/plugin/pkg/authenticator/token/oidc.(*jwtAuthenticator).AuthenticateToken",
        ],
    ),
    (
        "authz",
        &[
            "endpoints/filters.withAuthorization.func1",
            "endpoints/filters.GetAuthorizerAttributes",
            "k8s.io/kubernetes/pkg/kubeapiserver/authorizer.(*reloadableAuthorizerResolver).Authorize",
            "authorization/union.unionAuthzHandler.Authorize",
            "authorization/union.(*unionAuthzHandler).Authorize",
            "authorization/authorizerfactory.(*privilegedGroupAuthorizer).Authorize",
            "authorization/metrics.(*instrumentedAuthorizer).Authorize",
            "k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac.(*RBACAuthorizer).Authorize",
            "k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac.(*authorizingVisitor).visit",
            "k8s.io/kubernetes/pkg/registry/rbac/validation.(*DefaultRuleResolver).VisitRulesFor",
            "k8s.io/kubernetes/plugin/pkg/auth/authorizer/node.(*NodeAuthorizer).Authorize",
            "k8s.io/apiserver/plugin/pkg/authorizer/webhook.(*WebhookAuthorizer).Authorize",
        ],
    ),
    (
        "admission",
        &[
            "endpoints/handlers/fieldmanager.(*managedFieldsValidatingAdmissionController).Admit",
            "admission.(*auditHandler).Admit",
            "admission.(*auditHandler).Validate",
            "admission/metrics.pluginHandlerWithMetrics.Admit",
            "admission/metrics.(*pluginHandlerWithMetrics).Admit",
            "admission/metrics.(*pluginHandlerWithMetrics).Validate",
            "admission.(*reinvoker).Admit",
            "admission.(*reinvoker).Validate",
            "admission.chainAdmissionHandler.Admit",
            "admission.(*chainAdmissionHandler).Admit",
            "admission.chainAdmissionHandler.Validate",
            "admission.(*chainAdmissionHandler).Validate",
            "admission/plugin/namespace/lifecycle.(*Lifecycle).Admit",
            "k8s.io/kubernetes/plugin/pkg/admission/limitranger.(*LimitRanger).Admit",
            "k8s.io/kubernetes/plugin/pkg/admission/limitranger.(*LimitRanger).Validate",
            "k8s.io/kubernetes/plugin/pkg/admission/serviceaccount.(*Plugin).Admit",
            "k8s.io/kubernetes/plugin/pkg/admission/serviceaccount.(*Plugin).Validate",
            "admission/plugin/webhook/mutating.(*Plugin).Admit",
            "admission/plugin/webhook/generic.(*Webhook).Dispatch",
            "admission/plugin/webhook/mutating.(*mutatingDispatcher).Dispatch",
            "admission/plugin/webhook/mutating.(*mutatingDispatcher).callAttrMutatingHook",
            "admission/plugin/webhook/validating.(*Plugin).Validate",
            "admission/plugin/webhook/validating.(*validatingDispatcher).Dispatch",
            "admission/plugin/webhook/validating.(*validatingDispatcher).callHook",
            "admission/plugin/policy/validating.(*Plugin).Validate",
            "admission/plugin/policy/validating.(*dispatcher).Dispatch",
            "admission/plugin/policy/validating.(*validator).Validate",
            "admission/plugin/policy/mutating.(*Plugin).Admit",
            "admission/plugin/resourcequota.(*QuotaAdmission).Validate",
        ],
    ),
    (
        "handlers",
        &[
            "endpoints/handlers.DeleteResource.func1",
            "endpoints/handlers.DeleteCollection.func1",
            "endpoints/handlers.ListResource.func1",
            "endpoints/handlers.UpdateResource.func1",
            "endpoints/handlers.PatchResource.func1",
            "endpoints/handlers.handleList",
            "endpoints/handlers.handleWatch",
            "endpoints/handlers.(*patcher).patchResource",
            "endpoints/handlers/finisher.finishRequest",
            "endpoints/handlers/finisher.finishRequest.func1",
        ],
    ),
    (
        "registry",
        &[
            "registry/generic/registry.(*Store).Create",
            "registry/generic/registry.(*Store).Get",
            "registry/generic/registry.(*Store).Update",
            "registry/generic/registry.(*Store).Delete",
            "registry/generic/registry.(*Store).DeleteCollection",
            "registry/generic/registry.(*Store).List",
            "registry/generic/registry.(*Store).ListPredicate",
            "registry/generic/registry.(*Store).Watch",
            "registry/generic/registry.(*Store).WatchPredicate",
            "registry/generic/registry.(*DryRunnableStorage).Create",
            "registry/generic/registry.(*DryRunnableStorage).GuaranteedUpdate",
        ],
    ),
    (
        "cacher",
        &[
            "storage/cacher.(*Cacher).Get",
            "storage/cacher.(*Cacher).GetList",
            "storage/cacher.(*Cacher).Watch",
            "storage/cacher.(*CacheDelegator).Get",
            "storage/cacher.(*CacheDelegator).GetList",
            "storage/cacher.(*CacheDelegator).Watch",
            "storage/cacher.(*CacheDelegator).Create",
            "storage/cacher.(*CacheDelegator).Delete",
            "storage/cacher.(*CacheDelegator).GuaranteedUpdate",
            "storage/cacher.(*Cacher).processEvent",
            "storage/cacher.(*watchCache).processEvent",
            "storage/cacher.(*watchCache).waitUntilFreshAndList",
        ],
    ),
    (
        "storage",
        &[
            "storage/etcd3.(*store).Create",
            "storage/etcd3.(*store).Get",
            "storage/etcd3.(*store).GetList",
            "storage/etcd3.(*store).getList",
            "storage/etcd3.(*store).GuaranteedUpdate",
            "storage/etcd3.(*store).Delete",
            "storage/etcd3.(*store).conditionalDelete",
            "storage/etcd3.(*store).Watch",
            "storage/etcd3.(*store).Stats",
            "storage/etcd3.(*store).GetCurrentResourceVersion",
            "storage/etcd3.(*watcher).Watch",
            "go.etcd.io/etcd/client/v3/kubernetes.Client.Get",
            "go.etcd.io/etcd/client/v3/kubernetes.(*Client).Get",
            "go.etcd.io/etcd/client/v3/kubernetes.(*Client).OptimisticPut",
            "go.etcd.io/etcd/client/v3/kubernetes.(*Client).OptimisticDelete",
            "go.etcd.io/etcd/client/v3/kubernetes.(*Client).List",
            "go.etcd.io/etcd/client/v3/kubernetes.(*Client).Count",
            "storage/etcd3.(*clientV3KVLatencyTracker).Get",
            "storage/etcd3.(*clientV3TxnTracker).Commit",
            "storage/value/encrypt/identity.(*identityTransformer).TransformFromStorage",
            "storage/value.(*prefixTransformers).TransformFromStorage",
        ],
    ),
];

fn full(name: &str) -> String {
    if name.starts_with("k8s.io/") || name.starts_with("go.etcd.io/") { name.to_string() } else { format!("{A}{name}") }
}

/// Every preset, on every build: each selected function is a text symbol
/// at the same address in `go tool nm` (the release build's for the
/// stripped one, whose code this checks is identical), and the functions
/// the docs name are all there.
#[test]
fn presets_resolve_to_go_tool_nm_entries_on_all_three_builds() {
    let Some(builds) = all_builds() else { return };
    let release = open(&builds[&Kube::Release]);
    for (v, path) in &builds {
        let o = if *v == Kube::Release { None } else { Some(open(path)) };
        let o = o.as_ref().unwrap_or(&release);
        let oracle = nm(if *v == Kube::Stripped { &builds[&Kube::Release] } else { path });
        let mut total = 0;
        for preset in PRESETS {
            let got = select(o, preset);
            assert!(!got.is_empty(), "{}: {preset} selects nothing", v.name());
            for (name, entry) in &got {
                assert_eq!(oracle.get(name), Some(entry), "{}: {preset} selected {name} at {entry:#x}", v.name());
                if *v == Kube::Stripped {
                    let f = o.functions.iter().find(|f| f.entry == *entry).unwrap();
                    let len = f.end - f.entry;
                    assert_eq!(
                        o.binary.text_at(f.entry, len).unwrap(),
                        release.binary.text_at(f.entry, len).unwrap(),
                        "stripped code of {name} differs from the release build's"
                    );
                }
            }
            let names: BTreeSet<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
            let must = MUST.iter().find(|(p, _)| *p == preset).unwrap().1;
            for want in must {
                assert!(
                    names.contains(full(want).as_str()),
                    "{}: {preset} lacks {}; got {names:#?}",
                    v.name(),
                    full(want)
                );
            }
            eprintln!("{}: {preset}: {} functions, all at their nm address", v.name(), got.len());
            total += got.len();
        }
        eprintln!("{}: {total} preset functions", v.name());
    }
}

/// Go 1.21+ names a closure after the functions it was inlined through.
/// Presets and `file.go:Func` find them by enclosing function and file.
#[test]
fn closures_are_found_by_enclosing_function_and_file() {
    let Some(builds) = all_builds() else { return };
    for (v, path) in &builds {
        let o = open(path);
        let handlers = select(&o, "handlers");
        let names: BTreeSet<&str> = handlers.iter().map(|(n, _)| n.as_str()).collect();
        let expected: &[&str] = if *v == Kube::Debug {
            // -l: nothing is inlined, the closures keep their own names.
            &["handlers.createHandler.func1", "handlers.getResourceHandler.func1"]
        } else {
            &[
                "handlers.CreateResource.createHandler.func1",
                "handlers.CreateNamedResource.createHandler.func1",
                "handlers.GetResource.getResourceHandler.func2",
                "handlers.GetResourceWithOptions.getResourceHandler.func2",
            ]
        };
        for want in expected {
            let want = format!("{A}endpoints/{want}");
            assert!(names.contains(want.as_str()), "{}: handlers lacks {want}", v.name());
        }
        if *v != Kube::Debug {
            // Inlined into another module's function, still from create.go.
            let crd = "k8s.io/apiextensions-apiserver/pkg/apiserver.(*crdHandler).serveResource.CreateResource.createHandler.func";
            assert!(names.iter().any(|n| n.starts_with(crd)), "{}: no CRD copy of createHandler's closure", v.name());
            // The finisher closure nested inside is not a request handler.
            assert!(!names.iter().any(|n| n.ends_with(".func1.2")), "{}: {names:?}", v.name());
        }
        // Delve's file.go:Func on a factory Go inlined away takes its closures.
        let delve = select(&o, "staging/src/k8s.io/apiserver/pkg/endpoints/handlers/create.go:createHandler");
        // (-l keeps createHandler itself, which is then what it names.)
        let want = if *v == Kube::Debug { ".createHandler" } else { ".CreateResource.createHandler.func1" };
        assert!(delve.iter().any(|(n, _)| n.ends_with(want)), "{}: {delve:?}", v.name());
        let authz = select(&o, "authz");
        assert!(authz.iter().any(|(n, _)| n == "k8s.io/apiserver/pkg/endpoints/filters.withAuthorization.func1"));
        assert!(!authz.iter().any(|(n, _)| n.ends_with(".func1.1")), "{}: deferred closure selected", v.name());
    }
}

/// Value methods reached through interfaces enter the generated `(*T).M`.
#[test]
fn value_receiver_wrappers_are_selected_with_their_methods() {
    let Some(builds) = all_builds() else { return };
    for (v, path) in &builds {
        let o = open(path);
        for (preset, method) in [
            ("authz", "authorization/union.unionAuthzHandler.Authorize"),
            ("admission", "admission.chainAdmissionHandler.Admit"),
            ("admission", "admission/metrics.pluginHandlerWithMetrics.Validate"),
            ("storage", "storage/value/encrypt/identity.identityTransformer.TransformFromStorage"),
        ] {
            let (pkg, rest) = method.rsplit_once('.').map(|(t, m)| (t.rsplit_once('.').unwrap(), m)).unwrap();
            let wrapper = format!("{A}{}.(*{}).{rest}", pkg.0, pkg.1);
            let got = select(&o, preset);
            let wrapper_fn = o.functions.iter().find(|f| f.name == wrapper);
            let wrapper_fn = wrapper_fn.unwrap_or_else(|| panic!("{}: no {wrapper}", v.name()));
            assert_eq!(wrapper_fn.file.as_deref(), Some("<autogenerated>"), "{}: {wrapper}", v.name());
            assert!(got.contains(&(wrapper.clone(), wrapper_fn.entry)), "{}: {preset} lacks {wrapper}", v.name());
        }
    }
}

/// `pkg.(*T).M` selects the instantiations of a generic method, with the
/// shape types (structs with quoted tags, nested brackets) in their names.
#[test]
fn generic_methods_match_without_their_type_arguments() {
    let Some(builds) = all_builds() else { return };
    for (v, path) in &builds {
        let o = open(path);
        let got = select(&o, "k8s.io/kubernetes/pkg/serviceaccount.(*jwtTokenAuthenticator).AuthenticateToken");
        let shapes = got.iter().filter(|(n, _)| n.contains("[go.shape.struct {")).count();
        assert_eq!(shapes, 2, "{}: the bound and legacy shape bodies: {got:#?}", v.name());
        assert_eq!(got.len(), 4, "{}: two shapes and their two concrete wrappers: {got:#?}", v.name());
        for (name, entry) in &got {
            let oracle = nm(if *v == Kube::Stripped { &builds[&Kube::Release] } else { path });
            assert_eq!(oracle.get(name), Some(entry), "{}: {name}", v.name());
        }
        let dispatch = select(&o, "k8s.io/apiserver/pkg/admission/plugin/policy/generic.(*Plugin).Dispatch");
        assert!(dispatch.iter().filter(|(n, _)| n.contains("[go.shape.struct { Policy *k8s.io/api/")).count() >= 2);
    }
}

/// Module builds record `k8s.io/apiserver@v0.36.3/pkg/…` (release) or
/// `/root/go/pkg/mod/k8s.io/apiserver@v0.36.3/pkg/…` (debug); Delve's forms
/// of the path all work, for functions and for lines.
#[test]
fn delve_locations_match_versioned_module_paths() {
    let Some(builds) = all_builds() else { return };
    let create = "k8s.io/apiserver/pkg/storage/etcd3.(*store).Create";
    for (v, path) in &builds {
        let o = open(path);
        let recorded = o.functions.iter().find(|f| f.name == create).and_then(|f| f.file.clone()).unwrap();
        assert!(recorded.ends_with("k8s.io/apiserver@v0.36.3/pkg/storage/etcd3/store.go"), "{}: {recorded}", v.name());
        for spec in [
            "staging/src/k8s.io/apiserver/pkg/storage/etcd3/store.go:Create",
            "k8s.io/apiserver/pkg/storage/etcd3/store.go:Create",
            "pkg/storage/etcd3/store.go:Create",
            "etcd3/store.go:(*store).Create",
        ] {
            let got = select(&o, spec);
            assert_eq!(got.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), [create], "{}: {spec}", v.name());
        }
        // store.go:274 is (*store).Create's first line; every store.go
        // with code at line 274 gets a probe, etcd3's among them.
        let items = spec::parse("store.go:274").unwrap();
        let plans = sites::plan_items(&o.binary, &o.functions, &items).unwrap_or_else(|e| panic!("{}: {e}", v.name()));
        let in_create = plans.iter().find(|p| p.function.name == create).expect("a site in (*store).Create");
        let Target::Line { file, line } = &in_create.target else { panic!("{:?}", in_create.target) };
        assert!(file.ends_with("k8s.io/apiserver@v0.36.3/pkg/storage/etcd3/store.go") && *line == 274, "{file}:{line}");
        let full_path = sites::plan_items(
            &o.binary,
            &o.functions,
            &spec::parse("staging/src/k8s.io/apiserver/pkg/storage/etcd3/store.go:274").unwrap(),
        )
        .unwrap();
        assert_eq!(full_path.len(), 1, "{}: {full_path:?}", v.name());
        assert_eq!(full_path[0].entry, in_create.entry);
        assert!(matches!(spec::parse("store.go:274").unwrap()[0], Item::FileLine { .. }));
    }
}

fn ktrace(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ktrace")).args(args).output().expect("run ktrace")
}

fn funcs_json(binary: &Path, symbols: Option<&Path>, spec: &str) -> Vec<serde_json::Value> {
    let mut args = vec!["funcs", "--binary", binary.to_str().unwrap(), "--funcs", spec, "--json"];
    if let Some(s) = symbols {
        args.extend(["--symbols", s.to_str().unwrap()]);
    }
    let out = ktrace(&args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("funcs --json is an array")
}

/// `--symbols` gives a stripped build the release build's DWARF types, for
/// the same entries; a file that is not the same code is refused (exit 3).
#[test]
fn symbols_file_gives_stripped_builds_dwarf_arguments() {
    let Some(builds) = all_builds() else { return };
    let (stripped, release, debug) = (&builds[&Kube::Stripped], &builds[&Kube::Release], &builds[&Kube::Debug]);
    let plain = funcs_json(stripped, None, "storage");
    let start = Instant::now();
    let with = funcs_json(stripped, Some(release), "storage");
    eprintln!("funcs --symbols storage: {:.1} s", start.elapsed().as_secs_f64());
    let entries = |docs: &[serde_json::Value]| -> Vec<(String, String)> {
        docs.iter().map(|d| (d["symbol"].as_str().unwrap().into(), d["entry"].as_str().unwrap().into())).collect()
    };
    assert_eq!(entries(&with), entries(&plain));
    assert!(plain.iter().all(|d| d["args"].is_null()), "a stripped build alone has no DWARF");
    assert!(with.iter().all(|d| d["source"] == "pclntab"), "entries still come from the stripped build");
    let create = with.iter().find(|d| d["symbol"] == "k8s.io/apiserver/pkg/storage/etcd3.(*store).Create").unwrap();
    let args = create["args"].as_array().expect("DWARF arguments from --symbols");
    let at = |name: &str| args.iter().find(|a| a["name"] == name).map(|a| a["location"].clone());
    assert_eq!(at("key"), Some(serde_json::json!({ "registers": ["RDI", "RSI"] })), "{args:?}");
    let results: Vec<_> = args.iter().filter(|a| a["is_result"] == true).collect();
    assert_eq!(results.len(), 1, "Create returns one error: {results:?}");
    assert_eq!(results[0]["location"], serde_json::json!({ "registers": ["RAX", "RBX"] }));
    // The same layouts as the release build's own DWARF.
    let own = funcs_json(release, None, "storage");
    for (a, b) in with.iter().zip(&own) {
        assert_eq!(a["args"], b["args"], "{}", a["symbol"]);
    }

    // Not the same code: the debug build (same source, other flags) and a
    // different program (the apiserver-shaped target).
    let other = testkit::target_binary(testkit::Variant::Optimized).expect("the Go test targets are built");
    for wrong in [debug.as_path(), other.as_path()] {
        let out = ktrace(&[
            "funcs",
            "--binary",
            stripped.to_str().unwrap(),
            "--symbols",
            wrong.to_str().unwrap(),
            "--funcs",
            "storage",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{}: {stderr}", wrong.display());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("--symbols") && stderr.contains("not a build of"), "{stderr}");
    }
}

/// `funcs --funcs all` on the biggest build: every preset planned through
/// the CLI, timed (run with `--release --nocapture` for a meaningful figure).
#[test]
fn funcs_all_on_the_debug_build() {
    let Some(debug) = kube(Kube::Debug) else { return };
    let start = Instant::now();
    let docs = funcs_json(&debug, None, "all");
    let took = start.elapsed();
    let size = std::fs::metadata(&debug).unwrap().len();
    eprintln!(
        "funcs --funcs all on {:.0} MB debug kube-apiserver: {} plans in {:.2} s",
        size as f64 / 1e6,
        docs.len(),
        took.as_secs_f64()
    );
    assert!(docs.len() > 100, "{}", docs.len());
    let oracle = nm(&debug);
    for d in &docs {
        let name = d["symbol"].as_str().unwrap();
        let entry = u64::from_str_radix(d["entry"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
        assert_eq!(oracle.get(name), Some(&entry), "{name}");
        assert!(!d["args"].is_null(), "{name}: the debug build has DWARF");
    }
}

/// `attach --symbols` plans with the file's DWARF and places every probe on
/// the stripped build's file for a second, in a stripped kube-apiserver
/// started for it (`--binary`: every process running the file; calls are
/// not checked); a file with other code is refused before any probe is
/// placed. Needs BPF: fails, never skips, without it.
#[test]
fn attach_takes_a_matching_symbols_file_and_refuses_another() {
    let Some(builds) = all_builds() else { return };
    if let Err(missing) = tracer::attach::privileges::check() {
        panic!("this test needs BPF and uprobes: {missing}");
    }
    let (stripped, release, debug) = (&builds[&Kube::Stripped], &builds[&Kube::Release], &builds[&Kube::Debug]);
    let etcd = testkit::Etcd::start().expect("start etcd");
    let server = testkit::KubeApiserver::start(Kube::Stripped, &etcd).unwrap_or_else(|e| panic!("{e:#}"));
    let attach = |symbols: &Path| {
        ktrace(&[
            "attach",
            "--binary",
            stripped.to_str().unwrap(),
            "--symbols",
            symbols.to_str().unwrap(),
            "--funcs",
            "storage",
            "--args",
            "--duration",
            "1s",
            "--json",
        ])
    };
    let out = attach(release);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("attach --json prints a summary");
    let traced: BTreeSet<&str> = summary["functions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["pid"] == server.pid())
        .map(|f| f["symbol"].as_str().unwrap())
        .collect();
    let listed = funcs_json(stripped, None, "storage");
    let listed: BTreeSet<&str> = listed.iter().map(|d| d["symbol"].as_str().unwrap()).collect();
    assert_eq!(traced, listed);

    let out = attach(debug);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("not a build of") && !stderr.contains("probes on"), "{stderr}");
}

/// The builds with DWARF of each Go release this machine builds, with their
/// Go minor version: the release kube-apiserver (go1.26) and the debug
/// bundled target (go1.19); outside CI a missing one is left out.
fn dwarf_builds() -> Vec<(PathBuf, Binary, u32, tracer::resolve::Dwarf)> {
    let mut paths = Vec::new();
    if let Some(p) = kube(Kube::Release) {
        paths.push(p);
    }
    match testkit::target_binary(testkit::Variant::Debug) {
        Ok(p) => paths.push(p),
        Err(e) => assert!(std::env::var("CI").as_deref() != Ok("true"), "{e:#}"),
    }
    paths
        .into_iter()
        .map(|path| {
            let binary = Binary::open(&path).unwrap();
            let minor = binary.build_info().and_then(|b| b.minor_version()).expect("a Go version");
            let dwarf = binary.dwarf().unwrap().expect("DWARF");
            (path, binary, minor, dwarf)
        })
        .collect()
}

/// The table of `runtime.g` offsets that stripped binaries rely on holds
/// what DWARF says, for every Go release this machine builds: 1.26 (the
/// real kube-apiserver) and 1.19 (targets/, Debian's Go).
#[test]
fn goroutine_offsets_table_matches_dwarf() {
    use tracer::plan::goroutine::GOffsets;
    let mut checked = Vec::new();
    for (path, binary, minor, dwarf) in dwarf_builds() {
        let from_dwarf = GOffsets::from_dwarf(&dwarf).expect("runtime.g.goid in DWARF");
        let from_table = GOffsets::from_table(binary.machine(), minor);
        assert_eq!(from_table, Some(from_dwarf), "go1.{minor} ({})", path.display());
        assert_eq!(from_dwarf.parent_goid.is_some(), minor >= 21, "parentGoid exists from Go 1.21");
        checked.push(minor);
    }
    eprintln!("checked Go releases: {checked:?}");
}

/// Every row of the `--capture` field table for stripped builds equals
/// what DWARF says, in the go1.26 kube-apiserver and the go1.19 target.
#[test]
fn field_offsets_table_matches_dwarf() {
    use tracer::plan::fields::{Shape, TABLE, TableField, TypeSource};
    let mut checked = Vec::new();
    for (_, binary, minor, dwarf) in dwarf_builds() {
        let (_, _, structs) =
            TABLE.iter().find(|(m, v, _)| *m == binary.machine() && *v == minor).expect("a row for this release");
        for (name, fields) in *structs {
            let id = dwarf.named(name).unwrap_or_else(|| panic!("go1.{minor}: no {name} in DWARF"));
            let Shape::Struct(members) = dwarf.shape(&id) else { panic!("go1.{minor}: {name} is not a struct") };
            for (field, off, kind) in *fields {
                let (_, at, ty) = members
                    .iter()
                    .find(|(n, ..)| n == field)
                    .unwrap_or_else(|| panic!("go1.{minor}: {name} has no {field}"));
                assert_eq!(at, off, "go1.{minor}: offset of {name}.{field}");
                let shape = dwarf.shape(ty.as_ref().expect("a member type"));
                match kind {
                    TableField::Str => assert_eq!(shape, Shape::String, "go1.{minor}: {name}.{field}"),
                    TableField::Int(n) => assert_eq!(shape, Shape::Int(u64::from(*n)), "go1.{minor}: {name}.{field}"),
                    TableField::Ptr(to) => {
                        let Shape::Pointer(Some(t)) = shape else { panic!("go1.{minor}: {name}.{field} is {shape:?}") };
                        assert_eq!(dwarf.name_of(&t), *to, "go1.{minor}: {name}.{field}");
                    }
                }
                checked.push(format!("go1.{minor} {name}.{field}"));
            }
        }
    }
    eprintln!("checked: {checked:?}");
}

/// Go promotes the fields of embedded fields, and so does `--capture`:
/// `cm.Name` of a `*v1.ConfigMap` is `cm.ObjectMeta.Name` (ObjectMeta is
/// embedded, marked `DW_AT_go_embedded_field` in Go's DWARF).
#[test]
fn promoted_fields_resolve_like_their_full_path() {
    use tracer::plan::{
        abi::{Location, Slot},
        fields::{self, CaptureSpec},
    };
    let Some(path) = kube(Kube::Release) else { return };
    let dwarf = Binary::open(&path).unwrap().dwarf().unwrap().expect("DWARF");
    let slot = Slot {
        name: "cm".into(),
        type_name: "*k8s.io/api/core/v1.ConfigMap".into(),
        is_result: false,
        location: Location::Registers(vec!["RAX"]),
        secret: false,
    };
    let at = |p: &str| {
        let r = fields::resolve(&CaptureSpec::parse(p).unwrap(), "f", std::slice::from_ref(&slot), &dwarf)
            .unwrap_or_else(|e| panic!("{e}"));
        (r[0].hops.clone(), r[0].leaf_off, r[0].leaf)
    };
    assert_eq!(at("cm.Name"), at("cm.ObjectMeta.Name"));
    assert_eq!(at("cm.Namespace"), at("cm.ObjectMeta.Namespace"));
    assert_eq!(at("cm.Kind"), at("cm.TypeMeta.Kind"));
    assert_ne!(at("cm.Name").1, at("cm.Kind").1);
    eprintln!("cm.Name at {:?}, cm.Kind at {:?}", at("cm.Name"), at("cm.Kind"));
}

/// `attach` reads DWARF for its probed functions only
/// (`Binary::dwarf_for`), giving back the units of the others. What it
/// reads must be what the whole read says: every probed function's
/// parameters, `runtime.g`'s goroutine ids, and the types of the
/// `--capture` table for stripped builds; and it must keep less. On the
/// three kube-apiserver builds with DWARF and targets/apiserver built by
/// go1.19 and go1.26.
#[test]
fn dwarf_read_for_the_probed_functions_agrees_with_the_whole_read() {
    use tracer::plan::fields::{TABLE, TypeSource};
    let mut builds: Vec<(String, PathBuf, bool)> = Vec::new();
    for v in [Kube::Debug, Kube::Release] {
        if let Some(p) = kube(v) {
            builds.push((format!("kube-apiserver {v}"), p, true));
        }
    }
    for v in [testkit::Variant::Debug, testkit::Variant::Optimized] {
        match testkit::target_binary(v) {
            Ok(p) => builds.push((format!("targets/apiserver {v}"), p, false)),
            Err(e) => assert!(std::env::var("CI").as_deref() != Ok("true"), "{e:#}"),
        }
    }
    let spec = "storage,authn,authz,admission,handlers";
    for (what, path, big) in &builds {
        let o = open(path);
        let plans = sites::plan_items(&o.binary, &o.functions, &spec::parse(spec).unwrap()).unwrap();
        let mut names: Vec<&str> = plans.iter().map(|p| p.function.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let whole = o.binary.dwarf().unwrap().expect("DWARF");
        let part = o.binary.dwarf_for(&names).unwrap().expect("DWARF");
        let tracer::resolve::SparseRead { kept, all, restored } = part.sparse().expect("a read for a few functions");
        assert!(whole.sparse().is_none());
        let mut described = 0;
        for name in &names {
            assert_eq!(part.params(name), whole.params(name), "{what}: parameters of {name}");
            described += usize::from(whole.params(name).is_some());
        }
        assert!(described * 10 >= names.len() * 9, "{what}: DWARF describes {described} of {} functions", names.len());
        assert_eq!(
            part.struct_member_offset("runtime.g", "goid"),
            whole.struct_member_offset("runtime.g", "goid"),
            "{what}"
        );
        assert!(whole.struct_member_offset("runtime.g", "goid").is_some(), "{what}");
        let minor = o.binary.build_info().and_then(|b| b.minor_version()).expect("a Go version");
        let structs = TABLE.iter().filter(|(m, v, _)| *m == o.binary.machine() && *v == minor).flat_map(|r| r.2.iter());
        for (name, _) in structs {
            let (p, w) = (part.named(name), whole.named(name));
            assert!(w.is_some(), "{what}: no {name}");
            assert_eq!(
                p.map(|id| (part.name_of(&id), part.shape(&id))),
                w.map(|id| (whole.name_of(&id), whole.shape(&id)))
            );
        }
        // The full lists are refused, not silently short.
        assert!(part.functions_checked().is_err(), "{what}");
        assert!(!whole.functions().is_empty(), "{what}");
        eprintln!(
            "{what}: {} functions, {kept} of {all} bytes of .debug_info kept ({:.0} %; {restored} read again)",
            names.len(),
            100.0 * kept as f64 / all as f64
        );
        assert!(kept < all, "{what}: kept every unit");
        if *big {
            assert!(kept * 2 < all, "{what}: kept {kept} of {all} bytes");
        }
    }
    assert!(!builds.is_empty());
}

/// `attach` without a trace file reads only the functions its spec may
/// select (`spec::name_filter`, `Binary::functions_where`). Planning from
/// those must give the plans planning from every function gives, for the
/// presets, the seeds' Delve-style locations, a glob and an exact symbol,
/// on every kube-apiserver build and on targets/apiserver.
#[test]
fn plans_from_the_functions_a_spec_may_select_equal_plans_from_all() {
    let mut paths: Vec<(String, PathBuf)> = Vec::new();
    for v in [Kube::Debug, Kube::Release, Kube::Stripped] {
        paths.extend(kube(v).map(|p| (format!("kube-apiserver {v}"), p)));
    }
    for v in [testkit::Variant::Debug, testkit::Variant::Optimized, testkit::Variant::Gopath] {
        match testkit::target_binary(v) {
            Ok(p) => paths.push((format!("targets/apiserver {v}"), p)),
            Err(e) => assert!(std::env::var("CI").as_deref() != Ok("true"), "{e:#}"),
        }
    }
    let specs = [
        "storage,authn,authz,admission",
        "all",
        "staging/src/k8s.io/apiserver/pkg/endpoints/filters/authentication.go:withAuthentication",
        "k8s.io/apiserver/pkg/storage/etcd3.(*store).*",
        "k8s.io/apiserver/pkg/storage/etcd3.(*store).Get",
        "k8s.io/apiserver/pkg/endpoints/filters/authorization.go:WithAuthorization",
    ];
    for (what, path) in &paths {
        let o = open(path);
        for spec in specs {
            let items = spec::parse(spec).unwrap();
            let Ok(all) = sites::plan_items(&o.binary, &o.functions, &items) else { continue };
            let filter = spec::name_filter(&items).expect("a filter");
            let keep = |name: &str| filter(name) || tracer::plan::runtime_needs(name);
            let some = o.binary.functions_where(Some(&keep)).unwrap();
            if !items.iter().all(|i| spec::select_item(i, &some).is_ok()) {
                // `attach` plans such a spec from every function: only one
                // whose item selects no out-of-line function may be it
                // (its inlined copies are found through their callers).
                assert!(items.iter().any(|i| spec::select_item(i, &o.functions).is_err()), "{what}: {spec}");
                eprintln!("{what}: {spec}: planned from every function (inlined copies)");
                continue;
            }
            let from_some = sites::plan_items(&o.binary, &some, &items).unwrap();
            assert_eq!(from_some, all, "{what}: {spec}");
            // The same functions, with the same files and lines.
            for f in &some {
                assert!(o.functions.contains(f), "{what}: {f:?}");
            }
            assert!(some.len() * 20 < o.functions.len(), "{what}: {spec}: {} of {}", some.len(), o.functions.len());
            eprintln!("{what}: {spec}: {} plans from {} of {} functions", all.len(), some.len(), o.functions.len());
        }
    }
    assert!(!paths.is_empty());
}
