//! Deterministic traffic: a realistic mix of Keycloak user and admin events.
//!
//! Everything drawn here comes from one [`SimRng`] seeded from the configured seed, so the same
//! seed and the same sequence of generation calls produce the same events, byte for byte.
//!
//! This module holds the generation calls and the timing (spacing, ties, late commits);
//! `pool` the actors, `user` and `admin` the two kinds of events.

mod admin;
mod pool;
mod user;

use serde::{Deserialize, Serialize};

use crate::config::TrafficConfig;
use crate::error::SimError;
use crate::model::Record;
use crate::rng::SimRng;
use pool::Pool;

/// Parameters of one generation call (`POST /sim/generate`, [`crate::SimHandle::generate`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct GenerateSpec {
    /// Number of events to generate.
    pub count: u64,
    /// Earliest event time (epoch ms). Default: `to_ms - count / rate`, but never before the
    /// latest time generated so far (so new events do not land behind visible ones).
    pub from_ms: Option<i64>,
    /// Latest event time (epoch ms). Default: the server clock's now.
    pub to_ms: Option<i64>,
    /// Overrides of the configured hard cases for this call.
    pub tie_fraction: Option<f64>,
    /// Events per same-millisecond burst.
    pub tie_burst: Option<u32>,
    /// Fraction of success events committed late.
    pub late_fraction: Option<f64>,
    /// Maximum commit delay of a late event (ms).
    pub late_max_ms: Option<u64>,
    /// Fraction of admin events.
    pub admin_fraction: Option<f64>,
}

/// What a generation call produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateReport {
    /// Events generated.
    pub generated: u64,
    /// Of which user events.
    pub user_events: u64,
    /// Of which admin events.
    pub admin_events: u64,
    /// Events whose commit lies after the current clock (not visible yet).
    pub pending: u64,
    /// First and last event time used.
    pub from_ms: i64,
    /// Last event time used.
    pub to_ms: i64,
    /// Sequence number of the first generated event.
    pub first_seq: u64,
}

/// The traffic generator: a seeded random source, a fixed pool of actors, the realm's ids.
pub(crate) struct Generator {
    rng: SimRng,
    pool: Pool,
    realm: String,
    realm_id: String,
    legacy: bool,
    traffic: TrafficConfig,
    next_seq: u64,
    /// Latest event time generated so far.
    pub(crate) last_time: Option<i64>,
}

/// Hard-case parameters resolved for one call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub(crate) tie_fraction: f64,
    pub(crate) tie_burst: u32,
    pub(crate) late_fraction: f64,
    pub(crate) late_max_ms: u64,
    pub(crate) admin_fraction: f64,
}

impl Generator {
    pub(crate) fn new(
        seed: u64,
        realm: &str,
        realm_id: Option<&str>,
        legacy: bool,
        traffic: TrafficConfig,
    ) -> Self {
        let mut rng = SimRng::new(seed);
        let realm_id = realm_id.map_or_else(|| rng.uuid(), str::to_owned);
        let pool = Pool::build(&mut rng, realm, traffic.users);
        Self {
            rng,
            pool,
            realm: realm.to_owned(),
            realm_id,
            legacy,
            traffic,
            next_seq: 0,
            last_time: None,
        }
    }

    pub(crate) fn realm_id(&self) -> &str {
        &self.realm_id
    }

    /// The configured shape with a call's overrides applied (validated).
    pub(crate) fn shape(&self, spec: &GenerateSpec) -> Result<Shape, SimError> {
        let t = TrafficConfig {
            tie_fraction: spec.tie_fraction.unwrap_or(self.traffic.tie_fraction),
            tie_burst: spec.tie_burst.unwrap_or(self.traffic.tie_burst),
            late_fraction: spec.late_fraction.unwrap_or(self.traffic.late_fraction),
            late_max_ms: spec.late_max_ms.unwrap_or(self.traffic.late_max_ms),
            admin_fraction: spec.admin_fraction.unwrap_or(self.traffic.admin_fraction),
            users: self.traffic.users,
        };
        t.validate()?;
        Ok(Shape {
            tie_fraction: t.tie_fraction,
            tie_burst: t.tie_burst,
            late_fraction: t.late_fraction,
            late_max_ms: t.late_max_ms,
            admin_fraction: t.admin_fraction,
        })
    }

    /// Generates `count` events with times in `[from, to]` (non-decreasing in generation
    /// order), bursts of ties and late commits as `shape` says.
    pub(crate) fn generate(
        &mut self,
        count: u64,
        from: i64,
        to: i64,
        shape: Shape,
    ) -> Result<Vec<Record>, SimError> {
        let (from, to) = if from <= to { (from, to) } else { (to, from) };
        let times = self.times(count, from, to, shape);
        let mut out = Vec::with_capacity(times.len());
        for time in times {
            let rec = if self.rng.chance(shape.admin_fraction) {
                self.admin_event(time, shape)?
            } else {
                self.user_event(time, shape)?
            };
            out.push(rec);
        }
        if let Some(last) = out.last() {
            self.last_time = Some(self.last_time.map_or(last.time, |t| t.max(last.time)));
        }
        Ok(out)
    }

