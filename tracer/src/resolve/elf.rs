//! The target binary as a file. It is mapped once, its ELF headers are
//! checked and the Go tables located at open; listing functions merges
//! `.symtab` and `.gopclntab` on demand. Addresses map to file offsets
//! through the `PT_LOAD` segments, which survive every kind of stripping,
//! so section headers are optional throughout.
//!
//! Reads the file only; the mapping is private and read-only.

use std::{
    fs::File,
    ops::{Deref, Range},
    path::{Path, PathBuf},
    sync::Arc,
};

use memmap2::Mmap;
use object::{
    Endianness, FileKind, elf,
    read::elf::{FileHeader, ProgramHeader, SectionHeader},
};

use super::{
    Function, ResolveError, Source,
    buildinfo::{self, GoBuildInfo},
    dwarf::Dwarf,
    pclntab::{self, InlinedCall, LineRange, PclnVersion, Pclntab},
    symtab::{self, Symtab},
};

/// An opened target binary.
pub struct Binary {
    path: PathBuf,
    /// Shared with the [`Dwarf`] read from it, which decompresses some
    /// sections only when asked.
    data: Arc<Bytes>,
    segments: Vec<Segment>,
    sections: Vec<Section>,
    /// File range from the `.gopclntab` header to the end of its section (or
    /// of its segment, when it was found by scanning).
    pclntab: Option<Range<usize>>,
    build_info: Option<GoBuildInfo>,
    build_id: Option<String>,
    go_build_id: Option<String>,
    machine: Machine,
    /// The opened file, kept open so that probes go on exactly the file
    /// that was read (see [`Binary::probe_path`]); `None` for bytes.
    file: Option<File>,
}

/// The CPU a binary is built for, from its ELF header. Reading symbols is
/// CPU-neutral; planning probe sites is not (see `plan::arch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    /// x86-64 (`EM_X86_64`).
    X86_64,
    /// 64-bit Arm (`EM_AARCH64`).
    Aarch64,
}

impl Machine {
    /// The name used in messages: `x86-64`, `aarch64`.
    pub fn as_str(self) -> &'static str {
        match self {
            Machine::X86_64 => "x86-64",
            Machine::Aarch64 => "aarch64",
        }
    }

    /// The instruction size unit Go's linker writes into `.gopclntab`
    /// (`pcquantum`): pc deltas are multiples of it.
    pub fn pc_quantum(self) -> u8 {
        match self {
            Machine::X86_64 => 1,
            Machine::Aarch64 => 4,
        }
    }
}

/// The file's bytes, mapped or (fuzzing) owned.
pub(super) enum Bytes {
    Mapped(Mmap),
    Owned(Box<[u8]>),
}

impl Bytes {
    /// Lets the kernel drop the mapped pages of `len` bytes at `offset`
    /// (and of the rest of their first and last pages), as
    /// [`Binary::release_pages`] does for the whole file: for the
    /// compressed DWARF sections once decompressed. Nothing for owned
    /// bytes.
    pub(super) fn release(&self, offset: usize, len: usize) {
        if let Bytes::Mapped(m) = self {
            // SAFETY: the mapping is private and read-only, so dropping its
            // pages loses nothing: a later read faults them back in from
            // the file. Advice only: an error (a range outside the map)
            // changes nothing that matters.
            let _ = unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len) };
        }
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(b) => b,
        }
    }
}

/// A `PT_LOAD` segment.
#[derive(Clone, Copy, Debug)]
struct Segment {
    vaddr: u64,
    offset: u64,
    filesz: u64,
    flags: u32,
}

impl Segment {
    /// File range of `len` bytes at `vaddr`, if they all lie in this
    /// segment's file image (not its zero-filled tail).
    fn file_range(&self, vaddr: u64, len: u64) -> Option<Range<usize>> {
        let rel = vaddr.checked_sub(self.vaddr)?;
        if rel.checked_add(len)? > self.filesz {
            return None;
        }
        let start = usize::try_from(self.offset.checked_add(rel)?).ok()?;
        Some(start..start.checked_add(usize::try_from(len).ok()?)?)
    }

