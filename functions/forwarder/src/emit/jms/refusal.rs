//! What a broker's `ERROR` frame means for the messages it concerns, read from its text (STOMP
//! has no error codes). The texts are ActiveMQ's (5.x, Amazon MQ):
//! - `User name [u] or password is invalid.`, `User u is not authorized to write to: queue://q`:
//!   [`Refusal::Access`], an operator fixes it (spooled, not retried within the invocation).
//! - `The maximum frame size was exceeded`, `MessageFormatException`: [`Refusal::Content`], the
//!   message itself (dead-lettered once it is known which one).
//! - anything else (`ResourceAllocationException`, the store failing, the broker stopping, an
//!   unknown text): [`Refusal::Transient`], retried.

use crate::emit::{Failure, Outcome};

/// The kind of an `ERROR` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Authentication, authorization, or a destination the broker does not accept.
    Access,
    /// The message itself: too large, malformed.
    Content,
    /// Anything else: try again.
    Transient,
}

/// Texts of access refusals (lower case).
const ACCESS: &[&str] = &[
    "not authorized",
    "password is invalid",
    "authentication",
    "securityexception",
    "security exception",
    "access denied",
    "invalid destination",
    "invaliddestination",
    "not allowed",
];

/// Texts of refusals of the message itself (lower case).
const CONTENT: &[&str] = &[
    "maximum frame size",
    "maximum data length",
    "frame too large",
    "messageformatexception",
    "message format",
    "too large",
];

/// The kind of the `ERROR` whose text is `text`.
pub fn classify(text: &str) -> Refusal {
    let lower = text.to_ascii_lowercase();
    if ACCESS.iter().any(|p| lower.contains(p)) {
        Refusal::Access
    } else if CONTENT.iter().any(|p| lower.contains(p)) {
        Refusal::Content
    } else {
        Refusal::Transient
    }
}

/// The failure recorded for an `ERROR` frame saying `text`.
pub fn failure(text: &str) -> Failure {
    Failure::new("stomp-error", text)
}

/// The outcome of a message that an `ERROR` frame names (by its receipt).
pub fn for_message(kind: Refusal, f: Failure) -> Outcome {
    match kind {
        Refusal::Access => Outcome::Unavailable(f),
        Refusal::Content => Outcome::Permanent(f),
        Refusal::Transient => Outcome::Retryable(f),
    }
}

/// The outcome of an unconfirmed message after an `ERROR` frame that names no message.
/// `alone`: the chunk's only unconfirmed message, so the refusal is its own; `whole`: nothing of
/// the chunk was confirmed, so the chunk may be refused as a whole and split by the caller (a
/// [`Outcome::Rejected`] for each); otherwise the unconfirmed messages are retried, and the next
/// attempt, holding only them, finds the one at fault.
pub fn for_chunk(kind: Refusal, f: Failure, alone: bool, whole: bool) -> Outcome {
    match kind {
        Refusal::Access => Outcome::Unavailable(f),
        Refusal::Content if alone => Outcome::Permanent(f),
        Refusal::Content if whole => Outcome::Rejected(f),
        Refusal::Content | Refusal::Transient => Outcome::Retryable(f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activemq_error_texts_are_classified_by_what_fixes_them() {
        for (text, kind) in [
            (
                "User name [authtrail] or password is invalid.",
                Refusal::Access,
            ),
            (
                "User authtrail is not authorized to write to: queue://forbidden.x",
                Refusal::Access,
            ),
            (
                "java.lang.SecurityException: User name [x] or password is invalid.",
                Refusal::Access,
            ),
            ("The maximum frame size was exceeded", Refusal::Content),
            ("javax.jms.MessageFormatException: bad", Refusal::Content),
            (
                "javax.jms.ResourceAllocationException: Usage Manager Store is Full",
                Refusal::Transient,
            ),
            (
                "java.io.IOException: Broker is shutting down",
                Refusal::Transient,
            ),
            ("something new", Refusal::Transient),
        ] {
            assert_eq!(classify(text), kind, "{text}");
        }
    }

    #[test]
    fn a_message_named_by_an_error_is_spooled_dead_lettered_or_retried_by_kind() {
        let f = || failure("x");
        assert!(matches!(
            for_message(Refusal::Access, f()),
            Outcome::Unavailable(_)
        ));
        assert!(matches!(
            for_message(Refusal::Content, f()),
            Outcome::Permanent(_)
        ));
        assert!(matches!(
            for_message(Refusal::Transient, f()),
            Outcome::Retryable(_)
        ));
    }

    #[test]
    fn a_content_error_naming_no_message_splits_a_whole_chunk_and_blames_a_lone_message() {
        let f = || failure("The maximum frame size was exceeded");
        assert!(matches!(
            for_chunk(Refusal::Content, f(), true, false),
            Outcome::Permanent(_)
        ));
        assert!(matches!(
            for_chunk(Refusal::Content, f(), false, true),
            Outcome::Rejected(_)
        ));
        assert!(matches!(
            for_chunk(Refusal::Content, f(), false, false),
            Outcome::Retryable(_)
        ));
        assert!(matches!(
            for_chunk(Refusal::Access, f(), false, true),
            Outcome::Unavailable(_)
        ));
        assert!(matches!(
            for_chunk(Refusal::Transient, f(), true, true),
            Outcome::Retryable(_)
        ));
        assert_eq!(f().status, "stomp-error");
    }
}
