//! Immutable columnar segment files (`seg-<id>.kseg`), made from a rotated WAL.
//!
//! A segment is written once (temp name, fsync, rename, fsync dir) and never modified. Its
//! header, bloom filter and totals stay in memory; its columns are mapped on demand and kept in
//! a bounded cache (`mmap_cache_capacity`).
//!
//! `header.rs` is the 256-byte header and its section table; `section/` has one type per section,
//! each with a paired `encode` and `parse`; `writer.rs` and `reader.rs` compose them into a file
//! and back; `codec.rs` holds the encodings several sections share.

pub(crate) mod codec;
mod column;
pub(crate) mod header;
pub(crate) mod reader;
pub(crate) mod section;
pub(crate) mod writer;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwapOption;

use crate::error::Result;
use crate::schema::SchemaDef;
use reader::SegmentData;
use section::bloom::Bloom;

/// The sections of a segment, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Section {
    Ts = 0,
    Metric = 1,
    U32Cols = 2,
    U16Cols = 3,
    Bloom = 4,
    Status = 5,
    Zones = 6,
    ChunkAggs = 7,
    Intern = 8,
    Postings = 9,
    Ids = 10,
    Labels = 11,
}

/// Number of sections.
pub(crate) const SECTION_COUNT: usize = 12;
/// Sections start at multiples of this, so every column can be viewed in place.
pub(crate) const SECTION_ALIGN: usize = 64;
/// Most distinct values of one dim in one segment (u16 codes).
pub(crate) const MAX_DIM_VALUES: usize = 1 << 16;
/// Most rows in one segment.
pub(crate) const MAX_SEGMENT_ROWS: usize = crate::config::MAX_WAL_EVENTS as usize;
/// Most id and label bytes in one segment.
pub(crate) const MAX_SEGMENT_STRING_BYTES: usize = 1 << 30;

impl Section {
    pub(crate) const ALL: [Section; SECTION_COUNT] = [
        Section::Ts,
        Section::Metric,
        Section::U32Cols,
        Section::U16Cols,
        Section::Bloom,
        Section::Status,
        Section::Zones,
        Section::ChunkAggs,
        Section::Intern,
        Section::Postings,
        Section::Ids,
        Section::Labels,
    ];

    /// Name used in error messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Section::Ts => "ts_ns column",
            Section::Metric => "metric column",
            Section::U32Cols => "u32 columns",
            Section::U16Cols => "u16 columns",
            Section::Bloom => "bloom filter",
            Section::Status => "status bitmaps",
            Section::Zones => "zone maps",
            Section::ChunkAggs => "chunk aggregates",
            Section::Intern => "intern tables",
            Section::Postings => "posting lists",
            Section::Ids => "ids",
            Section::Labels => "labels",
        }
    }
}

/// File name of segment `id`.
pub(crate) fn segment_name(id: u64) -> String {
    format!("seg-{id:016x}.kseg")
}

/// Parses a segment file name; the flag says whether it is an unfinished temp file.
pub(crate) fn parse_segment_name(name: &str) -> Option<(u64, bool)> {
    let rest = name.strip_prefix("seg-")?;
    let (hex, tmp) = if let Some(h) = rest.strip_suffix(".kseg") {
        (h, false)
    } else if let Some(h) = rest.strip_suffix(".kseg.tmp") {
        (h, true)
    } else {
        return None;
    };
    let id = u64::from_str_radix(hex, 16).ok()?;
    (format!("{id:016x}") == hex).then_some((id, tmp))
}

/// Sums of every column over a set of rows (whole segment, chunk, or query result).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub count: u64,
    pub metric: i128,
    pub latency: u64,
    pub latency_detail: u64,
    pub counters: Vec<u64>,
    pub min_ts: i64,
    pub max_ts: i64,
}

impl Totals {
    pub(crate) fn new(counters: usize) -> Self {
        Totals {
            counters: vec![0; counters],
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            ..Default::default()
        }
    }

