//! The running session of `ktrace attach`: a tokio loop that drains call
//! events into the trace file, and once a second redraws the live table,
//! enforces `--max-rate` and `--max-overhead`, and adjusts event sampling,
//! until the duration ends, a signal arrives or the target exits.

use std::{
    collections::HashMap,
    fs::File,
    io::BufWriter,
    path::PathBuf,
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

/// How long one drain may take before the loop checks its timers again.
const DRAIN_BUDGET: Duration = Duration::from_millis(30);
/// Events taken from the ring buffer between budget checks.
const DRAIN_BATCH: usize = 1024;
/// The symbolized-stack cache is emptied when it holds more entries than
/// this, so a long session's memory stays bounded.
const MAX_CACHED_STACKS: usize = 20_000;
/// Above this many events per second the kernel is asked to sample detail.
const EVENTS_PER_SEC_HIGH: u64 = 50_000;

/// The running session and what the loop keeps between ticks.
pub(super) struct Loop<'a> {
    pub(super) session: &'a mut Session,
    pub(super) pid: Option<u32>,
    pub(super) traced: &'a [Traced],
    pub(super) captures: &'a [Captures],
    pub(super) cost: Option<HitCost>,
    pub(super) mono_start: u64,
    pub(super) sym: &'a Symbolizer,
    pub(super) writer: Option<&'a mut TraceWriter<BufWriter<File>>>,
    /// Symbolized callers of each (direct caller, stack id) seen so far.
    pub(super) stacks: HashMap<(u64, i64), Vec<String>>,
    /// Why each function was detached, if it was.
    pub(super) detached: Vec<Option<String>>,
    /// Counts and time at the previous tick, for rates.
    pub(super) last: Option<Snapshot>,
    pub(super) sample_shift: u32,
    pub(super) live: bool,
    pub(super) write_error: Option<std::io::Error>,
    /// Each function's share of every budget window (1.0: RETs stay on).
    pub(super) shares: Vec<f64>,
    /// When the session began, for the rotation.
    pub(super) began: Instant,
    /// The target's CPU time at the previous tick.
    pub(super) last_cpu: Option<u64>,
    /// Whether the minimum shares were over budget at the previous tick.
    pub(super) over_budget: bool,
    /// `--serve-metrics`, fed the counters.
    pub(super) metrics: Option<&'a Metrics>,
    /// `--capture` values waiting for their call events.
    pub(super) pending: PendingFields,
}

