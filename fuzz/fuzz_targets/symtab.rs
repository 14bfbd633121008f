//! The `.symtab` reader, fed a whole (usually malformed) ELF image.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::resolve::parse_symtab;

fuzz_target!(|data: &[u8]| {
    let _ = parse_symtab(data);
});
