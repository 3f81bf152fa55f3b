//! The 256-byte segment header.
//!
//! Byte layout (little-endian), mirrored in `engine/FORMAT.md` and pinned by the
//! `header_layout_is_pinned` test:
//!
//! ```text
//! 0   [u8; 4]  magic "KSEG"
//! 4   u16      format version
//! 6   u16      header length (256)
//! 8   u8       schema id
//! 9   u8       section count (12)
//! 10  u16      bloom dim, 0xFFFF = none
//! 12  u16      dim count
//! 14  u8       counter count
//! 15  u8       label count
//! 16  u64      schema fingerprint
//! 24  u32      row count
//! 28  u16      part index (a WAL file can become several segments)
//! 30  u16      part count
//! 32  i64      min ts_ns
//! 40  i64      max ts_ns
//! 48  u64      generation of the source WAL
//! 56  u16      source shard
//! 58  u16      reserved, zero
//! 60  u32      CRC-32 of the header with this field zeroed
//! 64  12 x { u64 offset, u32 length, u32 CRC-32 }   section table
//! ```

use std::mem::{offset_of, size_of};

use zerocopy::little_endian::{I64, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{Section, SECTION_ALIGN, SECTION_COUNT};

/// Magic bytes at the start of every segment.
pub(crate) const SEGMENT_MAGIC: [u8; 4] = *b"KSEG";
/// Segment format version of new segments.
pub(crate) const SEGMENT_VERSION: u16 = 2;
/// The first segment format version, still read.
pub(crate) const SEGMENT_VERSION_1: u16 = 1;
/// Size of the header.
pub(crate) const HEADER_LEN: usize = 256;
/// `bloom_dim` value meaning "no bloom filter".
pub(crate) const NO_BLOOM: u16 = u16::MAX;

/// One entry of the section table.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub(crate) struct SectionEntry {
    pub offset: U64,
    pub len: U32,
    pub crc: U32,
}

/// The header as laid out on disk.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub(crate) struct SegmentHeader {
    pub magic: [u8; 4],
    pub version: U16,
    pub header_len: U16,
    pub schema_id: u8,
    pub section_count: u8,
    pub bloom_dim: U16,
    pub dims: U16,
    pub counters: u8,
    pub labels: u8,
    pub fingerprint: U64,
    pub rows: U32,
    pub part_index: U16,
    pub part_count: U16,
    pub min_ts: I64,
    pub max_ts: I64,
    pub generation: U64,
    pub shard: U16,
    pub reserved: U16,
    pub header_crc: U32,
    pub sections: [SectionEntry; SECTION_COUNT],
}

const _: () = assert!(std::mem::size_of::<SegmentHeader>() == HEADER_LEN);

/// Why a segment header was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// Damaged: cut short, wrong magic, length, section count or checksum; `at` is the offset
    /// of the field that failed.
    Corrupt { at: usize, reason: String },
    /// Intact but of a format version this build does not read.
    Version(u16),
}

impl SegmentHeader {
    /// Checksum of the header bytes with the checksum field zeroed.
    pub(crate) fn compute_crc(&self) -> u32 {
        let mut copy = *self;
        copy.header_crc = U32::new(0);
        crc32fast::hash(copy.as_bytes())
    }

