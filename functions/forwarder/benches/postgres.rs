//! `make bench`: the `postgres` emitter into a real PostgreSQL 15 (started by the test harness
//! on loopback, TLS on with a throwaway CA, the default table made by the migration).
//!
//! 1. Rows/s: one invocation-sized batch (10,000 records of ~560 bytes, Contract 1 envelopes)
//!    forwarded in process by the real forwarder (`build` + `process`) into an empty default
//!    table, best of `AUTHTRAIL_BENCH_ROUNDS` (default 5) rounds, the table emptied between
//!    rounds outside the timing; the same batch delivered again (every row already there);
//!    pool sizes and chunk sizes. Target: 20,000 rows/s with the default table.
//! 2. The storing alone, the rows built by the emitter's own code, 500-row chunks, one
//!    transaction each, on 1 and 2 connections: binary `COPY` into a temporary staging table
//!    then `INSERT ... SELECT ... ON CONFLICT DO NOTHING` (the emitter's SQL) against one
//!    multi-row `INSERT ... VALUES ... ON CONFLICT DO NOTHING` (what the emitter did before;
//!    COPY was kept as the faster).
//! 3. Peak memory: the real `authtrail-forwarder` binary under the local Lambda runner, the same
//!    10,000 records as Kinesis events (two invocations: 10,000 records of this size exceed
//!    Lambda's 6 MB invoke payload), then the process's `VmHWM`.
//!
//! The configuration gives the test role's password in plain: run with
//! `AUTHTRAIL_ALLOW_PLAINTEXT_SECRETS=true` (`make bench` sets it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use authtrail_forwarder::config::{EmitterSettings, ForwarderConfig};
use authtrail_forwarder::dlq::DeadLetterSink;
use authtrail_forwarder::emit::BoxFuture;
use authtrail_forwarder::emit::postgres::{db, rows};
use authtrail_forwarder::record::{Prepared, Transform, parse_classify};
use authtrail_forwarder::{ForwarderError, KinesisBatch};
use authtrail_harness::{Database, Postgres, bin_path};
use authtrail_runner::kinesis::{EventContext, RecordInput, event_payload, record_json};
use authtrail_runner::{FunctionConfig, LambdaFunction, MAX_INVOKE_PAYLOAD_BYTES, Outcome};
use serde_json::{Value, json};

const RECORDS: usize = 10_000;
const T0: i64 = 1_739_388_470_156;
const TABLE: &str = "authtrail_events";

/// Rounds per figure (best of): 5, or `AUTHTRAIL_BENCH_ROUNDS`.
fn rounds() -> usize {
    std::env::var("AUTHTRAIL_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(5)
}

/// Record `i`: a Keycloak user event (LOGIN, LOGIN_ERROR, CODE_TO_TOKEN, LOGOUT) in the
/// Contract 1 envelope, ~560 bytes.
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

/// The server, its database and what an emitter needs to reach it.
struct Server {
    _pg: Postgres,
    db: Database,
    emitter: Value,
}

impl Server {
    fn start() -> Self {
        let pg = Postgres::start().expect("PostgreSQL 15 (make apt-deps)");
        let db = pg.create_database("bench").unwrap();
        let migration = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/sql/postgres/001_authtrail_events.sql"
        );
        db.execute_file(std::path::Path::new(migration)).unwrap();
        let emitter = json!({"name": "pg", "type": "postgres", "host": "127.0.0.1", "port": pg.port(),
            "database": db.name(), "username": pg.username(), "password": pg.password(),
            "caBundle": pg.ca_pem_path().display().to_string(), "caBundleOnly": true});
        Self {
            _pg: pg,
            db,
            emitter,
        }
    }

    /// The emitter with `extra` keys.
    fn emitter(&self, extra: Value) -> Value {
        let mut e = self.emitter.clone();
        if let (Some(e), Value::Object(extra)) = (e.as_object_mut(), extra) {
            e.extend(extra);
        }
        e
    }

    fn rows(&self) -> usize {
        let r = self
            .db
            .query(&format!("SELECT count(*) FROM {TABLE}"))
            .unwrap();
        r[0][0].parse().unwrap()
    }

    fn truncate(&self) {
        self.db.execute(&format!("TRUNCATE {TABLE}")).unwrap();
    }
}

