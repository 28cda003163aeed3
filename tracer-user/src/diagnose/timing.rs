//! Latency percentiles of healthy connections, for the summary line.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Serialize, Serializer};
use tracer_ebpf::{hist_bucket, hist_bucket_range, HIST_BUCKETS};

/// Microsecond samples of one latency, counted in the kernel's buckets
/// ([`tracer_ebpf::hist_bucket`]: four per power of two), so that the
/// kernel's histograms of quiet flows and userspace's samples add up, in
/// constant memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Samples {
    buckets: Vec<u64>,
    count: u64,
}

impl Default for Samples {
    fn default() -> Self {
        Self {
            buckets: vec![0; HIST_BUCKETS as usize],
            count: 0,
        }
    }
}

impl Samples {
    pub fn add(&mut self, us: u64) {
        self.add_bucket(hist_bucket(us), 1);
    }

    /// `n` samples of one bucket (from a kernel histogram).
    pub fn add_bucket(&mut self, bucket: u32, n: u64) {
        if let Some(b) = self.buckets.get_mut(bucket as usize) {
            *b += n;
            self.count += n;
        }
    }

    /// The percentiles (each the middle of its bucket, within 1/8 of the
    /// true value), or `None` without samples.
    pub fn percentiles(&self) -> Option<Percentiles> {
        if self.count == 0 {
            return None;
        }
        let at = |p: u64| {
            let rank = (self.count - 1) * p / 100;
            let mut seen = 0;
            for (i, n) in (0u32..).zip(&self.buckets) {
                seen += n;
                if seen > rank {
                    let (low, width) = hist_bucket_range(i);
                    return low + width / 2;
                }
            }
            0
        };
        Some(Percentiles {
            count: self.count,
            p50_us: at(50),
            p90_us: at(90),
            p99_us: at(99),
        })
    }
}

/// `{count, p50_us, p90_us, p99_us}` of one latency (p50 <= p90 <= p99,
/// which a schema cannot say: the tests check it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Percentiles {
    /// Samples taken. The percentiles are the middles of quarter-octave
    /// buckets: within 1/8 of the true values.
    #[schemars(range(min = 1))]
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
}

/// Serialized as its percentiles, or null without samples.
impl Serialize for Samples {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.percentiles().serialize(s)
    }
}

/// Its percentiles, or null without samples.
impl JsonSchema for Samples {
    fn schema_name() -> Cow<'static, str> {
        "Samples".into()
    }

    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        <Option<Percentiles>>::json_schema(g)
    }
}

/// Latency percentiles of healthy connections.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Timing {
    pub syn_to_synack: Samples,
    pub client_hello_to_server_hello: Samples,
    pub request_to_first_byte: Samples,
}

/// What a percentile of exactly `us` reads as (its bucket's middle).
#[cfg(test)]
pub fn reported(us: u64) -> u64 {
    let (low, width) = hist_bucket_range(hist_bucket(us));
    low + width / 2
}

#[cfg(test)]
impl Timing {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("timing serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut s = Samples::default();
        assert!(serde_json::to_value(&s).unwrap().is_null());
        for v in 1..=100 {
            s.add(v);
        }
        let j = serde_json::to_value(&s).unwrap();
        // Each within 1/8 of the exact value.
        let near = |key: &str, exact: u64| {
            let v = j[key].as_u64().unwrap();
            assert!(v.abs_diff(exact) * 8 <= exact, "{key}: {v} vs {exact}");
        };
        assert_eq!(j["count"].as_u64(), Some(100));
        near("p50_us", 50);
        near("p90_us", 90);
        near("p99_us", 99);
        // Small values are exact; a kernel bucket adds its count.
        let mut small = Samples::default();
        small.add(3);
        small.add_bucket(hist_bucket(3), 2);
        let p = small.percentiles().unwrap();
        assert_eq!((p.count, p.p50_us, p.p99_us), (3, 3, 3));
    }
}
