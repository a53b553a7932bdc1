//! End-to-end tests of the forwarder's `postgres` emitter: real records put into moto's Kinesis
//! stream, read by the event-source runner and delivered by the real `authtrail-forwarder`
//! binary to a real PostgreSQL 15 on loopback (TLS on, throwaway CA given as `caBundle`). Rows
//! are read back with `psql`, a client other than the emitter's.
//!
//! One server per test binary (the harness's shared server); each test has its own database.
//! Needs `make venv` (moto), `make apt-deps` (postgresql-15) and the binaries built
//! (`cargo build -p authtrail-forwarder`; `make test` does all of it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use authtrail_harness::{
    Database, Emulator, Postgres, ScratchDir, bin_path, shared_postgres, workspace_root,
};
use authtrail_runner::kinesis::{EventContext, RecordInput, event_payload, record_json};
use authtrail_runner::{
    FunctionConfig, KinesisEventSource, KinesisSourceConfig, LambdaFunction, Outcome, SourceStats,
};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Fixtures: Keycloak events in the Contract 1 envelope and Foxpass records, as tests/forwarder.rs.
// ---------------------------------------------------------------------------------------------

const T0: i64 = 1_739_388_470_156;

fn ts(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn user_event(i: usize, kind: &str) -> Value {
    let t = T0 + i as i64;
    let mut event = json!({
        "id": format!("ev-{i:05}"), "time": t, "type": kind, "realmId": "9f1c1f2e-realm", "clientId": "account-console",
        "userId": format!("user-{i}"), "sessionId": format!("sess-{i}"), "ipAddress": format!("198.51.100.{}", i % 250),
        "details": {"auth_method": "openid-connect", "username": format!("alice{i}")}
    });
    if kind.ends_with("_ERROR") {
        event["error"] = json!("invalid_user_credentials");
    }
    json!({"timestamp": ts(t), "eventType": "user-event", "event": event})
}

fn admin_event(i: usize) -> Value {
    let t = T0 + i as i64;
    json!({"timestamp": ts(t), "eventType": "admin-event", "event": {
        "id": format!("ev-{i:05}"), "time": t, "realmId": "9f1c1f2e-realm",
        "authDetails": {"realmId": "master", "clientId": "admin-cli", "userId": "admin-1", "ipAddress": "203.0.113.9"},
        "operationType": "CREATE", "resourceType": "USER", "resourcePath": format!("users/u-{i}"),
        "representation": "{\"username\":\"carol\",\"enabled\":true}"
    }})
}

/// A Foxpass LDAP bind record: no `id` (its row id is the SHA-256 of the record's bytes).
fn foxpass(i: usize) -> Value {
    json!({"service": "ldap", "method": "bind", "message": "bind succeeded", "timestamp": ts(T0 + i as i64),
           "success": true, "user": format!("bob{i}"), "ip": "192.0.2.7"})
}

/// User events (LOGIN, LOGIN_ERROR), admin events and Foxpass records, in turn.
fn mixed(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| match i % 4 {
            0 => user_event(i, "LOGIN"),
            1 => user_event(i, "LOGIN_ERROR"),
            2 => admin_event(i),
            _ => foxpass(i),
        })
        .collect()
}

/// The line put into the stream for `v` (what the forwarder receives, byte for byte).
fn line(v: &Value) -> String {
    format!("{v}\n")
}

/// The row id the emitter gives a record: the event id, else a top-level id, else the hex
/// SHA-256 of the record's bytes as received (computed here by the database, not the emitter).
fn expected_id(db: &Database, v: &Value) -> String {
    if let Some(id) = v
        .pointer("/event/id")
        .or_else(|| v.get("id"))
        .and_then(Value::as_str)
    {
        return id.to_string();
    }
    let hex: String = line(v).bytes().map(|b| format!("{b:02x}")).collect();
    let rows = db
        .query(&format!(
            "SELECT encode(sha256(decode('{hex}', 'hex')), 'hex')"
        ))
        .unwrap();
    rows[0][0].clone()
}

// ---------------------------------------------------------------------------------------------
// The test bench: moto, a stream, a DLQ bucket, a database of the shared PostgreSQL, the
// forwarder under the runner.
// ---------------------------------------------------------------------------------------------

