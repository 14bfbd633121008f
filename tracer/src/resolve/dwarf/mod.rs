//! DWARF: functions, their parameters with Go types, and struct member
//! offsets, read from the target binary's `.debug_*` sections (zlib
//! compressed since Go 1.19, or `.zdebug_*` from older linkers).
//!
//! Loading decompresses `.debug_info` and the few small sections read with
//! it into buffers owned by [`Dwarf`], so callers hold no borrow of the
//! file, and makes one pass over the DIEs for two small indexes: functions
//! with code and named types, by a hash of their name. Everything else is
//! read from the sections when asked: a function's parameters and their
//! types on the first [`Dwarf::params`] call for it, one type level per
//! [`Dwarf::type_shape`] call. The line tables and range lists are
//! decompressed, and the full function list, inlined calls and line ranges
//! read, only when [`Dwarf::functions`] and friends are called (tests
//! comparing DWARF with the pclntab). A run needs a few functions' types,
//! not tables of every DIE (those peaked at several hundred MB for
//! kube-apiserver).
//!
//! The input is hostile: decompression is size-capped, type resolution is
//! depth- and node-bounded (Go's types are recursive through pointers and
//! struct members), and malformed data is a typed
//! [`ResolveError::Corrupt`], never a panic. The load pass walks every DIE,
//! so a malformed DIE tree is found there; what is read later and fails
//! anyway degrades to unknown (`None`, [`TypeKind::Other`]).

use std::{
    borrow::Cow,
    hash::{DefaultHasher, Hasher},
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use gimli::{AttributeValue, DebuggingInformationEntry, DwAt, DwTag, EndianSlice, LittleEndian, SectionId, Unit};
use object::{Object, ObjectSection};

mod dies;
mod full;
mod inline;
mod lines;
mod sparse;

use dies::Cx;
use lines::LineTable;

use super::{Function, InlinedCall, LineRange, ResolveError, elf::Bytes};

type R<'a> = EndianSlice<'a, LittleEndian>;

/// Past this many nested types the rest is [`TypeKind::Other`]: deeper
/// nesting is not passed in registers anyway, and it stops cycles.
const MAX_TYPE_DEPTH: usize = 16;
/// Type nodes one parameter may expand to, so a hostile wide struct of
/// wide structs cannot blow up exponentially within the depth cap.
const MAX_TYPE_NODES: usize = 1024;
/// Parameters kept per subprogram. Go allows far fewer in practice; the
/// cap keeps matching a concrete copy against its origin cheap.
const MAX_PARAMS: usize = 256;
/// Decompressed sections may be at most this many times the file size.
/// Real DWARF compresses 3–6×; this only stops decompression bombs.
const MAX_INFLATE_RATIO: u64 = 64;

/// Go's `DW_AT_go_kind` (cmd/internal/dwarf), holding a `reflect.Kind`.
const DW_AT_GO_KIND: DwAt = DwAt(0x2900);
/// Go's `DW_AT_go_embedded_field`: the member is an embedded field.
const DW_AT_GO_EMBEDDED_FIELD: DwAt = DwAt(0x2903);

/// What the Go register ABI needs to know about a value's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeKind {
    /// Integer, bool or uintptr of `size` bytes (one integer register).
    Int {
        /// Byte size.
        size: u64,
    },
    /// Floating point of `size` bytes (one float register).
    Float {
        /// Byte size.
        size: u64,
    },
    /// A pointer, or a Go type that is one underneath: map, chan, func,
    /// `unsafe.Pointer`.
    Pointer,
    /// `string`: pointer and length.
    String,
    /// `[]T`: pointer, length, capacity.
    Slice,
    /// Any interface (`runtime.iface` or `runtime.eface`): two words.
    Interface,
    /// A struct, with its fields in order. Complex numbers are a struct of
    /// two floats, as the ABI assigns them.
    Struct {
        /// Field name, kind and byte offset.
        fields: Vec<(String, TypeKind, u64)>,
    },
    /// A fixed-size array.
    Array {
        /// Element kind.
        elem: Box<TypeKind>,
        /// Element count.
        len: u64,
    },
    /// Unknown, unresolvable, or nested past the resolution caps.
    Other,
}

