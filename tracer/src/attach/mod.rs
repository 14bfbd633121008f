//! Attach: load the embedded eBPF object, place uprobes on every planned site
//! (entry, each RET, `runtime.goexit1`) of the file read (the process's own,
//! see `crate::target`) scoped to that PID,
//! and read the kernel's counters, histograms and call events back.
//!
//! Probes are perf-event links owned by file descriptors of this process, so
//! the kernel removes every one of them when ktrace exits, however it exits.
//! Nothing here stops, signals, ptraces or writes into the target.

pub mod calibrate;
pub mod config;
pub mod events;
pub mod filter;
pub mod multi;
pub mod privileges;

use std::{
    num::NonZeroU32,
    path::PathBuf,
    time::{Duration, Instant},
};

use analyzer::hist::Histogram;
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, RingBuf, StackTraceMap},
    programs::{
        UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLink, UProbeScope},
    },
};
use tracer_common::{
    CFG_EMIT, CFG_OFF, CFG_TRACK, CallEvent, CaptureConfig, CaptureEvent, Cookie, Filter, FuncConfig, FuncCounters,
    GlobalConfig, GlobalStats, MAX_FUNCS, SiteKind, hist::BUCKETS,
};

use self::multi::{MultiError, MultiLink, MultiProgram};
use crate::{
    plan::{EntryKind, ProbePlan, goroutine::GOffsets},
    resolve::Binary,
};

/// The kernel-side object, built by build.rs for `bpfel-unknown-none`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer.bpf.o"));

const PROGRAM: &str = "ktrace_site";
/// Bytes of the `--capture` ring buffer when paths are set: about 3 500
/// records of 600 bytes, drained every 50 ms.
const CAPTURE_RING_BYTES: u32 = 2 << 20;
const BARE_PROGRAM: &str = "ktrace_bare";
/// Bytes of the call-event ring buffer when some function emits events
/// (the size the object declares).
const EVENT_RING_BYTES: u32 = 8 << 20;

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
    /// A uprobe_multi program or link failed.
    #[error(transparent)]
    Multi(#[from] MultiError),
}

/// How probes are tied to ktrace's file descriptors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Links {
    /// uprobe_multi where the kernel has it (Linux 6.6+), else perf_event.
    #[default]
    Auto,
    /// One uprobe_multi link per batch of sites; fails where unsupported.
    Multi,
    /// One perf_event per site (older kernels).
    Perf,
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
    /// Where `goid` and `parentGoid` are in `runtime.g`; without them
    /// events carry no goroutine ids.
    pub goroutine: Option<GOffsets>,
    /// The kind of links to use.
    pub links: Links,
    /// Each function's `--capture` paths (by function id; missing or
    /// `None`: none).
    pub fields: Vec<Option<CaptureConfig>>,
}

/// Probes owned together: closing them removes them all.
enum Probes {
    Multi(MultiLink),
    Perf(Vec<UProbeLink>),
}

impl Probes {
    fn len(&self) -> usize {
        match self {
            Self::Multi(l) => l.sites(),
            Self::Perf(v) => v.len(),
        }
    }
}

/// Closes probes on other threads. Closing a link waits for a kernel grace
/// period (0.07 to 0.1 s each here), and one thread's closes wait one after
/// another: each uprobe_multi link gets a thread of its own, so a session's
/// links share their waits (181 links, four closed per thread: 0.32 s; one
/// per thread: 0.07 to 0.1 s). perf_event links gain nothing from threads:
/// their closes complete one after another in the kernel, about 0.11 s
/// each, so they go a few per thread.
#[derive(Default)]
struct Closer {
    pending: Vec<std::thread::JoinHandle<()>>,
}

/// perf_event links closed by one thread.
const PERF_PER_THREAD: usize = 4;
/// Threads one call starts at most; past it, links share threads.
const MAX_CLOSE_THREADS: usize = 256;
/// Stack of a closing thread: it only drops file descriptors.
const CLOSE_STACK: usize = 64 * 1024;

