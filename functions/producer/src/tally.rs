//! The producer's reconciliation tally: what it put into the stream, per minute of event time
//! (core's [`ProducerTally`]), kept in the checkpoint object and saved in the same conditional
//! write as the cursor, so it moves exactly when the cursor does and costs no request of its
//! own.
//!
//! Two pieces share one [`TallyRecorder`]: [`TallySink`] wraps the sink and notes every record
//! the stream accepted; the checkpoint save ([`crate::checkpoint::HeldCheckpoint::save`]) takes
//! what was noted since the last save into the tally it writes. A run that fails before its
//! save loses what it noted (the records are put again by the next run, which reads the same
//! events from the same cursor, and counted then): noted records are discarded whenever the
//! checkpoint is loaded, at the start of every run.
//!
//! `since` is the first minute after every kind's cursor when the tally began (events of
//! earlier minutes may have been put before there was a tally); `finalBefore` is the oldest
//! enabled kind's cursor minus the settle window (the producer never reads before it again).
//! Minutes older than [`RETENTION_MINUTES`] are pruned: a reconciler that runs later than that
//! sees the producer's figure as unknown, never as zero.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authtrail_core::Error;
use authtrail_core::put_batch::{BatchLimits, BatchWriter, EntryResult, Record};
use authtrail_core::tally::line::ProducerTally;
use authtrail_core::tally::{Digest, minute_of, record_facts};

use crate::checkpoint::KindCursor;

/// Minutes of tally kept in the checkpoint (12 hours).
pub const RETENTION_MINUTES: i64 = 12 * 60;

/// Records accepted by the stream and not yet saved in the tally.
#[derive(Debug)]
pub struct TallyRecorder {
    noted: Mutex<BTreeMap<i64, Digest>>,
    settle_ms: i64,
    user_events: bool,
    admin_events: bool,
}

impl TallyRecorder {
    /// A recorder for a producer re-reading `settle` and pulling the given kinds.
    pub fn new(settle: Duration, user_events: bool, admin_events: bool) -> Self {
        Self {
            noted: Mutex::new(BTreeMap::new()),
            settle_ms: i64::try_from(settle.as_millis()).unwrap_or(i64::MAX),
            user_events,
            admin_events,
        }
    }

    /// Notes one record the stream accepted.
    pub fn note(&self, data: &[u8]) {
        let facts = record_facts(data);
        // The producer's records are envelopes with an event time; anything else is not ours
        // to count.
        let Some(minute) = facts.minute() else { return };
        if let Ok(mut noted) = self.noted.lock() {
            noted.entry(minute).or_default().add(facts.hash);
        }
    }

    /// Forgets what was noted (a run starts, or failed before saving it).
    pub fn discard(&self) {
        if let Ok(mut noted) = self.noted.lock() {
            noted.clear();
        }
    }

    /// Records noted and not saved yet.
    pub fn noted(&self) -> u64 {
        self.noted
            .lock()
            .map(|n| n.values().map(|d| d.count).sum())
            .unwrap_or(0)
    }

    /// The tally to save with cursors `after`: `base` (the one last saved, with cursors
    /// `before`; a new one when `None`) plus everything noted since, which is taken (a failed
    /// save fails the run, and the next run puts those records again). Cursors are
    /// `[user, admin]`.
    pub fn take_into(
        &self,
        base: Option<&ProducerTally>,
        before: [Option<&KindCursor>; 2],
        after: [Option<&KindCursor>; 2],
        now_ms: i64,
    ) -> ProducerTally {
        let [user, admin] = after;
        let mut tally = match base {
            Some(t) => t.clone(),
            None => ProducerTally::starting_at(self.first_whole_minute(before)),
        };
        let noted = self
            .noted
            .lock()
            .map(|mut n| std::mem::take(&mut *n))
            .unwrap_or_default();
        for (minute, d) in noted {
            if minute >= tally.since {
                tally.minutes.entry(minute).or_default().merge(&d);
            }
        }
        tally.prune(minute_of(now_ms) - RETENTION_MINUTES);
        tally.final_before = self.final_before(user, admin).max(tally.since);
        tally
    }

