//! ktrace's uprobe programs. `ktrace_site` serves every site; the attach
//! cookie (see `tracer_common::Cookie`) says which function and which kind of
//! site fired. Counters and histograms are exact and per-CPU: this side never
//! samples them. Only the per-call events sent to user space may be sampled
//! (under load) or dropped (ring buffer full), and both are counted.
//!
//! Entry: the site is usually the stack-guard conditional branch, which the
//! kernel emulates (cheap) and which runs once per pass through the prologue.
//! The pass about to call `runtime.morestack` re-enters the function
//! afterwards; it is recognised from the saved EFLAGS and ignored. A tracked
//! function pushes a frame (start time, arguments, caller) on its goroutine's
//! stack of in-flight calls, keyed by the `g` pointer in R14: goroutines move
//! between threads, `g` structs never move.
//!
//! `--filter ARG=PATTERN` is decided at entry, before anything is counted:
//! a call of a function with the argument whose value matches is kept (an
//! *anchor*), and so is every call nested in an anchor on the same goroutine,
//! whatever its own arguments (the etcd client call inside a kept
//! `(*store).Create` carries the key with the `/registry` prefix). A
//! left-out call is counted only as `filtered` and still takes a frame,
//! marked skip, so its RET pairs correctly and records nothing.
//!
//! Secret arguments: only the length word is read, never the bytes.
//!
//! `--capture` field paths are read at entry of a tracked, kept call, right
//! after its frame gets its start time, and sent at once through their own
//! ring buffer (`CAPTURES`) with the function, `g` and that start time;
//! user space joins them to the call's event when the call returns. The
//! frames do not grow (20 frames in every goroutine's entry of an LRU map
//! would pay for 4 paths of 128 bytes each), and captures are never
//! sampled: a full ring drops them, and counts the drop. The call event of
//! a call whose values were sent is not sampled either, so the values
//! always find their call (a function with paths is one the user wants
//! every call of, like a request's root handler).
//!
//! RET: pops the innermost frame of the same function, so recursion pairs
//! correctly and frames left by a call that panicked and was recovered are
//! dropped when an outer call returns. Under an overhead budget user space
//! removes and restores a function's RET probes in turns; each removal bumps
//! the function's epoch, and a frame from another epoch is dropped untimed,
//! because the RET that finds it may belong to a later call. `runtime.goexit1` discards whatever a
//! dying goroutine left; the LRU map bounds the rest.
#![no_std]
#![no_main]

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_F_USER_STACK, BPF_RB_NO_WAKEUP, pt_regs},
    helpers::{bpf_get_attach_cookie, bpf_ktime_get_ns, bpf_probe_read_user, bpf_probe_read_user_buf},
    macros::{map, uprobe},
    maps::{Array, LruHashMap, PerCpuArray, RingBuf, StackTrace},
    programs::{ProbeContext, tracing::StackIdContext},
};
use tracer_common::{
    ArgLoc, CAP_FAULT, CAP_NIL, CAP_OK, CFG_ARGS, CFG_CAPTURE, CFG_EMIT, CFG_ERRORS, CFG_FILTER_ARG, CFG_OFF,
    CFG_STACKS, CFG_TRACK, CallEvent, Cookie, EV_ERROR, EV_SECRET, EV_STR, FILTER_ON, FILTER_PREFIX, FRAME_ANCHOR,
    FRAME_SECRET, FRAME_SKIP, Filter, FuncConfig, FuncCounters, GStack, GlobalConfig, GlobalStats, LOC_REG, LOC_STACK,
    MAX_DEPTH, MAX_FUNCS, MAX_SCALARS, STR_CAP, SiteKind, hist,
};
use tracer_common::{
    CaptureConfig, CaptureEvent, CaptureValue, FRAME_CAPTURED, FieldPath, LEAF_INT, LEAF_STRING, LEAF_STRING_LEN,
    MAX_CAPTURES, MAX_DEREFS,
};

