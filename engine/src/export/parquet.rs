//! A stream of events written as one Parquet file, with the schema `engine/FORMAT.md`
//! ("Parquet export") documents: `ts` as TIMESTAMP(NANOS, UTC), `id`, the fixed numeric
//! columns, then each dim, counter and label under its own name.
//!
//! Row groups hold at most `row_group_rows` rows and never straddle a UTC hour, so that a
//! reader's statistics prune by time. Dims and labels are dictionary-encoded; every column is
//! zstd-compressed and has page statistics (the page index); the schema's bloom dim carries a
//! Parquet bloom filter.

use std::io::Write;
use std::sync::Arc;

use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as Physical, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};
use parquet::file::writer::{
    SerializedColumnWriter, SerializedFileWriter, SerializedRowGroupWriter,
};
use parquet::schema::types::{ColumnPath, Type, TypePtr};

use crate::error::{DbError, Result};
use crate::event::DynEvent;
use crate::schema::SchemaDef;

/// The columns every export has, in file order, before the schema's own.
pub const FIXED_COLUMNS: [&str; 7] = [
    "ts",
    "id",
    "metric",
    "latency_ms",
    "latency_detail_ms",
    "status",
    "flags",
];

const NANOS_PER_HOUR: i64 = 3_600_000_000_000;

/// How exports are written.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ParquetOptions {
    /// The most rows of one row group (default 131,072); a row group also ends at each UTC hour.
    pub row_group_rows: usize,
    /// The zstd level of every column (default 3).
    pub zstd_level: i32,
    /// Distinct values of the bloom dim expected in one row group, which sizes its bloom
    /// filter for a 5% false-positive rate (capped at `row_group_rows`, the default). The
    /// engine's exports set it from the data; too low a value only raises the false-positive
    /// rate, too high a one costs bytes (a filter sized for 131,072 values is 128 KiB).
    pub bloom_ndv: Option<u64>,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions {
            row_group_rows: 128 * 1024,
            zstd_level: 3,
            bloom_ndv: None,
        }
    }
}

impl ParquetOptions {
    /// Sets [`ParquetOptions::row_group_rows`] (at least 1).
    #[must_use]
    pub fn with_row_group_rows(mut self, rows: usize) -> Self {
        self.row_group_rows = rows.max(1);
        self
    }

    /// Sets [`ParquetOptions::bloom_ndv`].
    #[must_use]
    pub fn with_bloom_ndv(mut self, distinct: u64) -> Self {
        self.bloom_ndv = Some(distinct);
        self
    }

    /// The bloom filter's expected distinct values: [`ParquetOptions::bloom_ndv`], at most the
    /// rows of a row group, at least 1.
    fn bloom_filter_ndv(&self) -> u64 {
        let cap = self.row_group_rows.max(1) as u64;
        self.bloom_ndv.unwrap_or(cap).clamp(1, cap)
    }

    /// Sets [`ParquetOptions::zstd_level`].
    #[must_use]
    pub fn with_zstd_level(mut self, level: i32) -> Self {
        self.zstd_level = level;
        self
    }
}

/// The column values of one row group, in file order.
#[derive(Debug, Default)]
struct Columns {
    ts: Vec<i64>,
    id: Vec<ByteArray>,
    metric: Vec<i64>,
    /// latency_ms, latency_detail_ms, status, flags: unsigned values in INT32 bit patterns.
    fixed_u32: [Vec<i32>; 4],
    dims: Vec<Vec<ByteArray>>,
    counters: Vec<Vec<i32>>,
    labels: Vec<Vec<ByteArray>>,
}

impl Columns {
    fn new(schema: &SchemaDef) -> Columns {
        Columns {
            dims: vec![Vec::new(); schema.dims.len()],
            counters: vec![Vec::new(); schema.counters.len()],
            labels: vec![Vec::new(); schema.labels.len()],
            ..Columns::default()
        }
    }

    fn len(&self) -> usize {
        self.ts.len()
    }

    fn push(&mut self, e: &DynEvent) {
        self.ts.push(e.ts_ns);
        self.id.push(ByteArray::from(e.id.as_str()));
        self.metric.push(e.metric);
        // UINT_32 and UINT_16 are stored as INT32 with the same bits (the Parquet spec).
        let fixed = [
            e.latency_ms,
            e.latency_detail_ms,
            e.status as u32,
            e.flags.0 as u32,
        ];
        for (col, v) in self.fixed_u32.iter_mut().zip(fixed) {
            col.push(v as i32);
        }
        for (col, v) in self.dims.iter_mut().zip(&e.dims) {
            col.push(ByteArray::from(v.as_str()));
        }
        for (col, &v) in self.counters.iter_mut().zip(&e.counters) {
            col.push(v as i32);
        }
        for (col, v) in self.labels.iter_mut().zip(&e.labels) {
            col.push(ByteArray::from(v.as_str()));
        }
    }

