//! End-to-end tests of `authtrail-replay` (the real binary) on the emulator: archive objects in
//! the Contract 2 format and dead letters in the forwarder's format written into moto's S3,
//! replayed into fresh local receivers (`infra/siem-receiver`, HTTPS on loopback).
//!
//! Needs `make venv` (moto) and the binary built (`cargo build -p authtrail-replay`; `make test`
//! does both).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use authtrail_harness::{Emulator, ScratchDir, bin_path};
use serde_json::{Value, json};
use siem_receiver::{Endpoint, IngestAuth, Receiver, ReceiverOptions};

const INGEST_TOKEN: &str = "ingest-token-replay";
const HMAC_KEY: &str = "replay-hmac-key-never-logged";

/// What one run of the command gave.
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

struct Bench {
    emu: Emulator,
    receiver: Receiver,
    scratch: ScratchDir,
}

impl Bench {
    async fn new(label: &str) -> Self {
        let emu = Emulator::start()
            .await
            .expect("moto_server (run `make venv`)");
        emu.create_bucket("archive").await.unwrap();
        emu.create_bucket("dlq").await.unwrap();
        let scratch = ScratchDir::new(label).unwrap();
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
        }
    }

    /// A webhook emitter and an Elasticsearch emitter on the receiver, and a `stdout` one that
    /// replays must leave alone; top-level redaction `redaction`.
    fn config(&self, redaction: Value) -> Value {
        let url = self.receiver.url();
        let ca = self.receiver.ca_path().display().to_string();
        json!({
            "emitters": [
                {"name": "webhook", "type": "http", "url": format!("{url}/ingest"), "token": INGEST_TOKEN, "caBundle": ca},
                {"name": "elastic", "type": "elasticsearch", "url": url, "index": "audit", "caBundle": ca},
                {"name": "console", "type": "stdout"}
            ],
            "emitToAllOf": ["console"],
            "redaction": redaction,
            "retry": {"maxAttempts": 2, "initialBackoffMs": 50, "maxBackoffMs": 100}
        })
    }

    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) {
        self.emu
            .s3()
            .await
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap();
    }

    /// Runs `authtrail-replay` with `args` against the emulator.
    async fn replay(&self, config: &Value, args: &[&str]) -> Run {
        let bin =
            bin_path("authtrail-replay").expect("build it first: cargo build -p authtrail-replay");
        let out = tokio::process::Command::new(bin)
            .env_clear()
            .envs(self.emu.env())
            // The test's receiver token and HMAC key are given in plain (a local run).
            .env("AUTHTRAIL_ALLOW_PLAINTEXT_SECRETS", "true")
            .arg("--config-json")
            .arg(config.to_string())
            .args(args)
            .output()
            .await
            .unwrap();
        let run = Run {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(
            !run.stderr.contains(HMAC_KEY) && !run.stdout.contains(HMAC_KEY),
            "the HMAC key leaked"
        );
        run
    }

    fn state(&self, name: &str) -> String {
        self.scratch.path().join(name).display().to_string()
    }

    fn webhook_ids(&self) -> Vec<String> {
        self.receiver
            .events(Endpoint::Ingest)
            .iter()
            .map(id_of)
            .collect()
    }
}

