//! Go's `.gopclntab`: the runtime's own function table, which survives
//! `-ldflags=-s -w` and is therefore the main source on release binaries.
//! It gives every function's name, entry, extent, and the file and line of
//! its entry. This module only interprets bytes handed to it; locating the
//! table inside an ELF file is `elf`'s job.
//!
//! Layout facts come from the Go runtime (`runtime/symtab.go` `pcHeader` and
//! `runtime/runtime2.go` `_func`, per version) and the Go 1.2 "Runtime Symbol
//! Information" design doc. The table is treated as hostile: every offset is
//! bounds-checked, every loop is bounded by the input, and every failure is a
//! [`Malformed`].

mod inline;
mod lines;

use std::{collections::HashMap, path::Path, sync::Arc};

pub use inline::InlinedCall;
pub use lines::LineRange;

use super::{Function, Machine, ResolveError, Source};

/// A table failed validation. `elf` turns it into [`ResolveError::Corrupt`]
/// once it knows the file's path; the raw-byte parsers cannot.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("corrupt {table}: {reason}")]
pub struct Malformed {
    /// Which table, e.g. `.gopclntab`.
    pub table: &'static str,
    /// What was wrong.
    pub reason: String,
}

impl Malformed {
    pub(crate) fn new(table: &'static str, reason: impl Into<String>) -> Self {
        Malformed { table, reason: reason.into() }
    }

    pub(crate) fn at(self, path: &Path) -> ResolveError {
        ResolveError::Corrupt { path: path.to_path_buf(), table: self.table, reason: self.reason }
    }
}

const TABLE: &str = ".gopclntab";

fn bad(reason: impl Into<String>) -> Malformed {
    Malformed::new(TABLE, reason)
}

/// The table layouts, named after the Go release that introduced them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PclnVersion {
    /// Go 1.2–1.15: one flat table, absolute entry addresses.
    Go12,
    /// Go 1.16–1.17: split sub-tables (names, CUs, files, pc-values).
    Go116,
    /// Go 1.18–1.19: entries become 32-bit offsets from `textStart`.
    Go118,
    /// Go 1.20+: the 1.18 layout under a new magic.
    Go120,
}

impl PclnVersion {
    /// Recognises a header magic (little-endian `u32` at offset 0).
    pub fn from_magic(magic: u32) -> Option<Self> {
        match magic {
            0xffff_fffb => Some(Self::Go12),
            0xffff_fffa => Some(Self::Go116),
            0xffff_fff0 => Some(Self::Go118),
            0xffff_fff1 => Some(Self::Go120),
            _ => None,
        }
    }

    fn relative_entries(self) -> bool {
        matches!(self, Self::Go118 | Self::Go120)
    }
}

/// A validated `.gopclntab` header with its sub-tables located. Borrowing
/// the bytes keeps parsing zero-copy; [`Pclntab::functions`] does the work.
#[derive(Clone, Debug)]
pub struct Pclntab<'a> {
    version: PclnVersion,
    quantum: u8,
    ptr_size: usize,
    nfunc: usize,
    text_start: Option<u64>,
    text_base: u64,
    /// `nameoff` is relative to this (the whole table before 1.16).
    funcnames: &'a [u8],
    cutab: &'a [u8],
    /// Go 1.2: the `u32` file-offset array; later: the NUL-separated names.
    filetab: &'a [u8],
    /// Go 1.2 resolves file-name offsets against the whole table.
    whole: &'a [u8],
    pctab: &'a [u8],
    /// The functab entries start here; `funcoff` is relative to `func_base`.
    functab: &'a [u8],
    func_base: &'a [u8],
}

/// How many functions [`Pclntab::functions_with`] reads between two calls
/// of its `release`.
pub const RELEASE_EVERY: usize = 8192;

