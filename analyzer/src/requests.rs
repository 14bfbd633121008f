//! API requests rebuilt from a trace: each request root (a call of a
//! function whose `phase` is `request`, kube-apiserver's outermost
//! handler) with every traced call made on its behalf, on whatever
//! goroutine, as one tree, and its wall time split into phases.
//!
//! **Which calls belong to a request.** A request runs on up to four
//! goroutines: the root's, the timeout filter's, the finisher's and the
//! token cache's singleflight (docs/kube-apiserver.md, section 1). Every
//! call record carries its goroutine's id and its parent's
//! (`runtime.g.parentGoid`). A call belongs to the request whose root runs
//! on the call's goroutine or on the nearest ancestor goroutine that has
//! roots, and whose window contains the call's start. Goroutine ids are
//! never reused, so the chain is unambiguous; the window decides between
//! successive requests on one HTTP/1 connection's goroutine. Goroutine ids
//! are per process: in a trace of several processes a goroutine is its
//! process and id ([`Goroutine`]), and a request never takes in another
//! process's calls.
//!
//! **The tree.** Within a request, calls nest by time: a call's parent is
//! the shortest call that contains it, whichever goroutine it ran on (the
//! timeout filter's goroutine waits for the finisher's, so the waiting call
//! contains the work). A call that outlives its parent (a goroutine left
//! running after a timeout) is cut at its parent's end, and every call is
//! cut to its request's window, so the tree nests strictly and siblings
//! never overlap.
//!
//! **Phases.** Each call's *own* time (its duration minus its children's)
//! counts toward its function's phase; a function without a phase (a
//! handler closure, a filter closure that wraps the rest of the chain)
//! passes its own time to the phase of the call around it, and the root's
//! own time is `other`. The phases of a request therefore add up to its
//! wall time exactly. In the tree, a phase span wraps each call that
//! enters a phase different from the one around it.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::{
    report::quantile,
    trace::{ArgValue, Call, Goroutine, Header, Trace, TracedFunction},
};

/// The phases of a request, in the order of the request path; `other` is
/// time inside the request but in no phase.
pub const PHASES: [&str; 6] = ["authn", "authz", "admission", "registry", "storage", "other"];
/// Index of `other` in [`PHASES`].
pub const OTHER: usize = 5;
/// The `phase` of a request root.
pub const ROOT_PHASE: &str = "request";

/// The captured argument paths holding a root's HTTP method and path.
pub const METHOD_ARG: &str = "r.Method";
/// See [`METHOD_ARG`].
pub const PATH_ARG: &str = "r.URL.Path";

/// Deepest tree kept: real requests nest a few dozen traced calls (12 per
/// goroutine at most, on four goroutines); a hostile trace could nest
/// millions, and the tree is walked recursively.
const MAX_TREE_DEPTH: usize = 128;

/// Goroutine ancestry followed at most this far (the real chain is 3 deep;
/// a hostile trace may hold a cycle).
const MAX_ANCESTRY: usize = 32;

/// The phase of a function that belongs to `groups` (presets), when no
/// finer rule applies: the first phase among its groups, with `cacher`
/// counted as storage. Handlers and functions without a group have none.
pub fn phase_from_groups(groups: &[String]) -> Option<&'static str> {
    let has = |g: &str| groups.iter().any(|x| x == g);
    if has(ROOT_PHASE) && groups.len() == 1 {
        return None;
    }
    PHASES[..OTHER].iter().copied().find(|p| has(p)).or_else(|| has("cacher").then_some("storage"))
}

/// The phase row each function of `header` is listed under: its phase, or
/// `other` for a request root and for functions whose time goes to the
/// phase around them.
pub fn rows_of(header: &Header) -> Vec<&'static str> {
    roles(header)
        .into_iter()
        .map(|r| match r {
            Role::Phase(p) => PHASES[p],
            _ => PHASES[OTHER],
        })
        .collect()
}