#[map]
static COUNTERS: PerCpuArray<FuncCounters> = PerCpuArray::with_max_entries(MAX_FUNCS, 0);
/// One histogram per function; user space sets the number of entries to the
/// number of traced functions at load time.
#[map]
static HIST: PerCpuArray<[u64; hist::BUCKETS as usize]> = PerCpuArray::with_max_entries(1, 0);
#[map]
static FUNC_CONFIG: Array<FuncConfig> = Array::with_max_entries(MAX_FUNCS, 0);
#[map]
static CONFIG: Array<GlobalConfig> = Array::with_max_entries(1, 0);
#[map]
static STATS: PerCpuArray<GlobalStats> = PerCpuArray::with_max_entries(1, 0);
/// In-flight calls per goroutine. LRU: a goroutine that never returns from a
/// traced call cannot leak memory.
#[map]
static INFLIGHT: LruHashMap<u64, GStack> = LruHashMap::with_max_entries(8192, 0);
/// Zeroed template for a goroutine's first frame (too big for the BPF stack).
#[map]
static SCRATCH: PerCpuArray<GStack> = PerCpuArray::with_max_entries(1, 0);
/// The session's `--filter`, if any.
#[map]
static FILTER: Array<Filter> = Array::with_max_entries(1, 0);
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);
/// `--capture` field paths per function.
#[map]
static CAPTURE_CONFIG: Array<CaptureConfig> = Array::with_max_entries(MAX_FUNCS, 0);
/// `--capture` values, one record per kept call of a function with paths.
#[map]
static CAPTURES: RingBuf = RingBuf::with_byte_size(2 << 20, 0);
/// Timed calls per function since attach. Shared by every CPU and
/// incremented without an atomic: an increment lost to a race only lets a
/// function time one call more before it meets its allowance.
#[map]
static TIMED: Array<u64> = Array::with_max_entries(MAX_FUNCS, 0);
/// Per function, the `TIMED` count at which it has used its allowance of
/// timed calls for the budget window (0: unlimited: no budget, or a
/// function the budget never rotates).
/// A function called far more often than when its share was sized (one
/// idle at attach, then under load) would otherwise pay a single-step per
/// call until the next plan; each timed call past the allowance bumps
/// `over_allowance`, and user space removes its RET probes.
#[map]
static ALLOWANCE: Array<u64> = Array::with_max_entries(MAX_FUNCS, 0);
#[map]
static STACKS: StackTrace = StackTrace::with_max_entries(16384, 0);

#[uprobe]
pub fn ktrace_site(ctx: ProbeContext) -> u32 {
    // SAFETY: the helper only reads the cookie of the link that fired.
    let cookie = Cookie::decode(unsafe { bpf_get_attach_cookie(ctx.as_ptr()) });
    // SAFETY: ctx.regs points at the saved user registers for this hit.
    let regs = unsafe { &*ctx.regs };
    match cookie.kind {
        SiteKind::Entry => on_entry(&ctx, regs, cookie),
        SiteKind::Return => on_return(regs, cookie.func_id),
        SiteKind::Goexit => on_goexit(regs),
    }
    0
}

/// The floor for the cost benchmark: count the hit, nothing else.
#[uprobe]
pub fn ktrace_bare(ctx: ProbeContext) -> u32 {
    // SAFETY: as in ktrace_site.
    let cookie = Cookie::decode(unsafe { bpf_get_attach_cookie(ctx.as_ptr()) });
    if let Some(c) = COUNTERS.get_ptr_mut(cookie.func_id) {
        // SAFETY: per-CPU slot, preemption off while the program runs.
        unsafe { (*c).calls += 1 };
    }
    0
}

