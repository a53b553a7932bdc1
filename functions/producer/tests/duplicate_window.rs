//! The window between "accepted by Kinesis" and "checkpoint saved", closed, at integration
//! level: the real producer binary under the local Lambda runner, moto's Kinesis and S3, and a
//! loopback proxy in front of S3 that lets the first checkpoint writes through and then fails
//! every later one (as if the process had died before they landed). The first run puts a page
//! whose checkpoint never lands; the next run (after the dead run's lease expired) finds the
//! page's intent, reads the stream back from moto (`AT_TIMESTAMP` iterators, which moto
//! serves), and writes every event exactly once in all. Records of another producer (a
//! Foxpass-style record, bytes that are not JSON) in the window are ignored.
//!
//! Needs the `mpas-sim` binary (`cargo build --workspace --bins`; `make test` does it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use authtrail_harness::{Emulator, bin_path};
use authtrail_runner::{FunctionConfig, LambdaFunction, Outcome, invoke_scheduled};
use aws_sdk_kinesis::primitives::Blob;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const STREAM: &str = "authtrail-events";
const BUCKET: &str = "ckpt";
const HISTORY: usize = 3000;

/// Forwards S3 requests to moto; once `allowed` checkpoint writes went through (while `armed`),
/// every further one is answered 500 without reaching moto.
struct S3Proxy {
    upstream: String,
    http: reqwest::Client,
    armed: AtomicBool,
    allowed: usize,
    writes: AtomicUsize,
    dropped: AtomicUsize,
}

async fn forward(State(p): State<Arc<S3Proxy>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let path = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/")
        .to_string();
    if parts.method == axum::http::Method::PUT
        && path.contains("checkpoint.json")
        && p.armed.load(Ordering::SeqCst)
        && p.writes.fetch_add(1, Ordering::SeqCst) >= p.allowed
    {
        p.dropped.fetch_add(1, Ordering::SeqCst);
        return Response::builder()
            .status(500)
            .header("content-type", "application/xml")
            .body(Body::from(
                "<Error><Code>InternalError</Code><Message>the process died</Message></Error>",
            ))
            .unwrap();
    }
    let mut up = p
        .http
        .request(parts.method.clone(), format!("{}{path}", p.upstream));
    for (name, value) in &parts.headers {
        if !matches!(
            name.as_str(),
            "host" | "content-length" | "accept-encoding" | "transfer-encoding"
        ) {
            up = up.header(name, value);
        }
    }
    let resp = up.body(body.to_vec()).send().await.unwrap();
    let mut builder = Response::builder().status(resp.status());
    for (name, value) in resp.headers() {
        if !matches!(
            name.as_str(),
            "content-length" | "content-encoding" | "transfer-encoding"
        ) {
            builder = builder.header(name, value);
        }
    }
    builder
        .body(Body::from(resp.bytes().await.unwrap()))
        .unwrap()
}

async fn start_proxy(upstream: &str, allowed: usize) -> (String, Arc<S3Proxy>) {
    let state = Arc::new(S3Proxy {
        upstream: upstream.trim_end_matches('/').to_string(),
        http: reqwest::Client::new(),
        armed: AtomicBool::new(true),
        allowed,
        writes: AtomicUsize::new(0),
        dropped: AtomicUsize::new(0),
    });
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), state)
}

async fn start_sim(args: &[&str]) -> (tokio::process::Child, String) {
    let mut child = Command::new(bin_path("mpas-sim").expect("cargo build --workspace --bins"))
        .args(["--listen", "127.0.0.1:0", "--no-live", "--seed", "19"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let base = line
        .strip_prefix("listening on ")
        .unwrap()
        .trim()
        .to_string();
    (child, base)
}

/// Every record's data in the stream, from its start.
async fn read_stream(em: &Emulator) -> Vec<Vec<u8>> {
    let k = em.kinesis().await;
    let mut out = Vec::new();
    let shards = k.list_shards().stream_name(STREAM).send().await.unwrap();
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
            out.extend(page.records().iter().map(|r| r.data().as_ref().to_vec()));
            it = page.next_shard_iterator().map(str::to_string);
        }
    }
    out
}

/// How often each MPAS event id is in the stream (records of other producers left out).
fn event_ids(records: &[Vec<u8>]) -> HashMap<String, usize> {
    let mut ids: HashMap<String, usize> = HashMap::new();
    for data in records {
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            continue;
        };
        if let Some(id) = v["event"]["id"].as_str() {
            *ids.entry(id.to_string()).or_default() += 1;
        }
    }
    ids
}

