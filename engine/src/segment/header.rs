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

use zerocopy::little_endian::{I64, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{Section, SECTION_COUNT};
pub(crate) use crate::wal::HeaderError;

/// Magic bytes at the start of every segment.
pub(crate) const SEGMENT_MAGIC: [u8; 4] = *b"KSEG";
/// Current segment format version.
pub(crate) const SEGMENT_VERSION: u16 = 1;
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

impl SegmentHeader {
    /// Checksum of the header bytes with the checksum field zeroed.
    pub(crate) fn compute_crc(&self) -> u32 {
        let mut copy = *self;
        copy.header_crc = U32::new(0);
        crc32fast::hash(copy.as_bytes())
    }

    /// Parses and checks magic, version, length and checksum.
    pub(crate) fn parse(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
        let corrupt = |s: String| HeaderError::Corrupt(s);
        let raw = bytes.get(..HEADER_LEN).ok_or_else(|| {
            corrupt(format!(
                "file is {} bytes, shorter than the header",
                bytes.len()
            ))
        })?;
        let h = SegmentHeader::read_from_bytes(raw)
            .map_err(|_| corrupt("header does not parse".into()))?;
        if h.magic != SEGMENT_MAGIC {
            return Err(corrupt(format!(
                "bad magic {:?}, expected \"KSEG\"",
                h.magic
            )));
        }
        if h.version.get() != SEGMENT_VERSION {
            return Err(HeaderError::Version(h.version.get()));
        }
        if h.header_len.get() as usize != HEADER_LEN || h.section_count as usize != SECTION_COUNT {
            return Err(corrupt(
                "header length or section count is not this version's".into(),
            ));
        }
        if h.header_crc.get() != h.compute_crc() {
            return Err(corrupt("header checksum mismatch".into()));
        }
        Ok(h)
    }

    pub(crate) fn section(&self, s: Section) -> SectionEntry {
        self.sections[s as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
