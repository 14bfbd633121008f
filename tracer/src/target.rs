//! The file a `--pid` process runs. A process in a container runs a file of
//! its own mount namespace: the path `/proc/PID/exe` gives is the process's
//! path, and the same path on the host may not exist or may be another file
//! (another version of the same program). So ktrace never opens that path
//! on the host: it opens it below `/proc/PID/root`, the process's own root
//! directory, and keeps the file only if it is the one the process runs,
//! the same inode as `/proc/PID/exe` (uprobes belong to an inode: an
//! identical copy would never fire) with the same GNU and Go build IDs.
//! When the path no longer holds that file (deleted, or replaced by an
//! upgrade while the old process still runs), it reads `/proc/PID/exe`
//! itself, which always reaches the running file.
//!
//! Probes then go on the descriptor that was read
//! ([`Binary::probe_path`]), and [`check_runs`] makes sure, once they are
//! placed, that the process did not start another program meanwhile.
//!
//! Reads `/proc` and the target's file; never the target's memory.

use std::{
    fs::File,
    io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use crate::resolve::{Binary, ResolveError};

/// Why the file a process runs could not be found or trusted.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// No such process.
    #[error("no process with PID {0}")]
    NoProcess(u32),
    /// The process has no executable: a kernel thread, or a zombie.
    #[error("PID {0} runs no executable file (a kernel thread, or a process that has exited)")]
    NoExecutable(u32),
    /// `/proc/PID/exe` refused: the kernel's ptrace access check failed
    /// (another user's process, or one with capabilities ktrace lacks), or
    /// the file's mode does not let ktrace read it.
    #[error("cannot read /proc/{pid}/{link}: {source} ({needs})")]
    Access {
        /// The process.
        pid: u32,
        /// What was read: `exe`, or the file it reaches.
        link: &'static str,
        /// The OS error.
        source: io::Error,
        /// What would allow it.
        needs: &'static str,
    },
    /// The file read is not, or is no longer, the one the process runs.
    #[error("{0}")]
    Mismatch(String),
    /// Any other failure to read `/proc`.
    #[error("cannot read /proc/{pid}/{link}: {source}")]
    Io {
        /// The process.
        pid: u32,
        /// What was read.
        link: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The file is not a binary ktrace can read.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
}

impl TargetError {
    /// Whether this is missing privileges (exit 4) rather than bad input.
    pub fn is_access(&self) -> bool {
        matches!(self, TargetError::Access { .. })
    }
}

/// A device and inode number: what identifies a file to uprobes.
pub type FileId = (u64, u64);

/// The path the process gives its executable, in its own mount namespace,
/// and whether the kernel marked it deleted.
fn exe_path(pid: u32) -> Result<(PathBuf, bool), TargetError> {
    let link = std::fs::read_link(format!("/proc/{pid}/exe")).map_err(|e| proc_error(pid, "exe", e))?;
    let text = link.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) => (PathBuf::from(path), true),
        None => (link, false),
    })
}

/// The running file's identity.
fn exe_id(pid: u32) -> Result<FileId, TargetError> {
    let meta = std::fs::metadata(format!("/proc/{pid}/exe")).map_err(|e| proc_error(pid, "exe", e))?;
    Ok((meta.dev(), meta.ino()))
}

/// Why `/proc/PID/exe` can be refused: its link is behind the kernel's
/// ptrace read-access check (`ptrace_may_access`), which a process of
/// another user, or one whose capabilities are not a subset of ktrace's,
/// fails without CAP_SYS_PTRACE.
const PTRACE: &str = "another user's process, or one with capabilities ktrace lacks: ktrace needs CAP_SYS_PTRACE";

/// Why the file, once reached, can be refused: its mode.
const FILE_MODE: &str = "the file's mode does not let ktrace read it: ktrace needs CAP_DAC_READ_SEARCH";

fn proc_error(pid: u32, link: &'static str, source: io::Error) -> TargetError {
    match source.kind() {
        _ if !Path::new(&format!("/proc/{pid}")).exists() => TargetError::NoProcess(pid),
        io::ErrorKind::NotFound => TargetError::NoExecutable(pid),
        io::ErrorKind::PermissionDenied => TargetError::Access { pid, link, source, needs: PTRACE },
        _ => TargetError::Io { pid, link, source },
    }
}

/// The build IDs that name a binary in messages and are compared:
/// the GNU build ID (else the Go one), and the Go build ID.
fn build_ids(b: &Binary) -> (Option<String>, Option<String>) {
    (b.build_id(), b.go_build_id().map(String::from))
}

fn describe_ids(ids: &(Option<String>, Option<String>)) -> String {
    match ids {
        (Some(id), _) => format!("build ID {id}"),
        (None, _) => "no build ID".into(),
    }
}

