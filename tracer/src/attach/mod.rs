//! Attach: load the embedded eBPF object, place uprobes on every planned site
//! (entry, each RET, `runtime.goexit1`) of `/proc/PID/exe` scoped to that PID,
//! and read the kernel's counters, histograms and call events back.
//!
//! Probes are perf-event links owned by file descriptors of this process, so
//! the kernel removes every one of them when ktrace exits, however it exits.
//! Nothing here stops, signals, ptraces or writes into the target.

pub mod calibrate;
pub mod config;
pub mod events;
pub mod filter;
pub mod privileges;

use std::{num::NonZeroU32, path::PathBuf};

use analyzer::hist::Histogram;
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, RingBuf, StackTraceMap},
    programs::{
        UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLinkId, UProbeScope},
    },
};
use tracer_common::{
    CFG_TRACK, CallEvent, Cookie, Filter, FuncConfig, FuncCounters, GlobalConfig, GlobalStats, MAX_FUNCS, SiteKind,
    hist::BUCKETS,
};

use crate::{
    plan::{EntryKind, ProbePlan},
    resolve::Binary,
};

/// The kernel-side object, built by build.rs for `bpfel-unknown-none`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer.bpf.o"));

const PROGRAM: &str = "ktrace_site";
const BARE_PROGRAM: &str = "ktrace_bare";

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
    /// A map operation failed.
    #[error("{map}: {source}")]
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

/// What to place and what the kernel side should record.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Entry probes only: exact counts and rates, the cheapest mode.
    pub count_only: bool,
    /// Load the bare counting program instead of ktrace's (the cost
    /// benchmark's floor): it counts hits and does nothing else.
    pub bare: bool,
    /// The `--filter` pattern; the functions with its argument say so in
    /// their configs (`CFG_FILTER_ARG`).
    pub filter: Option<Filter>,
    /// Offset of `goid` in `runtime.g`, from the DWARF that gives the
    /// types; without it events carry no goroutine id.
    pub goid_offset: Option<u64>,
}

/// One function of the session.
struct Traced {
    symbol: String,
    config: FuncConfig,
    entry: Option<UProbeLinkId>,
    rets: Vec<UProbeLinkId>,
}

/// A live tracing session: the loaded object and its links. Dropping it
/// detaches every probe.
pub struct Session {
    ebpf: Ebpf,
    program: &'static str,
    functions: Vec<Traced>,
    events: Option<RingBuf<MapData>>,
    stacks: Option<StackTraceMap<MapData>>,
    /// Number of probes placed.
    pub probes: usize,
    /// Number of those on instructions the kernel single-steps.
    pub single_stepped: usize,
}

/// Counters for one function, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FunctionCounts {
    /// The function's symbol.
    pub symbol: String,
    /// The kernel's exact counters.
    pub counters: FuncCounters,
    /// Latency histogram of matched returns.
    pub hist: Histogram,
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> AttachError {
    move |source| AttachError::Map { map, source }
}

