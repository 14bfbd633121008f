//! A container as far as ktrace can tell: a process in a mount namespace of
//! its own whose root directory is a small directory of copied files. Go
//! binaries are static, so the copy of the binary is the whole image.
//!
//! The root is a bind mount made in the new namespace and entered with
//! `pivot_root`, the old root then detached, as container runtimes do: the
//! host cannot reach the mount, so `/proc/PID/exe` names the file by its
//! path inside (`/opt/…/target`), which the host does not have, or holds
//! as another file. Needs root (CAP_SYS_ADMIN).

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

/// The root directory of one container, removed on drop.
pub struct Rootfs {
    dir: TempDir,
}

impl Rootfs {
    /// An empty root directory (with `/tmp`).
    pub fn new() -> Result<Rootfs> {
        let dir = tempfile::Builder::new().prefix("ktrace-rootfs-").tempdir().context("creating a rootfs")?;
        fs::create_dir(dir.path().join("tmp")).context("creating the rootfs's /tmp")?;
        Ok(Rootfs { dir })
    }

    /// Where path `inside` (absolute, as the container sees it) is on the host.
    pub fn host_path(&self, inside: &str) -> PathBuf {
        self.dir.path().join(inside.trim_start_matches('/'))
    }

    /// Copies `file` to `inside`, creating its directories; returns the copy's host path.
    pub fn install(&self, file: &Path, inside: &str) -> Result<PathBuf> {
        if !inside.starts_with('/') {
            bail!("{inside}: a path inside the container must be absolute");
        }
        let dst = self.host_path(inside);
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::copy(file, &dst).with_context(|| format!("copying {} to {}", file.display(), dst.display()))?;
        Ok(dst)
    }

    /// A command that runs `program` (a path inside) in a new mount
    /// namespace whose root is this directory. Everything else (PID and
    /// network namespaces, users) is the host's, as with `hostNetwork`.
    pub fn command(&self, program: &str) -> Result<Command> {
        let root = CString::new(self.dir.path().as_os_str().as_bytes()).context("a rootfs path with a NUL byte")?;
        let mut cmd = Command::new(program);
        // SAFETY: the closure runs in the child between fork and exec and
        // makes only system calls, on memory allocated before the fork.
        unsafe {
            cmd.pre_exec(move || enter(&root));
        }
        Ok(cmd)
    }
}

/// In the child: a mount namespace of its own, `root` bound onto itself and
/// made `/` with `pivot_root(".", ".")` (pivot_root(2): the old root ends up
/// stacked on the new one, and detaching "." removes it).
fn enter(root: &CString) -> io::Result<()> {
    let check = |ret: libc::c_long| if ret == 0 { Ok(()) } else { Err(io::Error::last_os_error()) };
    let dot = c".".as_ptr();
    // SAFETY: plain system calls with NUL-terminated strings that outlive them.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS).into())?;
        // No mount event may propagate back to the host.
        check(
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
            .into(),
        )?;
        check(
            libc::mount(root.as_ptr(), root.as_ptr(), std::ptr::null(), libc::MS_BIND | libc::MS_REC, std::ptr::null())
                .into(),
        )?;
        check(libc::chdir(root.as_ptr()).into())?;
        check(libc::syscall(libc::SYS_pivot_root, dot, dot))?;
        check(libc::umount2(dot, libc::MNT_DETACH).into())?;
        check(libc::chdir(c"/".as_ptr()).into())?;
    }
    Ok(())
}
