//! Partial PutRecords failures at integration level: moto never fails entries, so a small HTTP
//! proxy in front of it does, truthfully: it removes some entries from the PutRecords request
//! it forwards (so they are NOT in the stream) and reports exactly those entries back as
//! `ProvisionedThroughputExceededException` in the response. The real producer binary, run by
//! the local Lambda runner, must resend only those entries until all are accepted.
//!
//! Needs the `mpas-sim` binary (`cargo build --workspace --bins`; `make test` does it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use authtrail_harness::{Emulator, bin_path};
use authtrail_runner::{FunctionConfig, LambdaFunction, Outcome, invoke_scheduled};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

struct Proxy {
    upstream: String,
    http: reqwest::Client,
    /// Entries still to fail.
    budget: AtomicUsize,
    failed: AtomicUsize,
    forwarded_entries: AtomicUsize,
}

async fn forward(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let mut body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap()
        .to_vec();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut failed_positions: Vec<usize> = Vec::new();
    if target.ends_with(".PutRecords") {
        let mut v: Value = serde_json::from_slice(&body).unwrap();
        let records = v["Records"].as_array().cloned().unwrap_or_default();
        let mut kept = Vec::new();
        for (i, r) in records.into_iter().enumerate() {
            let fail = i % 3 == 1
                && p.budget
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
            if fail {
                failed_positions.push(i);
            } else {
                kept.push(r);
            }
        }
        p.forwarded_entries.fetch_add(kept.len(), Ordering::SeqCst);
        v["Records"] = Value::Array(kept);
        body = serde_json::to_vec(&v).unwrap();
    }
    let path = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
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
    let resp = up.body(body).send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut out = resp.bytes().await.unwrap().to_vec();
    if !failed_positions.is_empty() && status.is_success() {
        let v: Value = serde_json::from_slice(&out).unwrap();
        let mut accepted = v["Records"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter();
        let total = accepted.len() + failed_positions.len();
        let mut merged = Vec::with_capacity(total);
        for i in 0..total {
            if failed_positions.contains(&i) {
                merged.push(json!({
                    "ErrorCode": "ProvisionedThroughputExceededException",
                    "ErrorMessage": "Rate exceeded for shard shardId-000000000000 in stream authtrail-events"
                }));
            } else {
                merged.push(accepted.next().unwrap());
            }
        }
        let previously_failed = v["FailedRecordCount"].as_u64().unwrap_or(0);
        p.failed.fetch_add(failed_positions.len(), Ordering::SeqCst);
        out = serde_json::to_vec(&json!({
            "FailedRecordCount": previously_failed + failed_positions.len() as u64,
            "Records": merged,
        }))
        .unwrap();
    }
    let mut builder = Response::builder().status(status);
    for (name, value) in &headers {
        if !matches!(
            name.as_str(),
            "content-length" | "content-encoding" | "transfer-encoding"
        ) {
            builder = builder.header(name, value);
        }
    }
    builder.body(Body::from(out)).unwrap()
}

async fn start_proxy(upstream: &str, budget: usize) -> (String, Arc<Proxy>) {
    let state = Arc::new(Proxy {
        upstream: upstream.trim_end_matches('/').to_string(),
        http: reqwest::Client::new(),
        budget: AtomicUsize::new(budget),
        failed: AtomicUsize::new(0),
        forwarded_entries: AtomicUsize::new(0),
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
        .args(["--listen", "127.0.0.1:0", "--no-live", "--seed", "11"])
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_put_records_failures_are_resent_until_every_event_is_in_the_stream_once() {
    let em = Emulator::start().await.unwrap();
    em.create_stream("authtrail-events", 2).await.unwrap();
    em.create_bucket("ckpt").await.unwrap();
    let (_sim, sim_base) = start_sim(&["--history", "6000", "--rate", "4000"]).await;
    let (proxy_url, proxy) = start_proxy(em.endpoint(), 1500).await;

    let mut env = em.env();
    for (k, v) in [
        ("AWS_ENDPOINT_URL_KINESIS", proxy_url.as_str()),
        ("MPAS_BASE_URL", sim_base.as_str()),
        ("MPAS_REALM", "demo"),
        ("MPAS_CLIENT_ID", "authtrail"),
        ("MPAS_CLIENT_SECRET", "authtrail-secret"),
        ("KINESIS_STREAM_NAME", "authtrail-events"),
        ("CHECKPOINT_BUCKET", "ckpt"),
        ("SINK_BASE_BACKOFF_MS", "5"),
        ("MPAS_QUERY_LAG_MS", "0"),
        ("SINK_MAX_ATTEMPTS", "30"),
        ("AWS_LAMBDA_LOG_LEVEL", "warn"),
    ] {
        env.push((k.to_string(), v.to_string()));
    }
    let mut cfg = FunctionConfig::new("producer", env!("CARGO_BIN_EXE_authtrail-producer"))
        .with_env(env)
        .with_timeout(Duration::from_secs(120));
    cfg.echo_logs = false;
    let f = LambdaFunction::start(cfg).await.unwrap();
    // The history ends at the simulator's start-up "now": let the run's dateTo pass it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let inv = invoke_scheduled(&f, "producer-every-minute").await.unwrap();
    let summary: Value = match &inv.outcome {
        Outcome::Response(_) => inv.response_json().unwrap(),
        other => panic!("run failed: {other:?}\n{}", f.logs()),
    };
    assert_eq!(
        proxy.failed.load(Ordering::SeqCst),
        1500,
        "failures were injected"
    );
    assert!(
        summary["retriedEntries"].as_u64().unwrap() >= 1500,
        "{summary}"
    );
    assert_eq!(summary["put"], 6000);

    // Every event of the simulator is in the stream exactly once.
    let k = em.kinesis().await;
    let mut ids: HashMap<String, usize> = HashMap::new();
    let shards = k
        .list_shards()
        .stream_name("authtrail-events")
        .send()
        .await
        .unwrap();
    for shard in shards.shards() {
        let mut it = k
            .get_shard_iterator()
            .stream_name("authtrail-events")
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
                let v: Value = serde_json::from_slice(r.data().as_ref()).unwrap();
                *ids.entry(v["event"]["id"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
            it = page.next_shard_iterator().map(str::to_string);
        }
    }
    assert_eq!(ids.len(), 6000);
    assert!(ids.values().all(|n| *n == 1), "no event twice");
    assert_eq!(
        proxy.forwarded_entries.load(Ordering::SeqCst),
        6000,
        "only failed entries resent"
    );
}
