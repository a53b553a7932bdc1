//! End-to-end test of the forwarder's isolation at the throughput level: an emitter whose
//! receiver accepts TCP connections and never answers costs the other emitters nothing once its
//! breaker is open. Real records in moto's Kinesis stream, read by the event-source runner and
//! delivered by the real `authtrail-forwarder` binary to local HTTPS receivers, with the spool
//! in moto's S3 and redrive driven by EventBridge scheduled events.
//!
//! The stalled receiver is a loopback proxy that, while stalled, accepts every connection and
//! holds it without reading or answering (a TLS handshake that never ends, as with a black
//! hole behind a load balancer); it counts the connections. Released, it passes connections
//! through to a real receiver. Over many Kinesis invocations, on a warm instance and then on a
//! new one (which reads the breaker at cold start), the stalled receiver sees at most the
//! connections of the one invocation that found it down (`retry.maxAttempts`), and the healthy
//! receiver gets each record once; once released, the scheduled redrive delivers every record
//! once to it too, and the breaker is closed in S3.
//!
//! Needs `make venv` (moto) and the binaries built (`cargo build -p authtrail-forwarder`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authtrail_harness::{Emulator, ScratchDir, bin_path};
use authtrail_runner::{
    FunctionConfig, KinesisEventSource, KinesisSourceConfig, LambdaFunction, OnFailure,
    invoke_scheduled,
};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use serde_json::{Value, json};
use siem_receiver::{Endpoint, IngestAuth, Receiver, ReceiverOptions};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const INGEST_TOKEN: &str = "ingest-token-isolation";
const DLQ: &str = "dlq";
const T0: i64 = 1_739_388_470_156;
/// `retry.maxAttempts` of the configuration: the requests of the one invocation that finds the
/// receiver down.
const MAX_ATTEMPTS: usize = 2;

/// A Keycloak LOGIN event in the Contract 1 envelope, with the unique id `ev-NNNNN`.
fn login(i: usize) -> Value {
    let t = T0 + i as i64;
    let ts = chrono::DateTime::from_timestamp_millis(t)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    json!({"timestamp": ts, "eventType": "user-event", "event": {
        "id": format!("ev-{i:05}"), "time": t, "type": "LOGIN", "realmId": "realm-1", "clientId": "account-console",
        "userId": format!("user-{i}"), "sessionId": format!("sess-{i}"), "ipAddress": "198.51.100.7",
        "details": {"auth_method": "openid-connect", "username": format!("user{i}")}}})
}

fn ids(range: std::ops::Range<usize>) -> BTreeSet<String> {
    range.map(|i| format!("ev-{i:05}")).collect()
}

/// How often each event id reached the receiver's ingest endpoint.
fn counts(receiver: &Receiver) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for v in receiver.events(Endpoint::Ingest) {
        if let Some(id) = v.pointer("/event/id").and_then(Value::as_str) {
            *out.entry(id.to_string()).or_default() += 1;
        }
    }
    out
}

/// Every id of `want` arrived exactly once, and nothing else did.
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

