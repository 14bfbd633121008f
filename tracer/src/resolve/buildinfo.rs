//! `.go.buildinfo`: the Go version and main module the binary was built
//! from. Only the version matters for correctness (ktrace needs the register
//! ABI of Go ≥ 1.17); the module path is informational.
//!
//! Layout facts from Go's `debug/buildinfo` and `runtime/debug/mod.go`: a
//! 32-byte header starting with `\xff Go buildinf:`, then the pointer size
//! and a flags byte. Flag bit 2 (Go 1.18+) means the two strings follow the
//! header inline, each prefixed by a uvarint length; otherwise the header
//! holds pointers to two Go string headers `{data, len}` elsewhere in the
//! image, and flag bit 1 says whether they are big-endian. Parsing is pure:
//! the caller supplies a function that reads the image by virtual address.

use super::pclntab::Malformed;

/// The 14-byte magic that starts the build-info blob.
pub const MAGIC: &[u8; 14] = b"\xff Go buildinf:";

const TABLE: &str = ".go.buildinfo";
const HEADER: usize = 32;
const INLINE_STRINGS: u8 = 2;
const BIG_ENDIAN: u8 = 1;

/// The modinfo string is framed by these 16-byte sentinels (runtime/debug).
const MODINFO_FRAME: usize = 16;

fn bad(reason: impl Into<String>) -> Malformed {
    Malformed::new(TABLE, reason)
}

/// What the Go toolchain recorded about the build.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GoBuildInfo {
    /// Toolchain version, e.g. `go1.19.8`.
    pub go_version: String,
    /// Import path of the main package, e.g. `k8s.io/kubernetes/cmd/kube-apiserver`.
    pub main_path: Option<String>,
    /// Version of the main module, e.g. `v1.33.0` or `(devel)`.
    pub module_version: Option<String>,
    /// Every module the build lists (`mod` and `dep` lines), each with the
    /// version that was compiled in: a `=>` replacement's own version when
    /// it has one, else the required version.
    pub modules: Vec<Module>,
}

/// One module of the build list.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Module {
    /// Module path, e.g. `k8s.io/apiserver`.
    pub path: String,
    /// Version, e.g. `v0.36.3`; empty when the build recorded none (a
    /// directory replacement).
    pub version: String,
}

impl GoBuildInfo {
    /// The `1.N` release the version string names, as `N`; `None` when the
    /// string has no `go1.N` in it (custom toolchains).
    pub fn minor_version(&self) -> Option<u32> {
        let rest = &self.go_version[self.go_version.find("go1.")? + 4..];
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        rest[..digits].parse().ok()
    }
}

/// Offset of the build-info header in `data`. The Go linker aligns the blob
/// to 16 bytes, and `debug/buildinfo` searches only those positions too.
pub fn find_buildinfo(data: &[u8]) -> Option<usize> {
    data.chunks_exact(16).position(|c| c.starts_with(MAGIC)).map(|i| i * 16)
}

