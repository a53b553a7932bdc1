//! Shared server state: clock, store, generator, tokens, fault rates and counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::config::{FaultRates, SimConfig};
use crate::error::SimError;
use crate::generator::{GenerateReport, GenerateSpec, Generator};
use crate::rng::{splitmix64, unit_f64};
use crate::store::Store;

/// Event times the generator accepts: 1970-01-01 up to 2100-01-01 (epoch ms).
const TIME_RANGE: std::ops::RangeInclusive<i64> = 0..=4_102_444_800_000;

/// Wall-clock epoch milliseconds.
pub(crate) fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The server clock: wall clock plus an offset, or frozen at a value. All "now"s of the
/// simulator (event times, commit visibility, token expiry, retention) come from it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    offset_ms: i64,
    frozen: Option<i64>,
}

impl Clock {
    pub(crate) fn now(&self) -> i64 {
        self.frozen
            .unwrap_or_else(|| wall_ms().saturating_add(self.offset_ms))
    }

    pub(crate) fn advance(&mut self, ms: i64) {
        match &mut self.frozen {
            Some(t) => *t = t.saturating_add(ms),
            None => self.offset_ms = self.offset_ms.saturating_add(ms),
        }
    }

    pub(crate) fn freeze(&mut self) {
        if self.frozen.is_none() {
            self.frozen = Some(self.now());
        }
    }

    pub(crate) fn unfreeze(&mut self) {
        if let Some(t) = self.frozen.take() {
            self.offset_ms = t - wall_ms();
        }
    }

    pub(crate) fn is_frozen(&self) -> bool {
        self.frozen.is_some()
    }
}

pub(crate) struct IssuedToken {
    pub(crate) expires_at: i64,
    pub(crate) refresh: bool,
}

pub(crate) struct LiveState {
    pub(crate) start_ms: i64,
    pub(crate) generated: u64,
    pub(crate) last_ms: i64,
}

/// Everything behind the one lock.
pub(crate) struct Inner {
    pub(crate) clock: Clock,
    pub(crate) store: Store,
    pub(crate) generator: Generator,
    pub(crate) tokens: HashMap<String, IssuedToken>,
    pub(crate) faults: FaultRates,
    pub(crate) retention_ms: Option<i64>,
    pub(crate) live: Option<LiveState>,
    pub(crate) generated: u64,
}

impl Inner {
    /// Reads the clock, publishes due commits and applies retention; returns now.
    pub(crate) fn sync(&mut self) -> i64 {
        let now = self.clock.now();
        self.store.advance(now);
        if let Some(r) = self.retention_ms {
            self.store.expire_before(now.saturating_sub(r));
        }
        now
    }

    /// Generates and stores events as `spec` says (see [`GenerateSpec`] for the defaults).
    pub(crate) fn generate(
        &mut self,
        spec: &GenerateSpec,
        rate: f64,
    ) -> Result<GenerateReport, SimError> {
        const MAX_COUNT: u64 = 5_000_000;
        if spec.count > MAX_COUNT {
            return Err(SimError::config(
                "count",
                format!("expected at most {MAX_COUNT} events per call"),
            ));
        }
        let shape = self.generator.shape(spec)?;
        let now = self.sync();
        let to = spec.to_ms.unwrap_or(now);
        let from = spec.from_ms.unwrap_or_else(|| {
            let span = (spec.count as f64 * 1000.0 / rate) as i64;
            let after_last = self.generator.last_time.map_or(i64::MIN, |t| t + 1);
            (to - span).max(after_last).min(to)
        });
        if from > to {
            return Err(SimError::config("fromMs", "expected fromMs <= toMs"));
        }
        if !(TIME_RANGE.contains(&from) && TIME_RANGE.contains(&to)) {
            return Err(SimError::config(
                "fromMs/toMs",
                "expected epoch milliseconds between 1970 and 2100",
            ));
        }
        let records = self.generator.generate(spec.count, from, to, shape)?;
        let first_seq = records.first().map_or(0, |r| r.seq);
        let admin_events = records
            .iter()
            .filter(|r| r.kind == crate::model::EventKind::Admin)
            .count() as u64;
        let generated = records.len() as u64;
        let pending = self.store.insert(records, now);
        self.generated += generated;
        Ok(GenerateReport {
            generated,
            user_events: generated - admin_events,
            admin_events,
            pending,
            from_ms: from,
            to_ms: to,
            first_seq,
        })
    }

