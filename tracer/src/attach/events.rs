//! Turns the kernel's call events into trace records: kernel timestamps
//! become offsets from the session start, captured bytes become named
//! arguments, and return addresses become symbols.
//!
//! `--capture` values arrive at entry, through their own ring buffer, and
//! wait in [`PendingFields`] until the call's event arrives at return; the
//! two share `(g, start_ns, func)`. User space reads the call events first
//! and the captures second, so the capture of every call event read is
//! already there (its entry came before its return). A call whose event was
//! sampled out or lost leaves its capture behind: the oldest are evicted
//! past [`MAX_PENDING`], so memory stays bounded.

use std::collections::{BTreeMap, HashMap, VecDeque};

use analyzer::trace::{ArgValue, Call};
use tracer_common::{CAP_NIL, CAP_OK, CallEvent, CaptureEvent, EV_ERROR, EV_SECRET, EV_STR, STR_CAP};

use super::config::Captures;
use crate::{plan::fields::Leaf, resolve::Function};

/// `--capture` records kept waiting for their call's event. A long call
/// (a watch) outlives this many later calls only under heavy load.
pub const MAX_PENDING: usize = 65_536;

/// One call's `--capture` values, rendered, and whether a string was cut.
type Values = (Vec<(String, ArgValue)>, bool);

/// `--capture` values waiting for their call events.
#[derive(Default)]
pub struct PendingFields {
    by_call: HashMap<(u64, u64, u32), Values>,
    order: VecDeque<(u64, u64, u32)>,
    /// Records evicted before their call event came.
    pub evicted: u64,
}

impl PendingFields {
    /// Renders one capture record with its function's `captures` and keeps
    /// it until its call's event comes.
    pub fn add(&mut self, ev: &CaptureEvent, captures: &Captures) {
        let key = (ev.g, ev.start_ns, ev.func);
        let mut truncated = false;
        let values = captures
            .fields
            .iter()
            .zip(ev.values.iter().take(ev.count as usize))
            .map(|(f, v)| {
                let value = if v.flags & CAP_OK != 0 {
                    match (f.leaf, f.redacted) {
                        (Leaf::String, true) => ArgValue::Str(redacted(v.len)),
                        (Leaf::String, false) => {
                            let n = (v.len as usize).min(STR_CAP);
                            truncated |= v.len as usize > STR_CAP;
                            ArgValue::Str(String::from_utf8_lossy(&v.bytes[..n]).into_owned())
                        }
                        (Leaf::Int(_), true) => ArgValue::Str("<redacted>".into()),
                        (Leaf::Int(_), false) => ArgValue::Int(v.num),
                    }
                } else if v.flags & CAP_NIL != 0 {
                    ArgValue::Str("<nil>".into())
                } else {
                    ArgValue::Str("<unreadable>".into())
                };
                (f.key.clone(), value)
            })
            .collect();
        if self.by_call.insert(key, (values, truncated)).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > MAX_PENDING {
            if let Some(old) = self.order.pop_front()
                && self.by_call.remove(&old).is_some()
            {
                self.evicted += 1;
            }
        }
    }

    /// Moves the values captured at the entry of `ev`'s call into `call`.
    pub fn join(&mut self, ev: &CallEvent, call: &mut Call) {
        if let Some((values, truncated)) = self.by_call.remove(&(ev.g, ev.start_ns, ev.func)) {
            call.args.extend(values);
            call.truncated |= truncated;
        }
        // Keys of joined calls leave `order` lazily, when they reach its
        // front; bound it by the map's size too.
        if self.order.len() > 2 * self.by_call.len() + 1024 {
            let live = &self.by_call;
            self.order.retain(|k| live.contains_key(k));
        }
    }

    /// Records waiting.
    pub fn len(&self) -> usize {
        self.by_call.len()
    }

    /// True when none wait.
    pub fn is_empty(&self) -> bool {
        self.by_call.is_empty()
    }
}

