//! WAL frames: the unit of atomicity. One `append_batch` is one frame.
//!
//! ```text
//! frame header (16 bytes, little-endian)
//! 0   u32  payload length in bytes
//! 4   u32  event count (0 for non-event frames)
//! 8   u8   kind: 1 events, 2 checkpoint snapshot, 3 tombstones, 4 staged events,
//!          5 publish, 6 retract
//! 9   u8   flags: bit 0 = an events frame carries a source checkpoint
//! 10  u16  reserved, zero
//! 12  u32  CRC-32 (IEEE) of header bytes 0..12 followed by the payload
//! 16  ...  payload
//! ```
//! Payload layouts are in `engine/FORMAT.md`.

use crate::error::{DbError, Result};
use crate::event::Row;
use crate::le::{self, LeReader, ReadError};
use crate::schema::SchemaDef;

/// Size of a frame header.
pub(crate) const FRAME_HEADER_LEN: usize = 16;
const CRC_OFFSET: usize = 12;
/// Largest payload one frame may carry.
pub(crate) const MAX_FRAME_PAYLOAD: usize = 1 << 30;
/// Longest id or dim value, in bytes (u16 length prefix).
pub const MAX_VALUE_LEN: usize = u16::MAX as usize;
/// Longest label value, in bytes.
pub const MAX_LABEL_LEN: usize = 16 << 20;
/// Longest source key of a checkpoint, in bytes.
pub const MAX_SOURCE_KEY_LEN: usize = 1024;

/// Frame kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameKind {
    Events = 1,
    Checkpoints = 2,
    Tombstones = 3,
    /// An events frame (with its checkpoint) held back from queries until published.
    Staged = 4,
    /// Publishes the staged batches of sources up to positions: `(source, position)` entries.
    Publish = 5,
    /// Drops the staged batches of sources after positions: `(source, position)` entries.
    Retract = 6,
}

impl FrameKind {
    fn from_u8(v: u8) -> Option<FrameKind> {
        match v {
            1 => Some(FrameKind::Events),
            2 => Some(FrameKind::Checkpoints),
            3 => Some(FrameKind::Tombstones),
            4 => Some(FrameKind::Staged),
            5 => Some(FrameKind::Publish),
            6 => Some(FrameKind::Retract),
            _ => None,
        }
    }
}

pub(crate) const FLAG_CHECKPOINT: u8 = 1;

/// A frame being built: header space reserved up front so the whole frame goes to the file in
/// one write.
pub(crate) struct FrameBuf {
    buf: Vec<u8>,
    kind: FrameKind,
    flags: u8,
    count: u32,
}

impl FrameBuf {
    pub(crate) fn new(kind: FrameKind) -> Self {
        Self::with_buffer(Vec::new(), kind)
    }

    pub(crate) fn with_buffer(mut buf: Vec<u8>, kind: FrameKind) -> Self {
        buf.clear();
        buf.resize(FRAME_HEADER_LEN, 0);
        FrameBuf {
            buf,
            kind,
            flags: 0,
            count: 0,
        }
    }

    pub(crate) fn put_u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn put_u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn put_u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn put_i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// A string with a u16 length prefix; the caller has checked the length.
    pub(crate) fn put_str16(&mut self, s: &str) {
        self.put_u16(s.len() as u16);
        self.buf.extend_from_slice(s.as_bytes());
    }
    fn put_str32(&mut self, s: &str) {
        self.put_u32(s.len() as u32);
        self.buf.extend_from_slice(s.as_bytes());
    }

    pub(crate) fn set_count(&mut self, count: u32) {
        self.count = count;
    }

    /// Writes the header and checksum; returns the frame bytes.
    pub(crate) fn finish(&mut self) -> Result<&[u8]> {
        let payload_len = self.buf.len() - FRAME_HEADER_LEN;
        if payload_len > MAX_FRAME_PAYLOAD {
            return Err(DbError::ValueTooLarge {
                column: "batch (one WAL frame)".into(),
                len: payload_len,
                max: MAX_FRAME_PAYLOAD,
            });
        }
        let h = &mut self.buf[..FRAME_HEADER_LEN];
        h[0..4].copy_from_slice(&(payload_len as u32).to_le_bytes());
        h[4..8].copy_from_slice(&self.count.to_le_bytes());
        h[8] = self.kind as u8;
        h[9] = self.flags;
        h[10..12].copy_from_slice(&[0, 0]);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&self.buf[..CRC_OFFSET]);
        crc.update(&self.buf[FRAME_HEADER_LEN..]);
        let crc = crc.finalize();
        self.buf[CRC_OFFSET..FRAME_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
        Ok(&self.buf)
    }

