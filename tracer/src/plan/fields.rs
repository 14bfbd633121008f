//! `--capture 'r.Method,r.URL.Path'`: field paths read at a function's
//! entry. A path starts with a parameter name of a traced function (the
//! receiver counts), then names fields, through pointers to structs and
//! inline structs, down to a `string`, integer, bool or pointer leaf. A
//! field promoted from an embedded field resolves as in Go (`cm.Name` is
//! `cm.ObjectMeta.Name`; DWARF marks embedded fields).
//!
//! This module parses the option ([`CaptureSpec`]) and resolves each path
//! against one function's argument layout and the binary's types into byte
//! offsets ([`Resolved`]), which `attach::config` turns into the kernel's
//! `FieldPath`s. Types come from DWARF (the target's own, or the
//! `--symbols` file's), walked one level per step ([`TypeSource`]), so a
//! hostile or cyclic type graph costs at most one lookup per path step.
//! A stripped binary without `--symbols` gets offsets from [`TABLE`], a few
//! well-known fields per Go release read from DWARF of real builds
//! (tests/kube_resolve.rs checks every row against DWARF, like the
//! goroutine table in [`super::goroutine`]).
//!
//! Limits, each refused with an error naming it: [`MAX_CAPTURES`] paths per
//! function, [`MAX_DEREFS`] pointers followed per path (the parameter's own
//! included), [`MAX_FIELDS`] field names per path, and strings read up to
//! [`tracer_common::STR_CAP`] bytes (longer ones are marked truncated). Interfaces,
//! slices, maps, channels and funcs are never followed: their targets'
//! types are not known before the program runs, or need more reads than a
//! bounded probe should make.
//!
//! Secrets: a path whose parameter or any field is named like a credential
//! (`plan::secrets`), or a string of a token authenticator, is read as its
//! length only, like a secret argument of `--args`.

use tracer_common::{MAX_CAPTURES, MAX_DEREFS};

use super::{
    abi::{Location, Slot},
    secrets,
};
use crate::resolve::{Dwarf, Machine, TypeId, TypeShape};

/// Field names one path may hold (inline structs included).
pub const MAX_FIELDS: usize = 8;

/// One parsed path, e.g. `r.URL.Path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPathSpec {
    /// The path as written, the key of its value in a call's `args`.
    pub text: String,
    /// The parameter it starts from.
    pub param: String,
    /// The field names after it, at least one.
    pub fields: Vec<String>,
}

/// A parsed `--capture`: the paths in the order given, without repeats.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureSpec {
    /// The paths.
    pub paths: Vec<FieldPathSpec>,
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_') && chars.all(|c| c.is_alphanumeric() || c == '_')
}

impl CaptureSpec {
    /// Parses `PARAM.FIELD[.FIELD…][,…]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut paths: Vec<FieldPathSpec> = Vec::new();
        for item in text.split(',').map(str::trim) {
            if item.is_empty() {
                return Err(format!("--capture {text:?}: an empty path; want PARAM.FIELD[.FIELD…], e.g. r.URL.Path"));
            }
            let mut parts = item.split('.');
            let param = parts.next().unwrap_or_default().to_string();
            let fields: Vec<String> = parts.map(str::to_string).collect();
            if let Some(bad) = std::iter::once(&param).chain(&fields).find(|p| !is_ident(p)) {
                return Err(format!(
                    "--capture {item}: {bad:?} is not a Go identifier; want PARAM.FIELD[.FIELD…], e.g. r.URL.Path"
                ));
            }
            if fields.is_empty() {
                return Err(format!(
                    "--capture {item}: name a field of {param} (e.g. {param}.Name); --args captures parameters themselves"
                ));
            }
            if fields.len() > MAX_FIELDS {
                return Err(format!("--capture {item}: {} fields; a path may name at most {MAX_FIELDS}", fields.len()));
            }
            if !paths.iter().any(|p| p.text == item) {
                paths.push(FieldPathSpec { text: item.to_string(), param, fields });
            }
        }
        Ok(Self { paths })
    }

    /// The option as the user wrote it, normalized.
    pub fn text(&self) -> String {
        self.paths.iter().map(|p| p.text.as_str()).collect::<Vec<_>>().join(",")
    }
}

/// What a path's leaf is read as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leaf {
    /// A Go string: bytes and length (only the length when secret).
    String,
    /// An integer, bool or pointer of this many bytes, read as a number.
    Int(u8),
}

