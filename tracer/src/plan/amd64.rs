//! x86-64 specifics: the Go stack-guard prologue, RET sites, and which
//! instructions the kernel's uprobe code emulates rather than single-steps.
//!
//! Go (register ABI, g in R14) opens a function that may grow its stack with
//! a comparison against `g.stackguard0` at `16(R14)` followed by a conditional
//! branch to a block that calls `runtime.morestack*` and jumps back to the
//! entry. Large frames compute the bound first (`LEA -n(SP), R12`; huge ones
//! add an overflow branch), so the guard is found by decoding, not by offset.

use std::ops::Range;

use iced_x86::{Code, ConditionCode, Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind, Register};
use tracer_common::{GUARD_CF, GUARD_ZF};

use super::{
    EntryKind, PlanError, ProbePlan, Site,
    abi::Registers,
    arch::{Arch, Insn, StackGuard},
};
use crate::resolve::Function;

/// Go's ABIInternal register files on amd64 (integer args and results in
/// this order; g lives in R14 and is never an argument). The integer list is
/// `tracer_common::REG_NAMES`, whose indexes the kernel side reads registers
/// by, so a name placed here is always one the probe can read.
pub const REGISTERS: Registers = Registers {
    int: &tracer_common::REG_NAMES,
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

/// The x86-64 seam.
pub struct Amd64;

impl Arch for Amd64 {
    fn name(&self) -> &'static str {
        "x86-64"
    }

    fn registers(&self) -> &'static Registers {
        &REGISTERS
    }

    fn decode(&self, function: &Function, code: &[u8]) -> Result<Vec<Insn>, PlanError> {
        Ok(decode_all(function, code)?
            .iter()
            .map(|i| Insn { addr: i.ip(), is_ret: i.mnemonic() == Mnemonic::Ret, emulated: kernel_emulates(i) })
            .collect())
    }

    fn stack_guard(&self, function: &Function, code: &[u8], is_morestack: &dyn Fn(u64) -> bool) -> Option<StackGuard> {
        let mut decoder = Decoder::with_ip(64, code, function.entry, DecoderOptions::NONE);
        let mut window = Vec::with_capacity(PROLOGUE_WINDOW);
        while window.len() < PROLOGUE_WINDOW && decoder.can_decode() {
            let insn = decoder.decode();
            if insn.is_invalid() {
                break;
            }
            window.push(insn);
        }
        find_stack_guard(&window, code, function.entry, is_morestack)
    }
}

/// Plans the probe sites of one function whose bytes are `code`.
pub fn plan(function: &Function, code: &[u8], is_morestack: &dyn Fn(u64) -> bool) -> Result<ProbePlan, PlanError> {
    super::plan_with(&Amd64, function, code, is_morestack)
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
fn find_stack_guard(
    window: &[Instruction],
    code: &[u8],
    entry: u64,
    is_morestack: &dyn Fn(u64) -> bool,
) -> Option<StackGuard> {
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
    let taken = morestack_block(code, entry, jcc.near_branch_target(), is_morestack);
    let fallthrough = morestack_block(code, entry, jcc.next_ip(), is_morestack);
    // "The condition holds" means the branch is taken; the morestack path is
    // taken iff the condition holds (branch → morestack) or fails (fall-through).
    let (taken_if_any, block) = match (taken, fallthrough) {
        (Some(block), None) => (true_if_any, block),
        (None, Some(block)) => (!true_if_any, block),
        _ => return None,
    };
    Some(StackGuard {
        site: Site { addr: jcc.ip(), emulated: kernel_emulates(jcc) },
        kind: EntryKind::StackGuard { mask, taken_if_any },
        rerun: vec![entry..jcc.next_ip(), block],
    })
}

/// When the straight-line block at `target` (inside this function) calls
/// `runtime.morestack*` before any other control transfer, its extent: up
/// to and including the jump back that follows the call (or just the call
/// when something else follows).
fn morestack_block(code: &[u8], entry: u64, target: u64, is_morestack: &dyn Fn(u64) -> bool) -> Option<Range<u64>> {
    let start = usize::try_from(target.checked_sub(entry)?).ok()?;
    let bytes = code.get(start..)?;
    let mut decoder = Decoder::with_ip(64, bytes, target, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    for _ in 0..MORESTACK_BLOCK_WINDOW {
        if !decoder.can_decode() {
            return None;
        }
        decoder.decode_out(&mut insn);
        match insn.flow_control() {
            FlowControl::Next => continue,
            FlowControl::Call if is_morestack(insn.near_branch_target()) => {
                let mut end = insn.next_ip();
                if decoder.can_decode() {
                    decoder.decode_out(&mut insn);
                    if insn.flow_control() == FlowControl::UnconditionalBranch {
                        end = insn.next_ip();
                    }
                }
                return Some(target..end);
            }
            _ => return None,
        }
    }
    None
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
