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
    /// `runtime.goexit1`: the goroutine is ending; its in-flight calls are
    /// abandoned (they panicked or called `runtime.Goexit`).
    Goexit = 2,
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
        let kind = match (raw >> 32) as u8 {
            1 => SiteKind::Return,
            2 => SiteKind::Goexit,
            _ => SiteKind::Entry,
        };
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
    /// Returns matched with their entry (each adds to the histogram).
    pub returns: u64,
    /// Matched returns whose `error` result was non-nil.
    pub errors: u64,
    /// Sum of the latencies of matched returns, ns.
    pub sum_ns: u64,
    /// Largest latency of a matched return, ns.
    pub max_ns: u64,
    /// RET hits with no in-flight entry on the goroutine: the call began
    /// before attach, or its state was evicted from the bounded map.
    pub unmatched_returns: u64,
    /// Entries not tracked because the goroutine already had
    /// [`MAX_DEPTH`] traced calls in flight (they are still counted).
    pub depth_overflows: u64,
    /// Entries that `--filter` left out: not counted in `calls`, not
    /// timed, no event. Zero when no filter is set.
    pub filtered: u64,
}

impl FuncCounters {
    /// Adds another CPU's counters to these (the maximum is the larger).
    pub fn add(&mut self, other: &FuncCounters) {
        self.calls += other.calls;
        self.morestack_skips += other.morestack_skips;
        self.returns += other.returns;
        self.errors += other.errors;
        self.sum_ns += other.sum_ns;
        self.max_ns = self.max_ns.max(other.max_ns);
        self.unmatched_returns += other.unmatched_returns;
        self.depth_overflows += other.depth_overflows;
        self.filtered += other.filtered;
    }
}

#[cfg(feature = "user")]
// SAFETY: FuncCounters is repr(C), Copy, and made of u64 fields with no padding.
unsafe impl aya::Pod for FuncCounters {}

/// Traced calls one goroutine can have in flight at once (nesting depth of
/// traced functions, recursion included). On kube-apiserver an update runs
/// admission inside `(*store).GuaranteedUpdate`, on one goroutine: with the
/// storage, authn, authz and admission presets, 12 frames (the limit until
/// then) left 4,301 calls of 15 s of updates untimed, the webhook
/// dispatchers' among them; 20 leave none, with those presets and with
/// every preset (`all`). The in-flight map's kernel
/// memory grows with it: 8,192 goroutines of 20 frames of 208 bytes, 34 MB.
pub const MAX_DEPTH: usize = 20;
/// Bytes of one string argument kept per call.
pub const STR_CAP: usize = 128;
/// Integer/pointer arguments kept per call.
pub const MAX_SCALARS: usize = 4;

/// Where an argument lives at the entry site.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArgLoc {
    /// [`LOC_NONE`], [`LOC_REG`] or [`LOC_STACK`].
    pub kind: u8,
    /// Register index (see [`REG_NAMES`]) when `kind` is [`LOC_REG`].
    pub reg: u8,
    /// Explicit padding.
    pub _pad: [u8; 2],
    /// Offset from the start of the stack argument area (8(SP) at entry).
    pub stack_off: u32,
}

/// Not captured.
pub const LOC_NONE: u8 = 0;
/// In a register.
pub const LOC_REG: u8 = 1;
/// In the stack argument area.
pub const LOC_STACK: u8 = 2;

/// Register indexes used by [`ArgLoc::reg`] and [`FuncConfig::err_reg`]: Go's
/// amd64 integer argument registers in ABI order.
pub const REG_NAMES: [&str; 9] = ["RAX", "RBX", "RCX", "RDI", "RSI", "R8", "R9", "R10", "R11"];
/// No register.
pub const REG_NONE: u8 = 0xff;

/// Track in-flight calls (entry + RET probes): latency, errors, events.
pub const CFG_TRACK: u32 = 1 << 0;
/// The function's last result is an `error`; see [`FuncConfig::err_reg`].
pub const CFG_ERRORS: u32 = 1 << 1;
/// Emit a ring-buffer event per returned call.
pub const CFG_EMIT: u32 = 1 << 2;
/// Record the caller chain at entry.
pub const CFG_STACKS: u32 = 1 << 3;
/// Capture arguments at entry.
pub const CFG_ARGS: u32 = 1 << 4;
/// The function has the `--filter` argument, at [`FuncConfig::filter_ptr`]
/// and [`FuncConfig::filter_len`]: its calls are kept iff the value matches.
/// Without it, a call is kept iff it runs nested inside a kept call of such
/// a function on the same goroutine.
pub const CFG_FILTER_ARG: u32 = 1 << 5;
/// The function is detached: its entry probe, if it still fires, counts
/// nothing.
pub const CFG_OFF: u32 = 1 << 6;
/// `--capture`: read the field paths of the function's [`CaptureConfig`] at
/// entry and send them as a [`CaptureEvent`].
pub const CFG_CAPTURE: u32 = 1 << 7;

