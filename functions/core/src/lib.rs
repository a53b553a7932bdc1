//! Shared library of the authtrail functions: the stream record envelope, redaction, Kinesis
//! sequence numbers, configuration helpers, secrets, metrics (CloudWatch EMF) and AWS set-up.

pub mod aws;
pub mod config;
pub mod envelope;
pub mod kinesis;
pub mod metrics;
pub mod redact;
pub mod secret;
pub mod seqnum;
