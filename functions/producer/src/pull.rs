//! The pull algorithm (Contract 3): lease, incremental pull per kind, put, checkpoint.
//!
//! Per run and kind, with a FIXED `dateTo = now - lag`:
//! - **modern** servers (Keycloak 26.2+): `direction=asc`, `dateFrom = cursor.time - settle`,
//!   keyset paging by time (the next page starts at the last page's last millisecond, so rows at
//!   the boundary millisecond are re-read and deduped by id); a page that is entirely one
//!   millisecond is re-read with a larger `max` until the millisecond fits.
//! - **legacy** servers (no `id`, day-only filters, newest first): the whole days around the
//!   window are read newest first with offset paging; each next page starts at the first row of
//!   the previous page's last (oldest) millisecond, so a tie group whose order changes between
//!   requests is always read whole; events are deduped by a content hash, and the cursor's time
//!   moves only when the window was read to its end.
//!
//! After every page, the page's new records are written to the sink (all accepted, failed
//! entries resent) and only then is the checkpoint saved, with `If-Match`, so a crash can repeat
//! at most the one page that was accepted but not yet checkpointed.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authtrail_core::envelope::EventKind;
use authtrail_core::metrics::Emf;
use authtrail_core::redact::Redactor;
use chrono::{DateTime, NaiveDate};
use serde::Serialize;
use serde_json::Value;

use crate::ProducerError;
use crate::checkpoint::{
    ApiMode, Checkpoint, CheckpointStore, Condition, KindCursor, Lease, StoreError,
};
use crate::config::{ApiModeSetting, Settings, StartFrom};
use crate::mpas::{DateParam, EventSource, PageQuery, SourceError};
use crate::record::{build_record, content_hash};
use crate::sink::{RecordSink, RetryPolicy, SinkRecord, put_all};

/// Largest `max` used to read one crowded millisecond whole.
const MAX_WIDENED_PAGE: u32 = 100_000;
/// PutRecords / PutRecordBatch calls of one page sent at the same time.
pub const PUT_CALLS_IN_FLIGHT: usize = 4;
/// Length of the random partition key (hex characters).
const PARTITION_KEY_LEN: usize = 32;

/// The knobs of the pull algorithm (a subset of [`Settings`]).
#[derive(Debug, Clone)]
pub struct PullSettings {
    pub user_events: bool,
    pub admin_events: bool,
    pub page_size: u32,
    pub settle_window: Duration,
    pub query_lag: Duration,
    pub start_from: StartFrom,
    pub api_mode: ApiModeSetting,
    pub deadline_reserve: Duration,
    pub sink_max_attempts: u32,
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

/// What one invocation did (also the function's response and the summary log line).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Another invocation held the lease: this one wrote nothing.
    pub stood_down: bool,
    pub pulled: u64,
    pub put: u64,
    pub duplicates_skipped: u64,
    pub pages: u64,
    pub truncated: u64,
    pub retried_entries: u64,
    pub checkpoint_saves: u64,
    /// Every enabled kind was read up to this run's `dateTo` (false: the deadline cut it short).
    pub complete: bool,
    /// The cursor was older than the oldest event the server still keeps.
    pub collection_gap: bool,
    pub lag_seconds: Option<f64>,
    pub user_cursor: Option<String>,
    pub admin_cursor: Option<String>,
    pub user_mode: Option<ApiMode>,
    pub admin_mode: Option<ApiMode>,
}

impl RunSummary {
    /// The CloudWatch EMF line with the run's figures.
    pub fn to_emf(&self, request_id: &str) -> Emf {
        let mut emf = Emf::new("authtrail")
            .dimension("Function", "producer")
            .count("Pulled", self.pulled)
            .count("Put", self.put)
            .count("DuplicatesSkipped", self.duplicates_skipped)
            .count("Pages", self.pages)
            .count("Truncated", self.truncated)
            .count("RetriedEntries", self.retried_entries)
            .count("CollectionGap", u64::from(self.collection_gap))
            .count("StoodDown", u64::from(self.stood_down))
            .property("RequestId", request_id);
        if let Some(lag) = self.lag_seconds {
            emf = emf.metric("LagSeconds", lag, "Seconds");
        }
        if let Some(c) = &self.user_cursor {
            emf = emf.property("UserCursor", c.as_str());
        }
        if let Some(c) = &self.admin_cursor {
            emf = emf.property("AdminCursor", c.as_str());
        }
        emf
    }