/// A type of the DWARF, by its `.debug_info` offset, for walking
/// `--capture` field paths one step at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TypeId(u64);

/// One level of a type, typedefs followed: what a field path step needs.
/// Members and pointer targets are ids, looked up only if the path goes
/// there, so nothing here recurses however the types nest or cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeShape {
    /// Integer, bool or uintptr of `size` bytes.
    Int {
        /// Byte size.
        size: u64,
    },
    /// Floating point or complex.
    Float,
    /// A pointer; `target` is `None` for `unsafe.Pointer` or an unknown target.
    Pointer {
        /// The pointed-to type.
        target: Option<TypeId>,
    },
    /// `string`.
    String,
    /// A struct and its members in order.
    Struct {
        /// Name, byte offset and type of each member.
        members: Vec<(String, u64, Option<TypeId>)>,
    },
    /// An interface.
    Interface,
    /// A slice.
    Slice,
    /// A map.
    Map,
    /// A channel.
    Chan,
    /// A func value.
    Func,
    /// A fixed-size array.
    Array,
    /// Unknown, or a typedef chain past the depth cap.
    Other,
}

/// One formal parameter or result of a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// Source name; Go names unnamed results `~r0`, `~r1`, ….
    pub name: String,
    /// Go type name, e.g. `context.Context`, `*k8s.io/…/etcd3.store`.
    pub type_name: String,
    /// Byte size of the value (0 when DWARF does not say).
    pub size: u64,
    /// A result, not an argument (`DW_AT_variable_parameter` in Go's DWARF).
    pub is_result: bool,
    /// The type's shape for register assignment.
    pub kind: TypeKind,
}

/// The DWARF facts ktrace uses, read from one binary.
pub struct Dwarf {
    /// For errors found after loading.
    path: PathBuf,
    /// The decompressed sections the indexes and lookups read (the others
    /// are left empty).
    sections: gimli::DwarfSections<Buf>,
    /// Read for a few functions ([`Dwarf::load`] with a list). The units
    /// of other functions are gone, and the full lists with them.
    sparse: Option<SparseRead>,
    /// The file, for the sections only [`Dwarf::functions`] and friends
    /// read (line tables, range lists), decompressed on first use: about
    /// 30 MB for kube-apiserver that a tracing run never needs. `None`
    /// when the sections came from elsewhere (tests).
    file: Option<(Arc<Bytes>, u64)>,
    later: OnceLock<Result<Later, String>>,
    /// `.debug_info` offsets of the unit headers, ascending.
    units: Vec<u64>,
    /// Functions with code (named themselves or through their abstract
    /// origin), by name hash.
    functions: Index,
    /// Resolved parameters, by position in `functions`: filled on the first
    /// [`Dwarf::params`] call for a name, in the slot of the first function
    /// of that name.
    params: Vec<OnceLock<Box<[Param]>>>,
    /// Named type DIEs, by name hash.
    types: Index,
    /// (entry address, offset) of the functions in `functions`, sorted;
    /// made on the first [`Dwarf::function_name_at`] call.
    entries: OnceLock<Vec<(u64, u64)>>,
    /// Every function, read on first use.
    all_functions: OnceLock<Result<Vec<Function>, String>>,
    /// Every inlined call, read on first use.
    inlined: OnceLock<Result<Vec<InlinedCall>, String>>,
}

impl std::fmt::Debug for Dwarf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dwarf")
            .field("units", &self.units.len())
            .field("functions", &self.functions.0.len())
            .field("types", &self.types.0.len())
            .finish_non_exhaustive()
    }
}

/// What a read for a few functions kept of `.debug_info`, in bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SparseRead {
    /// The units kept.
    pub kept: usize,
    /// The whole section.
    pub all: usize,
    /// Of the units kept, those given back in the first pass and read
    /// again in the second, because kept units refer into them.
    pub restored: usize,
}

