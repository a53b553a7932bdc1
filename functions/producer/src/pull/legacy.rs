//! The legacy pull (Keycloak before 26.2: no event ids, day-only filters, newest first).
//!
//! The whole UTC days from `cursor.time - settle` to `dateTo` are read newest first; each next
//! page starts at the first row of the previous page's oldest millisecond, so a tie group
//! (which the server returns in any order) is always read whole. Events outside
//! `[cursor.time - settle, dateTo]` are skipped; the rest are deduped by SHA-256 of the
//! canonical event JSON (identical events in one millisecond are told apart by their count).
//! The cursor's time moves only when the window was read to its end. A page's intent (see
//! [`crate::pending`]) is saved in a conditional write of its own before its put.
//!
//! Collection gap (no "oldest kept event" query on these servers): the events the last run saw
//! inside the settle window lie inside this run's window, so a complete pass that meets none of
//! them means the server no longer keeps them.

use std::collections::{HashMap, HashSet};

use authtrail_core::envelope::EventKind;
use authtrail_core::put_batch::Record;
use chrono::{DateTime, NaiveDate};

use super::{ParsedEvent, Producer, RunCtx, iso, parse_page, widened};
use crate::checkpoint::{ApiMode, CheckpointStore, KindCursor};
use crate::config::StartFrom;
use crate::error::ProducerError;
use crate::mpas::{DateParam, EventSource, PageQuery};
use crate::record::content_hash;
use crate::sink::Sink;
use crate::summary::RunSummary;

/// The time window of one legacy pull and what the last run saw in it.
struct Window {
    /// Events before this time are outside the window (`None`: from the oldest kept).
    from: Option<i64>,
    /// This run's fixed `dateTo`.
    date_to: i64,
    /// Dedupe keys the last (legacy) run saw inside its settle window.
    prior_seen: HashSet<String>,
    /// This pass met one of `prior_seen`.
    met_prior: bool,
}

/// The UTC day of an epoch-millisecond time.
pub(super) fn day_of(ms: i64) -> NaiveDate {
    DateTime::from_timestamp_millis(ms)
        .map(|d| d.date_naive())
        .unwrap_or_default()
}

fn new_cursor(time: i64) -> KindCursor {
    KindCursor {
        mode: ApiMode::Legacy,
        time,
        seen: HashMap::new(),
    }
}

impl<S: EventSource, K: Sink, C: CheckpointStore> Producer<S, K, C> {
    /// Pulls one kind from a legacy server; returns whether the window was read to its end.
    pub(super) async fn pull_legacy(
        &self,
        kind: EventKind,
        ctx: &mut RunCtx,
        summary: &mut RunSummary,
    ) -> Result<bool, ProducerError> {
        let date_to = self.date_to();
        let (mut cursor, mut window) = self.legacy_start(ctx.held.doc.cursor(kind), date_to);
        self.seed_recovered(ctx, kind, &mut cursor);
        if matches!(self.settings.start_from, StartFrom::Latest)
            && ctx.held.doc.cursor(kind).is_none()
        {
            self.save_cursor(ctx, kind, &cursor, summary).await?;
            ctx.held.doc.set_cursor(kind, cursor);
            return Ok(true);
        }
        let day_from = window.from.map(|f| DateParam::Day(day_of(f)));
        let day_to = DateParam::Day(day_of(date_to));
        let mut first: u32 = 0;
        let mut max = self.settings.page_size;
        let mut complete = false;
        while self.time_left(ctx.deadline_ms) {
            let q = PageQuery {
                date_from: day_from,
                date_to: Some(day_to),
                first,
                max,
                ascending: None,
            };
            let page = self.source.fetch_page(kind, &q).await?;
            summary.pages += 1;
            let events = parse_page(kind, page)?;
            if events.windows(2).any(|w| w[0].time < w[1].time) {
                return Err(ProducerError::LegacyOrder);
            }
            let Some(last_t) = events.last().map(|e| e.time) else {
                complete = true;
                break;
            };
            let full = events.len() as u64 >= u64::from(max);
            // Index of the first row of the page's oldest millisecond (the tail tie group).
            let tail = events.iter().position(|e| e.time == last_t).unwrap_or(0);
            if full && tail == 0 {
                max = widened(max, last_t)?;
                continue;
            }
            let (records, new_keys) =
                self.dedupe_legacy(kind, events, &mut window, &cursor, summary);
            if !records.is_empty() {
                // Legacy pages are read one after the other: the intent is a write of its own.
                self.save_intent(ctx, kind, &cursor, &records, &new_keys, summary)
                    .await?;
                self.put(ctx, &records, summary).await?;
                cursor.seen.extend(new_keys);
                cursor.mode = ApiMode::Legacy;
                self.save_cursor(ctx, kind, &cursor, summary).await?;
            }
            if !full || window.from.is_some_and(|f| last_t < f) {
                complete = true;
                break;
            }
            first = first.saturating_add(tail as u32);
            max = self.settings.page_size;
        }
        if complete {
            self.finish_legacy(kind, ctx, &mut cursor, &window, summary)
                .await?;
        }
        ctx.held.doc.set_cursor(kind, cursor);
        Ok(complete)
    }

