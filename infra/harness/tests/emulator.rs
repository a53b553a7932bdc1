//! The emulator harness against the real moto server: start, answer, stop, also on panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use authtrail_harness::Emulator;

async fn answers(port: u16) -> bool {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    client
        .get(format!("http://127.0.0.1:{port}/moto-api/"))
        .send()
        .await
        .is_ok()
}

async fn stops_answering(port: u16) -> bool {
    for _ in 0..50 {
        if !answers(port).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn emulator_starts_on_a_loopback_port_and_serves_kinesis_and_s3() {
    let emu = Emulator::start().await.unwrap();
    assert!(emu.endpoint().starts_with("http://127.0.0.1:"));
    let arn = emu.create_stream("harness-stream", 2).await.unwrap();
    assert!(arn.contains("harness-stream"), "{arn}");
    let shards = emu
        .kinesis()
        .await
        .list_shards()
        .stream_name("harness-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(shards.shards().len(), 2);
    emu.create_bucket("harness-bucket").await.unwrap();
    let s3 = emu.s3().await;
    s3.put_object()
        .bucket("harness-bucket")
        .key("a/b.txt")
        .body(b"hello".to_vec().into())
        .send()
        .await
        .unwrap();
    let body = s3
        .get_object()
        .bucket("harness-bucket")
        .key("a/b.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(
        body.body.collect().await.unwrap().into_bytes().as_ref(),
        b"hello"
    );
}

#[tokio::test]
async fn env_points_the_standard_sdk_chain_at_the_emulator() {
    let emu = Emulator::start().await.unwrap();
    let env: std::collections::HashMap<_, _> = emu.env().into_iter().collect();
    assert_eq!(env["AWS_ENDPOINT_URL"], emu.endpoint());
    assert_eq!(env["AWS_REGION"], emu.region());
    assert!(env.contains_key("AWS_ACCESS_KEY_ID") && env.contains_key("AWS_SECRET_ACCESS_KEY"));
}

#[tokio::test]
async fn dropping_the_emulator_stops_the_server() {
    let emu = Emulator::start().await.unwrap();
    let port = emu.port();
    assert!(answers(port).await);
    drop(emu);
    assert!(
        stops_answering(port).await,
        "moto still answers on {port} after drop"
    );
}

#[tokio::test]
async fn a_failing_test_still_stops_the_server() {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let emu = Emulator::start().await.unwrap();
            tx.send(emu.port()).unwrap();
            panic!("simulated test failure while the emulator runs");
        });
    });
    let port = rx.recv().unwrap();
    assert!(handle.join().is_err(), "the thread should have panicked");
    assert!(
        stops_answering(port).await,
        "moto still answers on {port} after a panic"
    );
}

#[tokio::test]
async fn reset_wipes_emulator_state() {
    let emu = Emulator::start().await.unwrap();
    emu.create_bucket("to-be-wiped").await.unwrap();
    emu.reset().await.unwrap();
    let buckets = emu.s3().await.list_buckets().send().await.unwrap();
    assert!(buckets.buckets().is_empty());
}

/// Kinesis never loses an accepted record; moto's threaded server could, when two PutRecords
/// on one shard took the same sequence number. The harness's server must not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_put_records_on_one_shard_keep_every_record_with_distinct_sequence_numbers() {
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};

    let emu = Emulator::start().await.unwrap();
    emu.create_stream("concurrent", 1).await.unwrap();
    let kinesis = emu.kinesis().await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let kinesis = kinesis.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for call in 0..5 {
                let entries = (0..500)
                    .map(|i| {
                        PutRecordsRequestEntry::builder()
                            .data(Blob::new(format!("{t}-{call}-{i}")))
                            .partition_key(format!("k{t}-{i}"))
                            .build()
                            .unwrap()
                    })
                    .collect();
                let resp = kinesis
                    .put_records()
                    .stream_name("concurrent")
                    .set_records(Some(entries))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.failed_record_count(), Some(0));
                seqs.extend(
                    resp.records()
                        .iter()
                        .map(|r| r.sequence_number().unwrap().to_string()),
                );
            }
            seqs
        }));
    }
    let mut accepted = std::collections::HashSet::new();
    for task in tasks {
        for seq in task.await.unwrap() {
            assert!(
                accepted.insert(seq.clone()),
                "sequence number {seq} given twice"
            );
        }
    }
    assert_eq!(accepted.len(), 20_000);

    let mut iterator = kinesis
        .get_shard_iterator()
        .stream_name("concurrent")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let mut stored = std::collections::HashSet::new();
    loop {
        let resp = kinesis
            .get_records()
            .shard_iterator(&iterator)
            .limit(10_000)
            .send()
            .await
            .unwrap();
        if resp.records().is_empty() {
            break;
        }
        for r in resp.records() {
            stored.insert(String::from_utf8(r.data().as_ref().to_vec()).unwrap());
        }
        match resp.next_shard_iterator {
            Some(next) => iterator = next,
            None => break,
        }
    }
    assert_eq!(stored.len(), 20_000, "records lost by the emulator");
}
