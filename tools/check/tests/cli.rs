//! The `authtrail-check` binary against archive objects in the emulator's S3.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::Command;

use authtrail_harness::{Emulator, ScratchDir};
use serde_json::json;

fn envelope(id: &str, time: i64) -> String {
    json!({"timestamp": "t", "eventType": "user-event", "event": {"id": id, "time": time, "type": "LOGIN", "ipAddress": "<redacted>"}})
        .to_string()
}

fn gzip(lines: &[String]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for l in lines {
        enc.write_all(l.as_bytes()).unwrap();
        enc.write_all(b"\n").unwrap();
    }
    enc.finish().unwrap()
}

async fn put(emu: &Emulator, key: &str, body: Vec<u8>) {
    emu.s3()
        .await
        .put_object()
        .bucket("arch")
        .key(key)
        .body(body.into())
        .send()
        .await
        .unwrap();
}

fn run_check(emu: &Emulator, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_authtrail-check"))
        .args(args)
        .envs(emu.env())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn check_says_complete_when_the_archive_holds_every_ledger_event_once() {
    let emu = Emulator::start().await.unwrap();
    emu.create_bucket("arch").await.unwrap();
    put(
        &emu,
        "raw/2026/11/22/04/s-shard-1.jsonl.gz",
        gzip(&[envelope("a", 1), envelope("b", 2)]),
    )
    .await;
    put(
        &emu,
        "raw/2026/11/22/04/s-shard-3.jsonl.gz",
        gzip(&[envelope("c", 3)]),
    )
    .await;
    let dir = ScratchDir::new("check").unwrap();
    let ledger = dir.path().join("ledger.jsonl");
    let lines: Vec<String> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, id)| json!({"kind": "user-event", "event": {"id": id, "time": i + 1, "ipAddress": "192.0.2.1"}}).to_string())
        .collect();
    std::fs::write(&ledger, lines.join("\n")).unwrap();
    let (code, out) = run_check(
        &emu,
        &[
            "--expected-file",
            ledger.to_str().unwrap(),
            "--archive",
            "s3://arch/raw/",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("result: complete"), "{out}");
}

