use super::*;
use crate::plan::{
    abi::{Location, Slot},
    fields::{self, CaptureSpec},
};

/// A type DIE to write: tag, name, target (index into the list) and
/// struct members (name, type index, offset).
struct TestDie {
    tag: DwTag,
    name: &'static str,
    target: Option<usize>,
    members: Vec<(&'static str, usize, u64)>,
}

fn die(tag: DwTag, name: &'static str, target: Option<usize>, members: Vec<(&'static str, usize, u64)>) -> TestDie {
    TestDie { tag, name, target, members }
}

fn uleb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn uleb_len(v: u64) -> usize {
    let mut out = Vec::new();
    uleb(&mut out, v);
    out.len()
}

/// One DWARF 4 unit holding `dies` (each with its own abbreviation,
/// members sharing one), loaded as [`Dwarf`]; also the DIEs' offsets.
fn build(dies: &[TestDie]) -> (Dwarf, Vec<u64>) {
    const DW_FORM_STRING: u64 = 0x08;
    const DW_FORM_REF4: u64 = 0x13;
    const DW_FORM_UDATA: u64 = 0x0f;
    let member_code = dies.len() as u64 + 2;
    let mut abbrev = Vec::new();
    for v in [1, gimli::DW_TAG_compile_unit.0.into(), 1, 0, 0] {
        uleb(&mut abbrev, v);
    }
    for (i, d) in dies.iter().enumerate() {
        for v in [i as u64 + 2, d.tag.0.into(), u64::from(!d.members.is_empty())] {
            uleb(&mut abbrev, v);
        }
        for v in [gimli::DW_AT_name.0.into(), DW_FORM_STRING] {
            uleb(&mut abbrev, v);
        }
        if d.target.is_some() {
            for v in [gimli::DW_AT_type.0.into(), DW_FORM_REF4] {
                uleb(&mut abbrev, v);
            }
        }
        abbrev.extend([0, 0]);
    }
    for v in [member_code, gimli::DW_TAG_member.0.into(), 0] {
        uleb(&mut abbrev, v);
    }
    for v in [
        gimli::DW_AT_name.0.into(),
        DW_FORM_STRING,
        gimli::DW_AT_data_member_location.0.into(),
        DW_FORM_UDATA,
        gimli::DW_AT_type.0.into(),
        DW_FORM_REF4,
        0,
        0,
    ] {
        uleb(&mut abbrev, v);
    }
    abbrev.push(0);
    // Offsets first: references are written before the DIEs they name.
    let mut offsets = Vec::new();
    let mut at = 11 + 1; // unit header, then the unit DIE's code
    for (i, d) in dies.iter().enumerate() {
        offsets.push(at as u64);
        at += uleb_len(i as u64 + 2) + d.name.len() + 1 + if d.target.is_some() { 4 } else { 0 };
        for (n, _, off) in &d.members {
            at += uleb_len(member_code) + n.len() + 1 + uleb_len(*off) + 4;
        }
        at += usize::from(!d.members.is_empty());
    }
    let mut info = Vec::new();
    info.extend(0u32.to_le_bytes()); // length, patched below
    info.extend(4u16.to_le_bytes());
    info.extend(0u32.to_le_bytes());
    info.push(8);
    info.push(1);
    let reference = |info: &mut Vec<u8>, i: usize| info.extend((offsets[i] as u32).to_le_bytes());
    for (i, d) in dies.iter().enumerate() {
        uleb(&mut info, i as u64 + 2);
        info.extend(d.name.as_bytes());
        info.push(0);
        if let Some(t) = d.target {
            reference(&mut info, t);
        }
        for (n, t, off) in &d.members {
            uleb(&mut info, member_code);
            info.extend(n.as_bytes());
            info.push(0);
            uleb(&mut info, *off);
            reference(&mut info, *t);
        }
        if !d.members.is_empty() {
            info.push(0);
        }
    }
    info.push(0);
    let len = (info.len() - 4) as u32;
    info[..4].copy_from_slice(&len.to_le_bytes());
    let sections = gimli::DwarfSections::load(|id| -> Result<Buf, ()> {
        Ok(Buf::Heap(match id {
            SectionId::DebugInfo => info.clone(),
            SectionId::DebugAbbrev => abbrev.clone(),
            _ => Vec::new(),
        }))
    })
    .unwrap();
    (Dwarf::from_sections(Path::new("test"), sections).unwrap(), offsets)
}

/// Hostile type graphs: a typedef cycle, and a struct whose member
/// points back at it. Each step looks one level deep, so neither loops.
fn hostile() -> (Dwarf, Vec<u64>) {
    build(&[
        die(gimli::DW_TAG_typedef, "A", Some(1), vec![]),
        die(gimli::DW_TAG_typedef, "B", Some(0), vec![]),
        die(gimli::DW_TAG_pointer_type, "*Node", Some(3), vec![]),
        die(gimli::DW_TAG_structure_type, "Node", None, vec![("Next", 2, 8), ("Loop", 0, 16), ("Self", 3, 24)]),
        die(gimli::DW_TAG_pointer_type, "*example.com/p.Thing", Some(5), vec![]),
        die(gimli::DW_TAG_structure_type, "example.com/p.Thing", None, vec![]),
    ])
}

