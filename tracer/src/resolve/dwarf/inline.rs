//! `DW_TAG_inlined_subroutine`: where the compiler inlined a function into
//! another, as DWARF records it (the abstract origin names the callee; the
//! ranges give its code; `DW_AT_call_file`/`DW_AT_call_line` the call site).
//! The pclntab's inline tree says the same thing; tests compare the two.

use std::collections::HashMap;

use gimli::{AttributeValue, DebuggingInformationEntry, Unit};

use super::{R, full::RawSub, lines::LineTable, reference};
use crate::resolve::InlinedCall;

/// An inlined call before abstract origins are resolved to names.
pub(super) struct RawInlined {
    /// Index of the enclosing concrete subprogram in `Raw::subs`.
    caller: usize,
    origin: Option<u64>,
    addr: u64,
    call_file: Option<String>,
    call_line: Option<u32>,
}

/// Reads one inlined-subroutine DIE; `None` when it has no code.
pub(super) fn read<'d>(
    dwarf: &gimli::Dwarf<R<'d>>,
    unit: &Unit<R<'d>>,
    die: &DebuggingInformationEntry<R<'d>>,
    caller: usize,
    lines: &LineTable,
) -> gimli::Result<Option<RawInlined>> {
    let mut ranges = dwarf.die_ranges(unit, die)?;
    let mut addr: Option<u64> = None;
    while let Some(r) = ranges.next()? {
        if r.begin < r.end {
            addr = Some(addr.map_or(r.begin, |a| a.min(r.begin)));
        }
    }
    let Some(addr) = addr else { return Ok(None) };
    // gimli hands file attributes over as `FileIndex`, not plain data.
    let udata = |at| match die.attr_value(at) {
        Some(AttributeValue::FileIndex(i)) => Some(i),
        other => other.and_then(|v: AttributeValue<R<'d>>| v.udata_value()),
    };
    Ok(Some(RawInlined {
        caller,
        origin: die.attr_value(gimli::DW_AT_abstract_origin).and_then(|v| reference(unit, v)),
        addr,
        call_file: udata(gimli::DW_AT_call_file).and_then(|i| lines.file(i)),
        call_line: udata(gimli::DW_AT_call_line).and_then(|l| u32::try_from(l).ok()),
    }))
}

/// Names each inlined call after its abstract origin and its caller after
/// the enclosing subprogram, sorted by caller then address.
pub(super) fn finish(raw: &[RawInlined], subs: &[RawSub], names: &HashMap<u64, String>) -> Vec<InlinedCall> {
    let mut out: Vec<InlinedCall> = raw
        .iter()
        .filter_map(|i| {
            Some(InlinedCall {
                caller: subs.get(i.caller)?.entry,
                callee: names.get(&i.origin?)?.clone(),
                addr: i.addr,
                call_file: i.call_file.clone(),
                call_line: i.call_line,
                file: None,
            })
        })
        .collect();
    out.sort_by(|a, b| a.caller.cmp(&b.caller).then(a.addr.cmp(&b.addr)));
    out
}
