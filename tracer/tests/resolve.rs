//! `tracer::resolve` against real Go binaries. The fixtures in
//! `tests/fixtures/resolve/` are built here with the machine's Go toolchain
//! (never committed as binaries) and checked against two independent
//! oracles: `go tool nm` (the `.symtab`) and Go's own `debug/gosym` reading
//! `.gopclntab` (`oracle.go`). Go is a hard requirement: without it these
//! tests fail, they never pass by skipping.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::Instant,
};

use tracer::resolve::{Binary, Function, ResolveError, Source};

const GO: &str = "/usr/bin/go";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/resolve");

struct Fixtures {
    _dir: tempfile::TempDir,
    /// The variants are built from one directory so their file names agree.
    default: PathBuf,
    stripped: PathBuf,
    debug: PathBuf,
    pie: PathBuf,
    oracle: PathBuf,
    source: String,
}

fn go(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(GO)
        .args(args)
        .current_dir(dir)
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("CGO_ENABLED", "0")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {GO} (these tests need Go): {e}"));
    assert!(out.status.success(), "go {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Builds each fixture variant once per test binary.
fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        for (module, file) in [("target", "target.go"), ("oracle", "oracle.go")] {
            let src = dir.path().join(module);
            std::fs::create_dir_all(&src).unwrap();
            std::fs::copy(Path::new(FIXTURES).join(file), src.join(file)).unwrap();
            std::fs::write(src.join("go.mod"), format!("module example.com/{module}\n\ngo 1.19\n")).unwrap();
        }
        let build = |name: &str, module: &str, flags: &[&str]| {
            let src = dir.path().join(module);
            let out = dir.path().join(format!("{name}.bin"));
            let mut args = vec!["build", "-o", out.to_str().unwrap()];
            args.extend_from_slice(flags);
            args.push(".");
            go(&src, &args);
            out
        };
        Fixtures {
            default: build("default", "target", &[]),
            stripped: build("stripped", "target", &["-ldflags=-s -w"]),
            debug: build("debug", "target", &["-gcflags=all=-N -l"]),
            pie: build("pie", "target", &["-buildmode=pie"]),
            oracle: build("oracle", "oracle", &[]),
            source: std::fs::read_to_string(Path::new(FIXTURES).join("target.go")).unwrap(),
            _dir: dir,
        }
    })
}

/// `go tool nm -size -sort address`: text symbols with a size, by address.
fn nm(bin: &Path) -> BTreeMap<u64, (String, u64)> {
    let out = go(Path::new("/"), &["tool", "nm", "-size", "-sort", "address", bin.to_str().unwrap()]);
    let mut syms = BTreeMap::new();
    for line in String::from_utf8(out).unwrap().lines() {
        let mut rest = line.trim_start();
        let mut field = || {
            let (f, r) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            rest = r.trim_start();
            f.to_owned()
        };
        let (addr, size, kind) = (field(), field(), field());
        if (kind == "T" || kind == "t") && size != "0" {
            let addr = u64::from_str_radix(&addr, 16).unwrap();
            syms.insert(addr, (rest.to_owned(), size.parse().unwrap()));
        }
    }
    syms
}

/// Go's `debug/gosym` view of the pclntab: (entry, end, name, file, line).
fn gosym(bin: &Path) -> Vec<(u64, u64, String, String, i64)> {
    let out = Command::new(&fixtures().oracle).arg(bin).output().unwrap();
    assert!(out.status.success(), "oracle failed on {}: {}", bin.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
            (hex(f[0]), hex(f[1]), f[2].to_owned(), f[3].to_owned(), f[4].parse().unwrap())
        })
        .collect()
}

fn assert_matches_gosym(bin: &Path, functions: &[Function]) {
    let oracle = gosym(bin);
    assert_eq!(functions.len(), oracle.len(), "{}: function count", bin.display());
    for (f, (entry, end, name, file, line)) in functions.iter().zip(&oracle) {
        // gosym reports "no line" (markers such as go:textfipsstart) as -1.
        let got = (f.entry, f.end, f.name.as_str(), f.file.as_deref().unwrap_or(""), f.line.map_or(-1, i64::from));
        assert_eq!(got, (*entry, *end, name.as_str(), file.as_str(), *line), "{}", bin.display());
    }
}

/// Equal lists, reporting only the first difference (the lists are long).
fn assert_same(got: &[Function], want: &[Function], what: &str) {
    if let Some(i) = (0..got.len().min(want.len())).find(|&i| got[i] != want[i]) {
        panic!("{what}: first difference at {i}:\n got {:?}\nwant {:?}", got[i], want[i]);
    }
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
}

