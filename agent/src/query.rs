//! `keplor-agent query`: aggregate, recent, get and rollups against one or more running agents
//! (partial results merged, so a consumer group of agents answers as one) or a stopped agent's
//! data directory opened read-only. Output: table (default on a terminal), JSON or CSV.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use keplordb::DynEngine;

use crate::api::{
    self, AggregateResponse, EventJson, EventsResponse, Params, RollupBucket, RollupsResponse,
};

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// Agent HTTP endpoint; repeat to query several agents and merge their answers.
    #[arg(long = "endpoint", short = 'e', global = true)]
    endpoints: Vec<String>,
    /// Read a stopped agent's data directory instead (read-only).
    #[arg(long, global = true, conflicts_with = "endpoints")]
    data_dir: Option<PathBuf>,
    /// Bearer token for the agents' API.
    #[arg(long, global = true, env = "KEPLOR_TOKEN")]
    token: Option<String>,
    /// Output format (default: table on a terminal, JSON otherwise).
    #[arg(long, short = 'o', global = true, value_enum)]
    format: Option<Output>,
    #[command(subcommand)]
    what: What,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
    Csv,
}

#[derive(Args, Debug, Default, Clone)]
struct Filters {
    /// Equality on a dim, by name: --where user=alice (repeatable).
    #[arg(long = "where", short = 'w', value_name = "DIM=VALUE")]
    wheres: Vec<String>,
    /// Only events newer than this: 15m, 1h, 7d.
    #[arg(long)]
    since: Option<String>,
    /// From this time (RFC 3339 or nanoseconds), inclusive.
    #[arg(long)]
    from: Option<String>,
    /// Up to this time (RFC 3339 or nanoseconds), exclusive.
    #[arg(long)]
    to: Option<String>,
    /// Status range LO..HI (HI exclusive), e.g. 500..600.
    #[arg(long)]
    status: Option<String>,
}

#[derive(Subcommand, Debug)]
enum What {
    /// Exact sums over the matching events.
    Aggregate(Filters),
    /// Newest events first.
    Recent {
        #[command(flatten)]
        filters: Filters,
        /// How many.
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: usize,
        /// Continue after this cursor (printed as next_cursor).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One event by id.
    Get {
        /// The event id.
        id: String,
    },
    /// Daily rollups.
    Rollups {
        /// Filters on rollup dims: --where user=alice.
        #[arg(long = "where", short = 'w', value_name = "DIM=VALUE")]
        wheres: Vec<String>,
        /// First day (YYYY-MM-DD); default: today.
        #[arg(long)]
        from_day: Option<String>,
        /// Last day (YYYY-MM-DD), inclusive; default: today.
        #[arg(long)]
        to_day: Option<String>,
    },
}

fn pairs(f: &Filters) -> Result<Vec<(String, String)>, String> {
    let mut v = Vec::new();
    for w in &f.wheres {
        let (k, x) = w
            .split_once('=')
            .ok_or_else(|| format!("--where {w:?}: expected DIM=VALUE"))?;
        v.push((format!("dim.{k}"), x.to_string()));
    }
    if let Some(s) = &f.since {
        v.push(("since".into(), s.clone()));
    }
    if let Some(s) = &f.from {
        v.push(("from".into(), s.clone()));
    }
    if let Some(s) = &f.to {
        v.push(("to".into(), s.clone()));
    }
    if let Some(s) = &f.status {
        let (lo, hi) = s
            .split_once("..")
            .ok_or_else(|| format!("--status {s:?}: expected LO..HI, e.g. 500..600"))?;
        if !lo.is_empty() {
            v.push(("status_min".into(), lo.into()));
        }
        if !hi.is_empty() {
            v.push(("status_max".into(), hi.into()));
        }
    }
    Ok(v)
}

/// Where the answers come from.
enum Source {
    Http {
        endpoints: Vec<String>,
        token: Option<String>,
    },
    Dir(Box<DynEngine>),
}

impl Source {
    fn fetch<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        params: &[(String, String)],
    ) -> Result<Vec<Option<T>>, String> {
        let Source::Http { endpoints, token } = self else {
            return Err("not an HTTP source".into());
        };
        let mut out = Vec::new();
        for ep in endpoints {
            let url = format!("{}{path}", ep.trim_end_matches('/'));
            let mut req = ureq::get(&url).config().http_status_as_error(false).build();
            for (k, v) in params {
                req = req.query(k, v);
            }
            if let Some(t) = token {
                req = req.header("Authorization", &format!("Bearer {t}"));
            }
            let mut resp = req.call().map_err(|e| format!("{url}: {e}"))?;
            let status = resp.status().as_u16();
            let body = resp
                .body_mut()
                .read_to_string()
                .map_err(|e| format!("{url}: {e}"))?;
            match status {
                200 => out.push(Some(
                    serde_json::from_str(&body).map_err(|e| format!("{url}: bad response: {e}"))?,
                )),
                404 if path.starts_with("/v1/events/") => out.push(None),
                _ => {
                    let msg = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| {
                            let e = v.get("error")?.as_str()?.to_string();
                            Some(match v.get("parameter").and_then(|p| p.as_str()) {
                                Some(p) => format!("parameter `{p}`: {e}"),
                                None => e,
                            })
                        })
                        .unwrap_or(body);
                    return Err(format!("{url}: HTTP {status}: {msg}"));
                }
            }
        }
        Ok(out)
    }
}

