//! WAL frame and file tests: round trips, torn tails at every byte, bit flips.

use super::frame::*;
use super::reader::{read_wal, WalRead};
use super::writer::WalWriter;
use super::WalHeader;
use crate::config::WalRecoveryMode;
use crate::event::{DynEvent, EventFlags};
use crate::schema::SchemaDef;

struct NoIds;
impl IdSource for NoIds {
    fn next_id(&self, out: &mut String) {
        out.push_str("generated");
    }
}

fn schema() -> SchemaDef {
    SchemaDef {
        schema_id: 9,
        dims: vec!["a".into(), "b".into()],
        counters: vec!["c".into()],
        labels: vec!["l".into()],
        bloom_dim: None,
        rollup_dims: vec![],
    }
}

fn ev(i: u32) -> DynEvent {
    DynEvent {
        id: if i % 7 == 3 {
            String::new()
        } else {
            format!("id-{i}")
        },
        ts_ns: i as i64 * 1000 - 5,
        metric: -(i as i64),
        counters: vec![i],
        latency_ms: i * 2,
        latency_detail_ms: i * 3,
        status: 200 + (i % 3) as u16,
        flags: EventFlags(i as u16),
        dims: vec![format!("a{}", i % 4), "é€😀".into()],
        labels: vec!["x".repeat(i as usize % 50)],
    }
}

fn frame_of(rows: &[DynEvent], cp: Option<(&str, u64)>) -> Vec<u8> {
    let mut f = FrameBuf::new(FrameKind::Events);
    encode_events(&mut f, &schema(), rows, cp, &NoIds).unwrap();
    f.finish().unwrap().to_vec()
}

type Decoded = (Vec<DynEvent>, Option<(String, u64)>);

fn decode_all(frame: &[u8]) -> Result<Decoded, String> {
    let (raw, len) = read_frame(frame).map_err(|e| e.to_string())?;
    assert_eq!(len, frame.len());
    let s = schema();
    let mut dec = EventsDecoder::new(&raw, &s)?;
    let cp = dec.checkpoint.map(|(k, p)| (k.to_string(), p));
    let mut row = RawRow::default();
    let mut out = Vec::new();
    while dec.next_into(&mut row)? {
        out.push(DynEvent {
            id: row.id.into(),
            ts_ns: row.ts_ns,
            metric: row.metric,
            counters: row.counters.clone(),
            latency_ms: row.latency_ms,
            latency_detail_ms: row.latency_detail_ms,
            status: row.status,
            flags: EventFlags(row.flags),
            dims: row.dims.iter().map(|s| s.to_string()).collect(),
            labels: row.labels.iter().map(|s| s.to_string()).collect(),
        });
    }
    Ok((out, cp))
}

#[test]
fn events_frame_round_trip() {
    let rows: Vec<DynEvent> = (0..20).map(ev).collect();
    let bytes = frame_of(&rows, Some(("orders/3", 41)));
    let (back, cp) = decode_all(&bytes).unwrap();
    assert_eq!(cp, Some(("orders/3".to_string(), 41)));
    for (a, b) in rows.iter().zip(&back) {
        let mut a = a.clone();
        if a.id.is_empty() {
            a.id = "generated".into();
        }
        assert_eq!(&a, b);
    }
}

#[test]
fn arity_and_size_errors_are_typed() {
    let mut e = ev(1);
    e.dims.pop();
    let mut f = FrameBuf::new(FrameKind::Events);
    let err = encode_events(&mut f, &schema(), &[e], None, &NoIds).unwrap_err();
    assert!(matches!(
        err,
        crate::DbError::ArityMismatch {
            column: "dims",
            expected: 2,
            found: 1
        }
    ));
    let mut e = ev(1);
    e.dims[0] = "x".repeat(MAX_VALUE_LEN + 1);
    let err = encode_events(
        &mut FrameBuf::new(FrameKind::Events),
        &schema(),
        &[e],
        None,
        &NoIds,
    )
    .unwrap_err();
    assert!(err.to_string().contains("dim a is 65536 bytes"), "{err}");
    let mut e = ev(1);
    e.id = "i".repeat(70_000);
    assert!(matches!(
        encode_events(
            &mut FrameBuf::new(FrameKind::Events),
            &schema(),
            &[e],
            None,
            &NoIds
        ),
        Err(crate::DbError::ValueTooLarge { .. })
    ));
}

#[test]
fn every_truncation_of_a_frame_is_detected() {
    let bytes = frame_of(&(0..5).map(ev).collect::<Vec<_>>(), None);
    for cut in 0..bytes.len() {
        assert!(
            matches!(read_frame(&bytes[..cut]), Err(FrameError::Truncated { .. })),
            "cut at {cut}"
        );
    }
}