/// What the kernel does for one function, set by user space before attach
/// and changed while running (e.g. to stop tracking a detached function).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FuncConfig {
    /// `CFG_*` bits.
    pub flags: u32,
    /// Register holding the type word of the `error` result at RET.
    pub err_reg: u8,
    /// Explicit padding.
    pub _pad: [u8; 3],
    /// Data pointer of the captured string argument.
    pub str_ptr: ArgLoc,
    /// Length of the captured string argument.
    pub str_len: ArgLoc,
    /// Captured integer/pointer arguments.
    pub scalars: [ArgLoc; MAX_SCALARS],
    /// Length word of a secret string argument: only its length is read,
    /// never its bytes ([`LOC_NONE`] when there is none or secrets are not
    /// redacted).
    pub secret_len: ArgLoc,
    /// Data pointer of the `--filter` argument (with [`CFG_FILTER_ARG`]).
    pub filter_ptr: ArgLoc,
    /// Length of the `--filter` argument.
    pub filter_len: ArgLoc,
    /// Bumped by user space each time the function's RET probes are removed
    /// (latency paused). A frame pushed under another epoch may have missed
    /// its RET, so a RET that finds it does not time it.
    pub epoch: u32,
}

impl Default for FuncConfig {
    fn default() -> Self {
        Self {
            flags: 0,
            err_reg: REG_NONE,
            _pad: [0; 3],
            str_ptr: ArgLoc::default(),
            str_len: ArgLoc::default(),
            scalars: [ArgLoc::default(); MAX_SCALARS],
            secret_len: ArgLoc::default(),
            filter_ptr: ArgLoc::default(),
            filter_len: ArgLoc::default(),
            epoch: 0,
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), Copy, integer fields with explicit padding only.
unsafe impl aya::Pod for FuncConfig {}

/// One traced call in flight.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Frame {
    /// Function id.
    pub func: u32,
    /// Length of the string argument as the caller passed it.
    pub str_len: u32,
    /// Length of the secret string argument (its bytes are never read).
    pub secret_len: u32,
    /// `FRAME_*` bits.
    pub flags: u32,
    /// The function's [`FuncConfig::epoch`] at entry.
    pub epoch: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// Entry time, `bpf_ktime_get_ns`.
    pub start_ns: u64,
    /// Return address at entry: the direct caller, which a frame-pointer
    /// walk from the entry site would skip.
    pub caller: u64,
    /// Stack id of the rest of the chain, or negative when not recorded.
    pub stack_id: i64,
    /// Captured integer/pointer arguments.
    pub scalars: [u64; MAX_SCALARS],
    /// The first bytes of the string argument.
    pub str: [u8; STR_CAP],
}

/// The call was left out by `--filter`: its frame only pairs its RET, which
/// then records nothing.
pub const FRAME_SKIP: u32 = 1 << 0;
/// The call was kept because its own `--filter` argument matched: calls
/// nested inside it on the same goroutine are kept too.
pub const FRAME_ANCHOR: u32 = 1 << 1;
/// The call has a secret argument whose length is in `secret_len`.
pub const FRAME_SECRET: u32 = 1 << 2;
/// The call's `--capture` values were sent at entry: its call event is
/// never sampled out, so the values always find their call.
pub const FRAME_CAPTURED: u32 = 1 << 3;

/// The traced calls in flight on one goroutine, innermost last.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GStack {
    /// Number of frames in use.
    pub depth: u32,
    /// Calls entered while all frames were in use, not yet returned. Calls
    /// nest, so the next RETs on the goroutine belong to these.
    pub overflow: u32,
    /// The frames; only `frames[..depth]` are meaningful.
    pub frames: [Frame; MAX_DEPTH],
}

