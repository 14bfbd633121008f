//! How ktrace creates the files it writes. Traces, reports, flamegraphs and
//! profile copies describe the internals of a production server (symbols,
//! etcd keys, call patterns), so they are private to their owner: mode 0600,
//! whatever the umask, and also when an existing file is overwritten.

use std::{
    fs::{File, OpenOptions, Permissions},
    io::{self, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

/// The mode of every file ktrace writes.
pub const PRIVATE_MODE: u32 = 0o600;

/// Creates or truncates `path` for writing, readable and writable by its
/// owner only.
pub fn create_private(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new().write(true).create(true).truncate(true).mode(PRIVATE_MODE).open(path)?;
    // open(2) applies the mode only to a file it creates (and masks it with
    // the umask); an existing file keeps its own. fchmod makes it exact,
    // before anything is written.
    file.set_permissions(Permissions::from_mode(PRIVATE_MODE))?;
    Ok(file)
}

/// Writes `bytes` to `path` as a private file (see [`create_private`]).
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = create_private(path)?;
    file.write_all(bytes)?;
    file.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn new_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("new.svg");
        write_private(&p, b"<svg/>").unwrap();
        assert_eq!(mode(&p), 0o600);
        assert_eq!(std::fs::read(&p).unwrap(), b"<svg/>");
    }

    #[test]
    fn an_overwritten_file_becomes_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("old.trace");
        std::fs::write(&p, b"a longer old content").unwrap();
        std::fs::set_permissions(&p, Permissions::from_mode(0o666)).unwrap();
        write_private(&p, b"new").unwrap();
        assert_eq!(mode(&p), 0o600);
        assert_eq!(std::fs::read(&p).unwrap(), b"new", "truncated, not overwritten in place");
    }
}
