//! `ktrace funcs`: resolve a spec and show each function's probe plan.

use std::io::Write;

use clap::Args;
use serde::Serialize;

use super::TargetArgs;
use crate::{
    error::Error,
    plan::{EntryKind, Planner, ProbePlan},
    resolve::Source,
    spec,
};

pub const EXAMPLES: &str = "\
Examples:
  ktrace funcs --pid $(pgrep kube-apiserver) --funcs 'k8s.io/apiserver/pkg/storage/etcd3.(*store).Create'
  ktrace funcs --binary ./kube-apiserver --funcs '*etcd3.(*store).*' --json";

#[derive(Debug, Args)]
pub struct FuncsArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Comma-separated Go symbols; `*` matches any run of characters
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
}

pub fn run(args: &FuncsArgs) -> Result<(), Error> {
    let (binary, functions) = args.target.open()?;
    let selected = spec::select(&spec::parse(&args.funcs)?, &functions)?;
    let planner = Planner::new(&binary, &functions);
    let plans = selected.into_iter().map(|f| planner.plan(f)).collect::<Result<Vec<_>, _>>()?;

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        let docs: Vec<FuncJson> = plans.iter().map(to_json).collect();
        serde_json::to_writer_pretty(&mut out, &docs).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        print_table(&mut out, &plans)?;
    }
    Ok(())
}

fn to_json(p: &ProbePlan) -> FuncJson<'_> {
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
    }
}

fn print_table(out: &mut impl Write, plans: &[ProbePlan]) -> std::io::Result<()> {
    writeln!(out, "{:<18} {:<12} {:>4}  {:<8} {:<60} SYMBOL", "ENTRY", "ENTRY-SITE", "RETS", "ORIGIN", "SOURCE")?;
    for p in plans {
        let site = match p.entry_kind {
            EntryKind::StackGuard { .. } => format!("+{:#x} guard", p.entry.addr - p.function.entry),
            EntryKind::FirstInstruction => "+0x0 first".to_string(),
        };
        let src = match (&p.function.file, p.function.line) {
            (Some(f), Some(l)) => format!("{f}:{l}"),
            (Some(f), None) => f.clone(),
            _ => "?".into(),
        };
        let origin =
            serde_json::to_value(p.function.source).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        writeln!(
            out,
            "{:<#18x} {:<12} {:>4}  {:<8} {:<60} {}",
            p.function.entry,
            site,
            p.rets.len(),
            origin,
            src,
            p.function.name
        )?;
    }
    Ok(())
}
