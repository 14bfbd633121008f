//! Plan: turn a resolved [`Function`] into exact probe sites. Every site is an
//! instruction boundary reached by decoding forward from the function's entry;
//! no offset is ever assumed. The architecture-specific part (prologue shape,
//! RET decoding, which instructions the kernel emulates) lives in [`amd64`],
//! so arm64 can be added beside it without touching the rest.
//!
//! This layer reads function bytes through [`Binary`]; it never touches a
//! live process.

pub mod abi;
pub mod amd64;

use crate::resolve::{Binary, Function, ResolveError};

/// Where the entry probe sits and how the kernel side must treat it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
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

/// Every probe site of one function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbePlan {
    /// The function.
    pub function: Function,
    /// The entry site.
    pub entry: Site,
    /// How the entry site behaves under stack growth.
    pub entry_kind: EntryKind,
    /// Every RET instruction. Empty when the function never returns normally
    /// (it only panics or loops): such a function gets an entry probe only.
    pub rets: Vec<Site>,
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
}

/// Go functions are rarely more than a few hundred KiB; a bigger extent means
/// the symbol table is lying, and decoding it would waste time and memory.
const MAX_FUNCTION_BYTES: u64 = 16 << 20;

/// Plans probe sites for functions of one binary.
pub struct Planner<'a> {
    binary: &'a Binary,
    /// Entries of `runtime.morestack*`, sorted: the stack guard branches to a
    /// block that calls one of these.
    morestack: Vec<u64>,
}

impl<'a> Planner<'a> {
    /// Prepares a planner; `functions` is the binary's function list.
    pub fn new(binary: &'a Binary, functions: &[Function]) -> Self {
        let mut morestack: Vec<u64> =
            functions.iter().filter(|f| f.name.starts_with("runtime.morestack")).map(|f| f.entry).collect();
        morestack.sort_unstable();
        Self { binary, morestack }
    }

    /// Plans probe sites for `function`, decoding its body from the binary.
    pub fn plan(&self, function: &Function) -> Result<ProbePlan, PlanError> {
        let size = function.end.saturating_sub(function.entry);
        if size == 0 || size > MAX_FUNCTION_BYTES {
            return Err(PlanError::TooLarge { name: function.name.clone(), size });
        }
        let code = self.binary.text_at(function.entry, size)?;
        let is_morestack = |addr: u64| self.morestack.binary_search(&addr).is_ok();
        amd64::plan(function, code, &is_morestack)
    }
}
