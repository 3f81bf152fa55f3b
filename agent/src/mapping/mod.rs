//! From a Kafka message to an engine event: decode (JSON, Avro, Confluent-framed Avro), then
//! read each column at its configured path.

mod time;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use apache_avro::types::Value as Avro;
use keplordb::{DynEvent, EventFlags};
use serde_json::value::RawValue;
use serde_json::Value as Json;
use std::borrow::Cow;

use crate::config::{Config, Format, IdSource, TsSource, TsUnit};
pub use time::parse_rfc3339;

/// Why a message could not become an event. `reason()` is a bounded label for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapError {
    /// The payload is not valid for the configured format.
    Decode(String),
    /// A column's value has the wrong type or is out of range.
    Field {
        column: String,
        path: String,
        problem: String,
    },
    /// The message has no payload.
    Empty,
    /// The schema registry could not be asked: not the message's fault, so no error policy
    /// applies (the agent stops rather than skip or dead-letter good messages).
    Registry(String),
}

impl MapError {
    /// Metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            MapError::Decode(_) => "decode",
            MapError::Field { .. } => "field",
            MapError::Empty => "empty",
            MapError::Registry(_) => "registry",
        }
    }
}

impl std::fmt::Display for MapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MapError::Decode(e) => write!(f, "cannot decode payload: {e}"),
            MapError::Field {
                column,
                path,
                problem,
            } => write!(f, "column `{column}` (at {path}): {problem}"),
            MapError::Empty => f.write_str("message has no payload"),
            MapError::Registry(e) => write!(f, "schema registry unavailable: {e}"),
        }
    }
}

/// Where a message came from.
#[derive(Debug, Clone, Copy)]
pub struct Meta<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Kafka message timestamp in milliseconds.
    pub timestamp_ms: Option<i64>,
}

/// A JSON object with its values left unparsed: only the columns' paths are decoded.
type JsonObject<'a> = HashMap<Cow<'a, str>, &'a RawValue, keplordb::hash::FastBuild>;

/// A decoded payload. JSON is parsed lazily: the top-level object's keys are indexed, nested
/// objects are parsed when a path goes through them, and only the values read are decoded.
enum Doc<'a> {
    JsonObject(JsonObject<'a>),
    JsonOther(&'a RawValue),
    Avro(Avro),
}

/// The child of a JSON container.
fn json_child<'a>(raw: &'a RawValue, key: &str, index: Option<usize>) -> Option<&'a RawValue> {
    let text = raw.get();
    match text.as_bytes().first()? {
        b'{' => serde_json::from_str::<JsonObject<'a>>(text)
            .ok()?
            .get(key)
            .copied(),
        b'[' => serde_json::from_str::<Vec<&'a RawValue>>(text)
            .ok()?
            .get(index?)
            .copied(),
        _ => None,
    }
}

/// A JSON scalar.
fn json_scalar(raw: &RawValue) -> Scalar<'_> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => match serde_json::from_str::<&str>(text) {
            Ok(s) => Scalar::Str(Cow::Borrowed(s)),
            // Escaped: decode into an owned string.
            Err(_) => serde_json::from_str::<String>(text)
                .map_or(Scalar::Missing, |s| Scalar::Str(Cow::Owned(s))),
        },
        Some(b't') => Scalar::Bool(true),
        Some(b'f') => Scalar::Bool(false),
        Some(b'n') | Some(b'{') | Some(b'[') | None => Scalar::Missing,
        Some(_) => {
            if let Ok(i) = text.parse::<i64>() {
                Scalar::Int(i)
            } else if let Ok(u) = text.parse::<u64>() {
                Scalar::UInt(u)
            } else {
                text.parse::<f64>().map_or(Scalar::Missing, Scalar::Float)
            }
        }
    }
}

/// A scalar read at a path.
enum Scalar<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Bytes(&'a [u8]),
    Missing,
}

/// A path compiled for the configured format.
#[derive(Debug, Clone)]
enum Path {
    /// JSON pointer tokens (unescaped), each with its array index when it is a number.
    Json(String, Vec<(String, Option<usize>)>),
    Avro(Vec<String>),
}