/// (name hash, `.debug_info` offset) pairs, sorted: the DIEs of one name
/// are found by binary search, then told apart from hash collisions by
/// reading their names. Sixteen bytes per DIE, where owned names cost
/// several times that.
#[derive(Default)]
struct Index(Vec<(u64, u64)>);

impl Index {
    /// Positions and offsets of the DIEs whose name hashes like `name`,
    /// lowest offset first.
    fn candidates(&self, name: &str) -> impl Iterator<Item = (usize, u64)> + '_ {
        let h = hash(name);
        let start = self.0.partition_point(|e| e.0 < h);
        let tail = self.0.get(start..).unwrap_or_default();
        tail.iter().take_while(move |e| e.0 == h).enumerate().map(move |(i, e)| (start + i, e.1))
    }
}

fn hash(name: &str) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(name.as_bytes());
    h.finish()
}

/// The sections decompressed on first use; the indexes and lookups
/// never read them.
#[derive(Default)]
struct Later {
    debug_line: Vec<u8>,
    debug_line_str: Vec<u8>,
    debug_ranges: Vec<u8>,
    debug_rnglists: Vec<u8>,
}

impl Dwarf {
    /// For a read limited to a few functions ([`Binary::dwarf_for`]): how
    /// much of `.debug_info` it kept.
    ///
    /// [`Binary::dwarf_for`]: super::Binary::dwarf_for
    pub fn sparse(&self) -> Option<SparseRead> {
        self.sparse
    }