/// A returned call, sent to user space through the ring buffer.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CallEvent {
    /// Function id.
    pub func: u32,
    /// `EV_*` bits.
    pub flags: u32,
    /// Address of the goroutine's `runtime.g`.
    pub g: u64,
    /// Goroutine id, or 0 when its offset in `runtime.g` is unknown.
    pub goid: u64,
    /// Id of the goroutine that started this one (`runtime.g.parentGoid`,
    /// Go 1.21+), or 0 when unknown.
    pub parent_goid: u64,
    /// Entry time, `bpf_ktime_get_ns`.
    pub start_ns: u64,
    /// Wall duration, ns.
    pub dur_ns: u64,
    /// Return address at entry (the direct caller), or 0.
    pub caller: u64,
    /// Stack id, or negative.
    pub stack_id: i64,
    /// Captured integer/pointer arguments.
    pub scalars: [u64; MAX_SCALARS],
    /// Length of the string argument as passed (may exceed [`STR_CAP`]).
    pub str_len: u32,
    /// Length of the secret string argument, with [`EV_SECRET`]; its bytes
    /// never leave the target.
    pub secret_len: u32,
    /// The first `min(str_len, STR_CAP)` bytes of the string argument.
    pub str: [u8; STR_CAP],
}

/// The call's `error` result was non-nil.
pub const EV_ERROR: u32 = 1 << 0;
/// The string argument was captured.
pub const EV_STR: u32 = 1 << 1;
/// The secret argument's length was read (see [`CallEvent::secret_len`]).
pub const EV_SECRET: u32 = 1 << 2;

/// Field paths read per function (`--capture`).
pub const MAX_CAPTURES: usize = 4;
/// Pointers followed per field path, the parameter's own included: a path
/// follows at most `MAX_DEREFS - 1` pointer fields.
pub const MAX_DEREFS: usize = 4;

/// Nothing to read.
pub const LEAF_NONE: u8 = 0;
/// A Go `string`: its bytes (up to [`STR_CAP`]) and its length.
pub const LEAF_STRING: u8 = 1;
/// An integer, bool or pointer of [`FieldPath::size`] bytes, read as a
/// little-endian number.
pub const LEAF_INT: u8 = 2;
/// A secret `string`: its length word only, never its bytes.
pub const LEAF_STRING_LEN: u8 = 3;

/// One `--capture` field path, as the kernel follows it: the pointer
/// parameter at `base`, then `hops` pointer fields (each at `offsets[i]`
/// from the struct the previous pointer points at), then the leaf at
/// `leaf_off` from the last struct. Inline struct fields need no hop:
/// their offsets are already added in.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FieldPath {
    /// Where the pointer parameter the path starts from lives at entry.
    pub base: ArgLoc,
    /// `LEAF_*`.
    pub leaf: u8,
    /// Bytes of an integer leaf: 1, 2, 4 or 8.
    pub size: u8,
    /// Pointer fields followed after the parameter, at most `MAX_DEREFS - 1`.
    pub hops: u8,
    /// Explicit padding.
    pub _pad: u8,
    /// Offset of the leaf in the last struct reached.
    pub leaf_off: u32,
    /// Offset of each followed pointer field in the struct before it.
    pub offsets: [u32; MAX_DEREFS - 1],
    /// Explicit padding.
    pub _pad2: u32,
}

/// The field paths the kernel reads at one function's entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureConfig {
    /// Paths in use, at most [`MAX_CAPTURES`].
    pub count: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// The paths; only `paths[..count]` are meaningful.
    pub paths: [FieldPath; MAX_CAPTURES],
}

#[cfg(feature = "user")]
// SAFETY: repr(C), Copy, integer fields with explicit padding only.
unsafe impl aya::Pod for CaptureConfig {}

/// The path was read: `num`, or `len` and `bytes`, hold its value.
pub const CAP_OK: u32 = 1 << 0;
/// A pointer on the path was nil.
pub const CAP_NIL: u32 = 1 << 1;
/// Reading the target's memory faulted.
pub const CAP_FAULT: u32 = 1 << 2;

/// One field path's value.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CaptureValue {
    /// `CAP_*`.
    pub flags: u32,
    /// A string leaf's length as the target holds it (may exceed [`STR_CAP`]).
    pub len: u32,
    /// An integer leaf's value.
    pub num: u64,
    /// The first `min(len, STR_CAP)` bytes of a string leaf.
    pub bytes: [u8; STR_CAP],
}

/// The field paths of one call, read at entry and sent through their own
/// ring buffer; user space joins it to the call's [`CallEvent`] by
/// `(g, start_ns, func)` when the call returns.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CaptureEvent {
    /// Function id.
    pub func: u32,
    /// Values in use (the function's [`CaptureConfig::count`]).
    pub count: u32,
    /// Address of the goroutine's `runtime.g`.
    pub g: u64,
    /// Entry time, the same value as the call's [`CallEvent::start_ns`].
    pub start_ns: u64,
    /// One value per path, in the config's order.
    pub values: [CaptureValue; MAX_CAPTURES],
}

