//! The `[schema]` section: the runtime schema (dims, counters, labels and the fixed columns)
//! and the path each column is read from, checked against `[format]`.

use serde::Serialize;

use super::format::Format;
use super::raw::{RawColumn, RawDim, RawId, RawSchema, RawTs};
use super::{err, ConfigError};

/// Unit of a timestamp field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TsUnit {
    Ns,
    Us,
    Ms,
    S,
    Rfc3339,
}

/// Where an event's timestamp comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum TsSource {
    /// The Kafka message timestamp.
    Kafka,
    Field {
        path: String,
        unit: TsUnit,
    },
}

/// Where an event's id comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum IdSource {
    /// `topic/partition/offset`: unique and stable across replays.
    Offset,
    Field {
        path: String,
    },
}

/// One dim: name, where to read it, indexes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DimMapping {
    pub name: String,
    pub path: String,
    pub bloom: bool,
    pub rollup: bool,
}

/// One counter or label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnMapping {
    pub name: String,
    pub path: String,
}

/// The runtime schema and how each column is read from a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaMapping {
    pub id: u8,
    pub dims: Vec<DimMapping>,
    pub counters: Vec<ColumnMapping>,
    pub labels: Vec<ColumnMapping>,
    pub ts: TsSource,
    pub event_id: IdSource,
    pub metric: Option<String>,
    pub latency_ms: Option<String>,
    pub latency_detail_ms: Option<String>,
    pub status: Option<String>,
    pub flags: Option<String>,
}

/// Resolves `[schema]` (required); its paths are checked against `format`.
pub(super) fn resolve(
    raw: Option<RawSchema>,
    format: &Format,
) -> Result<SchemaMapping, ConfigError> {
    let s = raw.ok_or_else(|| err("schema", "required: the dims, counters and labels to store"))?;
    let id = s.id.ok_or_else(|| {
        err(
            "schema.id",
            "required: a schema id 0..=255 recorded in the data files",
        )
    })?;
    one_bloom(&s.dims)?;
    let ts = ts_source(s.ts)?;
    let event_id = id_source(s.event_id)?;
    let schema = SchemaMapping {
        id,
        dims: s
            .dims
            .into_iter()
            .map(|d| DimMapping {
                name: d.name,
                path: d.path,
                bloom: d.bloom,
                rollup: d.rollup,
            })
            .collect(),
        counters: columns(s.counters),
        labels: columns(s.labels),
        ts,
        event_id,
        metric: s.metric,
        latency_ms: s.latency_ms,
        latency_detail_ms: s.latency_detail_ms,
        status: s.status,
        flags: s.flags,
    };
    check_paths(&schema, format)?;
    Ok(schema)
}

/// At most one dim carries the bloom filter.
fn one_bloom(dims: &[RawDim]) -> Result<(), ConfigError> {
    let blooms: Vec<&str> = dims
        .iter()
        .filter(|d| d.bloom)
        .map(|d| d.name.as_str())
        .collect();
    if blooms.len() > 1 {
        return Err(err(
            "schema.dims",
            format!(
                "dims `{}` and `{}` are both marked bloom; only one dim carries the bloom filter",
                blooms[0], blooms[1]
            ),
        ));
    }
    Ok(())
}

/// `schema.ts`: the Kafka timestamp unless a field (with its unit) is named.
fn ts_source(raw: Option<RawTs>) -> Result<TsSource, ConfigError> {
    let Some(t) = raw else {
        return Ok(TsSource::Kafka);
    };
    let source = t
        .source
        .as_deref()
        .unwrap_or(if t.path.is_some() { "field" } else { "kafka" });
    match source {
        "kafka" => Ok(TsSource::Kafka),
        "field" => Ok(TsSource::Field {
            path: t.path.ok_or_else(|| {
                err(
                    "schema.ts.path",
                    "schema.ts.source = \"field\" needs the field's path",
                )
            })?,
            unit: ts_unit(t.unit.as_deref())?,
        }),
        other => Err(err(
            "schema.ts.source",
            format!("{other:?}: use field or kafka"),
        )),
    }
}

/// `schema.ts.unit` (default `ms`).
fn ts_unit(unit: Option<&str>) -> Result<TsUnit, ConfigError> {
    match unit.unwrap_or("ms") {
        "ns" => Ok(TsUnit::Ns),
        "us" => Ok(TsUnit::Us),
        "ms" => Ok(TsUnit::Ms),
        "s" => Ok(TsUnit::S),
        "rfc3339" => Ok(TsUnit::Rfc3339),
        other => Err(err(
            "schema.ts.unit",
            format!("{other:?}: use ns, us, ms, s or rfc3339"),
        )),
    }
}

/// `schema.event_id`: the message's offset unless a field is named.
fn id_source(raw: Option<RawId>) -> Result<IdSource, ConfigError> {
    let Some(i) = raw else {
        return Ok(IdSource::Offset);
    };
    let source = i
        .source
        .as_deref()
        .unwrap_or(if i.path.is_some() { "field" } else { "offset" });
    match source {
        "offset" => Ok(IdSource::Offset),
        "field" => Ok(IdSource::Field {
            path: i.path.ok_or_else(|| {
                err(
                    "schema.event_id.path",
                    "source = \"field\" needs the field's path",
                )
            })?,
        }),
        other => Err(err(
            "schema.event_id.source",
            format!("{other:?}: use offset or field"),
        )),
    }
}

fn columns(raw: Vec<RawColumn>) -> Vec<ColumnMapping> {
    raw.into_iter()
        .map(|c| ColumnMapping {
            name: c.name,
            path: c.path,
        })
        .collect()
}

/// Every path is a `$kafka.` metadata path, or (with JSON) a JSON pointer.
fn check_paths(schema: &SchemaMapping, format: &Format) -> Result<(), ConfigError> {
    let ts_path = match &schema.ts {
        TsSource::Field { path, .. } => Some(path),
        TsSource::Kafka => None,
    };
    let id_path = match &schema.event_id {
        IdSource::Field { path } => Some(path),
        IdSource::Offset => None,
    };
    let fixed = [
        ("metric", schema.metric.as_ref()),
        ("latency_ms", schema.latency_ms.as_ref()),
        ("latency_detail_ms", schema.latency_detail_ms.as_ref()),
        ("status", schema.status.as_ref()),
        ("flags", schema.flags.as_ref()),
        ("ts.path", ts_path),
        ("event_id.path", id_path),
    ];
    for (kind, p) in schema
        .dims
        .iter()
        .map(|d| ("dims", &d.path))
        .chain(schema.counters.iter().map(|c| ("counters", &c.path)))
        .chain(schema.labels.iter().map(|c| ("labels", &c.path)))
        .chain(fixed.into_iter().filter_map(|(k, p)| p.map(|p| (k, p))))
    {
        if let Some(rest) = p.strip_prefix("$kafka.") {
            crate::mapping::check_kafka_path(rest).map_err(|m| err(format!("schema.{kind}"), m))?;
            continue;
        }
        if matches!(format, Format::Json) && !p.is_empty() && !p.starts_with('/') {
            return Err(err(
                format!("schema.{kind}"),
                format!(
                    "{p:?} is not a JSON pointer: JSON paths start with '/', e.g. \"/user/id\""
                ),
            ));
        }
    }
    Ok(())
}