    /// Reads the sections loaded at first, without line tables.
    fn cx(&self) -> Cx<'_> {
        Cx::new(self.sections.borrow(|s| EndianSlice::new(s, LittleEndian)), &self.units, false)
    }

    /// Reads every section, decompressing the [`Later`] ones on first use.
    fn cx_lines(&self) -> Result<Cx<'_>, ResolveError> {
        let later = self.later.get_or_init(|| {
            let Some((file, limit)) = &self.file else { return Ok(Later::default()) };
            let file = object::File::parse(&***file).map_err(|e| format!("ELF: {e}"))?;
            let section = |id| decompress(&file, id, *limit);
            Ok(Later {
                debug_line: section(SectionId::DebugLine)?,
                debug_line_str: section(SectionId::DebugLineStr)?,
                debug_ranges: section(SectionId::DebugRanges)?,
                debug_rnglists: section(SectionId::DebugRngLists)?,
            })
        });
        let later = later.as_ref().map_err(|reason| self.corrupt(reason))?;
        let mut dwarf = self.sections.borrow(|s| EndianSlice::new(s, LittleEndian));
        dwarf.debug_line = EndianSlice::new(&later.debug_line, LittleEndian).into();
        dwarf.debug_line_str = EndianSlice::new(&later.debug_line_str, LittleEndian).into();
        dwarf.ranges = gimli::RangeLists::new(
            EndianSlice::new(&later.debug_ranges, LittleEndian).into(),
            EndianSlice::new(&later.debug_rnglists, LittleEndian).into(),
        );
        Ok(Cx::new(dwarf, &self.units, true))
    }

    fn corrupt(&self, reason: &str) -> ResolveError {
        ResolveError::Corrupt { path: self.path.clone(), table: ".debug_info", reason: reason.to_string() }
    }

    /// What `read` makes of all sections, read into `cell` on the first call.
    fn once<'s, T>(
        &'s self,
        cell: &'s OnceLock<Result<T, String>>,
        read: fn(&gimli::Dwarf<R<'_>>) -> gimli::Result<T>,
    ) -> Result<&'s T, ResolveError> {
        if let Some(SparseRead { kept, all, .. }) = self.sparse {
            return Err(self.corrupt(&format!(
                "read for a few functions ({kept} of {all} bytes kept): the full lists need Binary::dwarf"
            )));
        }
        let value = cell.get_or_init(|| {
            let cx = self.cx_lines().map_err(|e| match e {
                ResolveError::Corrupt { reason, .. } => reason,
                other => other.to_string(),
            })?;
            read(&cx.dwarf).map_err(|e| e.to_string())
        });
        value.as_ref().map_err(|reason| self.corrupt(reason))
    }

    /// Functions with code (`DW_TAG_subprogram` with `low_pc`), sorted by
    /// entry. File and line are those of the line table at the entry.
    /// Read in full on the first call; empty if that finds the DWARF
    /// corrupt (see [`Dwarf::functions_checked`]).
    pub fn functions(&self) -> &[Function] {
        self.functions_checked().unwrap_or_default()
    }

    /// [`Dwarf::functions`], or why they cannot be read.
    pub fn functions_checked(&self) -> Result<&[Function], ResolveError> {
        self.once(&self.all_functions, full::functions).map(Vec::as_slice)
    }

    /// The name of the function with code at `entry`, as
    /// [`Dwarf::functions`] lists it (the greatest, when several start
    /// there), without reading them all: the first call reads the entry of
    /// each function of the index.
    pub fn function_name_at(&self, entry: u64) -> Option<String> {
        let mut cx = self.cx();
        let entries = self.entries.get_or_init(|| {
            let mut entries: Vec<(u64, u64)> =
                self.functions.0.iter().filter_map(|&(_, o)| Some((cx.entry(o)?, o))).collect();
            entries.sort_unstable();
            entries
        });
        let start = entries.partition_point(|e| e.0 < entry);
        let here = entries.get(start..).unwrap_or_default().iter().take_while(|e| e.0 == entry);
        here.filter_map(|&(_, o)| cx.function_name(o)).max()
    }

    /// Parameters then results of the function named `symbol`, in
    /// declaration order. Read and their types resolved on the first call
    /// for each function.
    pub fn params(&self, symbol: &str) -> Option<&[Param]> {
        let mut cx = self.cx();
        let named: Vec<(usize, u64)> = self
            .functions
            .candidates(symbol)
            .filter(|&(_, o)| cx.function_name(o).as_deref() == Some(symbol))
            .collect();
        let &(slot, first) = named.first()?;
        let cell = self.params.get(slot)?;
        let resolved = cell.get_or_init(|| {
            // Go ≤ 1.18 can emit a function twice (golang/go#51725), and an
            // ABI wrapper has its function's name but no parameters: take
            // the first that is not a wrapper, else the first.
            let chosen = match named.get(1..) {
                Some([_, ..]) => match self.cx_lines() {
                    Ok(mut lines) => named.iter().map(|n| n.1).find(|&o| !lines.is_wrapper(o)).unwrap_or(first),
                    Err(_) => first,
                },
                _ => first,
            };
            cx.params_of(chosen)
                .into_iter()
                .map(|(name, ty, is_result)| {
                    let mut budget = MAX_TYPE_NODES;
                    Param {
                        name,
                        type_name: ty.and_then(|t| cx.type_name(t)).map(Cow::into_owned).unwrap_or_default(),
                        size: ty.and_then(|t| cx.size(t)).unwrap_or(0),
                        is_result,
                        kind: ty.map_or(TypeKind::Other, |t| cx.kind(t, 0, &mut budget)),
                    }
                })
                .collect()
        });
        Some(resolved)
    }

    /// Every `DW_TAG_inlined_subroutine` inside a function with code, sorted
    /// by caller then address: `addr` is the lowest address of its ranges,
    /// `file` is left unset (DWARF names the callee's file only through
    /// its abstract origin's declaration). Read on the first call.
    pub fn inlined_calls(&self) -> &[InlinedCall] {
        self.once(&self.inlined, full::inlined_calls).map_or(&[], Vec::as_slice)
    }

    /// Runs of addresses the line programs attribute to lines of files for
    /// which `wants_file` is true, each with the function containing it,
    /// sorted by function then address. Reads every line table again.
    pub fn line_ranges(&self, wants_file: &mut dyn FnMut(&str) -> bool) -> Vec<LineRange> {
        let functions = self.functions();
        let function_of = |addr: u64| {
            let i = functions.partition_point(|f| f.entry <= addr);
            i.checked_sub(1).and_then(|i| functions.get(i)).filter(|f| addr < f.end).map(|f| f.entry)
        };
        let Ok(cx) = self.cx_lines() else { return Vec::new() };
        let dwarf = &cx.dwarf;
        let mut out = Vec::new();
        let mut headers = dwarf.units();
        // `functions` read these same tables without error, so none of
        // these fails unless that did.
        while let Ok(Some(header)) = headers.next() {
            let Ok(unit) = dwarf.unit(header) else { break };
            let Ok(table) = LineTable::read(dwarf, &unit) else { break };
            table.ranges(wants_file, &function_of, &mut out);
        }
        out.sort_by(|a, b| a.function.cmp(&b.function).then(a.start.cmp(&b.start)));
        out
    }

    /// Byte offset of `member` in the struct type named `type_name`, e.g.
    /// `runtime.g`.`goid` (the struct at the lowest offset when several
    /// share the name).
    pub fn struct_member_offset(&self, type_name: &str, member: &str) -> Option<u64> {
        let mut cx = self.cx();
        let t = self
            .types
            .candidates(type_name)
            .filter_map(|(_, o)| cx.type_die(o))
            .find(|t| t.tag == gimli::DW_TAG_structure_type && t.name.as_deref() == Some(type_name))?;
        t.members.iter().find(|(n, ..)| n == member).map(|&(_, _, off)| off)
    }

    /// The type named `name` (e.g. `*net/http.Request`), the one at the
    /// lowest offset when several DIEs share the name.
    pub fn type_named(&self, name: &str) -> Option<TypeId> {
        let mut cx = self.cx();
        self.types.candidates(name).map(|(_, o)| o).find(|&o| cx.type_name(o).as_deref() == Some(name)).map(TypeId)
    }

    /// Like [`Dwarf::type_named`], also taking a short name with only the
    /// last element of its package path (`*http.Request` for
    /// `*net/http.Request`, as the signature table for stripped builds
    /// writes them) when no type has the exact name. The short form is a
    /// linear scan over the named types.
    pub fn type_named_loosely(&self, name: &str) -> Option<TypeId> {
        if let Some(id) = self.type_named(name) {
            return Some(id);
        }
        let (star, short) = name.strip_prefix('*').map_or(("", name), |s| ("*", s));
        if short.contains('/') || !short.contains('.') {
            return None;
        }
        // A pointer's name starts with `*`: a short name matches a pointer
        // only when it is one itself.
        let matches = |t: &str| {
            let t = match t.strip_prefix('*') {
                Some(pointee) if star == "*" => pointee,
                None if star.is_empty() => t,
                _ => return false,
            };
            t.strip_suffix(short).is_some_and(|p| p.ends_with('/'))
        };
        let mut cx = self.cx();
        self.types.0.iter().map(|e| e.1).filter(|&o| cx.type_name(o).is_some_and(|n| matches(&n))).min().map(TypeId)
    }

    /// Names of the embedded fields of struct type `id` (typedefs
    /// followed), whose fields Go promotes. A name that is not UTF-8 is
    /// left out.
    pub fn type_embedded(&self, id: TypeId) -> Vec<&str> {
        let mut cx = self.cx();
        let mut offset = id.0;
        for _ in 0..MAX_TYPE_DEPTH {
            let Some(t) = cx.type_die(offset) else { break };
            match (t.tag, t.target) {
                (gimli::DW_TAG_typedef, Some(next)) => offset = next,
                (gimli::DW_TAG_structure_type, _) => {
                    return t
                        .embedded
                        .iter()
                        .filter_map(|&i| match t.members.get(i) {
                            Some((Cow::Borrowed(name), ..)) => Some(*name),
                            _ => None,
                        })
                        .collect();
                }
                _ => break,
            }
        }
        Vec::new()
    }

    /// The Go name of a type; `None` also when it is not UTF-8.
    pub fn type_name(&self, id: TypeId) -> Option<&str> {
        match self.cx().type_name(id.0)? {
            Cow::Borrowed(name) => Some(name),
            Cow::Owned(_) => None,
        }
    }

    /// One level of type `id`, following typedefs (at most
    /// `MAX_TYPE_DEPTH` of them).
    pub fn type_shape(&self, id: TypeId) -> TypeShape {
        self.cx().shape(id.0)
    }

    /// Reads the DWARF of the ELF image `data`; `Ok(None)` when it has no
    /// `.debug_info` (e.g. built with `-w`). With `only`, what it reads
    /// describes those functions (by name) and every named type, and
    /// keeps little else resident: [`Dwarf::params`] of other functions
    /// is `None`, and the full lists ([`Dwarf::functions`] and friends)
    /// are refused.
    pub(super) fn load(path: &Path, data: Arc<Bytes>, only: Option<&[&str]>) -> Result<Option<Dwarf>, ResolveError> {
        Self::load_keeping(path, data, only, sparse::OnSight::CodeAndTypes)
    }

    /// [`Dwarf::load`], keeping `on_sight` in the first pass of a read
    /// for a few functions.
    fn load_keeping(
        path: &Path,
        data: Arc<Bytes>,
        only: Option<&[&str]>,
        on_sight: sparse::OnSight,
    ) -> Result<Option<Dwarf>, ResolveError> {
        let corrupt = |reason: String| ResolveError::Corrupt { path: path.to_path_buf(), table: ".debug_info", reason };
        let file = object::File::parse(&**data).map_err(|e| corrupt(format!("ELF: {e}")))?;
        if file.section_by_name(".debug_info").is_none() {
            return Ok(None);
        }
        let limit = (data.len() as u64).saturating_mul(MAX_INFLATE_RATIO);
        let section = |id: SectionId| -> Result<Buf, ResolveError> {
            if !NEEDED.contains(&id) || (only.is_some() && id == SectionId::DebugInfo) {
                return Ok(Buf::default());
            }
            decompress(&file, id, limit).map(Buf::Heap).map_err(corrupt)
        };
        let mut sections = gimli::DwarfSections::load(section)?;
        let sparse = match only {
            Some(names) => {
                let wanted = names.iter().map(|n| hash(n)).collect();
                // The compressed bytes are read once (twice when units
                // must be restored): their pages go as the read passes.
                let release = |part: &[u8]| {
                    let offset = (part.as_ptr() as usize).wrapping_sub(data.as_ptr() as usize);
                    data.release(offset, part.len());
                };
                sparse::read(&file, &sections, &wanted, limit, &release, on_sight).map_err(corrupt)?
            }
            None => None,
        };
        let mut dwarf = match sparse {
            Some(sparse::Sparse { info, index, kept, restored }) => {
                let all = info.len();
                sections.debug_info = Buf::Map(info).into();
                index.finish(path, sections, Some(SparseRead { kept, all, restored }))
            }
            None => {
                if only.is_some() {
                    let info = decompress(&file, SectionId::DebugInfo, limit).map_err(corrupt)?;
                    sections.debug_info = Buf::Heap(info).into();
                }
                Dwarf::from_sections(path, sections).map_err(|e| corrupt(e.to_string()))?
            }
        };
        // Their compressed bytes are not read again: do not keep them
        // resident (about 11 MB for kube-apiserver).
        for id in NEEDED {
            let Some(section) = file.section_by_name(id.name()) else { continue };
            let Ok(range) = section.compressed_file_range() else { continue };
            if let (Ok(offset), Ok(len)) = (usize::try_from(range.offset), usize::try_from(range.compressed_size)) {
                data.release(offset, len);
            }
        }
        dwarf.file = Some((data, limit));
        Ok(Some(dwarf))
    }

    /// Indexes `sections`: one pass over every DIE.
    fn from_sections(path: &Path, sections: gimli::DwarfSections<Buf>) -> gimli::Result<Dwarf> {
        let mut index = Indexer::default();
        {
            let dwarf = sections.borrow(|s| EndianSlice::new(s, LittleEndian));
            let mut headers = dwarf.units();
            while let Some(header) = headers.next()? {
                index.unit(&dwarf, header)?;
            }
        }
        Ok(index.finish(path, sections, None))
    }
}