/// What a function is to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Root,
    Phase(usize),
    /// Its own time belongs to the phase around it.
    Transparent,
}

fn roles(header: &Header) -> Vec<Role> {
    let explicit = header.functions.iter().any(|f| f.phase.is_some());
    header
        .functions
        .iter()
        .map(|f: &TracedFunction| {
            let phase = if explicit { f.phase.as_deref() } else { phase_from_groups(&f.groups) };
            match phase {
                Some(ROOT_PHASE) => Role::Root,
                Some(p) => PHASES.iter().position(|x| *x == p).map_or(Role::Transparent, Role::Phase),
                None => Role::Transparent,
            }
        })
        .collect()
}

/// One node of a request's tree.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Node {
    /// What the node is.
    pub kind: NodeKind,
    /// Start, ns after the trace's start (cut to the parent's window).
    pub start_ns: u64,
    /// End, ns after the trace's start (cut to the parent's window).
    pub end_ns: u64,
    /// Nested nodes, by start, never overlapping one another.
    pub children: Vec<Node>,
}

/// What a [`Node`] stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "index")]
pub enum NodeKind {
    /// The request's root call (index into `trace.calls`).
    Request(usize),
    /// A phase span (index into [`PHASES`]).
    Phase(usize),
    /// A traced call (index into `trace.calls`).
    Call(usize),
}

impl Node {
    /// `end_ns − start_ns`.
    pub fn dur_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }

    /// The node and everything under it, depth first, with each node's depth.
    pub fn walk(&self) -> Vec<(usize, &Node)> {
        let mut out = Vec::new();
        let mut stack = vec![(0usize, self)];
        while let Some((d, n)) = stack.pop() {
            out.push((d, n));
            for c in n.children.iter().rev() {
                stack.push((d + 1, c));
            }
        }
        out
    }
}

/// One API request.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Request {
    /// Index of the root call in `trace.calls`.
    pub root: usize,
    /// The root's goroutine.
    pub goid: u64,
    /// The root's process, when the trace holds several (the root call's
    /// `pid`); absent in a single-process trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// HTTP method, when captured (`r.Method`).
    pub method: Option<String>,
    /// URL path, when captured (`r.URL.Path`).
    pub path: Option<String>,
    /// Kubernetes verb: `create`, `get`, `list`, … or the lowercase method
    /// for a path that names no resource.
    pub verb: String,
    /// Resource (`configmaps`, `namespaces`, `pods/status`), or the path
    /// itself for non-resource URLs (`/healthz`).
    pub resource: String,
    /// Start, ns after the trace's start.
    pub start_ns: u64,
    /// Wall time, ns.
    pub dur_ns: u64,
    /// Own time per phase, indexed like [`PHASES`]; sums to `dur_ns`.
    pub phase_ns: [u64; 6],
    /// Traced calls attributed to the request, the root excluded.
    pub calls: usize,
    /// Whether any call attributed to it returned an error.
    pub error: bool,
    /// The root node.
    pub tree: Node,
}

impl Request {
    /// `"<METHOD> <path>"`, or the root's name when neither was captured.
    pub fn title(&self) -> String {
        match (&self.method, &self.path) {
            (Some(m), Some(p)) => format!("{m} {p}"),
            (None, Some(p)) => p.clone(),
            (Some(m), None) => m.clone(),
            (None, None) => match self.pid {
                Some(pid) => format!("request on goroutine {} of pid {pid}", self.goid),
                None => format!("request on goroutine {}", self.goid),
            },
        }
    }

    /// `verb resource`, e.g. `create configmaps`.
    pub fn kind(&self) -> String {
        format!("{} {}", self.verb, self.resource)
    }
}

/// The requests of a trace.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Requests {
    /// By start time.
    pub requests: Vec<Request>,
    /// Calls of traced functions that ran on no request's goroutines or
    /// outside every request's window (background work: the watch cache,
    /// lease updates, health checks' storage reads).
    pub outside: usize,
    /// Calls cut to fit inside their parent or their request.
    pub cut: usize,
    /// The calls counted in `outside`, as indexes into `trace.calls`.
    #[serde(skip)]
    pub outside_calls: Vec<usize>,
    /// Why the split may be incomplete.
    pub notes: Vec<String>,
}