    /// The enabled kinds' cursors (`None` for an enabled kind without one).
    fn enabled<'c>(
        &self,
        user: Option<&'c KindCursor>,
        admin: Option<&'c KindCursor>,
    ) -> Vec<Option<&'c KindCursor>> {
        let mut v = Vec::with_capacity(2);
        if self.user_events {
            v.push(user);
        }
        if self.admin_events {
            v.push(admin);
        }
        v
    }

    /// The first minute no event of which was put before the tally began: after the minute of
    /// every cursor as saved before it (0 when no kind had a cursor: nothing was put yet).
    fn first_whole_minute(&self, before: [Option<&KindCursor>; 2]) -> i64 {
        before
            .into_iter()
            .flatten()
            .map(|c| minute_of(c.time) + 1)
            .max()
            .unwrap_or(0)
    }

    /// The minute before which no event will be put any more: the oldest enabled cursor minus
    /// the settle window (`i64::MIN` while an enabled kind has no cursor).
    fn final_before(&self, user: Option<&KindCursor>, admin: Option<&KindCursor>) -> i64 {
        self.enabled(user, admin)
            .into_iter()
            .map(|c| {
                c.map_or(i64::MIN, |c| {
                    minute_of(c.time.saturating_sub(self.settle_ms))
                })
            })
            .min()
            .unwrap_or(i64::MIN)
    }
}

/// A sink that notes every record its inner sink accepted in a [`TallyRecorder`].
pub struct TallySink<W> {
    inner: W,
    recorder: Arc<TallyRecorder>,
}

impl<W> TallySink<W> {
    /// Wraps `inner`.
    pub fn new(inner: W, recorder: Arc<TallyRecorder>) -> Self {
        Self { inner, recorder }
    }

    /// The wrapped sink.
    pub fn inner(&self) -> &W {
        &self.inner
    }
}

impl<W: BatchWriter> BatchWriter for TallySink<W> {
    fn limits(&self) -> BatchLimits {
        self.inner.limits()
    }

    async fn put_batch(&self, records: &[Record]) -> Result<Vec<EntryResult>, Error> {
        let results = self.inner.put_batch(records).await?;
        for (r, result) in records.iter().zip(&results) {
            if *result == EntryResult::Accepted {
                self.recorder.note(&r.data);
            }
        }
        Ok(results)
    }
}

impl<W: crate::sink::ReadBack> crate::sink::ReadBack for TallySink<W> {
    fn read_target(&self) -> Option<&str> {
        self.inner.read_target()
    }