#[test]
fn every_single_bit_flip_is_detected() {
    let bytes = frame_of(&(0..3).map(ev).collect::<Vec<_>>(), Some(("k", 1)));
    for bit in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        // A flip may make the length claim more bytes (truncated) or fewer (checksum); either
        // way the frame is rejected and nothing decodes from it.
        assert!(
            read_frame(&b).is_err() || decode_all(&b).is_err(),
            "flip {bit} accepted"
        );
    }
}

fn write_wal(dir: &std::path::Path, frames: &[Vec<u8>]) -> std::path::PathBuf {
    let s = schema();
    let path = dir.join("shard-000.wal");
    let header = WalHeader {
        version: super::WAL_VERSION,
        shard: 0,
        generation: 7,
        schema_id: s.schema_id,
        fingerprint: s.fingerprint(),
    };
    let mut w = WalWriter::create(&path, header).unwrap();
    for f in frames {
        w.append(f).unwrap();
    }
    path
}

#[test]
fn torn_tail_keeps_every_complete_frame() {
    let dir = tempfile::tempdir().unwrap();
    let frames: Vec<Vec<u8>> = (0..4)
        .map(|i| frame_of(&[ev(i), ev(i + 10)], None))
        .collect();
    let path = write_wal(dir.path(), &frames);
    let full = std::fs::read(&path).unwrap();
    let last_start = full.len() - frames[3].len();
    for cut in last_start..full.len() {
        std::fs::write(&path, &full[..cut]).unwrap();
        let WalRead::Image(img) =
            read_wal(&path, &schema(), WalRecoveryMode::TolerateCorruptTail).unwrap()
        else {
            panic!("header lost")
        };
        assert_eq!(img.frames().count(), 3, "cut at {cut}");
        assert_eq!(img.valid_len as usize, last_start);
        assert_eq!(img.discarded.is_some(), cut > last_start);
        let strict = read_wal(&path, &schema(), WalRecoveryMode::AbsoluteConsistency);
        if cut > last_start {
            assert!(
                matches!(strict, Err(crate::DbError::CorruptWal { offset, .. }) if offset == last_start as u64)
            );
        } else {
            assert!(strict.is_ok());
        }
    }
}

#[test]
fn schema_mismatch_in_wal_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_wal(dir.path(), &[]);
    let mut other = schema();
    other.labels.push("extra".into());
    let err = read_wal(&path, &other, WalRecoveryMode::TolerateCorruptTail).unwrap_err();
    assert!(
        matches!(err, crate::DbError::SchemaMismatch { .. }),
        "{err}"
    );
}

#[test]
fn header_rejects_damage_and_future_versions() {
    let h = WalHeader {
        version: super::WAL_VERSION,
        shard: 3,
        generation: 99,
        schema_id: 1,
        fingerprint: 0xABCD,
    };
    let bytes = h.encode();
    assert_eq!(WalHeader::decode(&bytes), Ok(h));
    for bit in 0..bytes.len() * 8 {
        let mut b = bytes;
        b[bit / 8] ^= 1 << (bit % 8);
        assert!(WalHeader::decode(&b).is_err(), "flip {bit}");
    }
    let mut future = bytes;
    future[4] = 3;
    assert_eq!(
        WalHeader::decode(&future),
        Err(super::HeaderError::Version(3))
    );
}

#[test]
fn header_with_the_last_generation_is_damaged() {
    let h = WalHeader {
        version: super::WAL_VERSION,
        shard: 0,
        generation: u64::MAX,
        schema_id: 1,
        fingerprint: 0xABCD,
    };
    match WalHeader::decode(&h.encode()) {
        Err(super::HeaderError::Corrupt(why)) => assert!(why.contains("generation"), "{why}"),
        other => panic!("expected a damaged header, got {other:?}"),
    }
    let last_usable = WalHeader {
        generation: u64::MAX - 1,
        ..h
    };
    assert_eq!(WalHeader::decode(&last_usable.encode()), Ok(last_usable));
}

#[test]
fn names_are_canonical() {
    use super::{parse_name, WalFileKind};
    assert_eq!(parse_name("shard-007.wal"), Some((7, WalFileKind::Active)));
    assert_eq!(
        parse_name("shard-1234.wal.rotating"),
        Some((1234, WalFileKind::Rotating))
    );
    assert_eq!(parse_name("shard-7.wal"), None);
    assert_eq!(parse_name("shard-+07.wal"), None);
    assert_eq!(parse_name("shard-007.wal.bak"), None);
}