pub fn main(args: QueryArgs) -> ExitCode {
    match execute(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(code)
        }
    }
}

fn execute(args: QueryArgs) -> Result<(), (u8, String)> {
    let usage = |e: String| (2u8, e);
    let runtime = |e: String| (1u8, e);
    let source = match &args.data_dir {
        Some(dir) => Source::Dir(Box::new(
            DynEngine::open_read_only(dir)
                .map_err(|e| runtime(format!("{}: {e}", dir.display())))?,
        )),
        None => Source::Http {
            endpoints: if args.endpoints.is_empty() {
                vec!["http://127.0.0.1:8686".into()]
            } else {
                args.endpoints.clone()
            },
            token: args.token.clone(),
        },
    };
    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() {
        Output::Table
    } else {
        Output::Json
    });
    let parse = |v: &[(String, String)]| {
        Params::parse(v.iter().map(|(a, b)| (a.as_str(), b.as_str())))
            .map_err(|e| usage(e.to_string()))
    };
    let out = match &args.what {
        What::Aggregate(f) => {
            let pv = pairs(f).map_err(usage)?;
            let p = parse(&pv)?;
            let agg = match &source {
                Source::Dir(e) => api::aggregate(e, &p).map_err(|e| runtime(e.to_string()))?,
                Source::Http { .. } => {
                    let mut total = AggregateResponse::default();
                    for part in source
                        .fetch::<AggregateResponse>("/v1/aggregate", &p.to_pairs())
                        .map_err(runtime)?
                        .into_iter()
                        .flatten()
                    {
                        total.merge(&part);
                    }
                    total
                }
            };
            render_aggregate(&agg, format)
        }
        What::Recent {
            filters,
            limit,
            cursor,
        } => {
            let mut pv = pairs(filters).map_err(usage)?;
            pv.push(("limit".into(), limit.to_string()));
            if let Some(c) = cursor {
                pv.push(("cursor".into(), c.clone()));
            }
            let p = parse(&pv)?;
            let resp = match &source {
                Source::Dir(e) => {
                    api::events(e, &p, usize::MAX).map_err(|e| runtime(e.to_string()))?
                }
                Source::Http { .. } => {
                    // Each agent answers newest-first after the same cursor; the merge keeps the
                    // global newest `limit`, so the next cursor is valid for every agent.
                    let mut all: Vec<EventJson> = Vec::new();
                    for part in source
                        .fetch::<EventsResponse>("/v1/events", &p.to_pairs())
                        .map_err(runtime)?
                        .into_iter()
                        .flatten()
                    {
                        all.extend(part.events);
                    }
                    all.sort_by(|a, b| (b.ts_ns, &b.id).cmp(&(a.ts_ns, &a.id)));
                    all.dedup_by(|a, b| a.id == b.id && a.ts_ns == b.ts_ns);
                    all.truncate(*limit);
                    let next_cursor = (all.len() == *limit)
                        .then(|| all.last().map(|e| api::format_cursor(&e.cursor())))
                        .flatten();
                    EventsResponse {
                        events: all,
                        next_cursor,
                    }
                }
            };
            render_events(&resp, format)
        }
        What::Get { id } => {
            let found = match &source {
                Source::Dir(e) => api::get(e, id).map_err(|e| runtime(e.to_string()))?,
                Source::Http { .. } => {
                    let enc: String = id
                        .bytes()
                        .map(|b| {
                            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                                (b as char).to_string()
                            } else {
                                format!("%{b:02X}")
                            }
                        })
                        .collect();
                    source
                        .fetch::<EventJson>(&format!("/v1/events/{enc}"), &[])
                        .map_err(runtime)?
                        .into_iter()
                        .flatten()
                        .max_by_key(|e| e.ts_ns)
                }
            };
            match found {
                Some(e) => render_events(
                    &EventsResponse {
                        events: vec![e],
                        next_cursor: None,
                    },
                    format,
                ),
                None => return Err((1, format!("no event with id {id:?}"))),
            }
        }
        What::Rollups {
            wheres,
            from_day,
            to_day,
        } => {
            let mut pv = pairs(&Filters {
                wheres: wheres.clone(),
                ..Default::default()
            })
            .map_err(usage)?;
            if let Some(d) = from_day {
                pv.push(("from_day".into(), d.clone()));
            }
            if let Some(d) = to_day {
                pv.push(("to_day".into(), d.clone()));
            }
            let p = parse(&pv)?;
            let resp = match &source {
                Source::Dir(e) => api::rollups(e, &p).map_err(|e| runtime(e.to_string()))?,
                Source::Http { .. } => {
                    let mut merged: std::collections::BTreeMap<
                        (i64, Vec<(String, String)>),
                        RollupBucket,
                    > = Default::default();
                    for part in source
                        .fetch::<RollupsResponse>("/v1/rollups", &p.to_pairs())
                        .map_err(runtime)?
                        .into_iter()
                        .flatten()
                    {
                        for b in part.buckets {
                            let key = (b.day, b.dims.clone().into_iter().collect());
                            match merged.get_mut(&key) {
                                Some(m) => {
                                    m.event_count += b.event_count;
                                    m.metric = m.metric.saturating_add(b.metric);
                                    for (k, v) in b.counters {
                                        *m.counters.entry(k).or_default() += v;
                                    }
                                }
                                None => {
                                    merged.insert(key, b);
                                }
                            }
                        }
                    }
                    RollupsResponse {
                        buckets: merged.into_values().collect(),
                    }
                }
            };
            render_rollups(&resp, format)
        }
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .map_err(|e| runtime(e.to_string()))?;
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Aligned columns.
fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        s.truncate(s.trim_end().len());
        s + "\n"
    };
    let mut out = line(header);
    out += &line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
    for r in rows {
        out += &line(r);
    }
    out
}

