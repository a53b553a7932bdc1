//! Benchmark of the Security Lake writer's CPU path on one thread, for a batch of 10,000
//! records (the mapping's largest batch): the Kinesis event parsed, every record mapped to
//! OCSF and fitted to its class's schema, then one Parquet object per (class, day) encoded;
//! and the whole handler on an in-memory store. Prints rows per second of each phase and the
//! peak heap of the whole handler.
//!
//! Run with `cargo bench -p authtrail-securitylake --bench parquet` (or `make bench`). Set
//! `SECURITYLAKE_BENCH_RUNS` to change the number of timed runs (default 10).

// The counting allocator below needs `unsafe impl GlobalAlloc`; the workspace denies unsafe
// code, so it is allowed here only, for this measurement-only allocator that forwards to the
// system allocator.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use authtrail_core::kinesis;
use authtrail_securitylake::batch::{self, SinkId};
use authtrail_securitylake::encode::parquet_object;
use authtrail_securitylake::{Config, MemoryStore, Writer};
use base64::Engine;
use serde_json::json;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to `System` unchanged and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                    - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const RECORDS: usize = 10_000;
/// 2025-02-12T19:27:50Z.
const T0: i64 = 1_739_388_470;

/// Record `i`: a mix like a real stream's (logins and token events mostly, some account and
/// admin changes, Foxpass binds), with unique ids.
fn record(i: usize) -> Vec<u8> {
    let ms = (T0 + i as i64) * 1000;
    let id = format!(
        "{:016x}-{i:06}",
        (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    );
    let v = match i % 10 {
        0..=5 => {
            let ty = [
                "LOGIN",
                "CODE_TO_TOKEN",
                "REFRESH_TOKEN",
                "LOGOUT",
                "LOGIN_ERROR",
                "LOGIN",
            ][i % 6];
            json!({"timestamp": authtrail_core::envelope::format_timestamp(ms),
                "eventType": "user-event", "event": {"id": id, "time": ms, "type": ty,
                "realmId": "9f1c1f2e-realm", "clientId": "account-console",
                "userId": format!("user-{}", i % 977), "sessionId": format!("s-{}", i % 331),
                "ipAddress": "<redacted>", "details": {"auth_method": "openid-connect",
                "username": "<redacted>", "redirect_uri": "https://app.example/cb"}}})
        }
        6 => json!({"timestamp": authtrail_core::envelope::format_timestamp(ms),
            "eventType": "user-event", "event": {"id": id, "time": ms, "type": "UPDATE_PASSWORD",
            "realmId": "9f1c1f2e-realm", "clientId": "account-console",
            "userId": format!("user-{}", i % 977), "ipAddress": "<redacted>",
            "details": {"auth_method": "openid-connect", "username": "<redacted>"}}}),
        7 => json!({"timestamp": authtrail_core::envelope::format_timestamp(ms),
            "eventType": "admin-event", "event": {"id": id, "time": ms, "realmId": "r",
            "authDetails": {"realmId": "master", "clientId": "security-admin-console",
            "userId": "a11ce-admin", "ipAddress": "<redacted>"}, "operationType": "UPDATE",
            "resourceType": "USER", "resourcePath": format!("users/user-{}", i % 977),
            "representation": "<redacted>"}}),
        8 => json!({"id": id, "service": "ldap", "method": "bind",
            "timestamp": authtrail_core::envelope::format_timestamp(ms), "success": !i.is_multiple_of(3),
            "message": "bind succeeded", "username": "bob",
            "bind_dn": "uid=bob,ou=people,dc=example,dc=com"}),
        _ => json!({"id": id, "service": "radius", "method": "authorize",
            "timestamp": authtrail_core::envelope::format_timestamp(ms), "success": true,
            "message": "authorized", "ipAddress": "198.51.100.20", "username": "bob"}),
    };
    format!("{v}\n").into_bytes()
}

fn payload() -> (Vec<u8>, usize) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut data_bytes = 0;
    let records: Vec<serde_json::Value> = (0..RECORDS)
        .map(|i| {
            let data = record(i);
            data_bytes += data.len();
            json!({
                "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": format!("pk-{i}"),
                    "sequenceNumber": format!("4959{i:052}"), "data": b64.encode(&data),
                    "approximateArrivalTimestamp": T0 as f64 + i as f64 / 1000.0},
                "eventSource": "aws:kinesis", "eventVersion": "1.0",
                "eventID": format!("shardId-000000000000:4959{i:052}"),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/authtrail-securitylake",
                "awsRegion": "eu-west-1",
                "eventSourceARN": "arn:aws:kinesis:eu-west-1:123456789012:stream/authtrail-events",
            })
        })
        .collect();
    (
        serde_json::to_vec(&json!({ "Records": records })).unwrap(),
        data_bytes,
    )
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn rows_per_second(rows: usize, d: Duration) -> f64 {
    rows as f64 / d.as_secs_f64()
}

