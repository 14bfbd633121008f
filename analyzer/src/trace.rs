//! The trace file written by `ktrace attach --output TRACE` and read by
//! `ktrace flame` (documented for users in docs/trace-format.md).
//!
//! It is JSON Lines: one record per line, each an object whose `type` field
//! says what it is. A file starts with one `header`, then holds `call`
//! records as they are read from the kernel, then one `function` record per
//! traced function (exact counters and the latency histogram; one per
//! function and process in a trace of several, see
//! [`Trace::function_totals`]), optional
//! `profile` records (a pprof profile fetched over the same window), and ends
//! with one `end` record. A trace cut short (ktrace was killed) has no `end`
//! and may lack the `function` records; it still reads, and says so.
//!
//! The reader treats the file as untrusted: every error names the line.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    io::{self, BufRead, Read, Write},
};

use serde::{Deserialize, Serialize};

pub use crate::summary::{LatencyNs, Mode};

/// Value of `header.format`.
pub const FORMAT: &str = "ktrace-trace";
/// Value of `header.version` this build writes and reads.
pub const VERSION: u32 = 1;

/// One line of the file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// First line: what was traced.
    Header(Header),
    /// One traced call that returned.
    Call(Call),
    /// Exact totals of one function.
    Function(FunctionStats),
    /// A pprof profile covering the trace window.
    Profile(Profile),
    /// Last line.
    End(End),
}

/// What was traced, and the function table the other records refer to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`] for this build.
    pub version: u32,
    /// Entry probes only, or entry and RET probes.
    pub mode: Mode,
    /// Traced process, when one PID was traced.
    pub pid: Option<u32>,
    /// Path of the traced binary as ktrace opened it.
    pub binary: String,
    /// GNU build id of the binary, hex.
    pub build_id: Option<String>,
    /// Go version from the binary's build info.
    pub go_version: Option<String>,
    /// Wall-clock time of attach, nanoseconds since the Unix epoch. Every
    /// `start_ns` in the file counts from here.
    pub start_unix_ns: u64,
    /// Traced functions; `call.func` and `function.func` index this list.
    pub functions: Vec<TracedFunction>,
    /// `Some(true)` when the trace was taken with `--unredacted-args`, so
    /// call arguments may hold secrets; `Some(false)` when secret arguments
    /// were redacted (`<redacted N bytes>`). Absent in traces written before
    /// ktrace redacted secrets: treat those as possibly holding them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unredacted_args: Option<bool>,
    /// The `--filter ARG=PATTERN` the trace was taken with: only kept calls
    /// are in it, and every count is of kept calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

/// One traced function (or source line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TracedFunction {
    /// Index used by the other records.
    pub id: u32,
    /// Go symbol, or `file.go:LINE in symbol` for a line probe.
    pub symbol: String,
    /// Source file of the function's entry.
    pub file: Option<String>,
    /// Source line of the function's entry.
    pub line: Option<u32>,
    /// Presets the function belongs to (`authn`, `storage`, …); may be empty.
    pub groups: Vec<String>,
    /// The request phase its own time counts toward (`authn`, `authz`,
    /// `admission`, `registry`, `storage`), or `request` for a request
    /// root; absent when its time belongs to whatever encloses it (a
    /// handler, or a filter closure that wraps the rest of the chain).
    /// Traces from before phases existed lack it everywhere: readers then
    /// derive it from `groups` ([`crate::requests::phase_from_groups`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

/// A captured argument.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ArgValue {
    /// An integer or pointer.
    Int(u64),
    /// String contents, cut to the capture limit (see `Call::truncated`).
    Str(String),
}

