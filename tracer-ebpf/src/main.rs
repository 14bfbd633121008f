//! ktrace's uprobe programs. One program serves every site; the attach cookie
//! (see `tracer_common::Cookie`) says which function and which kind of site
//! fired. Counters are exact and per-CPU: this side never samples them.
//!
//! The entry site is usually the stack-guard conditional branch. The kernel
//! emulates that instruction, so it is cheap, and it runs once per pass
//! through the prologue. The pass that is about to call `runtime.morestack`
//! re-enters the function afterwards; it is recognised from the saved EFLAGS
//! and not counted.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::bpf_get_attach_cookie,
    macros::{map, uprobe},
    maps::PerCpuArray,
    programs::ProbeContext,
};
use tracer_common::{Cookie, FuncCounters, MAX_FUNCS, SiteKind};

#[map]
static COUNTERS: PerCpuArray<FuncCounters> = PerCpuArray::with_max_entries(MAX_FUNCS, 0);

#[uprobe]
pub fn ktrace_site(ctx: ProbeContext) -> u32 {
    // SAFETY: the helper only reads the cookie of the link that fired.
    let cookie = Cookie::decode(unsafe { bpf_get_attach_cookie(ctx.regs.cast()) });
    if cookie.kind != SiteKind::Entry {
        return 0;
    }
    // SAFETY: ctx.regs points at the saved user registers for this hit.
    let eflags = unsafe { (*ctx.regs).eflags };
    let Some(slot) = COUNTERS.get_ptr_mut(cookie.func_id) else {
        return 0;
    };
    // SAFETY: a per-CPU slot is only touched by this CPU, and preemption is off
    // while a BPF program runs, so plain increments are exact.
    unsafe {
        if cookie.morestack_pass(eflags) {
            (*slot).morestack_skips += 1;
        } else {
            (*slot).calls += 1;
        }
    }
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