    /// Logs the one summary line of the invocation.
    pub fn log(&self, request_id: &str) {
        tracing::info!(
            request_id,
            stood_down = self.stood_down,
            pulled = self.pulled,
            put = self.put,
            duplicates_skipped = self.duplicates_skipped,
            pages = self.pages,
            truncated = self.truncated,
            retried_entries = self.retried_entries,
            checkpoint_saves = self.checkpoint_saves,
            complete = self.complete,
            collection_gap = self.collection_gap,
            lag_seconds = self.lag_seconds.unwrap_or(-1.0),
            user_cursor = self.user_cursor.as_deref().unwrap_or("-"),
            admin_cursor = self.admin_cursor.as_deref().unwrap_or("-"),
            "producer run summary"
        );
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

struct RunCtx {
    cp: Checkpoint,
    etag: String,
    owner: String,
    deadline_ms: i64,
}

/// Serializes a checkpoint with one kind's cursor substituted, without cloning the seen set.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CheckpointView<'a> {
    version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease: Option<&'a Lease>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a KindCursor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin: Option<&'a KindCursor>,
    updated_at: String,
}

enum Flow {
    Done { complete: bool },
    SwitchToLegacy,
}

/// A modern page read and deduped, waiting to be put and checkpointed.
struct PendingPage {
    records: Vec<SinkRecord>,
    new_keys: Vec<(String, i64)>,
    full: bool,
    last_t: Option<i64>,
}

struct ParsedEvent {
    time: i64,
    id: Option<String>,
    raw: Value,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn iso(ms: i64) -> String {
    authtrail_core::envelope::format_timestamp(ms)
}

fn day_of(ms: i64) -> NaiveDate {
    DateTime::from_timestamp_millis(ms)
        .map(|d| d.date_naive())
        .unwrap_or_default()
}

fn random_partition_key() -> String {
    let a: u128 = rand::random();
    let mut s = format!("{a:032x}");
    s.truncate(PARTITION_KEY_LEN);
    s
}

fn parse_page(kind: EventKind, page: Vec<Value>) -> Result<Vec<ParsedEvent>, ProducerError> {
    page.into_iter()
        .map(|raw| {
            let time = raw.get("time").and_then(Value::as_i64).ok_or_else(|| {
                ProducerError::BadEvent(format!(
                    "{} without an integer `time` in the MPAS response",
                    kind.as_str()
                ))
            })?;
            let id = raw
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            Ok(ParsedEvent { time, id, raw })
        })
        .collect()
}

impl<S: EventSource, K: RecordSink, C: CheckpointStore> Producer<S, K, C> {
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

    pub fn sink(&self) -> &K {
        &self.sink
    }

    pub fn store(&self) -> &C {
        &self.store
    }

    pub fn source(&self) -> &S {
        &self.source
    }

    fn time_left(&self, deadline_ms: i64) -> bool {
        now_ms() + self.settings.deadline_reserve.as_millis() as i64 <= deadline_ms
    }

    async fn load(&self) -> Result<(Checkpoint, Option<String>), ProducerError> {
        match self.store.load().await? {
            None => Ok((Checkpoint::default(), None)),
            Some((body, etag)) => {
                let cp: Checkpoint = serde_json::from_slice(&body).map_err(|e| {
                    ProducerError::CorruptCheckpoint(format!(
                        "not a checkpoint document (line {} column {}); refusing to overwrite it",
                        e.line(),
                        e.column()
                    ))
                })?;
                Ok((cp, Some(etag)))
            }
        }
    }

    async fn save(
        &self,
        ctx: &mut RunCtx,
        kind: Option<(EventKind, &KindCursor)>,
    ) -> Result<(), ProducerError> {
        let (user, admin) = match kind {
            Some((EventKind::User, c)) => (Some(c), ctx.cp.admin.as_ref()),
            Some((EventKind::Admin, c)) => (ctx.cp.user.as_ref(), Some(c)),
            None => (ctx.cp.user.as_ref(), ctx.cp.admin.as_ref()),
        };
        let view = CheckpointView {
            version: 1,
            lease: ctx.cp.lease.as_ref(),
            user,
            admin,
            updated_at: iso(now_ms()),
        };
        let body = serde_json::to_vec(&view)
            .map_err(|e| ProducerError::CorruptCheckpoint(e.to_string()))?;
        match self
            .store
            .save(body, Condition::IfMatch(ctx.etag.clone()))
            .await
        {
            Ok(etag) => {
                ctx.etag = etag;
                Ok(())
            }
            Err(StoreError::Conflict) => Err(ProducerError::LeaseLost),
            Err(e) => Err(e.into()),
        }
    }

