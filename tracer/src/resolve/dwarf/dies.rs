//! Reads of single DIEs by `.debug_info` offset, made when a caller asks:
//! a function's parameters, one type, one level of it. Nothing here is
//! kept beyond the call but the parsed unit headers of the units touched.

use std::{borrow::Cow, collections::HashMap, sync::Arc};

use gimli::{AttributeValue, DebugInfoOffset, DebuggingInformationEntry, DwTag, Unit, UnitOffset};

use super::{
    DW_AT_GO_EMBEDDED_FIELD, DW_AT_GO_KIND, MAX_PARAMS, MAX_TYPE_DEPTH, R, TypeKind, TypeShape, code_range, flag,
    is_type_tag, lines::LineTable, reference, string,
};

/// A type DIE as read from the sections; names borrow them.
pub(super) struct TypeDie<'a> {
    pub(super) tag: DwTag,
    pub(super) name: Option<Cow<'a, str>>,
    size: Option<u64>,
    pub(super) target: Option<u64>,
    go_kind: Option<u64>,
    encoding: Option<gimli::DwAte>,
    /// Struct members: name, type, offset.
    pub(super) members: Vec<(Cow<'a, str>, Option<u64>, u64)>,
    /// Indexes into `members` of the embedded fields.
    pub(super) embedded: Vec<usize>,
    /// Array element count, from the `DW_TAG_subrange_type` child.
    count: Option<u64>,
}

/// A formal parameter and its `.debug_info` offset.
type Located = (u64, RawParam);

#[derive(Clone, Default)]
struct RawParam {
    name: Option<String>,
    ty: Option<u64>,
    is_result: Option<bool>,
    origin: Option<u64>,
}

/// The sections of one [`super::Dwarf`] and the units parsed so far.
pub(super) struct Cx<'a> {
    pub(super) dwarf: gimli::Dwarf<R<'a>>,
    /// `.debug_info` offsets of the unit headers, ascending.
    units: &'a [u64],
    /// Whether `dwarf` has the line tables (else units are parsed without
    /// their line program, see [`unit`]).
    lines: bool,
    parsed: HashMap<u64, Unit<R<'a>>>,
    abbreviations: Abbreviations,
}

/// Abbreviation tables by `.debug_abbrev` offset: Go's units all share
/// one, which would otherwise be parsed again for each unit.
pub(super) type Abbreviations = HashMap<usize, Arc<gimli::Abbreviations>>;

impl<'a> Cx<'a> {
    pub(super) fn new(dwarf: gimli::Dwarf<R<'a>>, units: &'a [u64], lines: bool) -> Self {
        Cx { dwarf, units, lines, parsed: HashMap::new(), abbreviations: HashMap::new() }
    }

    /// Parses the unit holding `offset` (once) and gives its start and the
    /// offset within it; `None` when no unit holds it.
    fn locate(&mut self, offset: u64) -> Option<(u64, UnitOffset)> {
        let i = self.units.partition_point(|&u| u <= offset).checked_sub(1)?;
        let start = *self.units.get(i)?;
        if !self.parsed.contains_key(&start) {
            let at = DebugInfoOffset(usize::try_from(start).ok()?);
            let header = self.dwarf.debug_info.header_from_offset(at).ok()?;
            let unit = unit(&self.dwarf, header, self.lines, &mut self.abbreviations).ok()?;
            self.parsed.insert(start, unit);
        }
        let unit = self.parsed.get(&start)?;
        let at = DebugInfoOffset(usize::try_from(offset).ok()?).to_unit_offset(&unit.header)?;
        Some((start, at))
    }