/// Parses a `.gopclntab` header. `data` starts at the header and may run
/// past the table's end (when it was found by scanning a segment).
///
/// `text_base_hint` is the address of the start of Go text; Go 1.18+ store
/// entries relative to the header's `textStart`, and when that field is 0
/// (newer linkers leave it for the runtime to take from moduledata) the hint
/// is used instead. Without either, entries are offsets from text start.
pub fn parse_pclntab(data: &[u8], text_base_hint: Option<u64>) -> Result<Pclntab<'_>, Malformed> {
    let Some(&[m0, m1, m2, m3, pad0, pad1, quantum, ptr_size]) = data.get(..8) else {
        return Err(bad("shorter than its 8-byte header"));
    };
    let magic = u32::from_le_bytes([m0, m1, m2, m3]);
    let version = PclnVersion::from_magic(magic).ok_or_else(|| bad(format!("unknown magic {magic:#010x}")))?;
    if pad0 != 0 || pad1 != 0 {
        return Err(bad("header padding is not zero"));
    }
    if !matches!(quantum, 1 | 2 | 4) {
        return Err(bad(format!("instruction quantum {quantum} is not 1, 2 or 4")));
    }
    let ptr_size = usize::from(ptr_size);
    if !matches!(ptr_size, 4 | 8) {
        return Err(bad(format!("pointer size {ptr_size} is not 4 or 8")));
    }
    let word = |i: usize| read_uint(data, 8 + i * ptr_size, ptr_size).ok_or_else(|| bad("header is truncated"));
    let tail = |off: u64, what: &str| {
        usize::try_from(off)
            .ok()
            .and_then(|o| data.get(o..))
            .ok_or_else(|| bad(format!("{what} offset {off:#x} is out of bounds")))
    };
    let nfunc = word(0)?;
    let mut table = Pclntab {
        version,
        quantum,
        ptr_size,
        nfunc: 0,
        text_start: None,
        text_base: 0,
        funcnames: data,
        cutab: &[],
        filetab: &[],
        whole: data,
        pctab: data,
        functab: &[],
        func_base: data,
    };
    match version {
        PclnVersion::Go12 => {
            table.functab = tail(8 + ptr_size as u64, "functab")?;
            table.func_base = data;
        }
        PclnVersion::Go116 | PclnVersion::Go118 | PclnVersion::Go120 => {
            // Go 1.18 inserted textStart after nfiles; everything after shifts by one word.
            let shift = usize::from(version.relative_entries());
            if version.relative_entries() {
                let text_start = word(2)?;
                table.text_start = Some(text_start);
                table.text_base = if text_start != 0 { text_start } else { text_base_hint.unwrap_or(0) };
            }
            table.funcnames = tail(word(2 + shift)?, "funcnametab")?;
            table.cutab = tail(word(3 + shift)?, "cutab")?;
            table.filetab = tail(word(4 + shift)?, "filetab")?;
            table.pctab = tail(word(5 + shift)?, "pctab")?;
            table.functab = tail(word(6 + shift)?, "functab")?;
            table.func_base = table.functab;
        }
    }
    // Bound nfunc by what the functab can hold before multiplying, so the
    // allocation in functions() is capped by the input size.
    let (entry_size, last_size) = table.functab_sizes();
    let nfunc = usize::try_from(nfunc).ok().filter(|&n| n <= table.functab.len() / entry_size);
    let nfunc = nfunc.ok_or_else(|| bad("function count exceeds the functab"))?;
    if nfunc * entry_size + last_size > table.functab.len() {
        return Err(bad("functab is truncated"));
    }
    table.nfunc = nfunc;
    if version == PclnVersion::Go12 {
        // Go 1.2: a u32 offset to the file table follows the final entry;
        // the file table's first u32 is its own length, file 0 is unused.
        let at = nfunc * entry_size + last_size;
        let off = read_uint(table.functab, at, 4).ok_or_else(|| bad("file table offset is truncated"))?;
        let files = tail(off, "filetab")?;
        let count = read_uint(files, 0, 4).ok_or_else(|| bad("file table is truncated"))?;
        let len = usize::try_from(count).ok().and_then(|c| c.checked_mul(4)).filter(|&l| l <= files.len());
        table.filetab = len.and_then(|l| files.get(..l)).ok_or_else(|| bad("file table count exceeds the table"))?;
    }
    Ok(table)
}

