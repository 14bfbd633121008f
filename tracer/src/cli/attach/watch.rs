//! The running session of `ktrace attach`: a tokio loop that drains call
//! events into the trace file, and once a second redraws the live table,
//! enforces `--max-rate` and `--max-overhead`, and adjusts event sampling,
//! until the duration ends, a signal arrives or the target exits.

use std::{
    collections::HashMap,
    fs::File,
    io::BufWriter,
    time::{Duration, Instant},
};

use analyzer::trace::{self, TraceWriter};

use super::{super::live, AttachArgs};
use crate::{
    aggregate::{self, Rates, Snapshot},
    attach::{
        FunctionCounts, Session,
        calibrate::HitCost,
        config::Captures,
        events::{self, PendingFields, Symbolizer},
    },
    budget,
    error::Error,
    metrics::{Metrics, Reading},
    session::Traced,
};

/// How often call events are read from the ring buffer. The kernel never
/// wakes ktrace per event; this timer is the only reader.
const DRAIN_EVERY: Duration = Duration::from_millis(50);
/// How often the table, the rate limit and the overhead budget are checked.
const TICK_EVERY: Duration = Duration::from_secs(1);
static NO_CAPTURES: Captures =
    Captures { string: None, secret: None, scalars: Vec::new(), errors: false, filter: false, fields: Vec::new() };

/// Every this many ticks, free heap pages go back to the system (see
/// `crate::memory`).
const TRIM_EVERY_TICKS: u64 = 10;
/// How often `--binary` looks for processes started since.
pub(super) const RESCAN_EVERY: Duration = Duration::from_millis(500);
/// How long one drain may take before the loop checks its timers again.
const DRAIN_BUDGET: Duration = Duration::from_millis(30);
/// Events taken from the ring buffer between budget checks.
const DRAIN_BATCH: usize = 1024;
/// The symbolized-stack cache is emptied when it holds more entries than
/// this, so a long session's memory stays bounded.
const MAX_CACHED_STACKS: usize = 20_000;
/// Above this many events per second the kernel is asked to sample detail.
const EVENTS_PER_SEC_HIGH: u64 = 50_000;

/// One traced process and what the loop keeps of it between ticks.
pub(super) struct Proc {
    /// Its PID; `None` only for a session not scoped to one process.
    pub(super) pid: Option<u32>,
    /// Its probes and maps; `None` once closed (it exited, or the session
    /// ended), its figures then in `closed`.
    session: Option<Session>,
    /// Its figures once closed.
    pub(super) closed: Option<Closed>,
    sym: Symbolizer,
    /// Symbolized callers of each (direct caller, stack id) seen so far.
    stacks: HashMap<(u64, i64), Vec<String>>,
    /// Why each function was detached, if it was.
    pub(super) detached: Vec<Option<String>>,
    /// Counts and time at the previous tick, for rates.
    last: Option<Snapshot>,
    sample_shift: u32,
    /// Each function's share of every budget window (1.0: RETs stay on).
    shares: Vec<f64>,
    /// Each function's call rate, smoothed over about a window (see
    /// [`budget::smoothed_rate`]), from which its least share is sized.
    smoothed: Vec<Option<f64>>,
    /// When it was attached, for the rotation.
    began: Instant,
    /// Its CPU time at the previous tick.
    last_cpu: Option<u64>,
    /// Whether the minimum shares were over budget at the previous tick.
    over_budget: bool,
    /// Each function's allowance of timed calls per window under the
    /// budget (see [`budget::allowance`]); `None`: unlimited (a pinned
    /// function). Empty until the budget applies.
    planned: Vec<Option<u64>>,
    /// The allowance each function has in its current window.
    allow: Vec<Allowance>,
    /// The session's `over_allowance` count when last looked at.
    over_seen: u64,
    /// `--capture` values waiting for their call events.
    pub(super) pending: PendingFields,
    /// When it was attached, after the session began.
    pub(super) attached_at: Duration,
}

