//! The trace-file reader, fed a (usually malformed) JSON Lines trace.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = analyzer::trace::read(data);
});