impl<'a> Pclntab<'a> {
    /// The table layout.
    pub fn version(&self) -> PclnVersion {
        self.version
    }

    /// The header's `textStart` (Go 1.18+ layouts only).
    pub fn text_start(&self) -> Option<u64> {
        self.text_start
    }

    /// A cheap check that a header found by scanning is a real table: it
    /// lists functions, its first and last entries are ordered, and the
    /// first function's name is readable.
    pub fn is_plausible(&self) -> bool {
        let (Ok((first, funcoff)), Ok((last, _))) = (self.slot(0), self.slot(self.nfunc)) else { return false };
        let mut budget = 1024;
        self.nfunc > 0
            && first <= last
            && self.func(funcoff).and_then(|f| cstr(self.funcnames, f.nameoff, &mut budget)).is_ok()
    }

    /// Size of one functab entry, and of the trailing end-of-text entry.
    fn functab_sizes(&self) -> (usize, usize) {
        if self.version.relative_entries() { (8, 4) } else { (2 * self.ptr_size, self.ptr_size) }
    }

    /// Entry address and `_func` offset of functab slot `i` (`i == nfunc`
    /// gives the end of the last function and no `_func`).
    fn slot(&self, i: usize) -> Result<(u64, u64), Malformed> {
        let (entry_size, _) = self.functab_sizes();
        let at = i * entry_size;
        if self.version.relative_entries() {
            let off = read_uint(self.functab, at, 4).ok_or_else(|| bad("functab is truncated"))?;
            let funcoff = if i < self.nfunc { read_uint(self.functab, at + 4, 4) } else { Some(0) };
            Ok((self.text_base.wrapping_add(off), funcoff.ok_or_else(|| bad("functab is truncated"))?))
        } else {
            let p = self.ptr_size;
            let entry = read_uint(self.functab, at, p).ok_or_else(|| bad("functab is truncated"))?;
            let funcoff = if i < self.nfunc { read_uint(self.functab, at + p, p) } else { Some(0) };
            Ok((entry, funcoff.ok_or_else(|| bad("functab is truncated"))?))
        }
    }

    /// Every function, sorted by entry, with the file and line of its entry.
    pub fn functions(&self) -> Result<Vec<Function>, Malformed> {
        self.functions_with(|_| false, || {})
    }

    /// Like [`Pclntab::functions`], but a function whose entry `named`
    /// accepts gets an empty name (its caller has it from elsewhere:
    /// `.symtab` names the same functions, and a kube-apiserver has about
    /// 140,000), and `release` is called every [`RELEASE_EVERY`] functions,
    /// for the caller to let the kernel drop the table pages read so far.
    pub fn functions_with(
        &self,
        named: impl Fn(u64) -> bool,
        release: impl FnMut(),
    ) -> Result<Vec<Function>, Malformed> {
        let mut out = Vec::with_capacity(self.nfunc);
        self.each_function(named, release, |f| out.push(f))?;
        Ok(out)
    }

    /// [`Pclntab::functions_with`], giving each function to `each` in
    /// entry order instead of keeping them.
    pub fn each_function(
        &self,
        named: impl Fn(u64) -> bool,
        mut release: impl FnMut(),
        mut each: impl FnMut(Function),
    ) -> Result<(), Malformed> {
        // Real tables name each function once, so scanning every name costs
        // about the table's size; the budget stops a hostile table from
        // pointing every function at one long unterminated run.
        let mut budget = self.whole.len().saturating_mul(2).saturating_add(1 << 20);
        let mut files: HashMap<u64, Option<Arc<str>>> = HashMap::new();
        let mut n = 0usize;
        self.each_func(|entry, end, func| {
            if n % RELEASE_EVERY == RELEASE_EVERY - 1 {
                release();
            }
            n += 1;
            let name = if named(entry) { String::new() } else { cstr(self.funcnames, func.nameoff, &mut budget)? };
            let file = match self.pcvalue(func.pcfile, entry)? {
                Some(fno) => self.file_name(fno, func.cu_offset, &mut files, &mut budget)?,
                None => None,
            };
            let line = self.pcvalue(func.pcln, entry)?.and_then(|l| u32::try_from(l).ok());
            each(Function { name, entry, end, file, line, source: Source::Pclntab });
            Ok(())
        })
    }