/// A function's allowance of timed calls in its current budget window.
#[derive(Clone, Copy, Debug, Default)]
struct Allowance {
    /// The window ([`budget::window_index`]) it is for; `None` before the
    /// function's RET probes were first placed under the budget.
    window: Option<u64>,
    /// The function's timed calls when that window's allowance began.
    start: u64,
    /// Calls it may time in that window; 0: unlimited.
    calls: u64,
    /// The window in which it used them up: its RET probes stay off
    /// until its next.
    spent: Option<u64>,
}

/// What a process's session measured, read when it was closed.
pub(super) struct Closed {
    pub(super) counts: Vec<FunctionCounts>,
    pub(super) stats: tracer_common::GlobalStats,
    pub(super) fractions: Vec<Option<f64>>,
    /// From attach to the final read.
    pub(super) duration: Duration,
    pub(super) attach_time: Duration,
    pub(super) batched: bool,
    /// Whether it exited (else the session ended first).
    pub(super) exited: bool,
}

impl Proc {
    /// A process whose probes were just placed.
    pub(super) fn new(
        pid: Option<u32>,
        session: Session,
        sym: Symbolizer,
        functions: usize,
        attached_at: Duration,
    ) -> Self {
        Self {
            pid,
            session: Some(session),
            closed: None,
            sym,
            stacks: HashMap::new(),
            detached: vec![None; functions],
            last: None,
            sample_shift: 0,
            shares: vec![1.0; functions],
            smoothed: vec![None; functions],
            began: Instant::now(),
            last_cpu: None,
            over_budget: false,
            planned: Vec::new(),
            allow: vec![Allowance::default(); functions],
            over_seen: 0,
            pending: PendingFields::default(),
            attached_at,
        }
    }

    /// Its session while it is traced.
    pub(super) fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// Reads its final figures and removes its probes; `exited`: because
    /// the process is gone.
    pub(super) fn close(&mut self, exited: bool) -> Result<(), Error> {
        let Some(mut session) = self.session.take() else { return Ok(()) };
        let counts = session.counts()?;
        let stats = session.stats()?;
        let duration = self.began.elapsed();
        session.detach_all();
        let fractions = (0..counts.len()).map(|i| session.sampled_fraction(i as u32)).collect();
        self.closed = Some(Closed {
            counts,
            stats,
            fractions,
            duration,
            attach_time: session.attach_time,
            batched: session.batched(),
            exited,
        });
        Ok(())
    }

    /// Its counters now, live or final.
    fn counts(&self) -> Result<Vec<FunctionCounts>, Error> {
        match (&self.session, &self.closed) {
            (Some(s), _) => Ok(s.counts()?),
            (None, Some(c)) => Ok(c.counts.clone()),
            (None, None) => Ok(Vec::new()),
        }
    }

    fn fraction(&self, i: usize) -> Option<f64> {
        match (&self.session, &self.closed) {
            (Some(s), _) => s.sampled_fraction(i as u32),
            (None, Some(c)) => c.fractions.get(i).copied().flatten(),
            (None, None) => None,
        }
    }

    fn dropped(&self) -> Result<u64, Error> {
        match (&self.session, &self.closed) {
            (Some(s), _) => Ok(s.stats()?.dropped),
            (None, Some(c)) => Ok(c.stats.dropped),
            (None, None) => Ok(0),
        }
    }

    fn snapshot(&self) -> Result<Option<Snapshot>, Error> {
        let Some(s) = &self.session else { return Ok(None) };
        Ok(Some(Snapshot { at: Instant::now(), counts: s.counts()?, events: s.stats()?.emitted }))
    }