/// One path resolved for one function: where its parameter lives, the
/// offsets of the pointer fields it follows, and its leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The path as written: the key of its value in the call's `args`.
    pub text: String,
    /// Where the pointer parameter lives at entry.
    pub base: Location,
    /// Offset of each pointer field followed, in the struct before it.
    pub hops: Vec<u64>,
    /// Offset of the leaf in the last struct.
    pub leaf_off: u64,
    /// How the leaf is read.
    pub leaf: Leaf,
    /// A credential: a string is read as its length only, an integer not at all.
    pub secret: bool,
}

/// One level of a type, as a path step sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape<Id> {
    /// Integer, bool or uintptr of this many bytes.
    Int(u64),
    /// A Go string.
    String,
    /// A pointer to a known type, or to an unknown one (`None`).
    Pointer(Option<Id>),
    /// A struct: name, offset and type of each member.
    Struct(Vec<(String, u64, Option<Id>)>),
    /// Something a path cannot go into: `interface`, `slice`, `map`, …
    Opaque(&'static str),
}

/// Where field paths get their types: DWARF, or the table for stripped
/// builds.
pub trait TypeSource {
    /// A type handle.
    type Id: Clone;
    /// The type named `name`, e.g. `*net/http.Request`.
    fn named(&self, name: &str) -> Option<Self::Id>;
    /// Its Go name, for messages.
    fn name_of(&self, id: &Self::Id) -> String;
    /// One level of it.
    fn shape(&self, id: &Self::Id) -> Shape<Self::Id>;
    /// False when the source knows only some fields (the table): a field
    /// it lacks may exist, so the error suggests `--symbols`.
    fn complete(&self) -> bool;
    /// Names of the embedded fields of struct `id`, whose own fields Go
    /// promotes (`cm.Name` for `cm.ObjectMeta.Name`).
    fn embedded(&self, _id: &Self::Id) -> Vec<String> {
        Vec::new()
    }
}

impl TypeSource for Dwarf {
    type Id = TypeId;

    fn named(&self, name: &str) -> Option<TypeId> {
        self.type_named_loosely(name)
    }

    fn name_of(&self, id: &TypeId) -> String {
        self.type_name(*id).unwrap_or("?").to_string()
    }

    fn shape(&self, id: &TypeId) -> Shape<TypeId> {
        match self.type_shape(*id) {
            TypeShape::Int { size } => Shape::Int(size),
            TypeShape::String => Shape::String,
            TypeShape::Pointer { target } => Shape::Pointer(target),
            TypeShape::Struct { members } => Shape::Struct(members),
            TypeShape::Float => Shape::Opaque("a float"),
            TypeShape::Interface => Shape::Opaque("an interface"),
            TypeShape::Slice => Shape::Opaque("a slice"),
            TypeShape::Map => Shape::Opaque("a map"),
            TypeShape::Chan => Shape::Opaque("a channel"),
            TypeShape::Func => Shape::Opaque("a func"),
            TypeShape::Array => Shape::Opaque("an array"),
            TypeShape::Other => Shape::Opaque("a type ktrace does not model"),
        }
    }

    fn complete(&self) -> bool {
        true
    }

    fn embedded(&self, id: &TypeId) -> Vec<String> {
        self.type_embedded(*id).into_iter().map(str::to_string).collect()
    }
}

/// Remembers [`TypeSource::named`]: DWARF's is a linear scan over every
/// type, and each traced function with the parameter asks for the same one.
pub struct Memo<'a, T: TypeSource> {
    inner: &'a T,
    named: std::cell::RefCell<std::collections::HashMap<String, Option<T::Id>>>,
}

impl<'a, T: TypeSource> Memo<'a, T> {
    /// Wraps `inner`.
    pub fn new(inner: &'a T) -> Self {
        Self { inner, named: Default::default() }
    }
}

impl<T: TypeSource> TypeSource for Memo<'_, T> {
    type Id = T::Id;

    fn named(&self, name: &str) -> Option<T::Id> {
        if let Some(hit) = self.named.borrow().get(name) {
            return hit.clone();
        }
        let found = self.inner.named(name);
        self.named.borrow_mut().insert(name.to_string(), found.clone());
        found
    }

    fn name_of(&self, id: &T::Id) -> String {
        self.inner.name_of(id)
    }

    fn shape(&self, id: &T::Id) -> Shape<T::Id> {
        self.inner.shape(id)
    }

    fn complete(&self) -> bool {
        self.inner.complete()
    }

    fn embedded(&self, id: &T::Id) -> Vec<String> {
        self.inner.embedded(id)
    }
}