    /// One scheduled run: take the lease, pull every enabled kind, release the lease.
    pub async fn run(&self, deadline_ms: i64) -> Result<RunSummary, ProducerError> {
        let owner = uuid::Uuid::new_v4().to_string();
        let mut summary = RunSummary::default();
        let (mut cp, etag) = self.load().await?;
        let now = now_ms();
        if let Some(lease) = &cp.lease {
            if lease.expires_at > now {
                tracing::warn!(
                    holder = %lease.owner,
                    expires_at = %iso(lease.expires_at),
                    "another producer invocation holds the lease; standing down without writing"
                );
                summary.stood_down = true;
                return Ok(summary);
            }
            tracing::warn!(holder = %lease.owner, "taking over an expired lease (its holder died)");
        }
        cp.lease = Some(Lease {
            owner: owner.clone(),
            expires_at: deadline_ms.max(now + 1000),
        });
        let body =
            serde_json::to_vec(&cp).map_err(|e| ProducerError::CorruptCheckpoint(e.to_string()))?;
        let condition = match etag {
            Some(e) => Condition::IfMatch(e),
            None => Condition::IfNoneMatch,
        };
        let etag = match self.store.save(body, condition).await {
            Ok(e) => e,
            Err(StoreError::Conflict) => {
                tracing::warn!("another producer invocation took the lease first; standing down");
                summary.stood_down = true;
                return Ok(summary);
            }
            Err(e) => return Err(e.into()),
        };
        summary.checkpoint_saves += 1;
        // Read back: an emulator's conditional write may not be atomic; whoever is in the
        // object now owns the lease.
        let (check, check_etag) = self.load().await?;
        if check.lease.as_ref().map(|l| l.owner.as_str()) != Some(owner.as_str())
            || check_etag.as_deref() != Some(etag.as_str())
        {
            tracing::warn!("lost the lease race to another invocation; standing down");
            summary.stood_down = true;
            return Ok(summary);
        }
        let mut ctx = RunCtx {
            cp,
            etag,
            owner,
            deadline_ms,
        };
        let result = self.pull_all(&mut ctx, &mut summary).await;
        match result {
            Ok(()) => {
                ctx.cp.lease = None;
                self.save(&mut ctx, None).await?;
                summary.checkpoint_saves += 1;
            }
            Err(e) => {
                self.release_after_error(&ctx.owner).await;
                return Err(e);
            }
        }
        let now = now_ms();
        let mut oldest: Option<i64> = None;
        for (enabled, cursor, out, mode) in [
            (
                self.settings.user_events,
                &ctx.cp.user,
                &mut summary.user_cursor,
                &mut summary.user_mode,
            ),
            (
                self.settings.admin_events,
                &ctx.cp.admin,
                &mut summary.admin_cursor,
                &mut summary.admin_mode,
            ),
        ] {
            if let (true, Some(c)) = (enabled, cursor) {
                *out = Some(iso(c.time));
                *mode = Some(c.mode);
                oldest = Some(oldest.map_or(c.time, |o: i64| o.min(c.time)));
            }
        }
        summary.lag_seconds = oldest.map(|t| ((now - t).max(0) as f64) / 1000.0);
        Ok(summary)
    }

    /// Best effort: drop our lease from the stored checkpoint (the cursor stays as last saved).
    async fn release_after_error(&self, owner: &str) {
        let Ok((mut cp, Some(etag))) = self.load().await else {
            return;
        };
        if cp.lease.as_ref().map(|l| l.owner.as_str()) != Some(owner) {
            return;
        }
        cp.lease = None;
        if let Ok(body) = serde_json::to_vec(&cp)
            && let Err(e) = self.store.save(body, Condition::IfMatch(etag)).await
        {
            tracing::warn!(error = %e, "could not release the lease after a failed run; it expires at the invocation deadline");
        }
    }

