//! What a Kafka error code means for the records it concerns, in the forwarder's terms:
//! retried (the broker or the cluster is busy or changing leaders), refused for their content
//! (split until the record at fault is alone, then dead-lettered), or an operator's problem
//! (spooled until it is fixed). The status of a failure is the error's Kafka name.

use super::protocol::error_name;
use crate::emit::{Failure, Outcome};

/// How an error code is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Try again later: the cluster changes leaders, lacks replicas for now, is overloaded.
    Retry,
    /// The records' content or size: split the request, dead-letter a single record.
    Content,
    /// An operator fixes it (authorization, topic, versions, policy): spool.
    Operator,
}

/// The class of Kafka error `code`.
pub fn class(code: i16) -> Class {
    match code {
        // UNKNOWN_SERVER_ERROR, UNKNOWN_TOPIC_OR_PARTITION (a topic being created, metadata
        // not yet everywhere), LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT,
        // BROKER_NOT_AVAILABLE, REPLICA_NOT_AVAILABLE, NETWORK_EXCEPTION, NOT_ENOUGH_REPLICAS,
        // NOT_ENOUGH_REPLICAS_AFTER_APPEND, KAFKA_STORAGE_ERROR, FENCED_LEADER_EPOCH,
        // UNKNOWN_LEADER_EPOCH, THROTTLING_QUOTA_EXCEEDED, and the coordinators' transient
        // errors.
        -1 | 3 | 5 | 6 | 7 | 8 | 9 | 13 | 14 | 15 | 19 | 20 | 56 | 74 | 75 | 89 => Class::Retry,
        // CORRUPT_MESSAGE, MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE, INVALID_TIMESTAMP,
        // INVALID_RECORD.
        2 | 10 | 18 | 32 | 87 => Class::Content,
        // Authorization, SASL, INVALID_TOPIC_EXCEPTION, INVALID_REQUIRED_ACKS,
        // UNSUPPORTED_VERSION, UNSUPPORTED_FOR_MESSAGE_FORMAT, POLICY_VIOLATION,
        // UNSUPPORTED_COMPRESSION_TYPE and every code this list does not know.
        _ => Class::Operator,
    }
}

/// Whether the error means the client's picture of the cluster (leaders, partitions) is stale.
pub fn stale_metadata(code: i16) -> bool {
    matches!(code, 3 | 5 | 6 | 74 | 75)
}

/// The failure of error `code` with the broker's `message`.
pub fn failure(code: i16, message: Option<&str>) -> Failure {
    let name = error_name(code);
    let text = match message {
        Some(m) if !m.is_empty() => format!("Kafka error {code} ({name}): {m}"),
        _ => format!("Kafka error {code} ({name})"),
    };
    Failure::new(name, text)
}

/// The outcome of error `code` for one record.
pub fn for_code(code: i16, message: Option<&str>) -> Outcome {
    if code == 0 {
        return Outcome::Delivered;
    }
    let f = failure(code, message);
    match class(code) {
        Class::Retry => Outcome::Retryable(f),
        Class::Content => Outcome::Permanent(f),
        Class::Operator => Outcome::Unavailable(f),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn status(o: &Outcome) -> (&'static str, String) {
        match o {
            Outcome::Delivered => ("delivered", String::new()),
            Outcome::Retryable(f) => ("retryable", f.status.clone()),
            Outcome::Permanent(f) => ("permanent", f.status.clone()),
            Outcome::Unavailable(f) => ("unavailable", f.status.clone()),
            Outcome::Rejected(f) => ("rejected", f.status.clone()),
        }
    }

    #[test]
    fn broker_trouble_is_retried_content_is_dead_lettered_and_authorization_is_spooled() {
        let cases = [
            (0, "delivered", ""),
            (5, "retryable", "LEADER_NOT_AVAILABLE"),
            (6, "retryable", "NOT_LEADER_OR_FOLLOWER"),
            (7, "retryable", "REQUEST_TIMED_OUT"),
            (19, "retryable", "NOT_ENOUGH_REPLICAS"),
            (20, "retryable", "NOT_ENOUGH_REPLICAS_AFTER_APPEND"),
            (10, "permanent", "MESSAGE_TOO_LARGE"),
            (87, "permanent", "INVALID_RECORD"),
            (2, "permanent", "CORRUPT_MESSAGE"),
            (29, "unavailable", "TOPIC_AUTHORIZATION_FAILED"),
            (31, "unavailable", "CLUSTER_AUTHORIZATION_FAILED"),
            (58, "unavailable", "SASL_AUTHENTICATION_FAILED"),
            (17, "unavailable", "INVALID_TOPIC_EXCEPTION"),
            (999, "unavailable", "KAFKA_ERROR"),
        ];
        for (code, want, name) in cases {
            let o = for_code(code, None);
            assert_eq!(status(&o), (want, name.to_string()), "code {code}");
        }
        let o = for_code(10, Some("batch of 2000000 bytes over the 1048588 limit"));
        let Outcome::Permanent(f) = o else { panic!() };
        assert!(
            f.text.contains("1048588") && f.text.contains("10 (MESSAGE_TOO_LARGE)"),
            "{}",
            f.text
        );
    }

    #[test]
    fn leader_changes_and_unknown_partitions_mark_the_metadata_stale() {
        assert!(stale_metadata(6) && stale_metadata(5) && stale_metadata(3));
        assert!(!stale_metadata(19) && !stale_metadata(10) && !stale_metadata(29));
    }
}