fn arg_str<'a>(c: &'a Call, name: &str) -> Option<&'a str> {
    match c.args.get(name)? {
        ArgValue::Str(s) => Some(s),
        ArgValue::Int(_) => None,
    }
}

/// Rebuilds the requests of `trace`. Empty when no function is a request
/// root; the notes say what is missing.
pub fn stitch(trace: &Trace) -> Requests {
    let mut out = Requests::default();
    let Some(header) = trace.header() else { return out };
    let roles = roles(header);
    let role = |c: &Call| roles.get(c.func as usize).copied().unwrap_or(Role::Transparent);
    if !roles.contains(&Role::Root) {
        out.outside_calls = (0..trace.calls.len()).collect();
        out.outside = trace.calls.len();
        return out;
    }
    let rotated: Vec<&str> = trace
        .function_totals()
        .values()
        .filter(|f| f.sampled_fraction.is_some_and(|x| x < 1.0) && f.calls > 0)
        .filter_map(|f| header.functions.get(f.func as usize))
        .map(|f| crate::symbol::without_package_path(&f.symbol))
        .collect();
    if !rotated.is_empty() {
        out.notes.push(format!(
            "{} functions were timed only part of the time (overhead budget; see TIMED): requests miss their untimed calls, whose time goes to the phase around them: {}",
            rotated.len(),
            rotated.join(", ")
        ));
    }
    if let Some(end) = &trace.end
        && end.sampled_out + end.dropped_events > 0
    {
        out.notes.push(format!(
            "{} call records were sampled out or dropped under load: requests miss those calls",
            end.sampled_out.saturating_add(end.dropped_events)
        ));
    }
    // Goroutine → its parent, from every record that knows both.
    let mut parent: HashMap<Goroutine, Goroutine> = HashMap::new();
    let mut no_goid = 0usize;
    for c in &trace.calls {
        match (trace.goroutine_of(c), trace.parent_of(c)) {
            (Some(g), Some(p)) if p != g => {
                parent.insert(g, p);
            }
            (None, _) => no_goid += 1,
            _ => {}
        }
    }
    if no_goid > 0 {
        out.notes.push(format!(
            "{no_goid} call records carry no goroutine id (the binary's runtime.g layout was unknown): they are in no request"
        ));
    }
    if parent.is_empty() && !trace.calls.is_empty() {
        out.notes.push(
            "no call record carries its parent goroutine (Go before 1.21, or an unknown runtime.g layout): \
             only calls on a root's own goroutine are in its request"
                .into(),
        );
    }
    // Roots per goroutine, by start.
    let mut roots: HashMap<Goroutine, Vec<(u64, u64, usize)>> = HashMap::new();
    // Without roots every call is outside; calls without a goroutine id too.
    out.outside_calls = trace.calls.iter().enumerate().filter(|(_, c)| c.goid.is_none()).map(|(i, _)| i).collect();
    let mut order: Vec<usize> = Vec::new();
    for (i, c) in trace.calls.iter().enumerate() {
        if role(c) == Role::Root
            && let Some(g) = trace.goroutine_of(c)
        {
            roots.entry(g).or_default().push((c.start_ns, c.start_ns.saturating_add(c.dur_ns), i));
            order.push(i);
        }
    }
    for list in roots.values_mut() {
        list.sort_unstable();
    }
    let find = |g: Goroutine, t: u64| -> Option<usize> {
        let list = roots.get(&g)?;
        let at = list.partition_point(|r| r.0 <= t);
        let &(s, e, i) = list.get(at.checked_sub(1)?)?;
        (s <= t && t <= e).then_some(i)
    };
    // Calls per root.
    let mut members: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, c) in trace.calls.iter().enumerate() {
        if role(c) == Role::Root {
            continue;
        }
        let Some(mut g) = trace.goroutine_of(c) else { continue };
        let mut owner = None;
        for _ in 0..MAX_ANCESTRY {
            if let Some(r) = find(g, c.start_ns) {
                owner = Some(r);
                break;
            }
            match parent.get(&g) {
                Some(&p) => g = p,
                None => break,
            }
        }
        match owner {
            Some(r) => members.entry(r).or_default().push(i),
            None => out.outside_calls.push(i),
        }
    }
    out.outside = out.outside_calls.len();
    order.sort_by_key(|&i| (trace.calls[i].start_ns, i));
    for root in order {
        let calls = members.remove(&root).unwrap_or_default();
        let (req, cut) = build(trace, root, calls, &role);
        out.cut += cut;
        out.requests.push(req);
    }
    if out.cut > 0 {
        out.notes.push(format!(
            "{} calls outlived the call or request around them and were cut at its end (a goroutine left running after a timeout)",
            out.cut
        ));
    }
    out
}