    fn clear(&mut self) {
        self.ts.clear();
        self.id.clear();
        self.metric.clear();
        self.fixed_u32.iter_mut().for_each(Vec::clear);
        self.dims.iter_mut().for_each(Vec::clear);
        self.counters.iter_mut().for_each(Vec::clear);
        self.labels.iter_mut().for_each(Vec::clear);
    }
}

/// What one file holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileStats {
    /// Rows written.
    pub rows: u64,
    /// Row groups written.
    pub row_groups: u64,
    /// The smallest and largest `ts` written (`None` for an empty file).
    pub ts_range: Option<(i64, i64)>,
}

/// Writes events of one schema to `W` as a Parquet file.
pub struct ParquetWriter<W: Write + Send> {
    file: SerializedFileWriter<W>,
    rows: Columns,
    row_group_rows: usize,
    /// The UTC hour of the row group being filled.
    hour: Option<i64>,
    stats: FileStats,
    counters: usize,
    dims: usize,
    labels: usize,
}

impl<W: Write + Send> std::fmt::Debug for ParquetWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetWriter")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<W: Write + Send> ParquetWriter<W> {
    /// A writer of events of `schema`, with `sorted_descending` recorded as the row order of
    /// `ts` when rows come newest first.
    pub fn new(
        out: W,
        schema: &SchemaDef,
        opts: &ParquetOptions,
        sorted_descending: bool,
    ) -> Result<Self> {
        let file_schema = file_schema(schema)?;
        let props = properties(schema, opts, sorted_descending)?;
        let file = SerializedFileWriter::new(out, file_schema, Arc::new(props)).map_err(export)?;
        Ok(ParquetWriter {
            file,
            rows: Columns::new(schema),
            row_group_rows: opts.row_group_rows.max(1),
            hour: None,
            stats: FileStats::default(),
            counters: schema.counters.len(),
            dims: schema.dims.len(),
            labels: schema.labels.len(),
        })
    }

    /// Adds one event; a full row group, or one of another UTC hour, is written first.
    pub fn write(&mut self, e: &DynEvent) -> Result<()> {
        if e.dims.len() != self.dims
            || e.counters.len() != self.counters
            || e.labels.len() != self.labels
        {
            return Err(DbError::ArityMismatch {
                column: "event columns",
                expected: self.dims + self.counters + self.labels,
                found: e.dims.len() + e.counters.len() + e.labels.len(),
            });
        }
        let hour = e.ts_ns.div_euclid(NANOS_PER_HOUR);
        if self.rows.len() >= self.row_group_rows || self.hour.is_some_and(|h| h != hour) {
            self.flush_row_group()?;
        }
        self.hour = Some(hour);
        self.rows.push(e);
        let (lo, hi) = self.stats.ts_range.unwrap_or((e.ts_ns, e.ts_ns));
        self.stats.ts_range = Some((lo.min(e.ts_ns), hi.max(e.ts_ns)));
        self.stats.rows += 1;
        Ok(())
    }

    /// Writes the last row group and the footer; the stats and the writer's output.
    pub fn finish(mut self) -> Result<(FileStats, W)> {
        self.flush_row_group()?;
        // Writes the footer, then hands the output back.
        let out = self.file.into_inner().map_err(export)?;
        Ok((self.stats, out))
    }

    fn flush_row_group(&mut self) -> Result<()> {
        if self.rows.len() == 0 {
            return Ok(());
        }
        let mut group = self.file.next_row_group().map_err(export)?;
        let r = &self.rows;
        write_i64(next_column(&mut group)?, &r.ts)?;
        write_bytes(next_column(&mut group)?, &r.id)?;
        write_i64(next_column(&mut group)?, &r.metric)?;
        for col in &r.fixed_u32 {
            write_i32(next_column(&mut group)?, col)?;
        }
        for col in &r.dims {
            write_bytes(next_column(&mut group)?, col)?;
        }
        for col in &r.counters {
            write_i32(next_column(&mut group)?, col)?;
        }
        for col in &r.labels {
            write_bytes(next_column(&mut group)?, col)?;
        }
        group.close().map_err(export)?;
        self.stats.row_groups += 1;
        self.rows.clear();
        Ok(())
    }
}

