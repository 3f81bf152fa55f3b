//! From a Kafka message to an engine event: decode (JSON, Avro, Confluent-framed Avro), then
//! read each column at its configured path.

pub(crate) mod registry;
mod source;
mod time;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use apache_avro::types::Value as Avro;
use keplordb::{DynEvent, EventFlags};
use serde_json::value::RawValue;
use std::borrow::Cow;

use crate::config::{Config, Format, IdSource, TsSource, TsUnit};
use registry::{Registry, RegistryError};
pub use time::parse_rfc3339;

/// Why a message could not become an event. `reason()` is a bounded label for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapError {
    /// The payload is not valid for the configured format (including a schema id the
    /// registry says does not exist, or whose schema is not valid Avro).
    Decode(String),
    /// A column's value has the wrong type or is out of range.
    Field {
        column: String,
        path: String,
        problem: String,
    },
    /// The message has no payload.
    Empty,
    /// The schema registry could not answer (unreachable, timed out, HTTP 5xx, refused
    /// credentials or certificate): not the message's fault, so no error policy applies (the
    /// message must not be skipped or dead-lettered; asking again later may work).
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
#[derive(Clone, Copy)]
pub struct Meta<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Kafka message timestamp in milliseconds.
    pub timestamp_ms: Option<i64>,
    /// The message key.
    pub key: Option<&'a [u8]>,
    /// The message headers.
    pub headers: Option<&'a rdkafka::message::BorrowedHeaders>,
}

impl std::fmt::Debug for Meta<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meta")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("key", &self.key)
            .field("headers", &self.headers.is_some())
            .finish()
    }
}

/// A JSON object with its values left unparsed: only the columns' paths are decoded.
type JsonObject<'a> = HashMap<Cow<'a, str>, &'a RawValue, foldhash::fast::RandomState>;

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
    /// Message metadata (`$kafka.…`), whatever the format.
    Kafka(String, source::KafkaField),
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