#[inline(always)]
fn on_entry(ctx: &ProbeContext, regs: &pt_regs, cookie: Cookie) {
    let func = cookie.func_id;
    let Some(c) = COUNTERS.get_ptr_mut(func) else { return };
    // SAFETY: a per-CPU slot is only touched by this CPU, and preemption is off
    // while a BPF program runs, so plain increments are exact.
    let c = unsafe { &mut *c };
    if cookie.morestack_pass(regs.eflags) {
        c.morestack_skips += 1;
        return;
    }
    let Some(cfg) = FUNC_CONFIG.get(func) else {
        c.calls += 1;
        return;
    };
    if cfg.flags & CFG_OFF != 0 {
        return;
    }
    let g = regs.r14;
    let sp = regs.rsp;
    let args = &arg_regs(regs);
    // --filter decides before anything is counted, so every counter, the
    // histogram and the events describe kept calls only.
    let mut frame_flags = 0;
    if let Some(filter) = FILTER.get(0)
        && filter.flags & FILTER_ON != 0
    {
        frame_flags = if cfg.flags & CFG_FILTER_ARG != 0 && arg_matches(args, sp, cfg, filter) {
            FRAME_ANCHOR
        } else if nested_in_kept(g) {
            0
        } else {
            FRAME_SKIP
        };
    }
    let skip = frame_flags & FRAME_SKIP != 0;
    if skip {
        c.filtered += 1;
    } else {
        c.calls += 1;
    }
    if cfg.flags & CFG_TRACK == 0 {
        return;
    }
    let stack = match INFLIGHT.get_ptr_mut(g) {
        Some(s) => s,
        None => {
            let Some(zero) = SCRATCH.get_ptr_mut(0) else { return };
            // SAFETY: per-CPU scratch; only the counts must be zero.
            unsafe {
                (*zero).depth = 0;
                (*zero).overflow = 0;
            }
            // SAFETY: the value pointer is a map value of the right type. Passed
            // by reference: a copy would not fit on the BPF stack.
            let template: &GStack = unsafe { &*zero };
            if INFLIGHT.insert(g, template, 0).is_err() {
                return;
            }
            let Some(s) = INFLIGHT.get_ptr_mut(g) else { return };
            s
        }
    };
    // SAFETY: map values stay valid for the program's run; another CPU can only
    // touch the same goroutine's entry if the goroutine ran there concurrently,
    // which the Go scheduler never does.
    let stack = unsafe { &mut *stack };
    let depth = stack.depth as usize;
    let Some(frame) = stack.frames.get_mut(depth) else {
        if !skip {
            c.depth_overflows += 1;
        }
        stack.overflow += 1;
        return;
    };
    frame.func = func;
    frame.flags = frame_flags;
    frame.epoch = cfg.epoch;
    if skip {
        // A left-out call still takes a frame, so its RET pairs with it and
        // not with an outer kept call of the same function.
        stack.depth = depth as u32 + 1;
        return;
    }
    frame.str_len = 0;
    frame.secret_len = 0;
    frame.caller = 0;
    frame.stack_id = -1;
    if cfg.flags & CFG_ARGS != 0 {
        for i in 0..MAX_SCALARS {
            frame.scalars[i] = read_arg(args, sp, &cfg.scalars[i]);
        }
        if cfg.str_ptr.kind != 0 {
            let ptr = read_arg(args, sp, &cfg.str_ptr);
            let len = read_arg(args, sp, &cfg.str_len);
            frame.str_len = len.min(u32::MAX as u64) as u32;
            let n = (len.min(STR_CAP as u64) as usize) & (STR_CAP * 2 - 1);
            if n > 0 && n <= STR_CAP {
                // SAFETY: reads user memory through the helper, which faults safely.
                if unsafe { bpf_probe_read_user_buf(ptr as *const u8, &mut frame.str[..n]) }.is_err() {
                    frame.str_len = 0;
                }
            }
        }
        // A secret: only the length word is read; the bytes stay in the target.
        if cfg.secret_len.kind != 0 {
            frame.secret_len = read_arg(args, sp, &cfg.secret_len).min(u32::MAX as u64) as u32;
            frame.flags |= FRAME_SECRET;
        }
    }
    if cfg.flags & CFG_STACKS != 0 {
        // At the entry site the frame pointer still belongs to the caller, so a
        // frame-pointer walk skips the direct caller; its return address is at SP.
        // SAFETY: reads user memory through the helper.
        frame.caller = unsafe { bpf_probe_read_user(regs.rsp as *const u64) }.unwrap_or(0);
        frame.stack_id = ctx.get_stackid(&STACKS, BPF_F_USER_STACK as u64).unwrap_or(-1);
    }
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    frame.start_ns = unsafe { bpf_ktime_get_ns() };
    stack.depth = depth as u32 + 1;
    if cfg.flags & CFG_CAPTURE != 0 && capture(args, sp, func, g, frame.start_ns) {
        frame.flags |= FRAME_CAPTURED;
    }
}

