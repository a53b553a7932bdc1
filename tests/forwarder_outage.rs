//! End-to-end tests of the forwarder through SIEM and S3 outages (issue 12), judged on what the
//! receivers got: real records put into moto's Kinesis stream, read by the event-source runner
//! (S3 on-failure destination in the dead-letter bucket, as the templates set it), delivered by
//! the real `authtrail-forwarder` binary to local HTTPS receivers, with the spool in moto's S3
//! and redrive driven by EventBridge scheduled events, as the templates' schedule sends them.
//!
//! 1. A receiver down for longer than several invocations' retry budgets, with live traffic:
//!    the healthy emitters receive each record exactly once, the down one every record exactly
//!    once after it returns, nothing reaches the failure destination or the dead letters.
//! 2. A receiver answering 401: records spooled, the breaker metric emitted; once it accepts
//!    again everything is delivered and nothing dead-lettered.
//! 3. Spool writes failing (S3 unreachable through a loopback proxy): `batchItemFailures`; with
//!    S3 back nothing is lost.
//! 4. A record spooled longer than `spool.maxAgeInSec` becomes a dead letter, with its metric.
//!
//! Needs `make venv` (moto) and the binaries built (`cargo build -p authtrail-forwarder`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use authtrail_harness::{CutProxy, Emulator, ScratchDir, bin_path};
use authtrail_runner::{
    FunctionConfig, KinesisEventSource, KinesisSourceConfig, LambdaFunction, OnFailure,
    SourceStats, invoke_scheduled,
};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use serde_json::{Value, json};
use siem_receiver::{Endpoint, IngestAuth, Receiver, ReceiverOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const SPLUNK_TOKEN: &str = "hec-token-outage";
const INGEST_TOKEN: &str = "ingest-token-outage";
const DLQ: &str = "dlq";
const T0: i64 = 1_739_388_470_156;

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// A Keycloak LOGIN event in the Contract 1 envelope, with the unique id `ev-NNNNN`.
fn login(i: usize) -> Value {
    let t = T0 + i as i64;
    let ts = chrono::DateTime::from_timestamp_millis(t)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    json!({"timestamp": ts, "eventType": "user-event", "event": {
        "id": format!("ev-{i:05}"), "time": t, "type": "LOGIN", "realmId": "realm-1", "clientId": "account-console",
        "userId": format!("user-{i}"), "sessionId": format!("sess-{i}"), "ipAddress": "198.51.100.3",
        "details": {"auth_method": "openid-connect", "username": format!("user{i}")}}})
}

fn ids(range: std::ops::Range<usize>) -> BTreeSet<String> {
    range.map(|i| format!("ev-{i:05}")).collect()
}

/// The event id of a record as an emitter sent it (the envelope, Splunk's `event` wrapper, or
/// an Elasticsearch `_bulk` item's `source`).
fn id_of(v: &Value) -> Option<String> {
    v.pointer("/event/id")
        .or_else(|| v.pointer("/event/event/id"))
        .or_else(|| v.pointer("/source/event/id"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// How often each event id reached `endpoint` of `receiver`.
fn counts(receiver: &Receiver, endpoint: Endpoint) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in receiver.received() {
        if r.endpoint == endpoint {
            for id in r.events.iter().filter_map(id_of) {
                *out.entry(id).or_default() += 1;
            }
        }
    }
    out
}

/// Every id of `want` arrived exactly once at `endpoint`, and nothing else did.
fn assert_each_once(what: &str, got: &BTreeMap<String, usize>, want: &BTreeSet<String>) {
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{what}: received more than once: {twice:?}"
    );
    let got_ids: BTreeSet<String> = got.keys().cloned().collect();
    let missing: Vec<_> = want.difference(&got_ids).collect();
    let extra: Vec<_> = got_ids.difference(want).collect();
    assert!(missing.is_empty(), "{what}: never received {missing:?}");
    assert!(extra.is_empty(), "{what}: unexpected {extra:?}");
}

/// Values of the EMF metric `name` in the function's logs (per-emitter and aggregate lines).
fn metric_values(f: &LambdaFunction, name: &str) -> Vec<f64> {
    f.log_lines()
        .iter()
        .filter_map(|l| {
            l.find('{')
                .and_then(|i| serde_json::from_str::<Value>(&l[i..]).ok())
        })
        .filter(|v| v.get("_aws").is_some())
        .filter_map(|v| v.get(name).and_then(Value::as_f64))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The bench: moto, a stream, the dead-letter bucket, receivers, the forwarder under the runner.
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
            scratch: ScratchDir::new("forwarder-outage-e2e").unwrap(),
            stream: stream.into(),
        }
    }

    async fn receiver(&self, label: &str) -> Receiver {
        let options = ReceiverOptions {
            splunk_token: SPLUNK_TOKEN.into(),
            ingest_auth: IngestAuth::Bearer(INGEST_TOKEN.into()),
            ..Default::default()
        };
        Receiver::start(&self.scratch.path().join(label), options)
            .await
            .unwrap()
    }

    async fn put(&self, range: std::ops::Range<usize>) {
        let kinesis = self.emu.kinesis().await;
        let records: Vec<Value> = range.map(login).collect();
        for chunk in records.chunks(500) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    PutRecordsRequestEntry::builder()
                        .data(Blob::new(format!("{v}\n").into_bytes()))
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

    /// The forwarder with `config`, the dead-letter bucket (and spool) in moto's S3, reached
    /// through `s3_endpoint` when given.
    async fn forwarder(&self, config: &Value, s3_endpoint: Option<String>) -> Arc<LambdaFunction> {
        let bin = bin_path("authtrail-forwarder")
            .expect("build it first: cargo build -p authtrail-forwarder");
        let mut env = vec![
            ("FORWARDER_CONFIG".to_string(), config.to_string()),
            ("DLQ_BUCKET".to_string(), DLQ.to_string()),
            ("DLQ_PREFIX".to_string(), "dlq/".to_string()),
            ("SPOOL_PREFIX".to_string(), "spool/".to_string()),
            ("AWS_LAMBDA_LOG_FORMAT".to_string(), "JSON".to_string()),
            // The receivers' tokens are given in plain text: a local run.
            (
                "AUTHTRAIL_ALLOW_PLAINTEXT_SECRETS".to_string(),
                "true".to_string(),
            ),
        ];
        if let Some(url) = s3_endpoint {
            env.push(("AWS_ENDPOINT_URL_S3".to_string(), url));
        }
        let mut cfg = FunctionConfig::new("forwarder", bin)
            .with_env(self.emu.env())
            .with_env(env)
            .with_timeout(Duration::from_secs(30));
        cfg.inherit_env = false;
        cfg.echo_logs = std::env::var_os("AUTHTRAIL_ECHO_LOGS").is_some();
        cfg.log_file = Some(self.scratch.path().join("forwarder.log"));
        Arc::new(LambdaFunction::start(cfg).await.unwrap())
    }

    /// The mapping as the templates set it: small batches, partial-batch responses, retries
    /// bounded by age, an S3 on-failure destination in the dead-letter bucket.
    async fn source(&self, f: &Arc<LambdaFunction>) -> KinesisEventSource {
        let mut cfg = KinesisSourceConfig::new(&self.stream);
        cfg.batch_size = 10;
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

    async fn run(&self, f: &Arc<LambdaFunction>) -> Running {
        let src = self.source(f).await;
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

    /// Spool objects (records waiting), leases aside.
    async fn spooled_objects(&self) -> Vec<String> {
        let mut keys = self.keys("spool/").await;
        keys.retain(|k| k.ends_with(".jsonl"));
        keys
    }

    /// Every dead letter, as text (a `dataBase64` field decoded and appended).
    async fn dead_letters(&self) -> Vec<String> {
        use base64::Engine as _;
        let mut out = Vec::new();
        for (_, body) in self.emu.objects(DLQ, "dlq/").await.unwrap() {
            let mut text = String::from_utf8_lossy(&body).into_owned();
            for line in text.clone().lines() {
                let Ok(v) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                if let Some(b64) = v["dataBase64"].as_str() {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .unwrap_or_default();
                    text.push_str(&String::from_utf8_lossy(&bytes));
                }
            }
            out.push(text);
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
}

/// Invokes the forwarder with scheduled events (redrive) until `done` or `limit` passes.
async fn redrive_until(f: &LambdaFunction, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "redrive did not finish within {limit:?}"
        );
        let inv = invoke_scheduled(f, "authtrail-forwarder-redrive")
            .await
            .unwrap();
        assert!(inv.is_success(), "scheduled redrive failed: {inv:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until `done` or panics after `limit`.
async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fast retry budget (so outages outlast many invocations' budgets) and a short breaker probe.
fn config(emitters: Value, spool: Value) -> Value {
    json!({
        "emitters": emitters,
        "retry": {"maxAttempts": 2, "initialBackoffMs": 50, "maxBackoffMs": 200},
        "spool": spool
    })
}

fn splunk(name: &str, r: &Receiver) -> Value {
    json!({"name": name, "type": "splunk-hec", "url": format!("{}/services/collector/event", r.url()),
           "token": SPLUNK_TOKEN, "caBundle": r.ca_path().display().to_string(), "emitTimeoutInSec": 2})
}

fn webhook(name: &str, r: &Receiver) -> Value {
    json!({"name": name, "type": "http", "url": format!("{}/ingest", r.url()), "token": INGEST_TOKEN,
           "caBundle": r.ca_path().display().to_string(), "emitTimeoutInSec": 2})
}

fn elastic(name: &str, r: &Receiver) -> Value {
    json!({"name": name, "type": "elasticsearch", "url": r.url(), "index": "audit",
           "caBundle": r.ca_path().display().to_string(), "emitTimeoutInSec": 2})
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_many_invocations_gets_every_record_once_after_it_returns_and_the_others_once_meanwhile()
 {
    let b = Bench::new("outage-down").await;
    let up = b.receiver("up").await;
    let down = b.receiver("down").await;
    let cfg = config(
        json!([
            splunk("splunk", &up),
            elastic("elastic", &up),
            webhook("webhook", &down)
        ]),
        json!({"redriveBudgetInSec": 5, "probeTimeoutInSec": 1}),
    );
    let f = b.forwarder(&cfg, None).await;
    let running = b.run(&f).await;

    // Live traffic before, during and after the outage; the outage spans many batches.
    b.put(0..20).await;
    wait_until(Duration::from_secs(30), "first records delivered", || {
        counts(&down, Endpoint::Ingest).len() == 20
    })
    .await;
    down.go_down().await;
    for wave in 0..6 {
        b.put(20 + wave * 20..40 + wave * 20).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let all_during = ids(0..140);
    wait_until(Duration::from_secs(60), "healthy emitters kept up", || {
        counts(&up, Endpoint::SplunkHec).len() == 140
    })
    .await;
    assert!(
        !b.spooled_objects().await.is_empty(),
        "the down emitter's records are spooled"
    );
    assert!(
        metric_values(&f, "Spooled").iter().any(|v| *v > 0.0),
        "Spooled metric"
    );

    down.come_back().await.unwrap();
    b.put(140..160).await;
    redrive_until(&f, Duration::from_secs(90), || {
        counts(&down, Endpoint::Ingest).len() == 160
    })
    .await;
    let start = Instant::now();
    loop {
        let (splunk, elastic) = (
            counts(&up, Endpoint::SplunkHec).len(),
            counts(&up, Endpoint::Elasticsearch).len(),
        );
        if (splunk, elastic) == (160, 160) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "healthy emitters got the last wave: splunk {splunk}, elastic {elastic} of 160"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = running.stop().await;

    let all = ids(0..160);
    assert!(all_during.is_subset(&all));
    assert_each_once("splunk (healthy)", &counts(&up, Endpoint::SplunkHec), &all);
    assert_each_once(
        "elastic (healthy)",
        &counts(&up, Endpoint::Elasticsearch),
        &all,
    );
    assert_each_once(
        "webhook (down, then back)",
        &counts(&down, Endpoint::Ingest),
        &all,
    );
    b.assert_nothing_given_up(&stats).await;
    assert!(b.spooled_objects().await.is_empty(), "spool drained");
    assert!(metric_values(&f, "Redriven").iter().any(|v| *v > 0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_answering_401_has_its_records_spooled_with_the_breaker_metric_and_delivered_once_after_the_fix()
 {
    let b = Bench::new("outage-401").await;
    let r = b.receiver("siem").await;
    let cfg = config(
        json!([splunk("splunk", &r)]),
        json!({"redriveBudgetInSec": 5, "probeTimeoutInSec": 1}),
    );
    let f = b.forwarder(&cfg, None).await;
    let running = b.run(&f).await;

    // The token is revoked: every request answers 401 until the operator fixes it.
    r.fail_for(Duration::from_secs(3600), 401);
    for wave in 0..4 {
        b.put(wave * 15..(wave + 1) * 15).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    let spool_start = Instant::now();
    while b.spooled_objects().await.is_empty() {
        assert!(
            spool_start.elapsed() < Duration::from_secs(30),
            "nothing spooled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_until(Duration::from_secs(30), "breaker metric", || {
        metric_values(&f, "BreakersOpen").iter().any(|v| *v >= 1.0)
            || metric_values(&f, "BreakerOpen").iter().any(|v| *v >= 1.0)
    })
    .await;
    assert!(
        r.rejections().iter().any(|x| x.status == 401),
        "the receiver refused with 401"
    );
    assert!(counts(&r, Endpoint::SplunkHec).is_empty());
    assert!(b.keys("dlq/").await.is_empty(), "401 is not a dead letter");

    // Fixed: everything spooled and everything new arrives, once.
    r.heal();
    b.put(60..75).await;
    redrive_until(&f, Duration::from_secs(90), || {
        counts(&r, Endpoint::SplunkHec).len() == 75
    })
    .await;
    let stats = running.stop().await;
    assert_each_once(
        "splunk after the fix",
        &counts(&r, Endpoint::SplunkHec),
        &ids(0..75),
    );
    b.assert_nothing_given_up(&stats).await;
    assert!(b.spooled_objects().await.is_empty(), "spool drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_writes_failing_report_batch_item_failures_and_nothing_is_lost_once_s3_is_back() {
    let b = Bench::new("outage-s3").await;
    let up = b.receiver("up").await;
    let down = b.receiver("down").await;
    let proxy = CutProxy::start(b.emu.port()).await.unwrap();
    let cfg = config(
        json!([splunk("splunk", &up), webhook("webhook", &down)]),
        json!({"redriveBudgetInSec": 5, "probeTimeoutInSec": 1}),
    );
    let f = b.forwarder(&cfg, Some(proxy.url())).await;
    let running = b.run(&f).await;
    b.put(0..10).await;
    wait_until(Duration::from_secs(30), "warm-up delivered", || {
        counts(&down, Endpoint::Ingest).len() == 10
    })
    .await;

    // The webhook's SIEM and S3 are both unreachable: its records cannot be spooled.
    down.go_down().await;
    proxy.cut();
    b.put(10..40).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(proxy.refused() > 0, "the forwarder tried to reach S3");
    assert!(
        metric_values(&f, "SpoolWriteFailures")
            .iter()
            .any(|v| *v > 0.0),
        "SpoolWriteFailures metric"
    );

    // S3 is back: the retried batches are spooled; then the SIEM is back and gets them.
    proxy.restore();
    wait_until(Duration::from_secs(60), "healthy emitter caught up", || {
        counts(&up, Endpoint::SplunkHec).len() == 40
    })
    .await;
    down.come_back().await.unwrap();
    redrive_until(&f, Duration::from_secs(90), || {
        counts(&down, Endpoint::Ingest).len() == 40
    })
    .await;
    let stats = running.stop().await;
    // batchItemFailures: a batch with some records failed is retried from the first one; one
    // whose every record failed is bisected, as Lambda does with bisection on.
    assert!(
        stats.total.partial_failures + stats.total.bisections > 0
            && stats.total.records_delivered > 40,
        "batchItemFailures while S3 was unreachable: {stats:?}"
    );
    // Not lost: the webhook got each record once (from the stream or the spool); the healthy
    // emitter got each at least once (a batch retried after a failed spool write is sent to
    // it again: at-least-once, same event id).
    assert_each_once("webhook", &counts(&down, Endpoint::Ingest), &ids(0..40));
    let splunk = counts(&up, Endpoint::SplunkHec);
    assert_eq!(
        splunk.keys().cloned().collect::<BTreeSet<_>>(),
        ids(0..40),
        "splunk"
    );
    b.assert_nothing_given_up(&stats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_spooled_longer_than_the_retention_becomes_a_dead_letter_with_its_metric() {
    let b = Bench::new("outage-expiry").await;
    let r = b.receiver("siem").await;
    let cfg = config(
        json!([webhook("webhook", &r)]),
        json!({"maxAgeInSec": 2, "redriveBudgetInSec": 5, "probeTimeoutInSec": 1}),
    );
    let f = b.forwarder(&cfg, None).await;
    r.go_down().await;
    b.put(0..12).await;
    let stats = b.source(&f).await.drain().await.unwrap();
    assert_eq!(stats.total.partial_failures, 0, "{stats:?}");
    assert!(!b.spooled_objects().await.is_empty(), "spooled");

    tokio::time::sleep(Duration::from_secs(3)).await;
    let inv = invoke_scheduled(&f, "authtrail-forwarder-redrive")
        .await
        .unwrap();
    assert!(inv.is_success(), "{inv:?}");
    let letters = b.dead_letters().await.join("\n");
    for id in ids(0..12) {
        assert!(letters.contains(&id), "{id} is not a dead letter");
    }
    assert!(letters.contains("spool retention exceeded"), "reason");
    let expired: f64 = metric_values(&f, "SpoolExpired").iter().sum();
    assert!(expired >= 12.0, "SpoolExpired metric: {expired}");
    assert!(
        b.spooled_objects().await.is_empty(),
        "expired records left the spool"
    );

    // The receiver returns: expired records are not sent any more.
    r.come_back().await.unwrap();
    invoke_scheduled(&f, "authtrail-forwarder-redrive")
        .await
        .unwrap();
    assert!(counts(&r, Endpoint::Ingest).is_empty());
}
