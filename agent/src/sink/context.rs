//! librdkafka's side of the sink: the consumer context whose callbacks run on the polling
//! thread (inside `poll`): rebalances (handed to `handover.rs`), the results of asynchronous
//! commits, and the statistics that carry each partition's high watermark.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::types::RDKafkaRespErr;

use super::Shared;

/// The consumer's context: rebalance handling and commit results.
#[derive(Debug)]
pub struct AgentContext(pub(super) Arc<Shared>);

impl ClientContext for AgentContext {
    /// librdkafka's statistics (every second): the partitions' high watermarks, for lag and
    /// readiness; kept in the sink's state, mirrored into the gauges.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut seen = Vec::new();
        {
            let mut st = self.0.lock();
            for (topic, t) in &statistics.topics {
                for (p, part) in &t.partitions {
                    if *p < 0 || part.hi_offset < 0 {
                        continue;
                    }
                    if let Some(held) = st.parts.get_mut(&(topic.clone(), *p)) {
                        held.high_watermark = Some(part.hi_offset);
                        seen.push((topic, *p, part.hi_offset));
                    }
                }
            }
        }
        for (topic, p, hw) in seen {
            self.0
                .metrics
                .partition(topic, p, |g| g.high_watermark = Some(hw));
        }
    }
}

impl ConsumerContext for AgentContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.0
                    .metrics
                    .rebalances_assigned
                    .fetch_add(1, Ordering::Relaxed);
                self.assign(consumer, tpl, cooperative)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.0
                    .metrics
                    .rebalances_revoked
                    .fetch_add(1, Ordering::Relaxed);
                self.revoke(consumer, tpl, cooperative)
            }
            other => {
                tracing::error!(error = ?other, "rebalance error; unassigning");
                let _ = consumer.unassign();
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => self.0.mirror_committed(offsets),
            Err(KafkaError::ConsumerCommit(rdkafka::error::RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                tracing::warn!(error = %e, "offset commit failed; retrying");
                self.0.forget_commits(offsets);
            }
        }
    }
}

impl AgentContext {
    /// Takes newly assigned partitions (their start offsets set in `tpl`), then assigns them.
    fn assign(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
        cooperative: bool,
    ) {
        let shared = &self.0;
        shared.on_assign(consumer, tpl);
        shared.lock().assigned = true;
        let r = if cooperative {
            consumer.incremental_assign(tpl)
        } else {
            consumer.assign(tpl)
        };
        if let Err(e) = r {
            tracing::error!(error = %e, "assign failed");
        }
        // Ready, unless a fatal error is already pending.
        let fatal = shared.lock().fatal.is_some();
        shared.ready.store(!fatal, Ordering::Release);
    }

    /// Gives up revoked (or lost) partitions, then unassigns them.
    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList, cooperative: bool) {
        let shared = &self.0;
        let lost = consumer.assignment_lost() || shared.crashed();
        let revoked: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        shared.on_revoke(consumer, &revoked, lost);
        for (t, p) in &revoked {
            shared.metrics.remove_partition(t, *p);
        }
        let r = if cooperative {
            consumer.incremental_unassign(tpl)
        } else {
            consumer.unassign()
        };
        if let Err(e) = r {
            tracing::error!(error = %e, "unassign failed");
        }
    }
}
