//! The modern pull (Keycloak 26.2+: event ids, epoch-millisecond filters, `direction=asc`).
//!
//! `dateFrom = cursor.time - settle`, fixed `dateTo`; keyset paging by time: the next page
//! starts at the last page's last millisecond, so the rows of that millisecond are re-read and
//! skipped by id. A page that is one single millisecond is re-read with a larger `max` until
//! the millisecond fits. The next page is fetched while the previous one is put (a two-stage
//! pipeline); a page is deduped only after every record of the one before it was accepted, and
//! the checkpoint of a page carries the intent of the next one (see [`crate::pending`]), so
//! the only extra write is the intent of a run's first page. On a server in auto mode, the
//! first answer tells whether it is modern at all.

use std::collections::HashMap;

use authtrail_core::envelope::EventKind;
use authtrail_core::put_batch::Record;
use serde_json::Value;

use super::{Flow, ParsedEvent, Producer, RunCtx, iso, parse_page, widened};
use crate::checkpoint::{ApiMode, CheckpointStore, KindCursor};
use crate::config::StartFrom;
use crate::error::{ProducerError, SourceError};
use crate::mpas::{DateParam, EventSource, PageQuery};
use crate::sink::Sink;
use crate::summary::RunSummary;

/// A modern page read and deduped, waiting to be put and checkpointed.
struct PendingPage {
    records: Vec<Record>,
    new_keys: Vec<(String, i64)>,
    full: bool,
    last_t: Option<i64>,
}

/// Where the paging of one modern pull stands.
struct Paging {
    /// `dateFrom` of the next request (`None`: from the oldest event kept).
    from: Option<i64>,
    /// `max` of the next request.
    max: u32,
    /// The last page was short: everything up to `dateTo` was read.
    complete: bool,
    /// The collection gap was checked (or need not be: no cursor yet).
    checked_gap: bool,
    /// The server's flavour is still to be told from its first answer.
    may_detect: bool,
}

/// What one fetched page led to.
enum PageStep {
    /// New records to put and checkpoint.
    Page(PendingPage),
    /// The page was one millisecond: read it again with a larger `max`.
    Widened,
    /// The server is a legacy one.
    SwitchToLegacy,
}

fn new_cursor(time: i64) -> KindCursor {
    KindCursor {
        mode: ApiMode::Modern,
        time,
        seen: HashMap::new(),
    }
}

