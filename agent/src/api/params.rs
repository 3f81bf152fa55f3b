//! Query parameters: parsed from `key=value` pairs, each error naming its parameter.
//!
//! Every time parameter has an exact grammar, the one `agent/openapi.yaml` states, so that any
//! value the specification allows is answered and any other is a 400:
//! - `from`, `to`: nanoseconds since the epoch as a plain integer (`-?(0|[1-9][0-9]*)`) that
//!   fits in 64 bits, or an RFC 3339 timestamp of a year from 1678 to 2261 (the years whose
//!   every instant fits in 64-bit nanoseconds);
//! - `from_day`, `to_day`: a day number from [`MIN_DAY`] to [`MAX_DAY`] (the days whose first
//!   nanosecond fits), or `YYYY-MM-DD` of a year from 1678 to 2261;
//! - `since`: a number and a unit, with at most as many digits before the unit (or its decimal
//!   point) as cannot overflow 64-bit nanoseconds, whatever the digits: 18 for `ns`, 15 for
//!   `us`/`µs`, 12 for `ms`, 9 for `s`, 8 for `m`/`min`, 6 for `h`, 5 for `d`;
//! - `cursor`: `<ts_ns>:<id>` as `next_cursor` gives it; a `<ts_ns>` beyond 64 bits lies past
//!   every event (a first page) or before every event (an empty page), which is what it means.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keplordb::{Cursor, DynEngine, DynFilter, NANOS_PER_DAY};
use serde::{Deserialize, Serialize};

use crate::config::units::parse_duration;
use crate::mapping::parse_rfc3339;

/// A bad request parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamError {
    /// The parameter.
    pub parameter: String,
    /// What is wrong.
    pub error: String,
}

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "parameter `{}`: {}", self.parameter, self.error)
    }
}

pub(super) fn perr(parameter: &str, error: impl Into<String>) -> ParamError {
    ParamError {
        parameter: parameter.to_string(),
        error: error.into(),
    }
}

/// The first day whose first nanosecond fits in an `i64` (1677-09-22).
pub const MIN_DAY: i64 = i64::MIN.div_euclid(NANOS_PER_DAY) + 1;
/// The last day whose first nanosecond fits in an `i64` (2262-04-11).
pub const MAX_DAY: i64 = i64::MAX.div_euclid(NANOS_PER_DAY);
/// The years an RFC 3339 time or a `YYYY-MM-DD` day may name: every instant of them fits.
const YEARS: std::ops::RangeInclusive<i64> = 1678..=2261;

/// Parsed query parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    /// `dim.<name>=<value>`: equality on dims.
    pub dims: BTreeMap<String, String>,
    pub from_ts_ns: Option<i64>,
    pub to_ts_ns: Option<i64>,
    pub status_min: Option<u16>,
    pub status_max: Option<u16>,
    pub limit: Option<usize>,
    pub cursor: Option<Cursor>,
    pub from_day: Option<i64>,
    pub to_day: Option<i64>,
    /// `by=<dim>[,<dim>]`: the dims a `top` or a split `series` groups by.
    pub by: Vec<String>,
    /// `order`: what ranks groups (`count`, `metric`, `latency` or a counter's name).
    pub order: Option<String>,
    /// `every`: a `series`'s bucket width, in nanoseconds.
    pub every_ns: Option<i64>,
}

pub(super) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

/// A plain decimal integer, `-?(0|[1-9][0-9]*)`: `None` for anything else. `Some(Err(negative))`
/// when it does not fit in an `i64`, `negative` telling on which side.
fn integer(v: &str) -> Option<Result<i64, bool>> {
    let (negative, digits) = match v.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, v),
    };
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    canonical.then(|| v.parse::<i64>().map_err(|_| negative))
}

/// `n` if it lies in `range`, else an error naming `name` and the range.
fn within(
    name: &str,
    n: i64,
    range: std::ops::RangeInclusive<i64>,
    what: &str,
) -> Result<i64, ParamError> {
    if range.contains(&n) {
        Ok(n)
    } else {
        Err(perr(
            name,
            format!(
                "{n} is out of range: {what} go from {} to {}",
                range.start(),
                range.end()
            ),
        ))
    }
}