impl Session {
    /// Loads the programs and places the probes of every plan; `configs[i]`
    /// is what the kernel records for `plans[i]`. `goexit` is the plan of
    /// `runtime.goexit1`, where abandoned in-flight calls are discarded.
    ///
    /// With a PID, probes go on `/proc/PID/exe` and fire for that process
    /// only; without one, on `binary`'s file for every process running it.
    /// Either way the file offsets come from `binary`, which must be the file
    /// the process runs.
    pub fn attach(
        pid: Option<u32>,
        binary: &Binary,
        plans: &[ProbePlan],
        configs: &[FuncConfig],
        goexit: Option<&ProbePlan>,
        options: &Options,
    ) -> Result<Self, AttachError> {
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
        let mut ebpf = EbpfLoader::new().map_max_entries("HIST", plans.len().max(1) as u32).load(EBPF_OBJECT)?;
        let mut config_map: Array<_, FuncConfig> =
            Array::try_from(ebpf.map_mut("FUNC_CONFIG").ok_or(AttachError::Missing("FUNC_CONFIG map"))?)
                .map_err(map_err("FUNC_CONFIG"))?;
        for (id, config) in configs.iter().enumerate() {
            config_map.set(id as u32, config, 0).map_err(map_err("FUNC_CONFIG"))?;
        }
        let mut global: Array<_, GlobalConfig> =
            Array::try_from(ebpf.map_mut("CONFIG").ok_or(AttachError::Missing("CONFIG map"))?)
                .map_err(map_err("CONFIG"))?;
        global
            .set(0, GlobalConfig { sample_mask: 0, goid_offset: options.goid_offset.unwrap_or(0) }, 0)
            .map_err(map_err("CONFIG"))?;
        // Set before any probe is attached, so no call is counted unfiltered.
        if let Some(filter) = options.filter {
            let mut map: Array<_, Filter> =
                Array::try_from(ebpf.map_mut("FILTER").ok_or(AttachError::Missing("FILTER map"))?)
                    .map_err(map_err("FILTER"))?;
            map.set(0, filter, 0).map_err(map_err("FILTER"))?;
        }

        let program_name = if options.bare { BARE_PROGRAM } else { PROGRAM };
        let program: &mut UProbe = ebpf
            .program_mut(program_name)
            .ok_or(AttachError::Missing("uprobe program"))?
            .try_into()
            .map_err(|source| AttachError::Program { what: "program type".into(), source })?;
        program.load().map_err(|source| AttachError::Program { what: "loading the uprobe program".into(), source })?;

        let mut attach_site = |addr: u64, cookie: Cookie, name: &str| -> Result<UProbeLinkId, AttachError> {
            let offset = binary.file_offset(addr)?;
            let point = UProbeAttachPoint {
                location: UProbeAttachLocation::AbsoluteOffset(offset),
                cookie: Some(cookie.encode()),
            };
            program.attach(point, &target, scope).map_err(|source| AttachError::Program {
                what: format!("attaching to {name} at {addr:#x} (file offset {offset:#x})"),
                source,
            })
        };

        let mut functions = Vec::with_capacity(plans.len());
        let (mut probes, mut single_stepped) = (0, 0);
        for (id, plan) in plans.iter().enumerate() {
            let (guard_mask, guard_taken_if_any) = match plan.entry_kind {
                EntryKind::StackGuard { mask, taken_if_any } => (mask, taken_if_any),
                _ => (0, false),
            };
            let func_id = id as u32;
            let name = &plan.function.name;
            let config = configs.get(id).copied().unwrap_or_default();
            // RET probes go in before the entry probe: an entry seen before
            // its RETs could be would leave a frame that no RET ever pops,
            // and a goroutine that fills its frames that way (a hot loop on
            // one goroutine) is never timed again. A RET seen before its
            // entry only counts as unmatched.
            let mut rets = Vec::new();
            if !options.count_only && (options.bare || config.flags & CFG_TRACK != 0) {
                for ret in &plan.rets {
                    let cookie = Cookie { func_id, kind: SiteKind::Return, guard_mask: 0, guard_taken_if_any: false };
                    rets.push(attach_site(ret.addr, cookie, name)?);
                    probes += 1;
                    single_stepped += usize::from(!ret.emulated);
                }
            }
            let cookie = Cookie { func_id, kind: SiteKind::Entry, guard_mask, guard_taken_if_any };
            let entry = attach_site(plan.entry.addr, cookie, name)?;
            probes += 1;
            single_stepped += usize::from(!plan.entry.emulated);
            functions.push(Traced { symbol: plan.label(), config, entry: Some(entry), rets });
        }
        if let Some(goexit) = goexit.filter(|_| !options.count_only && !options.bare) {
            let (guard_mask, guard_taken_if_any) = match goexit.entry_kind {
                EntryKind::StackGuard { mask, taken_if_any } => (mask, taken_if_any),
                _ => (0, false),
            };
            let cookie = Cookie { func_id: 0, kind: SiteKind::Goexit, guard_mask, guard_taken_if_any };
            attach_site(goexit.entry.addr, cookie, &goexit.function.name)?;
            probes += 1;
            single_stepped += usize::from(!goexit.entry.emulated);
        }

        let events = ebpf.take_map("EVENTS").map(RingBuf::try_from).transpose().map_err(map_err("EVENTS"))?;
        let stacks = ebpf.take_map("STACKS").map(StackTraceMap::try_from).transpose().map_err(map_err("STACKS"))?;
        Ok(Self { ebpf, program: program_name, functions, events, stacks, probes, single_stepped })
    }

    /// True when function `id` still has its entry probe.
    pub fn is_attached(&self, id: u32) -> bool {
        self.functions.get(id as usize).is_some_and(|f| f.entry.is_some())
    }

    /// True when function `id` still has RET probes (latency is measured).
    pub fn has_returns(&self, id: u32) -> bool {
        self.functions.get(id as usize).is_some_and(|f| !f.rets.is_empty())
    }

    /// Reads the exact counters and histograms of every function.
    pub fn counts(&self) -> Result<Vec<FunctionCounts>, AttachError> {
        let counters: PerCpuArray<_, FuncCounters> =
            PerCpuArray::try_from(self.ebpf.map("COUNTERS").ok_or(AttachError::Missing("COUNTERS map"))?)
                .map_err(map_err("COUNTERS"))?;
        let hists: PerCpuArray<_, [u64; BUCKETS as usize]> =
            PerCpuArray::try_from(self.ebpf.map("HIST").ok_or(AttachError::Missing("HIST map"))?)
                .map_err(map_err("HIST"))?;
        let mut out = Vec::with_capacity(self.functions.len());
        for (id, f) in self.functions.iter().enumerate() {
            let mut c = FuncCounters::default();
            for v in counters.get(&(id as u32), 0).map_err(map_err("COUNTERS"))?.iter() {
                c.calls += v.calls;
                c.morestack_skips += v.morestack_skips;
                c.returns += v.returns;
                c.errors += v.errors;
                c.sum_ns += v.sum_ns;
                c.max_ns = c.max_ns.max(v.max_ns);
                c.unmatched_returns += v.unmatched_returns;
                c.depth_overflows += v.depth_overflows;
                c.filtered += v.filtered;
            }
            let mut hist = Histogram { counts: vec![0; BUCKETS as usize], sum: c.sum_ns, max: c.max_ns };
            for per_cpu in hists.get(&(id as u32), 0).map_err(map_err("HIST"))?.iter() {
                for (total, n) in hist.counts.iter_mut().zip(per_cpu.iter()) {
                    *total += n;
                }
            }
            out.push(FunctionCounts { symbol: f.symbol.clone(), counters: c, hist });
        }
        Ok(out)
    }