fn id_of(v: &Value) -> String {
    v.pointer("/event/id")
        .or_else(|| v.get("id"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A Contract 1 user event with id `id` at `ts` (`HH:MM:SS.mmm` on 2025-02-01).
fn envelope(id: &str, ts: &str) -> Value {
    let t = chrono::DateTime::parse_from_rfc3339(&format!("2025-02-01T{ts}Z")).unwrap();
    json!({"timestamp": format!("2025-02-01T{ts}Z"), "eventType": "user-event", "event": {
        "id": id, "time": t.timestamp_millis(), "type": "LOGIN", "realmId": "realm-1", "clientId": "account-console",
        "userId": format!("user-{id}"), "ipAddress": "198.51.100.3", "details": {"username": "alice"}}})
}

/// A Foxpass-style record without a `timestamp`.
fn foxpass(id: &str) -> Value {
    json!({"service": "ldap", "method": "bind", "message": "bind succeeded", "user": "bob", "id": id})
}

/// A Contract 2 archive key of hour `hh` on 2025-02-01.
fn archive_key(hh: u32, seq: u32, ext: &str) -> String {
    format!("raw/2025/02/01/{hh:02}/authtrail-shardId-000000000000-4959{seq:052}.{ext}")
}

fn jsonl(records: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend(serde_json::to_vec(r).unwrap());
        out.push(b'\n');
    }
    out
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body).unwrap();
    gz.finish().unwrap()
}

/// Archive objects around the range 11:00-13:00; returns the ids that belong to it.
async fn write_archive(b: &Bench) -> BTreeSet<String> {
    let objects = [
        // Before the range (and an hour the range does not read).
        (
            10,
            vec![
                envelope("before-1", "10:05:00.000"),
                envelope("before-2", "10:59:59.999"),
            ],
        ),
        // In range, the first millisecond included; a record without timestamp by its hour.
        (
            11,
            vec![
                envelope("in-1", "11:00:00.000"),
                envelope("in-2", "11:30:00.000"),
                foxpass("in-fox"),
            ],
        ),
        (
            12,
            vec![
                envelope("in-3", "12:10:00.000"),
                envelope("in-4", "12:59:59.999"),
            ],
        ),
        // The hour after: a late arrival of the range, the range's end (excluded), and a
        // record without timestamp whose hour is outside.
        (
            13,
            vec![
                envelope("in-late", "12:58:00.000"),
                envelope("after-1", "13:00:00.000"),
                foxpass("after-fox"),
            ],
        ),
        // Beyond the late-arrival window: not read.
        (15, vec![envelope("too-late", "12:30:00.000")]),
    ];
    for (i, (hh, records)) in objects.iter().enumerate() {
        let body = jsonl(records);
        // Contract 2 allows both: gzip (the default) and plain JSON lines.
        let (key, body) = if i % 2 == 0 {
            (archive_key(*hh, i as u32, "jsonl.gz"), gzip(&body))
        } else {
            (archive_key(*hh, i as u32, "jsonl"), body)
        };
        b.put("archive", &key, body).await;
    }
    ["in-1", "in-2", "in-fox", "in-3", "in-4", "in-late"]
        .into_iter()
        .map(String::from)
        .collect()
}

const RANGE: [&str; 4] = [
    "--from",
    "2025-02-01T11:00:00Z",
    "--to",
    "2025-02-01T13:00:00Z",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_range_replay_delivers_exactly_the_archived_records_of_the_range_once() {
    let b = Bench::new("replay-archive").await;
    let expected = write_archive(&b).await;
    let config = b.config(json!({"mode": "mask", "fields": ["/event/ipAddress"]}));
    let state = b.state("webhook.state.json");
    let args = |emitter: &'static str, state: &str| -> Vec<String> {
        let mut a: Vec<String> = [
            "--emitter",
            emitter,
            "--archive",
            "s3://archive/raw/",
            "--quiet",
        ]
        .iter()
        .chain(RANGE.iter())
        .map(|s| s.to_string())
        .collect();
        if !state.is_empty() {
            a.extend(["--state".to_string(), state.to_string()]);
        }
        a
    };
    let strs = |v: &[String]| v.to_vec();

    // A dry run counts and sends nothing.
    let mut dry = strs(&args("webhook", ""));
    dry.push("--dry-run".into());
    let dry: Vec<&str> = dry.iter().map(String::as_str).collect();
    let run = b.replay(&config, &dry).await;
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("would send: 6,"), "{}", run.stdout);
    assert!(b.receiver.received().is_empty());

    // The webhook (not idempotent): warned once, exactly the range's records, once, redacted
    // as the forwarder redacts them.
    let first = args("webhook", &state);
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    let run = b.replay(&config, &first).await;
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.stderr.matches("is not idempotent").count(),
        1,
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("delivered: 6,"), "{}", run.stdout);
    let ids = b.webhook_ids();
    assert_eq!(ids.len(), expected.len(), "each record once: {ids:?}");
    assert_eq!(ids.iter().cloned().collect::<BTreeSet<_>>(), expected);
    for e in b.receiver.events(Endpoint::Ingest) {
        if e.get("event").is_some() {
            assert_eq!(e.pointer("/event/ipAddress"), Some(&json!("<redacted>")));
        }
    }

    // The same replay with the same state file sends nothing again.
    let run = b.replay(&config, &first).await;
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("delivered: 0,"), "{}", run.stdout);
    assert_eq!(b.webhook_ids().len(), expected.len());

    // Elasticsearch (idempotent: `create` with the event id): no warning; a second run without
    // a state file adds nothing.
    let es = args("elastic", "");
    let es: Vec<&str> = es.iter().map(String::as_str).collect();
    for round in 0..2 {
        let run = b.replay(&config, &es).await;
        assert_eq!(run.status, 0, "round {round}: {}{}", run.stdout, run.stderr);
        assert!(!run.stderr.contains("is not idempotent"), "{}", run.stderr);
        // `_id`: the envelope's event id, else the SHA-256 of the record's bytes.
        let docs = b.receiver.documents();
        assert_eq!(docs.len(), expected.len(), "round {round}");
        assert_eq!(
            docs.values().map(id_of).collect::<BTreeSet<_>>(),
            expected,
            "round {round}"
        );
    }
    let items: Vec<Value> = b
        .receiver
        .received()
        .into_iter()
        .filter(|r| r.endpoint == Endpoint::Elasticsearch)
        .flat_map(|r| r.events)
        .collect();
    assert_eq!(
        items.len(),
        2 * expected.len(),
        "both runs sent every record"
    );
    assert!(
        items.iter().all(|i| i["action"] == "create"),
        "documents are created, never overwritten: {items:?}"
    );
    assert_eq!(b.receiver.documents().len(), expected.len());
}