    /// The cursor to extend and the window to read, from the stored cursor (a modern one keeps
    /// its time only: ids cannot dedupe hashes) or the start setting.
    fn legacy_start(&self, existing: Option<&KindCursor>, date_to: i64) -> (KindCursor, Window) {
        let settle = self.settle_ms();
        let prior_seen: HashSet<String> = match existing {
            Some(c) if c.mode == ApiMode::Legacy => c.seen.keys().cloned().collect(),
            _ => HashSet::new(),
        };
        let (cursor, from) = match existing {
            Some(c) if c.mode == ApiMode::Legacy => {
                (c.clone(), Some(c.time.saturating_sub(settle)))
            }
            Some(c) => (new_cursor(c.time), Some(c.time.saturating_sub(settle))),
            None => match self.settings.start_from {
                StartFrom::Oldest => (new_cursor(0), None),
                StartFrom::Time(t) => (new_cursor(t), Some(t)),
                StartFrom::Latest => (new_cursor(date_to), Some(date_to)),
            },
        };
        let window = Window {
            from,
            date_to,
            prior_seen,
            met_prior: false,
        };
        (cursor, window)
    }

    /// The page's events inside the window and not seen yet (by content hash), as records with
    /// their dedupe keys.
    fn dedupe_legacy(
        &self,
        kind: EventKind,
        events: Vec<ParsedEvent>,
        window: &mut Window,
        cursor: &KindCursor,
        summary: &mut RunSummary,
    ) -> (Vec<Record>, Vec<(String, i64)>) {
        let mut records = Vec::new();
        let mut new_keys: Vec<(String, i64)> = Vec::new();
        let mut occurrences: HashMap<String, u32> = HashMap::new();
        for ev in events {
            summary.pulled += 1;
            if ev.time > window.date_to || window.from.is_some_and(|f| ev.time < f) {
                continue;
            }
            let hash = content_hash(&ev.raw);
            // Identical events (same content, same millisecond) are told apart by their
            // count within the page: a tie group is always read whole within one page.
            let n = occurrences.entry(hash.clone()).or_insert(0);
            let key = if *n == 0 { hash } else { format!("{hash}-{n}") };
            *n += 1;
            if cursor.seen.contains_key(&key) {
                window.met_prior |= window.prior_seen.contains(&key);
                summary.duplicates_skipped += 1;
                continue;
            }
            new_keys.push((key, ev.time));
            records.push(self.to_record(kind, ev.raw, summary));
        }
        (records, new_keys)
    }

    /// After a complete pass: reports a collection gap if none of the events the last run saw
    /// was met, moves the cursor to `dateTo` and saves it.
    async fn finish_legacy(
        &self,
        kind: EventKind,
        ctx: &mut RunCtx,
        cursor: &mut KindCursor,
        window: &Window,
        summary: &mut RunSummary,
    ) -> Result<(), ProducerError> {
        if !window.prior_seen.is_empty() && !window.met_prior {
            summary.collection_gap = true;
            tracing::error!(
                kind = kind.as_str(),
                cursor = %iso(cursor.time),
                "COLLECTION GAP: the events the last run saw before the cursor are no longer on the (pre-26.2) server; events made after that run may have expired unread"
            );
        }
        cursor.mode = ApiMode::Legacy;
        cursor.time = cursor.time.max(window.date_to);
        cursor.prune(cursor.time.saturating_sub(self.settle_ms()));
        self.save_cursor(ctx, kind, cursor, summary).await
    }
}
