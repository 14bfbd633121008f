//! Resolve: read a target binary and list its Go functions with their entry
//! addresses and source positions. One module per symbol source (`symtab`,
//! `pclntab`); `elf` owns the file itself and address ↔ file-offset mapping,
//! `buildinfo` the Go version. Every parser here treats its input as hostile:
//! typed errors, never a panic.
//!
//! This layer may read files; it never touches a live process.
//!
//! The lints below hold the "never a panic" promise outside tests: no
//! `unwrap`/`expect`/`panic!`, and no `[]` indexing or slicing that could
//! go out of bounds (`get` and friends instead).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

mod buildinfo;
mod dwarf;
mod elf;
mod pclntab;
mod symbols;
mod symtab;

pub use buildinfo::{GoBuildInfo, Module, find_buildinfo, parse_buildinfo};
pub use dwarf::{Dwarf, Param, SparseRead, TypeId, TypeKind, TypeShape};
pub use elf::{Binary, Machine};
pub use pclntab::{InlinedCall, LineRange, Malformed, PclnVersion, Pclntab, parse_pclntab};
pub use symbols::SymbolsFile;
pub use symtab::{Symtab, parse_symtab};

use std::path::PathBuf;

/// Where a function's facts came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// DWARF debug info.
    Dwarf,
    /// Go's `.gopclntab` function table (present even in `-s -w` builds).
    Pclntab,
    /// The ELF `.symtab`.
    Symtab,
}

impl Source {
    /// The name used in output: `dwarf`, `pclntab` or `symtab`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Dwarf => "dwarf",
            Source::Pclntab => "pclntab",
            Source::Symtab => "symtab",
        }
    }
}

/// One function of the target binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    /// Fully qualified Go symbol name, e.g. `k8s.io/apiserver/pkg/storage/etcd3.(*store).Create`.
    pub name: String,
    /// Virtual address of the first instruction.
    pub entry: u64,
    /// Virtual address one past the last byte of the function.
    pub end: u64,
    /// Source file of the entry, when the source knows it. Shared: a
    /// kube-apiserver's 140,000 functions come from about 15,000 files.
    pub file: Option<std::sync::Arc<str>>,
    /// Source line of the entry, when the source knows it.
    pub line: Option<u32>,
    /// Which table this came from.
    pub source: Source,
}

/// Errors from reading a target binary.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a well-formed ELF file.
    #[error("{path}: not a valid ELF file: {reason}")]
    NotElf {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The ELF file is not a Go program (no `.gopclntab`, no Go build info).
    #[error("{path}: not a Go binary (no .gopclntab or Go build info found)")]
    NotGo {
        /// The file.
        path: PathBuf,
    },
    /// The Go binary predates the register ABI.
    #[error("{path}: built with {version}; ktrace needs Go >= 1.17 (register ABI)")]
    GoTooOld {
        /// The file.
        path: PathBuf,
        /// The Go version string from the build info.
        version: String,
    },
    /// The CPU architecture is not supported yet.
    #[error("{path}: unsupported architecture {arch} (ktrace supports x86-64)")]
    UnsupportedArch {
        /// The file.
        path: PathBuf,
        /// The ELF machine, as text.
        arch: String,
    },
    /// A table in the binary is malformed.
    #[error("{path}: corrupt {table}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Which table (e.g. `.gopclntab`, `.symtab`).
        table: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A `--symbols` file that cannot stand in for the target's tables.
    #[error("--symbols {}: {reason}", .path.display())]
    SymbolsMismatch {
        /// The symbols file.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// An address does not lie in any loadable segment of the file.
    #[error("address {addr:#x} is not in a loadable segment of the file")]
    AddressNotMapped {
        /// The virtual address.
        addr: u64,
    },
}
