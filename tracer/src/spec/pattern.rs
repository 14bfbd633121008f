//! Symbol patterns and the name and path normalisations matching needs.
//!
//! A pattern is compiled once from text, then tested against many names. In
//! user text a `*` right after `(` is a method receiver's pointer star,
//! never a wildcard (`pkg.(*T).M` names exactly one method); every other
//! `*` matches any run of characters, and a pattern without one compares by
//! equality. Presets may also use `#` for one or more ASCII digits
//! (`withAuthentication.func#`); in user text `#` is literal.
//!
//! Generic instantiations carry type arguments in brackets
//! (`pkg.(*T[go.shape.struct { … }]).M`, or `pkg.(*T[...]).M` in a stripped
//! binary's pclntab); [`Pattern::matches`] also tries the name with every
//! balanced bracket group removed, so `pkg.(*T).M` selects them.
//!
//! Pure text processing: no allocation proportional to more than one name,
//! no recursion, O(pattern × name) worst case, no panics on any input.

use std::borrow::Cow;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Byte(u8),
    /// Any run of characters, possibly empty.
    Star,
    /// One or more ASCII digits.
    Digits,
}

/// A compiled symbol pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    toks: Vec<Tok>,
    /// The literal bytes before the first wildcard: every match starts with
    /// them, which rules out almost every name cheaply.
    head: Vec<u8>,
    /// No wildcard at all: the pattern compares by equality.
    exact: bool,
}

impl Pattern {
    /// A pattern as the user typed it: `*` is a wildcard except right after
    /// `(`, and `#` is literal.
    pub fn user(text: &str) -> Pattern {
        Self::compile(text, false)
    }

    /// A preset's pattern: as [`Pattern::user`], and `#` matches one or more
    /// digits.
    pub fn preset(text: &str) -> Pattern {
        Self::compile(text, true)
    }

    fn compile(text: &str, digits: bool) -> Pattern {
        let mut toks = Vec::with_capacity(text.len());
        let mut prev = None;
        for &b in text.as_bytes() {
            toks.push(match b {
                b'*' if prev != Some(b'(') => Tok::Star,
                b'#' if digits => Tok::Digits,
                other => Tok::Byte(other),
            });
            prev = Some(b);
        }
        let head: Vec<u8> = toks
            .iter()
            .map_while(|t| match t {
                Tok::Byte(b) => Some(*b),
                _ => None,
            })
            .collect();
        let exact = head.len() == toks.len();
        Pattern { toks, head, exact }
    }

    /// True when the pattern has no wildcard left and so compares by
    /// equality.
    pub fn is_exact(&self) -> bool {
        self.exact
    }

    /// Whether the pattern matches `name`, or `name` with its generic type
    /// arguments removed ([`strip_type_args`]).
    pub fn matches(&self, name: &str) -> bool {
        self.matches_whole(name) || strip_type_args(name).is_some_and(|bare| self.matches_whole(&bare))
    }

    /// Whether the pattern matches `name` exactly as given.
    pub fn matches_whole(&self, name: &str) -> bool {
        let n = name.as_bytes();
        if self.exact {
            return self.head == n;
        }
        if !n.starts_with(&self.head) {
            return false;
        }
        // reach[j]: the tokens consumed so far match n[..j]. One pass per
        // token, so no pattern can make this backtrack exponentially.
        let mut reach = vec![false; n.len() + 1];
        let mut next = vec![false; n.len() + 1];
        reach[0] = true;
        for tok in &self.toks {
            next.fill(false);
            match *tok {
                Tok::Star => {
                    let mut on = false;
                    for j in 0..=n.len() {
                        on |= reach[j];
                        next[j] = on;
                    }
                }
                Tok::Digits => {
                    for j in 0..n.len() {
                        if n[j].is_ascii_digit() && (reach[j] || next[j]) {
                            next[j + 1] = true;
                        }
                    }
                }
                Tok::Byte(c) => {
                    for j in 0..n.len() {
                        next[j + 1] = reach[j] && n[j] == c;
                    }
                }
            }
            std::mem::swap(&mut reach, &mut next);
            if !reach.contains(&true) {
                return false;
            }
        }
        reach[n.len()]
    }
}

/// `name` with every balanced `[…]` group removed, when it has one:
/// `pkg.(*T[go.shape.struct { F string "json:\"f]\"" }]).M` gives
/// `pkg.(*T).M`. Brackets nest, and brackets inside Go-quoted strings
/// (struct tags, with `\` escapes) do not count. `None` when the name has
/// no bracket or its brackets do not balance.
pub fn strip_type_args(name: &str) -> Option<String> {
    if !name.contains('[') {
        return None;
    }
    let mut out = String::with_capacity(name.len());
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in name.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && q == '"' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '[' => depth += 1,
            ']' => depth = depth.checked_sub(1)?,
            '"' | '`' if depth > 0 => quote = Some(c),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    (depth == 0 && quote.is_none()).then_some(out)
}

/// `path` with the module version removed from each component, as
/// `-trimpath` module builds record files: `k8s.io/apiserver@v0.36.3/pkg/x.go`
/// becomes `k8s.io/apiserver/pkg/x.go`. Only `@v` followed by a digit is a
/// version.
pub fn strip_module_versions(path: &str) -> Cow<'_, str> {
    if !path.contains("@v") {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    for (i, component) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let bare = component
            .rfind("@v")
            .filter(|&at| component[at + 2..].starts_with(|c: char| c.is_ascii_digit()))
            .map_or(component, |at| &component[..at]);
        out.push_str(bare);
    }
    Cow::Owned(out)
}

