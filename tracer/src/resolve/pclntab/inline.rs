//! The inline tree (`FUNCDATA_InlTree` with its `PCDATA_InlTreeIndex`
//! table): for every function, which instructions belong to calls the
//! compiler inlined into it, and where those calls were. Optimized Go builds
//! inline small functions away entirely, so a probe on the out-of-line copy
//! alone would miss calls; this is how ktrace finds the rest.
//!
//! Layout facts (runtime/symtab.go, runtime/symtabinl.go): the index table
//! gives, per pc, the innermost inlined call (or -1). Each tree node is an
//! `inlinedCall`: Go 1.17–1.19 write 20 bytes (`parent` i16, `funcID`, pad,
//! `file`, `line`, `func_` name offset, `parentPc`); Go 1.20+ write 16
//! (`funcID`, 3 pad, `nameOff`, `parentPc`, `startLine`). Both keep
//! `parentPc`, an instruction whose position is the call site and whose own
//! index is the parent node, so the tree is walked the 1.20 way for all.

use std::collections::HashMap;

use super::{
    FuncData, Malformed, PclnVersion, Pclntab, bad, cstr,
    lines::{Run, value_at},
    read_uint,
};

/// `PCDATA_InlTreeIndex` and `FUNCDATA_InlTree` (runtime/symtab.go).
const PCDATA_INL_TREE_INDEX: u32 = 2;
const FUNCDATA_INL_TREE: u8 = 3;
/// Real inlining is a few levels deep (the compiler's budget stops it);
/// deeper chains are a corrupt or cyclic tree.
const MAX_INLINE_DEPTH: usize = 256;
/// No function inlines a million calls; a larger index is corrupt.
const MAX_INLINE_INDEX: i64 = 1 << 20;

/// One inlined copy of a function inside another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InlinedCall {
    /// Entry of the out-of-line function whose code holds the copy.
    pub caller: u64,
    /// The inlined function's symbol name.
    pub callee: String,
    /// The first (lowest) instruction the inline tree attributes to this
    /// copy, directly or through calls inlined into it.
    pub addr: u64,
    /// Source file of the call site.
    pub call_file: Option<String>,
    /// Source line of the call site.
    pub call_line: Option<u32>,
    /// The inlined function's own source file, from the first instruction
    /// that belongs to it and to nothing inlined deeper.
    pub file: Option<String>,
}