impl<'d> Doc<'d> {
    /// The value at `path`: in the payload, or in the message's metadata.
    fn get_in<'s>(&'s self, path: &Path, meta: &Meta<'s>) -> Scalar<'s> {
        match path {
            Path::Kafka(_, f) => f.read(meta),
            _ => self.get(path),
        }
    }

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

/// Checks a message-metadata path (the part after `$kafka.`).
pub fn check_kafka_path(rest: &str) -> Result<(), String> {
    source::KafkaField::parse(rest).map(|_| ())
}

/// After a registry outage, how long further misses fail without asking again.
const OUTAGE_HOLD: Duration = Duration::from_secs(1);

/// How to turn payload bytes into a [`Doc`].
enum Decoder {
    Json,
    Avro(AvroReader),
    Confluent {
        /// Readers by schema id: the configured files, then each schema fetched (only
        /// successes: a failed fetch is asked again for the next message).
        readers: RwLock<HashMap<u32, Arc<AvroReader>>>,
        registry: Option<Registry>,
        /// Held while fetching, so that the mapping threads missing the same new id wait for
        /// the first one's answer instead of each asking the registry. Holds the last outage:
        /// for `OUTAGE_HOLD` after it, misses fail at once (a polled batch of thousands of
        /// messages must not retry the registry once per message).
        fetching: Mutex<Option<(Instant, String)>>,
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

/// A reader for `schema`, whose names may refer to the named types of `references` (schema
/// registry references).
fn avro_reader(
    schema: apache_avro::Schema,
    references: Vec<apache_avro::Schema>,
) -> Result<AvroReader, String> {
    let schema: &'static apache_avro::Schema = Box::leak(Box::new(schema));
    let references: &'static [apache_avro::Schema] = references.leak();
    // Names resolve in order: the referenced schemas (each after those it references), then
    // the schema itself.
    let names = || references.iter().chain([schema]).collect::<Vec<_>>();
    let reader = apache_avro::reader::datum::GenericDatumReader::builder(schema)
        .writer_schemata(names())
        .and_then(|b| b.build())
        .map_err(|e| format!("Avro schema: {e}"))?;
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(schema)
        .schemata(names())
        .and_then(|b| b.build())
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
            if let Some(rest) = p.strip_prefix(source::PREFIX) {
                // Checked when the config is loaded (`check_paths`); an unknown field reads
                // as missing here.
                let field = source::KafkaField::parse(rest)
                    .unwrap_or(source::KafkaField::Header(String::new()));
                Path::Kafka(p.to_string(), field)
            } else if avro {
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
            Format::Avro { schema_file } => {
                Decoder::Avro(avro_reader(read_schema(schema_file)?, Vec::new())?)
            }
            Format::AvroConfluent { schemas, registry } => {
                let mut map = HashMap::new();
                for (id, file) in schemas {
                    map.insert(*id, Arc::new(avro_reader(read_schema(file)?, Vec::new())?));
                }
                Decoder::Confluent {
                    readers: RwLock::new(map),
                    registry: registry.as_ref().map(Registry::new).transpose()?,
                    fetching: Mutex::new(None),
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
            Decoder::Confluent {
                readers,
                registry,
                fetching,
            } => {
                let (id, datum) = confluent_frame(payload)?;
                let reader = match cached(readers, id) {
                    Some(r) => r,
                    None => {
                        let Some(registry) = registry else {
                            return Err(MapError::Decode(format!(
                                "unknown schema id {id} (not in format.schemas)"
                            )));
                        };
                        let mut outage = fetching.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some((at, why)) = outage.as_ref() {
                            if at.elapsed() < OUTAGE_HOLD {
                                return Err(MapError::Registry(why.clone()));
                            }
                        }
                        match cached(readers, id) {
                            Some(r) => r,
                            None => match fetch_reader(registry, readers, id) {
                                Err(MapError::Registry(why)) => {
                                    *outage = Some((Instant::now(), why.clone()));
                                    return Err(MapError::Registry(why));
                                }
                                other => {
                                    *outage = None;
                                    other?
                                }
                            },
                        }
                    }
                };
                read_datum(&reader, datum)
            }
        }
    }

    /// Maps one message.
    pub fn map(&self, payload: Option<&[u8]>, meta: Meta<'_>) -> Result<DynEvent, MapError> {
        let payload = payload.filter(|p| !p.is_empty()).ok_or(MapError::Empty)?;
        let msg = Message {
            doc: self.decode(payload)?,
            meta,
        };
        let event = self.columns.read(&msg)?;
        self.columns.check_lengths(&event)?;
        Ok(event)
    }
}

/// A decoded message with its metadata: what the column paths read from.
struct Message<'p, 'm> {
    doc: Doc<'p>,
    meta: Meta<'m>,
}

impl Message<'_, '_> {
    /// The scalar at `p`, in the payload or in the metadata.
    fn scalar(&self, p: &Path) -> Scalar<'_> {
        self.doc.get_in(p, &self.meta)
    }

    /// Column `name` as text (missing: empty).
    fn text(&self, name: &str, p: &Path) -> Result<String, MapError> {
        Ok(match self.scalar(p) {
            Scalar::Missing => String::new(),
            Scalar::Str(s) => s.to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::UInt(u) => u.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Bytes(b) => String::from_utf8(b.to_vec())
                .map_err(|_| field_error(name, p, "bytes are not UTF-8".into()))?,
        })
    }

    /// Column `name` as a whole number (missing: 0).
    fn int(&self, name: &str, p: &Path) -> Result<i128, MapError> {
        match self.scalar(p) {
            Scalar::Missing => Ok(0),
            Scalar::Int(i) => Ok(i as i128),
            Scalar::UInt(u) => Ok(u as i128),
            Scalar::Float(f) if f.is_finite() && f.fract() == 0.0 => Ok(f as i128),
            Scalar::Str(s) => s
                .trim()
                .parse::<i128>()
                .map_err(|_| field_error(name, p, format!("{s:?} is not a whole number"))),
            Scalar::Bool(b) => Ok(b as i128),
            _ => Err(field_error(name, p, "expected a whole number".into())),
        }
    }

    /// Column `name` as a whole number in `lo..=hi`.
    fn ranged(&self, name: &str, p: &Path, lo: i128, hi: i128) -> Result<i128, MapError> {
        let v = self.int(name, p)?;
        if v < lo || v > hi {
            return Err(field_error(
                name,
                p,
                format!("{v} is out of range {lo}..={hi}"),
            ));
        }
        Ok(v)
    }

    /// An optional column as a whole number in `lo..=hi` (not configured: 0).
    fn opt(&self, name: &str, p: &Option<Path>, lo: i128, hi: i128) -> Result<i128, MapError> {
        p.as_ref().map_or(Ok(0), |p| self.ranged(name, p, lo, hi))
    }

    /// The event time in nanoseconds: the Kafka timestamp, or the configured field in its unit.
    fn ts_ns(&self, ts: &Option<(Path, TsUnit)>) -> Result<i64, MapError> {
        let Some((p, unit)) = ts else {
            return Ok(self
                .meta
                .timestamp_ms
                .unwrap_or(0)
                .saturating_mul(1_000_000));
        };
        let v = match (self.scalar(p), unit) {
            (Scalar::Str(s), TsUnit::Rfc3339) => {
                parse_rfc3339(&s).map_err(|e| field_error("ts", p, e))? as i128
            }
            (Scalar::Missing, _) => return Err(field_error("ts", p, "missing".into())),
            (_, TsUnit::Rfc3339) => {
                return Err(field_error("ts", p, "expected an RFC 3339 string".into()))
            }
            _ => {
                let n = self.int("ts", p)?;
                let scale = match unit {
                    TsUnit::Ns => 1,
                    TsUnit::Us => 1_000,
                    TsUnit::Ms => 1_000_000,
                    _ => 1_000_000_000,
                };
                n.checked_mul(scale)
                    .ok_or_else(|| field_error("ts", p, "out of the representable range".into()))?
            }
        };
        i64::try_from(v).map_err(|_| field_error("ts", p, "out of the representable range".into()))
    }

    /// The event id: the configured field (which must not be empty), or
    /// `topic/partition/offset`.
    fn event_id(&self, id: &Option<Path>) -> Result<String, MapError> {
        let Some(p) = id else {
            let m = &self.meta;
            return Ok(format!("{}/{}/{}", m.topic, m.partition, m.offset));
        };
        let id = self.text("event_id", p)?;
        if id.is_empty() {
            return Err(field_error("event_id", p, "missing".into()));
        }
        Ok(id)
    }
}

impl Columns {
    /// Reads every column of `msg`, in a fixed order (the first failing column is the one
    /// reported): ts, event id, metric, counters, latencies, status, flags, dims, labels.
    fn read(&self, msg: &Message<'_, '_>) -> Result<DynEvent, MapError> {
        let ts_ns = msg.ts_ns(&self.ts)?;
        let id = msg.event_id(&self.id)?;
        let u32_max = u32::MAX as i128;
        Ok(DynEvent {
            id,
            ts_ns,
            metric: msg.opt("metric", &self.metric, i64::MIN as i128, i64::MAX as i128)? as i64,
            counters: self
                .counters
                .iter()
                .map(|(n, p)| msg.ranged(n, p, 0, u32_max).map(|v| v as u32))
                .collect::<Result<_, _>>()?,
            latency_ms: msg.opt("latency_ms", &self.latency, 0, u32_max)? as u32,
            latency_detail_ms: msg.opt("latency_detail_ms", &self.latency_detail, 0, u32_max)?
                as u32,
            status: msg.opt("status", &self.status, 0, u16::MAX as i128)? as u16,
            flags: EventFlags(msg.opt("flags", &self.flags, 0, u16::MAX as i128)? as u16),
            dims: self
                .dims
                .iter()
                .map(|(n, p)| msg.text(n, p))
                .collect::<Result<_, _>>()?,
            labels: self
                .labels
                .iter()
                .map(|(n, p)| msg.text(n, p))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Values the engine would refuse are the message's fault: poison, not a failed append.
    fn check_lengths(&self, event: &DynEvent) -> Result<(), MapError> {
        if event.id.len() > keplordb::MAX_VALUE_LEN {
            return Err(too_large(
                "event_id",
                event.id.len(),
                keplordb::MAX_VALUE_LEN,
            ));
        }
        for ((name, _), v) in self.dims.iter().zip(&event.dims) {
            if v.len() > keplordb::MAX_VALUE_LEN {
                return Err(too_large(name, v.len(), keplordb::MAX_VALUE_LEN));
            }
        }
        for ((name, _), v) in self.labels.iter().zip(&event.labels) {
            if v.len() > keplordb::MAX_LABEL_LEN {
                return Err(too_large(name, v.len(), keplordb::MAX_LABEL_LEN));
            }
        }
        Ok(())
    }
}

/// A column's value is wrong: the error names the column and its path.
fn field_error(column: &str, path: &Path, problem: String) -> MapError {
    MapError::Field {
        column: column.to_string(),
        path: match path {
            Path::Json(p, _) | Path::Kafka(p, _) => p.clone(),
            Path::Avro(s) => s.join("."),
        },
        problem,
    }
}

/// A value longer than the engine takes.
fn too_large(column: &str, len: usize, max: usize) -> MapError {
    MapError::Field {
        column: column.to_string(),
        path: String::new(),
        problem: format!("{len} bytes, the limit is {max}"),
    }
}

/// The schema id and the datum of a Confluent-framed payload.
fn confluent_frame(payload: &[u8]) -> Result<(u32, &[u8]), MapError> {
    match payload {
        [0, a, b, c, d, datum @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), datum)),
        _ => Err(MapError::Decode(
            "not Confluent-framed: expected magic byte 0 and a 4-byte schema id".into(),
        )),
    }
}

fn cached(readers: &RwLock<HashMap<u32, Arc<AvroReader>>>, id: u32) -> Option<Arc<AvroReader>> {
    readers
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&id)
        .cloned()
}

/// Asks the registry for schema `id` and caches its reader. A schema the registry has not got,
/// or that is not valid Avro, is the message's fault; a registry that cannot answer is not.
fn fetch_reader(
    registry: &Registry,
    readers: &RwLock<HashMap<u32, Arc<AvroReader>>>,
    id: u32,
) -> Result<Arc<AvroReader>, MapError> {
    let fetched = registry.schema(id).map_err(|e| match e {
        RegistryError::Unavailable(m) => MapError::Registry(m),
        RegistryError::Schema(m) => MapError::Decode(m),
    })?;
    let reader = avro_reader(fetched.schema, fetched.references)
        .map_err(|e| MapError::Decode(format!("schema id {id} from the registry: {e}")))?;
    let reader = Arc::new(reader);
    readers
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, reader.clone());
    Ok(reader)
}

#[cfg(test)]
mod tests;