/// Parses the build-info blob starting at `data[0]`. `read(addr, len)`
/// returns `len` bytes of the image at virtual address `addr`, or `None` if
/// they are not in the file; only pre-1.18 binaries need it.
pub fn parse_buildinfo<'a>(
    data: &'a [u8],
    read: impl Fn(u64, u64) -> Option<&'a [u8]>,
) -> Result<GoBuildInfo, Malformed> {
    let (head, mut rest) = data.split_at_checked(HEADER).ok_or_else(|| bad("shorter than its 32-byte header"))?;
    if !head.starts_with(MAGIC) {
        return Err(bad("missing magic"));
    }
    let (&ptr_size, &flags) = head.get(14).zip(head.get(15)).ok_or_else(|| bad("shorter than its 32-byte header"))?;
    let ptr_size = usize::from(ptr_size);
    let (version, modinfo) = if flags & INLINE_STRINGS != 0 {
        (inline_string(&mut rest)?, inline_string(&mut rest)?)
    } else {
        if !matches!(ptr_size, 4 | 8) {
            return Err(bad(format!("pointer size {ptr_size} is not 4 or 8")));
        }
        let big = flags & BIG_ENDIAN != 0;
        let word = |b: &[u8], at: usize| -> Result<u64, Malformed> {
            let bytes = b.get(at..at + ptr_size).ok_or_else(|| bad("truncated pointer"))?;
            Ok(if big {
                bytes.iter().fold(0, |acc, &x| (acc << 8) | u64::from(x))
            } else {
                bytes.iter().rev().fold(0, |acc, &x| (acc << 8) | u64::from(x))
            })
        };
        let string_at = |ptr: u64| -> Result<&'a [u8], Malformed> {
            let header = read(ptr, 2 * ptr_size as u64)
                .ok_or_else(|| bad(format!("string header at {ptr:#x} is not in the file")))?;
            let (addr, len) = (word(header, 0)?, word(header, ptr_size)?);
            if len == 0 {
                return Ok(&[]);
            }
            read(addr, len).ok_or_else(|| bad(format!("string data at {addr:#x} is not in the file")))
        };
        (string_at(word(head, 16)?)?, string_at(word(head, 16 + ptr_size)?)?)
    };
    if version.is_empty() {
        return Err(bad("empty Go version"));
    }
    let (main_path, module_version, modules) = parse_modinfo(modinfo);
    Ok(GoBuildInfo { go_version: String::from_utf8_lossy(version).into_owned(), main_path, module_version, modules })
}

/// A uvarint length followed by that many bytes (Go 1.18+ inline strings).
fn inline_string<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], Malformed> {
    let mut len = 0u64;
    let mut used = None;
    for (i, &b) in rest.iter().enumerate().take(10) {
        len |= u64::from(b & 0x7f).checked_shl(7 * i as u32).unwrap_or(0);
        if b & 0x80 == 0 {
            used = Some(i + 1);
            break;
        }
    }
    let used = used.ok_or_else(|| bad("bad string length"))?;
    let body = rest.get(used..).ok_or_else(|| bad("bad string length"))?;
    let (string, after) = usize::try_from(len)
        .ok()
        .and_then(|len| body.split_at_checked(len))
        .ok_or_else(|| bad("string runs past the end"))?;
    *rest = after;
    Ok(string)
}

