//! A fixed latency histogram, for the extension's statistics (uhok_embed_stats): 96 buckets,
//! 4 per doubling from 10 us (each 19% wider than the one before) up to ~168 s. Adding a
//! sample is one increment, and a percentile is its bucket's geometric middle: within 9% of the
//! true figure, with nothing kept per sample.

pub const BUCKETS: usize = 96;
const FIRST_BUCKET_NS: f64 = 10_000.0;
const BUCKETS_PER_DOUBLING: f64 = 4.0;

/// The bucket of a sample of `ns` nanoseconds: bucket i holds (bound(i-1), bound(i)].
pub fn bucket_of(ns: u64) -> usize {
    let x = (ns as f64 / FIRST_BUCKET_NS).max(1.0);
    ((x.log2() * BUCKETS_PER_DOUBLING).ceil() as usize).min(BUCKETS - 1)
}

/// Upper bound of bucket `i`, in nanoseconds.
fn bound_ns(i: usize) -> f64 {
    FIRST_BUCKET_NS * (i as f64 / BUCKETS_PER_DOUBLING).exp2()
}

/// The `p` quantile (0..=1) of a histogram, in milliseconds: the geometric middle of the bucket
/// that holds it (half the first bucket's bound for the first); 0 for an empty histogram.
pub fn percentile_ms(histogram: &[u64], p: f64) -> f64 {
    let total: u64 = histogram.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = ((p * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, &n) in histogram.iter().enumerate() {
        seen += n;
        if seen >= rank {
            let middle = if i == 0 {
                bound_ns(0) / 2.0
            } else {
                (bound_ns(i - 1) * bound_ns(i)).sqrt()
            };
            return middle / 1e6;
        }
    }
    unreachable!("the rank is at most the total")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_10us_to_minutes_in_steps_of_19_percent() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(10_000), 0);
        assert_eq!(bucket_of(10_001), 1);
        assert_eq!(bucket_of(20_000), 4);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        for ns in [15_000u64, 1_000_000, 3_300_000, 987_654_321] {
            let i = bucket_of(ns);
            assert!(bound_ns(i - 1) < ns as f64 && ns as f64 <= bound_ns(i) * 1.000_001);
            assert!(bound_ns(i) / bound_ns(i - 1) < 1.19 + 1e-3);
        }
    }

    #[test]
    fn percentiles_are_within_9_percent() {
        let mut h = [0u64; BUCKETS];
        // 90 calls of 1 ms, 10 of 50 ms.
        h[bucket_of(1_000_000)] += 90;
        h[bucket_of(50_000_000)] += 10;
        let p50 = percentile_ms(&h, 0.5);
        let p95 = percentile_ms(&h, 0.95);
        assert!((p50 - 1.0).abs() < 0.09, "{p50}");
        assert!((p95 - 50.0).abs() / 50.0 < 0.09, "{p95}");
        assert_eq!(percentile_ms(&h, 1.0), p95);
        assert_eq!(percentile_ms(&[0; BUCKETS], 0.5), 0.0);
    }
}
