//! The presets: kube-apiserver's request path, function by function, as
//! tabled in docs/go-tracing-notes.md (verified against k8s.io/apiserver tags
//! 1.26–1.33).
//!
//! Patterns are written without the module prefix: a symbol matches after
//! `k8s.io/kubernetes/vendor/` (GOPATH builds up to 1.29) is stripped. In a
//! pattern, `*` matches any run of characters and `#` one or more digits, so
//! `withAuthentication.func#` takes the per-request closure but not its
//! deferred `func1.1`.

/// `A/` in the table: the generic apiserver library.
const A: &str = "k8s.io/apiserver/pkg/";
/// `K/` in the table: kube-apiserver's own packages.
const K: &str = "k8s.io/kubernetes/";

/// One preset entry: a symbol pattern and, for closures whose generated name
/// could collide, the source file the match must come from.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// `A` or `K` root, prepended to `pattern`.
    pub root: &'static str,
    /// Pattern relative to `root`.
    pub pattern: &'static str,
    /// Required suffix of the source file, when the binary records one.
    pub file: Option<&'static str>,
}

const fn a(pattern: &'static str) -> Entry {
    Entry { root: A, pattern, file: None }
}
const fn k(pattern: &'static str) -> Entry {
    Entry { root: K, pattern, file: None }
}
const fn closure(pattern: &'static str, file: &'static str) -> Entry {
    Entry { root: A, pattern, file: Some(file) }
}

const AUTHN: &[Entry] = &[
    closure("endpoints/filters.withAuthentication.func#", "k8s.io/apiserver/pkg/endpoints/filters/authentication.go"),
    a("authentication/request/union.(*unionAuthRequestHandler).AuthenticateRequest"),
    a("authentication/group.(*AuthenticatedGroupAdder).AuthenticateRequest"),
    a("authentication/request/bearertoken.(*Authenticator).AuthenticateRequest"),
    a("authentication/request/x509.(*Authenticator).AuthenticateRequest"),
    a("authentication/token/cache.(*cachedTokenAuthenticator).AuthenticateToken"),
    // Generic from 1.31: `(*jwtTokenAuthenticator[...]).AuthenticateToken`.
    k("pkg/serviceaccount.(*jwtTokenAuthenticator*).AuthenticateToken"),
];

const AUTHZ: &[Entry] = &[
    // `WithAuthorization.func1` up to 1.27, `withAuthorization.func1` from 1.28.
    closure("endpoints/filters.WithAuthorization.func#", "k8s.io/apiserver/pkg/endpoints/filters/authorization.go"),
    closure("endpoints/filters.withAuthorization.func#", "k8s.io/apiserver/pkg/endpoints/filters/authorization.go"),
    a("endpoints/filters.GetAuthorizerAttributes"),
    a("authorization/union.unionAuthzHandler.Authorize"),
    a("authorization/union.(*unionAuthzHandler).Authorize"),
    k("plugin/pkg/auth/authorizer/rbac.(*RBACAuthorizer).Authorize"),
    k("plugin/pkg/auth/authorizer/node.(*NodeAuthorizer).Authorize"),
    a("authorization/authorizerfactory.(*privilegedGroupAuthorizer).Authorize"),
];

const ADMISSION: &[Entry] = &[
    a("admission.chainAdmissionHandler.Admit"),
    a("admission.chainAdmissionHandler.Validate"),
    a("admission.(*chainAdmissionHandler).Admit"),
    a("admission.(*chainAdmissionHandler).Validate"),
    a("admission/metrics.pluginHandlerWithMetrics.Admit"),
    a("admission/metrics.pluginHandlerWithMetrics.Validate"),
    a("admission/metrics.(*pluginHandlerWithMetrics).Admit"),
    a("admission/metrics.(*pluginHandlerWithMetrics).Validate"),
    a("admission.(*reinvoker).Admit"),
    a("admission.(*reinvoker).Validate"),
    a("admission.(*auditHandler).Admit"),
    a("admission.(*auditHandler).Validate"),
    a("admission/plugin/webhook/generic.(*Webhook).Dispatch"),
    a("admission/plugin/webhook/mutating.(*mutatingDispatcher).Dispatch"),
    a("admission/plugin/webhook/mutating.(*mutatingDispatcher).callAttrMutatingHook"),
    a("admission/plugin/webhook/validating.(*validatingDispatcher).Dispatch"),
    a("admission/plugin/webhook/validating.(*validatingDispatcher).callHook"),
    a("admission/plugin/namespace/lifecycle.(*Lifecycle).Admit"),
    a("admission/plugin/resourcequota.(*QuotaAdmission).Validate"),
    k("plugin/pkg/admission/limitranger.(*LimitRanger).Admit"),
    k("plugin/pkg/admission/limitranger.(*LimitRanger).Validate"),
    k("plugin/pkg/admission/serviceaccount.(*Plugin).Admit"),
    k("plugin/pkg/admission/serviceaccount.(*Plugin).Validate"),
];

