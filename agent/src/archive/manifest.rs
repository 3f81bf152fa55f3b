//! The archive's progress: which sealed segments are archived and as which files, kept as one
//! JSON file that is rewritten whole and atomically after each segment (the store's `put`).
//!
//! A segment is keyed by `(generation, part)`, which names the events it was sealed with and
//! survives compaction (`keplordb::SegmentInfo`): a compacted segment is not archived twice.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The manifest format's version.
pub const MANIFEST_VERSION: u32 = 1;

/// One archived segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub generation: u64,
    pub part: u16,
    /// Its files (names relative to the archive's root), one per UTC day.
    pub files: Vec<String>,
    /// Events written; `None` for files adopted after a crash whose segment was gone.
    pub events: Option<u64>,
    pub bytes: u64,
}

/// Every archived segment of one store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    /// The agent's store id, which prefixes its file names.
    pub store: String,
    pub segments: Vec<Entry>,
    #[serde(skip)]
    keys: BTreeSet<(u64, u16)>,
}

impl Manifest {
    /// An empty manifest of `store`.
    pub fn new(store: &str) -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            store: store.to_string(),
            segments: Vec::new(),
            keys: BTreeSet::new(),
        }
    }

    /// Reads a manifest written by [`Manifest::to_bytes`] for `store`.
    pub fn parse(bytes: &[u8], store: &str) -> Result<Manifest, String> {
        let mut m: Manifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if m.version != MANIFEST_VERSION {
            return Err(format!(
                "version {} (this agent reads {MANIFEST_VERSION})",
                m.version
            ));
        }
        if m.store != store {
            return Err(format!("written by store {:?}, not {store:?}", m.store));
        }
        m.keys = m.segments.iter().map(|e| (e.generation, e.part)).collect();
        Ok(m)
    }

    /// The manifest as it is stored.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain structs of strings and integers cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// True once the segment `(generation, part)` is archived.
    pub fn contains(&self, generation: u64, part: u16) -> bool {
        self.keys.contains(&(generation, part))
    }

    /// Records an archived segment (replacing an earlier record of it).
    pub fn add(&mut self, entry: Entry) {
        let key = (entry.generation, entry.part);
        self.segments.retain(|e| (e.generation, e.part) != key);
        self.segments.push(entry);
        self.keys.insert(key);
    }

    /// The events the files of segment `(generation, part)` hold: `None` when it is not
    /// archived, `Some(None)` when the count is unknown (files adopted after a crash).
    pub fn events(&self, generation: u64, part: u16) -> Option<Option<u64>> {
        self.entry(generation, part).map(|e| e.events)
    }

    /// The files of segment `(generation, part)`, none when it is not archived.
    pub fn files_of(&self, generation: u64, part: u16) -> impl Iterator<Item = &str> {
        self.entry(generation, part)
            .into_iter()
            .flat_map(|e| e.files.iter().map(String::as_str))
    }

    fn entry(&self, generation: u64, part: u16) -> Option<&Entry> {
        if !self.contains(generation, part) {
            return None;
        }
        self.segments
            .iter()
            .find(|e| (e.generation, e.part) == (generation, part))
    }

    /// Every archived segment with the events its files hold.
    pub fn archived(&self) -> BTreeMap<(u64, u16), Option<u64>> {
        self.segments
            .iter()
            .map(|e| ((e.generation, e.part), e.events))
            .collect()
    }

    /// Every file the manifest lists.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.segments
            .iter()
            .flat_map(|e| e.files.iter().map(String::as_str))
    }
}