/// Splits a JSON pointer (RFC 6901) once, so lookups do not re-parse it per message.
fn compile_pointer(p: &str) -> Path {
    let tokens = p
        .split('/')
        .skip(1)
        .map(|t| {
            let t = t.replace("~1", "/").replace("~0", "~");
            let index = (!t.is_empty()
                && t.bytes().all(|b| b.is_ascii_digit())
                && (t == "0" || !t.starts_with('0')))
            .then(|| t.parse().ok())
            .flatten();
            (t, index)
        })
        .collect();
    Path::Json(p.to_string(), tokens)
}

impl Doc<'_> {
    fn get(&self, path: &Path) -> Scalar<'_> {
        match (self, path) {
            (Doc::JsonObject(top), Path::Json(_, tokens)) => {
                let Some(((first, _), rest)) = tokens.split_first() else {
                    return Scalar::Missing;
                };
                let Some(mut cur) = top.get(first.as_str()).copied() else {
                    return Scalar::Missing;
                };
                for (key, index) in rest {
                    match json_child(cur, key, *index) {
                        Some(next) => cur = next,
                        None => return Scalar::Missing,
                    }
                }
                json_scalar(cur)
            }
            (Doc::JsonOther(root), Path::Json(_, tokens)) => {
                let mut cur = *root;
                for (key, index) in tokens {
                    match json_child(cur, key, *index) {
                        Some(next) => cur = next,
                        None => return Scalar::Missing,
                    }
                }
                json_scalar(cur)
            }
            (Doc::Avro(v), Path::Avro(segs)) => {
                let mut cur = v;
                for seg in segs {
                    while let Avro::Union(_, inner) = cur {
                        cur = inner;
                    }
                    let next = match cur {
                        Avro::Record(fields) => {
                            fields.iter().find(|(k, _)| k == seg).map(|(_, x)| x)
                        }
                        Avro::Map(m) => m.get(seg),
                        _ => None,
                    };
                    match next {
                        Some(n) => cur = n,
                        None => return Scalar::Missing,
                    }
                }
                while let Avro::Union(_, inner) = cur {
                    cur = inner;
                }
                match cur {
                    Avro::Null => Scalar::Missing,
                    Avro::Boolean(b) => Scalar::Bool(*b),
                    Avro::Int(i) | Avro::Date(i) | Avro::TimeMillis(i) => Scalar::Int(*i as i64),
                    Avro::Long(i)
                    | Avro::TimeMicros(i)
                    | Avro::TimestampMillis(i)
                    | Avro::TimestampMicros(i)
                    | Avro::TimestampNanos(i)
                    | Avro::LocalTimestampMillis(i)
                    | Avro::LocalTimestampMicros(i)
                    | Avro::LocalTimestampNanos(i) => Scalar::Int(*i),
                    Avro::Float(f) => Scalar::Float(*f as f64),
                    Avro::Double(f) => Scalar::Float(*f),
                    Avro::String(s) | Avro::Enum(_, s) => Scalar::Str(Cow::Borrowed(s)),
                    Avro::Bytes(b) | Avro::Fixed(_, b) => Scalar::Bytes(b),
                    _ => Scalar::Missing,
                }
            }
            _ => Scalar::Missing,
        }
    }
}

/// How to turn payload bytes into a [`Doc`].
enum Decoder {
    Json,
    Avro(AvroReader),
    Confluent {
        readers: RwLock<HashMap<u32, Arc<AvroReader>>>,
        registry: Option<String>,
    },
}

/// A datum reader for one writer schema. Schemas live as long as the process (they are few:
/// one per configured file or registry id), so they are leaked to give the reader a `'static`
/// borrow and keep the resolved names across messages.
struct AvroReader {
    reader: apache_avro::reader::datum::GenericDatumReader<'static>,
    /// Re-encodes a decoded value (validating it) to measure its length; see `read_datum`.
    writer: apache_avro::writer::datum::GenericDatumWriter<'static>,
}

fn avro_reader(schema: apache_avro::Schema) -> Result<AvroReader, String> {
    let schema: &'static apache_avro::Schema = Box::leak(Box::new(schema));
    let reader = apache_avro::reader::datum::GenericDatumReader::builder(schema)
        .build()
        .map_err(|e| format!("Avro schema: {e}"))?;
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(schema)
        .build()
        .map_err(|e| format!("Avro schema: {e}"))?;
    Ok(AvroReader { reader, writer })
}

