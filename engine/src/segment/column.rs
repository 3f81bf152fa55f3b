//! A decoded row column in memory: its values, or, for a column that is zero in every row
//! (a latency a schema does not use, flags no event sets), nothing at all.
//!
//! A column of zeros is viewed as a prefix of a static array of zeros. The array lives in the
//! zero-initialised data of the binary: its pages are never written, so reading them maps the
//! kernel's shared zero page, and it costs no memory however many segments use it.

use super::MAX_SEGMENT_ROWS;

/// A row column: owned values, or `n` zeros.
#[derive(Debug)]
pub(crate) enum Column<T: Zeroed> {
    Values(Vec<T>),
    Zeros(usize),
}

impl<T: Zeroed> Column<T> {
    /// `values`, kept only if some row is not zero.
    pub(crate) fn new(values: Vec<T>) -> Self {
        if values.iter().all(|&v| v == T::ZERO) {
            Column::Zeros(values.len())
        } else {
            Column::Values(values)
        }
    }

    /// Every row's value.
    #[inline]
    pub(crate) fn as_slice(&self) -> &[T] {
        match self {
            Column::Values(v) => v,
            Column::Zeros(n) => &T::zeros()[..*n],
        }
    }

    /// Bytes of heap memory the column holds.
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Column::Values(v) => v.capacity() * std::mem::size_of::<T>(),
            Column::Zeros(_) => 0,
        }
    }
}

/// A value type with a static column of zeros as long as the longest segment.
pub(crate) trait Zeroed: Copy + PartialEq + 'static {
    const ZERO: Self;
    fn zeros() -> &'static [Self];
}

static ZEROS_U32: [u32; MAX_SEGMENT_ROWS] = [0; MAX_SEGMENT_ROWS];
static ZEROS_U16: [u16; MAX_SEGMENT_ROWS] = [0; MAX_SEGMENT_ROWS];

impl Zeroed for u32 {
    const ZERO: Self = 0;
    fn zeros() -> &'static [Self] {
        &ZEROS_U32
    }
}

impl Zeroed for u16 {
    const ZERO: Self = 0;
    fn zeros() -> &'static [Self] {
        &ZEROS_U16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_columns_hold_no_memory_and_read_as_zeros() {
        let zeros = Column::new(vec![0u32; 1000]);
        assert!(matches!(zeros, Column::Zeros(1000)));
        assert_eq!(zeros.heap_bytes(), 0);
        assert_eq!(zeros.as_slice(), &[0u32; 1000][..]);
        let mut v = vec![0u16; 300];
        v[299] = 7;
        let values = Column::new(v.clone());
        assert_eq!(values.as_slice(), &v[..]);
        assert_eq!(values.heap_bytes(), 600);
        let longest = Column::new(vec![0u16; MAX_SEGMENT_ROWS]);
        assert_eq!(longest.as_slice().len(), MAX_SEGMENT_ROWS);
        assert!(Column::<u32>::new(Vec::new()).as_slice().is_empty());
    }
}