#[tokio::test]
async fn check_names_the_missing_and_duplicated_events_and_exits_1() {
    let emu = Emulator::start().await.unwrap();
    emu.create_bucket("arch").await.unwrap();
    put(
        &emu,
        "raw/2026/11/22/04/s-shard-1.jsonl.gz",
        gzip(&[envelope("a", 1), envelope("a", 1)]),
    )
    .await;
    let dir = ScratchDir::new("check").unwrap();
    let ledger = dir.path().join("ledger.jsonl");
    std::fs::write(
        &ledger,
        format!(
            "{}\n{}\n",
            json!({"kind": "user-event", "event": {"id": "a", "time": 1}}),
            json!({"kind": "user-event", "event": {"id": "b", "time": 2}})
        ),
    )
    .unwrap();
    let (code, out) = run_check(
        &emu,
        &[
            "--expected-file",
            ledger.to_str().unwrap(),
            "--archive",
            "s3://arch/raw/",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("INCOMPLETE"), "{out}");
    assert!(
        out.contains("missing") && out.contains("user-event:b"),
        "{out}"
    );
    assert!(
        out.contains("duplicated") && out.contains("user-event:a"),
        "{out}"
    );
}

#[tokio::test]
async fn without_a_ledger_the_archive_is_the_reference_for_siem_samples() {
    let emu = Emulator::start().await.unwrap();
    emu.create_bucket("arch").await.unwrap();
    put(
        &emu,
        "raw/x.jsonl",
        format!("{}\n{}\n", envelope("a", 1), envelope("b", 2)).into_bytes(),
    )
    .await;
    let dir = ScratchDir::new("check").unwrap();
    let siem = dir.path().join("siem.jsonl");
    std::fs::write(&siem, format!("{}\n", json!({"msg": envelope("a", 1)}))).unwrap();
    let siem_arg = format!("splunk={}", siem.display());
    let (code, out) = run_check(&emu, &["--archive", "s3://arch/raw/", "--siem", &siem_arg]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("splunk") && out.contains("user-event:b"),
        "{out}"
    );
}

#[tokio::test]
async fn a_bad_archive_url_is_an_error_with_exit_2() {
    let emu = Emulator::start().await.unwrap();
    let (code, out) = run_check(&emu, &["--archive", "arch/raw"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("s3://"), "{out}");
}

/// A reconciliation object (the reconciler's format) for the window starting at `start`.
fn reconciliation(start: &str, end: &str, archive_unaccounted: u64) -> Vec<u8> {
    let status = if archive_unaccounted > 0 {
        "unaccounted"
    } else {
        "complete"
    };
    let hop_status = if archive_unaccounted > 0 {
        "unaccounted"
    } else {
        "ok"
    };
    json!({
        "version": 1, "windowStart": start, "windowEnd": end, "windowSeconds": 300,
        "computedAt": end, "settleSeconds": 600, "status": status,
        "unaccounted": archive_unaccounted,
        "hops": [
            {"hop": "producer>stream", "status": "ok", "expected": {"count": 10, "digest": "00000000000000aa"},
             "observed": {"count": 10, "digest": "00000000000000aa"}, "unaccounted": 0, "extra": 0},
            {"hop": "stream>archive", "status": hop_status, "expected": {"count": 10, "digest": "00000000000000aa"},
             "observed": {"count": 10 - archive_unaccounted, "digest": "0000000000000001"},
             "unaccounted": archive_unaccounted, "extra": 0,
             "reason": "records the forwarder finished are not in the archive"}
        ],
        "archive": {"objects": 2, "records": 10, "envelopes": 10, "distinctEnvelopes": 10, "other": 0, "undated": 0},
        "forwarder": {"lines": 4, "repeatedLines": 0, "overlappingLines": 0, "shards": 2},
        "producer": {"checkpoints": 1, "put": 10}
    })
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn reconcile_prints_each_window_and_hop_and_exits_1_for_records_unaccounted_or_windows_missing()
 {
    let emu = Emulator::start().await.unwrap();
    emu.create_bucket("arch").await.unwrap();
    let s3 = emu.s3().await;
    for (key, start, end, n) in [
        (
            "reconciliation/2025/02/12/19/20250212T1900Z-300s.json",
            "2025-02-12T19:00:00.000Z",
            "2025-02-12T19:05:00.000Z",
            0,
        ),
        (
            "reconciliation/2025/02/12/19/20250212T1905Z-300s.json",
            "2025-02-12T19:05:00.000Z",
            "2025-02-12T19:10:00.000Z",
            3,
        ),
    ] {
        s3.put_object()
            .bucket("arch")
            .key(key)
            .body(reconciliation(start, end, n).into())
            .send()
            .await
            .unwrap();
    }
    let range = |to: &str| {
        [
            "reconcile",
            "--bucket",
            "arch",
            "--from",
            "2025-02-12T19:00:00Z",
            "--to",
            to,
        ]
        .map(String::from)
    };
    let (code, out) = run_check(
        &emu,
        &range("2025-02-12T19:05:00Z").each_ref().map(String::as_str),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("result: complete"), "{out}");
    let (code, out) = run_check(
        &emu,
        &range("2025-02-12T19:15:00Z").each_ref().map(String::as_str),
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("2025-02-12T19:05:00.000Z stream>archive"),
        "{out}"
    );
    assert!(
        out.contains("3 records unaccounted") && out.contains("1 windows without an object"),
        "{out}"
    );
    let (code, out) = run_check(
        &emu,
        &[
            "reconcile",
            "--bucket",
            "arch",
            "--from",
            "yesterday",
            "--to",
            "2025-02-12T19:15:00Z",
        ],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--from"), "{out}");
}