/// Whether a pclntab name and a symtab name denote the same function. The
/// ELF symbol of an assembly (ABI0) function that also has an ABIInternal
/// wrapper carries an `.abi0` suffix; and the linker writes pclntab names
/// with everything from the first `[` to the last `]` elided to `[...]`
/// (Go 1.18+, for runtime.FuncForPC), while `.symtab` keeps it.
fn same_function_name(pclntab: &str, symtab: &str) -> bool {
    let symtab = symtab.strip_suffix(".abi0").unwrap_or(symtab);
    let elided = match (symtab.find('['), symtab.rfind(']')) {
        (Some(i), Some(j)) if i < j => format!("{}...{}", &symtab[..=i], &symtab[j..]),
        _ => symtab.to_owned(),
    };
    pclntab == elided
}

fn open(path: &Path) -> Binary {
    Binary::open(path).unwrap_or_else(|e| panic!("{e}"))
}

/// 1-based line of the first source line containing `needle`.
fn line_of(source: &str, needle: &str) -> u32 {
    source.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle:?} not in fixture")) as u32 + 1
}

#[test]
fn symtab_and_pclntab_agree_with_go_tool_nm() {
    let fx = fixtures();
    let bin = open(&fx.default);
    let symtab = bin.functions_from(Source::Symtab).unwrap();
    let pcln = bin.functions_from(Source::Pclntab).unwrap();
    let oracle = nm(&fx.default);
    assert!(pcln.len() > 500, "only {} functions", pcln.len());
    // Every symtab function is a sized text symbol to nm, with the same size.
    assert_eq!(symtab.len(), oracle.len());
    for f in &symtab {
        assert_eq!(oracle.get(&f.entry), Some(&(f.name.clone(), f.end - f.entry)), "{f:?}");
    }
    // pclntab and symtab list the same functions at the same entries; the
    // pclntab extent runs to the next function, so it covers the symbol's.
    assert_eq!(pcln.len(), symtab.len());
    for (p, s) in pcln.iter().zip(&symtab) {
        assert!(p.entry == s.entry && same_function_name(&p.name, &s.name), "{p:?} vs {s:?}");
        assert!(p.end >= s.end, "{p:?} ends before {s:?}");
        assert_eq!(p.source, Source::Pclntab);
    }
    // The combined list takes symtab extents and pclntab positions.
    let all = bin.functions().unwrap();
    assert_eq!(all.len(), symtab.len());
    for ((a, s), p) in all.iter().zip(&symtab).zip(&pcln) {
        assert_eq!((a.entry, a.end, a.source), (s.entry, s.end, Source::Symtab));
        assert_eq!((&a.file, a.line), (&p.file, p.line));
    }
    assert!(all.windows(2).all(|w| w[0].entry <= w[1].entry));
}

#[test]
fn pclntab_agrees_with_go_debug_gosym() {
    let fx = fixtures();
    for path in [&fx.default, &fx.stripped, &fx.debug, &fx.pie] {
        assert_matches_gosym(path, &open(path).functions_from(Source::Pclntab).unwrap());
    }
}

#[test]
fn stripped_build_has_the_same_layout_as_the_default_one() {
    let fx = fixtures();
    let full = open(&fx.default).functions_from(Source::Pclntab).unwrap();
    let stripped = open(&fx.stripped);
    assert!(stripped.functions_from(Source::Symtab).unwrap().is_empty());
    // -s -w drops tables, not code: same names at the same addresses.
    let all = stripped.functions().unwrap();
    assert_same(&all, &full, "stripped vs default");
    assert!(all.iter().all(|f| f.source == Source::Pclntab));
}