/// Nests `calls` by time (see the module doc) under a node spanning
/// `window`; returns the node and how many calls were cut.
fn nest(trace: &Trace, kind: NodeKind, window: (u64, u64), mut calls: Vec<usize>) -> (Node, usize) {
    let (ws, we) = window;
    let span = |i: usize| {
        let c = &trace.calls[i];
        (c.start_ns.max(ws), c.start_ns.saturating_add(c.dur_ns).min(we))
    };
    // Outer calls first at equal starts, so the longer one becomes the parent.
    calls.sort_by_key(|&i| {
        let (s, e) = span(i);
        (s, std::cmp::Reverse(e), i)
    });
    let mut cut = 0;
    // Stack of open nodes; a node is attached to its parent when popped.
    let mut stack: Vec<Node> = vec![Node { kind, start_ns: ws, end_ns: we, children: vec![] }];
    for i in calls {
        let c = &trace.calls[i];
        let (s, mut e) = span(i);
        let mut was_cut = s != c.start_ns || e != c.start_ns.saturating_add(c.dur_ns);
        while stack.len() > 1 && stack.last().is_some_and(|top| top.end_ns <= s) {
            close(&mut stack);
        }
        if stack.len() >= MAX_TREE_DEPTH {
            cut += 1;
            continue;
        }
        let top_end = stack.last().map_or(we, |t| t.end_ns);
        if e > top_end {
            e = top_end;
            was_cut = true;
        }
        cut += was_cut as usize;
        stack.push(Node { kind: NodeKind::Call(i), start_ns: s, end_ns: e.max(s), children: vec![] });
    }
    while stack.len() > 1 {
        close(&mut stack);
    }
    let root = stack.pop().unwrap_or(Node { kind, start_ns: ws, end_ns: we, children: vec![] });
    (root, cut)
}

/// One request's tree and phase split.
fn build(trace: &Trace, root: usize, calls: Vec<usize>, role: &dyn Fn(&Call) -> Role) -> (Request, usize) {
    let rc = &trace.calls[root];
    let (rs, re) = (rc.start_ns, rc.start_ns.saturating_add(rc.dur_ns));
    let error = calls.iter().any(|&i| trace.calls[i].error == Some(true));
    let ncalls = calls.len();
    let (mut tree, cut) = nest(trace, NodeKind::Request(root), (rs, re), calls);
    let mut phase_ns = [0u64; 6];
    let mut spans = Vec::new();
    phases(&mut tree, None, trace, role, &mut phase_ns, &mut spans);
    let method = arg_str(rc, METHOD_ARG).map(str::to_owned);
    let path = arg_str(rc, PATH_ARG).map(str::to_owned);
    let (verb, resource) = kind(method.as_deref(), path.as_deref());
    let req = Request {
        root,
        goid: rc.goid.unwrap_or(0),
        pid: rc.pid,
        method,
        path,
        verb,
        resource,
        start_ns: rs,
        dur_ns: re - rs,
        phase_ns,
        calls: ncalls,
        error,
        tree,
    };
    (req, cut)
}