fn render(header: Vec<String>, rows: Vec<Vec<String>>, json: String, format: Output) -> String {
    match format {
        Output::Json => json + "\n",
        Output::Table => table(&header, &rows),
        Output::Csv => {
            let mut out = header
                .iter()
                .map(|h| csv_field(h))
                .collect::<Vec<_>>()
                .join(",")
                + "\n";
            for r in rows {
                out += &(r.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(",") + "\n");
            }
            out
        }
    }
}

fn render_aggregate(a: &AggregateResponse, format: Output) -> String {
    let mut header: Vec<String> = [
        "events",
        "metric",
        "latency_ms_sum",
        "latency_detail_ms_sum",
        "min_ts_ns",
        "max_ts_ns",
    ]
    .map(String::from)
    .to_vec();
    let mut row = vec![
        a.event_count.to_string(),
        a.metric.to_string(),
        a.latency_ms_sum.to_string(),
        a.latency_detail_ms_sum.to_string(),
        a.min_ts_ns.map_or(String::new(), |v| v.to_string()),
        a.max_ts_ns.map_or(String::new(), |v| v.to_string()),
    ];
    for (k, v) in &a.counters {
        header.push(k.clone());
        row.push(v.to_string());
    }
    render(
        header,
        vec![row],
        serde_json::to_string_pretty(a).unwrap_or_default(),
        format,
    )
}