/// A `--filter` is set: see [`Filter`].
pub const FILTER_ON: u32 = 1 << 0;
/// The pattern is a prefix (it ended in `*`); otherwise the value must
/// equal it.
pub const FILTER_PREFIX: u32 = 1 << 1;

/// The `--filter ARG=PATTERN` of the session, one entry in an array map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filter {
    /// `FILTER_*` bits; 0 keeps every call.
    pub flags: u32,
    /// Bytes of `pattern` in use, at most [`STR_CAP`].
    pub len: u32,
    /// The pattern, without the trailing `*`.
    pub pattern: [u8; STR_CAP],
}

impl Default for Filter {
    fn default() -> Self {
        Self { flags: 0, len: 0, pattern: [0; STR_CAP] }
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), Copy, integer fields and a byte array, no padding.
unsafe impl aya::Pod for Filter {}

/// Session-wide settings, one entry in an array map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalConfig {
    /// Emit an event for a call only when `(per-CPU sequence & sample_mask) == 0`;
    /// 0 emits every call. User space raises it under load.
    pub sample_mask: u64,
    /// Offset of `goid` in `runtime.g`, or 0 when unknown.
    pub goid_offset: u64,
    /// Offset of `parentGoid` in `runtime.g`, or 0 when unknown.
    pub parent_goid_offset: u64,
}

impl GlobalStats {
    /// Adds another CPU's counts to these.
    pub fn add(&mut self, other: &GlobalStats) {
        self.dropped += other.dropped;
        self.sampled_out += other.sampled_out;
        self.emitted += other.emitted;
        self.goexit_cleanups += other.goexit_cleanups;
        self.captures += other.captures;
        self.captures_dropped += other.captures_dropped;
        self.over_allowance += other.over_allowance;
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), Copy, u64 fields only.
unsafe impl aya::Pod for GlobalConfig {}

/// Session-wide counters, per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalStats {
    /// Events lost because the ring buffer was full.
    pub dropped: u64,
    /// Events not emitted because of sampling.
    pub sampled_out: u64,
    /// Events emitted.
    pub emitted: u64,
    /// Goroutine exits that discarded abandoned in-flight calls.
    pub goexit_cleanups: u64,
    /// `--capture` records sent.
    pub captures: u64,
    /// `--capture` records lost because their ring buffer was full.
    pub captures_dropped: u64,
    /// Timed calls of a function that had already used its allowance of
    /// timed calls (see `ALLOWANCE` in the eBPF program); user space
    /// removes that function's RET probes when this moves.
    pub over_allowance: u64,
}

#[cfg(feature = "user")]
// SAFETY: repr(C), Copy, u64 fields only.
unsafe impl aya::Pod for GlobalStats {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_stable() {
        use core::mem::{align_of, size_of};
        assert_eq!(size_of::<FuncCounters>(), 72);
        assert_eq!(align_of::<FuncCounters>(), 8);
        assert_eq!(size_of::<ArgLoc>(), 8);
        assert_eq!(size_of::<FuncConfig>(), 8 + 8 * (2 + MAX_SCALARS + 3) + 4);
        assert_eq!(size_of::<Frame>(), 48 + 8 * MAX_SCALARS + STR_CAP);
        assert_eq!(size_of::<Filter>(), 8 + STR_CAP);
        assert_eq!(size_of::<GStack>(), 8 + MAX_DEPTH * size_of::<Frame>());
        assert_eq!(size_of::<CallEvent>(), 64 + 8 * MAX_SCALARS + 8 + STR_CAP);
        assert_eq!(size_of::<GlobalConfig>(), 24);
        assert_eq!(size_of::<GlobalStats>(), 56);
        assert_eq!(size_of::<FieldPath>(), 8 + 8 + 4 * MAX_DEREFS);
        assert_eq!(size_of::<CaptureConfig>(), 8 + MAX_CAPTURES * size_of::<FieldPath>());
        assert_eq!(size_of::<CaptureValue>(), 16 + STR_CAP);
        assert_eq!(size_of::<CaptureEvent>(), 24 + MAX_CAPTURES * size_of::<CaptureValue>());
        assert_eq!(align_of::<CaptureEvent>(), 8);
        // The ring buffer reserves 8-byte aligned records.
        assert_eq!(align_of::<CallEvent>(), 8);
        assert_eq!(STR_CAP & (STR_CAP - 1), 0, "the probe masks string lengths with STR_CAP - 1");
    }

    #[test]
    fn cookie_round_trips() {
        for kind in [SiteKind::Entry, SiteKind::Return, SiteKind::Goexit] {
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
