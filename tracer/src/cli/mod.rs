//! Command-line front end: clap definitions per subcommand and the dispatch
//! from parsed arguments to the library layers. Errors come back as
//! [`crate::error::Error`] and become one line on stderr plus an exit code.

mod attach;
mod flame;
mod funcs;
mod live;

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};

use crate::{error::Error, plan::ProbePlan, resolve::Binary, spec};

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
    /// plans probe sites for every function `spec` selects.
    /// Opens the binary, checks it is a Go program new enough to trace, and
    /// plans probe sites for every function, line and inlined copy `spec`
    /// selects; also returns every function of the binary (to symbolize
    /// stacks).
    fn plan_all(&self, spec: &str) -> Result<Planned, Error> {
        let binary = Binary::open(&self.path()?)?;
        binary.check_go()?;
        let functions = binary.functions()?;
        let plans = crate::plan::sites::plan_items(&binary, &functions, &spec::parse(spec)?)?;
        Ok(Planned { binary, functions, plans })
    }
}

/// A binary, its functions, and the probe plans a spec selected.
struct Planned {
    binary: Binary,
    functions: Vec<crate::resolve::Function>,
    plans: Vec<ProbePlan>,
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