    /// The header's bytes, with its checksum computed.
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut sealed = *self;
        sealed.header_crc = U32::new(self.compute_crc());
        let mut out = [0u8; HEADER_LEN];
        out.copy_from_slice(sealed.as_bytes());
        out
    }

    /// Parses and checks magic, version, length and checksum.
    pub(crate) fn parse(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
        let corrupt = |at: usize, reason: String| HeaderError::Corrupt { at, reason };
        let raw = bytes.get(..HEADER_LEN).ok_or_else(|| {
            corrupt(
                bytes.len(),
                format!("file is {} bytes, shorter than the header", bytes.len()),
            )
        })?;
        let h = SegmentHeader::read_from_bytes(raw)
            .map_err(|_| corrupt(0, "header does not parse".into()))?;
        if h.magic != SEGMENT_MAGIC {
            return Err(corrupt(
                0,
                format!("bad magic {:?}, expected \"KSEG\"", h.magic),
            ));
        }
        if ![SEGMENT_VERSION_1, SEGMENT_VERSION].contains(&h.version.get()) {
            return Err(HeaderError::Version(h.version.get()));
        }
        if h.header_len.get() as usize != HEADER_LEN {
            return Err(corrupt(
                offset_of!(SegmentHeader, header_len),
                format!("header length {} is not this version's", h.header_len.get()),
            ));
        }
        if h.section_count as usize != SECTION_COUNT {
            return Err(corrupt(
                offset_of!(SegmentHeader, section_count),
                format!(
                    "{} sections, this version has {SECTION_COUNT}",
                    h.section_count
                ),
            ));
        }
        if h.header_crc.get() != h.compute_crc() {
            return Err(corrupt(
                offset_of!(SegmentHeader, header_crc),
                "header checksum mismatch".into(),
            ));
        }
        Ok(h)
    }

    /// The table entry of section `s`.
    pub(crate) fn section(&self, s: Section) -> SectionEntry {
        self.sections[s as usize]
    }
}

/// A section table entry that does not describe its section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableError {
    pub section: Section,
    /// File offset of the damage: the table entry when the section is misplaced, the section's
    /// first byte when its checksum fails.
    pub offset: usize,
    pub reason: String,
}

/// The byte range of every section, checked against the file they were read from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SectionTable {
    /// Start and length of each section, in table order.
    ranges: [(usize, usize); SECTION_COUNT],
}

impl SectionTable {
    /// Checks every entry of the header's table against `file`, in table order: the section
    /// starts at or after the header, at a multiple of `SECTION_ALIGN`, ends inside the file,
    /// and its bytes match the entry's CRC.
    pub(crate) fn locate(header: &SegmentHeader, file: &[u8]) -> Result<SectionTable, TableError> {
        let mut ranges = [(0, 0); SECTION_COUNT];
        for s in Section::ALL {
            let e = header.section(s);
            let (start, len) = (e.offset.get(), e.len.get() as u64);
            let end = start.saturating_add(len);
            if start < HEADER_LEN as u64
                || end > file.len() as u64
                || start % SECTION_ALIGN as u64 != 0
            {
                return Err(TableError {
                    section: s,
                    offset: offset_of!(SegmentHeader, sections)
                        + s as usize * size_of::<SectionEntry>(),
                    reason: format!("section [{start}, {end}) is outside the file"),
                });
            }
            let (start, end) = (start as usize, end as usize);
            if crc32fast::hash(&file[start..end]) != e.crc.get() {
                return Err(TableError {
                    section: s,
                    offset: start,
                    reason: "checksum mismatch".into(),
                });
            }
            ranges[s as usize] = (start, end - start);
        }
        Ok(SectionTable { ranges })
    }

    /// File offset of the first byte of section `s`.
    pub(crate) fn start(&self, s: Section) -> usize {
        self.ranges[s as usize].0
    }

