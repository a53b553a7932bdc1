//! End-to-end tests of the forwarder: real records put into moto's Kinesis stream, read by the
//! event-source runner and delivered by the real `authtrail-forwarder` binary to real receivers:
//! the local HTTPS SIEM receiver (Splunk HEC, Elasticsearch `_bulk`, generic `/ingest`, with a
//! self-signed CA passed as the emitters' `caBundle`) and a real rsyslog on loopback.
//!
//! Needs `make venv` (moto), `make apt-deps` (rsyslog, rsyslog-gnutls) and the binaries built
//! (`cargo build -p authtrail-forwarder`; `make test` does all of it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use authtrail_harness::{Emulator, ScratchDir, bin_path};
use authtrail_runner::{
    FunctionConfig, KinesisEventSource, KinesisSourceConfig, LambdaFunction, SourceStats,
};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use serde_json::{Value, json};
use siem_receiver::{Endpoint, IngestAuth, Receiver, ReceiverOptions, Rsyslog};

const SPLUNK_TOKEN: &str = "hec-token-e2e";
const INGEST_TOKEN: &str = "ingest-token-e2e";
const HMAC_KEY: &str = "e2e-hmac-key-never-logged";

// ---------------------------------------------------------------------------------------------
// Fixtures: real payload shapes (Keycloak EventRepresentation / AdminEventRepresentation in the
// Contract 1 envelope, Foxpass LDAP/RADIUS records).
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
        "userId": format!("user-{i}"), "sessionId": format!("sess-{i}"), "ipAddress": format!("10.20.{}.{}", i / 250, i % 250),
        "details": {"auth_method": "openid-connect", "username": format!("alice{i}"), "code_id": format!("code-{i}"), "redirect_uri": "https://app.example/cb"}
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

fn foxpass(i: usize) -> Value {
    json!({"service": "ldap", "method": "bind", "message": "bind succeeded", "timestamp": ts(T0 + i as i64),
           "success": true, "user": "bob", "ip": "192.0.2.7", "id": format!("ev-{i:05}")})
}

/// A mix of user events (LOGIN, LOGIN_ERROR, REFRESH_TOKEN), admin events and Foxpass records;
/// every record has a unique `ev-NNNNN` id.
fn mixed(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| match i % 5 {
            0 => user_event(i, "LOGIN"),
            1 => user_event(i, "LOGIN_ERROR"),
            2 => user_event(i, "REFRESH_TOKEN"),
            3 => admin_event(i),
            _ => foxpass(i),
        })
        .collect()
}

