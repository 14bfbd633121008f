//! Spec: what the user typed in `--funcs`, a comma-separated list whose items
//! are presets (`authn`, `storage`, … `all`), Go symbols with `*` globs, or
//! Delve-style locations (`staging/src/k8s.io/apiserver/pkg/storage/etcd3/store.go:Create`),
//! so breakpoint lists paste in unchanged.
//!
//! This layer only parses text and matches it against a resolved function
//! list; it reads no files.

mod pattern;
pub mod presets;

use std::borrow::Cow;

pub use pattern::{Pattern, path_suffix, strip_module_versions, strip_type_args};

use crate::resolve::{Function, InlinedCall};

/// One item of a spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A named preset (or `all`).
    Preset(String),
    /// A Go symbol: exact, or a glob when it has a `*` that is not a
    /// receiver's pointer star (see [`Pattern::user`]).
    Symbol(String),
    /// `path/file.go:Func`: functions named `Func` (or methods `T.Func`)
    /// defined in a file whose path ends with `path/file.go`.
    FileFunc {
        /// File path, matched by suffix on whole path components.
        file: String,
        /// Function or method name, possibly `T.Func` / `(*T).Func`.
        func: String,
    },
    /// `path/file.go:LINE`.
    FileLine {
        /// File path, matched by suffix on whole path components.
        file: String,
        /// Source line.
        line: u32,
    },
}

/// Errors from parsing or matching a spec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// Nothing was given.
    #[error("empty --funcs spec")]
    Empty,
    /// An item matched no function.
    #[error("{item:?} matches no function in the binary{}", suggestions(.closest))]
    NoMatch {
        /// The item as typed.
        item: String,
        /// The nearest names, best first.
        closest: Vec<String>,
    },
    /// `file.go:LINE` needs the binary's line table, which [`select`] does
    /// not read; `plan::sites::plan_items` resolves such locations.
    #[error("{0:?}: file.go:LINE locations are not supported by this command yet; use file.go:Func")]
    LineUnsupported(String),
    /// No code in the binary comes from a file with this path suffix.
    #[error("{item:?}: no code in the binary comes from a file ending in {file}")]
    NoSuchFile {
        /// The item as typed.
        item: String,
        /// The file part.
        file: String,
    },
    /// The file has code, but not at this line (a comment, a blank line, or
    /// code the compiler removed).
    #[error("{item:?}: no code at this line; nearest lines with code: {}", nearest(*.before, *.after))]
    LineHasNoCode {
        /// The item as typed.
        item: String,
        /// The nearest line above with code.
        before: Option<u32>,
        /// The nearest line below with code.
        after: Option<u32>,
    },
}

fn nearest(before: Option<u32>, after: Option<u32>) -> String {
    match (before, after) {
        (Some(b), Some(a)) => format!("{b} and {a}"),
        (Some(l), None) | (None, Some(l)) => l.to_string(),
        (None, None) => "none".into(),
    }
}

fn suggestions(closest: &[String]) -> String {
    if closest.is_empty() { String::new() } else { format!("; closest: {}", closest.join(", ")) }
}

/// Kubernetes' repository keeps the apiserver library under `staging/src/`;
/// binaries record it without that prefix in GOPATH builds, with it in module
/// builds. Matching by path suffix makes both work once it is dropped.
const STAGING: &str = "staging/src/";

/// Parses a comma-separated spec.
pub fn parse(spec: &str) -> Result<Vec<Item>, SpecError> {
    let items: Vec<Item> = spec.split(',').map(str::trim).filter(|s| !s.is_empty()).map(parse_item).collect();
    if items.is_empty() { Err(SpecError::Empty) } else { Ok(items) }
}

fn parse_item(s: &str) -> Item {
    if presets::lookup(s).is_some() {
        return Item::Preset(s.to_string());
    }
    if let Some((file, what)) = s.rsplit_once(':')
        && file.ends_with(".go")
    {
        let file = file.strip_prefix(STAGING).unwrap_or(file).trim_start_matches('/');
        let file = strip_module_versions(file).into_owned();
        return match what.parse::<u32>() {
            Ok(line) => Item::FileLine { file, line },
            Err(_) => Item::FileFunc { file, func: what.to_string() },
        };
    }
    Item::Symbol(s.to_string())
}