struct Bench {
    emu: Emulator,
    db: Database,
    port: u16,
    password: String,
    ca: PathBuf,
    scratch: ScratchDir,
    stream: String,
    /// A server of this test alone (for a test that stops it); `None`: the shared server.
    own: Option<Arc<std::sync::Mutex<Postgres>>>,
}

impl Bench {
    /// A bench on a database of the shared server.
    async fn new(name: &str) -> Self {
        Self::start(name, false).await
    }

    /// A bench on a server of its own (which the test may stop and start again).
    async fn with_own_server(name: &str) -> Self {
        Self::start(name, true).await
    }

    async fn start(name: &str, own_server: bool) -> Self {
        let emu = Emulator::start()
            .await
            .expect("moto_server (run `make venv`)");
        emu.create_stream(name, 1).await.unwrap();
        emu.create_bucket("dlq").await.unwrap();
        let db_name = name.replace('-', "_");
        let (db, port, password, ca, own) = tokio::task::spawn_blocking(move || {
            let own = own_server.then(|| {
                let pg = Postgres::start().expect("PostgreSQL 15 (make apt-deps)");
                Arc::new(std::sync::Mutex::new(pg))
            });
            let server: &std::sync::Mutex<Postgres> = match &own {
                Some(pg) => pg,
                None => shared_postgres().expect("PostgreSQL 15 (make apt-deps)"),
            };
            let (db, port, password, ca) = {
                let pg = server.lock().unwrap();
                (
                    pg.create_database(&db_name).unwrap(),
                    pg.port(),
                    pg.password().to_string(),
                    pg.ca_pem_path().to_path_buf(),
                )
            };
            (db, port, password, ca, own)
        })
        .await
        .unwrap();
        Self {
            emu,
            db,
            port,
            password,
            ca,
            scratch: ScratchDir::new("postgres-e2e").unwrap(),
            stream: name.into(),
            own,
        }
    }

    /// Stops this bench's own server (`pause`) or starts it again.
    async fn own_server(&self, up: bool) {
        let pg = self.own.clone().expect("a bench with its own server");
        tokio::task::spawn_blocking(move || {
            let mut pg = pg.lock().unwrap();
            if up { pg.resume() } else { pg.pause() }
        })
        .await
        .unwrap()
        .unwrap();
    }

    async fn create_secret(&self, name: &str, value: &str) -> String {
        let sm = aws_sdk_secretsmanager::Client::new(&self.emu.sdk_config().await);
        sm.create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .unwrap()
            .arn()
            .unwrap()
            .to_string()
    }

    /// A `postgres` emitter of this bench's database with the given extra keys.
    fn emitter(&self, extra: Value) -> Value {
        let mut e = json!({
            "name": "pg", "type": "postgres", "host": "127.0.0.1", "port": self.port,
            "database": self.db.name(), "username": "authtrail", "password": self.password,
            "caBundle": self.ca.display().to_string()
        });
        if let (Some(e), Value::Object(extra)) = (e.as_object_mut(), extra) {
            e.extend(extra);
        }
        e
    }

