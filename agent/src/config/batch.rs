//! The `[batch]` section: when a partition's batch is appended, how much may wait, and the
//! threads that map messages before they are batched.

use std::time::Duration;

use serde::Serialize;

use super::raw::RawBatch;
use super::{duration, err, ser_duration, size, ConfigError};

/// Batching of each partition's messages before an append.
#[derive(Debug, Clone, Serialize)]
pub struct BatchSettings {
    pub max_events: usize,
    pub max_bytes: u64,
    #[serde(serialize_with = "ser_duration")]
    pub linger: Duration,
    pub max_pending_bytes: u64,
    /// Threads of the sink's mapping pool (`batch.map_threads`): its own rayon pool, so that
    /// queries cannot starve ingestion of threads (nor the other way round).
    pub map_threads: usize,
}

/// The most mapping threads accepted.
const MAX_MAP_THREADS: u64 = 1024;

/// Resolves `[batch]`.
pub(super) fn resolve(b: RawBatch) -> Result<BatchSettings, ConfigError> {
    let batch = BatchSettings {
        max_events: b.max_events.unwrap_or(5_000) as usize,
        max_bytes: size("batch.max_bytes", b.max_bytes, 4 << 20)?,
        linger: duration("batch.linger", b.linger, Duration::from_millis(50))?,
        max_pending_bytes: size("batch.max_pending_bytes", b.max_pending_bytes, 256 << 20)?,
        map_threads: map_threads(b.map_threads)?,
    };
    if batch.max_events == 0 {
        return Err(err("batch.max_events", "must be at least 1"));
    }
    if batch.max_pending_bytes < batch.max_bytes {
        return Err(err(
            "batch.max_pending_bytes",
            format!(
                "batch.max_pending_bytes ({}) is smaller than batch.max_bytes ({}): one batch would never fit",
                batch.max_pending_bytes, batch.max_bytes
            ),
        ));
    }
    Ok(batch)
}

/// `batch.map_threads`: 1 to [`MAX_MAP_THREADS`]; by default one per core.
fn map_threads(n: Option<u64>) -> Result<usize, ConfigError> {
    match n {
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
        Some(n @ 1..=MAX_MAP_THREADS) => Ok(n as usize),
        Some(n) => Err(err(
            "batch.map_threads",
            format!("{n} threads: use 1 to {MAX_MAP_THREADS} (default: one per core)"),
        )),
    }
}
