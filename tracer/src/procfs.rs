//! What ktrace reads from `/proc`: the memory mappings of a process. One
//! parser for `/proc/PID/maps`, used both to find the load bias of a traced
//! executable and to find ktrace's own code for the cost calibration.
//!
//! The file comes from the kernel, but a malformed line is skipped rather
//! than trusted: nothing here panics.

use std::{io, path::Path};

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First address of the mapping.
    pub start: u64,
    /// One past its last address.
    pub end: u64,
    /// File offset mapped at `start`.
    pub offset: u64,
    /// The mapped file, `[heap]`-style names, or empty for anonymous memory.
    pub path: String,
}

impl Mapping {
    /// The file offset of `addr` when this mapping holds it.
    pub fn file_offset(&self, addr: u64) -> Option<u64> {
        (self.start..self.end).contains(&addr).then(|| addr - self.start + self.offset)
    }

    /// The address at which file offset `offset` is mapped, when this
    /// mapping covers it.
    pub fn address_of(&self, offset: u64) -> Option<u64> {
        let within = offset.checked_sub(self.offset).filter(|d| *d < self.end.saturating_sub(self.start))?;
        self.start.checked_add(within)
    }

    /// Whether the mapped file is `path`.
    pub fn is_file(&self, path: &Path) -> bool {
        Path::new(&self.path) == path
    }
}

/// Parses one line: `start-end perms offset dev inode [path]`. The path may
/// hold spaces; the kernel pads before it.
pub fn parse_line(line: &str) -> Option<Mapping> {
    let mut fields = line.splitn(6, ' ');
    let (start, end) = fields.next()?.split_once('-')?;
    let _perms = fields.next()?;
    let offset = fields.next()?;
    let _dev = fields.next()?;
    let _inode = fields.next()?;
    let path = fields.next().unwrap_or("").trim_start().to_string();
    let hex = |s: &str| u64::from_str_radix(s, 16).ok();
    let (start, end, offset) = (hex(start)?, hex(end)?, hex(offset)?);
    (start <= end).then_some(Mapping { start, end, offset, path })
}

/// Parses a whole maps file, skipping lines that do not parse.
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines().filter_map(parse_line).collect()
}

/// The mappings of process `pid`.
pub fn maps(pid: u32) -> io::Result<Vec<Mapping>> {
    Ok(parse_maps(&std::fs::read_to_string(format!("/proc/{pid}/maps"))?))
}

/// The mappings of this process.
pub fn self_maps() -> io::Result<Vec<Mapping>> {
    Ok(parse_maps(&std::fs::read_to_string("/proc/self/maps")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
00400000-00c3c000 r-xp 00000000 fe:01 1835 /usr/local/bin/kube apiserver
00c3c000-0178e000 r--p 0083c000 fe:01 1835 /usr/local/bin/kube apiserver
c000000000-c000400000 rw-p 00000000 00:00 0 
7ffd1b1e4000-7ffd1b205000 rw-p 00000000 00:00 0                          [stack]
not a mapping
";

    #[test]
    fn parses_paths_with_spaces_and_anonymous_memory() {
        let maps = parse_maps(MAPS);
        assert_eq!(maps.len(), 4, "{maps:?}");
        assert_eq!(
            maps[1],
            Mapping { start: 0xc3c000, end: 0x178e000, offset: 0x83c000, path: "/usr/local/bin/kube apiserver".into() }
        );
        assert_eq!(maps[2].path, "");
        assert_eq!(maps[3].path, "[stack]");
        assert!(maps[0].is_file(Path::new("/usr/local/bin/kube apiserver")));
    }

    #[test]
    fn offsets_and_addresses() {
        let m = &parse_maps(MAPS)[1];
        assert_eq!(m.file_offset(0xc3c010), Some(0x83c010));
        assert_eq!(m.file_offset(0x178e000), None, "end is exclusive");
        assert_eq!(m.address_of(0x83c010), Some(0xc3c010));
        assert_eq!(m.address_of(0x83bfff), None);
        assert_eq!(m.address_of(0x83c000 + (0x178e000 - 0xc3c000)), None);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        for bad in ["", "zz-10 r-xp 0 0:0 0", "10-20 r-xp", "20-10 r-xp 0 00:00 0 x", "10-20 r-xp 0g 00:00 0 x"] {
            assert_eq!(parse_line(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn this_process_maps_its_own_code() {
        let here = this_process_maps_its_own_code as *const () as u64;
        let maps = self_maps().unwrap();
        assert!(maps.iter().any(|m| m.file_offset(here).is_some()));
    }
}
