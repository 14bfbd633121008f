//! Plan: turn a resolved [`Function`] into exact probe sites. Every site is an
//! instruction boundary reached by decoding forward from the function's entry;
//! no offset is ever assumed. The architecture-specific part (prologue shape,
//! RET decoding, which instructions the kernel emulates, registers) sits
//! behind [`arch::Arch`], implemented by [`amd64`]; [`arm64`] is the seam
//! for the next CPU and refuses to plan until it is written.
//!
//! Besides whole functions, a plan can target a source line
//! ([`Target::Line`], from `file.go:LINE`) or one inlined copy of a
//! function ([`Target::Inlined`]); see [`sites`]. [`Target`] says what a
//! plan probes, [`EntryKind`] only how its entry site behaves.
//!
//! This layer reads function bytes through [`Binary`]; it never touches a
//! live process.

pub mod abi;
pub mod amd64;
pub mod arch;
pub mod arm64;
pub mod fields;
pub mod goroutine;
pub mod secrets;
pub mod signatures;
pub mod sites;

use std::ops::Range;

use crate::resolve::{Binary, Function, InlinedCall, ResolveError};

/// Where the entry probe sits and how the kernel side must treat it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// The stack-guard conditional branch. It runs once per pass through the
    /// prologue; the pass that is about to call `runtime.morestack` is
    /// recognised from EFLAGS and skipped.
    StackGuard {
        /// Compact flag mask (`tracer_common::GUARD_CF` | `GUARD_ZF`).
        mask: u8,
        /// True when the morestack path is taken iff any masked flag is set.
        taken_if_any: bool,
    },
    /// The first instruction: used when the function has no stack check
    /// (leaf or NOSPLIT), where stack growth cannot re-enter it.
    FirstInstruction,
    /// An instruction inside the body, past the stack check, so it fires
    /// once per pass however the stack grows: the first instruction of a
    /// source line or of an inlined copy ([`ProbePlan::target`] says which).
    /// No EFLAGS filter; the plan has no RET sites.
    Body,
}

/// One probe site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Site {
    /// Virtual address of the instruction.
    pub addr: u64,
    /// True when the kernel emulates this instruction (cheap, ~0.65 µs a hit
    /// on the reference VM); false when it must single-step it (~19 µs).
    pub emulated: bool,
}

/// What a plan probes, beyond the function whose code holds the sites.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Target {
    /// The function itself: entry and RET sites.
    #[default]
    Function,
    /// A source line inside the function.
    Line {
        /// The file as the binary records it.
        file: String,
        /// The line.
        line: u32,
    },
    /// A copy of another function inlined into this one.
    Inlined(InlinedCall),
}

/// Every probe site of one function, line, or inlined copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbePlan {
    /// The function whose code holds the sites (for a line or an inlined
    /// copy, the enclosing out-of-line function).
    pub function: Function,
    /// The entry site.
    pub entry: Site,
    /// How the entry site behaves under stack growth.
    pub entry_kind: EntryKind,
    /// Every RET instruction. Empty when the function never returns normally
    /// (it only panics or loops): such a function gets an entry probe only.
    /// Always empty for lines and inlined copies.
    pub rets: Vec<Site>,
    /// What is probed: [`Target::Function`] for ordinary plans.
    pub target: Target,
}

impl ProbePlan {
    /// What to call this plan in output: the symbol for a function,
    /// `store.go:123 in k8s.io/…/etcd3.(*store).Create` for a line, and
    /// `k8s.io/…/storage.NewKeyExistsError inlined in k8s.io/…(*store).Create`
    /// for an inlined copy.
    pub fn label(&self) -> String {
        let base = |f: &str| f.rsplit('/').next().unwrap_or(f).to_string();
        match &self.target {
            Target::Function => self.function.name.clone(),
            Target::Line { file, line } => format!("{}:{line} in {}", base(file), self.function.name),
            Target::Inlined(call) => format!("{} inlined in {}", call.callee, self.function.name),
        }
    }
}

/// Errors from planning probe sites.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The function's bytes could not be read from the binary.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The bytes at the function's entry do not decode as instructions.
    #[error("{name}: cannot decode instruction at {addr:#x}")]
    Undecodable {
        /// The function.
        name: String,
        /// Address of the first byte that failed to decode.
        addr: u64,
    },
    /// The function is larger than ktrace is willing to decode.
    #[error("{name}: function size {size} bytes is implausible")]
    TooLarge {
        /// The function.
        name: String,
        /// Its claimed size.
        size: u64,
    },
    /// The binary is for a CPU whose prologue and RET decoding ktrace does
    /// not implement yet.
    #[error("cannot plan probes for {0} binaries yet; ktrace supports x86-64")]
    UnsupportedArch(&'static str),
    /// An inlined copy's first address is not an instruction boundary of
    /// its caller, so the tables and the code disagree.
    #[error("{name}: inlined code at {addr:#x} is not an instruction boundary")]
    NotABoundary {
        /// The caller.
        name: String,
        /// The address the inline tree gave.
        addr: u64,
    },
}

/// Go functions are rarely more than a few hundred KiB; a bigger extent means
/// the symbol table is lying, and decoding it would waste time and memory.
const MAX_FUNCTION_BYTES: u64 = 16 << 20;

/// Prefix of the runtime functions a stack guard calls.
const MORESTACK: &str = "runtime.morestack";

/// The runtime function that ends a goroutine, where latency mode drops
/// its abandoned calls.
pub const GOEXIT: &str = "runtime.goexit1";