    pub(crate) fn into_buffer(self) -> Vec<u8> {
        self.buf
    }
}

/// Source of ids for events that arrive without one.
pub(crate) trait IdSource {
    fn next_id(&self, out: &mut String);
}

/// Encodes an events frame: optional checkpoint, then each event row-major.
pub(crate) fn encode_events<R: Row>(
    frame: &mut FrameBuf,
    schema: &SchemaDef,
    rows: &[R],
    checkpoint: Option<(&str, u64)>,
    ids: &dyn IdSource,
) -> Result<()> {
    if rows.len() > u32::MAX as usize {
        return Err(DbError::ValueTooLarge {
            column: "batch event count".into(),
            len: rows.len(),
            max: u32::MAX as usize,
        });
    }
    if let Some((key, pos)) = checkpoint {
        check_len("checkpoint source key", key.len(), MAX_SOURCE_KEY_LEN)?;
        frame.flags |= FLAG_CHECKPOINT;
        frame.put_str16(key);
        frame.put_u64(pos);
    }
    let mut generated = String::new();
    for row in rows {
        let (dims, counters, labels) = (row.dims(), row.counters(), row.labels());
        check_arity(schema, dims, counters, labels)?;
        put_fixed(frame, row, counters);
        put_id(frame, row.id(), ids, &mut generated)?;
        put_strings(frame, schema, dims, labels)?;
    }
    frame.set_count(rows.len() as u32);
    Ok(())
}

/// Checks that a row has the schema's number of dims, counters and labels.
fn check_arity(
    schema: &SchemaDef,
    dims: &[String],
    counters: &[u32],
    labels: &[String],
) -> Result<()> {
    let (nd, nc, nl) = (
        schema.dims.len(),
        schema.counters.len(),
        schema.labels.len(),
    );
    if dims.len() != nd {
        return Err(DbError::ArityMismatch {
            column: "dims",
            expected: nd,
            found: dims.len(),
        });
    }
    if counters.len() != nc {
        return Err(DbError::ArityMismatch {
            column: "counters",
            expected: nc,
            found: counters.len(),
        });
    }
    if labels.len() != nl {
        return Err(DbError::ArityMismatch {
            column: "labels",
            expected: nl,
            found: labels.len(),
        });
    }
    Ok(())
}

/// Writes a row's fixed columns and its counters.
fn put_fixed<R: Row>(frame: &mut FrameBuf, row: &R, counters: &[u32]) {
    frame.put_i64(row.ts_ns());
    frame.put_i64(row.metric());
    frame.put_u32(row.latency_ms());
    frame.put_u32(row.latency_detail_ms());
    frame.put_u16(row.status());
    frame.put_u16(row.flags().0);
    for &c in counters {
        frame.put_u32(c);
    }
}

/// Writes a row's id, or a new one from `ids` when it has none (`generated` is scratch).
fn put_id(
    frame: &mut FrameBuf,
    id: &str,
    ids: &dyn IdSource,
    generated: &mut String,
) -> Result<()> {
    if id.is_empty() {
        generated.clear();
        ids.next_id(generated);
        frame.put_str16(generated);
    } else {
        check_len("id", id.len(), MAX_VALUE_LEN)?;
        frame.put_str16(id);
    }
    Ok(())
}

/// Writes a row's dims and labels, refusing values over their limit.
fn put_strings(
    frame: &mut FrameBuf,
    schema: &SchemaDef,
    dims: &[String],
    labels: &[String],
) -> Result<()> {
    for (i, d) in dims.iter().enumerate() {
        if d.len() > MAX_VALUE_LEN {
            return Err(too_large(
                format!("dim {}", schema.dims[i]),
                d.len(),
                MAX_VALUE_LEN,
            ));
        }
        frame.put_str16(d);
    }
    for (i, l) in labels.iter().enumerate() {
        if l.len() > MAX_LABEL_LEN {
            return Err(too_large(
                format!("label {}", schema.labels[i]),
                l.len(),
                MAX_LABEL_LEN,
            ));
        }
        frame.put_str32(l);
    }
    Ok(())
}

fn too_large(column: String, len: usize, max: usize) -> DbError {
    DbError::ValueTooLarge { column, len, max }
}

fn check_len(column: &str, len: usize, max: usize) -> Result<()> {
    if len > max {
        return Err(too_large(column.to_string(), len, max));
    }
    Ok(())
}