/// `YYYY-MM-DD` with digits where digits go, a year in [`YEARS`], a month 01-12 and a day 01-31.
fn date_fields(v: &str) -> Option<(i64, i64, i64)> {
    let b = v.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .filter(|d| d.iter().all(u8::is_ascii_digit))
            .and_then(|_| v[r].parse::<i64>().ok())
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then_some((y, m, d))
}

/// A time: integer nanoseconds since the epoch, or RFC 3339 (see the module documentation).
pub fn parse_time(name: &str, v: &str) -> Result<i64, ParamError> {
    let bad = || {
        perr(
            name,
            format!("{v:?} is not a time: use RFC 3339 (2026-11-25T10:00:00Z) or integer nanoseconds since the epoch"),
        )
    };
    match integer(v) {
        Some(Ok(n)) => return Ok(n),
        Some(Err(_)) => {
            return Err(perr(
                name,
                format!("{v} is out of range: nanoseconds since the epoch must fit in 64 bits (1677-09-21 to 2262-04-11)"),
            ))
        }
        None => {}
    }
    let (year, ..) = date_fields(v).ok_or_else(bad)?;
    if !rfc3339_shape(v) {
        return Err(bad());
    }
    within(name, year, YEARS, "years")?;
    parse_rfc3339(v).map_err(|_| bad())
}

/// Whether `v` (a date already checked) continues as `Thh:mm:ss`, an optional fraction and `Z`
/// or an offset `±hh:mm`, with digits only where digits go and every field in range.
fn rfc3339_shape(v: &str) -> bool {
    let b = v.as_bytes();
    let two = |i: usize, max: u8| {
        b.get(i..i + 2).is_some_and(|d| {
            d.iter().all(u8::is_ascii_digit) && (d[0] - b'0') * 10 + (d[1] - b'0') <= max
        })
    };
    if b.len() < 20
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
        || !(two(11, 23) && two(14, 59) && two(17, 60))
    {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return false;
        }
        i += 1 + digits;
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            i + 6 == b.len() && two(i + 1, 23) && b[i + 3] == b':' && two(i + 4, 59)
        }
        _ => false,
    }
}

/// A day: `YYYY-MM-DD` or the day number (days since 1970-01-01); see the module documentation.
pub fn parse_day(name: &str, v: &str) -> Result<i64, ParamError> {
    const DAYS: &str = "day numbers (days since 1970-01-01)";
    match integer(v) {
        Some(Ok(n)) => return within(name, n, MIN_DAY..=MAX_DAY, DAYS),
        Some(Err(_)) => {
            return Err(perr(
                name,
                format!("{v} is out of range: {DAYS} go from {MIN_DAY} to {MAX_DAY}"),
            ))
        }
        None => {}
    }
    let bad = || {
        perr(
            name,
            format!("{v:?} is not a day like 2026-11-25 or a day number"),
        )
    };
    let (year, ..) = date_fields(v).filter(|_| v.len() == 10).ok_or_else(bad)?;
    within(name, year, YEARS, "years")?;
    parse_rfc3339(&format!("{v}T00:00:00Z"))
        .map(|ns| ns.div_euclid(NANOS_PER_DAY))
        .map_err(|_| bad())
}

/// The most digits before the unit (or the decimal point) of a `since` of each unit: with one
/// more, some values would overflow 64-bit nanoseconds.
const SINCE_DIGITS: [(&str, usize); 9] = [
    ("ns", 18),
    ("us", 15),
    ("µs", 15),
    ("ms", 12),
    ("s", 9),
    ("m", 8),
    ("min", 8),
    ("h", 6),
    ("d", 5),
];