    async fn put(&self, records: &[Value]) {
        let kinesis = self.emu.kinesis().await;
        for chunk in records.chunks(500) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    PutRecordsRequestEntry::builder()
                        .data(Blob::new(line(v).into_bytes()))
                        .partition_key(format!("pk-{i}"))
                        .build()
                        .unwrap()
                })
                .collect::<Vec<_>>();
            let out = kinesis
                .put_records()
                .stream_name(&self.stream)
                .set_records(Some(entries))
                .send()
                .await
                .unwrap();
            assert_eq!(out.failed_record_count(), Some(0));
        }
    }

    fn function_config(&self, config: &Value) -> FunctionConfig {
        let bin = bin_path("authtrail-forwarder")
            .expect("build it first: cargo build -p authtrail-forwarder");
        let mut cfg = FunctionConfig::new("forwarder", bin)
            .with_env(self.emu.env())
            .with_env([
                ("FORWARDER_CONFIG".to_string(), config.to_string()),
                ("DLQ_BUCKET".to_string(), "dlq".to_string()),
                ("DLQ_PREFIX".to_string(), "dlq/".to_string()),
                ("AWS_LAMBDA_LOG_FORMAT".to_string(), "JSON".to_string()),
                // A local run: the tests give the database password in the configuration.
                (
                    "AUTHTRAIL_ALLOW_PLAINTEXT_SECRETS".to_string(),
                    "true".to_string(),
                ),
            ])
            .with_timeout(Duration::from_secs(20));
        cfg.inherit_env = false;
        cfg.echo_logs = std::env::var_os("AUTHTRAIL_ECHO_LOGS").is_some();
        cfg.log_file = Some(self.scratch.path().join("forwarder.log"));
        cfg
    }

    async fn forwarder(&self, config: &Value) -> Arc<LambdaFunction> {
        Arc::new(
            LambdaFunction::start(self.function_config(config))
                .await
                .unwrap(),
        )
    }

    async fn source(&self, f: &Arc<LambdaFunction>, batch_size: usize) -> KinesisEventSource {
        let mut cfg = KinesisSourceConfig::new(&self.stream);
        cfg.batch_size = batch_size;
        cfg.report_batch_item_failures = true;
        cfg.max_retry_attempts = 1000;
        cfg.retry_backoff = Duration::from_millis(200);
        cfg.poll_interval = Duration::from_millis(100);
        KinesisEventSource::new(&self.emu.sdk_config().await, cfg, f.clone())
            .await
            .unwrap()
    }

    /// The whole shard as one `KinesisEvent`, as Lambda sends it again when it retries.
    async fn whole_shard_event(&self) -> String {
        let kinesis = self.emu.kinesis().await;
        let shards = kinesis
            .list_shards()
            .stream_name(&self.stream)
            .send()
            .await
            .unwrap();
        let shard = shards.shards()[0].shard_id().to_string();
        let mut it = kinesis
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(&shard)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator()
            .map(str::to_string);
        let ctx = EventContext {
            region: self.emu.region().to_string(),
            stream_arn: format!(
                "arn:aws:kinesis:{}:123456789012:stream/{}",
                self.emu.region(),
                self.stream
            ),
            invoke_identity_arn: "arn:aws:iam::123456789012:role/authtrail-forwarder-role".into(),
        };
        let mut jsons = Vec::new();
        while let Some(iter) = it {
            let page = kinesis
                .get_records()
                .shard_iterator(iter)
                .send()
                .await
                .unwrap();
            if page.records().is_empty() {
                break;
            }
            for rec in page.records() {
                let at = rec.approximate_arrival_timestamp().unwrap();
                let input = RecordInput {
                    shard_id: &shard,
                    sequence_number: rec.sequence_number(),
                    partition_key: rec.partition_key().unwrap_or_default(),
                    data: rec.data().as_ref(),
                    arrival: chrono::DateTime::from_timestamp_millis(at.to_millis().unwrap())
                        .unwrap(),
                    encryption_type: None,
                };
                jsons.push(record_json(&ctx, &input).unwrap());
            }
            it = page.next_shard_iterator().map(str::to_string);
        }
        event_payload(jsons.iter().map(String::as_str))
    }

    /// Every dead letter (JSON lines under `dlq/`).
    async fn dead_letters(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for (_, body) in self.emu.objects("dlq", "dlq/").await.unwrap() {
            let text = String::from_utf8(body).unwrap();
            for l in text.lines().filter(|l| !l.trim().is_empty()) {
                out.push(serde_json::from_str(l).unwrap());
            }
        }
        out
    }

    /// Rows of `select` read back with `psql` (off the async runtime).
    async fn rows(&self, select: &str) -> Vec<Value> {
        let db = self.db.clone();
        let select = select.to_string();
        tokio::task::spawn_blocking(move || db.query_json(&select))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The init error message of a forwarder started with `config` (panics if it starts).
    async fn init_error(&self, config: &Value) -> String {
        let f = LambdaFunction::start(self.function_config(config))
            .await
            .unwrap();
        let inv = f.invoke(event_payload(std::iter::empty())).await.unwrap();
        match inv.outcome {
            Outcome::InitError { error_message, .. } => error_message,
            other => panic!("expected a cold-start refusal, got {other:?}"),
        }
    }
}