impl Item {
    /// The item as the user would type it.
    pub fn text(&self) -> String {
        match self {
            Item::Preset(p) | Item::Symbol(p) => p.clone(),
            Item::FileFunc { file, func } => format!("{file}:{func}"),
            Item::FileLine { file, line } => format!("{file}:{line}"),
        }
    }
}

/// The part of a symbol after its package path: `(*store).Create` for
/// `k8s.io/apiserver/pkg/storage/etcd3.(*store).Create`. Generic type
/// arguments are removed first, since they may hold `/` and `.`.
fn local_name(symbol: &str) -> Cow<'_, str> {
    match strip_type_args(symbol) {
        Some(bare) => Cow::Owned(analyzer::symbol::local_name(&bare).to_string()),
        None => Cow::Borrowed(analyzer::symbol::local_name(symbol)),
    }
}

/// Delve's `file.go:Func` accepts `Func`, `T.Func` or `(*T).Func`.
fn func_matches(local: &str, func: &str) -> bool {
    local == func || local.strip_suffix(func).is_some_and(|head| head.ends_with('.'))
}

/// Whether `local` names a closure compiled in `enclosing`: `enclosing.funcN`,
/// or, when Go inlined `enclosing` into callers and renamed the closure
/// after the inlining stack, `Caller.….enclosing.funcN`. Nested closures
/// (`funcN.M`) are not.
pub fn is_closure_of(local: &str, enclosing: &str) -> bool {
    let Some(at) = local.rfind(".func") else { return false };
    let (head, n) = (&local[..at], &local[at + ".func".len()..]);
    !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
        && head.strip_suffix(enclosing).is_some_and(|rest| rest.is_empty() || rest.ends_with('.'))
}

/// An item made ready to test many functions: patterns are compiled and a
/// preset's entries looked up once per item, not once per function.
enum Matcher<'i> {
    Entries(Vec<presets::Compiled>),
    Symbol(Pattern),
    FileFunc { file: &'i str, func: &'i str },
    Nothing,
}

impl Item {
    fn matcher(&self) -> Matcher<'_> {
        match self {
            Item::Preset(name) => presets::lookup(name)
                .map_or(Matcher::Nothing, |es| Matcher::Entries(es.iter().map(presets::Entry::compile).collect())),
            Item::Symbol(text) => Matcher::Symbol(Pattern::user(text)),
            Item::FileFunc { file, func } => Matcher::FileFunc { file, func },
            Item::FileLine { .. } => Matcher::Nothing,
        }
    }
}

impl Matcher<'_> {
    fn matches(&self, f: &Function) -> bool {
        self.matches_name(&f.name, f.file.as_deref())
    }

    fn matches_name(&self, name: &str, file: Option<&str>) -> bool {
        match self {
            Matcher::Entries(entries) => entries.iter().any(|e| e.matches(name, file)),
            Matcher::Symbol(pattern) => pattern.matches(name),
            Matcher::FileFunc { file: want, func } => {
                file.is_some_and(|ff| path_suffix(ff, want)) && func_matches(&local_name(name), func)
            }
            Matcher::Nothing => false,
        }
    }
}

