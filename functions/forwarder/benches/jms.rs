//! `make bench`: the `jms` emitter into a real Apache ActiveMQ 5.17 (Debian's package, started
//! by the test harness on loopback: STOMP over TLS with a throwaway CA, KahaDB persistence with
//! its journal synced once a second, no consumer attached).
//!
//! 1. Events/s: one 10,000-record batch (Contract 1 envelopes of ~560 bytes) forwarded in
//!    process by the real forwarder (`build` + `process`) to a queue with `PERSISTENT`
//!    delivery: every message asks for a receipt and counts only once receipted; a chunk's
//!    SEND frames are pipelined on the one connection. Best of `AUTHTRAIL_BENCH_ROUNDS`
//!    (default 5) rounds after a warm-up round, with the defaults (chunks of 2,000, one
//!    connection); also smaller chunks, two connections, plain STOMP and `NON_PERSISTENT` (one
//!    receipt per chunk); a fresh broker for each line. Target: 10,000 events/s persistent.
//! 2. Peak memory: the real `authtrail-forwarder` binary under the local Lambda runner, the
//!    same 10,000 records as Kinesis events (two invocations: 10,000 records of this size exceed
//!    Lambda's 6 MB invoke payload), then the process's `VmHWM`; and the broker's.
//!
//! The configuration gives the broker password in plain: run with
//! `AUTHTRAIL_ALLOW_PLAINTEXT_SECRETS=true` (`make bench` sets it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use authtrail_forwarder::config::ForwarderConfig;
use authtrail_forwarder::dlq::DeadLetterSink;
use authtrail_forwarder::emit::BoxFuture;
use authtrail_forwarder::{ForwarderError, KinesisBatch};
use authtrail_harness::activemq::{ActiveMq, WRITER};
use authtrail_harness::bin_path;
use authtrail_runner::kinesis::{EventContext, RecordInput, event_payload, record_json};
use authtrail_runner::{FunctionConfig, LambdaFunction, MAX_INVOKE_PAYLOAD_BYTES, Outcome};
use serde_json::{Value, json};

const RECORDS: usize = 10_000;
const T0: i64 = 1_739_388_470_156;

/// Rounds per figure (best of): 5, or `AUTHTRAIL_BENCH_ROUNDS`.
fn rounds() -> usize {
    std::env::var("AUTHTRAIL_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(5)
}

/// Record `i`: a Keycloak user event in the Contract 1 envelope, ~560 bytes.
fn envelope(i: usize) -> String {
    let t = T0 + i as i64;
    let kind = ["LOGIN", "LOGIN_ERROR", "CODE_TO_TOKEN", "LOGOUT"][i % 4];
    let mut event = json!({
        "id": format!("0b5c{i:08}-6c2e-4a3b-9f1e-2d7c9a1b3c4d"), "time": t, "type": kind,
        "realmId": "8b3f1e2a-7c4d-4e5f-9a0b-1c2d3e4f5a6b", "clientId": "account-console",
        "userId": format!("f47ac10b-58cc-4372-a567-{:012}", i % 997),
        "sessionId": "2c1d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f",
        "ipAddress": format!("198.51.100.{}", i % 250),
        "details": {"auth_method": "openid-connect", "username": format!("user{i}@example.com"),
                    "code_id": "c0a1b2c3-d4e5-4f6a-8b9c-0d1e2f3a4b5c",
                    "redirect_uri": "https://app.example.com/callback"}
    });
    if kind == "LOGIN_ERROR" {
        event["error"] = json!("invalid_user_credentials");
    }
    let ts = authtrail_core::envelope::format_timestamp(t);
    format!(
        "{}\n",
        json!({"timestamp": ts, "eventType": "user-event", "event": event})
    )
}

/// Each record as the JSON of a `KinesisEventRecord`, and the records' total data bytes.
fn kinesis_records() -> (Vec<String>, usize) {
    let ctx = EventContext {
        region: "us-east-1".into(),
        stream_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/authtrail".into(),
        invoke_identity_arn: "arn:aws:iam::123456789012:role/authtrail-forwarder".into(),
    };
    let arrival = chrono::DateTime::from_timestamp_millis(T0).unwrap();
    let mut bytes = 0;
    let records = (0..RECORDS)
        .map(|i| {
            let data = envelope(i);
            bytes += data.len();
            let seq = format!("49590338271490256608559692538361571095921575989136{i:08}");
            let input = RecordInput {
                shard_id: "shardId-000000000000",
                sequence_number: &seq,
                partition_key: &format!("pk-{i}"),
                data: data.as_bytes(),
                arrival,
                encryption_type: None,
            };
            record_json(&ctx, &input).unwrap()
        })
        .collect();
    (records, bytes)
}

/// The records as Kinesis events under Lambda's invoke payload limit.
fn invocations(records: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < records.len() {
        let mut end = start;
        let mut size = 16;
        while end < records.len() && size + records[end].len() + 1 < MAX_INVOKE_PAYLOAD_BYTES {
            size += records[end].len() + 1;
            end += 1;
        }
        out.push(event_payload(
            records[start..end].iter().map(String::as_str),
        ));
        start = end;
    }
    out
}

struct NoDlq;
impl DeadLetterSink for NoDlq {
    fn put<'a>(&'a self, key: String, _body: Vec<u8>) -> BoxFuture<'a, Result<(), ForwarderError>> {
        Box::pin(async {
            Err(ForwarderError::DeadLetterNotWritten {
                bucket: "none".into(),
                key,
                detail: "the benchmark has no dead-letter bucket".into(),
            })
        })
    }
}

