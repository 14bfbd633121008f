//! A whole file, as ktrace would read it from a container: every reader that
//! `funcs` and `attach` run must return, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::resolve::Binary;

fuzz_target!(|data: &[u8]| {
    let Ok(binary) = Binary::from_bytes("fuzz-input", data.to_vec()) else { return };
    let _ = binary.check_go();
    let _ = binary.build_id();
    if let Ok(functions) = binary.functions() {
        for f in functions.iter().take(64) {
            let _ = binary.file_offset(f.entry);
            let _ = binary.text_at(f.entry, f.end.saturating_sub(f.entry).min(1 << 16));
        }
    }
});