    pub(crate) fn merge(&mut self, o: &Totals) {
        self.count += o.count;
        self.metric += o.metric;
        self.latency += o.latency;
        self.latency_detail += o.latency_detail;
        for (a, b) in self.counters.iter_mut().zip(&o.counters) {
            *a += b;
        }
        self.min_ts = self.min_ts.min(o.min_ts);
        self.max_ts = self.max_ts.max(o.max_ts);
    }
}

/// A segment on disk: what is always in memory, and its columns when mapped.
#[derive(Debug)]
pub(crate) struct Segment {
    pub id: u64,
    pub path: PathBuf,
    pub file_len: u64,
    pub rows: usize,
    pub min_ts: i64,
    pub max_ts: i64,
    pub generation: u64,
    /// Format version of the file.
    pub version: u16,
    pub part_index: u16,
    pub part_count: u16,
    pub bloom_dim: Option<usize>,
    pub bloom: Option<Bloom>,
    /// The filter over the segment's ids (version 2), kept in memory like `bloom`.
    pub id_filter: Option<Bloom>,
    /// Dims with posting lists.
    pub posting_dims: Vec<usize>,
    pub totals: Totals,
    data: ArcSwapOption<SegmentData>,
    last_used: AtomicU64,
    load_lock: Mutex<()>,
}

impl Segment {
    /// Opens and fully verifies a segment file. The mapped columns are kept (and registered
    /// with the cache).
    pub(crate) fn open(
        path: PathBuf,
        id: u64,
        schema: &SchemaDef,
        cache: &SegmentCache,
    ) -> Result<Arc<Segment>> {
        let data = SegmentData::open(&path, schema)?;
        let h = &data.header;
        let seg = Arc::new(Segment {
            id,
            path,
            file_len: data.file_len(),
            rows: data.rows,
            min_ts: h.min_ts.get(),
            max_ts: h.max_ts.get(),
            generation: h.generation.get(),
            version: h.version.get(),
            part_index: h.part_index.get(),
            part_count: h.part_count.get(),
            bloom_dim: data.bloom_dim(),
            bloom: data.bloom.clone(),
            id_filter: data.id_filter().cloned(),
            posting_dims: data.posting_dims(),
            totals: data.totals(),
            data: ArcSwapOption::from(Some(Arc::new(data))),
            last_used: AtomicU64::new(cache.tick()),
            load_lock: Mutex::new(()),
        });
        cache.register(&seg);
        Ok(seg)
    }

    /// The mapped columns, mapping (and verifying) them again if the cache dropped them.
    pub(crate) fn data(
        &self,
        schema: &SchemaDef,
        cache: &SegmentCache,
    ) -> Result<Arc<SegmentData>> {
        self.last_used.store(cache.tick(), Ordering::Relaxed);
        if let Some(d) = self.data.load_full() {
            return Ok(d);
        }
        let _g = self.load_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = self.data.load_full() {
            return Ok(d);
        }
        let d = Arc::new(SegmentData::reopen(&self.path, schema)?);
        self.data.store(Some(d.clone()));
        // Loaded again, it enters the cache as its least recently used segment (LRU insertion
        // policy): a scan over more segments than the cache holds then replaces one segment
        // after another in that last place instead of evicting each segment just before the
        // scan comes back to it; a second use promotes it like any other hit.
        self.last_used.store(0, Ordering::Relaxed);
        cache.loaded_again(self);
        Ok(d)
    }

    /// False when the segment certainly holds no row with id `id` (its id filter says so);
    /// version-1 segments have no filter and may hold any id.
    pub(crate) fn may_hold_id(&self, id: &str) -> bool {
        self.id_filter.as_ref().is_none_or(|f| f.may_contain(id))
    }

    fn evict(&self) {
        self.data.store(None);
    }
}

