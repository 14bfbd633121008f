//! The DWARF reader (gimli), including compressed sections, fed whole files:
//! the load-time index pass, the on-demand reads a tracing run makes
//! (parameters and types by name, before anything else is read), then the
//! full function list, inlined calls and line tables read on first use.
//! Then the read `attach` makes, for a few functions only, which inflates
//! `.debug_info` unit by unit and gives unneeded units back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::resolve::{Binary, TypeShape};

fuzz_target!(|data: &[u8]| {
    let Ok(binary) = Binary::from_bytes("fuzz-input", data.to_vec()) else { return };
    if let Ok(Some(dwarf)) = binary.dwarf() {
        // What a run does first: names it knows, without listing functions.
        let _ = dwarf.params("main.main");
        let _ = dwarf.struct_member_offset("runtime.g", "goid");
        for name in ["*net/http.Request", "*http.Request", "runtime.g"] {
            if let Some(id) = dwarf.type_named_loosely(name) {
                let _ = (dwarf.type_shape(id), dwarf.type_name(id), dwarf.type_embedded(id));
            }
        }
        let _ = dwarf.functions_checked();
        for f in dwarf.functions().iter().take(64) {
            // The walk `--capture` makes: each parameter's type by name,
            // one level of it, and one level of each member.
            for p in dwarf.params(&f.name).unwrap_or_default().iter().take(8) {
                let Some(id) = dwarf.type_named(&p.type_name) else { continue };
                let target = match dwarf.type_shape(id) {
                    TypeShape::Pointer { target: Some(t) } => t,
                    _ => id,
                };
                if let TypeShape::Struct { members } = dwarf.type_shape(target) {
                    for ty in members.iter().filter_map(|m| m.2).take(64) {
                        let _ = (dwarf.type_shape(ty), dwarf.type_name(ty), dwarf.type_embedded(ty));
                    }
                }
            }
        }
        let _ = dwarf.inlined_calls();
        let _ = dwarf.line_ranges(&mut |_| true);
    }
    if let Ok(Some(dwarf)) = binary.dwarf_for(&["main.main", "runtime.goexit1"]) {
        let _ = dwarf.params("main.main");
        let _ = dwarf.params("runtime.goexit1");
        let _ = dwarf.struct_member_offset("runtime.g", "goid");
        if let Some(id) = dwarf.type_named_loosely("*http.Request") {
            let _ = (dwarf.type_shape(id), dwarf.type_name(id), dwarf.type_embedded(id));
        }
        let _ = dwarf.functions_checked();
    }
});