#[test]
fn file_and_line_match_the_fixture_source() {
    let fx = fixtures();
    let src = &fx.source;
    // The line is that of the entry instruction: the declaration when the
    // function starts with a stack-check prologue, the first statement when
    // an optimized leaf has none (Count, and the closure).
    let expect = [
        ("main.(*Store).Create", line_of(src, "func (s *Store) Create"), 0),
        ("main.Store.Count", line_of(src, "func (s Store) Count"), 1),
        ("main.MakeCounter", line_of(src, "func MakeCounter"), 0),
        ("main.MakeCounter.func1", line_of(src, "return func() int {"), 1),
        ("main.main", line_of(src, "func main()"), 0),
    ];
    for path in [&fx.default, &fx.stripped, &fx.debug, &fx.pie] {
        let bin = open(path);
        let functions = bin.functions().unwrap();
        for (name, line, slack) in expect {
            let f = functions.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("{name} missing in {path:?}"));
            assert!(f.file.as_deref().is_some_and(|p| p.ends_with("/target.go")), "{f:?}");
            assert!(f.line.is_some_and(|l| (line..=line + slack).contains(&l)), "{f:?}: want line {line}");
            assert!(f.end > f.entry);
        }
        // The value receiver's pointer wrapper is generated code.
        let wrapper = bin.find("main.(*Store).Count").unwrap().expect("pointer wrapper for the value receiver");
        assert_eq!(wrapper.file.as_deref(), Some("<autogenerated>"));
        let sums: Vec<_> = functions.iter().filter(|f| f.name.starts_with("main.Sum[")).collect();
        assert!(!sums.is_empty(), "no generic instantiation in {path:?}");
        assert!(sums.iter().all(|f| f.line == Some(line_of(src, "func Sum["))));
        assert_eq!(bin.find("main.nope").unwrap(), None);
    }
}

#[test]
fn file_offsets_for_pie_and_non_pie() {
    let fx = fixtures();
    for path in [&fx.default, &fx.pie] {
        let bin = open(path);
        let file = std::fs::read(path).unwrap();
        let main = bin.find("main.main").unwrap().unwrap();
        let off = bin.file_offset(main.entry).unwrap() as usize;
        let len = main.end - main.entry;
        assert_eq!(&file[off..off + len as usize], bin.text_at(main.entry, len).unwrap());
        assert!(matches!(bin.text_at(0, 1), Err(ResolveError::AddressNotMapped { addr: 0 })));
        assert!(bin.text_at(main.entry, u64::MAX).is_err());
        assert!(bin.file_offset(u64::MAX).is_err());
    }
    // Go's internal linker links PIE at 0x400000 like non-PIE, but moves
    // the pclntab into `.data.rel.ro.gopclntab`.
    assert_eq!(&std::fs::read(&fx.pie).unwrap()[16..18], &3u16.to_le_bytes(), "PIE fixture is not ET_DYN");
}

#[test]
fn build_info_version_and_id() {
    let fx = fixtures();
    for path in [&fx.default, &fx.stripped] {
        let bin = open(path);
        bin.check_go().unwrap();
        let info = bin.build_info().expect("build info");
        assert!(info.go_version.starts_with("go1."), "{info:?}");
        assert!(info.main_path.as_deref().is_some_and(|p| p.starts_with("example.com/")), "{info:?}");
        assert!(bin.build_id().is_some_and(|id| !id.is_empty()));
    }
}

/// Zeroing `e_shoff`/`e_shnum`/`e_shstrndx` removes every section: the
/// pclntab and build info must then be found by scanning segments.
#[test]
fn tables_are_found_without_section_headers() {
    let fx = fixtures();
    for path in [&fx.default, &fx.stripped, &fx.pie] {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[0x28..0x30].fill(0);
        bytes[0x3c..0x40].fill(0);
        let bin = Binary::from_bytes(path.clone(), bytes).unwrap();
        bin.check_go().unwrap();
        assert_eq!(bin.build_info(), open(path).build_info());
        let want = open(path).functions_from(Source::Pclntab).unwrap();
        assert_same(&bin.functions().unwrap(), &want, &format!("{} without sections", path.display()));
    }
}

/// Go 1.26 linkers write `textStart = 0`. Simulate that by zeroing the
/// field: the base must then come from `runtime.text` (default build),
/// moduledata (stripped), or moduledata with no sections at all.
#[test]
fn zero_text_start_falls_back_to_other_bases() {
    let fx = fixtures();
    for (path, drop_sections) in [(&fx.default, false), (&fx.stripped, false), (&fx.stripped, true), (&fx.pie, true)] {
        let want = open(path).functions_from(Source::Pclntab).unwrap();
        let mut bytes = std::fs::read(path).unwrap();
        let (pcln, _) = section(path, "gopclntab");
        assert_ne!(bytes[pcln + 24..pcln + 32], [0; 8], "fixture already has textStart 0");
        bytes[pcln + 24..pcln + 32].fill(0);
        if drop_sections {
            bytes[0x28..0x30].fill(0);
            bytes[0x3c..0x40].fill(0);
        }
        let bin = Binary::from_bytes(path.clone(), bytes).unwrap();
        let what = format!("{} textStart=0 sections={}", path.display(), !drop_sections);
        assert_same(&bin.functions_from(Source::Pclntab).unwrap(), &want, &what);
    }
}

