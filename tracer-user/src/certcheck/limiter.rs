//! How often certificates are checked: once per SNI per interval, and a bounded number of
//! checks per interval overall.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::MAX_CHECKS_PER_INTERVAL;

/// One check per SNI per interval, and at most [`MAX_CHECKS_PER_INTERVAL`] checks per
/// interval overall (so a stream of distinct SNIs cannot turn into a flood of handshakes).
#[derive(Debug, Clone)]
pub struct Limiter {
    interval: Duration,
    max_per_interval: usize,
    last: HashMap<String, Instant>,
}

impl Limiter {
    pub fn new(interval: Duration) -> Self {
        Limiter {
            interval,
            max_per_interval: MAX_CHECKS_PER_INTERVAL,
            last: HashMap::new(),
        }
    }

    /// Whether `sni` may be checked at `now`; when it may, that check is counted.
    /// SNIs compare case-insensitively, a trailing dot ignored.
    pub fn due(&mut self, sni: &str, now: Instant) -> bool {
        let key = normalize_host(sni);
        if let Some(&last) = self.last.get(&key) {
            if now.saturating_duration_since(last) < self.interval {
                return false;
            }
            self.last.insert(key, now);
            return true;
        }
        if self.last.len() >= self.max_per_interval {
            let interval = self.interval;
            self.last
                .retain(|_, t| now.saturating_duration_since(*t) < interval);
            if self.last.len() >= self.max_per_interval {
                return false;
            }
        }
        self.last.insert(key, now);
        true
    }
}

/// The key of an SNI: case and a trailing dot do not make another name.
fn normalize_host(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_one_check_per_sni_per_interval() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut l = Limiter::new(s(300));
        assert!(l.due("origin.test", t0));
        assert!(!l.due("origin.test", t0));
        assert!(!l.due("ORIGIN.test.", t0 + s(299)));
        assert!(l.due("other.test", t0 + s(1)));
        assert!(l.due("origin.test", t0 + s(300)));
        assert!(!l.due("origin.test", t0 + s(599)));
        assert!(l.due("origin.test", t0 + s(600)));
        // A clock that goes backwards does not open the gate.
        assert!(!l.due("other.test", t0));
    }

    #[test]
    fn limiter_caps_checks_per_interval_overall() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut l = Limiter::new(s(60));
        for i in 0..MAX_CHECKS_PER_INTERVAL {
            assert!(l.due(&format!("h{i}.test"), t0), "{i}");
        }
        assert!(!l.due("one-more.test", t0 + s(59)));
        // Once the interval has passed, old entries make room again.
        assert!(l.due("one-more.test", t0 + s(60)));
        assert!(l.last.len() <= MAX_CHECKS_PER_INTERVAL);
        assert!(l.due("h0.test", t0 + s(60)));
    }
}
