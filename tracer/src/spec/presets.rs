//! The presets: kube-apiserver's request path, function by function, as
//! tabled in docs/go-tracing-notes.md (k8s.io/apiserver tags 1.26–1.33) and
//! docs/kube-apiserver.md (1.34–1.37), each checked with `go tool nm`
//! against a real kube-apiserver v1.36.3 (tests/kube_resolve.rs).
//!
//! Patterns are written without the module prefix: a symbol matches after
//! `k8s.io/kubernetes/vendor/` (GOPATH builds up to 1.29) is stripped. In a
//! pattern, `*` matches any run of characters (except the receiver star
//! right after `(`) and `#` one or more digits. Generic instantiations match
//! their pattern without the brackets. Closures are found by their
//! enclosing function and source file, since inlining renames them.

use super::Pattern;

/// `A/` in the table: the generic apiserver library.
const A: &str = "k8s.io/apiserver/pkg/";
/// `K/` in the table: kube-apiserver's own packages.
const K: &str = "k8s.io/kubernetes/";
/// The apiserver library's plugins (OIDC, the webhook authorizer).
const AP: &str = "k8s.io/apiserver/plugin/pkg/";
/// etcd's Go client.
const ETCD: &str = "go.etcd.io/etcd/client/v3/";

/// One preset entry: a symbol pattern relative to a root, or the closures of
/// a function.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// `A` or `K` root, prepended to `pattern`.
    pub root: &'static str,
    /// Pattern relative to `root` (for [`Kind::Closures`], the enclosing
    /// function, `package.Func`).
    pub pattern: &'static str,
    /// How `pattern` is used.
    pub kind: Kind,
}

/// What an entry's pattern names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Functions whose name matches the pattern.
    Symbol,
    /// A value-receiver method `pkg.T.M`, and the `pkg.(*T).M` wrapper the
    /// compiler generates for it (interface calls enter there, and it may
    /// have inlined `T.M` away).
    ValueMethod,
    /// The closures `funcN` compiled in the function `pkg.F`, under
    /// whatever name inlining gave them (`Caller.F.funcN`, in the caller's
    /// package), confirmed by the source file they come from (relative to
    /// the root); nested closures (`funcN.M`) excluded.
    Closures {
        /// The source file, relative to the root.
        file: &'static str,
    },
}

const fn a(pattern: &'static str) -> Entry {
    Entry { root: A, pattern, kind: Kind::Symbol }
}
const fn k(pattern: &'static str) -> Entry {
    Entry { root: K, pattern, kind: Kind::Symbol }
}
const fn plugin(pattern: &'static str) -> Entry {
    Entry { root: AP, pattern, kind: Kind::Symbol }
}
/// A value method `pkg.T.M` under `root`, with its `(*T).M` wrapper.
const fn v(root: &'static str, pattern: &'static str) -> Entry {
    Entry { root, pattern, kind: Kind::ValueMethod }
}
/// The closures of an apiserver library function, from `file`.
const fn closures(function: &'static str, file: &'static str) -> Entry {
    Entry { root: A, pattern: function, kind: Kind::Closures { file } }
}

const AUTHN: &[Entry] = &[
    closures("endpoints/filters.withAuthentication", "endpoints/filters/authentication.go"),
    a("authentication/request/union.(*unionAuthRequestHandler).AuthenticateRequest"),
    a("authentication/group.(*AuthenticatedGroupAdder).AuthenticateRequest"),
    a("authentication/request/headerrequest.(*requestHeaderAuthRequestHandler).AuthenticateRequest"),
    a("authentication/request/x509.(*Verifier).AuthenticateRequest"),
    a("authentication/request/x509.(*Authenticator).AuthenticateRequest"),
    a("authentication/request/bearertoken.(*Authenticator).AuthenticateRequest"),
    a("authentication/request/websocket.(*ProtocolAuthenticator).AuthenticateRequest"),
    a("authentication/request/anonymous.(*Authenticator).AuthenticateRequest"),
    a("authentication/authenticator.(*audAgnosticRequestAuthenticator).AuthenticateRequest"),
    a("authentication/token/cache.(*cachedTokenAuthenticator).AuthenticateToken"),
    // Cache misses: the real authentication, in a singleflight goroutine.
    a("authentication/token/cache.(*cachedTokenAuthenticator).doAuthenticateToken"),
    closures(
        "authentication/token/cache.(*cachedTokenAuthenticator).doAuthenticateToken",
        "authentication/token/cache/cached_token_authenticator.go",
    ),
    a("authentication/token/union.(*unionAuthTokenHandler).AuthenticateToken"),
    a("authentication/authenticator.(*audAgnosticTokenAuthenticator).AuthenticateToken"),
    a("authentication/token/tokenfile.(*TokenAuthenticator).AuthenticateToken"),
    // Generic from 1.31: every instantiation of
    // `(*jwtTokenAuthenticator[…]).AuthenticateToken`.
    k("pkg/serviceaccount.(*jwtTokenAuthenticator).AuthenticateToken"),
    plugin("authenticator/token/oidc.(*jwtAuthenticator).AuthenticateToken"),
];

