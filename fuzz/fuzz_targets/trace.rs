//! The trace-file reader, fed a (usually malformed) JSON Lines trace; what
//! it accepts goes on through request stitching, the timeline and the
//! report, which must not panic on hostile goroutine ids, windows or ids.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(trace) = analyzer::trace::read(data) {
        let reqs = analyzer::requests::stitch(&trace);
        let _ = analyzer::timeline::chrome_trace(&trace, &reqs);
        let _ = analyzer::requests::exclusive(&trace, &reqs);
        let _ = analyzer::report::build(&trace, None);
    }
});
