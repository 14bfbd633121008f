//! What the kernel records for each function: whether it tracks in-flight
//! calls, where the `error` result's type word is at RET, and which
//! arguments to copy at entry. Derived from the probe plan and the argument
//! layout (`plan::abi`), never from guesses: a function whose layout is
//! unknown gets no error or argument capture, and says so.
//!
//! Secrets (`Slot::secret`, see `plan::secrets`): the kernel is given only
//! the location of a secret string's *length* word, never of its data
//! pointer, so its bytes cannot be copied out of the target; user space
//! renders it as `<redacted N bytes>`. The string slot therefore takes the
//! first string parameter that is *not* secret (e.g. a user name before a
//! password), and the first secret string gets the length slot. Secret
//! integers are not captured at all. `--unredacted-args` turns this off.
//!
//! `--filter ARG=PATTERN`: a function with a string parameter named ARG gets
//! its location, and the kernel compares it with the pattern at entry.
//!
//! `--capture` field paths ([`fields`]) become the function's
//! `CaptureConfig`: a secret string leaf is read as its length only
//! (`LEAF_STRING_LEN`), a secret integer not at all.

use tracer_common::{
    ArgLoc, CFG_ARGS, CFG_CAPTURE, CFG_EMIT, CFG_ERRORS, CFG_FILTER_ARG, CFG_STACKS, CFG_TRACK, CaptureConfig,
    FieldPath, FuncConfig, LEAF_INT, LEAF_NONE, LEAF_STRING, LEAF_STRING_LEN, LOC_REG, LOC_STACK, MAX_CAPTURES,
    MAX_DEREFS, MAX_SCALARS, REG_NAMES,
};

use crate::plan::{
    EntryKind, ProbePlan, Target,
    abi::{Location, Slot},
    fields::{Leaf, Resolved},
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
    /// Capture secret arguments like any other (`--unredacted-args`).
    pub unredacted_args: bool,
}

/// The names of what a function's config captures, for decoding its events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Captures {
    /// Name of the captured string argument.
    pub string: Option<String>,
    /// Name of the secret string argument whose length alone is read.
    pub secret: Option<String>,
    /// Names of the captured integer/pointer arguments, in slot order.
    pub scalars: Vec<String>,
    /// True when the function reports errors (its last result is `error`).
    pub errors: bool,
    /// True when the function has the `--filter` argument.
    pub filter: bool,
    /// Its `--capture` field paths, in the kernel's order.
    pub fields: Vec<Field>,
}

/// How user space renders one `--capture` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The path as written: its key in the call's `args`.
    pub key: String,
    /// How the leaf was read.
    pub leaf: Leaf,
    /// A secret: its length only (a string), or nothing (an integer).
    pub redacted: bool,
}

/// Adds the `--capture` paths resolved for one function to its config,
/// when the kernel tracks its calls (a path is read only at the entry of a
/// tracked, kept call, and sent beside its call event); returns what the
/// kernel reads. With `unredacted`, secrets are read like anything else.
pub fn add_fields(
    config: &mut FuncConfig,
    captures: &mut Captures,
    paths: &[Resolved],
    unredacted: bool,
) -> Option<CaptureConfig> {
    if config.flags & CFG_TRACK == 0 || paths.is_empty() {
        return None;
    }
    let mut out = CaptureConfig::default();
    for path in paths.iter().take(MAX_CAPTURES) {
        let Some(base) = scalar_loc(&path.base) else { continue };
        if path.hops.len() >= MAX_DEREFS {
            continue;
        }
        let redacted = path.secret && !unredacted;
        let (leaf, size) = match (path.leaf, redacted) {
            (Leaf::String, false) => (LEAF_STRING, 16),
            (Leaf::String, true) => (LEAF_STRING_LEN, 16),
            (Leaf::Int(n), false) => (LEAF_INT, n),
            (Leaf::Int(_), true) => (LEAF_NONE, 0),
        };
        let (Ok(leaf_off), Ok(offsets)) = (
            u32::try_from(path.leaf_off),
            path.hops.iter().map(|&h| u32::try_from(h)).collect::<Result<Vec<u32>, _>>(),
        ) else {
            continue;
        };
        let mut p = FieldPath { base, leaf, size, hops: offsets.len() as u8, leaf_off, ..FieldPath::default() };
        p.offsets[..offsets.len()].copy_from_slice(&offsets);
        out.paths[out.count as usize] = p;
        out.count += 1;
        captures.fields.push(Field { key: path.text.clone(), leaf: path.leaf, redacted });
    }
    if out.count == 0 {
        return None;
    }
    config.flags |= CFG_CAPTURE | CFG_EMIT;
    Some(out)
}

