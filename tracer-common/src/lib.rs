//! Types and constants shared by the kernel side (`tracer-ebpf`) and user space
//! (`tracer`). Everything here is `no_std`, `#[repr(C)]` and `Copy`, with
//! explicit padding, so both compilers agree on the layout byte for byte.
//!
//! The attach cookie is the only channel from user space to a probe about
//! *which* site fired; its bit layout is defined once, here.
#![no_std]
#![deny(missing_docs)]

pub mod caps;
pub mod hist;

/// Maximum number of traced functions in one session; sizes the counter maps.
pub const MAX_FUNCS: u32 = 4096;

/// x86 EFLAGS carry flag.
pub const EFLAGS_CF: u64 = 1 << 0;
/// x86 EFLAGS zero flag.
pub const EFLAGS_ZF: u64 = 1 << 6;

/// Which kind of site a probe sits on.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteKind {
    /// The function's entry site (its stack-guard branch, or first instruction).
    Entry = 0,
    /// One of the function's RET instructions.
    Return = 1,
}

/// Everything a probe needs to know about the site it fired on, packed into
/// the 64-bit attach cookie.
///
/// Layout (bit 0 is the least significant):
/// - bits 0..32: function id (index into the per-function maps);
/// - bits 32..40: [`SiteKind`];
/// - bits 40..48: EFLAGS mask of the stack-guard branch (0 when the site is not a guard);
/// - bit 48: polarity: set when the function takes the `runtime.morestack`
///   path iff *any* masked flag is set (`CMP SP, guard` then JBE→morestack or
///   JA→body both mean this), clear when it does so iff *none* is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cookie {
    /// Index of the function in the per-function maps.
    pub func_id: u32,
    /// Entry or return site.
    pub kind: SiteKind,
    /// Flags tested by the stack-guard branch, as a compact mask (see [`Cookie::eflags_mask`]).
    pub guard_mask: u8,
    /// True when "any masked flag set" means the morestack path is taken.
    pub guard_taken_if_any: bool,
}

/// Compact guard-mask bits, widened to EFLAGS positions by [`Cookie::eflags_mask`].
pub const GUARD_CF: u8 = 1 << 0;
/// Compact guard-mask bit for ZF.
pub const GUARD_ZF: u8 = 1 << 1;

impl Cookie {
    /// Packs the cookie into the value given to the kernel at attach time.
    pub const fn encode(self) -> u64 {
        (self.func_id as u64)
            | ((self.kind as u64) << 32)
            | ((self.guard_mask as u64) << 40)
            | ((self.guard_taken_if_any as u64) << 48)
    }

    /// Unpacks a cookie read with `bpf_get_attach_cookie`.
    pub const fn decode(raw: u64) -> Self {
        let kind = if (raw >> 32) as u8 == SiteKind::Return as u8 { SiteKind::Return } else { SiteKind::Entry };
        Self { func_id: raw as u32, kind, guard_mask: (raw >> 40) as u8, guard_taken_if_any: (raw >> 48) & 1 == 1 }
    }

    /// The guard mask in EFLAGS bit positions.
    pub const fn eflags_mask(self) -> u64 {
        let mut m = 0;
        if self.guard_mask & GUARD_CF != 0 {
            m |= EFLAGS_CF;
        }
        if self.guard_mask & GUARD_ZF != 0 {
            m |= EFLAGS_ZF;
        }
        m
    }

    /// True when, with these saved EFLAGS, the stack-guard branch is about to
    /// jump to `runtime.morestack`. That pass re-enters the function after the
    /// stack grows, so it must not be counted as a call.
    pub const fn morestack_pass(self, eflags: u64) -> bool {
        let mask = self.eflags_mask();
        if mask == 0 {
            return false;
        }
        let any = eflags & mask != 0;
        if self.guard_taken_if_any { any } else { !any }
    }
}

/// Per-function exact counters, one slot per CPU in a per-CPU array; user
/// space sums the slots.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FuncCounters {
    /// Entry passes counted as calls.
    pub calls: u64,
    /// Entry passes skipped because they were the morestack pass.
    pub morestack_skips: u64,
}

#[cfg(feature = "user")]
// SAFETY: FuncCounters is repr(C), Copy, and made of u64 fields with no padding.
unsafe impl aya::Pod for FuncCounters {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_stable() {
        assert_eq!(core::mem::size_of::<FuncCounters>(), 16);
        assert_eq!(core::mem::align_of::<FuncCounters>(), 8);
    }

    #[test]
    fn cookie_round_trips() {
        for kind in [SiteKind::Entry, SiteKind::Return] {
            for mask in [0, GUARD_CF, GUARD_CF | GUARD_ZF] {
                for any in [false, true] {
                    let c = Cookie { func_id: 0xdead_beef, kind, guard_mask: mask, guard_taken_if_any: any };
                    assert_eq!(Cookie::decode(c.encode()), c);
                }
            }
        }
    }

    #[test]
    fn jbe_guard_skips_only_when_cf_or_zf_set() {
        let c = Cookie { func_id: 1, kind: SiteKind::Entry, guard_mask: GUARD_CF | GUARD_ZF, guard_taken_if_any: true };
        assert!(!c.morestack_pass(0x202));
        assert!(c.morestack_pass(0x202 | EFLAGS_CF));
        assert!(c.morestack_pass(0x202 | EFLAGS_ZF));
    }

    #[test]
    fn inverted_polarity_skips_when_no_flag_set() {
        let c =
            Cookie { func_id: 1, kind: SiteKind::Entry, guard_mask: GUARD_CF | GUARD_ZF, guard_taken_if_any: false };
        assert!(c.morestack_pass(0x202));
        assert!(!c.morestack_pass(0x202 | EFLAGS_CF));
    }

    #[test]
    fn plain_entry_never_skips() {
        let c = Cookie { func_id: 7, kind: SiteKind::Entry, guard_mask: 0, guard_taken_if_any: true };
        assert!(!c.morestack_pass(u64::MAX));
    }
}