/// Expires the dead run's lease in the stored checkpoint (the next scheduled run comes after
/// its deadline) and returns the checkpoint.
async fn expire_lease(em: &Emulator) -> Value {
    let s3 = em.s3().await;
    let key = "authtrail/producer/demo/checkpoint.json";
    let body = s3
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    let mut cp: Value = serde_json::from_slice(&body).unwrap();
    if let Some(lease) = cp.get_mut("lease") {
        lease["expiresAt"] = Value::from(0);
    }
    s3.put_object()
        .bucket(BUCKET)
        .key(key)
        .body(serde_json::to_vec(&cp).unwrap().into())
        .send()
        .await
        .unwrap();
    cp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_accepted_before_a_checkpoint_that_never_landed_is_not_written_again_by_the_next_run()
 {
    let em = Emulator::start().await.unwrap();
    em.create_stream(STREAM, 2).await.unwrap();
    em.create_bucket(BUCKET).await.unwrap();
    let history = HISTORY.to_string();
    let (_sim, sim_base) = start_sim(&["--history", &history, "--rate", "4000"]).await;
    // Lease, the first page's intent, the first page's checkpoint (with the second page's
    // intent): then the process "dies" before the second page's checkpoint lands.
    let (proxy_url, proxy) = start_proxy(em.endpoint(), 3).await;

    let mut env = em.env();
    for (k, v) in [
        ("AWS_ENDPOINT_URL_S3", proxy_url.as_str()),
        ("MPAS_BASE_URL", sim_base.as_str()),
        ("MPAS_REALM", "demo"),
        ("MPAS_CLIENT_ID", "authtrail"),
        ("MPAS_CLIENT_SECRET", "authtrail-secret"),
        ("MPAS_PAGE_SIZE", "500"),
        ("KINESIS_STREAM_NAME", STREAM),
        ("CHECKPOINT_BUCKET", BUCKET),
        ("MPAS_QUERY_LAG_MS", "0"),
        ("AWS_LAMBDA_LOG_LEVEL", "info"),
    ] {
        env.push((k.to_string(), v.to_string()));
    }
    let mut cfg = FunctionConfig::new("producer", env!("CARGO_BIN_EXE_authtrail-producer"))
        .with_env(env)
        .with_timeout(Duration::from_secs(120));
    cfg.echo_logs = false;
    let f = LambdaFunction::start(cfg).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    let first = invoke_scheduled(&f, "producer-every-minute").await.unwrap();
    assert!(
        !matches!(first.outcome, Outcome::Response(_)),
        "the first run dies at its checkpoint: {:?}",
        first.outcome
    );
    assert!(proxy.dropped.load(Ordering::SeqCst) >= 1);
    let before = event_ids(&read_stream(&em).await);
    let cp = expire_lease(&em).await;
    let pending = cp["pending"]["user"]["records"].as_array().unwrap();
    let in_stream = pending
        .iter()
        .filter(|r| before.contains_key(r["k"].as_str().unwrap()))
        .count();
    assert!(
        in_stream > 0 && in_stream == pending.len(),
        "the second page was accepted in full ({in_stream} of {}) before the checkpoint died",
        pending.len()
    );

    // Another producer writes into the same stream meanwhile: a Foxpass-style record and bytes
    // that are not JSON.
    let k = em.kinesis().await;
    for data in [
        br#"{"type":"bind","timestamp":"2025-02-12 19:27:50.156","src_ip":"198.51.100.7"}"#
            .to_vec(),
        vec![0xff, 0x00, 0xfe],
    ] {
        k.put_record()
            .stream_name(STREAM)
            .partition_key("foreign")
            .data(Blob::new(data))
            .send()
            .await
            .unwrap();
    }

    proxy.armed.store(false, Ordering::SeqCst);
    let second = invoke_scheduled(&f, "producer-every-minute").await.unwrap();
    let summary: Value = match &second.outcome {
        Outcome::Response(_) => second.response_json().unwrap(),
        other => panic!("second run failed: {other:?}\n{}", f.logs()),
    };
    assert_eq!(summary["pendingFound"], in_stream as u64, "{summary}");
    assert_eq!(summary["pendingUnsettled"], 0, "{summary}");
    assert_eq!(summary["pendingResent"], 0, "{summary}");
    assert!(
        f.logs()
            .contains("read the stream back for an interrupted put"),
        "the reading is logged"
    );

    let records = read_stream(&em).await;
    let ids = event_ids(&records);
    assert_eq!(ids.len(), HISTORY, "no event lost");
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "written twice: {twice:?}");
    assert_eq!(
        records.len(),
        HISTORY + 2,
        "ours once each, plus the two foreign ones"
    );
}