/// True when `file` ends with `suffix` on whole path components, after the
/// module versions of both are removed.
pub fn path_suffix(file: &str, suffix: &str) -> bool {
    let (file, suffix) = (strip_module_versions(file), strip_module_versions(suffix));
    let suffix = suffix.trim_start_matches('/');
    !suffix.is_empty() && (file == suffix || file.strip_suffix(suffix).is_some_and(|head| head.ends_with('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_star_is_literal_and_other_stars_glob() {
        let put = "go.etcd.io/etcd/etcdserver.(*EtcdServer).Put";
        let other = "go.etcd.io/etcd/etcdserver.(*reqV2HandlerEtcdServer).Put";
        let exact = Pattern::user(put);
        assert!(exact.is_exact());
        assert!(exact.matches(put));
        assert!(!exact.matches(other));
        let glob = Pattern::user("go.etcd.io/etcd/etcdserver.(*Etcd*).Put");
        assert!(!glob.is_exact());
        assert!(glob.matches(put));
        assert!(!glob.matches(other));
        let pkg = Pattern::user("*etcd3.(*store).Get");
        assert!(pkg.matches("k8s.io/apiserver/pkg/storage/etcd3.(*store).Get"));
        assert!(!pkg.matches("k8s.io/apiserver/pkg/storage/etcd3.(*xstore).Get"));
        // `(**)` is the receiver star then a wildcard: any pointer receiver.
        assert!(Pattern::user("p.(**).M").matches("p.(*T).M"));
        assert!(!Pattern::user("p.(**).M").matches("p.T.M"));
    }

    #[test]
    fn hash_is_digits_in_presets_only() {
        assert!(Pattern::preset("f.func#").matches("f.func12"));
        assert!(!Pattern::preset("f.func#").matches("f.func"));
        assert!(!Pattern::preset("f.func#").matches("f.func1.1"));
        assert!(!Pattern::user("f.func#").matches("f.func1"));
        assert!(Pattern::user("f.func#").matches("f.func#"));
    }

    #[test]
    fn globs_treat_go_punctuation_literally() {
        let create = "k8s.io/apiserver/pkg/storage/etcd3.(*store).Create";
        assert!(Pattern::user("*etcd3.(*store).*").matches(create));
        assert!(Pattern::user("k8s.io/*/etcd3.(*store).Create").matches(create));
        assert!(!Pattern::user("*etcd3.(*store).Get").matches(create));
        assert!(!Pattern::user("k8s.io/apiserver").matches(create));
        assert!(Pattern::user("a*a").matches("aa"));
        assert!(!Pattern::user("a*a").matches("a"));
        assert!(Pattern::user("").matches(""));
        assert!(!Pattern::user("").matches("x"));
    }

    #[test]
    fn pathological_globs_stay_fast() {
        let name = "a".repeat(5000);
        let pattern = format!("{}b", "*a".repeat(200));
        let start = std::time::Instant::now();
        assert!(!Pattern::user(&pattern).matches(&name));
        assert!(start.elapsed().as_secs() < 2);
    }

    #[test]
    fn type_arguments_are_stripped_by_balanced_brackets() {
        let shape = r#"k8s.io/kubernetes/pkg/serviceaccount.(*jwtTokenAuthenticator[go.shape.struct { Kubernetes k8s.io/kubernetes/pkg/serviceaccount.kubernetes "json:\"kubernetes.io,omitempty\"" }]).AuthenticateToken"#;
        let bare = "k8s.io/kubernetes/pkg/serviceaccount.(*jwtTokenAuthenticator).AuthenticateToken";
        assert_eq!(strip_type_args(shape).as_deref(), Some(bare));
        assert!(Pattern::user(bare).matches(shape));
        assert!(
            Pattern::user(bare)
                .matches("k8s.io/kubernetes/pkg/serviceaccount.(*jwtTokenAuthenticator[...]).AuthenticateToken")
        );
        // Nested brackets, pointers, a quoted `]`, several arguments, closures.
        assert_eq!(
            strip_type_args(r#"p.F[go.shape.struct { b [128]uint8; t string "x:\"]\"" },go.shape.*uint8].func1"#)
                .as_deref(),
            Some("p.F.func1")
        );
        assert_eq!(strip_type_args("p.F"), None);
        for unbalanced in ["p.F[", "p.F]x[", "p.F[[x]", r#"p.F["]"#, "p.F[`]"] {
            assert_eq!(strip_type_args(unbalanced), None, "{unbalanced}");
        }
        // A pattern that spells the brackets matches the full name too.
        assert!(Pattern::user("p.(*T[go.shape.int]).M").matches("p.(*T[go.shape.int]).M"));
        assert!(!Pattern::user("p.(*T).M").matches("p.(*U[go.shape.int]).M"));
    }

    #[test]
    fn module_versions_are_dropped_from_paths() {
        let recorded = "k8s.io/apiserver@v0.36.3/pkg/storage/etcd3/store.go";
        assert_eq!(strip_module_versions(recorded), "k8s.io/apiserver/pkg/storage/etcd3/store.go");
        assert_eq!(
            strip_module_versions("go.etcd.io/etcd/client/v3@v3.6.8/kubernetes/client.go"),
            "go.etcd.io/etcd/client/v3/kubernetes/client.go"
        );
        assert_eq!(strip_module_versions("a@b/c@vx/d.go"), "a@b/c@vx/d.go");
        for suffix in [
            "k8s.io/apiserver/pkg/storage/etcd3/store.go",
            "pkg/storage/etcd3/store.go",
            "store.go",
            "k8s.io/apiserver@v0.36.3/pkg/storage/etcd3/store.go",
        ] {
            assert!(path_suffix(recorded, suffix), "{suffix}");
        }
        assert!(!path_suffix(recorded, "tore.go"));
        assert!(!path_suffix(recorded, "apiserver/pkg/storage/etcd3/other.go"));
        assert!(!path_suffix(recorded, ""));
    }
}
