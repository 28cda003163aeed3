//! Latency percentiles of healthy connections, for the summary line.

use serde_json::{json, Value};

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

    /// `{count, p50_us, p90_us, p99_us}`, or null without samples.
    pub fn to_json(&self) -> Value {
        if self.values.is_empty() {
            return Value::Null;
        }
        let mut v = self.values.clone();
        v.sort_unstable();
        let at = |p: usize| v[((v.len() - 1) * p) / 100];
        json!({"count": self.count, "p50_us": at(50), "p90_us": at(90), "p99_us": at(99)})
    }
}

/// The latencies the summary reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    pub syn_to_synack: Samples,
    pub client_hello_to_server_hello: Samples,
    pub request_to_first_byte: Samples,
}

impl Timing {
    pub fn to_json(&self) -> Value {
        json!({
            "syn_to_synack": self.syn_to_synack.to_json(),
            "client_hello_to_server_hello": self.client_hello_to_server_hello.to_json(),
            "request_to_first_byte": self.request_to_first_byte.to_json(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut s = Samples::default();
        assert!(s.to_json().is_null());
        for v in 1..=100 {
            s.add(v);
        }
        let j = s.to_json();
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
