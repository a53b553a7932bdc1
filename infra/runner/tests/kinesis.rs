//! The Kinesis event-source mapping against moto's Kinesis and S3 (via authtrail-harness), with
//! a real `lambda_runtime` function (`runner-test-function`) as the target.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use authtrail_harness::Emulator;
use authtrail_runner::{
    FunctionConfig, KinesisEventSource, KinesisSourceConfig, LambdaFunction, OnFailure,
    StartingPosition,
};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use serde_json::Value;

struct Fixture {
    emu: Emulator,
    state: PathBuf,
    _tmp: TempDir,
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Fixture {
    async fn new() -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                std::env::var("RUNNER_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            ))
            .with_test_writer()
            .try_init();
        let emu = Emulator::start().await.expect("moto (run `make venv`)");
        let dir = std::env::temp_dir().join(format!("runner-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            emu,
            state: dir.clone(),
            _tmp: TempDir(dir),
        }
    }

    async fn function(&self, name: &str) -> Arc<LambdaFunction> {
        let mut cfg = FunctionConfig::new(name, env!("CARGO_BIN_EXE_runner-test-function"))
            .with_env(self.emu.env())
            .with_env([("TEST_STATE_DIR", self.state.display().to_string())]);
        cfg.echo_logs = false;
        cfg.inherit_env = false;
        Arc::new(LambdaFunction::start(cfg).await.unwrap())
    }

    async fn source(
        &self,
        cfg: KinesisSourceConfig,
        f: &Arc<LambdaFunction>,
    ) -> KinesisEventSource {
        KinesisEventSource::new(&self.emu.sdk_config().await, cfg, f.clone())
            .await
            .unwrap()
    }

    /// Puts records (500 per call); `shard_hash` pins them to a shard by explicit hash key.
    async fn put(&self, stream: &str, data: &[String], shard_hash: Option<&str>) -> Vec<String> {
        let kinesis = self.emu.kinesis().await;
        let mut seqs = Vec::new();
        for chunk in data.chunks(500) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let mut e = PutRecordsRequestEntry::builder()
                        .data(Blob::new(d.as_bytes()))
                        .partition_key(format!("pk-{i}"));
                    if let Some(h) = shard_hash {
                        e = e.explicit_hash_key(h);
                    }
                    e.build().unwrap()
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
            seqs.extend(
                out.records()
                    .iter()
                    .map(|r| r.sequence_number().unwrap().to_owned()),
            );
        }
        seqs
    }

    /// `(shard, sequence number)` of every delivered record, in delivery order.
    fn deliveries(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.state.join("deliveries.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let (s, q) = l.split_once(' ').unwrap();
                (s.to_owned(), q.to_owned())
            })
            .collect()
    }

    fn delivered_seqs(&self) -> Vec<String> {
        self.deliveries().into_iter().map(|(_, s)| s).collect()
    }

    async fn on_failure_records(&self, bucket: &str) -> Vec<Value> {
        let s3 = self.emu.s3().await;
        let list = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
        let mut out = Vec::new();
        for o in list.contents() {
            let key = o.key().unwrap();
            let body = s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap();
            let bytes = body.body.collect().await.unwrap().into_bytes();
            let mut v: Value = serde_json::from_slice(&bytes).unwrap();
            v["__key"] = Value::String(key.to_owned());
            out.push(v);
        }
        out
    }
}

fn fast(stream: &str) -> KinesisSourceConfig {
    KinesisSourceConfig {
        retry_backoff: Duration::from_millis(10),
        poll_interval: Duration::from_millis(50),
        ..KinesisSourceConfig::new(stream)
    }
}

fn records(n: usize, f: impl Fn(usize) -> String) -> Vec<String> {
    (0..n).map(f).collect()
}