/// Maps code addresses of the target to function names.
pub struct Symbolizer {
    /// (entry, end, name), sorted by entry; shared by the processes of one
    /// binary.
    ranges: std::sync::Arc<[(u64, u64, String)]>,
    /// Added to a file address to get the address in the running process
    /// (non-zero for position-independent executables).
    bias: u64,
}

impl Symbolizer {
    /// Builds the lookup table from the binary's functions.
    pub fn new(functions: &[Function], bias: u64) -> Self {
        let mut ranges: Vec<_> = functions.iter().map(|f| (f.entry, f.end, f.name.clone())).collect();
        ranges.sort_unstable_by_key(|r| r.0);
        Self { ranges: ranges.into(), bias }
    }

    /// A table without functions: every address stays in hex.
    pub fn empty() -> Self {
        Self { ranges: Vec::new().into(), bias: 0 }
    }

    /// The same table for another process of the binary, loaded at `bias`.
    pub fn with_bias(&self, bias: u64) -> Self {
        Self { ranges: std::sync::Arc::clone(&self.ranges), bias }
    }

    /// The function containing the instruction before a return address, or
    /// the address in hex when no function contains it.
    pub fn return_address(&self, addr: u64) -> String {
        let file_addr = addr.wrapping_sub(self.bias).wrapping_sub(1);
        let i = self.ranges.partition_point(|r| r.0 <= file_addr);
        match i.checked_sub(1).and_then(|i| self.ranges.get(i)) {
            Some((entry, end, name)) if file_addr >= *entry && file_addr < *end => name.clone(),
            _ => format!("{addr:#x}"),
        }
    }
}

/// The callers of a traced call, innermost first. `caller` is the return
/// address read at entry; `stack` is the frame-pointer chain recorded there
/// (its first entry is the probe site itself and is skipped). The direct
/// caller must come from `caller`: at the entry site the frame pointer still
/// belongs to the caller, so the walk skips it.
pub fn symbolize(caller: u64, stack: &[u64], sym: &Symbolizer) -> Vec<String> {
    let mut frames = Vec::new();
    if caller != 0 {
        frames.push(sym.return_address(caller));
        frames.extend(stack.iter().skip(1).filter(|&&a| a != 0).map(|&a| sym.return_address(a)));
    }
    frames
}

/// Converts one event; `stack` comes from [`symbolize`].
pub fn to_call(ev: &CallEvent, captures: &Captures, mono_start: u64, stack: &[String]) -> Call {
    let mut args = BTreeMap::new();
    let mut truncated = false;
    if let Some(name) = &captures.string
        && ev.flags & EV_STR != 0
    {
        let n = (ev.str_len as usize).min(STR_CAP);
        args.insert(name.clone(), ArgValue::Str(String::from_utf8_lossy(&ev.str[..n]).into_owned()));
        truncated = ev.str_len as usize > STR_CAP;
    }
    if let Some(name) = &captures.secret
        && ev.flags & EV_SECRET != 0
    {
        args.insert(name.clone(), ArgValue::Str(redacted(ev.secret_len)));
    }
    for (name, value) in captures.scalars.iter().zip(ev.scalars) {
        args.insert(name.clone(), ArgValue::Int(value));
    }
    Call {
        pid: None,
        func: ev.func,
        g: ev.g,
        goid: (ev.goid != 0).then_some(ev.goid),
        // 0 is also the parent of goroutines the runtime starts, but those
        // are never on a request: absent says as much.
        parent_goid: (ev.parent_goid != 0).then_some(ev.parent_goid),
        start_ns: ev.start_ns.saturating_sub(mono_start),
        dur_ns: ev.dur_ns,
        error: captures.errors.then_some(ev.flags & EV_ERROR != 0),
        args,
        truncated,
        stack: stack.to_vec(),
    }
}

/// What a secret argument reads as in a trace: its length, never its bytes.
pub fn redacted(len: u32) -> String {
    format!("<redacted {len} bytes>")
}

