//! ktrace traces a running kube-apiserver, or any Go >= 1.17 program, with
//! eBPF uprobes, without stopping it. The layers, one module each:
//! [`spec`] → [`resolve`] → [`plan`] → [`attach`] → output (in [`cli`], and
//! [`metrics`] for Prometheus).
#![deny(missing_docs)]

pub mod aggregate;
pub mod attach;
pub mod budget;
pub mod cli;
pub mod error;
pub mod memory;
pub mod metrics;
pub mod plan;
pub mod procfs;
pub mod resolve;
pub mod session;
pub mod spec;
pub mod target;

pub use cli::run;
