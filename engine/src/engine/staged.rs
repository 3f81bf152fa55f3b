//! Staged appends: durable batches that queries see only once their source publishes them.
//! The storage side is `crate::staged`; this is the public API over the shards.

use std::collections::BTreeMap;

use super::{AppendTicket, DynEngine, FRAME_BUF};
use crate::error::{DbError, Result};
use crate::event::Row;
use crate::shard::Shard;
use crate::wal::frame::{encode_events, FrameBuf, FrameKind};

impl DynEngine {
    /// Appends a batch to `shard` as a staged batch: written to the WAL with its checkpoint
    /// (durable once `is_durable(&ticket)`, or after `wait_durable`), but invisible to queries
    /// and absent from [`durable_checkpoints`](Self::durable_checkpoints) until
    /// [`publish_staged`](Self::publish_staged) covers its position. A batch that
    /// [`retract_staged`](Self::retract_staged) drops is never seen.
    ///
    /// Staged batches survive rotation, crashes and reopening until one of the two decisions
    /// is made; [`staged_positions`](Self::staged_positions) lists them. This is how a sink
    /// makes a batch durable before an external log accepts its position, and shows it only
    /// after: the decisions are idempotent, so after a crash it asks the log and decides again.
    pub fn append_staged_to<R: Row>(
        &self,
        shard: usize,
        rows: &[R],
        checkpoint: super::SourceCheckpoint<'_>,
    ) -> Result<AppendTicket> {
        self.writable("append")?;
        let shard = self.shards.get(shard).ok_or(DbError::ShardOutOfRange {
            shard,
            shards: self.shards.len(),
        })?;
        let buf = FRAME_BUF.with(|b| std::mem::take(&mut *b.borrow_mut()));
        let mut frame = FrameBuf::with_buffer(buf, FrameKind::Staged);
        let result = (|| {
            encode_events(
                &mut frame,
                &self.schema,
                rows,
                Some((checkpoint.source, checkpoint.position)),
                &self.ids,
            )?;
            let bytes = frame.finish()?;
            let written = {
                let mut st = shard.state();
                shard.write_staged(&mut st, bytes, self.limits, false)?
            };
            self.counters
                .frames
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if written.need_sync {
                self.sync_shard(shard, written.lsn)?;
            }
            Ok(AppendTicket {
                shard: shard.index,
                lsn: written.lsn,
            })
        })();
        let mut buf = frame.into_buffer();
        if buf.capacity() <= 4 << 20 {
            buf.clear();
            FRAME_BUF.with(|b| *b.borrow_mut() = buf);
        }
        result
    }

    /// Makes the staged batches of `source` whose position is at most `up_to` visible, in
    /// position order, and their checkpoints count (once the decision is durable: it is
    /// written like an append, fsynced with the next sync). Returns how many batches were
    /// published; publishing what is already published is a no-op.
    pub fn publish_staged(&self, source: &str, up_to: u64) -> Result<usize> {
        self.writable("publish_staged")?;
        let mut total = 0;
        for shard in &self.shards {
            total += self.publish_on(shard, source, up_to)?;
        }
        Ok(total)
    }

    fn publish_on(&self, shard: &Shard, source: &str, up_to: u64) -> Result<usize> {
        let (n, written) = {
            let mut st = shard.state();
            if self.tombstones.is_empty() {
                shard.publish(&mut st, source, up_to, &self.schema, self.limits, &|_| {
                    false
                })?
            } else {
                let dead = self.tombstones.read();
                shard.publish(&mut st, source, up_to, &self.schema, self.limits, &|id| {
                    dead.contains(id)
                })?
            }
        };
        if let Some(w) = written {
            self.counters
                .frames
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if w.need_sync {
                self.sync_shard(shard, w.lsn)?;
            }
            if w.need_rotate {
                if let Err(e) = self.rotate(shard, false) {
                    self.counters
                        .rotation_failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::error!(shard = shard.index, error = %e, "rotation failed; will retry");
                }
            }
        }
        Ok(n)
    }

    /// Drops the staged batches of `source` whose position is at least `from`. Returns how
    /// many were dropped. Published batches are never touched.
    pub fn retract_staged(&self, source: &str, from: u64) -> Result<usize> {
        self.writable("retract_staged")?;
        let mut total = 0;
        for shard in &self.shards {
            let mut st = shard.state();
            total += shard.retract(&mut st, source, from)?;
        }
        Ok(total)
    }

    /// The positions of the staged batches still pending, per source, ascending (also after a
    /// read-only open, which decides nothing).
    pub fn staged_positions(&self) -> BTreeMap<String, Vec<u64>> {
        let mut out = BTreeMap::new();
        self.staged_read_only.positions_into(&mut out);
        for s in &self.shards {
            s.state().staged.positions_into(&mut out);
        }
        out
    }
}
