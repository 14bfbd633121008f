//! What the kernel records for each function: whether it tracks in-flight
//! calls, where the `error` result's type word is at RET, and which
//! arguments to copy at entry. Derived from the probe plan and the argument
//! layout (`plan::abi`), never from guesses: a function whose layout is
//! unknown gets no error or argument capture, and says so.

use tracer_common::{
    ArgLoc, CFG_ARGS, CFG_EMIT, CFG_ERRORS, CFG_STACKS, CFG_TRACK, FuncConfig, LOC_REG, LOC_STACK, MAX_SCALARS,
    REG_NAMES,
};

use crate::plan::{
    EntryKind, ProbePlan, Target,
    abi::{Location, Slot},
};

/// What the user asked the kernel to record.
#[derive(Clone, Copy, Debug, Default)]
pub struct Wants {
    /// Entry and RET probes (latency, errors); false for count-only.
    pub latency: bool,
    /// Per-call events (for the trace file, arguments, stacks).
    pub events: bool,
    /// Capture arguments.
    pub args: bool,
    /// Record caller stacks.
    pub stacks: bool,
}

/// The names of what a function's config captures, for decoding its events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Captures {
    /// Name of the captured string argument.
    pub string: Option<String>,
    /// Names of the captured integer/pointer arguments, in slot order.
    pub scalars: Vec<String>,
    /// True when the function reports errors (its last result is `error`).
    pub errors: bool,
}

/// Builds the kernel config of one function. `slots` is its argument layout,
/// `None` when the binary has no type information for it.
pub fn build(plan: &ProbePlan, slots: Option<&[Slot]>, wants: Wants) -> (FuncConfig, Captures) {
    let mut config = FuncConfig::default();
    let mut captures = Captures::default();
    let function_probe = plan.target == Target::Function
        && matches!(plan.entry_kind, EntryKind::StackGuard { .. } | EntryKind::FirstInstruction);
    if !wants.latency || !function_probe || plan.rets.is_empty() {
        return (config, captures);
    }
    config.flags |= CFG_TRACK;
    if wants.events {
        config.flags |= CFG_EMIT;
    }
    if wants.stacks {
        config.flags |= CFG_STACKS;
    }
    let Some(slots) = slots else { return (config, captures) };

    // An error result is an interface: non-nil iff its first (type) word is.
    if let Some(last) = slots.iter().rfind(|s| s.is_result)
        && last.type_name == "error"
        && let Location::Registers(regs) = &last.location
        && let Some(reg) = regs.first().and_then(|r| reg_index(r))
    {
        config.flags |= CFG_ERRORS;
        config.err_reg = reg;
        captures.errors = true;
    }

    if wants.args {
        for slot in slots.iter().filter(|s| !s.is_result) {
            if slot.type_name == "string" && captures.string.is_none() {
                if let Some((ptr, len)) = string_locs(&slot.location) {
                    config.str_ptr = ptr;
                    config.str_len = len;
                    captures.string = Some(slot.name.clone());
                }
            } else if is_scalar(&slot.type_name)
                && captures.scalars.len() < MAX_SCALARS
                && let Some(loc) = scalar_loc(&slot.location)
            {
                config.scalars[captures.scalars.len()] = loc;
                captures.scalars.push(slot.name.clone());
            }
        }
        if captures.string.is_some() || !captures.scalars.is_empty() {
            config.flags |= CFG_ARGS | CFG_EMIT;
        }
    }
    (config, captures)
}

fn reg_index(name: &str) -> Option<u8> {
    REG_NAMES.iter().position(|r| *r == name).map(|i| i as u8)
}

fn reg_loc(name: &str) -> Option<ArgLoc> {
    Some(ArgLoc { kind: LOC_REG, reg: reg_index(name)?, _pad: [0; 2], stack_off: 0 })
}

fn stack_loc(off: u64) -> Option<ArgLoc> {
    Some(ArgLoc { kind: LOC_STACK, reg: 0, _pad: [0; 2], stack_off: u32::try_from(off).ok()? })
}

fn string_locs(location: &Location) -> Option<(ArgLoc, ArgLoc)> {
    match location {
        Location::Registers(regs) if regs.len() == 2 => Some((reg_loc(regs[0])?, reg_loc(regs[1])?)),
        Location::Stack(off) => Some((stack_loc(*off)?, stack_loc(off.checked_add(8)?)?)),
        _ => None,
    }
}