    /// The bytes of section `s` in `file`, the file the table was checked against.
    pub(crate) fn bytes<'a>(&self, file: &'a [u8], s: Section) -> &'a [u8] {
        let (start, len) = self.ranges[s as usize];
        file.get(start..start + len).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    #[test]
    fn header_layout_is_pinned() {
        // These offsets are documented in FORMAT.md; moving a field is a format change.
        assert_eq!(std::mem::offset_of!(SegmentHeader, version), 4);
        assert_eq!(std::mem::offset_of!(SegmentHeader, schema_id), 8);
        assert_eq!(std::mem::offset_of!(SegmentHeader, bloom_dim), 10);
        assert_eq!(std::mem::offset_of!(SegmentHeader, fingerprint), 16);
        assert_eq!(std::mem::offset_of!(SegmentHeader, rows), 24);
        assert_eq!(std::mem::offset_of!(SegmentHeader, min_ts), 32);
        assert_eq!(std::mem::offset_of!(SegmentHeader, generation), 48);
        assert_eq!(std::mem::offset_of!(SegmentHeader, header_crc), 60);
        assert_eq!(std::mem::offset_of!(SegmentHeader, sections), 64);
        assert_eq!(std::mem::size_of::<SectionEntry>(), 16);
    }

    /// A valid header whose sections are 10 bytes each, at 256 + 64 i, and the file it heads.
    fn sample() -> (SegmentHeader, Vec<u8>) {
        let mut h = SegmentHeader::new_zeroed();
        h.magic = SEGMENT_MAGIC;
        h.version = U16::new(SEGMENT_VERSION);
        h.header_len = U16::new(HEADER_LEN as u16);
        h.section_count = SECTION_COUNT as u8;
        h.rows = U32::new(3);
        h.min_ts = I64::new(-7);
        let mut file = vec![0u8; HEADER_LEN + SECTION_ALIGN * SECTION_COUNT];
        for (i, e) in h.sections.iter_mut().enumerate() {
            let at = HEADER_LEN + SECTION_ALIGN * i;
            file[at..at + 10].fill(i as u8 + 1);
            e.offset = U64::new(at as u64);
            e.len = U32::new(10);
            e.crc = U32::new(crc32fast::hash(&file[at..at + 10]));
        }
        file[..HEADER_LEN].copy_from_slice(&h.encode());
        (h, file)
    }

    #[track_caller]
    fn assert_corrupt(bytes: &[u8], at: usize, reason: &str) {
        match SegmentHeader::parse(bytes) {
            Err(HeaderError::Corrupt {
                at: got,
                reason: why,
            }) => {
                assert_eq!(got, at, "{why}");
                assert!(why.contains(reason), "{why:?} should say {reason:?}");
            }
            other => panic!("expected a corrupt header, got {other:?}"),
        }
    }

    #[test]
    fn encode_parse_round_trip_and_faults_name_the_field() {
        let (h, file) = sample();
        let parsed = SegmentHeader::parse(&file).unwrap();
        assert_eq!(parsed.as_bytes(), &file[..HEADER_LEN]);
        assert_eq!((parsed.rows.get(), parsed.min_ts.get()), (3, -7));
        assert_eq!(parsed.header_crc.get(), h.compute_crc());
        assert_corrupt(&file[..255], 255, "shorter than the header");
        let edit = |at: usize, b: u8| {
            let mut f = file.clone();
            f[at] = b;
            f
        };
        assert_corrupt(&edit(0, b'X'), 0, "bad magic");
        assert!(matches!(
            SegmentHeader::parse(&edit(4, 3)),
            Err(HeaderError::Version(3))
        ));
        assert_corrupt(&edit(7, 0), 6, "header length 0");
        assert_corrupt(&edit(9, 11), 9, "11 sections");
        assert_corrupt(&edit(100, 0xFF), 60, "checksum");
    }

    #[test]
    fn section_table_checks_placement_and_checksums() {
        let (h, file) = sample();
        let table = SectionTable::locate(&h, &file).unwrap();
        for s in Section::ALL {
            assert_eq!(table.start(s), HEADER_LEN + SECTION_ALIGN * s as usize);
            assert_eq!(table.bytes(&file, s), [s as u8 + 1; 10]);
        }
        let misplaced = |s: Section, offset: u64, len: u32| {
            let mut h = h;
            h.sections[s as usize].offset = U64::new(offset);
            h.sections[s as usize].len = U32::new(len);
            SectionTable::locate(&h, &file).unwrap_err()
        };
        let entry = |s: Section| 64 + 16 * s as usize;
        for (s, offset, len) in [
            (Section::Ts, 192, 10),
            (Section::U16Cols, 321, 10),
            (Section::Labels, file.len() as u64 - 64, 65),
            (Section::Ids, u64::MAX - 63, 10),
        ] {
            let e = misplaced(s, offset, len);
            assert_eq!((e.section, e.offset), (s, entry(s)), "{e:?}");
            assert!(e.reason.contains("outside the file"), "{e:?}");
        }
        let mut damaged = file.clone();
        damaged[HEADER_LEN + SECTION_ALIGN * 5 + 9] ^= 1;
        assert_eq!(
            SectionTable::locate(&h, &damaged).unwrap_err(),
            TableError {
                section: Section::Status,
                offset: HEADER_LEN + SECTION_ALIGN * 5,
                reason: "checksum mismatch".into(),
            }
        );
    }
}
