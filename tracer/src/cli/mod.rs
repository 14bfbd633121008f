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
    sync::OnceLock,
};

use clap::{Args, Parser, Subcommand};

use crate::{
    error::Error,
    plan::{
        ProbePlan,
        goroutine::{self, GOffsets},
    },
    resolve::{Binary, Dwarf, Function, Param, ResolveError, SymbolsFile},
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
    /// PID of the running Go process (the file it runs is read through /proc/PID/root, so containers work);
    /// attach takes several (`--pid 1,2` or `--pid 1 --pid 2`), all running the same file
    #[arg(long, value_name = "PID", value_delimiter = ',', num_args = 1)]
    pid: Vec<u32>,
    /// Path to a Go binary (attach: every process running it, including ones started later)
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
}

impl TargetArgs {
    /// The file to read symbols from, as the user named it: for `--pid`,
    /// `/proc/PID/exe` (what [`TargetArgs::open`] reads is checked to be
    /// that file).
    fn path(&self) -> Result<PathBuf, Error> {
        match (self.pid.first().copied(), &self.binary) {
            (Some(pid), _) => Ok(PathBuf::from(format!("/proc/{pid}/exe"))),
            (None, Some(path)) => Ok(path.clone()),
            (None, None) => Err(Error::Input("give --pid or --binary".into())),
        }
    }

    /// The `--pid`s given.
    fn pids(&self) -> &[u32] {
        &self.pid
    }

    /// Opens the binary: `--binary`'s file, or the file the `--pid`
    /// process runs, reached through its own root directory and checked
    /// by inode and build ID (see [`crate::target`]), never a host path.
    fn open(&self) -> Result<Binary, Error> {
        match (self.pid.first().copied(), &self.binary) {
            (Some(pid), _) => {
                let (binary, note) = crate::target::open(pid)?;
                if let Some(note) = note {
                    eprintln!("ktrace: note: {note}");
                }
                Ok(binary)
            }
            _ => Ok(Binary::open(&self.path()?)?),
        }
    }

    /// Opens the binary, checks it is a Go program new enough to trace, and
    /// plans probe sites for every function, line and inlined copy `spec`
    /// selects; also returns every function of the binary (to symbolize
    /// stacks) and where argument types come from: the binary's own DWARF,
    /// or `symbols` (an unstripped build of the same source, checked to
    /// hold the same code for every probed function). The binary's own
    /// DWARF is not read here; see [`Planned::types`].
    fn plan_all(&self, spec: &str, symbols: Option<&Path>) -> Result<Planned, Error> {
        self.plan(spec, symbols, false)
    }

    /// [`TargetArgs::plan_all`]; with `selected_only`, [`Planned::functions`]
    /// holds only the functions the spec may select (and the runtime's
    /// `goexit1` and `morestack`), not the hundred thousand others of a
    /// kube-apiserver. The plans are the same; a spec whose items do not
    /// all select something there is planned with every function.
    fn plan(&self, spec: &str, symbols: Option<&Path>, selected_only: bool) -> Result<Planned, Error> {
        let binary = self.open()?;
        binary.check_go()?;
        let items = spec::parse(spec)?;
        let functions = match spec::name_filter(&items).filter(|_| selected_only) {
            Some(filter) => {
                let keep = |name: &str| filter(name) || crate::plan::runtime_needs(name);
                let some = binary.functions_where(Some(&keep))?;
                if items.iter().all(|i| spec::select_item(i, &some).is_ok()) { some } else { binary.functions()? }
            }
            None => binary.functions()?,
        };
        let plans = crate::plan::sites::plan_items(&binary, &functions, &items)?;
        let symbols = match symbols {
            None => None,
            Some(path) => {
                let file = SymbolsFile::open(path)?;
                let probed: Vec<&Function> = plans.iter().map(|p| &p.function).collect();
                file.verify(&binary, &probed)?;
                Some(Box::new(file))
            }
        };
        Ok(Planned { binary, functions, plans, symbols, own_dwarf: OnceLock::new(), types_for: None })
    }
}

/// A binary, its functions, the probe plans a spec selected, and where
/// their argument types come from.
struct Planned {
    binary: Binary,
    functions: Vec<Function>,
    plans: Vec<ProbePlan>,
    /// A `--symbols` file verified against the target: its DWARF gives the
    /// types, and the target's own is never read.
    symbols: Option<Box<SymbolsFile>>,
    /// The target's own DWARF (`None` inside when stripped), read on first
    /// use: a big binary's DWARF takes seconds and hundreds of MB to read,
    /// and a spec of source lines needs none of it.
    own_dwarf: OnceLock<Option<Dwarf>>,
    /// When set before the first [`Planned::types`] call, the target's
    /// DWARF is read for these functions only (see [`Binary::dwarf_for`]).
    types_for: Option<Vec<String>>,
}

impl Planned {
    /// The DWARF that describes the target's types: the `--symbols` file's,
    /// else the target's own, read at most once, on the first call.
    fn types(&self) -> Result<Option<&Dwarf>, ResolveError> {
        if let Some(file) = &self.symbols {
            return Ok(Some(file.dwarf()));
        }
        if let Some(dwarf) = self.own_dwarf.get() {
            return Ok(dwarf.as_ref());
        }
        let dwarf = match &self.types_for {
            Some(names) => self.binary.dwarf_for(&names.iter().map(String::as_str).collect::<Vec<_>>())?,
            None => self.binary.dwarf()?,
        };
        Ok(self.own_dwarf.get_or_init(|| dwarf).as_ref())
    }

    /// Parameters then results of `f`, when DWARF describes it.
    fn params(&self, f: &Function) -> Result<Option<&[Param]>, ResolveError> {
        Ok(match &self.symbols {
            // By entry: the files may name generic instantiations differently.
            Some(file) => file.params(f),
            None => self.types()?.and_then(|d| d.params(&f.name)),
        })
    }

    /// Drops the DWARF and the `--symbols` file once layouts are known, and
    /// gives the freed memory back to the system.
    fn release_types(&mut self) {
        self.own_dwarf = OnceLock::new();
        self.symbols = None;
        crate::memory::trim();
    }

    /// Where the goroutine ids are in `runtime.g`: from whichever DWARF
    /// gives the types, else from the table of Go releases checked against
    /// DWARF (a stripped target), else unknown.
    fn goroutine_offsets(&self) -> Result<Option<(GOffsets, goroutine::Source)>, ResolveError> {
        if let Some(o) = self.types()?.and_then(GOffsets::from_dwarf) {
            return Ok(Some((o, goroutine::Source::Dwarf)));
        }
        let minor = self.binary.build_info().and_then(|b| b.minor_version());
        Ok(minor.and_then(|m| GOffsets::from_table(self.binary.machine(), m)).map(|o| (o, goroutine::Source::Table)))
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
