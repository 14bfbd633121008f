//! From a parsed spec to probe plans, for every kind of item: functions
//! (through [`spec::select_item`]), `file.go:LINE` locations (through the
//! pclntab's pcfile/pcln tables, inlined code included), and functions that
//! exist only as inlined copies (through the inline tree), which get one
//! plan per copy instead of a "no match".
//!
//! Reads the binary's tables through [`Binary`]; the planning itself is
//! [`Planner`]'s.

use std::ops::Range;

use super::{PlanError, Planner, ProbePlan, Target};
use crate::{
    resolve::{Binary, Function, InlinedCall, ResolveError},
    spec::{self, Item, SpecError},
};

/// Why a spec's items could not be planned. The three sources stay apart
/// because they mean different things to the user: a spec that matches
/// nothing or tables that do not read are bad input, a function whose code
/// cannot be probed is not.
#[derive(Debug, thiserror::Error)]
pub enum ItemsError {
    /// An item matched nothing, or named a line without code.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The binary's line or inline tables did not read.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// A matched function could not be planned.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// Plans every item of a spec, in order, without duplicates. An item that
/// matches nothing fails with the closest names; a line without code fails
/// with the nearest lines that have some.
pub fn plan_items(binary: &Binary, functions: &[Function], items: &[Item]) -> Result<Vec<ProbePlan>, ItemsError> {
    let planner = Planner::new(binary, functions);
    let mut inlined: Option<Vec<InlinedCall>> = None;
    let mut out: Vec<ProbePlan> = Vec::new();
    for item in items {
        let plans = match item {
            Item::FileLine { file, line } => line_plans(binary, &planner, functions, item, file, *line)?,
            _ => match spec::select_item(item, functions) {
                Ok(selected) => selected.into_iter().map(|f| planner.plan(f)).collect::<Result<Vec<_>, _>>()?,
                Err(no_match @ SpecError::NoMatch { .. }) => {
                    let calls = match &mut inlined {
                        Some(calls) => calls,
                        None => inlined.insert(binary.inlined_calls()?),
                    };
                    let plans = inlined_plans(&planner, functions, spec::select_inlined(item, calls))?;
                    if plans.is_empty() {
                        return Err(no_match.into());
                    }
                    plans
                }
                Err(other) => return Err(other.into()),
            },
        };
        for plan in plans {
            if !out.iter().any(|o| same_probe(o, &plan)) {
                out.push(plan);
            }
        }
    }
    Ok(out)
}

fn same_probe(a: &ProbePlan, b: &ProbePlan) -> bool {
    match (&a.target, &b.target) {
        (Target::Function, Target::Function) => a.function.entry == b.function.entry,
        (Target::Line { line: x, .. }, Target::Line { line: y, .. }) => a.entry.addr == b.entry.addr && x == y,
        (Target::Inlined(_), Target::Inlined(_)) => a.entry.addr == b.entry.addr,
        _ => false,
    }
}

/// The out-of-line function starting at `entry`.
pub fn function_at(functions: &[Function], entry: u64) -> Option<&Function> {
    let i = functions.partition_point(|f| f.entry < entry);
    functions.get(i).filter(|f| f.entry == entry)
}

/// One plan per inlined copy, at the copy's first instruction.
fn inlined_plans(
    planner: &Planner<'_>,
    functions: &[Function],
    calls: Vec<&InlinedCall>,
) -> Result<Vec<ProbePlan>, PlanError> {
    let mut out = Vec::with_capacity(calls.len());
    for call in calls {
        // Every caller the pclntab names is an out-of-line function; one
        // that is not in the list means the tables disagree: skip it rather
        // than probe an address nothing vouches for.
        let Some(caller) = function_at(functions, call.caller) else { continue };
        out.push(planner.plan_inlined(caller, call)?);
    }
    Ok(out)
}

/// One plan per function with code for `file`:`line`.
fn line_plans(
    binary: &Binary,
    planner: &Planner<'_>,
    functions: &[Function],
    item: &Item,
    file: &str,
    line: u32,
) -> Result<Vec<ProbePlan>, ItemsError> {
    let ranges = binary.line_ranges(&mut |f| spec::path_suffix(f, file))?;
    if ranges.is_empty() {
        return Err(SpecError::NoSuchFile { item: item.text(), file: file.to_string() }.into());
    }
    let mut out = Vec::new();
    // Sorted by function then address: one group per (function, file).
    let at_line: Vec<_> = ranges.iter().filter(|r| r.line == line).collect();
    for group in at_line.chunk_by(|a, b| a.function == b.function && a.file == b.file) {
        let Some(function) = function_at(functions, group[0].function) else { continue };
        let spans: Vec<Range<u64>> = group.iter().map(|r| r.start..r.end).collect();
        if let Some(plan) = planner.plan_line(function, &spans, &group[0].file, line)? {
            out.push(plan);
        }
    }
    if out.is_empty() {
        let before = ranges.iter().map(|r| r.line).filter(|&l| l < line).max();
        let after = ranges.iter().map(|r| r.line).filter(|&l| l > line).min();
        return Err(SpecError::LineHasNoCode { item: item.text(), before, after }.into());
    }
    Ok(out)
}
