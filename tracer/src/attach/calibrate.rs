//! Measures what one uprobe hit costs on this host, for an instruction the
//! kernel emulates and for one it single-steps, by probing a function of
//! ktrace's own process for a moment. `ktrace attach` multiplies these by the
//! observed hit rates to show its overhead before it matters.
//!
//! The probed function is hand-written x86-64 (a jump the kernel emulates,
//! then a move it single-steps); on other CPUs [`measure`] says it cannot
//! measure, and `attach` runs without an overhead estimate.

#[cfg(target_arch = "x86_64")]
use std::{hint::black_box, num::NonZeroU32, path::Path, time::Instant};

#[cfg(target_arch = "x86_64")]
use aya::{
    Ebpf, EbpfLoader,
    maps::PerCpuArray,
    programs::{
        UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
    },
};
#[cfg(target_arch = "x86_64")]
use tracer_common::{Cookie, FuncCounters, SiteKind};

use super::AttachError;
#[cfg(target_arch = "x86_64")]
use super::{EBPF_OBJECT, PROGRAM, map_err, multi::MultiProgram};

/// Why the cost could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    /// Loading, attaching or reading the calibration probe failed.
    #[error(transparent)]
    Attach(#[from] AttachError),
    /// ktrace's own code is not in /proc/self/maps, so it has no file
    /// offset to probe.
    #[error("cannot find ktrace's own code in /proc/self/maps")]
    OwnCodeNotMapped,
    /// The calibration target is x86-64 code.
    #[error("the calibration probe is written for x86-64, not {0}")]
    UnsupportedArch(&'static str),
}

/// Per-hit cost of a probe, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HitCost {
    /// On an instruction the kernel emulates (a jump).
    pub emulated_ns: f64,
    /// On an instruction the kernel single-steps (a move).
    pub single_stepped_ns: f64,
}

impl HitCost {
    /// Cost of one hit on a site of the given kind.
    pub fn of(&self, emulated: bool) -> f64 {
        if emulated { self.emulated_ns } else { self.single_stepped_ns }
    }
}

/// A function whose first instruction is a jump the kernel emulates and
/// whose second is a move it must single-step.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
#[unsafe(no_mangle)]
extern "sysv64" fn ktrace_calibration_target(x: u64) -> u64 {
    core::arch::naked_asm!("jmp 2f", "2:", "mov rax, rdi", "ret")
}
/// Length of the `jmp 2f` above (EB 00).
#[cfg(target_arch = "x86_64")]
const JMP_LEN: u64 = 2;

#[cfg(target_arch = "x86_64")]
fn run(calls: u64) -> f64 {
    let f = black_box(ktrace_calibration_target as extern "sysv64" fn(u64) -> u64);
    let started = Instant::now();
    let mut acc = 0u64;
    for i in 0..calls {
        acc = acc.wrapping_add(f(black_box(i)));
    }
    black_box(acc);
    started.elapsed().as_nanos() as f64
}

/// Measures both costs; takes about a tenth of a second.
#[cfg(not(target_arch = "x86_64"))]
pub fn measure() -> Result<HitCost, CalibrateError> {
    Err(CalibrateError::UnsupportedArch(std::env::consts::ARCH))
}

/// Measures both costs; takes about a tenth of a second.
#[cfg(target_arch = "x86_64")]
pub fn measure() -> Result<HitCost, CalibrateError> {
    let addr = ktrace_calibration_target as *const () as u64;
    let maps = crate::procfs::self_maps().map_err(|_| CalibrateError::OwnCodeNotMapped)?;
    let offset = maps.iter().find_map(|m| m.file_offset(addr)).ok_or(CalibrateError::OwnCodeNotMapped)?;
    let mut ebpf = EbpfLoader::new().load(EBPF_OBJECT).map_err(AttachError::from)?;
    let me = NonZeroU32::new(std::process::id()).ok_or(AttachError::ZeroPid)?;
    let cookie = Cookie { func_id: 0, kind: SiteKind::Entry, guard_mask: 0, guard_taken_if_any: false }.encode();
    let baseline = (0..3).map(|_| run(CALLS)).fold(f64::MAX, f64::min);
    let per_hit = if perf_uprobes_allowed() {
        perf_per_hit(&mut ebpf, offset, cookie, me, baseline)?
    } else {
        multi_per_hit(&ebpf, offset, cookie, me, baseline)?
    };
    let counters: PerCpuArray<_, FuncCounters> = super::open(&ebpf, "COUNTERS")?;
    let hits: u64 = counters.get(&0, 0).map_err(map_err("COUNTERS"))?.iter().map(|c| c.calls).sum();
    if hits != 6 * CALLS {
        return Err(AttachError::Missing("calibration hits (the probe did not fire on every call)").into());
    }
    Ok(HitCost { emulated_ns: per_hit[0], single_stepped_ns: per_hit[1] })
}