/// A dead letter of `emitter` in the forwarder's format, holding `record` as stored.
fn dead_letter(emitter: &str, seq: &str, record: &Value) -> Value {
    json!({"emitter": emitter, "status": "401", "response": "unauthorized", "reason": "rejected permanently by the emitter",
           "stream": "authtrail", "shardId": "shardId-000000000000", "sequenceNumber": seq,
           "approximateArrivalTimestamp": "2025-02-01T11:00:01.000Z", "deadLetteredAt": "2025-02-01T11:00:02.000Z",
           "eventType": "LOGIN", "record": record})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_sent_as_stored_after_a_fix_and_a_resumed_run_sends_only_the_rest() {
    let b = Bench::new("replay-dlq").await;
    // Stored records went through hash redaction already: hashing again would change them.
    let hashed = |id: &str| {
        let mut r = envelope(id, "11:00:00.000");
        r["event"]["ipAddress"] = json!(format!("hmac-sha256:{}", "ab".repeat(32)));
        r
    };
    let one = dead_letter("webhook", "1", &hashed("dl-1"));
    b.put(
        "dlq",
        "dlq/2025/02/01/11/authtrail-shardId-000000000000-1-webhook.json",
        serde_json::to_vec_pretty(&one).unwrap(),
    )
    .await;
    let lines = jsonl(&[
        dead_letter("webhook", "2", &hashed("dl-2")),
        dead_letter("elastic", "3", &hashed("other-emitter")),
        json!({"emitter": "malformed", "dataBase64": "bm90IGpzb24="}),
        dead_letter("webhook", "4", &hashed("dl-4")),
    ]);
    b.put("dlq", "dlq/2025/02/01/11/letters.jsonl", lines).await;
    let config =
        b.config(json!({"mode": "hash", "fields": ["/event/ipAddress"], "hmacKey": HMAC_KEY}));
    let state = b.state("dlq.state.json");
    let args = [
        "--emitter",
        "webhook",
        "--dlq",
        "s3://dlq/dlq/",
        "--state",
        &state,
        "--quiet",
    ];

    // The receiver still refuses: nothing delivered, exit 1, the records listed.
    b.receiver.fail_for(Duration::from_secs(600), 401);
    let run = b.replay(&config, &args).await;
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout
            .lines()
            .filter(|l| l.starts_with("    s3://dlq/"))
            .count(),
        3,
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("INCOMPLETE"), "{}", run.stdout);
    assert!(run.stdout.contains("2 not replayable"), "{}", run.stdout);

    // Fixed: the same command delivers them, exactly as stored.
    b.receiver.heal();
    let run = b.replay(&config, &args).await;
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let got = b.receiver.events(Endpoint::Ingest);
    assert_eq!(
        got.iter().map(id_of).collect::<Vec<_>>(),
        vec!["dl-1", "dl-2", "dl-4"]
    );
    for r in &got {
        assert_eq!(r, &hashed(&id_of(r)), "sent as stored, not hashed twice");
    }

    // Done: a third run sends nothing.
    let run = b.replay(&config, &args).await;
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(b.receiver.events(Endpoint::Ingest).len(), 3);
    assert!(Path::new(&state).is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_configuration_errors_exit_2_with_a_clear_message_and_send_nothing() {
    let b = Bench::new("replay-usage").await;
    let config = b.config(json!({"mode": "mask", "fields": ["/event/ipAddress"]}));
    let cases: [(&[&str], &str); 3] = [
        (
            &["--emitter", "webhook", "--archive", "s3://archive/raw/"],
            "--archive needs --from and --to",
        ),
        (
            &["--emitter", "nope", "--dlq", "s3://dlq/dlq/"],
            "no enabled emitter named \"nope\"",
        ),
        (
            &[
                "--emitter",
                "webhook",
                "--archive",
                "s3://archive/raw/",
                "--from",
                "soon",
                "--to",
                "later",
            ],
            "--from: \"soon\" is not a time",
        ),
    ];
    for (args, message) in cases {
        let run = b.replay(&config, args).await;
        assert_eq!(run.status, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
    }
    assert!(b.receiver.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_sequence_range_is_replayed_exactly_and_resumed_without_repeats() {
    let b = Bench::new("replay-stream").await;
    b.emu.create_stream("authtrail-events", 1).await.unwrap();
    let kinesis = b.emu.kinesis().await;
    let mut seqs = Vec::new();
    let mut shard = String::new();
    for i in 0..10 {
        let r = envelope(&format!("seq-{i}"), "11:00:00.000");
        let put = kinesis
            .put_record()
            .stream_name("authtrail-events")
            .partition_key("pk")
            .data(aws_sdk_kinesis::primitives::Blob::new(
                serde_json::to_vec(&r).unwrap(),
            ))
            .send()
            .await
            .unwrap();
        seqs.push(put.sequence_number().to_string());
        shard = put.shard_id().to_string();
    }
    let config = b.config(json!({"mode": "mask", "fields": ["/event/ipAddress"]}));
    let state = b.state("stream.state.json");
    let args = [
        "--emitter",
        "webhook",
        "--stream",
        "authtrail-events",
        "--shard",
        &shard,
        "--from-seq",
        &seqs[3],
        "--to-seq",
        &seqs[6],
        "--state",
        &state,
        "--quiet",
    ];
    for _ in 0..2 {
        let run = b.replay(&config, &args).await;
        assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
        assert_eq!(
            b.webhook_ids(),
            vec!["seq-3", "seq-4", "seq-5", "seq-6"],
            "both ends included, once, in order"
        );
    }
    // Without --to-seq: up to the shard's end.
    let open = [
        "--emitter",
        "webhook",
        "--stream",
        "authtrail-events",
        "--shard",
        &shard,
        "--from-seq",
        &seqs[8],
        "--quiet",
    ];
    let run = b.replay(&config, &open).await;
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(b.webhook_ids()[4..], ["seq-8", "seq-9"]);
}
