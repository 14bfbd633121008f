//! arm64: the register facts are known (Go's ABIInternal uses R0–R15 for
//! integers, F0–F15 for floats, and keeps `g` in R28), but the prologue and
//! RET decoding are not written yet. Every planning call fails with
//! [`PlanError::UnsupportedArch`], so an arm64 binary gets a one-line
//! "not supported" instead of a plan that would put probes in wrong places.

use super::{
    PlanError,
    abi::Registers,
    arch::{Arch, Insn, StackGuard},
};
use crate::resolve::Function;

/// Go's ABIInternal register files on arm64.
pub const REGISTERS: Registers = Registers {
    int: &["R0", "R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10", "R11", "R12", "R13", "R14", "R15"],
    float: &["F0", "F1", "F2", "F3", "F4", "F5", "F6", "F7", "F8", "F9", "F10", "F11", "F12", "F13", "F14", "F15"],
};

/// The arm64 seam.
pub struct Arm64;

impl Arch for Arm64 {
    fn name(&self) -> &'static str {
        "aarch64"
    }

    fn registers(&self) -> &'static Registers {
        &REGISTERS
    }

    fn decode(&self, _function: &Function, _code: &[u8]) -> Result<Vec<Insn>, PlanError> {
        Err(PlanError::UnsupportedArch(self.name()))
    }

    fn stack_guard(&self, _: &Function, _: &[u8], _: &dyn Fn(u64) -> bool) -> Option<StackGuard> {
        None
    }
}