    /// Session-wide counters (event drops, sampling), summed over CPUs.
    pub fn stats(&self) -> Result<GlobalStats, AttachError> {
        let stats: PerCpuArray<_, GlobalStats> =
            PerCpuArray::try_from(self.ebpf.map("STATS").ok_or(AttachError::Missing("STATS map"))?)
                .map_err(map_err("STATS"))?;
        let mut out = GlobalStats::default();
        for s in stats.get(&0, 0).map_err(map_err("STATS"))?.iter() {
            out.dropped += s.dropped;
            out.sampled_out += s.sampled_out;
            out.emitted += s.emitted;
            out.goexit_cleanups += s.goexit_cleanups;
        }
        Ok(out)
    }

    /// Emits only one call event in `2^shift` from now on (0: every call).
    /// Counters and histograms are unaffected.
    pub fn set_sampling(&mut self, shift: u32) -> Result<(), AttachError> {
        let mut global: Array<_, GlobalConfig> =
            Array::try_from(self.ebpf.map_mut("CONFIG").ok_or(AttachError::Missing("CONFIG map"))?)
                .map_err(map_err("CONFIG"))?;
        let mut g = global.get(&0, 0).map_err(map_err("CONFIG"))?;
        g.sample_mask = (1u64 << shift.min(20)) - 1;
        global.set(0, g, 0).map_err(map_err("CONFIG"))
    }

    /// Takes up to `limit` call events waiting in the ring buffer, oldest
    /// first; returns how many it took.
    pub fn drain_events(&mut self, limit: usize, mut each: impl FnMut(&CallEvent)) -> usize {
        let Some(ring) = self.events.as_mut() else { return 0 };
        let mut n = 0;
        while n < limit
            && let Some(item) = ring.next()
        {
            if item.len() >= size_of::<CallEvent>() {
                // SAFETY: the kernel wrote a whole CallEvent (size checked);
                // read_unaligned makes no alignment assumption.
                let ev = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<CallEvent>()) };
                each(&ev);
                n += 1;
            }
        }
        n
    }

    /// The user-space return addresses of a recorded stack, innermost first.
    pub fn stack(&self, stack_id: i64) -> Vec<u64> {
        let (Some(map), Ok(id)) = (self.stacks.as_ref(), u32::try_from(stack_id)) else { return Vec::new() };
        map.get(&id, 0).map(|s| s.frames().iter().map(|f| f.ip).collect()).unwrap_or_default()
    }

    fn set_config(&mut self, id: u32, config: FuncConfig) -> Result<(), AttachError> {
        let mut map: Array<_, FuncConfig> =
            Array::try_from(self.ebpf.map_mut("FUNC_CONFIG").ok_or(AttachError::Missing("FUNC_CONFIG map"))?)
                .map_err(map_err("FUNC_CONFIG"))?;
        map.set(id, config, 0).map_err(map_err("FUNC_CONFIG"))
    }

    fn program(&mut self) -> Result<&mut UProbe, AttachError> {
        self.ebpf
            .program_mut(self.program)
            .ok_or(AttachError::Missing("uprobe program"))?
            .try_into()
            .map_err(|source| AttachError::Program { what: "program type".into(), source })
    }

    /// Stops tracking latency of function `id`: its RET probes are removed,
    /// its exact call count goes on. Returns the number of probes removed.
    pub fn detach_returns(&mut self, id: u32) -> Result<usize, AttachError> {
        let Some(f) = self.functions.get_mut(id as usize) else { return Ok(0) };
        let rets = std::mem::take(&mut f.rets);
        let mut config = f.config;
        config.flags &= !CFG_TRACK;
        f.config = config;
        self.set_config(id, config)?;
        let n = rets.len();
        let program = self.program()?;
        for link in rets {
            program
                .detach(link)
                .map_err(|source| AttachError::Program { what: "detaching a RET probe".into(), source })?;
        }
        self.probes -= n;
        Ok(n)
    }

    /// Removes every probe of function `id`; its counters keep their values.
    pub fn detach_function(&mut self, id: u32) -> Result<(), AttachError> {
        self.detach_returns(id)?;
        let Some(entry) = self.functions.get_mut(id as usize).and_then(|f| f.entry.take()) else { return Ok(()) };
        self.program()?
            .detach(entry)
            .map_err(|source| AttachError::Program { what: "detaching an entry probe".into(), source })?;
        self.probes -= 1;
        Ok(())
    }
}
