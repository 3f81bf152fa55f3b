//! `keplor-agent query`: aggregate, recent, get and rollups against one or more running agents
//! (their answers merged by `crate::fleet`, so a consumer group of agents answers as one) or a
//! stopped agent's data directory opened read-only. Output: table (default on a terminal), JSON
//! or CSV.
//!
//! When some endpoints do not answer, the merged answer of the others is still printed, marked
//! partial (`partial`/`missing` in JSON, a warning per missing endpoint on stderr), and the exit
//! code is [`EXIT_PARTIAL`] unless `--allow-partial`. When none answers, it is an error (1).
//! With `--expect-members N`, finding fewer than N distinct endpoints is partial as well (a
//! member gone from DNS is named by a `not_resolved` entry in `missing`).
//!
//! Exit codes ([`EXIT_CODES`], printed by `keplor-agent query --help`): 0 an answer; 1 a
//! run-time failure (no endpoint answered, a data directory that cannot be opened); 2 bad
//! usage, including a parameter an agent rejected; 3 partial ([`EXIT_PARTIAL`]);
//! 4 `get` found no event with that id on complete answers ([`EXIT_NOT_FOUND`]).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use keplordb::DynEngine;
use serde::Serialize;

use crate::api::{
    self, AggregateResponse, Cancel, Caps, EventJson, EventsResponse, Params, QueryError,
    RollupsResponse,
};
use crate::config::units::parse_duration;
use crate::fleet::{members_source, Completeness, DnsTarget, FailureKind, Fleet, FleetError};

#[path = "query_groups.rs"]
mod groups;

/// Exit code of a query that some endpoints did not answer (without `--allow-partial`).
pub const EXIT_PARTIAL: u8 = 3;

/// Exit code of `get` when no endpoint has the event and every endpoint answered.
pub const EXIT_NOT_FOUND: u8 = 4;

/// The exit codes, as `keplor-agent query --help` prints them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  the answer was printed
  1  run-time failure: no endpoint answered, the data directory cannot be opened
  2  bad usage: a flag or value (also one an agent rejected with HTTP 400), a bad --ca-file
  3  partial: some endpoints did not answer; the others' merged answer was printed and the
     missing ones named (0 with --allow-partial)
  4  get: no event with that id (every endpoint answered)";

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// Agent endpoint, http://host:port or https://host:port; repeat to query several agents
    /// and merge their answers.
    #[arg(long = "endpoint", short = 'e', global = true)]
    endpoints: Vec<String>,
    /// Every agent behind a DNS name: each A/AAAA record of HOST becomes http://IP:PORT (e.g. a
    /// StatefulSet's headless service). Repeatable; combines with --endpoint.
    #[arg(
        long = "endpoints-dns",
        global = true,
        value_name = "HOST:PORT",
        value_parser = DnsTarget::parse
    )]
    endpoints_dns: Vec<DnsTarget>,
    /// How many agents there should be: finding fewer distinct endpoints (e.g. a pod gone from
    /// the headless service's DNS records) makes the answer partial, like a missing endpoint.
    #[arg(
        long = "expect-members",
        global = true,
        value_name = "N",
        value_parser = at_least_one,
        conflicts_with = "data_dir"
    )]
    expect_members: Option<usize>,
    /// Read a stopped agent's data directory instead (read-only).
    #[arg(long, global = true, conflicts_with_all = ["endpoints", "endpoints_dns"])]
    data_dir: Option<PathBuf>,
    /// Bearer token for the agents' API.
    #[arg(long, global = true, env = "KEPLOR_TOKEN")]
    token: Option<String>,
    /// PEM file of the CA(s) that signed the `https://` endpoints' certificates (default: the
    /// system's roots).
    #[arg(long, global = true, value_name = "PEM", conflicts_with = "data_dir")]
    ca_file: Option<PathBuf>,
    /// Longest wait for a connection to each endpoint.
    #[arg(long, global = true, default_value = "2s", value_parser = positive_duration)]
    connect_timeout: Duration,
    /// Longest wait for each endpoint's answer once connected.
    #[arg(long, global = true, default_value = "30s", value_parser = positive_duration)]
    timeout: Duration,
    /// Exit 0 even when some endpoints did not answer (the output still names them).
    #[arg(long, global = true)]
    allow_partial: bool,
    /// Output format (default: table on a terminal, JSON otherwise); `--format` is an alias.
    #[arg(long, short = 'o', visible_alias = "format", global = true, value_enum)]
    output: Option<Output>,
    /// Boxed so that the binary's `Command::Query` stays the size of its other subcommands.
    #[command(subcommand)]
    what: Box<What>,
}

