//! End-to-end tests of the producer: the real `authtrail-producer` binary run by the local
//! Lambda runner (scheduled events), the MPAS simulator (`mpas-sim` binary) and moto's Kinesis
//! and S3. Every test checks the stream against the simulator's ledger: each visible event
//! exactly once.
//!
//! Needs the workspace binaries (`cargo build --workspace --bins`; `make test` does it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use authtrail_harness::{Emulator, bin_path};
use authtrail_runner::{FunctionConfig, Invocation, LambdaFunction, Outcome, invoke_scheduled};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const STREAM: &str = "authtrail-events";
const BUCKET: &str = "authtrail-checkpoints";
const CHECKPOINT_KEY: &str = "producer/demo.json";

/// The MPAS simulator as a child process.
struct Sim {
    _child: Child,
    base: String,
    http: reqwest::Client,
}

impl Sim {
    async fn start(args: &[&str]) -> Sim {
        let bin = bin_path("mpas-sim").expect("mpas-sim binary (cargo build --workspace --bins)");
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--no-live", "--seed", "7"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn mpas-sim");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("mpas-sim start-up")
            .unwrap()
            .expect("listening line");
        let base = line
            .strip_prefix("listening on ")
            .expect("listening line")
            .trim()
            .to_string();
        Sim {
            _child: child,
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    async fn generate(&self, count: u64) -> Value {
        self.post("/sim/generate", json!({ "count": count })).await
    }

    async fn faults(&self, body: Value) {
        self.post("/sim/faults", body).await;
    }

    async fn ledger(&self) -> Vec<Value> {
        let text = self
            .http
            .get(format!("{}/sim/ledger", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

async fn setup() -> Emulator {
    let em = Emulator::start().await.expect("moto");
    // Eight shards: moto's PutRecords cost per record grows with the records already in the
    // shard, so spreading 50k records thinner saves most of these tests' time.
    em.create_stream(STREAM, 8).await.unwrap();
    em.create_bucket(BUCKET).await.unwrap();
    em
}

fn producer_config(em: &Emulator, sim: &Sim, name: &str, extra: &[(&str, &str)]) -> FunctionConfig {
    let mut env: Vec<(String, String)> = em.env();
    for (k, v) in [
        ("MPAS_BASE_URL", sim.base.as_str()),
        ("MPAS_REALM", "demo"),
        ("MPAS_CLIENT_ID", "authtrail"),
        ("MPAS_CLIENT_SECRET", "authtrail-secret"),
        ("KINESIS_STREAM_NAME", STREAM),
        ("CHECKPOINT_BUCKET", BUCKET),
        ("CHECKPOINT_KEY", CHECKPOINT_KEY),
        // Unredacted, so the stream's events can be compared with the ledger byte for byte.
        ("REDACT_USER_EVENTS", "false"),
        ("REDACT_ADMIN_EVENTS", "false"),
        ("MPAS_SETTLE_WINDOW_SECS", "10"),
        ("MPAS_QUERY_LAG_MS", "500"),
        ("MPAS_MAX_RETRIES", "8"),
        ("AWS_LAMBDA_LOG_LEVEL", "warn"),
    ] {
        env.push((k.into(), v.into()));
    }
    for (k, v) in extra {
        env.push(((*k).into(), (*v).into()));
    }
    let mut cfg = FunctionConfig::new(name, bin_path("authtrail-producer").unwrap())
        .with_env(env)
        .with_timeout(Duration::from_secs(120));
    cfg.echo_logs = false;
    cfg
}

/// Every record in the stream, parsed.
async fn read_stream(em: &Emulator) -> Vec<Value> {
    let k = em.kinesis().await;
    let shards = k.list_shards().stream_name(STREAM).send().await.unwrap();
    let mut out = Vec::new();
    for shard in shards.shards() {
        let mut it = k
            .get_shard_iterator()
            .stream_name(STREAM)
            .shard_id(shard.shard_id())
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator()
            .map(str::to_string);
        while let Some(iter) = it {
            let page = k
                .get_records()
                .shard_iterator(iter)
                .limit(10_000)
                .send()
                .await
                .unwrap();
            if page.records().is_empty() {
                break;
            }
            for r in page.records() {
                let line = r.data().as_ref();
                assert_eq!(line.last(), Some(&b'\n'), "records end with a newline");
                out.push(serde_json::from_slice::<Value>(line).unwrap());
            }
            it = page.next_shard_iterator().map(str::to_string);
        }
    }
    out
}

fn canonical(v: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<_> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sort(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    let sorted = sort(v);
    // serde_json may keep insertion order: write keys sorted by hand.
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<_> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    write(&m[k], out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    write(&sorted, &mut s);
    s
}

/// Asserts the stream holds every ledger event exactly once (compared by whole content, so it
/// works without ids too), in the Contract 1 envelope.
fn assert_exactly_once(ledger: &[Value], stream: &[Value]) {
    let mut want: HashMap<String, i64> = HashMap::new();
    for e in ledger {
        let kind = e["kind"].as_str().unwrap();
        *want
            .entry(format!("{kind}|{}", canonical(&e["event"])))
            .or_default() += 1;
    }
    let mut got: HashMap<String, i64> = HashMap::new();
    for r in stream {
        let kind = r["eventType"].as_str().unwrap();
        let time = r["event"]["time"].as_i64().unwrap();
        assert_eq!(
            r["timestamp"].as_str().unwrap(),
            authtrail_harness_timestamp(time),
            "timestamp is the event time"
        );
        *got.entry(format!("{kind}|{}", canonical(&r["event"])))
            .or_default() += 1;
    }
    let missing = want
        .iter()
        .filter(|(k, n)| got.get(*k).copied().unwrap_or(0) < **n)
        .count();
    let duplicated = got
        .iter()
        .filter(|(k, n)| **n > want.get(*k).copied().unwrap_or(0))
        .count();
    assert_eq!(
        (missing, duplicated),
        (0, 0),
        "ledger {} events, stream {} records",
        ledger.len(),
        stream.len()
    );
    assert_eq!(ledger.len(), stream.len());
}

fn authtrail_harness_timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn summary(inv: &Invocation) -> Option<Value> {
    match &inv.outcome {
        Outcome::Response(_) => inv.response_json::<Value>().ok(),
        _ => None,
    }
}

/// Invokes until one run completes with the whole window read and nothing new to write.
/// Bounded: 30 runs (a loaded machine can need more than a handful after a fault), then it
/// fails naming what the last run reported.
async fn settle(f: &LambdaFunction) {
    let mut last = String::new();
    for _ in 0..30 {
        let inv = invoke_scheduled(f, "producer-every-minute").await.unwrap();
        if let Some(s) = summary(&inv)
            && s["complete"] == true
            && s["put"] == 0
            && s["stoodDown"] == false
        {
            return;
        }
        last = format!("{:?}", inv.outcome);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the producer never caught up; last run: {last}");
}

/// 50,000 events with late commits, ties and 10% faults, several scheduled runs (a 44k backlog,
/// then 1,000 new events before each of six runs) and a cold restart in the middle.
async fn history_arrives_exactly_once(legacy: bool) {
    let em = setup().await;
    let mut args = vec![
        "--history",
        "44000",
        "--rate",
        "4000",
        "--late-fraction",
        "0.05",
        "--late-max-ms",
        "2000",
        "--tie-fraction",
        "0.05",
        "--fault-500",
        "0.04",
        "--fault-429",
        "0.02",
        "--fault-truncate",
        "0.02",
        "--fault-slow",
        "0.02",
        "--slow-ms",
        "100",
    ];
    if legacy {
        args.push("--legacy");
    }
    let sim = Sim::start(&args).await;
    let f = LambdaFunction::start(producer_config(&em, &sim, "producer", &[]))
        .await
        .unwrap();
    let mut runs = 0;
    for round in 0..6 {
        sim.generate(1000).await;
        let inv = invoke_scheduled(&f, "producer-every-minute").await.unwrap();
        runs += 1;
        if let Some(s) = summary(&inv) {
            assert_eq!(s["stoodDown"], false);
            let mode = if legacy { "legacy" } else { "modern" };
            assert_eq!(s["userMode"], mode, "{s}");
            assert_eq!(
                s["collectionGap"], false,
                "nothing expired, so no run may report a collection gap: {s}"
            );
        }
        if round == 2 {
            // Cold restart: the next invocation starts a fresh process.
            f.shutdown().await;
        }
    }
    assert!(f.cold_starts() >= 2, "a cold restart happened");
    // Let every late commit become visible, then catch up.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    sim.faults(json!({})).await;
    settle(&f).await;
    let ledger = sim.ledger().await;
    assert_eq!(ledger.len(), 50_000);
    let stream = read_stream(&em).await;
    assert_exactly_once(&ledger, &stream);
    assert!(runs >= 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_events_with_late_commits_ties_and_faults_arrive_exactly_once_across_runs_and_a_cold_restart()
 {
    history_arrives_exactly_once(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_server_history_with_late_commits_ties_and_faults_arrives_exactly_once() {
    history_arrives_exactly_once(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_invocations_leave_no_duplicates_because_one_stands_down() {
    let em = setup().await;
    let sim = Sim::start(&[
        "--history",
        "20000",
        "--rate",
        "4000",
        "--tie-fraction",
        "0.05",
    ])
    .await;
    let a = LambdaFunction::start(producer_config(&em, &sim, "producer-a", &[]))
        .await
        .unwrap();
    let b = LambdaFunction::start(producer_config(&em, &sim, "producer-b", &[]))
        .await
        .unwrap();
    let mut stood_down = 0;
    for _ in 0..4 {
        sim.generate(500).await;
        let (ia, ib) = tokio::join!(
            invoke_scheduled(&a, "producer-every-minute"),
            invoke_scheduled(&b, "producer-every-minute")
        );
        for inv in [ia.unwrap(), ib.unwrap()] {
            let s = summary(&inv).expect("both invocations succeed");
            if s["stoodDown"] == true {
                stood_down += 1;
                assert_eq!(s["put"], 0, "a stood-down invocation writes nothing");
            }
        }
    }
    assert!(stood_down >= 1, "the lease made one invocation stand down");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    settle(&a).await;
    assert_exactly_once(&sim.ledger().await, &read_stream(&em).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_failing_mid_way_lose_nothing_and_the_next_run_catches_up() {
    let em = setup().await;
    let sim = Sim::start(&[
        "--history",
        "20000",
        "--rate",
        "4000",
        "--tie-fraction",
        "0.05",
    ])
    .await;
    // No client retries and many truncated bodies: runs fail part-way through the backlog.
    let f = LambdaFunction::start(producer_config(
        &em,
        &sim,
        "producer",
        &[("MPAS_MAX_RETRIES", "0"), ("MPAS_PAGE_SIZE", "500")],
    ))
    .await
    .unwrap();
    sim.faults(json!({"truncate": 0.08})).await;
    let mut failed = 0;
    let mut wrote_before_failing = false;
    for _ in 0..8 {
        let inv = invoke_scheduled(&f, "producer-every-minute").await.unwrap();
        match &inv.outcome {
            Outcome::FunctionError { error_message, .. } => {
                failed += 1;
                assert!(error_message.contains("MPAS"), "{error_message}");
                wrote_before_failing |= !read_stream(&em).await.is_empty();
            }
            Outcome::Response(_) => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert!(failed >= 1, "some runs failed mid-way");
    assert!(
        wrote_before_failing,
        "a failed run had already written some pages"
    );
    sim.faults(json!({})).await;
    settle(&f).await;
    assert_exactly_once(&sim.ledger().await, &read_stream(&em).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_mpas_response_fails_the_run_without_moving_the_cursor() {
    let em = setup().await;
    let sim = Sim::start(&["--history", "3000", "--rate", "4000"]).await;
    let f = LambdaFunction::start(producer_config(
        &em,
        &sim,
        "producer",
        &[("MPAS_MAX_RETRIES", "2")],
    ))
    .await
    .unwrap();
    settle(&f).await;
    let s3 = em.s3().await;
    let read_cursor = || async {
        let body = s3
            .get_object()
            .bucket(BUCKET)
            .key(CHECKPOINT_KEY)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap();
        (v["user"].clone(), v["admin"].clone(), v["lease"].clone())
    };
    let before = read_cursor().await;
    sim.generate(500).await;
    sim.faults(json!({"truncate": 1.0})).await;
    let inv = invoke_scheduled(&f, "producer-every-minute").await.unwrap();
    match &inv.outcome {
        Outcome::FunctionError { error_message, .. } => {
            assert!(
                error_message.contains("not a JSON array"),
                "{error_message}"
            );
        }
        other => panic!("expected a function error, got {other:?}"),
    }
    let after = read_cursor().await;
    assert_eq!(before.0, after.0, "user cursor unchanged");
    assert_eq!(before.1, after.1, "admin cursor unchanged");
    assert!(after.2.is_null(), "lease released");
    sim.faults(json!({})).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    settle(&f).await;
    assert_exactly_once(&sim.ledger().await, &read_stream(&em).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_fails_at_init_naming_the_variable_and_expected_form() {
    let em = setup().await;
    let sim = Sim::start(&[]).await;
    let f = LambdaFunction::start(producer_config(
        &em,
        &sim,
        "producer",
        &[("MPAS_START_FROM", "last-tuesday")],
    ))
    .await;
    let inv = match f {
        Ok(f) => invoke_scheduled(&f, "producer-every-minute").await.unwrap(),
        Err(e) => panic!("runner failed: {e}"),
    };
    match &inv.outcome {
        Outcome::InitError { error_message, .. } => {
            assert!(
                error_message.contains("MPAS_START_FROM") && error_message.contains("ISO-8601"),
                "{error_message}"
            );
        }
        other => panic!("expected an init error, got {other:?}"),
    }
    assert!(read_stream(&em).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_mpas_credentials_are_reported_to_lambda_as_error_type_mpas_auth_failed() {
    let em = setup().await;
    let sim = Sim::start(&["--history", "100"]).await;
    let mut cfg = producer_config(&em, &sim, "producer", &[]);
    cfg.env.retain(|(k, _)| k != "MPAS_CLIENT_SECRET");
    cfg.env
        .push(("MPAS_CLIENT_SECRET".into(), "not-the-client-secret".into()));
    let f = LambdaFunction::start(cfg).await.unwrap();
    let inv = invoke_scheduled(&f, "producer-every-minute").await.unwrap();
    match &inv.outcome {
        Outcome::FunctionError { error_message, .. } => {
            assert!(
                error_message.contains("invalid_client"),
                "names Keycloak's reason: {error_message}"
            );
            assert!(
                !error_message.contains("not-the-client-secret"),
                "never echoes the secret: {error_message}"
            );
        }
        other => panic!("expected a function error, got {other:?}"),
    }
    assert_eq!(inv.error_type(), Some("MpasAuthFailed"));
    assert!(read_stream(&em).await.is_empty());
}

/// Every object moto's Firehose wrote under `prefix`, split into records (one JSON line each).
async fn read_firehose_bucket(em: &Emulator, bucket: &str, prefix: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for (_, body) in em.objects(bucket, prefix).await.unwrap() {
        assert_eq!(body.last(), Some(&b'\n'), "records end with a newline");
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            out.push(serde_json::from_slice::<Value>(line).unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firehose_sink_delivers_every_ledger_event_exactly_once_to_the_destination_bucket() {
    let em = setup().await;
    let destination = "authtrail-firehose-destination";
    em.create_bucket(destination).await.unwrap();
    let firehose = aws_sdk_firehose::Client::new(&em.sdk_config().await);
    firehose
        .create_delivery_stream()
        .delivery_stream_name("authtrail-delivery")
        .extended_s3_destination_configuration(
            aws_sdk_firehose::types::ExtendedS3DestinationConfiguration::builder()
                .role_arn("arn:aws:iam::123456789012:role/firehose-delivery")
                .bucket_arn(format!("arn:aws:s3:::{destination}"))
                .prefix("events/")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let sim = Sim::start(&[
        "--history",
        "6000",
        "--rate",
        "4000",
        "--tie-fraction",
        "0.05",
        "--fault-500",
        "0.05",
    ])
    .await;
    let mut cfg = producer_config(
        &em,
        &sim,
        "producer-firehose",
        &[("FIREHOSE_DELIVERY_STREAM", "authtrail-delivery")],
    );
    cfg.env.retain(|(k, _)| k != "KINESIS_STREAM_NAME");
    let f = LambdaFunction::start(cfg).await.unwrap();
    for _ in 0..2 {
        sim.generate(1000).await;
        let inv = invoke_scheduled(&f, "producer-every-minute").await.unwrap();
        assert!(summary(&inv).is_some(), "run failed: {:?}", inv.outcome);
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    sim.faults(json!({})).await;
    settle(&f).await;
    let ledger = sim.ledger().await;
    assert_eq!(ledger.len(), 8000);
    let delivered = read_firehose_bucket(&em, destination, "events/").await;
    assert_exactly_once(&ledger, &delivered);
    assert!(read_stream(&em).await.is_empty(), "nothing went to Kinesis");
}
