//! `make bench`: the cost of the `format` option, on one core.
//!
//! The forwarder benchmark's event: a full Kinesis event of 4,800 Contract 1 envelopes (~575
//! bytes each, as Lambda delivers them: JSON with base64 data), read by the function's own path
//! (the lean event reader, the borrowed record parse), field-filtered and hash-redacted, then
//! rendered in each format: `raw` (the record as it is), `ocsf`, `ecs` and `cef`. Prints
//! events/s per format and the ratio of the OCSF transform's time to the raw one (target: at
//! most 2), then the rendering step alone per format.
//!
//! `AUTHTRAIL_BENCH_ROUNDS=N` sets the rounds (best of N, default 16).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use authtrail_core::redact::{RedactionMode, Redactor};
use authtrail_core::secret::Secret;
use authtrail_forwarder::KinesisBatch;
use authtrail_forwarder::filter::FieldFilter;
use authtrail_forwarder::record::{self, Transform};
use authtrail_normalize::Format;
use base64::Engine;
use serde_json::{Value, json};

const RECORDS: usize = 4800;

/// Rounds per figure (best of): 16, or `AUTHTRAIL_BENCH_ROUNDS`.
fn rounds() -> usize {
    std::env::var("AUTHTRAIL_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(16)
}

/// The forwarder benchmark's envelope `i` (five Keycloak user event types in turn).
fn envelope(i: usize) -> String {
    let t = 1_739_388_470_156_i64 + i as i64;
    let kind = [
        "LOGIN",
        "LOGIN_ERROR",
        "CODE_TO_TOKEN",
        "REFRESH_TOKEN",
        "LOGOUT",
    ][i % 5];
    let v = json!({"timestamp": authtrail_core::envelope::format_timestamp(t), "eventType": "user-event", "event": {
        "id": format!("0b5c{i:08}-6c2e-4a3b-9f1e-2d7c9a1b3c4d"), "time": t, "type": kind,
        "realmId": "8b3f1e2a-7c4d-4e5f-9a0b-1c2d3e4f5a6b", "clientId": "account-console",
        "userId": "f47ac10b-58cc-4372-a567-0e02b2c3d479", "sessionId": "2c1d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f",
        "ipAddress": format!("198.51.{}.{}", (i / 250) % 250, i % 250),
        "details": {"auth_method": "openid-connect", "username": format!("user{i}@example.com"), "code_id": "c0a1b2c3-d4e5-4f6a-8b9c-0d1e2f3a4b5c",
                    "redirect_uri": "https://app.example.com/callback", "consent": "no_consent_required"}}});
    format!("{v}\n")
}

/// The Kinesis event JSON of [`RECORDS`] envelopes, and the bytes of record data it holds.
fn kinesis_event_json() -> (Vec<u8>, usize) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut data_bytes = 0;
    let records: Vec<Value> = (0..RECORDS)
        .map(|i| {
            let data = envelope(i);
            data_bytes += data.len();
            let seq = format!("4959033827149025660855969253836157109592157598913658{i:04}");
            json!({"kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": format!("pk-{i}"), "sequenceNumber": seq,
                               "data": b64.encode(data.as_bytes()), "approximateArrivalTimestamp": 1739388470.156},
                   "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": format!("shardId-000000000000:{seq}"),
                   "eventName": "aws:kinesis:record", "invokeIdentityArn": "arn:aws:iam::123456789012:role/forwarder",
                   "awsRegion": "us-east-1", "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/authtrail"})
        })
        .collect();
    (
        serde_json::to_vec(&json!({"Records": records})).unwrap(),
        data_bytes,
    )
}

/// The forwarder benchmark's transform (`code_id` removed, address and user name
/// pseudonymised) in `format`.
fn transform(format: Format) -> Transform {
    let exclude = vec!["/event/details/code_id".to_string()];
    let redact = vec![
        "/event/ipAddress".to_string(),
        "/event/details/username".to_string(),
    ];
    Transform::new(
        FieldFilter::new(&[], &exclude).unwrap(),
        Some(Redactor::new(&redact, RedactionMode::Hash(Secret::new("bench-key"))).unwrap()),
    )
    .with_format(format)
}

