//! The DWARF reader (gimli), including compressed sections, fed whole files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::resolve::Binary;

fuzz_target!(|data: &[u8]| {
    let Ok(binary) = Binary::from_bytes("fuzz-input", data.to_vec()) else { return };
    if let Ok(Some(dwarf)) = binary.dwarf() {
        for f in dwarf.functions().iter().take(64) {
            let _ = dwarf.params(&f.name);
        }
        let _ = dwarf.struct_member_offset("runtime.g", "goid");
    }
});