/// Encodes a checkpoint snapshot frame; publish and retract frames share its payload layout.
pub(crate) fn encode_checkpoints<'a>(
    frame: &mut FrameBuf,
    entries: impl ExactSizeIterator<Item = (&'a str, u64)>,
) {
    frame.set_count(0);
    frame.put_u32(entries.len() as u32);
    for (k, p) in entries {
        frame.put_str16(k);
        frame.put_u64(p);
    }
}

/// Encodes a tombstone frame.
pub(crate) fn encode_tombstones(frame: &mut FrameBuf, ids: &[&str]) -> Result<()> {
    frame.put_u32(ids.len() as u32);
    for id in ids {
        check_len("id", id.len(), MAX_VALUE_LEN)?;
        frame.put_str16(id);
    }
    Ok(())
}

/// A frame as found in a file, checksum verified.
#[derive(Debug)]
pub(crate) struct RawFrame<'a> {
    pub kind: FrameKind,
    pub flags: u8,
    pub count: u32,
    pub payload: &'a [u8],
}

/// Why a frame could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The file ends inside the frame (a torn write).
    Truncated { needed: u64, available: u64 },
    /// The frame is complete but fails validation.
    Invalid(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Truncated { needed, available } => {
                write!(
                    f,
                    "frame cut short: {needed} bytes needed, {available} in the file"
                )
            }
            FrameError::Invalid(why) => f.write_str(why),
        }
    }
}

/// Reads the frame at the start of `bytes`. Returns the frame and its total length.
pub(crate) fn read_frame(bytes: &[u8]) -> std::result::Result<(RawFrame<'_>, usize), FrameError> {
    let Some(h) = bytes.get(..FRAME_HEADER_LEN) else {
        return Err(FrameError::Truncated {
            needed: FRAME_HEADER_LEN as u64,
            available: bytes.len() as u64,
        });
    };
    let field = |at| le::read_at::<u32>(h, at).map_err(|e| FrameError::Invalid(e.to_string()));
    let len = field(0)? as usize;
    let count = field(4)?;
    let kind = h[8];
    let flags = h[9];
    let stored_crc = field(12)?;
    if len > MAX_FRAME_PAYLOAD {
        return Err(FrameError::Invalid(format!(
            "frame length {len} exceeds the maximum"
        )));
    }
    let total = FRAME_HEADER_LEN + len;
    let Some(payload) = bytes.get(FRAME_HEADER_LEN..total) else {
        return Err(FrameError::Truncated {
            needed: total as u64,
            available: bytes.len() as u64,
        });
    };
    let mut crc = crc32fast::Hasher::new();
    crc.update(&h[..CRC_OFFSET]);
    crc.update(payload);
    let crc = crc.finalize();
    if crc != stored_crc {
        return Err(FrameError::Invalid(format!(
            "checksum mismatch: stored {stored_crc:08x}, computed {crc:08x}"
        )));
    }
    let kind = FrameKind::from_u8(kind)
        .ok_or_else(|| FrameError::Invalid(format!("unknown frame kind {kind}")))?;
    if h[10] != 0 || h[11] != 0 {
        return Err(FrameError::Invalid(
            "reserved header bytes are not zero".into(),
        ));
    }
    Ok((
        RawFrame {
            kind,
            flags,
            count,
            payload,
        },
        total,
    ))
}

/// Bounds-checked little-endian reader over a payload: the shared [`LeReader`], with the WAL's
/// error messages.
pub(crate) struct Cursor<'a> {
    inner: LeReader<'a>,
}

/// The message of a read past the end of a payload.
fn payload_short(e: ReadError) -> String {
    match e {
        ReadError::Short {
            at,
            needed,
            available,
        } => format!(
            "payload ends at byte {} but {needed} more were needed",
            at + available
        ),
        other => other.to_string(),
    }
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor {
            inner: LeReader::new(bytes),
        }
    }
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        self.inner.take(n).map_err(payload_short)
    }
    pub(crate) fn u16(&mut self) -> std::result::Result<u16, String> {
        self.inner.read().map_err(payload_short)
    }
    pub(crate) fn u32(&mut self) -> std::result::Result<u32, String> {
        self.inner.read().map_err(payload_short)
    }
    pub(crate) fn u64(&mut self) -> std::result::Result<u64, String> {
        self.inner.read().map_err(payload_short)
    }
    pub(crate) fn i64(&mut self) -> std::result::Result<i64, String> {
        self.inner.read().map_err(payload_short)
    }
    pub(crate) fn str16(&mut self) -> std::result::Result<&'a str, String> {
        let n = self.u16()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|e| format!("string is not UTF-8: {e}"))
    }
    pub(crate) fn str32(&mut self) -> std::result::Result<&'a str, String> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|e| format!("string is not UTF-8: {e}"))
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