/// `since`: how far back from now, as `<digits>[.<digits>]<unit>` (module documentation).
pub fn parse_since(name: &str, v: &str) -> Result<Duration, ParamError> {
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (number, None),
    };
    let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let Some(&(_, max_digits)) = SINCE_DIGITS.iter().find(|(u, _)| *u == unit) else {
        return Err(perr(
            name,
            format!(
                "{v:?} is not a duration like 15m, 1h or 7d (units: ns, us, ms, s, m, min, h, d)"
            ),
        ));
    };
    if !plain(whole) || !fraction.is_none_or(plain) {
        return Err(perr(
            name,
            format!("{v:?} is not a duration like 15m, 1.5h or 7d"),
        ));
    }
    if whole.len() > max_digits {
        return Err(perr(
            name,
            format!("{v:?} is out of range: at most {max_digits} digits before `{unit}` (a time before 1677 cannot be named)"),
        ));
    }
    parse_duration(v).map_err(|e| perr(name, e))
}

/// `by`: one or two dim names, comma-separated.
fn parse_by(name: &str, v: &str) -> Result<Vec<String>, ParamError> {
    let dims: Vec<String> = v.split(',').map(str::to_string).collect();
    if dims.len() > 2 || dims.iter().any(String::is_empty) {
        return Err(perr(
            name,
            format!("{v:?}: one or two dim names, comma-separated (by=model or by=user,model)"),
        ));
    }
    Ok(dims)
}

/// `every`: a bucket width, 1 to 999 seconds, minutes, hours or days (`[1-9][0-9]{0,2}` and
/// `s`, `m`, `h` or `d`: `30s`, `5m`, `1h`, `7d`).
fn parse_every(name: &str, v: &str) -> Result<i64, ParamError> {
    let unit_ns = match v.as_bytes().last() {
        Some(b's') => 1_000_000_000,
        Some(b'm') => 60_000_000_000,
        Some(b'h') => 3_600_000_000_000,
        Some(b'd') => NANOS_PER_DAY,
        _ => 0,
    };
    let digits = &v[..v.len().saturating_sub(1)];
    let number = (unit_ns > 0
        && (1..=3).contains(&digits.len())
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit()))
    .then(|| digits.parse::<i64>().ok())
    .flatten();
    number.map(|n| n * unit_ns).ok_or_else(|| {
        perr(
            name,
            format!(
                "{v:?} is not a bucket width: 1 to 999 and a unit s, m, h or d (30s, 5m, 1h, 7d)"
            ),
        )
    })
}

/// A bucket width as `every` takes it (the widths it parses to print back as they were).
pub fn format_every(ns: i64) -> String {
    for (unit, unit_ns) in [
        ("d", NANOS_PER_DAY),
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
    ] {
        if ns % unit_ns == 0 && (1..=999).contains(&(ns / unit_ns)) {
            return format!("{}{unit}", ns / unit_ns);
        }
    }
    format!("{}s", ns / 1_000_000_000)
}

/// The lower bound `since` names: now minus `d`, or an error when it does not fit.
fn since_bound(name: &str, d: Duration) -> Result<i64, ParamError> {
    i64::try_from(d.as_nanos())
        .ok()
        .and_then(|n| now_ns().checked_sub(n))
        .ok_or_else(|| perr(name, "out of range: reaches before 1677-09-21"))
}

/// The longest `cursor`, in characters: with any characters, its query string stays within the
/// default `http.max_query_bytes` (8 KiB) beside the other parameters, so that a cursor the
/// specification allows is never a 414. Events whose id is longer cannot be paged past.
pub const MAX_CURSOR_CHARS: usize = 512;

/// `<ts_ns>:<id>` (module documentation); `Ok(None)` for a position past every event.
fn parse_cursor(name: &str, v: &str) -> Result<Option<Cursor>, ParamError> {
    let bad = || perr(name, "expected <ts_ns>:<id>, as returned in next_cursor");
    if v.chars().count() > MAX_CURSOR_CHARS {
        return Err(perr(
            name,
            format!("longer than {MAX_CURSOR_CHARS} characters"),
        ));
    }
    let (ts, id) = v.split_once(':').ok_or_else(bad)?;
    match integer(ts) {
        Some(Ok(ts)) => Ok(Some(Cursor::new(ts, id))),
        // Before every event: nothing is strictly before (i64::MIN, "").
        Some(Err(true)) => Ok(Some(Cursor::new(i64::MIN, ""))),
        // Past every event: no bound at all.
        Some(Err(false)) => Ok(None),
        None => Err(bad()),
    }
}