fn scalar_loc(location: &Location) -> Option<ArgLoc> {
    match location {
        Location::Registers(regs) if regs.len() == 1 => reg_loc(regs[0]),
        Location::Stack(off) => stack_loc(*off),
        _ => None,
    }
}

/// Integer, bool and pointer types fit one word and read as a number.
fn is_scalar(type_name: &str) -> bool {
    type_name.starts_with('*')
        || matches!(
            type_name,
            "int"
                | "int8"
                | "int16"
                | "int32"
                | "int64"
                | "uint"
                | "uint8"
                | "uint16"
                | "uint32"
                | "uint64"
                | "uintptr"
                | "bool"
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        plan::{Site, Target},
        resolve::{Function, Source},
    };

    fn plan(rets: usize) -> ProbePlan {
        ProbePlan {
            function: Function {
                name: "k8s.io/apiserver/pkg/storage/etcd3.(*store).Create".into(),
                entry: 0x1000,
                end: 0x1100,
                file: None,
                line: None,
                source: Source::Dwarf,
            },
            entry: Site { addr: 0x1009, emulated: true },
            entry_kind: EntryKind::FirstInstruction,
            rets: (0..rets).map(|i| Site { addr: 0x1050 + i as u64, emulated: false }).collect(),
            target: Target::Function,
        }
    }

    fn slot(name: &str, ty: &str, is_result: bool, location: Location) -> Slot {
        Slot { name: name.into(), type_name: ty.into(), is_result, location }
    }

    /// `(*store).Create(ctx, key string, obj, out runtime.Object, ttl uint64) error` as the ABI places it.
    fn create() -> Vec<Slot> {
        use Location::*;
        vec![
            slot("s", "*etcd3.store", false, Registers(vec!["RAX"])),
            slot("ctx", "context.Context", false, Registers(vec!["RBX", "RCX"])),
            slot("key", "string", false, Registers(vec!["RDI", "RSI"])),
            slot("obj", "runtime.Object", false, Registers(vec!["R8", "R9"])),
            slot("out", "runtime.Object", false, Registers(vec!["R10", "R11"])),
            slot("ttl", "uint64", false, Stack(0)),
            slot("~r0", "error", true, Registers(vec!["RAX", "RBX"])),
        ]
    }

    #[test]
    fn create_captures_key_ttl_and_error() {
        let wants = Wants { latency: true, events: false, args: true, stacks: false };
        let (c, caps) = build(&plan(2), Some(&create()), wants);
        assert_eq!(c.flags, CFG_TRACK | CFG_ERRORS | CFG_ARGS | CFG_EMIT);
        assert_eq!(c.err_reg, 0, "error type word in RAX");
        assert_eq!((c.str_ptr.kind, c.str_ptr.reg, c.str_len.reg), (LOC_REG, 3, 4), "key in RDI:RSI");
        assert_eq!(caps.string.as_deref(), Some("key"));
        assert_eq!(caps.scalars, ["s", "ttl"]);
        assert_eq!((c.scalars[1].kind, c.scalars[1].stack_off), (LOC_STACK, 0));
        assert!(caps.errors);
    }

    #[test]
    fn count_only_and_entry_only_functions_track_nothing() {
        let wants = Wants { latency: false, events: true, args: true, stacks: true };
        assert_eq!(build(&plan(2), Some(&create()), wants).0, FuncConfig::default());
        let wants = Wants { latency: true, ..wants };
        assert_eq!(build(&plan(0), Some(&create()), wants).0, FuncConfig::default(), "no RET: entry-only");
    }

    #[test]
    fn unknown_layout_tracks_latency_only() {
        let (c, caps) = build(&plan(1), None, Wants { latency: true, events: false, args: true, stacks: false });
        assert_eq!(c.flags, CFG_TRACK);
        assert_eq!(caps, Captures::default());
    }

    #[test]
    fn a_non_error_last_result_is_not_an_error() {
        let mut slots = create();
        slots.last_mut().unwrap().type_name = "bool".into();
        let (c, caps) = build(&plan(1), Some(&slots), Wants { latency: true, ..Default::default() });
        assert_eq!(c.flags & CFG_ERRORS, 0);
        assert!(!caps.errors);
    }
}
