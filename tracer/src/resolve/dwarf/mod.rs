//! DWARF: functions, their parameters with Go types, and struct member
//! offsets, read from the target binary's `.debug_*` sections (zlib
//! compressed since Go 1.19, or `.zdebug_*` from older linkers).
//!
//! Everything is read once into owned tables so callers hold no borrow of
//! the file. Parameter types are resolved lazily, per function, on the
//! first [`Dwarf::params`] call: a run needs a few functions' types, not
//! every function's. The input is hostile: decompression is size-capped, type
//! resolution is depth- and node-bounded (Go's types are recursive through
//! pointers and struct members), and malformed data is a typed
//! [`ResolveError::Corrupt`], never a panic.

use std::{borrow::Cow, collections::HashMap, path::Path, sync::OnceLock};

use gimli::{AttributeValue, DwAt, DwTag, EndianSlice, LittleEndian, SectionId, Unit};
use object::{Object, ObjectSection};

mod inline;
mod lines;

use lines::LineTable;

use super::{Function, InlinedCall, LineRange, ResolveError, Source};

type R<'a> = EndianSlice<'a, LittleEndian>;

/// Past this many nested types the rest is [`TypeKind::Other`]: deeper
/// nesting is not passed in registers anyway, and it stops cycles.
const MAX_TYPE_DEPTH: usize = 16;
/// Type nodes one parameter may expand to, so a hostile wide struct of
/// wide structs cannot blow up exponentially within the depth cap.
const MAX_TYPE_NODES: usize = 1024;
/// Parameters kept per subprogram. Go allows far fewer in practice; the
/// cap keeps matching a concrete copy against its origin cheap.
const MAX_PARAMS: usize = 256;
/// Decompressed sections may be at most this many times the file size.
/// Real DWARF compresses 3–6×; this only stops decompression bombs.
const MAX_INFLATE_RATIO: u64 = 64;

/// Go's `DW_AT_go_kind` (cmd/internal/dwarf), holding a `reflect.Kind`.
const DW_AT_GO_KIND: DwAt = DwAt(0x2900);
/// Go's `DW_AT_go_embedded_field`: the member is an embedded field.
const DW_AT_GO_EMBEDDED_FIELD: DwAt = DwAt(0x2903);

/// What the Go register ABI needs to know about a value's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeKind {
    /// Integer, bool or uintptr of `size` bytes (one integer register).
    Int {
        /// Byte size.
        size: u64,
    },
    /// Floating point of `size` bytes (one float register).
    Float {
        /// Byte size.
        size: u64,
    },
    /// A pointer, or a Go type that is one underneath: map, chan, func,
    /// `unsafe.Pointer`.
    Pointer,
    /// `string`: pointer and length.
    String,
    /// `[]T`: pointer, length, capacity.
    Slice,
    /// Any interface (`runtime.iface` or `runtime.eface`): two words.
    Interface,
    /// A struct, with its fields in order. Complex numbers are a struct of
    /// two floats, as the ABI assigns them.
    Struct {
        /// Field name, kind and byte offset.
        fields: Vec<(String, TypeKind, u64)>,
    },
    /// A fixed-size array.
    Array {
        /// Element kind.
        elem: Box<TypeKind>,
        /// Element count.
        len: u64,
    },
    /// Unknown, unresolvable, or nested past the resolution caps.
    Other,
}

/// A type of the DWARF, by its `.debug_info` offset, for walking
/// `--capture` field paths one step at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TypeId(u64);

/// One level of a type, typedefs followed: what a field path step needs.
/// Members and pointer targets are ids, looked up only if the path goes
/// there, so nothing here recurses however the types nest or cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeShape {
    /// Integer, bool or uintptr of `size` bytes.
    Int {
        /// Byte size.
        size: u64,
    },
    /// Floating point or complex.
    Float,
    /// A pointer; `target` is `None` for `unsafe.Pointer` or an unknown target.
    Pointer {
        /// The pointed-to type.
        target: Option<TypeId>,
    },
    /// `string`.
    String,
    /// A struct and its members in order.
    Struct {
        /// Name, byte offset and type of each member.
        members: Vec<(String, u64, Option<TypeId>)>,
    },
    /// An interface.
    Interface,
    /// A slice.
    Slice,
    /// A map.
    Map,
    /// A channel.
    Chan,
    /// A func value.
    Func,
    /// A fixed-size array.
    Array,
    /// Unknown, or a typedef chain past the depth cap.
    Other,
}