/// Formats a cursor for the `cursor` parameter: `<ts_ns>:<id>`.
pub fn format_cursor(c: &Cursor) -> String {
    format!("{}:{}", c.ts_ns, c.id)
}

impl Params {
    /// Parses `key=value` pairs (already URL-decoded).
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Params, ParamError> {
        let mut p = Params::default();
        for (k, v) in pairs {
            let status = |v: &str| {
                match integer(v) {
                    Some(Ok(n)) => u16::try_from(n).ok(),
                    _ => None,
                }
                .ok_or_else(|| perr(k, format!("{v:?} is not a status code (0-65535)")))
            };
            match k {
                "from" => p.from_ts_ns = Some(parse_time(k, v)?),
                "to" => p.to_ts_ns = Some(parse_time(k, v)?),
                "since" => p.from_ts_ns = Some(since_bound(k, parse_since(k, v)?)?),
                "status_min" => p.status_min = Some(status(v)?),
                "status_max" => p.status_max = Some(status(v)?),
                "limit" => {
                    p.limit = Some(match integer(v) {
                        Some(Ok(n)) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
                        // Above every maximum: refused as such by `page_limit`.
                        Some(Err(false)) => usize::MAX,
                        _ => return Err(perr(k, format!("{v:?} is not a positive number"))),
                    })
                }
                "cursor" => p.cursor = parse_cursor(k, v)?,
                "by" => p.by = parse_by(k, v)?,
                "order" => p.order = Some(v.to_string()),
                "every" => p.every_ns = Some(parse_every(k, v)?),
                "from_day" => p.from_day = Some(parse_day(k, v)?),
                "to_day" => p.to_day = Some(parse_day(k, v)?),
                _ => match k.strip_prefix("dim.") {
                    Some(name) if !name.is_empty() => {
                        p.dims.insert(name.to_string(), v.to_string());
                    }
                    _ => return Err(perr(k, "unknown parameter: use dim.<name>, from, to, since, status_min, status_max, limit, cursor, from_day, to_day, by, order, every (and, over HTTP, fleet)")),
                },
            }
        }
        Ok(p)
    }

