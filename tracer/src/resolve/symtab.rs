//! The ELF `.symtab`: present in default Go builds, gone after `-s`. The Go
//! linker gives text symbols `STT_FUNC` with their sizes, so this table
//! alone yields entries and extents (but no source positions). It also
//! holds `runtime.text`, the base Go 1.18+ pclntab entries are relative to.
//!
//! Reads only the bytes it is given, through `object`'s bounds-checked ELF
//! reader.

use object::{
    LittleEndian as LE, elf,
    read::elf::{FileHeader, Sym},
};

use super::{Function, Source, pclntab::Malformed};

const TABLE: &str = ".symtab";
/// A test on a symbol's name, for [`parse_symtab_where`].
pub type KeepName<'a> = &'a dyn Fn(&[u8]) -> bool;

/// Symbols read between calls of the `release` callback.
const RELEASE_EVERY: usize = 16384;

/// What `.symtab` says about the program's functions.
#[derive(Clone, Debug, Default)]
pub struct Symtab {
    /// Every sized, defined `STT_FUNC` symbol, sorted by entry.
    pub functions: Vec<Function>,
    /// Address of `runtime.text`, the start of Go text.
    pub runtime_text: Option<u64>,
    /// Address of `go:func.*` (`go.func.*` before Go 1.20), the base of
    /// Go 1.18+ funcdata offsets. A data symbol, not a function.
    pub gofunc: Option<u64>,
}

/// Reads `.symtab` from a whole little-endian ELF64 file. `Ok(None)` when the
/// file has no `.symtab` (stripped, or section headers removed).
pub fn parse_symtab(file: &[u8]) -> Result<Option<Symtab>, Malformed> {
    Ok(parse_symtab_where(file, None, || {})?.map(|(s, _)| s))
}

/// [`parse_symtab`], keeping only the functions whose name `keep` accepts
/// (all when `None`), with the sorted entries of all of them. `release`
/// is called every [`RELEASE_EVERY`] symbols, for the caller to let the
/// kernel drop the table pages read so far.
pub fn parse_symtab_where(
    file: &[u8],
    keep: Option<KeepName<'_>>,
    mut release: impl FnMut(),
) -> Result<Option<(Symtab, Vec<u64>)>, Malformed> {
    let bad = |e: object::read::Error| Malformed::new(TABLE, e.to_string());
    let header = elf::FileHeader64::<LE>::parse(file).map_err(bad)?;
    let sections = header.sections(LE, file).map_err(bad)?;
    let symbols = sections.symbols(LE, file, elf::SHT_SYMTAB).map_err(bad)?;
    if symbols.is_empty() {
        return Ok(None);
    }
    let mut out = Symtab::default();
    // Sized exactly: grown by doubling, the table of a kube-apiserver's
    // 140,000 functions would reserve room for 262,144.
    let is_code =
        |sym: &elf::Sym64<LE>| !sym.is_undefined(LE) && sym.st_type() == elf::STT_FUNC && sym.st_size(LE) != 0;
    let code = symbols.iter().filter(|s| is_code(s)).count();
    let mut entries = Vec::with_capacity(code);
    if keep.is_none() {
        out.functions.reserve_exact(code);
    }
    for (i, sym) in symbols.iter().enumerate() {
        if i % RELEASE_EVERY == RELEASE_EVERY - 1 {
            release();
        }
        if sym.is_undefined(LE) {
            continue;
        }
        if sym.st_type() != elf::STT_FUNC {
            if sym.st_type() == elf::STT_OBJECT {
                let name = symbols.symbol_name(LE, sym).map_err(bad)?;
                if name == b"go:func.*" || name == b"go.func.*" {
                    out.gofunc = Some(sym.st_value(LE));
                }
            }
            continue;
        }
        let name = symbols.symbol_name(LE, sym).map_err(bad)?;
        let (entry, size) = (sym.st_value(LE), sym.st_size(LE));
        if name == b"runtime.text" {
            out.runtime_text = Some(entry);
        }
        // Zero-sized symbols are markers (runtime.text, runtime.etext), not code.
        if size == 0 {
            continue;
        }
        let end = entry.checked_add(size).ok_or_else(|| Malformed::new(TABLE, "symbol extent overflows"))?;
        entries.push(entry);
        if keep.is_some_and(|keep| !keep(name)) {
            continue;
        }
        out.functions.push(Function {
            name: String::from_utf8_lossy(name).into_owned(),
            entry,
            end,
            file: None,
            line: None,
            source: Source::Symtab,
        });
    }
    out.functions.sort_by(|a, b| a.entry.cmp(&b.entry).then_with(|| a.name.cmp(&b.name)));
    entries.sort_unstable();
    Ok(Some((out, entries)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_elf_is_malformed_not_a_panic() {
        assert!(parse_symtab(b"hello").is_err());
        assert!(parse_symtab(&[]).is_err());
    }

    #[test]
    fn hostile_copies_of_a_real_elf_never_panic() {
        let Ok(exe) = std::fs::read("/proc/self/exe") else { return };
        for cut in (0..exe.len()).step_by(exe.len() / 97 + 1) {
            let _ = parse_symtab(&exe[..cut]);
        }
        // Flip bytes in the ELF header and the section header table, where
        // symtab parsing takes its offsets from.
        let shoff = u64::from_le_bytes(exe[0x28..0x30].try_into().unwrap()) as usize;
        let mut copy = exe.clone();
        for at in (0..64).chain((shoff..exe.len()).step_by(13).take(150)) {
            copy[at] ^= 0xff;
            let _ = parse_symtab(&copy);
            copy[at] ^= 0xff;
        }
    }
}
