//! ktrace's analysis layer. It owns the documents the tracer writes and later
//! tools read, so their format is defined in exactly one place.
//!
//! Today it holds the `ktrace attach --json` summary; pprof decoding,
//! flamegraphs and the merged report (`ktrace flame`) build on it.
#![deny(missing_docs)]

pub mod summary;