/// One formal parameter or result of a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// Source name; Go names unnamed results `~r0`, `~r1`, ….
    pub name: String,
    /// Go type name, e.g. `context.Context`, `*k8s.io/…/etcd3.store`.
    pub type_name: String,
    /// Byte size of the value (0 when DWARF does not say).
    pub size: u64,
    /// A result, not an argument (`DW_AT_variable_parameter` in Go's DWARF).
    pub is_result: bool,
    /// The type's shape for register assignment.
    pub kind: TypeKind,
}

/// The DWARF facts ktrace uses, read from one binary.
#[derive(Debug, Default)]
pub struct Dwarf {
    functions: Vec<Function>,
    params: HashMap<String, LazyParams>,
    structs: HashMap<String, Vec<(String, u64)>>,
    inlined: Vec<InlinedCall>,
    lines: Vec<LineTable>,
    types: Types,
}

/// One function's parameters, named but with their types not yet
/// resolved. Resolving every parameter type of every function (struct
/// types field by field) was half the time of reading a big binary's DWARF
/// (1.4 s of 3.2 s for kube-apiserver), and a run needs a few functions'.
#[derive(Debug, Default)]
struct LazyParams {
    /// Name, type DIE, and whether it is a result, in declaration order.
    unresolved: Vec<(String, Option<u64>, bool)>,
    resolved: OnceLock<Vec<Param>>,
}

/// Type DIEs by `.debug_info` offset.
#[derive(Default)]
struct Types(HashMap<u64, TypeDie>);

impl std::fmt::Debug for Types {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Types({})", self.0.len())
    }
}

impl std::fmt::Debug for LineTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LineTable")
    }
}

impl Dwarf {
    /// Functions with code (`DW_TAG_subprogram` with `low_pc`), sorted by
    /// entry. File and line are those of the line table at the entry.
    pub fn functions(&self) -> &[Function] {
        &self.functions
    }

    /// Parameters then results of the function named `symbol`, in
    /// declaration order. Their types are resolved on the first call for
    /// each function.
    pub fn params(&self, symbol: &str) -> Option<&[Param]> {
        let lazy = self.params.get(symbol)?;
        let resolved = lazy.resolved.get_or_init(|| {
            lazy.unresolved
                .iter()
                .map(|(name, ty, is_result)| {
                    let mut budget = MAX_TYPE_NODES;
                    Param {
                        name: name.clone(),
                        type_name: ty.and_then(|t| self.types.0.get(&t)?.name.clone()).unwrap_or_default(),
                        size: ty.and_then(|t| self.types.size(t)).unwrap_or(0),
                        is_result: *is_result,
                        kind: ty.map_or(TypeKind::Other, |t| self.types.kind(t, 0, &mut budget)),
                    }
                })
                .collect()
        });
        Some(resolved)
    }

    /// Every `DW_TAG_inlined_subroutine` inside a function with code, sorted
    /// by caller then address: `addr` is the lowest address of its ranges,
    /// `file` is left unset (DWARF names the callee's file only through
    /// its abstract origin's declaration).
    pub fn inlined_calls(&self) -> &[InlinedCall] {
        &self.inlined
    }

    /// Runs of addresses the line programs attribute to lines of files for
    /// which `wants_file` is true, each with the function containing it,
    /// sorted by function then address.
    pub fn line_ranges(&self, wants_file: &mut dyn FnMut(&str) -> bool) -> Vec<LineRange> {
        let function_of = |addr: u64| {
            let i = self.functions.partition_point(|f| f.entry <= addr);
            i.checked_sub(1).and_then(|i| self.functions.get(i)).filter(|f| addr < f.end).map(|f| f.entry)
        };
        let mut out = Vec::new();
        for table in &self.lines {
            table.ranges(wants_file, &function_of, &mut out);
        }
        out.sort_by(|a, b| a.function.cmp(&b.function).then(a.start.cmp(&b.start)));
        out
    }

