//! What one query reads, and the pool its parallel work runs on.

use std::sync::{Arc, OnceLock};

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::error::{DbError, Result};
use crate::schema::SchemaDef;
use crate::segment::reader::SegmentData;
use crate::segment::SegmentCache;
use crate::view::{SegRef, View};

/// One consistent view of the store (segments, memtables, rollups, taken once per query), with
/// the schema, the segment cache and the query pool. Every query is a function of it.
pub(crate) struct Snapshot<'e> {
    pub view: Arc<View>,
    pub schema: &'e SchemaDef,
    pub cache: &'e SegmentCache,
    pub pool: &'e QueryPool,
}

impl Snapshot<'_> {
    /// The decoded columns of a segment of the view.
    pub(crate) fn data(&self, s: &SegRef) -> Result<Arc<SegmentData>> {
        s.seg.data(self.schema, self.cache)
    }
}

/// The threads that run a query's parallel work (segments of an aggregate, waves of a
/// newest-first page): the pool the user gave (`EngineConfig::with_query_pool`), or one the
/// engine builds on the first query that needs it, with `EngineConfig::query_threads` threads.
/// Never rayon's global pool, which an embedding program uses for its own work.
#[derive(Debug)]
pub(crate) struct QueryPool {
    given: Option<Arc<ThreadPool>>,
    threads: usize,
    built: OnceLock<ThreadPool>,
}

impl QueryPool {
    /// `given`, or a pool of `threads` threads built on first use (0: one per core).
    pub(crate) fn new(given: Option<Arc<ThreadPool>>, threads: usize) -> QueryPool {
        QueryPool {
            given,
            threads,
            built: OnceLock::new(),
        }
    }

    fn pool(&self) -> Result<&ThreadPool> {
        if let Some(p) = &self.given {
            return Ok(p);
        }
        if let Some(p) = self.built.get() {
            return Ok(p);
        }
        let pool = ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .thread_name(|i| format!("keplordb-query-{i}"))
            .build()
            .map_err(|e| DbError::io("start the query pool", "", std::io::Error::other(e)))?;
        Ok(self.built.get_or_init(|| pool))
    }

    /// Runs `f` on the pool: rayon's parallel iterators inside it use the pool's threads.
    pub(crate) fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R> {
        Ok(self.pool()?.install(f))
    }

    /// Threads of the pool (what one wave of parallel work should keep busy).
    pub(crate) fn threads(&self) -> usize {
        match (&self.given, self.built.get()) {
            (Some(p), _) => p.current_num_threads(),
            (None, Some(p)) => p.current_num_threads(),
            (None, None) if self.threads > 0 => self.threads,
            (None, None) => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_runs_work_on_its_own_threads_built_once() {
        let pool = QueryPool::new(None, 2);
        assert_eq!(pool.threads(), 2);
        let name = pool
            .install(|| std::thread::current().name().map(str::to_string))
            .unwrap();
        assert!(name.unwrap().starts_with("keplordb-query-"));
        let first: *const ThreadPool = pool.pool().unwrap();
        let again: *const ThreadPool = pool.pool().unwrap();
        assert_eq!(first, again);
        let sum: u64 = pool
            .install(|| {
                use rayon::prelude::*;
                (0..1000u64).into_par_iter().sum()
            })
            .unwrap();
        assert_eq!(sum, 499_500);
    }

    #[test]
    fn a_given_pool_is_used_as_is() {
        let given = Arc::new(
            ThreadPoolBuilder::new()
                .num_threads(3)
                .thread_name(|i| format!("mine-{i}"))
                .build()
                .unwrap(),
        );
        let pool = QueryPool::new(Some(given), 0);
        assert_eq!(pool.threads(), 3);
        let name = pool
            .install(|| std::thread::current().name().map(str::to_string))
            .unwrap()
            .unwrap();
        assert!(name.starts_with("mine-"), "{name}");
        assert!(pool.built.get().is_none());
    }
}
