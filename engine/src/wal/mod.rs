//! The write-ahead log: one file per shard, a header followed by CRC-framed records.
//!
//! ```text
//! WAL file header (32 bytes, little-endian)
//! 0   [u8; 4]  magic "KWAL"
//! 4   u16      format version (2; version-1 files are read too)
//! 6   u16      shard index
//! 8   u64      generation: unique per WAL file, recorded by the segments made from it
//! 16  u8       schema id
//! 17  [u8; 3]  reserved, zero
//! 20  u64      schema fingerprint
//! 28  u32      CRC-32 of bytes 0..28
//! 32  frames…
//! ```

pub(crate) mod frame;
pub(crate) mod reader;
pub(crate) mod writer;

#[cfg(test)]
mod tests;

use crate::le::{self, ReadError};

/// Magic bytes at the start of every WAL file.
pub(crate) const WAL_MAGIC: [u8; 4] = *b"KWAL";
/// WAL format version this build writes. Version 2 added the staged, publish and retract
/// frame kinds; a version-1 file never holds them.
pub(crate) const WAL_VERSION: u16 = 2;
/// Oldest WAL format version this build reads.
pub(crate) const WAL_MIN_VERSION: u16 = 1;
/// Size of the WAL file header.
pub(crate) const WAL_HEADER_LEN: usize = 32;

const OFF_VERSION: usize = 4;
const OFF_SHARD: usize = OFF_VERSION + 2;
const OFF_GENERATION: usize = OFF_SHARD + 2;
const OFF_SCHEMA_ID: usize = OFF_GENERATION + 8;
const OFF_FINGERPRINT: usize = OFF_SCHEMA_ID + 4;
const OFF_CRC: usize = OFF_FINGERPRINT + 8;
const _: () = assert!(OFF_CRC + 4 == WAL_HEADER_LEN);

/// The decoded WAL file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WalHeader {
    /// Format version: `WAL_VERSION` for files this build creates.
    pub version: u16,
    pub shard: u16,
    pub generation: u64,
    pub schema_id: u8,
    pub fingerprint: u64,
}

impl WalHeader {
    pub(crate) fn encode(&self) -> [u8; WAL_HEADER_LEN] {
        let mut b = [0u8; WAL_HEADER_LEN];
        b[..4].copy_from_slice(&WAL_MAGIC);
        b[OFF_VERSION..OFF_SHARD].copy_from_slice(&self.version.to_le_bytes());
        b[OFF_SHARD..OFF_GENERATION].copy_from_slice(&self.shard.to_le_bytes());
        b[OFF_GENERATION..OFF_SCHEMA_ID].copy_from_slice(&self.generation.to_le_bytes());
        b[OFF_SCHEMA_ID] = self.schema_id;
        b[OFF_FINGERPRINT..OFF_CRC].copy_from_slice(&self.fingerprint.to_le_bytes());
        let crc = crc32fast::hash(&b[..OFF_CRC]);
        b[OFF_CRC..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Result<WalHeader, HeaderError> {
        let b: &[u8; WAL_HEADER_LEN] = b
            .get(..WAL_HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| {
                HeaderError::Corrupt(format!(
                    "file is shorter than the {WAL_HEADER_LEN}-byte header"
                ))
            })?;
        if b[..4] != WAL_MAGIC {
            return Err(HeaderError::Corrupt(format!(
                "bad magic {:?}, expected \"KWAL\"",
                &b[..4]
            )));
        }
        let short = |e: ReadError| HeaderError::Corrupt(e.to_string());
        let version = le::read_at::<u16>(b, OFF_VERSION).map_err(short)?;
        if !(WAL_MIN_VERSION..=WAL_VERSION).contains(&version) {
            return Err(HeaderError::Version(version));
        }
        let crc = le::read_at::<u32>(b, OFF_CRC).map_err(short)?;
        if crc != crc32fast::hash(&b[..OFF_CRC]) {
            return Err(HeaderError::Corrupt("header checksum mismatch".into()));
        }
        let generation = le::read_at::<u64>(b, OFF_GENERATION).map_err(short)?;
        if generation == u64::MAX {
            // Generations count up from 1 (FORMAT.md 8.2): this one leaves none for the next
            // WAL, and `1 + max` at open would overflow.
            return Err(HeaderError::Corrupt(format!(
                "generation {generation} leaves no generation for a next WAL"
            )));
        }
        Ok(WalHeader {
            version,
            shard: le::read_at(b, OFF_SHARD).map_err(short)?,
            generation,
            schema_id: b[OFF_SCHEMA_ID],
            fingerprint: le::read_at(b, OFF_FINGERPRINT).map_err(short)?,
        })
    }
}

/// Why a file header was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// Damaged: wrong magic, checksum, or cut short.
    Corrupt(String),
    /// Intact but of a format version this build does not read.
    Version(u16),
}

/// File name of a shard's active WAL.
pub(crate) fn active_name(shard: usize) -> String {
    format!("shard-{shard:03}.wal")
}
/// File name of a shard's WAL while it is being turned into a segment.
pub(crate) fn rotating_name(shard: usize) -> String {
    format!("shard-{shard:03}.wal.rotating")
}
/// File name of a shard's next WAL while it is being prepared.
pub(crate) fn new_name(shard: usize) -> String {
    format!("shard-{shard:03}.wal.new")
}

/// Parses `shard-NNN.wal[.rotating|.new]` into (shard, suffix).
pub(crate) fn parse_name(name: &str) -> Option<(usize, WalFileKind)> {
    let rest = name.strip_prefix("shard-")?;
    let (num, kind) = if let Some(n) = rest.strip_suffix(".wal") {
        (n, WalFileKind::Active)
    } else if let Some(n) = rest.strip_suffix(".wal.rotating") {
        (n, WalFileKind::Rotating)
    } else if let Some(n) = rest.strip_suffix(".wal.new") {
        (n, WalFileKind::New)
    } else {
        return None;
    };
    let shard: usize = num.parse().ok()?;
    // Only the canonical spelling: `shard-7.wal` next to `shard-007.wal` is not a second WAL.
    (format!("{shard:03}") == num).then_some((shard, kind))
}

/// The role of a WAL file, from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WalFileKind {
    Active,
    Rotating,
    New,
}