impl<'a> Loop<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        session: &'a mut Session,
        traced: &'a [Traced],
        captures: &'a [Captures],
        cost: Option<HitCost>,
        mono_start: u64,
        sym: &'a Symbolizer,
        writer: Option<&'a mut TraceWriter<BufWriter<File>>>,
        pid: Option<u32>,
    ) -> Self {
        Self {
            session,
            pid,
            traced,
            captures,
            cost,
            mono_start,
            sym,
            writer,
            stacks: HashMap::new(),
            detached: vec![None; traced.len()],
            last: None,
            sample_shift: 0,
            live: false,
            write_error: None,
            shares: vec![1.0; traced.len()],
            began: Instant::now(),
            last_cpu: None,
            over_budget: false,
            metrics: None,
            pending: PendingFields::default(),
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
        pid: Option<u32>,
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
            tick.tick().await;
            // Rates are measured from attach on, so a burst in the first
            // second is caught too.
            self.last = Some(self.snapshot()?);
            self.publish(None)?;
            self.last_cpu = pid.and_then(budget::process_cpu_ns);
            let proc_dir = pid.map(|p| PathBuf::from(format!("/proc/{p}")));
            let ended = loop {
                tokio::select! {
                    () = &mut deadline => break None,
                    _ = signals.interrupt.recv() => break Some("interrupted"),
                    _ = signals.terminate.recv() => break Some("terminated"),
                    _ = drain.tick() => {
                        let gone = || proc_dir.as_ref().is_some_and(|d| !d.exists());
                        // Putting RET probes back fails once the target is
                        // gone: that ends the session, with its summary.
                        let rotated = self.rotate();
                        self.drain(DRAIN_BUDGET);
                        if gone() {
                            break Some("the target exited");
                        }
                        rotated?;
                        if self.metrics.is_some_and(Metrics::wanted) {
                            self.publish(None)?;
                        }
                    }
                    _ = tick.tick() => self.tick(args)?,
                }
            };
            // What is still in the ring buffer was recorded before the end.
            self.drain(Duration::from_secs(10));
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

    /// Reads call events for at most `budget`, so the loop stays responsive
    /// under load; what is left waits in the ring buffer for the next round.
    fn drain(&mut self, budget: Duration) {
        let until = Instant::now() + budget;
        let (captures, sym, mono_start) = (self.captures, self.sym, self.mono_start);
        let mut batch = Vec::with_capacity(DRAIN_BATCH);
        loop {
            batch.clear();
            let n = self.session.drain_events(DRAIN_BATCH, |ev| batch.push(*ev));
            // After the events: the capture of every call just read was
            // sent at its entry, before its event.
            // Read even without a trace file, so the ring never fills.
            let (pending, keep) = (&mut self.pending, self.writer.is_some());
            for _ in 0..8 {
                let taken = self.session.drain_captures(DRAIN_BATCH, |c| {
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
                    if self.stacks.len() >= MAX_CACHED_STACKS {
                        self.stacks.clear();
                    }
                    let session = &*self.session;
                    let frames = self.stacks.entry((ev.caller, ev.stack_id)).or_insert_with(|| {
                        let addrs = if ev.stack_id >= 0 { session.stack(ev.stack_id) } else { Vec::new() };
                        events::symbolize(ev.caller, &addrs, sym)
                    });
                    let mut call = events::to_call(ev, caps, mono_start, frames);
                    self.pending.join(ev, &mut call);
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

    /// Attaches or removes each function's RET probes as the budget's
    /// rotation says.
    fn rotate(&mut self) -> Result<(), Error> {
        let t = self.began.elapsed();
        for (i, &share) in self.shares.iter().enumerate() {
            if self.session.is_tracked(i as u32) {
                self.session.set_returns(i as u32, budget::on_at(i, share, t))?;
            }
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<Snapshot, Error> {
        Ok(Snapshot { at: Instant::now(), counts: self.session.counts()?, events: self.session.stats()?.emitted })
    }

    /// Hands `--serve-metrics` the counters (`counts`, else read now).
    fn publish(&self, counts: Option<&[FunctionCounts]>) -> Result<(), Error> {
        let Some(m) = self.metrics else { return Ok(()) };
        let counts = match counts {
            Some(c) => c.to_vec(),
            None => self.session.counts()?,
        };
        let fractions = (0..counts.len()).map(|i| self.session.sampled_fraction(i as u32)).collect();
        m.publish(Reading { counts, fractions, dropped: self.session.stats()?.dropped });
        Ok(())
    }

    /// The functions still counted.
    fn counting(&self) -> Vec<bool> {
        (0..self.traced.len()).map(|i| self.session.is_attached(i as u32)).collect()
    }

    /// Sizes each function's share of the RET-probe time from the measured
    /// per-hit cost, the call rates and the target's CPU time.
    fn plan_budget(&mut self, pct: f64, cost: &HitCost, rates: &Rates) {
        let (entry_cost, ret_cost) = aggregate::probe_cost_ns(self.traced, &self.counting(), cost, rates);
        // What the target would use untraced: probe hits run in its context.
        let untraced = match (self.pid, self.last_cpu) {
            (Some(pid), Some(before)) => {
                let Some(now) = budget::process_cpu_ns(pid) else { return };
                self.last_cpu = Some(now);
                (now.saturating_sub(before) as f64 / rates.secs - entry_cost - ret_cost).max(0.0)
            }
            // No single process to measure: the budget is of one CPU.
            _ => 1e9,
        };
        let tracked: Vec<usize> = (0..self.traced.len()).filter(|&i| self.session.is_tracked(i as u32)).collect();
        // Every call of a function hits one of its RETs.
        let costs: Vec<f64> = tracked.iter().map(|&i| rates.entries[i] * cost.single_stepped_ns).collect();
        // Pinned: the --filter anchors decide which calls are kept;
        // --capture values come with call events; the request roots and
        // the closures that tie a request's goroutines together are one
        // call each per request, and without them it cannot be rebuilt.
        let pinned: Vec<bool> = tracked
            .iter()
            .map(|&i| {
                let c = &self.captures[i];
                c.filter || !c.fields.is_empty() || self.traced[i].groups.iter().any(|g| g == "request")
            })
            .collect();
        let (shares, over) = budget::allocate(pct / 100.0 * untraced - entry_cost, &costs, &pinned);
        for (k, &i) in tracked.iter().enumerate() {
            self.shares[i] = shares[k];
        }
        if over && !self.over_budget {
            eprintln!(
                "ktrace: warning: even {:.0}% of the time with RET probes for every called function costs more than \
                 --max-overhead {pct}%; latency stays sampled at that minimum",
                budget::MIN_FRACTION * 100.0
            );
        }
        self.over_budget = over;
    }

    /// Stops counting the functions called more often than `--max-rate`.
    fn enforce_max_rate(&mut self, max_rate: u64, rates: &Rates, counts: &[FunctionCounts]) -> Result<(), Error> {
        if max_rate == 0 {
            return Ok(());
        }
        for (i, r) in rates.calls.iter().enumerate() {
            if *r > max_rate as f64 && self.session.is_attached(i as u32) {
                self.session.detach_function(i as u32)?;
                let why = format!("called {r:.0}/s, over --max-rate {max_rate}");
                eprintln!(
                    "ktrace: warning: {}: {why}; detached, the other functions are still traced",
                    counts[i].symbol
                );
                self.detached[i] = Some(why);
            }
        }
        Ok(())
    }

    fn tick(&mut self, args: &AttachArgs) -> Result<(), Error> {
        let now = self.snapshot()?;
        self.publish(Some(&now.counts))?;
        let Some(before) = self.last.replace(now.clone()) else { return Ok(()) };
        let rates = Rates::between(&before, &now);
        self.enforce_max_rate(args.max_rate, &rates, &now.counts)?;
        if let (Some(pct), Some(cost)) = (args.budget(), self.cost) {
            self.plan_budget(pct, &cost, &rates);
        }
        let overhead = self.cost.map(|c| {
            let (entries, rets) = aggregate::probe_cost_ns(self.traced, &self.counting(), &c, &rates);
            aggregate::percent_of_cpu(entries + rets)
        });
        // Event detail is sampled under load; counters never are.
        let events_rate = rates.events * (1u64 << self.sample_shift) as f64;
        let shift = (0..=16).find(|s| events_rate / (1u64 << s) as f64 <= EVENTS_PER_SEC_HIGH as f64).unwrap_or(16);
        if shift != self.sample_shift {
            self.session.set_sampling(shift)?;
            self.sample_shift = shift;
        }
        if let Some(w) = self.writer.as_deref_mut()
            && let Err(e) = w.flush()
        {
            self.write_error.get_or_insert(e);
        }
        if self.live {
            self.draw(&now.counts, &rates, overhead);
        }
        Ok(())
    }

    fn draw(&self, counts: &[FunctionCounts], rates: &Rates, overhead: Option<f64>) {
        let rows: Vec<live::Row> = counts
            .iter()
            .enumerate()
            .map(|(i, c)| live::Row {
                symbol: &c.symbol,
                calls: c.counters.calls,
                rate: rates.calls[i],
                errors: self.captures[i].errors.then_some(c.counters.errors),
                latency: c.hist.latency(),
                timed: self.session.sampled_fraction(i as u32),
                detached: self.detached[i].is_some(),
            })
            .collect();
        live::draw(&mut std::io::stderr(), &rows, overhead, self.sample_shift);
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
