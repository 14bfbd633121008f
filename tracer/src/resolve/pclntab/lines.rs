//! Whole pc-value tables: where [`Pclntab::pcvalue`] answers one pc, these
//! walk a table across its function, giving `[start, end) → value` runs.
//! `file.go:LINE` locations and inline trees are built on them.
//!
//! The pcfile and pcln tables attribute every instruction to the innermost
//! inlined function's position, so a line found here may lie in code that
//! was inlined into another function; that is what a user setting a
//! breakpoint on the line wants.

use std::collections::HashMap;

use super::{FuncFields, Malformed, Pclntab};

/// One run of a pc-value table: `value` holds for `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Run {
    pub start: u64,
    pub end: u64,
    pub value: i64,
}

/// The value of `runs` (sorted, disjoint) at `pc`.
pub(super) fn value_at(runs: &[Run], pc: u64) -> Option<i64> {
    let i = runs.partition_point(|r| r.end <= pc);
    runs.get(i).filter(|r| r.start <= pc).map(|r| r.value)
}

/// Instructions of one function that the tables attribute to a source line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineRange {
    /// Entry of the function whose code this is.
    pub function: u64,
    /// First address with this position.
    pub start: u64,
    /// One past the last address of the run.
    pub end: u64,
    /// Source file, as recorded (an absolute path or a module path).
    pub file: String,
    /// Source line.
    pub line: u32,
}

impl Pclntab<'_> {
    /// The runs of the pc-value table at `off` for the function spanning
    /// `entry..end`; empty when `off` is 0 (no table). Runs are clipped to
    /// the function, and each table step consumes at least two bytes, so the
    /// walk ends with the input.
    pub(super) fn runs(&self, off: u64, entry: u64, end: u64) -> Result<Vec<Run>, Malformed> {
        let mut out = Vec::new();
        let Some(mut steps) = self.pc_values(off, entry)? else { return Ok(out) };
        // Stop at the function's end before reading on: a table need not be
        // terminated past it.
        while steps.pc < end {
            let Some(step) = steps.next() else { break };
            let (start, next, value) = step?;
            let next = next.min(end);
            if next > start {
                out.push(Run { start, end: next, value });
            }
        }
        Ok(out)
    }

    /// Every run of instructions attributed to a line of a file for which
    /// `wants_file` is true, across all functions, sorted by function then
    /// address. Adjacent runs with the same position are merged.
    pub fn line_ranges(&self, wants_file: &mut dyn FnMut(&str) -> bool) -> Result<Vec<LineRange>, Malformed> {
        let mut out = Vec::new();
        let mut budget = self.whole.len().saturating_mul(2).saturating_add(1 << 20);
        let mut names: HashMap<u64, Option<std::sync::Arc<str>>> = HashMap::new();
        self.each_func(|entry, end, func| {
            self.function_lines(func, entry, end, wants_file, &mut names, &mut budget, &mut out)
        })?;
        Ok(out)
    }

    /// The `line_ranges` of one function.
    #[allow(clippy::too_many_arguments)] // private helper threading the caches of line_ranges
    fn function_lines(
        &self,
        func: &FuncFields,
        entry: u64,
        end: u64,
        wants_file: &mut dyn FnMut(&str) -> bool,
        names: &mut HashMap<u64, Option<std::sync::Arc<str>>>,
        budget: &mut usize,
        out: &mut Vec<LineRange>,
    ) -> Result<(), Malformed> {
        let files = self.runs(func.pcfile, entry, end)?;
        // File numbers of this function that name a wanted file.
        let mut wanted: HashMap<i64, Option<std::sync::Arc<str>>> = HashMap::new();
        for run in &files {
            if let std::collections::hash_map::Entry::Vacant(slot) = wanted.entry(run.value) {
                let name = self.file_name(run.value, func.cu_offset, names, budget)?;
                slot.insert(name.filter(|n| wants_file(n)));
            }
        }
        if wanted.values().all(Option::is_none) {
            return Ok(());
        }
        let lines = self.runs(func.pcln, entry, end)?;
        let mut li = 0;
        for run in &files {
            let Some(Some(file)) = wanted.get(&run.value) else { continue };
            // Both tables are sorted: intersect this file run with the line runs.
            while lines.get(li).is_some_and(|l| l.end <= run.start) {
                li += 1;
            }
            let mut j = li;
            while let Some(l) = lines.get(j).filter(|l| l.start < run.end) {
                let (start, stop) = (l.start.max(run.start), l.end.min(run.end));
                if let Ok(line) = u32::try_from(l.value)
                    && start < stop
                {
                    match out.last_mut() {
                        Some(last)
                            if last.function == entry
                                && last.end == start
                                && last.line == line
                                && *last.file == **file =>
                        {
                            last.end = stop;
                        }
                        _ => out.push(LineRange { function: entry, start, end: stop, file: file.to_string(), line }),
                    }
                }
                j += 1;
            }
        }
        Ok(())
    }

    /// File and line runs of the function spanning `entry..end`, for
    /// looking up the position of single instructions.
    pub(super) fn positions(&self, func: &FuncFields, entry: u64, end: u64) -> Result<(Vec<Run>, Vec<Run>), Malformed> {
        Ok((self.runs(func.pcfile, entry, end)?, self.runs(func.pcln, entry, end)?))
    }
}