    /// Event times: slots spread evenly (with jitter) over the range; a slot is a single event
    /// or, with the probability that makes `tie_fraction` of events tied, a burst.
    fn times(&mut self, count: u64, from: i64, to: i64, shape: Shape) -> Vec<i64> {
        let burst = u64::from(shape.tie_burst);
        let f = shape.tie_fraction;
        // P(slot is a burst) such that the expected share of events in bursts is f.
        let p_burst = if f >= 1.0 {
            1.0
        } else {
            f / (burst as f64 * (1.0 - f) + f)
        };
        let mut sizes = Vec::new();
        let mut left = count;
        while left > 0 {
            let size = if self.rng.chance(p_burst) {
                burst.min(left)
            } else {
                1
            };
            sizes.push(size);
            left -= size;
        }
        let slots = sizes.len() as u64;
        let span = to.saturating_sub(from).max(0) as f64 + 1.0;
        let mut times = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        for (k, size) in sizes.into_iter().enumerate() {
            let pos = (k as f64 + self.rng.f64()) / slots as f64;
            let t = from.saturating_add((pos * span) as i64).min(to);
            for _ in 0..size {
                times.push(t);
            }
        }
        times
    }

    fn next_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    fn commit_delay(&mut self, is_error: bool, shape: Shape) -> i64 {
        if !is_error && shape.late_fraction > 0.0 && self.rng.chance(shape.late_fraction) {
            1 + self.rng.below(shape.late_max_ms) as i64
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn shape() -> Shape {
        Shape {
            tie_fraction: 0.0,
            tie_burst: 20,
            late_fraction: 0.0,
            late_max_ms: 5000,
            admin_fraction: 0.2,
        }
    }

    #[test]
    fn same_seed_generates_identical_json_and_other_seed_differs() {
        let gen_all = |seed| {
            let mut g = Generator::new(seed, "demo", None, false, TrafficConfig::default());
            g.generate(500, 1_000_000, 1_100_000, shape())
                .unwrap()
                .into_iter()
                .map(|r| r.json.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(gen_all(5), gen_all(5));
        assert_ne!(gen_all(5), gen_all(6));
    }

    #[test]
    fn tie_fraction_puts_about_that_share_of_events_in_shared_milliseconds() {
        let mut g = Generator::new(1, "demo", None, false, TrafficConfig::default());
        let s = Shape {
            tie_fraction: 0.3,
            ..shape()
        };
        // A wide range, so singles almost never collide by chance.
        let recs = g.generate(20_000, 0, 1_000_000_000, s).unwrap();
        let mut counts = std::collections::HashMap::new();
        for r in &recs {
            *counts.entry(r.time).or_insert(0u32) += 1;
        }
        let tied: u32 = counts.values().filter(|c| **c > 1).sum();
        let share = f64::from(tied) / recs.len() as f64;
        assert!((0.2..0.4).contains(&share), "tied share {share}");
        assert!(recs.windows(2).all(|w| w[0].time <= w[1].time));
    }

    #[test]
    fn late_commits_only_success_events_within_the_maximum_delay() {
        let mut g = Generator::new(3, "demo", None, false, TrafficConfig::default());
        let s = Shape {
            late_fraction: 0.5,
            late_max_ms: 3000,
            ..shape()
        };
        let recs = g.generate(5000, 0, 10_000_000, s).unwrap();
        let late: Vec<_> = recs.iter().filter(|r| r.commit_at > r.time).collect();
        assert!(late.len() > 1500, "late count {}", late.len());
        assert!(late.iter().all(|r| !r.is_error));
        assert!(late.iter().all(|r| r.commit_at - r.time <= 3000));
        assert!(recs.iter().any(|r| r.is_error));
    }

    #[test]
    fn legacy_events_have_no_id_and_modern_events_do() {
        let mut modern = Generator::new(9, "demo", None, false, TrafficConfig::default());
        let mut legacy = Generator::new(9, "demo", None, true, TrafficConfig::default());
        for r in modern.generate(200, 0, 1000, shape()).unwrap() {
            let v: serde_json::Value = serde_json::from_str(&r.json).unwrap();
            assert_eq!(v["id"].as_str(), Some(r.id.as_str()));
        }
        for r in legacy.generate(200, 0, 1000, shape()).unwrap() {
            let v: serde_json::Value = serde_json::from_str(&r.json).unwrap();
            assert!(v.get("id").is_none());
        }
    }

    #[test]
    fn admin_events_carry_paths_auth_details_and_string_representations() {
        let mut g = Generator::new(11, "demo", None, false, TrafficConfig::default());
        let s = Shape {
            admin_fraction: 1.0,
            ..shape()
        };
        for r in g.generate(300, 0, 1000, s).unwrap() {
            let v: serde_json::Value = serde_json::from_str(&r.json).unwrap();
            assert!(v["authDetails"]["userId"].is_string());
            assert!(v["operationType"].is_string());
            if let Some(repr) = v.get("representation") {
                let inner: serde_json::Value =
                    serde_json::from_str(repr.as_str().unwrap()).unwrap();
                assert!(inner.is_object() || inner.is_array());
            }
        }
    }
}
