//! The one seam between CPU-neutral planning and the facts of a CPU: how to
//! decode a function body into instruction boundaries, what Go's stack-check
//! prologue looks like, which instructions end a function, which ones the
//! kernel emulates instead of single-stepping, and the register ABI.
//!
//! [`for_machine`] picks the implementation from the binary's ELF machine.
//! amd64 is implemented; arm64 is present so its absence is a clear, typed
//! [`PlanError::UnsupportedArch`] rather than a wrong plan.

use std::ops::Range;

use super::{EntryKind, PlanError, Site, abi::Registers, amd64::Amd64, arm64::Arm64};
use crate::resolve::{Function, Machine};

/// One decoded instruction, in CPU-neutral terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    /// Its address.
    pub addr: u64,
    /// True for a return instruction.
    pub is_ret: bool,
    /// True when the kernel emulates it (see [`Site::emulated`]).
    pub emulated: bool,
}

impl Insn {
    /// This instruction as a probe site.
    pub fn site(&self) -> Site {
        Site { addr: self.addr, emulated: self.emulated }
    }
}

/// A function's stack check, when it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackGuard {
    /// The conditional branch to the morestack path.
    pub site: Site,
    /// How the kernel side tells the morestack pass apart.
    pub kind: EntryKind,
    /// Code that runs again when the stack grows: the prologue up to and
    /// including the branch, and the block that calls `runtime.morestack*`
    /// and jumps back. A probe there would fire twice for one call.
    pub rerun: Vec<Range<u64>>,
}

/// What planning needs to know about one CPU architecture.
pub trait Arch: Sync {
    /// The architecture's name in messages, e.g. `x86-64`.
    fn name(&self) -> &'static str;

    /// Go's ABIInternal integer and float argument registers, in order.
    fn registers(&self) -> &'static Registers;

    /// Decodes the whole body of `function` (bytes `code`, starting at its
    /// entry) into instruction boundaries, linearly from the entry.
    fn decode(&self, function: &Function, code: &[u8]) -> Result<Vec<Insn>, PlanError>;

    /// Finds the stack-guard branch of `function`, if it has one; a branch
    /// counts only when one of its paths calls a function for which
    /// `is_morestack` is true.
    fn stack_guard(&self, function: &Function, code: &[u8], is_morestack: &dyn Fn(u64) -> bool) -> Option<StackGuard>;
}

/// The implementation for a binary's CPU.
pub fn for_machine(machine: Machine) -> &'static dyn Arch {
    match machine {
        Machine::X86_64 => &Amd64,
        Machine::Aarch64 => &Arm64,
    }
}
