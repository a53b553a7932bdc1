//! Digests on an in-memory object store with an in-process signing key: what is listed, when
//! hours close, the chain, the signature, and the failures that must neither lose an object
//! from the digests nor block a shard.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use authtrail_archiver::digest::{self, Digest, META_PREVIOUS_LAST, META_SIGNATURE};
use authtrail_archiver::{
    Archiver, Config, DigestConfig, DigestSigner, FixedShards, LocalSigner, META_FIRST, META_LAST,
    MemoryStore, ShardState,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// 2025-02-12T19:00:00Z and the next hour.
const H1: i64 = 1_739_386_800;
const H2: i64 = H1 + 3600;
const SHARD0: &str = "shardId-000000000000";
const SHARD1: &str = "shardId-000000000001";

fn seq(n: u64) -> String {
    format!("4959033827149025660855969253836157109592157598913{n:07}")
}

/// A Kinesis event of records `range` of `shard`, arriving at `at` (epoch seconds).
fn event(shard: &str, range: std::ops::Range<u64>, at: i64) -> Vec<u8> {
    let recs: Vec<Value> = range
        .map(|n| {
            let data = if n % 50 == 49 {
                format!("not json {n}").into_bytes()
            } else {
                format!("{{\"eventType\":\"user-event\",\"event\":{{\"n\":{n}}}}}\n").into_bytes()
            };
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": format!("pk-{n}"),
                    "sequenceNumber": seq(n),
                    "data": STANDARD.encode(data),
                    "approximateArrivalTimestamp": at as f64 + 0.25,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{shard}:{}", seq(n)),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/archiver",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/audit",
            })
        })
        .collect();
    serde_json::to_vec(&json!({ "Records": recs })).unwrap()
}

fn scheduled(time: i64) -> Vec<u8> {
    let t = DateTime::<Utc>::from_timestamp(time, 0).unwrap();
    serde_json::to_vec(&json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/archiver-digests"],
        "detail": {}
    }))
    .unwrap()
}

fn archiver() -> Archiver<MemoryStore, LocalSigner> {
    let mut config = Config::new("bucket");
    config.digests = Some(DigestConfig::new("local"));
    Archiver::with_signer(
        MemoryStore::new(),
        config,
        Some(LocalSigner::generate().unwrap()),
    )
}

async fn run(a: &Archiver<MemoryStore, LocalSigner>, payload: Vec<u8>) -> Value {
    let resp = a.handle(&payload, "req").await.unwrap();
    serde_json::to_value(resp).unwrap()
}

/// The digests in the store, checked for a valid signature, by key.
fn digests(a: &Archiver<MemoryStore, LocalSigner>) -> BTreeMap<String, Digest> {
    let public_key = a_public_key(a);
    a.store()
        .objects()
        .into_iter()
        .filter(|(k, _)| k.starts_with("digests/"))
        .map(|(k, o)| {
            let sig = STANDARD.decode(&o.metadata[META_SIGNATURE]).unwrap();
            assert!(
                digest::verify_digest(
                    digest::SigningAlgorithm::EcdsaSha256,
                    &public_key,
                    &o.body,
                    &sig
                ),
                "signature of {k}"
            );
            (k, serde_json::from_slice(&o.body).unwrap())
        })
        .collect()
}

fn a_public_key(a: &Archiver<MemoryStore, LocalSigner>) -> Vec<u8> {
    a.signer().unwrap().public_key_der().to_vec()
}

/// Archive and error object keys in the store.
fn data_keys(a: &Archiver<MemoryStore, LocalSigner>) -> BTreeSet<String> {
    a.store()
        .objects()
        .into_keys()
        .filter(|k| k.starts_with("raw/") || k.starts_with("errors/"))
        .collect()
}

fn listed(ds: &BTreeMap<String, Digest>) -> Vec<String> {
    ds.values()
        .flat_map(|d| d.objects.iter().map(|o| o.key.clone()))
        .collect()
}

