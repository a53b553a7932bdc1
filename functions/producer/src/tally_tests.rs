//! Runs of the pull algorithm with a tallying sink and checkpoint store: the tally in the
//! checkpoint holds every event put, once, by minute, also when a run died between a put and
//! its checkpoint save and the next run put the same records again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authtrail_core::envelope::EventKind;
use authtrail_core::redact::Redactor;
use authtrail_core::tally::{Digest, minute_of, record_facts};
use serde_json::{Value, json};

use super::{TallyRecorder, TallySink};
use crate::checkpoint::MemoryCheckpointStore;
use crate::config::{ApiModeSetting, StartFrom};
use crate::error::SourceError;
use crate::mpas::{DateParam, EventSource, PageQuery};
use crate::pull::{Producer, PullSettings, now_ms};
use crate::sink::MemorySink;

/// A modern MPAS with user events only (ascending, epoch filters, offset paging).
#[derive(Default)]
struct Source {
    events: Mutex<Vec<(String, i64)>>,
}

impl EventSource for Source {
    async fn fetch_page(&self, kind: EventKind, q: &PageQuery) -> Result<Vec<Value>, SourceError> {
        if kind == EventKind::Admin {
            return Ok(Vec::new());
        }
        let ms = |p: Option<DateParam>| match p {
            Some(DateParam::EpochMs(ms)) => Some(ms),
            _ => None,
        };
        let (from, to) = (ms(q.date_from), ms(q.date_to));
        let mut rows: Vec<(String, i64)> = self
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, t)| from.is_none_or(|f| *t >= f) && to.is_none_or(|x| *t <= x))
            .cloned()
            .collect();
        rows.sort_by_key(|(_, t)| *t);
        Ok(rows
            .into_iter()
            .skip(q.first as usize)
            .take(q.max as usize)
            .map(|(id, time)| json!({"id": id, "time": time, "type": "LOGIN"}))
            .collect())
    }
}

type Tallied = Producer<Source, TallySink<MemorySink>, MemoryCheckpointStore>;

fn producer(source: Source) -> Tallied {
    producer_with(source, MemorySink::default())
}

fn producer_with(source: Source, sink: MemorySink) -> Tallied {
    let settings = PullSettings {
        user_events: true,
        admin_events: false,
        page_size: 7,
        settle_window: Duration::from_secs(60),
        query_lag: Duration::ZERO,
        start_from: StartFrom::Oldest,
        api_mode: ApiModeSetting::Modern,
        deadline_reserve: Duration::from_millis(500),
        sink_max_attempts: 20,
        sink_base_backoff: Duration::from_millis(1),
    };
    let recorder = Arc::new(TallyRecorder::new(settings.settle_window, true, false));
    let store = MemoryCheckpointStore::with_tally(recorder.clone());
    Producer::new(
        settings,
        source,
        TallySink::new(sink, recorder),
        store,
        Redactor::none(),
        Redactor::none(),
    )
}

/// Events spread over the last five minutes, three per 10 s.
fn source() -> Source {
    let now = now_ms();
    let s = Source::default();
    let mut ev = s.events.lock().unwrap();
    for i in 0..90 {
        ev.push((format!("e{i}"), now - 300_000 + i * 3_300));
    }
    drop(ev);
    s
}

/// Each distinct record the sink took, by minute.
fn distinct_by_minute(p: &Tallied) -> BTreeMap<i64, Digest> {
    let accepted = p.sink().inner().accepted.lock().unwrap().clone();
    let mut seen = std::collections::HashSet::new();
    let mut out: BTreeMap<i64, Digest> = BTreeMap::new();
    for data in accepted {
        let f = record_facts(&data);
        if seen.insert(f.hash) {
            out.entry(f.minute().unwrap()).or_default().add(f.hash);
        }
    }
    out
}

#[tokio::test]
async fn a_run_saves_every_record_put_in_the_checkpoint_tally_by_minute() {
    let p = producer(source());
    let summary = p.run(now_ms() + 60_000).await.unwrap();
    assert_eq!(summary.put, 90);
    let cp = p.store().current().unwrap();
    let tally = cp.tally.expect("a tally in the checkpoint");
    // A checkpoint that had no cursor: nothing was put before, every minute is tallied (the
    // tally covers everything from the retention's start).
    let expected = distinct_by_minute(&p);
    assert!(tally.since <= *expected.keys().next().unwrap());
    assert_eq!(tally.minutes, expected);
    let cursor = cp.user.unwrap().time;
    assert_eq!(tally.final_before, minute_of(cursor - 60_000));
}

#[tokio::test]
async fn a_run_that_died_after_a_put_leaves_the_records_tallied_once_when_the_next_run_puts_them_again()
 {
    // A sink that cannot be read back (as Firehose): the interrupted page is put again.
    let p = producer_with(source(), MemorySink::unreadable());
    // Two saves land (the lease, the first page's cursor), then the process "dies" before the
    // second page's save: that page is in the stream but not in the checkpoint.
    *p.store().crash_after_saves.lock().unwrap() = Some(2);
    assert!(p.run(now_ms() + 60_000).await.is_err());
    *p.store().crash_after_saves.lock().unwrap() = None;
    // The dead run's lease expires at its deadline; take it over by clearing it as AWS would.
    let mut cp = p.store().current().unwrap();
    cp.lease = None;
    p.store().overwrite(&cp);
    p.run(now_ms() + 60_000).await.unwrap();
    let accepted = p.sink().inner().accepted.lock().unwrap().len();
    assert!(
        accepted > 90,
        "the second page was put twice ({accepted} records)"
    );
    let tally = p.store().current().unwrap().tally.unwrap();
    let expected: BTreeMap<i64, Digest> = distinct_by_minute(&p)
        .into_iter()
        .filter(|(m, _)| *m >= tally.since)
        .collect();
    assert_eq!(tally.minutes, expected);
}

#[tokio::test]
async fn records_found_in_the_stream_after_a_crash_are_tallied_once_and_not_put_again() {
    let p = producer(source());
    // The lease and the first page's intent land, then the process "dies" before the first
    // page's checkpoint: the page is in the stream, its intent in the checkpoint.
    *p.store().crash_after_saves.lock().unwrap() = Some(2);
    assert!(p.run(now_ms() + 60_000).await.is_err());
    *p.store().crash_after_saves.lock().unwrap() = None;
    let mut cp = p.store().current().unwrap();
    assert!(cp.pending.user.is_some());
    cp.lease = None;
    p.store().overwrite(&cp);
    let summary = p.run(now_ms() + 60_000).await.unwrap();
    assert_eq!(summary.pending_found, 7);
    assert_eq!(p.sink().inner().accepted.lock().unwrap().len(), 90);
    let tally = p.store().current().unwrap().tally.unwrap();
    let expected: BTreeMap<i64, Digest> = distinct_by_minute(&p)
        .into_iter()
        .filter(|(m, _)| *m >= tally.since)
        .collect();
    assert_eq!(tally.minutes, expected);
}
