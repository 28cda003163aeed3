//! Kernel timestamps (`CLOCK_MONOTONIC`) to RFC 3339 UTC wall-clock strings.

/// Nanoseconds of a clock.
fn now(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and out pointer.
    unsafe { libc::clock_gettime(clock, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// `CLOCK_MONOTONIC` now, the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    now(libc::CLOCK_MONOTONIC)
}

/// Maps monotonic nanoseconds to wall-clock time, fixed at start-up.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    offset_ns: i128,
}

impl WallClock {
    pub fn new() -> Self {
        let mono = monotonic_ns();
        let real = now(libc::CLOCK_REALTIME);
        Self {
            offset_ns: i128::from(real) - i128::from(mono),
        }
    }

    /// A clock whose monotonic 0 is the given Unix time (tests).
    pub fn with_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// Unix time in nanoseconds of a monotonic timestamp.
    pub fn unix_ns(&self, mono_ns: u64) -> u64 {
        u64::try_from((i128::from(mono_ns) + self.offset_ns).max(0)).unwrap_or(u64::MAX)
    }

    /// RFC 3339 UTC with microseconds.
    pub fn rfc3339(&self, mono_ns: u64) -> String {
        let unix_ns = (i128::from(mono_ns) + self.offset_ns).max(0);
        rfc3339_from_unix_ns(unix_ns)
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

/// Format Unix nanoseconds as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn rfc3339_from_unix_ns(unix_ns: i128) -> String {
    let secs = i64::try_from(unix_ns / 1_000_000_000).unwrap_or(0);
    let micros = (unix_ns % 1_000_000_000) / 1_000;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        sod / 3_600,
        (sod % 3_600) / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_from_unix_ns(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_from_unix_ns(1_795_793_600_123_456_789),
            "2026-11-27T15:33:20.123456Z"
        );
        assert_eq!(
            rfc3339_from_unix_ns(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000Z"
        );
        let c = WallClock::with_offset(1_000_000_000);
        assert_eq!(c.rfc3339(500_000), "1970-01-01T00:00:01.000500Z");
    }

    #[test]
    fn monotonic_moves_forward() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(b >= a);
    }
}
