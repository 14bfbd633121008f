//! x86-64 specifics: the Go stack-guard prologue, RET sites, and which
//! instructions the kernel's uprobe code emulates rather than single-steps.
//!
//! Go (register ABI, g in R14) opens a function that may grow its stack with
//! a comparison against `g.stackguard0` at `16(R14)` followed by a conditional
//! branch to a block that calls `runtime.morestack*` and jumps back to the
//! entry. Large frames compute the bound first (`LEA -n(SP), R12`; huge ones
//! add an overflow branch), so the guard is found by decoding, not by offset.

use iced_x86::{Code, ConditionCode, Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind, Register};
use tracer_common::{GUARD_CF, GUARD_ZF};

use super::{EntryKind, PlanError, ProbePlan, Site};
use crate::resolve::Function;

/// Go's ABIInternal register files on amd64 (integer args and results in
/// this order; g lives in R14 and is never an argument).
pub const REGISTERS: super::abi::Registers = super::abi::Registers {
    int: &["RAX", "RBX", "RCX", "RDI", "RSI", "R8", "R9", "R10", "R11"],
    float: &["X0", "X1", "X2", "X3", "X4", "X5", "X6", "X7", "X8", "X9", "X10", "X11", "X12", "X13", "X14"],
};

/// Offset of `stackguard0` in `runtime.g`; stable since the register ABI.
const STACKGUARD0_OFFSET: u64 = 16;

/// How many instructions of the prologue to search for the guard. Real
/// prologues put it within the first five; the bound keeps a weird function
/// from being mistaken for one with a guard deep in its body.
const PROLOGUE_WINDOW: usize = 8;

/// How far into the morestack block to look for the call.
const MORESTACK_BLOCK_WINDOW: usize = 32;

/// Plans the probe sites of one function whose bytes are `code`.
pub fn plan(function: &Function, code: &[u8], is_morestack: &dyn Fn(u64) -> bool) -> Result<ProbePlan, PlanError> {
    let insns = decode_all(function, code)?;
    let first = insns.first().ok_or(PlanError::Undecodable { name: function.name.clone(), addr: function.entry })?;

    let (entry, entry_kind) = match find_stack_guard(&insns, code, function.entry, is_morestack) {
        Some((insn, kind)) => (site(insn), kind),
        None => (site(first), EntryKind::FirstInstruction),
    };
    let rets = insns.iter().filter(|i| i.mnemonic() == Mnemonic::Ret).map(site).collect();
    Ok(ProbePlan { function: function.clone(), entry, entry_kind, rets })
}

/// Decodes the whole body linearly. Go emits no data in text, and pads
/// between functions with INT3, so a linear sweep from the entry visits
/// exactly the instruction boundaries.
fn decode_all(function: &Function, code: &[u8]) -> Result<Vec<Instruction>, PlanError> {
    let mut decoder = Decoder::with_ip(64, code, function.entry, DecoderOptions::NONE);
    let mut out = Vec::with_capacity(code.len() / 4);
    let mut insn = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        if insn.is_invalid() {
            // Trailing padding may be cut mid-instruction by the function's
            // extent; anything invalid before that is a real problem.
            if out.iter().any(|i: &Instruction| {
                i.mnemonic() == Mnemonic::Ret || i.flow_control() == FlowControl::UnconditionalBranch
            }) {
                break;
            }
            return Err(PlanError::Undecodable { name: function.name.clone(), addr: insn.ip() });
        }
        out.push(insn);
    }
    Ok(out)
}

fn site(insn: &Instruction) -> Site {
    Site { addr: insn.ip(), emulated: kernel_emulates(insn) }
}

/// The kernel's x86 uprobe code emulates relative jumps, conditional jumps and
/// relative calls instead of single-stepping them out of line.
pub fn kernel_emulates(insn: &Instruction) -> bool {
    matches!(insn.flow_control(), FlowControl::ConditionalBranch | FlowControl::UnconditionalBranch | FlowControl::Call)
        && matches!(insn.op0_kind(), OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64)
        && insn.code() != Code::Jrcxz_rel8_64
        && !matches!(insn.mnemonic(), Mnemonic::Loop | Mnemonic::Loope | Mnemonic::Loopne)
}

fn compares_stackguard(insn: &Instruction) -> bool {
    insn.mnemonic() == Mnemonic::Cmp
        && (0..insn.op_count()).any(|n| insn.op_kind(n) == OpKind::Memory)
        && insn.memory_base() == Register::R14
        && insn.memory_index() == Register::None
        && insn.memory_displacement64() == STACKGUARD0_OFFSET
}