const AUTHZ: &[Entry] = &[
    // `WithAuthorization.func1` up to 1.27, `withAuthorization.func1` from 1.28.
    closures("endpoints/filters.WithAuthorization", "endpoints/filters/authorization.go"),
    closures("endpoints/filters.withAuthorization", "endpoints/filters/authorization.go"),
    a("endpoints/filters.GetAuthorizerAttributes"),
    k("pkg/kubeapiserver/authorizer.(*reloadableAuthorizerResolver).Authorize"),
    v(A, "authorization/union.unionAuthzHandler.Authorize"),
    a("authorization/authorizerfactory.(*privilegedGroupAuthorizer).Authorize"),
    a("authorization/metrics.(*instrumentedAuthorizer).Authorize"),
    k("plugin/pkg/auth/authorizer/rbac.(*RBACAuthorizer).Authorize"),
    k("plugin/pkg/auth/authorizer/rbac.(*authorizingVisitor).visit"),
    k("pkg/registry/rbac/validation.(*DefaultRuleResolver).VisitRulesFor"),
    k("plugin/pkg/auth/authorizer/node.(*NodeAuthorizer).Authorize"),
    plugin("authorizer/webhook.(*WebhookAuthorizer).Authorize"),
];

const ADMISSION: &[Entry] = &[
    a("endpoints/handlers/fieldmanager.(*managedFieldsValidatingAdmissionController).Admit"),
    a("admission.(*auditHandler).Admit"),
    a("admission.(*auditHandler).Validate"),
    v(A, "admission/metrics.pluginHandlerWithMetrics.Admit"),
    v(A, "admission/metrics.pluginHandlerWithMetrics.Validate"),
    a("admission.(*reinvoker).Admit"),
    a("admission.(*reinvoker).Validate"),
    v(A, "admission.chainAdmissionHandler.Admit"),
    v(A, "admission.chainAdmissionHandler.Validate"),
    a("admission/plugin/namespace/lifecycle.(*Lifecycle).Admit"),
    k("plugin/pkg/admission/limitranger.(*LimitRanger).Admit"),
    k("plugin/pkg/admission/limitranger.(*LimitRanger).Validate"),
    k("plugin/pkg/admission/serviceaccount.(*Plugin).Admit"),
    k("plugin/pkg/admission/serviceaccount.(*Plugin).Validate"),
    a("admission/plugin/webhook/mutating.(*Plugin).Admit"),
    a("admission/plugin/webhook/generic.(*Webhook).Dispatch"),
    a("admission/plugin/webhook/mutating.(*mutatingDispatcher).Dispatch"),
    a("admission/plugin/webhook/mutating.(*mutatingDispatcher).callAttrMutatingHook"),
    a("admission/plugin/webhook/validating.(*Plugin).Validate"),
    a("admission/plugin/webhook/validating.(*validatingDispatcher).Dispatch"),
    a("admission/plugin/webhook/validating.(*validatingDispatcher).callHook"),
    a("admission/plugin/policy/validating.(*Plugin).Validate"),
    a("admission/plugin/policy/mutating.(*Plugin).Admit"),
    // Generic: every instantiation of `(*Plugin[…]).Dispatch`.
    a("admission/plugin/policy/generic.(*Plugin).Dispatch"),
    a("admission/plugin/policy/validating.(*dispatcher).Dispatch"),
    a("admission/plugin/policy/validating.(*validator).Validate"),
    a("admission/plugin/resourcequota.(*QuotaAdmission).Validate"),
];

