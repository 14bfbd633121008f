//! `.debug_info` read for a few functions: inflated one unit at a time
//! into an anonymous map, indexed, and given back to the kernel unless
//! the unit is needed.
//!
//! A unit is needed when it holds one of the wanted functions or a type
//! at its top level (Go's linker writes every named type into
//! `runtime`'s unit: 8.5 MB of kube-apiserver's 35 MB), or when a needed
//! unit's types or wanted functions refer into it (the generic function a
//! shape instance was made from is in its own package's unit). The first
//! pass keeps the units known to be needed on sight; when references
//! reach units it gave back, a second pass inflates the stream again and
//! keeps those, passing the rest through a small buffer.

use std::collections::HashSet;

use flate2::{Decompress, FlushDecompress, Status};
use gimli::{AttributeValue, DebugInfoOffset, EndianSlice, LittleEndian};
use object::{CompressionFormat, Object, ObjectSection};

use super::{Buf, Indexer, R, dies, hash, name_in, reference};

/// Enough bytes for any unit header (64-bit DWARF 5 needs 24).
const HEADER: usize = 32;
/// What the second pass inflates at a time for units it does not keep.
const SCRATCH: usize = 64 * 1024;
/// The compressed bytes read are given back in steps of this many.
const RELEASE_STEP: usize = 1 << 20;

/// What a sparse read gives: the map, and the index of the kept units.
pub(super) struct Sparse {
    pub(super) info: memmap2::Mmap,
    pub(super) index: Indexer,
    /// Bytes of the units kept.
    pub(super) kept: usize,
    /// Bytes of those the second pass read again.
    pub(super) restored: usize,
}

/// Which units the first pass keeps on sight.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum OnSight {
    /// Those with a wanted function or a type at their top level.
    CodeAndTypes,
    /// Those with a wanted function only, so that the types come back
    /// through references and the second pass: its tests.
    #[cfg(test)]
    CodeOnly,
}

/// One unit, as the first pass saw it.
struct Seen {
    start: u64,
    end: u64,
    /// Needed on sight (see the module documentation).
    needed: bool,
    /// Its bytes are resident (needed on sight, or restored).
    resident: bool,
    /// Offsets outside the unit its types and wanted functions refer to.
    refs: Vec<u64>,
}

/// Reads `.debug_info` of `file` keeping the units described above;
/// `Ok(None)` when it is not zlib-compressed (then there is nothing to
/// stream).
pub(super) fn read(
    file: &object::File<'_>,
    sections: &gimli::DwarfSections<Buf>,
    wanted: &HashSet<u64>,
    limit: u64,
    release: &dyn Fn(&[u8]),
    on_sight: OnSight,
) -> Result<Option<Sparse>, String> {
    let Some(section) = file.section_by_name(".debug_info") else { return Ok(None) };
    let compressed = section.compressed_data().map_err(|e| format!(".debug_info: {e}"))?;
    if compressed.format != CompressionFormat::Zlib {
        return Ok(None);
    }
    if compressed.uncompressed_size > limit {
        return Err(format!(".debug_info: claims {} bytes uncompressed", compressed.uncompressed_size));
    }
    let Ok(len) = usize::try_from(compressed.uncompressed_size) else { return Ok(None) };
    if len == 0 {
        return Ok(None);
    }
    let mut map = memmap2::MmapMut::map_anon(len).map_err(|e| format!(".debug_info: {e}"))?;
    let mut inflate = Inflate::new(compressed.data);
    let mut index = Indexer::default();
    let mut units: Vec<Seen> = Vec::new();
    let mut at = 0usize;
    while at < len {
        inflate.fill(&mut map, at.saturating_add(HEADER).min(len))?;
        let end = {
            let dwarf = with_info(sections, &map);
            let header = dwarf.debug_info.header_from_offset(DebugInfoOffset(at)).map_err(|e| e.to_string())?;
            at.checked_add(header.length_including_self())
                .filter(|&end| end <= len && end > at)
                .ok_or_else(|| format!("the unit at {at:#x} overruns .debug_info"))?
        };
        inflate.fill(&mut map, end)?;
        let dwarf = with_info(sections, &map);
        let header = dwarf.debug_info.header_from_offset(DebugInfoOffset(at)).map_err(|e| e.to_string())?;
        let (code_from, named_from) = (index.code.len(), index.named.len());
        let stop = end as u64;
        let facts = index.unit(&dwarf, header).map_err(|e| e.to_string())?;
        // Only the wanted functions stay in the index (and those named
        // through an origin not read yet, which may be).
        let named = &index.named;
        let mut i = code_from;
        index.code.retain(|&(_, h)| {
            i += 1;
            i <= code_from
                || match h {
                    Ok(h) => wanted.contains(&h),
                    Err(o) => origin_wanted(named, o, stop, wanted),
                }
        });
        let types = facts.types && on_sight == OnSight::CodeAndTypes;
        let needed = types || facts.later_origin || index.code.len() > code_from;
        let refs = references_out(&dwarf, header, &mut index, wanted).map_err(|e| e.to_string())?;
        // Only subprograms named like a wanted function are kept for
        // origins: about 200,000 others would cost 3 MB.
        let tail = index.named.split_off(named_from);
        index.named.extend(tail.into_iter().filter(|e| wanted.contains(&e.1)));
        if !needed {
            give_back(&map, at, end);
        }
        inflate.release_read(release);
        units.push(Seen { start: at as u64, end: end as u64, needed, resident: needed, refs });
        at = end;
    }
    // What the needed units reach, transitively.
    let mut todo: Vec<usize> = units.iter().enumerate().filter(|(_, u)| u.needed).map(|(i, _)| i).collect();
    while let Some(i) = todo.pop() {
        let refs = units.get_mut(i).map(|u| std::mem::take(&mut u.refs)).unwrap_or_default();
        for o in refs {
            let j = units.partition_point(|u| u.end <= o);
            if let Some(u) = units.get_mut(j).filter(|u| u.start <= o && !u.needed) {
                u.needed = true;
                todo.push(j);
            }
        }
    }
    let restored = units.iter().filter(|u| u.needed && !u.resident).map(|u| (u.end - u.start) as usize).sum();
    if restored > 0 {
        restore(&mut map, compressed.data, &mut units, release)?;
    }
    let kept: Vec<(u64, u64)> = units.iter().filter(|u| u.needed).map(|u| (u.start, u.end)).collect();
    let in_kept = |o: u64| {
        let i = kept.partition_point(|u| u.1 <= o);
        kept.get(i).is_some_and(|u| u.0 <= o)
    };
    index.code.retain(|e| in_kept(e.0));
    index.types.retain(|e| in_kept(e.1));
    let kept_bytes = kept.iter().map(|u| (u.1 - u.0) as usize).sum();
    let info = map.make_read_only().map_err(|e| format!(".debug_info: {e}"))?;
    Ok(Some(Sparse { info, index, kept: kept_bytes, restored }))
}