/// The names of a function's parameters, for `--capture` and `--filter`
/// messages.
pub fn param_names(slots: Option<&[Slot]>) -> impl Iterator<Item = &str> + Clone {
    slots.into_iter().flatten().filter(|s| !s.is_result).map(|s| s.name.as_str())
}

/// What a function's layout says about the `--filter` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterArg {
    /// No parameter of that name, or no layout.
    Absent,
    /// A string parameter: its data pointer and length.
    Found(ArgLoc, ArgLoc),
    /// A parameter of that name with another type.
    NotString(String),
    /// A credential: filtering on it is refused.
    Secret,
    /// A string whose location ktrace cannot tell.
    Unplaced,
}

/// Looks up the string parameter `name` in a layout.
pub fn filter_arg(slots: Option<&[Slot]>, name: &str) -> FilterArg {
    let Some(slot) = slots.and_then(|s| s.iter().find(|s| !s.is_result && s.name == name)) else {
        return FilterArg::Absent;
    };
    if slot.type_name != "string" {
        return FilterArg::NotString(slot.type_name.clone());
    }
    if slot.secret {
        return FilterArg::Secret;
    }
    match string_locs(&slot.location) {
        Some((ptr, len)) => FilterArg::Found(ptr, len),
        None => FilterArg::Unplaced,
    }
}

