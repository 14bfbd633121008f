//! Batched probes: the kernel's uprobe_multi link (`BPF_TRACE_UPROBE_MULTI`,
//! Linux 6.6 and later). One link holds any number of sites of one file,
//! each with its own cookie, and is created by one `bpf(BPF_LINK_CREATE)`.
//! Closing its file descriptor removes every one of its probes at once, with
//! one wait for the kernel's grace period instead of one per site. Like every
//! probe ktrace places, a link belongs to a file descriptor of this process,
//! so the kernel removes it however ktrace exits, `kill -9` included.
//!
//! aya 0.14 has no such link and loads a uprobe program without the expected
//! attach type the kernel requires for one, so this module loads the same
//! program a second time itself: aya-obj parses and relocates the embedded
//! object against the maps aya already created (the two programs share every
//! map), and two raw `bpf()` calls do the rest.

use std::{
    ffi::CString,
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    path::Path,
};

use aya::{Ebpf, maps::Map};
use aya_obj::generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_insn, bpf_prog_type};

/// Why a batched program or link could not be made.
#[derive(Debug, thiserror::Error)]
pub enum MultiError {
    /// The embedded object could not be parsed or relocated.
    #[error("preparing the uprobe_multi program: {0}")]
    Object(String),
    /// The kernel refused the program.
    #[error("the kernel refused the uprobe_multi program: {source}{log}")]
    Load {
        /// The error of `BPF_PROG_LOAD`.
        source: io::Error,
        /// The verifier's last lines, if it said anything.
        log: String,
    },
    /// The kernel refused the link.
    #[error("creating a uprobe_multi link on {path} ({sites} sites): {source}")]
    Link {
        /// The probed file.
        path: String,
        /// How many sites the link was to hold.
        sites: usize,
        /// The error of `BPF_LINK_CREATE`.
        source: io::Error,
    },
    /// A path with a NUL byte, or a mismatch the caller should have caught.
    #[error("{0}")]
    Input(String),
}

/// A copy of one of the object's programs, loaded for uprobe_multi links.
#[derive(Debug)]
pub struct MultiProgram {
    fd: OwnedFd,
}

/// One uprobe_multi link: all its probes live until it is dropped.
#[derive(Debug)]
pub struct MultiLink {
    fd: OwnedFd,
    sites: usize,
}

impl MultiLink {
    /// How many sites this link probes.
    pub fn sites(&self) -> usize {
        self.sites
    }
}

fn sys_bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<i64> {
    // SAFETY: `attr` is a valid, fully initialised bpf_attr for `cmd`, and
    // every pointer it holds outlives the call (the callers keep them alive).
    let ret = unsafe {
        libc::syscall(libc::SYS_bpf, cmd as libc::c_long, attr as *mut bpf_attr, size_of::<bpf_attr>() as libc::c_uint)
    };
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

fn zeroed_attr() -> bpf_attr {
    // SAFETY: bpf_attr is a plain C union of integers; all zeroes is the
    // kernel's "unset" for every field.
    unsafe { std::mem::zeroed() }
}

/// The file descriptor of one of aya's maps, whatever its kind.
fn map_fd(map: &Map) -> Option<BorrowedFd<'_>> {
    let data = match map {
        Map::Array(d)
        | Map::PerCpuArray(d)
        | Map::LruHashMap(d)
        | Map::HashMap(d)
        | Map::PerCpuHashMap(d)
        | Map::PerCpuLruHashMap(d)
        | Map::RingBuf(d)
        | Map::StackTraceMap(d)
        | Map::PerfEventArray(d)
        | Map::ProgramArray(d)
        | Map::Queue(d)
        | Map::Stack(d) => d,
        _ => return None,
    };
    Some(data.fd().as_fd())
}