/// One call that returned while the trace ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// Index into `header.functions`.
    pub func: u32,
    /// The process that made the call, when the trace holds several
    /// (`ktrace attach --binary`, or several `--pid`s); absent when it
    /// holds one, the header's `pid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Address of the goroutine's `runtime.g`: stable while a call is in flight.
    pub g: u64,
    /// Goroutine id, when ktrace knew where `runtime.g.goid` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goid: Option<u64>,
    /// Id of the goroutine that started this one (`runtime.g.parentGoid`,
    /// Go 1.21+); absent when unknown, or 0 for goroutines the runtime
    /// started itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_goid: Option<u64>,
    /// Start, in nanoseconds after `header.start_unix_ns`.
    pub start_ns: u64,
    /// Wall duration in nanoseconds.
    pub dur_ns: u64,
    /// Whether the function's `error` result was non-nil; absent when the
    /// function has no error result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<bool>,
    /// Captured arguments by parameter name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, ArgValue>,
    /// True when a string argument was longer than the capture limit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Callers of the traced function, innermost first, symbolized; empty
    /// unless stacks were requested.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stack: Vec<String>,
}

/// One latency histogram bucket: calls that took `[lo, hi)` nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Inclusive lower bound, ns.
    pub lo: u64,
    /// Exclusive upper bound, ns.
    pub hi: u64,
    /// Number of calls.
    pub count: u64,
}

/// Exact totals of one function over the whole trace. Calls are never
/// sampled; latency and errors cover `sampled_fraction` of the trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionStats {
    /// Index into `header.functions`.
    pub func: u32,
    /// The process these totals are of, when the trace holds several: then
    /// each function has one record per process; absent when it holds one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Calls (entry passes, stack-growth re-entries excluded).
    pub calls: u64,
    /// Calls whose error result was non-nil; absent when not measured.
    pub errors: Option<u64>,
    /// Latency summary; absent in count-only mode.
    pub latency_ns: Option<LatencyNs>,
    /// Non-empty latency buckets in increasing order.
    #[serde(default)]
    pub histogram: Vec<Bucket>,
    /// Why tracing of this function stopped early (e.g. over `--max-rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detached: Option<String>,
    /// Share of the trace during which the function's RET probes were
    /// attached (1.0: every call timed; less under `--max-overhead`), so
    /// latency and errors come from that share; absent in count-only mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampled_fraction: Option<f64>,
}

/// A pprof profile stored with the trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Profile name as served by /debug/pprof (`profile` for CPU).
    pub kind: String,
    /// When fetching started, ns after `header.start_unix_ns`.
    pub start_ns: u64,
    /// Window the profile covers, ns.
    pub duration_ns: u64,
    /// The profile body exactly as served (gzipped profile.proto), base64.
    pub data_base64: String,
}

/// Totals of the session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    /// Wall time between attach and the final read, ns.
    pub duration_ns: u64,
    /// Call events lost because the ring buffer was full.
    pub dropped_events: u64,
    /// Call events the kernel did not emit because detail was being sampled.
    pub sampled_out: u64,
}

/// A whole trace, read back.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trace {
    /// The header; `None` only for an empty file (which [`read`] rejects).
    pub header: Option<Header>,
    /// Every call record, in file order.
    pub calls: Vec<Call>,
    /// Totals per function, as written: one record per function and
    /// process. [`Trace::function_totals`] adds up the processes.
    pub functions: Vec<FunctionStats>,
    /// Profiles stored with the trace.
    pub profiles: Vec<Profile>,
    /// The end record; `None` when the trace was cut short.
    pub end: Option<End>,
}

impl Trace {
    /// The header. A trace returned by [`read`] always has one; a `Trace`
    /// built by hand may not.
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// The function a record's `func` field names.
    pub fn function(&self, id: u32) -> Option<&TracedFunction> {
        self.header.as_ref()?.functions.get(id as usize)
    }

    /// The process that made `call`: its own `pid`, else the header's (a
    /// single-process trace names its process once, in the header). `None`
    /// only when neither says.
    pub fn pid_of(&self, call: &Call) -> Option<u32> {
        call.pid.or_else(|| self.header.as_ref()?.pid)
    }

    /// The goroutine that made `call`, told apart across processes (two
    /// processes both have a goroutine 7); `None` when the call carries no
    /// goroutine id.
    pub fn goroutine_of(&self, call: &Call) -> Option<Goroutine> {
        Some(Goroutine { pid: self.pid_of(call), goid: call.goid? })
    }

