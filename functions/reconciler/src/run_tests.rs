//! Runs against in-memory S3 and log lines: which windows a run computes, the objects it
//! writes, and the metric lines.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use authtrail_core::tally::line::{ForwarderMinute, ForwarderTally, ProducerTally, TALLY_VERSION};
use authtrail_core::tally::{MINUTE_MS, record_facts};
use serde_json::json;

use super::*;
use crate::config::Settings;
use crate::forwarder::MemoryTallies;
use crate::store::MemoryStore;

/// 2025-02-12T19:00:00Z.
const T0: i64 = 1_739_386_800_000;

fn settings() -> Settings {
    let vars: HashMap<&str, &str> = HashMap::from([
        ("ARCHIVE_BUCKET", "arch"),
        ("PRODUCER_CHECKPOINTS", "s3://cp/checkpoint.json"),
        ("FORWARDER_LOG_GROUP", "/authtrail/test/forwarder"),
        ("RECONCILE_WINDOW_SECS", "300"),
        ("RECONCILE_SETTLE_SECS", "600"),
        ("RECONCILE_SLACK_SECS", "60"),
        ("RECONCILE_LOOKBACK_SECS", "1800"),
    ]);
    Settings::from_lookup(|n| vars.get(n).map(|v| v.to_string())).unwrap()
}

fn envelope(i: i64) -> String {
    json!({"timestamp": "x", "eventType": "user-event", "event": {"id": format!("e{i}"), "time": T0 + i * 20_000}})
        .to_string()
}

struct World {
    reconciler: Reconciler<MemoryStore, MemoryTallies>,
}

/// Events every 20 s for 20 minutes from T0: archived each minute, finished by the forwarder,
/// put by the producer; `drop` events are missing from the archive.
fn world(drop: &[i64]) -> World {
    let requests = Arc::new(Requests::default());
    let store = MemoryStore::with_requests(requests.clone());
    let tallies = MemoryTallies::default();
    let mut producer = ProducerTally::starting_at(0);
    for minute in 0..20 {
        let events: Vec<i64> = (minute * 3..minute * 3 + 3).collect();
        let mut archived = String::new();
        let mut m: BTreeMap<i64, ForwarderMinute> = BTreeMap::new();
        for i in &events {
            let line = envelope(*i);
            let f = record_facts(line.as_bytes());
            producer.add(f.minute().unwrap(), f.hash);
            let fm = m.entry(f.minute().unwrap()).or_default();
            fm.seen.add(f.hash);
            fm.envelopes.add(f.hash);
            fm.emitters
                .entry("splunk".into())
                .or_default()
                .delivered
                .add(f.hash);
            if !drop.contains(i) {
                archived.push_str(&line);
                archived.push('\n');
            }
        }
        let written = T0 + (minute + 1) * MINUTE_MS + 5_000;
        store.insert(
            "arch",
            &format!("raw/2025/02/12/19/s-shard-{minute:04}.jsonl"),
            archived.into_bytes(),
            written,
        );
        let line = ForwarderTally {
            version: TALLY_VERSION,
            stream: "s".into(),
            shard: "shard".into(),
            first_seq: (minute * 10).to_string(),
            last_seq: (minute * 10 + 2).to_string(),
            records: 3,
            undated: 0,
            minutes: m,
        };
        tallies.log(T0 + minute * MINUTE_MS + 30_000, line.to_line());
    }
    producer.final_before = i64::MAX;
    store.insert(
        "cp",
        "checkpoint.json",
        json!({"version": 1, "tally": producer})
            .to_string()
            .into_bytes(),
        T0,
    );
    World {
        reconciler: Reconciler::new(settings(), store, Some(tallies), requests),
    }
}

fn object(w: &World, key: &str) -> Reconciliation {
    serde_json::from_slice(&w.reconciler.store().body("arch", key).unwrap()).unwrap()
}

#[tokio::test]
async fn a_scheduled_run_computes_each_settled_window_once_and_writes_its_object() {
    let w = world(&[]);
    // At 19:25: windows ending by 19:15 are settled (19:00, 19:05, 19:10).
    let now = T0 + 25 * MINUTE_MS;
    let s = w.reconciler.run(now, &Request::Scheduled).await.unwrap();
    let starts: Vec<&str> = s.windows.iter().map(|w| w.window_start.as_str()).collect();
    assert_eq!(
        starts,
        [
            "2025-02-12T19:00:00.000Z",
            "2025-02-12T19:05:00.000Z",
            "2025-02-12T19:10:00.000Z"
        ]
    );
    assert!(
        s.windows
            .iter()
            .all(|w| w.status == WindowStatus::Complete && w.unaccounted == 0)
    );
    let r = object(&w, "reconciliation/2025/02/12/19/20250212T1905Z-300s.json");
    assert_eq!(r.archive.records, 15);
    assert_eq!(r.producer.put, Some(15));
    assert_eq!(s.requests.s3_put, 3);
    // The next run finds the objects and computes nothing.
    let again = w
        .reconciler
        .run(now + 1000, &Request::Scheduled)
        .await
        .unwrap();
    assert!(again.windows.is_empty());
}

