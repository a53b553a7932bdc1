//! The pull algorithm (Contract 3): lease, incremental pull per kind, put, checkpoint.
//!
//! Per run and kind, with a FIXED `dateTo = now - lag`:
//! - **modern** servers (Keycloak 26.2+, [`modern`]): `direction=asc`,
//!   `dateFrom = cursor.time - settle`, keyset paging by time (the next page starts at the last
//!   page's last millisecond, so rows at the boundary millisecond are re-read and deduped by
//!   id); a page that is entirely one millisecond is re-read with a larger `max` until the
//!   millisecond fits.
//! - **legacy** servers (no `id`, day-only filters, newest first, [`legacy`]): the whole days
//!   around the window are read newest first with offset paging; each next page starts at the
//!   first row of the previous page's last (oldest) millisecond, so a tie group whose order
//!   changes between requests is always read whole; events are deduped by a content hash, and
//!   the cursor's time moves only when the window was read to its end.
//!
//! After every page, the page's new records are written to the sink (all accepted, failed
//! entries resent) and only then is the checkpoint saved, with `If-Match`. Before a page's
//! first PutRecords call, a checkpoint save records its intent (`pending`: the digest and key of
//! each new record, see [`crate::pending`]); in modern mode that intent rides in the previous
//! page's checkpoint. A run that finds an intent left by a dead run first reads the stream back
//! ([`recover`]) and counts the records found there as written, so a crash between "accepted"
//! and "checkpoint saved" repeats nothing (Kinesis; a sink that cannot be read back repeats at
//! most that page). The lease is in [`crate::lease`], the checkpoint document and its saves in
//! [`crate::checkpoint`], the run summary in [`crate::summary`].

mod legacy;
mod modern;
mod recover;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authtrail_core::envelope::EventKind;
use authtrail_core::put_batch::{PutPolicy, Record, put_all};
use authtrail_core::redact::Redactor;
use serde_json::Value;

use crate::checkpoint::{ApiMode, CheckpointStore, HeldCheckpoint, KindCursor};
use crate::config::{ApiModeSetting, Settings, StartFrom};
use crate::error::ProducerError;
use crate::lease;
use crate::mpas::EventSource;
use crate::pending::PendingPut;
use crate::record::build_record;
use crate::sink::Sink;
use crate::summary::RunSummary;

/// Largest `max` used to read one crowded millisecond whole.
const MAX_WIDENED_PAGE: u32 = 100_000;
/// PutRecords / PutRecordBatch calls of one page sent at the same time.
pub const PUT_CALLS_IN_FLIGHT: usize = 4;
/// Length of the random partition key (hex characters).
const PARTITION_KEY_LEN: usize = 32;

/// The knobs of the pull algorithm (a subset of [`Settings`]).
#[derive(Debug, Clone)]
pub struct PullSettings {
    /// Pull user events (`MPAS_USER_EVENTS`).
    pub user_events: bool,
    /// Pull admin events (`MPAS_ADMIN_EVENTS`).
    pub admin_events: bool,
    /// `max` per request (`MPAS_PAGE_SIZE`).
    pub page_size: u32,
    /// Re-read window (`MPAS_SETTLE_WINDOW_SECS`).
    pub settle_window: Duration,
    /// Each run reads up to `now - lag` (`MPAS_QUERY_LAG_MS`).
    pub query_lag: Duration,
    /// Where the first run without a cursor starts (`MPAS_START_FROM`).
    pub start_from: StartFrom,
    /// Server flavour, or detection (`MPAS_API_MODE`).
    pub api_mode: ApiModeSetting,
    /// Stop paging this long before the deadline (`DEADLINE_RESERVE_MS`).
    pub deadline_reserve: Duration,
    /// Attempts per chunk of failed entries (`SINK_MAX_ATTEMPTS`).
    pub sink_max_attempts: u32,
    /// Base of the sink's backoff (`SINK_BASE_BACKOFF_MS`).
    pub sink_base_backoff: Duration,
}

impl From<&Settings> for PullSettings {
    fn from(s: &Settings) -> Self {
        Self {
            user_events: s.user_events,
            admin_events: s.admin_events,
            page_size: s.page_size,
            settle_window: s.settle_window,
            query_lag: s.query_lag,
            start_from: s.start_from,
            api_mode: s.api_mode,
            deadline_reserve: s.deadline_reserve,
            sink_max_attempts: s.sink_max_attempts,
            sink_base_backoff: s.sink_base_backoff,
        }
    }
}

/// The producer: the pull algorithm over its three capabilities.
pub struct Producer<S, K, C> {
    settings: PullSettings,
    source: S,
    sink: K,
    store: C,
    redact_user: Redactor,
    redact_admin: Redactor,
    /// Server flavour detected on this warm instance (auto mode).
    detected: std::sync::Mutex<Option<ApiMode>>,
}

