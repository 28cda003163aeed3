//! Latency percentiles of healthy connections, for the summary line.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Serialize, Serializer};

/// Most samples kept per measure (the newest replace the oldest).
const CAP: usize = 100_000;

/// Microsecond samples of one latency.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Samples {
    values: Vec<u64>,
    next: usize,
    count: u64,
}

impl Samples {
    pub fn add(&mut self, us: u64) {
        self.count += 1;
        if self.values.len() < CAP {
            self.values.push(us);
        } else {
            self.values[self.next] = us;
            self.next = (self.next + 1) % CAP;
        }
    }

    /// The percentiles, or `None` without samples.
    pub fn percentiles(&self) -> Option<Percentiles> {
        if self.values.is_empty() {
            return None;
        }
        let mut v = self.values.clone();
        v.sort_unstable();
        let at = |p: usize| v[((v.len() - 1) * p) / 100];
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
    /// Samples taken (the percentiles use the newest 100,000).
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
        assert_eq!(
            (
                j["count"].as_u64(),
                j["p50_us"].as_u64(),
                j["p99_us"].as_u64()
            ),
            (Some(100), Some(50), Some(99))
        );
    }
}