/// The second pass: inflates the stream again, into `map` for the units
/// needed but given back, through a small buffer for the others.
fn restore(map: &mut [u8], input: &[u8], units: &mut [Seen], release: &dyn Fn(&[u8])) -> Result<(), String> {
    let mut inflate = Inflate::new(input);
    let mut scratch = vec![0u8; SCRATCH];
    let last = units.iter().rposition(|u| u.needed && !u.resident).map_or(0, |i| i + 1);
    for u in units.iter_mut().take(last) {
        let end = u.end as usize;
        if u.needed && !u.resident {
            inflate.fill(map, end)?;
            u.resident = true;
        } else {
            while inflate.written() < end {
                let n = (end - inflate.written()).min(SCRATCH);
                inflate.next(scratch.get_mut(..n).unwrap_or_default())?;
            }
        }
        inflate.release_read(release);
        debug_assert_eq!(inflate.written(), end);
    }
    Ok(())
}

/// Whether a subprogram whose abstract origin is at `o` may be a wanted
/// function, for a unit ending at `stop`: `named` holds every subprogram
/// of that unit and, of earlier units, those named like a wanted one. An
/// origin in a later unit is not known yet, so it may be.
fn origin_wanted(named: &[(u64, u64)], o: u64, stop: u64, wanted: &HashSet<u64>) -> bool {
    match name_in(named, o) {
        Some(h) => wanted.contains(&h),
        None => o >= stop,
    }
}

/// The other sections, with `.debug_info` from `map`.
fn with_info<'a>(sections: &'a gimli::DwarfSections<Buf>, map: &'a [u8]) -> gimli::Dwarf<R<'a>> {
    let mut dwarf = sections.borrow(|s| EndianSlice::new(s, LittleEndian));
    dwarf.debug_info = EndianSlice::new(map, LittleEndian).into();
    dwarf
}