    async fn read_back(
        &self,
        window: &crate::sink::ReadWindow,
        visit: &mut (dyn FnMut(&[u8]) -> std::ops::ControlFlow<()> + Send),
    ) -> Result<crate::sink::ReadStats, crate::error::ReadBackError> {
        self.inner.read_back(window, visit).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::checkpoint::ApiMode;
    use authtrail_core::tally::record_hash;
    use std::collections::HashMap;

    fn cursor(time: i64) -> KindCursor {
        KindCursor {
            mode: ApiMode::Modern,
            time,
            seen: HashMap::new(),
        }
    }

    fn envelope(time: i64) -> Vec<u8> {
        format!(r#"{{"timestamp":"t","eventType":"user-event","event":{{"id":"{time}","time":{time}}}}}"#)
            .into_bytes()
    }

    #[test]
    fn a_new_tally_starts_after_every_cursor_and_is_final_before_the_oldest_minus_settle() {
        let r = TallyRecorder::new(Duration::from_secs(60), true, true);
        let now = 100 * 60_000;
        // Saved before: user cursor in minute 50, admin cursor in minute 40; settle one minute.
        let (user, admin) = (cursor(50 * 60_000 + 5), cursor(40 * 60_000));
        let t = r.take_into(
            None,
            [Some(&user), Some(&admin)],
            [Some(&user), Some(&admin)],
            now,
        );
        assert_eq!(t.since, 51);
        // 40:00.000 - 60 s = minute 39; since is later, so nothing is final yet.
        assert_eq!(t.final_before, 51);
        let (user, admin) = (cursor(70 * 60_000), cursor(65 * 60_000 + 30_000));
        let t = r.take_into(Some(&t), [None, None], [Some(&user), Some(&admin)], now);
        assert_eq!(t.final_before, 64);
        // A checkpoint without cursors before the first save: nothing was put, all is tallied.
        let fresh = r.take_into(None, [None, None], [Some(&user), Some(&admin)], now);
        assert_eq!(fresh.since, 0);
    }

    #[test]
    fn an_enabled_kind_without_a_cursor_keeps_everything_pending() {
        let r = TallyRecorder::new(Duration::ZERO, true, true);
        let c10 = cursor(10 * 60_000);
        let t = r.take_into(None, [Some(&c10), None], [Some(&c10), None], 20 * 60_000);
        assert_eq!(t.final_before, t.since);
        let only_user = TallyRecorder::new(Duration::ZERO, true, false);
        let t = only_user.take_into(None, [Some(&c10), None], [Some(&c10), None], 20 * 60_000);
        assert_eq!((t.since, t.final_before), (11, 11));
        let c15 = cursor(15 * 60_000);
        let t = only_user.take_into(Some(&t), [None, None], [Some(&c15), None], 20 * 60_000);
        assert_eq!(t.final_before, 15);
    }

    #[test]
    fn noted_records_go_into_the_next_tally_once_and_a_discard_forgets_them() {
        let r = TallyRecorder::new(Duration::ZERO, true, false);
        let base = ProducerTally::starting_at(0);
        r.note(&envelope(61_000));
        r.note(&envelope(62_000));
        r.note(b"{\"no\":\"time\"}");
        assert_eq!(r.noted(), 2);
        let c = cursor(200_000);
        let t = r.take_into(Some(&base), [None, None], [Some(&c), None], 200_000);
        assert_eq!(t.minutes[&1].count, 2);
        assert_eq!(
            t.minutes[&1].sum,
            record_hash(&envelope(61_000)).wrapping_add(record_hash(&envelope(62_000)))
        );
        assert_eq!(r.noted(), 0);
        let again = r.take_into(Some(&t), [None, None], [Some(&c), None], 200_000);
        assert_eq!(again.minutes, t.minutes);
        r.note(&envelope(63_000));
        r.discard();
        assert_eq!(
            r.take_into(Some(&t), [None, None], [None, None], 0).minutes,
            t.minutes
        );
    }

    #[test]
    fn minutes_older_than_the_retention_are_pruned_and_become_unknown() {
        let r = TallyRecorder::new(Duration::ZERO, true, false);
        let mut base = ProducerTally::starting_at(0);
        base.add(5, 1);
        let now = (5 + RETENTION_MINUTES + 1) * 60_000;
        let c = cursor(now);
        let t = r.take_into(Some(&base), [None, None], [Some(&c), None], now);
        assert!(t.minutes.is_empty());
        assert_eq!(t.since, 6);
    }

    #[tokio::test]
    async fn the_tally_sink_notes_only_accepted_records() {
        let r = Arc::new(TallyRecorder::new(Duration::ZERO, true, false));
        // The entry at the odd position fails once.
        let inner = crate::sink::MemorySink {
            fail_entries: std::sync::atomic::AtomicUsize::new(1),
            ..Default::default()
        };
        let sink = TallySink::new(inner, r.clone());
        let records = vec![
            Record {
                data: envelope(60_000),
                partition_key: "a".into(),
            },
            Record {
                data: envelope(120_000),
                partition_key: "b".into(),
            },
        ];
        let results = sink.put_batch(&records).await.unwrap();
        assert_eq!(results[0], EntryResult::Accepted);
        assert_ne!(results[1], EntryResult::Accepted);
        assert_eq!(r.noted(), 1);
        assert_eq!(sink.limits(), sink.inner().limits());
    }
}

#[cfg(test)]
#[path = "tally_tests.rs"]
mod run_tests;
