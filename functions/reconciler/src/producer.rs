//! The producers' side: the tally each producer keeps in its checkpoint object (core's
//! [`ProducerTally`]), read once per run. With several producers (one per realm) writing into
//! the stream, a window's figure is the sum of theirs, known only when every one of them is.

use authtrail_core::tally::Digest;
use authtrail_core::tally::line::{ProducerTally, TallyFigure};

use crate::config::S3Location;
use crate::store::ObjectStore;

/// What the producers' tallies say of a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProducerFigure {
    /// The events put in the window (summed over the producers), final.
    Known(Digest),
    /// Not known: the reason, in words (a producer behind, a tally missing or pruned).
    Unknown(String),
}

/// The tallies of the configured producers, as read at the start of a run.
#[derive(Debug, Default)]
pub struct ProducerTallies {
    /// Per checkpoint object: its tally, or why there is none.
    pub tallies: Vec<(S3Location, Result<ProducerTally, String>)>,
}

impl ProducerTallies {
    /// Reads every checkpoint object (one `GetObject` each). A missing object, a document
    /// without a tally or an unreadable one is recorded as the reason the figure is unknown.
    pub async fn read<S: ObjectStore>(store: &S, locations: &[S3Location]) -> Self {
        let mut tallies = Vec::with_capacity(locations.len());
        for loc in locations {
            let got = match store.get(&loc.bucket, &loc.key).await {
                Ok(Some(body)) => tally_of(&body).ok_or_else(|| {
                    format!("{loc} holds no reconciliation tally (a producer older than the tally, or not a checkpoint)")
                }),
                Ok(None) => Err(format!("{loc} does not exist")),
                Err(e) => Err(e.to_string()),
            };
            tallies.push((loc.clone(), got));
        }
        Self { tallies }
    }

    /// The figure of minutes `[from, to)`; `None` when no producer is configured.
    pub fn figure(&self, from: i64, to: i64) -> Option<ProducerFigure> {
        if self.tallies.is_empty() {
            return None;
        }
        let mut sum = Digest::default();
        for (loc, tally) in &self.tallies {
            let tally = match tally {
                Ok(t) => t,
                Err(reason) => return Some(ProducerFigure::Unknown(reason.clone())),
            };
            match tally.figure(from, to) {
                TallyFigure::Known(d) => sum += &d,
                TallyFigure::Pending => {
                    return Some(ProducerFigure::Unknown(format!(
                        "the producer of {loc} has not read past the window yet (final before minute {}): it is behind or failing",
                        tally.final_before
                    )));
                }
                TallyFigure::Unknown => {
                    return Some(ProducerFigure::Unknown(format!(
                        "the tally of {loc} does not cover the window (it begins at minute {})",
                        tally.since
                    )));
                }
            }
        }
        Some(ProducerFigure::Known(sum))
    }

    /// Events put in `[from, to)` when known.
    pub fn put(&self, from: i64, to: i64) -> Option<u64> {
        match self.figure(from, to) {
            Some(ProducerFigure::Known(d)) => Some(d.count),
            _ => None,
        }
    }
}

/// The `tally` member of a checkpoint document.
fn tally_of(body: &[u8]) -> Option<ProducerTally> {
    let doc: serde_json::Value = serde_json::from_slice(body).ok()?;
    serde_json::from_value(doc.get("tally")?.clone()).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::store::MemoryStore;

    fn checkpoint(tally: &ProducerTally) -> Vec<u8> {
        serde_json::json!({"version": 1, "user": {"mode": "modern", "time": 0}, "tally": tally})
            .to_string()
            .into_bytes()
    }

    fn loc(key: &str) -> S3Location {
        S3Location {
            bucket: "cp".into(),
            key: key.into(),
        }
    }

    #[tokio::test]
    async fn the_figures_of_several_producers_add_up_when_all_are_known() {
        let store = MemoryStore::default();
        let mut a = ProducerTally::starting_at(0);
        a.add(5, 1);
        a.final_before = 10;
        let mut b = ProducerTally::starting_at(0);
        b.add(5, 2);
        b.add(6, 4);
        b.final_before = 8;
        store.insert("cp", "a.json", checkpoint(&a), 0);
        store.insert("cp", "b.json", checkpoint(&b), 0);
        let t = ProducerTallies::read(&store, &[loc("a.json"), loc("b.json")]).await;
        assert_eq!(
            t.figure(5, 7),
            Some(ProducerFigure::Known(Digest { count: 3, sum: 7 }))
        );
        assert_eq!(t.put(5, 7), Some(3));
        let Some(ProducerFigure::Unknown(why)) = t.figure(5, 10) else {
            panic!("b is not final past minute 8");
        };
        assert!(why.contains("behind"), "{why}");
    }

    #[tokio::test]
    async fn a_missing_checkpoint_or_tally_makes_the_figure_unknown_never_zero() {
        let store = MemoryStore::default();
        store.insert("cp", "old.json", br#"{"version":1}"#.to_vec(), 0);
        for key in ["old.json", "none.json"] {
            let t = ProducerTallies::read(&store, &[loc(key)]).await;
            assert!(
                matches!(t.figure(0, 5), Some(ProducerFigure::Unknown(_))),
                "{key}"
            );
        }
        assert_eq!(ProducerTallies::default().figure(0, 5), None);
    }
}