fn assert_drained_cleanly(stats: &SourceStats) {
    assert_eq!(stats.total.records_discarded, 0, "{stats:?}");
    assert_eq!(
        stats.total.function_errors + stats.total.crashes + stats.total.timeouts,
        0,
        "{stats:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_admin_and_foxpass_records_land_as_rows_exactly_once_after_a_retried_batch() {
    let b = Bench::new("pg-rows").await;
    // The migration applied the documented way (`psql -f`), before the forwarder starts.
    let migration =
        workspace_root().join("functions/forwarder/sql/postgres/001_authtrail_events.sql");
    let db = b.db.clone();
    tokio::task::spawn_blocking(move || db.execute_file(&migration))
        .await
        .unwrap()
        .unwrap();
    let config = json!({"emitters": [b.emitter(json!({"buffering": {"maxBatchedEvents": 7}}))]});
    let records = mixed(40);
    b.put(&records).await;
    let f = b.forwarder(&config).await;
    let stats = b.source(&f, 15).await.drain().await.unwrap();
    assert_drained_cleanly(&stats);
    assert!(b.dead_letters().await.is_empty());

    let db = b.db.clone();
    let recs = records.clone();
    let expected: BTreeSet<String> =
        tokio::task::spawn_blocking(move || recs.iter().map(|r| expected_id(&db, r)).collect())
            .await
            .unwrap();
    assert_eq!(expected.len(), 40);
    let select = "SELECT event_id, kind, type, time, realm, client, user_id, session_id, ip, \
                  resource_type, resource_path, error, event FROM authtrail_events ORDER BY event_id";
    let rows = b.rows(select).await;
    let ids: BTreeSet<String> = rows
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!((rows.len(), &ids), (40, &expected));

    // Columns as the contract has them, and the whole record as jsonb.
    let row = |id: &str| rows.iter().find(|r| r["event_id"] == id).unwrap().clone();
    let login_error = row("ev-00001");
    assert_eq!(
        (
            login_error["kind"].as_str(),
            login_error["type"].as_str(),
            login_error["realm"].as_str(),
            login_error["client"].as_str(),
            login_error["user_id"].as_str(),
            login_error["session_id"].as_str(),
            login_error["ip"].as_str(),
            login_error["error"].as_str(),
        ),
        (
            Some("user-event"),
            Some("LOGIN_ERROR"),
            Some("9f1c1f2e-realm"),
            Some("account-console"),
            Some("user-1"),
            Some("sess-1"),
            Some("198.51.100.1"),
            Some("invalid_user_credentials"),
        )
    );
    assert_eq!(login_error["event"], records[1]);
    let epoch = b
        .rows("SELECT (extract(epoch FROM time) * 1000)::bigint AS ms FROM authtrail_events WHERE event_id = 'ev-00001'")
        .await;
    assert_eq!(epoch[0]["ms"], json!(T0 + 1));
    let admin = row("ev-00002");
    assert_eq!(
        (
            admin["kind"].as_str(),
            admin["resource_type"].as_str(),
            admin["resource_path"].as_str(),
        ),
        (Some("admin-event"), Some("USER"), Some("users/u-2"))
    );
    assert_eq!(admin["event"], records[2]);
    let fox_id = expected_id(&b.db, &records[3]);
    let fox = row(&fox_id);
    assert_eq!(fox["kind"].as_str(), Some("other"));
    assert_eq!(fox["event"], records[3]);

    // Every row says where it came from: the stream, its one shard, distinct sequence numbers.
    let sources = b
        .rows("SELECT stream, shard, sequence_number FROM authtrail_events")
        .await;
    assert_eq!(sources.len(), 40);
    assert!(
        sources
            .iter()
            .all(|r| r["stream"].as_str() == Some(b.stream.as_str())
                && r["shard"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("shardId-"))),
        "{sources:?}"
    );
    let sequences: BTreeSet<&str> = sources
        .iter()
        .filter_map(|r| r["sequence_number"].as_str())
        .collect();
    assert_eq!(sequences.len(), 40, "one distinct sequence number per row");

    // Lambda retries the whole shard as one batch (other boundaries than the first delivery):
    // every record is done and no row is added or changed.
    let inv = f.invoke(b.whole_shard_event().await).await.unwrap();
    let resp: Value = inv.response_json().unwrap();
    assert_eq!(resp["batchItemFailures"], json!([]), "{resp}");
    assert_eq!(b.rows(select).await, rows, "the same rows, no duplicates");
    assert!(b.dead_letters().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_mappings_fill_a_custom_table_with_converted_columns_and_a_value_that_does_not_fit_is_dead_lettered()
 {
    let b = Bench::new("pg-mappings").await;
    let db = b.db.clone();
    tokio::task::spawn_blocking(move || {
        db.execute(
            "CREATE TABLE logins (event_id text PRIMARY KEY, at timestamptz NOT NULL, epoch_ms bigint, \
             username text, failed_reason text, details jsonb); \
             CREATE TABLE admin_changes (event_id text PRIMARY KEY, at timestamptz NOT NULL, \
             logged_at timestamptz, operation text, path text)",
        )
    })
    .await
    .unwrap()
    .unwrap();
    let config = json!({"emitters": [b.emitter(json!({
        "type": "jdbc",
        "createSchema": true,
        "tableMappings": [
            {"event": "user-event", "table": "logins", "fieldToColumn": {
                "/event/id": "event_id", "/timestamp": "at", "/event/time": "epoch_ms",
                "/event/details/username": "username", "/event/error": "failed_reason", "/event/details": "details"}},
            {"event": "admin-event", "table": "admin_changes", "fieldToColumn": {
                "/event/id": "event_id", "/event/time": "at", "/timestamp": "logged_at",
                "/event/operationType": "operation",
                "/event/resourcePath": "path"}}
        ]
    }))]});
    let mut records = mixed(12);
    // An admin event whose timestamp is no timestamp: its column refuses it.
    let mut bad = admin_event(12);
    bad["timestamp"] = json!("yesterday at noon");
    records.push(bad);
    b.put(&records).await;
    let f = b.forwarder(&config).await;
    let stats = b.source(&f, 100).await.drain().await.unwrap();
    assert_drained_cleanly(&stats);

    // User events: the RFC 3339 envelope timestamp as timestamptz, the epoch milliseconds as
    // bigint, strings and JSON as they are, an absent field as NULL.
    let logins = b
        .rows("SELECT event_id, (extract(epoch FROM at) * 1000)::bigint AS at_ms, epoch_ms, username, failed_reason, details FROM logins ORDER BY event_id")
        .await;
    let users: Vec<&Value> = records
        .iter()
        .filter(|r| r["eventType"] == "user-event")
        .collect();
    assert_eq!(logins.len(), users.len(), "{logins:?}");
    for (row, rec) in logins.iter().zip(&users) {
        assert_eq!(row["event_id"], rec["event"]["id"]);
        assert_eq!(row["at_ms"], rec["event"]["time"]);
        assert_eq!(row["epoch_ms"], rec["event"]["time"]);
        assert_eq!(row["username"], rec["event"]["details"]["username"]);
        assert_eq!(row["details"], rec["event"]["details"]);
        assert_eq!(
            row["failed_reason"],
            rec["event"].get("error").cloned().unwrap_or(Value::Null)
        );
    }
    // Admin events: the epoch milliseconds and the RFC 3339 timestamp both as timestamptz; the
    // bad one is not there.
    let changes = b
        .rows("SELECT event_id, (extract(epoch FROM at) * 1000)::bigint AS at_ms, (extract(epoch FROM logged_at) * 1000)::bigint AS logged_ms, operation, path FROM admin_changes ORDER BY event_id")
        .await;
    let admins: Vec<&Value> = records
        .iter()
        .filter(|r| r["eventType"] == "admin-event" && r["event"]["id"] != "ev-00012")
        .collect();
    assert_eq!(changes.len(), admins.len(), "{changes:?}");
    for (row, rec) in changes.iter().zip(&admins) {
        assert_eq!(row["event_id"], rec["event"]["id"]);
        assert_eq!(row["at_ms"], rec["event"]["time"]);
        assert_eq!(row["logged_ms"], rec["event"]["time"]);
        assert_eq!(row["operation"].as_str(), Some("CREATE"));
        assert_eq!(row["path"], rec["event"]["resourcePath"]);
    }
    // Records no mapping takes (Foxpass) go to the default table, which createSchema made.
    let others = b.rows("SELECT kind FROM authtrail_events").await;
    assert_eq!(others.len(), 3, "{others:?}");
    assert!(others.iter().all(|r| r["kind"] == "other"), "{others:?}");

    // The record whose value does not fit its column, and only it, is dead-lettered.
    let dlq = b.dead_letters().await;
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0]["emitter"], "pg", "{}", dlq[0]);
    assert_eq!(dlq[0]["record"]["event"]["id"], "ev-00012", "{}", dlq[0]);
    // The database's side of the refusal names the pointer and the column.
    let why = dlq[0]["response"].as_str().unwrap_or_default();
    assert!(
        why.contains("/timestamp") && why.contains("logged_at"),
        "{}",
        dlq[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_refused_at_cold_start_naming_the_key() {
    let b = Bench::new("pg-config").await;
    let db = b.db.clone();
    tokio::task::spawn_blocking(move || {
        db.execute("CREATE TABLE logins (event_id text PRIMARY KEY)")
    })
    .await
    .unwrap()
    .unwrap();

    // An unknown key.
    let unknown_key = json!({"emitters": [b.emitter(json!({"jdbcUrl": "jdbc:postgresql://127.0.0.1/authtrail"}))]});
    let message = b.init_error(&unknown_key).await;
    assert!(message.contains("jdbcUrl"), "{message}");

    // A mapping to a column the table does not have (known only from the database).
    let unknown_column = json!({"emitters": [b.emitter(json!({"tableMappings": [
        {"event": "user-event", "table": "logins", "fieldToColumn": {"/event/id": "event_id", "/event/userId": "no_such_column"}}
    ]}))]});
    let message = b.init_error(&unknown_column).await;
    assert!(
        message.contains("tableMappings") && message.contains("no_such_column"),
        "{message}"
    );

    // Plaintext to a host that is not loopback.
    let plaintext =
        json!({"emitters": [b.emitter(json!({"host": "db.example.com", "tls": false}))]});
    let message = b.init_error(&plaintext).await;
    assert!(message.contains("tls"), "{message}");
    assert!(
        !message.contains(&b.password),
        "the password never appears in an error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_down_for_a_while_loses_nothing_once_it_returns() {
    let b = Bench::with_own_server("pg-outage").await;
    // Without a spool: the outage is carried by Lambda's retries of the batch.
    let config = json!({
        "emitters": [b.emitter(json!({"createSchema": true, "connectionPool": {"maxPoolSize": 2, "connectionTimeout": 2}}))],
        "retry": {"maxAttempts": 2, "initialBackoffMs": 50, "maxBackoffMs": 200},
        "spool": {"enabled": false}
    });
    let records = mixed(60);
    b.put(&records[..20]).await;
    let f = b.forwarder(&config).await;
    // The first records land (the schema is made and the pool is warm), then the server stops.
    let stats = b.source(&f, 20).await.drain().await.unwrap();
    assert_drained_cleanly(&stats);
    b.own_server(false).await;
    b.put(&records[20..]).await;
    let source = b.source(&f, 20).await;
    let drain = source.drain();
    let recover = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        b.own_server(true).await;
    };
    let (stats, ()) = tokio::join!(drain, recover);
    let stats = stats.unwrap();
    assert_drained_cleanly(&stats);
    assert!(
        stats.total.retries >= 1,
        "the outage made Lambda retry: {stats:?}"
    );
    let rows = b
        .rows("SELECT event_id, count(*) OVER () AS n FROM authtrail_events")
        .await;
    let db = b.db.clone();
    let recs = records.clone();
    let expected: BTreeSet<String> =
        tokio::task::spawn_blocking(move || recs.iter().map(|r| expected_id(&db, r)).collect())
            .await
            .unwrap();
    let ids: BTreeSet<String> = rows
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!((rows.len(), ids), (60, expected), "every record once");
    assert!(b.dead_letters().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rds_managed_secret_supplies_host_port_database_user_and_password() {
    let b = Bench::new("pg-rds-secret").await;
    let secret = json!({"username": "authtrail", "password": b.password, "host": "127.0.0.1",
                        "port": b.port, "dbname": b.db.name(), "engine": "postgres"});
    let arn = b.create_secret("rds/authtrail", &secret.to_string()).await;
    let config = json!({"emitters": [{
        "name": "pg", "type": "postgres", "passwordSecretArn": arn,
        "caBundle": b.ca.display().to_string(), "createSchema": true
    }]});
    let records = mixed(8);
    b.put(&records).await;
    let f = b.forwarder(&config).await;
    let stats = b.source(&f, 100).await.drain().await.unwrap();
    assert_drained_cleanly(&stats);
    let rows = b.rows("SELECT kind FROM authtrail_events").await;
    assert_eq!(rows.len(), 8, "{rows:?}");
    assert!(b.dead_letters().await.is_empty());
    let log = std::fs::read_to_string(b.scratch.path().join("forwarder.log")).unwrap();
    assert!(
        !log.contains(&b.password),
        "the password never reaches the logs"
    );
}

/// With `iamAuth`, the real binary signs an RDS IAM token with the function's credentials (here
/// moto's test credentials) and logs in with it over verified TLS. A local PostgreSQL cannot
/// check an RDS token (only RDS can), so the login is refused: what this proves is the path
/// (token as the password, TLS on, the refusal an operator's problem: no row, a dead letter
/// with SQLSTATE 28P01) and that no token reaches the logs or the dead letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_iam_auth_the_token_is_the_login_over_tls_and_never_reaches_logs_or_dead_letters() {
    let b = Bench::new("pg-iam").await;
    let mut emitter = b.emitter(json!({"iamAuth": true, "createSchema": true}));
    emitter.as_object_mut().unwrap().remove("password");
    let config =
        json!({"emitters": [emitter], "retry": {"maxAttempts": 1}, "spool": {"enabled": false}});
    let records = mixed(4);
    b.put(&records).await;
    let f = b.forwarder(&config).await;
    let stats = b.source(&f, 100).await.drain().await.unwrap();
    assert_drained_cleanly(&stats);
    let letters = b.dead_letters().await;
    assert_eq!(letters.len(), 4, "{letters:?}");
    let text = serde_json::to_string(&letters).unwrap();
    assert!(
        text.contains("28P01"),
        "the server refused the login: {text}"
    );
    let log = std::fs::read_to_string(b.scratch.path().join("forwarder.log")).unwrap();
    for leaked in ["X-Amz-Signature", "X-Amz-Credential", "Action=connect"] {
        assert!(!text.contains(leaked), "{leaked} in the dead letters");
        assert!(!log.contains(leaked), "{leaked} in the forwarder's log");
    }
    let server_log = tokio::task::spawn_blocking(|| {
        let pg = shared_postgres().unwrap().lock().unwrap();
        std::fs::read_to_string(pg.log_path()).unwrap()
    })
    .await
    .unwrap();
    assert!(
        server_log.contains("password authentication failed for user \"authtrail\""),
        "the token reached the server as the password"
    );
    assert!(!server_log.contains("X-Amz-Signature"));
}

/// A row the server itself refuses (a `NOT NULL` and a `CHECK` of the table, which the emitter
/// cannot know before the statement runs): the chunk is split until each bad record is alone,
/// those are dead-lettered with the server's SQLSTATE, every other record of the chunk stored
/// once (what the COPY + `INSERT ... SELECT` path must keep from the multi-row `INSERT`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_the_server_refuses_are_split_out_and_dead_lettered_with_their_sqlstate() {
    let b = Bench::new("pg-refusals").await;
    let db = b.db.clone();
    tokio::task::spawn_blocking(move || {
        db.execute(
            "CREATE TABLE strict_logins (event_id text PRIMARY KEY, user_id text NOT NULL, \
             ip text CHECK (ip <> '203.0.113.66'))",
        )
    })
    .await
    .unwrap()
    .unwrap();
    let config = json!({"emitters": [b.emitter(json!({
        "createSchema": true,
        "tableMappings": [{"event": "user-event", "table": "strict_logins", "fieldToColumn": {
            "/event/id": "event_id", "/event/userId": "user_id", "/event/ipAddress": "ip"}}]
    }))], "spool": {"enabled": false}});
    let mut records: Vec<Value> = (0..30).map(|i| user_event(i, "LOGIN")).collect();
    records[7]["event"]
        .as_object_mut()
        .unwrap()
        .remove("userId");
    records[21]["event"]["ipAddress"] = json!("203.0.113.66");
    b.put(&records).await;
    let f = b.forwarder(&config).await;
    let stats = b.source(&f, 100).await.drain().await.unwrap();
    assert_drained_cleanly(&stats);

    let rows = b
        .rows("SELECT event_id FROM strict_logins ORDER BY event_id")
        .await;
    let stored: Vec<&str> = rows
        .iter()
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..30)
        .filter(|i| ![7, 21].contains(i))
        .map(|i| format!("ev-{i:05}"))
        .collect();
    assert_eq!(stored, expected);
    let mut dlq: Vec<(String, String)> = b
        .dead_letters()
        .await
        .iter()
        .map(|d| {
            (
                d["record"]["event"]["id"].as_str().unwrap().to_string(),
                d["status"].to_string(),
            )
        })
        .collect();
    dlq.sort();
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    assert!(
        dlq[0].0 == "ev-00007" && dlq[0].1.contains("23502"),
        "{dlq:?}"
    );
    assert!(
        dlq[1].0 == "ev-00021" && dlq[1].1.contains("23514"),
        "{dlq:?}"
    );
}
