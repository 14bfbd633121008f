use super::*;

/// Builds a Go 1.18-layout table with two functions, by hand, so the
/// parser is checked against the documented layout and not only against
/// what the local Go toolchain writes.
fn synthetic(magic: u32, text_start: u64) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&magic.to_le_bytes());
    t.extend_from_slice(&[0, 0, 1, 8]);
    let header_words = 8;
    let names_off = 8 + header_words * 8;
    let names = b"main.a\0main.b\0";
    let cu_off = names_off + names.len();
    let cutab = [0u32, 7u32];
    let file_off = cu_off + 8;
    let files = b"/src/a.go\0";
    let pc_off = file_off + files.len();
    // pcfile: value -1 + zigzag(2)=+1 → 0 over 16 bytes; end.
    // pcln: -1 + zigzag(22)=+11 → 10 over 16 bytes; end.
    let pctab = [0u8, 2, 16, 0, 22, 16, 0];
    let functab_off = pc_off + pctab.len();
    for w in [2u64, 1, text_start, names_off as u64, cu_off as u64, file_off as u64, pc_off as u64, functab_off as u64]
    {
        t.extend_from_slice(&w.to_le_bytes());
    }
    t.extend_from_slice(names);
    for c in cutab {
        t.extend_from_slice(&c.to_le_bytes());
    }
    t.extend_from_slice(files);
    t.extend_from_slice(&pctab);
    // functab: (entryoff, funcoff) × 2, then the end offset; _funcs follow.
    let func0 = 2 * 8 + 4;
    let func_size = 44;
    for (entry, f) in [(0u32, func0), (0x20, func0 + func_size)] {
        t.extend_from_slice(&entry.to_le_bytes());
        t.extend_from_slice(&(f as u32).to_le_bytes());
    }
    t.extend_from_slice(&0x50u32.to_le_bytes());
    for (entry, name) in [(0u32, 0u32), (0x20, 7)] {
        let fields = [entry, name, 0, 0, 0, 1, 4, 0, 0, 0, 0];
        for f in fields {
            t.extend_from_slice(&f.to_le_bytes());
        }
    }
    t
}

#[test]
fn parses_a_hand_built_go118_table() {
    let data = synthetic(0xffff_fff0, 0x40_1000);
    let table = parse_pclntab(&data, None).unwrap();
    assert_eq!(table.version(), PclnVersion::Go118);
    let f = table.functions().unwrap();
    assert_eq!(f.len(), 2);
    assert_eq!((f[0].name.as_str(), f[0].entry, f[0].end), ("main.a", 0x40_1000, 0x40_1020));
    assert_eq!((f[1].name.as_str(), f[1].entry, f[1].end), ("main.b", 0x40_1020, 0x40_1050));
    assert_eq!(f[0].file.as_deref(), Some("/src/a.go"));
    assert_eq!(f[0].line, Some(10));
}

#[test]
fn functions_named_elsewhere_get_no_name_and_keep_their_file_and_line() {
    let data = synthetic(0xffff_fff0, 0x40_1000);
    let table = parse_pclntab(&data, None).unwrap();
    let mut released = 0;
    let f = table.functions_with(|entry| entry == 0x40_1000, || released += 1).unwrap();
    assert_eq!((f[0].name.as_str(), f[0].file.as_deref(), f[0].line), ("", Some("/src/a.go"), Some(10)));
    assert_eq!(f[1].name, "main.b");
    // Two functions: fewer than one release's worth.
    assert_eq!(released, 0);
    assert_eq!(table.functions().unwrap()[0].name, "main.a");
}

#[test]
fn zero_text_start_takes_the_hint() {
    let data = synthetic(0xffff_fff1, 0);
    let f = parse_pclntab(&data, Some(0x1000)).unwrap().functions().unwrap();
    assert_eq!(f[0].entry, 0x1000);
    let f = parse_pclntab(&data, None).unwrap().functions().unwrap();
    assert_eq!(f[1].entry, 0x20);
}