    /// The type DIE at `offset` with its members; `None` when there is
    /// none or the DIE there is not a type.
    pub(super) fn type_die(&mut self, offset: u64) -> Option<TypeDie<'a>> {
        let (start, at) = self.locate(offset)?;
        let unit = self.parsed.get(&start)?;
        let dwarf = &self.dwarf;
        let mut cursor = unit.entries_at_offset(at).ok()?;
        let die = cursor.next_dfs().ok()??;
        if !is_type_tag(die.tag()) {
            return None;
        }
        let mut t = TypeDie {
            tag: die.tag(),
            name: name(dwarf, unit, die),
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
        if !die.has_children() {
            return Some(t);
        }
        let depth = die.depth();
        while let Ok(Some(child)) = cursor.next_dfs() {
            if child.depth() <= depth {
                break;
            }
            if child.depth() != depth + 1 {
                continue;
            }
            match child.tag() {
                gimli::DW_TAG_member => {
                    let at = child.attr_value(gimli::DW_AT_data_member_location).and_then(|v| v.udata_value());
                    let ty = child.attr_value(gimli::DW_AT_type).and_then(|v| reference(unit, v));
                    // Go writes constant offsets; any other form is not
                    // something ktrace can place, so the member is left
                    // out rather than given a made-up offset.
                    if let Some(at) = at {
                        if child.attr_value(DW_AT_GO_EMBEDDED_FIELD).is_some_and(|v| flag(&v)) {
                            t.embedded.push(t.members.len());
                        }
                        t.members.push((name(dwarf, unit, child).unwrap_or_default(), ty, at));
                    }
                }
                gimli::DW_TAG_subrange_type => {
                    t.count = child.attr_value(gimli::DW_AT_count).and_then(|v| v.udata_value());
                }
                _ => {}
            }
        }
        Some(t)
    }

