//! Columns read from the Kafka message itself rather than its payload: `$kafka.topic`,
//! `$kafka.partition`, `$kafka.offset`, `$kafka.key`, `$kafka.timestamp` (milliseconds) and
//! `$kafka.header.<name>` (the last header of that name).

use std::borrow::Cow;

use rdkafka::message::{BorrowedHeaders, Headers};

use super::{Meta, Scalar};

/// The prefix that marks a message-metadata path.
pub(super) const PREFIX: &str = "$kafka.";

/// A piece of message metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum KafkaField {
    Topic,
    Partition,
    Offset,
    Key,
    Timestamp,
    Header(String),
}

impl KafkaField {
    /// Parses the part after `$kafka.`.
    pub(super) fn parse(rest: &str) -> Result<KafkaField, String> {
        Ok(match rest {
            "topic" => KafkaField::Topic,
            "partition" => KafkaField::Partition,
            "offset" => KafkaField::Offset,
            "key" => KafkaField::Key,
            "timestamp" => KafkaField::Timestamp,
            _ => match rest.strip_prefix("header.") {
                Some(name) if !name.is_empty() => KafkaField::Header(name.to_string()),
                _ => {
                    return Err(format!(
                        "{PREFIX}{rest}: use {PREFIX}topic, partition, offset, key, timestamp or header.<name>"
                    ))
                }
            },
        })
    }

    /// The value of this field for a message.
    pub(super) fn read<'a>(&self, meta: &Meta<'a>) -> Scalar<'a> {
        match self {
            KafkaField::Topic => Scalar::Str(Cow::Borrowed(meta.topic)),
            KafkaField::Partition => Scalar::Int(meta.partition as i64),
            KafkaField::Offset => Scalar::Int(meta.offset),
            KafkaField::Timestamp => meta.timestamp_ms.map_or(Scalar::Missing, Scalar::Int),
            KafkaField::Key => meta.key.map_or(Scalar::Missing, Scalar::Bytes),
            KafkaField::Header(name) => meta
                .headers
                .and_then(|h| last_header(h, name))
                .map_or(Scalar::Missing, Scalar::Bytes),
        }
    }
}

fn last_header<'a>(h: &'a BorrowedHeaders, name: &str) -> Option<&'a [u8]> {
    (0..h.count())
        .rev()
        .map(|i| h.get(i))
        .find(|x| x.key == name)
        .and_then(|x| x.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_parse_and_unknown_ones_are_named() {
        assert_eq!(KafkaField::parse("key"), Ok(KafkaField::Key));
        assert_eq!(
            KafkaField::parse("header.trace-id"),
            Ok(KafkaField::Header("trace-id".into()))
        );
        let e = KafkaField::parse("headers").unwrap_err();
        assert!(e.contains("$kafka.headers"), "{e}");
        assert!(KafkaField::parse("header.").is_err());
    }
}
