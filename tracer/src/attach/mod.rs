//! Attach: load the embedded eBPF object, place one uprobe per planned site on
//! `/proc/PID/exe` scoped to that PID, and read the kernel's counters back.
//!
//! Probes are perf-event links owned by file descriptors of this process, so
//! the kernel removes every one of them when ktrace exits, however it exits.
//! Nothing here stops, signals, ptraces or writes into the target.

pub mod privileges;

use std::{num::NonZeroU32, path::PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::PerCpuArray,
    programs::{
        UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
    },
};
use tracer_common::{Cookie, FuncCounters, MAX_FUNCS, SiteKind};

use crate::{
    plan::{EntryKind, ProbePlan},
    resolve::Binary,
};

/// The kernel-side object, built by build.rs for `bpfel-unknown-none`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer.bpf.o"));

const PROGRAM: &str = "ktrace_site";
const COUNTERS_MAP: &str = "COUNTERS";

/// Errors from loading or attaching probes.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The kernel refused the eBPF object.
    #[error("loading the eBPF object failed: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program operation failed.
    #[error("{what}: {source}")]
    Program {
        /// What was being done.
        what: String,
        /// The error from aya.
        source: aya::programs::ProgramError,
    },
    /// Reading a map failed.
    #[error("reading {map}: {source}")]
    Map {
        /// The map.
        map: &'static str,
        /// The error from aya.
        source: aya::maps::MapError,
    },
    /// The embedded object lacks something this code relies on.
    #[error("the embedded eBPF object has no {0}")]
    Missing(&'static str),
    /// More functions than the maps can hold.
    #[error("too many functions: {0} (at most {MAX_FUNCS})")]
    TooManyFunctions(usize),
    /// PID 0 is not a process.
    #[error("PID must be non-zero")]
    ZeroPid,
    /// A planned address has no file offset.
    #[error(transparent)]
    Resolve(#[from] crate::resolve::ResolveError),
}

/// A live tracing session: the loaded object and its links. Dropping it
/// detaches every probe.
pub struct Session {
    ebpf: Ebpf,
    /// Symbol of each function id, in id order.
    symbols: Vec<String>,
    /// Number of probes placed.
    pub probes: usize,
}

/// Counters for one function, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FunctionCounts {
    /// The function's symbol.
    pub symbol: String,
    /// Calls counted at the entry site.
    pub calls: u64,
    /// Entry passes skipped because they were about to grow the stack.
    pub morestack_skips: u64,
}

impl Session {
    /// Loads the programs and places an entry probe for every plan.
    ///
    /// With a PID, probes go on `/proc/PID/exe` and fire for that process
    /// only; without one, on `binary`'s file for every process running it.
    /// Either way the file offsets come from `binary`, which must be the file
    /// the process runs.
    pub fn attach(pid: Option<u32>, binary: &Binary, plans: &[ProbePlan]) -> Result<Self, AttachError> {
        if plans.len() > MAX_FUNCS as usize {
            return Err(AttachError::TooManyFunctions(plans.len()));
        }
        let (target, scope) = match pid {
            Some(pid) => {
                let pid = NonZeroU32::new(pid).ok_or(AttachError::ZeroPid)?;
                (PathBuf::from(format!("/proc/{pid}/exe")), UProbeScope::OneProcess(pid))
            }
            None => (binary.path().to_path_buf(), UProbeScope::AllProcesses),
        };
        let mut ebpf = EbpfLoader::new().load(EBPF_OBJECT)?;
        let program: &mut UProbe = ebpf
            .program_mut(PROGRAM)
            .ok_or(AttachError::Missing("uprobe program"))?
            .try_into()
            .map_err(|source| AttachError::Program { what: "program type".into(), source })?;
        program.load().map_err(|source| AttachError::Program { what: "loading the uprobe program".into(), source })?;

        let mut probes = 0;
        for (id, plan) in plans.iter().enumerate() {
            let (guard_mask, guard_taken_if_any) = match plan.entry_kind {
                EntryKind::StackGuard { mask, taken_if_any } => (mask, taken_if_any),
                EntryKind::FirstInstruction => (0, false),
            };
            let cookie = Cookie { func_id: id as u32, kind: SiteKind::Entry, guard_mask, guard_taken_if_any };
            let offset = binary.file_offset(plan.entry.addr)?;
            let point = UProbeAttachPoint {
                location: UProbeAttachLocation::AbsoluteOffset(offset),
                cookie: Some(cookie.encode()),
            };
            program.attach(point, &target, scope).map_err(|source| AttachError::Program {
                what: format!(
                    "attaching to {} at {:#x} (file offset {offset:#x})",
                    plan.function.name, plan.entry.addr
                ),
                source,
            })?;
            probes += 1;
        }
        let symbols = plans.iter().map(|p| p.function.name.clone()).collect();
        Ok(Self { ebpf, symbols, probes })
    }

    /// Reads the exact counters of every function.
    pub fn counts(&self) -> Result<Vec<FunctionCounts>, AttachError> {
        let map = self.ebpf.map(COUNTERS_MAP).ok_or(AttachError::Missing("COUNTERS map"))?;
        let counters: PerCpuArray<_, FuncCounters> =
            PerCpuArray::try_from(map).map_err(|source| AttachError::Map { map: COUNTERS_MAP, source })?;
        self.symbols
            .iter()
            .enumerate()
            .map(|(id, symbol)| {
                let per_cpu =
                    counters.get(&(id as u32), 0).map_err(|source| AttachError::Map { map: COUNTERS_MAP, source })?;
                let mut out = FunctionCounts { symbol: symbol.clone(), ..Default::default() };
                for c in per_cpu.iter() {
                    out.calls += c.calls;
                    out.morestack_skips += c.morestack_skips;
                }
                Ok(out)
            })
            .collect()
    }
}