#[tokio::test]
async fn events_missing_from_the_archive_are_reported_in_their_window_and_hop() {
    // Events 4 and 5 are at 19:01:20 and 19:01:40; event 17 at 19:05:40.
    let w = world(&[4, 5, 17]);
    let now = T0 + 25 * MINUTE_MS;
    let s = w.reconciler.run(now, &Request::Scheduled).await.unwrap();
    let per_window: Vec<u64> = s.windows.iter().map(|w| w.unaccounted).collect();
    assert_eq!(per_window, [2, 1, 0]);
    let r = object(&w, "reconciliation/2025/02/12/19/20250212T1900Z-300s.json");
    let hop = r.hops.iter().find(|h| h.hop == "stream>archive").unwrap();
    assert_eq!((hop.status, hop.unaccounted), (HopStatus::Unaccounted, 2));
    assert!(
        r.hops
            .iter()
            .filter(|h| h.hop != "stream>archive")
            .all(|h| h.unaccounted == 0)
    );
}

#[tokio::test]
async fn a_manual_run_computes_a_range_again_and_never_an_unfinished_window() {
    let w = world(&[]);
    let now = T0 + 25 * MINUTE_MS;
    w.reconciler.run(now, &Request::Scheduled).await.unwrap();
    let req = Request::from_payload(&json!({
        "authtrail": "reconcile", "from": "2025-02-12T19:05:00Z", "to": "2025-02-12T19:30:00Z"
    }))
    .unwrap();
    let s = w.reconciler.run(now, &req).await.unwrap();
    let starts: Vec<&str> = s.windows.iter().map(|w| w.window_start.as_str()).collect();
    // 19:25 has not ended at 19:25.
    assert_eq!(starts.len(), 4, "{starts:?}");
    assert_eq!(starts[0], "2025-02-12T19:05:00.000Z");
}

#[test]
fn payloads_are_scheduled_events_or_a_documented_manual_request() {
    let scheduled = json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
    assert_eq!(
        Request::from_payload(&scheduled).unwrap(),
        Request::Scheduled
    );
    assert_eq!(
        Request::from_payload(&json!({})).unwrap(),
        Request::Scheduled
    );
    for bad in [
        json!({"authtrail": "preflight"}),
        json!({"authtrail": "reconcile", "from": "yesterday", "to": "2025-02-12T19:00:00Z"}),
        json!({"authtrail": "reconcile", "from": "2025-02-12T19:00:00Z", "to": "2025-02-12T18:00:00Z"}),
    ] {
        let e = Request::from_payload(&bad).unwrap_err();
        assert_eq!(e.error_type(), "PayloadInvalid", "{bad}");
    }
}

#[test]
fn an_unknown_hop_emits_only_the_unknown_metric_never_a_zero() {
    use authtrail_core::tally::object::{
        ArchiveSummary, ForwarderSummary, HopResult, ProducerSummary,
    };
    let h = |hop: &str, status, unaccounted| HopResult {
        hop: hop.into(),
        status,
        expected: None,
        observed: None,
        unaccounted,
        extra: 0,
        outcomes: None,
        reason: None,
    };
    let r = Reconciliation {
        version: 1,
        window_start: "w".into(),
        window_end: "e".into(),
        window_seconds: 300,
        computed_at: "c".into(),
        settle_seconds: 600,
        status: WindowStatus::Unaccounted,
        unaccounted: 3,
        hops: vec![
            h("producer>stream", HopStatus::Unknown, 0),
            h("stream>archive", HopStatus::Unaccounted, 3),
        ],
        archive: ArchiveSummary::default(),
        forwarder: ForwarderSummary::default(),
        producer: ProducerSummary::default(),
    };
    let lines: Vec<serde_json::Value> = metrics(&r).iter().map(|e| e.to_value_at(0)).collect();
    assert_eq!(lines[0]["Hop"], "producer>stream");
    assert_eq!(lines[0]["ReconcileUnknown"], 1.0);
    assert!(lines[0].get("Unaccounted").is_none());
    assert_eq!(lines[1]["Unaccounted"], 3.0);
    assert_eq!(lines[1]["ReconcileUnknown"], 0.0);
    assert_eq!(
        lines[1]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "authtrail"
    );
    assert_eq!(
        lines[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Hop"]])
    );
    // The window's sums, what the alarms watch.
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["Hop"], "all");
    assert_eq!(lines[2]["Unaccounted"], 3.0);
    assert_eq!(lines[2]["ReconcileUnknown"], 1.0);
}
