//! `ktrace funcs`: resolve a spec and show each function's probe plan, the
//! sites of `file.go:LINE` locations, and where each function was inlined.

use std::{collections::HashMap, io::Write, path::PathBuf};

use clap::Args;
use serde::Serialize;

use super::TargetArgs;
use crate::{
    error::Error,
    plan::{
        EntryKind, PlanError, ProbePlan, Target,
        abi::{self, Location, Slot},
        arch,
        fields::{CaptureSpec, Leaf, Resolved},
        secrets, sites,
    },
    resolve::{Function, InlinedCall, Source},
    session,
};

pub const EXAMPLES: &str = "\
Examples:
  ktrace funcs --pid $(pgrep kube-apiserver) --funcs 'k8s.io/apiserver/pkg/storage/etcd3.(*store).Create'
  ktrace funcs --binary ./kube-apiserver --funcs '*etcd3.(*store).*' --json
  # exactly one method: the `*` right after `(` is the receiver's, not a wildcard
  ktrace funcs --binary /usr/bin/etcd --funcs 'go.etcd.io/etcd/etcdserver.(*EtcdServer).Put'
  # every generic instantiation, named without its [type arguments]
  ktrace funcs --binary ./kube-apiserver --funcs 'k8s.io/kubernetes/pkg/serviceaccount.(*jwtTokenAuthenticator).AuthenticateToken'
  ktrace funcs --binary ./kube-apiserver --funcs staging/src/k8s.io/apiserver/pkg/storage/etcd3/store.go:52
  # a stripped release binary, with argument layouts from an unstripped build of the same source
  ktrace funcs --binary ./kube-apiserver --symbols ./kube-apiserver.unstripped --funcs storage --json
  # where `attach --capture` would read each field path: the parameter, the pointer fields, the leaf
  ktrace funcs --binary ./kube-apiserver --funcs 'k8s.io/apiserver/pkg/server.(*APIServerHandler).ServeHTTP' \
      --capture 'r.Method,r.URL.Path'";

#[derive(Debug, Args)]
pub struct FuncsArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Comma-separated presets (authn, authz, admission, handlers, registry, cacher, storage, all),
    /// Go symbols with `*` globs, or Delve locations (path/file.go:Func, path/file.go:LINE)
    ///
    /// In a Go symbol, a `*` right after `(` is the pointer receiver's star: `pkg.(*T).M` names
    /// exactly that method. Every other `*` matches any run of characters: `pkg.(*Etcd*).Put`
    /// globs receivers starting with `Etcd`, `*etcd3.(*store).Get` globs the package. A symbol
    /// with no wildcard left compares by equality. Generic instantiations also match without
    /// their type arguments: `pkg.(*T).M` selects `pkg.(*T[go.shape.…]).M`. File paths match by
    /// whole-component suffix, with or without `staging/src/` and module versions (`@v0.36.3`).
    #[arg(long, value_name = "SPEC")]
    funcs: String,
    /// Print a JSON array instead of a table
    #[arg(long)]
    json: bool,
    /// An unstripped build of the same source as a stripped target: its DWARF gives argument
    /// layouts, after checking it holds the same code at the same addresses for every
    /// function listed (else exit 3)
    #[arg(long, value_name = "FILE")]
    symbols: Option<PathBuf>,
    /// Show where `attach --capture PATHS` reads each field path (PARAM.FIELD[.FIELD...], comma-separated)
    #[arg(long, value_name = "PATHS")]
    capture: Option<String>,
}

/// One `--capture` path of a function in `funcs --json`.
#[derive(Clone, Serialize)]
struct CaptureJson {
    path: String,
    /// Where the pointer parameter lives at entry.
    base: Location,
    /// Offset of each pointer field followed.
    hops: Vec<u64>,
    /// Offset of the leaf in the last struct.
    leaf_offset: u64,
    /// `string`, or `intN` for an integer, bool or pointer of N bits.
    leaf: String,
    /// Read as its length only (a string) or not at all (an integer).
    secret: bool,
}

impl CaptureJson {
    fn of(r: &Resolved) -> Self {
        let leaf = match r.leaf {
            Leaf::String => "string".to_string(),
            Leaf::Int(n) => format!("int{}", u32::from(n) * 8),
        };
        Self {
            path: r.text.clone(),
            base: r.base.clone(),
            hops: r.hops.clone(),
            leaf_offset: r.leaf_off,
            leaf,
            secret: r.secret,
        }
    }

    /// `r.URL.Path=RDI->+16->+56:string`.
    fn text(&self) -> String {
        let base = match &self.base {
            Location::Registers(rs) => rs.join(":"),
            Location::Stack(off) => format!("stack+{off}"),
            Location::Unknown => "?".into(),
        };
        let hops: String = self.hops.iter().map(|h| format!("->+{h}")).collect();
        let secret = if self.secret { "(secret)" } else { "" };
        format!("{}={base}{hops}->+{}:{}{secret}", self.path, self.leaf_offset, self.leaf)
    }
}