impl Closer {
    fn close(&mut self, probes: Vec<Probes>) {
        let mut units: Vec<Probes> = Vec::new();
        for p in probes {
            match p {
                Probes::Perf(mut v) => {
                    while !v.is_empty() {
                        units.push(Probes::Perf(v.drain(..v.len().min(PERF_PER_THREAD)).collect()));
                    }
                }
                m => units.push(m),
            }
        }
        let threads = units.len().min(MAX_CLOSE_THREADS);
        let mut shares: Vec<Vec<Probes>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, unit) in units.into_iter().enumerate() {
            if let Some(share) = shares.get_mut(i % threads.max(1)) {
                share.push(unit);
            }
        }
        for share in shares {
            // Without a thread, spawn drops the share here: closed serially,
            // slower but still correct.
            let spawned = std::thread::Builder::new()
                .name("ktrace-close".into())
                .stack_size(CLOSE_STACK)
                .spawn(move || drop(share));
            if let Ok(h) = spawned {
                self.pending.push(h);
            }
        }
        self.pending.retain(|h| !h.is_finished());
    }

    fn wait(&mut self) {
        for h in self.pending.drain(..) {
            let _ = h.join();
        }
    }
}

/// One function of the session.
struct Probed {
    symbol: String,
    config: FuncConfig,
    /// Its RET sites as (file offset, cookie), kept to put them back.
    ret_sites: Vec<(u64, u64)>,
    /// Its entry probe, when it has one of its own (perf links).
    entry: Option<Probes>,
    /// Counting: false once detached.
    counting: bool,
    /// Its RET probes while they are attached.
    rets: Option<Probes>,
    /// Since when the RETs have been attached, and for how long before.
    timed_since: Option<Instant>,
    timed_before: Duration,
}