    /// The goroutine that started the one that made `call`, in the same
    /// process; `None` when unknown.
    pub fn parent_of(&self, call: &Call) -> Option<Goroutine> {
        Some(Goroutine { pid: self.pid_of(call), goid: call.parent_goid? })
    }

    /// The processes the call and function records name by their own `pid`,
    /// in increasing order: empty for a single-process trace.
    pub fn pids(&self) -> Vec<u32> {
        let set: BTreeSet<u32> =
            self.calls.iter().filter_map(|c| c.pid).chain(self.functions.iter().filter_map(|f| f.pid)).collect();
        set.into_iter().collect()
    }

    /// The totals of each function over every process, by `func`: the
    /// `function` records of one function merged by [`merge_stats`]. In a
    /// single-process trace, where each function has one record, these are
    /// the records themselves.
    pub fn function_totals(&self) -> BTreeMap<u32, FunctionStats> {
        let mut by: BTreeMap<u32, Vec<&FunctionStats>> = BTreeMap::new();
        for f in &self.functions {
            by.entry(f.func).or_default().push(f);
        }
        by.into_iter().filter_map(|(func, records)| Some((func, merge_stats(&records)?))).collect()
    }
}

/// A goroutine of a traced process: goroutine ids are per process, so a
/// trace of several processes keys goroutines by both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Goroutine {
    /// The process ([`Trace::pid_of`]); `None` when the trace names none.
    pub pid: Option<u32>,
    /// Goroutine id within the process.
    pub goid: u64,
}

/// The totals of one function over several processes, from its `function`
/// records (one per process); `None` when `records` is empty. One record is
/// returned unchanged. Otherwise:
///
/// - `calls` and `errors` add up (`errors` is `None` only when every record's
///   is);
/// - histograms add up bucket by bucket (a bucket off the kernel's layout
///   counts toward the layout's bucket holding its `lo`), and `latency_ns`
///   is recomputed from the merged histogram as [`Histogram::latency`] does,
///   with `sum` added up and `max` the largest; when the records hold
///   latency but no buckets, each percentile is the largest of the
///   records', an upper bound like the histogram's own;
/// - `sampled_fraction` is the mean of the records' (each taken within
///   0..=1), weighted by their calls (the share of all calls that ran while
///   RET probes were attached, if calls came evenly), or the plain mean
///   when no record has calls; `None` when every record's is;
/// - `detached` holds the distinct reasons of the records that have one,
///   joined by `; `;
/// - `pid` is the records' pid when they all have the same, else `None`.
///
/// [`Histogram::latency`]: crate::hist::Histogram::latency
pub fn merge_stats(records: &[&FunctionStats]) -> Option<FunctionStats> {
    use tracer_common::hist::{BUCKETS, bucket_of};
    let (first, rest) = records.split_first()?;
    if rest.is_empty() {
        return Some((*first).clone());
    }
    let calls = records.iter().fold(0u64, |a, r| a.saturating_add(r.calls));
    let errors = records.iter().filter_map(|r| r.errors).reduce(|a, b| a.saturating_add(b));
    let mut hist = crate::hist::Histogram { counts: vec![0; BUCKETS as usize], sum: 0, max: 0 };
    for r in records {
        for b in &r.histogram {
            let i = bucket_of(b.lo) as usize;
            if let Some(c) = hist.counts.get_mut(i) {
                *c = c.saturating_add(b.count);
            }
        }
        match (r.latency_ns, r.histogram.iter().filter(|b| b.count > 0).map(|b| b.hi.saturating_sub(1)).max()) {
            (Some(l), _) => {
                hist.sum = hist.sum.saturating_add(l.sum);
                hist.max = hist.max.max(l.max);
            }
            // Buckets without a summary: the top bucket bounds the max.
            (None, Some(top)) => hist.max = hist.max.max(top),
            (None, None) => {}
        }
    }
    let latency_ns = hist.latency().or_else(|| {
        let lats: Vec<LatencyNs> = records.iter().filter_map(|r| r.latency_ns).collect();
        let most = |f: fn(&LatencyNs) -> u64| lats.iter().map(f).max();
        Some(LatencyNs {
            p50: most(|l| l.p50)?,
            p90: most(|l| l.p90)?,
            p99: most(|l| l.p99)?,
            max: most(|l| l.max)?,
            sum: lats.iter().fold(0u64, |a, l| a.saturating_add(l.sum)),
        })
    });
    let fractions: Vec<(f64, u64)> = records
        .iter()
        .filter_map(|r| r.sampled_fraction.map(|f| (f, r.calls)))
        .filter(|(f, _)| f.is_finite())
        // A share: a hostile record's is clamped, so the mean is one too.
        .map(|(f, c)| (f.clamp(0.0, 1.0), c))
        .collect();
    let weight = fractions.iter().map(|&(_, c)| c as f64).sum::<f64>();
    let sampled_fraction = if fractions.is_empty() {
        None
    } else if weight > 0.0 {
        Some(fractions.iter().map(|&(f, c)| f * c as f64).sum::<f64>() / weight)
    } else {
        Some(fractions.iter().map(|&(f, _)| f).sum::<f64>() / fractions.len() as f64)
    };
    // Distinct, in record order; a set, since a hostile trace may hold a
    // record per process for millions of processes.
    let mut seen = HashSet::new();
    let reasons: Vec<&str> = records.iter().filter_map(|r| r.detached.as_deref()).filter(|d| seen.insert(*d)).collect();
    let pid = first.pid.filter(|p| rest.iter().all(|r| r.pid == Some(*p)));
    Some(FunctionStats {
        func: first.func,
        pid,
        calls,
        errors,
        latency_ns,
        histogram: hist.buckets(),
        detached: (!reasons.is_empty()).then(|| reasons.join("; ")),
        sampled_fraction,
    })
}