const STORAGE: &[Entry] = &[
    a("storage/etcd3.(*store).Create"),
    a("storage/etcd3.(*store).Get"),
    a("storage/etcd3.(*store).GetList"),
    a("storage/etcd3.(*store).getList"),
    a("storage/etcd3.(*store).GuaranteedUpdate"),
    a("storage/etcd3.(*store).Delete"),
    a("storage/etcd3.(*store).conditionalDelete"),
    a("storage/etcd3.(*store).Watch"),
    a("storage/etcd3.(*store).Count"),
    // `Count` becomes `Stats` in 1.34.
    a("storage/etcd3.(*store).Stats"),
    a("storage/etcd3.(*store).GetCurrentResourceVersion"),
    // Each watch request starts here; its event loops are long-lived.
    a("storage/etcd3.(*watcher).Watch"),
    // From 1.32 the store talks to etcd through kubernetes.Client (value
    // receivers, entered through their pointer wrappers)…
    v(ETCD, "kubernetes.Client.Get"),
    v(ETCD, "kubernetes.Client.List"),
    v(ETCD, "kubernetes.Client.Count"),
    v(ETCD, "kubernetes.Client.OptimisticPut"),
    v(ETCD, "kubernetes.Client.OptimisticDelete"),
    // …whose KV is wrapped in the latency tracker.
    a("storage/etcd3.(*clientV3KVLatencyTracker).Get"),
    a("storage/etcd3.(*clientV3KVLatencyTracker).Put"),
    a("storage/etcd3.(*clientV3KVLatencyTracker).Delete"),
    a("storage/etcd3.(*clientV3KVLatencyTracker).Do"),
    a("storage/etcd3.(*clientV3TxnTracker).Commit"),
    v(A, "storage/value/encrypt/identity.identityTransformer.TransformFromStorage"),
    v(A, "storage/value/encrypt/identity.identityTransformer.TransformToStorage"),
    a("storage/value.(*prefixTransformers).TransformFromStorage"),
    a("storage/value.(*prefixTransformers).TransformToStorage"),
];

const REGISTRY: &[Entry] = &[
    a("registry/generic/registry.(*Store).Create"),
    a("registry/generic/registry.(*Store).Get"),
    a("registry/generic/registry.(*Store).Update"),
    a("registry/generic/registry.(*Store).Delete"),
    a("registry/generic/registry.(*Store).DeleteCollection"),
    a("registry/generic/registry.(*Store).List"),
    a("registry/generic/registry.(*Store).ListPredicate"),
    a("registry/generic/registry.(*Store).Watch"),
    a("registry/generic/registry.(*Store).WatchPredicate"),
    a("registry/generic/registry.(*DryRunnableStorage).Create"),
    a("registry/generic/registry.(*DryRunnableStorage).Get"),
    a("registry/generic/registry.(*DryRunnableStorage).GetList"),
    a("registry/generic/registry.(*DryRunnableStorage).GuaranteedUpdate"),
    a("registry/generic/registry.(*DryRunnableStorage).Delete"),
    a("registry/generic/registry.(*DryRunnableStorage).Watch"),
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
    // Feeding the cache from etcd's watch, and serving lists from it.
    a("storage/cacher.(*Cacher).processEvent"),
    a("storage/cacher.(*watchCache).processEvent"),
    a("storage/cacher.(*watchCache).waitUntilFreshAndList"),
];

const HANDLERS: &[Entry] = &[
    // The per-request closures; Go 1.21+ names them after the callers the
    // factories were inlined into (`CreateResource.createHandler.func1`).
    closures("endpoints/handlers.createHandler", "endpoints/handlers/create.go"),
    closures("endpoints/handlers.getResourceHandler", "endpoints/handlers/get.go"),
    closures("endpoints/handlers.ListResource", "endpoints/handlers/get.go"),
    closures("endpoints/handlers.UpdateResource", "endpoints/handlers/update.go"),
    closures("endpoints/handlers.PatchResource", "endpoints/handlers/patch.go"),
    closures("endpoints/handlers.DeleteResource", "endpoints/handlers/delete.go"),
    closures("endpoints/handlers.DeleteCollection", "endpoints/handlers/delete.go"),
    // From 1.36, list and watch are split out of ListResource.
    a("endpoints/handlers.handleList"),
    a("endpoints/handlers.handleWatch"),
    a("endpoints/handlers.(*patcher).patchResource"),
    // Create, update, patch and delete run their storage work (admission,
    // registry, etcd) in a goroutine started here: `finishRequest.func1`.
    a("endpoints/handlers/finisher.finishRequest"),
    closures("endpoints/handlers/finisher.finishRequest", "endpoints/handlers/finisher/finisher.go"),
];

/// The root of every request: the outermost handler of the chain,
/// `(*APIServerHandler).ServeHTTP(w, r)`, which runs on the connection's
/// goroutine (HTTP/1) or the stream's (HTTP/2) and returns when the
/// response is written. Its calls are the request roots; the other
/// entries of [`REQUEST`] only witness the goroutines a request starts.
pub const REQUEST_ROOTS: &[Entry] = &[a("server.(*APIServerHandler).ServeHTTP")];