#[test]
fn hostile_bytes_never_panic() {
    let good = synthetic(0xffff_fff0, 0x40_1000);
    for cut in 0..good.len() {
        if let Ok(t) = parse_pclntab(&good[..cut], None) {
            let _ = t.functions();
        }
    }
    for at in 0..good.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut data = good.clone();
            data[at] ^= flip;
            if let Ok(t) = parse_pclntab(&data, None) {
                let _ = t.functions();
            }
        }
    }
}

#[test]
fn rejects_unknown_magic_and_huge_counts() {
    assert!(parse_pclntab(&[0; 64], None).is_err());
    let mut data = synthetic(0xffff_fff0, 0);
    data[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(parse_pclntab(&data, None).is_err());
}

#[test]
fn varints_and_header_probe() {
    let mut s: &[u8] = &[0x80, 0x01, 0x05];
    assert_eq!(read_uvarint(&mut s).unwrap(), 128);
    assert_eq!(s, &[0x05]);
    assert!(read_uvarint(&mut &[0x80u8, 0x80][..]).is_err());
    assert!(looks_like_header(&[0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 8], Machine::X86_64));
    assert!(!looks_like_header(&[0xf1, 0xff, 0xff, 0xff, 0, 0, 4, 8], Machine::X86_64));
    assert!(looks_like_header(&[0xf1, 0xff, 0xff, 0xff, 0, 0, 4, 8], Machine::Aarch64));
    assert!(!looks_like_header(&[0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 8], Machine::Aarch64));
    assert!(!looks_like_header(&[0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 4], Machine::X86_64), "32-bit pointers");
}

const GOFUNC: u64 = 0x9000;

/// A Go 1.20-layout table with one function, `main.outer` (0x30 bytes), into
/// which `main.inner` (from b.go) was inlined at 0x10..0x20, called from
/// a.go:10. Returns the table and the inline tree, which lives at `GOFUNC`.
fn synthetic_inline(text_start: u64) -> (Vec<u8>, Vec<u8>) {
    let mut t = Vec::new();
    t.extend_from_slice(&0xffff_fff1u32.to_le_bytes());
    t.extend_from_slice(&[0, 0, 1, 8]);
    let names_off = 8 + 8 * 8;
    let names = b"main.outer\0main.inner\0";
    let cu_off = names_off + names.len();
    let file_off = cu_off + 8;
    let files = b"/src/a.go\0/src/b.go\0";
    let pc_off = file_off + files.len();
    let pcfile = [2u8, 0x10, 2, 0x10, 1, 0x10, 0];
    let pcln = [22u8, 0x10, 20, 0x10, 17, 0x10, 0];
    let pcinl = [0u8, 0x10, 2, 0x10, 1, 0x10, 0];
    let mut pctab = vec![0u8];
    let (f_at, l_at) = (pctab.len(), pctab.len() + pcfile.len());
    let i_at = l_at + pcln.len();
    pctab.extend(pcfile.iter().chain(&pcln).chain(&pcinl));
    let functab_off = pc_off + pctab.len();
    for w in [1u64, 2, text_start, names_off as u64, cu_off as u64, file_off as u64, pc_off as u64, functab_off as u64]
    {
        t.extend_from_slice(&w.to_le_bytes());
    }
    t.extend_from_slice(names);
    for c in [0u32, 10] {
        t.extend_from_slice(&c.to_le_bytes());
    }
    t.extend_from_slice(files);
    t.extend_from_slice(&pctab);
    // functab: one (entryoff, funcoff) pair and the end offset; the _func follows.
    t.extend_from_slice(&0u32.to_le_bytes());
    t.extend_from_slice(&12u32.to_le_bytes());
    t.extend_from_slice(&0x30u32.to_le_bytes());
    // entryoff, nameoff, args, deferreturn, pcsp, pcfile, pcln, npcdata,
    // cuOffset, startLine, (funcID, flag, pad, nfuncdata=4), pcdata×3, funcdata×4.
    let fields = [0u32, 0, 0, 0, 0, f_at as u32, l_at as u32, 3, 0, 9, 4 << 24, 0, 0, i_at as u32, !0, !0, !0, 0];
    for f in fields {
        t.extend_from_slice(&f.to_le_bytes());
    }
    // One inlinedCall: funcID, pad, nameOff → "main.inner", parentPc 0x8, startLine.
    let mut tree = vec![0u8; 4];
    for f in [11u32, 0x8, 19] {
        tree.extend_from_slice(&f.to_le_bytes());
    }
    (t, tree)
}

fn reader<'t>(tree: &'t [u8]) -> impl Fn(u64, u64) -> Option<&'t [u8]> {
    move |addr, len| {
        let at = usize::try_from(addr.checked_sub(GOFUNC)?).ok()?;
        tree.get(at..at.checked_add(usize::try_from(len).ok()?)?)
    }
}

