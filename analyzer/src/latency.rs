//! The latency profile of a trace: where traced calls spent wall time,
//! along their stacks. A call's folded stack is its callers (root first)
//! plus its own symbol, weighted by its *self* wall time: its duration minus
//! that of traced calls nested in it on the same goroutine (of the same
//! process, in a trace of several). So a frame's width in the flamegraph is
//! its total wall time, not counted twice when authn, a handler and the
//! etcd3 store are all traced.
//!
//! Traces without stacks still nest: a call's stack is then taken to be
//! that of the traced call enclosing it.

use std::collections::{BTreeMap, HashMap};

use crate::{
    flame::Folded,
    pprof::{build::ProfileBuilder, sanitize},
    trace::Trace,
};

/// Per folded stack: (calls ending at this stack, self wall ns).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LatencyStacks {
    /// `root;…;traced` → (calls, self ns).
    pub stacks: BTreeMap<String, (u64, u64)>,
}

impl LatencyStacks {
    /// Folds every call of `trace`.
    pub fn of(trace: &Trace) -> LatencyStacks {
        let n = trace.calls.len();
        let mut parent: Vec<Option<usize>> = vec![None; n];
        let mut self_ns: Vec<u64> = trace.calls.iter().map(|c| c.dur_ns).collect();

        // Nesting per goroutine: sort by start, longest first on ties, and
        // keep a stack of the calls still open. A goroutine is its process
        // and `runtime.g` address: processes of one binary reuse addresses.
        let mut by_g: HashMap<(Option<u32>, u64), Vec<usize>> = HashMap::new();
        for (i, c) in trace.calls.iter().enumerate() {
            by_g.entry((trace.pid_of(c), c.g)).or_default().push(i);
        }
        let end = |i: usize| trace.calls[i].start_ns.saturating_add(trace.calls[i].dur_ns);
        let mut order = Vec::with_capacity(n);
        for (_, mut idx) in by_g {
            idx.sort_by_key(|&i| (trace.calls[i].start_ns, u64::MAX - trace.calls[i].dur_ns, i));
            let mut open: Vec<usize> = Vec::new();
            for &i in &idx {
                while open.last().is_some_and(|&top| end(top) <= trace.calls[i].start_ns || end(top) < end(i)) {
                    open.pop();
                }
                if let Some(&top) = open.last() {
                    parent[i] = Some(top);
                    self_ns[top] = self_ns[top].saturating_sub(trace.calls[i].dur_ns);
                }
                open.push(i);
            }
            order.extend(idx);
        }

        // Parents come before their children in `order`.
        let mut path: Vec<String> = vec![String::new(); n];
        let mut out = LatencyStacks::default();
        for i in order {
            let c = &trace.calls[i];
            let symbol =
                trace.function(c.func).map(|f| sanitize(&f.symbol)).unwrap_or_else(|| format!("func#{}", c.func));
            let mut p = if !c.stack.is_empty() {
                c.stack.iter().rev().map(|f| sanitize(f)).collect::<Vec<_>>().join(";")
            } else {
                parent[i].map(|p| path[p].clone()).unwrap_or_default()
            };
            if !p.is_empty() {
                p.push(';');
            }
            p.push_str(&symbol);
            let e = out.stacks.entry(p.clone()).or_default();
            e.0 += 1;
            e.1 = e.1.saturating_add(self_ns[i]);
            path[i] = p;
        }
        out
    }

    /// The stacks weighted by self wall ns, for a flamegraph.
    pub fn folded(&self) -> Folded {
        let mut f = Folded::default();
        for (s, &(_, ns)) in &self.stacks {
            f.add(s, ns);
        }
        f
    }

