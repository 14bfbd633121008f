//! ktrace's analysis layer. It owns the documents the tracer writes and later
//! tools read, so their format is defined in exactly one place: the
//! `ktrace attach --json` summary ([`summary`]), the trace file ([`trace`]),
//! and percentiles from the kernel's histograms ([`hist`]). On top of them:
//! fetching /debug/pprof profiles with kubeconfig credentials ([`fetch`]),
//! decoding and writing profile.proto ([`pprof`]), folded stacks and
//! flamegraphs ([`flame`]), a trace's latency profile ([`latency`]), and the
//! merged wall-vs-CPU report ([`report`]). Every file they are written to is
//! created private to its owner ([`files`]). Go symbol names split at one
//! place ([`symbol`]), and durations print one way ([`summary::format_ns`]).
#![deny(missing_docs)]

pub mod fetch;
pub mod files;
pub mod flame;
pub mod hist;
pub mod latency;
pub mod pprof;
pub mod report;
pub mod requests;
pub mod summary;
pub mod symbol;
pub mod timeline;
pub mod trace;