    /// Attaches or removes each function's RET probes as the budget's
    /// rotation, in windows of `window`, says: for its share of each
    /// window, unless it has timed its allowance of calls in that window.
    fn rotate(&mut self, window: Duration) -> Result<(), Error> {
        let Some(session) = self.session.as_mut() else { return Ok(()) };
        let t = self.began.elapsed();
        if !self.planned.is_empty() {
            let over = session.stats()?.over_allowance;
            if over != self.over_seen {
                self.over_seen = over;
                for (i, a) in self.allow.iter_mut().enumerate() {
                    if a.calls > 0
                        && a.window.is_some()
                        && a.spent != a.window
                        && session.returns_attached(i as u32)
                        && session.timed(i as u32)? >= a.start.saturating_add(a.calls)
                    {
                        a.spent = a.window;
                    }
                }
            }
        }
        for (i, &share) in self.shares.iter().enumerate() {
            if !session.is_tracked(i as u32) {
                continue;
            }
            let k = budget::window_index(i, t, window);
            let a = &mut self.allow[i];
            let on = budget::on_at(i, share, t, window) && a.spent != Some(k);
            if on && a.window != Some(k) && !self.planned.is_empty() {
                // A new window: a new allowance, set before the RETs go on.
                a.window = Some(k);
                a.calls = self.planned.get(i).copied().flatten().unwrap_or(0);
                a.start = if a.calls > 0 { session.timed(i as u32)? } else { 0 };
                session.set_allowance(i as u32, if a.calls > 0 { a.start.saturating_add(a.calls) } else { 0 })?;
            }
            session.set_returns(i as u32, on)?;
        }
        Ok(())
    }

    /// Sets each function's allowance of timed calls per window (`None`:
    /// unlimited); a function in the middle of a window gets the new
    /// allowance for the rest of it.
    fn plan_allowances(&mut self, planned: Vec<Option<u64>>) -> Result<(), Error> {
        let Some(session) = self.session.as_mut() else { return Ok(()) };
        for (i, a) in self.allow.iter_mut().enumerate() {
            let calls = planned.get(i).copied().flatten().unwrap_or(0);
            if a.window.is_none() || a.spent == a.window || a.calls == calls {
                continue;
            }
            if a.calls == 0 {
                a.start = session.timed(i as u32)?;
            }
            a.calls = calls;
            session.set_allowance(i as u32, if calls > 0 { a.start.saturating_add(calls) } else { 0 })?;
        }
        self.planned = planned;
        Ok(())
    }

    /// Whether its process is gone: no such PID, or a zombie (it has no
    /// executable any more).
    fn gone(&self) -> bool {
        self.session.is_some()
            && self.pid.is_some_and(|p| {
                std::fs::metadata(format!("/proc/{p}/exe")).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            })
    }
}

/// The running session and what the loop keeps between ticks.
pub(super) struct Loop<'a> {
    /// Every process traced so far, in the order found.
    pub(super) procs: Vec<Proc>,
    pub(super) traced: &'a [Traced],
    pub(super) captures: &'a [Captures],
    pub(super) cost: Option<HitCost>,
    pub(super) mono_start: u64,
    pub(super) writer: Option<&'a mut TraceWriter<BufWriter<File>>>,
    pub(super) live: bool,
    pub(super) write_error: Option<std::io::Error>,
    /// `--serve-metrics`, fed the counters.
    pub(super) metrics: Option<&'a Metrics>,
    /// Whether records name their process (several may be traced).
    pub(super) tagged: bool,
    /// How processes started later are found and attached (`--binary`).
    pub(super) finder: Option<&'a mut dyn FnMut(Duration) -> Vec<Proc>>,
    /// When the session began.
    pub(super) began: Instant,
    /// Ticks so far.
    ticks: u64,
    /// The budget's rotation window (`--budget-window`).
    pub(super) window: Duration,
    /// Whether RET probes rotate under an overhead budget.
    pub(super) budget_on: bool,
}

impl<'a> Loop<'a> {
    pub(super) fn new(
        procs: Vec<Proc>,
        traced: &'a [Traced],
        captures: &'a [Captures],
        cost: Option<HitCost>,
        mono_start: u64,
        writer: Option<&'a mut TraceWriter<BufWriter<File>>>,
    ) -> Self {
        Self {
            procs,
            traced,
            captures,
            cost,
            mono_start,
            writer,
            live: false,
            write_error: None,
            metrics: None,
            tagged: false,
            finder: None,
            began: Instant::now(),
            ticks: 0,
            window: budget::WINDOW,
            budget_on: false,
        }
    }