    /// A profile.proto (gzipped) with two sample types, `calls`/count and
    /// `wall`/nanoseconds (the default), that `go tool pprof` reads: `-top`
    /// lists functions by self wall time (flat) and total (cum).
    pub fn to_pprof(&self, trace: &Trace) -> Vec<u8> {
        let mut b = ProfileBuilder::new(&[("calls", "count"), ("wall", "nanoseconds")]);
        b.default_sample_type("wall");
        b.period(("wall", "nanoseconds"), 1);
        if let Some(h) = &trace.header {
            let dur =
                trace.end.as_ref().map(|e| e.duration_ns).unwrap_or_else(|| {
                    trace.calls.iter().map(|c| c.start_ns.saturating_add(c.dur_ns)).max().unwrap_or(0)
                });
            b.window(i64::try_from(h.start_unix_ns).unwrap_or(0), i64::try_from(dur).unwrap_or(i64::MAX));
        }
        for (stack, &(calls, ns)) in &self.stacks {
            let frames: Vec<&str> = stack.rsplit(';').collect();
            b.sample(&frames, &[calls as i64, i64::try_from(ns).unwrap_or(i64::MAX)]);
        }
        b.encode_gzip()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Call, FORMAT, Header, Mode, TracedFunction, VERSION};

    pub(crate) fn call(func: u32, g: u64, start_ns: u64, dur_ns: u64, stack: &[&str]) -> Call {
        Call {
            pid: None,
            func,
            g,
            goid: None,
            parent_goid: None,
            start_ns,
            dur_ns,
            error: None,
            args: Default::default(),
            truncated: false,
            stack: stack.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn trace(calls: Vec<Call>) -> Trace {
        let f =
            |id, s: &str| TracedFunction { id, symbol: s.into(), file: None, line: None, groups: vec![], phase: None };
        Trace {
            header: Some(Header {
                format: FORMAT.into(),
                version: VERSION,
                mode: Mode::Latency,
                pid: None,
                binary: "x".into(),
                build_id: None,
                go_version: None,
                start_unix_ns: 1,
                unredacted_args: Some(false),
                filter: None,
                functions: vec![f(0, "h"), f(1, "s")],
            }),
            calls,
            ..Default::default()
        }
    }

    #[test]
    fn nested_calls_count_once() {
        // h runs 0..100 on g1 and calls s twice (10..30, 40..50); s on g2 is separate.
        let t = trace(vec![
            call(0, 1, 0, 100, &["main"]),
            call(1, 1, 10, 20, &["mid", "h", "main"]),
            call(1, 1, 40, 10, &[]),
            call(1, 2, 0, 7, &["other"]),
        ]);
        let l = LatencyStacks::of(&t);
        let got: Vec<(&str, (u64, u64))> = l.stacks.iter().map(|(s, v)| (s.as_str(), *v)).collect();
        assert_eq!(
            got,
            vec![("main;h", (1, 70)), ("main;h;mid;s", (1, 20)), ("main;h;s", (1, 10)), ("other;s", (1, 7))]
        );
        assert_eq!(l.folded().total(), 107);
        let p = crate::pprof::Profile::decode(&l.to_pprof(&t)).unwrap();
        assert_eq!(p.kind(), "latency");
        assert_eq!(p.fold(p.sample_index(None).unwrap()).unwrap(), l.folded());
    }

    /// Processes of one binary put goroutines at the same addresses: a call
    /// of one never nests in a call of the other.
    #[test]
    fn calls_of_two_processes_on_one_g_address_do_not_nest() {
        let mut t = trace(vec![
            Call { pid: Some(1), ..call(0, 0xc000_1000, 0, 100, &[]) },
            Call { pid: Some(2), ..call(1, 0xc000_1000, 10, 20, &[]) },
            Call { pid: Some(2), ..call(1, 0xc000_1000, 40, 10, &[]) },
        ]);
        let got = |t: &Trace| LatencyStacks::of(t).stacks.into_iter().collect::<Vec<_>>();
        assert_eq!(got(&t), vec![("h".to_string(), (1, 100)), ("s".to_string(), (2, 30))]);
        // The same calls in one process nest as before.
        for c in &mut t.calls {
            c.pid = None;
        }
        assert_eq!(got(&t), vec![("h".to_string(), (1, 70)), ("h;s".to_string(), (2, 30))]);
    }
}
