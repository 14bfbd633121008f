//! Latency histogram buckets shared by the kernel (which fills them) and user
//! space (which turns them into percentiles).
//!
//! Each power of two is split into [`SUB`] equal sub-buckets, so a bucket's
//! width is at most 1/8 of its lower bound: a percentile read from the
//! histogram is within 12.5 % of the true value. Durations below [`SUB`] ns
//! get one bucket each.

/// log2 of the number of sub-buckets per power of two.
pub const SUB_BITS: u32 = 3;
/// Sub-buckets per power of two.
pub const SUB: u64 = 1 << SUB_BITS;
/// Number of buckets needed for every `u64` duration.
pub const BUCKETS: u32 = ((64 - SUB_BITS) as u64 * SUB + SUB) as u32;

/// The bucket that holds a duration of `ns` nanoseconds.
#[inline(always)]
pub const fn bucket_of(ns: u64) -> u32 {
    if ns < SUB {
        return ns as u32;
    }
    let msb = 63 - ns.leading_zeros();
    let sub = (ns >> (msb - SUB_BITS)) & (SUB - 1);
    (msb - SUB_BITS + 1) * SUB as u32 + sub as u32
}

/// The half-open range `[lo, hi)` of durations bucket `i` holds; `hi`
/// saturates at `u64::MAX` for the last bucket.
pub const fn bucket_bounds(i: u32) -> (u64, u64) {
    if (i as u64) < SUB {
        return (i as u64, i as u64 + 1);
    }
    let octave = i / SUB as u32 - 1 + SUB_BITS; // the msb of every value in the bucket
    let sub = (i as u64) % SUB;
    let step = 1u64 << (octave - SUB_BITS);
    let lo = (SUB + sub) << (octave - SUB_BITS);
    (lo, lo.saturating_add(step))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_falls_inside_its_bucket() {
        let mut samples = [0u64; 200];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for (i, s) in samples.iter_mut().enumerate() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *s = x >> (i % 64);
        }
        for ns in samples.into_iter().chain([0, 1, 7, 8, 15, 16, 17, 1 << 20, u64::MAX, u64::MAX - 1]) {
            let b = bucket_of(ns);
            assert!(b < BUCKETS, "{ns} -> {b}");
            let (lo, hi) = bucket_bounds(b);
            assert!(lo <= ns && (ns < hi || hi == u64::MAX), "{ns} not in [{lo},{hi}) of bucket {b}");
        }
    }

    #[test]
    fn buckets_tile_the_line_without_gaps() {
        let mut expect = 0u64;
        for i in 0..BUCKETS {
            let (lo, hi) = bucket_bounds(i);
            assert_eq!(lo, expect, "bucket {i}");
            assert!(hi > lo);
            expect = hi;
        }
        assert_eq!(expect, u64::MAX);
    }

    #[test]
    fn bucket_width_is_at_most_an_eighth() {
        for i in SUB as u32..BUCKETS {
            let (lo, hi) = bucket_bounds(i);
            assert!((hi - lo) * SUB <= lo, "bucket {i}: [{lo},{hi})");
        }
    }
}
