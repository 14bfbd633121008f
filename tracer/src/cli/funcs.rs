//! `ktrace funcs`: resolve a spec and show each function's probe plan.

use std::io::Write;

use clap::Args;
use serde::Serialize;

use super::TargetArgs;
use crate::{
    error::Error,
    plan::{
        EntryKind, ProbePlan,
        abi::{self, Location, Slot},
        amd64,
    },
    resolve::Source,
};

pub const EXAMPLES: &str = "\
Examples:
  ktrace funcs --pid $(pgrep kube-apiserver) --funcs 'k8s.io/apiserver/pkg/storage/etcd3.(*store).Create'
  ktrace funcs --binary ./kube-apiserver --funcs '*etcd3.(*store).*' --json";

#[derive(Debug, Args)]
pub struct FuncsArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Comma-separated presets (authn, authz, admission, handlers, registry, cacher, storage, all),
    /// Go symbols with `*` globs, or Delve locations (path/file.go:Func)
    #[arg(long, value_name = "SPEC")]
    funcs: String,
    /// Print a JSON array instead of a table
    #[arg(long)]
    json: bool,
}

/// One element of `funcs --json` (the CLI contract in docs/design.md).
#[derive(Serialize)]
struct FuncJson<'a> {
    symbol: &'a str,
    /// Function entry, as a hex string.
    entry: String,
    /// Address of the entry probe, as a hex string.
    entry_site: String,
    entry_kind: EntryKind,
    entry_emulated: bool,
    /// RET sites as byte offsets from the entry.
    ret_offsets: Vec<u64>,
    file: Option<&'a str>,
    line: Option<u32>,
    source: Source,
    /// Where each argument and result lives; `null` without DWARF types.
    args: Option<Vec<Slot>>,
}

pub fn run(args: &FuncsArgs) -> Result<(), Error> {
    let (binary, plans) = args.target.plan(&args.funcs)?;
    // Types come from DWARF only; stripped release builds have none.
    let dwarf = binary.dwarf()?;
    let layouts: Vec<Option<Vec<Slot>>> = plans
        .iter()
        .map(|p| {
            let params = dwarf.as_ref()?.params(&p.function.name)?;
            let params = abi::with_implicit_receiver(&p.function.name, p.function.file.as_deref(), params);
            Some(abi::layout(&params, &amd64::REGISTERS))
        })
        .collect();

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        let docs: Vec<FuncJson> = plans.iter().zip(layouts).map(|(p, a)| to_json(p, a)).collect();
        serde_json::to_writer_pretty(&mut out, &docs).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        print_table(&mut out, &plans, &layouts)?;
    }
    Ok(())
}

fn to_json(p: &ProbePlan, args: Option<Vec<Slot>>) -> FuncJson<'_> {
    FuncJson {
        symbol: &p.function.name,
        entry: format!("{:#x}", p.function.entry),
        entry_site: format!("{:#x}", p.entry.addr),
        entry_kind: p.entry_kind,
        entry_emulated: p.entry.emulated,
        ret_offsets: p.rets.iter().map(|r| r.addr - p.function.entry).collect(),
        file: p.function.file.as_deref(),
        line: p.function.line,
        source: p.function.source,
        args,
    }
}

/// `key=RDI:RSI ttl=stack+0 ~r0=RAX:RBX`, or `-` without types.
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
            format!("{}={at}", s.name)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_table(out: &mut impl Write, plans: &[ProbePlan], args: &[Option<Vec<Slot>>]) -> std::io::Result<()> {
    writeln!(out, "{:<18} {:<12} {:>4}  {:<8} {:<60} SYMBOL  ARGS", "ENTRY", "ENTRY-SITE", "RETS", "ORIGIN", "SOURCE")?;
    for (p, a) in plans.iter().zip(args) {
        let site = match p.entry_kind {
            EntryKind::StackGuard { .. } => format!("+{:#x} guard", p.entry.addr - p.function.entry),
            EntryKind::FirstInstruction => "+0x0 first".to_string(),
        };
        let src = match (&p.function.file, p.function.line) {
            (Some(f), Some(l)) => format!("{f}:{l}"),
            (Some(f), None) => f.clone(),
            _ => "?".into(),
        };
        writeln!(
            out,
            "{:<#18x} {:<12} {:>4}  {:<8} {:<60} {}  {}",
            p.function.entry,
            site,
            p.rets.len(),
            p.function.source.as_str(),
            src,
            p.function.name,
            args_text(a)
        )?;
    }
    Ok(())
}
