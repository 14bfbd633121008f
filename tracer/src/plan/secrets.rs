//! Which arguments are secrets: bearer tokens, passwords, private keys.
//! `attach --args` never copies a secret out of the target; the kernel side
//! reads only its length (see `attach::config`).
//!
//! Two rules, both from what the binary says, never from the values:
//! - the parameter's name marks it as a credential ([`is_secret_name`]);
//! - the function is a token authenticator: every string parameter of a
//!   method named `AuthenticateToken` (kube-apiserver's
//!   `authenticator.Token` interface) is the token, whatever it is called.
//!   kube-apiserver's own `tokenfile.(*TokenAuthenticator).AuthenticateToken`
//!   names it `value`, which no name rule could catch.
//!
//! The signature table for stripped builds ([`super::signatures`]) marks its
//! secret parameters itself, and [`mark`] applies the same two rules on top.

use super::abi::Slot;

/// Words that make a parameter a credential, when a whole word of its name
/// or the end of one (`accesstoken`, `bearertoken`).
const WORDS: [&str; 17] = [
    "token",
    "tokens",
    "password",
    "passwords",
    "passwd",
    "passphrase",
    "secret",
    "secrets",
    "credential",
    "credentials",
    "creds",
    "bearer",
    "authorization",
    "cookie",
    "cookies",
    "privatekey",
    "apikey",
];

/// Two-word credentials, as consecutive words of a name (`privateKey`,
/// `private_key`, `apiKey`).
const PAIRS: [(&str, &str); 4] = [("private", "key"), ("private", "keys"), ("api", "key"), ("priv", "key")];

/// Splits a Go identifier into lower-case words at `_`, `-`, digits and
/// camel-case boundaries: `bearerToken` → `bearer`, `token`;
/// `HTTPCookie` → `http`, `cookie`.
fn words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphabetic() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        let prev = i.checked_sub(1).map(|j| chars[j]);
        let next = chars.get(i + 1).copied();
        // A new word starts at an upper-case letter after a lower-case one
        // (`bearerToken`), or at the last capital of a run followed by a
        // lower-case letter (`HTTPCookie`).
        let boundary = c.is_uppercase()
            && prev.is_some_and(|p| p.is_lowercase() || (p.is_uppercase() && next.is_some_and(char::is_lowercase)));
        if boundary && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// True when a parameter named `name` holds a credential: one of its words
/// is, or ends in, a credential word (`token`, `password`, `passwd`,
/// `secret`, `credential(s)`, `bearer`, `authorization`, `cookie`, …), or two
/// consecutive words are `private key` or `api key`. Case-insensitive.
///
/// Whole words, not substrings, so an etcd `key`, a `tokenizer`, an
/// `authorizer` or a `secretary` stay visible; a word that merely ends in a
/// credential word (`accesstoken`) is a credential, because Go names are
/// often written in one lower-case run.
pub fn is_secret_name(name: &str) -> bool {
    let words = words(name);
    let single = words.iter().any(|w| WORDS.iter().any(|s| w == s || (w.len() > s.len() && w.ends_with(s))));
    single || words.windows(2).any(|p| PAIRS.iter().any(|(a, b)| p[0] == *a && p[1] == *b))
}

/// True when every string parameter of `symbol` is a token: methods named
/// `AuthenticateToken` (kube-apiserver's `authenticator.Token`).
pub fn takes_tokens(symbol: &str) -> bool {
    let method = symbol.rsplit('.').next().unwrap_or(symbol);
    method == "AuthenticateToken"
}

/// Marks the secret parameters of `symbol`'s layout (results are never
/// captured, so they are left alone).
pub fn mark(symbol: &str, slots: &mut [Slot]) {
    let tokens = takes_tokens(symbol);
    for s in slots.iter_mut().filter(|s| !s.is_result) {
        if is_secret_name(&s.name) || (tokens && s.type_name == "string") {
            s.secret = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::abi::Location;

    #[test]
    fn credential_names_are_secret() {
        for name in [
            "token",
            "Token",
            "TOKEN",
            "bearerToken",
            "BearerToken",
            "bearer_token",
            "rawToken",
            "tokenString",
            "accesstoken",
            "idToken",
            "tokens",
            "password",
            "newPassword",
            "passwd",
            "secret",
            "clientSecret",
            "credential",
            "credentials",
            "awsCreds",
            "bearer",
            "authorization",
            "authorizationHeader",
            "cookie",
            "sessionCookie",
            "HTTPCookie",
            "privateKey",
            "private_key",
            "PrivateKey",
            "privatekey",
            "apiKey",
            "token2",
        ] {
            assert!(is_secret_name(name), "{name} must be secret");
        }
    }

    /// The etcd `key` must stay visible: it is what `--args` is for. Words
    /// that only contain a credential word are other things.
    #[test]
    fn other_names_are_not_secret() {
        for name in [
            "key",
            "keys",
            "keyPrefix",
            "publicKey",
            "tokenizer",
            "tokenize",
            "authorizer",
            "authHandler",
            "authenticator",
            "secretary",
            "name",
            "namespace",
            "path",
            "value",
            "ctx",
            "~r0",
            "(receiver)",
            "a",
            "",
        ] {
            assert!(!is_secret_name(name), "{name} must not be secret");
        }
    }

    #[test]
    fn words_split_like_go_identifiers() {
        assert_eq!(words("bearerToken"), ["bearer", "token"]);
        assert_eq!(words("HTTPCookie"), ["http", "cookie"]);
        assert_eq!(words("private_key2"), ["private", "key"]);
        assert_eq!(words("~r0"), ["r"]);
    }

    fn slot(name: &str, ty: &str, is_result: bool) -> Slot {
        Slot {
            name: name.into(),
            type_name: ty.into(),
            is_result,
            location: Location::Registers(vec!["RDI", "RSI"]),
            secret: false,
        }
    }

    #[test]
    fn every_string_of_a_token_authenticator_is_a_token() {
        let sym = "k8s.io/apiserver/pkg/authentication/token/tokenfile.(*TokenAuthenticator).AuthenticateToken";
        let mut slots = vec![
            slot("a", "*tokenfile.TokenAuthenticator", false),
            slot("ctx", "context.Context", false),
            slot("value", "string", false),
            slot("~r0", "string", true),
        ];
        mark(sym, &mut slots);
        assert_eq!(slots.iter().map(|s| s.secret).collect::<Vec<_>>(), [false, false, true, false]);

        // Elsewhere a `value` is just a value, and an etcd key stays visible.
        let mut slots =
            vec![slot("key", "string", false), slot("value", "string", false), slot("password", "string", false)];
        mark("k8s.io/apiserver/pkg/storage/etcd3.(*store).Create", &mut slots);
        assert_eq!(slots.iter().map(|s| s.secret).collect::<Vec<_>>(), [false, false, true]);
    }
}
