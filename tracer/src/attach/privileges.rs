//! What the kernel needs before ktrace can place a uprobe, checked up front so
//! the user gets one precise line instead of a raw EPERM from deep in aya.

use std::{fs, path::Path};

use tracer_common::caps;

/// A missing prerequisite, phrased for the user.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Missing {
    /// Neither CAP_SYS_ADMIN nor CAP_BPF + CAP_PERFMON.
    #[error("insufficient privileges: ktrace needs root, or CAP_BPF and CAP_PERFMON (missing: {0})")]
    Capabilities(&'static str),
    /// The kernel has no uprobe PMU.
    #[error("the kernel has no uprobe support (/sys/bus/event_source/devices/uprobe is missing; CONFIG_UPROBE_EVENTS)")]
    UprobePmu,
    /// The kernel exposes no BTF.
    #[error("the kernel exposes no BTF (/sys/kernel/btf/vmlinux is missing; CONFIG_DEBUG_INFO_BTF)")]
    Btf,
}

/// Checks privileges and kernel features for placing uprobes.
pub fn check() -> Result<(), Missing> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = caps::effective(&status).unwrap_or(0);
    if let Some(missing) = caps::missing(effective) {
        return Err(Missing::Capabilities(missing));
    }
    if !Path::new("/sys/bus/event_source/devices/uprobe").exists() {
        return Err(Missing::UprobePmu);
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(Missing::Btf);
    }
    Ok(())
}