impl Pclntab<'_> {
    /// Every inlined call in every function, sorted by caller then address.
    ///
    /// `gofunc` is the address of `go:func.*` (moduledata's `gofunc`), which
    /// Go 1.18+ funcdata offsets are relative to; `read(addr, len)` returns
    /// the file image of `len` bytes at a virtual address.
    pub fn inlined_calls<'d>(
        &self,
        gofunc: Option<u64>,
        read: impl Fn(u64, u64) -> Option<&'d [u8]>,
    ) -> Result<Vec<InlinedCall>, Malformed> {
        let mut out = Vec::new();
        let mut budget = self.whole.len().saturating_mul(2).saturating_add(1 << 20);
        let mut names: HashMap<u64, String> = HashMap::new();
        let mut files: HashMap<u64, Option<std::sync::Arc<str>>> = HashMap::new();
        self.each_func(|entry, next, func| {
            let tree = match self.funcdata(func, FUNCDATA_INL_TREE)? {
                None => None,
                Some(FuncData::Address(a)) => Some(a),
                Some(FuncData::GoFuncOffset(off)) => {
                    let base =
                        gofunc.ok_or_else(|| bad("inline trees need the go:func.* base, which was not found"))?;
                    Some(base.checked_add(off).ok_or_else(|| bad("inline tree address overflows"))?)
                }
            };
            let index_table = self.pcdata(func, PCDATA_INL_TREE_INDEX)?;
            if let Some(tree) = tree.filter(|_| index_table != 0) {
                let runs = self.runs(index_table, entry, next)?;
                if runs.iter().any(|r| r.value >= 0) {
                    let (file_runs, line_runs) = self.positions(func, entry, next)?;
                    let mut walk = Walk {
                        table: self,
                        entry,
                        tree,
                        cu_offset: func.cu_offset,
                        runs: &runs,
                        file_runs: &file_runs,
                        line_runs: &line_runs,
                        names: &mut names,
                        files: &mut files,
                        budget: &mut budget,
                    };
                    walk.collect(&read, &mut out)?;
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Size of an `inlinedCall`, and the offsets of its name and parentPc.
    fn inline_node_layout(&self) -> (u64, usize, usize) {
        if self.version == PclnVersion::Go120 { (16, 4, 8) } else { (20, 12, 16) }
    }
}

/// The inline tree of one function being walked.
struct Walk<'t, 'a> {
    table: &'t Pclntab<'a>,
    entry: u64,
    tree: u64,
    cu_offset: u64,
    runs: &'t [Run],
    file_runs: &'t [Run],
    line_runs: &'t [Run],
    names: &'t mut HashMap<u64, String>,
    files: &'t mut HashMap<u64, Option<std::sync::Arc<str>>>,
    budget: &'t mut usize,
}

impl Walk<'_, '_> {
    fn collect<'d>(
        &mut self,
        read: &impl Fn(u64, u64) -> Option<&'d [u8]>,
        out: &mut Vec<InlinedCall>,
    ) -> Result<(), Malformed> {
        // Node index → position in `out`; runs ascend, so the first run in
        // which a node appears holds its lowest address.
        let mut seen: HashMap<i64, usize> = HashMap::new();
        for run in self.runs {
            let innermost = run.value;
            let mut ix = innermost;
            let mut depth = 0;
            while ix >= 0 {
                depth += 1;
                if ix >= MAX_INLINE_INDEX || depth > MAX_INLINE_DEPTH {
                    return Err(bad(format!("inline tree of the function at {:#x} is corrupt or cyclic", self.entry)));
                }
                if let Some(&k) = seen.get(&ix) {
                    if ix == innermost
                        && out.get(k).is_some_and(|c| c.file.is_none())
                        && let Some(file) = self.file_at(run.start)?
                        && let Some(call) = out.get_mut(k)
                    {
                        call.file = Some(file);
                    }
                    break;
                }
                let (nameoff, parent_pc) = self.node(ix, read)?;
                let callee = match self.names.get(&nameoff) {
                    Some(n) => n.clone(),
                    None => {
                        let n = cstr(self.table.funcnames, nameoff, self.budget)?;
                        self.names.insert(nameoff, n.clone());
                        n
                    }
                };
                let call_pc = self.entry.wrapping_add(parent_pc);
                let file = if ix == innermost { self.file_at(run.start)? } else { None };
                seen.insert(ix, out.len());
                out.push(InlinedCall {
                    caller: self.entry,
                    callee,
                    addr: run.start,
                    call_file: self.file_at(call_pc)?,
                    call_line: value_at(self.line_runs, call_pc).and_then(|l| u32::try_from(l).ok()),
                    file,
                });
                // The call site's own index is the parent node; longer
                // cycles end at a node already seen. A node can name its own
                // code as its call site: Go 1.26 does for calls inlined at
                // the very entry of a function without a stack check
                // (`go.opentelemetry.io/otel/semconv/v1.37.0.init` in
                // kube-apiserver 1.36, parentPc 0). The chain ends there, as
                // for a call in the outermost function.
                let parent = value_at(self.runs, call_pc).unwrap_or(-1);
                let parent = if parent == ix { -1 } else { parent };
                ix = parent;
            }
        }
        Ok(())
    }

    /// Name offset and parentPc of node `ix`.
    fn node<'d>(&self, ix: i64, read: &impl Fn(u64, u64) -> Option<&'d [u8]>) -> Result<(u64, u64), Malformed> {
        let (size, name_at, parent_at) = self.table.inline_node_layout();
        let bytes = (ix as u64)
            .checked_mul(size)
            .and_then(|o| self.tree.checked_add(o))
            .and_then(|addr| read(addr, size))
            .ok_or_else(|| {
                bad(format!("inline tree node {ix} of the function at {:#x} is out of bounds", self.entry))
            })?;
        let field = |at| read_uint(bytes, at, 4).ok_or_else(|| bad("inline tree node is truncated"));
        Ok((field(name_at)?, field(parent_at)?))
    }

    fn file_at(&mut self, pc: u64) -> Result<Option<String>, Malformed> {
        match value_at(self.file_runs, pc) {
            Some(fno) => {
                Ok(self.table.file_name(fno, self.cu_offset, self.files, self.budget)?.as_deref().map(str::to_owned))
            }
            None => Ok(None),
        }
    }
}