    /// Calls `each(entry, end, fields)` for every function in functab
    /// order, checking that the entries are sorted.
    fn each_func(&self, mut each: impl FnMut(u64, u64, &FuncFields) -> Result<(), Malformed>) -> Result<(), Malformed> {
        let (mut entry, mut funcoff) = self.slot(0)?;
        for i in 0..self.nfunc {
            let (next, next_funcoff) = self.slot(i + 1)?;
            if next < entry {
                return Err(bad(format!("functab is not sorted at entry {i} ({entry:#x} > {next:#x})")));
            }
            each(entry, next, &self.func(funcoff)?)?;
            (entry, funcoff) = (next, next_funcoff);
        }
        Ok(())
    }

    /// Reads the fields of `_func` that the resolver needs. Go 1.2–1.17 start
    /// with a pointer-sized entry, Go 1.18+ with a u32 `entryoff`; after it
    /// come `nameoff`, `args`, `deferreturn`, `pcsp`, `pcfile`, `pcln`,
    /// `npcdata` and (1.16+) `cuOffset`, all 32-bit; Go 1.20 adds
    /// `startLine`. Then four bytes (`funcID`, `flag`, pad, `nfuncdata`),
    /// the `npcdata` u32 pc-value table offsets, and the funcdata.
    fn func(&self, funcoff: u64) -> Result<FuncFields, Malformed> {
        let head = if self.version.relative_entries() { 4 } else { self.ptr_size };
        let base = usize::try_from(funcoff).map_err(|_| bad("_func offset overflows"))?;
        let field = |n: usize| {
            base.checked_add(head + 4 * n)
                .and_then(|at| read_uint(self.func_base, at, 4))
                .ok_or_else(|| bad(format!("_func at {funcoff:#x} is out of bounds")))
        };
        let mut f = FuncFields {
            base,
            nameoff: field(0)?,
            pcfile: field(4)?,
            pcln: field(5)?,
            cu_offset: 0,
            npcdata: 0,
            nfuncdata: 0,
            pcdata_at: 0,
        };
        if self.version == PclnVersion::Go12 {
            // Too old to trace; its pcdata/funcdata layout is not read.
            return Ok(f);
        }
        f.cu_offset = field(7)?;
        let flags = if self.version == PclnVersion::Go120 { 9 } else { 8 };
        f.npcdata = field(6)? as u32;
        f.nfuncdata = (field(flags)? >> 24) as u8;
        f.pcdata_at = base + head + 4 * (flags + 1);
        Ok(f)
    }

    /// Offset in `pctab` of the function's pc-value table `table`
    /// (`PCDATA_*`); 0 when it has none.
    fn pcdata(&self, f: &FuncFields, table: u32) -> Result<u64, Malformed> {
        if table >= f.npcdata {
            return Ok(0);
        }
        read_uint(self.func_base, f.pcdata_at + 4 * table as usize, 4)
            .ok_or_else(|| bad(format!("pcdata of _func at {:#x} is out of bounds", f.base)))
    }