/// A live tracing session: the loaded object and its links. Dropping it
/// detaches every probe.
pub struct Session {
    ebpf: Ebpf,
    program: &'static str,
    multi: Option<MultiProgram>,
    target: PathBuf,
    pid: Option<u32>,
    functions: Vec<Probed>,
    /// Entry probes shared by all functions (one uprobe_multi link), and
    /// `runtime.goexit1`'s.
    shared: Vec<Probes>,
    closer: Closer,
    events: Option<RingBuf<MapData>>,
    captures: Option<RingBuf<MapData>>,
    stacks: Option<StackTraceMap<MapData>>,
    started: Instant,
    ended: Option<Instant>,
    /// Number of probes placed.
    pub probes: usize,
    /// Number of those on instructions the kernel single-steps.
    pub single_stepped: usize,
    /// How long placing them took.
    pub attach_time: Duration,
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

/// Map `name` of the object as the map type `M`.
fn open<'a, M>(ebpf: &'a Ebpf, name: &'static str) -> Result<M, AttachError>
where
    M: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
{
    M::try_from(ebpf.map(name).ok_or(AttachError::Missing(name))?).map_err(map_err(name))
}

/// Map `name` of the object as the writable map type `M`.
fn open_mut<'a, M>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<M, AttachError>
where
    M: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
{
    M::try_from(ebpf.map_mut(name).ok_or(AttachError::Missing(name))?).map_err(map_err(name))
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> AttachError {
    move |source| AttachError::Map { map, source }
}

/// Loads the eBPF object and fills its maps: each function's config, the
/// session-wide config and the `--filter`, all before any probe exists, so
/// no call is counted unfiltered.
fn load_object(sites: &[(&ProbePlan, FuncConfig)], options: &Options) -> Result<Ebpf, AttachError> {
    let n = sites.len().max(1) as u32;
    // The --capture ring is 2 MiB only when something is captured; the
    // kernel's smallest ring buffer is one page.
    let capture_ring = if options.fields.iter().any(Option::is_some) { CAPTURE_RING_BYTES } else { 4096 };
    // The call-event ring likewise, when no function emits events: ktrace
    // maps the whole ring, and its 8 MiB (mapped twice) would be resident.
    let emits = sites.iter().any(|(_, c)| c.flags & CFG_EMIT != 0);
    let event_ring = if emits { EVENT_RING_BYTES } else { 4096 };
    let mut ebpf = EbpfLoader::new()
        .map_max_entries("EVENTS", event_ring)
        .map_max_entries("HIST", n)
        .map_max_entries("CAPTURE_CONFIG", n)
        .map_max_entries("CAPTURES", capture_ring)
        .load(EBPF_OBJECT)?;
    let mut config_map: Array<_, FuncConfig> = open_mut(&mut ebpf, "FUNC_CONFIG")?;
    for (id, (_, config)) in sites.iter().enumerate() {
        config_map.set(id as u32, config, 0).map_err(map_err("FUNC_CONFIG"))?;
    }
    let mut global: Array<_, GlobalConfig> = open_mut(&mut ebpf, "CONFIG")?;
    global
        .set(
            0,
            GlobalConfig {
                sample_mask: 0,
                goid_offset: options.goroutine.map_or(0, |o| o.goid),
                parent_goid_offset: options.goroutine.and_then(|o| o.parent_goid).unwrap_or(0),
            },
            0,
        )
        .map_err(map_err("CONFIG"))?;
    if options.fields.iter().any(Option::is_some) {
        let mut map: Array<_, CaptureConfig> = open_mut(&mut ebpf, "CAPTURE_CONFIG")?;
        for (id, fields) in options.fields.iter().enumerate() {
            if let Some(f) = fields {
                map.set(id as u32, f, 0).map_err(map_err("CAPTURE_CONFIG"))?;
            }
        }
    }
    if let Some(filter) = options.filter {
        let mut map: Array<_, Filter> = open_mut(&mut ebpf, "FILTER")?;
        map.set(0, filter, 0).map_err(map_err("FILTER"))?;
    }

    Ok(ebpf)
}

fn guard(kind: &EntryKind) -> (u8, bool) {
    match *kind {
        EntryKind::StackGuard { mask, taken_if_any } => (mask, taken_if_any),
        _ => (0, false),
    }
}

impl Session {
    /// Loads the programs and places the probes of every plan; `sites[i]` is
    /// function `i`'s plan and what the kernel records for it. `goexit` is the plan of
    /// `runtime.goexit1`, where abandoned in-flight calls are discarded.
    ///
    /// Probes go on `binary`'s own file (the descriptor it was read from)
    /// and fire for process `pid` only, or for every process running the
    /// file. With a PID, `binary` must be the file the process runs
    /// (`crate::target::open`).
    pub fn attach(
        pid: Option<u32>,
        binary: &Binary,
        sites: &[(&ProbePlan, FuncConfig)],
        goexit: Option<&ProbePlan>,
        options: &Options,
    ) -> Result<Self, AttachError> {
        let begun = Instant::now();
        if sites.len() > MAX_FUNCS as usize {
            return Err(AttachError::TooManyFunctions(sites.len()));
        }
        if pid == Some(0) {
            return Err(AttachError::ZeroPid);
        }
        // The descriptor that was read: the probes land on the file whose
        // offsets were planned, even if the process has exec'd since.
        let target = binary.probe_path();
        let mut ebpf = load_object(sites, options)?;
        let program_name = if options.bare { BARE_PROGRAM } else { PROGRAM };
        let multi = match options.links {
            Links::Perf => None,
            Links::Multi => Some(MultiProgram::load(&ebpf, EBPF_OBJECT, program_name)?),
            Links::Auto => MultiProgram::load(&ebpf, EBPF_OBJECT, program_name).ok(),
        };
        if multi.is_none() {
            let program: &mut UProbe = ebpf
                .program_mut(program_name)
                .ok_or(AttachError::Missing("uprobe program"))?
                .try_into()
                .map_err(|source| AttachError::Program { what: "program type".into(), source })?;
            program
                .load()
                .map_err(|source| AttachError::Program { what: "loading the uprobe program".into(), source })?;
        }
        let mut session = Self {
            ebpf,
            program: program_name,
            multi,
            target,
            pid,
            functions: Vec::with_capacity(sites.len()),
            shared: Vec::new(),
            closer: Closer::default(),
            events: None,
            captures: None,
            stacks: None,
            started: begun,
            ended: None,
            probes: 0,
            single_stepped: 0,
            attach_time: Duration::ZERO,
        };

        let mut entries = Vec::with_capacity(sites.len() + 1);
        for (id, &(plan, config)) in sites.iter().enumerate() {
            let (guard_mask, guard_taken_if_any) = guard(&plan.entry_kind);
            let func_id = id as u32;
            let tracked = !options.count_only && (options.bare || config.flags & CFG_TRACK != 0);
            let mut ret_sites = Vec::new();
            if tracked {
                for ret in &plan.rets {
                    let cookie = Cookie { func_id, kind: SiteKind::Return, guard_mask: 0, guard_taken_if_any: false };
                    ret_sites.push((binary.file_offset(ret.addr)?, cookie.encode()));
                    session.single_stepped += usize::from(!ret.emulated);
                }
            }
            let cookie = Cookie { func_id, kind: SiteKind::Entry, guard_mask, guard_taken_if_any };
            entries.push((binary.file_offset(plan.entry.addr)?, cookie.encode()));
            session.single_stepped += usize::from(!plan.entry.emulated);
            session.functions.push(Probed {
                symbol: plan.label(),
                config,
                ret_sites,
                entry: None,
                counting: true,
                rets: None,
                timed_since: None,
                timed_before: Duration::ZERO,
            });
        }
        // RET probes go in before the entry probes: an entry seen before its
        // RETs could be would leave a frame that no RET ever pops, and a
        // goroutine that fills its frames that way (a hot loop on one
        // goroutine) is never timed again. A RET seen before its entry only
        // counts as unmatched.
        for id in 0..sites.len() {
            if !session.functions[id].ret_sites.is_empty() {
                session.attach_returns(id)?;
            }
        }
        let goexit = goexit.filter(|_| !options.count_only && !options.bare);
        let goexit_site = match goexit {
            Some(g) => {
                let (guard_mask, guard_taken_if_any) = guard(&g.entry_kind);
                let cookie = Cookie { func_id: 0, kind: SiteKind::Goexit, guard_mask, guard_taken_if_any };
                session.single_stepped += usize::from(!g.entry.emulated);
                Some((binary.file_offset(g.entry.addr)?, cookie.encode()))
            }
            None => None,
        };
        session.place_entries(entries, goexit_site)?;

        session.events =
            session.ebpf.take_map("EVENTS").map(RingBuf::try_from).transpose().map_err(map_err("EVENTS"))?;
        session.captures =
            session.ebpf.take_map("CAPTURES").map(RingBuf::try_from).transpose().map_err(map_err("CAPTURES"))?;
        session.stacks =
            session.ebpf.take_map("STACKS").map(StackTraceMap::try_from).transpose().map_err(map_err("STACKS"))?;
        session.attach_time = begun.elapsed();
        session.started = Instant::now();
        Ok(session)
    }

    /// Places the entry probes (`entries[i]` is function `i`'s) and
    /// `runtime.goexit1`'s: one uprobe_multi link for all of them, or one
    /// perf_event link each.
    fn place_entries(&mut self, mut entries: Vec<(u64, u64)>, goexit: Option<(u64, u64)>) -> Result<(), AttachError> {
        if self.multi.is_some() {
            entries.extend(goexit);
            let link = self.link(&entries, "the entry sites")?;
            self.probes += link.len();
            self.shared.push(link);
            return Ok(());
        }
        for (id, site) in entries.iter().enumerate() {
            let name = self.functions[id].symbol.clone();
            let link = self.link(&[*site], &name)?;
            self.probes += 1;
            self.functions[id].entry = Some(link);
        }
        if let Some(site) = goexit {
            let link = self.link(&[site], "runtime.goexit1")?;
            self.probes += 1;
            self.shared.push(link);
        }
        Ok(())
    }

    /// True when the probes are uprobe_multi links.
    pub fn batched(&self) -> bool {
        self.multi.is_some()
    }

    /// Probes `sites` of the target as one set.
    fn link(&mut self, sites: &[(u64, u64)], what: &str) -> Result<Probes, AttachError> {
        if let Some(multi) = &self.multi {
            return Ok(Probes::Multi(multi.attach(&self.target, self.pid, sites)?));
        }
        let scope = match self.pid.and_then(NonZeroU32::new) {
            Some(pid) => UProbeScope::OneProcess(pid),
            None => UProbeScope::AllProcesses,
        };
        let target = self.target.clone();
        let program: &mut UProbe = self
            .ebpf
            .program_mut(self.program)
            .ok_or(AttachError::Missing("uprobe program"))?
            .try_into()
            .map_err(|source| AttachError::Program { what: "program type".into(), source })?;
        let mut links = Vec::with_capacity(sites.len());
        for &(offset, cookie) in sites {
            let point =
                UProbeAttachPoint { location: UProbeAttachLocation::AbsoluteOffset(offset), cookie: Some(cookie) };
            let id = program.attach(point, &target, scope).map_err(|source| AttachError::Program {
                what: format!("attaching to {what} at file offset {offset:#x}"),
                source,
            })?;
            links.push(
                program
                    .take_link(id)
                    .map_err(|source| AttachError::Program { what: "taking a link".into(), source })?,
            );
        }
        Ok(Probes::Perf(links))
    }

    fn attach_returns(&mut self, id: usize) -> Result<(), AttachError> {
        let sites = self.functions[id].ret_sites.clone();
        let what = self.functions[id].symbol.clone();
        let link = self.link(&sites, &what)?;
        self.probes += link.len();
        let f = &mut self.functions[id];
        f.rets = Some(link);
        f.timed_since = Some(Instant::now());
        Ok(())
    }

    /// True when function `id` is still counted.
    pub fn is_attached(&self, id: u32) -> bool {
        self.functions.get(id as usize).is_some_and(|f| f.counting)
    }

    /// True when function `id`'s RET probes are attached now.
    pub fn returns_attached(&self, id: u32) -> bool {
        self.functions.get(id as usize).is_some_and(|f| f.rets.is_some())
    }

    /// Calls of function `id` timed since attach. Every CPU increments one
    /// shared count without an atomic, so a race may lose a call or two.
    pub fn timed(&self, id: u32) -> Result<u64, AttachError> {
        let timed: Array<_, u64> = open(&self.ebpf, "TIMED")?;
        timed.get(&id, 0).map_err(map_err("TIMED"))
    }

    /// From the `TIMED` count `at` on, each timed call of function `id`
    /// bumps [`GlobalStats::over_allowance`]; 0: never.
    pub fn set_allowance(&mut self, id: u32, at: u64) -> Result<(), AttachError> {
        let mut map: Array<_, u64> = open_mut(&mut self.ebpf, "ALLOWANCE")?;
        map.set(id, at, 0).map_err(map_err("ALLOWANCE"))
    }

    /// True when function `id` was planned with RET probes at all.
    pub fn is_tracked(&self, id: u32) -> bool {
        self.functions.get(id as usize).is_some_and(|f| !f.ret_sites.is_empty())
    }

    /// The share of the session so far during which function `id`'s RET
    /// probes were attached: 1.0 when its latency covers every call,
    /// `None` when it was never planned with RET probes.
    pub fn sampled_fraction(&self, id: u32) -> Option<f64> {
        let f = self.functions.get(id as usize).filter(|f| !f.ret_sites.is_empty())?;
        let now = self.ended.unwrap_or_else(Instant::now);
        let total = now.duration_since(self.started).as_secs_f64();
        let on = f.timed_before + f.timed_since.map_or(Duration::ZERO, |t| now.duration_since(t.max(self.started)));
        if total <= 0.0 {
            return Some(1.0);
        }
        Some((on.as_secs_f64() / total).clamp(0.0, 1.0))
    }

    /// Reads the exact counters and histograms of every function.
    pub fn counts(&self) -> Result<Vec<FunctionCounts>, AttachError> {
        let counters: PerCpuArray<_, FuncCounters> = open(&self.ebpf, "COUNTERS")?;
        let hists: PerCpuArray<_, [u64; BUCKETS as usize]> = open(&self.ebpf, "HIST")?;
        let mut out = Vec::with_capacity(self.functions.len());
        for (id, f) in self.functions.iter().enumerate() {
            let mut c = FuncCounters::default();
            for v in counters.get(&(id as u32), 0).map_err(map_err("COUNTERS"))?.iter() {
                c.add(v);
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
        let stats: PerCpuArray<_, GlobalStats> = open(&self.ebpf, "STATS")?;
        let mut out = GlobalStats::default();
        for s in stats.get(&0, 0).map_err(map_err("STATS"))?.iter() {
            out.add(s);
        }
        Ok(out)
    }

    /// Emits only one call event in `2^shift` from now on (0: every call).
    /// Counters and histograms are unaffected.
    pub fn set_sampling(&mut self, shift: u32) -> Result<(), AttachError> {
        let mut global: Array<_, GlobalConfig> = open_mut(&mut self.ebpf, "CONFIG")?;
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

    /// Takes up to `limit` `--capture` records waiting in their ring
    /// buffer, oldest first; returns how many it took.
    pub fn drain_captures(&mut self, limit: usize, mut each: impl FnMut(&CaptureEvent)) -> usize {
        let Some(ring) = self.captures.as_mut() else { return 0 };
        let mut n = 0;
        while n < limit
            && let Some(item) = ring.next()
        {
            if item.len() >= size_of::<CaptureEvent>() {
                // SAFETY: the kernel wrote a whole CaptureEvent (size
                // checked); read_unaligned makes no alignment assumption.
                let ev = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<CaptureEvent>()) };
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
        let mut map: Array<_, FuncConfig> = open_mut(&mut self.ebpf, "FUNC_CONFIG")?;
        map.set(id, config, 0).map_err(map_err("FUNC_CONFIG"))
    }

    /// Pauses (`on == false`) or resumes the latency of function `id`: its
    /// RET probes are removed or put back; its exact call count goes on
    /// either way. Returns whether anything changed.
    pub fn set_returns(&mut self, id: u32, on: bool) -> Result<bool, AttachError> {
        let i = id as usize;
        let Some(f) = self.functions.get(i) else { return Ok(false) };
        if f.ret_sites.is_empty() || !f.counting || f.rets.is_some() == on {
            return Ok(false);
        }
        if on {
            // RETs first, then frames: see `attach`.
            self.attach_returns(i)?;
            let mut config = self.functions[i].config;
            config.flags |= CFG_TRACK;
            self.functions[i].config = config;
            self.set_config(id, config)?;
        } else {
            // No new frames, and every frame pushed so far belongs to an
            // epoch that ends now; then the RETs go.
            let mut config = self.functions[i].config;
            config.flags &= !CFG_TRACK;
            config.epoch = config.epoch.wrapping_add(1);
            self.functions[i].config = config;
            self.set_config(id, config)?;
            let f = &mut self.functions[i];
            if let Some(since) = f.timed_since.take() {
                f.timed_before += since.max(self.started).elapsed();
            }
            if let Some(rets) = f.rets.take() {
                self.probes -= rets.len();
                self.closer.close(vec![rets]);
            }
        }
        Ok(true)
    }

    /// Stops counting function `id`; its counters keep their values.
    pub fn detach_function(&mut self, id: u32) -> Result<(), AttachError> {
        self.set_returns(id, false)?;
        let Some(f) = self.functions.get_mut(id as usize) else { return Ok(()) };
        f.counting = false;
        let mut config = f.config;
        config.flags |= CFG_OFF;
        f.config = config;
        let entry = f.entry.take();
        self.set_config(id, config)?;
        if let Some(entry) = entry {
            self.probes -= entry.len();
            self.closer.close(vec![entry]);
        }
        Ok(())
    }

    /// Removes every probe, closing them concurrently, and waits until the
    /// kernel has let go of all of them. Returns how long that took.
    pub fn detach_all(&mut self) -> Duration {
        let begun = Instant::now();
        self.ended.get_or_insert(begun);
        let mut all: Vec<Probes> = std::mem::take(&mut self.shared);
        for f in &mut self.functions {
            all.extend(f.entry.take());
            all.extend(f.rets.take());
            if let Some(since) = f.timed_since.take() {
                f.timed_before += begun.saturating_duration_since(since.max(self.started));
            }
        }
        self.probes = 0;
        self.closer.close(all);
        self.closer.wait();
        begun.elapsed()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.detach_all();
    }
}