/// One decoded event, borrowing the frame.
#[derive(Debug, Default)]
pub(crate) struct RawRow<'a> {
    pub id: &'a str,
    pub ts_ns: i64,
    pub metric: i64,
    pub latency_ms: u32,
    pub latency_detail_ms: u32,
    pub status: u16,
    pub flags: u16,
    pub counters: Vec<u32>,
    pub dims: Vec<&'a str>,
    pub labels: Vec<&'a str>,
}

/// A decoded events frame header part.
pub(crate) struct EventsDecoder<'a> {
    cur: Cursor<'a>,
    remaining: u32,
    dims: usize,
    counters: usize,
    labels: usize,
    /// The checkpoint carried by the frame.
    pub checkpoint: Option<(&'a str, u64)>,
}

/// A source checkpoint as read from a frame: key and position.
type CheckpointRef<'a> = Option<(&'a str, u64)>;

/// The source checkpoint at the head of an events (or staged) frame's payload, if it has one.
pub(crate) fn frame_checkpoint<'a>(
    frame: &RawFrame<'a>,
) -> std::result::Result<CheckpointRef<'a>, String> {
    Ok(EventsDecoder::head(frame)?.1)
}

impl<'a> EventsDecoder<'a> {
    /// The payload cursor positioned after the checkpoint, and the checkpoint.
    fn head(frame: &RawFrame<'a>) -> std::result::Result<(Cursor<'a>, CheckpointRef<'a>), String> {
        let mut cur = Cursor::new(frame.payload);
        let checkpoint = if frame.flags & FLAG_CHECKPOINT != 0 {
            let k = cur.str16()?;
            let p = cur.u64()?;
            Some((k, p))
        } else {
            None
        };
        Ok((cur, checkpoint))
    }

    pub(crate) fn new(
        frame: &RawFrame<'a>,
        schema: &SchemaDef,
    ) -> std::result::Result<Self, String> {
        let (cur, checkpoint) = Self::head(frame)?;
        Ok(EventsDecoder {
            cur,
            remaining: frame.count,
            dims: schema.dims.len(),
            counters: schema.counters.len(),
            labels: schema.labels.len(),
            checkpoint,
        })
    }

    /// Decodes the next event into `row` (reusing its vectors); false at the end.
    pub(crate) fn next_into(&mut self, row: &mut RawRow<'a>) -> std::result::Result<bool, String> {
        if self.remaining == 0 {
            if !self.cur.is_empty() {
                return Err("trailing bytes after the last event".into());
            }
            return Ok(false);
        }
        self.remaining -= 1;
        let c = &mut self.cur;
        row.ts_ns = c.i64()?;
        row.metric = c.i64()?;
        row.latency_ms = c.u32()?;
        row.latency_detail_ms = c.u32()?;
        row.status = c.u16()?;
        row.flags = c.u16()?;
        row.counters.clear();
        for _ in 0..self.counters {
            row.counters.push(c.u32()?);
        }
        row.id = c.str16()?;
        row.dims.clear();
        for _ in 0..self.dims {
            row.dims.push(c.str16()?);
        }
        row.labels.clear();
        for _ in 0..self.labels {
            row.labels.push(c.str32()?);
        }
        Ok(true)
    }
}

/// Decodes a checkpoint snapshot frame.
pub(crate) fn decode_checkpoints(
    payload: &[u8],
) -> std::result::Result<Vec<(String, u64)>, String> {
    let mut c = Cursor::new(payload);
    let n = c.u32()?;
    let mut out = Vec::new();
    for _ in 0..n {
        let k = c.str16()?.to_string();
        out.push((k, c.u64()?));
    }
    if !c.is_empty() {
        return Err("trailing bytes after the checkpoints".into());
    }
    Ok(out)
}

/// Decodes a tombstone frame.
pub(crate) fn decode_tombstones(payload: &[u8]) -> std::result::Result<Vec<String>, String> {
    let mut c = Cursor::new(payload);
    let n = c.u32()?;
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(c.str16()?.to_string());
    }
    if !c.is_empty() {
        return Err("trailing bytes after the tombstones".into());
    }
    Ok(out)
}