/// Why a trace file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// Reading failed.
    #[error("reading the trace: {0}")]
    Io(#[from] io::Error),
    /// The file is empty.
    #[error("the trace file is empty")]
    Empty,
    /// A line is not a trace record.
    #[error("line {line}: not a ktrace trace record: {reason}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        reason: String,
    },
    /// The first record is not a header of a known format and version.
    #[error(
        "not a ktrace trace (format {format:?}, version {version}; this ktrace reads {FORMAT:?} version {VERSION})"
    )]
    Format {
        /// Format found.
        format: String,
        /// Version found.
        version: u32,
    },
}

fn malformed(line: usize, reason: impl Into<String>) -> TraceError {
    TraceError::Malformed { line, reason: reason.into() }
}

/// Longest line accepted: a call with a deep stack and long arguments is a
/// few KiB; a profile record holds a whole base64 profile.
const MAX_LINE: usize = 256 << 20;

/// Reads a whole trace, checking that every record refers to a function of
/// the header and that no function has two `function` records for one
/// process. A call's `pid` is not checked against the header's: a trace of
/// one process may name it on its calls too.
pub fn read<R: BufRead>(mut input: R) -> Result<Trace, TraceError> {
    let mut trace = Trace::default();
    let mut buf = Vec::new();
    let mut line = 0usize;
    // (func, pid) of the function records read so far.
    let mut seen: HashSet<(u32, Option<u32>)> = HashSet::new();
    loop {
        buf.clear();
        let n = Read::take(&mut input, MAX_LINE as u64 + 1).read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        line += 1;
        if buf.len() > MAX_LINE {
            return Err(malformed(line, "line too long"));
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record: Record = serde_json::from_slice(&buf).map_err(|e| malformed(line, e.to_string()))?;
        let nfuncs = trace.header.as_ref().map(|h| h.functions.len());
        let check_func = |func: u32| match nfuncs {
            Some(n) if (func as usize) < n => Ok(()),
            Some(n) => Err(malformed(line, format!("function {func} is not in the header's {n} functions"))),
            None => unreachable!("header checked first"),
        };
        match (record, &trace.header) {
            (Record::Header(h), None) => {
                if h.format != FORMAT || h.version != VERSION {
                    return Err(TraceError::Format { format: h.format, version: h.version });
                }
                if let Some((i, f)) = h.functions.iter().enumerate().find(|(i, f)| f.id as usize != *i) {
                    return Err(malformed(line, format!("function {i} has id {}", f.id)));
                }
                trace.header = Some(h);
            }
            (_, None) => return Err(malformed(line, "the first record must be the header")),
            (Record::Header(_), Some(_)) => return Err(malformed(line, "a second header")),
            (_, Some(_)) if trace.end.is_some() => return Err(malformed(line, "a record after the end record")),
            (Record::Call(c), Some(_)) => {
                check_func(c.func)?;
                trace.calls.push(c);
            }
            (Record::Function(f), Some(h)) => {
                check_func(f.func)?;
                // One record per function and process: a second one would
                // be counted twice.
                let pid = f.pid.or(h.pid);
                if !seen.insert((f.func, pid)) {
                    let of = pid.map(|p| format!(" of pid {p}")).unwrap_or_default();
                    return Err(malformed(line, format!("a second function record for function {}{of}", f.func)));
                }
                trace.functions.push(f);
            }
            (Record::Profile(p), Some(_)) => trace.profiles.push(p),
            (Record::End(e), Some(_)) => trace.end = Some(e),
        }
    }
    if trace.header.is_none() {
        return Err(TraceError::Empty);
    }
    Ok(trace)
}

/// Writes a trace record by record. Each record is one line; nothing is
/// buffered beyond what the inner writer buffers, so wrap it in a
/// `BufWriter`.
pub struct TraceWriter<W: Write> {
    out: W,
}

impl<W: Write> TraceWriter<W> {
    /// Starts a trace by writing its header.
    pub fn new(out: W, header: &Header) -> io::Result<Self> {
        let mut w = Self { out };
        w.record(&Record::Header(header.clone()))?;
        Ok(w)
    }

    /// Writes one record.
    pub fn record(&mut self, record: &Record) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, record)?;
        self.out.write_all(b"\n")
    }

    /// Writes one call.
    pub fn call(&mut self, call: &Call) -> io::Result<()> {
        self.record(&Record::Call(call.clone()))
    }

    /// Flushes the inner writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Writes the end record, flushes, and returns the inner writer.
    pub fn finish(mut self, end: &End) -> io::Result<W> {
        self.record(&Record::End(end.clone()))?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            format: FORMAT.into(),
            version: VERSION,
            mode: Mode::Latency,
            pid: Some(7),
            binary: "/bin/x".into(),
            build_id: None,
            go_version: Some("go1.19".into()),
            start_unix_ns: 1,
            unredacted_args: Some(false),
            filter: None,
            functions: vec![TracedFunction {
                id: 0,
                symbol: "main.f".into(),
                file: Some("main.go".into()),
                line: Some(3),
                groups: vec!["storage".into()],
                phase: None,
            }],
        }
    }

    fn call() -> Call {
        Call {
            pid: None,
            func: 0,
            g: 0xc000_1000,
            goid: Some(5),
            parent_goid: Some(1),
            start_ns: 10,
            dur_ns: 2_000_000,
            error: Some(true),
            args: [("key".to_string(), ArgValue::Str("/registry/a".into())), ("ttl".into(), ArgValue::Int(0))]
                .into_iter()
                .collect(),
            truncated: false,
            stack: vec!["main.caller".into()],
        }
    }

    fn write(records: &[Record]) -> Vec<u8> {
        let mut w = TraceWriter::new(Vec::new(), &header()).unwrap();
        for r in records {
            w.record(r).unwrap();
        }
        w.finish(&End { duration_ns: 9, dropped_events: 1, sampled_out: 2 }).unwrap()
    }

    #[test]
    fn round_trips() {
        let stats = FunctionStats {
            pid: None,
            func: 0,
            calls: 1,
            errors: Some(1),
            latency_ns: Some(LatencyNs { p50: 1, p90: 2, p99: 3, max: 4, sum: 5 }),
            histogram: vec![Bucket { lo: 1, hi: 2, count: 1 }],
            sampled_fraction: Some(0.5),
            detached: None,
        };
        let bytes = write(&[Record::Call(call()), Record::Function(stats.clone())]);
        let t = read(&bytes[..]).unwrap();
        assert_eq!(t.header(), Some(&header()));
        assert_eq!(t.calls, vec![call()]);
        assert_eq!(t.functions, vec![stats]);
        assert_eq!(t.end.as_ref().unwrap().dropped_events, 1);
        assert_eq!(t.function(0).unwrap().symbol, "main.f");
    }

    #[test]
    fn a_trace_cut_short_still_reads() {
        let bytes = write(&[Record::Call(call())]);
        let cut = &bytes[..bytes.len() - 1 - bytes[..bytes.len() - 1].iter().rev().position(|&b| b == b'\n').unwrap()];
        let t = read(cut).unwrap();
        assert_eq!(t.calls.len(), 1);
        assert!(t.end.is_none());
    }

    #[test]
    fn rejects_bad_input_with_the_line_number() {
        let err = read(&b""[..]).unwrap_err();
        assert!(matches!(err, TraceError::Empty), "{err}");

        let mut bytes = write(&[]);
        bytes.splice(
            0..0,
            b"{\"type\":\"end\",\"duration_ns\":1,\"dropped_events\":0,\"sampled_out\":0}\n".iter().copied(),
        );
        assert!(read(&bytes[..]).unwrap_err().to_string().contains("line 1: "));

        let mut c = call();
        c.func = 3;
        let err = read(&write(&[Record::Call(c)])[..]).unwrap_err();
        assert!(err.to_string().starts_with("line 2: ") && err.to_string().contains("function 3"), "{err}");

        let mut bytes = write(&[]);
        bytes.extend_from_slice(b"{\"type\":\"call\", garbage\n");
        assert!(read(&bytes[..]).unwrap_err().to_string().starts_with("line 3: "));

        let mut h = header();
        h.version = 99;
        let bytes = TraceWriter::new(Vec::new(), &h)
            .unwrap()
            .finish(&End { duration_ns: 0, dropped_events: 0, sampled_out: 0 })
            .unwrap();
        assert!(matches!(read(&bytes[..]).unwrap_err(), TraceError::Format { version: 99, .. }));
    }

    /// A header from before `unredacted_args` and `filter` existed still
    /// reads, and says nothing about redaction rather than claiming it.
    #[test]
    fn an_old_header_reads_without_the_new_fields() {
        let old = br#"{"type":"header","format":"ktrace-trace","version":1,"mode":"latency","pid":7,"binary":"/bin/x","build_id":null,"go_version":null,"start_unix_ns":1,"functions":[]}"#;
        let t = read(&old[..]).unwrap();
        let h = t.header().unwrap();
        assert_eq!((h.unredacted_args, &h.filter), (None, &None));
        let mut h = header();
        h.unredacted_args = Some(true);
        h.filter = Some("key=/registry/*".into());
        let v = serde_json::to_value(Record::Header(h)).unwrap();
        assert_eq!(
            (&v["unredacted_args"], &v["filter"]),
            (&serde_json::json!(true), &serde_json::json!("key=/registry/*"))
        );
    }

    /// A function record of `samples` as the tracer writes one, from the
    /// kernel's histogram layout.
    fn stats_of(pid: Option<u32>, samples: &[u64]) -> FunctionStats {
        let mut h = crate::hist::Histogram { counts: vec![0; tracer_common::hist::BUCKETS as usize], sum: 0, max: 0 };
        for &s in samples {
            h.counts[tracer_common::hist::bucket_of(s) as usize] += 1;
            h.sum = h.sum.saturating_add(s);
            h.max = h.max.max(s);
        }
        FunctionStats {
            func: 0,
            pid,
            calls: samples.len() as u64,
            errors: Some(0),
            latency_ns: h.latency(),
            histogram: h.buckets(),
            detached: None,
            sampled_fraction: Some(1.0),
        }
    }

    #[test]
    fn function_records_of_two_processes_merge() {
        let (a, b) = ([100, 200, 300, 40_000], [5_000, 6_000, 7_000]);
        let mut one = stats_of(Some(1), &a);
        one.calls = 8; // half the calls were timed
        one.sampled_fraction = Some(0.5);
        one.errors = Some(2);
        one.detached = Some("over --max-rate".into());
        let mut two = stats_of(Some(2), &b);
        two.errors = None;
        let all: Vec<u64> = a.iter().chain(&b).copied().collect();
        let whole = stats_of(None, &all);

        let m = merge_stats(&[&one, &two]).unwrap();
        assert_eq!((m.func, m.pid, m.calls, m.errors), (0, None, 11, Some(2)));
        // Bucket by bucket, as if one process had made every call.
        assert_eq!(m.histogram, whole.histogram);
        assert_eq!(m.latency_ns, whole.latency_ns);
        let l = m.latency_ns.unwrap();
        // The median is the 4th of 7 durations, 5 µs (its bucket's top),
        // neither process's own median.
        let (_, hi) = tracer_common::hist::bucket_bounds(tracer_common::hist::bucket_of(5_000));
        assert_eq!(l.p50, hi - 1);
        assert_ne!(Some(l.p50), one.latency_ns.map(|l| l.p50));
        assert_ne!(Some(l.p50), two.latency_ns.map(|l| l.p50));
        assert_eq!((l.max, l.sum), (40_000, all.iter().sum()));
        // Weighted by calls: (0.5 × 8 + 1.0 × 3) / 11.
        assert_eq!(m.sampled_fraction, Some(7.0 / 11.0));
        assert_eq!(m.detached.as_deref(), Some("over --max-rate"));

        // Count-only records: no latency, no errors, no fraction.
        let count_only = |pid| FunctionStats {
            latency_ns: None,
            histogram: vec![],
            errors: None,
            sampled_fraction: None,
            ..stats_of(Some(pid), &[1, 2])
        };
        let m = merge_stats(&[&count_only(1), &count_only(1)]).unwrap();
        assert_eq!((m.pid, m.calls, m.errors, m.latency_ns, m.sampled_fraction), (Some(1), 4, None, None, None));
        assert!(m.histogram.is_empty());
    }

    #[test]
    fn one_record_is_its_own_total() {
        let mut one = stats_of(None, &[10, 20, 30]);
        // Not what its buckets say: a single record is taken as written.
        one.latency_ns = Some(LatencyNs { p50: 1, p90: 2, p99: 3, max: 4, sum: 5 });
        assert_eq!(merge_stats(&[&one]), Some(one.clone()));
        assert_eq!(merge_stats(&[]), None);
        let mut other = stats_of(None, &[7]);
        other.func = 1;
        let t = Trace { header: Some(header()), functions: vec![other.clone(), one.clone()], ..Default::default() };
        assert_eq!(t.function_totals().into_iter().collect::<Vec<_>>(), vec![(0, one), (1, other)]);
        assert!(t.pids().is_empty());
    }

    #[test]
    fn function_totals_merge_per_function() {
        let mut f1 = stats_of(Some(1), &[10]);
        f1.func = 1;
        let t = Trace {
            header: Some(Header { pid: None, ..header() }),
            functions: vec![stats_of(Some(1), &[10, 20]), f1.clone(), stats_of(Some(2), &[30])],
            ..Default::default()
        };
        let totals = t.function_totals();
        assert_eq!(totals.len(), 2);
        assert_eq!(totals[&0].calls, 3);
        assert_eq!(totals[&0].latency_ns.map(|l| l.max), Some(30));
        assert_eq!(totals[&1], f1);
        assert_eq!(t.pids(), vec![1, 2]);
    }

    /// Hostile buckets (off the layout, huge counts, no summary) merge
    /// without a panic or an overflow.
    #[test]
    fn hostile_records_merge_without_panicking() {
        let odd = FunctionStats {
            func: 0,
            pid: Some(1),
            calls: u64::MAX,
            errors: Some(u64::MAX),
            latency_ns: None,
            histogram: vec![
                Bucket { lo: u64::MAX, hi: 0, count: u64::MAX },
                Bucket { lo: 3, hi: 1 << 40, count: u64::MAX },
                Bucket { lo: 0, hi: 0, count: 0 },
            ],
            detached: Some("x".into()),
            sampled_fraction: Some(-3.0),
        };
        let mut big = stats_of(Some(2), &[u64::MAX - 1, 5]);
        big.latency_ns = Some(LatencyNs { p50: u64::MAX, p90: u64::MAX, p99: u64::MAX, max: u64::MAX, sum: u64::MAX });
        big.detached = Some("x".into());
        let m = merge_stats(&[&odd, &big, &odd]).unwrap();
        assert_eq!((m.calls, m.errors, m.detached.as_deref()), (u64::MAX, Some(u64::MAX), Some("x")));
        assert!(m.sampled_fraction.is_some_and(|f| (0.0..=1.0).contains(&f)), "{:?}", m.sampled_fraction);
        assert!(m.latency_ns.is_some());
        // Latency without buckets: each percentile bounded by the records'.
        let bare = |p50, max| FunctionStats {
            histogram: vec![],
            latency_ns: Some(LatencyNs { p50, p90: max, p99: max, max, sum: max }),
            ..stats_of(None, &[])
        };
        let l = merge_stats(&[&bare(5, 9), &bare(7, 8)]).unwrap().latency_ns.unwrap();
        assert_eq!((l.p50, l.p99, l.max, l.sum), (7, 9, 9, 17));
    }

    #[test]
    fn a_second_function_record_for_one_process_is_rejected() {
        let one = Record::Function(stats_of(None, &[1]));
        let err = read(&write(&[one.clone(), one])[..]).unwrap_err();
        assert!(err.to_string().starts_with("line 3: ") && err.to_string().contains("second function record"), "{err}");
        // The header names the process: a record naming it too is the same one.
        let err =
            read(&write(&[Record::Function(stats_of(None, &[1])), Record::Function(stats_of(Some(7), &[1]))])[..])
                .unwrap_err();
        assert!(err.to_string().contains("function 0 of pid 7"), "{err}");
        // One per process is the format of a trace of several.
        let t =
            read(&write(&[Record::Function(stats_of(Some(1), &[1])), Record::Function(stats_of(Some(2), &[1]))])[..])
                .unwrap();
        assert_eq!(t.functions.len(), 2);
    }

    #[test]
    fn a_call_may_name_another_process_than_the_header() {
        let mut c = call();
        c.pid = Some(8);
        let t = read(&write(&[Record::Call(c.clone()), Record::Call(call())])[..]).unwrap();
        assert_eq!(t.calls[0].pid, Some(8));
        assert_eq!((t.pid_of(&t.calls[0]), t.pid_of(&t.calls[1])), (Some(8), Some(7)));
        assert_eq!(t.goroutine_of(&t.calls[1]), Some(Goroutine { pid: Some(7), goid: 5 }));
        assert_eq!(t.parent_of(&t.calls[0]), Some(Goroutine { pid: Some(8), goid: 1 }));
        assert_eq!(t.pids(), vec![8]);
    }

    #[test]
    fn call_json_uses_the_documented_names() {
        let v = serde_json::to_value(Record::Call(call())).unwrap();
        for field in ["type", "func", "g", "goid", "parent_goid", "start_ns", "dur_ns", "error", "args", "stack"] {
            assert!(v.get(field).is_some(), "missing {field}: {v}");
        }
        assert_eq!(v["type"], "call");
        assert_eq!(v["args"]["key"], "/registry/a");
    }
}