    /// Funcdata slot `slot` (`FUNCDATA_*`) of a function.
    fn funcdata(&self, f: &FuncFields, slot: u8) -> Result<Option<FuncData>, Malformed> {
        if slot >= f.nfuncdata {
            return Ok(None);
        }
        let out_of_bounds = || bad(format!("funcdata of _func at {:#x} is out of bounds", f.base));
        // npcdata is u32 from the table: bound it before multiplying.
        let npcdata =
            usize::try_from(f.npcdata).ok().filter(|&n| n <= self.func_base.len() / 4).ok_or_else(out_of_bounds)?;
        let mut at = f.pcdata_at + 4 * npcdata;
        if self.version.relative_entries() {
            // Go 1.18+: u32 offsets from moduledata.gofunc, !0 meaning none.
            let off = read_uint(self.func_base, at + 4 * usize::from(slot), 4).ok_or_else(out_of_bounds)?;
            return Ok((off != u64::from(u32::MAX)).then_some(FuncData::GoFuncOffset(off)));
        }
        // Go 1.16–1.17: pointers, aligned in memory to the pointer size;
        // the header is pointer-aligned, so align relative to it.
        let table_off = (self.func_base.as_ptr() as usize).wrapping_sub(self.whole.as_ptr() as usize);
        if !table_off.wrapping_add(at).is_multiple_of(self.ptr_size) {
            at += 4;
        }
        let addr = read_uint(self.func_base, at + self.ptr_size * usize::from(slot), self.ptr_size)
            .ok_or_else(out_of_bounds)?;
        Ok((addr != 0).then_some(FuncData::Address(addr)))
    }

    /// The pc-value table at `off`, walked from `entry`; `None` when `off`
    /// is 0 (no table).
    fn pc_values(&self, off: u64, entry: u64) -> Result<Option<PcValues<'_>>, Malformed> {
        if off == 0 {
            return Ok(None);
        }
        let rest = usize::try_from(off)
            .ok()
            .and_then(|o| self.pctab.get(o..))
            .ok_or_else(|| bad("pc-value table offset is out of bounds"))?;
        Ok(Some(PcValues { rest, value: -1, pc: entry, quantum: self.quantum, first: true }))
    }

    /// Value of the pc-value table at `off` for the instruction at `target`,
    /// where the function starts at `entry == target`. Offset 0 means "no
    /// table".
    fn pcvalue(&self, off: u64, target: u64) -> Result<Option<i64>, Malformed> {
        let Some(steps) = self.pc_values(off, target)? else { return Ok(None) };
        for step in steps {
            let (pc, next, value) = step?;
            if next > pc {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// Maps a pcfile value to a file name: Go 1.2 indexes its file-offset
    /// array directly; Go 1.16+ go through the compilation unit's slice of
    /// `cutab` (u32 offsets into `filetab`, `!0` meaning "no file").
    fn file_name(
        &self,
        fno: i64,
        cu_offset: u64,
        cache: &mut HashMap<u64, Option<Arc<str>>>,
        budget: &mut usize,
    ) -> Result<Option<Arc<str>>, Malformed> {
        let Ok(fno) = u64::try_from(fno) else { return Ok(None) };
        let (index_table, names) = match self.version {
            PclnVersion::Go12 => (self.filetab, self.whole),
            _ => (self.cutab, self.filetab),
        };
        let index = cu_offset.checked_add(fno).and_then(|i| usize::try_from(i).ok()).and_then(|i| i.checked_mul(4));
        let name_off =
            index.and_then(|i| read_uint(index_table, i, 4)).ok_or_else(|| bad("file index is out of bounds"))?;
        if name_off == u64::from(u32::MAX) {
            return Ok(None);
        }
        if let Some(name) = cache.get(&name_off) {
            return Ok(name.clone());
        }
        let name: Option<Arc<str>> = Some(cstr(names, name_off, budget)?.into());
        cache.insert(name_off, name.clone());
        Ok(name)
    }
}

struct FuncFields {
    /// Offset of the `_func` in `func_base`.
    base: usize,
    nameoff: u64,
    pcfile: u64,
    pcln: u64,
    cu_offset: u64,
    npcdata: u32,
    nfuncdata: u8,
    /// Offset in `func_base` of the pcdata offset array.
    pcdata_at: usize,
}

/// Where a funcdata blob lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FuncData {
    /// Go 1.18+: an offset from `moduledata.gofunc` (the `go:func.*` symbol).
    GoFuncOffset(u64),
    /// Go 1.16–1.17: an absolute address.
    Address(u64),
}

/// Little-endian unsigned integer of `size` (≤ 8) bytes at `at`.
fn read_uint(data: &[u8], at: usize, size: usize) -> Option<u64> {
    let bytes = data.get(at..at.checked_add(size)?)?;
    Some(bytes.iter().rev().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// A pc-value table, step by step: each item is `(pc, next, value)`, the
/// value holding for `pc..next` (`next == pc` for a step that covers no
/// instruction). Encoding (runtime/symtab.go `step`): pairs of uvarints, a
/// zig-zag value delta then a pc delta in quanta, starting from value -1; a
/// zero value delta after the first pair ends the table. Each step consumes
/// at least two bytes, so the walk ends with the input; an error ends it too.
struct PcValues<'a> {
    rest: &'a [u8],
    value: i64,
    pc: u64,
    quantum: u8,
    first: bool,
}

impl PcValues<'_> {
    fn step(&mut self) -> Result<Option<(u64, u64, i64)>, Malformed> {
        let uv = read_uvarint(&mut self.rest)?;
        if uv == 0 && !self.first {
            return Ok(None);
        }
        self.first = false;
        let delta = if uv & 1 != 0 { !((uv >> 1) as i64) } else { (uv >> 1) as i64 };
        self.value = self.value.wrapping_add(delta);
        let pc_delta = read_uvarint(&mut self.rest)?.wrapping_mul(u64::from(self.quantum));
        let next = self.pc.checked_add(pc_delta).ok_or_else(|| bad("pc-value table runs past the address space"))?;
        let start = std::mem::replace(&mut self.pc, next);
        Ok(Some((start, next, self.value)))
    }
}

impl Iterator for PcValues<'_> {
    type Item = Result<(u64, u64, i64), Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.step().transpose();
        if !matches!(item, Some(Ok(_))) {
            // Ended or failed: nothing after that is meaningful.
            self.rest = &[];
            self.first = false;
        }
        item
    }
}

