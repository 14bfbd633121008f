//! Command-line front end: clap definitions per subcommand and the dispatch
//! from parsed arguments to the library layers. Errors come back as
//! [`crate::error::Error`] and become one line on stderr plus an exit code.

mod attach;
mod flame;
mod funcs;
mod live;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Args, Parser, Subcommand};

use crate::{
    error::Error,
    plan::ProbePlan,
    resolve::{Binary, Dwarf, Function, Param, SymbolsFile},
    spec,
};

/// Trace a running kube-apiserver (or any Go >= 1.17 program) without stopping it.
#[derive(Debug, Parser)]
#[command(name = "ktrace", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what a --funcs spec resolves to: entry site, RET sites, source position
    #[command(after_help = funcs::EXAMPLES)]
    Funcs(funcs::FuncsArgs),
    /// Place uprobes on a live process and report exact call counts
    #[command(after_help = attach::EXAMPLES)]
    Attach(attach::AttachArgs),
    /// Flamegraphs of /debug/pprof profiles and traces, and the merged wall-vs-CPU report
    #[command(after_help = flame::EXAMPLES)]
    Flame(flame::FlameArgs),
}

/// Which binary to read: a live process's executable, or a file.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct TargetArgs {
    /// PID of the running Go process (its /proc/PID/exe is read, so containers work)
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
    /// Path to a Go binary (attach: every process running it)
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
}

impl TargetArgs {
    /// The file to read symbols from.
    fn path(&self) -> Result<PathBuf, Error> {
        match (self.pid, &self.binary) {
            (Some(pid), _) => {
                if pid == 0 || !PathBuf::from(format!("/proc/{pid}")).exists() {
                    return Err(Error::Input(format!("no process with PID {pid}")));
                }
                Ok(PathBuf::from(format!("/proc/{pid}/exe")))
            }
            (None, Some(path)) => Ok(path.clone()),
            (None, None) => Err(Error::Input("give --pid or --binary".into())),
        }
    }

    /// Opens the binary, checks it is a Go program new enough to trace, and
    /// plans probe sites for every function, line and inlined copy `spec`
    /// selects; also returns every function of the binary (to symbolize
    /// stacks) and where argument types come from: the binary's own DWARF,
    /// or `symbols` (an unstripped build of the same source, checked to
    /// hold the same code for every probed function).
    fn plan_all(&self, spec: &str, symbols: Option<&Path>) -> Result<Planned, Error> {
        let binary = Binary::open(&self.path()?)?;
        binary.check_go()?;
        let functions = binary.functions()?;
        let plans = crate::plan::sites::plan_items(&binary, &functions, &spec::parse(spec)?)?;
        let types = match symbols {
            None => Types::Own(binary.dwarf()?),
            Some(path) => {
                let file = SymbolsFile::open(path)?;
                let probed: Vec<&Function> = plans.iter().map(|p| &p.function).collect();
                file.verify(&binary, &probed)?;
                Types::Symbols(Box::new(file))
            }
        };
        Ok(Planned { binary, functions, plans, types })
    }
}

/// Where argument and result types come from.
enum Types {
    /// The target's own DWARF, if it has any.
    Own(Option<Dwarf>),
    /// The DWARF of a `--symbols` file verified against the target.
    Symbols(Box<SymbolsFile>),
}

/// A binary, its functions, the probe plans a spec selected, and their
/// argument types.
struct Planned {
    binary: Binary,
    functions: Vec<Function>,
    plans: Vec<ProbePlan>,
    types: Types,
}

impl Planned {
    /// Parameters then results of `f`, when DWARF describes it.
    fn params(&self, f: &Function) -> Option<&[Param]> {
        match &self.types {
            Types::Own(dwarf) => dwarf.as_ref()?.params(&f.name),
            Types::Symbols(file) => file.params(f),
        }
    }

    /// The offset of `runtime.g.goid`, from whichever DWARF gives the types
    /// (a stripped target gets goroutine ids through `--symbols`).
    fn goid_offset(&self) -> Option<u64> {
        let dwarf = match &self.types {
            Types::Own(dwarf) => dwarf.as_ref()?,
            Types::Symbols(file) => file.dwarf(),
        };
        dwarf.struct_member_offset("runtime.g", "goid")
    }
}

/// Parses the command line, runs the command and returns the exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Funcs(args) => funcs::run(&args),
        Command::Attach(args) => attach::run(&args),
        Command::Flame(args) => flame::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ktrace: error: {e}");
            e.exit_code()
        }
    }
}