    /// Live traffic: generates the events due at `rate` since the live clock started.
    pub(crate) fn live_tick(&mut self, rate: f64) -> Result<u64, SimError> {
        const MAX_PER_TICK: u64 = 100_000;
        let now = self.clock.now();
        let Some(live) = self.live.as_mut() else {
            return Ok(0);
        };
        let due = ((now - live.start_ms).max(0) as f64 * rate / 1000.0) as u64;
        if due <= live.generated || now <= live.last_ms {
            return Ok(0);
        }
        let mut n = due - live.generated;
        if n > MAX_PER_TICK {
            live.generated = due - MAX_PER_TICK;
            n = MAX_PER_TICK;
        }
        let from = live.last_ms + 1;
        live.generated += n;
        live.last_ms = now;
        let shape = self.generator.shape(&GenerateSpec::default())?;
        let records = self.generator.generate(n, from, now, shape)?;
        self.store.insert(records, now);
        self.generated += n;
        Ok(n)
    }
}

/// Counters of requests, results and injected faults.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) token_requests: AtomicU64,
    pub(crate) event_requests: AtomicU64,
    pub(crate) admin_event_requests: AtomicU64,
    pub(crate) control_requests: AtomicU64,
    pub(crate) tokens_issued: AtomicU64,
    pub(crate) token_rejected: AtomicU64,
    pub(crate) unauthorized: AtomicU64,
    pub(crate) bad_requests: AtomicU64,
    pub(crate) not_found: AtomicU64,
    pub(crate) user_events_served: AtomicU64,
    pub(crate) admin_events_served: AtomicU64,
    pub(crate) fault_500: AtomicU64,
    pub(crate) fault_429: AtomicU64,
    pub(crate) fault_slow: AtomicU64,
    pub(crate) fault_truncate: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Faults injected so far, per kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultStats {
    /// 500 answers.
    pub error_500: u64,
    /// 429 answers.
    pub too_many_429: u64,
    /// Slow answers.
    pub slow: u64,
    /// Truncated bodies.
    pub truncate: u64,
}

/// Snapshot of the simulator's counters (`GET /sim/stats`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Requests to the token endpoint.
    pub token_requests: u64,
    /// Requests to `.../events`.
    pub event_requests: u64,
    /// Requests to `.../admin-events`.
    pub admin_event_requests: u64,
    /// Requests to `/sim/...`.
    pub control_requests: u64,
    /// Access tokens issued.
    pub tokens_issued: u64,
    /// Token requests refused (bad client, credentials or grant).
    pub token_rejected: u64,
    /// Admin requests refused with 401.
    pub unauthorized: u64,
    /// Admin requests refused with 400.
    pub bad_requests: u64,
    /// Admin requests refused with 404 (unknown realm).
    pub not_found: u64,
    /// User events returned in successful (possibly truncated) pages.
    pub user_events_served: u64,
    /// Admin events returned.
    pub admin_events_served: u64,
    /// Faults injected.
    pub faults: FaultStats,
    /// Events generated so far (visible or not).
    pub generated: u64,
    /// User events currently visible.
    pub visible_user_events: u64,
    /// Admin events currently visible.
    pub visible_admin_events: u64,
    /// Events generated but not committed yet.
    pub pending: u64,
    /// Ledger length (events ever made visible).
    pub ledger: u64,
    /// Visible events deleted by retention or expiry.
    pub expired: u64,
    /// Events deleted before they became visible.
    pub dropped: u64,
    /// `time` of the oldest event still kept.
    pub oldest_time: Option<i64>,
    /// The server clock.
    pub now_ms: i64,
    /// Whether the clock is frozen.
    pub clock_frozen: bool,
}

/// Which fault a request draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    None,
    Error500,
    TooMany429,
    Slow,
    Truncate,
}

/// State shared by all handlers and by the in-process handle.
pub(crate) struct Shared {
    pub(crate) config: SimConfig,
    pub(crate) realm_id: String,
    inner: Mutex<Inner>,
    pub(crate) counters: Counters,
    fault_draws: AtomicU64,
}

