//! Message intake: a polled message is mapped to an event (on any thread), then taken into its
//! partition's batch in poll order, or handled by the error policy (skipped, produced to the
//! dead-letter topic, or a fatal stop). A registry outage pauses the partition instead.

use std::sync::atomic::Ordering;
use std::time::Instant;

use keplordb::DynEvent;
use rdkafka::message::{BorrowedMessage, Header, Message};
use rdkafka::producer::BaseRecord;

use super::seek_check::FirstMessage;
use super::{Part, Shared, State};
use crate::config::ErrorPolicy;
use crate::mapping::{MapError, Meta};

impl Shared {
    /// Maps one message to an event (pure: runs on any thread).
    pub(super) fn map(&self, msg: &BorrowedMessage<'_>) -> Result<DynEvent, MapError> {
        let meta = Meta {
            topic: msg.topic(),
            partition: msg.partition(),
            offset: msg.offset(),
            timestamp_ms: msg.timestamp().to_millis(),
            key: msg.key(),
            headers: msg.headers(),
        };
        self.mapper.map(msg.payload(), meta)
    }

    /// Takes one mapped message into its partition's batch, or applies the error policy.
    pub(super) fn take(&self, msg: &BorrowedMessage<'_>, mapped: Result<DynEvent, MapError>) {
        self.metrics.consumed.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .bytes_consumed
            .fetch_add(msg.payload_len() as u64, Ordering::Relaxed);
        let fatal = self.take_locked(&mut self.lock(), msg, mapped);
        if let Some(why) = fatal {
            self.fatal(why);
        }
    }

    /// [`Shared::take`] under the state lock; a fatal error is returned, to be recorded once
    /// the lock is released.
    fn take_locked(
        &self,
        st: &mut State,
        msg: &BorrowedMessage<'_>,
        mapped: Result<DynEvent, MapError>,
    ) -> Option<String> {
        let (topic, p, offset) = (msg.topic(), msg.partition(), msg.offset());
        if st.fatal.is_some() {
            // Stopping: nothing after the failure point is taken (it is read again later).
            return None;
        }
        let Some(part) = st
            .parts
            .iter_mut()
            .find(|((t, q), _)| *q == p && t == topic)
            .map(|(_, v)| v)
        else {
            // Not (or no longer) assigned: it will be consumed again by its owner.
            return None;
        };
        if part.retry_at.is_some() || part.rewind_to.is_some() {
            // Paused: fetched before the pause took effect, read again after the resume.
            return None;
        }
        if let FirstMessage::Rewind(to) = part.seek.check(offset, part.next()) {
            // A gap right after a seek: read again from before it (see `seek_check`).
            tracing::info!(
                topic,
                partition = p,
                from = part.next(),
                got = offset,
                rewind_to = to,
                "gap right after a seek; reading again from an earlier offset to check it"
            );
            self.metrics.gap_rewinds.fetch_add(1, Ordering::Relaxed);
            part.rewind_to = Some(to);
            part.retry_at = Some(Instant::now());
            st.to_pause.push((topic.to_string(), p));
            return None;
        }
        if part.last.is_some_and(|l| offset <= l) {
            // A replay of something already taken.
            return None;
        }
        self.note_gap(part.last, msg);
        match mapped {
            Ok(ev) => {
                part.add(ev, msg.payload().map_or(0, <[u8]>::len), offset);
                None
            }
            Err(e @ MapError::Registry(_)) => {
                // Not the message's fault: pause the partition and read it again from here
                // once the registry answers (the batch before it waits too).
                tracing::warn!(topic, partition = p, offset, error = %e, "schema registry unavailable; pausing the partition");
                self.metrics.consumer_error("registry");
                part.retry_at = Some(Instant::now() + self.config.errors.retry_backoff);
                st.to_pause.push((topic.to_string(), p));
                None
            }
            Err(e) => self.reject(part, msg, &e),
        }
    }

    /// Offsets between the last one taken and `msg` that the broker no longer has
    /// (retention) or never will (compaction, transaction markers): nothing to store, but an
    /// operator wants to know.
    fn note_gap(&self, last: Option<i64>, msg: &BorrowedMessage<'_>) {
        let offset = msg.offset();
        let Some(l) = last.filter(|&l| offset > l + 1) else {
            return;
        };
        self.metrics
            .offsets_skipped
            .fetch_add((offset - l - 1) as u64, Ordering::Relaxed);
        tracing::warn!(
            topic = msg.topic(),
            partition = msg.partition(),
            from = l + 1,
            to = offset - 1,
            "offsets skipped by the broker"
        );
    }

    /// Applies `errors.policy` to a message that failed to map; a fatal error is returned.
    fn reject(&self, part: &mut Part, msg: &BorrowedMessage<'_>, e: &MapError) -> Option<String> {
        let (topic, p, offset) = (msg.topic(), msg.partition(), msg.offset());
        self.metrics.rejected(e.reason());
        match &self.config.errors.policy {
            ErrorPolicy::Skip => {
                tracing::warn!(topic, partition = p, offset, error = %e, "message skipped");
                part.pass(offset);
                None
            }
            ErrorPolicy::Dlq { topic: dlq } => match self.to_dlq(dlq, msg, e) {
                Ok(()) => {
                    part.dlq_unflushed = true;
                    part.pass(offset);
                    None
                }
                Err(err) => Some(format!(
                    "cannot produce {topic}/{p}@{offset} to the DLQ {dlq}: {err}"
                )),
            },
            ErrorPolicy::Stop => Some(format!(
                "poison message at {topic}/{p}@{offset}: {e} (errors.policy = \"stop\")"
            )),
        }
    }

    /// Produces a poison message to the dead-letter topic with headers naming the error and
    /// where the message came from.
    fn to_dlq(&self, dlq: &str, msg: &BorrowedMessage<'_>, e: &MapError) -> Result<(), String> {
        let producer = self.dlq.as_ref().ok_or("no DLQ producer")?;
        let mut headers = msg.headers().map(|h| h.detach()).unwrap_or_default();
        let offset = msg.offset().to_string();
        let partition = msg.partition().to_string();
        let error = e.to_string();
        for (key, value) in [
            ("keplor.error", error.as_str()),
            ("keplor.error.reason", e.reason()),
            ("keplor.source.topic", msg.topic()),
            ("keplor.source.partition", partition.as_str()),
            ("keplor.source.offset", offset.as_str()),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(dlq).headers(headers);
        if let Some(k) = msg.key() {
            rec = rec.key(k);
        }
        if let Some(pl) = msg.payload() {
            rec = rec.payload(pl);
        }
        producer.send(rec).map_err(|(e, _)| e.to_string())?;
        self.metrics.dlq_produced.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
