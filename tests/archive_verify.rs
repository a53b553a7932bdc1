//! End-to-end test of the archive as evidence: the real `authtrail-archiver` binary under the
//! local Lambda runtime writes batches of two shards over two hours to moto's S3 and signs
//! their digests with an ECC_NIST_P256 key in moto's KMS (batches with arrival times the test
//! chooses, then the scheduled close as EventBridge would send it); the real `authtrail-verify`
//! binary then proves the range intact, and reports each tampering made through the S3 API by
//! name with exit status 1.
//!
//! Build the binaries first: `cargo build -p authtrail-archiver -p authtrail-verify --bins`
//! (`make test` builds every binary).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use authtrail_harness::{Emulator, ScratchDir, bin_path};
use authtrail_runner::kinesis::{EventContext, RecordInput, event_payload, record_json};
use authtrail_runner::{FunctionConfig, LambdaFunction, scheduled_event};
use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::Value;

const BUCKET: &str = "archive";
const STREAM: &str = "audit";
const SHARDS: [&str; 2] = ["shardId-000000000000", "shardId-000000000001"];
/// 2025-02-12T19:00:00Z: traffic in this hour and the next; none in the third.
const H1: i64 = 1_739_386_800;
/// Batches per shard and hour, records per batch.
const BATCHES: u64 = 6;
const RECORDS: u64 = 150;

fn seq(shard: usize, n: u64) -> String {
    format!("4959033827149025660855969253836157109592157598{shard}{n:09}")
}

fn data(n: u64) -> Vec<u8> {
    if n % 100 == 37 {
        // About 1 % poison records, so that error objects are digested too.
        format!("\u{1}not json {n}").into_bytes()
    } else {
        format!(
            "{{\"timestamp\":\"2025-02-12T19:27:50.156Z\",\"eventType\":\"user-event\",\"event\":{{\"id\":\"ev-{n:06}\",\"type\":\"LOGIN\",\"ipAddress\":\"198.51.100.7\"}}}}\n"
        )
        .into_bytes()
    }
}

/// One `KinesisEvent` of records `first..first + RECORDS` of `shard`, arrived at `at`.
fn batch(emu: &Emulator, shard: usize, first: u64, at: i64) -> String {
    let ctx = EventContext {
        region: emu.region().to_string(),
        stream_arn: format!(
            "arn:aws:kinesis:{}:123456789012:stream/{STREAM}",
            emu.region()
        ),
        invoke_identity_arn: "arn:aws:iam::123456789012:role/authtrail-archiver-role".into(),
    };
    let arrival = DateTime::<Utc>::from_timestamp(at, 0).unwrap();
    let records: Vec<(String, Vec<u8>)> = (first..first + RECORDS)
        .map(|n| (seq(shard, n), data(n)))
        .collect();
    let jsons: Vec<String> = records
        .iter()
        .map(|(s, d)| {
            let input = RecordInput {
                shard_id: SHARDS[shard],
                sequence_number: s,
                partition_key: "6f1c0e52-5d2b-4f0e-9a57-0d0c6d1e9b11",
                data: d,
                arrival,
                encryption_type: None,
            };
            record_json(&ctx, &input).unwrap()
        })
        .collect();
    event_payload(jsons.iter().map(String::as_str))
}

struct Setup {
    emu: Emulator,
    s3: aws_sdk_s3::Client,
    key_id: String,
    scratch: ScratchDir,
    function: LambdaFunction,
    /// The test's clock (epoch seconds): a quarter of an hour after the last hourly close ran,
    /// passed to the verifier as `--now`.
    clock: AtomicI64,
}

/// Runs the hourly close as EventBridge would at `time`, and moves the clock past it.
async fn hourly_close(s: &Setup, time: i64) {
    let at = DateTime::<Utc>::from_timestamp(time, 0).unwrap();
    let event = scheduled_event(s.emu.region(), "authtrail-archiver-digests", at);
    let inv = s.function.invoke_json(&event).await.unwrap();
    assert!(inv.is_success(), "{}", s.function.logs());
    s.clock.store(time + 900, Ordering::SeqCst);
}

