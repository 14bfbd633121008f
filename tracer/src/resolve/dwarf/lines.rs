//! DWARF line programs, kept per unit: the file and line at a function's
//! entry (the fact pclntab also gives, so the sources can be compared), and
//! the runs of addresses attributed to a source line, which check the
//! pclntab's `file.go:LINE` answers independently.

use gimli::Unit;

use super::R;
use crate::resolve::LineRange;

/// One unit's line rows.
pub(super) struct LineTable {
    /// Address, file index, line, and whether the row ends a sequence;
    /// sorted by address, stable.
    rows: Vec<(u64, u64, u32, bool)>,
    /// File names by index, as full paths where the table allows.
    pub(super) files: Vec<Option<String>>,
}

impl LineTable {
    pub(super) fn read(dwarf: &gimli::Dwarf<R<'_>>, unit: &Unit<R<'_>>) -> gimli::Result<LineTable> {
        let mut table = LineTable { rows: Vec::new(), files: Vec::new() };
        let Some(program) = unit.line_program.clone() else { return Ok(table) };
        let header = program.header();
        // DWARF 4 numbers files from 1, DWARF 5 from 0; index as the rows do.
        let first = if header.version() >= 5 { 0 } else { 1 };
        table.files = (0..first).map(|_| None).collect();
        for f in header.file_names() {
            let name = dwarf.attr_string(unit, f.path_name()).ok().map(|s| String::from_utf8_lossy(&s).into_owned());
            let dir = f
                .directory(header)
                .and_then(|d| dwarf.attr_string(unit, d).ok())
                .map(|s| String::from_utf8_lossy(&s).into_owned());
            table.files.push(name.map(|n| match dir {
                Some(d) if !d.is_empty() && !n.starts_with('/') => format!("{d}/{n}"),
                _ => n,
            }));
        }
        let mut rows = program.rows();
        while let Some((_, row)) = rows.next_row()? {
            let line = row.line().and_then(|l| u32::try_from(l.get()).ok()).unwrap_or(0);
            table.rows.push((row.address(), row.file_index(), line, row.end_sequence()));
        }
        table.rows.sort_by_key(|r| r.0);
        Ok(table)
    }

    pub(super) fn file(&self, index: u64) -> Option<String> {
        usize::try_from(index).ok().and_then(|f| self.files.get(f).cloned().flatten())
    }

    /// File and line of the first row at exactly `addr`.
    pub(super) fn at(&self, addr: u64) -> (Option<String>, Option<u32>) {
        let i = self.rows.partition_point(|r| r.0 < addr);
        match self.rows.get(i..).unwrap_or_default().iter().take_while(|r| r.0 == addr).find(|r| !r.3) {
            Some(&(_, file, line, _)) => (self.file(file), Some(line).filter(|&l| l != 0)),
            None => (None, None),
        }
    }

    /// Runs `[row, next row)` whose file passes `wants_file`, with the
    /// function containing them found by `function_of`.
    pub(super) fn ranges(
        &self,
        wants_file: &mut dyn FnMut(&str) -> bool,
        function_of: &dyn Fn(u64) -> Option<u64>,
        out: &mut Vec<LineRange>,
    ) {
        let wanted: Vec<Option<String>> = self.files.iter().map(|f| f.clone().filter(|f| wants_file(f))).collect();
        for pair in self.rows.windows(2) {
            let [(start, file, line, end_seq), (end, ..)] = *pair else { continue };
            let Some(Some(name)) = usize::try_from(file).ok().and_then(|f| wanted.get(f)) else { continue };
            if end_seq || end <= start || line == 0 {
                continue;
            }
            let Some(function) = function_of(start) else { continue };
            match out.last_mut() {
                Some(last)
                    if last.function == function && last.end == start && last.line == line && last.file == *name =>
                {
                    last.end = end;
                }
                _ => out.push(LineRange { function, start, end, file: name.clone(), line }),
            }
        }
    }
}