/// Opens the file process `pid` runs, through its own root directory, and
/// checks it against `/proc/PID/exe` (see the module's doc). Returns the
/// binary and, when the path did not hold the running file, why ktrace
/// read `/proc/PID/exe` instead.
pub fn open(pid: u32) -> Result<(Binary, Option<String>), TargetError> {
    if pid == 0 || !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(TargetError::NoProcess(pid));
    }
    let (path, deleted) = exe_path(pid)?;
    let running = exe_id(pid)?;
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    // A relative "path" is not a path (an anonymous file, memfd:…): only
    // the link reaches it.
    let below_root = path.is_absolute().then(|| PathBuf::from(format!("/proc/{pid}/root{}", path.display())));
    let fallback = match below_root {
        None => Some(format!("{} is not a path in its mount namespace", path.display())),
        Some(_) if deleted => Some(format!("{} was deleted or replaced since it started", path.display())),
        Some(ref p) => match File::open(p) {
            Ok(f) => match f.metadata() {
                Ok(m) if (m.dev(), m.ino()) == running => {
                    let binary = Binary::open_file(f, p)?;
                    check_build_ids(pid, &binary, &exe)?;
                    return Ok((binary, None));
                }
                Ok(_) => Some(format!("{} is not the file it runs (replaced since it started)", p.display())),
                Err(e) => Some(format!("{}: {e}", p.display())),
            },
            Err(e) => Some(format!("{}: {e}", p.display())),
        },
    };
    // The link was read, so the access check passed: a refusal now is the
    // file's own mode.
    let file = File::open(&exe).map_err(|e| match proc_error(pid, "exe", e) {
        TargetError::Access { pid, source, .. } => TargetError::Access { pid, link: "exe", source, needs: FILE_MODE },
        other => other,
    })?;
    let meta = file.metadata().map_err(|e| proc_error(pid, "exe", e))?;
    if (meta.dev(), meta.ino()) != running {
        return Err(TargetError::Mismatch(format!(
            "PID {pid} started another program while ktrace was opening it; run ktrace again"
        )));
    }
    let why = fallback.map(|w| format!("PID {pid}: {w}; reading the running file through {}", exe.display()));
    Ok((Binary::open_file(file, &exe)?, why))
}

/// Compares the build IDs of `binary` with those of the file `exe` (the
/// process's executable link) reaches.
fn check_build_ids(pid: u32, binary: &Binary, exe: &Path) -> Result<(), TargetError> {
    let running = Binary::open(exe)?;
    let (read, runs) = (build_ids(binary), build_ids(&running));
    if read != runs {
        return Err(TargetError::Mismatch(format!(
            "PID {pid} runs a file with {} but {} has {}; run ktrace again",
            describe_ids(&runs),
            binary.path().display(),
            describe_ids(&read)
        )));
    }
    Ok(())
}

/// After the probes are placed on `binary`: fails when process `pid` now
/// runs another file (it exec'd, or exited and its PID was taken), so the
/// probes would never fire. A process that has exited passes: the session
/// reports that itself.
pub fn check_runs(pid: u32, binary: &Binary) -> Result<(), TargetError> {
    let now = match exe_id(pid) {
        Ok(id) => id,
        Err(TargetError::NoProcess(_) | TargetError::NoExecutable(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    if binary.file_id().is_none_or(|id| id == now) {
        return Ok(());
    }
    let path = exe_path(pid).map_or_else(|_| "another file".into(), |(p, _)| p.display().to_string());
    let runs = Binary::open(Path::new(&format!("/proc/{pid}/exe"))).map(|b| build_ids(&b)).unwrap_or_default();
    Err(TargetError::Mismatch(format!(
        "PID {pid} started another program while ktrace attached: it now runs {path} ({}), not {} ({}); \
         the probes are removed; run ktrace again",
        describe_ids(&runs),
        binary.path().display(),
        describe_ids(&build_ids(binary)),
    )))
}

/// A process seen by [`scan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// It runs the file.
    Runs(u32),
    /// It runs another file at the same path (the file was replaced, e.g.
    /// by an upgrade, after ktrace read it).
    Replaced(u32),
}

/// Every process that runs `file` (device and inode) now, or runs another
/// file at `path`, in PID order. Processes ktrace may not inspect, and
/// ones that exit while it looks, are left out.
pub fn scan(file: FileId, path: Option<&Path>) -> Vec<Seen> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut out: Vec<Seen> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != std::process::id())
        .filter_map(|pid| {
            let id = exe_id(pid).ok()?;
            if id == file {
                return Some(Seen::Runs(pid));
            }
            // Only a process of ktrace's own mount namespace names the same
            // file by that path: a container's /usr/local/bin is another.
            let (exe, _) = exe_path(pid).ok()?;
            (Some(exe.as_path()) == path && same_mount_namespace(pid)).then_some(Seen::Replaced(pid))
        })
        .collect();
    out.sort_by_key(|s| match s {
        Seen::Runs(p) | Seen::Replaced(p) => *p,
    });
    out
}

/// Whether process `pid` sees the same mount namespace as ktrace.
fn same_mount_namespace(pid: u32) -> bool {
    let ns = |p: &str| std::fs::metadata(format!("/proc/{p}/ns/mnt")).map(|m| (m.dev(), m.ino())).ok();
    ns(&pid.to_string()).is_some_and(|theirs| ns("self") == Some(theirs))
}

/// When process `pid` started, in clock ticks after boot (field 22 of
/// `/proc/PID/stat`): with the PID, it names one process, even after the
/// PID is reused.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: count after the last `)`.
    stat.get(stat.rfind(')')? + 1..)?.split_whitespace().nth(19)?.parse().ok()
}

/// Checks, before anything is read, that every `--pid` runs one file.
pub fn check_one_file(pids: &[u32]) -> Result<(), TargetError> {
    let Some((&first, rest)) = pids.split_first() else { return Ok(()) };
    if first == 0 || !Path::new(&format!("/proc/{first}")).exists() {
        return Err(TargetError::NoProcess(first));
    }
    let file = exe_id(first)?;
    for &pid in rest {
        if pid == 0 || !Path::new(&format!("/proc/{pid}")).exists() {
            return Err(TargetError::NoProcess(pid));
        }
        if pids.iter().filter(|&&p| p == pid).count() > 1 {
            return Err(TargetError::Mismatch(format!("PID {pid} is given twice")));
        }
        if exe_id(pid)? != file {
            let path = |p: u32| exe_path(p).map_or_else(|_| "?".into(), |(p, _)| p.display().to_string());
            return Err(TargetError::Mismatch(format!(
                "PID {pid} runs {}, not the file PID {first} runs ({}): one ktrace traces one file; run one per file",
                path(pid),
                path(first)
            )));
        }
    }
    Ok(())
}