/// The request roots, and the closures that start or run a request's
/// goroutines: the timeout filter's (authn, authz and the handler run in
/// it) and the finisher's (admission, registry and storage run in it).
/// Their calls carry the goroutine ids (`goid`, `parentGoid`) that tie a
/// goroutine to the one that started it, even when no other traced
/// function runs on the way.
const REQUEST: &[Entry] = &[
    REQUEST_ROOTS[0],
    closures("server/filters.(*timeoutHandler).ServeHTTP", "server/filters/timeout.go"),
    closures("endpoints/handlers/finisher.finishRequest", "endpoints/handlers/finisher/finisher.go"),
];

/// Filters whose per-request closure wraps the rest of the chain: after its
/// own work (authenticating, authorizing) it calls the next handler, so its
/// wall time holds the whole request. Its time belongs to no phase; the
/// work inside it is traced by the phase's other functions.
pub const ENVELOPES: &[Entry] = &[
    closures("endpoints/filters.withAuthentication", "endpoints/filters/authentication.go"),
    closures("endpoints/filters.WithAuthorization", "endpoints/filters/authorization.go"),
    closures("endpoints/filters.withAuthorization", "endpoints/filters/authorization.go"),
];

/// True when one of `entries` selects the function `symbol` (with its
/// source `file`, when known).
pub fn any_matches(entries: &[Entry], symbol: &str, file: Option<&str>) -> bool {
    entries.iter().any(|e| e.compile().matches(symbol, file))
}

/// Every preset name with its entries, in request-path order.
pub const PRESETS: &[(&str, &[Entry])] = &[
    ("request", REQUEST),
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
    /// Prepares the entry for testing many symbols.
    pub fn compile(&self) -> Compiled {
        let mut patterns = vec![Pattern::preset(self.pattern)];
        let mut closure = None;
        match self.kind {
            Kind::Symbol => {}
            Kind::ValueMethod => {
                if let Some((ty, method)) = self.pattern.rsplit_once('.')
                    && let Some((pkg, ty)) = ty.rsplit_once('.')
                {
                    patterns.push(Pattern::preset(&format!("{pkg}.(*{ty}).{method}")));
                }
            }
            Kind::Closures { file } => {
                let tail = self.pattern.len() - analyzer::symbol::without_package_path(self.pattern).len();
                let split = self.pattern[tail..].find('.').map_or(self.pattern.len(), |i| tail + i);
                let (pkg, enclosing) = (&self.pattern[..split], self.pattern[split..].trim_start_matches('.'));
                closure = Some(ClosureOf {
                    package: format!("{}{pkg}.", self.root),
                    enclosing,
                    file: format!("{}{file}", self.root),
                });
                patterns.clear();
            }
        }
        Compiled { root: self.root, patterns, closure }
    }
}

/// An [`Entry`] ready to test symbols.
#[derive(Clone, Debug)]
pub struct Compiled {
    root: &'static str,
    patterns: Vec<Pattern>,
    closure: Option<ClosureOf>,
}

#[derive(Clone, Debug)]
struct ClosureOf {
    /// `k8s.io/apiserver/pkg/endpoints/filters.`: where the closures live
    /// when the enclosing function was not inlined.
    package: String,
    enclosing: &'static str,
    /// `k8s.io/apiserver/pkg/endpoints/filters/authentication.go`.
    file: String,
}

impl Compiled {
    /// True when `symbol` may match with some source file: what
    /// [`Compiled::matches`] says, except that a closure counts wherever
    /// it was inlined. For reading only the candidates of a big binary.
    pub fn may_match(&self, symbol: &str) -> bool {
        match &self.closure {
            Some(c) => {
                let symbol = symbol.strip_prefix(VENDOR_PREFIX).unwrap_or(symbol);
                super::is_closure_of(&super::local_name(symbol), c.enclosing)
            }
            None => self.matches(symbol, None),
        }
    }

    /// True when `symbol` (with or without the vendor prefix) matches. For
    /// closures the source file decides when the binary records it;
    /// without one, only the enclosing function's own package counts.
    pub fn matches(&self, symbol: &str, file: Option<&str>) -> bool {
        let symbol = symbol.strip_prefix(VENDOR_PREFIX).unwrap_or(symbol);
        if let Some(c) = &self.closure {
            let home = match file {
                Some(file) => super::path_suffix(file, &c.file),
                None => symbol.starts_with(&c.package),
            };
            return home && super::is_closure_of(&super::local_name(symbol), c.enclosing);
        }
        let Some(rest) = symbol.strip_prefix(self.root) else { return false };
        self.patterns.iter().any(|p| p.matches(rest))
    }
}
