//! The raw `.gopclntab` parser, fed table bytes directly: the function
//! list, the pcfile/pcln walk behind `file.go:LINE`, and the inline trees
//! (read from the same bytes, as if `go:func.*` were mapped at 0).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::resolve::parse_pclntab;

fuzz_target!(|data: &[u8]| {
    for hint in [None, Some(0x40_1000)] {
        if let Ok(table) = parse_pclntab(data, hint) {
            let _ = table.is_plausible();
            let _ = table.functions();
            let _ = table.line_ranges(&mut |f| f.ends_with(".go"));
            let read = |addr: u64, len: u64| {
                let at = usize::try_from(addr).ok()?;
                data.get(at..at.checked_add(usize::try_from(len).ok()?)?)
            };
            let _ = table.inlined_calls(Some(0), read);
        }
    }
});