/// A test on names alone that every function `items` can select passes
/// (with some others): for reading only the candidates of a big binary.
/// `None` when an item needs every function (`file.go:LINE`). Selecting
/// from the functions it passes gives what selecting from all does, as
/// long as each item selects something; an item that selects nothing
/// there needs all of them (its inlined copies' callers, the closest
/// names).
pub fn name_filter(items: &[Item]) -> Option<impl Fn(&str) -> bool + use<>> {
    enum Test {
        Entries(Vec<presets::Compiled>),
        Symbol(Pattern),
        Func(String),
    }
    let mut tests = Vec::with_capacity(items.len());
    for item in items {
        tests.push(match item {
            Item::Preset(name) => {
                Test::Entries(presets::lookup(name).unwrap_or_default().iter().map(presets::Entry::compile).collect())
            }
            Item::Symbol(text) => Test::Symbol(Pattern::user(text)),
            Item::FileFunc { func, .. } => Test::Func(func.clone()),
            Item::FileLine { .. } => return None,
        });
    }
    Some(move |name: &str| {
        tests.iter().any(|t| match t {
            Test::Entries(entries) => entries.iter().any(|e| e.may_match(name)),
            Test::Symbol(pattern) => pattern.matches(name),
            Test::Func(func) => {
                let local = local_name(name);
                func_matches(&local, func) || is_closure_of(&local, func)
            }
        })
    })
}

/// The inlined copies `item` selects: those whose callee it would match if
/// the callee had an out-of-line copy (by name, and by the callee's source
/// file for `file.go:Func` and presets that confirm by file).
pub fn select_inlined<'c>(item: &Item, calls: &'c [InlinedCall]) -> Vec<&'c InlinedCall> {
    let matcher = item.matcher();
    calls.iter().filter(|c| matcher.matches_name(&c.callee, c.file.as_deref())).collect()
}

/// For `file.go:Func` where `Func` itself was inlined away (factories such as
/// `withAuthentication` are, in optimized builds), its closures `Func.funcN`
/// (renamed `Caller.Func.funcN` where Go inlined `Func`) do the
/// per-request work; they are what the user wants to see.
fn closure_fallback(item: &Item, f: &Function) -> bool {
    let Item::FileFunc { file, func } = item else { return false };
    f.file.as_deref().is_some_and(|ff| path_suffix(ff, file)) && is_closure_of(&local_name(&f.name), func)
}

/// Returns the functions each item selects, deduplicated by entry, in the
/// order of the items. An item that matches nothing is an error naming the
/// closest symbols.
pub fn select<'f>(items: &[Item], functions: &'f [Function]) -> Result<Vec<&'f Function>, SpecError> {
    let mut out: Vec<&Function> = Vec::new();
    for item in items {
        for f in select_item(item, functions)? {
            if !out.iter().any(|o| o.entry == f.entry) {
                out.push(f);
            }
        }
    }
    Ok(out)
}

/// The functions one item selects. `file.go:LINE` items are refused with
/// [`SpecError::LineUnsupported`]: they need the line table.
pub fn select_item<'f>(item: &Item, functions: &'f [Function]) -> Result<Vec<&'f Function>, SpecError> {
    if let Item::FileLine { .. } = item {
        return Err(SpecError::LineUnsupported(item.text()));
    }
    let matcher = item.matcher();
    let mut matched: Vec<&Function> = functions.iter().filter(|f| matcher.matches(f)).collect();
    if matched.is_empty() {
        matched = functions.iter().filter(|f| closure_fallback(item, f)).collect();
    }
    if matched.is_empty() {
        return Err(SpecError::NoMatch { item: item.text(), closest: closest(item, functions) });
    }
    Ok(matched)
}

/// The three names nearest to the item: names containing its last element
/// first, each group by edit distance to what was typed.
fn closest(item: &Item, functions: &[Function]) -> Vec<String> {
    let text = match item {
        Item::FileFunc { func, .. } => func.clone(),
        other => other.text(),
    };
    let needle = text.rsplit(['/', '.', ':']).find(|s| !s.is_empty() && !s.contains('*')).unwrap_or(&text);
    let mut scored: Vec<(bool, usize, &str)> =
        functions.iter().map(|f| (!f.name.contains(needle), edit_distance(&text, &f.name), f.name.as_str())).collect();
    scored.sort_unstable();
    scored.dedup_by(|a, b| a.2 == b.2);
    scored.into_iter().take(3).map(|(_, _, n)| n.to_string()).collect()
}

/// Levenshtein distance over bytes, with one row of memory.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests;