fn close(stack: &mut Vec<Node>) {
    if let Some(done) = stack.pop()
        && let Some(parent) = stack.last_mut()
    {
        parent.children.push(done);
    }
}

/// One stretch of a phase: a call that entered the phase, with the own
/// time of everything under it that stayed in the phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhaseSpan {
    /// Index into [`PHASES`].
    pub phase: usize,
    /// Own time in the phase, ns.
    pub own_ns: u64,
}

/// Adds each node's own time to its phase and to the phase span it is in
/// (`around`: the enclosing span, `None` outside every phase, which counts
/// as `other`), and wraps each call that enters a new phase in a phase span
/// node with the same window.
fn phases(
    node: &mut Node,
    around: Option<usize>,
    trace: &Trace,
    role: &dyn Fn(&Call) -> Role,
    acc: &mut [u64; 6],
    spans: &mut Vec<PhaseSpan>,
) {
    let current = |spans: &[PhaseSpan], at: Option<usize>| at.and_then(|i| spans.get(i)).map(|s| s.phase);
    let mut at = around;
    if let NodeKind::Call(i) = node.kind
        && let Role::Phase(p) = role(&trace.calls[i])
        && current(spans, around) != Some(p)
    {
        spans.push(PhaseSpan { phase: p, own_ns: 0 });
        at = Some(spans.len() - 1);
    }
    let nested = node.children.iter().fold(0u64, |a, c| a.saturating_add(c.dur_ns()));
    let own = node.dur_ns().saturating_sub(nested);
    let phase = current(spans, at).unwrap_or(OTHER);
    acc[phase] = acc[phase].saturating_add(own);
    if let Some(s) = at.and_then(|i| spans.get_mut(i)) {
        s.own_ns = s.own_ns.saturating_add(own);
    }
    for child in &mut node.children {
        phases(child, at, trace, role, acc, spans);
        // A call that entered a new phase gets a phase span around it.
        if let NodeKind::Call(i) = child.kind
            && let Role::Phase(p) = role(&trace.calls[i])
            && Some(p) != current(spans, at)
        {
            let inner = std::mem::replace(
                child,
                Node { kind: NodeKind::Phase(p), start_ns: child.start_ns, end_ns: child.end_ns, children: vec![] },
            );
            child.children.push(inner);
        }
    }
}

/// Own time per phase over the whole trace, with the nested time of no
/// call counted twice: the requests' trees, and for calls outside every
/// request, one tree per goroutine (calls nest on their goroutine's stack),
/// goroutines of different processes apart.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exclusive {
    /// Own time per phase, ns, indexed like [`PHASES`].
    pub own_ns: [u64; 6],
    /// Every phase span, in no particular order.
    pub spans: Vec<PhaseSpan>,
    /// Calls that entered each phase.
    pub entries: [u64; 6],
}

/// See [`Exclusive`].
pub fn exclusive(trace: &Trace, reqs: &Requests) -> Exclusive {
    let mut out = Exclusive::default();
    let Some(header) = trace.header() else { return out };
    let roles = roles(header);
    let role = |c: &Call| roles.get(c.func as usize).copied().unwrap_or(Role::Transparent);
    let account = |tree: &Node, out: &mut Exclusive| {
        let mut tree = tree.clone();
        let mut spans = Vec::new();
        phases(&mut tree, None, trace, &role, &mut out.own_ns, &mut spans);
        for s in &spans {
            out.entries[s.phase] += 1;
        }
        out.spans.extend(spans);
    };
    for r in &reqs.requests {
        account(&r.tree, &mut out);
    }
    // Per process: goroutine ids and `runtime.g` addresses repeat across
    // processes of one binary.
    let mut by_goroutine: HashMap<(Option<u32>, bool, u64), Vec<usize>> = HashMap::new();
    for &i in &reqs.outside_calls {
        let c = &trace.calls[i];
        let pid = trace.pid_of(c);
        let key = c.goid.map_or((pid, false, c.g), |g| (pid, true, g));
        by_goroutine.entry(key).or_default().push(i);
    }
    for calls in by_goroutine.into_values() {
        let lo = calls.iter().map(|&i| trace.calls[i].start_ns).min().unwrap_or(0);
        let hi =
            calls.iter().map(|&i| trace.calls[i].start_ns.saturating_add(trace.calls[i].dur_ns)).max().unwrap_or(0);
        let (forest, _) = nest(trace, NodeKind::Phase(OTHER), (lo, hi), calls);
        // The forest's own root is a placeholder: only its calls count.
        for tree in &forest.children {
            account(tree, &mut out);
        }
    }
    out
}

