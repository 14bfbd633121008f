//! The `--funcs` spec parser and matcher, fed a spec on the first line and
//! one function per following line (`name` or `name<TAB>file`): parsing,
//! selecting (presets, globs, Delve locations, closures, generic names) and
//! the name and path normalisations must never panic, an exact symbol
//! must always select itself, and every function an item selects passes
//! the spec's name filter (`attach` reads only the functions that do).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::{
    resolve::{Function, InlinedCall, Source},
    spec::{self, Pattern},
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.split('\n');
    let spec_text = lines.next().unwrap_or_default();
    let functions: Vec<Function> = lines
        .take(256)
        .enumerate()
        .map(|(i, line)| {
            let (name, file) = line.split_once('\t').map_or((line, None), |(n, f)| (n, Some(f.into())));
            let entry = 0x1000 + 16 * i as u64;
            Function { name: name.to_string(), entry, end: entry + 16, file, line: None, source: Source::Pclntab }
        })
        .collect();
    if let Ok(items) = spec::parse(spec_text) {
        let _ = spec::select(&items, &functions);
        let calls: Vec<InlinedCall> = functions
            .iter()
            .map(|f| InlinedCall {
                caller: f.entry,
                addr: f.entry,
                callee: f.name.clone(),
                file: f.file.as_deref().map(str::to_owned),
                call_file: None,
                call_line: None,
            })
            .collect();
        for item in &items {
            let _ = spec::select_inlined(item, &calls);
        }
        if let Some(filter) = spec::name_filter(&items) {
            for item in &items {
                for f in spec::select_item(item, &functions).unwrap_or_default() {
                    assert!(filter(&f.name), "{item:?} selects {:?}, which its name filter refuses", f.name);
                }
            }
        }
    }
    let glob = Pattern::user(spec_text);
    for f in &functions {
        let _ = glob.matches(&f.name);
        let _ = spec::strip_type_args(&f.name);
        // A name whose every `*` follows `(` has no wildcard: as a pattern
        // it is exact and selects itself.
        let own = Pattern::user(&f.name);
        let starless = f.name.match_indices('*').all(|(i, _)| f.name[..i].ends_with('('));
        if starless {
            assert!(own.is_exact(), "{:?}", f.name);
        }
        assert!(own.matches(&f.name), "{:?}", f.name);
        if let Some(file) = &f.file {
            let normalized = spec::strip_module_versions(file);
            if !normalized.trim_start_matches('/').is_empty() {
                assert!(spec::path_suffix(file, file), "{file:?}");
            }
            let _ = spec::path_suffix(file, spec_text);
        }
    }
});
