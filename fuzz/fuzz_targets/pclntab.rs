//! The raw `.gopclntab` parser, fed table bytes directly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::resolve::parse_pclntab;

fuzz_target!(|data: &[u8]| {
    for hint in [None, Some(0x40_1000)] {
        if let Ok(table) = parse_pclntab(data, hint) {
            let _ = table.is_plausible();
            let _ = table.functions();
        }
    }
});
