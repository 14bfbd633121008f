//! Decoder tests: every /debug/pprof profile shape, inlined frames, and
//! hostile input (truncated, bit-flipped, garbage) that must be an error,
//! never a panic.

use super::{build::ProfileBuilder, *};

/// A profile shaped like Go's heap profile: four sample types.
fn heap() -> Vec<u8> {
    let mut b = ProfileBuilder::new(&[
        ("alloc_objects", "count"),
        ("alloc_space", "bytes"),
        ("inuse_objects", "count"),
        ("inuse_space", "bytes"),
    ]);
    b.period(("space", "bytes"), 524288);
    b.sample(&["runtime.malg", "main.main"], &[1, 100, 1, 100]);
    b.sample(&["bytes.growSlice", "etcd3.(*store).Create", "main.main"], &[5, 4096, 2, 2048]);
    b.encode_gzip()
}

fn cpu_with_inlining() -> Vec<u8> {
    let mut b = ProfileBuilder::new(&[("samples", "count"), ("cpu", "nanoseconds")]);
    b.period(("cpu", "nanoseconds"), 10_000_000);
    // `encode` was inlined into `Create`: one location, two lines.
    let leaf = b.location("etcd3.(*store).Create", &["json.encode"]);
    let root = b.location("main.main", &[]);
    b.sample_ids(vec![leaf, root], &[3, 30_000_000]);
    b.sample_ids(vec![root], &[1, 10_000_000]);
    b.encode_gzip()
}

#[test]
fn heap_profiles_have_four_sample_types_and_default_to_inuse_space() {
    let p = Profile::decode(&heap()).unwrap();
    assert_eq!(p.kind(), "heap");
    let names: Vec<String> = p.sample_types().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["alloc_objects", "alloc_space", "inuse_objects", "inuse_space"]);
    assert_eq!(p.sample_index(None).unwrap(), 3);
    let f = p.fold(p.sample_index(Some("alloc_space")).unwrap()).unwrap();
    assert_eq!(
        f.iter().collect::<Vec<_>>(),
        vec![("main.main;etcd3.(*store).Create;bytes.growSlice", 4096), ("main.main;runtime.malg", 100)]
    );
    let e = p.sample_index(Some("cpu")).unwrap_err().to_string();
    assert!(e.contains("inuse_space") && e.contains("heap"), "{e}");
}

#[test]
fn other_kinds_are_recognised() {
    for (types, default, kind) in [
        (&[("goroutine", "count")][..], "", "goroutine"),
        (&[("contentions", "count"), ("delay", "nanoseconds")][..], "", "contention"),
        (&[("threadcreate", "count")][..], "", "threadcreate"),
        (
            &[
                ("alloc_objects", "count"),
                ("alloc_space", "bytes"),
                ("inuse_objects", "count"),
                ("inuse_space", "bytes"),
            ][..],
            "alloc_space",
            "allocs",
        ),
    ] {
        let mut b = ProfileBuilder::new(types);
        if !default.is_empty() {
            b.default_sample_type(default);
        }
        b.sample(&["runtime.gopark", "main.main"], &vec![1; types.len()]);
        let p = Profile::decode(&b.encode_gzip()).unwrap();
        assert_eq!(p.kind(), kind);
        if !default.is_empty() {
            assert_eq!(p.sample_index(None).unwrap(), 1);
        }
        assert_eq!(p.fold(0).unwrap().total(), 1);
    }
}

#[test]
fn inlined_frames_are_kept_root_first() {
    let p = Profile::decode(&cpu_with_inlining()).unwrap();
    assert_eq!(p.kind(), "profile");
    let f = p.fold(p.sample_index(None).unwrap()).unwrap();
    assert_eq!(
        f.iter().collect::<Vec<_>>(),
        vec![("main.main", 10_000_000), ("main.main;etcd3.(*store).Create;json.encode", 30_000_000)]
    );
}

#[test]
fn uncompressed_profiles_decode_too() {
    let raw = gunzip(&heap()).unwrap();
    assert_eq!(Profile::decode(&raw).unwrap().kind(), "heap");
}

#[test]
fn truncated_profiles_say_so() {
    let gz = heap();
    for cut in [gz.len() - 1, gz.len() - 8, gz.len() / 2, 12] {
        match Profile::decode(&gz[..cut]) {
            Err(DecodeError::Truncated(_)) => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn garbage_is_not_a_profile() {
    for body in [&b""[..], b"<html><body>404</body></html>", b"heap profile: 1: 2 [3: 4] @ heap/1048576", &[0xff; 64]] {
        match Profile::decode(body) {
            Err(DecodeError::NotPprof(msg)) => assert!(!msg.contains('\n')),
            other => panic!("{body:?}: {other:?}"),
        }
    }
}

#[test]
fn bit_flips_never_panic() {
    for gz in [heap(), cpu_with_inlining()] {
        let raw = gunzip(&gz).unwrap();
        // Flip every bit of the message in turn, and decode and fold the result.
        for i in 0..raw.len() * 8 {
            let mut m = raw.clone();
            m[i / 8] ^= 1 << (i % 8);
            if let Ok(p) = Profile::decode(&m) {
                for t in 0..p.sample_types().len() {
                    let _ = p.fold(t);
                }
                let _ = p.kind();
                let _ = p.sample_index(None);
            }
        }
        // The same through gzip: a flipped compressed byte.
        for i in 0..gz.len() {
            let mut m = gz.clone();
            m[i] ^= 0x5a;
            let _ = Profile::decode(&m).map(|p| p.fold(0));
        }
    }
}

#[test]
fn dangling_references_are_corrupt_not_panics() {
    let mut b = ProfileBuilder::new(&[("samples", "count")]);
    b.sample(&["a"], &[1]);
    let mut proto = b.proto().clone();
    proto.sample[0].location_id = vec![99];
    let p = Profile { proto: proto.clone() };
    assert!(matches!(p.fold(0), Err(DecodeError::Corrupt(_))));
    proto.sample[0].location_id = vec![1];
    proto.function[0].name = 1000;
    assert!(matches!(Profile { proto: proto.clone() }.fold(0), Err(DecodeError::Corrupt(_))));
    proto.function[0].name = 1;
    proto.sample[0].value = vec![];
    assert!(matches!(Profile { proto }.fold(0), Err(DecodeError::Corrupt(_))));
}