/// `entry_kind` in `funcs --json`: the plan's [`EntryKind`], with a body
/// site named after its [`Target`] (`line` with its number, or `inlined`),
/// as the JSON has always said.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum EntryKindJson {
    StackGuard { mask: u8, taken_if_any: bool },
    FirstInstruction,
    Line { line: u32 },
    Inlined,
}

impl EntryKindJson {
    fn of(p: &ProbePlan) -> Self {
        match (p.entry_kind, &p.target) {
            (EntryKind::StackGuard { mask, taken_if_any }, _) => EntryKindJson::StackGuard { mask, taken_if_any },
            (EntryKind::FirstInstruction, _) => EntryKindJson::FirstInstruction,
            (EntryKind::Body, Target::Line { line, .. }) => EntryKindJson::Line { line: *line },
            (EntryKind::Body, _) => EntryKindJson::Inlined,
        }
    }
}

/// One element of `funcs --json`, a contract scripts and tests depend on
/// (documented for users in the README).
#[derive(Serialize)]
struct FuncJson<'a> {
    /// The function; for an inlined copy, the inlined function.
    symbol: &'a str,
    /// `symbol`, `file.go:LINE in symbol`, or `callee inlined in caller`.
    label: String,
    /// Function entry (for a line or an inlined copy, its site), as a hex string.
    entry: String,
    /// Address of the entry probe, as a hex string.
    entry_site: String,
    entry_kind: EntryKindJson,
    entry_emulated: bool,
    /// RET sites as byte offsets from the entry.
    ret_offsets: Vec<u64>,
    file: Option<&'a str>,
    line: Option<u32>,
    source: Source,
    /// Where each argument and result lives; `null` without DWARF types.
    args: Option<Vec<Slot>>,
    /// Where the compiler inlined this function (its out-of-line copy does
    /// not see those calls).
    inlined: Vec<InlinedJson>,
    /// For an inlined copy (a function with no out-of-line code that the
    /// spec matched): the copy's caller and call site.
    inlined_into: Option<InlinedJson>,
    /// With `--capture`: the paths this function has, and where they are read.
    #[serde(skip_serializing_if = "Option::is_none")]
    captures: Option<Vec<CaptureJson>>,
}

#[derive(Serialize)]
struct InlinedJson {
    caller: String,
    /// First instruction of the copy, as a hex string.
    addr: String,
    call_file: Option<String>,
    call_line: Option<u32>,
}

pub fn run(args: &FuncsArgs) -> Result<(), Error> {
    if args.target.pids().len() > 1 {
        return Err(Error::Input("funcs reads one binary: give one --pid".into()));
    }
    let capture = args.capture.as_deref().map(CaptureSpec::parse).transpose().map_err(Error::Input)?;
    let planned = args.target.plan_all(&args.funcs, args.symbols.as_deref()).map_err(|e| match e {
        // Another CPU is bad input for this tool, like a non-Go binary.
        Error::Plan(e @ PlanError::UnsupportedArch(_)) => match args.target.path() {
            Ok(path) => Error::Input(format!("{}: {e}", path.display())),
            Err(other) => other,
        },
        other => other,
    })?;
    let (binary, functions, plans) = (&planned.binary, &planned.functions, &planned.plans);
    // Types come from DWARF only: the binary's, or the --symbols file's.
    let registers = arch::for_machine(binary.machine()).registers();
    // Lines and inlined copies have no arguments in ABI places, so a spec of
    // only those never reads DWARF.
    let mut layouts: Vec<Option<Vec<Slot>>> = Vec::with_capacity(plans.len());
    for p in plans {
        let params = match p.target {
            Target::Function => planned.params(&p.function)?,
            _ => None,
        };
        layouts.push(params.map(|params| {
            let params = abi::with_implicit_receiver(&p.function.name, p.function.file.as_deref(), params);
            let mut slots = abi::layout(&params, registers);
            secrets::mark(&p.function.name, &mut slots);
            slots
        }));
    }
    let captures: Vec<Option<Vec<CaptureJson>>> = match &capture {
        Some(spec) => session::resolve_fields(binary, spec, plans, &layouts, planned.types()?)?
            .iter()
            .map(|paths| Some(paths.iter().map(CaptureJson::of).collect()))
            .collect(),
        None => vec![None; plans.len()],
    };
    let calls = if plans.iter().any(|p| p.target == Target::Function) { binary.inlined_calls()? } else { Vec::new() };
    let mut by_callee: HashMap<&str, Vec<&InlinedCall>> = HashMap::new();
    for call in &calls {
        by_callee.entry(call.callee.as_str()).or_default().push(call);
    }
    let inlined: Vec<Vec<InlinedJson>> = plans
        .iter()
        .map(|p| match p.target {
            Target::Function => by_callee
                .get(p.function.name.as_str())
                .map(|cs| cs.iter().map(|c| inlined_json(c, functions)).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        })
        .collect();

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        let docs: Vec<FuncJson> = plans
            .iter()
            .zip(layouts)
            .zip(inlined)
            .zip(captures)
            .map(|(((p, a), i), c)| FuncJson { captures: c, ..to_json(p, a, i, functions) })
            .collect();
        serde_json::to_writer_pretty(&mut out, &docs).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        print_table(&mut out, plans, &layouts, &inlined, &captures)?;
    }
    Ok(())
}