fn id_of(v: &Value) -> String {
    v.pointer("/event/id")
        .or_else(|| v.get("id"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// The test bench: moto, a stream, a DLQ bucket, the receiver, the forwarder under the runner.
// ---------------------------------------------------------------------------------------------

struct Bench {
    emu: Emulator,
    receiver: Receiver,
    scratch: ScratchDir,
    stream: String,
}

impl Bench {
    async fn new(stream: &str) -> Self {
        let emu = Emulator::start()
            .await
            .expect("moto_server (run `make venv`)");
        emu.create_stream(stream, 1).await.unwrap();
        emu.create_bucket("dlq").await.unwrap();
        let scratch = ScratchDir::new("forwarder-e2e").unwrap();
        let options = ReceiverOptions {
            splunk_token: SPLUNK_TOKEN.into(),
            ingest_auth: IngestAuth::Bearer(INGEST_TOKEN.into()),
            ..Default::default()
        };
        let receiver = Receiver::start(&scratch.path().join("certs"), options)
            .await
            .unwrap();
        Self {
            emu,
            receiver,
            scratch,
            stream: stream.into(),
        }
    }

    fn ca(&self) -> String {
        self.receiver.ca_path().display().to_string()
    }

    async fn put(&self, records: &[String]) {
        let kinesis = self.emu.kinesis().await;
        for chunk in records.chunks(500) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    PutRecordsRequestEntry::builder()
                        .data(Blob::new(d.as_bytes()))
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

    async fn put_json(&self, records: &[Value]) {
        let lines: Vec<String> = records.iter().map(|v| format!("{v}\n")).collect();
        self.put(&lines).await;
    }

    async fn forwarder(&self, config: &Value) -> Arc<LambdaFunction> {
        let bin = bin_path("authtrail-forwarder")
            .expect("build it first: cargo build -p authtrail-forwarder");
        let mut cfg = FunctionConfig::new("forwarder", bin)
            .with_env(self.emu.env())
            .with_env([
                ("FORWARDER_CONFIG".to_string(), config.to_string()),
                ("DLQ_BUCKET".to_string(), "dlq".to_string()),
                ("DLQ_PREFIX".to_string(), "dlq/".to_string()),
                ("AWS_LAMBDA_LOG_FORMAT".to_string(), "JSON".to_string()),
                // A local run: the tests give tokens in the configuration.
                (
                    "AUTHTRAIL_ALLOW_PLAINTEXT_SECRETS".to_string(),
                    "true".to_string(),
                ),
            ])
            .with_timeout(Duration::from_secs(15));
        cfg.inherit_env = false;
        cfg.echo_logs = std::env::var_os("AUTHTRAIL_ECHO_LOGS").is_some();
        cfg.log_file = Some(self.scratch.path().join("forwarder.log"));
        Arc::new(LambdaFunction::start(cfg).await.unwrap())
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

    /// Every dead letter in the bucket with the key of its object: JSON-lines objects (one
    /// letter per line) and the single-letter `.json` objects of earlier versions.
    async fn dead_letters(&self) -> Vec<(String, Value)> {
        self.json_lines("dlq/").await
    }

    /// Every JSON object under `prefix` of the bucket, one per line of each object (an object
    /// that is one JSON value, pretty-printed or not, is one), with its object's key.
    async fn json_lines(&self, prefix: &str) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for (key, body) in self.emu.objects("dlq", prefix).await.unwrap() {
            match serde_json::from_slice::<Value>(&body) {
                Ok(one) => out.push((key, one)),
                Err(_) => {
                    let text = String::from_utf8(body).unwrap();
                    for line in text.lines().filter(|l| !l.trim().is_empty()) {
                        out.push((key.clone(), serde_json::from_str(line).unwrap()));
                    }
                }
            }
        }
        out
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
}

fn all_bytes(receiver: &Receiver) -> String {
    serde_json::to_string(&receiver.received()).unwrap()
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
async fn http_splunk_and_elasticsearch_receive_their_wire_formats_filtered_and_redacted() {
    let b = Bench::new("fwd-http").await;
    let hmac_arn = b
        .create_secret("forwarder/hmac", &json!({"hmacKey": HMAC_KEY}).to_string())
        .await;
    let url = b.receiver.url();
    let config = json!({
        "emitters": [
            {"name": "splunk", "type": "splunk-hec", "url": format!("{url}/services/collector/event"), "token": SPLUNK_TOKEN,
             "caBundle": b.ca(), "include": ["LOGIN_ERROR", "admin-event"], "sourcetype": "authtrail:event", "index": "security"},
            {"name": "webhook", "type": "http", "url": format!("{url}/ingest"), "token": INGEST_TOKEN, "caBundle": b.ca(),
             "headers": {"X-Source": "authtrail"}, "exclude": ["REFRESH_TOKEN"], "format": "json-array", "gzip": true},
            {"name": "elastic", "type": "elasticsearch", "url": url, "index": "audit", "caBundle": b.ca(),
             "buffering": {"maxBatchedEvents": 7}},
            {"name": "quiet", "type": "stdout", "enabled": false}
        ],
        "filterPolicies": {"field": {"excludeIf": ["/event/details/code_id"], "includeIf": []}},
        "redaction": {"mode": "hash", "fields": ["/event/ipAddress", "/event/details/username", "/event/authDetails/ipAddress"], "hmacKeySecretArn": hmac_arn},
        "retry": {"maxAttempts": 2, "initialBackoffMs": 50, "maxBackoffMs": 200}
    });
    let records = mixed(50);
    b.put_json(&records).await;
    b.put(&["this is not json\n".to_string()]).await;
    let f = b.forwarder(&config).await;
    let stats = b.source(&f, 100).await.drain().await.unwrap();
    assert_drained_cleanly(&stats);
    assert_eq!(stats.total.retries, 0, "{stats:?}");
    assert!(
        b.receiver.rejections().is_empty(),
        "{:?}",
        b.receiver.rejections()
    );

    // Splunk: only LOGIN_ERROR and admin events, each a HEC event object.
    let splunk = b.receiver.events(Endpoint::SplunkHec);
    let expected: BTreeSet<String> = records
        .iter()
        .filter(|r| {
            r["eventType"] == "admin-event"
                || r.pointer("/event/type") == Some(&json!("LOGIN_ERROR"))
        })
        .map(id_of)
        .collect();
    assert_eq!(
        splunk
            .iter()
            .map(|e| id_of(&e["event"]))
            .collect::<BTreeSet<_>>(),
        expected
    );
    for e in &splunk {
        assert_eq!(
            (
                e["host"].as_str(),
                e["source"].as_str(),
                e["sourcetype"].as_str(),
                e["index"].as_str()
            ),
            (
                Some("authtrail"),
                Some("authtrail"),
                Some("authtrail:event"),
                Some("security")
            )
        );
        let t = e["event"]["event"]["time"].as_i64().unwrap();
        assert_eq!((e["time"].as_f64().unwrap() * 1000.0).round() as i64, t);
    }

    // Webhook: everything except REFRESH_TOKEN, gzip JSON arrays with the bearer token.
    let ingest = b
        .receiver
        .received()
        .into_iter()
        .filter(|r| r.endpoint == Endpoint::Ingest)
        .collect::<Vec<_>>();
    assert!(
        ingest
            .iter()
            .all(|r| r.gzip && r.content_type.as_deref() == Some("application/json"))
    );
    let webhook_ids: BTreeSet<String> = ingest
        .iter()
        .flat_map(|r| r.events.iter().map(id_of))
        .collect();
    let not_refresh: BTreeSet<String> = records
        .iter()
        .filter(|r| r.pointer("/event/type") != Some(&json!("REFRESH_TOKEN")))
        .map(id_of)
        .collect();
    assert_eq!(webhook_ids, not_refresh);

    // Elasticsearch: every record, _id = the event id, in requests of at most 7 documents.
    let docs = b.receiver.documents();
    assert_eq!(docs.len(), 50);
    assert!(
        docs.keys()
            .all(|(index, id)| index == "audit" && id.starts_with("ev-"))
    );
    let es_requests = b
        .receiver
        .received()
        .into_iter()
        .filter(|r| r.endpoint == Endpoint::Elasticsearch)
        .collect::<Vec<_>>();
    assert!(es_requests.iter().all(|r| r.events.len() <= 7 && r.gzip));
    assert_eq!(es_requests.len(), 50usize.div_ceil(7));

    // Filter policy and redaction, on the received bytes.
    let bytes = all_bytes(&b.receiver);
    assert!(!bytes.contains("code_id"), "excludeIf field leaked");
    assert!(
        !bytes.contains("10.20.") && !bytes.contains("203.0.113.9") && !bytes.contains("alice"),
        "redacted values leaked"
    );
    let doc = &docs[&("audit".to_string(), "ev-00001".to_string())];
    let ip = doc
        .pointer("/event/ipAddress")
        .and_then(Value::as_str)
        .unwrap();
    assert!(
        ip.starts_with("hmac-sha256:") && ip.len() == "hmac-sha256:".len() + 64,
        "{ip}"
    );
    assert_eq!(
        doc.pointer("/event/details/redirect_uri")
            .and_then(Value::as_str),
        Some("https://app.example/cb")
    );
    assert!(
        !std::fs::read_to_string(b.scratch.path().join("forwarder.log"))
            .unwrap()
            .contains(HMAC_KEY)
    );

    // The malformed record went to the dead-letter prefix with its bytes, and blocked nothing.
    let dlq = b.dead_letters().await;
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    let (key, letter) = &dlq[0];
    assert!(
        key.ends_with(".jsonl") && key.contains("/fwd-http-shardId-000000000000-"),
        "{key}"
    );
    assert_eq!(letter["emitter"], "malformed", "{letter}");
    assert_eq!(letter["dataBase64"], "dGhpcyBpcyBub3QganNvbgo=");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_over_tcp_tls_and_udp_reaches_rsyslog_as_rfc5424_with_facility_and_mapped_severity()
{
    let b = Bench::new("fwd-syslog").await;
    let rsyslog = Rsyslog::start(&b.scratch.path().join("rsyslog"), b.receiver.certs())
        .await
        .expect("rsyslog (make apt-deps)");
    let mappings = json!([{"field": "/event/type", "valueMappings": {"LOGIN_ERROR": "warning", "LOGIN": "informational", "REFRESH_TOKEN": "debug"}},
                          {"field": "/event/operationType", "valueMappings": {"CREATE": "notice"}}]);
    let config = json!({
        "emitters": [
            {"name": "tcp", "type": "syslog", "protocol": "TCP", "host": "127.0.0.1", "port": rsyslog.tcp_port, "facility": "authpriv", "severityFieldMappings": mappings},
            {"name": "tls", "type": "syslog", "protocol": "TLS", "host": "localhost", "port": rsyslog.tls_port, "facility": "local4",
             "caBundle": b.ca(), "severityFieldMappings": mappings, "appName": "keycloak", "hostname": "mpas-prod"},
            {"name": "udp", "type": "syslog", "protocol": "UDP", "host": "127.0.0.1", "port": rsyslog.udp_port, "facility": "auth",
             "severityFieldMappings": mappings, "defaultSeverity": "notice", "include": ["user-event"]}
        ],
        "redaction": {"mode": "mask", "fields": ["/event/ipAddress", "/event/details/username"]}
    });
    let records = mixed(40);
    b.put_json(&records).await;
    let f = b.forwarder(&config).await;
    let stats = b.source(&f, 100).await.drain().await.unwrap();
    assert_drained_cleanly(&stats);
    let user_events = records
        .iter()
        .filter(|r| r["eventType"] == "user-event")
        .count();
    let messages = rsyslog
        .wait_for(40 + 40 + user_events, Duration::from_secs(10))
        .await;
    let by_input = |input: &str| {
        messages
            .iter()
            .filter(|m| m.input == input)
            .cloned()
            .collect::<Vec<_>>()
    };
    let (tcp, tls, udp) = (by_input("tcp"), by_input("tls"), by_input("udp"));
    assert_eq!(
        (tcp.len(), tls.len(), udp.len()),
        (40, 40, user_events),
        "rsyslog log: {}",
        rsyslog.log()
    );

    let record_by_id: BTreeMap<String, &Value> = records.iter().map(|r| (id_of(r), r)).collect();
    for m in tcp.iter().chain(&tls).chain(&udp) {
        assert_eq!(m.version, "1");
        let msg: Value = serde_json::from_str(&m.msg)
            .unwrap_or_else(|e| panic!("msg is not the JSON event ({e}): {:?}", m.msg));
        let original = record_by_id[&id_of(&msg)];
        let expected_severity = match (
            original.pointer("/event/type").and_then(Value::as_str),
            original
                .pointer("/event/operationType")
                .and_then(Value::as_str),
        ) {
            (Some("LOGIN_ERROR"), _) => "warning",
            (Some("LOGIN"), _) => "info",
            (Some("REFRESH_TOKEN"), _) => "debug",
            (_, Some("CREATE")) => "notice",
            _ if m.input == "udp" => "notice",
            _ => "info",
        };
        assert_eq!(m.severity, expected_severity, "{m:?}");
        let expected_msgid = match original["eventType"].as_str() {
            Some("user-event") => original
                .pointer("/event/type")
                .and_then(Value::as_str)
                .unwrap()
                .to_string(),
            Some("admin-event") => "USER:CREATE".to_string(),
            _ => "ldap:bind".to_string(),
        };
        assert_eq!(m.msgid, expected_msgid);
        if let Some(t) = original.get("timestamp").and_then(Value::as_str) {
            assert_eq!(&m.timestamp[..23], &t[..23], "event time as TIMESTAMP");
        }
        if original["eventType"] == "user-event" {
            assert_eq!(msg.pointer("/event/ipAddress"), Some(&json!("<redacted>")));
        }
    }
    assert!(tcp.iter().all(|m| m.facility == "authpriv"
        && m.hostname == "authtrail"
        && m.appname == "authtrail"));
    assert!(
        tls.iter().all(|m| m.facility == "local4"
            && m.hostname == "mpas-prod"
            && m.appname == "keycloak")
    );
    assert!(udp.iter().all(|m| m.facility == "auth"));
    // PRI = facility * 8 + severity: authpriv (10) LOGIN_ERROR (warning, 4) = 84.
    assert!(
        tcp.iter()
            .any(|m| m.msgid == "LOGIN_ERROR" && m.pri == "84")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_emitter_that_is_down_gets_records_retried_then_dead_lettered_past_the_age_limit()
 {
    let b = Bench::new("fwd-quorum-down").await;
    let url = b.receiver.url();
    // Without a spool: splunk answers 503 for longer than the record age limit, Lambda retries
    // the records, then the forwarder dead-letters them for splunk (permanent) and they are done.
    b.receiver
        .fail_endpoint_for(Endpoint::SplunkHec, Duration::from_secs(600), 503);
    let config = json!({
        "emitters": [
            {"name": "webhook", "type": "http", "url": format!("{url}/ingest/a"), "token": INGEST_TOKEN, "caBundle": b.ca()},
            {"name": "splunk", "type": "splunk-hec", "url": url, "token": SPLUNK_TOKEN, "caBundle": b.ca()}
        ],
        "emitToAllOf": ["webhook", "splunk"],
        "retry": {"maxAttempts": 2, "initialBackoffMs": 50, "maxBackoffMs": 100, "maxRecordAgeInSec": 3},
        "spool": {"enabled": false}
    });
    let records = mixed(10);
    b.put_json(&records).await;
    let f = b.forwarder(&config).await;
    let stats = b.source(&f, 100).await.drain().await.unwrap();
    assert_drained_cleanly(&stats);
    assert!(
        stats.total.retries >= 1 && stats.total.invocations >= 2,
        "records were reported for retry: {stats:?}"
    );

    let dlq = b.dead_letters().await;
    assert_eq!(dlq.len(), 10, "{dlq:?}");
    for (_, letter) in &dlq {
        assert_eq!(
            (letter["emitter"].as_str(), letter["status"].as_str()),
            (Some("splunk"), Some("503"))
        );
        assert!(letter["reason"].as_str().unwrap().contains("age limit"));
        assert!(
            letter["response"]
                .as_str()
                .unwrap()
                .contains("Server is busy")
        );
    }
    assert_eq!(
        dlq.iter()
            .map(|(_, l)| id_of(&l["record"]))
            .collect::<BTreeSet<_>>(),
        records.iter().map(id_of).collect()
    );
    // The webhook took every record (at least once: retried batches are delivered again).
    let webhook: BTreeSet<String> = b
        .receiver
        .events(Endpoint::Ingest)
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(webhook.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_refusals_are_dead_lettered_and_a_quorum_met_without_an_emitter_leaves_its_trail()
{
    let b = Bench::new("fwd-quorum-perm").await;
    let url = b.receiver.url();
    // Without a spool: Elasticsearch refuses documents containing "LOGIN_ERROR" (400 mapping
    // error, per item); splunk has a wrong token (403: permanent without a spool); the webhook
    // works. emitAtLeastOneOf is met by the webhook, so the records are done at once.
    b.receiver.reject_bulk_items_containing("LOGIN_ERROR", 400);
    let config = json!({
        "emitters": [
            {"name": "webhook", "type": "http", "url": format!("{url}/ingest"), "token": INGEST_TOKEN, "caBundle": b.ca()},
            {"name": "elastic", "type": "elasticsearch", "url": url, "caBundle": b.ca()},
            {"name": "splunk", "type": "splunk-hec", "url": url, "token": "wrong-token", "caBundle": b.ca(), "include": ["admin-event"]}
        ],
        "emitToAllOf": ["elastic"],
        "emitAtLeastOneOf": ["webhook", "splunk"],
        "retry": {"maxAttempts": 2, "initialBackoffMs": 50, "maxBackoffMs": 100},
        "spool": {"enabled": false}
    });
    let records = mixed(10);
    b.put_json(&records).await;
    let f = b.forwarder(&config).await;
    let stats = b.source(&f, 100).await.drain().await.unwrap();
    assert_drained_cleanly(&stats);
    assert_eq!(
        stats.total.retries, 0,
        "permanent refusals are not retried: {stats:?}"
    );

    let dlq = b.dead_letters().await;
    let by_emitter = |name: &str| {
        dlq.iter()
            .filter(|(_, l)| l["emitter"] == name)
            .map(|(_, l)| l.clone())
            .collect::<Vec<_>>()
    };
    let elastic = by_emitter("elastic");
    assert_eq!(elastic.len(), 2, "the two LOGIN_ERROR documents");
    assert!(elastic.iter().all(|l| {
        l["status"] == "400"
            && l["response"]
                .as_str()
                .unwrap()
                .contains("mapper_parsing_exception")
    }));
    let splunk = by_emitter("splunk");
    assert_eq!(splunk.len(), 2, "the two admin events");
    assert!(
        splunk
            .iter()
            .all(|l| l["status"] == "403"
                && l["response"].as_str().unwrap().contains("Invalid token"))
    );
    assert_eq!(b.receiver.documents().len(), 8);
    assert_eq!(b.receiver.events(Endpoint::Ingest).len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_spool_on_a_403_refusal_leaves_the_records_in_the_emitters_spool_not_in_dead_letters()
 {
    let b = Bench::new("fwd-spool-403").await;
    let url = b.receiver.url();
    // The spool is on by default: splunk's wrong token (403) is a refusal an operator fixes, so
    // its records wait in splunk's spool, with their status, and are done for this batch.
    let config = json!({
        "emitters": [
            {"name": "webhook", "type": "http", "url": format!("{url}/ingest"), "token": INGEST_TOKEN, "caBundle": b.ca()},
            {"name": "splunk", "type": "splunk-hec", "url": url, "token": "wrong-token", "caBundle": b.ca(), "include": ["admin-event"]}
        ],
        "emitAtLeastOneOf": ["webhook", "splunk"],
        "retry": {"maxAttempts": 2, "initialBackoffMs": 50, "maxBackoffMs": 100}
    });
    let records = mixed(10);
    b.put_json(&records).await;
    let f = b.forwarder(&config).await;
    let stats = b.source(&f, 100).await.drain().await.unwrap();
    assert_drained_cleanly(&stats);
    assert_eq!(
        stats.total.retries, 0,
        "spooled records are done: {stats:?}"
    );

    assert!(b.dead_letters().await.is_empty(), "nothing dead-lettered");
    let spooled = b.json_lines("spool/").await;
    assert!(
        spooled
            .iter()
            .all(|(key, _)| key.starts_with("spool/splunk/")),
        "{spooled:?}"
    );
    assert!(
        spooled.iter().all(|(_, line)| line["status"] == "403"),
        "{spooled:?}"
    );
    let admin: BTreeSet<String> = records
        .iter()
        .filter(|r| r["eventType"] == "admin-event")
        .map(id_of)
        .collect();
    assert_eq!(admin.len(), 2);
    assert_eq!(spooled.len(), admin.len(), "{spooled:?}");
    assert_eq!(
        spooled
            .iter()
            .map(|(_, line)| id_of(&line["record"]))
            .collect::<BTreeSet<_>>(),
        admin
    );
    assert!(b.receiver.events(Endpoint::SplunkHec).is_empty());
    assert_eq!(b.receiver.events(Endpoint::Ingest).len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_for_a_while_loses_nothing_once_it_returns() {
    let b = Bench::new("fwd-outage").await;
    let url = b.receiver.url();
    // Without a spool: the outage is carried by Lambda's retries of the batch.
    let config = json!({
        "emitters": [
            {"name": "elastic", "type": "elasticsearch", "url": url, "index": "audit", "caBundle": b.ca(), "buffering": {"maxBatchedEvents": 25}},
            {"name": "webhook", "type": "http", "url": format!("{url}/ingest"), "token": INGEST_TOKEN, "caBundle": b.ca()}
        ],
        "retry": {"maxAttempts": 2, "initialBackoffMs": 50, "maxBackoffMs": 200},
        "spool": {"enabled": false}
    });
    let records = mixed(120);
    b.put_json(&records).await;
    let f = b.forwarder(&config).await;
    b.receiver.go_down().await;
    let source = b.source(&f, 50).await;
    let drain = source.drain();
    let recover = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        b.receiver.come_back().await.unwrap();
    };
    let (stats, ()) = tokio::join!(drain, recover);
    let stats = stats.unwrap();
    assert_drained_cleanly(&stats);
    assert!(
        stats.total.retries >= 1,
        "the outage made Lambda retry: {stats:?}"
    );
    let all: BTreeSet<String> = records.iter().map(id_of).collect();
    let docs: BTreeSet<String> = b
        .receiver
        .documents()
        .keys()
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(
        docs, all,
        "every record reached Elasticsearch exactly once by _id"
    );
    let webhook: BTreeSet<String> = b
        .receiver
        .events(Endpoint::Ingest)
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(webhook, all);
    assert!(b.dead_letters().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firehose_delivers_the_selected_redacted_records_into_the_delivery_streams_s3_destination()
{
    use aws_sdk_firehose::types::{DeliveryStreamType, ExtendedS3DestinationConfiguration};
    let b = Bench::new("fwd-firehose").await;
    b.emu.create_bucket("siem-backup").await.unwrap();
    let firehose = aws_sdk_firehose::Client::new(&b.emu.sdk_config().await);
    firehose
        .create_delivery_stream()
        .delivery_stream_name("siem-backup")
        .delivery_stream_type(DeliveryStreamType::DirectPut)
        .extended_s3_destination_configuration(
            ExtendedS3DestinationConfiguration::builder()
                .role_arn("arn:aws:iam::123456789012:role/firehose-delivery")
                .bucket_arn("arn:aws:s3:::siem-backup")
                .prefix("audit/")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let config = json!({
        "emitters": [
            {"name": "backup", "type": "firehose", "deliveryStream": "siem-backup", "exclude": ["REFRESH_TOKEN"],
             "buffering": {"maxBatchedEvents": 40}}
        ],
        "redaction": {"mode": "mask", "fields": ["/event/ipAddress", "/ip"]}
    });
    let records = mixed(200);
    b.put_json(&records).await;
    let f = b.forwarder(&config).await;
    let stats = b.source(&f, 100).await.drain().await.unwrap();
    assert_drained_cleanly(&stats);
    assert_eq!(stats.total.retries, 0, "{stats:?}");
    assert!(b.dead_letters().await.is_empty());

    // moto writes each PutRecordBatch call as one object under the destination prefix, the
    // records' data concatenated: one JSON line per record.
    let objects = b.emu.objects("siem-backup", "audit/").await.unwrap();
    let mut lines = Vec::new();
    for (_, body) in &objects {
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(text.ends_with('\n'), "{text}");
        lines.extend(text.lines().map(str::to_string));
    }
    // 160 records in calls of at most 40 (batches of 100 from the stream): at least 4 calls.
    assert!(objects.len() >= 4, "{}", objects.len());
    let received: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected: BTreeSet<String> = records
        .iter()
        .filter(|r| r.pointer("/event/type") != Some(&json!("REFRESH_TOKEN")))
        .map(id_of)
        .collect();
    assert_eq!(received.len(), expected.len(), "each record exactly once");
    assert_eq!(
        received.iter().map(id_of).collect::<BTreeSet<_>>(),
        expected
    );
    for r in &received {
        if let Some(ip) = r.pointer("/event/ipAddress") {
            assert_eq!(ip, "<redacted>", "{r}");
        }
        if let Some(ip) = r.get("ip") {
            assert_eq!(ip, "<redacted>", "{r}");
        }
    }
    let all = lines.join("\n");
    assert!(!all.contains("10.20.") && !all.contains("192.0.2.7"));
}