/// Best time of `rounds` deliveries of `inputs` by a forwarder of `emitter`; the table is
/// emptied before each round when `fresh`.
async fn deliver(server: &Server, emitter: Value, inputs: &KinesisBatch, fresh: bool) -> Duration {
    let cfg = json!({"emitters": [emitter]});
    let cfg = ForwarderConfig::parse(&cfg.to_string()).unwrap();
    let fwd = authtrail_forwarder::build(&cfg, None, Arc::new(NoDlq), "dlq/")
        .await
        .unwrap();
    let mut best = Duration::MAX;
    for round in 0..=rounds() {
        if fresh || round == 0 {
            tokio::task::block_in_place(|| server.truncate());
        }
        let t = Instant::now();
        let r = fwd
            .process(
                &inputs.records,
                tokio::time::Instant::now() + Duration::from_secs(120),
            )
            .await;
        let el = t.elapsed();
        assert!(r.failures.is_empty(), "{:?}", r.emitters);
        // Round 0 warms the pool and the server's caches.
        if round > 0 {
            best = best.min(el);
        }
    }
    assert_eq!(tokio::task::block_in_place(|| server.rows()), RECORDS);
    best
}

/// The default table's rows of the batch, built by the emitter's own code.
fn default_rows(inputs: &KinesisBatch) -> Vec<rows::Row> {
    let t = Transform::identity();
    inputs
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (text, class) = parse_classify(&r.data, r.source.arrival_ms).unwrap();
            let p: Prepared = t.prepare(i, Arc::new(class), text).unwrap();
            rows::default_row(&p).unwrap()
        })
        .collect()
}

/// One chunk stored by one multi-row INSERT in a transaction (the emitter's former way).
async fn insert_chunk(client: &mut tokio_postgres::Client, chunk: &[rows::Row]) {
    let columns = rows::default_columns();
    let sql = rows::insert_sql(TABLE, &columns, chunk.len(), "(event_id) ");
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = chunk
        .iter()
        .flat_map(|r| {
            r.iter()
                .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
        })
        .collect();
    let tx = client.transaction().await.unwrap();
    tx.execute(sql.as_str(), &params).await.unwrap();
    tx.commit().await.unwrap();
}

/// One chunk stored the emitter's way: binary COPY into the session's staging table, then
/// INSERT ... SELECT with the casts, in a transaction.
async fn copy_chunk(client: &mut tokio_postgres::Client, chunk: &[rows::Row]) {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::Type;
    let columns = rows::default_columns();
    let stage = rows::stage_name(0);
    client
        .batch_execute(&rows::stage_sql(&stage, &columns))
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    let sink = tx.copy_in(rows::copy_sql(&stage).as_str()).await.unwrap();
    let types = vec![Type::TEXT; columns.len()];
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    for r in chunk {
        writer.as_mut().write_raw(r.iter()).await.unwrap();
    }
    writer.finish().await.unwrap();
    tx.batch_execute(&rows::insert_select_sql(
        TABLE,
        &columns,
        &stage,
        "(event_id) ",
    ))
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// Best time to store `rows` in 500-row chunks over `connections` connections, by COPY or
/// by the emitter's INSERT; the table is emptied before each round.
async fn store_alone(
    server: &Server,
    rows: &[rows::Row],
    connections: usize,
    copy: bool,
) -> Duration {
    let cfg = ForwarderConfig::parse(&json!({"emitters": [server.emitter(json!({}))]}).to_string())
        .unwrap();
    let EmitterSettings::Postgres(pg) = &cfg.emitters[0].settings else {
        panic!("a postgres emitter")
    };
    let target = db::Target::resolve("bench", pg, None).await.unwrap();
    let mut clients = Vec::new();
    for _ in 0..connections {
        clients.push(target.connect().await.unwrap());
    }
    let chunks: Vec<&[rows::Row]> = rows.chunks(500).collect();
    let mut best = Duration::MAX;
    for round in 0..=rounds() {
        tokio::task::block_in_place(|| server.truncate());
        let t = Instant::now();
        let per = chunks.len().div_ceil(connections);
        let work = clients
            .iter_mut()
            .zip(chunks.chunks(per))
            .map(|(c, mine)| async move {
                for chunk in mine {
                    if copy {
                        copy_chunk(c, chunk).await;
                    } else {
                        insert_chunk(c, chunk).await;
                    }
                }
            });
        join_all(work).await;
        if round > 0 {
            best = best.min(t.elapsed());
        }
    }
    assert_eq!(tokio::task::block_in_place(|| server.rows()), RECORDS);
    best
}

/// Runs the futures concurrently on this task and waits for all of them.
async fn join_all<F: std::future::Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut set: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        set.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if set.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}