#[test]
fn cyclic_types_resolve_to_other_or_stop_at_the_limits() {
    let (d, o) = hostile();
    assert_eq!(d.type_shape(TypeId(o[0])), TypeShape::Other, "a typedef cycle ends at the depth cap");
    assert_eq!(d.type_shape(TypeId(1 << 40)), TypeShape::Other, "a dangling reference");
    assert_eq!(d.type_named("*Node"), Some(TypeId(o[2])));
    assert_eq!(d.type_named_loosely("*Node"), Some(TypeId(o[2])));
    assert_eq!(d.type_named_loosely("*x.Node"), None);
    assert_eq!(d.type_named_loosely("*p.Thing"), Some(TypeId(o[4])), "the signature table's short names");
    assert_eq!(d.type_named_loosely("p.Thing"), Some(TypeId(o[5])));
    assert_eq!(d.type_named_loosely("*q.Thing"), None);
    assert_eq!(d.type_name(TypeId(o[3])), Some("Node"));
    assert_eq!(d.struct_member_offset("Node", "Loop"), Some(16));
    assert_eq!(d.struct_member_offset("*Node", "Loop"), None, "not a struct");
    assert!(d.functions().is_empty() && d.inlined_calls().is_empty() && d.params("A").is_none());
    let slot = Slot {
        name: "n".into(),
        type_name: "*Node".into(),
        is_result: false,
        location: Location::Registers(vec!["RAX"]),
        secret: false,
    };
    let run = |path: &str| fields::resolve(&CaptureSpec::parse(path).unwrap(), "f", std::slice::from_ref(&slot), &d);
    let e = run("n.Next.Next.Next.Next.Next.Next").unwrap_err();
    assert!(e.contains("5th pointer"), "{e}");
    let e = run("n.Loop.X").unwrap_err();
    assert!(e.contains("n.Loop is a type ktrace does not model"), "{e}");
    // A struct that contains itself by value: each step is one member,
    // and a path names at most 8.
    let e = run("n.Self.Self.Self.Self.Self.Self.Self.Self").unwrap_err();
    assert!(e.contains("n.Self.Self.Self.Self.Self.Self.Self.Self is a struct (Node)"), "{e}");
    assert!(CaptureSpec::parse("n.Self.Self.Self.Self.Self.Self.Self.Self.Self").is_err());
}

/// Every offset of a small unit as a type id, DIE start or not: no panic.
#[test]
fn any_offset_is_safe_to_look_up() {
    let (d, _) = hostile();
    for o in 0..200 {
        let _ = (d.type_shape(TypeId(o)), d.type_name(TypeId(o)), d.type_embedded(TypeId(o)));
    }
}

/// The second pass of a read for a few functions. Kept on sight are only
/// the units of the wanted functions, so every type their parameters name
/// (Go writes them into `runtime`'s unit) comes back through references:
/// the parameters read must equal the whole read's.
#[test]
fn units_reached_only_through_references_are_read_again() {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    for v in [testkit::Variant::Debug, testkit::Variant::Optimized] {
        let path = match testkit::target_binary(v) {
            Ok(p) => p,
            Err(e) => {
                assert!(!ci, "{e:#}");
                eprintln!("not checked on targets/apiserver {v}: {e:#}");
                continue;
            }
        };
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: a build output nothing writes while the test runs.
        let data = Arc::new(crate::resolve::elf::Bytes::Mapped(unsafe { memmap2::Mmap::map(&file) }.unwrap()));
        let whole = Dwarf::load(&path, Arc::clone(&data), None).unwrap().expect("DWARF");
        let names: Vec<&str> = whole
            .functions()
            .iter()
            .map(|f| f.name.as_str())
            .filter(|n| n.starts_with("k8s.io/apiserver/pkg/storage/etcd3.") || n.starts_with("main."))
            .collect();
        assert!(names.len() >= 5, "{v}: {names:?}");
        let part = Dwarf::load_keeping(&path, data, Some(&names), sparse::OnSight::CodeOnly).unwrap().expect("DWARF");
        let read = part.sparse().expect("a read for a few functions");
        assert!(read.restored > 0 && read.kept < read.all, "{v}: {read:?}");
        let mut named_types = 0;
        for name in &names {
            assert_eq!(part.params(name), whole.params(name), "{v}: parameters of {name}");
            named_types += whole.params(name).unwrap_or_default().iter().filter(|p| !p.type_name.is_empty()).count();
        }
        assert!(named_types >= 5, "{v}: {named_types} typed parameters");
        eprintln!("targets/apiserver {v}: {} functions, {read:?}", names.len());
    }
}
