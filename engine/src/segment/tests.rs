//! Whole segment files: written from a memtable, damaged one section at a time behind valid
//! checksums (so each section's own checks are reached), and opened again. Every fault must
//! name its section and the file byte where it was found.

use std::path::{Path, PathBuf};

use super::header::{SegmentHeader, HEADER_LEN};
use super::reader::SegmentData;
use super::section::intern::InternTables;
use super::writer::{encode_segment, plan_parts, write_segment_file, SegmentInput};
use super::Section;
use crate::error::DbError;
use crate::le;
use crate::memtable::MemData;
use crate::schema::SchemaDef;
use crate::wal::frame::RawRow;

/// Rows of the test segment: three chunks, the last one partial.
const ROWS: u32 = 600;

fn schema() -> SchemaDef {
    SchemaDef {
        schema_id: 5,
        dims: vec!["user".into(), "model".into()],
        counters: vec!["tokens".into()],
        labels: vec!["note".into()],
        bloom_dim: Some(0),
        rollup_dims: vec![1],
    }
}

/// Writes one segment of `ROWS` rows into `dir` and returns its path.
fn write_segment(dir: &Path, schema: &SchemaDef) -> PathBuf {
    let mut mem = MemData::new(schema);
    for i in 0..ROWS {
        let (id, user, model, note) = (
            format!("ev-{i}"),
            format!("user-{}", i % 17),
            format!("model-{}", i % 3),
            format!("note {i} é"),
        );
        mem.push(&RawRow {
            id: &id,
            ts_ns: 1_000 + i as i64 * 10,
            metric: i as i64 - 300,
            latency_ms: i,
            latency_detail_ms: i % 7,
            status: [200, 200, 404, 503][i as usize % 4],
            flags: 0,
            counters: vec![i % 100],
            dims: vec![&user, &model],
            labels: vec![&note],
        });
    }
    let parts = plan_parts(&mem, &|_| false);
    assert_eq!(parts.len(), 1);
    let input = SegmentInput {
        mem: &mem,
        schema,
        posting_dims: vec![0, 1],
        generation: 1,
        shard: 0,
    };
    let bytes = encode_segment(&input, &parts[0], 0, 1).unwrap();
    write_segment_file(dir, 1, &bytes).unwrap()
}

/// A segment file to damage.
struct File {
    bytes: Vec<u8>,
}

impl File {
    fn header(&self) -> SegmentHeader {
        SegmentHeader::parse(&self.bytes).unwrap()
    }

    /// File offset and length of section `s`.
    fn range(&self, s: Section) -> (usize, usize) {
        let e = self.header().section(s);
        (e.offset.get() as usize, e.len.get() as usize)
    }

    /// The u32 at byte `at` of section `s`.
    fn u32_in(&self, s: Section, at: usize) -> u32 {
        le::read_at(&self.bytes, self.range(s).0 + at).unwrap()
    }

    /// Writes `v` at byte `at` of section `s`.
    fn put_in(&mut self, s: Section, at: usize, v: &[u8]) {
        let start = self.range(s).0 + at;
        self.bytes[start..start + v.len()].copy_from_slice(v);
    }

    /// Gives section `s` the length `len` and recomputes its checksum and the header's, so
    /// only the section's own checks can find what was changed.
    fn reseal(&mut self, s: Section, len: usize) {
        let mut h = self.header();
        let start = h.section(s).offset.get() as usize;
        let e = &mut h.sections[s as usize];
        e.len.set(len as u32);
        e.crc.set(crc32fast::hash(&self.bytes[start..start + len]));
        self.bytes[..HEADER_LEN].copy_from_slice(&h.encode());
    }

    /// Like [`File::reseal`], keeping the section's length.
    fn reseal_same(&mut self, s: Section) {
        let len = self.range(s).1;
        self.reseal(s, len);
    }
}

/// Asserts `e` is a corruption of `section` found at file byte `offset`.
#[track_caller]
fn assert_corrupt(e: DbError, section: &str, offset: usize) {
    match e {
        DbError::CorruptSegment {
            section: got,
            reason,
            ..
        } => {
            assert_eq!(got, section, "{reason}");
            let at = format!("at byte {offset}: ");
            assert!(
                reason.starts_with(&at),
                "{reason:?} should start with {at:?}"
            );
        }
        other => panic!("expected a corrupt segment, got {other}"),
    }
}

/// A damaged copy of the segment, ready to open.
struct Case {
    dir: tempfile::TempDir,
    path: PathBuf,
    schema: SchemaDef,
    pristine: Vec<u8>,
}

impl Case {
    fn new() -> Case {
        let dir = tempfile::tempdir().unwrap();
        let schema = schema();
        let path = write_segment(dir.path(), &schema);
        let pristine = std::fs::read(&path).unwrap();
        Case {
            dir,
            path,
            schema,
            pristine,
        }
    }