/// Reads the function's `--capture` paths and sends them, keyed by the
/// call's `(g, start_ns, func)`; true when they were sent.
#[inline(always)]
fn capture(args: &[u64; 9], sp: u64, func: u32, g: u64, start_ns: u64) -> bool {
    let Some(cc) = CAPTURE_CONFIG.get(func) else { return false };
    let Some(stats) = STATS.get_ptr_mut(0) else { return false };
    // SAFETY: per-CPU slot.
    let stats = unsafe { &mut *stats };
    let Some(mut entry) = CAPTURES.reserve::<CaptureEvent>(0) else {
        stats.captures_dropped += 1;
        return false;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at a reserved record of the right size; the
    // header and every value's flags, len and num are written before submit
    // (user space reads bytes only up to a value's len).
    unsafe {
        (*ev).func = func;
        (*ev).count = cc.count;
        (*ev).g = g;
        (*ev).start_ns = start_ns;
        for i in 0..MAX_CAPTURES {
            let v = &mut (*ev).values[i];
            v.flags = 0;
            v.len = 0;
            v.num = 0;
            if i < cc.count as usize {
                read_path(args, sp, &cc.paths[i], v);
            }
        }
    }
    stats.captures += 1;
    entry.submit(BPF_RB_NO_WAKEUP as u64);
    true
}

/// Follows one field path from its pointer parameter and reads its leaf.
#[inline(always)]
fn read_path(args: &[u64; 9], sp: u64, path: &FieldPath, v: &mut CaptureValue) {
    let mut addr = read_arg(args, sp, &path.base);
    for hop in 0..MAX_DEREFS - 1 {
        if hop >= path.hops as usize {
            break;
        }
        if addr == 0 {
            v.flags = CAP_NIL;
            return;
        }
        let at = addr.wrapping_add(path.offsets[hop] as u64);
        // SAFETY: reads user memory through the helper, which faults safely.
        match unsafe { bpf_probe_read_user(at as *const u64) } {
            Ok(next) => addr = next,
            Err(_) => {
                v.flags = CAP_FAULT;
                return;
            }
        }
    }
    if addr == 0 {
        v.flags = CAP_NIL;
        return;
    }
    let at = addr.wrapping_add(path.leaf_off as u64);
    match path.leaf {
        LEAF_INT => {
            let n = (path.size as usize) & 15;
            let mut word = [0u8; 8];
            if n == 0 || n > 8 {
                return;
            }
            // SAFETY: reads user memory through the helper.
            if unsafe { bpf_probe_read_user_buf(at as *const u8, &mut word[..n]) }.is_err() {
                v.flags = CAP_FAULT;
                return;
            }
            v.num = u64::from_le_bytes(word);
        }
        LEAF_STRING | LEAF_STRING_LEN => {
            // SAFETY: reads user memory through the helper.
            let Ok(len) = (unsafe { bpf_probe_read_user((at + 8) as *const u64) }) else {
                v.flags = CAP_FAULT;
                return;
            };
            v.len = len.min(u32::MAX as u64) as u32;
            if path.leaf == LEAF_STRING {
                // SAFETY: reads user memory through the helper.
                let Ok(ptr) = (unsafe { bpf_probe_read_user(at as *const u64) }) else {
                    v.flags = CAP_FAULT;
                    return;
                };
                let n = (len.min(STR_CAP as u64) as usize) & (STR_CAP * 2 - 1);
                if n > 0
                    && n <= STR_CAP
                    // SAFETY: reads user memory through the helper.
                    && unsafe { bpf_probe_read_user_buf(ptr as *const u8, &mut v.bytes[..n]) }.is_err()
                {
                    v.flags = CAP_FAULT;
                    return;
                }
            }
        }
        _ => return,
    }
    v.flags = CAP_OK;
}

/// True when the `--filter` argument of this call matches the pattern: equal
/// to it, or starting with it for a prefix pattern. Only the pattern's length
/// of the argument is read, 8 bytes at a time into the program's own stack
/// (no shared scratch a preempted run could see overwritten), and never
/// leaves the kernel.
#[inline(always)]
fn arg_matches(regs: &[u64; 9], sp: u64, cfg: &FuncConfig, filter: &Filter) -> bool {
    let len = read_arg(regs, sp, &cfg.filter_len);
    let want = filter.len as u64;
    let length_ok = if filter.flags & FILTER_PREFIX != 0 { len >= want } else { len == want };
    if !length_ok {
        return false;
    }
    let n = want as usize;
    if n > STR_CAP {
        return false;
    }
    let ptr = read_arg(regs, sp, &cfg.filter_ptr);
    for chunk in 0..STR_CAP / 8 {
        let off = chunk * 8;
        if off >= n {
            break;
        }
        // 1..=8 bytes; the mask keeps the verifier's bounds.
        let take = (n - off).min(8) & 15;
        if take == 0 || take > 8 {
            return false;
        }
        let mut word = [0u8; 8];
        // SAFETY: reads user memory through the helper, which faults safely.
        if unsafe { bpf_probe_read_user_buf((ptr + off as u64) as *const u8, &mut word[..take]) }.is_err() {
            return false;
        }
        for (j, byte) in word.iter().enumerate() {
            if j >= take {
                break;
            }
            match filter.pattern.get(off + j) {
                Some(p) if p == byte => {}
                _ => return false,
            }
        }
    }
    true
}

/// True when goroutine `g` has a kept call of a function with the
/// `--filter` argument in flight. A function detached since (no longer
/// tracked) does not count: its frames will never be popped.
#[inline(always)]
fn nested_in_kept(g: u64) -> bool {
    let Some(stack) = INFLIGHT.get_ptr(g) else { return false };
    // SAFETY: see on_entry.
    let stack = unsafe { &*stack };
    let top = stack.depth as usize;
    for i in 0..MAX_DEPTH {
        if i >= top {
            break;
        }
        let f = &stack.frames[i];
        if f.flags & FRAME_ANCHOR != 0
            && FUNC_CONFIG.get(f.func).is_some_and(|c| c.flags & CFG_TRACK != 0 && c.epoch == f.epoch)
        {
            return true;
        }
    }
    false
}

/// Go's integer argument registers in ABI order (`tracer_common::REG_NAMES`),
/// copied out of the context: the verifier only allows context reads at
/// constant offsets, so an indexed read must come from this copy.
#[inline(always)]
fn arg_regs(regs: &pt_regs) -> [u64; 9] {
    // black_box keeps the compiler from folding the index back into a
    // variable-offset context load.
    core::hint::black_box([regs.rax, regs.rbx, regs.rcx, regs.rdi, regs.rsi, regs.r8, regs.r9, regs.r10, regs.r11])
}

#[inline(always)]
fn reg(regs: &[u64; 9], index: u8) -> u64 {
    regs.get(index as usize).copied().unwrap_or(0)
}

#[inline(always)]
fn read_arg(regs: &[u64; 9], sp: u64, loc: &ArgLoc) -> u64 {
    match loc.kind {
        LOC_REG => reg(regs, loc.reg),
        // The stack argument area starts just above the return address.
        LOC_STACK => {
            let addr = sp.wrapping_add(8).wrapping_add(loc.stack_off as u64);
            // SAFETY: reads user memory through the helper.
            unsafe { bpf_probe_read_user(addr as *const u64) }.unwrap_or(0)
        }
        _ => 0,
    }
}

#[inline(always)]
fn on_return(regs: &pt_regs, func: u32) {
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(c) = COUNTERS.get_ptr_mut(func) else { return };
    // SAFETY: per-CPU slot, see on_entry.
    let c = unsafe { &mut *c };
    let g = regs.r14;
    let Some(stack) = INFLIGHT.get_ptr_mut(g) else {
        c.unmatched_returns += 1;
        return;
    };
    // SAFETY: see on_entry.
    let stack = unsafe { &mut *stack };
    if stack.overflow > 0 {
        // The innermost call in flight is one that found every frame in use.
        stack.overflow -= 1;
        return;
    }
    // Find the innermost frame of this function; frames above it were left by
    // calls that never returned (a recovered panic) and are discarded.
    let top = stack.depth as usize;
    let mut found = None;
    for i in 0..MAX_DEPTH {
        if i >= top {
            break;
        }
        // black_box keeps the unsigned bounds check the verifier needs.
        let idx = core::hint::black_box(top - 1 - i);
        if idx >= MAX_DEPTH {
            break;
        }
        if stack.frames[idx].func == func {
            found = Some(idx);
            break;
        }
    }
    let Some(depth) = found else {
        c.unmatched_returns += 1;
        return;
    };
    let Some(frame) = stack.frames.get(depth) else { return };
    let Some(cfg) = FUNC_CONFIG.get(func) else { return };
    if frame.epoch != cfg.epoch {
        // The function's RET probes were removed and put back since this
        // frame was pushed: its own RET may have gone unseen, so this RET
        // may belong to a later call. Drop it; time nothing.
        c.unmatched_returns += 1;
        stack.depth = depth as u32;
        if depth == 0 && stack.overflow == 0 {
            let _ = INFLIGHT.remove(g);
        }
        return;
    }
    if frame.flags & FRAME_SKIP != 0 {
        // A call --filter left out: pop it, record nothing.
        stack.depth = depth as u32;
        if depth == 0 && stack.overflow == 0 {
            let _ = INFLIGHT.remove(g);
        }
        return;
    }
    let dur = now.saturating_sub(frame.start_ns);
    c.returns += 1;
    count_timed(func);
    c.sum_ns += dur;
    if dur > c.max_ns {
        c.max_ns = dur;
    }
    if let Some(h) = HIST.get_ptr_mut(func) {
        // The compiler knows the bucket is in range and would drop a bounds
        // check the verifier needs; black_box hides what it knows.
        let b = core::hint::black_box(hist::bucket_of(dur) as usize);
        if b < hist::BUCKETS as usize {
            // SAFETY: per-CPU slot; b is in range, checked above.
            unsafe { (*h)[b] += 1 };
        }
    }
    let mut flags = 0;
    if cfg.flags & CFG_ERRORS != 0 && reg(&arg_regs(regs), cfg.err_reg) != 0 {
        c.errors += 1;
        flags |= EV_ERROR;
    }
    if cfg.flags & CFG_EMIT != 0 {
        emit(g, frame, dur, flags);
    }
    stack.depth = depth as u32;
    if depth == 0 && stack.overflow == 0 {
        let _ = INFLIGHT.remove(g);
    }
}

/// Counts a timed call of `func` against its allowance.
#[inline(always)]
fn count_timed(func: u32) {
    let Some(timed) = TIMED.get_ptr_mut(func) else { return };
    // SAFETY: a map value, valid while the program runs; see TIMED on races.
    let n = unsafe {
        *timed += 1;
        *timed
    };
    let limit = ALLOWANCE.get(func).copied().unwrap_or(0);
    if limit != 0
        && n >= limit
        && let Some(stats) = STATS.get_ptr_mut(0)
    {
        // SAFETY: per-CPU slot.
        unsafe { (*stats).over_allowance += 1 };
    }
}

#[inline(always)]
fn emit(g: u64, frame: &tracer_common::Frame, dur: u64, mut flags: u32) {
    let Some(stats) = STATS.get_ptr_mut(0) else { return };
    // SAFETY: per-CPU slot.
    let stats = unsafe { &mut *stats };
    let global = CONFIG.get(0).copied().unwrap_or_default();
    let seq = stats.emitted + stats.sampled_out + stats.dropped;
    if seq & global.sample_mask != 0 && frame.flags & FRAME_CAPTURED == 0 {
        stats.sampled_out += 1;
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<CallEvent>(0) else {
        stats.dropped += 1;
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at a reserved record of the right size; every field
    // is written before submit.
    unsafe {
        (*ev).func = frame.func;
        (*ev).g = g;
        (*ev).goid = read_g_field(g, global.goid_offset);
        (*ev).parent_goid = read_g_field(g, global.parent_goid_offset);
        (*ev).start_ns = frame.start_ns;
        (*ev).dur_ns = dur;
        (*ev).caller = frame.caller;
        (*ev).stack_id = frame.stack_id;
        (*ev).scalars = frame.scalars;
        (*ev).str_len = frame.str_len;
        (*ev).secret_len = frame.secret_len;
        if frame.str_len > 0 {
            flags |= EV_STR;
        }
        if frame.flags & FRAME_SECRET != 0 {
            flags |= EV_SECRET;
        }
        (*ev).flags = flags;
        (*ev).str = frame.str;
    }
    stats.emitted += 1;
    // No wakeup per event: user space drains the buffer on a short timer.
    entry.submit(BPF_RB_NO_WAKEUP as u64);
}

/// The u64 at `offset` in the goroutine's `runtime.g`, or 0 when the
/// offset is unknown (0) or the read faults.
#[inline(always)]
fn read_g_field(g: u64, offset: u64) -> u64 {
    if offset == 0 {
        return 0;
    }
    // SAFETY: reads user memory through the helper, which faults safely.
    unsafe { bpf_probe_read_user((g + offset) as *const u64) }.unwrap_or(0)
}

#[inline(always)]
fn on_goexit(regs: &pt_regs) {
    if INFLIGHT.remove(regs.r14).is_ok()
        && let Some(stats) = STATS.get_ptr_mut(0)
    {
        // SAFETY: per-CPU slot.
        unsafe { (*stats).goexit_cleanups += 1 };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
