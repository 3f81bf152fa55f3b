//! What bounds the work and the size of one query: [`Caps`] on its answer, [`Cancel`] to stop
//! it between engine calls.
//!
//! The engine has no way to interrupt a call, so a query that must be stoppable is made of
//! several calls with a check between them: an events page is fetched in chunks (the first
//! small, the next sized from the largest event seen so far to fit the byte budget), a rollups
//! answer in day windows. An aggregate, a point look-up, or one chunk or window is one call and
//! runs to its end once started.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::QueryError;

/// Limits on one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// The largest `limit` of an events page (`http.max_limit`).
    pub max_limit: usize,
    /// The bytes of the events' JSON in one page (`http.max_page_bytes`): a page stops before
    /// the event that would pass it (a page holds at least one event) and gives `next_cursor`.
    pub max_page_bytes: usize,
    /// The buckets of one rollups answer (`http.max_rollup_buckets`): more is an error that
    /// asks for a narrower request.
    pub max_rollup_buckets: usize,
}

impl Caps {
    /// No limit at all (the CLI reading a data directory).
    pub const NONE: Caps = Caps {
        max_limit: usize::MAX,
        max_page_bytes: usize::MAX,
        max_rollup_buckets: usize::MAX,
    };
}

/// Asks a running query to stop at its next check: set when its HTTP request timed out or was
/// dropped. Clones share the flag.
#[derive(Clone, Default)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    /// Tests: runs at every check but the first (so between two engine calls).
    #[cfg(test)]
    pub(crate) between_calls: Option<Arc<dyn Fn() + Send + Sync>>,
    #[cfg(test)]
    checks: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Cancel").field(&self.is_cancelled()).finish()
    }
}

impl Cancel {
    /// Stops the query at its next check.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Release);
    }

    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// `Err(QueryError::Cancelled)` once cancelled; called before each engine call.
    pub(super) fn check(&self) -> Result<(), QueryError> {
        #[cfg(test)]
        if self.checks.fetch_add(1, Ordering::Relaxed) > 0 {
            if let Some(f) = &self.between_calls {
                f();
            }
        }
        if self.is_cancelled() {
            return Err(QueryError::Cancelled);
        }
        Ok(())
    }
}

/// The length of `v`'s JSON, without building it.
pub fn json_len(v: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing to a counter cannot fail, nor can serializing these plain structs.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}