fn state(a: &Archiver<MemoryStore, LocalSigner>, shard: &str) -> ShardState {
    let body = a.store().objects()[&a.state_key("audit", shard)]
        .body
        .clone();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn the_next_hours_batch_closes_the_hour_into_one_signed_digest_listing_each_object_once() {
    let a = archiver();
    for (i, start) in [0u64, 100, 200].into_iter().enumerate() {
        let resp = run(&a, event(SHARD0, start..start + 100, H1 + 60 * i as i64)).await;
        assert_eq!(resp["batchItemFailures"], json!([]));
    }
    assert!(digests(&a).is_empty(), "the hour is still open");
    run(&a, event(SHARD0, 300..400, H2 + 5)).await;
    let ds = digests(&a);
    assert_eq!(ds.len(), 1, "{:?}", ds.keys());
    let (key, d) = ds.iter().next().unwrap();
    assert_eq!(
        key,
        &format!("digests/2025/02/12/19/audit-{SHARD0}-{}.json", seq(0))
    );
    assert_eq!(d.hour, "2025-02-12T19:00:00Z");
    assert_eq!((d.stream.as_str(), d.shard_id.as_str()), ("audit", SHARD0));
    assert_eq!(d.previous_digest, None);
    assert_eq!(d.first_sequence_number, seq(0));
    assert_eq!(d.last_sequence_number, seq(299));
    // Three archive objects and three error objects (one poison record per 50), each listed
    // once with the SHA-256 of its stored bytes and its sequence numbers.
    let objects = a.store().objects();
    let hour1: BTreeSet<String> = data_keys(&a)
        .into_iter()
        .filter(|k| k.contains("/2025/02/12/19/"))
        .collect();
    assert_eq!(hour1.len(), 6);
    assert_eq!(listed(&ds).into_iter().collect::<BTreeSet<_>>(), hour1);
    assert_eq!(d.objects.len(), 6);
    for o in &d.objects {
        let stored = &objects[&o.key];
        assert_eq!(o.sha256, digest::sha256_hex(&stored.body));
        assert_eq!(o.size, stored.body.len() as u64);
        assert_eq!(o.first_sequence_number, stored.metadata[META_FIRST]);
        assert_eq!(o.last_sequence_number, stored.metadata[META_LAST]);
    }
    let state = state(&a, SHARD0);
    let ledger = state.ledger.unwrap();
    assert_eq!(ledger.head.unwrap().key, *key);
    assert_eq!(ledger.pending.len(), 2, "the new hour's objects wait");
    assert!(ledger.intents.is_empty() && ledger.closing.is_none());
}

#[tokio::test]
async fn a_batch_reads_its_shard_state_once_and_writes_it_before_and_after_the_object() {
    let a = archiver();
    run(&a, event(SHARD0, 0..40, H1)).await;
    let before = a.store().calls().len();
    run(&a, event(SHARD0, 50..90, H1 + 60)).await;
    let state = a.state_key("audit", SHARD0);
    let calls: Vec<String> = a.store().calls()[before..]
        .iter()
        .map(|c| {
            c.replace(&state, "STATE")
                .split(" raw/")
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        calls,
        vec![
            "GET STATE",
            "PUT-IF-MATCH STATE",
            "PUT-IF-ABSENT",
            "PUT-IF-MATCH STATE"
        ],
        "no poison record, no hour to close"
    );
}

#[tokio::test]
async fn each_object_names_the_last_sequence_number_of_the_previous_one_of_its_kind() {
    let a = archiver();
    run(&a, event(SHARD0, 0..100, H1)).await;
    run(&a, event(SHARD0, 100..200, H1 + 60)).await;
    let objects = a.store().objects();
    let by_first = |prefix: &str, first: u64| {
        objects
            .iter()
            .find(|(k, o)| k.starts_with(prefix) && o.metadata[META_FIRST] == seq(first))
            .map(|(_, o)| o.metadata.get(META_PREVIOUS_LAST).cloned())
            .unwrap()
    };
    assert_eq!(
        by_first("raw/", 0),
        None,
        "the first object starts the chain"
    );
    assert_eq!(by_first("raw/", 100), Some(seq(98)), "99 is poison");
    assert_eq!(by_first("errors/", 49), None);
    assert_eq!(by_first("errors/", 149), Some(seq(99)));
}

#[tokio::test]
async fn the_scheduled_close_writes_quiet_shards_digests_after_the_settle_time_chained_in_order() {
    let a = archiver();
    run(&a, event(SHARD0, 0..100, H1 + 10)).await;
    run(&a, event(SHARD1, 1000..1100, H1 + 20)).await;
    run(&a, event(SHARD0, 100..200, H2 + 10)).await;
    assert_eq!(digests(&a).len(), 1, "shard 0 moved on, shard 1 is quiet");
    // Within the settle time after H2 ends: only shard 1's first hour is due.
    run(&a, scheduled(H2 + 3600 + 300)).await;
    let ds = digests(&a);
    assert_eq!(ds.len(), 2, "{:?}", ds.keys());
    // After it: shard 0's second hour too, chained to its first; shard 1's quiet second hour
    // gets its heartbeat.
    run(&a, scheduled(H2 + 3600 + 600)).await;
    let ds = digests(&a);
    assert_eq!(ds.len(), 4);
    let shard0: Vec<&Digest> = ds.values().filter(|d| d.shard_id == SHARD0).collect();
    let (first, second) = if shard0[0].hour < shard0[1].hour {
        (shard0[0], shard0[1])
    } else {
        (shard0[1], shard0[0])
    };
    let first_key = ds.iter().find(|(_, d)| *d == first).unwrap().0;
    let link = second.previous_digest.clone().unwrap();
    assert_eq!(&link.key, first_key);
    assert_eq!(
        link.sha256,
        digest::sha256_hex(&a.store().objects()[first_key].body)
    );
    // Everything written is listed exactly once.
    let mut all = listed(&ds);
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!(all.len(), n, "an object listed twice");
    assert_eq!(all.into_iter().collect::<BTreeSet<_>>(), data_keys(&a));
    // A second close finds nothing more to do.
    run(&a, scheduled(H2 + 7200)).await;
    assert_eq!(digests(&a).len(), 4);
}

#[tokio::test]
async fn an_object_stored_after_its_hours_digest_gets_a_further_digest_of_that_hour() {
    let a = archiver();
    run(&a, event(SHARD0, 0..100, H1 + 10)).await;
    run(&a, scheduled(H2 + 900)).await;
    // A batch whose records arrived in H1 lands late (its retries outlived the settle time).
    run(&a, event(SHARD0, 100..150, H1 + 3000)).await;
    run(&a, scheduled(H2 + 960)).await;
    let ds = digests(&a);
    assert_eq!(ds.len(), 2);
    assert!(ds.values().all(|d| d.hour == "2025-02-12T19:00:00Z"));
    let late = ds
        .values()
        .find(|d| d.first_sequence_number == seq(100))
        .unwrap();
    assert_eq!(
        late.previous_digest.as_ref().unwrap().key,
        format!("digests/2025/02/12/19/audit-{SHARD0}-{}.json", seq(0))
    );
    assert_eq!(
        listed(&ds).into_iter().collect::<BTreeSet<_>>(),
        data_keys(&a)
    );
}

#[tokio::test]
async fn a_write_whose_response_was_lost_is_listed_once_after_the_retry() {
    let a = archiver();
    // The intent is saved (1 write); the archive PUT lands but fails; so does the rest.
    a.store().fail_writes_after(1, true);
    let resp = run(&a, event(SHARD0, 0..40, H1)).await;
    assert_eq!(resp["batchItemFailures"][0]["itemIdentifier"], seq(0));
    a.store().heal();
    let resp = run(&a, event(SHARD0, 0..40, H1)).await;
    assert_eq!(resp["batchItemFailures"], json!([]));
    run(&a, scheduled(H2 + 900)).await;
    let ds = digests(&a);
    assert_eq!(
        listed(&ds).into_iter().collect::<BTreeSet<_>>(),
        data_keys(&a)
    );
    assert_eq!(listed(&ds).len(), data_keys(&a).len());
    assert!(state(&a, SHARD0).ledger.unwrap().intents.is_empty());
}

#[tokio::test]
async fn a_write_that_never_landed_leaves_no_digest_entry() {
    let a = archiver();
    a.store().fail_writes_under("raw/");
    let resp = run(&a, event(SHARD0, 0..40, H1)).await;
    assert_eq!(resp["batchItemFailures"][0]["itemIdentifier"], seq(0));
    assert_eq!(state(&a, SHARD0).ledger.unwrap().intents.len(), 1);
    a.store().heal();
    run(&a, scheduled(H2 + 900)).await;
    // The leftover intent is young: the scheduled close leaves it to the shard's next batch,
    // which finds no object under its key and forgets it.
    assert_eq!(state(&a, SHARD0).ledger.unwrap().intents.len(), 1);
    run(&a, event(SHARD0, 0..40, H1)).await;
    run(&a, scheduled(H2 + 900)).await;
    let ds = digests(&a);
    assert_eq!(
        listed(&ds).into_iter().collect::<BTreeSet<_>>(),
        data_keys(&a)
    );
    assert!(state(&a, SHARD0).ledger.unwrap().intents.is_empty());
}

#[tokio::test]
async fn a_close_interrupted_after_writing_its_digest_is_completed_without_a_fork() {
    let a = archiver();
    run(&a, event(SHARD0, 0..100, H1)).await;
    // The close records what it writes (1), writes the digest (2), then fails to finish.
    a.store().fail_writes_after(2, false);
    assert!(a.handle(&scheduled(H2 + 900), "req").await.is_err());
    a.store().heal();
    assert_eq!(digests(&a).len(), 1);
    assert!(state(&a, SHARD0).ledger.unwrap().closing.is_some());
    run(&a, scheduled(H2 + 900)).await;
    let ds = digests(&a);
    assert_eq!(
        ds.len(),
        1,
        "the digest written is adopted, not written again"
    );
    let ledger = state(&a, SHARD0).ledger.unwrap();
    assert_eq!(&ledger.head.unwrap().key, ds.keys().next().unwrap());
    assert!(ledger.closing.is_none() && ledger.pending.is_empty());
}

#[tokio::test]
async fn a_signing_failure_keeps_the_objects_pending_and_never_blocks_the_shard() {
    let mut config = Config::new("bucket");
    config.digests = Some(DigestConfig::new("alias/missing"));
    let a = Archiver::new(MemoryStore::new(), config);
    run_plain(&a, event(SHARD0, 0..100, H1)).await;
    let resp = a
        .process(&event(SHARD0, 100..200, H2))
        .await
        .map(|(r, s)| (serde_json::to_value(r).unwrap(), s))
        .unwrap();
    assert_eq!(resp.0["batchItemFailures"], json!([]));
    assert_eq!(resp.1.digest_failures, 1);
    assert_eq!(resp.1.digests, 0);
    let body = a.store().objects()[&a.state_key("audit", SHARD0)]
        .body
        .clone();
    let state: ShardState = serde_json::from_slice(&body).unwrap();
    assert_eq!(state.ledger.unwrap().pending.len(), 4);
}

async fn run_plain(a: &Archiver<MemoryStore>, payload: Vec<u8>) {
    let resp = a.handle(&payload, "req").await.unwrap();
    assert!(resp.batch_item_failures.is_empty());
}

#[tokio::test]
async fn without_a_key_a_scheduled_event_closes_nothing_and_writes_nothing() {
    let a = Archiver::new(MemoryStore::new(), Config::new("bucket"));
    let resp = a.handle(&scheduled(H2), "req").await.unwrap();
    assert!(resp.batch_item_failures.is_empty());
    assert!(a.store().objects().is_empty());
}

#[test]
fn the_local_signer_names_its_key_and_algorithm() {
    let s = LocalSigner::generate().unwrap();
    assert_eq!(s.key_id(), "local");
    assert_eq!(s.algorithm().as_str(), "ECDSA_SHA_256");
}

/// The shard's digests in chain order (each names the one before), checked to be one chain.
fn chain_of(ds: &BTreeMap<String, Digest>, shard: &str) -> Vec<(String, Digest)> {
    let mut chain: Vec<(String, Digest)> = Vec::new();
    let mut previous: Option<String> = None;
    loop {
        let next = ds.iter().find(|(_, d)| {
            d.shard_id == shard && d.previous_digest.as_ref().map(|l| &l.key) == previous.as_ref()
        });
        let Some((k, d)) = next else { break };
        chain.push((k.clone(), d.clone()));
        previous = Some(k.clone());
    }
    let all = ds.values().filter(|d| d.shard_id == shard).count();
    assert_eq!(chain.len(), all, "one chain without forks");
    chain
}

#[tokio::test]
async fn the_hourly_close_writes_a_heartbeat_for_a_quiet_shard_and_none_for_a_busy_one() {
    let a = archiver();
    run(&a, event(SHARD0, 0..100, H1 + 10)).await;
    run(&a, event(SHARD1, 1000..1100, H1 + 20)).await;
    run(&a, event(SHARD0, 100..200, H2 + 10)).await;
    run(&a, scheduled(H2 + 3600 + 900)).await;
    let ds = digests(&a);
    let heartbeats: Vec<(&String, &Digest)> =
        ds.iter().filter(|(_, d)| d.objects.is_empty()).collect();
    assert_eq!(heartbeats.len(), 1, "{:?}", ds.keys());
    let (key, beat) = heartbeats[0];
    assert_eq!(beat.shard_id, SHARD1, "only the quiet shard");
    assert_eq!(beat.hour, "2025-02-12T20:00:00Z");
    assert_eq!(
        key,
        "digests/2025/02/12/20/audit-shardId-000000000001-heartbeat.json"
    );
    assert!(beat.hourly && !beat.shard_ended);
    assert_eq!(beat.expected_key("digests/").as_deref(), Some(key.as_str()));
    assert!(
        ds.values().all(|d| d.hourly),
        "every digest promises the hours after it"
    );
    // Shard 0 had objects in both hours: one listing digest each, no heartbeat.
    let shard0: Vec<&Digest> = ds.values().filter(|d| d.shard_id == SHARD0).collect();
    assert_eq!(shard0.len(), 2);
    assert!(shard0.iter().all(|d| !d.objects.is_empty()));
    // The same close again writes nothing more.
    run(&a, scheduled(H2 + 3600 + 1200)).await;
    assert_eq!(digests(&a).len(), ds.len());
}

#[tokio::test]
async fn the_chain_continues_through_heartbeats_one_digest_per_hour() {
    let a = archiver();
    run(&a, event(SHARD0, 0..100, H1 + 10)).await;
    // Three quiet hours (H2 .. H2+2h), each closed by the hourly run after it.
    for h in 1..=3 {
        run(&a, scheduled(H1 + (h + 1) * 3600 + 900)).await;
    }
    // Traffic again in the fifth hour, closed by the next hourly run.
    run(&a, event(SHARD0, 100..200, H1 + 4 * 3600 + 10)).await;
    run(&a, scheduled(H1 + 5 * 3600 + 900)).await;
    let chain = chain_of(&digests(&a), SHARD0);
    let hours: Vec<&str> = chain.iter().map(|(_, d)| d.hour.as_str()).collect();
    assert_eq!(
        hours,
        [
            "2025-02-12T19:00:00Z",
            "2025-02-12T20:00:00Z",
            "2025-02-12T21:00:00Z",
            "2025-02-12T22:00:00Z",
            "2025-02-12T23:00:00Z"
        ]
    );
    let kinds: Vec<usize> = chain.iter().map(|(_, d)| d.objects.len()).collect();
    assert_eq!(kinds[1..4], [0, 0, 0], "three heartbeats between");
    assert!(kinds[0] > 0 && kinds[4] > 0);
    // Each link carries the SHA-256 of the digest before it.
    for pair in chain.windows(2) {
        let link = pair[1].1.previous_digest.clone().unwrap();
        let body = &a.store().objects()[&pair[0].0].body;
        assert_eq!(link.sha256, digest::sha256_hex(body));
    }
    let l = state(&a, SHARD0).ledger.unwrap();
    assert_eq!(l.covered_through, Some(H1 + 4 * 3600));
    assert_eq!(l.head.unwrap().key, chain[4].0);
}

#[tokio::test]
async fn a_closed_shard_gets_a_final_shard_ended_heartbeat_and_none_after_it() {
    let shards = std::sync::Arc::new(FixedShards::default());
    let a = archiver().with_shard_directory(shards.clone());
    run(&a, event(SHARD0, 0..100, H1 + 10)).await;
    run(&a, event(SHARD1, 1000..1100, H1 + 20)).await;
    run(&a, scheduled(H2 + 900)).await;
    // Shard 0 is resharded: closed; shard 1 stays open.
    shards.close(SHARD0);
    run(&a, scheduled(H2 + 3600 + 900)).await;
    let ds = digests(&a);
    let chain0 = chain_of(&ds, SHARD0);
    let last = &chain0.last().unwrap().1;
    assert!(last.objects.is_empty() && last.shard_ended, "{last:?}");
    assert_eq!(last.hour, "2025-02-12T20:00:00Z");
    assert!(state(&a, SHARD0).ledger.unwrap().ended);
    let chain1 = chain_of(&ds, SHARD1);
    assert!(chain1.iter().all(|(_, d)| !d.shard_ended));
    // Later hourly runs: shard 1 goes on beating, shard 0 stays silent.
    for h in 2..=4 {
        run(&a, scheduled(H2 + h * 3600 + 900)).await;
    }
    let ds = digests(&a);
    assert_eq!(
        chain_of(&ds, SHARD0).len(),
        chain0.len(),
        "none after shardEnded"
    );
    assert_eq!(chain_of(&ds, SHARD1).len(), chain1.len() + 3);
}

#[tokio::test]
async fn a_batch_after_quiet_hours_writes_their_heartbeats_before_its_own_hour() {
    let a = archiver();
    run(&a, event(SHARD0, 0..100, H1 + 10)).await;
    run(&a, scheduled(H2 + 900)).await;
    // No hourly run for two hours (EventBridge delayed); the next batch comes in H1+3h.
    run(&a, event(SHARD0, 100..200, H1 + 3 * 3600 + 10)).await;
    let chain = chain_of(&digests(&a), SHARD0);
    let hours: Vec<&str> = chain.iter().map(|(_, d)| d.hour.as_str()).collect();
    assert_eq!(
        hours,
        [
            "2025-02-12T19:00:00Z",
            "2025-02-12T20:00:00Z",
            "2025-02-12T21:00:00Z"
        ]
    );
}