/// A section's bytes: on the heap, or (`.debug_info` read for a few
/// functions, see [`sparse`]) an anonymous map whose unneeded units were
/// given back to the kernel.
enum Buf {
    Heap(Vec<u8>),
    Map(memmap2::Mmap),
}

impl Default for Buf {
    fn default() -> Self {
        Buf::Heap(Vec::new())
    }
}

impl std::ops::Deref for Buf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Buf::Heap(v) => v,
            Buf::Map(m) => m,
        }
    }
}

/// What the pass over the DIEs gathers, one unit after another.
#[derive(Default)]
struct Indexer {
    units: Vec<u64>,
    /// Named type DIEs: (name hash, offset).
    types: Vec<(u64, u64)>,
    /// Named subprograms: (offset, name hash), ascending because units are
    /// read in order; for names through abstract origins.
    named: Vec<(u64, u64)>,
    /// Functions with code: offset, and their name's hash or their origin.
    code: Vec<(u64, Result<u64, u64>)>,
    abbreviations: dies::Abbreviations,
}

/// What [`Indexer::unit`] found in one unit.
#[derive(Default)]
struct UnitFacts {
    /// A type DIE at the unit's top level (Go's linker writes every named
    /// type into one unit, `runtime`'s).
    types: bool,
    /// A function with code whose origin lies in a later unit: its name is
    /// not known yet.
    later_origin: bool,
}