    /// Byte offset of `member` in the struct type named `type_name`, e.g.
    /// `runtime.g`.`goid`.
    pub fn struct_member_offset(&self, type_name: &str, member: &str) -> Option<u64> {
        self.structs.get(type_name)?.iter().find(|(n, _)| n == member).map(|&(_, off)| off)
    }

    /// The type named `name` (e.g. `*net/http.Request`), the one at the
    /// lowest offset when several DIEs share the name. A linear scan: a
    /// session looks up one type per `--capture` parameter, and an index of
    /// every type name would cost memory on every run.
    pub fn type_named(&self, name: &str) -> Option<TypeId> {
        self.types
            .0
            .iter()
            .filter(|(_, t)| t.name.as_deref() == Some(name))
            .map(|(&o, _)| TypeId(o))
            .min_by_key(|t| t.0)
    }

    /// Like [`Dwarf::type_named`], also taking a short name with only the
    /// last element of its package path (`*http.Request` for
    /// `*net/http.Request`, as the signature table for stripped builds
    /// writes them) when no type has the exact name.
    pub fn type_named_loosely(&self, name: &str) -> Option<TypeId> {
        if let Some(id) = self.type_named(name) {
            return Some(id);
        }
        let (star, short) = name.strip_prefix('*').map_or(("", name), |s| ("*", s));
        if short.contains('/') || !short.contains('.') {
            return None;
        }
        // A pointer's name starts with `*`: a short name matches a pointer
        // only when it is one itself.
        let matches = |t: &str| {
            let t = match t.strip_prefix('*') {
                Some(pointee) if star == "*" => pointee,
                None if star.is_empty() => t,
                _ => return false,
            };
            t.strip_suffix(short).is_some_and(|p| p.ends_with('/'))
        };
        self.types
            .0
            .iter()
            .filter(|(_, t)| t.name.as_deref().is_some_and(matches))
            .map(|(&o, _)| TypeId(o))
            .min_by_key(|t| t.0)
    }

    /// Names of the embedded fields of struct type `id` (typedefs
    /// followed), whose fields Go promotes.
    pub fn type_embedded(&self, id: TypeId) -> Vec<&str> {
        let mut offset = id.0;
        for _ in 0..MAX_TYPE_DEPTH {
            let Some(t) = self.types.0.get(&offset) else { break };
            match (t.tag, t.target) {
                (gimli::DW_TAG_typedef, Some(next)) => offset = next,
                (gimli::DW_TAG_structure_type, _) => {
                    return t.embedded.iter().filter_map(|&i| t.members.get(i)).map(|m| m.0.as_str()).collect();
                }
                _ => break,
            }
        }
        Vec::new()
    }

    /// The Go name of a type.
    pub fn type_name(&self, id: TypeId) -> Option<&str> {
        self.types.0.get(&id.0)?.name.as_deref()
    }

    /// One level of type `id`, following typedefs (at most
    /// `MAX_TYPE_DEPTH` of them).
    pub fn type_shape(&self, id: TypeId) -> TypeShape {
        let mut offset = id.0;
        for _ in 0..MAX_TYPE_DEPTH {
            let Some(t) = self.types.0.get(&offset) else { return TypeShape::Other };
            // reflect.Kind values (Go's DW_AT_go_kind) decide when present.
            match t.go_kind {
                Some(17) => return TypeShape::Array,
                Some(18) => return TypeShape::Chan,
                Some(19) => return TypeShape::Func,
                Some(20) => return TypeShape::Interface,
                Some(21) => return TypeShape::Map,
                Some(23) => return TypeShape::Slice,
                Some(24) => return TypeShape::String,
                Some(26) => return TypeShape::Pointer { target: None },
                _ => {}
            }
            let name = t.name.as_deref().unwrap_or("");
            return match t.tag {
                gimli::DW_TAG_typedef => match t.target {
                    Some(next) => {
                        offset = next;
                        continue;
                    }
                    None => TypeShape::Other,
                },
                gimli::DW_TAG_pointer_type => TypeShape::Pointer { target: t.target.map(TypeId) },
                gimli::DW_TAG_structure_type if name == "string" => TypeShape::String,
                gimli::DW_TAG_structure_type if name.starts_with("[]") => TypeShape::Slice,
                gimli::DW_TAG_structure_type if name == "runtime.iface" || name == "runtime.eface" => {
                    TypeShape::Interface
                }
                gimli::DW_TAG_structure_type => TypeShape::Struct {
                    members: t.members.iter().map(|(n, ty, off)| (n.clone(), *off, ty.map(TypeId))).collect(),
                },
                gimli::DW_TAG_array_type => TypeShape::Array,
                gimli::DW_TAG_base_type => match (t.encoding, t.size) {
                    (_, None | Some(0)) => TypeShape::Other,
                    (Some(gimli::DW_ATE_float | gimli::DW_ATE_complex_float), _) => TypeShape::Float,
                    (_, Some(size)) => TypeShape::Int { size },
                },
                _ => TypeShape::Other,
            };
        }
        TypeShape::Other
    }