/// moto with the bucket and a signing key; the archiver run over two hours, then closed.
async fn archive_two_hours() -> Setup {
    let emu = Emulator::start().await.unwrap();
    emu.create_bucket(BUCKET).await.unwrap();
    let kms = aws_sdk_kms::Client::new(&emu.sdk_config().await);
    let key = kms
        .create_key()
        .key_spec(KeySpec::EccNistP256)
        .key_usage(KeyUsageType::SignVerify)
        .description("authtrail digests")
        .send()
        .await
        .unwrap();
    let key_id = key.key_metadata().unwrap().key_id().to_string();
    let mut cfg = FunctionConfig::new(
        "authtrail-archiver",
        bin_path("authtrail-archiver").unwrap(),
    )
    .with_env(emu.env())
    .with_env([
        ("ARCHIVE_BUCKET", BUCKET),
        ("ARCHIVE_DIGEST_KEY_ID", key_id.as_str()),
    ])
    .with_timeout(Duration::from_secs(60));
    cfg.memory_mb = 128;
    cfg.echo_logs = false;
    let function = LambdaFunction::start(cfg).await.unwrap();
    for hour in 0..2 {
        for b in 0..BATCHES {
            for shard in 0..2 {
                let first = (hour * BATCHES + b) * RECORDS;
                let at = H1 + hour as i64 * 3600 + 300 * b as i64 + 7;
                let inv = function
                    .invoke(batch(&emu, shard, first, at))
                    .await
                    .unwrap();
                let resp: Value = inv.response_json().unwrap();
                assert_eq!(
                    resp["batchItemFailures"],
                    serde_json::json!([]),
                    "{}",
                    function.logs()
                );
            }
        }
    }
    let s3 = emu.s3().await;
    let scratch = ScratchDir::new("archive-verify").unwrap();
    let s = Setup {
        emu,
        s3,
        key_id,
        scratch,
        function,
        clock: AtomicI64::new(0),
    };
    // EventBridge's scheduled event, 15 minutes after the second hour ends.
    hourly_close(&s, H1 + 2 * 3600 + 900).await;
    s
}

/// What `authtrail-verify --json` said and its exit status.
struct Verdict {
    status: i32,
    report: Value,
    stderr: String,
}

