//! Section Ids (9.7.10): the id of every row, with an open-addressing hash index from id to
//! rows.
//!
//! ```text
//! 0           u32       N
//! 4           u32       T = hash table size (a power of two >= N)
//! 8           u32[N]    ends: end of id r in the byte area
//! 8 + 4N      u32[T]    slots: 0 (empty) or row + 1
//! 8 + 4N + 4T ...       id bytes, in row order
//! ```

use super::id_blocks::IdStore;
use super::{first_bad, SectionError};
#[cfg(test)]
use crate::hash::hash64;
use crate::le;
use crate::segment::Section;

/// Offset of the ends array.
const ENDS_AT: usize = 8;

/// The parsed layout of the Ids section.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct IdIndex {
    base: usize,
    rows: usize,
    table_size: usize,
}

impl IdIndex {
    fn ends_at(&self) -> usize {
        self.base + ENDS_AT
    }
    fn table_at(&self) -> usize {
        self.ends_at() + 4 * self.rows
    }
    fn bytes_at(&self) -> usize {
        self.table_at() + 4 * self.table_size
    }

    #[cfg(test)]
    /// Appends the ids (one per row, in row order) and their hash index.
    pub(crate) fn encode<'a>(ids: impl ExactSizeIterator<Item = &'a str>, out: &mut Vec<u8>) {
        let n = ids.len();
        let table_size = (n * 2).max(16).next_power_of_two();
        let mask = table_size - 1;
        let mut table = vec![0u32; table_size];
        let mut id_bytes = Vec::new();
        let mut ends = Vec::with_capacity(n);
        for (row, id) in ids.enumerate() {
            id_bytes.extend_from_slice(id.as_bytes());
            ends.push(id_bytes.len() as u32);
            let mut slot = hash64(id.as_bytes()) as usize & mask;
            while table[slot] != 0 {
                slot = (slot + 1) & mask;
            }
            table[slot] = row as u32 + 1;
        }
        out.reserve(ENDS_AT + 4 * (n + table_size) + id_bytes.len());
        le::put_all(out, [n as u32, table_size as u32]);
        le::put_all(out, ends);
        le::put_all(out, table);
        out.extend_from_slice(&id_bytes);
    }

    /// Parses the section of a segment of `rows` rows: its row count equals `rows`, the table
    /// size is a power of two `>= rows`, ends and table are inside the section, ends never
    /// decrease and the last one is the byte area's length, every slot is `<= rows`.
    pub(crate) fn parse(bytes: &[u8], rows: usize) -> Result<IdIndex, SectionError> {
        let err = |at, reason: String| SectionError::new(Section::Ids, at, reason);
        let read = |at, what| {
            le::read_at::<u32>(bytes, at).map_err(|e| SectionError::read(Section::Ids, what, e))
        };
        let count = read(0, "row count")? as usize;
        let table_size = read(4, "table size")? as usize;
        if count != rows {
            return Err(err(0, format!("{count} ids, the segment has {rows} rows")));
        }
        if !table_size.is_power_of_two() || table_size < rows {
            return Err(err(
                4,
                format!("table of {table_size} slots for {rows} rows"),
            ));
        }
        let index = IdIndex {
            base: 0,
            rows,
            table_size,
        };
        let ends = le::view::<u32>(bytes, ENDS_AT, rows)
            .map_err(|e| SectionError::read(Section::Ids, "ends", e))?;
        let table = le::view::<u32>(bytes, index.table_at(), table_size)
            .map_err(|e| SectionError::read(Section::Ids, "hash table", e))?;
        let bytes_len = bytes.len().saturating_sub(index.bytes_at());
        if let Some(r) = first_bad(ends.windows(2), |w| w[0] > w[1]) {
            return Err(err(
                ENDS_AT + 4 * (r + 1),
                format!("end of id {} goes back", r + 1),
            ));
        }
        if let Some(&last) = ends.last().filter(|&&e| e as usize != bytes_len) {
            return Err(err(
                ENDS_AT + 4 * (rows - 1),
                format!("ids end at {last}, the byte area has {bytes_len} bytes"),
            ));
        }
        if let Some(s) = first_bad(table.iter(), |&s| s as usize > rows) {
            return Err(err(
                index.table_at() + 4 * s,
                format!("slot {s} holds row {} of {rows}", table[s] as i64 - 1),
            ));
        }
        Ok(index)
    }

    /// Checks that rows of one timestamp (`ts`, the Ts column) are in id order (FORMAT.md 9.1),
    /// comparing the ids as [`IdIndex::id`] reads them: pages of newest events and their cursors
    /// rely on that order. Made by the reader, which has both sections; `bytes` as for `id`.
    pub(crate) fn check_order(&self, bytes: &[u8], ts: &[i64]) -> Result<(), SectionError> {
        let pairs = 0..ts.len().saturating_sub(1);
        let back = |r: usize| ts[r] == ts[r + 1] && self.id(bytes, r) > self.id(bytes, r + 1);
        match first_bad(pairs, back) {
            Some(r) => Err(SectionError::new(
                Section::Ids,
                ENDS_AT + 4 * (r + 1),
                format!(
                    "row {} has the time of row {r} but its id sorts before row {r}'s",
                    r + 1
                ),
            )),
            None => Ok(()),
        }
    }

    /// A copy of the ids of the section `bytes` (as for `id`), for the reader's [`IdStore`].
    pub(crate) fn copy_to_store(&self, bytes: &[u8]) -> IdStore {
        let ends: &[u32] = le::view(bytes, self.ends_at(), self.rows).unwrap_or(&[]);
        let len = ends.last().copied().unwrap_or(0) as usize;
        let at = self.bytes_at();
        IdStore::new(
            ends.to_vec(),
            bytes.get(at..at + len).unwrap_or(&[]).to_vec(),
        )
    }

    /// The id of `row` in the section `bytes`; "" if it is not UTF-8.
    pub(crate) fn id<'a>(&self, bytes: &'a [u8], row: usize) -> &'a str {
        let ends: &[u32] = le::view(bytes, self.ends_at(), self.rows).unwrap_or(&[]);
        let start = match row.checked_sub(1) {
            Some(prev) => ends.get(prev).copied().unwrap_or(0) as usize,
            None => 0,
        };
        let end = ends.get(row).copied().unwrap_or(0) as usize;
        let at = self.bytes_at();
        let id = bytes.get(at + start..at + end).unwrap_or(&[]);
        std::str::from_utf8(id).unwrap_or("")
    }

    #[cfg(test)]
    /// Rows whose id is `id`, via the hash index.
    pub(crate) fn rows_with(&self, bytes: &[u8], id: &str) -> Vec<usize> {
        let table: &[u32] = le::view(bytes, self.table_at(), self.table_size).unwrap_or(&[]);
        let mask = self.table_size.wrapping_sub(1);
        let mut slot = hash64(id.as_bytes()) as usize & mask;
        let mut out = Vec::new();
        for _ in 0..table.len() {
            match table.get(slot) {
                Some(&0) | None => break,
                Some(&r) => {
                    let row = r as usize - 1;
                    if self.id(bytes, row) == id {
                        out.push(row);
                    }
                }
            }
            slot = (slot + 1) & mask;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::section::testing::{assert_fault, with_u32, Aligned};

    const IDS: [&str; 5] = ["b", "", "a", "b", "é€"];

    fn encoded() -> Vec<u8> {
        let mut b = Vec::new();
        IdIndex::encode(IDS.into_iter(), &mut b);
        b
    }

    #[test]
    fn round_trip() {
        let a = Aligned::new(&encoded());
        let ix = IdIndex::parse(a.bytes(), 5).unwrap();
        for (row, id) in IDS.iter().enumerate() {
            assert_eq!(ix.id(a.bytes(), row), *id);
        }
        assert_eq!(ix.id(a.bytes(), 5), "");
        assert_eq!(ix.rows_with(a.bytes(), "b"), [0, 3]);
        assert_eq!(ix.rows_with(a.bytes(), "é€"), [4]);
        assert!(ix.rows_with(a.bytes(), "c").is_empty());
    }

    #[test]
    fn faults_name_the_field_or_the_entry() {
        let b = encoded();
        // Layout: N = 5, T = 16; ends at 8, table at 28, bytes at 92 (8 bytes).
        let check = |bytes: &[u8], rows: usize, at: usize, reason: &str| {
            let a = Aligned::new(bytes);
            assert_fault(IdIndex::parse(a.bytes(), rows), Section::Ids, at, reason);
        };
        check(&b[..6], 5, 4, "table size");
        check(&b, 4, 0, "5 ids, the segment has 4 rows");
        check(&with_u32(&b, 4, 12), 5, 4, "table of 12 slots");
        check(&with_u32(&b, 4, 4), 5, 4, "table of 4 slots for 5 rows");
        check(&b[..20], 5, 8, "ends: 20 bytes needed");
        check(&b[..90], 5, 28, "hash table: 64 bytes needed");
        check(&with_u32(&b, 16, 0), 5, 16, "end of id 2 goes back");
        check(&b[..97], 5, 24, "ids end at 8, the byte area has 5 bytes");
        check(
            &with_u32(&b, 28 + 4 * 3, 6),
            5,
            40,
            "slot 3 holds row 5 of 5",
        );
    }

    #[test]
    fn rows_of_one_time_are_in_id_order() {
        let a = Aligned::new(&encoded());
        let ix = IdIndex::parse(a.bytes(), 5).unwrap();
        // Ids "b", "", "a", "b", "é€": in order wherever the times leave only ties by id.
        assert!(ix.check_order(a.bytes(), &[1, 2, 2, 2, 3]).is_ok());
        assert!(ix.check_order(a.bytes(), &[7, 8, 9, 9, 9]).is_ok());
        // "b" then "" at one time: the second row is named, at its end in `ends`.
        assert_fault(
            ix.check_order(a.bytes(), &[5, 5, 6, 7, 8]),
            Section::Ids,
            12,
            "row 1 has the time of row 0",
        );
        // Every row at one time: the first pair out of order is named.
        assert_fault(
            ix.check_order(a.bytes(), &[4; 5]),
            Section::Ids,
            12,
            "row 1",
        );
    }
}