impl MultiProgram {
    /// Loads program `name` of `object` for uprobe_multi links, its map
    /// references pointing at the maps of `ebpf` (loaded from the same
    /// object), so both programs count into the same counters.
    pub fn load(ebpf: &Ebpf, object: &[u8], name: &str) -> Result<Self, MultiError> {
        let insns = relocated(ebpf, object, name)?;
        let license = CString::new("GPL").map_err(|e| MultiError::Input(e.to_string()))?;
        let load = |log: Option<&mut Vec<u8>>| {
            let mut attr = zeroed_attr();
            // SAFETY: writing the BPF_PROG_LOAD member of a zeroed union.
            let a = unsafe { &mut attr.__bindgen_anon_3 };
            a.prog_type = bpf_prog_type::BPF_PROG_TYPE_KPROBE as u32;
            a.expected_attach_type = bpf_attach_type::BPF_TRACE_UPROBE_MULTI as u32;
            a.insns = insns.as_ptr() as u64;
            a.insn_cnt = insns.len() as u32;
            a.license = license.as_ptr() as u64;
            for (dst, src) in a.prog_name.iter_mut().zip(b"ktrace_multi") {
                *dst = *src as libc::c_char;
            }
            if let Some(buf) = log {
                a.log_level = 1;
                a.log_buf = buf.as_mut_ptr() as u64;
                a.log_size = buf.len() as u32;
            }
            sys_bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr)
        };
        let fd = match load(None) {
            Ok(fd) => fd,
            Err(source) => {
                // Again with the verifier's log, to say why.
                let mut buf = vec![0u8; 1 << 20];
                let _ = load(Some(&mut buf));
                let text = String::from_utf8_lossy(&buf[..buf.iter().position(|&b| b == 0).unwrap_or(0)]).into_owned();
                let tail: Vec<&str> = text.lines().rev().take(3).collect();
                let log = if tail.is_empty() {
                    String::new()
                } else {
                    format!(" (verifier: {})", tail.into_iter().rev().collect::<Vec<_>>().join(" / "))
                };
                return Err(MultiError::Load { source, log });
            }
        };
        // SAFETY: the kernel just returned this fd to us; nothing else owns it.
        Ok(Self { fd: unsafe { OwnedFd::from_raw_fd(fd as i32) } })
    }

    /// Places one probe per `(offset, cookie)` on `path`, firing for
    /// process `pid` only, or for every process running the file.
    pub fn attach(&self, path: &Path, pid: Option<u32>, sites: &[(u64, u64)]) -> Result<MultiLink, MultiError> {
        use std::os::unix::ffi::OsStrExt;
        if sites.is_empty() {
            return Err(MultiError::Input("a uprobe_multi link needs at least one site".into()));
        }
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| MultiError::Input(format!("{} has a NUL byte", path.display())))?;
        let offsets: Vec<u64> = sites.iter().map(|s| s.0).collect();
        let cookies: Vec<u64> = sites.iter().map(|s| s.1).collect();
        let mut attr = zeroed_attr();
        // SAFETY: writing the BPF_LINK_CREATE member of a zeroed union.
        let l = unsafe { &mut attr.link_create };
        l.__bindgen_anon_1.prog_fd = self.fd.as_raw_fd() as u32;
        l.attach_type = bpf_attach_type::BPF_TRACE_UPROBE_MULTI as u32;
        // SAFETY: writing the uprobe_multi member of the zeroed inner union.
        let u = unsafe { &mut l.__bindgen_anon_3.uprobe_multi };
        u.path = c_path.as_ptr() as u64;
        u.offsets = offsets.as_ptr() as u64;
        u.cookies = cookies.as_ptr() as u64;
        u.cnt = sites.len() as u32;
        u.pid = pid.unwrap_or(0);
        let fd = sys_bpf(bpf_cmd::BPF_LINK_CREATE, &mut attr).map_err(|source| MultiError::Link {
            path: path.display().to_string(),
            sites: sites.len(),
            source,
        })?;
        // SAFETY: as in `load`.
        Ok(MultiLink { fd: unsafe { OwnedFd::from_raw_fd(fd as i32) }, sites: sites.len() })
    }
}

impl AsFd for MultiLink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The instructions of program `name`, with its map references relocated
/// to the maps `ebpf` created and its calls linked.
fn relocated(ebpf: &Ebpf, object: &[u8], name: &str) -> Result<Vec<bpf_insn>, MultiError> {
    let mut obj = aya_obj::Object::parse(object).map_err(|e| MultiError::Object(e.to_string()))?;
    let maps: Vec<(String, i32, aya_obj::Map)> = obj
        .maps
        .iter()
        .map(|(map_name, def)| {
            let fd = ebpf
                .map(map_name)
                .and_then(map_fd)
                .ok_or_else(|| MultiError::Object(format!("map {map_name} is not loaded")))?;
            Ok((map_name.clone(), fd.as_raw_fd(), def.clone()))
        })
        .collect::<Result<_, MultiError>>()?;
    let text_sections = obj.functions.keys().map(|(section, _)| *section).collect();
    obj.relocate_maps(maps.iter().map(|(n, fd, def)| (n.as_str(), *fd, def)), &text_sections)
        .map_err(|e| MultiError::Object(e.to_string()))?;
    obj.relocate_calls(&text_sections).map_err(|e| MultiError::Object(e.to_string()))?;
    let program = obj.programs.get(name).ok_or_else(|| MultiError::Object(format!("no program {name}")))?;
    let function = obj
        .functions
        .get(&program.function_key())
        .ok_or_else(|| MultiError::Object(format!("no code for program {name}")))?;
    Ok(function.instructions.clone())
}