    /// Runs until the duration ends (`None`), or returns why it ended early;
    /// `signals` were caught before the probes were placed;
    /// also returns the CPU profile fetched over the same window, if asked.
    pub(super) fn run(
        &mut self,
        rt: &tokio::runtime::Runtime,
        mut signals: Signals,
        args: &AttachArgs,
        pprof: Option<(analyzer::fetch::Source, u64)>,
    ) -> Result<(Option<&'static str>, Option<trace::Profile>), Error> {
        rt.block_on(async {
            // The profile is fetched concurrently, for the same window as the
            // trace, so `ktrace flame` can merge the two without clock skew.
            let fetch = pprof.map(|(source, seconds)| {
                let start_ns = events::monotonic_ns().saturating_sub(self.mono_start);
                eprintln!("ktrace: fetching a {seconds} s CPU profile from {}", source.describe());
                (start_ns, seconds, tokio::spawn(async move { source.fetch(Some(seconds)).await }))
            });
            let deadline = async {
                match args.duration {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(deadline);
            let mut drain = tokio::time::interval(DRAIN_EVERY);
            let mut tick = tokio::time::interval(TICK_EVERY);
            let mut rescan = tokio::time::interval(RESCAN_EVERY);
            tick.tick().await;
            rescan.tick().await;
            // Rates are measured from attach on, so a burst in the first
            // second is caught too.
            for p in &mut self.procs {
                Self::start(p)?;
            }
            self.publish()?;
            let ended = loop {
                tokio::select! {
                    () = &mut deadline => break None,
                    _ = signals.interrupt.recv() => break Some("interrupted"),
                    _ = signals.terminate.recv() => break Some("terminated"),
                    _ = drain.tick() => {
                        if let Some(why) = self.drain_all()? {
                            break Some(why);
                        }
                        if self.metrics.is_some_and(Metrics::wanted) {
                            self.publish()?;
                        }
                    }
                    _ = rescan.tick(), if self.finder.is_some() => self.rescan()?,
                    _ = tick.tick() => self.tick(args)?,
                }
            };
            // What is still in the ring buffers was recorded before the end.
            for i in 0..self.procs.len() {
                self.drain(i, Duration::from_secs(10));
            }
            if self.live {
                live::clear(&mut std::io::stderr());
            }
            let profile = match fetch {
                None => None,
                Some((_, _, task)) if ended.is_some() => {
                    task.abort();
                    eprintln!("ktrace: warning: the trace ended early; the CPU profile was not stored");
                    None
                }
                Some((start_ns, seconds, task)) => {
                    // The server answers once its window has passed; allow for the transfer.
                    match tokio::time::timeout(Duration::from_secs(30), task).await {
                        Ok(Ok(Ok(body))) => {
                            Some(analyzer::fetch::profile_record("profile", start_ns, seconds * 1_000_000_000, &body))
                        }
                        Ok(Ok(Err(e))) => return Err(Error::Input(format!("--pprof: {e}"))),
                        Ok(Err(e)) => return Err(Error::Input(format!("--pprof: the fetch failed: {e}"))),
                        Err(_) => return Err(Error::Input("--pprof: no profile 30 s after the trace ended".into())),
                    }
                }
            };
            Ok::<_, Error>((ended, profile))
        })
    }

    /// The first read of a process just attached: rates and the budget's
    /// CPU time count from here.
    fn start(p: &mut Proc) -> Result<(), Error> {
        p.last = p.snapshot()?;
        p.last_cpu = p.pid.and_then(budget::process_cpu_ns);
        Ok(())
    }

    /// One drain round over every process: rotation, call events, and the
    /// processes that exited. Returns why the session ends, if it does: a
    /// fixed set of processes (`--pid`) ends when all of them have exited.
    fn drain_all(&mut self) -> Result<Option<&'static str>, Error> {
        let mut exited = false;
        for i in 0..self.procs.len() {
            if self.procs[i].session.is_none() {
                continue;
            }
            // Putting RET probes back fails once the target is gone: that
            // closes it, with its figures so far.
            if self.budget_on && self.procs[i].planned.is_empty() {
                self.procs[i].planned = self.first_allowances();
            }
            let rotated = self.procs[i].rotate(self.window);
            self.drain(i, DRAIN_BUDGET);
            if self.procs[i].gone() {
                self.drain(i, Duration::from_secs(1));
                self.procs[i].close(true)?;
                exited = true;
                if self.procs.len() > 1 || self.finder.is_some() {
                    if self.live {
                        live::clear(&mut std::io::stderr());
                    }
                    eprintln!(
                        "ktrace: PID {} exited; its figures so far are kept",
                        self.procs[i].pid.unwrap_or_default()
                    );
                }
                continue;
            }
            rotated?;
        }
        if exited {
            self.publish()?;
        }
        let all_gone = self.procs.iter().all(|p| p.session.is_none());
        Ok(match () {
            _ if self.finder.is_some() || !all_gone => None,
            _ if self.procs.len() == 1 => Some("the target exited"),
            _ => Some("every target exited"),
        })
    }

    /// Attaches the processes started since the last look (`--binary`).
    fn rescan(&mut self) -> Result<(), Error> {
        let Some(find) = self.finder.as_mut() else { return Ok(()) };
        let found = find(self.began.elapsed());
        if found.is_empty() {
            return Ok(());
        }
        if self.live {
            live::clear(&mut std::io::stderr());
        }
        for mut p in found {
            Self::start(&mut p)?;
            self.procs.push(p);
        }
        self.publish()
    }

    /// Reads process `i`'s call events for at most `budget`, so the loop
    /// stays responsive under load; what is left waits in the ring buffer
    /// for the next round.
    fn drain(&mut self, i: usize, budget: Duration) {
        let until = Instant::now() + budget;
        let (captures, mono_start, tagged) = (self.captures, self.mono_start, self.tagged);
        let proc = &mut self.procs[i];
        let pid = proc.pid;
        let Some(session) = proc.session.as_mut() else { return };
        let mut batch = Vec::with_capacity(DRAIN_BATCH);
        loop {
            batch.clear();
            let n = session.drain_events(DRAIN_BATCH, |ev| batch.push(*ev));
            // After the events: the capture of every call just read was
            // sent at its entry, before its event.
            // Read even without a trace file, so the ring never fills.
            let (pending, keep) = (&mut proc.pending, self.writer.is_some());
            for _ in 0..8 {
                let taken = session.drain_captures(DRAIN_BATCH, |c| {
                    if keep {
                        pending.add(c, captures.get(c.func as usize).unwrap_or(&NO_CAPTURES));
                    }
                });
                if taken < DRAIN_BATCH {
                    break;
                }
            }
            if let Some(w) = self.writer.as_deref_mut() {
                for ev in &batch {
                    let caps = captures.get(ev.func as usize).unwrap_or(&NO_CAPTURES);
                    // Call paths repeat, and a stack id's contents never change
                    // once recorded: each (caller, stack id) is read from the
                    // kernel and symbolized once.
                    if proc.stacks.len() >= MAX_CACHED_STACKS {
                        proc.stacks.clear();
                    }
                    let (session, sym) = (&*session, &proc.sym);
                    let frames = proc.stacks.entry((ev.caller, ev.stack_id)).or_insert_with(|| {
                        let addrs = if ev.stack_id >= 0 { session.stack(ev.stack_id) } else { Vec::new() };
                        events::symbolize(ev.caller, &addrs, sym)
                    });
                    let mut call = events::to_call(ev, caps, mono_start, frames);
                    if tagged {
                        call.pid = pid;
                    }
                    proc.pending.join(ev, &mut call);
                    if let Err(e) = w.call(&call) {
                        self.write_error.get_or_insert(e);
                    }
                }
            }
            if n < DRAIN_BATCH || Instant::now() >= until {
                break;
            }
        }
    }

    /// Hands `--serve-metrics` every process's counters, read now.
    fn publish(&self) -> Result<(), Error> {
        let Some(m) = self.metrics else { return Ok(()) };
        let mut processes = Vec::with_capacity(self.procs.len());
        for p in &self.procs {
            let counts = p.counts()?;
            let fractions = (0..counts.len()).map(|i| p.fraction(i)).collect();
            processes.push(Reading { pid: p.pid, counts, fractions, dropped: p.dropped()? });
        }
        m.publish(processes);
        Ok(())
    }

    fn tick(&mut self, args: &AttachArgs) -> Result<(), Error> {
        self.ticks += 1;
        if self.ticks.is_multiple_of(TRIM_EVERY_TICKS) {
            crate::memory::trim();
        }
        let mut rows = Vec::new();
        let mut overhead: Option<f64> = None;
        let mut shift = 0;
        for i in 0..self.procs.len() {
            let Some(now) = self.procs[i].snapshot()? else {
                if self.live {
                    rows.extend(self.rows(i, &self.procs[i].counts()?, None));
                }
                continue;
            };
            let Some(before) = self.procs[i].last.replace(now.clone()) else { continue };
            let rates = Rates::between(&before, &now);
            self.enforce_max_rate(i, args.max_rate, &rates, &now.counts)?;
            if let (Some(pct), Some(cost)) = (args.budget(), self.cost) {
                self.plan_budget(i, pct, &cost, &rates)?;
            }
            if let Some(c) = self.cost {
                let (entries, rets) = aggregate::probe_cost_ns(self.traced, &self.counting(i), &c, &rates);
                *overhead.get_or_insert(0.0) += aggregate::percent_of_cpu(entries + rets);
            }
            // Event detail is sampled under load; counters never are.
            let p = &mut self.procs[i];
            let events_rate = rates.events * (1u64 << p.sample_shift) as f64;
            let s = (0..=16).find(|s| events_rate / (1u64 << s) as f64 <= EVENTS_PER_SEC_HIGH as f64).unwrap_or(16);
            if s != p.sample_shift
                && let Some(session) = p.session.as_mut()
            {
                session.set_sampling(s)?;
                p.sample_shift = s;
            }
            shift = shift.max(p.sample_shift);
            if self.live {
                rows.extend(self.rows(i, &now.counts, Some(&rates)));
            }
        }
        self.publish()?;
        if let Some(w) = self.writer.as_deref_mut()
            && let Err(e) = w.flush()
        {
            self.write_error.get_or_insert(e);
        }
        if self.live {
            live::draw(&mut std::io::stderr(), &rows, overhead, shift);
        }
        Ok(())
    }

    /// The functions of process `i` still counted.
    fn counting(&self, i: usize) -> Vec<bool> {
        let s = self.procs[i].session();
        (0..self.traced.len()).map(|f| s.is_some_and(|s| s.is_attached(f as u32))).collect()
    }

    /// Whether function `f` keeps its RET probes whatever the budget: the
    /// `--filter` anchors decide which calls are kept; `--capture` values
    /// come with call events; the request roots and the closures that tie a
    /// request's goroutines together are one call each per request, and
    /// without them it cannot be rebuilt.
    fn pinned(&self, f: usize) -> bool {
        let c = &self.captures[f];
        c.filter || !c.fields.is_empty() || self.traced[f].groups.iter().any(|g| g == "request")
    }

    /// Each function's allowance of timed calls before the budget's first
    /// plan: the least, so a function under load when ktrace attaches is
    /// not single-stepped on every call until then.
    fn first_allowances(&self) -> Vec<Option<u64>> {
        (0..self.traced.len()).map(|f| (!self.pinned(f)).then_some(budget::TIMED_CALLS_PER_WINDOW as u64)).collect()
    }

    /// Sizes each function's share of process `i`'s RET-probe time from the
    /// measured per-hit cost, the call rates and the process's CPU time.
    fn plan_budget(&mut self, i: usize, pct: f64, cost: &HitCost, rates: &Rates) -> Result<(), Error> {
        let (entry_cost, ret_cost) = aggregate::probe_cost_ns(self.traced, &self.counting(i), cost, rates);
        let all_pinned: Vec<bool> = (0..self.traced.len()).map(|f| self.pinned(f)).collect();
        let p = &mut self.procs[i];
        let Some(session) = p.session.as_ref() else { return Ok(()) };
        // What the target would use untraced: probe hits run in its context.
        let untraced = match (p.pid, p.last_cpu) {
            (Some(pid), Some(before)) => {
                let Some(now) = budget::process_cpu_ns(pid) else { return Ok(()) };
                p.last_cpu = Some(now);
                (now.saturating_sub(before) as f64 / rates.secs - entry_cost - ret_cost).max(0.0)
            }
            // No single process to measure: the budget is of one CPU.
            _ => 1e9,
        };
        let tracked: Vec<usize> = (0..self.traced.len()).filter(|&f| session.is_tracked(f as u32)).collect();
        // Every call of a function hits one of its RETs.
        let costs: Vec<f64> = tracked.iter().map(|&f| rates.entries[f] * cost.single_stepped_ns).collect();
        let pinned: Vec<bool> = tracked.iter().map(|&f| all_pinned[f]).collect();
        for (f, smoothed) in p.smoothed.iter_mut().enumerate() {
            let rate = rates.calls.get(f).copied().unwrap_or(0.0);
            *smoothed = Some(budget::smoothed_rate(*smoothed, rate, rates.secs, self.window));
        }
        let least: Vec<f64> =
            tracked.iter().map(|&f| budget::least_share(p.smoothed[f].unwrap_or(0.0), self.window)).collect();
        let (shares, over) = budget::allocate(pct / 100.0 * untraced - entry_cost, &costs, &least, &pinned);
        let mut planned = vec![None; self.traced.len()];
        for (k, &f) in tracked.iter().enumerate() {
            p.shares[f] = shares[k];
            if !pinned[k] {
                planned[f] = Some(budget::allowance(shares[k], p.smoothed[f].unwrap_or(0.0), self.window));
            }
        }
        if over && !p.over_budget {
            eprintln!(
                "ktrace: warning: {}even the least shares of the time with RET probes (each called function's \
                 long enough to time {} of its calls per window, and at least {} ms) cost more than \
                 --max-overhead {pct}%; latency stays sampled at that minimum",
                p.pid.filter(|_| self.tagged).map_or_else(String::new, |pid| format!("PID {pid}: ")),
                budget::TIMED_CALLS_PER_WINDOW,
                budget::MIN_SLICE.as_millis(),
            );
        }
        p.over_budget = over;
        p.plan_allowances(planned)
    }

    /// Stops counting process `i`'s functions called more often than
    /// `--max-rate`.
    fn enforce_max_rate(
        &mut self,
        i: usize,
        max_rate: u64,
        rates: &Rates,
        counts: &[FunctionCounts],
    ) -> Result<(), Error> {
        if max_rate == 0 {
            return Ok(());
        }
        let p = &mut self.procs[i];
        let Some(session) = p.session.as_mut() else { return Ok(()) };
        for (f, r) in rates.calls.iter().enumerate() {
            if *r > max_rate as f64 && session.is_attached(f as u32) {
                session.detach_function(f as u32)?;
                let why = format!("called {r:.0}/s, over --max-rate {max_rate}");
                let who = p.pid.filter(|_| self.tagged).map_or_else(String::new, |pid| format!("PID {pid}: "));
                eprintln!(
                    "ktrace: warning: {who}{}: {why}; detached, the other functions are still traced",
                    counts[f].symbol
                );
                p.detached[f] = Some(why);
            }
        }
        Ok(())
    }

    /// Process `i`'s lines of the live table.
    fn rows(&self, i: usize, counts: &[FunctionCounts], rates: Option<&Rates>) -> Vec<live::Row> {
        let p = &self.procs[i];
        counts
            .iter()
            .enumerate()
            .map(|(f, c)| live::Row {
                symbol: match p.pid {
                    Some(pid) if self.tagged => format!("[{pid}] {}", c.symbol),
                    _ => c.symbol.clone(),
                },
                calls: c.counters.calls,
                rate: rates.map_or(0.0, |r| r.calls[f]),
                errors: self.captures[f].errors.then_some(c.counters.errors),
                latency: c.hist.latency(),
                timed: p.fraction(f),
                detached: p.detached[f].is_some() || p.session.is_none(),
            })
            .collect()
    }
}

/// SIGINT and SIGTERM, caught from the moment this is made: a signal that
/// arrives before the loop polls for it waits for the loop.
pub(super) struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Starts catching; must run inside the loop's runtime.
    pub(super) fn catch() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals { interrupt: signal(SignalKind::interrupt())?, terminate: signal(SignalKind::terminate())? })
    }
}