/// A `jms` emitter of `mq` to `destination` over TLS (or plain STOMP), with `extra` keys.
fn emitter(mq: &ActiveMq, destination: &str, tls: bool, extra: Value) -> Value {
    let url = if tls {
        mq.stomp_ssl_url()
    } else {
        format!("stomp://127.0.0.1:{}", mq.stomp_port())
    };
    let mut e = json!({"name": "mq", "type": "jms", "url": url, "destination": destination,
        "username": WRITER, "password": mq.writer_password(),
        "caBundle": mq.ca_pem_path().display().to_string(), "caBundleOnly": true});
    if let (Some(e), Value::Object(extra)) = (e.as_object_mut(), extra) {
        e.extend(extra);
    }
    e
}

/// Best and median time of `rounds` deliveries of `inputs` by a forwarder of `emitter`
/// (after a warm-up round that also opens the connection).
async fn deliver(emitter: Value, inputs: &KinesisBatch) -> (Duration, Duration) {
    let cfg = json!({"emitters": [emitter]});
    let cfg = ForwarderConfig::parse(&cfg.to_string()).unwrap();
    let fwd = authtrail_forwarder::build(&cfg, None, Arc::new(NoDlq), "dlq/")
        .await
        .unwrap();
    let mut times = Vec::new();
    for round in 0..=rounds() {
        let t = Instant::now();
        let r = fwd
            .process(
                &inputs.records,
                tokio::time::Instant::now() + Duration::from_secs(120),
            )
            .await;
        let el = t.elapsed();
        assert!(r.failures.is_empty(), "{:?}", r.emitters);
        let stats = &r.emitters[0].1;
        assert_eq!((stats.delivered, stats.retried), (RECORDS, 0), "{stats:?}");
        if round > 0 {
            times.push(el);
        }
    }
    times.sort();
    (times[0], times[times.len() / 2])
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}