    fn file_span(&self) -> Option<Range<usize>> {
        self.file_range(self.vaddr, self.filesz)
    }

    fn executable(&self) -> bool {
        self.flags & elf::PF_X != 0
    }

    fn writable(&self) -> bool {
        self.flags & elf::PF_W != 0
    }
}

#[derive(Clone, Debug)]
struct Section {
    name: String,
    addr: u64,
    /// `None` for `SHT_NOBITS`.
    file: Option<Range<usize>>,
}

/// Which CPUs ktrace reads symbols for. Whether it can plan probes for them
/// is `plan::arch`'s decision, so an arm64 binary resolves and then gets a
/// clear "unsupported" from the planner.
fn check_machine(machine: u16) -> Result<Machine, String> {
    match machine {
        elf::EM_X86_64 => Ok(Machine::X86_64),
        elf::EM_AARCH64 => Ok(Machine::Aarch64),
        elf::EM_386 => Err("i386".into()),
        other => Err(format!("ELF machine {other}")),
    }
}

impl Binary {
    /// Maps and checks the file at `path`.
    pub fn open(path: &Path) -> Result<Binary, ResolveError> {
        let file = File::open(path).map_err(|source| ResolveError::Io { path: path.to_path_buf(), source })?;
        Self::open_file(file, path)
    }

    /// Maps and checks `file`, already opened (and perhaps checked) by the
    /// caller; `path` names it in errors and in [`Binary::path`].
    pub fn open_file(file: File, path: &Path) -> Result<Binary, ResolveError> {
        let io = |source| ResolveError::Io { path: path.to_path_buf(), source };
        if file.metadata().map_err(io)?.len() == 0 {
            return Err(ResolveError::NotElf { path: path.to_path_buf(), reason: "empty file".into() });
        }
        // SAFETY: the map is read-only and private. Another process could
        // still truncate or rewrite the file under us; the kernel refuses
        // writes to a running executable (ETXTBSY), which is the target
        // ktrace cares about, and every read below is bounds-checked
        // against the length taken at map time.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let mut binary = Self::build(path.to_path_buf(), Bytes::Mapped(map))?;
        binary.file = Some(file);
        Ok(binary)
    }

    /// Checks an in-memory copy of a binary; `path` is only used in errors.
    /// This is the entry point for fuzzing.
    pub fn from_bytes(path: impl Into<PathBuf>, data: impl Into<Box<[u8]>>) -> Result<Binary, ResolveError> {
        Self::build(path.into(), Bytes::Owned(data.into()))
    }

    fn build(path: PathBuf, data: Bytes) -> Result<Binary, ResolveError> {
        let not_elf = |reason: String| ResolveError::NotElf { path: path.clone(), reason };
        let (segments, sections, (build_id, go_build_id), machine) = parse_headers(&data).map_err(|e| match e {
            HeaderError::NotElf(reason) => not_elf(reason),
            HeaderError::Arch(arch) => ResolveError::UnsupportedArch { path: path.clone(), arch },
        })?;
        for (i, s) in segments.iter().enumerate() {
            if s.filesz > 0 && s.file_span().is_none_or(|r| r.end > data.len()) {
                return Err(not_elf(format!("truncated: PT_LOAD segment {i} extends past the end of the file")));
            }
        }
        let mut binary = Binary {
            path,
            data: Arc::new(data),
            segments,
            sections,
            pclntab: None,
            build_info: None,
            build_id,
            go_build_id,
            machine,
            file: None,
        };
        binary.pclntab = binary.locate_pclntab()?;
        binary.build_info = binary.locate_build_info();
        Ok(binary)
    }

    /// The CPU the binary is built for.
    pub fn machine(&self) -> Machine {
        self.machine
    }