    /// The name of the type DIE at `offset`.
    pub(super) fn type_name(&mut self, offset: u64) -> Option<Cow<'a, str>> {
        let (start, at) = self.locate(offset)?;
        let unit = self.parsed.get(&start)?;
        let die = unit.entry(at).ok()?;
        if !is_type_tag(die.tag()) {
            return None;
        }
        name(&self.dwarf, unit, &die)
    }

    /// Byte size, looking through typedefs; pointers are 8 bytes (amd64)
    /// when Go leaves the size out.
    pub(super) fn size(&mut self, mut offset: u64) -> Option<u64> {
        for _ in 0..MAX_TYPE_DEPTH {
            let t = self.type_die(offset)?;
            match (t.size, t.tag) {
                (Some(size), _) => return Some(size),
                (None, gimli::DW_TAG_pointer_type) => return Some(8),
                (None, gimli::DW_TAG_typedef) => offset = t.target?,
                _ => return None,
            }
        }
        None
    }

    pub(super) fn kind(&mut self, offset: u64, depth: usize, budget: &mut usize) -> TypeKind {
        if depth >= MAX_TYPE_DEPTH || *budget == 0 {
            return TypeKind::Other;
        }
        *budget -= 1;
        let Some(t) = self.type_die(offset) else { return TypeKind::Other };
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
                        (n.clone().into_owned(), kind, *off)
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

    /// One level of type `offset`, following typedefs (at most
    /// `MAX_TYPE_DEPTH` of them).
    pub(super) fn shape(&mut self, mut offset: u64) -> TypeShape {
        for _ in 0..MAX_TYPE_DEPTH {
            let Some(t) = self.type_die(offset) else { return TypeShape::Other };
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
                gimli::DW_TAG_pointer_type => TypeShape::Pointer { target: t.target.map(super::TypeId) },
                gimli::DW_TAG_structure_type if name == "string" => TypeShape::String,
                gimli::DW_TAG_structure_type if name.starts_with("[]") => TypeShape::Slice,
                gimli::DW_TAG_structure_type if name == "runtime.iface" || name == "runtime.eface" => {
                    TypeShape::Interface
                }
                gimli::DW_TAG_structure_type => TypeShape::Struct {
                    members: t
                        .members
                        .iter()
                        .map(|(n, ty, off)| (n.clone().into_owned(), *off, ty.map(super::TypeId)))
                        .collect(),
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

    /// The name a function with code at `offset` goes by: its own, or its
    /// abstract origin's (a named subprogram).
    pub(super) fn function_name(&mut self, offset: u64) -> Option<String> {
        let (start, at) = self.locate(offset)?;
        let unit = self.parsed.get(&start)?;
        let die = unit.entry(at).ok()?;
        if die.tag() != gimli::DW_TAG_subprogram {
            return None;
        }
        if let Some(name) = name(&self.dwarf, unit, &die) {
            return Some(name.into_owned());
        }
        let origin = die.attr_value(gimli::DW_AT_abstract_origin).and_then(|v| reference(unit, v))?;
        let (start, at) = self.locate(origin)?;
        let unit = self.parsed.get(&start)?;
        let die = unit.entry(at).ok()?;
        if die.tag() != gimli::DW_TAG_subprogram {
            return None;
        }
        name(&self.dwarf, unit, &die).map(Cow::into_owned)
    }

    /// The entry address of the function with code at `offset`.
    pub(super) fn entry(&mut self, offset: u64) -> Option<u64> {
        let (start, at) = self.locate(offset)?;
        let unit = self.parsed.get(&start)?;
        let die = unit.entry(at).ok()?;
        code_range(&self.dwarf, unit, &die).map(|(entry, _)| entry)
    }

    /// Whether the function with code at `offset` is generated code (an
    /// ABI wrapper, which DWARF names like the function it wraps): its
    /// file, from the line table at its entry or else its declaration, is
    /// `<autogenerated>`. Needs a `Cx` with the line tables.
    pub(super) fn is_wrapper(&mut self, offset: u64) -> bool {
        if !self.lines {
            return false;
        }
        let Some((start, at)) = self.locate(offset) else { return false };
        let Some(unit) = self.parsed.get(&start) else { return false };
        let Ok(die) = unit.entry(at) else { return false };
        let Some((entry, _)) = code_range(&self.dwarf, unit, &die) else { return false };
        let Ok(lines) = LineTable::read(&self.dwarf, unit) else { return false };
        let (mut file, _) = lines.at(entry);
        if file.is_none() {
            let decl = die.attr_value(gimli::DW_AT_decl_file).and_then(|v| v.udata_value());
            file = decl.and_then(|i| lines.file(i));
        }
        file.is_some_and(|f| f.ends_with("<autogenerated>"))
    }

    /// The subprogram at `offset`: its abstract origin and its formal
    /// parameters (direct children, at most `MAX_PARAMS`) with their
    /// offsets; `None` when the DIE there is not a subprogram.
    fn subprogram(&mut self, offset: u64) -> Option<(Option<u64>, Vec<Located>)> {
        let (start, at) = self.locate(offset)?;
        let unit = self.parsed.get(&start)?;
        let dwarf = &self.dwarf;
        let mut cursor = unit.entries_at_offset(at).ok()?;
        let die = cursor.next_dfs().ok()??;
        if die.tag() != gimli::DW_TAG_subprogram {
            return None;
        }
        let origin = die.attr_value(gimli::DW_AT_abstract_origin).and_then(|v| reference(unit, v));
        let mut params = Vec::new();
        if !die.has_children() {
            return Some((origin, params));
        }
        let depth = die.depth();
        while let Ok(Some(child)) = cursor.next_dfs() {
            if child.depth() <= depth {
                break;
            }
            // Deeper ones are parameters of inlined calls inside the body.
            if child.depth() != depth + 1 || child.tag() != gimli::DW_TAG_formal_parameter {
                continue;
            }
            if params.len() >= MAX_PARAMS {
                break;
            }
            let Some(offset) = super::global(unit, child.offset()) else { continue };
            params.push((offset, raw_param(dwarf, unit, child)));
        }
        Some((origin, params))
    }

    /// The formal parameter at `offset`.
    fn param(&mut self, offset: u64) -> Option<RawParam> {
        let (start, at) = self.locate(offset)?;
        let unit = self.parsed.get(&start)?;
        let die = unit.entry(at).ok()?;
        (die.tag() == gimli::DW_TAG_formal_parameter).then(|| raw_param(&self.dwarf, unit, &die))
    }

    /// Name, type DIE and whether it is a result of each parameter of the
    /// function with code at `offset`, in declaration order.
    ///
    /// A concrete copy of an inlined function lists only the parameters
    /// that have locations, pointing at the abstract origin for their name
    /// and type, while the origin may lack the results: take the origin's
    /// list, then the concrete copy's own additions.
    pub(super) fn params_of(&mut self, offset: u64) -> Vec<(String, Option<u64>, bool)> {
        let Some((origin, own)) = self.subprogram(offset) else { return Vec::new() };
        let abstract_params = origin.and_then(|o| self.subprogram(o)).map(|(_, p)| p).unwrap_or_default();
        let abstract_offsets: Vec<u64> = abstract_params.iter().map(|p| p.0).collect();
        let mut raw: Vec<RawParam> = abstract_params.into_iter().map(|p| p.1).collect();
        raw.extend(own.into_iter().map(|p| p.1).filter(|p| p.origin.is_none_or(|o| !abstract_offsets.contains(&o))));
        // Go 1.26 can list one parameter twice in optimized code
        // (`~r0` of etcd3.(*store).Create in kube-apiserver 1.36): Go names
        // are unique per signature (blanks become `~pN`), so a repeated name
        // is the same value and only the first is kept.
        let mut seen = std::collections::HashSet::new();
        raw.into_iter()
            .map(|p| {
                let origin = p.origin.and_then(|o| self.param(o));
                let origin = origin.as_ref();
                let name = p.name.or_else(|| origin?.name.clone()).unwrap_or_default();
                let ty = p.ty.or_else(|| origin?.ty);
                let is_result = p.is_result.or_else(|| origin?.is_result).unwrap_or(false);
                (name, ty, is_result)
            })
            .filter(|(name, ..)| name.is_empty() || seen.insert(name.clone()))
            .collect()
    }
}

fn raw_param(dwarf: &gimli::Dwarf<R<'_>>, unit: &Unit<R<'_>>, die: &DebuggingInformationEntry<R<'_>>) -> RawParam {
    RawParam {
        name: die.attr_value(gimli::DW_AT_name).and_then(|v| string(dwarf, unit, v)),
        ty: die.attr_value(gimli::DW_AT_type).and_then(|v| reference(unit, v)),
        is_result: die.attr_value(gimli::DW_AT_variable_parameter).map(|v| flag(&v)),
        origin: die.attr_value(gimli::DW_AT_abstract_origin).and_then(|v| reference(unit, v)),
    }
}

/// `DW_AT_name`, borrowed from the sections when it is UTF-8.
fn name<'a>(
    dwarf: &gimli::Dwarf<R<'a>>,
    unit: &Unit<R<'a>>,
    die: &DebuggingInformationEntry<R<'a>>,
) -> Option<Cow<'a, str>> {
    let value = die.attr_value(gimli::DW_AT_name)?;
    dwarf.attr_string(unit, value).ok().map(|s| String::from_utf8_lossy(s.slice()))
}

/// Parses the unit of `header`, its abbreviations through `cache`.
/// Without `lines` its line program is left
/// unread, as `.debug_line` may not be loaded: only the bases that string
/// and address forms need are taken from the unit DIE (as gimli's own
/// `Unit::new` does).
pub(super) fn unit<'a>(
    dwarf: &gimli::Dwarf<R<'a>>,
    header: gimli::UnitHeader<R<'a>>,
    lines: bool,
    cache: &mut Abbreviations,
) -> gimli::Result<Unit<R<'a>>> {
    let abbreviations = match cache.get(&header.debug_abbrev_offset().0) {
        Some(a) => Arc::clone(a),
        None => {
            let a = dwarf.abbreviations(&header)?;
            cache.insert(header.debug_abbrev_offset().0, Arc::clone(&a));
            a
        }
    };
    if lines {
        return Unit::new_with_abbreviations(dwarf, header, abbreviations);
    }
    let encoding = header.encoding();
    let mut str_offsets_base = gimli::DebugStrOffsetsBase::default_for_encoding_and_file(encoding, dwarf.file_type);
    let mut addr_base = gimli::DebugAddrBase(0);
    let mut loclists_base = gimli::DebugLocListsBase::default_for_encoding_and_file(encoding, dwarf.file_type);
    let mut rnglists_base = gimli::DebugRngListsBase::default_for_encoding_and_file(encoding, dwarf.file_type);
    {
        let mut cursor = header.entries(&abbreviations);
        let root = cursor.next_dfs()?.ok_or(gimli::Error::MissingUnitDie)?;
        for attr in root.attrs() {
            match (attr.name(), attr.value()) {
                (gimli::DW_AT_str_offsets_base, AttributeValue::DebugStrOffsetsBase(b)) => str_offsets_base = b,
                (gimli::DW_AT_addr_base | gimli::DW_AT_GNU_addr_base, AttributeValue::DebugAddrBase(b)) => {
                    addr_base = b
                }
                (gimli::DW_AT_loclists_base, AttributeValue::DebugLocListsBase(b)) => loclists_base = b,
                (gimli::DW_AT_rnglists_base | gimli::DW_AT_GNU_ranges_base, AttributeValue::DebugRngListsBase(b)) => {
                    rnglists_base = b
                }
                _ => {}
            }
        }
    }
    let dwo_id = match header.type_() {
        gimli::UnitType::Skeleton(id) | gimli::UnitType::SplitCompilation(id) => Some(id),
        _ => None,
    };
    Ok(Unit {
        header,
        abbreviations,
        name: None,
        comp_dir: None,
        low_pc: 0,
        str_offsets_base,
        addr_base,
        loclists_base,
        rnglists_base,
        line_program: None,
        dwo_id,
    })
}
