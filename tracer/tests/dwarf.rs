//! `tracer::resolve::Dwarf` against the kube-apiserver test targets
//! (`cargo xtask build-targets`). The oracle for functions is the ELF
//! `.symtab`, written by the same linker from a different table; for
//! parameters, the Go source of `etcd3.(*store).Create`. Mutated copies of
//! the DWARF check that hostile input gives errors, never panics.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
};

use object::{Object, ObjectSection};
use testkit::Variant;
use tracer::resolve::{Binary, Dwarf, Function, Param, ResolveError, Source, TypeKind};

const CREATE: &str = "k8s.io/apiserver/pkg/storage/etcd3.(*store).Create";

fn binary(v: Variant) -> Binary {
    let path = testkit::target_binary(v).unwrap_or_else(|e| panic!("{e:#}"));
    Binary::open(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// DWARF is read once per variant: in a debug build it takes seconds.
fn dwarf(v: Variant) -> Arc<Dwarf> {
    static CACHE: OnceLock<std::sync::Mutex<HashMap<&'static str, Arc<Dwarf>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(d) = cache.lock().unwrap().get(v.name()) {
        return d.clone();
    }
    let d = Arc::new(binary(v).dwarf().unwrap().unwrap_or_else(|| panic!("{v}: no DWARF")));
    cache.lock().unwrap().insert(v.name(), d.clone());
    d
}

#[test]
fn stripped_binary_has_no_dwarf() {
    assert!(binary(Variant::Stripped).dwarf().unwrap().is_none());
    assert!(binary(Variant::Stripped).functions_from(Source::Dwarf).unwrap().is_empty());
}

fn functions_agree_with_symtab(v: Variant) {
    let b = binary(v);
    let d = dwarf(v);
    let symtab_fns = b.functions_from(Source::Symtab).unwrap();
    let mut symtab: HashMap<&str, Vec<&Function>> = HashMap::new();
    for f in &symtab_fns {
        symtab.entry(f.name.as_str()).or_default().push(f);
    }

    let create = d.functions().iter().find(|f| f.name == CREATE).expect("Create in DWARF");
    let sym = &symtab[CREATE];
    assert_eq!(sym.len(), 1);
    assert_eq!((create.entry, create.end), (sym[0].entry, sym[0].end), "{v}");
    assert_eq!(create.source, Source::Dwarf);
    // File and line at the entry come from the same compiler tables as
    // pclntab's, so they must agree too.
    let pcln = b.functions_from(Source::Pclntab).unwrap();
    let pcln = pcln.iter().find(|f| f.name == CREATE).expect("Create in pclntab");
    assert_eq!((&create.file, create.line), (&pcln.file, pcln.line), "{v}");
    assert!(create.file.as_deref().is_some_and(|f| f.ends_with("storage/etcd3/store.go")), "{:?}", create.file);

    let (mut compared, mut bad) = (0, Vec::new());
    for f in d.functions() {
        // DWARF names an ABI wrapper like the function it wraps; `.symtab`
        // suffixes the ABI0 one of the pair with `.abi0`.
        let abi0 = format!("{}.abi0", f.name);
        let candidates: Vec<&Function> =
            [f.name.as_str(), &abi0].iter().filter_map(|n| symtab.get(n)).flatten().copied().collect();
        if candidates.is_empty() {
            continue;
        }
        compared += 1;
        if !candidates.iter().any(|s| (s.entry, s.end) == (f.entry, f.end)) {
            bad.push(format!("{}: dwarf {:#x}..{:#x}, symtab {candidates:x?}", f.name, f.entry, f.end));
        }
    }
    assert!(bad.is_empty(), "{v}: {} of {compared} disagree, e.g. {:#?}", bad.len(), &bad[..bad.len().min(10)]);
    assert!(compared > 1000, "{v}: only {compared} functions compared");
    eprintln!("{v}: {compared} DWARF functions agree with .symtab");
    // Binary::functions_from agrees with Dwarf::functions.
    assert_eq!(b.functions_from(Source::Dwarf).unwrap().len(), d.functions().len());
}

#[test]
fn optimized_functions_agree_with_symtab() {
    functions_agree_with_symtab(Variant::Optimized);
}

#[test]
fn debug_functions_agree_with_symtab() {
    functions_agree_with_symtab(Variant::Debug);
}

fn param(name: &str, type_name: &str, size: u64, is_result: bool, kind: TypeKind) -> Param {
    Param { name: name.into(), type_name: type_name.into(), size, is_result, kind }
}

#[test]
fn create_params() {
    // func (s *store) Create(ctx context.Context, key string, obj, out runtime.Object, ttl uint64) error
    let object = "k8s.io/apimachinery/pkg/runtime.Object";
    let want = [
        param("s", "*k8s.io/apiserver/pkg/storage/etcd3.store", 8, false, TypeKind::Pointer),
        param("ctx", "context.Context", 16, false, TypeKind::Interface),
        param("key", "string", 16, false, TypeKind::String),
        param("obj", object, 16, false, TypeKind::Interface),
        param("out", object, 16, false, TypeKind::Interface),
        param("ttl", "uint64", 8, false, TypeKind::Int { size: 8 }),
        param("~r0", "error", 16, true, TypeKind::Interface),
    ];
    for v in [Variant::Optimized, Variant::Debug] {
        assert_eq!(dwarf(v).params(CREATE), Some(&want[..]), "{v}");
    }
    assert_eq!(dwarf(Variant::Optimized).params("no.such.function"), None);
}

#[test]
fn concrete_copy_of_inlined_function_takes_params_from_origin() {
    // `RunLoad.func1` is inlined somewhere and also emitted out of line;
    // that copy names `i` only through DW_AT_abstract_origin, and only it
    // lists the result.
    let d = dwarf(Variant::Optimized);
    let params = d.params("k8s.io/kubernetes/cmd/kube-apiserver/app.RunLoad.func1").expect("RunLoad.func1");
    let names: Vec<(&str, bool)> = params.iter().map(|p| (p.name.as_str(), p.is_result)).collect();
    assert_eq!(names, [("i", false), ("~r0", true)]);
    assert_eq!(params[1].kind, TypeKind::String);
    assert!(matches!(params[0].kind, TypeKind::Int { .. }), "{:?}", params[0]);
}

#[test]
fn other_type_kinds() {
    let d = dwarf(Variant::Optimized);
    // func (s *store) Get(ctx, key string, opts storage.GetOptions, out runtime.Object) error
    let get = d.params("k8s.io/apiserver/pkg/storage/etcd3.(*store).Get").expect("Get");
    let opts = get.iter().find(|p| p.name == "opts").expect("opts");
    let TypeKind::Struct { fields } = &opts.kind else { panic!("{opts:?}") };
    assert!(fields.iter().any(|(n, k, _)| n == "ResourceVersion" && *k == TypeKind::String), "{fields:?}");
    // A slice somewhere among all parameters, and a float.
    let all: Vec<&Param> = d.functions().iter().filter_map(|f| d.params(&f.name)).flatten().collect();
    assert!(all.iter().any(|p| p.kind == TypeKind::Slice && p.type_name.starts_with("[]") && p.size == 24));
    assert!(all.iter().any(|p| p.kind == TypeKind::Float { size: 8 } && p.type_name == "float64"));
}

#[test]
fn runtime_g_offsets() {
    for v in [Variant::Optimized, Variant::Debug] {
        let d = dwarf(v);
        assert_eq!(d.struct_member_offset("runtime.g", "stackguard0"), Some(16), "{v}");
        assert!(d.struct_member_offset("runtime.g", "goid").is_some_and(|o| o > 16), "{v}");
        assert_eq!(d.struct_member_offset("runtime.g", "no_such_member"), None);
        assert_eq!(d.struct_member_offset("runtime.no_such_type", "goid"), None);
    }
}

/// An ELF image of the optimized target whose DWARF sections are stored
/// uncompressed at the end of the file, so mutations hit DWARF bytes
/// rather than zlib. `.debug_info` keeps only its first units (up to
/// ~64 KiB) so each parse is quick: still ~60 ms in a debug build, most
/// of it the runtime unit's line program, hence a few hundred mutations.
struct Fuzzable {
    image: Vec<u8>,
    /// File ranges of `.debug_info` and `.debug_abbrev` in `image`.
    info: std::ops::Range<usize>,
    abbrev: std::ops::Range<usize>,
    /// Where `.debug_info`'s section header keeps its size.
    info_size_field: usize,
    abbrev_size_field: usize,
}

fn fuzzable() -> Fuzzable {
    let path = testkit::target_binary(Variant::Optimized).unwrap();
    let original = std::fs::read(path).unwrap();
    let file = object::File::parse(&original[..]).unwrap();
    let shoff = u64::from_le_bytes(original[0x28..0x30].try_into().unwrap()) as usize;
    let shentsize = u16::from_le_bytes(original[0x3a..0x3c].try_into().unwrap()) as usize;
    let mut image = original.clone();
    let (mut info, mut abbrev, mut info_size_field, mut abbrev_size_field) = (0..0, 0..0, 0, 0);
    for s in file.sections() {
        let name = s.name().unwrap();
        if !name.starts_with(".debug_") {
            continue;
        }
        let mut data = s.uncompressed_data().unwrap().into_owned();
        if name == ".debug_info" {
            let mut end = 0;
            while end < 64 * 1024 && end + 4 <= data.len() {
                end += 4 + u32::from_le_bytes(data[end..end + 4].try_into().unwrap()) as usize;
            }
            data.truncate(end.min(data.len()));
        }
        let at = image.len();
        image.extend_from_slice(&data);
        let header = shoff + s.index().0 * shentsize;
        let flags = u64::from_le_bytes(image[header + 8..header + 16].try_into().unwrap());
        image[header + 8..header + 16]
            .copy_from_slice(&(flags & !u64::from(object::elf::SHF_COMPRESSED)).to_le_bytes());
        image[header + 24..header + 32].copy_from_slice(&(at as u64).to_le_bytes());
        image[header + 32..header + 40].copy_from_slice(&(data.len() as u64).to_le_bytes());
        match name {
            ".debug_info" => (info, info_size_field) = (at..image.len(), header + 32),
            ".debug_abbrev" => (abbrev, abbrev_size_field) = (at..image.len(), header + 32),
            _ => {}
        }
    }
    assert!(!info.is_empty() && !abbrev.is_empty());
    Fuzzable { image, info, abbrev, info_size_field, abbrev_size_field }
}

/// Parses a mutated image; only a typed error or success is acceptable.
fn parse(image: Vec<u8>) -> Result<Option<Dwarf>, ResolveError> {
    let b = Binary::from_bytes("mutated", image).expect("ELF headers untouched");
    let r = b.dwarf();
    if let Err(e) = &r {
        assert!(matches!(e, ResolveError::Corrupt { table: ".debug_info", .. }), "{e}");
    }
    r
}

/// xorshift64: deterministic, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// What `--capture` asks of the types: each parameter's type by name, one
/// level of it, and one level of each member, for functions named before
/// anything else is read (`names`, from the unmutated DWARF), as a run
/// does; then the lists read on first use. On mutated DWARF, only answers,
/// never a panic or a hang.
fn walk_field_types(d: &Dwarf, names: &[String]) {
    use tracer::plan::fields::{Shape, TypeSource};
    let _ = d.struct_member_offset("runtime.g", "goid");
    for name in names {
        for p in d.params(name).unwrap_or_default() {
            let Some(id) = d.named(&p.type_name) else { continue };
            let target = match d.shape(&id) {
                Shape::Pointer(Some(t)) => t,
                _ => id,
            };
            if let Shape::Struct(members) = d.shape(&target) {
                for ty in members.iter().filter_map(|(_, _, t)| t.as_ref()) {
                    let _ = (d.shape(ty), d.name_of(ty), d.embedded(ty));
                }
            }
        }
    }
    for f in d.functions().iter().take(40) {
        let _ = (d.params(&f.name), d.function_name_at(f.entry));
    }
    let _ = (d.inlined_calls().len(), d.line_ranges(&mut |_| true).len());
}

#[test]
fn mutated_dwarf_never_panics() {
    let f = fuzzable();
    let base = parse(f.image.clone()).unwrap().expect("rewritten image keeps its DWARF");
    assert!(!base.functions().is_empty());
    let names: Vec<String> = base.functions().iter().take(40).map(|f| f.name.clone()).collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut err) = (0, 0);
    let mut tally = |r: Result<Option<Dwarf>, ResolveError>| match r {
        Ok(d) => {
            ok += 1;
            d.iter().for_each(|d| walk_field_types(d, &names));
        }
        Err(_) => err += 1,
    };
    for (range, size_field, cuts, flips) in
        [(&f.info, f.info_size_field, 30, 150), (&f.abbrev, f.abbrev_size_field, 15, 60)]
    {
        for _ in 0..cuts {
            let mut image = f.image.clone();
            let len = rng.below(range.len()) as u64;
            image[size_field..size_field + 8].copy_from_slice(&len.to_le_bytes());
            tally(parse(image));
        }
        for _ in 0..flips {
            let mut image = f.image.clone();
            for _ in 0..1 + rng.below(8) {
                let at = range.start + rng.below(range.len());
                image[at] ^= 1 << rng.below(8);
            }
            tally(parse(image));
        }
    }
    eprintln!("mutations: {ok} parsed, {err} rejected as corrupt");
    assert!(err > 0 && ok > 0, "ok {ok}, err {err}: mutations should both fail and survive");
}