    fn file(&self) -> File {
        File {
            bytes: self.pristine.clone(),
        }
    }

    fn open(&self, f: &File) -> crate::error::Result<SegmentData> {
        std::fs::write(&self.path, &f.bytes).unwrap();
        SegmentData::open(&self.path, &self.schema)
    }

    /// Opens `f`, which must fail in `s` at byte `at` of the section.
    #[track_caller]
    fn refused(&self, f: &File, s: Section, at: usize) {
        let e = self
            .open(f)
            .expect_err("the damaged segment must be refused");
        assert_corrupt(e, s.name(), f.range(s).0 + at);
    }
}

#[test]
fn the_undamaged_segment_opens_and_reads_back() {
    let case = Case::new();
    assert!(case.dir.path().join("seg-0000000000000001.kseg").exists());
    let data = case.open(&case.file()).unwrap();
    assert_eq!((data.rows, data.nchunks), (ROWS as usize, 3));
    assert_eq!(data.ts[599], 1_000 + 5_990);
    assert_eq!(data.totals().latency, (0..ROWS as u64).sum::<u64>());
    // The ids are decoded on first use: a segment only aggregated never holds them.
    let without_ids = data.heap_bytes();
    assert_eq!(data.id(42).unwrap(), "ev-42");
    assert!(data.heap_bytes() > without_ids + ROWS as usize * 4);
    assert_eq!(data.label(0, 42), "note 42 é");
    assert_eq!(data.rows_with_id("ev-7").unwrap(), [7]);
    let users = &data.intern().unwrap()[0];
    let code = users.code("user-3").unwrap();
    assert_eq!(data.postings(0).unwrap().rows(code).len(), 36);
    assert_eq!(data.status_bitmaps().unwrap().len(), 3);
    assert!(data.bloom.as_ref().unwrap().may_contain("user-16"));
}

#[test]
fn a_flipped_byte_in_any_section_fails_its_checksum_at_the_section_start() {
    let case = Case::new();
    for s in Section::ALL {
        let mut f = case.file();
        let (start, len) = f.range(s);
        assert!(len > 0, "{} is empty in the test segment", s.name());
        f.bytes[start + len / 2] ^= 0x08;
        case.refused(&f, s, 0);
    }
}

#[test]
fn damage_behind_a_valid_checksum_is_found_by_each_sections_parse() {
    let case = Case::new();
    let shortened = |s: Section, by: usize| {
        let mut f = case.file();
        let len = f.range(s).1 - by;
        f.reseal(s, len);
        (f, len)
    };
    // Ts cut by one byte: the zstd frame is incomplete.
    case.refused(&shortened(Section::Ts, 1).0, Section::Ts, 0);
    // Metric (kind 3, a 2-byte length, then zstd) cut by one byte: the frame is named.
    case.refused(&shortened(Section::Metric, 1).0, Section::Metric, 3);
    // Packed columns cut by one byte: the last chunk of the last column is named.
    for s in [Section::U32Cols, Section::U16Cols] {
        let e = case
            .open(&shortened(s, 1).0)
            .expect_err("the damaged segment must be refused");
        let e = e.to_string();
        assert!(e.contains("packed chunk") && e.contains(s.name()), "{e}");
    }
    // Fixed-size sections one value short: the first missing byte is named.
    for (s, by) in [
        (Section::Bloom, 8),
        (Section::Zones, 2),
        (Section::ChunkAggs, 8),
    ] {
        let (f, len) = shortened(s, by);
        case.refused(&f, s, len);
    }
    // Status: entry 1 repeats entry 0's value.
    let mut f = case.file();
    let first = f.u32_in(Section::Status, 4) as u16;
    f.put_in(Section::Status, 20, &first.to_le_bytes());
    f.reseal_same(Section::Status);
    case.refused(&f, Section::Status, 20);
    // Postings: entry 0 names a dim the schema does not have.
    let mut f = case.file();
    f.put_in(Section::Postings, 4, &99u16.to_le_bytes());
    f.reseal_same(Section::Postings);
    case.refused(&f, Section::Postings, 4);
    // Postings: dim 0 has fewer codes than its column uses.
    let mut f = case.file();
    f.put_in(Section::Postings, 8, &1u32.to_le_bytes());
    f.reseal_same(Section::Postings);
    case.refused(&f, Section::Postings, 4);
    // Ids: one row more than the segment has.
    let mut f = case.file();
    f.put_in(Section::Ids, 0, &(ROWS + 1).to_le_bytes());
    f.reseal_same(Section::Ids);
    case.refused(&f, Section::Ids, 0);
    // Labels: row 1's value ends before row 0's.
    let mut f = case.file();
    let ends_at = f.u32_in(Section::Labels, 0) as usize;
    f.put_in(Section::Labels, ends_at + 4, &0u32.to_le_bytes());
    f.reseal_same(Section::Labels);
    case.refused(&f, Section::Labels, ends_at + 4);
}