/// Builds the kernel config of one function. `slots` is its argument layout,
/// `None` when the binary has no type information for it; `filter` is the
/// name of the `--filter` argument.
pub fn build(plan: &ProbePlan, slots: Option<&[Slot]>, wants: Wants, filter: Option<&str>) -> (FuncConfig, Captures) {
    let mut config = FuncConfig::default();
    let mut captures = Captures::default();
    let function_probe = plan.target == Target::Function
        && matches!(plan.entry_kind, EntryKind::StackGuard { .. } | EntryKind::FirstInstruction);
    // Arguments are in their ABI places only at a function's own entry.
    if function_probe
        && let Some(name) = filter
        && let FilterArg::Found(ptr, len) = filter_arg(slots, name)
    {
        config.flags |= CFG_FILTER_ARG;
        config.filter_ptr = ptr;
        config.filter_len = len;
        captures.filter = true;
    }
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
            let secret = slot.secret && !wants.unredacted_args;
            if slot.type_name == "string" {
                let Some((ptr, len)) = string_locs(&slot.location) else { continue };
                if secret {
                    // The length word only: the data pointer is never given to the kernel.
                    if captures.secret.is_none() {
                        config.secret_len = len;
                        captures.secret = Some(slot.name.clone());
                    }
                } else if captures.string.is_none() {
                    config.str_ptr = ptr;
                    config.str_len = len;
                    captures.string = Some(slot.name.clone());
                }
            } else if !secret
                && is_scalar(&slot.type_name)
                && captures.scalars.len() < MAX_SCALARS
                && let Some(loc) = scalar_loc(&slot.location)
            {
                config.scalars[captures.scalars.len()] = loc;
                captures.scalars.push(slot.name.clone());
            }
        }
        if captures.string.is_some() || captures.secret.is_some() || !captures.scalars.is_empty() {
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
        Slot { name: name.into(), type_name: ty.into(), is_result, location, secret: false }
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
        let wants = Wants { latency: true, args: true, ..Default::default() };
        let (c, caps) = build(&plan(2), Some(&create()), wants, None);
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
        let wants = Wants { latency: false, events: true, args: true, stacks: true, unredacted_args: false };
        assert_eq!(build(&plan(2), Some(&create()), wants, None).0, FuncConfig::default());
        let wants = Wants { latency: true, ..wants };
        assert_eq!(build(&plan(0), Some(&create()), wants, None).0, FuncConfig::default(), "no RET: entry-only");
    }

    #[test]
    fn unknown_layout_tracks_latency_only() {
        let (c, caps) = build(&plan(1), None, Wants { latency: true, args: true, ..Default::default() }, None);
        assert_eq!(c.flags, CFG_TRACK);
        assert_eq!(caps, Captures::default());
    }

    #[test]
    fn a_non_error_last_result_is_not_an_error() {
        let mut slots = create();
        slots.last_mut().unwrap().type_name = "bool".into();
        let (c, caps) = build(&plan(1), Some(&slots), Wants { latency: true, ..Default::default() }, None);
        assert_eq!(c.flags & CFG_ERRORS, 0);
        assert!(!caps.errors);
    }

    /// `(*cachedTokenAuthenticator).AuthenticateToken(ctx, token string)`.
    fn authenticate_token() -> Vec<Slot> {
        use Location::*;
        let mut token = slot("token", "string", false, Registers(vec!["RDI", "RSI"]));
        token.secret = true;
        vec![
            slot("a", "*cache.cachedTokenAuthenticator", false, Registers(vec!["RAX"])),
            slot("ctx", "context.Context", false, Registers(vec!["RBX", "RCX"])),
            token,
            slot("~r0", "*authenticator.Response", true, Registers(vec!["RAX"])),
            slot("~r1", "bool", true, Registers(vec!["RBX"])),
            slot("~r2", "error", true, Registers(vec!["RCX", "RDI"])),
        ]
    }

    /// The kernel learns where the token's length is and nothing about where
    /// its bytes are: no string pointer, no scalar in RDI.
    #[test]
    fn a_secret_string_gives_the_kernel_its_length_only() {
        let wants = Wants { latency: true, args: true, ..Default::default() };
        let (c, caps) = build(&plan(1), Some(&authenticate_token()), wants, None);
        assert_eq!(c.str_ptr, ArgLoc::default());
        assert_eq!(c.str_len, ArgLoc::default());
        assert_eq!((c.secret_len.kind, c.secret_len.reg), (LOC_REG, 4), "the length word in RSI");
        assert!(c.scalars.iter().all(|s| s.kind == 0 || s.reg != 3), "RDI (the data pointer) is not read");
        assert_eq!(caps.string, None);
        assert_eq!(caps.secret.as_deref(), Some("token"));
        assert_eq!(caps.scalars, ["a"]);
        assert_ne!(c.flags & CFG_ARGS, 0);
    }

    #[test]
    fn unredacted_args_capture_the_secret_like_any_string() {
        let wants = Wants { latency: true, args: true, unredacted_args: true, ..Default::default() };
        let (c, caps) = build(&plan(1), Some(&authenticate_token()), wants, None);
        assert_eq!((c.str_ptr.reg, c.str_len.reg), (3, 4));
        assert_eq!(c.secret_len, ArgLoc::default());
        assert_eq!((caps.string.as_deref(), caps.secret), (Some("token"), None));
    }

    /// `Login(user, password string, pin int)`: the user name is the string
    /// captured, the password gets the length slot, the secret integer
    /// nothing.
    #[test]
    fn the_first_non_secret_string_is_captured_beside_the_secret() {
        use Location::*;
        let mut password = slot("password", "string", false, Registers(vec!["RCX", "RDI"]));
        password.secret = true;
        let mut pin = slot("pinSecret", "int", false, Registers(vec!["RSI"]));
        pin.secret = true;
        let slots = vec![password, slot("user", "string", false, Registers(vec!["RAX", "RBX"])), pin];
        let (c, caps) = build(&plan(1), Some(&slots), Wants { latency: true, args: true, ..Default::default() }, None);
        assert_eq!((caps.string.as_deref(), caps.secret.as_deref()), (Some("user"), Some("password")));
        assert_eq!((c.str_ptr.reg, c.str_len.reg, c.secret_len.reg), (0, 1, 3));
        assert!(caps.scalars.is_empty(), "{caps:?}");
    }

    #[test]
    fn the_filter_argument_is_located_by_name() {
        let wants = Wants { latency: true, ..Default::default() };
        let (c, caps) = build(&plan(1), Some(&create()), wants, Some("key"));
        assert_eq!(c.flags & CFG_FILTER_ARG, CFG_FILTER_ARG);
        assert_eq!((c.filter_ptr.reg, c.filter_len.reg), (3, 4));
        assert!(caps.filter);
        assert_eq!(c.flags & CFG_ARGS, 0, "filtering captures nothing by itself");
        let (c, caps) = build(&plan(1), Some(&create()), wants, Some("name"));
        assert_eq!((c.flags & CFG_FILTER_ARG, caps.filter), (0, false));

        assert_eq!(filter_arg(Some(&create()), "ttl"), FilterArg::NotString("uint64".into()));
        assert_eq!(filter_arg(Some(&authenticate_token()), "token"), FilterArg::Secret);
        assert_eq!(filter_arg(None, "key"), FilterArg::Absent);
        assert_eq!(filter_arg(Some(&create()), "~r0"), FilterArg::Absent, "results are not arguments");
    }

    fn path(text: &str, hops: Vec<u64>, leaf_off: u64, leaf: Leaf, secret: bool) -> Resolved {
        Resolved { text: text.into(), base: Location::Registers(vec!["RDI"]), hops, leaf_off, leaf, secret }
    }

    #[test]
    fn field_paths_become_the_kernels_capture_config() {
        let wants = Wants { latency: true, ..Default::default() };
        let (mut c, mut caps) = build(&plan(1), Some(&create()), wants, None);
        let paths = [
            path("r.Method", vec![], 0, Leaf::String, false),
            path("r.URL.Path", vec![16], 56, Leaf::String, false),
            path("r.Secret.Token", vec![8], 0, Leaf::String, true),
            path("r.Secret.Pin", vec![8], 16, Leaf::Int(4), true),
        ];
        let k = add_fields(&mut c, &mut caps, &paths, false).expect("a capture config");
        assert_eq!(c.flags & (CFG_CAPTURE | CFG_EMIT), CFG_CAPTURE | CFG_EMIT);
        assert_eq!(k.count, 4);
        assert_eq!(
            (k.paths[0].base.kind, k.paths[0].base.reg, k.paths[0].leaf, k.paths[0].hops),
            (LOC_REG, 3, LEAF_STRING, 0)
        );
        assert_eq!((k.paths[1].hops, k.paths[1].offsets[0], k.paths[1].leaf_off), (1, 16, 56));
        assert_eq!(k.paths[2].leaf, LEAF_STRING_LEN, "a secret string: its length only");
        assert_eq!(k.paths[3].leaf, LEAF_NONE, "a secret integer: nothing");
        assert_eq!(caps.fields.iter().map(|f| f.redacted).collect::<Vec<_>>(), [false, false, true, true]);
        // --unredacted-args reads secrets like anything else.
        let (mut c, mut caps) = build(&plan(1), Some(&create()), wants, None);
        let k = add_fields(&mut c, &mut caps, &paths, true).unwrap();
        assert_eq!((k.paths[2].leaf, k.paths[3].leaf, k.paths[3].size), (LEAF_STRING, LEAF_INT, 4));
        // Untracked functions (count-only, no RET) read nothing.
        let (mut c, mut caps) = build(&plan(0), Some(&create()), wants, None);
        assert_eq!(add_fields(&mut c, &mut caps, &paths, false), None);
        assert_eq!(c.flags & CFG_CAPTURE, 0);
    }
}
