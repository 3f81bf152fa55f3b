//! The `[batch]` section: when a partition's batch is appended, and how much may wait.

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
}

/// Resolves `[batch]`.
pub(super) fn resolve(b: RawBatch) -> Result<BatchSettings, ConfigError> {
    let batch = BatchSettings {
        max_events: b.max_events.unwrap_or(5_000) as usize,
        max_bytes: size("batch.max_bytes", b.max_bytes, 4 << 20)?,
        linger: duration("batch.linger", b.linger, Duration::from_millis(50))?,
        max_pending_bytes: size("batch.max_pending_bytes", b.max_pending_bytes, 256 << 20)?,
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
