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

/// `YYYY-MM-DD` of a UTC day (days since 1970-01-01), proleptic Gregorian.
pub fn date_of_day(day: i64) -> String {
    // Days to a civil date, counting in 400-year eras that start on 0000-03-01, so that the
    // leap day is the last day of its year.
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let d = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let m = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let y = year_of_era + era * 400 + (m <= 2) as i64;
    format!("{y:04}-{m:02}-{d:02}")
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

    #[test]
    fn dates_of_days() {
        assert_eq!(date_of_day(0), "1970-01-01");
        assert_eq!(date_of_day(-1), "1969-12-31");
        assert_eq!(date_of_day(59), "1970-03-01");
        assert_eq!(date_of_day(11_016), "2000-02-29");
        assert_eq!(date_of_day(20_782), "2026-11-25");
        assert_eq!(date_of_day(day_of(i64::MAX)), "2262-04-11");
        assert_eq!(date_of_day(day_of(i64::MIN)), "1677-09-21");
    }
}