    async fn pull_all(
        &self,
        ctx: &mut RunCtx,
        summary: &mut RunSummary,
    ) -> Result<(), ProducerError> {
        let mut complete = true;
        for (kind, enabled) in [
            (EventKind::User, self.settings.user_events),
            (EventKind::Admin, self.settings.admin_events),
        ] {
            if !enabled {
                continue;
            }
            complete &= self.pull_kind(kind, ctx, summary).await?;
        }
        summary.complete = complete;
        Ok(())
    }

    fn cursor_of(ctx: &RunCtx, kind: EventKind) -> Option<&KindCursor> {
        match kind {
            EventKind::User => ctx.cp.user.as_ref(),
            EventKind::Admin => ctx.cp.admin.as_ref(),
        }
    }

    fn store_cursor(ctx: &mut RunCtx, kind: EventKind, cursor: KindCursor) {
        match kind {
            EventKind::User => ctx.cp.user = Some(cursor),
            EventKind::Admin => ctx.cp.admin = Some(cursor),
        }
    }

    fn mode_for(&self, ctx: &RunCtx, kind: EventKind) -> Option<ApiMode> {
        match self.settings.api_mode {
            ApiModeSetting::Modern => return Some(ApiMode::Modern),
            ApiModeSetting::Legacy => return Some(ApiMode::Legacy),
            ApiModeSetting::Auto => {}
        }
        if let Some(c) = Self::cursor_of(ctx, kind) {
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

    fn to_record(&self, kind: EventKind, raw: Value, summary: &mut RunSummary) -> SinkRecord {
        let built = build_record(kind, raw, self.redactor(kind), self.max_data_bytes());
        if built.truncated {
            summary.truncated += 1;
            tracing::warn!(
                kind = kind.as_str(),
                "event too large for one record: written truncated with markers (see README)"
            );
        }
        SinkRecord {
            data: built.data,
            partition_key: random_partition_key(),
        }
    }

    async fn put(
        &self,
        ctx: &RunCtx,
        records: &[SinkRecord],
        summary: &mut RunSummary,
    ) -> Result<(), ProducerError> {
        if records.is_empty() {
            return Ok(());
        }
        let remaining = (ctx.deadline_ms - now_ms()).max(0) as u64;
        let reserve = (self.settings.deadline_reserve.as_millis() as u64) / 2;
        let policy = RetryPolicy {
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

    async fn pull_modern(
        &self,
        kind: EventKind,
        ctx: &mut RunCtx,
        summary: &mut RunSummary,
        may_detect: bool,
    ) -> Result<Flow, ProducerError> {
        let settle = self.settings.settle_window.as_millis() as i64;
        let date_to = now_ms() - self.settings.query_lag.as_millis() as i64;
        let existing = Self::cursor_of(ctx, kind).cloned();
        let (mut cursor, from) = match existing {
            Some(c) => {
                let from = c.time - settle;
                (c, Some(from))
            }
            None => match self.settings.start_from {
                StartFrom::Oldest => (
                    KindCursor {
                        mode: ApiMode::Modern,
                        time: 0,
                        seen: HashMap::new(),
                    },
                    None,
                ),
                StartFrom::Time(t) => (
                    KindCursor {
                        mode: ApiMode::Modern,
                        time: t,
                        seen: HashMap::new(),
                    },
                    Some(t),
                ),
                StartFrom::Latest if !may_detect => {
                    let c = KindCursor {
                        mode: ApiMode::Modern,
                        time: date_to,
                        seen: HashMap::new(),
                    };
                    self.save(ctx, Some((kind, &c))).await?;
                    summary.checkpoint_saves += 1;
                    Self::store_cursor(ctx, kind, c);
                    return Ok(Flow::Done { complete: true });
                }
                StartFrom::Latest => (
                    KindCursor {
                        mode: ApiMode::Modern,
                        time: date_to,
                        seen: HashMap::new(),
                    },
                    Some(date_to),
                ),
            },
        };
        let had_cursor = Self::cursor_of(ctx, kind).is_some();
        let mut may_detect = may_detect;
        let mut q_from = from;
        let mut max = self.settings.page_size;
        let mut complete = false;
        let mut checked_gap = !had_cursor;
        // Two-stage pipeline: the next page is fetched while the previous one is put and
        // checkpointed. The checkpoint still only moves past a page once all its records were
        // accepted, and a page is deduped only after the one before it was committed.
        let mut pending: Option<PendingPage> = None;
        loop {
            let fetch_next = !complete && self.time_left(ctx.deadline_ms);
            let q = PageQuery {
                date_from: q_from.map(DateParam::EpochMs),
                date_to: Some(DateParam::EpochMs(date_to)),
                first: 0,
                max,
                ascending: Some(true),
            };
            let to_commit = pending.take();
            let commit = async {
                match to_commit {
                    Some(page) => {
                        self.commit_modern(ctx, kind, &mut cursor, page, date_to, summary)
                            .await
                    }
                    None => Ok(()),
                }
            };
            let fetch = async {
                if fetch_next {
                    Some(self.source.fetch_page(kind, &q).await)
                } else {
                    None
                }
            };
            let (committed, fetched) = tokio::join!(commit, fetch);
            committed?;
            let Some(fetched) = fetched else { break };
            let page = match fetched {
                Ok(p) => p,
                Err(SourceError::BadRequest(msg)) if may_detect => {
                    tracing::info!(kind = kind.as_str(), reason = %msg, "MPAS rejected epoch/direction query");
                    return Ok(Flow::SwitchToLegacy);
                }
                Err(e) => return Err(e.into()),
            };
            summary.pages += 1;
            let events = parse_page(kind, page)?;
            if events.iter().any(|e| e.id.is_none()) {
                if may_detect {
                    return Ok(Flow::SwitchToLegacy);
                }
                return Err(ProducerError::BadEvent(format!(
                    "{} without `id` from a server in modern mode (set MPAS_API_MODE=legacy for Keycloak < 26.2)",
                    kind.as_str()
                )));
            }
            may_detect = false;
            if !checked_gap {
                checked_gap = true;
                self.check_gap(kind, cursor.time, summary).await?;
            }
            let full = !events.is_empty() && events.len() as u64 >= u64::from(max);
            let last_t = events.last().map(|e| e.time);
            if full && events.first().map(|e| e.time) == last_t {
                // One millisecond fills the whole page: read it whole with a larger page.
                if max >= MAX_WIDENED_PAGE {
                    return Err(ProducerError::BadEvent(format!(
                        "more than {MAX_WIDENED_PAGE} events share one millisecond ({})",
                        iso(last_t.unwrap_or(0))
                    )));
                }
                max = max.saturating_mul(4).min(MAX_WIDENED_PAGE);
                continue;
            }
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
            pending = Some(PendingPage {
                records,
                new_keys,
                full,
                last_t,
            });
            if !full {
                complete = true;
            }
            q_from = last_t;
            max = self.settings.page_size;
        }
        Self::store_cursor(ctx, kind, cursor);
        Ok(Flow::Done { complete })
    }

    /// Puts one modern page and, once every record was accepted, moves and saves the cursor.
    async fn commit_modern(
        &self,
        ctx: &mut RunCtx,
        kind: EventKind,
        cursor: &mut KindCursor,
        page: PendingPage,
        date_to: i64,
        summary: &mut RunSummary,
    ) -> Result<(), ProducerError> {
        let settle = self.settings.settle_window.as_millis() as i64;
        self.put(ctx, &page.records, summary).await?;
        cursor.seen.extend(page.new_keys);
        cursor.mode = ApiMode::Modern;
        cursor.time = cursor.time.max(match (page.full, page.last_t) {
            (true, Some(t)) => t,
            _ => date_to,
        });
        cursor.prune(cursor.time - settle);
        self.save(ctx, Some((kind, cursor))).await?;
        summary.checkpoint_saves += 1;
        Ok(())
    }

    async fn pull_legacy(
        &self,
        kind: EventKind,
        ctx: &mut RunCtx,
        summary: &mut RunSummary,
    ) -> Result<bool, ProducerError> {
        let settle = self.settings.settle_window.as_millis() as i64;
        let date_to = now_ms() - self.settings.query_lag.as_millis() as i64;
        let existing = Self::cursor_of(ctx, kind).cloned();
        // Collection gap on a legacy server (no "oldest kept event" query): the events the last
        // run saw inside the settle window lie inside this run's window, so a complete pass
        // that meets none of them means the server no longer keeps them: it expired (or
        // cleared) events up to at least the cursor, and any it made after the last run and
        // expired since were never read.
        let prior_seen: HashSet<String> = match &existing {
            Some(c) if c.mode == ApiMode::Legacy => c.seen.keys().cloned().collect(),
            _ => HashSet::new(),
        };
        let mut met_prior = false;
        let (mut cursor, from) = match existing {
            Some(c) if c.mode == ApiMode::Legacy => {
                let from = c.time - settle;
                (c, Some(from))
            }
            Some(c) => {
                // A modern cursor on a server that now answers like a legacy one: keep the
                // time, the ids cannot dedupe hashes.
                let from = c.time - settle;
                (
                    KindCursor {
                        mode: ApiMode::Legacy,
                        time: c.time,
                        seen: HashMap::new(),
                    },
                    Some(from),
                )
            }
            None => {
                let (time, from) = match self.settings.start_from {
                    StartFrom::Oldest => (0, None),
                    StartFrom::Time(t) => (t, Some(t)),
                    StartFrom::Latest => (date_to, Some(date_to)),
                };
                (
                    KindCursor {
                        mode: ApiMode::Legacy,
                        time,
                        seen: HashMap::new(),
                    },
                    from,
                )
            }
        };
        if matches!(self.settings.start_from, StartFrom::Latest)
            && Self::cursor_of(ctx, kind).is_none()
        {
            self.save(ctx, Some((kind, &cursor))).await?;
            summary.checkpoint_saves += 1;
            Self::store_cursor(ctx, kind, cursor);
            return Ok(true);
        }
        let day_from = from.map(|f| DateParam::Day(day_of(f)));
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
                return Err(ProducerError::BadEvent(
                    "legacy mode expects events newest first, the server sent them in another order"
                        .into(),
                ));
            }
            let Some(last) = events.last() else {
                complete = true;
                break;
            };
            let last_t = last.time;
            let full = events.len() as u64 >= u64::from(max);
            // Index of the first row of the page's oldest millisecond (the tail tie group).
            let tail = events.iter().position(|e| e.time == last_t).unwrap_or(0);
            if full && tail == 0 {
                if max >= MAX_WIDENED_PAGE {
                    return Err(ProducerError::BadEvent(format!(
                        "more than {MAX_WIDENED_PAGE} events share one millisecond ({})",
                        iso(last_t)
                    )));
                }
                max = max.saturating_mul(4).min(MAX_WIDENED_PAGE);
                continue;
            }
            let mut records = Vec::new();
            let mut new_keys: Vec<(String, i64)> = Vec::new();
            let mut occurrences: HashMap<String, u32> = HashMap::new();
            for ev in events {
                summary.pulled += 1;
                if ev.time > date_to || from.is_some_and(|f| ev.time < f) {
                    continue;
                }
                let hash = content_hash(&ev.raw);
                // Identical events (same content, same millisecond) are told apart by their
                // count within the page: a tie group is always read whole within one page.
                let n = occurrences.entry(hash.clone()).or_insert(0);
                let key = if *n == 0 { hash } else { format!("{hash}-{n}") };
                *n += 1;
                if cursor.seen.contains_key(&key) {
                    met_prior |= prior_seen.contains(&key);
                    summary.duplicates_skipped += 1;
                    continue;
                }
                new_keys.push((key, ev.time));
                records.push(self.to_record(kind, ev.raw, summary));
            }
            if !records.is_empty() {
                self.put(ctx, &records, summary).await?;
                cursor.seen.extend(new_keys);
                cursor.mode = ApiMode::Legacy;
                self.save(ctx, Some((kind, &cursor))).await?;
                summary.checkpoint_saves += 1;
            }
            if !full || from.is_some_and(|f| last_t < f) {
                complete = true;
                break;
            }
            first = first.saturating_add(tail as u32);
            max = self.settings.page_size;
        }
        if complete && !prior_seen.is_empty() && !met_prior {
            summary.collection_gap = true;
            tracing::error!(
                kind = kind.as_str(),
                cursor = %iso(cursor.time),
                "COLLECTION GAP: the events the last run saw before the cursor are no longer on the (pre-26.2) server; events made after that run may have expired unread"
            );
        }
        if complete {
            cursor.mode = ApiMode::Legacy;
            cursor.time = cursor.time.max(date_to);
            cursor.prune(cursor.time - settle);
            self.save(ctx, Some((kind, &cursor))).await?;
            summary.checkpoint_saves += 1;
        }
        Self::store_cursor(ctx, kind, cursor);
        Ok(complete)
    }
}
