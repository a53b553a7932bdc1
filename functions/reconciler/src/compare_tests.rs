//! Windows compared from hand-made sides: each fault shows at its own hop, and only there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use authtrail_core::tally::line::{ForwarderMinute, ForwarderTally, ProducerTally, TALLY_VERSION};
use authtrail_core::tally::object::{HopStatus, WindowStatus};

use super::*;
use crate::archive::{ArchivedRecord, ObjectFacts};
use crate::config::S3Location;

/// Minute 100 to 105: one five-minute window.
const START_MS: i64 = 100 * MINUTE_MS;

/// Records 1..=n: envelopes, one per 10 s from minute 100.
fn records(n: u64) -> Vec<ArchivedRecord> {
    (1..=n)
        .map(|i| ArchivedRecord {
            minute: 100 + (i as i64 * 10) / 60,
            hash: i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            envelope: true,
        })
        .collect()
}

fn archive(recs: &[ArchivedRecord]) -> ArchiveSpan {
    ArchiveSpan {
        objects: vec![Arc::new(ObjectFacts {
            records: recs.to_vec(),
            undated: 0,
        })],
    }
}

/// The forwarder's line for `recs`, delivered to `splunk`.
fn view(recs: &[ArchivedRecord]) -> ForwarderView {
    let mut minutes: BTreeMap<i64, ForwarderMinute> = BTreeMap::new();
    for r in recs {
        let m = minutes.entry(r.minute).or_default();
        m.seen.add(r.hash);
        m.envelopes.add(r.hash);
        m.emitters
            .entry("splunk".into())
            .or_default()
            .delivered
            .add(r.hash);
    }
    ForwarderView::build(vec![ForwarderTally {
        version: TALLY_VERSION,
        stream: "s".into(),
        shard: "shardId-0".into(),
        first_seq: "1".into(),
        last_seq: recs.len().to_string(),
        records: recs.len() as u64,
        undated: 0,
        minutes,
    }])
}

fn producer(recs: &[ArchivedRecord]) -> ProducerTallies {
    let mut t = ProducerTally::starting_at(0);
    for r in recs {
        t.add(r.minute, r.hash);
    }
    t.final_before = 1000;
    ProducerTallies {
        tallies: vec![(
            S3Location {
                bucket: "cp".into(),
                key: "c.json".into(),
            },
            Ok(t),
        )],
    }
}

fn run(a: &ArchiveSpan, f: ForwarderInput<'_>, p: &ProducerTallies) -> Reconciliation {
    reconcile(&WindowInputs {
        start_ms: START_MS,
        seconds: 300,
        settle_seconds: 600,
        now_ms: START_MS + 900_000,
        archive: a,
        forwarder: f,
        producers: p,
    })
}

fn by_hop(r: &Reconciliation) -> BTreeMap<&str, (HopStatus, u64)> {
    r.hops
        .iter()
        .map(|h| (h.hop.as_str(), (h.status, h.unaccounted)))
        .collect()
}

#[test]
fn a_window_where_every_side_agrees_is_complete_at_every_hop() {
    let all = records(20);
    let v = view(&all);
    let r = run(&archive(&all), ForwarderInput::View(&v), &producer(&all));
    assert_eq!(r.status, WindowStatus::Complete, "{r:#?}");
    assert_eq!(r.unaccounted, 0);
    let hops: Vec<&str> = r.hops.iter().map(|h| h.hop.as_str()).collect();
    assert_eq!(
        hops,
        [
            "producer>stream",
            "stream>archive",
            "stream>forwarder",
            "forwarder>emitter:splunk"
        ]
    );
    assert_eq!(r.hops[3].outcomes.as_ref().unwrap().delivered, 20);
    assert_eq!(r.archive.records, 20);
    assert_eq!(r.producer.put, Some(20));
    assert_eq!(r.window_start, "1970-01-01T01:40:00.000Z");
    assert_eq!(r.window_end, "1970-01-01T01:45:00.000Z");
}

#[test]
fn records_deleted_from_the_archive_show_at_stream_to_archive_only() {
    let all = records(20);
    let v = view(&all);
    let kept: Vec<_> = all.iter().copied().filter(|r| r.hash % 7 != 0).collect();
    let deleted = (all.len() - kept.len()) as u64;
    assert!(deleted > 0);
    let r = run(&archive(&kept), ForwarderInput::View(&v), &producer(&all));
    let h = by_hop(&r);
    assert_eq!(h["stream>archive"], (HopStatus::Unaccounted, deleted));
    assert_eq!(h["producer>stream"], (HopStatus::Ok, 0));
    assert_eq!(h["stream>forwarder"], (HopStatus::Ok, 0));
    assert_eq!(h["forwarder>emitter:splunk"], (HopStatus::Ok, 0));
    assert_eq!(
        (r.status, r.unaccounted),
        (WindowStatus::Unaccounted, deleted)
    );
}

#[test]
fn records_the_forwarder_never_finished_show_at_stream_to_forwarder_only() {
    let all = records(20);
    let v = view(&all[..18]);
    let r = run(&archive(&all), ForwarderInput::View(&v), &producer(&all));
    let h = by_hop(&r);
    assert_eq!(h["stream>forwarder"], (HopStatus::Unaccounted, 2));
    assert_eq!(h["stream>archive"], (HopStatus::Ok, 0));
    assert_eq!(h["producer>stream"], (HopStatus::Ok, 0));
    assert_eq!(h["forwarder>emitter:splunk"], (HopStatus::Ok, 0));
}