#[test]
fn non_elf_non_go_and_missing_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "just some text, not an executable\n").unwrap();
    assert!(matches!(Binary::open(&text), Err(ResolveError::NotElf { .. })));
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    assert!(matches!(Binary::open(&empty), Err(ResolveError::NotElf { .. })));
    assert!(matches!(Binary::open(&dir.path().join("missing")), Err(ResolveError::Io { .. })));
    let truncated = dir.path().join("truncated");
    std::fs::write(&truncated, &std::fs::read("/bin/true").unwrap()[..3000]).unwrap();
    assert!(matches!(Binary::open(&truncated), Err(ResolveError::NotElf { .. })));
    let c = open(Path::new("/bin/true"));
    assert!(matches!(c.check_go(), Err(ResolveError::NotGo { .. })));
    assert!(matches!(c.functions(), Err(ResolveError::NotGo { .. })));
    assert!(c.build_info().is_none());
    // Symbols are read for arm64 too (planning refuses it, see below); a CPU
    // ktrace knows nothing of is refused at open.
    let mut arm = std::fs::read("/bin/true").unwrap();
    arm[0x12..0x14].copy_from_slice(&183u16.to_le_bytes());
    let arm = Binary::from_bytes("arm", arm).unwrap();
    assert_eq!(arm.machine(), tracer::resolve::Machine::Aarch64);
    assert!(matches!(arm.check_go(), Err(ResolveError::NotGo { .. })));
    let mut sparc = std::fs::read("/bin/true").unwrap();
    sparc[0x12..0x14].copy_from_slice(&43u16.to_le_bytes());
    assert!(matches!(Binary::from_bytes("sparc", sparc), Err(ResolveError::UnsupportedArch { .. })));
}

/// Opens and fully reads hostile bytes; only a panic fails.
fn exercise(bytes: Vec<u8>) {
    if let Ok(bin) = Binary::from_bytes("hostile", bytes) {
        let _ = bin.check_go();
        let _ = bin.build_id();
        if let Ok(functions) = bin.functions() {
            for f in functions.iter().take(50) {
                let _ = bin.text_at(f.entry, f.end.wrapping_sub(f.entry).min(1 << 16));
                let _ = bin.file_offset(f.entry);
            }
        }
        let _ = bin.functions_from(Source::Symtab);
        let _ = bin.inlined_calls();
        let _ = bin.line_ranges(&mut |f| f.ends_with("target.go"));
    }
}

fn section(path: &Path, name: &str) -> (usize, usize) {
    let out = Command::new("readelf").args(["-SW", path.to_str().unwrap()]).output().expect("readelf (binutils)");
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().find(|l| l.contains(&format!("{name} "))).unwrap_or_else(|| panic!("{name} missing"));
    let fields: Vec<&str> = line[line.find(name).unwrap()..].split_whitespace().collect();
    (usize::from_str_radix(fields[3], 16).unwrap(), usize::from_str_radix(fields[4], 16).unwrap())
}

#[test]
fn truncated_binaries_never_panic() {
    let fx = fixtures();
    let bytes = std::fs::read(&fx.stripped).unwrap();
    let (pcln, pcln_len) = section(&fx.stripped, "gopclntab");
    let cuts = (0..bytes.len()).step_by(bytes.len() / 150).chain((pcln..pcln + pcln_len).step_by(pcln_len / 50 + 1));
    for cut in cuts {
        exercise(bytes[..cut].to_vec());
    }
}

#[test]
fn bit_flipped_tables_never_panic() {
    let fx = fixtures();
    let bytes = std::fs::read(&fx.stripped).unwrap();
    let (pcln, _) = section(&fx.stripped, "gopclntab");
    let (info, info_len) = section(&fx.stripped, ".go.buildinfo");
    let header = pcln..pcln + 96;
    // The functab sits at the pclnOffset the header names (word 7 from 1.18).
    let functab = pcln + u64::from_le_bytes(bytes[pcln + 64..pcln + 72].try_into().unwrap()) as usize;
    let positions =
        header.chain((functab..functab + 4096).step_by(37)).chain(info..info + info_len.min(256)).chain(0..64);
    for at in positions {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut copy = bytes.clone();
            copy[at] ^= flip;
            exercise(copy);
        }
    }
    // The symbol table and its strings, in the unstripped build.
    let bytes = std::fs::read(&fx.default).unwrap();
    let (symtab, symtab_len) = section(&fx.default, ".symtab");
    let (strtab, strtab_len) = section(&fx.default, ".strtab");
    let positions = (symtab..symtab + symtab_len)
        .step_by(symtab_len / 100)
        .chain((strtab..strtab + strtab_len).step_by(strtab_len / 50));
    for at in positions {
        let mut copy = bytes.clone();
        copy[at] ^= 0xff;
        exercise(copy);
    }
}