/// `CLOCK_MONOTONIC` now, in ns: the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

/// The load bias of a running executable: what to add to a file virtual
/// address to get the address in the process. `text_vaddr` is any code
/// address of the file and `text_offset` its file offset; the bias comes
/// from the executable's mapping that holds that offset. 0 for ordinary
/// (non-PIE) Go binaries, and whenever it cannot be read.
pub fn load_bias(pid: u32, text_vaddr: u64, text_offset: u64) -> u64 {
    let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else { return 0 };
    let Ok(maps) = crate::procfs::maps(pid) else { return 0 };
    maps.iter()
        .filter(|m| m.is_file(&exe))
        .find_map(|m| m.address_of(text_offset))
        .map_or(0, |addr| addr.wrapping_sub(text_vaddr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::Source;

    fn f(name: &str, entry: u64, end: u64) -> Function {
        Function { name: name.into(), entry, end, file: None, line: None, source: Source::Symtab }
    }

    fn event() -> CallEvent {
        let mut str = [0u8; STR_CAP];
        str[..7].copy_from_slice(b"/reg/ns");
        CallEvent {
            func: 1,
            flags: EV_STR | EV_ERROR,
            g: 0xc000,
            goid: 0,
            parent_goid: 0,
            start_ns: 5_000,
            dur_ns: 2_000_000,
            caller: 0x2010,
            stack_id: 3,
            scalars: [7, 0, 0, 0],
            str_len: 7,
            secret_len: 0,
            str,
        }
    }

    #[test]
    fn converts_arguments_errors_and_stacks() {
        let sym = Symbolizer::new(&[f("main.b", 0x3000, 0x3100), f("main.a", 0x2000, 0x2100)], 0);
        let caps =
            Captures { string: Some("key".into()), scalars: vec!["ttl".into()], errors: true, ..Default::default() };
        let stack = symbolize(event().caller, &[0x1009, 0x3050, 0x9999], &sym);
        let call = to_call(&event(), &caps, 1_000, &stack);
        assert_eq!(call.start_ns, 4_000);
        assert_eq!(call.error, Some(true));
        assert_eq!(call.goid, None);
        assert_eq!(call.args["key"], ArgValue::Str("/reg/ns".into()));
        assert_eq!(call.args["ttl"], ArgValue::Int(7));
        assert!(!call.truncated);
        assert_eq!(call.stack, ["main.a", "main.b", "0x9999"]);
    }

    #[test]
    fn long_strings_are_marked_truncated() {
        let mut ev = event();
        ev.str_len = 500;
        let caps = Captures { string: Some("key".into()), ..Default::default() };
        let call = to_call(&ev, &caps, 0, &[]);
        assert!(call.truncated);
        assert_eq!(call.error, None, "no error result: not reported");
        match &call.args["key"] {
            ArgValue::Str(s) => assert_eq!(s.len(), STR_CAP),
            other => panic!("{other:?}"),
        }
    }

    /// A secret reads as its length; the event's string bytes (the captured
    /// non-secret string) are unaffected.
    #[test]
    fn a_secret_reads_as_a_redaction_marker() {
        let mut ev = event();
        ev.flags |= EV_SECRET;
        ev.secret_len = 64;
        let caps = Captures { string: Some("user".into()), secret: Some("token".into()), ..Default::default() };
        let call = to_call(&ev, &caps, 0, &[]);
        assert_eq!(call.args["token"], ArgValue::Str("<redacted 64 bytes>".into()));
        assert_eq!(call.args["user"], ArgValue::Str("/reg/ns".into()));
        // Without the flag the kernel did not read it: nothing is made up.
        let call = to_call(&event(), &caps, 0, &[]);
        assert!(!call.args.contains_key("token"));
    }

    fn capture_event(values: &[(u32, u32, u64, &[u8])]) -> CaptureEvent {
        let empty = tracer_common::CaptureValue { flags: 0, len: 0, num: 0, bytes: [0xaa; STR_CAP] };
        let mut ev = CaptureEvent {
            func: 1,
            count: values.len() as u32,
            g: 0xc000,
            start_ns: 5_000,
            values: [empty; tracer_common::MAX_CAPTURES],
        };
        for (v, &(flags, len, num, bytes)) in ev.values.iter_mut().zip(values) {
            v.flags = flags;
            v.len = len;
            v.num = num;
            v.bytes[..bytes.len()].copy_from_slice(bytes);
        }
        ev
    }

    fn field(key: &str, leaf: Leaf, redacted: bool) -> super::super::config::Field {
        super::super::config::Field { key: key.into(), leaf, redacted }
    }

    /// Values captured at entry join the call with the same (g, start,
    /// func), once; a long string marks the call truncated.
    #[test]
    fn captured_fields_join_their_call() {
        use tracer_common::CAP_FAULT;
        let caps = Captures {
            fields: vec![
                field("r.Method", Leaf::String, false),
                field("r.URL.Path", Leaf::String, false),
                field("r.ContentLength", Leaf::Int(8), false),
                field("r.Token", Leaf::String, true),
            ],
            ..Default::default()
        };
        let mut pending = PendingFields::default();
        let long = [b'p'; STR_CAP];
        pending.add(
            &capture_event(&[
                (CAP_OK, 4, 0, b"POST"),
                (CAP_OK, 300, 0, &long),
                (CAP_OK, 0, 42, b""),
                (CAP_OK, 64, 0, b""),
            ]),
            &caps,
        );
        let mut other = capture_event(&[(CAP_NIL, 0, 0, b""), (CAP_FAULT, 0, 0, b"")]);
        other.start_ns = 6_000;
        pending.add(&other, &caps);
        assert_eq!(pending.len(), 2);

        let mut call = to_call(&event(), &Captures::default(), 0, &[]);
        pending.join(&event(), &mut call);
        assert_eq!(call.args["r.Method"], ArgValue::Str("POST".into()));
        assert_eq!(call.args["r.URL.Path"], ArgValue::Str("p".repeat(STR_CAP)));
        assert_eq!(call.args["r.ContentLength"], ArgValue::Int(42));
        assert_eq!(call.args["r.Token"], ArgValue::Str("<redacted 64 bytes>".into()));
        assert!(call.truncated);
        assert_eq!(pending.len(), 1, "joined once");

        let mut ev = event();
        ev.start_ns = 6_000;
        let mut call = to_call(&ev, &Captures::default(), 0, &[]);
        pending.join(&ev, &mut call);
        assert_eq!(call.args["r.Method"], ArgValue::Str("<nil>".into()));
        assert_eq!(call.args["r.URL.Path"], ArgValue::Str("<unreadable>".into()));
        assert!(pending.is_empty());
        // A call whose capture never came has only its own arguments.
        let mut call = to_call(&ev, &Captures::default(), 0, &[]);
        pending.join(&ev, &mut call);
        assert!(call.args.is_empty());
    }

    #[test]
    fn captures_left_behind_are_evicted_past_the_limit() {
        let caps = Captures { fields: vec![field("r.Method", Leaf::String, false)], ..Default::default() };
        let mut pending = PendingFields::default();
        for i in 0..MAX_PENDING as u64 + 10 {
            let mut ev = capture_event(&[(CAP_OK, 3, 0, b"GET")]);
            ev.start_ns = i;
            pending.add(&ev, &caps);
        }
        assert_eq!((pending.len(), pending.evicted), (MAX_PENDING, 10));
    }

    #[test]
    fn a_return_address_at_a_function_end_belongs_to_it() {
        let sym = Symbolizer::new(&[f("main.a", 0x2000, 0x2100), f("main.b", 0x2100, 0x2200)], 0);
        assert_eq!(sym.return_address(0x2100), "main.a", "a call as the last instruction");
        assert_eq!(sym.return_address(0x2101), "main.b");
        assert_eq!(sym.return_address(0x10), "0x10");
    }
}