/// Finds `CMP …, 16(R14)` followed by a jcc whose taken or fall-through path
/// reaches a call to `runtime.morestack*`.
fn find_stack_guard<'i>(
    insns: &'i [Instruction],
    code: &[u8],
    entry: u64,
    is_morestack: &dyn Fn(u64) -> bool,
) -> Option<(&'i Instruction, EntryKind)> {
    let window = &insns[..insns.len().min(PROLOGUE_WINDOW)];
    let cmp_at = window.iter().position(compares_stackguard)?;
    let jcc = window.get(cmp_at + 1)?;
    if jcc.flow_control() != FlowControl::ConditionalBranch {
        return None;
    }
    let (mask, true_if_any) = match jcc.condition_code() {
        ConditionCode::be => (GUARD_CF | GUARD_ZF, true),
        ConditionCode::a => (GUARD_CF | GUARD_ZF, false),
        ConditionCode::b => (GUARD_CF, true),
        ConditionCode::ae => (GUARD_CF, false),
        _ => return None,
    };
    let taken_to_morestack = calls_morestack(code, entry, jcc.near_branch_target(), is_morestack);
    let fallthrough_to_morestack = calls_morestack(code, entry, jcc.next_ip(), is_morestack);
    // "The condition holds" means the branch is taken; the morestack path is
    // taken iff the condition holds (branch → morestack) or fails (fall-through).
    let taken_if_any = match (taken_to_morestack, fallthrough_to_morestack) {
        (true, false) => true_if_any,
        (false, true) => !true_if_any,
        _ => return None,
    };
    Some((jcc, EntryKind::StackGuard { mask, taken_if_any }))
}

/// True when the straight-line block at `target` (inside this function) calls
/// `runtime.morestack*` before any other control transfer.
fn calls_morestack(code: &[u8], entry: u64, target: u64, is_morestack: &dyn Fn(u64) -> bool) -> bool {
    let Some(start) = target.checked_sub(entry).and_then(|o| usize::try_from(o).ok()) else {
        return false;
    };
    let Some(bytes) = code.get(start..) else { return false };
    let mut decoder = Decoder::with_ip(64, bytes, target, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    for _ in 0..MORESTACK_BLOCK_WINDOW {
        if !decoder.can_decode() {
            return false;
        }
        decoder.decode_out(&mut insn);
        match insn.flow_control() {
            FlowControl::Next => continue,
            FlowControl::Call => return is_morestack(insn.near_branch_target()),
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::Source;

    fn func(entry: u64, len: usize) -> Function {
        Function {
            name: "main.f".into(),
            entry,
            end: entry + len as u64,
            file: None,
            line: None,
            source: Source::Symtab,
        }
    }

    // The shape Go 1.19 emits for a small frame, assembled by hand: the
    // prologue, a body ending in RET, then the out-of-line morestack block.
    const ENTRY: u64 = 0x1000;
    const MORESTACK: u64 = 0x9000;

    fn small_frame() -> Vec<u8> {
        let mut c = vec![0x49, 0x3b, 0x66, 0x10]; // cmp rsp,[r14+0x10]
        c.extend([0x76, 0x09]); // jbe +9 → 0x0f
        c.extend([0x48, 0x83, 0xec, 0x18]); // sub rsp,0x18      @6
        c.extend([0x48, 0x83, 0xc4, 0x18]); // add rsp,0x18      @a
        c.push(0xc3); // ret                                      @e
        // @0f morestack block: call rel32 to MORESTACK, then jmp back to entry
        let call_at = ENTRY + 0x0f;
        let rel = (MORESTACK as i64 - (call_at as i64 + 5)) as i32;
        c.push(0xe8);
        c.extend(rel.to_le_bytes());
        let jmp_at = ENTRY + 0x14;
        let back = (ENTRY as i64 - (jmp_at as i64 + 2)) as i8;
        c.extend([0xeb, back as u8]);
        c
    }

    #[test]
    fn finds_jbe_guard_and_ret() {
        let code = small_frame();
        let p = plan(&func(ENTRY, code.len()), &code, &|a| a == MORESTACK).unwrap();
        assert_eq!(p.entry.addr, ENTRY + 4);
        assert!(p.entry.emulated, "jcc is emulated by the kernel");
        assert_eq!(p.entry_kind, EntryKind::StackGuard { mask: GUARD_CF | GUARD_ZF, taken_if_any: true });
        assert_eq!(p.rets.iter().map(|s| s.addr).collect::<Vec<_>>(), vec![ENTRY + 0x0e]);
        assert!(!p.rets[0].emulated, "ret is single-stepped");
    }

    #[test]
    fn guard_to_something_else_is_not_a_guard() {
        let code = small_frame();
        let p = plan(&func(ENTRY, code.len()), &code, &|_| false).unwrap();
        assert_eq!(p.entry_kind, EntryKind::FirstInstruction);
        assert_eq!(p.entry.addr, ENTRY);
        assert!(!p.entry.emulated, "cmp is single-stepped");
    }

    #[test]
    fn leaf_without_guard_uses_first_instruction() {
        let code = [0x48, 0x89, 0xc3, 0xc3]; // mov rbx,rax ; ret
        let p = plan(&func(ENTRY, code.len()), &code, &|_| true).unwrap();
        assert_eq!(p.entry_kind, EntryKind::FirstInstruction);
        assert_eq!(p.rets.len(), 1);
    }

    #[test]
    fn no_ret_means_entry_only() {
        let code = [0xeb, 0xfe]; // jmp self
        let p = plan(&func(ENTRY, code.len()), &code, &|_| true).unwrap();
        assert!(p.rets.is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let code = [0x0f, 0xff, 0xff, 0xff];
        assert!(plan(&func(ENTRY, code.len()), &code, &|_| true).is_err());
    }
}