/// The real binary, the records as Lambda-sized invocations: (events/s over the invocations,
/// invocations, peak RSS in KiB).
async fn through_the_binary(mq: &ActiveMq, records: &[String]) -> (f64, usize, Option<u64>) {
    let bin = bin_path("authtrail-forwarder").expect("make bench builds the release binaries");
    // Nothing but the broker is called: S3 (dead letters) points at a closed loopback port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let config = json!({"emitters": [emitter(mq, "queue://audit.bench", true, json!({}))]});
    let mut cfg = FunctionConfig::new("forwarder-jms-bench", bin)
        .with_env([
            ("FORWARDER_CONFIG", config.to_string()),
            ("DLQ_BUCKET", "bench-dlq".into()),
            ("DLQ_PREFIX", "dlq/".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_ENDPOINT_URL", nowhere),
            ("AWS_LAMBDA_LOG_LEVEL", "warn".into()),
            ("AUTHTRAIL_ALLOW_PLAINTEXT_SECRETS", "true".into()),
        ])
        .with_timeout(Duration::from_secs(120));
    cfg.inherit_env = false;
    cfg.echo_logs = false;
    cfg.memory_mb = 256;
    let f = LambdaFunction::start(cfg).await.unwrap();
    let events = invocations(records);
    let mut busy = Duration::ZERO;
    for event in &events {
        let inv = f.invoke(event.clone()).await.unwrap();
        match &inv.outcome {
            Outcome::Response(_) => {
                let r: Value = inv.response_json().unwrap();
                assert_eq!(r["batchItemFailures"], json!([]), "{r}");
            }
            other => panic!("bench invocation failed: {other:?}\n{}", f.logs()),
        }
        busy += inv.duration;
    }
    let peak = match f.pid().await {
        Some(pid) => vm_hwm_kib(pid),
        None => None,
    };
    f.shutdown().await;
    (RECORDS as f64 / busy.as_secs_f64(), events.len(), peak)
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("unknown".to_string(), |k| {
        format!("{:.1} MiB", k as f64 / 1024.0)
    })
}

fn main() {
    let allowed = std::env::var(authtrail_forwarder::config::secret::ALLOW_PLAINTEXT_SECRETS_ENV)
        .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    assert!(
        allowed,
        "the benchmark gives the broker password in plain (loopback): run it with {}=true (make bench does)",
        authtrail_forwarder::config::secret::ALLOW_PLAINTEXT_SECRETS_ENV
    );
    let (records, data_bytes) = kinesis_records();
    let event = event_payload(records.iter().map(String::as_str));
    let inputs: KinesisBatch = serde_json::from_slice(event.as_bytes()).unwrap();
    println!(
        "jms benchmark: {RECORDS} records of ~{} bytes in one batch to ActiveMQ 5.17 on loopback (STOMP 1.2, KahaDB, journal synced each second, a fresh broker per line), best and median of {} rounds",
        data_bytes / RECORDS,
        rounds()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("-- events/s from one invocation's batch (target 10,000 events/s persistent) --");
        let mut started = Vec::new();
        let mut last = None;
        for (label, tls, extra) in [
            ("PERSISTENT, TLS, 2,000/chunk, 1 connection (defaults)", true, json!({})),
            ("PERSISTENT, TLS, 500/chunk, 1 connection", true, json!({"buffering": {"maxBatchedEvents": 500}})),
            ("PERSISTENT, TLS, 2,000/chunk, 2 connections", true, json!({"connections": 2})),
            ("PERSISTENT, plain STOMP, 2,000/chunk, 1 connection", false, json!({})),
            ("NON_PERSISTENT, TLS, one receipt per chunk", true, json!({"deliveryMode": "NON_PERSISTENT"})),
        ] {
            // A fresh broker for each line: messages nobody consumes pile up in the broker's
            // memory and slow it down over many rounds.
            let mq = tokio::task::spawn_blocking(ActiveMq::start)
                .await
                .unwrap()
                .expect("ActiveMQ 5.17 (make apt-deps)");
            started.push(mq.startup_time().as_secs_f64());
            let e = emitter(&mq, "queue://audit.bench", tls, extra);
            let (best, median) = deliver(e, &inputs).await;
            println!(
                "{label:<58} {:>8.1} ms/batch {:>10.0} events/s (median {:.0})",
                best.as_secs_f64() * 1000.0,
                RECORDS as f64 / best.as_secs_f64(),
                RECORDS as f64 / median.as_secs_f64()
            );
            last = Some(mq);
        }
        // The last line's broker, warmed up by it, takes the binary's records.
        let Some(mq) = last else {
            return;
        };
        println!("-- the real binary under the local Lambda runner (release build) --");
        let (rate, n, peak) = through_the_binary(&mq, &records).await;
        println!(
            "authtrail-forwarder, {RECORDS} records in {n} invocations (6 MB payload limit): {rate:>10.0} events/s, peak RSS (VmHWM) {}",
            mib(peak)
        );
        println!(
            "ActiveMQ broker (java -Xmx512m) after that run: peak RSS (VmHWM) {}",
            mib(vm_hwm_kib(mq.pid()))
        );
        started.sort_by(f64::total_cmp);
        println!(
            "ActiveMQ start-up (java to the first STOMP CONNECT), {} starts: min {:.1} s, median {:.1} s, max {:.1} s",
            started.len(),
            started[0],
            started[started.len() / 2],
            started[started.len() - 1]
        );
    });
}