impl Indexer {
    /// Indexes the unit of `header`.
    fn unit(&mut self, dwarf: &gimli::Dwarf<R<'_>>, header: gimli::UnitHeader<R<'_>>) -> gimli::Result<UnitFacts> {
        let start = header.offset().0 as u64;
        self.units.push(start);
        let named_from = self.named.len();
        let code_from = self.code.len();
        let mut facts = UnitFacts::default();
        let unit = dies::unit(dwarf, header, false, &mut self.abbreviations)?;
        let mut cursor = unit.entries();
        while let Some(die) = cursor.next_dfs()? {
            let tag = die.tag();
            if tag != gimli::DW_TAG_subprogram && !is_type_tag(tag) {
                continue;
            }
            let Some(offset) = global(&unit, die.offset()) else { continue };
            let name = die
                .attr_value(gimli::DW_AT_name)
                .and_then(|v| dwarf.attr_string(&unit, v).ok())
                .map(|s| hash(&String::from_utf8_lossy(s.slice())));
            if tag != gimli::DW_TAG_subprogram {
                facts.types |= die.depth() == 1;
                self.types.extend(name.map(|h| (h, offset)));
                continue;
            }
            if let Some(h) = name {
                self.named.push((offset, h));
            }
            if code_range(dwarf, &unit, die).is_some() {
                let origin = die.attr_value(gimli::DW_AT_abstract_origin).and_then(|v| reference(&unit, v));
                match (name, origin) {
                    (Some(h), _) => self.code.push((offset, Ok(h))),
                    (None, Some(o)) => self.code.push((offset, Err(o))),
                    (None, None) => {}
                }
            }
        }
        let (own, named) = (self.code.get(code_from..), self.named.get(named_from..));
        facts.later_origin = own
            .unwrap_or_default()
            .iter()
            .any(|&(_, h)| h.is_err_and(|o| o >= start && name_in(named.unwrap_or_default(), o).is_none()));
        Ok(facts)
    }