/// `.debug_info` offsets outside the unit of `header` that the lookups
/// of a sparse read may follow from it (`DW_FORM_ref_addr`): from type
/// DIEs and what they hold, and from subprograms named (themselves or
/// through their origin) like a wanted function, and their parameters.
/// Inlined calls, blocks and variables are not read.
fn references_out(
    dwarf: &gimli::Dwarf<R<'_>>,
    header: gimli::UnitHeader<R<'_>>,
    index: &mut Indexer,
    wanted: &HashSet<u64>,
) -> gimli::Result<Vec<u64>> {
    let start = header.offset().0 as u64;
    let stop = start.saturating_add(header.length_including_self() as u64);
    let unit = dies::unit(dwarf, header, false, &mut index.abbreviations)?;
    let mut out = Vec::new();
    let mut cursor = unit.entries();
    // The depth of the type or wanted subprogram being read, and of the
    // inlined call, block or variable in it being passed over.
    let mut within: Option<isize> = None;
    let mut skip: Option<isize> = None;
    while let Some(die) = cursor.next_dfs()? {
        if skip.is_some_and(|d| die.depth() > d) {
            continue;
        }
        skip = None;
        if within.is_some_and(|d| die.depth() <= d) {
            within = None;
        }
        let tag = die.tag();
        if within.is_none() {
            let follow = if tag == gimli::DW_TAG_subprogram {
                let own = die
                    .attr_value(gimli::DW_AT_name)
                    .and_then(|v| dwarf.attr_string(&unit, v).ok())
                    .map(|s| hash(&String::from_utf8_lossy(s.slice())));
                match own {
                    Some(h) => wanted.contains(&h),
                    None => die
                        .attr_value(gimli::DW_AT_abstract_origin)
                        .and_then(|v| reference(&unit, v))
                        .is_none_or(|o| origin_wanted(&index.named, o, stop, wanted)),
                }
            } else {
                super::is_type_tag(tag)
            };
            if !follow {
                continue;
            }
            within = Some(die.depth());
        } else if matches!(tag, gimli::DW_TAG_inlined_subroutine | gimli::DW_TAG_lexical_block | gimli::DW_TAG_variable)
        {
            skip = Some(die.depth());
            continue;
        }
        for attr in die.attrs() {
            if let AttributeValue::DebugInfoRef(o) = attr.value() {
                let o = o.0 as u64;
                if !(start..stop).contains(&o) {
                    out.push(o);
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Gives the whole pages inside `[from, to)` of `map` back to the kernel.
fn give_back(map: &memmap2::MmapMut, from: usize, to: usize) {
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(1);
    let first = from.next_multiple_of(page);
    let last = to / page * page;
    if last > first {
        // SAFETY: the map is private and anonymous, and nothing borrows it
        // here; the pages read back as zeros, and only references from
        // hostile DWARF (which every reader survives) lead into them.
        // Advice only: an error leaves the pages resident.
        let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, first, last - first) };
    }
}

/// A zlib stream inflated into a buffer as far as asked.
struct Inflate<'d> {
    z: Decompress,
    input: &'d [u8],
    /// Compressed bytes given back so far.
    released: usize,
}

impl<'d> Inflate<'d> {
    fn new(input: &'d [u8]) -> Self {
        Inflate { z: Decompress::new(true), input, released: 0 }
    }

    /// Bytes inflated so far.
    fn written(&self) -> usize {
        usize::try_from(self.z.total_out()).unwrap_or(usize::MAX)
    }

    /// Gives `release` the compressed bytes read since it was last called,
    /// in steps of [`RELEASE_STEP`]: the file's pages need not stay.
    fn release_read(&mut self, release: &dyn Fn(&[u8])) {
        let read = usize::try_from(self.z.total_in()).unwrap_or(0).min(self.input.len());
        if read - self.released.min(read) >= RELEASE_STEP {
            release(self.input.get(self.released..read).unwrap_or_default());
            self.released = read;
        }
    }

    /// Inflates until `buf[..upto]` is written, `buf` being the whole
    /// output from its first byte.
    fn fill(&mut self, buf: &mut [u8], upto: usize) -> Result<(), String> {
        let from = self.written();
        match buf.get_mut(from..upto.min(buf.len())) {
            Some(rest) => self.next(rest),
            None => Ok(()),
        }
    }

    /// Inflates the next `buf.len()` bytes into `buf`.
    fn next(&mut self, buf: &mut [u8]) -> Result<(), String> {
        let mut done = 0;
        while let Some(rest) = buf.get_mut(done..).filter(|r| !r.is_empty()) {
            let (in_before, out_before) = (self.z.total_in(), self.z.total_out());
            let input = usize::try_from(in_before).ok().and_then(|i| self.input.get(i..)).unwrap_or_default();
            let status =
                self.z.decompress(input, rest, FlushDecompress::None).map_err(|e| format!(".debug_info: {e}"))?;
            let produced = usize::try_from(self.z.total_out() - out_before).unwrap_or(0);
            done += produced;
            if produced == 0 && (status == Status::StreamEnd || self.z.total_in() == in_before) {
                return Err(format!(".debug_info: the compressed data ends after {} bytes", self.written()));
            }
        }
        Ok(())
    }
}