#[tokio::test]
async fn ten_thousand_records_are_split_at_the_6mb_payload_cap_and_delivered_once_in_order() {
    let fx = Fixture::new().await;
    fx.emu.create_stream("big", 1).await.unwrap();
    let body = "x".repeat(480);
    let seqs = fx
        .put(
            "big",
            &records(10_000, |i| format!("{{\"i\":{i:05},\"p\":\"{body}\"}}")),
            None,
        )
        .await;
    let f = fx.function("big").await;
    let src = fx
        .source(
            KinesisSourceConfig {
                batch_size: 10_000,
                ..fast("big")
            },
            &f,
        )
        .await;
    let stats = src.drain().await.unwrap();
    assert!(
        stats.batches.len() >= 2,
        "a 10,000 x 500 B batch must be split: {stats}"
    );
    for b in &stats.batches {
        assert!(b.payload_bytes <= 6_291_456, "{b:?}");
    }
    assert!(
        stats.total.max_payload_bytes > 5_000_000,
        "batches are filled up to the cap: {stats}"
    );
    assert_eq!(fx.delivered_seqs(), seqs, "every record once, in order");
    assert_eq!(stats.total.records_processed, 10_000);
    assert_eq!(src.checkpoints().values().next(), seqs.last());
}

#[tokio::test]
async fn partial_batch_failure_replays_from_the_lowest_reported_sequence_number() {
    let fx = Fixture::new().await;
    fx.emu.create_stream("partial", 1).await.unwrap();
    let seqs = fx
        .put(
            "partial",
            &records(10, |i| {
                if i == 4 || i == 7 {
                    format!("r{i} FAIL-ONCE")
                } else {
                    format!("r{i}")
                }
            }),
            None,
        )
        .await;
    let f = fx.function("partial").await;
    let cfg = KinesisSourceConfig {
        batch_size: 100,
        report_batch_item_failures: true,
        ..fast("partial")
    };
    let stats = fx.source(cfg, &f).await.drain().await.unwrap();
    let delivered = fx.delivered_seqs();
    // First batch: all 10. Replay from record 4 (the lowest failure), not from record 7.
    let mut expected = seqs.clone();
    expected.extend_from_slice(&seqs[4..]);
    // Record 7 failed once in the first batch only (its marker is set then), so one replay suffices.
    assert_eq!(delivered, expected);
    assert_eq!(stats.total.partial_failures, 1);
    assert_eq!(stats.total.records_processed, 10);
    assert_eq!(stats.total.records_discarded, 0);
}

#[tokio::test]
async fn function_error_is_retried_until_the_batch_succeeds() {
    let fx = Fixture::new().await;
    fx.emu.create_stream("err", 1).await.unwrap();
    let seqs = fx
        .put(
            "err",
            &records(3, |i| {
                if i == 1 {
                    "ERROR-ONCE".into()
                } else {
                    format!("r{i}")
                }
            }),
            None,
        )
        .await;
    let f = fx.function("err").await;
    let stats = fx
        .source(
            KinesisSourceConfig {
                max_retry_attempts: 2,
                ..fast("err")
            },
            &f,
        )
        .await
        .drain()
        .await
        .unwrap();
    let mut expected = seqs.clone();
    expected.extend_from_slice(&seqs);
    assert_eq!(
        fx.delivered_seqs(),
        expected,
        "same batch redelivered whole"
    );
    assert_eq!(stats.total.function_errors, 1);
    assert_eq!(stats.total.retries, 1);
    assert_eq!(stats.total.records_processed, 3);
}

#[tokio::test]
async fn crash_is_retried_then_given_up_after_max_retry_attempts_with_an_s3_on_failure_record() {
    let fx = Fixture::new().await;
    fx.emu.create_stream("crash", 1).await.unwrap();
    fx.emu.create_bucket("dlq").await.unwrap();
    let seqs = fx
        .put(
            "crash",
            &records(5, |i| {
                if i == 2 {
                    "CRASH".into()
                } else {
                    format!("r{i}")
                }
            }),
            None,
        )
        .await;
    let f = fx.function("crash").await;
    let cfg = KinesisSourceConfig {
        max_retry_attempts: 2,
        on_failure: Some(OnFailure::S3 {
            bucket: "dlq".into(),
            prefix: "failed/".into(),
        }),
        ..fast("crash")
    };
    let src = fx.source(cfg, &f).await;
    let stats = src.drain().await.unwrap();
    assert_eq!(stats.total.invocations, 3, "1 attempt + 2 retries: {stats}");
    assert_eq!(stats.total.crashes, 3);
    assert_eq!(stats.total.records_discarded, 5);
    assert_eq!(f.cold_starts(), 3, "every crash costs a cold start");
    let recs = fx.on_failure_records("dlq").await;
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert!(r["__key"].as_str().unwrap().starts_with(&format!(
        "failed/aws/lambda/{}/shardId-000000000000/",
        src.uuid()
    )));
    assert_eq!(r["requestContext"]["condition"], "RetryAttemptsExhausted");
    assert_eq!(r["requestContext"]["approximateInvokeCount"], 3);
    assert_eq!(
        r["KinesisBatchInfo"]["startSequenceNumber"],
        seqs[0].as_str()
    );
    assert_eq!(r["KinesisBatchInfo"]["endSequenceNumber"], seqs[4].as_str());
    assert_eq!(r["KinesisBatchInfo"]["batchSize"], 5);
    assert_eq!(r["KinesisBatchInfo"]["streamArn"], src.stream_arn());
    // The shard moves on: a later record is processed.
    let more = fx.put("crash", &["after".to_owned()], None).await;
    let stats = src.drain().await.unwrap();
    assert_eq!(stats.total.records_processed, 1);
    assert_eq!(src.checkpoints()["shardId-000000000000"], more[0]);
}