fn at_least_one(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| format!("{s:?} is not a member count: expected an integer >= 1"))
}

pub(crate) fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be longer than 0".into());
    }
    Ok(d)
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
    Csv,
}

#[derive(Args, Debug, Default, Clone)]
pub(crate) struct Filters {
    /// Equality on a dim, by name: --where user=alice (repeatable).
    #[arg(long = "where", short = 'w', value_name = "DIM=VALUE")]
    wheres: Vec<String>,
    /// Only events newer than this: 15m, 1h, 7d (not with --from: both set the lower bound).
    #[arg(long, conflicts_with = "from")]
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
    /// One event by id (exit 4 when no agent has it).
    #[command(visible_alias = "event")]
    Get {
        /// The event id.
        id: String,
    },
    /// The largest groups of one dim (or a pair), with exact sums and an "(others)" row:
    /// `query top --by model --order metric`.
    Top {
        #[command(flatten)]
        filters: Filters,
        /// The dim to group by; give it twice to group by a pair (--by user --by model).
        #[arg(long, required = true, value_name = "DIM")]
        by: Vec<String>,
        /// What ranks the groups: count, metric, latency or a counter's name.
        #[arg(long, default_value = "count")]
        order: String,
        /// How many groups.
        #[arg(long, short = 'n', default_value_t = 10)]
        limit: usize,
    },
    /// The matching events per UTC-aligned time bucket, optionally one series per largest
    /// group of a dim: `query series --every 1h --by status`.
    Series {
        #[command(flatten)]
        filters: Filters,
        /// Bucket width: 1 to 999 and a unit s, m, h or d (30s, 15m, 1h, 7d). Buckets start at
        /// multiples of the width since the epoch (UTC).
        #[arg(long)]
        every: String,
        /// Split by this dim's largest groups (give it twice for a pair).
        #[arg(long, value_name = "DIM")]
        by: Vec<String>,
        /// What ranks the groups: count, metric, latency or a counter's name.
        #[arg(long, default_value = "count")]
        order: String,
        /// How many groups get their own series (the rest are summed as "(others)").
        #[arg(long, short = 'n', default_value_t = 5)]
        limit: usize,
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

/// Why a query command failed, and its exit code.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
    /// Who answered, when endpoints were asked.
    completeness: Option<Completeness>,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
        completeness: None,
    }
}

fn runtime(message: impl Into<String>) -> Failure {
    Failure {
        code: 1,
        message: message.into(),
        completeness: None,
    }
}

impl From<QueryError> for Failure {
    fn from(e: QueryError) -> Failure {
        match e {
            QueryError::Param(_) | QueryError::TooLarge(_) => usage(e.to_string()),
            QueryError::Engine(_) | QueryError::Cancelled => runtime(e.to_string()),
        }
    }
}

impl From<FleetError> for Failure {
    fn from(e: FleetError) -> Failure {
        match e {
            FleetError::BadRequest { .. } | FleetError::BadEndpoint(_) | FleetError::CaFile(_) => {
                usage(e.to_string())
            }
            _ => runtime(e.to_string()),
        }
    }
}

/// An answer, and who answered when endpoints were asked (`None` for a data directory).
type Got<T> = (T, Option<Completeness>);

/// Where the answers come from.
enum Source {
    Fleet(Fleet),
    Dir(Box<DynEngine>),
}

impl Source {
    fn open(args: &QueryArgs) -> Result<Source, Failure> {
        if let Some(dir) = &args.data_dir {
            let engine = DynEngine::open_read_only(dir)
                .map_err(|e| runtime(format!("{}: {e}", dir.display())))?;
            return Ok(Source::Dir(Box::new(engine)));
        }
        let mut endpoints = args.endpoints.clone();
        for target in &args.endpoints_dns {
            endpoints.extend(target.resolve()?);
        }
        if endpoints.is_empty() {
            endpoints.push("http://127.0.0.1:8686".into());
        }
        let mut fleet = Fleet::new(
            endpoints,
            args.token.clone(),
            args.connect_timeout,
            args.timeout,
        )?;
        if let Some(ca) = &args.ca_file {
            fleet = fleet.trust_ca_file(ca)?;
        }
        let fleet = match args.expect_members {
            Some(n) => fleet.expect_members(n, members_source(&args.endpoints_dns)),
            None => fleet,
        };
        Ok(Source::Fleet(fleet))
    }

    fn aggregate(&self, p: &Params) -> Result<Got<AggregateResponse>, Failure> {
        Ok(match self {
            Source::Dir(e) => (api::aggregate(e, p)?, None),
            Source::Fleet(f) => {
                let a = f.aggregate(p)?;
                (a.value, Some(a.completeness))
            }
        })
    }