/// Whether `name` is a runtime function planning reads besides those a
/// spec selects: [`GOEXIT`] and the `runtime.morestack*` a stack guard
/// calls. A function list for planning must hold them.
pub fn runtime_needs(name: &str) -> bool {
    name == GOEXIT || name.starts_with(MORESTACK)
}

/// Plans probe sites for functions of one binary.
pub struct Planner<'a> {
    binary: &'a Binary,
    arch: &'static dyn arch::Arch,
    /// Entries of `runtime.morestack*`, sorted: the stack guard branches to a
    /// block that calls one of these.
    morestack: Vec<u64>,
}

impl<'a> Planner<'a> {
    /// Prepares a planner; `functions` is the binary's function list. The
    /// architecture comes from the binary's ELF machine.
    pub fn new(binary: &'a Binary, functions: &[Function]) -> Self {
        let mut morestack: Vec<u64> =
            functions.iter().filter(|f| f.name.starts_with(MORESTACK)).map(|f| f.entry).collect();
        morestack.sort_unstable();
        Self { binary, arch: arch::for_machine(binary.machine()), morestack }
    }

    /// The architecture the plans are for.
    pub fn arch(&self) -> &'static dyn arch::Arch {
        self.arch
    }

    /// Plans probe sites for `function`, decoding its body from the binary.
    pub fn plan(&self, function: &Function) -> Result<ProbePlan, PlanError> {
        let code = self.code(function)?;
        plan_with(self.arch, function, code, &|a| self.is_morestack(a))
    }

    /// Plans a probe on the first instruction of `function` that lies in one
    /// of `ranges` (the code of `file`:`line`) and outside the stack check,
    /// which re-runs when the stack grows. `None` when every such
    /// instruction is in the stack check.
    pub fn plan_line(
        &self,
        function: &Function,
        ranges: &[Range<u64>],
        file: &str,
        line: u32,
    ) -> Result<Option<ProbePlan>, PlanError> {
        let Some(site) = self.first_site(function, ranges)? else { return Ok(None) };
        Ok(Some(ProbePlan {
            function: function.clone(),
            entry: site,
            entry_kind: EntryKind::Body,
            rets: Vec::new(),
            target: Target::Line { file: file.to_string(), line },
        }))
    }

    /// Plans a probe on the first instruction of one inlined copy inside
    /// its `caller`. The inline tree's address must be an instruction
    /// boundary; if it lies in the stack check the first boundary of the
    /// copy's code past it is taken.
    pub fn plan_inlined(&self, caller: &Function, call: &InlinedCall) -> Result<ProbePlan, PlanError> {
        let code = self.code(caller)?;
        let insns = self.arch.decode(caller, code)?;
        if insns.binary_search_by_key(&call.addr, |i| i.addr).is_err() {
            return Err(PlanError::NotABoundary { name: caller.name.clone(), addr: call.addr });
        }
        let rerun = self.rerun(caller, code);
        let site = insns
            .iter()
            .find(|i| i.addr >= call.addr && !rerun.iter().any(|r| r.contains(&i.addr)))
            .ok_or(PlanError::NotABoundary { name: caller.name.clone(), addr: call.addr })?;
        Ok(ProbePlan {
            function: caller.clone(),
            entry: site.site(),
            entry_kind: EntryKind::Body,
            rets: Vec::new(),
            target: Target::Inlined(call.clone()),
        })
    }

    /// The lowest instruction boundary of `function` inside `ranges` and
    /// outside its stack check.
    fn first_site(&self, function: &Function, ranges: &[Range<u64>]) -> Result<Option<Site>, PlanError> {
        let code = self.code(function)?;
        let insns = self.arch.decode(function, code)?;
        let rerun = self.rerun(function, code);
        Ok(insns
            .iter()
            .filter(|i| ranges.iter().any(|r| r.contains(&i.addr)))
            .find(|i| !rerun.iter().any(|r| r.contains(&i.addr)))
            .map(arch::Insn::site))
    }

    fn rerun(&self, function: &Function, code: &[u8]) -> Vec<Range<u64>> {
        self.arch.stack_guard(function, code, &|a| self.is_morestack(a)).map(|g| g.rerun).unwrap_or_default()
    }

    fn is_morestack(&self, addr: u64) -> bool {
        self.morestack.binary_search(&addr).is_ok()
    }

    fn code(&self, function: &Function) -> Result<&'a [u8], PlanError> {
        let size = function.end.saturating_sub(function.entry);
        if size == 0 || size > MAX_FUNCTION_BYTES {
            return Err(PlanError::TooLarge { name: function.name.clone(), size });
        }
        Ok(self.binary.text_at(function.entry, size)?)
    }
}

/// Plans entry and RET sites of `function` with `arch`.
fn plan_with(
    arch: &dyn arch::Arch,
    function: &Function,
    code: &[u8],
    is_morestack: &dyn Fn(u64) -> bool,
) -> Result<ProbePlan, PlanError> {
    let insns = arch.decode(function, code)?;
    let first = insns.first().ok_or(PlanError::Undecodable { name: function.name.clone(), addr: function.entry })?;
    let (entry, entry_kind) = match arch.stack_guard(function, code, is_morestack) {
        Some(guard) => (guard.site, guard.kind),
        None => (first.site(), EntryKind::FirstInstruction),
    };
    let rets = insns.iter().filter(|i| i.is_ret).map(arch::Insn::site).collect();
    Ok(ProbePlan { function: function.clone(), entry, entry_kind, rets, target: Target::Function })
}