impl Shared {
    pub(crate) fn new(config: SimConfig) -> Result<Self, SimError> {
        config.validate()?;
        let generator = Generator::new(
            config.seed,
            &config.realm,
            config.realm_id.as_deref(),
            config.legacy,
            config.traffic.clone(),
        );
        let realm_id = generator.realm_id().to_owned();
        let clock = Clock {
            offset_ms: 0,
            frozen: config.frozen_clock_ms,
        };
        let retention_ms = config
            .retention_secs
            .map(|s| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX));
        let mut inner = Inner {
            clock,
            store: Store::new(),
            generator,
            tokens: HashMap::new(),
            faults: config.faults.clone(),
            retention_ms,
            live: None,
            generated: 0,
        };
        if config.history > 0 {
            let end = config.history_end_ms.unwrap_or_else(|| clock.now());
            let span = (config.history as f64 * 1000.0 / config.rate) as i64;
            inner.generate(
                &GenerateSpec {
                    count: config.history,
                    from_ms: Some(end - span),
                    to_ms: Some(end),
                    ..GenerateSpec::default()
                },
                config.rate,
            )?;
        }
        if config.live {
            let now = inner.clock.now();
            inner.live = Some(LiveState {
                start_ms: now,
                generated: 0,
                last_ms: inner.generator.last_time.unwrap_or(now).max(now - 1),
            });
        }
        Ok(Self {
            config,
            realm_id,
            inner: Mutex::new(inner),
            counters: Counters::default(),
            fault_draws: AtomicU64::new(0),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Draws the fault for one request: deterministic in the order of requests for a seed.
    pub(crate) fn draw_fault(&self, token_endpoint: bool) -> (Fault, FaultRates) {
        let rates = self.lock().faults.clone();
        if token_endpoint && !rates.on_token {
            return (Fault::None, rates);
        }
        let n = self.fault_draws.fetch_add(1, Ordering::Relaxed);
        let mut state = self.config.seed ^ 0xFA17_FA17_0000_0000 ^ n.wrapping_mul(0x2545_F491);
        let u = unit_f64(splitmix64(&mut state));
        let truncate = if token_endpoint { 0.0 } else { rates.truncate };
        let mut acc = 0.0;
        let mut fault = Fault::None;
        for (rate, kind) in [
            (rates.error_500, Fault::Error500),
            (rates.too_many_429, Fault::TooMany429),
            (rates.slow, Fault::Slow),
            (truncate, Fault::Truncate),
        ] {
            acc += rate;
            if u < acc {
                fault = kind;
                break;
            }
        }
        let c = &self.counters;
        match fault {
            Fault::Error500 => bump(&c.fault_500),
            Fault::TooMany429 => bump(&c.fault_429),
            Fault::Slow => bump(&c.fault_slow),
            Fault::Truncate => bump(&c.fault_truncate),
            Fault::None => {}
        }
        (fault, rates)
    }

    pub(crate) fn stats(&self) -> Stats {
        let (counts, generated, now, frozen) = {
            let mut inner = self.lock();
            let now = inner.sync();
            (
                inner.store.counts(),
                inner.generated,
                now,
                inner.clock.is_frozen(),
            )
        };
        let c = &self.counters;
        Stats {
            token_requests: get(&c.token_requests),
            event_requests: get(&c.event_requests),
            admin_event_requests: get(&c.admin_event_requests),
            control_requests: get(&c.control_requests),
            tokens_issued: get(&c.tokens_issued),
            token_rejected: get(&c.token_rejected),
            unauthorized: get(&c.unauthorized),
            bad_requests: get(&c.bad_requests),
            not_found: get(&c.not_found),
            user_events_served: get(&c.user_events_served),
            admin_events_served: get(&c.admin_events_served),
            faults: FaultStats {
                error_500: get(&c.fault_500),
                too_many_429: get(&c.fault_429),
                slow: get(&c.fault_slow),
                truncate: get(&c.fault_truncate),
            },
            generated,
            visible_user_events: counts.visible_user as u64,
            visible_admin_events: counts.visible_admin as u64,
            pending: counts.pending as u64,
            ledger: counts.ledger as u64,
            expired: counts.expired,
            dropped: counts.dropped,
            oldest_time: counts.oldest_time,
            now_ms: now,
            clock_frozen: frozen,
        }
    }
}
