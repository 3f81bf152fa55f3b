//! Who owned which offsets of a partition: the chain of ownership ranges that every offset
//! commit carries in its metadata string, and the decisions a store takes from it.
//!
//! Each store (one data directory) has a random id. A consumer that takes a partition starts at
//! the group's committed offset `C` and adds `(its id, C)` to the chain it read with that offset
//! (unless the newest entry is already its own). Entry `i` owns `[start_i, start_{i+1})`; the
//! newest owns `[start_n, committed)`. Kafka accepts a commit only from the partition's current
//! owner (stale generations and members are fenced), so the chain says exactly which store's
//! rows count for every committed offset: a store publishes a staged batch only when the chain
//! puts its position in one of the store's own ranges, and retracts it when another owner's
//! range covers it. This is Kafka's follower truncation (KIP-101) applied to consumers. See
//! ARCHITECTURE.md, "Fleet exactly-once", for the crash windows.

use std::fmt::Write;

/// Prefix and version of the metadata string.
const PREFIX: &str = "keplor1:";
/// Entries kept; 64 entries of at most 37 bytes stay under the brokers' 4,096-byte cap.
pub const MAX_ENTRIES: usize = 64;

/// A store's id: 16 hex digits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreId(pub String);

impl StoreId {
    /// Reads the id kept in `dir`, creating it on first use (written atomically).
    pub fn load_or_create(dir: &std::path::Path) -> std::io::Result<StoreId> {
        let path = dir.join("keplor-agent.id");
        match std::fs::read_to_string(&path) {
            Ok(s) if is_id(s.trim()) => return Ok(StoreId(s.trim().to_string())),
            Ok(s) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: not a store id: {s:?}", path.display()),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(dir)?;
        let id = random_id();
        let tmp = dir.join("keplor-agent.id.tmp");
        {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(id.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(StoreId(id))
    }
}

fn is_id(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(now);
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// The partitions this agent's sink holds right now, shared with the HTTP API
/// (`GET /v1/partitions`) so that a new owner can wait until the old one let go.
#[derive(Debug)]
pub struct Held {
    /// This store's id.
    pub store: String,
    partitions: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Held {
    pub fn new(store: &StoreId) -> Held {
        Held {
            store: store.0.clone(),
            partitions: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<String>> {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that the sink took `source` (`topic/partition`).
    pub fn take(&self, source: String) {
        self.lock().insert(source);
    }

    /// Records that the sink let go of `source`.
    pub fn release(&self, source: &str) {
        self.lock().remove(source);
    }

    /// What this agent holds, as `GET /v1/partitions` answers it.
    pub fn holdings(&self) -> Holdings {
        Holdings {
            store: self.store.clone(),
            partitions: self.lock().iter().cloned().collect(),
        }
    }
}

/// One agent's answer to `GET /v1/partitions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holdings {
    pub store: String,
    /// `topic/partition` of every partition its sink holds.
    pub partitions: Vec<String>,
}

/// The ownership chain of one partition, oldest entry first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    /// `(owner, first offset)` per ownership range.
    pub entries: Vec<(String, i64)>,
    /// True when older entries were dropped to stay under the size cap.
    pub trimmed: bool,
}

impl Chain {
    /// Parses a commit's metadata; anything not written by us (empty, another tool's) is an
    /// empty chain.
    pub fn parse(metadata: &str) -> Chain {
        let Some(rest) = metadata.strip_prefix(PREFIX) else {
            return Chain::default();
        };
        let (trimmed, rest) = match rest.strip_prefix('~') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let mut entries = Vec::new();
        for part in rest.split(',').filter(|p| !p.is_empty()) {
            let Some((owner, start)) = part.split_once('@') else {
                return Chain::default();
            };
            match start.parse::<i64>() {
                Ok(s) if is_id(owner) => entries.push((owner.to_string(), s)),
                _ => return Chain::default(),
            }
        }
        Chain { entries, trimmed }
    }

    /// The metadata string.
    pub fn format(&self) -> String {
        let mut s = String::from(PREFIX);
        if self.trimmed {
            s.push('~');
        }
        for (i, (owner, start)) in self.entries.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "{owner}@{start}");
        }
        s
    }

    /// The newest owner.
    pub fn last_owner(&self) -> Option<&str> {
        self.entries.last().map(|(o, _)| o.as_str())
    }

    /// This chain with `me` owning from `start` on.
    pub fn taken_by(&self, me: &StoreId, start: i64) -> Chain {
        let mut c = self.clone();
        if c.last_owner() != Some(me.0.as_str()) {
            c.entries.push((me.0.clone(), start));
        }
        if c.entries.len() > MAX_ENTRIES {
            let cut = c.entries.len() - MAX_ENTRIES;
            c.entries.drain(..cut);
            c.trimmed = true;
        }
        c
    }

    /// The ranges `[start, end)` that `me` owned up to the committed offset.
    fn ranges_of(&self, me: &StoreId, committed: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        for (i, (owner, start)) in self.entries.iter().enumerate() {
            if owner != &me.0 {
                continue;
            }
            let end = self.entries.get(i + 1).map_or(committed, |(_, s)| *s);
            if end > *start {
                out.push((*start, end));
            }
        }
        out
    }
}

/// What to do with a staged batch whose last offset is `position`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Kafka accepted this store's commit past it: count it.
    Publish,
    /// Not accepted yet, and this store owns the partition and the newest range: keep it and
    /// commit it.
    Keep,
    /// Not accepted yet, this store owns the newest range but not the partition now: keep it
    /// invisible and decide later. This store's own last commit may still land: a broker that
    /// takes a dead member's late commit (Tansu 0.6) makes it count after the group moved on.
    /// Once another store records its range, or this store owns the partition again, the
    /// batch is retracted, published or kept.
    Wait,
    /// Another owner's range covers it, or nobody accepted it and another store took the
    /// partition on from the committed offset (it reads the batch again): drop it.
    Retract,
    /// The entries that could tell were trimmed from the chain: keep it invisible and say so.
    Unknown,
}

/// Decides every staged position of one partition (ascending), given the group's committed
/// offset and chain, and whether this store owns the partition now.
pub fn decide(
    positions: &[u64],
    committed: Option<i64>,
    chain: &Chain,
    me: &StoreId,
    owned_now: bool,
) -> Vec<Decision> {
    let committed = committed.unwrap_or(-1);
    let ranges = chain.ranges_of(me, committed);
    let newest_is_mine = chain.last_owner() == Some(me.0.as_str());
    let oldest_start = chain.entries.first().map_or(i64::MAX, |(_, s)| *s);
    let mut out: Vec<Decision> = positions
        .iter()
        .map(|&p| {
            let p = p as i64;
            if ranges.iter().any(|&(s, e)| s <= p && p < e) {
                Decision::Publish
            } else if p >= committed && newest_is_mine {
                if owned_now {
                    Decision::Keep
                } else {
                    Decision::Wait
                }
            } else if chain.trimmed && p < oldest_start {
                Decision::Unknown
            } else {
                Decision::Retract
            }
        })
        .collect();
    // Kept batches are committed from the committed offset on: a retracted one below them
    // leaves a gap, so read the whole tail again instead.
    if out.contains(&Decision::Retract) {
        for d in &mut out {
            if *d == Decision::Keep {
                *d = Decision::Retract;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: char) -> StoreId {
        StoreId(std::iter::repeat_n(c, 16).collect())
    }

    #[test]
    fn metadata_round_trips_and_foreign_metadata_is_empty() {
        let c = Chain::default()
            .taken_by(&id('a'), 0)
            .taken_by(&id('b'), 100);
        assert_eq!(Chain::parse(&c.format()), c);
        assert_eq!(Chain::parse(""), Chain::default());
        assert_eq!(Chain::parse("some tool's note"), Chain::default());
        assert_eq!(Chain::parse("keplor1:zz@1"), Chain::default());
    }

    #[test]
    fn taking_twice_in_a_row_keeps_one_entry_and_the_chain_stays_small() {
        let mut c = Chain::default()
            .taken_by(&id('a'), 0)
            .taken_by(&id('a'), 50);
        assert_eq!(c.entries.len(), 1);
        for i in 0..200 {
            let who = if i % 2 == 0 { id('b') } else { id('c') };
            c = c.taken_by(&who, i * 10);
        }
        assert_eq!(c.entries.len(), MAX_ENTRIES);
        assert!(c.trimmed && c.format().len() < 4096);
        assert_eq!(Chain::parse(&c.format()), c);
    }

    #[test]
    fn a_store_publishes_only_inside_its_own_accepted_ranges() {
        let (a, b) = (id('a'), id('b'));
        // a owned [0, 100), b owned [100, 250), committed 250.
        let chain = Chain::default().taken_by(&a, 0).taken_by(&b, 100);
        let d = decide(&[49, 99, 149], Some(250), &chain, &a, false);
        assert_eq!(d, [Decision::Publish, Decision::Publish, Decision::Retract]);
        // b's tail past the commit waits: b's own late commit may still cover it.
        let d = decide(&[149, 249, 260], Some(250), &chain, &b, false);
        assert_eq!(d, [Decision::Publish, Decision::Publish, Decision::Wait]);
    }

    #[test]
    fn an_unaccepted_tail_is_kept_only_by_the_owner_of_the_newest_range() {
        let a = id('a');
        let chain = Chain::default().taken_by(&a, 0);
        assert_eq!(
            decide(&[99, 120], Some(100), &chain, &a, true),
            [Decision::Publish, Decision::Keep]
        );
        // Not owned now: its commit may still land, so nothing is decided yet.
        assert_eq!(
            decide(&[120], Some(100), &chain, &a, false),
            [Decision::Wait]
        );
        // Nothing committed yet at all.
        assert_eq!(
            decide(&[5], None, &Chain::default(), &a, true),
            [Decision::Retract]
        );
    }

    #[test]
    fn a_late_commit_of_a_dead_member_publishes_the_batch_that_waited() {
        // The kill campaign's failure: this store staged 77,934..=78,355 and sent the commit
        // of 78,356; it died before the answer, and its next run read 77,934 while the commit
        // was still on its way. Retracting then lost the batch once the commit landed.
        let (a, b) = (id('a'), id('b'));
        let chain = Chain::default().taken_by(&a, 0);
        assert_eq!(
            decide(&[78_355], Some(77_934), &chain, &a, false),
            [Decision::Wait]
        );
        // The commit landed: published, owned or not.
        assert_eq!(
            decide(&[78_355], Some(78_356), &chain, &a, false),
            [Decision::Publish]
        );
        // It never landed and another store took the partition on from 77,934: retracted.
        let taken = chain.taken_by(&b, 77_934);
        assert_eq!(
            decide(&[78_355], Some(77_934), &taken, &a, false),
            [Decision::Retract]
        );
        // It never landed and this store has the partition again: kept and committed.
        assert_eq!(
            decide(&[78_355], Some(77_934), &chain, &a, true),
            [Decision::Keep]
        );
    }

    #[test]
    fn a_retracted_batch_below_a_kept_one_retracts_the_tail() {
        let (a, b) = (id('a'), id('b'));
        let chain = Chain::default()
            .taken_by(&a, 0)
            .taken_by(&b, 100)
            .taken_by(&a, 200);
        let d = decide(&[150, 230], Some(200), &chain, &a, true);
        assert_eq!(d, [Decision::Retract, Decision::Retract]);
    }

    #[test]
    fn positions_older_than_a_trimmed_chain_are_unknown() {
        let (a, b) = (id('a'), id('b'));
        let mut chain = Chain::default().taken_by(&b, 500);
        chain.trimmed = true;
        assert_eq!(
            decide(&[10], Some(600), &chain, &a, false),
            [Decision::Unknown]
        );
    }
}
