//! Where a goroutine's id and its parent's id live in `runtime.g`.
//!
//! The probes read `g.goid` and `g.parentGoid` (Go 1.21+) through the `g`
//! pointer in R14, so requests can be followed across the goroutines they
//! start. The offsets come from the DWARF that describes the target (its
//! own, or a `--symbols` file); a stripped binary without `--symbols` gets
//! them from [`TABLE`], which lists only releases whose layout was read from
//! DWARF of a real build (tests/goroutine_offsets.rs checks every row it can
//! build against DWARF).

use crate::resolve::{Dwarf, Machine};

/// Offsets of the goroutine-identity fields in `runtime.g`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GOffsets {
    /// `runtime.g.goid`.
    pub goid: u64,
    /// `runtime.g.parentGoid`; `None` before Go 1.21, which lacks it.
    pub parent_goid: Option<u64>,
}

/// Where the offsets of a session came from, for the notices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The DWARF describing the target.
    Dwarf,
    /// [`TABLE`], by the binary's Go release.
    Table,
}

/// `(machine, Go 1.N, offsets)`, read from the DWARF of real builds: amd64
/// go1.19.8 (targets/, Debian's Go) and go1.26.8 (kube-apiserver v1.36.3).
/// The struct is stable within a release; between releases fields move.
pub const TABLE: &[(Machine, u32, GOffsets)] = &[
    (Machine::X86_64, 19, GOffsets { goid: 152, parent_goid: None }),
    (Machine::X86_64, 26, GOffsets { goid: 152, parent_goid: Some(280) }),
];

impl GOffsets {
    /// From DWARF: `None` when it does not describe `runtime.g.goid`.
    pub fn from_dwarf(dwarf: &Dwarf) -> Option<Self> {
        let goid = dwarf.struct_member_offset("runtime.g", "goid")?;
        Some(Self { goid, parent_goid: dwarf.struct_member_offset("runtime.g", "parentGoid") })
    }

    /// From [`TABLE`], for Go `1.minor` on `machine`.
    pub fn from_table(machine: Machine, minor: u32) -> Option<Self> {
        TABLE.iter().find(|(m, v, _)| *m == machine && *v == minor).map(|&(_, _, o)| o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_answers_only_for_the_releases_it_lists() {
        assert_eq!(GOffsets::from_table(Machine::X86_64, 26).and_then(|o| o.parent_goid), Some(280));
        assert_eq!(GOffsets::from_table(Machine::X86_64, 19).map(|o| o.parent_goid), Some(None));
        assert_eq!(GOffsets::from_table(Machine::X86_64, 22), None);
        assert_eq!(GOffsets::from_table(Machine::Aarch64, 26), None);
    }
}
