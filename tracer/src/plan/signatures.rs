//! Argument layouts for stripped binaries. Release kube-apiservers carry no
//! DWARF, so nothing in the binary says where a function's arguments are.
//! For the preset functions whose signatures have not changed across
//! kube-apiserver 1.26–1.33 (shared/docs/go-tracing-notes.md), this table
//! gives the leading arguments ktrace captures and the results, already
//! placed by the amd64 register ABI. Only what the table states is
//! returned: arguments after the last listed one are left out, never
//! guessed.

use super::abi::{Location, Slot};

/// Leading parameters (name, Go type, registers) and results of one method.
struct Signature {
    /// Symbol suffix after the package path prefix (`k8s.io/apiserver/pkg/`,
    /// optionally vendored).
    suffix: &'static str,
    params: &'static [(&'static str, &'static str, &'static [&'static str])],
    results: &'static [(&'static str, &'static str, &'static [&'static str])],
    /// Parameters that hold credentials: `attach` never copies their bytes.
    secrets: &'static [&'static str],
}

/// `(s *store, ctx context.Context, key string, …) error`: the receiver
/// takes RAX, ctx RBX:RCX, key RDI:RSI; the error result starts again at RAX.
const STORE_PARAMS: &[(&str, &str, &[&str])] =
    &[("s", "*etcd3.store", &["RAX"]), ("ctx", "context.Context", &["RBX", "RCX"]), ("key", "string", &["RDI", "RSI"])];
const ERROR_ONLY: &[(&str, &str, &[&str])] = &[("~r0", "error", &["RAX", "RBX"])];
/// `(*authenticator.Response, bool, error)`: RAX, RBX, then RCX:RDI.
const AUTHN_RESULTS: &[(&str, &str, &[&str])] =
    &[("~r0", "*authenticator.Response", &["RAX"]), ("~r1", "bool", &["RBX"]), ("~r2", "error", &["RCX", "RDI"])];

const TABLE: &[Signature] = &[
    Signature { suffix: "storage/etcd3.(*store).Create", params: STORE_PARAMS, results: ERROR_ONLY, secrets: &[] },
    Signature { suffix: "storage/etcd3.(*store).Get", params: STORE_PARAMS, results: ERROR_ONLY, secrets: &[] },
    Signature { suffix: "storage/etcd3.(*store).GetList", params: STORE_PARAMS, results: ERROR_ONLY, secrets: &[] },
    Signature {
        suffix: "storage/etcd3.(*store).GuaranteedUpdate",
        params: STORE_PARAMS,
        results: ERROR_ONLY,
        secrets: &[],
    },
    Signature { suffix: "storage/etcd3.(*store).Delete", params: STORE_PARAMS, results: ERROR_ONLY, secrets: &[] },
    Signature {
        suffix: "authentication/token/cache.(*cachedTokenAuthenticator).AuthenticateToken",
        params: &[
            ("a", "*cache.cachedTokenAuthenticator", &["RAX"]),
            ("ctx", "context.Context", &["RBX", "RCX"]),
            ("token", "string", &["RDI", "RSI"]),
        ],
        results: AUTHN_RESULTS,
        secrets: &["token"],
    },
    Signature {
        suffix: "authentication/token/tokenfile.(*TokenAuthenticator).AuthenticateToken",
        params: &[
            ("a", "*tokenfile.TokenAuthenticator", &["RAX"]),
            ("ctx", "context.Context", &["RBX", "RCX"]),
            ("value", "string", &["RDI", "RSI"]),
        ],
        results: AUTHN_RESULTS,
        secrets: &["value"],
    },
    Signature {
        suffix: "authentication/request/bearertoken.(*Authenticator).AuthenticateRequest",
        params: &[("a", "*bearertoken.Authenticator", &["RAX"]), ("req", "*http.Request", &["RBX"])],
        results: AUTHN_RESULTS,
        secrets: &[],
    },
    Signature {
        suffix: "authentication/request/union.(*unionAuthRequestHandler).AuthenticateRequest",
        params: &[("authHandler", "*union.unionAuthRequestHandler", &["RAX"]), ("req", "*http.Request", &["RBX"])],
        results: AUTHN_RESULTS,
        secrets: &[],
    },
];

const PREFIXES: [&str; 2] = ["k8s.io/apiserver/pkg/", "k8s.io/kubernetes/vendor/k8s.io/apiserver/pkg/"];

/// The known layout of `symbol`, if the table has it.
pub fn known(symbol: &str) -> Option<Vec<Slot>> {
    let local = PREFIXES.iter().find_map(|p| symbol.strip_prefix(p))?;
    let sig = TABLE.iter().find(|s| s.suffix == local)?;
    let slot = |is_result: bool| {
        move |&(name, ty, regs): &(&str, &str, &'static [&'static str])| Slot {
            name: name.into(),
            type_name: ty.into(),
            is_result,
            location: Location::Registers(regs.to_vec()),
            secret: !is_result && sig.secrets.contains(&name),
        }
    };
    Some(sig.params.iter().map(slot(false)).chain(sig.results.iter().map(slot(true))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_methods_have_key_and_error() {
        for prefix in PREFIXES {
            let slots = known(&format!("{prefix}storage/etcd3.(*store).Get")).unwrap();
            let key = slots.iter().find(|s| s.name == "key").unwrap();
            assert_eq!(key.location, Location::Registers(vec!["RDI", "RSI"]));
            let err = slots.iter().rfind(|s| s.is_result).unwrap();
            assert_eq!((err.type_name.as_str(), &err.location), ("error", &Location::Registers(vec!["RAX", "RBX"])));
        }
    }

    /// The token parameters are marked, so a stripped build redacts them too;
    /// the etcd key is not.
    #[test]
    fn token_parameters_are_secret() {
        let secret = |symbol: &str| -> Vec<String> {
            known(symbol).unwrap().into_iter().filter(|s| s.secret).map(|s| s.name).collect()
        };
        let a = "k8s.io/apiserver/pkg/authentication/token/";
        assert_eq!(secret(&format!("{a}cache.(*cachedTokenAuthenticator).AuthenticateToken")), ["token"]);
        assert_eq!(secret(&format!("{a}tokenfile.(*TokenAuthenticator).AuthenticateToken")), ["value"]);
        assert!(secret("k8s.io/apiserver/pkg/storage/etcd3.(*store).Create").is_empty());
        for sig in TABLE {
            for name in sig.secrets {
                assert!(sig.params.iter().any(|p| p.0 == *name && p.1 == "string"), "{}: {name}", sig.suffix);
            }
        }
    }

    #[test]
    fn unknown_symbols_get_nothing() {
        assert!(known("k8s.io/apiserver/pkg/storage/etcd3.(*store).Watch").is_none());
        assert!(known("main.main").is_none());
        assert!(known("example.com/storage/etcd3.(*store).Get").is_none(), "another module's store is not assumed");
    }

    /// The table must say what the register ABI says for the same types.
    #[test]
    fn table_agrees_with_the_abi_rules() {
        use crate::{
            plan::{abi, amd64},
            resolve::{Param, TypeKind},
        };
        let p = |name: &str, kind: TypeKind, is_result: bool| Param {
            name: name.into(),
            type_name: String::new(),
            size: 0,
            is_result,
            kind,
        };
        let params = [
            p("s", TypeKind::Pointer, false),
            p("ctx", TypeKind::Interface, false),
            p("token", TypeKind::String, false),
            p("~r0", TypeKind::Pointer, true),
            p("~r1", TypeKind::Int { size: 1 }, true),
            p("~r2", TypeKind::Interface, true),
        ];
        let by_abi = abi::layout(&params, &amd64::REGISTERS);
        let by_table =
            known("k8s.io/apiserver/pkg/authentication/token/cache.(*cachedTokenAuthenticator).AuthenticateToken")
                .unwrap();
        let locations = |s: &[Slot]| s.iter().map(|s| s.location.clone()).collect::<Vec<_>>();
        assert_eq!(locations(&by_abi), locations(&by_table));
    }
}
