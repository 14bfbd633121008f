//! The DWARF reader (gimli), including compressed sections, fed whole files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::resolve::{Binary, TypeShape};

fuzz_target!(|data: &[u8]| {
    let Ok(binary) = Binary::from_bytes("fuzz-input", data.to_vec()) else { return };
    if let Ok(Some(dwarf)) = binary.dwarf() {
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
                        let _ = (dwarf.type_shape(ty), dwarf.type_name(ty));
                    }
                }
            }
        }
        let _ = dwarf.struct_member_offset("runtime.g", "goid");
    }
});