/// Calls of the calibration target per measurement.
#[cfg(target_arch = "x86_64")]
const CALLS: u64 = 4000;

/// Whether this process may create perf_event uprobes: since the 2025
/// kernel change "perf: Require CAP_SYS_ADMIN for uprobes" (also in stable
/// kernels), CAP_PERFMON is not enough. A process with CAP_BPF and
/// CAP_PERFMON only (deploy/daemonset.yaml) measures through a uprobe_multi
/// link instead, the kind `attach` uses on such kernels anyway.
#[cfg(target_arch = "x86_64")]
fn perf_uprobes_allowed() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    tracer_common::caps::effective(&status).is_some_and(|caps| caps & (1 << tracer_common::caps::CAP_SYS_ADMIN) != 0)
}

/// The per-hit costs of the two sites, each probed alone through a
/// uprobe_multi link for the timed calls.
#[cfg(target_arch = "x86_64")]
fn multi_per_hit(
    ebpf: &Ebpf,
    offset: u64,
    cookie: u64,
    me: NonZeroU32,
    baseline: f64,
) -> Result<[f64; 2], AttachError> {
    let multi = MultiProgram::load(ebpf, EBPF_OBJECT, PROGRAM)?;
    let mut per_hit = [0.0; 2];
    for (i, site) in [offset, offset + JMP_LEN].into_iter().enumerate() {
        let link = multi.attach(Path::new("/proc/self/exe"), Some(me.get()), &[(site, cookie)])?;
        let traced = (0..3).map(|_| run(CALLS)).fold(f64::MAX, f64::min);
        drop(link);
        per_hit[i] = ((traced - baseline) / CALLS as f64).max(0.0);
    }
    Ok(per_hit)
}

/// The per-hit costs of the two sites, each probed alone through a
/// perf_event uprobe for the timed calls.
#[cfg(target_arch = "x86_64")]
fn perf_per_hit(
    ebpf: &mut Ebpf,
    offset: u64,
    cookie: u64,
    me: NonZeroU32,
    baseline: f64,
) -> Result<[f64; 2], AttachError> {
    let program: &mut UProbe = ebpf
        .program_mut(PROGRAM)
        .ok_or(AttachError::Missing("uprobe program"))?
        .try_into()
        .map_err(|source| AttachError::Program { what: "program type".into(), source })?;
    program.load().map_err(|source| AttachError::Program { what: "loading the uprobe program".into(), source })?;
    let mut per_hit = [0.0; 2];
    for (i, site) in [offset, offset + JMP_LEN].into_iter().enumerate() {
        let point = UProbeAttachPoint { location: UProbeAttachLocation::AbsoluteOffset(site), cookie: Some(cookie) };
        let link = program
            .attach(point, Path::new("/proc/self/exe"), UProbeScope::OneProcess(me))
            .map_err(|source| AttachError::Program { what: "attaching the calibration probe".into(), source })?;
        let traced = (0..3).map(|_| run(CALLS)).fold(f64::MAX, f64::min);
        program.detach(link).map_err(|source| AttachError::Program { what: "detaching".into(), source })?;
        per_hit[i] = ((traced - baseline) / CALLS as f64).max(0.0);
    }
    Ok(per_hit)
}
