//! The checks on an archive written by the real archiver library into an in-memory store and
//! signed by an in-process key: intact, then each kind of tampering, each reported by name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use authtrail_archiver::digest::{Digest, META_SIGNATURE, sha256_base64};
use authtrail_archiver::store::Metadata;
use authtrail_archiver::{
    Archiver, Config, DigestConfig, LocalSigner, MemoryStore, ObjectStore, PutOutcome,
};
use authtrail_verify::keyring::KeyRing;
use authtrail_verify::progress::Progress;
use authtrail_verify::verify::{Prefixes, Scope, verify};
use authtrail_verify::{FindingKind, Report};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use chrono::DateTime;
use serde_json::{Value, json};

/// 2025-02-12T19:00:00Z: traffic in H1, H1+1h and H1+3h; none in H1+2h.
const H1: i64 = 1_739_386_800;
const SHARDS: [&str; 2] = ["shardId-000000000000", "shardId-000000000001"];

fn seq(shard: usize, n: u64) -> String {
    format!("49590338271490256608559692538361571095921575989{shard}{n:08}")
}

fn event(shard: usize, range: std::ops::Range<u64>, at: i64) -> Vec<u8> {
    let recs: Vec<Value> = range
        .map(|n| {
            let data = if n % 40 == 39 {
                b"not json".to_vec()
            } else {
                format!("{{\"eventType\":\"user-event\",\"event\":{{\"n\":{n}}}}}\n").into_bytes()
            };
            json!({
                "kinesis": {
                    "partitionKey": "pk",
                    "sequenceNumber": seq(shard, n),
                    "data": STANDARD.encode(data),
                    "approximateArrivalTimestamp": at as f64,
                    "kinesisSchemaVersion": "1.0",
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{}:{}", SHARDS[shard], seq(shard, n)),
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
    let t = DateTime::from_timestamp(time, 0).unwrap();
    serde_json::to_vec(&json!({
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "time": t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "detail": {}
    }))
    .unwrap()
}

struct Archive {
    store: Arc<MemoryStore>,
    keys: KeyRing,
}

/// Batches of 40 records (one poison record each) over two shards: four batches in the
/// first hour, three in the second, none in the third, two in the fourth; digests closed.
async fn archive() -> Archive {
    let store = Arc::new(MemoryStore::new());
    let signer = LocalSigner::generate().unwrap();
    let mut keys = KeyRing::new();
    keys.add("local", signer.public_key_der().to_vec());
    let mut config = Config::new("archive");
    config.digests = Some(DigestConfig::new("local"));
    let a = Archiver::with_signer(Arc::clone(&store), config, Some(signer));
    let mut n = [0u64; 2];
    for (hour, batches) in [(0, 4), (1, 3), (3, 2)] {
        for b in 0..batches {
            for (shard, next) in n.iter_mut().enumerate() {
                let at = H1 + hour * 3600 + 60 * b;
                let resp = a
                    .handle(&event(shard, *next..*next + 40, at), "r")
                    .await
                    .unwrap();
                assert!(resp.batch_item_failures.is_empty());
                *next += 40;
            }
        }
    }
    a.handle(&scheduled(H1 + 5 * 3600), "r").await.unwrap();
    Archive { store, keys }
}

async fn check(archive: &Archive, from: i64, to: i64) -> Report {
    let scope = Scope {
        bucket: "archive".into(),
        stream: Some("audit".into()),
        from,
        to,
        read_objects: false,
        // As of the archive's last hourly close (H1 + 5 h), with the templates' delay.
        now: H1 + 5 * 3600,
        close_delay: 1800,
    };
    let mut progress = Progress::with_drawing(false);
    verify(
        Arc::clone(&archive.store),
        &Prefixes::default(),
        &scope,
        &archive.keys,
        &mut progress,
    )
    .await
    .unwrap()
}

async fn check_all(archive: &Archive) -> Report {
    check(archive, H1, H1 + 4 * 3600).await
}

fn keys_under(archive: &Archive, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = archive
        .store
        .objects()
        .into_keys()
        .filter(|k| k.starts_with(prefix))
        .collect();
    keys.sort();
    keys
}

fn kinds(r: &Report) -> BTreeSet<FindingKind> {
    r.kinds()
}

#[tokio::test]
async fn an_untouched_archive_is_intact_including_the_hour_without_traffic() {
    let a = archive().await;
    let r = check_all(&a).await;
    assert_eq!(r.findings, vec![], "{}", r.render(20));
    assert_eq!(
        r.digests, 8,
        "two shards, three hours with traffic and a heartbeat each for the quiet one"
    );
    assert_eq!(
        r.objects,
        keys_under(&a, "raw/").len() + keys_under(&a, "errors/").len()
    );
    assert_eq!(r.shards, 2);
    assert_eq!(r.pending, 0);
    // The empty hour alone, and a range starting after the first digests.
    assert!(
        check(&a, H1 + 2 * 3600, H1 + 3 * 3600)
            .await
            .findings
            .is_empty()
    );
    assert!(
        check(&a, H1 + 3600, H1 + 4 * 3600)
            .await
            .findings
            .is_empty()
    );
}

#[tokio::test]
async fn a_deleted_object_is_reported_by_name() {
    let a = archive().await;
    let victim = keys_under(&a, "raw/2025/02/12/20/")[0].clone();
    a.store.remove(&victim);
    let r = check_all(&a).await;
    assert_eq!(kinds(&r), BTreeSet::from([FindingKind::ObjectDeleted]));
    assert_eq!(r.findings[0].key, victim);
}

#[tokio::test]
async fn a_modified_object_is_reported_by_name_with_or_without_a_checksum() {
    let a = archive().await;
    let victim = keys_under(&a, "errors/")[1].clone();
    a.store
        .overwrite(&victim, Bytes::from_static(b"{\"forged\":true}\n"));
    let r = check_all(&a).await;
    assert_eq!(kinds(&r), BTreeSet::from([FindingKind::ObjectModified]));
    // Rewritten with a correct SHA-256 of the new bytes (as S3 would keep it).
    let a = archive().await;
    let victim = keys_under(&a, "raw/")[2].clone();
    let body = Bytes::from_static(b"{\"forged\":true}\n");
    a.store.remove(&victim);
    a.store
        .put_if_absent(
            &victim,
            body.clone(),
            "application/gzip",
            &Metadata::new(),
            &sha256_base64(&body),
        )
        .await
        .unwrap();
    let r = check_all(&a).await;
    assert_eq!(kinds(&r), BTreeSet::from([FindingKind::ObjectModified]));
}

#[tokio::test]
async fn an_added_object_is_reported_by_name() {
    let a = archive().await;
    let key = format!(
        "raw/2025/02/12/19/audit-{}-{}.jsonl.gz",
        SHARDS[1],
        seq(1, 9999)
    );
    a.store
        .put(&key, Bytes::from_static(b"{}\n"), "application/gzip")
        .await
        .unwrap();
    let r = check_all(&a).await;
    assert_eq!(kinds(&r), BTreeSet::from([FindingKind::ObjectAdded]));
    assert_eq!(r.findings[0].key, key);
}

#[tokio::test]
async fn a_deleted_digest_is_reported_by_name_and_its_objects_as_unlisted_and_skipped() {
    let a = archive().await;
    let victim = keys_under(&a, "digests/2025/02/12/20/")[0].clone();
    a.store.remove(&victim);
    let r = check_all(&a).await;
    assert!(
        r.findings
            .iter()
            .any(|f| f.finding == FindingKind::DigestDeleted && f.key == victim),
        "{}",
        r.render(50)
    );
    // Its objects are listed by no digest now, and the listed chain skips them.
    assert_eq!(
        kinds(&r),
        BTreeSet::from([
            FindingKind::DigestDeleted,
            FindingKind::ObjectAdded,
            FindingKind::ShardGap
        ])
    );
}

#[tokio::test]
async fn the_newest_digest_deleted_is_reported_from_the_shard_state() {
    let a = archive().await;
    let victim = keys_under(&a, "digests/2025/02/12/22/")[0].clone();
    a.store.remove(&victim);
    let r = check_all(&a).await;
    assert!(
        r.findings
            .iter()
            .any(|f| f.finding == FindingKind::DigestDeleted && f.key == victim),
        "{}",
        r.render(50)
    );
}

#[tokio::test]
async fn an_altered_digest_is_reported_by_name() {
    let a = archive().await;
    let victim = keys_under(&a, "digests/2025/02/12/19/")[1].clone();
    let body = a.store.objects()[&victim].body.clone();
    let text = String::from_utf8(body.to_vec()).unwrap().replacen(
        "\"recordCount\": 39",
        "\"recordCount\": 38",
        1,
    );
    assert_ne!(text.as_bytes(), &body[..]);
    a.store.overwrite(&victim, Bytes::from(text));
    let r = check_all(&a).await;
    assert_eq!(
        kinds(&r),
        BTreeSet::from([FindingKind::DigestAltered]),
        "{}",
        r.render(50)
    );
    assert!(r.findings.iter().all(|f| f.key == victim));
}

#[tokio::test]
async fn an_object_removed_with_its_digest_entry_is_a_shard_gap() {
    let a = archive().await;
    let digest_key = keys_under(&a, "digests/2025/02/12/19/")[0].clone();
    let stored = a.store.objects()[&digest_key].clone();
    let mut d: Digest = serde_json::from_slice(&stored.body).unwrap();
    // The second archive object of the hour goes, and its entry: what is left still parses.
    let removed = d.objects.remove(1);
    a.store.remove(&removed.key);
    let body = serde_json::to_vec_pretty(&d).unwrap();
    a.store.remove(&digest_key);
    let mut meta = Metadata::new();
    meta.insert(
        META_SIGNATURE.into(),
        stored.metadata[META_SIGNATURE].clone(),
    );
    let outcome = a
        .store
        .put_if_absent(
            &digest_key,
            Bytes::from(body.clone()),
            "application/json",
            &meta,
            &sha256_base64(&body),
        )
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Created);
    let r = check_all(&a).await;
    let gap = r
        .findings
        .iter()
        .find(|f| f.finding == FindingKind::ShardGap)
        .unwrap_or_else(|| panic!("{}", r.render(50)));
    assert!(
        gap.detail.contains(&removed.last_sequence_number),
        "{}",
        gap.detail
    );
    assert!(kinds(&r).contains(&FindingKind::DigestAltered));
    assert!(!kinds(&r).contains(&FindingKind::ObjectDeleted));
}

#[tokio::test]
async fn digests_signed_by_another_key_do_not_verify() {
    let mut a = archive().await;
    a.keys = KeyRing::new();
    a.keys.add(
        "other",
        LocalSigner::generate().unwrap().public_key_der().to_vec(),
    );
    let r = check_all(&a).await;
    assert_eq!(kinds(&r), BTreeSet::from([FindingKind::DigestAltered]));
    assert_eq!(r.findings.len(), 8);
    assert!(r.findings[0].detail.contains("does not verify"));
}

#[tokio::test]
async fn the_newest_digests_and_objects_deleted_with_the_state_rolled_back_are_digest_missing() {
    let a = archive().await;
    let shard = SHARDS[0];
    // The digest of shard 0's newest hour (H1 + 3 h) and the objects it lists go...
    let newest: Vec<String> = keys_under(&a, "digests/2025/02/12/22/")
        .into_iter()
        .filter(|k| k.contains(shard))
        .collect();
    assert_eq!(newest.len(), 1, "{newest:?}");
    let body = a.store.objects()[&newest[0]].body.clone();
    let d: Digest = serde_json::from_slice(&body).unwrap();
    for o in &d.objects {
        a.store.remove(&o.key).unwrap();
    }
    a.store.remove(&newest[0]).unwrap();
    // ...and the shard state is rolled back to the digest before it (the quiet hour's heartbeat).
    let state_key = format!("archiver-state/audit-{shard}.json");
    let mut state: Value = serde_json::from_slice(&a.store.objects()[&state_key].body).unwrap();
    let previous = serde_json::to_value(d.previous_digest.clone().unwrap()).unwrap();
    state["ledger"]["head"] = previous;
    state["ledger"]["coveredThrough"] = json!(H1 + 2 * 3600);
    a.store
        .overwrite(&state_key, Bytes::from(serde_json::to_vec(&state).unwrap()));
    let r = check_all(&a).await;
    assert_eq!(
        kinds(&r),
        BTreeSet::from([FindingKind::DigestMissing]),
        "{}",
        r.render(20)
    );
    assert_eq!(r.findings.len(), 1);
    assert_eq!(
        r.findings[0].key,
        format!("digests/2025/02/12/22/audit-{shard}-heartbeat.json")
    );
}

#[tokio::test]
async fn hours_within_the_close_delay_need_no_digest_yet() {
    let a = archive().await;
    // Checked as of the moment hour H1 + 4 h ends: that hour is not closed yet, and fine.
    let scope = Scope {
        bucket: "archive".into(),
        stream: Some("audit".into()),
        from: H1,
        to: H1 + 5 * 3600,
        read_objects: false,
        now: H1 + 5 * 3600,
        close_delay: 1800,
    };
    let mut progress = Progress::with_drawing(false);
    let r = verify(
        Arc::clone(&a.store),
        &Prefixes::default(),
        &scope,
        &a.keys,
        &mut progress,
    )
    .await
    .unwrap();
    assert_eq!(r.findings, vec![], "{}", r.render(20));
    // An hour later that hour is due, and its missing heartbeats are reported.
    let late = Scope {
        now: H1 + 6 * 3600,
        ..scope
    };
    let r = verify(
        Arc::clone(&a.store),
        &Prefixes::default(),
        &late,
        &a.keys,
        &mut progress,
    )
    .await
    .unwrap();
    assert_eq!(
        kinds(&r),
        BTreeSet::from([FindingKind::DigestMissing]),
        "{}",
        r.render(20)
    );
    assert_eq!(r.findings.len(), 2, "one per shard");
}