#[tokio::test]
async fn bisect_splits_a_failing_batch_until_the_bad_record_is_isolated() {
    let fx = Fixture::new().await;
    fx.emu.create_stream("bisect", 1).await.unwrap();
    fx.emu.create_bucket("dlq").await.unwrap();
    let seqs = fx
        .put(
            "bisect",
            &records(8, |i| {
                if i == 5 {
                    "ERROR".into()
                } else {
                    format!("r{i}")
                }
            }),
            None,
        )
        .await;
    let f = fx.function("bisect").await;
    let cfg = KinesisSourceConfig {
        max_retry_attempts: 0,
        bisect_batch_on_function_error: true,
        on_failure: Some(OnFailure::S3 {
            bucket: "dlq".into(),
            prefix: String::new(),
        }),
        ..fast("bisect")
    };
    let stats = fx.source(cfg, &f).await.drain().await.unwrap();
    // [0..8) fails -> [0..4) ok, [4..8) fails -> [4..6) fails -> [4] ok, [5] fails (discarded), [6..8) ok.
    let sizes: Vec<usize> = stats.batches.iter().map(|b| b.records).collect();
    assert_eq!(sizes, vec![8, 4, 4, 2, 1, 1, 2], "{:?}", stats.batches);
    assert_eq!(stats.total.bisections, 3);
    assert_eq!(stats.total.records_discarded, 1);
    assert_eq!(stats.total.records_processed, 7);
    let recs = fx.on_failure_records("dlq").await;
    assert_eq!(recs.len(), 1);
    assert_eq!(
        recs[0]["KinesisBatchInfo"]["startSequenceNumber"],
        seqs[5].as_str()
    );
    assert_eq!(
        recs[0]["KinesisBatchInfo"]["endSequenceNumber"],
        seqs[5].as_str()
    );
}

#[tokio::test]
async fn records_older_than_max_record_age_go_to_the_on_failure_destination_unprocessed() {
    let fx = Fixture::new().await;
    fx.emu.create_stream("age", 1).await.unwrap();
    fx.emu.create_bucket("dlq").await.unwrap();
    let old = fx
        .put("age", &records(3, |i| format!("old{i}")), None)
        .await;
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let f = fx.function("age").await;
    let cfg = KinesisSourceConfig {
        max_record_age: Some(Duration::from_secs(2)),
        on_failure: Some(OnFailure::S3 {
            bucket: "dlq".into(),
            prefix: String::new(),
        }),
        ..fast("age")
    };
    let src = fx.source(cfg, &f).await;
    let stats = src.drain().await.unwrap();
    assert_eq!(stats.total.invocations, 0);
    assert_eq!(stats.total.records_expired, 3);
    assert!(fx.delivered_seqs().is_empty());
    let recs = fx.on_failure_records("dlq").await;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["requestContext"]["condition"], "RecordAgeExceeded");
    assert_eq!(
        recs[0]["KinesisBatchInfo"]["startSequenceNumber"],
        old[0].as_str()
    );
    assert_eq!(
        recs[0]["KinesisBatchInfo"]["endSequenceNumber"],
        old[2].as_str()
    );
    let fresh = fx.put("age", &["new".to_owned()], None).await;
    src.drain().await.unwrap();
    assert_eq!(fx.delivered_seqs(), fresh);
}