/// Go's `uvarint`, limited to 32 bits as the runtime's `readvarint` is.
fn read_uvarint(rest: &mut &[u8]) -> Result<u64, Malformed> {
    let mut value = 0u64;
    for (i, &b) in rest.iter().enumerate().take(5) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *rest = rest.get(i + 1..).unwrap_or_default();
            return Ok(value);
        }
    }
    Err(bad("pc-value table runs off its end or has an over-long varint"))
}

/// The NUL-terminated string at `off`, charging the bytes scanned to `budget`.
fn cstr(tab: &[u8], off: u64, budget: &mut usize) -> Result<String, Malformed> {
    let rest = usize::try_from(off)
        .ok()
        .and_then(|o| tab.get(o..))
        .ok_or_else(|| bad(format!("name offset {off:#x} is out of bounds")))?;
    let window = rest.get(..rest.len().min(*budget)).unwrap_or(rest);
    let len = window.iter().position(|&b| b == 0).ok_or_else(|| bad(format!("name at {off:#x} is not terminated")))?;
    *budget = budget.saturating_sub(len + 1);
    Ok(String::from_utf8_lossy(window.get(..len).unwrap_or(window)).into_owned())
}

/// Whether `data` starts with a plausible `.gopclntab` header for a 64-bit
/// `machine`: magic, zero padding, the machine's instruction quantum, 8-byte
/// pointers. Used to find the table when the section headers are gone, where
/// the exact quantum keeps the scan from stopping on look-alike bytes; the
/// caller still validates with [`parse_pclntab`].
pub fn looks_like_header(data: &[u8], machine: Machine) -> bool {
    match data.get(..8) {
        Some(&[a, b, c, d, 0, 0, quantum, 8]) => {
            PclnVersion::from_magic(u32::from_le_bytes([a, b, c, d])).is_some() && quantum == machine.pc_quantum()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