fn main() {
    let runs: usize = std::env::var("SECURITYLAKE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
        .max(1);
    let (payload, data_bytes) = payload();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (mut map_times, mut encode_times, mut total_times) = (vec![], vec![], vec![]);
    let (mut objects, mut bytes_out) = (0, 0);
    for _ in 0..runs {
        // Phase 1: parse, classify, map to OCSF, fit to the schemas.
        let started = Instant::now();
        let event = kinesis::parse(&payload).unwrap();
        let groups = batch::group_by_shard(&event.records);
        let built: Vec<_> = groups
            .into_iter()
            .map(|g| batch::build(g).unwrap())
            .collect();
        map_times.push(started.elapsed());
        // Phase 2: one Parquet object per (class, day).
        let started = Instant::now();
        let (mut n, mut size) = (0, 0);
        for b in &built {
            for (sink, rows) in &b.data {
                let SinkId::Data { class, .. } = sink else {
                    continue;
                };
                let body =
                    parquet_object(*class, &batch::time_ordered(rows, 0..rows.len())).unwrap();
                n += 1;
                size += body.len();
                black_box(body);
            }
        }
        encode_times.push(started.elapsed());
        (objects, bytes_out) = (n, size);
        drop(built);
        // The whole handler on an in-memory store (keys, metadata, state read).
        let writer = Writer::new(
            MemoryStore::new(),
            Config::new("lake", "eu-west-1", "123456789012", "work"),
        );
        let started = Instant::now();
        let (resp, summary) = runtime.block_on(writer.process(&payload)).unwrap();
        total_times.push(started.elapsed());
        assert!(resp.batch_item_failures.is_empty());
        assert_eq!(summary.rows, RECORDS);
    }
    // Peak heap of one handler run, above what is live before it (the payload).
    let writer = Writer::new(
        MemoryStore::new(),
        Config::new("lake", "eu-west-1", "123456789012", "work"),
    );
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    black_box(runtime.block_on(writer.process(&payload)).unwrap());
    let peak = PEAK.load(Ordering::Relaxed) - base;
    let stored: usize = writer
        .store()
        .objects()
        .values()
        .map(|o| o.body.len())
        .sum();

    let (map, encode, total) = (median(map_times), median(encode_times), median(total_times));
    println!(
        "securitylake parquet bench: {RECORDS} records ({:.2} MB of record data, {:.2} MB event), median of {runs} runs",
        data_bytes as f64 / 1e6,
        payload.len() as f64 / 1e6
    );
    println!(
        "  parse + map to OCSF + fit   {:>8.1} ms  {:>9.0} rows/s",
        map.as_secs_f64() * 1e3,
        rows_per_second(RECORDS, map)
    );
    println!(
        "  Parquet encode (zstd)       {:>8.1} ms  {:>9.0} rows/s  ({objects} objects, {:.1} KB)",
        encode.as_secs_f64() * 1e3,
        rows_per_second(RECORDS, encode),
        bytes_out as f64 / 1e3
    );
    println!(
        "  whole handler (memory S3)   {:>8.1} ms  {:>9.0} rows/s",
        total.as_secs_f64() * 1e3,
        rows_per_second(RECORDS, total)
    );
    println!(
        "  peak heap of one handler run above the payload: {:.1} MB (objects stored: {:.1} KB)",
        peak as f64 / 1e6,
        stored as f64 / 1e3
    );
}