const STORAGE: &[Entry] = &[
    a("storage/etcd3.(*store).Create"),
    a("storage/etcd3.(*store).Get"),
    a("storage/etcd3.(*store).GetList"),
    a("storage/etcd3.(*store).GuaranteedUpdate"),
    a("storage/etcd3.(*store).Delete"),
    a("storage/etcd3.(*store).Watch"),
    a("storage/etcd3.(*store).Count"),
    // `Count` becomes `Stats` in 1.34.
    a("storage/etcd3.(*store).Stats"),
];

const REGISTRY: &[Entry] = &[
    a("registry/generic/registry.(*Store).Create"),
    a("registry/generic/registry.(*Store).Get"),
    a("registry/generic/registry.(*Store).Update"),
    a("registry/generic/registry.(*Store).Delete"),
    a("registry/generic/registry.(*Store).List"),
];

const CACHER: &[Entry] = &[
    a("storage/cacher.(*Cacher).Get"),
    a("storage/cacher.(*Cacher).GetList"),
    a("storage/cacher.(*Cacher).Watch"),
    a("storage/cacher.(*CacheDelegator).Get"),
    a("storage/cacher.(*CacheDelegator).GetList"),
    a("storage/cacher.(*CacheDelegator).Watch"),
    a("storage/cacher.(*CacheDelegator).Create"),
    a("storage/cacher.(*CacheDelegator).Delete"),
    a("storage/cacher.(*CacheDelegator).GuaranteedUpdate"),
];

const HANDLERS: &[Entry] = &[
    a("endpoints/handlers.createHandler.func#"),
    a("endpoints/handlers.getResourceHandler.func#"),
    a("endpoints/handlers.ListResource.func#"),
    a("endpoints/handlers.UpdateResource.func#"),
    a("endpoints/handlers.PatchResource.func#"),
    a("endpoints/handlers.DeleteResource.func#"),
];

/// Every preset name with its entries, in request-path order.
pub const PRESETS: &[(&str, &[Entry])] = &[
    ("authn", AUTHN),
    ("authz", AUTHZ),
    ("admission", ADMISSION),
    ("handlers", HANDLERS),
    ("registry", REGISTRY),
    ("cacher", CACHER),
    ("storage", STORAGE),
];

/// The module prefix GOPATH builds (kube-apiserver ≤ 1.29) put on vendored packages.
pub const VENDOR_PREFIX: &str = "k8s.io/kubernetes/vendor/";

/// The entries of a preset name (`all` is every preset), or `None`.
pub fn lookup(name: &str) -> Option<Vec<Entry>> {
    if name == "all" {
        return Some(PRESETS.iter().flat_map(|(_, es)| es.iter().copied()).collect());
    }
    PRESETS.iter().find(|(p, _)| *p == name).map(|(_, es)| es.to_vec())
}

impl Entry {
    /// True when `symbol` (with or without the vendor prefix) matches, and the
    /// source file, if both sides know it, has the required suffix.
    pub fn matches(&self, symbol: &str, file: Option<&str>) -> bool {
        let symbol = symbol.strip_prefix(VENDOR_PREFIX).unwrap_or(symbol);
        let Some(rest) = symbol.strip_prefix(self.root) else { return false };
        if !super::pattern_match(self.pattern, rest) {
            return false;
        }
        match (self.file, file) {
            (Some(want), Some(have)) => have.ends_with(want),
            _ => true,
        }
    }
}