/// Pulls the main package path (`path\t…`), the main module version
/// (`mod\tpath\tversion\tsum`) and the build list (`mod`, `dep`, and `=>`
/// for a replacement of the line before) out of the modinfo text.
fn parse_modinfo(raw: &[u8]) -> (Option<String>, Option<String>, Vec<Module>) {
    // The sentinels frame the text only when it is long enough to hold both
    // and ends in a newline before the trailing one (runtime/debug).
    let framed = raw.len() > 2 * MODINFO_FRAME && raw.get(raw.len() - MODINFO_FRAME - 1) == Some(&b'\n');
    let text = if framed { raw.get(MODINFO_FRAME..raw.len() - MODINFO_FRAME).unwrap_or(raw) } else { raw };
    let text = String::from_utf8_lossy(text);
    let (mut path, mut version, mut modules) = (None, None, Vec::<Module>::new());
    for line in text.lines() {
        let mut fields = line.split('\t');
        let kind = fields.next();
        let (module, v) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        match kind {
            Some("path") => path = Some(module.to_owned()),
            Some("mod") => {
                version = Some(v.to_owned());
                modules.push(Module { path: module.to_owned(), version: v.to_owned() });
            }
            Some("dep") => modules.push(Module { path: module.to_owned(), version: v.to_owned() }),
            // The replacement keeps the required module's path: that is the
            // name the code was imported by.
            Some("=>") if !v.is_empty() => {
                if let Some(last) = modules.last_mut() {
                    last.version = v.to_owned();
                }
            }
            _ => {}
        }
    }
    (path, version, modules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inline_blob(version: &str, modinfo: &str) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[8, INLINE_STRINGS]);
        b.resize(HEADER, 0);
        for s in [version, modinfo] {
            let mut len = s.len();
            while len >= 0x80 {
                b.push((len as u8 & 0x7f) | 0x80);
                len >>= 7;
            }
            b.push(len as u8);
            b.extend_from_slice(s.as_bytes());
        }
        b
    }

    #[test]
    fn inline_strings_and_modinfo() {
        let frame = "0123456789abcdef";
        let modinfo = format!(
            "{frame}path\texample.com/app\nmod\texample.com/app\t(devel)\t\n\
             dep\tk8s.io/apiserver\tv0.36.3\n=>\tk8s.io/apiserver\tv0.36.4\th1:x=\n\
             dep\tk8s.io/api\tv0.0.0\n=>\t./staging/src/k8s.io/api\t\t\n\
             dep\tgo.etcd.io/etcd/client/v3\tv3.6.8\th1:y=\n{frame}"
        );
        let info = parse_buildinfo(&inline_blob("go1.19.8", &modinfo), |_, _| None).unwrap();
        assert_eq!(info.go_version, "go1.19.8");
        assert_eq!(info.minor_version(), Some(19));
        assert_eq!(info.main_path.as_deref(), Some("example.com/app"));
        assert_eq!(info.module_version.as_deref(), Some("(devel)"));
        let modules: Vec<(&str, &str)> = info.modules.iter().map(|m| (m.path.as_str(), m.version.as_str())).collect();
        assert_eq!(
            modules,
            [
                ("example.com/app", "(devel)"),
                ("k8s.io/apiserver", "v0.36.4"),
                ("k8s.io/api", "v0.0.0"),
                ("go.etcd.io/etcd/client/v3", "v3.6.8")
            ]
        );
    }

    #[test]
    fn pointer_strings_through_the_reader() {
        let mut image = MAGIC.to_vec();
        image.extend_from_slice(&[8, 0]);
        // Image at vaddr 0x1000: header, then two string headers, then bytes.
        for w in [0x1020u64, 0x1030] {
            image.extend_from_slice(&w.to_le_bytes());
        }
        for w in [0x1040u64, 8, 0x1048, 0] {
            image.extend_from_slice(&w.to_le_bytes());
        }
        image.extend_from_slice(b"go1.16.3");
        let read = |addr: u64, len: u64| {
            let start = usize::try_from(addr.checked_sub(0x1000)?).ok()?;
            image.get(start..start.checked_add(usize::try_from(len).ok()?)?)
        };
        let info = parse_buildinfo(&image, read).unwrap();
        assert_eq!(info.go_version, "go1.16.3");
        assert_eq!(info.minor_version(), Some(16));
        assert_eq!(info.main_path, None);
    }

    #[test]
    fn versions_and_search() {
        let v = |s: &str| {
            GoBuildInfo { go_version: s.into(), main_path: None, module_version: None, modules: Vec::new() }
                .minor_version()
        };
        assert_eq!(v("go1.25-20250209-RC00"), Some(25));
        assert_eq!(v("devel go1.22-abcdef"), Some(22));
        assert_eq!(v("weird"), None);
        let mut data = vec![0u8; 64];
        data[32..46].copy_from_slice(MAGIC);
        assert_eq!(find_buildinfo(&data), Some(32));
    }

    #[test]
    fn hostile_bytes_never_panic() {
        let good = inline_blob("go1.21.0", "path\tx\n");
        for cut in 0..good.len() {
            let _ = parse_buildinfo(&good[..cut], |_, _| None);
        }
        for at in 0..good.len() {
            let mut data = good.clone();
            for flip in [0x01u8, 0x02, 0x80, 0xff] {
                data[at] ^= flip;
                let _ = parse_buildinfo(&data, |_, _| Some(&good[..]));
                data[at] ^= flip;
            }
        }
    }
}