    /// Lets the kernel drop the pages of the file read so far: after
    /// planning a session reads almost none of it, and a kube-apiserver's
    /// tables would otherwise stay resident (about 100 MB). The mapping
    /// stays valid; a later read faults its pages back in from the file.
    pub fn release_pages(&self) {
        if let Bytes::Mapped(m) = &*self.data {
            // SAFETY: the mapping is private and read-only, so dropping its
            // pages loses nothing: they are read back from the file.
            // Advice only: an error changes nothing that matters.
            let _ = unsafe { m.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        }
    }

    /// The file this was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path to give the kernel to place probes on this very file: the
    /// descriptor ktrace holds (`/proc/self/fd/N`), whatever has since been
    /// renamed, replaced or unmounted at [`Binary::path`]. Uprobes belong
    /// to an inode, and this is the inode whose bytes were read.
    pub fn probe_path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        match &self.file {
            Some(f) => PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd())),
            None => self.path.clone(),
        }
    }

    /// The opened file's device and inode numbers, to compare with a
    /// process's executable; `None` for bytes.
    pub fn file_id(&self) -> Option<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let meta = self.file.as_ref()?.metadata().ok()?;
        Some((meta.dev(), meta.ino()))
    }

    /// Go's build info, when the binary carries it (Go ≥ 1.13).
    pub fn build_info(&self) -> Option<&GoBuildInfo> {
        self.build_info.as_ref()
    }

    /// The GNU build-id note as hex, else the Go build ID string.
    pub fn build_id(&self) -> Option<String> {
        self.build_id.clone()
    }

    /// The Go build ID (`.note.go.buildid`): `link action/main package
    /// action/main package content/link content`. The middle two identify
    /// the compiled code, so builds that differ only in link flags such as
    /// `-s -w` share them.
    pub fn go_build_id(&self) -> Option<&str> {
        self.go_build_id.as_deref()
    }

    /// Fails unless this is a Go program new enough for the register ABI.
    /// Without build info the pclntab format bounds the version: the Go 1.2
    /// layout was last written by Go 1.15, and the 1.16 layout also covers
    /// 1.17, so only the former is known to be too old.
    pub fn check_go(&self) -> Result<(), ResolveError> {
        let too_old = |version: String| Err(ResolveError::GoTooOld { path: self.path.clone(), version });
        if let Some(info) = &self.build_info {
            return match info.minor_version() {
                Some(minor) if minor < 17 => too_old(info.go_version.clone()),
                _ => Ok(()),
            };
        }
        match self.pclntab_header(None) {
            None => Err(ResolveError::NotGo { path: self.path.clone() }),
            Some(Ok(t)) if t.version() == PclnVersion::Go12 => {
                too_old("go1.2–go1.15 (by its .gopclntab format)".into())
            }
            Some(_) => Ok(()),
        }
    }

    /// Every Go function, sorted by entry. Entries, extents and names come
    /// from `.symtab` when it exists, file and line from `.gopclntab`;
    /// functions only the pclntab knows are added with [`Source::Pclntab`].
    /// Without a pclntab this is not a Go program: [`ResolveError::NotGo`].
    ///
    /// The two tables name a few functions differently: `.symtab` keeps
    /// generic type arguments (`main.Sum[go.shape.int_0]`) where pclntab
    /// elides them (`main.Sum[...]`), and marks assembly functions that also
    /// have a register-ABI wrapper with `.abi0`.
    pub fn functions(&self) -> Result<Vec<Function>, ResolveError> {
        self.functions_where(None)
    }

    /// [`Binary::functions`] keeping only those whose name `keep` accepts
    /// (all when `None`): the same functions with the same files and lines,
    /// without holding the others' names at any point.
    pub fn functions_where(&self, keep: Option<&dyn Fn(&str) -> bool>) -> Result<Vec<Function>, ResolveError> {
        let symtab = match self.sections.is_empty() {
            true => None,
            false => {
                let keep_bytes = keep.map(|k| move |name: &[u8]| k(&String::from_utf8_lossy(name)));
                let keep_bytes = keep_bytes.as_ref().map(|k| k as symtab::KeepName<'_>);
                symtab::parse_symtab_where(&self.data, keep_bytes, || self.release_pages())
                    .map_err(|e| e.at(&self.path))?
            }
        };
        // Each table's pages go once it is read: on a kube-apiserver they
        // are tens of MB, and nothing reads them again while planning.
        self.release_pages();
        if self.pclntab.is_none() {
            return Err(ResolveError::NotGo { path: self.path.clone() });
        }
        let kept = |f: &Function| keep.is_none_or(|k| k(&f.name));
        let Some((symtab, entries)) = symtab else {
            let mut out = Vec::new();
            if let Some(table) = self.pclntab_table(None) {
                let each = |f: Function| {
                    if kept(&f) {
                        out.push(f);
                    }
                };
                table?.each_function(|_| false, || self.release_pages(), each).map_err(|e| e.at(&self.path))?;
            }
            self.release_pages();
            return Ok(out);
        };
        let Some(table) = self.pclntab_table(Some(&symtab)) else { return Ok(symtab.functions) };
        let table = table?;
        // The pclntab's functions are merged into the symtab's as they are
        // read, never held as a second table: the first at an entry the
        // symtab has gives those symbols its file and line; the others are
        // kept apart and added.
        let mut out = symtab.functions;
        let mut extra: Vec<Function> = Vec::new();
        let mut last: Option<u64> = None;
        let merge = |p: Function| {
            let first_here = last != Some(p.entry);
            last = Some(p.entry);
            if first_here && entries.binary_search(&p.entry).is_ok() {
                let i = out.partition_point(|f| f.entry < p.entry);
                for f in out.get_mut(i..).unwrap_or_default().iter_mut().take_while(|f| f.entry == p.entry) {
                    f.line = p.line;
                    f.file.clone_from(&p.file);
                }
            } else if kept(&p) {
                extra.push(p);
            }
        };
        let named = |entry: u64| entries.binary_search(&entry).is_ok();
        table.each_function(named, || self.release_pages(), merge).map_err(|e| e.at(&self.path))?;
        self.release_pages();
        // Exactly: the table is already tens of MB, and doubling it for a
        // few functions only the pclntab names would cost as much again.
        out.reserve_exact(extra.len());
        out.extend(extra);
        out.sort_by(|a, b| a.entry.cmp(&b.entry).then_with(|| a.name.cmp(&b.name)));
        Ok(out)
    }

    /// Functions from one table only, so sources can be compared. `Symtab`
    /// carries no file or line; a table the binary lacks gives an empty
    /// list.
    pub fn functions_from(&self, source: Source) -> Result<Vec<Function>, ResolveError> {
        match source {
            Source::Dwarf => match self.dwarf()? {
                Some(d) => d.functions_checked().map(<[Function]>::to_vec),
                None => Ok(Vec::new()),
            },
            Source::Symtab => Ok(self.symtab()?.map(|s| s.functions).unwrap_or_default()),
            Source::Pclntab => match self.pclntab {
                Some(_) => self.pclntab_functions(self.symtab()?.as_ref()),
                None => Ok(Vec::new()),
            },
        }
    }

    /// The binary's DWARF, its sections decompressed and indexed (the rest
    /// is read on demand); `Ok(None)` when it was stripped. Each call reads
    /// it again, so keep the result.
    pub fn dwarf(&self) -> Result<Option<Dwarf>, ResolveError> {
        Dwarf::load(&self.path, Arc::clone(&self.data), None)
    }

    /// [`Binary::dwarf`] for the functions named `names` and the types
    /// only: the units of other functions are read and given back, so a
    /// kube-apiserver's 38.5 MB of `.debug_info` keep about a quarter
    /// resident. Their parameters are `None`, and the full lists refused.
    pub fn dwarf_for(&self, names: &[&str]) -> Result<Option<Dwarf>, ResolveError> {
        Dwarf::load(&self.path, Arc::clone(&self.data), Some(names))
    }

    /// The function named exactly `name`. Lists every function, so callers
    /// with many names should call [`Binary::functions`] once instead.
    pub fn find(&self, name: &str) -> Result<Option<Function>, ResolveError> {
        Ok(self.functions()?.into_iter().find(|f| f.name == name))
    }

    /// The `len` bytes of the file image at virtual address `vaddr`.
    pub fn text_at(&self, vaddr: u64, len: u64) -> Result<&[u8], ResolveError> {
        read_at(&self.data, &self.segments, vaddr, len).ok_or(ResolveError::AddressNotMapped { addr: vaddr })
    }

    /// The file offset of `vaddr`, through the executable `PT_LOAD` segment
    /// holding it: what the kernel's uprobe API wants, for PIE and non-PIE
    /// alike.
    pub fn file_offset(&self, vaddr: u64) -> Result<u64, ResolveError> {
        self.segments
            .iter()
            .filter(|s| s.executable())
            .find_map(|s| s.file_range(vaddr, 1))
            .map(|r| r.start as u64)
            .ok_or(ResolveError::AddressNotMapped { addr: vaddr })
    }

    fn symtab(&self) -> Result<Option<Symtab>, ResolveError> {
        if self.sections.is_empty() {
            return Ok(None);
        }
        symtab::parse_symtab(&self.data).map_err(|e| e.at(&self.path))
    }

    /// Parses the pclntab header; `None` when the binary has none.
    fn pclntab_header(&self, hint: Option<u64>) -> Option<Result<Pclntab<'_>, ResolveError>> {
        let range = self.pclntab.clone()?;
        // locate_pclntab checked the range against the file.
        let Some(table) = self.data.get(range) else {
            return Some(Err(pclntab::Malformed::new(".gopclntab", "extends past the end of the file").at(&self.path)));
        };
        Some(pclntab::parse_pclntab(table, hint).map_err(|e| e.at(&self.path)))
    }

    /// The pclntab's functions, each with its name. The pages read are
    /// released as it goes.
    fn pclntab_functions(&self, symtab: Option<&Symtab>) -> Result<Vec<Function>, ResolveError> {
        let Some(table) = self.pclntab_table(symtab) else { return Ok(Vec::new()) };
        table?.functions_with(|_| false, || self.release_pages()).map_err(|e| e.at(&self.path))
    }

    /// The pclntab, its text start taken from elsewhere when its header
    /// leaves it 0; `None` when the binary has none.
    fn pclntab_table(&self, symtab: Option<&Symtab>) -> Option<Result<Pclntab<'_>, ResolveError>> {
        let table = match self.pclntab_header(None)? {
            Ok(t) => t,
            Err(e) => return Some(Err(e)),
        };
        if table.text_start() == Some(0) {
            return Some(self.pclntab_header(self.text_base(symtab)).unwrap_or(Ok(table)));
        }
        Some(Ok(table))
    }

    /// Where Go text starts, for pclntabs whose header leaves `textStart` 0
    /// (newer linkers let the runtime take it from moduledata). In order of
    /// trust: the `runtime.text` symbol; moduledata's `text` field; the
    /// `.text` section, which is right for internally linked binaries only
    /// (external linkers put C startup code first); the executable segment
    /// past the ELF header page, as the internal linker lays it out.
    fn text_base(&self, symtab: Option<&Symtab>) -> Option<u64> {
        symtab
            .and_then(|s| s.runtime_text)
            .or_else(|| self.moduledata_text())
            .or_else(|| self.sections.iter().find(|s| s.name == ".text").map(|s| s.addr))
            .or_else(|| {
                let seg = self.segments.iter().find(|s| s.executable())?;
                Some(if seg.offset == 0 { seg.vaddr + 0x1000 } else { seg.vaddr })
            })
    }

    /// Moduledata's `text` field, accepted only if it is executable and not
    /// above `minpc` (the layout is in [`Binary::moduledata`]).
    fn moduledata_text(&self) -> Option<u64> {
        self.moduledata(|md| {
            let (minpc, text) = (md.get(20).copied()?, md.get(22).copied()?);
            let exec = self.segments.iter().any(|s| s.executable() && s.file_range(text, 1).is_some());
            (exec && text <= minpc).then_some(text)
        })
    }

    /// The first `runtime.moduledata` candidate for which `accept` returns a
    /// value. Moduledata starts with a pointer to the pclntab header followed
    /// by six slices (funcnametab, cutab, filetab, pctab, pclntable, ftab),
    /// `findfunctab`, `minpc`, `maxpc`, `text` (runtime/symtab.go, Go 1.16
    /// onwards); `accept` sees the first 48 words as found in writable data.
    fn moduledata<T>(&self, accept: impl Fn(&[u64]) -> Option<T>) -> Option<T> {
        let start = self.pclntab.as_ref()?.start as u64;
        let table_vaddr = self
            .segments
            .iter()
            .find(|s| s.file_span().is_some_and(|r| r.contains(&(start as usize))))
            .map(|s| s.vaddr.wrapping_add(start - s.offset))?;
        let needle = table_vaddr.to_le_bytes();
        for seg in self.segments.iter().filter(|s| s.writable()) {
            let Some(bytes) = seg.file_span().and_then(|r| self.data.get(r)) else { continue };
            for (i, chunk) in bytes.chunks_exact(8).enumerate() {
                if chunk != needle {
                    continue;
                }
                let words: Vec<u64> = bytes
                    .get(i * 8..)
                    .unwrap_or_default()
                    .chunks_exact(8)
                    .take(48)
                    .map(|w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8])))
                    .collect();
                if let Some(found) = accept(&words) {
                    return Some(found);
                }
            }
        }
        None
    }

    /// Address of `go:func.*` (`go.func.*` before Go 1.20), the base of Go
    /// 1.18+ funcdata offsets: the symbol when `.symtab` has it, else
    /// moduledata's `gofunc` field (word 38; 40 from Go 1.20, which added
    /// `covctrs`), accepted only when it lies in mapped, non-executable
    /// data at or above moduledata's `rodata` field.
    fn gofunc(&self, symtab: Option<&Symtab>) -> Option<u64> {
        if let Some(addr) = symtab.and_then(|s| s.gofunc) {
            return Some(addr);
        }
        let version = self.pclntab_header(None)?.ok()?.version();
        let at = match version {
            PclnVersion::Go118 => 38,
            PclnVersion::Go120 => 40,
            _ => return None,
        };
        self.moduledata(|md| {
            let (rodata, gofunc) = (md.get(at - 1).copied()?, md.get(at).copied()?);
            let data = self.segments.iter().any(|s| !s.executable() && s.file_range(gofunc, 1).is_some());
            (data && rodata <= gofunc).then_some(gofunc)
        })
    }

    /// Every inlined call the pclntab's inline trees record, sorted by
    /// caller then address. Empty for layouts older than Go 1.16, which
    /// ktrace does not trace anyway.
    pub fn inlined_calls(&self) -> Result<Vec<InlinedCall>, ResolveError> {
        let Some(header) = self.pclntab_header(None) else { return Ok(Vec::new()) };
        let mut table = header?;
        if table.version() == PclnVersion::Go12 {
            return Ok(Vec::new());
        }
        let symtab = self.symtab()?;
        if table.text_start() == Some(0) {
            table = self.pclntab_header(self.text_base(symtab.as_ref())).unwrap_or(Ok(table))?;
        }
        let gofunc = self.gofunc(symtab.as_ref());
        table
            .inlined_calls(gofunc, |addr, len| read_at(&self.data, &self.segments, addr, len))
            .map_err(|e| e.at(&self.path))
    }

    /// Runs of instructions the pclntab attributes to lines of files for
    /// which `wants_file` is true (inlined code included), sorted by
    /// function then address.
    pub fn line_ranges(&self, wants_file: &mut dyn FnMut(&str) -> bool) -> Result<Vec<LineRange>, ResolveError> {
        let Some(header) = self.pclntab_header(None) else { return Ok(Vec::new()) };
        let mut table = header?;
        if table.text_start() == Some(0) {
            table = self.pclntab_header(self.text_base(self.symtab()?.as_ref())).unwrap_or(Ok(table))?;
        }
        table.line_ranges(wants_file).map_err(|e| e.at(&self.path))
    }

    /// Finds `.gopclntab` by section name, else by scanning read-only
    /// segments (then all segments) for a header that validates.
    fn locate_pclntab(&self) -> Result<Option<Range<usize>>, ResolveError> {
        // PIE and shared builds move the table into RELRO data under a prefix.
        let named = |s: &&Section| s.name == ".gopclntab" || s.name == ".data.rel.ro.gopclntab";
        if let Some(section) = self.sections.iter().find(named) {
            let corrupt = |reason: &str| ResolveError::Corrupt {
                path: self.path.clone(),
                table: ".gopclntab",
                reason: reason.into(),
            };
            let range = section.file.clone().ok_or_else(|| corrupt("section has no file data"))?;
            if range.end > self.data.len() {
                return Err(corrupt("section extends past the end of the file"));
            }
            return Ok(Some(range));
        }
        let readonly = self.segments.iter().filter(|s| !s.executable() && !s.writable());
        let rest = self.segments.iter().filter(|s| s.executable() || s.writable());
        for seg in readonly.chain(rest) {
            let Some(span) = seg.file_span().filter(|r| r.end <= self.data.len()) else { continue };
            // 8-aligned in the file means 8-aligned in memory: PT_LOAD
            // offsets and addresses agree modulo the page size.
            let first = span.start.next_multiple_of(8);
            for at in (first..span.end.saturating_sub(8)).step_by(8) {
                let Some(candidate) = self.data.get(at..span.end) else { continue };
                if pclntab::looks_like_header(candidate, self.machine)
                    && pclntab::parse_pclntab(candidate, None).is_ok_and(|t| t.is_plausible())
                {
                    return Ok(Some(at..span.end));
                }
            }
        }
        Ok(None)
    }

    /// Parses `.go.buildinfo` by section name, else by scanning writable
    /// then other segments for its magic. Damaged build info is treated as
    /// absent: it only refines the version check.
    fn locate_build_info(&self) -> Option<GoBuildInfo> {
        let read = |addr: u64, len: u64| read_at(&self.data, &self.segments, addr, len);
        if let Some(range) = self.sections.iter().find(|s| s.name == ".go.buildinfo").and_then(|s| s.file.clone()) {
            return buildinfo::parse_buildinfo(self.data.get(range.start..)?, read).ok();
        }
        let writable = self.segments.iter().filter(|s| s.writable());
        let rest = self.segments.iter().filter(|s| !s.writable());
        for seg in writable.chain(rest) {
            let Some(span) = seg.file_span().filter(|r| r.end <= self.data.len()) else { continue };
            let first = span.start.next_multiple_of(16).min(span.end);
            let Some(window) = self.data.get(first..span.end) else { continue };
            if let Some(at) = buildinfo::find_buildinfo(window) {
                return buildinfo::parse_buildinfo(window.get(at..)?, read).ok();
            }
        }
        None
    }
}

