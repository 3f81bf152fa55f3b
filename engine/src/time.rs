//! Time helpers shared by storage (memtable rollups, rotation, gc) and queries.

/// Nanoseconds per UTC day.
pub const NANOS_PER_DAY: i64 = 86_400_000_000_000;

/// The UTC day of a timestamp (days since 1970-01-01; negative before it).
#[inline]
pub fn day_of(ts_ns: i64) -> i64 {
    ts_ns.div_euclid(NANOS_PER_DAY)
}

/// First nanosecond of `day`, saturating.
#[inline]
pub(crate) fn day_start(day: i64) -> i64 {
    day.saturating_mul(NANOS_PER_DAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_split_at_utc_midnight_and_before_the_epoch() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(NANOS_PER_DAY - 1), 0);
        assert_eq!(day_of(NANOS_PER_DAY), 1);
        assert_eq!(day_of(-1), -1);
        assert_eq!(day_of(-NANOS_PER_DAY), -1);
        assert_eq!(day_of(-NANOS_PER_DAY - 1), -2);
        assert_eq!(day_start(3), 3 * NANOS_PER_DAY);
        assert_eq!(day_start(i64::MAX), i64::MAX);
        assert_eq!(day_start(i64::MIN), i64::MIN);
        for ts in [-5 * NANOS_PER_DAY + 7, 0, 12_345, 40 * NANOS_PER_DAY - 1] {
            let d = day_of(ts);
            assert!(day_start(d) <= ts && ts < day_start(d + 1));
        }
    }
}