/// The real binary, the records as Lambda-sized invocations: (rows/s over the invocations,
/// invocations, peak RSS in KiB).
async fn through_the_binary(server: &Server, records: &[String]) -> (f64, usize, Option<u64>) {
    tokio::task::block_in_place(|| server.truncate());
    let bin = bin_path("authtrail-forwarder").expect("make bench builds the release binaries");
    // Nothing but the database is called: S3 (dead letters) points at a closed loopback port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let config = json!({"emitters": [server.emitter(json!({}))]});
    let mut cfg = FunctionConfig::new("forwarder-pg-bench", bin)
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
    assert_eq!(tokio::task::block_in_place(|| server.rows()), RECORDS);
    (RECORDS as f64 / busy.as_secs_f64(), events.len(), peak)
}

fn main() {
    let allowed = std::env::var(authtrail_forwarder::config::secret::ALLOW_PLAINTEXT_SECRETS_ENV)
        .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    assert!(
        allowed,
        "the benchmark gives the database password in plain (loopback): run it with {}=true (make bench does)",
        authtrail_forwarder::config::secret::ALLOW_PLAINTEXT_SECRETS_ENV
    );
    let server = Server::start();
    let (records, data_bytes) = kinesis_records();
    let event = event_payload(records.iter().map(String::as_str));
    let inputs: KinesisBatch = serde_json::from_slice(event.as_bytes()).unwrap();
    println!(
        "postgres benchmark: {RECORDS} records of ~{} bytes in one batch into PostgreSQL 15 on loopback (TLS), default table, best of {} rounds",
        data_bytes / RECORDS,
        rounds()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("-- rows/s from one invocation's batch through the forwarder (target 20,000 rows/s) --");
        for (label, extra, fresh) in [
            ("pool 2 (default), 500 rows/chunk (default)", json!({}), true),
            ("pool 1", json!({"connectionPool": {"maxPoolSize": 1}}), true),
            ("pool 4", json!({"connectionPool": {"maxPoolSize": 4}}), true),
            ("pool 2, 1,000 rows/chunk", json!({"buffering": {"maxBatchedEvents": 1000}}), true),
            ("re-delivery: every row already there, pool 2", json!({}), false),
        ] {
            let best = deliver(&server, server.emitter(extra), &inputs, fresh).await;
            println!(
                "{label:<58} {:>8.1} ms/batch {:>10.0} rows/s",
                best.as_secs_f64() * 1000.0,
                RECORDS as f64 / best.as_secs_f64()
            );
        }
        println!("-- the storing alone, 500-row chunks: the emitter's COPY + INSERT ... SELECT against a multi-row INSERT --");
        let rows = default_rows(&inputs);
        for connections in [1, 2] {
            for (label, copy) in [("binary COPY + INSERT ... SELECT (the emitter's)", true), ("multi-row INSERT ... VALUES (before)", false)] {
                let best = store_alone(&server, &rows, connections, copy).await;
                println!(
                    "{label:<50} {connections} conn {:>8.1} ms {:>10.0} rows/s",
                    best.as_secs_f64() * 1000.0,
                    RECORDS as f64 / best.as_secs_f64()
                );
            }
        }
        println!("-- the real binary under the local Lambda runner (release build) --");
        let (rate, n, peak) = through_the_binary(&server, &records).await;
        println!(
            "authtrail-forwarder, {RECORDS} records in {n} invocations (6 MB payload limit): {rate:>10.0} rows/s, peak RSS (VmHWM) {}",
            peak.map_or("unknown".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
        );
    });
}