fn inlined_json(call: &InlinedCall, functions: &[Function]) -> InlinedJson {
    InlinedJson {
        caller: sites::function_at(functions, call.caller)
            .map_or_else(|| format!("{:#x}", call.caller), |f| f.name.clone()),
        addr: format!("{:#x}", call.addr),
        call_file: call.call_file.clone(),
        call_line: call.call_line,
    }
}

fn to_json<'a>(
    p: &'a ProbePlan,
    args: Option<Vec<Slot>>,
    inlined: Vec<InlinedJson>,
    functions: &[Function],
) -> FuncJson<'a> {
    let mut doc = FuncJson {
        symbol: &p.function.name,
        label: p.label(),
        entry: format!("{:#x}", p.function.entry),
        entry_site: format!("{:#x}", p.entry.addr),
        entry_kind: EntryKindJson::of(p),
        entry_emulated: p.entry.emulated,
        ret_offsets: p.rets.iter().map(|r| r.addr - p.function.entry).collect(),
        file: p.function.file.as_deref(),
        line: p.function.line,
        source: p.function.source,
        args,
        inlined,
        inlined_into: None,
        captures: None,
    };
    match &p.target {
        Target::Function => {}
        Target::Line { file, line } => {
            doc.entry.clone_from(&doc.entry_site);
            doc.file = Some(file);
            doc.line = Some(*line);
        }
        Target::Inlined(call) => {
            doc.symbol = &call.callee;
            doc.entry.clone_from(&doc.entry_site);
            doc.file = call.file.as_deref();
            doc.line = None;
            doc.inlined_into = Some(inlined_json(call, functions));
        }
    }
    doc
}

/// `key=RDI:RSI ttl=stack+0 ~r0=RAX:RBX` (`token=RDI:RSI(secret)` for a
/// secret), or `-` without types.
fn args_text(args: &Option<Vec<Slot>>) -> String {
    let Some(slots) = args else { return "-".into() };
    slots
        .iter()
        .map(|s| {
            let at = match &s.location {
                Location::Registers(rs) => rs.join(":"),
                Location::Stack(off) => format!("stack+{off}"),
                Location::Unknown => "?".into(),
            };
            // `attach --args` records a secret as its length only.
            let secret = if s.secret { "(secret)" } else { "" };
            format!("{}={at}{secret}", s.name)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_table(
    out: &mut impl Write,
    plans: &[ProbePlan],
    args: &[Option<Vec<Slot>>],
    inlined: &[Vec<InlinedJson>],
    captures: &[Option<Vec<CaptureJson>>],
) -> std::io::Result<()> {
    writeln!(out, "{:<18} {:<12} {:>4}  {:<8} {:<60} SYMBOL  ARGS", "ENTRY", "ENTRY-SITE", "RETS", "ORIGIN", "SOURCE")?;
    for (((p, a), copies), caps) in plans.iter().zip(args).zip(inlined).zip(captures) {
        let offset = p.entry.addr - p.function.entry;
        let site = match p.entry_kind {
            EntryKind::StackGuard { .. } => format!("+{offset:#x} guard"),
            EntryKind::FirstInstruction => "+0x0 first".to_string(),
            EntryKind::Body => match p.target {
                Target::Inlined(_) => format!("+{offset:#x} inl"),
                _ => format!("+{offset:#x} line"),
            },
        };
        let (file, line) = match &p.target {
            Target::Function => (p.function.file.as_deref(), p.function.line),
            Target::Line { file, line } => (Some(file.as_str()), Some(*line)),
            Target::Inlined(call) => (call.call_file.as_deref(), call.call_line),
        };
        let src = match (file, line) {
            (Some(f), Some(l)) => format!("{f}:{l}"),
            (Some(f), None) => f.to_string(),
            _ => "?".into(),
        };
        let (entry, symbol) = match p.target {
            Target::Function => (p.function.entry, p.label()),
            _ => (p.entry.addr, p.label()),
        };
        writeln!(
            out,
            "{:<#18x} {:<12} {:>4}  {:<8} {:<60} {}  {}",
            entry,
            site,
            p.rets.len(),
            p.function.source.as_str(),
            src,
            symbol,
            args_text(a)
        )?;
        for c in caps.iter().flatten() {
            writeln!(out, "{:<18} capture {}", "", c.text())?;
        }
        for c in copies {
            let at = match (&c.call_file, c.call_line) {
                (Some(f), Some(l)) => format!(" ({}:{l})", f.rsplit('/').next().unwrap_or(f)),
                _ => String::new(),
            };
            writeln!(out, "{:<18} inlined into {} at {}{at}", "", c.caller, c.addr)?;
        }
    }
    Ok(())
}
