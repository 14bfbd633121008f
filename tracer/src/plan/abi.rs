//! Where each argument and result of a Go function lives at entry and at
//! RET, under Go's register ABI (ABIInternal, Go >= 1.17), computed from
//! the DWARF parameter types.
//!
//! The rules (golang/go `src/cmd/compile/abi-internal.md`): a value is split
//! into integer and float pieces (a string is 2 integer words, a slice 3, an
//! interface 2, a struct field by field, an array of length 1 as its element).
//! It takes registers only if *all* its pieces fit in the registers left;
//! otherwise it goes whole on the stack, and later values may still take
//! registers. Results start again from the first register.

use crate::resolve::{Param, TypeKind};

/// Where one value lives.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// In these registers, in order (e.g. `["RDI", "RSI"]` for a string).
    Registers(Vec<&'static str>),
    /// On the stack, at this byte offset from the start of the argument area
    /// (8(SP) at entry on amd64, just above the return address).
    Stack(u64),
    /// ktrace cannot tell: DWARF gave a type it does not model, so this
    /// value and every later one are not placed.
    Unknown,
}

/// One argument or result with its location.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Slot {
    /// Source name (`~r0` for unnamed results).
    pub name: String,
    /// Go type name.
    pub type_name: String,
    /// True for a result.
    pub is_result: bool,
    /// Where it lives.
    pub location: Location,
}

/// One register-sized piece of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Piece {
    Int,
    Float,
}

/// The register files of one architecture.
pub struct Registers {
    /// Integer registers in assignment order.
    pub int: &'static [&'static str],
    /// Float registers in assignment order.
    pub float: &'static [&'static str],
}

/// Splits a value into register pieces; `None` when it can never go in
/// registers (arrays longer than one).
fn pieces(kind: &TypeKind, out: &mut Vec<Piece>) -> Option<()> {
    match kind {
        TypeKind::Int { size } if *size <= 8 => out.push(Piece::Int),
        TypeKind::Int { .. } => return None,
        TypeKind::Float { .. } => out.push(Piece::Float),
        TypeKind::Pointer => out.push(Piece::Int),
        TypeKind::String | TypeKind::Interface => out.extend([Piece::Int; 2]),
        TypeKind::Slice => out.extend([Piece::Int; 3]),
        TypeKind::Struct { fields } => {
            for (_, field, _) in fields {
                pieces(field, out)?;
            }
        }
        TypeKind::Array { len: 0, .. } => {}
        TypeKind::Array { elem, len: 1 } => pieces(elem, out)?,
        TypeKind::Array { .. } | TypeKind::Other => return None,
    }
    Some(())
}

/// Alignment of a value in the stack argument area.
fn align(kind: &TypeKind) -> u64 {
    match kind {
        TypeKind::Int { size } | TypeKind::Float { size } => (*size).clamp(1, 8),
        TypeKind::Pointer | TypeKind::String | TypeKind::Slice | TypeKind::Interface => 8,
        TypeKind::Struct { fields } => fields.iter().map(|(_, k, _)| align(k)).max().unwrap_or(1),
        TypeKind::Array { elem, .. } => align(elem),
        TypeKind::Other => 8,
    }
}

fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to.max(1)) * to.max(1)
}