/// The state of one run: the checkpoint as held under the lease, the deadline, and per kind
/// what the recovery of an interrupted put found.
struct RunCtx {
    held: HeldCheckpoint,
    deadline_ms: i64,
    /// No new modern page of the kind being pulled is fetched past this time (less than
    /// `deadline_ms` while another kind waits for its share of the run).
    page_until_ms: i64,
    /// Per kind (`[user, admin]`): keys of records found in the stream that the saved cursor
    /// does not hold yet (carried in every intent of the kind until its cursor is saved).
    recovered: [HashMap<String, i64>; 2],
    /// Per kind: a cursor of the kind was saved by this run.
    saved: [bool; 2],
}

/// The index of a kind in [`RunCtx`]'s per-kind arrays.
fn slot(kind: EventKind) -> usize {
    match kind {
        EventKind::User => 0,
        EventKind::Admin => 1,
    }
}

/// How a kind's pull ended.
enum Flow {
    /// Read as far as this run goes (`complete`: up to `dateTo`).
    Done { complete: bool },
    /// The server answered like a pre-26.2 one: read it in legacy mode.
    SwitchToLegacy,
}

/// An event of a page with the fields the algorithm needs.
struct ParsedEvent {
    time: i64,
    id: Option<String>,
    raw: Value,
}

/// Now, in epoch milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Epoch milliseconds as ISO-8601 (for logs, the summary and errors).
pub(crate) fn iso(ms: i64) -> String {
    authtrail_core::envelope::format_timestamp(ms)
}

fn random_partition_key() -> String {
    let a: u128 = rand::random();
    let mut s = format!("{a:032x}");
    s.truncate(PARTITION_KEY_LEN);
    s
}

/// The latest event `time` believed: 9999-12-31T23:59:59.999Z. Times outside 1970 to 9999
/// are refused as garbage, so no cursor arithmetic meets an absurd number.
pub const MAX_EVENT_TIME_MS: i64 = 253_402_300_799_999;

fn parse_page(kind: EventKind, page: Vec<Value>) -> Result<Vec<ParsedEvent>, ProducerError> {
    page.into_iter()
        .map(|raw| {
            let time = raw
                .get("time")
                .and_then(Value::as_i64)
                .ok_or(ProducerError::EventWithoutTime { kind })?;
            if !(0..=MAX_EVENT_TIME_MS).contains(&time) {
                return Err(ProducerError::EventTimeOutOfRange { kind, time });
            }
            let id = raw
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            Ok(ParsedEvent { time, id, raw })
        })
        .collect()
}

/// The next, larger `max` to read a page that is one single millisecond (`at`) whole.
fn widened(max: u32, at: i64) -> Result<u32, ProducerError> {
    if max >= MAX_WIDENED_PAGE {
        return Err(ProducerError::CrowdedMillisecond {
            limit: MAX_WIDENED_PAGE,
            at: iso(at),
        });
    }
    Ok(max.saturating_mul(4).min(MAX_WIDENED_PAGE))
}

impl<S: EventSource, K: Sink, C: CheckpointStore> Producer<S, K, C> {
    /// A producer over its capabilities, with the redactors of both kinds.
    pub fn new(
        settings: PullSettings,
        source: S,
        sink: K,
        store: C,
        redact_user: Redactor,
        redact_admin: Redactor,
    ) -> Self {
        Self {
            settings,
            source,
            sink,
            store,
            redact_user,
            redact_admin,
            detected: std::sync::Mutex::new(None),
        }
    }

    /// The sink.
    pub fn sink(&self) -> &K {
        &self.sink
    }

    /// The checkpoint store.
    pub fn store(&self) -> &C {
        &self.store
    }

    /// The event source.
    pub fn source(&self) -> &S {
        &self.source
    }

    fn time_left(&self, deadline_ms: i64) -> bool {
        now_ms() + self.settings.deadline_reserve.as_millis() as i64 <= deadline_ms
    }

