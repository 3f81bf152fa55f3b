//! Bounds-checked little-endian reading, shared by every binary structure the engine reads back:
//! WAL headers and frames, segment headers and sections, the bloom filter.
//!
//! Three ways in, one set of checks:
//!
//! * [`read_at`] reads one value at a byte offset;
//! * [`LeReader`] reads values one after the other (directories, frame payloads);
//! * [`values`] decodes a run of values, [`view`] borrows one in place as a typed slice.
//!
//! A read that does not fit returns a [`ReadError`] naming the byte where it started, so the
//! caller can say where a file is damaged. Nothing here panics on short or hostile input.

use std::fmt;
use std::mem::size_of;

use zerocopy::{FromBytes, Immutable};

#[cfg(not(target_endian = "little"))]
compile_error!(
    "keplordb maps little-endian columns in place and supports little-endian targets only"
);

/// Why a read failed; every variant names the byte offset where the read started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The bytes end before the value does.
    Short {
        /// Offset of the first byte of the value.
        at: usize,
        /// Bytes the value needs.
        needed: usize,
        /// Bytes there are from `at` on (0 when `at` is past the end).
        available: usize,
    },
    /// An in-place view would start at an offset that is not a multiple of its value size.
    Misaligned {
        /// Offset of the first byte of the view.
        at: usize,
        /// The alignment the values need.
        align: usize,
    },
}

impl ReadError {
    /// The byte offset where the failed read started.
    pub(crate) fn at(&self) -> usize {
        match *self {
            ReadError::Short { at, .. } | ReadError::Misaligned { at, .. } => at,
        }
    }

    fn short(bytes: &[u8], at: usize, needed: usize) -> ReadError {
        ReadError::Short {
            at,
            needed,
            available: bytes.len().saturating_sub(at),
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ReadError::Short {
                at,
                needed,
                available,
            } => write!(
                f,
                "{needed} bytes needed at byte {at}, {available} available"
            ),
            ReadError::Misaligned { at, align } => {
                write!(f, "byte {at} is not aligned to {align} bytes")
            }
        }
    }
}

/// A fixed-size integer stored little-endian.
pub(crate) trait LeValue: Copy + 'static {
    /// Its size in bytes.
    const SIZE: usize;
    /// The value in the first `SIZE` bytes of `bytes`, if there are that many.
    fn first(bytes: &[u8]) -> Option<Self>;
    /// Appends the value's bytes to `out`.
    fn put(self, out: &mut Vec<u8>);
}