    fn finish(self, path: &Path, sections: gimli::DwarfSections<Buf>, sparse: Option<SparseRead>) -> Dwarf {
        let Indexer { mut units, mut types, mut named, code, .. } = self;
        named.sort_unstable();
        let mut functions: Vec<(u64, u64)> = code
            .into_iter()
            .filter_map(|(o, h)| Some((h.or_else(|origin| name_in(&named, origin).ok_or(())).ok()?, o)))
            .collect();
        functions.sort_unstable();
        types.sort_unstable();
        units.sort_unstable();
        let params = functions.iter().map(|_| OnceLock::new()).collect();
        Dwarf {
            path: path.to_path_buf(),
            sections,
            file: None,
            later: OnceLock::new(),
            sparse,
            units,
            functions: Index(functions),
            params,
            types: Index(types),
            entries: OnceLock::new(),
            all_functions: OnceLock::new(),
            inlined: OnceLock::new(),
        }
    }
}

/// The name hash of the subprogram at offset `o` in `named` (sorted by
/// offset).
fn name_in(named: &[(u64, u64)], o: u64) -> Option<u64> {
    let i = named.partition_point(|e| e.0 < o);
    named.get(i).filter(|e| e.0 == o).map(|e| e.1)
}

/// The sections decompressed at load; the [`Later`] ones are on first
/// use, the rest (location lists, macros, accelerator tables, type units)
/// never.
const NEEDED: [SectionId; 5] = [
    SectionId::DebugAbbrev,
    SectionId::DebugAddr,
    SectionId::DebugInfo,
    SectionId::DebugStr,
    SectionId::DebugStrOffsets,
];