    /// One scheduled run: take the lease, pull every enabled kind, release the lease.
    pub async fn run(&self, deadline_ms: i64) -> Result<RunSummary, ProducerError> {
        let mut summary = RunSummary::default();
        let Some(held) = lease::acquire(&self.store, deadline_ms, &mut summary).await? else {
            return Ok(summary);
        };
        let mut ctx = RunCtx {
            held: held.checkpoint,
            deadline_ms,
            page_until_ms: deadline_ms,
            recovered: [HashMap::new(), HashMap::new()],
            saved: [false, false],
        };
        self.settle_pending(&mut ctx, &mut summary).await;
        match self.pull_all(&mut ctx, &mut summary).await {
            Ok(()) => {
                lease::release(&self.store, &mut ctx.held).await?;
                summary.checkpoint_saves += 1;
            }
            Err(e) => {
                lease::release_after_error(&self.store, &held.owner).await;
                let ProducerError::Sink(authtrail_core::Error::Exhausted {
                    failed,
                    total,
                    attempts,
                    last,
                    out_of_time: true,
                }) = e
                else {
                    return Err(e);
                };
                // A backlog run that met its deadline mid-page: not a failure. The page's
                // intent is saved and the cursor stays before it; the next run reads the
                // stream back and writes only what is missing.
                tracing::warn!(
                    failed,
                    total,
                    attempts,
                    last_error = %last,
                    "the run's time ran out with records of a page still refused; the page stays pending for the next run"
                );
                summary.put_cut_short = failed as u64;
                summary.complete = false;
            }
        }
        summary.record_cursors(
            &ctx.held.doc,
            self.settings.user_events,
            self.settings.admin_events,
            now_ms(),
        );
        Ok(summary)
    }

    /// Pulls every enabled kind. With a backlog of both, each kind gets an equal share of the
    /// run's time first (a backlog of user events must not starve the admin events, or the other
    /// way round); a kind its share cut short then gets what the others left.
    async fn pull_all(
        &self,
        ctx: &mut RunCtx,
        summary: &mut RunSummary,
    ) -> Result<(), ProducerError> {
        let kinds: Vec<EventKind> = [
            (EventKind::User, self.settings.user_events),
            (EventKind::Admin, self.settings.admin_events),
        ]
        .into_iter()
        .filter_map(|(kind, enabled)| enabled.then_some(kind))
        .collect();
        let mut cut_short = Vec::new();
        for (i, kind) in kinds.iter().enumerate() {
            ctx.page_until_ms = self.share_until(ctx.deadline_ms, kinds.len() - i);
            if !self.pull_kind(*kind, ctx, summary).await? {
                cut_short.push(*kind);
            }
        }
        ctx.page_until_ms = ctx.deadline_ms;
        let mut complete = cut_short.is_empty();
        if !complete && self.time_left(ctx.deadline_ms) {
            complete = true;
            for kind in cut_short {
                complete &= self.pull_kind(kind, ctx, summary).await?;
            }
        }
        summary.complete = complete;
        Ok(())
    }

    /// When a kind that is one of `kinds_left` still to pull stops fetching new pages: after
    /// its equal share of the time left before the deadline's reserve.
    fn share_until(&self, deadline_ms: i64, kinds_left: usize) -> i64 {
        let reserve = self.settings.deadline_reserve.as_millis() as i64;
        let now = now_ms();
        let usable = (deadline_ms - reserve - now).max(0);
        let share = usable / i64::try_from(kinds_left.max(1)).unwrap_or(1);
        (now + share + reserve).min(deadline_ms)
    }

    fn mode_for(&self, ctx: &RunCtx, kind: EventKind) -> Option<ApiMode> {
        match self.settings.api_mode {
            ApiModeSetting::Modern => return Some(ApiMode::Modern),
            ApiModeSetting::Legacy => return Some(ApiMode::Legacy),
            ApiModeSetting::Auto => {}
        }
        if let Some(c) = ctx.held.doc.cursor(kind) {
            return Some(c.mode);
        }
        self.detected.lock().ok().and_then(|g| *g)
    }

    /// Returns whether the kind was read to this run's end.
    async fn pull_kind(
        &self,
        kind: EventKind,
        ctx: &mut RunCtx,
        summary: &mut RunSummary,
    ) -> Result<bool, ProducerError> {
        let mode = self.mode_for(ctx, kind);
        if mode != Some(ApiMode::Legacy) {
            match self.pull_modern(kind, ctx, summary, mode.is_none()).await? {
                Flow::Done { complete } => return Ok(complete),
                Flow::SwitchToLegacy => {
                    tracing::info!(
                        kind = kind.as_str(),
                        "MPAS server has no event ids / epoch filters (Keycloak < 26.2): using legacy mode with content-hash dedupe"
                    );
                    if let Ok(mut g) = self.detected.lock() {
                        *g = Some(ApiMode::Legacy);
                    }
                }
            }
        }
        self.pull_legacy(kind, ctx, summary).await
    }

    /// This run's fixed `dateTo`: now minus the query lag.
    fn date_to(&self) -> i64 {
        now_ms() - self.settings.query_lag.as_millis() as i64
    }

    fn settle_ms(&self) -> i64 {
        self.settings.settle_window.as_millis() as i64
    }

    fn redactor(&self, kind: EventKind) -> &Redactor {
        match kind {
            EventKind::User => &self.redact_user,
            EventKind::Admin => &self.redact_admin,
        }
    }