/// CPU time per phase from folded CPU stacks (`root;…;leaf weight`): a
/// sample counts toward the phase of its innermost traced frame that has
/// one, or `other` when its traced frames have none; samples without a
/// traced frame are not request work and count nowhere.
pub fn cpu_by_phase(header: &Header, folded: &crate::flame::Folded) -> [u64; 6] {
    let roles = roles(header);
    let mut frames: HashMap<&str, Role> = HashMap::new();
    for (f, r) in header.functions.iter().zip(&roles) {
        let frame = f.symbol.rsplit_once(" in ").map_or(f.symbol.as_str(), |(_, fr)| fr);
        frames.insert(frame, *r);
    }
    let mut out = [0u64; 6];
    for (stack, w) in folded.iter() {
        let mut seen = false;
        let mut phase = None;
        for fr in stack.rsplit(';') {
            match frames.get(fr) {
                Some(Role::Phase(p)) => {
                    phase = Some(*p);
                    break;
                }
                Some(_) => seen = true,
                None => {}
            }
        }
        if let Some(p) = phase.or(seen.then_some(OTHER)) {
            out[p] = out[p].saturating_add(w);
        }
    }
    out
}

/// The Kubernetes verb and resource of a request, from its method and path
/// (`/api/v1/namespaces/ns/configmaps/name` → `get configmaps`).
pub fn kind(method: Option<&str>, path: Option<&str>) -> (String, String) {
    let method = method.unwrap_or("?").to_ascii_uppercase();
    let Some(path) = path else { return (method.to_ascii_lowercase(), "?".into()) };
    let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    // After /api/v1 or /apis/group/version.
    let rest = match parts.as_slice() {
        ["api", _v, rest @ ..] => rest,
        ["apis", _g, _v, rest @ ..] => rest,
        _ => return (method.to_ascii_lowercase(), path.to_string()),
    };
    // namespaces/NS/resource[/name[/sub]] or resource[/name[/sub]].
    let rest = match rest {
        ["namespaces", _ns, r, tail @ ..] => {
            let mut v = vec![*r];
            v.extend_from_slice(tail);
            v
        }
        other => other.to_vec(),
    };
    let (resource, named) = match rest.as_slice() {
        [] => return (method.to_ascii_lowercase(), path.to_string()),
        [r] => (r.to_string(), false),
        [r, _name] => (r.to_string(), true),
        [r, _name, sub, ..] => (format!("{r}/{sub}"), true),
    };
    let verb = match (method.as_str(), named) {
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (m, _) => return (m.to_ascii_lowercase(), resource),
    };
    (verb.into(), resource)
}

/// Per-phase figures over all requests.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseRow {
    /// Phase name.
    pub phase: String,
    /// Its own time over all requests, ns.
    pub wall_ns: u64,
    /// `wall_ns` over all requests' wall time.
    pub share: f64,
    /// Requests with time in the phase.
    pub requests: usize,
    /// Median of the phase's time per request, over those requests, ns.
    pub p50_ns: Option<u64>,
    /// 99th percentile, likewise.
    pub p99_ns: Option<u64>,
}

