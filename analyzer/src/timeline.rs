//! The requests of a trace as a timeline in the Chrome Trace Event format
//! (the JSON object form: `{"traceEvents": [...]}`), which Perfetto UI and
//! chrome://tracing open.
//!
//! Each request is one row (its own `tid` in the traced process's `pid`;
//! in a trace of several processes, in its own process's), named after the
//! request; on it, complete events (`"ph": "X"`) nest exactly as the
//! request's tree does: the request (`cat: request`, with `pid` in its args
//! when the trace holds several processes), its phases (`cat: phase`) and
//! the traced calls (`cat: call`). `ts` and `dur` are microseconds after the
//! trace's start, with nanosecond decimals.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::{
    requests::{self, NodeKind, PHASES, Request, Requests},
    symbol::without_package_path,
    trace::{ArgValue, Trace},
};

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn arg_json(v: &ArgValue) -> Value {
    match v {
        ArgValue::Int(n) => json!(n),
        ArgValue::Str(s) => json!(s),
    }
}

/// The timeline of `reqs`, rebuilt from `trace` by [`requests::stitch`].
pub fn chrome_trace(trace: &Trace, reqs: &Requests) -> Value {
    let header = trace.header();
    let header_pid = header.and_then(|h| h.pid).unwrap_or(1);
    let binary = header.map(|h| h.binary.as_str()).unwrap_or("target");
    let pid_of = |req: &Request| req.pid.unwrap_or(header_pid);
    let mut pids: BTreeSet<u32> = reqs.requests.iter().map(pid_of).collect();
    if pids.is_empty() {
        pids.insert(header_pid);
    }
    let mut events: Vec<Value> = pids
        .into_iter()
        .map(|pid| {
            json!({
                "name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                "args": {"name": format!("{binary} (pid {pid})")},
            })
        })
        .collect();
    for (row, req) in reqs.requests.iter().enumerate() {
        let tid = row + 1;
        let pid = pid_of(req);
        events.push(json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": req.title()}}));
        events
            .push(json!({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "args": {"sort_index": tid}}));
        for (_, node) in req.tree.walk() {
            events.push(event(trace, req, node, pid, tid));
        }
    }
    let mut other = Map::new();
    other.insert("requests".into(), json!(reqs.requests.len()));
    other.insert("calls_outside_requests".into(), json!(reqs.outside));
    other.insert("notes".into(), json!(reqs.notes));
    json!({"traceEvents": events, "displayTimeUnit": "ms", "otherData": other})
}

fn event(trace: &Trace, req: &Request, node: &requests::Node, pid: u32, tid: usize) -> Value {
    let (name, cat, args) = match node.kind {
        NodeKind::Request(_) => {
            let phases: Map<String, Value> =
                PHASES.iter().zip(req.phase_ns).map(|(p, ns)| (format!("{p}_ns"), json!(ns))).collect();
            let mut args = json!({
                "kind": req.kind(),
                "goid": req.goid,
                "calls": req.calls,
                "error": req.error,
                "phases": phases,
            });
            if let Some(p) = req.pid {
                args["pid"] = json!(p);
            }
            (req.title(), "request", args)
        }
        NodeKind::Phase(p) => (PHASES.get(p).copied().unwrap_or("?").to_string(), "phase", json!({})),
        NodeKind::Call(i) => {
            let c = &trace.calls[i];
            let symbol = trace.function(c.func).map_or_else(|| format!("function {}", c.func), |f| f.symbol.clone());
            let mut args = Map::new();
            args.insert("symbol".into(), json!(symbol));
            if let Some(g) = c.goid {
                args.insert("goid".into(), json!(g));
            }
            if let Some(e) = c.error {
                args.insert("error".into(), json!(e));
            }
            for (k, v) in &c.args {
                args.insert(k.clone(), arg_json(v));
            }
            if node.dur_ns() != c.dur_ns {
                args.insert("dur_ns_uncut".into(), json!(c.dur_ns));
            }
            (without_package_path(&symbol).to_string(), "call", Value::Object(args))
        }
    };
    json!({
        "name": name, "cat": cat, "ph": "X", "pid": pid, "tid": tid,
        "ts": us(node.start_ns), "dur": us(node.dur_ns()), "args": args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::{
        stitch,
        tests::{create, in_process, multi_trace, trace},
    };

    #[test]
    fn one_row_per_request_with_its_spans_nested() {
        let mut calls = create(10, 1000, "/registry/configmaps/ns/a");
        calls.extend(create(20, 1500, "/registry/configmaps/ns/b"));
        let t = trace(calls);
        let doc = chrome_trace(&t, &stitch(&t));
        let events = doc["traceEvents"].as_array().unwrap();
        let x: Vec<&Value> = events.iter().filter(|e| e["ph"] == "X").collect();
        let requests: Vec<&&Value> = x.iter().filter(|e| e["cat"] == "request").collect();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0]["name"], "POST /api/v1/namespaces/ns/configmaps");
        assert_ne!(requests[0]["tid"], requests[1]["tid"]);
        for r in &requests {
            let on_row: Vec<&&Value> = x.iter().filter(|e| e["tid"] == r["tid"]).collect();
            // The request, 7 calls and 5 phase spans.
            assert_eq!(on_row.len(), 1 + 7 + 5);
            let (rs, rd) = (r["ts"].as_f64().unwrap(), r["dur"].as_f64().unwrap());
            for e in on_row {
                let (s, d) = (e["ts"].as_f64().unwrap(), e["dur"].as_f64().unwrap());
                assert!(s >= rs && s + d <= rs + rd, "{e} outside {r}");
            }
        }
        let storage = x.iter().find(|e| e["cat"] == "call" && e["name"] == "etcd3.(*store).Create").unwrap();
        assert_eq!(storage["args"]["key"], "/registry/configmaps/ns/a");
        // µs with ns decimals: the create at 1000 ns starts at 1.0 µs.
        assert_eq!(requests[0]["ts"], 1.0);
        assert_eq!(requests[0]["args"]["phases"]["storage_ns"], 20);
        // One process: the header's, and no pid in the args.
        assert!(x.iter().all(|e| e["pid"] == 1 && e["args"].get("pid").is_none()));
        let names: Vec<&Value> = events.iter().filter(|e| e["name"] == "process_name").collect();
        assert_eq!(names.len(), 1);
        assert_eq!(names[0]["args"]["name"], "kube-apiserver (pid 1)");
    }

    #[test]
    fn each_process_has_its_rows() {
        let mut calls = in_process(41, create(10, 1000, "/registry/configmaps/ns/a"));
        calls.extend(in_process(42, create(10, 1030, "/registry/configmaps/ns/b")));
        let t = multi_trace(calls);
        let doc = chrome_trace(&t, &stitch(&t));
        let events = doc["traceEvents"].as_array().unwrap();
        let names: Vec<(&Value, &Value)> =
            events.iter().filter(|e| e["name"] == "process_name").map(|e| (&e["pid"], &e["args"]["name"])).collect();
        assert_eq!(
            names,
            [(&json!(41), &json!("kube-apiserver (pid 41)")), (&json!(42), &json!("kube-apiserver (pid 42)"))]
        );
        let requests: Vec<&Value> = events.iter().filter(|e| e["cat"] == "request").collect();
        assert_eq!(requests.len(), 2);
        for (r, pid) in requests.iter().zip([41, 42]) {
            assert_eq!((&r["pid"], &r["args"]["pid"], &r["args"]["calls"]), (&json!(pid), &json!(pid), &json!(7)));
            // Every span of its row is in its process.
            assert!(events.iter().filter(|e| e["ph"] == "X" && e["tid"] == r["tid"]).all(|e| e["pid"] == pid));
        }
    }
}
