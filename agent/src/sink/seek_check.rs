//! The first message after a seek, checked before a gap in front of it is believed.
//!
//! A consumer that seeks to offset `s` expects the broker's answer to start at `s`, or at the
//! next offset the log still holds: retention, compaction and transaction markers leave gaps
//! that are the log's own. A broker may also answer from the next *batch* whose base offset is
//! at or past `s`, leaving out the rest of the batch that holds `s`. Tansu 0.6 does (its fetch
//! keeps only the stored batches whose base offset is at or past the one asked for), and the
//! agent seeks into the middle of a producer batch whenever its last durable offset ended inside
//! one. Taking such an answer would lose the records left out, silently.
//!
//! So a gap right after a seek is not believed. The partition is rewound to an earlier offset
//! (1, 2, 4... before the next one it needs, never below the log's start) until the broker
//! answers with a record the store already has. From there the broker's answer is one
//! contiguous run of batches, and a gap inside it is the log's own. Rewinding costs one fetch
//! per step and happens only at a gap right after a seek (a resume at a transaction marker, or
//! at a compacted offset, takes one step); the records read again are dropped by offset.

/// What to do with the first message after a seek.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FirstMessage {
    /// Take it (or drop it as a replay): the broker's answer starts where it should.
    Take,
    /// Drop it and everything after it, and read again from this offset.
    Rewind(i64),
}

/// Per partition: the seek whose first message has not come yet, and the rewinding under way.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct SeekCheck {
    /// The offset of the last seek, until its first message comes.
    pending: Option<i64>,
    /// How far before the next needed offset the last rewind went (0: not rewinding).
    back: i64,
    /// The lowest offset a rewind may go to: the log's start, as read for the last seek.
    floor: i64,
}

impl SeekCheck {
    /// Records a seek to `at`; `floor` is the log's start (the lowest offset a rewind may go
    /// to), or `at` itself when it is not known (a gap after this seek is then believed).
    pub(super) fn sought(&mut self, at: i64, floor: i64) {
        self.pending = Some(at);
        self.floor = floor.min(at);
    }

    /// Checks the message at `offset`, `next` being the next offset the partition needs.
    pub(super) fn check(&mut self, offset: i64, next: i64) -> FirstMessage {
        let Some(at) = self.pending.take() else {
            return FirstMessage::Take;
        };
        if offset <= next || at <= self.floor {
            // Contiguous (or a replay of what the store has), or nothing lies below the seek:
            // from here on the broker's answer is one run.
            self.back = 0;
            return FirstMessage::Take;
        }
        self.back = (self.back * 2).max(1);
        FirstMessage::Rewind((next - self.back).max(self.floor))
    }
}

#[cfg(test)]
mod tests {
    use super::{FirstMessage, SeekCheck};

    #[test]
    fn contiguous_answers_and_messages_after_the_first_are_taken() {
        let mut c = SeekCheck::default();
        c.sought(100, 0);
        assert_eq!(c.check(100, 100), FirstMessage::Take);
        // Only the first message after a seek is checked: later gaps are the log's own.
        assert_eq!(c.check(105, 101), FirstMessage::Take);
        c.sought(90, 0);
        assert_eq!(c.check(90, 101), FirstMessage::Take, "a replay");
    }

    #[test]
    fn a_gap_after_a_seek_rewinds_further_each_time_until_a_known_record_answers() {
        let mut c = SeekCheck::default();
        c.sought(100, 0);
        assert_eq!(c.check(120, 100), FirstMessage::Rewind(99));
        c.sought(99, 0);
        assert_eq!(c.check(120, 100), FirstMessage::Rewind(98));
        c.sought(98, 0);
        assert_eq!(c.check(120, 100), FirstMessage::Rewind(96));
        c.sought(96, 0);
        assert_eq!(c.check(120, 100), FirstMessage::Rewind(92));
        c.sought(92, 0);
        // The broker now answers from before the next offset: its run is believed.
        assert_eq!(c.check(95, 100), FirstMessage::Take);
        assert_eq!(c.check(120, 100), FirstMessage::Take);
    }

    #[test]
    fn rewinding_stops_at_the_log_start_and_then_believes_the_gap() {
        let mut c = SeekCheck::default();
        c.sought(10, 7);
        assert_eq!(c.check(15, 10), FirstMessage::Rewind(9));
        c.sought(9, 7);
        assert_eq!(c.check(15, 10), FirstMessage::Rewind(8));
        c.sought(8, 7);
        assert_eq!(
            c.check(15, 10),
            FirstMessage::Rewind(7),
            "not below the log start"
        );
        c.sought(7, 7);
        assert_eq!(
            c.check(15, 10),
            FirstMessage::Take,
            "retention: the gap is real"
        );
        // Nothing below offset 0, or an unknown log start: the gap is believed at once.
        c.sought(0, 0);
        assert_eq!(c.check(3, 0), FirstMessage::Take);
        c.sought(50, 50);
        assert_eq!(c.check(60, 50), FirstMessage::Take);
    }
}