/// Bounds how many segments have their columns mapped at once, and the bytes of memory their
/// decoded columns hold. Eviction picks the least recently used segment, a segment loaded again
/// counting as the least recent of all until its next use (see [`Segment::data`]); readers that
/// hold its columns keep them alive until they finish.
#[derive(Debug)]
pub(crate) struct SegmentCache {
    capacity: usize,
    budget_bytes: u64,
    clock: AtomicU64,
    loaded: Mutex<Vec<Weak<Segment>>>,
    loaded_count: AtomicUsize,
    loaded_bytes: AtomicU64,
    reloads: AtomicU64,
}

impl SegmentCache {
    /// A cache of at most `capacity` segments and `budget_bytes` of decoded columns.
    pub(crate) fn new(capacity: usize, budget_bytes: u64) -> Self {
        SegmentCache {
            capacity,
            budget_bytes,
            clock: AtomicU64::new(1),
            loaded: Mutex::new(Vec::new()),
            loaded_count: AtomicUsize::new(0),
            loaded_bytes: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
        }
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    fn register(&self, seg: &Arc<Segment>) {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        loaded.push(Arc::downgrade(seg));
        self.evict_over_capacity(&mut loaded, Some(seg.id));
    }

    fn loaded_again(&self, seg: &Segment) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        self.evict_over_capacity(&mut loaded, Some(seg.id));
    }

    /// Segments decoded again since the cache was made.
    pub(crate) fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    fn evict_over_capacity(&self, loaded: &mut Vec<Weak<Segment>>, keep: Option<u64>) {
        let mut live: Vec<Arc<Segment>> = Vec::with_capacity(loaded.len());
        loaded.retain(|w| match w.upgrade() {
            Some(s) => {
                live.push(s);
                true
            }
            None => false,
        });
        // Least recently used first, with the bytes each holds.
        let mut mapped: Vec<(&Arc<Segment>, u64)> = live
            .iter()
            .filter_map(|s| Some((s, s.data.load().as_ref()?.heap_bytes() as u64)))
            .collect();
        mapped.sort_by_key(|(s, _)| s.last_used.load(Ordering::Relaxed));
        let mut count = mapped.len();
        let mut bytes: u64 = mapped.iter().map(|(_, b)| b).sum();
        for (s, b) in mapped {
            if count <= self.capacity && bytes <= self.budget_bytes {
                break;
            }
            if Some(s.id) != keep {
                s.evict();
                count -= 1;
                bytes -= b;
            }
        }
        self.loaded_count.store(count, Ordering::Relaxed);
        self.loaded_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Segments whose columns are currently mapped.
    pub(crate) fn mapped(&self) -> usize {
        self.loaded_count.load(Ordering::Relaxed)
    }

    /// Bytes the mapped segments' decoded columns held at the last load.
    pub(crate) fn mapped_bytes(&self) -> u64 {
        self.loaded_bytes.load(Ordering::Relaxed)
    }
}

/// The bytes of the segment at `path` by part: the header, then each section with the padding
/// that follows it (so the parts sum to the file length). See `diagnostics::segment_sections`.
pub(crate) fn section_sizes(path: &std::path::Path) -> Result<Vec<(&'static str, u64)>> {
    let bytes =
        std::fs::read(path).map_err(|e| crate::error::DbError::io("read segment", path, e))?;
    let h = header::SegmentHeader::parse(&bytes)
        .map_err(|e| crate::error::DbError::corrupt_segment(path, "header", 0, format!("{e:?}")))?;
    let mut starts: Vec<(u64, &'static str)> = Section::ALL
        .iter()
        .map(|&s| (h.section(s).offset.get(), s.name()))
        .collect();
    starts.sort_unstable();
    let mut out = vec![("header", header::HEADER_LEN as u64)];
    for (i, &(start, name)) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map_or(bytes.len() as u64, |n| n.0);
        out.push((name, end.saturating_sub(start)));
    }
    Ok(out)
}