impl Verdict {
    fn kinds(&self) -> BTreeSet<String> {
        self.report["findings"]
            .as_array()
            .map(|f| {
                f.iter()
                    .map(|f| f["finding"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn keys_of(&self, kind: &str) -> Vec<String> {
        self.report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["finding"] == kind)
            .map(|f| f["key"].as_str().unwrap().to_string())
            .collect()
    }
}

async fn run_verify(s: &Setup, extra: &[&str]) -> Verdict {
    let out = tokio::process::Command::new(bin_path("authtrail-verify").unwrap())
        .envs(s.emu.env())
        .args([
            "--archive",
            &format!("s3://{BUCKET}"),
            "--stream",
            STREAM,
            "--quiet",
            "--now",
            &(s.clock.load(Ordering::SeqCst) * 1000).to_string(),
        ])
        .args(extra)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let report = serde_json::from_str(&stdout).unwrap_or(Value::String(stdout));
    Verdict {
        status: out.status.code().unwrap_or(-1),
        report,
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

fn hour_arg(h: i64) -> String {
    DateTime::<Utc>::from_timestamp(h, 0).unwrap().to_rfc3339()
}

/// verify --json over the two hours with traffic and the empty one after them.
async fn verify_all(s: &Setup) -> Verdict {
    let (from, to) = (hour_arg(H1), hour_arg(H1 + 3 * 3600));
    run_verify(
        s,
        &[
            "--from", &from, "--to", &to, "--key-id", &s.key_id, "--json",
        ],
    )
    .await
}

async fn assert_intact(s: &Setup, after: &str) {
    let v = verify_all(s).await;
    assert_eq!(v.status, 0, "after {after}: {:#} {}", v.report, v.stderr);
}

async fn keys(s: &Setup, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = s
        .emu
        .objects(BUCKET, prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    keys.sort();
    keys
}

/// An object as stored, to put back after a tampering case.
struct Saved {
    key: String,
    body: Vec<u8>,
    content_type: Option<String>,
    metadata: HashMap<String, String>,
}

async fn save(s: &Setup, key: &str) -> Saved {
    let o =
        s.s3.get_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .unwrap();
    let content_type = o.content_type().map(str::to_string);
    let metadata = o.metadata().cloned().unwrap_or_default();
    let body = o.body.collect().await.unwrap().into_bytes().to_vec();
    Saved {
        key: key.to_string(),
        body,
        content_type,
        metadata,
    }
}

async fn put(
    s: &Setup,
    key: &str,
    body: Vec<u8>,
    content_type: Option<&str>,
    metadata: &HashMap<String, String>,
) {
    s.s3.put_object()
        .bucket(BUCKET)
        .key(key)
        .set_content_type(content_type.map(str::to_string))
        .set_metadata(Some(metadata.clone()))
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap();
}

async fn restore(s: &Setup, o: &Saved) {
    put(
        s,
        &o.key,
        o.body.clone(),
        o.content_type.as_deref(),
        &o.metadata,
    )
    .await;
}

async fn delete(s: &Setup, key: &str) {
    s.s3.delete_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .unwrap();
}

/// Exit status 1 and the finding `kind` for `key` among the findings.
fn assert_found(v: &Verdict, kind: &str, key: &str, case: &str) {
    assert_eq!(v.status, 1, "{case}: {:#} {}", v.report, v.stderr);
    assert!(
        v.keys_of(kind).iter().any(|k| k == key),
        "{case}: no {kind} for {key}: {:#}",
        v.report
    );
}

fn write_pem(dir: &Path, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let path = dir.join("digests.pem");
    std::fs::write(
        &path,
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digests_of_two_shards_over_two_hours_verify_and_every_tampering_is_reported_by_name() {
    let s = archive_two_hours().await;
    let raw = keys(&s, "raw/").await;
    let errors = keys(&s, "errors/").await;
    let digests = keys(&s, "digests/").await;
    assert_eq!(
        raw.len(),
        2 * 2 * BATCHES as usize,
        "one archive object per batch"
    );
    assert!(
        errors.len() >= 4,
        "poison records in every shard and hour: {errors:?}"
    );
    assert_eq!(
        digests.len(),
        4,
        "one digest per shard and hour: {digests:?}"
    );
    // S3 keeps the SHA-256 the archiver sent with each object.
    let head =
        s.s3.head_object()
            .bucket(BUCKET)
            .key(&raw[0])
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
    assert!(
        head.checksum_sha256().is_some(),
        "no SHA-256 checksum kept for {}",
        raw[0]
    );

    // Intact, by KMS GetPublicKey and by a PEM file; the hour without traffic is no finding.
    let v = verify_all(&s).await;
    assert_eq!(v.status, 0, "{:#} {}", v.report, v.stderr);
    assert_eq!(v.report["digests"], 4);
    assert_eq!(v.report["objects"], raw.len() + errors.len());
    assert_eq!(v.report["shards"], 2);
    let kms = aws_sdk_kms::Client::new(&s.emu.sdk_config().await);
    let public = kms.get_public_key().key_id(&s.key_id).send().await.unwrap();
    let pem = write_pem(s.scratch.path(), public.public_key().unwrap().as_ref());
    let (from, to) = (hour_arg(H1), hour_arg(H1 + 3 * 3600));
    let v = run_verify(&s, &["--from", &from, "--to", &to, "--public-key", &pem]).await;
    assert_eq!(v.status, 0, "{} {}", v.report, v.stderr);
    assert!(
        v.report.as_str().unwrap().contains("intact"),
        "{}",
        v.report
    );
    let (empty_from, empty_to) = (hour_arg(H1 + 2 * 3600), hour_arg(H1 + 3 * 3600));
    let v = run_verify(
        &s,
        &[
            "--from",
            &empty_from,
            "--to",
            &empty_to,
            "--key-id",
            &s.key_id,
            "--json",
        ],
    )
    .await;
    assert_eq!(
        (v.status, v.report["digests"].clone()),
        (0, 0.into()),
        "{:#}",
        v.report
    );

    // An object deleted.
    let victim = save(&s, &raw[3]).await;
    delete(&s, &victim.key).await;
    assert_found(
        &verify_all(&s).await,
        "object-deleted",
        &victim.key,
        "object deleted",
    );
    restore(&s, &victim).await;
    assert_intact(&s, "restoring the deleted object").await;

    // An object overwritten.
    let victim = save(&s, &errors[1]).await;
    put(
        &s,
        &victim.key,
        b"{\"forged\":true}\n".to_vec(),
        victim.content_type.as_deref(),
        &victim.metadata,
    )
    .await;
    assert_found(
        &verify_all(&s).await,
        "object-modified",
        &victim.key,
        "object overwritten",
    );
    restore(&s, &victim).await;

    // An object added in the range.
    let added = format!(
        "raw/2025/02/12/19/{STREAM}-{}-{}.jsonl.gz",
        SHARDS[1],
        seq(1, 999_999)
    );
    put(
        &s,
        &added,
        b"{}\n".to_vec(),
        Some("application/gzip"),
        &HashMap::new(),
    )
    .await;
    assert_found(
        &verify_all(&s).await,
        "object-added",
        &added,
        "object added",
    );
    delete(&s, &added).await;

    // A digest deleted: the next digest of its shard names it.
    let first_hour: Vec<&String> = digests
        .iter()
        .filter(|k| k.contains("/2025/02/12/19/"))
        .collect();
    let victim = save(&s, first_hour[0]).await;
    delete(&s, &victim.key).await;
    assert_found(
        &verify_all(&s).await,
        "digest-deleted",
        &victim.key,
        "digest deleted",
    );
    restore(&s, &victim).await;

    // A digest altered (its signature kept).
    let victim = save(&s, first_hour[1]).await;
    let text = String::from_utf8(victim.body.clone()).unwrap();
    let altered = text.replacen("\"recordCount\": ", "\"recordCount\": 1", 1);
    assert_ne!(altered, text);
    put(
        &s,
        &victim.key,
        altered.into_bytes(),
        victim.content_type.as_deref(),
        &victim.metadata,
    )
    .await;
    assert_found(
        &verify_all(&s).await,
        "digest-altered",
        &victim.key,
        "digest altered",
    );
    restore(&s, &victim).await;
    assert_intact(&s, "restoring the digests").await;

    // An object removed from the middle of a shard's chain with its digest entry: a gap.
    let digest = save(&s, first_hour[1]).await;
    let mut d: Value = serde_json::from_slice(&digest.body).unwrap();
    let objects = d["objects"].as_array_mut().unwrap();
    let removed = objects.remove(2);
    let removed_key = removed["key"].as_str().unwrap().to_string();
    let object = save(&s, &removed_key).await;
    delete(&s, &removed_key).await;
    put(
        &s,
        &digest.key,
        serde_json::to_vec_pretty(&d).unwrap(),
        digest.content_type.as_deref(),
        &digest.metadata,
    )
    .await;
    let v = verify_all(&s).await;
    assert_eq!(v.status, 1, "{:#}", v.report);
    assert!(v.kinds().contains("shard-gap"), "{:#}", v.report);
    assert!(!v.keys_of("object-deleted").contains(&removed_key));
    restore(&s, &object).await;
    restore(&s, &digest).await;
    assert_intact(&s, "restoring the gap").await;

    // Signatures by another key do not verify.
    let other = kms
        .create_key()
        .key_spec(KeySpec::EccNistP256)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap();
    let other_id = other.key_metadata().unwrap().key_id().to_string();
    let v = run_verify(
        &s,
        &[
            "--from", &from, "--to", &to, "--key-id", &other_id, "--json",
        ],
    )
    .await;
    assert_eq!(v.status, 1);
    assert_eq!(
        v.kinds(),
        BTreeSet::from(["digest-altered".to_string()]),
        "{:#}",
        v.report
    );

    // The next hourly close writes a heartbeat for each shard's quiet third hour: still
    // intact, no false alarm for the hour without traffic.
    hourly_close(&s, H1 + 3 * 3600 + 900).await;
    let v = verify_all(&s).await;
    assert_eq!(v.status, 0, "{:#} {}", v.report, v.stderr);
    assert_eq!(v.report["digests"], 6, "four with objects, two heartbeats");
    let beats: Vec<String> = keys(&s, "digests/")
        .await
        .into_iter()
        .filter(|k| k.ends_with("-heartbeat.json"))
        .collect();
    assert_eq!(beats.len(), 2, "{beats:?}");

    // Tail truncation: shard 0's two newest digests (the heartbeat and the second hour's)
    // and the second hour's objects deleted, the shard state rolled back to the first hour.
    let shard0: Vec<String> = keys(&s, "digests/")
        .await
        .into_iter()
        .filter(|k| k.contains(SHARDS[0]))
        .collect();
    assert_eq!(shard0.len(), 3, "{shard0:?}");
    let second = save(&s, &shard0[1]).await;
    let listed: Value = serde_json::from_slice(&second.body).unwrap();
    for o in listed["objects"].as_array().unwrap() {
        delete(&s, o["key"].as_str().unwrap()).await;
    }
    delete(&s, &shard0[1]).await;
    delete(&s, &shard0[2]).await;
    let state_key = format!("archiver-state/{STREAM}-{}.json", SHARDS[0]);
    let state = save(&s, &state_key).await;
    let mut rolled: Value = serde_json::from_slice(&state.body).unwrap();
    rolled["ledger"]["head"] = listed["previousDigest"].clone();
    rolled["ledger"]["coveredThrough"] = H1.into();
    put(
        &s,
        &state_key,
        serde_json::to_vec(&rolled).unwrap(),
        state.content_type.as_deref(),
        &state.metadata,
    )
    .await;
    let v = verify_all(&s).await;
    assert_eq!(v.status, 1, "{:#} {}", v.report, v.stderr);
    assert_eq!(
        v.kinds(),
        BTreeSet::from(["digest-missing".to_string()]),
        "{:#}",
        v.report
    );
    let missing = v.keys_of("digest-missing");
    let expected: Vec<String> = [19 + 1, 19 + 2]
        .iter()
        .map(|h| {
            format!(
                "digests/2025/02/12/{h}/{STREAM}-{}-heartbeat.json",
                SHARDS[0]
            )
        })
        .collect();
    assert_eq!(missing, expected, "{:#}", v.report);
}

#[tokio::test]
async fn a_verification_that_cannot_run_exits_2_naming_the_problem() {
    let out = tokio::process::Command::new(bin_path("authtrail-verify").unwrap())
        .args(["--archive", "s3://archive", "--from", "2025-02-12"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--key-id"), "{stderr}");
}
