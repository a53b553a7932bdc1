//! Fuzz entry points for every decoder of outside data in authtrail (issue 13, "Fuzzing").
//!
//! Each module has one `run(&[u8])`: the body of one cargo-fuzz target in `fuzz_targets/`, and
//! what `tests/regressions.rs` replays the seed corpora and the saved findings through. An entry
//! point returns quietly on input that its decoder rightly refuses, and panics (a finding) when
//! a decoder panics or when two paths that must agree do not.
//!
//! - [`kinesis_event`]: core's lean Kinesis event reader (`kinesis::parse`, `KinesisRecords`).
//! - [`record_transform`]: the forwarder's record scanner and text splicer, differential
//!   against parse-transform-serialize.
//! - [`mpas_client`]: the producer's MPAS token and page readers, through the real client
//!   against an in-process HTTP server that answers with the input.
//! - [`forwarder_config`]: the forwarder's JSON configuration.
//! - [`syslog_format`]: the RFC 5424 formatter.
//! - [`bulk_answer`]: the Elasticsearch `_bulk` answer reader.

pub mod bulk_answer;
pub mod forwarder_config;
pub mod kinesis_event;
pub mod mpas_client;
pub mod record_transform;
pub mod syslog_format;

/// The fuzz targets, by name (the names of `fuzz_targets/*.rs` and of `corpus/<target>/`).
pub const TARGETS: &[&str] = &[
    "kinesis_event",
    "record_transform",
    "mpas_client",
    "forwarder_config",
    "syslog_format",
    "bulk_answer",
];

/// Runs the entry point of `target` on `data`; `false` when no target has that name.
pub fn run_target(target: &str, data: &[u8]) -> bool {
    match target {
        "kinesis_event" => kinesis_event::run(data),
        "record_transform" => record_transform::run(data),
        "mpas_client" => mpas_client::run(data),
        "forwarder_config" => forwarder_config::run(data),
        "syslog_format" => syslog_format::run(data),
        "bulk_answer" => bulk_answer::run(data),
        _ => return false,
    }
    true
}