    /// Back to `key=value` pairs (for the CLI's requests).
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .dims
            .iter()
            .map(|(k, x)| (format!("dim.{k}"), x.clone()))
            .collect();
        let mut push = |k: &str, x: Option<String>| {
            if let Some(x) = x {
                v.push((k.to_string(), x));
            }
        };
        push("from", self.from_ts_ns.map(|x| x.to_string()));
        push("to", self.to_ts_ns.map(|x| x.to_string()));
        push("status_min", self.status_min.map(|x| x.to_string()));
        push("status_max", self.status_max.map(|x| x.to_string()));
        push("limit", self.limit.map(|x| x.to_string()));
        push("cursor", self.cursor.as_ref().map(format_cursor));
        push("from_day", self.from_day.map(|x| x.to_string()));
        push("to_day", self.to_day.map(|x| x.to_string()));
        push("by", (!self.by.is_empty()).then(|| self.by.join(",")));
        push("order", self.order.clone());
        push("every", self.every_ns.map(format_every));
        v
    }

    /// The engine filter of these parameters, or the first one the schema refutes, named by its
    /// flag as the CLI spells it.
    pub(crate) fn to_filter(&self, engine: &DynEngine) -> Result<DynFilter, String> {
        self.filter(engine)
            .map_err(|e| format!("{}: {}", e.parameter, e.error))
    }

    pub(super) fn filter(&self, engine: &DynEngine) -> Result<DynFilter, ParamError> {
        let schema = engine.schema();
        let mut dims = vec![None; schema.dims.len()];
        for (name, value) in &self.dims {
            let i = schema.dim_index(name).ok_or_else(|| {
                perr(
                    &format!("dim.{name}"),
                    format!(
                        "no dim called {name:?}; dims are: {}",
                        schema.dims.join(", ")
                    ),
                )
            })?;
            dims[i] = Some(value.clone());
        }
        Ok(DynFilter {
            dims,
            from_ts_ns: self.from_ts_ns,
            to_ts_ns: self.to_ts_ns,
            status_min: self.status_min,
            status_max: self.status_max,
            cursor: self.cursor.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(k: &str, v: &str) -> Result<Params, ParamError> {
        Params::parse([(k, v)])
    }

    #[test]
    fn params_parse_and_name_errors() {
        let p = Params::parse([
            ("dim.user", "alice"),
            ("from", "2026-11-25T00:00:00Z"),
            ("limit", "5"),
            ("cursor", "17:a:b"),
        ])
        .unwrap();
        assert_eq!(p.dims["user"], "alice");
        assert_eq!(p.from_ts_ns, Some(20_782 * NANOS_PER_DAY));
        assert_eq!(p.cursor, Some(Cursor::new(17, "a:b")));
        assert_eq!(
            Params::parse(p.to_pairs().iter().map(|(a, b)| (a.as_str(), b.as_str()))).unwrap(),
            p
        );
        for (k, v) in [
            ("from", "yesterday"),
            ("limit", "0"),
            ("limit", "-3"),
            ("status_min", "70000"),
            ("status_min", "+5"),
            ("cursor", "x"),
            ("cursor", "+5:x"),
            ("bogus", "1"),
            ("since", "10"),
            ("from_day", "2026-13-01"),
        ] {
            let e = one(k, v).unwrap_err();
            assert_eq!(e.parameter, k, "{k}={v}: {e}");
        }
        assert_eq!(parse_day("d", "2026-11-25").unwrap(), 20_782);
    }

    #[test]
    fn since_that_overflows_is_refused_not_wrapped() {
        // 10^12 s is a valid duration elsewhere, but 10^21 ns: the old cast wrapped it into a
        // bound in the future or the far past.
        for v in [
            "1000000000000s",
            "999999d",
            "9999999h",
            "10000000000000000000ns",
            "106752d",
        ] {
            let e = one("since", v).unwrap_err();
            assert_eq!(e.parameter, "since", "{v}");
            assert!(e.error.contains("out of range"), "{v}: {e}");
        }
        for v in [
            "", "-5m", "5", "m", "1.m", ".5m", "1.5.2m", " 5m", "5 m", "5m ", "5mm", "5M",
        ] {
            let e = one("since", v).unwrap_err();
            assert_eq!(e.parameter, "since", "{v:?}");
        }
        // The largest of each unit still names a time after 1677.
        let before = now_ns();
        for v in [
            "99999d",
            "999999h",
            "99999999m",
            "99999999min",
            "999999999s",
            "999999999999ms",
            "999999999999999us",
            "999999999999999µs",
            "999999999999999999ns",
            "99999.99999d",
        ] {
            let from = one("since", v).unwrap().from_ts_ns.unwrap();
            assert!(from < before, "{v}");
        }
        let from = one("since", "1.5h").unwrap().from_ts_ns.unwrap();
        let back = now_ns() - from;
        assert!(
            (5_400_000_000_000..5_460_000_000_000).contains(&back),
            "{back}"
        );
    }

    #[test]
    fn times_have_an_exact_grammar() {
        for (v, want) in [
            ("0", 0),
            ("-0", 0),
            ("-5", -5),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
            ("1970-01-01T00:00:01Z", 1_000_000_000),
            ("1970-01-01t00:00:01.5z", 1_500_000_000),
            ("1970-01-01 01:00:00+01:00", 0),
            ("1970-01-01T00:00:00.123456789123-00:00", 123_456_789),
        ] {
            assert_eq!(parse_time("from", v).unwrap(), want, "{v}");
        }
        assert!(parse_time("to", "1678-01-01T00:00:00+23:59").is_ok());
        assert!(parse_time("to", "2261-12-31T23:59:60-23:59").is_ok());
        for v in [
            "",
            "+5",
            "007",
            "-",
            "9223372036854775808",
            "-9223372036854775809",
            "1677-12-31T00:00:00Z",
            "2262-01-01T00:00:00Z",
            "2026-11-25",
            "2026-11-25T10:00:00",
            "2026-11-25T24:00:00Z",
            "2026-11-25T10:60:00Z",
            "2026-11-25T10:00:61Z",
            "2026-11-25T10:00:00.Z",
            "2026-11-25T10:00:00+24:00",
            "2026-11-25T10:00:00+01:60",
            "2026-11-25T10:00:00++1:00",
            "+026-11-25T10:00:00Z",
            "2026-+1-25T10:00:00Z",
            "2026-11-25T+1:00:00Z",
            "2026-11-25T10:00:00Zx",
            "2026-11-25T10:00:00z ",
        ] {
            let e = parse_time("to", v).unwrap_err();
            assert_eq!(e.parameter, "to", "{v:?}");
        }
        assert!(parse_time("from", "9223372036854775808")
            .unwrap_err()
            .error
            .contains("out of range"));
    }

    #[test]
    fn days_have_an_exact_grammar() {
        assert_eq!(parse_day("d", "0").unwrap(), 0);
        assert_eq!(parse_day("d", "-1").unwrap(), -1);
        assert_eq!(parse_day("d", &MIN_DAY.to_string()).unwrap(), MIN_DAY);
        assert_eq!(parse_day("d", &MAX_DAY.to_string()).unwrap(), MAX_DAY);
        assert!(MIN_DAY.checked_mul(NANOS_PER_DAY).is_some());
        assert!(MAX_DAY.checked_mul(NANOS_PER_DAY).is_some());
        assert!((MIN_DAY - 1).checked_mul(NANOS_PER_DAY).is_none());
        assert_eq!(parse_day("d", "1678-01-01").unwrap(), -106_650);
        assert_eq!(parse_day("d", "2261-12-31").unwrap(), 106_650);
        // A day past the month's end counts on into the next month.
        assert_eq!(
            parse_day("d", "2026-02-31").unwrap(),
            parse_day("d", "2026-03-03").unwrap()
        );
        for v in [
            "",
            "+1",
            "01",
            (MIN_DAY - 1).to_string().as_str(),
            (MAX_DAY + 1).to_string().as_str(),
            "99999999999999999999",
            "1677-12-31",
            "2262-01-01",
            "2026-00-10",
            "2026-01-00",
            "2026-01-32",
            "2026-1-01",
            "2026-01-01T00:00:00Z",
            "2026-01-01 ",
        ] {
            let e = parse_day("from_day", v).unwrap_err();
            assert_eq!(e.parameter, "from_day", "{v:?}");
        }
    }

    #[test]
    fn cursors_beyond_64_bits_mean_past_or_before_every_event() {
        assert_eq!(
            one("cursor", "99999999999999999999:x").unwrap().cursor,
            None
        );
        assert_eq!(
            one("cursor", "-99999999999999999999:x").unwrap().cursor,
            Some(Cursor::new(i64::MIN, ""))
        );
        assert_eq!(
            one("cursor", "-5:").unwrap().cursor,
            Some(Cursor::new(-5, ""))
        );
        let long = format!("5:{}", "é".repeat(MAX_CURSOR_CHARS - 2));
        assert!(one("cursor", &long).is_ok());
        for v in ["", ":x", "5", "05:x", "+5:x", "5 :x", &format!("{long}x")] {
            assert_eq!(one("cursor", v).unwrap_err().parameter, "cursor", "{v:?}");
        }
    }

    #[test]
    fn limits_and_statuses_are_plain_integers() {
        assert_eq!(one("limit", "7").unwrap().limit, Some(7));
        assert_eq!(
            one("limit", "99999999999999999999999").unwrap().limit,
            Some(usize::MAX)
        );
        assert_eq!(one("status_max", "65535").unwrap().status_max, Some(65535));
        for (k, v) in [
            ("limit", "+7"),
            ("limit", "07"),
            ("status_min", "-1"),
            ("status_min", ""),
        ] {
            assert_eq!(one(k, v).unwrap_err().parameter, k, "{v:?}");
        }
    }
}