#[test]
fn events_put_that_no_consumer_saw_show_at_producer_to_stream_only() {
    let all = records(20);
    let v = view(&all[..19]);
    let r = run(
        &archive(&all[..19]),
        ForwarderInput::View(&v),
        &producer(&all),
    );
    let h = by_hop(&r);
    assert_eq!(h["producer>stream"], (HopStatus::Unaccounted, 1));
    assert_eq!(h["stream>archive"], (HopStatus::Ok, 0));
    assert_eq!(h["stream>forwarder"], (HopStatus::Ok, 0));
}

#[test]
fn an_emitter_without_an_outcome_for_a_record_shows_at_its_own_hop() {
    let all = records(10);
    let mut v = view(&all);
    let m = v.minutes.values_mut().next().unwrap();
    let splunk = m.emitters.get_mut("splunk").unwrap();
    splunk.delivered = splunk.delivered.minus(&Digest::of(all[0].hash));
    let r = run(&archive(&all), ForwarderInput::View(&v), &producer(&all));
    let h = by_hop(&r);
    assert_eq!(h["forwarder>emitter:splunk"], (HopStatus::Unaccounted, 1));
    assert_eq!(h["stream>forwarder"], (HopStatus::Ok, 0));
}

#[test]
fn an_event_put_twice_after_a_crash_is_one_event_for_the_producer_hop() {
    let all = records(10);
    let mut stream = all.clone();
    stream.push(all[3]);
    let v = view(&stream);
    let r = run(&archive(&stream), ForwarderInput::View(&v), &producer(&all));
    let h = by_hop(&r);
    assert_eq!(h["producer>stream"], (HopStatus::Ok, 0));
    assert_eq!(h["stream>archive"], (HopStatus::Ok, 0));
    assert_eq!(r.archive.envelopes, 11);
    assert_eq!(r.archive.distinct_envelopes, 10);
}

#[test]
fn an_altered_archive_record_is_a_mismatch_not_a_complete_window() {
    let all = records(10);
    let v = view(&all);
    let mut altered = all.clone();
    altered[2].hash ^= 1;
    let r = run(
        &archive(&altered),
        ForwarderInput::View(&v),
        &producer(&all),
    );
    let h = by_hop(&r);
    assert_eq!(h["stream>archive"].0, HopStatus::Mismatch);
    assert_eq!(r.status, WindowStatus::Unaccounted);
}

#[test]
fn a_missing_tally_makes_its_hops_unknown_and_the_window_never_complete() {
    let all = records(10);
    let r = run(
        &archive(&all),
        ForwarderInput::Unavailable("log group unreadable".into()),
        &ProducerTallies {
            tallies: vec![(
                S3Location {
                    bucket: "cp".into(),
                    key: "c.json".into(),
                },
                Err("no tally".into()),
            )],
        },
    );
    let h = by_hop(&r);
    assert_eq!(h["producer>stream"].0, HopStatus::Unknown);
    assert_eq!(h["stream>archive"].0, HopStatus::Unknown);
    assert_eq!(h["stream>forwarder"].0, HopStatus::Unknown);
    assert_eq!((r.status, r.unaccounted), (WindowStatus::Unknown, 0));
    assert!(r.hops.iter().all(|h| h.expected.is_none()));
}

#[test]
fn without_a_forwarder_or_producers_configured_only_their_hops_are_left_out() {
    let all = records(5);
    let r = run(
        &archive(&all),
        ForwarderInput::NotConfigured,
        &ProducerTallies::default(),
    );
    assert!(r.hops.is_empty());
    assert_eq!(r.status, WindowStatus::Complete);
    let r = run(
        &archive(&all),
        ForwarderInput::NotConfigured,
        &producer(&all),
    );
    assert_eq!(by_hop(&r)["producer>stream"], (HopStatus::Ok, 0));
}

#[test]
fn records_outside_the_window_are_not_counted() {
    let mut all = records(10);
    let mut late = records(1)[0];
    late.minute = 105;
    late.hash = 12345;
    all.push(late);
    let v = view(&all);
    let r = run(&archive(&all), ForwarderInput::View(&v), &producer(&all));
    assert_eq!(r.archive.records, 10);
    assert_eq!(r.status, WindowStatus::Complete);
}

#[test]
fn other_producers_records_are_reconciled_from_the_stream_onwards_without_a_producer_figure() {
    let ours = records(10);
    let mut all = ours.clone();
    // Foxpass-style records: not envelopes, no producer tally.
    for i in 0..4u64 {
        all.push(ArchivedRecord {
            minute: 101,
            hash: 0xf0f0 + i,
            envelope: false,
        });
    }
    let mut v = view(&all);
    for m in v.minutes.values_mut() {
        m.envelopes = Digest::default();
    }
    for r in &ours {
        v.minutes.get_mut(&r.minute).unwrap().envelopes.add(r.hash);
    }
    let r = run(&archive(&all), ForwarderInput::View(&v), &producer(&ours));
    assert_eq!(r.status, WindowStatus::Complete, "{r:#?}");
    assert_eq!((r.archive.envelopes, r.archive.other), (10, 4));
    // One foreign record deleted from the archive: stream>archive sees it, the producer hop
    // does not concern it.
    let r = run(
        &archive(&all[..13]),
        ForwarderInput::View(&v),
        &producer(&ours),
    );
    let h = by_hop(&r);
    assert_eq!(h["stream>archive"], (HopStatus::Unaccounted, 1));
    assert_eq!(h["producer>stream"], (HopStatus::Ok, 0));
}
