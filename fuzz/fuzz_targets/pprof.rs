//! The pprof decoder and folder, fed a (usually malformed) profile, raw or
//! gzipped: every sample type is folded, as `ktrace flame` would.
#![no_main]

use analyzer::pprof::Profile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Profile::decode(data) {
        for i in 0..p.sample_types().len() {
            let _ = p.fold(i);
        }
    }
});