/// Waits until `done` or panics after `limit`.
async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A loopback proxy that stalls (accepts and holds every connection, reading and answering
/// nothing) until released, then passes connections through to a target port. Counts the
/// connections it accepted while stalled.
struct StallProxy {
    port: u16,
    target: Arc<AtomicU16>,
    stalled: Arc<AtomicUsize>,
    held: Arc<Mutex<Vec<TcpStream>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl StallProxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = Arc::new(AtomicU16::new(0));
        let stalled = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (t, s, h) = (target.clone(), stalled.clone(), held.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let to = t.load(Ordering::SeqCst);
                if to == 0 {
                    s.fetch_add(1, Ordering::SeqCst);
                    h.lock().unwrap().push(client);
                    continue;
                }
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(("127.0.0.1", to)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self {
            port,
            target,
            stalled,
            held,
            accept,
        }
    }

    /// Connections accepted while stalled.
    fn stalled_connections(&self) -> usize {
        self.stalled.load(Ordering::SeqCst)
    }

    /// From now on, connections go through to `port`; the held ones are closed.
    fn release(&self, port: u16) {
        self.target.store(port, Ordering::SeqCst);
        self.held.lock().unwrap().clear();
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn put(emu: &Emulator, stream: &str, range: std::ops::Range<usize>) {
    let kinesis = emu.kinesis().await;
    let entries = range
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .data(Blob::new(format!("{}\n", login(i)).into_bytes()))
                .partition_key(format!("pk-{i}"))
                .build()
                .unwrap()
        })
        .collect::<Vec<_>>();
    let out = kinesis
        .put_records()
        .stream_name(stream)
        .set_records(Some(entries))
        .send()
        .await
        .unwrap();
    assert_eq!(out.failed_record_count(), Some(0));
}

async fn keys(emu: &Emulator, prefix: &str) -> Vec<String> {
    emu.objects(DLQ, prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// Puts `waves` waves of ten records from `from`, each once the healthy receiver has the
/// previous one (so that each wave is its own invocation or two).
async fn waves(emu: &Emulator, stream: &str, healthy: &Receiver, from: usize, waves: usize) {
    for w in 0..waves {
        let end = from + (w + 1) * 10;
        put(emu, stream, from + w * 10..end).await;
        wait_until(
            Duration::from_secs(30),
            "the healthy receiver kept up",
            || counts(healthy).len() >= end,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_gets_no_request_per_invocation_once_its_breaker_is_open_and_the_healthy_one_each_record_once()
 {
    let stream = "isolation-stall";
    let emu = Emulator::start()
        .await
        .expect("moto_server (run `make venv`)");
    emu.create_stream(stream, 1).await.unwrap();
    emu.create_bucket(DLQ).await.unwrap();
    let scratch = ScratchDir::new("forwarder-isolation-e2e").unwrap();
    let options = || ReceiverOptions {
        ingest_auth: IngestAuth::Bearer(INGEST_TOKEN.into()),
        ..Default::default()
    };
    let healthy = Receiver::start(&scratch.path().join("healthy"), options())
        .await
        .unwrap();
    let siem = Receiver::start(&scratch.path().join("siem"), options())
        .await
        .unwrap();
    let proxy = StallProxy::start().await;
    let webhook = |name: &str, url: String, r: &Receiver, timeout: u64| {
        json!({"name": name, "type": "http", "url": url, "token": INGEST_TOKEN,
               "caBundle": r.ca_path().display().to_string(), "emitTimeoutInSec": timeout})
    };
    // The probe interval is longer than the test: no warm instance probes by time, so the
    // bound below does not depend on how fast the machine is (the unit tests cover probing).
    let config = json!({
        "emitters": [
            webhook("healthy", format!("{}/ingest", healthy.url()), &healthy, 5),
            webhook("siem", format!("https://127.0.0.1:{}/ingest", proxy.port), &siem, 1),
        ],
        "retry": {"maxAttempts": MAX_ATTEMPTS, "initialBackoffMs": 50, "maxBackoffMs": 200},
        "spool": {"redriveBudgetInSec": 5, "probeTimeoutInSec": 1, "probeIntervalInSec": 3600}
    });
    let bin = bin_path("authtrail-forwarder")
        .expect("build it first: cargo build -p authtrail-forwarder");
    let mut cfg = FunctionConfig::new("forwarder", bin)
        .with_env(emu.env())
        .with_env([
            ("FORWARDER_CONFIG", config.to_string()),
            ("DLQ_BUCKET", DLQ.to_string()),
            ("DLQ_PREFIX", "dlq/".to_string()),
            ("SPOOL_PREFIX", "spool/".to_string()),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON".to_string()),
            // The receivers' tokens are given in plain text: a local run.
            ("AUTHTRAIL_ALLOW_PLAINTEXT_SECRETS", "true".to_string()),
        ])
        .with_timeout(Duration::from_secs(30));
    cfg.inherit_env = false;
    cfg.echo_logs = std::env::var_os("AUTHTRAIL_ECHO_LOGS").is_some();
    cfg.log_file = Some(scratch.path().join("forwarder.log"));
    let f = Arc::new(LambdaFunction::start(cfg).await.unwrap());

    // The mapping as the templates set it, with small batches (many invocations).
    let mut source = KinesisSourceConfig::new(stream);
    source.batch_size = 10;
    source.report_batch_item_failures = true;
    source.bisect_batch_on_function_error = true;
    source.max_retry_attempts = 10_000;
    source.max_record_age = Some(Duration::from_secs(86_400));
    source.on_failure = Some(OnFailure::S3 {
        bucket: DLQ.into(),
        prefix: String::new(),
    });
    source.retry_backoff = Duration::from_millis(200);
    source.poll_interval = Duration::from_millis(100);
    let src = KinesisEventSource::new(&emu.sdk_config().await, source, f.clone())
        .await
        .unwrap();
    let (stop, rx) = oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        src.run_until(async {
            let _ = rx.await;
        })
        .await
        .unwrap()
    });

    // A warm instance: the first invocation finds the receiver stalled and opens the breaker;
    // the next ones spool its records at once.
    waves(&emu, stream, &healthy, 0, 10).await;
    let warm = proxy.stalled_connections();
    assert!(
        (1..=MAX_ATTEMPTS).contains(&warm),
        "the invocation that found the receiver down made {warm} connections"
    );
    assert!(
        keys(&emu, "spool/siem/")
            .await
            .contains(&"spool/siem/.breaker".to_string()),
        "the open breaker is recorded"
    );

    // A new instance reads the open breaker at cold start: no connection to the stalled
    // receiver at all.
    f.shutdown().await;
    waves(&emu, stream, &healthy, 100, 6).await;
    assert_eq!(f.cold_starts(), 2);
    assert!(
        f.log_lines()
            .iter()
            .any(|l| l.contains("breaker open (read from the spool)")),
        "the new instance read the breaker"
    );
    assert_eq!(
        proxy.stalled_connections(),
        warm,
        "no request to the stalled receiver once its breaker is open"
    );
    assert!(!keys(&emu, "spool/siem/").await.is_empty());

    // The receiver answers again: the scheduled redrive probes it, closes the breaker and
    // delivers every spooled record; new records go straight to it.
    proxy.release(siem.port());
    let start = Instant::now();
    while counts(&siem).len() < 160 {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "redrive: {} of 160",
            counts(&siem).len()
        );
        let inv = invoke_scheduled(&f, "authtrail-forwarder-redrive")
            .await
            .unwrap();
        assert!(inv.is_success(), "scheduled redrive failed: {inv:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        !keys(&emu, "spool/siem/")
            .await
            .iter()
            .any(|k| k.ends_with(".breaker")),
        "the closed breaker is recorded"
    );
    put(&emu, stream, 160..170).await;
    wait_until(Duration::from_secs(30), "the last wave at both", || {
        counts(&healthy).len() == 170 && counts(&siem).len() == 170
    })
    .await;
    let _ = stop.send(());
    let stats = running.await.unwrap();

    assert!(stats.total.invocations >= 16, "{stats:?}");
    assert_each_once("healthy", &counts(&healthy), &ids(0..170));
    assert_each_once("siem (stalled, then back)", &counts(&siem), &ids(0..170));
    assert_eq!(stats.total.records_discarded, 0, "{stats:?}");
    assert!(keys(&emu, "dlq/").await.is_empty(), "dead letters");
    assert!(
        keys(&emu, "aws/lambda/").await.is_empty(),
        "failure destination"
    );
    assert!(
        !keys(&emu, "spool/")
            .await
            .iter()
            .any(|k| k.ends_with(".jsonl")),
        "spool drained"
    );
}