/// Counts bytes without storing them.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn read_datum(r: &AvroReader, mut bytes: &[u8]) -> Result<Doc<'static>, MapError> {
    let whole_len = bytes.len();
    let v = r
        .reader
        .read_value(&mut bytes)
        .map_err(|e| MapError::Decode(e.to_string()))?;
    if !bytes.is_empty() {
        return Err(MapError::Decode(format!(
            "{} bytes left after the Avro datum",
            bytes.len()
        )));
    }
    // apache-avro reads a datum cut short inside a union as null, so a truncated message can
    // decode. A value has exactly one binary encoding length: a datum that re-encodes to fewer
    // bytes than it was read from is incomplete. (The writer also validates the value.)
    let mut count = ByteCount(0);
    r.writer
        .write_value_ref(&mut count, &v)
        .map_err(|e| MapError::Decode(e.to_string()))?;
    if count.0 != whole_len {
        return Err(MapError::Decode(format!(
            "Avro datum is truncated: {whole_len} bytes read, the decoded value needs {}",
            count.0
        )));
    }
    Ok(Doc::Avro(v))
}

/// Column paths, compiled.
struct Columns {
    dims: Vec<(String, Path)>,
    counters: Vec<(String, Path)>,
    labels: Vec<(String, Path)>,
    metric: Option<Path>,
    latency: Option<Path>,
    latency_detail: Option<Path>,
    status: Option<Path>,
    flags: Option<Path>,
    ts: Option<(Path, TsUnit)>,
    id: Option<Path>,
}

/// Maps messages to events according to the configuration.
pub struct Mapper {
    decoder: Decoder,
    columns: Columns,
}

impl std::fmt::Debug for Mapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mapper")
    }
}

fn read_schema(path: &std::path::Path) -> Result<apache_avro::Schema, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read Avro schema {}: {e}", path.display()))?;
    apache_avro::Schema::parse_str(&text)
        .map_err(|e| format!("invalid Avro schema {}: {e}", path.display()))
}

impl Mapper {
    /// Compiles the mapping; reads Avro schema files.
    pub fn new(config: &Config) -> Result<Mapper, String> {
        let avro = !matches!(config.format, Format::Json);
        let compile = |p: &str| {
            if avro {
                Path::Avro(
                    p.trim_start_matches('/')
                        .split(['.', '/'])
                        .map(str::to_string)
                        .collect(),
                )
            } else {
                compile_pointer(p)
            }
        };
        let decoder = match &config.format {
            Format::Json => Decoder::Json,
            Format::Avro { schema_file } => Decoder::Avro(avro_reader(read_schema(schema_file)?)?),
            Format::AvroConfluent {
                schemas,
                registry_url,
            } => {
                let mut map = HashMap::new();
                for (id, file) in schemas {
                    map.insert(*id, Arc::new(avro_reader(read_schema(file)?)?));
                }
                Decoder::Confluent {
                    readers: RwLock::new(map),
                    registry: registry_url.clone(),
                }
            }
        };
        let s = &config.schema;
        let columns = Columns {
            dims: s
                .dims
                .iter()
                .map(|d| (d.name.clone(), compile(&d.path)))
                .collect(),
            counters: s
                .counters
                .iter()
                .map(|c| (c.name.clone(), compile(&c.path)))
                .collect(),
            labels: s
                .labels
                .iter()
                .map(|c| (c.name.clone(), compile(&c.path)))
                .collect(),
            metric: s.metric.as_deref().map(compile),
            latency: s.latency_ms.as_deref().map(compile),
            latency_detail: s.latency_detail_ms.as_deref().map(compile),
            status: s.status.as_deref().map(compile),
            flags: s.flags.as_deref().map(compile),
            ts: match &s.ts {
                TsSource::Kafka => None,
                TsSource::Field { path, unit } => Some((compile(path), *unit)),
            },
            id: match &s.event_id {
                IdSource::Offset => None,
                IdSource::Field { path } => Some(compile(path)),
            },
        };
        Ok(Mapper { decoder, columns })
    }