/// The big Go binaries installed on this machine, checked against
/// `debug/gosym` and timed (for the ≤150 ms on 60 MB target; run with
/// `--release --nocapture` for a meaningful figure).
#[test]
fn large_installed_binaries() {
    let candidates = [
        "/usr/bin/etcd",
        "/usr/lib/go-1.19/pkg/tool/linux_amd64/compile",
        "/usr/lib/google-cloud-sdk/bin/kubectl.1.33",
        "/usr/lib/google-cloud-sdk/bin/anthoscli",
        "/usr/lib/google-cloud-sdk/bin/local-extract",
    ];
    let present: Vec<&str> = candidates.into_iter().filter(|p| Path::new(p).exists()).collect();
    assert!(!present.is_empty(), "no large Go binary found; expected {candidates:?}");
    for path in present {
        let path = Path::new(path);
        let start = Instant::now();
        let bin = open(path);
        let functions = bin.functions().unwrap();
        let took = start.elapsed();
        let size = std::fs::metadata(path).unwrap().len();
        eprintln!(
            "{}: {:.1} MB, {} functions, {:?} via {:?}, open+functions() {:.1} ms",
            path.display(),
            size as f64 / 1e6,
            functions.len(),
            bin.build_info().map(|i| i.go_version.as_str()),
            functions.first().map(|f| f.source),
            took.as_secs_f64() * 1e3
        );
        bin.check_go().unwrap();
        assert_matches_gosym(path, &functions);
        // The same table must be found by scanning when sections are gone,
        // and with textStart zeroed (as Go 1.26 writes it) the base must
        // come from moduledata: for externally linked binaries (etcd) the
        // segment-based guess would be wrong.
        let mut bytes = std::fs::read(path).unwrap();
        let (pcln, _) = section(path, "gopclntab");
        if matches!(bytes[pcln..pcln + 4], [0xf0 | 0xf1, 0xff, 0xff, 0xff]) {
            bytes[pcln + 24..pcln + 32].fill(0);
        }
        bytes[0x28..0x30].fill(0);
        bytes[0x3c..0x40].fill(0);
        let bare = Binary::from_bytes(path, bytes).unwrap();
        assert_same(&bare.functions().unwrap(), &functions, &format!("{} without sections", path.display()));
        assert_eq!(bare.build_info(), bin.build_info());
    }
}

/// An arm64 Go binary reads fine but cannot be planned yet: `ktrace funcs`
/// says so in one line with exit code 3, instead of planning x86 sites.
#[test]
fn arm64_binary_is_refused_by_the_planner_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("go.mod"), "module example.com/arm\n\ngo 1.19\n").unwrap();
    std::fs::write(dir.path().join("main.go"), "package main\n\nfunc main() { println(\"hi\") }\n").unwrap();
    let bin = dir.path().join("arm.bin");
    let out = Command::new(GO)
        .args(["build", "-o", bin.to_str().unwrap(), "."])
        .current_dir(dir.path())
        .env("GOARCH", "arm64")
        .env("GOOS", "linux")
        .env("CGO_ENABLED", "0")
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {GO} (these tests need Go): {e}"));
    assert!(out.status.success(), "GOARCH=arm64 go build failed:\n{}", String::from_utf8_lossy(&out.stderr));

    let binary = Binary::open(&bin).unwrap();
    assert_eq!(binary.machine(), tracer::resolve::Machine::Aarch64);
    let functions = binary.functions().unwrap();
    let main = functions.iter().find(|f| f.name == "main.main").expect("symbols resolve on arm64");
    let err = tracer::plan::Planner::new(&binary, &functions).plan(main).unwrap_err();
    assert!(matches!(err, tracer::plan::PlanError::UnsupportedArch("aarch64")), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_ktrace"))
        .args(["funcs", "--binary", bin.to_str().unwrap(), "--funcs", "main.main"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("aarch64") && stderr.contains("x86-64"), "{stderr}");
}