#[tokio::test]
async fn two_shards_are_processed_independently_and_in_order_per_shard() {
    let fx = Fixture::new().await;
    fx.emu.create_stream("two", 2).await.unwrap();
    // Shard 0 owns hash keys [0, 2^127), shard 1 the rest. Shard 0 has a record that fails
    // twice before it succeeds; shard 1 must not wait for it or be replayed.
    let s0 = fx
        .put(
            "two",
            &records(20, |i| {
                if i == 3 {
                    "CRASH-ONCE".into()
                } else {
                    format!("a{i}")
                }
            }),
            Some("1"),
        )
        .await;
    let s1 = fx
        .put(
            "two",
            &records(20, |i| format!("b{i}")),
            Some("170141183460469231731687303715884105728"),
        )
        .await;
    let f = fx.function("two").await;
    let stats = fx
        .source(
            KinesisSourceConfig {
                batch_size: 5,
                ..fast("two")
            },
            &f,
        )
        .await
        .drain()
        .await
        .unwrap();
    let mut by_shard: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (shard, seq) in fx.deliveries() {
        by_shard.entry(shard).or_default().push(seq);
    }
    let mut expected0 = s0[..5].to_vec();
    expected0.extend_from_slice(&s0);
    assert_eq!(
        by_shard["shardId-000000000000"], expected0,
        "shard 0 retried its first batch, in order"
    );
    assert_eq!(
        by_shard["shardId-000000000001"], s1,
        "shard 1 delivered once, in order"
    );
    assert_eq!(stats.shards.len(), 2);
    assert_eq!(stats.shards["shardId-000000000000"].counters.crashes, 1);
    assert_eq!(stats.shards["shardId-000000000001"].counters.retries, 0);
    assert_eq!(stats.total.records_processed, 40);
}

#[tokio::test]
async fn two_mappings_on_one_stream_each_get_every_record_and_a_later_drain_resumes_at_the_checkpoint()
 {
    let fx = Fixture::new().await;
    fx.emu.create_stream("fan", 1).await.unwrap();
    let first = fx.put("fan", &records(7, |i| format!("r{i}")), None).await;
    let a = fx.function("consumer-a").await;
    let b = fx.function("consumer-b").await;
    let src_a = fx
        .source(
            KinesisSourceConfig {
                batch_size: 3,
                ..fast("fan")
            },
            &a,
        )
        .await;
    let src_b = fx
        .source(
            KinesisSourceConfig {
                batch_size: 100,
                ..fast("fan")
            },
            &b,
        )
        .await;
    let (sa, sb) = tokio::join!(src_a.drain(), src_b.drain());
    assert_eq!(sa.unwrap().total.records_processed, 7);
    assert_eq!(sb.unwrap().total.records_processed, 7);
    let second = fx.put("fan", &records(2, |i| format!("s{i}")), None).await;
    let sa = src_a.drain().await.unwrap();
    assert_eq!(
        sa.total.records_delivered, 2,
        "resumes after the checkpoint"
    );
    assert_eq!(src_a.checkpoints()["shardId-000000000000"], second[1]);
    assert_eq!(src_b.checkpoints()["shardId-000000000000"], first[6]);
}

#[tokio::test]
async fn latest_starting_position_skips_records_put_before_the_mapping_existed() {
    let fx = Fixture::new().await;
    fx.emu.create_stream("latest", 1).await.unwrap();
    fx.put("latest", &records(3, |i| format!("before{i}")), None)
        .await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let f = fx.function("latest").await;
    let src = fx
        .source(
            KinesisSourceConfig {
                starting_position: StartingPosition::Latest,
                ..fast("latest")
            },
            &f,
        )
        .await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let after = fx
        .put("latest", &records(2, |i| format!("after{i}")), None)
        .await;
    src.drain().await.unwrap();
    assert_eq!(fx.delivered_seqs(), after);
}

#[tokio::test]
async fn run_for_stops_and_returns_stats() {
    let fx = Fixture::new().await;
    fx.emu.create_stream("run", 1).await.unwrap();
    let seqs = fx.put("run", &records(4, |i| format!("r{i}")), None).await;
    let f = fx.function("run").await;
    let cfg = KinesisSourceConfig {
        max_batching_window: Duration::from_millis(200),
        ..fast("run")
    };
    let stats = fx
        .source(cfg, &f)
        .await
        .run_for(Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(stats.total.records_processed, 4);
    assert_eq!(fx.delivered_seqs(), seqs);
}