/// Places every parameter (arguments, then results) per the register ABI.
pub fn layout(params: &[Param], regs: &Registers) -> Vec<Slot> {
    let mut slots = Vec::with_capacity(params.len());
    let mut stack = 0u64;
    let mut lost = false;
    for is_result in [false, true] {
        // Results start over at the first register; their stack slots follow
        // the arguments', aligned to a pointer.
        let (mut next_int, mut next_float) = (0usize, 0usize);
        if is_result {
            stack = round_up(stack, 8);
        }
        for p in params.iter().filter(|p| p.is_result == is_result) {
            let location = if lost || matches!(p.kind, TypeKind::Other) {
                lost = true;
                Location::Unknown
            } else {
                let mut ps = Vec::new();
                let fits = pieces(&p.kind, &mut ps).is_some() && {
                    let ints = ps.iter().filter(|&&x| x == Piece::Int).count();
                    let floats = ps.len() - ints;
                    next_int + ints <= regs.int.len() && next_float + floats <= regs.float.len()
                };
                if fits {
                    let names = ps
                        .iter()
                        .map(|piece| match piece {
                            Piece::Int => {
                                next_int += 1;
                                regs.int[next_int - 1]
                            }
                            Piece::Float => {
                                next_float += 1;
                                regs.float[next_float - 1]
                            }
                        })
                        .collect();
                    Location::Registers(names)
                } else {
                    stack = round_up(stack, align(&p.kind));
                    let at = stack;
                    stack += p.size;
                    Location::Stack(at)
                }
            };
            slots.push(Slot { name: p.name.clone(), type_name: p.type_name.clone(), is_result, location });
        }
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::amd64::REGISTERS;

    fn p(name: &str, kind: TypeKind, size: u64, is_result: bool) -> Param {
        Param { name: name.into(), type_name: String::new(), size, is_result, kind }
    }

    fn locs(slots: &[Slot]) -> Vec<(String, Location)> {
        slots.iter().map(|s| (s.name.clone(), s.location.clone())).collect()
    }

    fn r(names: &[&'static str]) -> Location {
        Location::Registers(names.to_vec())
    }

    /// `(*store).Create(ctx, key string, obj, out runtime.Object, ttl uint64) error`,
    /// as tabled in docs/go-tracing-notes.md: ttl is the tenth word, so it
    /// goes on the stack, and the error result starts over at RAX.
    #[test]
    fn etcd3_store_create() {
        let params = [
            p("s", TypeKind::Pointer, 8, false),
            p("ctx", TypeKind::Interface, 16, false),
            p("key", TypeKind::String, 16, false),
            p("obj", TypeKind::Interface, 16, false),
            p("out", TypeKind::Interface, 16, false),
            p("ttl", TypeKind::Int { size: 8 }, 8, false),
            p("~r0", TypeKind::Interface, 16, true),
        ];
        assert_eq!(
            locs(&layout(&params, &REGISTERS)),
            vec![
                ("s".into(), r(&["RAX"])),
                ("ctx".into(), r(&["RBX", "RCX"])),
                ("key".into(), r(&["RDI", "RSI"])),
                ("obj".into(), r(&["R8", "R9"])),
                ("out".into(), r(&["R10", "R11"])),
                ("ttl".into(), Location::Stack(0)),
                ("~r0".into(), r(&["RAX", "RBX"])),
            ]
        );
    }

    /// A value that does not fit goes whole on the stack, and a later, smaller
    /// one still takes the registers left.
    #[test]
    fn later_values_still_take_registers() {
        let params = [
            p("a", TypeKind::Slice, 24, false),
            p("b", TypeKind::Slice, 24, false),
            p("c", TypeKind::Slice, 24, false),
            p("d", TypeKind::Slice, 24, false),
            p("e", TypeKind::Int { size: 4 }, 4, false),
            p("f", TypeKind::Float { size: 8 }, 8, false),
        ];
        let l = locs(&layout(&params, &REGISTERS));
        assert_eq!(l[2].1, r(&["R9", "R10", "R11"]));
        assert_eq!(l[3].1, Location::Stack(0));
        assert_eq!(l[4].1, Location::Stack(24));
        assert_eq!(l[5].1, r(&["X0"]));
    }

    #[test]
    fn structs_split_by_field_and_long_arrays_spill() {
        let pair = TypeKind::Struct {
            fields: vec![("n".into(), TypeKind::Int { size: 1 }, 0), ("x".into(), TypeKind::Float { size: 8 }, 8)],
        };
        let arr = TypeKind::Array { elem: Box::new(TypeKind::Int { size: 8 }), len: 2 };
        let params = [p("p", pair, 16, false), p("a", arr, 16, false), p("~r0", TypeKind::Other, 8, true)];
        let l = locs(&layout(&params, &REGISTERS));
        assert_eq!(l[0].1, r(&["RAX", "X0"]));
        assert_eq!(l[1].1, Location::Stack(0));
        assert_eq!(l[2].1, Location::Unknown);
    }
}
