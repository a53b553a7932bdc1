//! End-to-end tests of the forwarder's `jms` emitter: real records put into moto's Kinesis
//! stream, read by the event-source runner and delivered by the real `authtrail-forwarder`
//! binary over STOMP 1.2 with TLS (the throwaway CA given as `caBundle`) to a real Apache
//! ActiveMQ 5.17 on loopback. Messages are read back by a Python `stomp.py` subscriber, a client
//! other than the emitter's.
//!
//! One broker per test binary (the harness's shared broker); each test has its own
//! destinations. Needs `make venv` (moto, stomp.py), `make apt-deps` (activemq) and the binaries
//! built (`cargo build -p authtrail-forwarder`; `make test` does all of it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use authtrail_harness::activemq::{self, ActiveMq, Message, Subscriber, WRITER};
use authtrail_harness::{CutProxy, Emulator, ScratchDir, bin_path, venv_bin};
use authtrail_runner::kinesis::event_payload;
use authtrail_runner::{
    FunctionConfig, KinesisEventSource, KinesisSourceConfig, LambdaFunction, OnFailure, Outcome,
    SourceStats, invoke_scheduled,
};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use serde_json::{Value, json};
use siem_receiver::{Endpoint, IngestAuth, Receiver, ReceiverOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const T0: i64 = 1_739_388_470_156;
const DLQ: &str = "dlq";
const INGEST_TOKEN: &str = "ingest-token-jms";

// ---------------------------------------------------------------------------------------------
// Fixtures: Keycloak events in the Contract 1 envelope and Foxpass records.
// ---------------------------------------------------------------------------------------------

fn ts(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

const USER_TYPES: [&str; 4] = ["LOGIN", "LOGIN_ERROR", "LOGOUT", "CODE_TO_TOKEN"];
const ADMIN_OPS: [&str; 3] = ["CREATE", "UPDATE", "DELETE"];

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

fn admin_event(i: usize, op: &str) -> Value {
    let t = T0 + i as i64;
    json!({"timestamp": ts(t), "eventType": "admin-event", "event": {
        "id": format!("ev-{i:05}"), "time": t, "realmId": "9f1c1f2e-realm",
        "authDetails": {"realmId": "master", "clientId": "admin-cli", "userId": "admin-1", "ipAddress": "203.0.113.9"},
        "operationType": op, "resourceType": "USER", "resourcePath": format!("users/u-{i}"),
        "representation": "{\"username\":\"carol\",\"enabled\":true}"
    }})
}

/// A Foxpass record (LDAP bind or RADIUS authorize): no `id`, so its id is the SHA-256 of its
/// bytes as received.
fn foxpass(i: usize, service: &str, method: &str) -> Value {
    json!({"service": service, "method": method, "message": format!("{method} succeeded"), "timestamp": ts(T0 + i as i64),
           "success": true, "user": format!("bob{i}"), "ip": "192.0.2.7"})
}

/// One record of the mixed batch and the event type the emitter names it by.
fn mixed(i: usize) -> (Value, String) {
    match i % 20 {
        0..=11 => {
            let kind = USER_TYPES[i % 4];
            (user_event(i, kind), kind.to_string())
        }
        12..=17 => {
            let op = ADMIN_OPS[i % 3];
            (admin_event(i, op), format!("USER:{op}"))
        }
        18 => (foxpass(i, "ldap", "bind"), "ldap:bind".into()),
        _ => (foxpass(i, "radius", "authorize"), "radius:authorize".into()),
    }
}

fn login(i: usize) -> Value {
    user_event(i, "LOGIN")
}

/// The line put into the stream for `v` (what the forwarder receives, byte for byte).
fn line(v: &Value) -> String {
    format!("{v}\n")
}

/// The hex SHA-256 of each of `lines` (computed by Python's hashlib, not by the forwarder).
fn sha256_hex(lines: &[String]) -> Vec<String> {
    let out = std::process::Command::new(venv_bin("python3"))
        .args([
            "-c",
            "import hashlib, json, sys\nfor l in json.load(sys.stdin): print(hashlib.sha256(l.encode()).hexdigest())",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(serde_json::to_string(lines).unwrap().as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Each message's event id (`authtrailEventId`) and how often it came.
fn id_counts(messages: &[Message]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for m in messages {
        let id = m.header("authtrailEventId").unwrap_or("<none>").to_string();
        *out.entry(id).or_default() += 1;
    }
    out
}

/// Records the forwarder reported delivered by emitter `name` (its EMF `Delivered` metric,
/// summed over the invocations so far).
fn delivered_by(f: &LambdaFunction, name: &str) -> f64 {
    f.log_lines()
        .iter()
        .filter_map(|l| {
            l.find('{')
                .and_then(|i| serde_json::from_str::<Value>(&l[i..]).ok())
        })
        .filter(|v| v.get("_aws").is_some() && v["Emitter"] == name)
        .filter_map(|v| v.get("Delivered").and_then(Value::as_f64))
        .sum()
}

/// Every id of `want` arrived exactly once, and nothing else did.
fn assert_each_once(what: &str, got: &BTreeMap<String, usize>, want: &BTreeSet<String>) {
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{what}: received more than once: {twice:?}"
    );
    let got_ids: BTreeSet<String> = got.keys().cloned().collect();
    let missing: Vec<_> = want.difference(&got_ids).take(10).collect();
    let extra: Vec<_> = got_ids.difference(want).take(10).collect();
    assert!(missing.is_empty(), "{what}: never received {missing:?}");
    assert!(extra.is_empty(), "{what}: unexpected {extra:?}");
}

// ---------------------------------------------------------------------------------------------
// The bench: moto, a stream, the dead-letter bucket (and spool), the shared broker, the
// forwarder under the runner.
// ---------------------------------------------------------------------------------------------

struct Bench {
    emu: Emulator,
    mq: &'static ActiveMq,
    scratch: ScratchDir,
    stream: String,
}

/// A Kinesis event source running in the background until [`Running::stop`].
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<SourceStats>,
}

impl Running {
    async fn stop(self) -> SourceStats {
        let _ = self.stop.send(());
        self.task.await.unwrap()
    }
}

impl Bench {
    async fn new(stream: &str) -> Self {
        let emu = Emulator::start()
            .await
            .expect("moto_server (run `make venv`)");
        emu.create_stream(stream, 1).await.unwrap();
        emu.create_bucket(DLQ).await.unwrap();
        let mq = tokio::task::spawn_blocking(activemq::shared)
            .await
            .unwrap()
            .expect("ActiveMQ (make apt-deps)");
        Self {
            emu,
            mq,
            scratch: ScratchDir::new("jms-e2e").unwrap(),
            stream: stream.into(),
        }
    }

    /// A `jms` emitter to this broker's STOMP-over-TLS port (or `port`, a proxy in front of it).
    fn emitter(&self, name: &str, destination: &str, port: Option<u16>, extra: Value) -> Value {
        let port = port.unwrap_or(self.mq.stomp_ssl_port());
        let mut e = json!({
            "name": name, "type": "jms", "url": format!("stomp+ssl://127.0.0.1:{port}"),
            "destination": destination, "username": WRITER, "password": self.mq.writer_password(),
            "caBundle": self.mq.ca_pem_path().display().to_string()
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
                ("DLQ_BUCKET".to_string(), DLQ.to_string()),
                ("DLQ_PREFIX".to_string(), "dlq/".to_string()),
                ("SPOOL_PREFIX".to_string(), "spool/".to_string()),
                ("AWS_LAMBDA_LOG_FORMAT".to_string(), "JSON".to_string()),
                // A local run: the broker's password is given in the configuration.
                (
                    "AUTHTRAIL_ALLOW_PLAINTEXT_SECRETS".to_string(),
                    "true".to_string(),
                ),
            ])
            .with_timeout(Duration::from_secs(30));
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

    /// The mapping as the templates set it: partial-batch responses, retries bounded by age,
    /// an S3 on-failure destination in the dead-letter bucket.
    async fn source(&self, f: &Arc<LambdaFunction>, batch_size: usize) -> KinesisEventSource {
        let mut cfg = KinesisSourceConfig::new(&self.stream);
        cfg.batch_size = batch_size;
        cfg.report_batch_item_failures = true;
        cfg.bisect_batch_on_function_error = true;
        cfg.max_retry_attempts = 10_000;
        cfg.max_record_age = Some(Duration::from_secs(86_400));
        cfg.on_failure = Some(OnFailure::S3 {
            bucket: DLQ.into(),
            prefix: String::new(),
        });
        cfg.retry_backoff = Duration::from_millis(200);
        cfg.poll_interval = Duration::from_millis(100);
        KinesisEventSource::new(&self.emu.sdk_config().await, cfg, f.clone())
            .await
            .unwrap()
    }

    async fn run(&self, f: &Arc<LambdaFunction>, batch_size: usize) -> Running {
        let src = self.source(f, batch_size).await;
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            src.run_until(async {
                let _ = rx.await;
            })
            .await
            .unwrap()
        });
        Running { stop, task }
    }

    async fn keys(&self, prefix: &str) -> Vec<String> {
        self.emu
            .objects(DLQ, prefix)
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    /// The spooled lines of `emitter` (records waiting), as JSON.
    async fn spooled(&self, emitter: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for (key, body) in self
            .emu
            .objects(DLQ, &format!("spool/{emitter}/"))
            .await
            .unwrap()
        {
            if key.ends_with(".jsonl") {
                let text = String::from_utf8(body).unwrap();
                out.extend(
                    text.lines()
                        .map(|l| serde_json::from_str::<Value>(l).unwrap()),
                );
            }
        }
        out
    }

    /// Nothing given up: no dead letter, no batch in the on-failure destination.
    async fn assert_nothing_given_up(&self, stats: &SourceStats) {
        assert_eq!(stats.total.records_discarded, 0, "{stats:?}");
        assert_eq!(stats.total.records_expired, 0, "{stats:?}");
        assert!(self.keys("dlq/").await.is_empty(), "dead letters");
        assert!(
            self.keys("aws/lambda/").await.is_empty(),
            "failure destination"
        );
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

    fn log(&self) -> String {
        std::fs::read_to_string(self.scratch.path().join("forwarder.log")).unwrap_or_default()
    }
}

/// A fast retry budget (so an outage outlasts many invocations' budgets) and a short probe.
fn config(emitters: Value) -> Value {
    json!({
        "emitters": emitters,
        "retry": {"maxAttempts": 2, "initialBackoffMs": 50, "maxBackoffMs": 200},
        "spool": {"redriveBudgetInSec": 5, "probeTimeoutInSec": 1}
    })
}

async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn subscribe(mq: &ActiveMq, destination: &str) -> Subscriber {
    mq.subscribe(destination)
        .await
        .expect("stomp.py subscriber (make venv)")
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2000_record_batch_with_include_and_exclude_rules_reaches_the_topic_once_each_as_json_text_messages()
 {
    let b = Bench::new("jms-topic").await;
    eprintln!("ActiveMQ started in {:?}", b.mq.startup_time());
    // A topic keeps nothing for absent subscribers: subscribe before anything is sent.
    let mut sub = subscribe(b.mq, "/topic/audit.e2e").await;
    let emitter = b.emitter(
        "mq",
        "topic://audit.e2e",
        None,
        json!({"include": ["user-event", "admin-event", "ldap"], "exclude": ["LOGIN_ERROR", "DELETE"]}),
    );
    let records: Vec<(Value, String)> = (0..2000).map(mixed).collect();
    let values: Vec<Value> = records.iter().map(|(v, _)| v.clone()).collect();
    b.put(&values).await;
    let f = b.forwarder(&config(json!([emitter]))).await;
    let stats = b.source(&f, 2000).await.drain().await.unwrap();
    assert_eq!(stats.total.records_discarded, 0, "{stats:?}");
    assert_eq!(
        stats.total.function_errors + stats.total.crashes,
        0,
        "{stats:?}"
    );

    // What the rules let through: no LOGIN_ERROR, no admin DELETE, no RADIUS record.
    let kept: Vec<&(Value, String)> = records
        .iter()
        .filter(|(_, t)| t != "LOGIN_ERROR" && t != "USER:DELETE" && t != "radius:authorize")
        .collect();
    let fox_lines: Vec<String> = kept
        .iter()
        .filter(|(v, _)| v.get("service").is_some())
        .map(|(v, _)| line(v))
        .collect();
    let mut fox_ids = sha256_hex(&fox_lines).into_iter();
    let expected: BTreeMap<String, (&Value, &str)> = kept
        .iter()
        .map(|(v, t)| {
            let id = match v.pointer("/event/id").and_then(Value::as_str) {
                Some(id) => id.to_string(),
                None => fox_ids.next().unwrap(),
            };
            (id, (v, t.as_str()))
        })
        .collect();
    assert!(
        expected.len() > 1000 && expected.len() < 2000,
        "{}",
        expected.len()
    );

    let got = sub
        .wait_for(
            expected.len(),
            Duration::from_secs(90),
            Duration::from_secs(1),
        )
        .await
        .to_vec();
    assert!(sub.errors().is_empty(), "{:?}", sub.errors());
    let want: BTreeSet<String> = expected.keys().cloned().collect();
    assert_each_once("topic subscriber", &id_counts(&got), &want);
    for m in &got {
        let id = m.header("authtrailEventId").unwrap();
        let (record, event_type) = expected[id];
        let body: Value = serde_json::from_str(&m.body).unwrap();
        assert_eq!(&body, record, "body of {id}");
        assert_eq!(m.header("correlation-id"), Some(id), "JMSCorrelationID");
        assert_eq!(m.header("authtrailEventType"), Some(event_type));
        let kind = record["eventType"].as_str().unwrap_or("other");
        assert_eq!(m.header("authtrailEventKind"), Some(kind));
        assert_eq!(m.header("content-type"), Some("application/json"));
        assert_eq!(m.header("persistent"), Some("true"));
        assert_eq!(m.header("destination"), Some("/topic/audit.e2e"));
        assert_eq!(
            m.header("content-length"),
            None,
            "a TextMessage, not a BytesMessage"
        );
    }
    assert!(b.keys("dlq/").await.is_empty());
    assert!(b.spooled("mq").await.is_empty());
    sub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_unreachable_for_a_while_loses_nothing_once_it_returns_and_the_other_emitter_gets_each_record_once()
 {
    let b = Bench::new("jms-outage").await;
    let mut sub = subscribe(b.mq, "/queue/audit.outage").await;
    let proxy = CutProxy::start(b.mq.stomp_ssl_port()).await.unwrap();
    let receiver = Receiver::start(
        &b.scratch.path().join("receiver"),
        ReceiverOptions {
            ingest_auth: IngestAuth::Bearer(INGEST_TOKEN.into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mq = b.emitter(
        "mq",
        "queue://audit.outage",
        Some(proxy.port()),
        json!({"connectTimeout": 1000, "receiptTimeout": 2000, "emitTimeoutInSec": 5}),
    );
    let webhook = json!({"name": "webhook", "type": "http", "url": format!("{}/ingest", receiver.url()),
                         "token": INGEST_TOKEN, "caBundle": receiver.ca_path().display().to_string(), "emitTimeoutInSec": 2});
    let f = b.forwarder(&config(json!([mq, webhook]))).await;
    let running = b.run(&f, 10).await;
    let at_receiver = || {
        let mut out = BTreeMap::new();
        for r in receiver.received() {
            if r.endpoint == Endpoint::Ingest {
                for id in r
                    .events
                    .iter()
                    .filter_map(|v| v.pointer("/event/id")?.as_str())
                {
                    *out.entry(id.to_string()).or_insert(0usize) += 1;
                }
            }
        }
        out
    };
    let ids = |n: usize| -> BTreeSet<String> { (0..n).map(|i| format!("ev-{i:05}")).collect() };

    let all: Vec<Value> = (0..140).map(login).collect();
    b.put(&all[..20]).await;
    // Before the cut, the forwarder has seen every receipt of these (the broker dispatches a
    // message to consumers before its receipt reaches the producer).
    wait_until(Duration::from_secs(30), "first records receipted", || {
        delivered_by(&f, "mq") >= 20.0
    })
    .await;
    wait_until(
        Duration::from_secs(30),
        "first records at the receiver",
        || at_receiver().len() == 20,
    )
    .await;

    // The broker unreachable: its records are retried, then spooled; the webhook keeps up.
    proxy.cut();
    for wave in 0..5 {
        b.put(&all[20 + wave * 20..40 + wave * 20]).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    wait_until(Duration::from_secs(60), "the webhook kept up", || {
        at_receiver().len() == 120
    })
    .await;
    let start = Instant::now();
    while b.spooled("mq").await.len() < 100 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the outage's records spooled"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let spooled = b.spooled("mq").await;
    assert!(proxy.refused() > 0, "the emitter tried to reach the broker");
    assert!(
        spooled
            .iter()
            .all(|l| ["connect", "closed", "tls", "timeout", "spooled"]
                .contains(&l["status"].as_str().unwrap_or_default())),
        "{:?}",
        spooled.first()
    );

    // Back: the spool is redriven (scheduled invocations) and live records flow again.
    proxy.restore();
    b.put(&all[120..]).await;
    let start = Instant::now();
    while id_counts(sub.messages()).len() < 140 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "redrive: {} of 140 at the broker",
            id_counts(sub.messages()).len()
        );
        let inv = invoke_scheduled(&f, "authtrail-forwarder-redrive")
            .await
            .unwrap();
        assert!(inv.is_success(), "scheduled redrive failed: {inv:?}");
        sub.wait_for(140, Duration::from_millis(500), Duration::ZERO)
            .await;
    }
    wait_until(
        Duration::from_secs(30),
        "the webhook got the last wave",
        || at_receiver().len() == 140,
    )
    .await;
    let stats = running.stop().await;
    sub.wait_for(140, Duration::ZERO, Duration::from_secs(1))
        .await;

    assert_each_once("webhook (never down)", &at_receiver(), &ids(140));
    assert_each_once(
        "ActiveMQ queue (down, then back)",
        &id_counts(sub.messages()),
        &ids(140),
    );
    b.assert_nothing_given_up(&stats).await;
    assert!(b.spooled("mq").await.is_empty(), "spool drained");
    assert!(
        !b.log().contains(b.mq.writer_password()),
        "no password in the logs"
    );
    sub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_or_destination_leaves_the_records_spooled_with_the_brokers_answer_none_dead_lettered()
 {
    let b = Bench::new("jms-access").await;
    let mut sub = subscribe(b.mq, "/queue/audit.access").await;
    let good = b.emitter("good", "queue://audit.access", None, json!({}));
    let bad_login = b.emitter(
        "badlogin",
        "queue://audit.access",
        None,
        json!({"password": "not-the-password"}),
    );
    let forbidden = b.emitter("forbidden", "queue://forbidden.x", None, json!({}));
    let records: Vec<Value> = (0..5).map(login).collect();
    b.put(&records).await;
    let f = b
        .forwarder(&config(json!([good, bad_login, forbidden])))
        .await;
    let stats = b.source(&f, 100).await.drain().await.unwrap();
    b.assert_nothing_given_up(&stats).await;
    let got = sub
        .wait_for(5, Duration::from_secs(30), Duration::from_millis(500))
        .await;
    assert_eq!(id_counts(got).len(), 5, "the good emitter delivered");
    let login_refused = b.spooled("badlogin").await;
    assert_eq!(login_refused.len(), 5, "{login_refused:?}");
    assert!(
        login_refused.iter().all(|l| l["status"] == "stomp-error"
            && l["reason"]
                .as_str()
                .is_some_and(|r| r.contains("password is invalid"))),
        "{:?}",
        login_refused[0]
    );
    let write_refused = b.spooled("forbidden").await;
    assert_eq!(write_refused.len(), 5, "{write_refused:?}");
    assert!(
        write_refused.iter().all(|l| l["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not authorized to write"))),
        "{:?}",
        write_refused[0]
    );
    assert!(!b.log().contains("not-the-password") && !b.log().contains(b.mq.writer_password()));
    sub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_refused_at_cold_start_naming_the_key() {
    let b = Bench::new("jms-config").await;
    let base = b.emitter("mq", "topic://audit", None, json!({}));
    let with = |change: Value| {
        let mut e = base.clone();
        for (k, v) in change.as_object().unwrap() {
            if v.is_null() {
                e.as_object_mut().unwrap().remove(k);
            } else {
                e[k] = v.clone();
            }
        }
        json!({"emitters": [e]})
    };
    for (change, must_name) in [
        (json!({"brokerURL": "tcp://127.0.0.1:61616"}), "brokerURL"),
        (json!({"destination": null}), "destination"),
        (json!({"url": "stomp://broker.example.com:61613"}), "url"),
        (
            json!({"url": "amqps://b-1.mq.eu-west-1.amazonaws.com:5671"}),
            "amqps",
        ),
        (json!({"deliveryMode": "SOMETIMES"}), "deliveryMode"),
    ] {
        let message = b.init_error(&with(change.clone())).await;
        assert!(message.contains(must_name), "{change}: {message}");
        assert!(
            !message.contains(b.mq.writer_password()),
            "no password in {message}"
        );
    }
}