#[test]
fn inline_tree_of_a_hand_built_go120_table() {
    let (data, tree) = synthetic_inline(0x40_1000);
    let table = parse_pclntab(&data, None).unwrap();
    let calls = table.inlined_calls(Some(GOFUNC), reader(&tree)).unwrap();
    assert_eq!(
        calls,
        vec![InlinedCall {
            caller: 0x40_1000,
            callee: "main.inner".into(),
            addr: 0x40_1010,
            call_file: Some("/src/a.go".into()),
            call_line: Some(10),
            file: Some("/src/b.go".into()),
        }]
    );
    // Go 1.18+ funcdata are offsets from go:func.*; without it, say so.
    assert!(table.inlined_calls(None, reader(&tree)).is_err());
}

#[test]
fn line_ranges_of_a_hand_built_table() {
    let (data, _) = synthetic_inline(0x40_1000);
    let table = parse_pclntab(&data, None).unwrap();
    let b = table.line_ranges(&mut |f| f.ends_with("b.go")).unwrap();
    assert_eq!(
        b,
        vec![LineRange { function: 0x40_1000, start: 0x40_1010, end: 0x40_1020, file: "/src/b.go".into(), line: 20 }]
    );
    let a = table.line_ranges(&mut |f| f == "/src/a.go").unwrap();
    assert_eq!(a.iter().map(|r| (r.start - 0x40_1000, r.line)).collect::<Vec<_>>(), vec![(0, 10), (0x20, 11)]);
    assert!(table.line_ranges(&mut |_| false).unwrap().is_empty());
}

#[test]
fn hostile_inline_trees_and_line_tables_never_panic() {
    let (good, tree) = synthetic_inline(0x40_1000);
    let exercise = |data: &[u8], tree: &[u8]| {
        if let Ok(t) = parse_pclntab(data, None) {
            let _ = t.line_ranges(&mut |_| true);
            let _ = t.inlined_calls(Some(GOFUNC), reader(tree));
        }
    };
    for cut in 0..good.len() {
        exercise(&good[..cut], &tree);
    }
    for cut in 0..tree.len() {
        exercise(&good, &tree[..cut]);
    }
    for at in 0..good.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut data = good.clone();
            data[at] ^= flip;
            exercise(&data, &tree);
        }
    }
    for at in 0..tree.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut t = tree.clone();
            t[at] ^= flip;
            exercise(&good, &t);
        }
    }
    // A node whose call site is inside itself would walk forever. Go 1.26
    // writes such nodes for calls inlined at the entry of a function with
    // no stack check (parentPc 0): the walk ends there, as at the top.
    let mut cyclic = tree.clone();
    cyclic[8..12].copy_from_slice(&0x10u32.to_le_bytes());
    let calls = parse_pclntab(&good, None).unwrap().inlined_calls(Some(GOFUNC), reader(&cyclic)).unwrap();
    let honest = parse_pclntab(&good, None).unwrap().inlined_calls(Some(GOFUNC), reader(&tree)).unwrap();
    assert!(!calls.is_empty() && calls.len() <= honest.len(), "{calls:?} vs {honest:?}");
}