    fn max_data_bytes(&self) -> usize {
        let limits = self.sink.limits();
        limits.max_bytes_per_record
            - if limits.counts_partition_key {
                PARTITION_KEY_LEN
            } else {
                0
            }
    }

    fn to_record(&self, kind: EventKind, raw: Value, summary: &mut RunSummary) -> Record {
        let built = build_record(kind, raw, self.redactor(kind), self.max_data_bytes());
        if built.truncated {
            summary.truncated += 1;
            tracing::warn!(
                kind = kind.as_str(),
                "event too large for one record: written truncated with markers (see README)"
            );
        }
        Record {
            data: built.data,
            partition_key: random_partition_key(),
        }
    }

    async fn put(
        &self,
        ctx: &RunCtx,
        records: &[Record],
        summary: &mut RunSummary,
    ) -> Result<(), ProducerError> {
        if records.is_empty() {
            return Ok(());
        }
        let remaining = (ctx.deadline_ms - now_ms()).max(0) as u64;
        let reserve = (self.settings.deadline_reserve.as_millis() as u64) / 2;
        let policy = PutPolicy {
            max_attempts: self.settings.sink_max_attempts,
            base_backoff: self.settings.sink_base_backoff,
            max_backoff: Duration::from_secs(5),
            deadline: Some(
                Instant::now() + Duration::from_millis(remaining.saturating_sub(reserve)),
            ),
            max_in_flight: PUT_CALLS_IN_FLIGHT,
        };
        let stats = put_all(&self.sink, records, policy).await?;
        summary.put += stats.records as u64;
        summary.retried_entries += stats.retried_entries as u64;
        Ok(())
    }

    /// Saves the checkpoint with `cursor` as `kind`'s cursor (which holds the kind's recovered
    /// keys) and `intent` as the kind's pending put (the next page's, or none), and counts the
    /// save.
    async fn save_cursor_with(
        &self,
        ctx: &mut RunCtx,
        kind: EventKind,
        cursor: &KindCursor,
        intent: Option<PendingPut>,
        summary: &mut RunSummary,
    ) -> Result<(), ProducerError> {
        ctx.held.doc.pending.set(kind, intent);
        ctx.held.save(&self.store, Some((kind, cursor))).await?;
        ctx.recovered[slot(kind)].clear();
        ctx.saved[slot(kind)] = true;
        summary.checkpoint_saves += 1;
        Ok(())
    }

    /// Saves the checkpoint with `cursor` as `kind`'s cursor and no pending put of the kind.
    async fn save_cursor(
        &self,
        ctx: &mut RunCtx,
        kind: EventKind,
        cursor: &KindCursor,
        summary: &mut RunSummary,
    ) -> Result<(), ProducerError> {
        self.save_cursor_with(ctx, kind, cursor, None, summary)
            .await
    }

    /// The intent of putting `records` (dedupe keys `keys`) for `kind`: `None` when there is
    /// nothing to put or the sink cannot be read back (then a crash repeats the page).
    fn intent(
        &self,
        ctx: &RunCtx,
        kind: EventKind,
        records: &[Record],
        keys: &[(String, i64)],
    ) -> Option<PendingPut> {
        let target = self.sink.read_target()?;
        if records.is_empty() {
            return None;
        }
        Some(PendingPut::new(
            target,
            records,
            keys,
            now_ms(),
            ctx.deadline_ms,
            ctx.recovered[slot(kind)].clone(),
        ))
    }

    /// Saves the intent of putting `records` before the put, when there is one: the extra
    /// conditional write of a page whose intent could not ride in an earlier save. `cursor` is
    /// the kind's cursor as committed (saved only when the kind has one stored or saved: a
    /// first run's starting cursor is never stored).
    async fn save_intent(
        &self,
        ctx: &mut RunCtx,
        kind: EventKind,
        cursor: &KindCursor,
        records: &[Record],
        keys: &[(String, i64)],
        summary: &mut RunSummary,
    ) -> Result<(), ProducerError> {
        let Some(intent) = self.intent(ctx, kind, records, keys) else {
            return Ok(());
        };
        ctx.held.doc.pending.set(kind, Some(intent));
        let stored = ctx.saved[slot(kind)] || ctx.held.doc.cursor(kind).is_some();
        ctx.held
            .save(&self.store, stored.then_some((kind, cursor)))
            .await?;
        summary.checkpoint_saves += 1;
        summary.intent_saves += 1;
        Ok(())
    }

    /// Adds the keys that the recovery found in the stream for `kind` to its starting cursor.
    fn seed_recovered(&self, ctx: &RunCtx, kind: EventKind, cursor: &mut KindCursor) {
        cursor.seen.extend(
            ctx.recovered[slot(kind)]
                .iter()
                .map(|(k, t)| (k.clone(), *t)),
        );
    }
}
