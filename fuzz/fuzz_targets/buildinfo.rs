//! The `.go.buildinfo` parser; pointer-format blobs read back into the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::resolve::{find_buildinfo, parse_buildinfo};

fuzz_target!(|data: &[u8]| {
    let read = |addr: u64, len: u64| {
        let start = usize::try_from(addr).ok()?;
        data.get(start..start.checked_add(usize::try_from(len).ok()?)?)
    };
    let _ = parse_buildinfo(data, read);
    if let Some(at) = find_buildinfo(data) {
        let _ = parse_buildinfo(&data[at..], read);
    }
});