/// A field of [`TABLE`]: a string, an integer of N bytes, or a pointer to
/// a struct of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableField {
    /// A Go string.
    Str,
    /// An integer or bool of this many bytes.
    Int(u8),
    /// A pointer to the named struct.
    Ptr(&'static str),
}

/// Well-known fields of one struct in one Go release.
pub type TableStruct = (&'static str, &'static [(&'static str, u64, TableField)]);

const REQUEST_FIELDS: &[(&str, u64, TableField)] = &[
    ("Method", 0, TableField::Str),
    ("URL", 16, TableField::Ptr("net/url.URL")),
    ("ContentLength", 88, TableField::Int(8)),
    ("Host", 128, TableField::Str),
    ("RemoteAddr", 176, TableField::Str),
    ("RequestURI", 192, TableField::Str),
];
const URL_FIELDS_19: &[(&str, u64, TableField)] = &[
    ("Scheme", 0, TableField::Str),
    ("Host", 40, TableField::Str),
    ("Path", 56, TableField::Str),
    ("RawQuery", 96, TableField::Str),
];
/// Go 1.26's `net/url.URL`: `RawQuery` is 8 bytes lower than in 1.19 (as
/// its DWARF says; the fields before it were rearranged).
const URL_FIELDS_26: &[(&str, u64, TableField)] = &[
    ("Scheme", 0, TableField::Str),
    ("Host", 40, TableField::Str),
    ("Path", 56, TableField::Str),
    ("RawQuery", 88, TableField::Str),
];

/// `(machine, Go 1.N, structs)`: field offsets for stripped binaries, read
/// from the DWARF of real builds: amd64 go1.19.8 (targets/, Debian's Go)
/// and go1.26.8 (kube-apiserver v1.36.3). Used only when there is no DWARF.
pub const TABLE: &[(Machine, u32, &[TableStruct])] = &[
    (Machine::X86_64, 19, &[("net/http.Request", REQUEST_FIELDS), ("net/url.URL", URL_FIELDS_19)]),
    (Machine::X86_64, 26, &[("net/http.Request", REQUEST_FIELDS), ("net/url.URL", URL_FIELDS_26)]),
];

/// [`TABLE`]'s rows for one release, as a [`TypeSource`].
#[derive(Clone, Copy, Debug)]
pub struct Table {
    structs: &'static [TableStruct],
    /// `go1.N`, for messages.
    pub minor: u32,
}

/// A type of [`Table`]: a struct, a pointer to one, or a leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableType {
    /// The struct of this name.
    Struct(&'static str),
    /// A pointer to the struct of this name.
    Ptr(&'static str),
    /// A leaf.
    Leaf(TableField),
}

impl Table {
    /// The table for Go `1.minor` on `machine`, if it has one.
    pub fn for_release(machine: Machine, minor: u32) -> Option<Self> {
        TABLE.iter().find(|(m, v, _)| *m == machine && *v == minor).map(|&(_, minor, structs)| Self { structs, minor })
    }

    /// Resolves a struct name, also as the short `pkg.T` the signature
    /// table writes (`http.Request`).
    fn find(&self, name: &str) -> Option<&'static str> {
        self.structs.iter().map(|(n, _)| *n).find(|n| *n == name || n.rsplit('/').next() == Some(name))
    }
}

impl TypeSource for Table {
    type Id = TableType;

    fn named(&self, name: &str) -> Option<TableType> {
        match name.strip_prefix('*') {
            Some(s) => self.find(s).map(TableType::Ptr),
            None => self.find(name).map(TableType::Struct),
        }
    }

    fn name_of(&self, id: &TableType) -> String {
        match id {
            TableType::Struct(s) => s.to_string(),
            TableType::Ptr(s) => format!("*{s}"),
            TableType::Leaf(TableField::Str) => "string".into(),
            TableType::Leaf(TableField::Int(n)) => format!("int{}", u32::from(*n) * 8),
            TableType::Leaf(TableField::Ptr(s)) => format!("*{s}"),
        }
    }

    fn shape(&self, id: &TableType) -> Shape<TableType> {
        match *id {
            TableType::Ptr(s) => Shape::Pointer(Some(TableType::Struct(s))),
            TableType::Leaf(TableField::Ptr(s)) => Shape::Pointer(self.find(s).map(TableType::Struct)),
            TableType::Leaf(TableField::Str) => Shape::String,
            TableType::Leaf(TableField::Int(n)) => Shape::Int(u64::from(n)),
            TableType::Struct(s) => {
                let fields = self.structs.iter().find(|(n, _)| *n == s).map_or(&[][..], |(_, f)| *f);
                Shape::Struct(
                    fields.iter().map(|&(name, off, f)| (name.to_string(), off, Some(TableType::Leaf(f)))).collect(),
                )
            }
        }
    }

    fn complete(&self) -> bool {
        false
    }
}

/// Resolves the paths of `spec` whose parameter `symbol` has (`slots` is
/// its layout) against `types`. Paths of parameters it lacks are left out.
/// Errors are one line, naming the path.
pub fn resolve<T: TypeSource>(
    spec: &CaptureSpec,
    symbol: &str,
    slots: &[Slot],
    types: &T,
) -> Result<Vec<Resolved>, String> {
    let mut out = Vec::new();
    for path in &spec.paths {
        let Some(slot) = slots.iter().find(|s| !s.is_result && s.name == path.param) else { continue };
        out.push(resolve_one(path, symbol, slot, types)?);
    }
    merge(symbol, out, Vec::new())
}

fn resolve_one<T: TypeSource>(path: &FieldPathSpec, symbol: &str, slot: &Slot, types: &T) -> Result<Resolved, String> {
    let text = &path.text;
    let fail = |why: String| Err(format!("--capture {text}: {why}"));
    let stripped_hint = |what: String| {
        format!(
            "{what} (the binary has no DWARF: give --symbols with an unstripped build of the same source; \
             without it ktrace knows a few fields of net/http.Request and net/url.URL, for Go 1.19 and 1.26)"
        )
    };
    let Some(ty) = types.named(&slot.type_name) else {
        let what = format!("the type {} of {} in {symbol} is unknown", slot.type_name, path.param);
        return fail(if types.complete() { what } else { stripped_hint(what) });
    };
    let mut cur = match types.shape(&ty) {
        Shape::Pointer(Some(target)) if matches!(types.shape(&target), Shape::Struct(_)) => target,
        Shape::Struct(_) => {
            return fail(format!(
                "{} is a struct passed by value ({}); ktrace follows pointer parameters only",
                path.param, slot.type_name
            ));
        }
        Shape::Opaque(what) => {
            return fail(format!("{} is {what} ({}); ktrace does not look inside it", path.param, slot.type_name));
        }
        _ => {
            return fail(format!(
                "{} is a {}, not a pointer to a struct; --args captures it",
                path.param, slot.type_name
            ));
        }
    };
    let (base_ok, base) = match &slot.location {
        Location::Registers(r) if r.len() == 1 => (true, slot.location.clone()),
        Location::Stack(_) => (true, slot.location.clone()),
        _ => (false, slot.location.clone()),
    };
    if !base_ok {
        return fail(format!("cannot tell where {} is at the entry of {symbol}", path.param));
    }
    let mut secret = slot.secret || secrets::is_secret_name(&path.param);
    let mut derefs = 1;
    let mut hops = Vec::new();
    let mut off = 0u64;
    let mut walked = path.param.clone();
    // Promoted fields become explicit steps through their embedded field,
    // one level at a time, so a path grows by at most one name per field.
    let mut fields = path.fields.clone();
    let mut i = 0;
    while i < fields.len() {
        let field = fields[i].clone();
        let struct_name = types.name_of(&cur);
        let Shape::Struct(members) = types.shape(&cur) else {
            return fail(format!("{walked} ({struct_name}) has no fields"));
        };
        let Some((_, member_off, member_ty)) = members.iter().find(|(n, ..)| *n == field) else {
            let holders = promoted_from(types, &members, &types.embedded(&cur), &field);
            match holders.as_slice() {
                [one] if fields.len() < 2 * MAX_FIELDS => {
                    fields.insert(i, one.clone());
                    continue;
                }
                [] => {}
                many => {
                    return fail(format!(
                        "{struct_name}.{field} is ambiguous: embedded {} all have it; name one",
                        many.join(", ")
                    ));
                }
            }
            let names: Vec<&str> = members.iter().map(|(n, ..)| n.as_str()).filter(|n| !n.is_empty()).collect();
            let what = format!("{struct_name} has no field {field}; it has {}", list(&names));
            return fail(if types.complete() { what } else { stripped_hint(what) });
        };
        let field = &field;
        secret |= secrets::is_secret_name(field);
        walked = format!("{walked}.{field}");
        let at = off.checked_add(*member_off).filter(|&a| a <= u64::from(u32::MAX));
        let Some(at) = at else { return fail(format!("{walked}: offset out of range")) };
        let shape = member_ty.as_ref().map_or(Shape::Opaque("of an unknown type"), |t| types.shape(t));
        let ty_name = member_ty.as_ref().map_or_else(|| "?".to_string(), |t| types.name_of(t));
        if i + 1 == fields.len() {
            let leaf = match shape {
                Shape::String => Leaf::String,
                Shape::Int(size @ (1 | 2 | 4 | 8)) => Leaf::Int(size as u8),
                Shape::Pointer(_) => Leaf::Int(8),
                Shape::Struct(m) => {
                    let names: Vec<&str> = m.iter().map(|(n, ..)| n.as_str()).filter(|n| !n.is_empty()).collect();
                    return fail(format!("{walked} is a struct ({ty_name}); name one of its fields: {}", list(&names)));
                }
                Shape::Int(_) | Shape::Opaque(_) => {
                    let what = if let Shape::Opaque(w) = shape { w } else { "an integer of unusual size" };
                    return fail(format!(
                        "{walked} is {what} ({ty_name}); ktrace captures strings, integers, bools and pointers"
                    ));
                }
            };
            if leaf == Leaf::String && secrets::takes_tokens(symbol) {
                secret = true;
            }
            return Ok(Resolved { text: text.clone(), base, hops, leaf_off: at, leaf, secret });
        }
        match shape {
            Shape::Struct(_) => {
                off = at;
                cur = member_ty.clone().unwrap_or(cur);
            }
            Shape::Pointer(Some(target)) if matches!(types.shape(&target), Shape::Struct(_)) => {
                derefs += 1;
                if derefs > MAX_DEREFS {
                    return fail(format!(
                        "{walked} is the {derefs}th pointer on the path; ktrace follows at most {MAX_DEREFS} (the \
                         parameter's own included)"
                    ));
                }
                hops.push(at);
                off = 0;
                cur = target;
            }
            Shape::Pointer(_) => {
                return fail(format!("{walked} ({ty_name}) does not point at a struct ktrace knows"));
            }
            Shape::Opaque(what) => {
                return fail(format!(
                    "{walked} is {what} ({ty_name}); ktrace follows pointers to structs and inline structs, not \
                     interfaces, slices or maps"
                ));
            }
            Shape::String | Shape::Int(_) => {
                return fail(format!("{walked} is a {ty_name}, which has no fields"));
            }
        }
        i += 1;
    }
    fail("name at least one field".into())
}

/// The embedded fields of a struct (`members`, `embedded` naming the
/// embedded ones) whose struct, inline or pointed to, has a field `field`.
fn promoted_from<T: TypeSource>(
    types: &T,
    members: &[(String, u64, Option<T::Id>)],
    embedded: &[String],
    field: &str,
) -> Vec<String> {
    let has = |id: &T::Id| matches!(types.shape(id), Shape::Struct(m) if m.iter().any(|(n, ..)| n == field));
    members
        .iter()
        .filter(|(n, ..)| embedded.contains(n))
        .filter(|(_, _, ty)| match ty.as_ref().map(|t| types.shape(t)) {
            Some(Shape::Struct(_)) => ty.as_ref().is_some_and(has),
            Some(Shape::Pointer(Some(target))) => has(&target),
            _ => false,
        })
        .map(|(n, ..)| n.clone())
        .collect()
}

/// One function's paths from two sources (the user's `--capture` and a
/// preset's defaults), the first's first, without repeating a path;
/// fails past [`MAX_CAPTURES`] like [`resolve`].
pub fn merge(symbol: &str, mut first: Vec<Resolved>, second: Vec<Resolved>) -> Result<Vec<Resolved>, String> {
    for r in second {
        if !first.iter().any(|f| f.text == r.text) {
            first.push(r);
        }
    }
    if first.len() > MAX_CAPTURES {
        let texts: Vec<&str> = first.iter().map(|r| r.text.as_str()).collect();
        return Err(format!(
            "--capture: {} paths apply to {symbol} ({}); at most {MAX_CAPTURES} per function",
            first.len(),
            texts.join(", ")
        ));
    }
    Ok(first)
}

/// `a, b, c` (at most 24 names, then `…`).
fn list(names: &[&str]) -> String {
    if names.is_empty() {
        return "none ktrace can see".into();
    }
    let mut s = names.iter().take(24).copied().collect::<Vec<_>>().join(", ");
    if names.len() > 24 {
        s.push_str(", …");
    }
    s
}

/// Checks that every path's parameter is a parameter of some traced
/// function; `params` lists each function's parameter names. The error
/// names the parameters that exist, like `--filter` does.
pub fn check_params<'a>(spec: &CaptureSpec, params: impl IntoIterator<Item = &'a str> + Clone) -> Result<(), String> {
    for path in &spec.paths {
        if !params.clone().into_iter().any(|p| p == path.param) {
            let mut known: Vec<&str> = params.clone().into_iter().filter(|p| !p.starts_with(['~', '.'])).collect();
            known.sort_unstable();
            known.dedup();
            return Err(format!(
                "--capture {}: no traced function has a parameter named `{}`; they have: {} (names come from \
                 DWARF, or the table of known kube-apiserver signatures for stripped builds)",
                path.text,
                path.param,
                list(&known)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_and_refuses_bad_ones() {
        let s = CaptureSpec::parse("r.Method, r.URL.Path,r.Method").unwrap();
        assert_eq!(s.text(), "r.Method,r.URL.Path");
        assert_eq!(s.paths[1].fields, ["URL", "Path"]);
        for (bad, needle) in [
            ("", "an empty path"),
            ("r.Method,", "an empty path"),
            ("r", "name a field of r"),
            ("r..Path", "not a Go identifier"),
            ("r.URL[0]", "not a Go identifier"),
            ("1r.x", "not a Go identifier"),
            ("r.a.b.c.d.e.f.g.h.i", "at most 8"),
        ] {
            let e = CaptureSpec::parse(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    fn slot(name: &str, ty: &str) -> Slot {
        Slot {
            name: name.into(),
            type_name: ty.into(),
            is_result: false,
            location: Location::Registers(vec!["RDI"]),
            secret: false,
        }
    }

    fn table() -> Table {
        Table::for_release(Machine::X86_64, 26).unwrap()
    }

    #[test]
    fn the_table_resolves_method_and_url_path() {
        let spec = CaptureSpec::parse("r.Method,r.URL.Path,r.ContentLength,r.URL").unwrap();
        let slots = [slot("w", "net/http.ResponseWriter"), slot("r", "*net/http.Request")];
        let got = resolve(&spec, "p.(*H).ServeHTTP", &slots, &table()).unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!((got[0].hops.as_slice(), got[0].leaf_off, got[0].leaf), (&[][..], 0, Leaf::String));
        assert_eq!((got[1].hops.as_slice(), got[1].leaf_off, got[1].leaf), (&[16][..], 56, Leaf::String));
        assert_eq!((got[2].leaf_off, got[2].leaf), (88, Leaf::Int(8)));
        assert_eq!((got[3].leaf_off, got[3].leaf), (16, Leaf::Int(8)), "a pointer leaf is a number");
        assert!(got.iter().all(|r| r.base == Location::Registers(vec!["RDI"]) && !r.secret));
        // The short name the signature table writes works too.
        let short = [slot("req", "*http.Request")];
        let spec = CaptureSpec::parse("req.Host").unwrap();
        assert_eq!(resolve(&spec, "f", &short, &table()).unwrap()[0].leaf_off, 128);
    }

    #[test]
    fn a_field_the_table_lacks_suggests_symbols() {
        let spec = CaptureSpec::parse("r.Proto").unwrap();
        let e = resolve(&spec, "f", &[slot("r", "*net/http.Request")], &table()).unwrap_err();
        assert!(e.contains("net/http.Request has no field Proto; it has Method, URL"), "{e}");
        assert!(e.contains("--symbols"), "{e}");
        let e = resolve(&spec, "f", &[slot("r", "*x.T")], &table()).unwrap_err();
        assert!(e.contains("the type *x.T of r in f is unknown") && e.contains("--symbols"), "{e}");
        assert_eq!(Table::for_release(Machine::X86_64, 22).map(|t| t.minor), None);
    }

    #[test]
    fn paths_from_two_sources_merge_without_repeats() {
        let slots = [slot("r", "*net/http.Request")];
        let get = |p: &str| resolve(&CaptureSpec::parse(p).unwrap(), "f", &slots, &table()).unwrap();
        let merged = merge("f", get("r.Host,r.Method"), get("r.Method,r.URL.Path")).unwrap();
        assert_eq!(merged.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(), ["r.Host", "r.Method", "r.URL.Path"]);
        let e = merge("f", get("r.Host,r.RequestURI,r.URL.Host"), get("r.Method,r.URL.Path")).unwrap_err();
        assert!(e.contains("5 paths apply to f"), "{e}");
    }

    #[test]
    fn too_many_paths_for_one_function() {
        let spec = CaptureSpec::parse("r.Method,r.Host,r.URL.Path,r.URL.Host,r.RequestURI").unwrap();
        let e = resolve(&spec, "f", &[slot("r", "*net/http.Request")], &table()).unwrap_err();
        assert!(e.contains("5 paths apply to f") && e.contains("at most 4"), "{e}");
    }

    /// A self-made source: a chain of structs each pointing at the next
    /// (`A.Next -> B`, …), a self-referential struct, and opaque fields.
    struct Chain;
    impl TypeSource for Chain {
        type Id = String;
        fn named(&self, name: &str) -> Option<String> {
            Some(name.to_string())
        }
        fn name_of(&self, id: &String) -> String {
            id.clone()
        }
        fn shape(&self, id: &String) -> Shape<String> {
            if let Some(t) = id.strip_prefix('*') {
                return Shape::Pointer(Some(t.to_string()));
            }
            match id.as_str() {
                "string" => Shape::String,
                "int" => Shape::Int(8),
                "io.Reader" => Shape::Opaque("an interface"),
                "[]byte" => Shape::Opaque("a slice"),
                "Inline" => Shape::Struct(vec![("Name".into(), 8, Some("string".into()))]),
                "Amb" => Shape::Struct(vec![
                    ("Left".into(), 0, Some("Inline".into())),
                    ("Right".into(), 16, Some("*Inline".into())),
                ]),
                _ => Shape::Struct(vec![
                    ("Next".into(), 8, Some(format!("*{id}x"))),
                    ("Self".into(), 16, Some(format!("*{id}"))),
                    ("In".into(), 24, Some("Inline".into())),
                    ("Body".into(), 48, Some("io.Reader".into())),
                    ("Data".into(), 64, Some("[]byte".into())),
                    ("N".into(), 88, Some("int".into())),
                    ("Token".into(), 96, Some("string".into())),
                ]),
            }
        }
        fn complete(&self) -> bool {
            true
        }
        fn embedded(&self, id: &String) -> Vec<String> {
            match id.as_str() {
                "Amb" => vec!["Left".into(), "Right".into()],
                "Inline" | "string" | "int" => Vec::new(),
                _ => vec!["In".into(), "Self".into()],
            }
        }
    }

    fn one(path: &str) -> Result<Resolved, String> {
        let spec = CaptureSpec::parse(path).unwrap();
        resolve(&spec, "f", &[slot("a", "*T")], &Chain).map(|mut v| v.remove(0))
    }

    #[test]
    fn inline_structs_add_offsets_and_pointers_hop() {
        let r = one("a.In.Name").unwrap();
        assert_eq!((r.hops.as_slice(), r.leaf_off), (&[][..], 32));
        let r = one("a.Next.Next.In.Name").unwrap();
        assert_eq!((r.hops.as_slice(), r.leaf_off), (&[8, 8][..], 32));
        let r = one("a.Self.Self.Self.N").unwrap();
        assert_eq!((r.hops.as_slice(), r.leaf_off, r.leaf), (&[16, 16, 16][..], 88, Leaf::Int(8)));
    }

    /// Go promotes the fields of embedded fields: `a.Name` is
    /// `a.In.Name` when `In` is embedded, through a pointer too.
    #[test]
    fn promoted_fields_go_through_their_embedded_field() {
        let r = one("a.Name").unwrap();
        assert_eq!((r.hops.as_slice(), r.leaf_off, r.text.as_str()), (&[][..], 32, "a.Name"));
        let r = one("a.Next.Name").unwrap();
        assert_eq!((r.hops.as_slice(), r.leaf_off), (&[8][..], 32));
        let spec = CaptureSpec::parse("x.Name").unwrap();
        let e = resolve(&spec, "f", &[slot("x", "*Amb")], &Chain).unwrap_err();
        assert!(e.contains("Amb.Name is ambiguous: embedded Left, Right"), "{e}");
        let r = resolve(&CaptureSpec::parse("x.Right.Name").unwrap(), "f", &[slot("x", "*Amb")], &Chain).unwrap();
        assert_eq!((r[0].hops.as_slice(), r[0].leaf_off), (&[16][..], 8), "naming one resolves it");
    }

    #[test]
    fn limits_and_opaque_steps_are_refused() {
        let e = one("a.Self.Self.Self.Self.N").unwrap_err();
        assert!(e.contains("a.Self.Self.Self.Self is the 5th pointer") && e.contains("at most 4"), "{e}");
        let e = one("a.Body.X").unwrap_err();
        assert!(e.contains("a.Body is an interface (io.Reader)") && e.contains("not interfaces"), "{e}");
        let e = one("a.Data.X").unwrap_err();
        assert!(e.contains("a.Data is a slice"), "{e}");
        let e = one("a.Body").unwrap_err();
        assert!(e.contains("ktrace captures strings, integers, bools and pointers"), "{e}");
        let e = one("a.In").unwrap_err();
        assert!(e.contains("a.In is a struct (Inline); name one of its fields: Name"), "{e}");
        let e = one("a.N.X").unwrap_err();
        assert!(e.contains("a.N is a int, which has no fields"), "{e}");
        let e = one("a.Methd").unwrap_err();
        assert!(e.contains("--capture a.Methd: T has no field Methd; it has Next, Self, In, Body"), "{e}");
        assert!(!e.contains("--symbols"), "DWARF knows every field: {e}");
    }

    #[test]
    fn secret_names_anywhere_on_the_path_redact() {
        assert!(one("a.Token").unwrap().secret);
        assert!(one("a.Self.Token").unwrap().secret);
        assert!(!one("a.In.Name").unwrap().secret);
        let spec = CaptureSpec::parse("token.Name").unwrap();
        let got = resolve(&spec, "f", &[slot("token", "*Inline2")], &Chain).unwrap();
        assert!(got[0].secret, "the parameter's name marks the whole path");
        let spec = CaptureSpec::parse("bearerToken.In.Name").unwrap();
        assert!(resolve(&spec, "f", &[slot("bearerToken", "*T")], &Chain).unwrap()[0].secret);
        // Every string of a token authenticator is a token.
        let spec = CaptureSpec::parse("a.In.Name").unwrap();
        assert!(resolve(&spec, "p.(*A).AuthenticateToken", &[slot("a", "*T")], &Chain).unwrap()[0].secret);
    }

    #[test]
    fn parameters_that_are_not_struct_pointers_are_refused() {
        let spec = CaptureSpec::parse("a.X").unwrap();
        let e = resolve(&spec, "f", &[slot("a", "io.Reader")], &Chain).unwrap_err();
        assert!(e.contains("a is an interface (io.Reader)"), "{e}");
        let e = resolve(&spec, "f", &[slot("a", "Inline")], &Chain).unwrap_err();
        assert!(e.contains("passed by value"), "{e}");
        let e = resolve(&spec, "f", &[slot("a", "string")], &Chain).unwrap_err();
        assert!(e.contains("not a pointer to a struct"), "{e}");
    }

    #[test]
    fn unknown_parameters_name_the_ones_that_exist() {
        let spec = CaptureSpec::parse("r.Method,q.Method").unwrap();
        assert!(check_params(&CaptureSpec::parse("r.Method").unwrap(), ["w", "r"]).is_ok());
        let e = check_params(&spec, ["w", "r", "~r0", "a", "r"]).unwrap_err();
        assert!(
            e.contains("--capture q.Method: no traced function has a parameter named `q`; they have: a, r, w"),
            "{e}"
        );
    }
}
