//! The one error type the CLI reports, and its process exit codes.

use std::{path::PathBuf, process::ExitCode};

use crate::plan::sites::ItemsError;

/// Why a command failed. `Display` is the one line the user sees.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: a wrong PID, a non-Go binary, a spec that matches nothing.
    #[error("{0}")]
    Input(String),
    /// The process lacks privileges or the kernel lacks a feature.
    #[error(transparent)]
    Privileges(#[from] crate::attach::privileges::Missing),
    /// The file a `--pid` process runs could not be found or trusted.
    #[error(transparent)]
    Target(#[from] crate::target::TargetError),
    /// Reading the binary failed.
    #[error(transparent)]
    Resolve(#[from] crate::resolve::ResolveError),
    /// The spec did not parse or match.
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    /// Planning probe sites failed.
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    /// Loading or attaching probes failed.
    #[error(transparent)]
    Attach(#[from] crate::attach::AttachError),
    /// Writing a file failed (a missing directory, no permission, a full
    /// disk). Not the input's fault.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `--serve-metrics` could not listen on its address (in use, not
    /// this host's, a privileged port). Like an unwritable file, the
    /// host's state rather than the input's form: exit 1.
    #[error("--serve-metrics {addr}: cannot listen: {source}")]
    Serve {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Any other I/O failure: printing to stdout, starting the runtime,
    /// installing a signal handler.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<ItemsError> for Error {
    fn from(e: ItemsError) -> Self {
        match e {
            ItemsError::Spec(e) => Error::Spec(e),
            ItemsError::Resolve(e) => Error::Resolve(e),
            ItemsError::Plan(e) => Error::Plan(e),
        }
    }
}

impl Error {
    /// The exit code for this error: 2 is clap's usage error, 3 bad input,
    /// 4 missing privileges or kernel support, 1 anything else.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Input(_)
            | Error::Resolve(_)
            | Error::Spec(_)
            | Error::Plan(crate::plan::PlanError::UnsupportedArch(_)) => ExitCode::from(3),
            Error::Privileges(_) => ExitCode::from(4),
            Error::Target(e) if e.is_access() => ExitCode::from(4),
            Error::Target(crate::target::TargetError::Io { .. }) => ExitCode::from(1),
            Error::Target(_) => ExitCode::from(3),
            Error::Plan(_) | Error::Attach(_) | Error::Write { .. } | Error::Serve { .. } | Error::Io(_) => {
                ExitCode::from(1)
            }
        }
    }
}