#[test]
fn corrupt_compressed_sections_are_errors() {
    let path = testkit::target_binary(Variant::Optimized).unwrap();
    let original = std::fs::read(path).unwrap();
    let file = object::File::parse(&original[..]).unwrap();
    let info = file.section_by_name(".debug_info").unwrap();
    let (start, len) = info.compressed_file_range().map(|r| (r.offset as usize, r.compressed_size as usize)).unwrap();
    let header = info.file_range().unwrap().0 as usize;
    drop(file);
    // A decompression bomb: Elf64_Chdr.ch_size claims 2^60 bytes.
    let mut bomb = original.clone();
    bomb[header + 8..header + 16].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(matches!(parse(bomb), Err(ResolveError::Corrupt { .. })));
    // Damaged zlib stream.
    let mut rng = Rng(42);
    for _ in 0..5 {
        let mut image = original.clone();
        for _ in 0..16 {
            image[start + rng.below(len)] ^= 0xff;
        }
        let _ = parse(image);
    }
}

/// DWARF is read only when something needs it, and its errors are
/// reported: with a corrupt `.debug_info`, `funcs` on a source line (no
/// argument layouts) still plans, while `funcs` on a function (which shows
/// them) fails with the DWARF error and exit 3 instead of planning without
/// types.
#[test]
fn dwarf_is_read_only_when_needed_and_its_errors_are_reported() {
    let funcs = |binary: &std::path::Path, spec: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ktrace"))
            .args(["funcs", "--json", "--funcs", spec, "--binary"])
            .arg(binary)
            .output()
            .expect("run ktrace")
    };
    let path = testkit::target_binary(Variant::Optimized).unwrap();
    let good = funcs(&path, CREATE);
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
    let docs: Vec<serde_json::Value> = serde_json::from_slice(&good.stdout).unwrap();
    let (file, line) = (docs[0]["file"].as_str().unwrap(), docs[0]["line"].as_u64().unwrap());
    assert!(docs[0]["args"].is_array(), "the optimized target has DWARF: {}", docs[0]);

    // The decompression bomb of corrupt_compressed_sections_are_errors.
    let original = std::fs::read(&path).unwrap();
    let file_obj = object::File::parse(&original[..]).unwrap();
    let header = file_obj.section_by_name(".debug_info").unwrap().file_range().unwrap().0 as usize;
    drop(file_obj);
    let mut bomb = original.clone();
    bomb[header + 8..header + 16].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let bomb_path = dir.path().join("corrupt-dwarf");
    std::fs::write(&bomb_path, &bomb).unwrap();

    let at_line = funcs(&bomb_path, &format!("{file}:{line}"));
    assert!(at_line.status.success(), "a line needs no DWARF: {}", String::from_utf8_lossy(&at_line.stderr));
    let function = funcs(&bomb_path, CREATE);
    let stderr = String::from_utf8_lossy(&function.stderr);
    assert_eq!(function.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("corrupt .debug_info"), "{stderr}");
}
