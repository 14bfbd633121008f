//! Argument layouts for stripped binaries. Release kube-apiservers carry no
//! DWARF, so nothing in the binary says where a function's arguments are.
//! For the preset functions whose signatures have not changed across
//! kube-apiserver 1.26–1.33 (docs/go-tracing-notes.md),
//! this table gives the leading arguments ktrace captures and the results, as
//! Go types; [`known`] places them with the register ABI of the binary's
//! architecture, like DWARF parameters. Only what the table states is
//! returned: arguments after the last listed one are left out, never
//! guessed.

use super::abi::{self, Registers, Slot};
use crate::resolve::{Param, TypeKind};

/// The shape of a Go type, as far as the register ABI cares.
#[derive(Clone, Copy)]
enum Shape {
    Pointer,
    Interface,
    String,
    Bool,
}

impl Shape {
    fn kind(self) -> TypeKind {
        match self {
            Shape::Pointer => TypeKind::Pointer,
            Shape::Interface => TypeKind::Interface,
            Shape::String => TypeKind::String,
            Shape::Bool => TypeKind::Int { size: 1 },
        }
    }

    fn size(self) -> u64 {
        match self {
            Shape::Pointer => 8,
            Shape::Interface | Shape::String => 16,
            Shape::Bool => 1,
        }
    }
}

/// Name, Go type and shape of one parameter or result.
type Value = (&'static str, &'static str, Shape);

/// Leading parameters and results of one method.
struct Signature {
    /// Symbol suffix after the package path prefix (`k8s.io/apiserver/pkg/`,
    /// optionally vendored).
    suffix: &'static str,
    params: &'static [Value],
    results: &'static [Value],
    /// Parameters that hold credentials: `attach` never copies their bytes.
    secrets: &'static [&'static str],
}

use Shape::{Bool, Interface, Pointer, String as Str};

/// `(s *store, ctx context.Context, key string, …) error`.
const STORE_PARAMS: &[Value] =
    &[("s", "*etcd3.store", Pointer), ("ctx", "context.Context", Interface), ("key", "string", Str)];
const ERROR_ONLY: &[Value] = &[("~r0", "error", Interface)];
/// `(*authenticator.Response, bool, error)`.
const AUTHN_RESULTS: &[Value] =
    &[("~r0", "*authenticator.Response", Pointer), ("~r1", "bool", Bool), ("~r2", "error", Interface)];

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
            ("a", "*cache.cachedTokenAuthenticator", Pointer),
            ("ctx", "context.Context", Interface),
            ("token", "string", Str),
        ],
        results: AUTHN_RESULTS,
        secrets: &["token"],
    },
    Signature {
        suffix: "authentication/token/tokenfile.(*TokenAuthenticator).AuthenticateToken",
        params: &[
            ("a", "*tokenfile.TokenAuthenticator", Pointer),
            ("ctx", "context.Context", Interface),
            ("value", "string", Str),
        ],
        results: AUTHN_RESULTS,
        secrets: &["value"],
    },
    Signature {
        suffix: "authentication/request/bearertoken.(*Authenticator).AuthenticateRequest",
        params: &[("a", "*bearertoken.Authenticator", Pointer), ("req", "*http.Request", Pointer)],
        results: AUTHN_RESULTS,
        secrets: &[],
    },
    Signature {
        suffix: "authentication/request/union.(*unionAuthRequestHandler).AuthenticateRequest",
        params: &[("authHandler", "*union.unionAuthRequestHandler", Pointer), ("req", "*http.Request", Pointer)],
        results: AUTHN_RESULTS,
        secrets: &[],
    },
    // The outermost handler of the request chain (a request root): its
    // `r` is what `--capture 'r.Method,r.URL.Path'` reads.
    Signature {
        suffix: "server.(*APIServerHandler).ServeHTTP",
        params: &[
            ("a", "*server.APIServerHandler", Pointer),
            ("w", "net/http.ResponseWriter", Interface),
            ("r", "*net/http.Request", Pointer),
        ],
        results: &[],
        secrets: &[],
    },
];

const PREFIXES: [&str; 2] = ["k8s.io/apiserver/pkg/", "k8s.io/kubernetes/vendor/k8s.io/apiserver/pkg/"];

/// The known layout of `symbol` under the register files `regs` (the
/// binary's [`super::arch::Arch::registers`]), if the table has it.
pub fn known(symbol: &str, regs: &Registers) -> Option<Vec<Slot>> {
    let local = PREFIXES.iter().find_map(|p| symbol.strip_prefix(p))?;
    let sig = TABLE.iter().find(|s| s.suffix == local)?;
    let param = |is_result: bool| {
        move |&(name, ty, shape): &Value| Param {
            name: name.into(),
            type_name: ty.into(),
            size: shape.size(),
            is_result,
            kind: shape.kind(),
        }
    };
    let params: Vec<Param> = sig.params.iter().map(param(false)).chain(sig.results.iter().map(param(true))).collect();
    let mut slots = abi::layout(&params, regs);
    for slot in &mut slots {
        slot.secret = !slot.is_result && sig.secrets.contains(&slot.name.as_str());
    }
    Some(slots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{abi::Location, amd64::REGISTERS};

    #[test]
    fn store_methods_have_key_and_error() {
        for prefix in PREFIXES {
            let slots = known(&format!("{prefix}storage/etcd3.(*store).Get"), &REGISTERS).unwrap();
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
            known(symbol, &REGISTERS).unwrap().into_iter().filter(|s| s.secret).map(|s| s.name).collect()
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
        assert!(known("k8s.io/apiserver/pkg/storage/etcd3.(*store).Watch", &REGISTERS).is_none());
        assert!(known("main.main", &REGISTERS).is_none());
        assert!(
            known("example.com/storage/etcd3.(*store).Get", &REGISTERS).is_none(),
            "another module's store is not assumed"
        );
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
        let by_table = known(
            "k8s.io/apiserver/pkg/authentication/token/cache.(*cachedTokenAuthenticator).AuthenticateToken",
            &REGISTERS,
        )
        .unwrap();
        let locations = |s: &[Slot]| s.iter().map(|s| s.location.clone()).collect::<Vec<_>>();
        assert_eq!(locations(&by_abi), locations(&by_table));
    }
}
