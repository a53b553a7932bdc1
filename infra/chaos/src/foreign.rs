//! The foreign producer: another system writing into the same stream, as Foxpass does (LDAP
//! `bind` and RADIUS `authorize` records, one JSON object per record), plus malformed records
//! (not JSON). Each record carries a tracking id (`chaosf-…` / `chaosm-…`) so the accounting
//! can find it at every place, also inside a dead letter's base64.

use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use serde_json::json;
use tokio::sync::watch;

use crate::schedule::Rng;

/// Prefix of the foreign records' ids.
pub const FOREIGN_PREFIX: &str = "chaosf-";
/// Prefix of the malformed records' ids.
pub const MALFORMED_PREFIX: &str = "chaosm-";

/// What the foreign producer wrote (accepted by Kinesis).
#[derive(Debug, Default, Clone)]
pub struct Written {
    /// Ids of the Foxpass-style records.
    pub foreign: Vec<String>,
    /// Ids of the malformed records.
    pub malformed: Vec<String>,
    /// PutRecords calls that failed as a whole (retried).
    pub failed_calls: u64,
}

/// Rates of the foreign producer, records per second.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    pub foreign: f64,
    pub malformed: f64,
}

/// The id at position `n` of a kind.
pub fn id(prefix: &str, n: u64) -> String {
    format!("{prefix}{n:08}")
}

fn foreign_record(rng: &mut Rng, n: u64) -> Vec<u8> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let ip = format!("198.51.100.{}", rng.next_u64() % 250 + 1);
    let user = format!("user{}", rng.next_u64() % 500);
    let v = if rng.unit() < 0.5 {
        json!({"service": "ldap", "method": "bind", "message": "bind succeeded", "timestamp": now,
               "user": user, "client_ip": ip, "id": id(FOREIGN_PREFIX, n)})
    } else {
        json!({"service": "radius", "method": "authorize", "message": "Access-Accept",
               "timestamp": now, "user": user, "nas_ip": ip, "id": id(FOREIGN_PREFIX, n)})
    };
    let mut line = v.to_string().into_bytes();
    line.push(b'\n');
    line
}

fn malformed_record(n: u64) -> Vec<u8> {
    // Cut off in the middle of an object: not JSON.
    format!(
        "{{\"service\": \"ldap\", \"id\": \"{}\", \"message\": \"bind succ",
        id(MALFORMED_PREFIX, n)
    )
    .into_bytes()
}

/// Writes at `rates` into `stream` until `stop` turns true; returns what Kinesis accepted.
pub async fn run(
    kinesis: aws_sdk_kinesis::Client,
    stream: String,
    rates: Rates,
    seed: u64,
    mut stop: watch::Receiver<bool>,
) -> Written {
    let mut rng = Rng::new(seed ^ 0xF0F0);
    let mut written = Written::default();
    let tick = Duration::from_millis(250);
    let (mut due_f, mut due_m) = (0.0f64, 0.0f64);
    let (mut nf, mut nm) = (0u64, 0u64);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return written,
            () = tokio::time::sleep(tick) => {},
        }
        due_f += rates.foreign * tick.as_secs_f64();
        due_m += rates.malformed * tick.as_secs_f64();
        let mut batch: Vec<(bool, String, Vec<u8>)> = Vec::new();
        while due_f >= 1.0 {
            due_f -= 1.0;
            nf += 1;
            batch.push((false, id(FOREIGN_PREFIX, nf), foreign_record(&mut rng, nf)));
        }
        while due_m >= 1.0 {
            due_m -= 1.0;
            nm += 1;
            batch.push((true, id(MALFORMED_PREFIX, nm), malformed_record(nm)));
        }
        for chunk in batch.chunks(500) {
            put_chunk(&kinesis, &stream, chunk, &mut rng, &mut written).await;
        }
    }
}

/// Puts one chunk, resending failed entries until each is accepted.
async fn put_chunk(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    chunk: &[(bool, String, Vec<u8>)],
    rng: &mut Rng,
    written: &mut Written,
) {
    let mut pending: Vec<&(bool, String, Vec<u8>)> = chunk.iter().collect();
    for _ in 0..20 {
        if pending.is_empty() {
            return;
        }
        let entries: Vec<PutRecordsRequestEntry> = pending
            .iter()
            .filter_map(|(_, _, data)| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(data.clone()))
                    .partition_key(format!("{:016x}", rng.next_u64()))
                    .build()
                    .ok()
            })
            .collect();
        match kinesis
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
        {
            Ok(out) => {
                let mut again = Vec::new();
                for (entry, result) in pending.iter().zip(out.records()) {
                    if result.error_code().is_some() {
                        again.push(*entry);
                    } else if entry.0 {
                        written.malformed.push(entry.1.clone());
                    } else {
                        written.foreign.push(entry.1.clone());
                    }
                }
                pending = again;
            }
            Err(_) => {
                written.failed_calls += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
