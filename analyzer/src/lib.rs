//! ktrace's analysis layer. It owns the documents the tracer writes and later
//! tools read, so their format is defined in exactly one place: the
//! `ktrace attach --json` summary ([`summary`]), the trace file ([`trace`]),
//! and percentiles from the kernel's histograms ([`hist`]).
#![deny(missing_docs)]

pub mod hist;
pub mod summary;
pub mod trace;
