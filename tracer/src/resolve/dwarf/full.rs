//! Every function with code, or every inlined call, read in one pass over
//! all units when first asked for (tests comparing DWARF with the pclntab).
//! Each unit's line table is read for the pass and dropped after it.

use std::collections::HashMap;

use gimli::Unit;

use super::{R, code_range, global, inline, is_type_tag, lines::LineTable, reference, string};
use crate::resolve::{Function, InlinedCall, Source};

pub(super) struct RawSub {
    name: Option<String>,
    origin: Option<u64>,
    pub(super) entry: u64,
    end: u64,
    file: Option<String>,
    line: Option<u32>,
}

/// One pass over every DIE, before abstract origins are resolved to names.
#[derive(Default)]
struct Raw {
    /// Names of every subprogram, abstract ones included.
    sub_names: HashMap<u64, String>,
    subs: Vec<RawSub>,
    /// Whether to read the inlined calls.
    read_inlined: bool,
    inlined: Vec<inline::RawInlined>,
}

/// What the DIE walk is currently inside of.
enum Parent {
    None,
    Sub { depth: isize, index: Option<usize> },
    Type { depth: isize },
}

/// The functions, sorted by entry.
pub(super) fn functions(dwarf: &gimli::Dwarf<R<'_>>) -> gimli::Result<Vec<Function>> {
    let raw = Raw::read(dwarf, false)?;
    let mut functions = Vec::new();
    for sub in &raw.subs {
        let Some(name) = sub.name.clone().or_else(|| raw.sub_names.get(&sub.origin?).cloned()) else { continue };
        functions.push(Function {
            name,
            entry: sub.entry,
            end: sub.end,
            file: sub.file.as_deref().map(Into::into),
            line: sub.line,
            source: Source::Dwarf,
        });
    }
    functions.sort_by(|a, b| a.entry.cmp(&b.entry).then_with(|| a.name.cmp(&b.name)));
    Ok(functions)
}

/// The inlined calls, sorted by caller then address.
pub(super) fn inlined_calls(dwarf: &gimli::Dwarf<R<'_>>) -> gimli::Result<Vec<InlinedCall>> {
    let raw = Raw::read(dwarf, true)?;
    Ok(inline::finish(&raw.inlined, &raw.subs, &raw.sub_names))
}

impl Raw {
    fn read(dwarf: &gimli::Dwarf<R<'_>>, read_inlined: bool) -> gimli::Result<Raw> {
        let mut raw = Raw { read_inlined, ..Raw::default() };
        let mut headers = dwarf.units();
        while let Some(header) = headers.next()? {
            let unit = dwarf.unit(header)?;
            let lines = LineTable::read(dwarf, &unit)?;
            raw.read_unit(dwarf, &unit, &lines)?;
        }
        Ok(raw)
    }

    fn read_unit(&mut self, dwarf: &gimli::Dwarf<R<'_>>, unit: &Unit<R<'_>>, lines: &LineTable) -> gimli::Result<()> {
        let mut parent = Parent::None;
        let mut cursor = unit.entries();
        while let Some(die) = cursor.next_dfs()? {
            let depth = die.depth();
            let Some(offset) = global(unit, die.offset()) else { continue };
            match &parent {
                Parent::Sub { depth: d, .. } | Parent::Type { depth: d } if depth <= *d => parent = Parent::None,
                _ => {}
            }
            match die.tag() {
                gimli::DW_TAG_subprogram => {
                    let name = die.attr_value(gimli::DW_AT_name).and_then(|v| string(dwarf, unit, v));
                    if let Some(n) = &name {
                        self.sub_names.insert(offset, n.clone());
                    }
                    let index = code_range(dwarf, unit, die).map(|(entry, end)| {
                        let (mut file, line) = lines.at(entry);
                        if file.is_none() {
                            let decl = die.attr_value(gimli::DW_AT_decl_file).and_then(|v| v.udata_value());
                            file = decl.and_then(|i| lines.file(i));
                        }
                        let origin = die.attr_value(gimli::DW_AT_abstract_origin).and_then(|v| reference(unit, v));
                        self.subs.push(RawSub { name, origin, entry, end, file, line });
                        self.subs.len() - 1
                    });
                    parent = Parent::Sub { depth, index };
                }
                gimli::DW_TAG_inlined_subroutine if self.read_inlined => {
                    let Parent::Sub { index: Some(caller), .. } = &parent else { continue };
                    if let Some(i) = inline::read(dwarf, unit, die, *caller, lines)? {
                        self.inlined.push(i);
                    }
                }
                tag if is_type_tag(tag) && die.has_children() => parent = Parent::Type { depth },
                _ => {}
            }
        }
        Ok(())
    }
}