    /// `p.limit` must be `limit`.
    fn events(&self, p: &Params, limit: usize) -> Result<Got<EventsResponse>, Failure> {
        Ok(match self {
            Source::Dir(e) => (api::events(e, p, &Caps::NONE, &Cancel::default())?, None),
            Source::Fleet(f) => {
                let a = f.events(p, limit, usize::MAX)?;
                (a.value, Some(a.completeness))
            }
        })
    }

    fn get(&self, id: &str) -> Result<Got<Option<EventJson>>, Failure> {
        Ok(match self {
            Source::Dir(e) => (api::get(e, id)?, None),
            Source::Fleet(f) => {
                let a = f.get(id)?;
                (a.value, Some(a.completeness))
            }
        })
    }

    fn rollups(&self, p: &Params) -> Result<Got<RollupsResponse>, Failure> {
        Ok(match self {
            Source::Dir(e) => (api::rollups(e, p, &Caps::NONE, &Cancel::default())?, None),
            Source::Fleet(f) => {
                let a = f.rollups(p)?;
                (a.value, Some(a.completeness))
            }
        })
    }
}

pub fn main(args: QueryArgs) -> ExitCode {
    match execute(&args) {
        Ok(Some(c)) if c.partial => {
            warn_partial(&c);
            if args.allow_partial {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_PARTIAL)
            }
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(f) => {
            if let Some(c) = f.completeness.as_ref().filter(|c| c.partial) {
                warn_partial(c);
            }
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// One stderr line per endpoint that did not answer, and one for members not found at all.
fn warn_partial(c: &Completeness) {
    let (unresolved, failed): (Vec<_>, Vec<_>) = c
        .missing
        .iter()
        .partition(|m| m.kind == FailureKind::NotResolved);
    if !failed.is_empty() {
        eprintln!(
            "warning: partial answer: {} of {} endpoints did not answer; the figures cover the {} that did",
            failed.len(),
            c.endpoints,
            c.answered.len()
        );
    }
    for m in failed {
        eprintln!("warning: {} did not answer: {}", m.endpoint, m.error);
    }
    for m in unresolved {
        eprintln!(
            "warning: partial answer: {}: {}; the figures cover the {} endpoints that answered",
            m.endpoint,
            m.error,
            c.answered.len()
        );
    }
}

/// A rendered answer, and who answered when endpoints were asked.
type Printed = (String, Option<Completeness>);

/// Runs the command and prints its answer; who answered, when endpoints were asked.
fn execute(args: &QueryArgs) -> Result<Option<Completeness>, Failure> {
    let format = args.output.unwrap_or(if std::io::stdout().is_terminal() {
        Output::Table
    } else {
        Output::Json
    });
    let source = Source::open(args)?;
    let (out, completeness) = match args.what.as_ref() {
        What::Aggregate(f) => aggregate(&source, f, format)?,
        What::Recent {
            filters,
            limit,
            cursor,
        } => recent(&source, filters, *limit, cursor.as_deref(), format)?,
        What::Get { id } => get(&source, id, args.allow_partial, format)?,
        What::Top {
            filters,
            by,
            order,
            limit,
        } => groups::top(&source, filters, by, order, *limit, format)?,
        What::Series {
            filters,
            every,
            by,
            order,
            limit,
        } => groups::series(&source, filters, every, by, order, *limit, format)?,
        What::Rollups {
            wheres,
            from_day,
            to_day,
        } => rollups(
            &source,
            wheres,
            from_day.as_deref(),
            to_day.as_deref(),
            format,
        )?,
    };
    std::io::stdout()
        .lock()
        .write_all(out.as_bytes())
        .map_err(|e| runtime(e.to_string()))?;
    Ok(completeness)
}

/// `query aggregate`.
fn aggregate(source: &Source, f: &Filters, format: Output) -> Result<Printed, Failure> {
    let p = parse(&pairs(f).map_err(usage)?)?;
    let (a, c) = source.aggregate(&p)?;
    Ok((render_aggregate(&a, c.as_ref(), format), c))
}

/// `query recent`: a page of the newest events, after `cursor`.
fn recent(
    source: &Source,
    filters: &Filters,
    limit: usize,
    cursor: Option<&str>,
    format: Output,
) -> Result<Printed, Failure> {
    let mut pv = pairs(filters).map_err(usage)?;
    // Parsed with the rest so that `-n 0` is refused like `limit=0`.
    pv.push(("limit".into(), limit.to_string()));
    if let Some(c) = cursor {
        pv.push(("cursor".into(), c.to_string()));
    }
    let (r, c) = source.events(&parse(&pv)?, limit)?;
    Ok((render_events(&r, c.as_ref(), format), c))
}

/// `query get`: one event, printed as a page of one.
fn get(source: &Source, id: &str, allow_partial: bool, format: Output) -> Result<Printed, Failure> {
    match source.get(id)? {
        (Some(e), c) => {
            let r = EventsResponse {
                events: vec![e],
                next_cursor: None,
            };
            Ok((render_events(&r, c.as_ref(), format), c))
        }
        (None, c) => Err(not_found(id, c, allow_partial)),
    }
}

/// `query rollups`.
fn rollups(
    source: &Source,
    wheres: &[String],
    from_day: Option<&str>,
    to_day: Option<&str>,
    format: Output,
) -> Result<Printed, Failure> {
    let mut pv = pairs(&Filters {
        wheres: wheres.to_vec(),
        ..Default::default()
    })
    .map_err(usage)?;
    if let Some(d) = from_day {
        pv.push(("from_day".into(), d.to_string()));
    }
    if let Some(d) = to_day {
        pv.push(("to_day".into(), d.to_string()));
    }
    let (r, c) = source.rollups(&parse(&pv)?)?;
    Ok((render_rollups(&r, c.as_ref(), format), c))
}

/// The parameters of `f`, as `keplor-agent export` takes them; a bad one is named by its flag.
pub(crate) fn filter_params(f: &Filters) -> Result<Params, String> {
    parse(&pairs(f)?).map_err(|e| e.message)
}

/// Parses the request's parameters; a bad one is named by the flag that set it.
fn parse(v: &[(String, String)]) -> Result<Params, Failure> {
    Params::parse(v.iter().map(|(a, b)| (a.as_str(), b.as_str())))
        .map_err(|e| usage(format!("{}: {}", flag_of(&e.parameter), e.error)))
}

/// The command-line flag that sets a request parameter.
fn flag_of(parameter: &str) -> String {
    match parameter {
        "status_min" | "status_max" => "--status".into(),
        "limit" => "--limit".into(),
        p if p.starts_with("dim.") => format!("--where {}", &p[4..]),
        p => format!("--{}", p.replace('_', "-")),
    }
}

/// No endpoint that answered has the event: [`EXIT_NOT_FOUND`], or [`EXIT_PARTIAL`] when some endpoint
/// that did not answer might have it (unless partial answers are allowed).
fn not_found(id: &str, c: Option<Completeness>, allow_partial: bool) -> Failure {
    let partial = c.as_ref().is_some_and(|c| c.partial);
    let message = if partial {
        format!("no event with id {id:?} on the endpoints that answered")
    } else {
        format!("no event with id {id:?}")
    };
    Failure {
        code: if partial && !allow_partial {
            EXIT_PARTIAL
        } else {
            EXIT_NOT_FOUND
        },
        message,
        completeness: c,
    }
}

/// JSON of an answer; with endpoints, their completeness fields flattened into it.
fn json_of<T: Serialize>(value: &T, c: Option<&Completeness>) -> String {
    #[derive(Serialize)]
    struct Marked<'a, T> {
        #[serde(flatten)]
        value: &'a T,
        #[serde(flatten)]
        completeness: &'a Completeness,
    }
    match c {
        Some(completeness) => serde_json::to_string_pretty(&Marked {
            value,
            completeness,
        }),
        None => serde_json::to_string_pretty(value),
    }
    .unwrap_or_default()
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

fn render_aggregate(a: &AggregateResponse, c: Option<&Completeness>, format: Output) -> String {
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
    render(header, vec![row], json_of(a, c), format)
}

fn render_events(r: &EventsResponse, c: Option<&Completeness>, format: Output) -> String {
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
    let mut out = render(header, rows, json_of(r, c), format);
    if format == Output::Table {
        if let Some(c) = &r.next_cursor {
            out += &format!("next page: --cursor '{c}'\n");
        }
    }
    out
}

fn render_rollups(r: &RollupsResponse, c: Option<&Completeness>, format: Output) -> String {
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
            let mut row = vec![keplordb::date_of_day(b.day)];
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
    render(header, rows, json_of(r, c), format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_format() {
        assert_eq!(keplordb::date_of_day(0), "1970-01-01");
        assert_eq!(keplordb::date_of_day(20_782), "2026-11-25");
        assert_eq!(
            api::parse_day("d", &keplordb::date_of_day(11_016)).unwrap(),
            11_016
        );
    }

    #[test]
    fn csv_escapes() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