/// Per-kind figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KindRow {
    /// `verb resource`.
    pub kind: String,
    /// Requests.
    pub count: usize,
    /// Median wall time, ns.
    pub p50_ns: Option<u64>,
    /// 99th percentile wall time, ns.
    pub p99_ns: Option<u64>,
    /// Each phase's share of the kind's wall time, indexed like [`PHASES`].
    pub phase_share: [f64; 6],
}

impl Requests {
    /// One row per phase, in [`PHASES`] order.
    pub fn phase_rows(&self) -> Vec<PhaseRow> {
        let total = self.requests.iter().fold(0u64, |a, r| a.saturating_add(r.dur_ns));
        PHASES
            .iter()
            .enumerate()
            .map(|(p, name)| {
                let mut per: Vec<u64> = self.requests.iter().map(|r| r.phase_ns[p]).filter(|&t| t > 0).collect();
                per.sort_unstable();
                let wall = per.iter().fold(0u64, |a, &t| a.saturating_add(t));
                PhaseRow {
                    phase: name.to_string(),
                    wall_ns: wall,
                    share: if total > 0 { wall as f64 / total as f64 } else { 0.0 },
                    requests: per.len(),
                    p50_ns: quantile(&per, 0.5),
                    p99_ns: quantile(&per, 0.99),
                }
            })
            .collect()
    }

    /// One row per request kind, most frequent first.
    pub fn kind_rows(&self) -> Vec<KindRow> {
        let mut by: BTreeMap<String, Vec<&Request>> = BTreeMap::new();
        for r in &self.requests {
            by.entry(r.kind()).or_default().push(r);
        }
        let mut rows: Vec<KindRow> = by
            .into_iter()
            .map(|(kind, reqs)| {
                let mut durs: Vec<u64> = reqs.iter().map(|r| r.dur_ns).collect();
                durs.sort_unstable();
                let total = durs.iter().fold(0u64, |a, &d| a.saturating_add(d));
                let mut phase_share = [0.0; 6];
                for (p, share) in phase_share.iter_mut().enumerate() {
                    let t = reqs.iter().fold(0u64, |a, r| a.saturating_add(r.phase_ns[p]));
                    *share = if total > 0 { t as f64 / total as f64 } else { 0.0 };
                }
                KindRow {
                    kind,
                    count: reqs.len(),
                    p50_ns: quantile(&durs, 0.5),
                    p99_ns: quantile(&durs, 0.99),
                    phase_share,
                }
            })
            .collect();
        rows.sort_by(|a, b| b.count.cmp(&a.count).then(a.kind.cmp(&b.kind)));
        rows
    }

    /// The `n` slowest requests, slowest first.
    pub fn slowest(&self, n: usize) -> Vec<&Request> {
        let mut v: Vec<&Request> = self.requests.iter().collect();
        v.sort_by(|a, b| b.dur_ns.cmp(&a.dur_ns).then(a.start_ns.cmp(&b.start_ns)));
        v.truncate(n);
        v
    }
}

/// What a node shows: the phase or request title, or the call's function
/// with its first string argument (the etcd key) and error.
pub fn label(trace: &Trace, req: &Request, node: &Node) -> String {
    let header = trace.header();
    match node.kind {
        NodeKind::Request(_) => req.title(),
        NodeKind::Phase(p) => PHASES.get(p).copied().unwrap_or("?").to_string(),
        NodeKind::Call(i) => {
            let c = &trace.calls[i];
            let name = header.and_then(|h| h.functions.get(c.func as usize)).map_or_else(
                || format!("function {}", c.func),
                |f| crate::symbol::without_package_path(&f.symbol).to_string(),
            );
            let mut out = name;
            if let Some(key) = c.args.values().find_map(|v| match v {
                ArgValue::Str(s) if s.starts_with('/') => Some(s),
                _ => None,
            }) {
                out.push_str(&format!(" {key}"));
            }
            out
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