/// Section `id` of `file`, decompressed (empty when absent); at most
/// `limit` bytes.
fn decompress(file: &object::File<'_>, id: SectionId, limit: u64) -> Result<Vec<u8>, String> {
    // object falls back to `.zdebug_*` by itself.
    let Some(section) = file.section_by_name(id.name()) else { return Ok(Vec::new()) };
    let compressed = section.compressed_data().map_err(|e| format!("{}: {e}", id.name()))?;
    if compressed.uncompressed_size > limit {
        return Err(format!("{}: claims {} bytes uncompressed", id.name(), compressed.uncompressed_size));
    }
    compressed.decompress().map(Cow::into_owned).map_err(|e| format!("{}: {e}", id.name()))
}

/// Tags of the type DIEs ktrace models.
fn is_type_tag(tag: DwTag) -> bool {
    matches!(
        tag,
        gimli::DW_TAG_base_type
            | gimli::DW_TAG_pointer_type
            | gimli::DW_TAG_structure_type
            | gimli::DW_TAG_typedef
            | gimli::DW_TAG_array_type
            | gimli::DW_TAG_subroutine_type
            | gimli::DW_TAG_unspecified_type
    )
}

/// Entry and end of a subprogram with code.
fn code_range(
    dwarf: &gimli::Dwarf<R<'_>>,
    unit: &Unit<R<'_>>,
    die: &DebuggingInformationEntry<R<'_>>,
) -> Option<(u64, u64)> {
    // DWARF 5 (Go 1.25+) writes addresses as indexes into `.debug_addr`
    // (DW_FORM_addrx); attr_address reads both.
    let address = |v: AttributeValue<R<'_>>| dwarf.attr_address(unit, v).ok().flatten();
    let entry = address(die.attr_value(gimli::DW_AT_low_pc)?)?;
    let high = die.attr_value(gimli::DW_AT_high_pc)?;
    let end = match address(high) {
        Some(end) => end,
        None => high.udata_value().and_then(|len| entry.checked_add(len))?,
    };
    (end > entry).then_some((entry, end))
}

fn global(unit: &Unit<R<'_>>, offset: gimli::UnitOffset) -> Option<u64> {
    offset.to_debug_info_offset(&unit.header).map(|o| o.0 as u64)
}

/// A reference to another DIE as a `.debug_info` offset.
fn reference(unit: &Unit<R<'_>>, value: AttributeValue<R<'_>>) -> Option<u64> {
    match value {
        AttributeValue::UnitRef(o) => global(unit, o),
        AttributeValue::DebugInfoRef(o) => Some(o.0 as u64),
        _ => None,
    }
}

fn string(dwarf: &gimli::Dwarf<R<'_>>, unit: &Unit<R<'_>>, value: AttributeValue<R<'_>>) -> Option<String> {
    dwarf.attr_string(unit, value).ok().map(|s| String::from_utf8_lossy(&s).into_owned())
}

fn flag(value: &AttributeValue<R<'_>>) -> bool {
    match value {
        AttributeValue::Flag(f) => *f,
        other => other.udata_value().is_some_and(|v| v != 0),
    }
}

#[cfg(test)]
mod tests;
