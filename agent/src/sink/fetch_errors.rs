//! Fetched batches that cannot be used: a corrupt or undecodable batch, an unsupported codec, a
//! broker error on a fetch. Each is counted (`keplor_consumer_errors_total{kind}`) and logged,
//! one warning per kind at first and then at most one per [`LOG_EVERY`] with the count since,
//! so that librdkafka fetching the same bad batch again and again neither floods the log nor
//! goes silent.
//!
//! librdkafka's consume error carries the partition and offset, but rdkafka's
//! `KafkaError::MessageConsumption` keeps only the code. The partition that such a batch keeps
//! from progressing is named with its offset when it becomes stuck (`errors.stuck_after`,
//! `Part::check_stuck`), together with the last consumer error seen.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;

use super::Sink;

/// The shortest time between two warnings of one kind.
pub(super) const LOG_EVERY: Duration = Duration::from_secs(10);

/// What was logged of each kind of consumer error.
#[derive(Debug, Default)]
pub(super) struct FetchErrors {
    /// Per kind: when it was last logged, and how many came since.
    logged: BTreeMap<String, (Instant, u64)>,
    /// The kind of the last one, for the stuck warning.
    pub(super) last: Option<String>,
}

impl FetchErrors {
    /// Notes one error of `kind` at `now`; `Some(n)` when it is to be logged, `n` being how
    /// many of its kind came since the last warning (this one included).
    fn note(&mut self, kind: &str, now: Instant) -> Option<u64> {
        self.last = Some(kind.to_string());
        match self.logged.get_mut(kind) {
            Some((at, n)) if now.duration_since(*at) < LOG_EVERY => {
                *n += 1;
                None
            }
            Some((at, n)) => {
                let repeated = *n + 1;
                (*at, *n) = (now, 0);
                Some(repeated)
            }
            None => {
                self.logged.insert(kind.to_string(), (now, 0));
                Some(1)
            }
        }
    }
}

impl Sink {
    /// Counts and (rate-limited) logs a consumer error.
    pub(super) fn fetch_error(&self, e: &KafkaError) {
        let kind = consumer_error_kind(e);
        self.shared.metrics.consumer_error(&kind);
        let log = self.shared.lock().fetch_errors.note(&kind, Instant::now());
        if let Some(repeated) = log {
            tracing::warn!(
                error = %e,
                kind,
                repeated,
                "consumer error: a fetched batch could not be used (a partition it keeps from \
                 progressing is named once stuck, errors.stuck_after)"
            );
        }
    }
}

/// A bounded label for a consumer error.
fn consumer_error_kind(e: &KafkaError) -> String {
    match e {
        KafkaError::MessageConsumption(code) | KafkaError::MessageConsumptionFatal(code) => {
            format!("{code:?}").to_ascii_lowercase()
        }
        _ => "client".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_logged_at_once_then_at_most_every_ten_seconds_with_its_count() {
        let mut f = FetchErrors::default();
        let t0 = Instant::now();
        assert_eq!(f.note("badcompression", t0), Some(1));
        for s in 1..10 {
            assert_eq!(f.note("badcompression", t0 + Duration::from_secs(s)), None);
        }
        // Another kind is not held back by the first.
        assert_eq!(f.note("badmsg", t0 + Duration::from_secs(5)), Some(1));
        assert_eq!(f.last.as_deref(), Some("badmsg"));
        assert_eq!(f.note("badcompression", t0 + LOG_EVERY), Some(10));
        assert_eq!(f.note("badcompression", t0 + LOG_EVERY), None);
        assert_eq!(
            f.note(
                "badcompression",
                t0 + 2 * LOG_EVERY + Duration::from_millis(1)
            ),
            Some(2)
        );
        assert_eq!(f.last.as_deref(), Some("badcompression"));
    }

    #[test]
    fn kinds_are_the_librdkafka_code_in_lower_case() {
        use rdkafka::types::RDKafkaErrorCode;
        let e = KafkaError::MessageConsumption(RDKafkaErrorCode::BadCompression);
        assert_eq!(consumer_error_kind(&e), "badcompression");
        let e = KafkaError::ClientCreation("x".into());
        assert_eq!(consumer_error_kind(&e), "client");
    }
}
