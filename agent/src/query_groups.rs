//! `query top` and `query series`: the largest groups of a dim, and the events per time bucket,
//! from a data directory or merged over agents (a child module of `query`, whose sources, flags
//! and renderers it shares).

use super::*;
use crate::api::{AggregateResponse, BucketJson, SeriesResponse, TopResponse};

/// Groups each agent is asked for by `query top`, at least: with `http.max_limit` at its
/// default (1,000), a group set this small merges complete and exact.
const ASK_GROUPS: usize = 1000;

/// `by`, `order` and `limit` as request parameters.
fn group_pairs(by: &[String], order: &str, limit: usize) -> Vec<(String, String)> {
    let mut v = vec![
        ("order".to_string(), order.to_string()),
        ("limit".to_string(), limit.to_string()),
    ];
    if !by.is_empty() {
        v.push(("by".into(), by.join(",")));
    }
    v
}

impl Source {
    fn top(&self, p: &Params, limit: usize) -> Result<Got<TopResponse>, Failure> {
        Ok(match self {
            Source::Dir(e) => (api::top(e, p, &Caps::NONE)?, None),
            Source::Fleet(f) => {
                let a = f.top(p, limit, ASK_GROUPS)?;
                (a.value, Some(a.completeness))
            }
        })
    }

    fn series(&self, p: &Params, limit: usize) -> Result<Got<SeriesResponse>, Failure> {
        Ok(match self {
            Source::Dir(e) => (api::series(e, p, &Caps::NONE, &Cancel::default())?, None),
            Source::Fleet(f) => {
                let a = f.series(p, limit)?;
                (a.value, Some(a.completeness))
            }
        })
    }
}

/// `query top`.
pub(super) fn top(
    source: &Source,
    f: &Filters,
    by: &[String],
    order: &str,
    limit: usize,
    format: Output,
) -> Result<Printed, Failure> {
    let mut pv = pairs(f).map_err(usage)?;
    pv.extend(group_pairs(by, order, limit));
    let (r, c) = source.top(&parse(&pv)?, limit)?;
    Ok((render_top(&r, c.as_ref(), format), c))
}

/// `query series`.
pub(super) fn series(
    source: &Source,
    f: &Filters,
    every: &str,
    by: &[String],
    order: &str,
    limit: usize,
    format: Output,
) -> Result<Printed, Failure> {
    let mut pv = pairs(f).map_err(usage)?;
    pv.push(("every".into(), every.to_string()));
    pv.extend(group_pairs(by, order, limit));
    let (r, c) = source.series(&parse(&pv)?, limit)?;
    Ok((render_series(&r, c.as_ref(), format), c))
}

/// The sums' columns of a table, after `first` (the group or bucket columns).
fn sums_header(first: Vec<String>, sample: Option<&AggregateResponse>) -> Vec<String> {
    let mut h = first;
    h.extend(["events", "metric", "latency_ms_sum"].map(String::from));
    if let Some(a) = sample {
        h.extend(a.counters.keys().cloned());
    }
    h
}

fn sums_row(mut row: Vec<String>, a: &AggregateResponse) -> Vec<String> {
    row.extend([
        a.event_count.to_string(),
        a.metric.to_string(),
        a.latency_ms_sum.to_string(),
    ]);
    row.extend(a.counters.values().map(u64::to_string));
    row
}

fn render_top(r: &TopResponse, c: Option<&Completeness>, format: Output) -> String {
    let sample = r.groups.first().map(|g| &g.aggregate).or(r.others.as_ref());
    let header = sums_header(r.by.clone(), sample);
    let mut rows: Vec<Vec<String>> = r
        .groups
        .iter()
        .map(|g| {
            let values =
                r.by.iter()
                    .map(|d| g.values.get(d).cloned().unwrap_or_default());
            sums_row(values.collect(), &g.aggregate)
        })
        .collect();
    if let Some(o) = &r.others {
        let mut first = vec!["(others)".to_string()];
        first.resize(r.by.len(), String::new());
        rows.push(sums_row(first, o));
    }
    render(header, rows, json_of(r, c), format)
}

/// A bucket's start as `YYYY-MM-DD HH:MM:SS` (UTC).
fn bucket_time(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let (day, in_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    format!(
        "{} {:02}:{:02}:{:02}",
        keplordb::date_of_day(day),
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

fn render_series(r: &SeriesResponse, c: Option<&Completeness>, format: Output) -> String {
    let sample = r.buckets.first().map(|b| &b.aggregate);
    let mut first = vec!["start (UTC)".to_string()];
    first.extend(r.by.iter().cloned());
    let header = sums_header(first, sample);
    let rows_of = |values: Vec<String>, buckets: &[BucketJson]| -> Vec<Vec<String>> {
        buckets
            .iter()
            .map(|b| {
                let mut row = vec![bucket_time(b.start_ns)];
                row.extend(values.iter().cloned());
                sums_row(row, &b.aggregate)
            })
            .collect()
    };
    let mut rows = Vec::new();
    if r.by.is_empty() {
        rows = rows_of(Vec::new(), &r.buckets);
    } else {
        for s in &r.series {
            let values =
                r.by.iter()
                    .map(|d| s.values.get(d).cloned().unwrap_or_default());
            rows.extend(rows_of(values.collect(), &s.buckets));
        }
        if let Some(o) = &r.others {
            let mut values = vec!["(others)".to_string()];
            values.resize(r.by.len(), String::new());
            rows.extend(rows_of(values, o));
        }
    }
    render(header, rows, json_of(r, c), format)
}

#[cfg(test)]
mod tests {
    use super::bucket_time;

    #[test]
    fn bucket_times_are_utc() {
        assert_eq!(bucket_time(0), "1970-01-01 00:00:00");
        assert_eq!(
            bucket_time(1_764_028_800_000_000_000 + 13 * 3_600_000_000_000 + 5_000_000_000),
            "2025-11-25 13:00:05"
        );
        assert_eq!(bucket_time(-1_000_000_000), "1969-12-31 23:59:59");
    }
}