macro_rules! le_value {
    ($($t:ty),*) => {$(
        impl LeValue for $t {
            const SIZE: usize = size_of::<$t>();
            #[inline]
            fn first(bytes: &[u8]) -> Option<$t> {
                bytes.first_chunk().map(|a| <$t>::from_le_bytes(*a))
            }
            #[inline]
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}

le_value!(u8, u16, u32, u64, i64);

/// The value of type `T` at byte `at` of `bytes`.
#[inline]
pub(crate) fn read_at<T: LeValue>(bytes: &[u8], at: usize) -> Result<T, ReadError> {
    bytes
        .get(at..)
        .and_then(T::first)
        .ok_or_else(|| ReadError::short(bytes, at, T::SIZE))
}

/// Every complete value of type `T` in `bytes`, in order; a partial value at the end is
/// ignored, so callers check the length first when it matters.
#[inline]
pub(crate) fn values<T: LeValue>(bytes: &[u8]) -> impl Iterator<Item = T> + '_ {
    bytes.chunks_exact(T::SIZE).filter_map(T::first)
}

/// Appends every value of `values` to `out`, little-endian.
#[inline]
pub(crate) fn put_all<T: LeValue>(out: &mut Vec<u8>, values: impl IntoIterator<Item = T>) {
    for v in values {
        v.put(out);
    }
}

/// `n` values of type `T` starting at byte `at` of `bytes`, viewed in place. The values are
/// little-endian on disk and the target is little-endian (checked at compile time above), so
/// the view reads them correctly. `bytes` must start at an address aligned like its file offset
/// (sections are 64-byte aligned in the file and the mapping is page-aligned).
#[inline]
pub(crate) fn view<T: FromBytes + Immutable>(
    bytes: &[u8],
    at: usize,
    n: usize,
) -> Result<&[T], ReadError> {
    let needed = n.saturating_mul(size_of::<T>());
    let raw = at
        .checked_add(needed)
        .and_then(|end| bytes.get(at..end))
        .ok_or_else(|| ReadError::short(bytes, at, needed))?;
    <[T]>::ref_from_bytes(raw).map_err(|_| ReadError::Misaligned {
        at,
        align: std::mem::align_of::<T>(),
    })
}

/// Reads values one after the other from a byte slice.
#[derive(Clone, Debug)]
pub(crate) struct LeReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> LeReader<'a> {
    /// A reader at the start of `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        LeReader { bytes, pos: 0 }
    }

    /// A reader at byte `pos` of `bytes`.
    pub(crate) fn at(bytes: &'a [u8], pos: usize) -> Self {
        LeReader { bytes, pos }
    }

    /// Offset of the next byte to read.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], ReadError> {
        let s = self
            .pos
            .checked_add(n)
            .and_then(|end| self.bytes.get(self.pos..end))
            .ok_or_else(|| ReadError::short(self.bytes, self.pos, n))?;
        self.pos += n;
        Ok(s)
    }

    /// The next value of type `T`.
    #[inline]
    pub(crate) fn read<T: LeValue>(&mut self) -> Result<T, ReadError> {
        let v = read_at(self.bytes, self.pos)?;
        self.pos += T::SIZE;
        Ok(v)
    }

    /// True when every byte has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_values_at_offsets() {
        let b = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0xFF];
        assert_eq!(read_at::<u16>(&b, 0), Ok(0x0201));
        assert_eq!(read_at::<u32>(&b, 1), Ok(0x0504_0302));
        assert_eq!(read_at::<u64>(&b, 0), Ok(0x0807_0605_0403_0201));
        assert_eq!(read_at::<u8>(&b, 8), Ok(0xFF));
        assert_eq!(read_at::<i64>(&[0xFF; 8], 0), Ok(-1));
    }

    #[test]
    fn short_reads_name_their_offset() {
        let b = [0u8; 6];
        assert_eq!(
            read_at::<u32>(&b, 4),
            Err(ReadError::Short {
                at: 4,
                needed: 4,
                available: 2
            })
        );
        assert_eq!(read_at::<u64>(&b, 100).unwrap_err().at(), 100);
        assert_eq!(read_at::<u16>(&b, usize::MAX).unwrap_err().at(), usize::MAX);
        let mut r = LeReader::new(&b);
        assert_eq!(r.read::<u32>(), Ok(0));
        assert_eq!(r.pos(), 4);
        let e = r.read::<u32>().unwrap_err();
        assert_eq!(e.to_string(), "4 bytes needed at byte 4, 2 available");
        assert_eq!(r.pos(), 4, "a failed read does not move the reader");
        assert_eq!(r.take(2), Ok(&b[4..6]));
        assert!(r.is_empty());
        assert_eq!(r.take(usize::MAX).unwrap_err().at(), 6);
    }

    #[test]
    fn values_and_put_all_round_trip() {
        let v = [1u64, u64::MAX, 42];
        let mut out = Vec::new();
        put_all(&mut out, v);
        out.push(9); // a partial value is ignored
        assert_eq!(values::<u64>(&out).collect::<Vec<_>>(), v);
        let mut r = LeReader::at(&out, 8);
        assert_eq!(r.read::<u64>(), Ok(u64::MAX));
    }

    #[test]
    fn views_check_bounds_and_alignment() {
        let words = [7u64, 8, 9];
        let bytes: &[u8] = zerocopy::IntoBytes::as_bytes(&words[..]);
        assert_eq!(view::<u64>(bytes, 8, 2), Ok(&words[1..]));
        assert_eq!(view::<u32>(bytes, 4, 0), Ok(&[][..]));
        assert_eq!(
            view::<u64>(bytes, 16, 2),
            Err(ReadError::Short {
                at: 16,
                needed: 16,
                available: 8
            })
        );
        assert_eq!(
            view::<u32>(bytes, 2, 1),
            Err(ReadError::Misaligned { at: 2, align: 4 })
        );
        assert!(view::<u32>(bytes, 0, usize::MAX).is_err());
    }
}