#[test]
fn lazily_decoded_sections_name_their_byte_on_first_use() {
    let case = Case::new();
    // Intern: the declared table length is one byte too long.
    let mut f = case.file();
    let (start, _) = f.range(Section::Intern);
    let raw_len: u64 = le::read_at(&f.bytes, start).unwrap();
    f.put_in(Section::Intern, 0, &(raw_len + 1).to_le_bytes());
    f.reseal_same(Section::Intern);
    let data = case.open(&f).unwrap();
    assert_corrupt(data.intern().unwrap_err(), "intern tables", start);
    // The fault is cached: a second call reports it again.
    assert_corrupt(data.intern().unwrap_err(), "intern tables", start);
    // Intern tables that decode but disagree with the posting lists are named at the table.
    let mut f = case.file();
    let lists = f.u32_in(Section::Postings, 8);
    f.put_in(Section::Postings, 8, &(lists + 1).to_le_bytes());
    f.reseal_same(Section::Postings);
    let data = case.open(&f).unwrap();
    assert_corrupt(
        data.intern().unwrap_err(),
        "intern tables",
        start + InternTables::TABLE_AT,
    );
    // Status: the first bitmap's zstd frame loses its magic.
    let mut f = case.file();
    let blob_at = f.u32_in(Section::Status, 12) as usize;
    f.put_in(Section::Status, blob_at, &[0, 0, 0, 0]);
    f.reseal_same(Section::Status);
    let data = case.open(&f).unwrap();
    let (status_at, _) = f.range(Section::Status);
    assert_corrupt(
        data.status_bitmaps().unwrap_err(),
        "status bitmaps",
        status_at + blob_at,
    );
}

#[test]
fn header_and_table_faults_name_the_field() {
    let case = Case::new();
    // An impossible row count, behind a valid header checksum.
    let mut f = case.file();
    let mut h = f.header();
    h.rows.set(u32::MAX);
    f.bytes[..HEADER_LEN].copy_from_slice(&h.encode());
    let e = case.open(&f).unwrap_err();
    assert_corrupt(e, "header", 24);
    // A generation that leaves none for a next WAL.
    let mut f = case.file();
    let mut h = f.header();
    h.generation.set(u64::MAX);
    f.bytes[..HEADER_LEN].copy_from_slice(&h.encode());
    assert_corrupt(case.open(&f).unwrap_err(), "header", 48);
    // A section placed off its alignment: the table entry is named.
    let mut f = case.file();
    let mut h = f.header();
    let e = &mut h.sections[Section::Zones as usize];
    e.offset.set(e.offset.get() + 4);
    f.bytes[..HEADER_LEN].copy_from_slice(&h.encode());
    let e = case.open(&f).unwrap_err();
    assert_corrupt(e, "zone maps", 64 + 16 * Section::Zones as usize);
    // A damaged header field fails the header checksum.
    let mut f = case.file();
    f.bytes[50] ^= 1;
    assert_corrupt(case.open(&f).unwrap_err(), "header", 60);
}

#[test]
fn a_segment_cut_at_every_byte_or_with_any_byte_flipped_is_refused_never_misread() {
    let case = Case::new();
    let pristine = case.file().bytes;
    for cut in 0..pristine.len() {
        let f = File {
            bytes: pristine[..cut].to_vec(),
        };
        match case.open(&f) {
            Err(DbError::CorruptSegment { .. }) => {}
            Err(e) => panic!("cut at {cut}: {e}"),
            Ok(_) => panic!("cut at {cut}: opened"),
        }
    }
    let whole = case.open(&case.file()).unwrap();
    let f = case.file();
    let in_section = |at: usize| {
        Section::ALL.iter().any(|&s| {
            let (start, len) = f.range(s);
            (start..start + len).contains(&at)
        })
    };
    let mut padding = 0;
    // Every 5th byte, a different bit each time (every byte takes minutes at opt-level 1).
    for at in (0..pristine.len()).step_by(5) {
        let mut f = case.file();
        f.bytes[at] ^= 1 << (at % 8);
        match case.open(&f) {
            Err(DbError::CorruptSegment { .. }) => {}
            // Zero padding between sections is read by nothing: the segment reads as before.
            Ok(data) if at >= HEADER_LEN && !in_section(at) => {
                assert_eq!(data.ts, whole.ts, "bit flipped at {at}");
                assert!((0..data.rows).all(|r| data.id(r).unwrap() == whole.id(r).unwrap()));
                padding += 1;
            }
            // The format version field: another version is refused as such.
            Err(DbError::UnsupportedFormat { .. }) if (4..6).contains(&at) => {}
            Err(e) => panic!("bit flipped at {at}: {e}"),
            Ok(_) => panic!("bit flipped at {at}: opened"),
        }
    }
    assert!(padding < pristine.len() / 50, "{padding} padding bytes");
}