/// The function's path for one batch: event parse, record parse and classification, filter,
/// redaction, format; the bytes of what emitters would send.
fn transform_batch(event: &[u8], t: &Transform) -> usize {
    let parsed: KinesisBatch = serde_json::from_slice(event).unwrap();
    parsed
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (text, class) = record::parse_classify(&r.data, r.source.arrival_ms).unwrap();
            let p = t.prepare(i, Arc::new(class), text).unwrap();
            p.cef.as_ref().map_or(p.json.len(), String::len)
        })
        .sum()
}

/// The best time of `rounds()` runs of `f` (after one warm-up), printed with events/s.
fn measure(label: &str, mut f: impl FnMut() -> usize) {
    f();
    let mut best = Duration::MAX;
    let mut sink = 0;
    for _ in 0..rounds() {
        let t = Instant::now();
        sink += f();
        best = best.min(t.elapsed());
    }
    println!(
        "{label:<52} {:>8.2} ms/batch {:>10.0} events/s   (checksum {})",
        best.as_secs_f64() * 1000.0,
        RECORDS as f64 / best.as_secs_f64(),
        sink % 1000
    );
}

fn main() {
    let (event, data_bytes) = kinesis_event_json();
    println!(
        "format benchmark: {RECORDS} records of ~{} bytes per batch ({:.1} MB event JSON), best of {} rounds, one thread",
        data_bytes / RECORDS,
        event.len() as f64 / 1e6,
        rounds()
    );
    println!(
        "-- transform: event parse, record parse, classify, filter, hash redaction, format --"
    );
    // The formats take turns round by round, so that the machine's other load weighs on each
    // of them alike; each figure is its best round (after one warm-up round).
    let transforms: Vec<(Format, Transform)> =
        Format::ALL.iter().map(|f| (*f, transform(*f))).collect();
    let mut best = vec![Duration::MAX; transforms.len()];
    let mut sink = 0;
    for round in 0..=rounds() {
        for (k, (_, t)) in transforms.iter().enumerate() {
            let started = Instant::now();
            sink += transform_batch(&event, t);
            if round > 0 {
                best[k] = best[k].min(started.elapsed());
            }
        }
    }
    for ((format, _), time) in transforms.iter().zip(&best) {
        println!(
            "{:<52} {:>8.2} ms/batch {:>10.0} events/s",
            format!("transform, format {format}"),
            time.as_secs_f64() * 1000.0,
            RECORDS as f64 / time.as_secs_f64()
        );
    }
    let time_of = |f: Format| {
        transforms
            .iter()
            .zip(&best)
            .find(|((x, _), _)| *x == f)
            .map_or(Duration::ZERO, |(_, d)| *d)
    };
    let raw = time_of(Format::Raw).as_secs_f64();
    for f in [Format::Ocsf, Format::Ecs, Format::Cef] {
        println!(
            "{:<52} {:>8.2}{}",
            format!("ratio {f}/raw (transform time)"),
            time_of(f).as_secs_f64() / raw,
            if f == Format::Ocsf {
                "   (target: at most 2)"
            } else {
                ""
            }
        );
    }
    println!("(checksum {})", sink % 1000);
    println!("-- the format step alone, on records already filtered and redacted --");
    let inputs = serde_json::from_slice::<KinesisBatch>(&event)
        .unwrap()
        .records;
    let prepared: Vec<_> = inputs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (text, class) = record::parse_classify(&r.data, r.source.arrival_ms).unwrap();
            let class = Arc::new(class);
            let p = transform(Format::Raw)
                .prepare(i, class.clone(), text)
                .unwrap();
            (p.json, class)
        })
        .collect();
    measure("  (step) parse into a serde_json::Value only", || {
        prepared
            .iter()
            .map(|(json, _)| match serde_json::from_str::<Value>(json) {
                Ok(Value::Object(o)) => o.len(),
                _ => 0,
            })
            .sum()
    });
    for format in [Format::Ocsf, Format::Ecs, Format::Cef] {
        let t = Transform::identity().with_format(format);
        measure(&format!("  (step) render {format}"), || {
            prepared
                .iter()
                .enumerate()
                .map(|(i, (json, class))| {
                    let p = t.prepare(i, class.clone(), json).unwrap();
                    p.cef.as_ref().map_or(p.json.len(), String::len)
                })
                .sum()
        });
    }
}