fn render_events(r: &EventsResponse, format: Output) -> String {
    let (mut dims, mut counters, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    if let Some(e) = r.events.first() {
        dims = e.dims.keys().cloned().collect();
        counters = e.counters.keys().cloned().collect();
        labels = e.labels.keys().cloned().collect();
    }
    let mut header: Vec<String> = ["id", "ts_ns", "metric", "latency_ms", "status"]
        .map(String::from)
        .to_vec();
    header.extend(dims.iter().cloned());
    header.extend(counters.iter().cloned());
    header.extend(labels.iter().cloned());
    let rows = r
        .events
        .iter()
        .map(|e| {
            let mut row = vec![
                e.id.clone(),
                e.ts_ns.to_string(),
                e.metric.to_string(),
                e.latency_ms.to_string(),
                e.status.to_string(),
            ];
            row.extend(
                dims.iter()
                    .map(|d| e.dims.get(d).cloned().unwrap_or_default()),
            );
            row.extend(
                counters
                    .iter()
                    .map(|c| e.counters.get(c).map_or(String::new(), |v| v.to_string())),
            );
            row.extend(
                labels
                    .iter()
                    .map(|l| e.labels.get(l).cloned().unwrap_or_default()),
            );
            row
        })
        .collect();
    let mut out = render(
        header,
        rows,
        serde_json::to_string_pretty(r).unwrap_or_default(),
        format,
    );
    if format == Output::Table {
        if let Some(c) = &r.next_cursor {
            out += &format!("next page: --cursor '{c}'\n");
        }
    }
    out
}

fn render_rollups(r: &RollupsResponse, format: Output) -> String {
    let (mut dims, mut counters) = (Vec::new(), Vec::new());
    if let Some(b) = r.buckets.first() {
        dims = b.dims.keys().cloned().collect();
        counters = b.counters.keys().cloned().collect();
    }
    let mut header = vec!["day".to_string()];
    header.extend(dims.iter().cloned());
    header.extend(["events".to_string(), "metric".to_string()]);
    header.extend(counters.iter().cloned());
    let rows = r
        .buckets
        .iter()
        .map(|b| {
            let mut row = vec![day_string(b.day)];
            row.extend(
                dims.iter()
                    .map(|d| b.dims.get(d).cloned().unwrap_or_default()),
            );
            row.extend([b.event_count.to_string(), b.metric.to_string()]);
            row.extend(
                counters
                    .iter()
                    .map(|c| b.counters.get(c).map_or(String::new(), |v| v.to_string())),
            );
            row
        })
        .collect();
    render(
        header,
        rows,
        serde_json::to_string_pretty(r).unwrap_or_default(),
        format,
    )
}

/// `YYYY-MM-DD` of a day number.
fn day_string(day: i64) -> String {
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_format() {
        assert_eq!(day_string(0), "1970-01-01");
        assert_eq!(day_string(20_782), "2026-11-25");
        assert_eq!(api::parse_day("d", &day_string(11_016)).unwrap(), 11_016);
    }

    #[test]
    fn csv_escapes() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