fn read_at<'a>(data: &'a [u8], segments: &[Segment], vaddr: u64, len: u64) -> Option<&'a [u8]> {
    segments.iter().find_map(|s| s.file_range(vaddr, len)).and_then(|r| data.get(r))
}

/// Segments, sections, (preferred build ID, Go build ID), machine.
type Headers = (Vec<Segment>, Vec<Section>, (Option<String>, Option<String>), Machine);

/// Why the headers were refused: not ELF at all, or ELF for another CPU.
enum HeaderError {
    NotElf(String),
    Arch(String),
}

impl From<String> for HeaderError {
    fn from(reason: String) -> Self {
        HeaderError::NotElf(reason)
    }
}

/// Reads the ELF header, `PT_LOAD` segments, section names and build-id
/// notes. Only little-endian ELF64 for a supported machine gets through.
fn parse_headers(data: &[u8]) -> Result<Headers, HeaderError> {
    match FileKind::parse(data).map_err(|e| e.to_string())? {
        FileKind::Elf64 => {}
        FileKind::Elf32 => return Err(HeaderError::Arch("32-bit ELF".into())),
        other => return Err(HeaderError::NotElf(format!("file format {other:?}"))),
    }
    let header = elf::FileHeader64::<Endianness>::parse(data).map_err(|e| e.to_string())?;
    let endian = header.endian().map_err(|e| e.to_string())?;
    if endian != Endianness::Little {
        return Err(HeaderError::Arch("big-endian ELF64".into()));
    }
    let machine = check_machine(header.e_machine(endian)).map_err(HeaderError::Arch)?;
    let phdrs = header.program_headers(endian, data).map_err(|e| format!("program headers: {e}"))?;
    let mut segments = Vec::new();
    let (mut gnu_id, mut go_id) = (None, None);
    let mut take_notes = |notes: Option<object::read::elf::NoteIterator<'_, elf::FileHeader64<Endianness>>>| {
        let Some(mut notes) = notes else { return };
        while let Ok(Some(note)) = notes.next() {
            match (note.name(), note.n_type(endian)) {
                (b"GNU", elf::NT_GNU_BUILD_ID) => {
                    gnu_id.get_or_insert_with(|| note.desc().iter().map(|b| format!("{b:02x}")).collect::<String>());
                }
                // ELF_NOTE_GOBUILDID_TAG in cmd/link/internal/ld/elf.go.
                (b"Go", 4) => {
                    go_id.get_or_insert_with(|| String::from_utf8_lossy(note.desc()).into_owned());
                }
                _ => {}
            }
        }
    };
    for ph in phdrs {
        match ph.p_type(endian) {
            elf::PT_LOAD => segments.push(Segment {
                vaddr: ph.p_vaddr(endian),
                offset: ph.p_offset(endian),
                filesz: ph.p_filesz(endian),
                flags: ph.p_flags(endian),
            }),
            elf::PT_NOTE => take_notes(ph.notes(endian, data).ok().flatten()),
            _ => {}
        }
    }
    let table = header.sections(endian, data).map_err(|e| format!("truncated or corrupt section headers: {e}"))?;
    let mut sections = Vec::with_capacity(table.len());
    for sh in table.iter() {
        let name = table.section_name(endian, sh).map_err(|e| format!("section names: {e}"))?;
        let file = if sh.sh_type(endian) == elf::SHT_NOBITS {
            None
        } else {
            let (off, size) = (sh.sh_offset(endian), sh.sh_size(endian));
            usize::try_from(off).ok().zip(usize::try_from(off.saturating_add(size)).ok()).map(|(s, e)| s..e)
        };
        if sh.sh_type(endian) == elf::SHT_NOTE {
            take_notes(sh.notes(endian, data).ok().flatten());
        }
        sections.push(Section { name: String::from_utf8_lossy(name).into_owned(), addr: sh.sh_addr(endian), file });
    }
    let preferred = gnu_id.or_else(|| go_id.clone());
    Ok((segments, sections, (preferred, go_id), machine))
}