impl<S: EventSource, K: Sink, C: CheckpointStore> Producer<S, K, C> {
    /// Pulls one kind from a modern server, or finds (with `may_detect`) that it is not one.
    pub(super) async fn pull_modern(
        &self,
        kind: EventKind,
        ctx: &mut RunCtx,
        summary: &mut RunSummary,
        may_detect: bool,
    ) -> Result<Flow, ProducerError> {
        let date_to = self.date_to();
        let had_cursor = ctx.held.doc.cursor(kind).is_some();
        let Some((mut cursor, from)) = self
            .modern_start(kind, ctx, summary, may_detect, date_to)
            .await?
        else {
            return Ok(Flow::Done { complete: true });
        };
        self.seed_recovered(ctx, kind, &mut cursor);
        let mut paging = Paging {
            from,
            max: self.settings.page_size,
            complete: false,
            checked_gap: !had_cursor,
            may_detect,
        };
        // Two-stage pipeline: the next page is fetched while the previous one is put. Once every
        // record of a page was accepted, the cursor moves past it, the fetched page is deduped
        // against it, and one save checkpoints the page with the next page's intent.
        let mut pending: Option<PendingPage> = None;
        loop {
            let q = (!paging.complete && self.time_left(ctx.page_until_ms)).then(|| PageQuery {
                date_from: paging.from.map(DateParam::EpochMs),
                date_to: Some(DateParam::EpochMs(date_to)),
                first: 0,
                max: paging.max,
                ascending: Some(true),
            });
            let to_put = pending.take();
            let records = to_put.as_ref().map_or(&[][..], |p| p.records.as_slice());
            let fetched = self
                .put_while_fetching(ctx, kind, records, q.as_ref(), summary)
                .await?;
            let committed = to_put.is_some();
            if let Some(page) = to_put {
                self.advance_modern(&mut cursor, page, date_to);
            }
            let step = match self
                .read_fetched(kind, fetched, &mut paging, &cursor, summary)
                .await
            {
                Ok(step) => step,
                Err(e) if committed => {
                    self.save_cursor(ctx, kind, &cursor, summary).await?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            let fetched_any = step.is_some();
            let next = match step {
                Some(PageStep::Page(page)) => Some(page),
                Some(PageStep::SwitchToLegacy) => {
                    if committed {
                        self.save_cursor(ctx, kind, &cursor, summary).await?;
                    }
                    return Ok(Flow::SwitchToLegacy);
                }
                Some(PageStep::Widened) | None => None,
            };
            self.checkpoint_modern(ctx, kind, &cursor, committed, next.as_ref(), summary)
                .await?;
            match next {
                Some(page) => pending = Some(page),
                None if fetched_any => {}
                None => break,
            }
        }
        ctx.held.doc.set_cursor(kind, cursor);
        Ok(Flow::Done {
            complete: paging.complete,
        })
    }

    /// Puts `records` (every one accepted, or an error) while fetching the page of `q` (when
    /// given): the two stages of the pipeline.
    async fn put_while_fetching(
        &self,
        ctx: &RunCtx,
        kind: EventKind,
        records: &[Record],
        q: Option<&PageQuery>,
        summary: &mut RunSummary,
    ) -> Result<Option<Result<Vec<Value>, SourceError>>, ProducerError> {
        let put = self.put(ctx, records, summary);
        let fetch = async {
            match q {
                Some(q) => Some(self.source.fetch_page(kind, q).await),
                None => None,
            }
        };
        let (put, fetched) = tokio::join!(put, fetch);
        put?;
        Ok(fetched)
    }

    /// Reads a fetched page (`None`: nothing was fetched).
    async fn read_fetched(
        &self,
        kind: EventKind,
        fetched: Option<Result<Vec<Value>, SourceError>>,
        paging: &mut Paging,
        cursor: &KindCursor,
        summary: &mut RunSummary,
    ) -> Result<Option<PageStep>, ProducerError> {
        match fetched {
            Some(f) => self
                .read_modern_page(kind, f, paging, cursor, summary)
                .await
                .map(Some),
            None => Ok(None),
        }
    }

    /// Saves what the pipeline step led to: the committed page's cursor with the next page's
    /// intent (one write), or the next page's intent alone (the first page, or after a widened
    /// read), or nothing.
    async fn checkpoint_modern(
        &self,
        ctx: &mut RunCtx,
        kind: EventKind,
        cursor: &KindCursor,
        committed: bool,
        next: Option<&PendingPage>,
        summary: &mut RunSummary,
    ) -> Result<(), ProducerError> {
        let (records, keys) = next.map_or((&[][..], &[][..]), |p| {
            (p.records.as_slice(), p.new_keys.as_slice())
        });
        if committed {
            let intent = self.intent(ctx, kind, records, keys);
            self.save_cursor_with(ctx, kind, cursor, intent, summary)
                .await
        } else {
            self.save_intent(ctx, kind, cursor, records, keys, summary)
                .await
        }
    }

    /// The cursor to extend and the first `dateFrom`, from the stored cursor or the start
    /// setting. `None` when a first run that starts from "latest" on a server known to be
    /// modern saved its cursor at `date_to`: nothing to read then.
    async fn modern_start(
        &self,
        kind: EventKind,
        ctx: &mut RunCtx,
        summary: &mut RunSummary,
        may_detect: bool,
        date_to: i64,
    ) -> Result<Option<(KindCursor, Option<i64>)>, ProducerError> {
        if let Some(c) = ctx.held.doc.cursor(kind) {
            let from = c.time.saturating_sub(self.settle_ms());
            return Ok(Some((c.clone(), Some(from))));
        }
        Ok(Some(match self.settings.start_from {
            StartFrom::Oldest => (new_cursor(0), None),
            StartFrom::Time(t) => (new_cursor(t), Some(t)),
            StartFrom::Latest if !may_detect => {
                let c = new_cursor(date_to);
                self.save_cursor(ctx, kind, &c, summary).await?;
                ctx.held.doc.set_cursor(kind, c);
                return Ok(None);
            }
            StartFrom::Latest => (new_cursor(date_to), Some(date_to)),
        }))
    }

    /// Checks one fetched page: legacy answers, ids, the collection gap, a page that is one
    /// millisecond; dedupes the rest against the cursor.
    async fn read_modern_page(
        &self,
        kind: EventKind,
        fetched: Result<Vec<Value>, SourceError>,
        paging: &mut Paging,
        cursor: &KindCursor,
        summary: &mut RunSummary,
    ) -> Result<PageStep, ProducerError> {
        let page = match fetched {
            Ok(p) => p,
            Err(SourceError::BadRequest(msg)) if paging.may_detect => {
                tracing::info!(kind = kind.as_str(), reason = %msg, "MPAS rejected epoch/direction query");
                return Ok(PageStep::SwitchToLegacy);
            }
            Err(e) => return Err(e.into()),
        };
        summary.pages += 1;
        let events = parse_page(kind, page)?;
        if events.iter().any(|e| e.id.is_none()) {
            if paging.may_detect {
                return Ok(PageStep::SwitchToLegacy);
            }
            return Err(ProducerError::EventWithoutId { kind });
        }
        paging.may_detect = false;
        if !paging.checked_gap {
            paging.checked_gap = true;
            self.check_gap(kind, cursor.time, summary).await?;
        }
        let full = !events.is_empty() && events.len() as u64 >= u64::from(paging.max);
        let last_t = events.last().map(|e| e.time);
        if full && events.first().map(|e| e.time) == last_t {
            // One millisecond fills the whole page: read it whole with a larger page.
            paging.max = widened(paging.max, last_t.unwrap_or(0))?;
            return Ok(PageStep::Widened);
        }
        let page = self.dedupe_modern(kind, events, cursor, full, last_t, summary);
        if !full {
            paging.complete = true;
        }
        paging.from = last_t;
        paging.max = self.settings.page_size;
        Ok(PageStep::Page(page))
    }

    /// The page's events not seen yet (by id), as records with their dedupe keys.
    fn dedupe_modern(
        &self,
        kind: EventKind,
        events: Vec<ParsedEvent>,
        cursor: &KindCursor,
        full: bool,
        last_t: Option<i64>,
        summary: &mut RunSummary,
    ) -> PendingPage {
        let mut records = Vec::with_capacity(events.len());
        let mut new_keys: Vec<(String, i64)> = Vec::with_capacity(events.len());
        for ev in events {
            summary.pulled += 1;
            let Some(id) = ev.id else { continue };
            if cursor.seen.contains_key(&id) {
                summary.duplicates_skipped += 1;
                continue;
            }
            new_keys.push((id, ev.time));
            records.push(self.to_record(kind, ev.raw, summary));
        }
        PendingPage {
            records,
            new_keys,
            full,
            last_t,
        }
    }

    /// Moves the cursor past a page whose records were all accepted (in memory: the next save
    /// stores it).
    fn advance_modern(&self, cursor: &mut KindCursor, page: PendingPage, date_to: i64) {
        cursor.seen.extend(page.new_keys);
        cursor.mode = ApiMode::Modern;
        cursor.time = cursor.time.max(match (page.full, page.last_t) {
            (true, Some(t)) => t,
            _ => date_to,
        });
        cursor.prune(cursor.time.saturating_sub(self.settle_ms()));
    }

    /// Reports a collection gap when the oldest event the server keeps is newer than the
    /// cursor (events in between may have expired unread).
    async fn check_gap(
        &self,
        kind: EventKind,
        cursor_time: i64,
        summary: &mut RunSummary,
    ) -> Result<(), ProducerError> {
        let q = PageQuery {
            date_from: None,
            date_to: None,
            first: 0,
            max: 1,
            ascending: Some(true),
        };
        let page = self.source.fetch_page(kind, &q).await?;
        if let Some(oldest) = page
            .first()
            .and_then(|e| e.get("time"))
            .and_then(Value::as_i64)
            && oldest > cursor_time
        {
            summary.collection_gap = true;
            tracing::error!(
                kind = kind.as_str(),
                cursor = %iso(cursor_time),
                oldest_kept = %iso(oldest),
                "COLLECTION GAP: the cursor is older than the oldest event MPAS still keeps; events in between may have expired unread"
            );
        }
        Ok(())
    }
}
