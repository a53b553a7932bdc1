//! End-to-end tests of the forwarder's `format` option: records put into moto's Kinesis stream,
//! read by the event-source runner and delivered by the real `authtrail-forwarder` binary as
//! OCSF events (generic HTTP endpoint of the local HTTPS receiver), ECS documents
//! (Elasticsearch `_bulk` of the same receiver) and CEF lines (a real rsyslog over TCP).
//! The OCSF events are checked against the OCSF 1.1.0 schema files with the normalize crate's
//! schema checker.
//!
//! Needs `make venv` (moto), `make apt-deps` (rsyslog) and the binaries built
//! (`cargo build -p authtrail-forwarder`; `make test` does all of it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../functions/normalize/tests/support/ocsf.rs"]
mod ocsf_schema;

use std::collections::BTreeMap;
use std::path::Path;
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

const INGEST_TOKEN: &str = "ingest-token-formats";
const T0: i64 = 1_739_388_470_156;

// ---------------------------------------------------------------------------------------------
// Fixtures: every source, in the shapes the sources write.
// ---------------------------------------------------------------------------------------------

fn ts(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Foxpass's documented timestamp form, `YYYY-MM-DD HH:MM:SS.sss` (UTC).
fn foxpass_ts(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S%.3f")
        .to_string()
}

fn user_event(i: usize, ty: &str) -> Value {
    let t = T0 + i as i64;
    let mut event = json!({
        "id": format!("ev-{i:03}"), "time": t, "type": ty, "realmId": "9f1c1f2e-realm",
        "clientId": "account-console", "userId": format!("user-{i}"), "sessionId": format!("sess-{i}"),
        "ipAddress": format!("198.51.100.{}", i % 250),
        "details": {"auth_method": "openid-connect", "auth_type": "code", "username": format!("alice{i}"),
                    "redirect_uri": "https://app.example/cb"}
    });
    if ty.ends_with("_ERROR") {
        event["error"] = json!("invalid_user_credentials");
    }
    json!({"timestamp": ts(t), "eventType": "user-event", "event": event})
}

fn admin_event(i: usize, resource: &str, op: &str, path: &str) -> Value {
    let t = T0 + i as i64;
    json!({"timestamp": ts(t), "eventType": "admin-event", "event": {
        "id": format!("ev-{i:03}"), "time": t, "realmId": "9f1c1f2e-realm",
        "authDetails": {"realmId": "master", "clientId": "security-admin-console", "userId": "admin-1",
                        "ipAddress": "203.0.113.9"},
        "operationType": op, "resourceType": resource, "resourcePath": path,
        "representation": "{\"username\":\"carol\",\"enabled\":true}"
    }})
}

/// 24 records: Keycloak user events of five types, admin events of four rules, Foxpass LDAP
/// and RADIUS (one with `|`, `=`, `\` and a line break in its message), and a record that no
/// mapping knows. Every record has a unique `ev-NNN` id.
fn records() -> Vec<Value> {
    let mut out = Vec::new();
    for (i, ty) in [
        "LOGIN",
        "LOGIN_ERROR",
        "LOGOUT",
        "REFRESH_TOKEN",
        "UPDATE_PASSWORD",
    ]
    .iter()
    .cycle()
    .take(10)
    .enumerate()
    {
        out.push(user_event(i, ty));
    }
    out.push(admin_event(10, "USER", "CREATE", "users/u-10"));
    out.push(admin_event(
        11,
        "REALM_ROLE_MAPPING",
        "CREATE",
        "users/u-11/role-mappings/realm",
    ));
    out.push(admin_event(
        12,
        "GROUP_MEMBERSHIP",
        "DELETE",
        "users/u-12/groups/g-1",
    ));
    out.push(admin_event(13, "CLIENT", "UPDATE", "clients/c-13"));
    for i in 14..20 {
        let ldap = i % 2 == 0;
        out.push(json!({
            "service": if ldap { "ldap" } else { "radius" }, "method": if ldap { "bind" } else { "authorize" },
            "message": if i == 15 { "bad|pass=x \\ retry\nsecond line" } else { "ok" },
            "timestamp": foxpass_ts(T0 + i as i64), "success": i != 15, "username": format!("bob{i}"),
            "ipAddress": format!("192.0.2.{i}"), "id": format!("ev-{i:03}")
        }));
    }
    for i in 20..24 {
        out.push(json!({"eventName": "SessionStart", "id": format!("ev-{i:03}"), "at": ts(T0 + i as i64), "actor": "x"}));
    }
    out
}

fn id_of(v: &Value) -> String {
    v.pointer("/event/id")
        .or_else(|| v.get("id"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// The bench: moto, a stream, a DLQ bucket, the receiver, the forwarder under the runner.
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
        let scratch = ScratchDir::new("formats-e2e").unwrap();
        let options = ReceiverOptions {
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

    async fn put(&self, records: &[Value]) {
        let kinesis = self.emu.kinesis().await;
        let entries = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(format!("{r}\n").into_bytes()))
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

    async fn forward(&self, config: &Value) -> SourceStats {
        let bin = bin_path("authtrail-forwarder")
            .expect("build it first: cargo build -p authtrail-forwarder");
        let mut cfg = FunctionConfig::new("forwarder", bin)
            .with_env(self.emu.env())
            .with_env([
                ("FORWARDER_CONFIG".to_string(), config.to_string()),
                ("DLQ_BUCKET".to_string(), "dlq".to_string()),
                ("AWS_LAMBDA_LOG_FORMAT".to_string(), "JSON".to_string()),
                (
                    "AUTHTRAIL_ALLOW_PLAINTEXT_SECRETS".to_string(),
                    "true".to_string(),
                ),
            ])
            .with_timeout(Duration::from_secs(15));
        cfg.inherit_env = false;
        cfg.echo_logs = std::env::var_os("AUTHTRAIL_ECHO_LOGS").is_some();
        cfg.log_file = Some(self.scratch.path().join("forwarder.log"));
        let f = Arc::new(LambdaFunction::start(cfg).await.unwrap());
        let mut source = KinesisSourceConfig::new(&self.stream);
        source.batch_size = 100;
        source.report_batch_item_failures = true;
        source.max_retry_attempts = 3;
        source.poll_interval = Duration::from_millis(100);
        let stats = KinesisEventSource::new(&self.emu.sdk_config().await, source, f)
            .await
            .unwrap()
            .drain()
            .await
            .unwrap();
        assert_eq!(stats.total.records_discarded, 0, "{stats:?}");
        assert_eq!(
            stats.total.function_errors + stats.total.crashes + stats.total.timeouts,
            0,
            "{stats:?}"
        );
        stats
    }

    /// Every object under `prefix` of the DLQ bucket.
    async fn dead_letters(&self) -> Vec<String> {
        self.emu
            .objects("dlq", "")
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }
}

fn schema() -> ocsf_schema::Schema {
    ocsf_schema::Schema::load_from(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions/normalize/schema/ocsf-1.1.0"),
    )
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocsf_to_http_and_ecs_to_elasticsearch_deliver_the_mapped_records_redacted() {
    let b = Bench::new("fmt-json").await;
    let url = b.receiver.url();
    let ca = b.receiver.ca_path().display().to_string();
    let config = json!({
        "emitters": [
            {"name": "ocsf", "type": "http", "url": format!("{url}/ingest"), "token": INGEST_TOKEN,
             "caBundle": ca, "format": "ocsf"},
            {"name": "ecs", "type": "elasticsearch", "url": url, "index": "ecs-auth", "caBundle": ca,
             "format": "ecs"},
            {"name": "raw", "type": "http", "url": format!("{url}/ingest"), "token": INGEST_TOKEN,
             "caBundle": ca, "include": ["LOGIN"]}
        ],
        "redaction": {"fields": ["/event/ipAddress", "/event/details/username", "/username"]}
    });
    let records = records();
    b.put(&records).await;
    b.forward(&config).await;
    assert!(
        b.receiver.rejections().is_empty(),
        "{:?}",
        b.receiver.rejections()
    );
    assert!(b.dead_letters().await.is_empty());
    let by_id: BTreeMap<String, &Value> = records.iter().map(|r| (id_of(r), r)).collect();

    // OCSF: every record once, each one passing the schema check, mapped as the table says.
    let ingest = b.receiver.events(Endpoint::Ingest);
    let (ocsf, raw): (Vec<&Value>, Vec<&Value>) =
        ingest.iter().partition(|e| e.get("class_uid").is_some());
    let mut ocsf_by_id: BTreeMap<String, &Value> = BTreeMap::new();
    for e in &ocsf {
        let id = e["metadata"]["uid"].as_str().unwrap().to_string();
        assert!(ocsf_by_id.insert(id, e).is_none(), "delivered twice: {e}");
    }
    assert_eq!(
        ocsf_by_id.keys().collect::<Vec<_>>(),
        by_id.keys().collect::<Vec<_>>()
    );
    let schema = schema();
    for (id, e) in &ocsf_by_id {
        assert_eq!(schema.check(e), Vec::<String>::new(), "{id}: {e}");
    }
    let class_of = |id: &str| {
        let e = ocsf_by_id[id];
        (
            e["class_uid"].as_u64().unwrap(),
            e["activity_id"].as_u64().unwrap(),
            e["status_id"].as_u64().unwrap(),
        )
    };
    assert_eq!(class_of("ev-000"), (3002, 1, 1)); // LOGIN
    assert_eq!(class_of("ev-001"), (3002, 1, 2)); // LOGIN_ERROR
    assert_eq!(class_of("ev-002"), (3002, 2, 1)); // LOGOUT
    assert_eq!(class_of("ev-003"), (3002, 5, 1)); // REFRESH_TOKEN
    assert_eq!(class_of("ev-004"), (3001, 3, 1)); // UPDATE_PASSWORD
    assert_eq!(class_of("ev-010"), (3001, 1, 1)); // USER:CREATE
    assert_eq!(class_of("ev-011"), (3005, 1, 1)); // REALM_ROLE_MAPPING:CREATE
    assert_eq!(class_of("ev-012"), (3006, 4, 1)); // GROUP_MEMBERSHIP:DELETE
    assert_eq!(class_of("ev-013"), (3004, 3, 1)); // CLIENT:UPDATE
    assert_eq!(class_of("ev-014"), (3002, 1, 1)); // ldap:bind
    assert_eq!(class_of("ev-015"), (3002, 1, 2)); // radius:authorize, failed
    assert_eq!(class_of("ev-020"), (0, 0, 0)); // unknown: Base Event
    assert_eq!(
        ocsf_by_id["ev-001"]["status_detail"],
        "invalid_user_credentials"
    );
    assert_eq!(ocsf_by_id["ev-014"]["auth_protocol"], "LDAP");
    assert_eq!(
        ocsf_by_id["ev-014"]["time"],
        T0 + 14,
        "Foxpass's own timestamp form"
    );
    assert_eq!(ocsf_by_id["ev-015"]["auth_protocol_id"], 10);
    assert_eq!(
        *ocsf_by_id["ev-020"].get("unmapped").unwrap(),
        *by_id["ev-020"]
    );
    assert_eq!(ocsf_by_id["ev-010"]["actor"]["user"]["uid"], "admin-1");
    assert_eq!(ocsf_by_id["ev-010"]["user"]["uid"], "u-10");

    // The raw emitter beside them still gets the records as they were (redacted).
    assert_eq!(raw.len(), 2);
    assert!(
        raw.iter()
            .all(|r| r.pointer("/event/type") == Some(&json!("LOGIN")))
    );

    // ECS: one document per record, `_id` the event id, outcome always set.
    let docs = b.receiver.documents();
    assert_eq!(docs.len(), records.len());
    for ((index, id), d) in &docs {
        assert_eq!(index, "ecs-auth");
        assert_eq!(d["event"]["id"], json!(id), "{d}");
        assert!(matches!(
            d["event"]["outcome"].as_str(),
            Some("success" | "failure" | "unknown")
        ));
        let original: Value =
            serde_json::from_str(d["event"]["original"].as_str().unwrap()).unwrap();
        assert_eq!(id_of(&original), *id);
    }
    let doc = |id: &str| &docs[&("ecs-auth".to_string(), id.to_string())];
    assert_eq!(
        doc("ev-001")["event"]["category"],
        json!(["authentication", "session"])
    );
    assert_eq!(doc("ev-001")["event"]["outcome"], "failure");
    assert_eq!(doc("ev-010")["user"]["target"]["id"], "u-10");
    assert_eq!(doc("ev-010")["source"]["ip"], "203.0.113.9");
    assert_eq!(doc("ev-020")["tags"], json!(["authtrail-unmapped"]));

    // Redaction came first: no masked value reached any receiver, in any format.
    let bytes = serde_json::to_string(&b.receiver.received()).unwrap();
    assert!(!bytes.contains("198.51.100.") && !bytes.contains("alice") && !bytes.contains("bob1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cef_lines_reach_rsyslog_one_message_per_record_escaped() {
    let b = Bench::new("fmt-cef").await;
    let rsyslog = Rsyslog::start(&b.scratch.path().join("rsyslog"), b.receiver.certs())
        .await
        .expect("rsyslog (make apt-deps)");
    let config = json!({
        "emitters": [
            {"name": "arcsight", "type": "syslog", "protocol": "TCP", "host": "127.0.0.1",
             "port": rsyslog.tcp_port, "facility": "authpriv", "format": "cef",
             "severityFieldMappings": [{"field": "/event/type", "valueMappings": {"LOGIN_ERROR": "warning"}}]}
        ],
        "redaction": {"fields": ["/event/details/username"]}
    });
    let records = records();
    b.put(&records).await;
    b.forward(&config).await;
    let messages = rsyslog
        .wait_for(records.len(), Duration::from_secs(10))
        .await;
    assert_eq!(
        messages.len(),
        records.len(),
        "rsyslog log: {}",
        rsyslog.log()
    );
    let mut seen = BTreeMap::new();
    for m in &messages {
        assert!(m.msg.starts_with("CEF:0|authtrail|"), "{m:?}");
        assert!(!m.msg.contains('\n'), "{m:?}");
        let ext = m.msg.splitn(8, '|').nth(7).unwrap_or_default();
        let id = ext
            .split(' ')
            .find_map(|kv| kv.strip_prefix("externalId="))
            .unwrap()
            .to_string();
        seen.insert(id, m.clone());
    }
    assert_eq!(seen.len(), records.len(), "one message per record");
    let login_error = &seen["ev-001"];
    assert!(
        login_error
            .msg
            .starts_with("CEF:0|authtrail|MPAS|1.0|LOGIN_ERROR|Authentication: Logon|3|rt=1739388470157 act=LOGIN_ERROR outcome=failure"),
        "{login_error:?}"
    );
    assert!(
        login_error.msg.contains(" src=198.51.100.1 "),
        "{login_error:?}"
    );
    assert!(!login_error.msg.contains("alice"), "{login_error:?}");
    // The syslog severity mapping still reads the JSON record.
    assert_eq!(
        (login_error.severity.as_str(), login_error.msgid.as_str()),
        ("warning", "LOGIN_ERROR")
    );
    let admin = &seen["ev-011"];
    assert!(
        admin
            .msg
            .contains("|User Access Management: Assign Privileges|1|"),
        "{admin:?}"
    );
    assert!(
        admin.msg.contains(" suid=admin-1 ") && admin.msg.contains(" duid=u-11 "),
        "{admin:?}"
    );
    // A value with `|`, `=`, `\` and a line break, escaped inside one line.
    let escaped = &seen["ev-015"];
    assert!(
        escaped
            .msg
            .contains(r#" msg=bad|pass\=x \\ retry\nsecond line"#),
        "{escaped:?}"
    );
    assert!(
        escaped
            .msg
            .starts_with("CEF:0|authtrail|Foxpass|1.0|radius:authorize|")
    );
    let unknown = &seen["ev-020"];
    assert!(unknown.msg.contains("|Unmapped event|"), "{unknown:?}");
}