fn next_column<'g, W: Write + Send>(
    group: &'g mut SerializedRowGroupWriter<'_, W>,
) -> Result<SerializedColumnWriter<'g>> {
    group
        .next_column()
        .map_err(export)?
        .ok_or_else(|| export_reason("fewer columns in the file than in the schema"))
}

fn write_i64(mut c: SerializedColumnWriter<'_>, v: &[i64]) -> Result<()> {
    c.typed::<Int64Type>()
        .write_batch(v, None, None)
        .map_err(export)?;
    c.close().map_err(export)
}

fn write_i32(mut c: SerializedColumnWriter<'_>, v: &[i32]) -> Result<()> {
    c.typed::<Int32Type>()
        .write_batch(v, None, None)
        .map_err(export)?;
    c.close().map_err(export)
}

fn write_bytes(mut c: SerializedColumnWriter<'_>, v: &[ByteArray]) -> Result<()> {
    c.typed::<ByteArrayType>()
        .write_batch(v, None, None)
        .map_err(export)?;
    c.close().map_err(export)
}

/// The file's schema: the fixed columns, then dims, counters and labels by name. A schema
/// name equal to another column's is refused: readers address columns by name.
fn file_schema(schema: &SchemaDef) -> Result<TypePtr> {
    let string = |name: &str| column(name, Physical::BYTE_ARRAY, Some(LogicalType::String));
    let unsigned = |name: &str, bits: i8| {
        column(
            name,
            Physical::INT32,
            Some(LogicalType::Integer {
                bit_width: bits,
                is_signed: false,
            }),
        )
    };
    let mut fields = vec![
        column(
            "ts",
            Physical::INT64,
            Some(LogicalType::Timestamp {
                is_adjusted_to_u_t_c: true,
                unit: TimeUnit::NANOS,
            }),
        )?,
        string("id")?,
        column("metric", Physical::INT64, None)?,
        unsigned("latency_ms", 32)?,
        unsigned("latency_detail_ms", 32)?,
        unsigned("status", 16)?,
        unsigned("flags", 16)?,
    ];
    let mut names: Vec<&str> = FIXED_COLUMNS.to_vec();
    for (kind, list) in [
        ("dim", &schema.dims),
        ("counter", &schema.counters),
        ("label", &schema.labels),
    ] {
        for name in list {
            if names.contains(&name.as_str()) {
                return Err(export_reason(format!(
                    "{kind} {name:?} has the name of another column; Parquet readers address \
                     columns by name"
                )));
            }
            names.push(name);
            fields.push(if kind == "counter" {
                unsigned(name, 32)?
            } else {
                string(name)?
            });
        }
    }
    let root = Type::group_type_builder("keplordb_event")
        .with_fields(fields)
        .build()
        .map_err(export)?;
    Ok(Arc::new(root))
}

fn column(name: &str, physical: Physical, logical: Option<LogicalType>) -> Result<TypePtr> {
    let t = Type::primitive_type_builder(name, physical)
        .with_repetition(Repetition::REQUIRED)
        .with_logical_type(logical)
        .build()
        .map_err(export)?;
    Ok(Arc::new(t))
}

fn properties(
    schema: &SchemaDef,
    opts: &ParquetOptions,
    sorted_descending: bool,
) -> Result<WriterProperties> {
    let level = ZstdLevel::try_new(opts.zstd_level).map_err(export)?;
    let mut b: WriterPropertiesBuilder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_dictionary_enabled(false)
        .set_max_row_group_size(opts.row_group_rows.max(1))
        .set_created_by(format!("keplordb {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![
            KeyValue::new("keplordb.schema_id".into(), schema.schema_id.to_string()),
            KeyValue::new(
                "keplordb.fingerprint".into(),
                format!("{:016x}", schema.fingerprint()),
            ),
        ]))
        .set_sorting_columns(sorted_descending.then(|| {
            vec![SortingColumn {
                column_idx: 0,
                descending: true,
                nulls_first: false,
            }]
        }));
    for name in schema.dims.iter().chain(&schema.labels) {
        b = b.set_column_dictionary_enabled(ColumnPath::from(name.as_str()), true);
    }
    if let Some(d) = schema.bloom_dim {
        let column = ColumnPath::from(schema.dims[d].as_str());
        b = b
            .set_column_bloom_filter_enabled(column.clone(), true)
            .set_column_bloom_filter_ndv(column, opts.bloom_filter_ndv());
    }
    Ok(b.build())
}

fn export(e: ParquetError) -> DbError {
    export_reason(e.to_string())
}

fn export_reason(reason: impl Into<String>) -> DbError {
    DbError::Export {
        reason: reason.into(),
    }
}