    fn decode<'a>(&self, payload: &'a [u8]) -> Result<Doc<'a>, MapError> {
        match &self.decoder {
            Decoder::Json => {
                let text = std::str::from_utf8(payload)
                    .map_err(|e| MapError::Decode(format!("payload is not UTF-8: {e}")))?;
                if text.trim_start().starts_with('{') {
                    serde_json::from_str::<JsonObject<'_>>(text).map(Doc::JsonObject)
                } else {
                    serde_json::from_str::<&RawValue>(text).map(Doc::JsonOther)
                }
                .map_err(|e| MapError::Decode(e.to_string()))
            }
            Decoder::Avro(reader) => read_datum(reader, payload),
            Decoder::Confluent { readers, registry } => {
                if payload.len() < 5 || payload[0] != 0 {
                    return Err(MapError::Decode(
                        "not Confluent-framed: expected magic byte 0 and a 4-byte schema id".into(),
                    ));
                }
                let id = u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]);
                let known = readers
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&id)
                    .cloned();
                let reader = match known {
                    Some(r) => r,
                    None => {
                        let Some(url) = registry else {
                            return Err(MapError::Decode(format!(
                                "unknown schema id {id} (not in format.schemas)"
                            )));
                        };
                        let r = Arc::new(
                            avro_reader(fetch_schema(url, id).map_err(MapError::Registry)?)
                                .map_err(MapError::Decode)?,
                        );
                        readers
                            .write()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(id, r.clone());
                        r
                    }
                };
                read_datum(&reader, &payload[5..])
            }
        }
    }

    /// Maps one message.
    pub fn map(&self, payload: Option<&[u8]>, meta: Meta<'_>) -> Result<DynEvent, MapError> {
        let payload = payload.filter(|p| !p.is_empty()).ok_or(MapError::Empty)?;
        let doc = self.decode(payload)?;
        let c = &self.columns;
        let field = |column: &str, path: &Path, problem: String| MapError::Field {
            column: column.to_string(),
            path: match path {
                Path::Json(p, _) => p.clone(),
                Path::Avro(s) => s.join("."),
            },
            problem,
        };
        let text = |name: &str, p: &Path| -> Result<String, MapError> {
            Ok(match doc.get(p) {
                Scalar::Missing => String::new(),
                Scalar::Str(s) => s.to_string(),
                Scalar::Int(i) => i.to_string(),
                Scalar::UInt(u) => u.to_string(),
                Scalar::Float(f) => f.to_string(),
                Scalar::Bool(b) => b.to_string(),
                Scalar::Bytes(b) => String::from_utf8(b.to_vec())
                    .map_err(|_| field(name, p, "bytes are not UTF-8".into()))?,
            })
        };
        let int = |name: &str, p: &Path| -> Result<i128, MapError> {
            match doc.get(p) {
                Scalar::Missing => Ok(0),
                Scalar::Int(i) => Ok(i as i128),
                Scalar::UInt(u) => Ok(u as i128),
                Scalar::Float(f) if f.is_finite() && f.fract() == 0.0 => Ok(f as i128),
                Scalar::Str(s) => s
                    .trim()
                    .parse::<i128>()
                    .map_err(|_| field(name, p, format!("{s:?} is not a whole number"))),
                Scalar::Bool(b) => Ok(b as i128),
                _ => Err(field(name, p, "expected a whole number".into())),
            }
        };
        let ranged = |name: &str, p: &Path, lo: i128, hi: i128| -> Result<i128, MapError> {
            let v = int(name, p)?;
            if v < lo || v > hi {
                return Err(field(name, p, format!("{v} is out of range {lo}..={hi}")));
            }
            Ok(v)
        };
        let opt = |name: &str, p: &Option<Path>, lo: i128, hi: i128| -> Result<i128, MapError> {
            p.as_ref().map_or(Ok(0), |p| ranged(name, p, lo, hi))
        };

        let ts_ns = match &c.ts {
            None => meta.timestamp_ms.unwrap_or(0).saturating_mul(1_000_000),
            Some((p, unit)) => {
                let v = match (doc.get(p), unit) {
                    (Scalar::Str(s), TsUnit::Rfc3339) => {
                        parse_rfc3339(&s).map_err(|e| field("ts", p, e))? as i128
                    }
                    (Scalar::Missing, _) => return Err(field("ts", p, "missing".into())),
                    (_, TsUnit::Rfc3339) => {
                        return Err(field("ts", p, "expected an RFC 3339 string".into()))
                    }
                    _ => {
                        let n = int("ts", p)?;
                        let scale = match unit {
                            TsUnit::Ns => 1,
                            TsUnit::Us => 1_000,
                            TsUnit::Ms => 1_000_000,
                            _ => 1_000_000_000,
                        };
                        n.checked_mul(scale).ok_or_else(|| {
                            field("ts", p, "out of the representable range".into())
                        })?
                    }
                };
                i64::try_from(v)
                    .map_err(|_| field("ts", p, "out of the representable range".into()))?
            }
        };
        let id = match &c.id {
            None => format!("{}/{}/{}", meta.topic, meta.partition, meta.offset),
            Some(p) => {
                let id = text("event_id", p)?;
                if id.is_empty() {
                    return Err(field("event_id", p, "missing".into()));
                }
                id
            }
        };
        let event = DynEvent {
            id,
            ts_ns,
            metric: opt("metric", &c.metric, i64::MIN as i128, i64::MAX as i128)? as i64,
            counters: c
                .counters
                .iter()
                .map(|(n, p)| ranged(n, p, 0, u32::MAX as i128).map(|v| v as u32))
                .collect::<Result<_, _>>()?,
            latency_ms: opt("latency_ms", &c.latency, 0, u32::MAX as i128)? as u32,
            latency_detail_ms: opt("latency_detail_ms", &c.latency_detail, 0, u32::MAX as i128)?
                as u32,
            status: opt("status", &c.status, 0, u16::MAX as i128)? as u16,
            flags: EventFlags(opt("flags", &c.flags, 0, u16::MAX as i128)? as u16),
            dims: c
                .dims
                .iter()
                .map(|(n, p)| text(n, p))
                .collect::<Result<_, _>>()?,
            labels: c
                .labels
                .iter()
                .map(|(n, p)| text(n, p))
                .collect::<Result<_, _>>()?,
        };
        // Values the engine would refuse are the message's fault: poison, not a failed append.
        let too_large = |column: &str, len: usize, max: usize| MapError::Field {
            column: column.to_string(),
            path: String::new(),
            problem: format!("{len} bytes, the limit is {max}"),
        };
        if event.id.len() > keplordb::MAX_VALUE_LEN {
            return Err(too_large(
                "event_id",
                event.id.len(),
                keplordb::MAX_VALUE_LEN,
            ));
        }
        for ((name, _), v) in c.dims.iter().zip(&event.dims) {
            if v.len() > keplordb::MAX_VALUE_LEN {
                return Err(too_large(name, v.len(), keplordb::MAX_VALUE_LEN));
            }
        }
        for ((name, _), v) in c.labels.iter().zip(&event.labels) {
            if v.len() > keplordb::MAX_LABEL_LEN {
                return Err(too_large(name, v.len(), keplordb::MAX_LABEL_LEN));
            }
        }
        Ok(event)
    }
}

/// Asks a Confluent-compatible schema registry for schema `id`.
fn fetch_schema(url: &str, id: u32) -> Result<apache_avro::Schema, String> {
    let endpoint = format!("{}/schemas/ids/{id}", url.trim_end_matches('/'));
    let body: String = ureq::get(&endpoint)
        .call()
        .map_err(|e| format!("schema registry {endpoint}: {e}"))?
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("schema registry {endpoint}: {e}"))?;
    let v: Json =
        serde_json::from_str(&body).map_err(|e| format!("schema registry {endpoint}: {e}"))?;
    let text = v
        .get("schema")
        .and_then(Json::as_str)
        .ok_or_else(|| format!("schema registry {endpoint}: no `schema` field"))?;
    apache_avro::Schema::parse_str(text).map_err(|e| format!("schema {id} from the registry: {e}"))
}

#[cfg(test)]
mod tests;