    /// Reads the DWARF of the ELF image `data`; `Ok(None)` when it has no
    /// `.debug_info` (e.g. built with `-w`).
    pub(super) fn load(path: &Path, data: &[u8]) -> Result<Option<Dwarf>, ResolveError> {
        let corrupt = |reason: String| ResolveError::Corrupt { path: path.to_path_buf(), table: ".debug_info", reason };
        let file = object::File::parse(data).map_err(|e| corrupt(format!("ELF: {e}")))?;
        if file.section_by_name(".debug_info").is_none() {
            return Ok(None);
        }
        let limit = (data.len() as u64).saturating_mul(MAX_INFLATE_RATIO);
        let sections = gimli::DwarfSections::load(|id: SectionId| -> Result<Cow<'_, [u8]>, ResolveError> {
            // object falls back to `.zdebug_*` by itself.
            let Some(section) = file.section_by_name(id.name()) else { return Ok(Cow::Borrowed(&[])) };
            let compressed = section.compressed_data().map_err(|e| corrupt(format!("{}: {e}", id.name())))?;
            if compressed.uncompressed_size > limit {
                return Err(corrupt(format!(
                    "{}: claims {} bytes uncompressed",
                    id.name(),
                    compressed.uncompressed_size
                )));
            }
            compressed.decompress().map_err(|e| corrupt(format!("{}: {e}", id.name())))
        })?;
        let dwarf = sections.borrow(|s| EndianSlice::new(s, LittleEndian));
        let raw = Raw::read(&dwarf).map_err(|e| corrupt(e.to_string()))?;
        Ok(Some(raw.finish()))
    }
}

/// A type DIE, kept by its `.debug_info` offset.
struct TypeDie {
    tag: DwTag,
    name: Option<String>,
    size: Option<u64>,
    target: Option<u64>,
    go_kind: Option<u64>,
    encoding: Option<gimli::DwAte>,
    /// Struct members: name, type, offset.
    members: Vec<(String, Option<u64>, u64)>,
    /// Indexes into `members` of the embedded fields.
    embedded: Vec<usize>,
    /// Array element count, from the `DW_TAG_subrange_type` child.
    count: Option<u64>,
}

#[derive(Clone, Default)]
struct RawParam {
    name: Option<String>,
    ty: Option<u64>,
    is_result: Option<bool>,
    origin: Option<u64>,
}

struct RawSub {
    name: Option<String>,
    origin: Option<u64>,
    entry: u64,
    end: u64,
    file: Option<String>,
    line: Option<u32>,
    params: Vec<RawParam>,
}

/// One pass over every DIE, before references between them are resolved.
#[derive(Default)]
struct Raw {
    types: HashMap<u64, TypeDie>,
    /// Every formal parameter, for concrete copies that only point at
    /// their abstract origin.
    param_dies: HashMap<u64, RawParam>,
    /// Names of every subprogram, abstract ones included.
    sub_names: HashMap<u64, String>,
    /// Parameter offsets of every subprogram, for concrete out-of-line
    /// copies of inlined functions, whose parameter list may be partial.
    sub_params: HashMap<u64, Vec<u64>>,
    subs: Vec<RawSub>,
    inlined: Vec<inline::RawInlined>,
    line_tables: Vec<LineTable>,
}

/// What the DIE walk is currently inside of.
enum Parent {
    None,
    Sub { depth: isize, offset: u64, index: Option<usize> },
    Type { depth: isize, offset: u64 },
}

impl Raw {
    fn read(dwarf: &gimli::Dwarf<R<'_>>) -> gimli::Result<Raw> {
        let mut raw = Raw::default();
        let mut headers = dwarf.units();
        while let Some(header) = headers.next()? {
            let unit = dwarf.unit(header)?;
            let lines = LineTable::read(dwarf, &unit)?;
            raw.read_unit(dwarf, &unit, &lines)?;
            raw.line_tables.push(lines);
        }
        Ok(raw)
    }

    fn read_unit(&mut self, dwarf: &gimli::Dwarf<R<'_>>, unit: &Unit<R<'_>>, lines: &LineTable) -> gimli::Result<()> {
        let mut parent = Parent::None;
        let mut cursor = unit.entries();
        while let Some(die) = cursor.next_dfs()? {
            let depth = die.depth();
            let Some(offset) = global(unit, die.offset()) else { continue };
            let name = || die.attr_value(gimli::DW_AT_name).and_then(|v| string(dwarf, unit, v));
            match &parent {
                Parent::Sub { depth: d, .. } | Parent::Type { depth: d, .. } if depth <= *d => parent = Parent::None,
                _ => {}
            }
            match die.tag() {
                gimli::DW_TAG_subprogram => {
                    let name = name();
                    if let Some(n) = &name {
                        self.sub_names.insert(offset, n.clone());
                    }
                    // DWARF 5 (Go 1.25+) writes addresses as indexes into
                    // `.debug_addr` (DW_FORM_addrx); attr_address reads both.
                    let address =
                        |v: Option<AttributeValue<R<'_>>>| v.and_then(|v| dwarf.attr_address(unit, v).ok().flatten());
                    let low = address(die.attr_value(gimli::DW_AT_low_pc));
                    let index = match (low, die.attr_value(gimli::DW_AT_high_pc)) {
                        (Some(entry), Some(high)) => {
                            let end = match address(Some(high)) {
                                Some(end) => Some(end),
                                None => high.udata_value().and_then(|len| entry.checked_add(len)),
                            };
                            end.filter(|&end| end > entry).map(|end| {
                                let (mut file, line) = lines.at(entry);
                                if file.is_none() {
                                    let decl = die.attr_value(gimli::DW_AT_decl_file).and_then(|v| v.udata_value());
                                    file = decl.and_then(|i| lines.file(i));
                                }
                                let origin =
                                    die.attr_value(gimli::DW_AT_abstract_origin).and_then(|v| reference(unit, v));
                                self.subs.push(RawSub { name, origin, entry, end, file, line, params: Vec::new() });
                                self.subs.len() - 1
                            })
                        }
                        _ => None,
                    };
                    parent = Parent::Sub { depth, offset, index };
                }
                gimli::DW_TAG_inlined_subroutine => {
                    let Parent::Sub { index: Some(caller), .. } = &parent else { continue };
                    if let Some(i) = inline::read(dwarf, unit, die, *caller, lines)? {
                        self.inlined.push(i);
                    }
                }
                gimli::DW_TAG_formal_parameter => {
                    let Parent::Sub { depth: d, offset: sub, index } = &parent else { continue };
                    if depth != d + 1 {
                        continue; // a parameter of an inlined call inside the body
                    }
                    let param = RawParam {
                        name: name(),
                        ty: die.attr_value(gimli::DW_AT_type).and_then(|v| reference(unit, v)),
                        is_result: die.attr_value(gimli::DW_AT_variable_parameter).map(|v| flag(&v)),
                        origin: die.attr_value(gimli::DW_AT_abstract_origin).and_then(|v| reference(unit, v)),
                    };
                    let siblings = self.sub_params.entry(*sub).or_default();
                    if siblings.len() >= MAX_PARAMS {
                        continue;
                    }
                    siblings.push(offset);
                    if let Some(s) = index.and_then(|i| self.subs.get_mut(i)) {
                        s.params.push(param.clone());
                    }
                    self.param_dies.insert(offset, param);
                }
                gimli::DW_TAG_member | gimli::DW_TAG_subrange_type => {
                    let Parent::Type { depth: d, offset: ty } = &parent else { continue };
                    let Some(t) = self.types.get_mut(ty).filter(|_| depth == d + 1) else { continue };
                    if die.tag() == gimli::DW_TAG_member {
                        let at = die.attr_value(gimli::DW_AT_data_member_location).and_then(|v| v.udata_value());
                        let ty = die.attr_value(gimli::DW_AT_type).and_then(|v| reference(unit, v));
                        // Go writes constant offsets; any other form is not
                        // something ktrace can place, so the member is left
                        // out rather than given a made-up offset.
                        if let Some(at) = at {
                            if die.attr_value(DW_AT_GO_EMBEDDED_FIELD).is_some_and(|v| flag(&v)) {
                                t.embedded.push(t.members.len());
                            }
                            t.members.push((name().unwrap_or_default(), ty, at));
                        }
                    } else {
                        t.count = die.attr_value(gimli::DW_AT_count).and_then(|v| v.udata_value());
                    }
                }
                tag @ (gimli::DW_TAG_base_type
                | gimli::DW_TAG_pointer_type
                | gimli::DW_TAG_structure_type
                | gimli::DW_TAG_typedef
                | gimli::DW_TAG_array_type
                | gimli::DW_TAG_subroutine_type
                | gimli::DW_TAG_unspecified_type) => {
                    let t = TypeDie {
                        tag,
                        name: name(),
                        size: die.attr_value(gimli::DW_AT_byte_size).and_then(|v| v.udata_value()),
                        target: die.attr_value(gimli::DW_AT_type).and_then(|v| reference(unit, v)),
                        go_kind: die.attr_value(DW_AT_GO_KIND).and_then(|v| v.udata_value()),
                        encoding: match die.attr_value(gimli::DW_AT_encoding) {
                            Some(AttributeValue::Encoding(e)) => Some(e),
                            _ => None,
                        },
                        members: Vec::new(),
                        embedded: Vec::new(),
                        count: None,
                    };
                    self.types.insert(offset, t);
                    if die.has_children() {
                        parent = Parent::Type { depth, offset };
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Dwarf {
        let mut out = Dwarf::default();
        for t in self.types.values() {
            if let (gimli::DW_TAG_structure_type, Some(name)) = (t.tag, &t.name) {
                let members = t.members.iter().map(|(n, _, off)| (n.clone(), *off)).collect();
                out.structs.entry(name.clone()).or_insert(members);
            }
        }
        // Names whose parameters so far come from an ABI wrapper, which
        // DWARF names like the function it wraps but gives no parameters.
        let mut from_wrapper = std::collections::HashSet::new();
        for sub in &self.subs {
            let Some(name) = sub.name.clone().or_else(|| self.sub_names.get(&sub.origin?).cloned()) else { continue };
            let params = LazyParams { unresolved: self.params_of(sub), resolved: OnceLock::new() };
            out.functions.push(Function {
                name: name.clone(),
                entry: sub.entry,
                end: sub.end,
                file: sub.file.clone(),
                line: sub.line,
                source: Source::Dwarf,
            });
            // Go ≤ 1.18 can emit a function twice (golang/go#51725): keep
            // the first, unless it was a wrapper.
            let wrapper = sub.file.as_deref().is_some_and(|f| f.ends_with("<autogenerated>"));
            if !out.params.contains_key(&name) || (from_wrapper.contains(&name) && !wrapper) {
                if wrapper {
                    from_wrapper.insert(name.clone());
                } else {
                    from_wrapper.remove(&name);
                }
                out.params.insert(name, params);
            }
        }
        out.functions.sort_by(|a, b| a.entry.cmp(&b.entry).then_with(|| a.name.cmp(&b.name)));
        out.inlined = inline::finish(&self.inlined, &self.subs, &self.sub_names);
        out.lines = self.line_tables;
        out.types = Types(std::mem::take(&mut self.types));
        out
    }

    /// A concrete copy of an inlined function lists only the parameters
    /// that have locations, pointing at the abstract origin for their name
    /// and type, while the origin may lack the results: take the origin's
    /// list, then the concrete copy's own additions.
    fn params_of(&self, sub: &RawSub) -> Vec<(String, Option<u64>, bool)> {
        let abstract_params = sub.origin.and_then(|o| self.sub_params.get(&o)).map_or(&[][..], Vec::as_slice);
        let mut raw: Vec<RawParam> = abstract_params.iter().filter_map(|o| self.param_dies.get(o).cloned()).collect();
        let own = sub.params.iter().filter(|p| p.origin.is_none_or(|o| !abstract_params.contains(&o)));
        raw.extend(own.cloned());
        // Go 1.26 can list one parameter twice in optimized code
        // (`~r0` of etcd3.(*store).Create in kube-apiserver 1.36): Go names
        // are unique per signature (blanks become `~pN`), so a repeated name
        // is the same value and only the first is kept.
        let mut seen = std::collections::HashSet::new();
        raw.into_iter()
            .map(|p| {
                let origin = p.origin.and_then(|o| self.param_dies.get(&o));
                let name = p.name.or_else(|| origin?.name.clone()).unwrap_or_default();
                let ty = p.ty.or_else(|| origin?.ty);
                let is_result = p.is_result.or_else(|| origin?.is_result).unwrap_or(false);
                (name, ty, is_result)
            })
            .filter(|(name, ..)| name.is_empty() || seen.insert(name.clone()))
            .collect()
    }
}

impl Types {
    /// Byte size, looking through typedefs; pointers are 8 bytes (amd64)
    /// when Go leaves the size out.
    fn size(&self, mut offset: u64) -> Option<u64> {
        for _ in 0..MAX_TYPE_DEPTH {
            let t = self.0.get(&offset)?;
            match (t.size, t.tag) {
                (Some(size), _) => return Some(size),
                (None, gimli::DW_TAG_pointer_type) => return Some(8),
                (None, gimli::DW_TAG_typedef) => offset = t.target?,
                _ => return None,
            }
        }
        None
    }

    fn kind(&self, offset: u64, depth: usize, budget: &mut usize) -> TypeKind {
        if depth >= MAX_TYPE_DEPTH || *budget == 0 {
            return TypeKind::Other;
        }
        *budget -= 1;
        let Some(t) = self.0.get(&offset) else { return TypeKind::Other };
        // reflect.Kind values (Go's DW_AT_go_kind) decide when present.
        match t.go_kind {
            Some(20) => return TypeKind::Interface,
            Some(23) => return TypeKind::Slice,
            Some(24) => return TypeKind::String,
            Some(18 | 19 | 21 | 22 | 26) => return TypeKind::Pointer,
            _ => {}
        }
        let name = t.name.as_deref().unwrap_or("");
        match t.tag {
            gimli::DW_TAG_typedef => t.target.map_or(TypeKind::Other, |n| self.kind(n, depth + 1, budget)),
            gimli::DW_TAG_pointer_type => TypeKind::Pointer,
            gimli::DW_TAG_structure_type if name == "string" => TypeKind::String,
            gimli::DW_TAG_structure_type if name.starts_with("[]") => TypeKind::Slice,
            gimli::DW_TAG_structure_type if name == "runtime.iface" || name == "runtime.eface" => TypeKind::Interface,
            gimli::DW_TAG_structure_type => TypeKind::Struct {
                fields: t
                    .members
                    .iter()
                    .map(|(n, ty, off)| {
                        let kind = ty.map_or(TypeKind::Other, |ty| self.kind(ty, depth + 1, budget));
                        (n.clone(), kind, *off)
                    })
                    .collect(),
            },
            gimli::DW_TAG_array_type => TypeKind::Array {
                elem: Box::new(t.target.map_or(TypeKind::Other, |e| self.kind(e, depth + 1, budget))),
                len: t.count.unwrap_or(0),
            },
            gimli::DW_TAG_base_type => match (t.encoding, t.size) {
                (_, None | Some(0)) => TypeKind::Other,
                (Some(gimli::DW_ATE_float), Some(size)) => TypeKind::Float { size },
                (Some(gimli::DW_ATE_complex_float), Some(size)) => {
                    let half = size / 2;
                    TypeKind::Struct {
                        fields: vec![
                            ("real".into(), TypeKind::Float { size: half }, 0),
                            ("imag".into(), TypeKind::Float { size: half }, half),
                        ],
                    }
                }
                (_, Some(size)) => TypeKind::Int { size },
            },
            _ => TypeKind::Other,
        }
    }
}

fn global(unit: &Unit<R<'_>>, offset: gimli::UnitOffset) -> Option<u64> {
    offset.to_debug_info_offset(&unit.header).map(|o| o.0 as u64)
}

/// A reference to another DIE as a `.debug_info` offset.
fn reference(unit: &Unit<R<'_>>, value: AttributeValue<R<'_>>) -> Option<u64> {
    match value {
        AttributeValue::UnitRef(o) => global(unit, o),
        AttributeValue::DebugInfoRef(o) => Some(o.0 as u64),
        _ => None,
    }
}

fn string(dwarf: &gimli::Dwarf<R<'_>>, unit: &Unit<R<'_>>, value: AttributeValue<R<'_>>) -> Option<String> {
    dwarf.attr_string(unit, value).ok().map(|s| String::from_utf8_lossy(&s).into_owned())
}

fn flag(value: &AttributeValue<R<'_>>) -> bool {
    match value {
        AttributeValue::Flag(f) => *f,
        other => other.udata_value().is_some_and(|v| v != 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{
        abi::{Location, Slot},
        fields::{self, CaptureSpec},
    };

    fn die(tag: DwTag, name: &str, target: Option<u64>, members: Vec<(String, Option<u64>, u64)>) -> TypeDie {
        TypeDie {
            tag,
            name: Some(name.into()),
            size: None,
            target,
            go_kind: None,
            encoding: None,
            members,
            embedded: Vec::new(),
            count: None,
        }
    }

    /// Hostile type graphs: a typedef cycle, and a struct whose member
    /// points back at it. Each step looks one level deep, so neither loops.
    fn hostile() -> Dwarf {
        let mut types = HashMap::new();
        types.insert(1, die(gimli::DW_TAG_typedef, "A", Some(2), vec![]));
        types.insert(2, die(gimli::DW_TAG_typedef, "B", Some(1), vec![]));
        types.insert(3, die(gimli::DW_TAG_pointer_type, "*Node", Some(4), vec![]));
        let members = vec![("Next".into(), Some(3), 8), ("Loop".into(), Some(1), 16), ("Self".into(), Some(4), 24)];
        types.insert(4, die(gimli::DW_TAG_structure_type, "Node", None, members));
        types.insert(5, die(gimli::DW_TAG_pointer_type, "*example.com/p.Thing", Some(6), vec![]));
        types.insert(6, die(gimli::DW_TAG_structure_type, "example.com/p.Thing", None, vec![]));
        Dwarf { types: Types(types), ..Default::default() }
    }

    #[test]
    fn cyclic_types_resolve_to_other_or_stop_at_the_limits() {
        let d = hostile();
        assert_eq!(d.type_shape(TypeId(1)), TypeShape::Other, "a typedef cycle ends at the depth cap");
        assert_eq!(d.type_shape(TypeId(99)), TypeShape::Other, "a dangling reference");
        assert_eq!(d.type_named("*Node"), Some(TypeId(3)));
        assert_eq!(d.type_named_loosely("*Node"), Some(TypeId(3)));
        assert_eq!(d.type_named_loosely("*x.Node"), None);
        assert_eq!(d.type_named_loosely("*p.Thing"), Some(TypeId(5)), "the signature table's short names");
        assert_eq!(d.type_named_loosely("p.Thing"), Some(TypeId(6)));
        assert_eq!(d.type_named_loosely("*q.Thing"), None);
        let slot = Slot {
            name: "n".into(),
            type_name: "*Node".into(),
            is_result: false,
            location: Location::Registers(vec!["RAX"]),
            secret: false,
        };
        let run =
            |path: &str| fields::resolve(&CaptureSpec::parse(path).unwrap(), "f", std::slice::from_ref(&slot), &d);
        let e = run("n.Next.Next.Next.Next.Next.Next").unwrap_err();
        assert!(e.contains("5th pointer"), "{e}");
        let e = run("n.Loop.X").unwrap_err();
        assert!(e.contains("n.Loop is a type ktrace does not model"), "{e}");
        // A struct that contains itself by value: each step is one member,
        // and a path names at most 8.
        let e = run("n.Self.Self.Self.Self.Self.Self.Self.Self").unwrap_err();
        assert!(e.contains("n.Self.Self.Self.Self.Self.Self.Self.Self is a struct (Node)"), "{e}");
        assert!(CaptureSpec::parse("n.Self.Self.Self.Self.Self.Self.Self.Self.Self").is_err());
    }
}
