//! The resume state (`--state FILE`): which units (archive or dead-letter objects, stream
//! shards) and which records in them are done, so that running the same replay again skips
//! them.
//!
//! A record is done when the emitter took it or was not meant to have it (filtered out).
//! Records refused or not delivered stay to do. An object whose records are all done is kept as
//! one `complete` entry; a stream shard keeps `through`, the sequence number up to which every
//! record is done, and the done ones after it. The file is JSON, rewritten (to a temporary file
//! then renamed) after every batch, and names the replay it belongs to (emitter, source and
//! range): another replay refuses it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ReplayError;

/// The version of the file's format.
const VERSION: u32 = 1;

/// Where one unit stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitState {
    /// Every record of the unit is done.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub complete: bool,
    /// Streams: every record up to this sequence number is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub through: Option<String>,
    /// Records done (line numbers of objects, sequence numbers of streams).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub done: BTreeSet<String>,
}

/// The file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The format version.
    pub version: u32,
    /// The replay it belongs to.
    pub replay: String,
    /// Per unit (`s3://bucket/key`, `kinesis://stream/shard`).
    pub units: BTreeMap<String, UnitState>,
}

/// The state of one replay, kept in a file (or nowhere without `--state`).
#[derive(Debug)]
pub struct StateFile {
    path: Option<PathBuf>,
    state: State,
}

impl StateFile {
    /// The state at `path` (empty when the file does not exist yet) for the replay described by
    /// `replay`; `None`: keep nothing.
    pub fn open(path: Option<&Path>, replay: &str) -> Result<Self, ReplayError> {
        let fresh = State {
            version: VERSION,
            replay: replay.to_string(),
            units: BTreeMap::new(),
        };
        let Some(path) = path else {
            return Ok(Self {
                path: None,
                state: fresh,
            });
        };
        let read_err = |detail: String| ReplayError::StateRead {
            path: path.display().to_string(),
            detail,
        };
        let state = match std::fs::read(path) {
            Ok(bytes) => {
                let s: State =
                    serde_json::from_slice(&bytes).map_err(|e| read_err(e.to_string()))?;
                if s.version != VERSION {
                    return Err(read_err(format!("unknown version {}", s.version)));
                }
                if s.replay != replay {
                    return Err(ReplayError::StateMismatch {
                        path: path.display().to_string(),
                        found: s.replay,
                        wanted: replay.to_string(),
                    });
                }
                s
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => fresh,
            Err(e) => return Err(read_err(e.to_string())),
        };
        Ok(Self {
            path: Some(path.to_path_buf()),
            state,
        })
    }

    /// The state as kept.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Whether every record of `unit` is done.
    pub fn is_complete(&self, unit: &str) -> bool {
        self.state.units.get(unit).is_some_and(|u| u.complete)
    }

    /// Whether record `item` of `unit` is done.
    pub fn is_done(&self, unit: &str, item: &str) -> bool {
        self.state.units.get(unit).is_some_and(|u| {
            u.complete
                || u.done.contains(item)
                || u.through.as_deref().is_some_and(|t| {
                    authtrail_core::seqnum::compare(item, t) != std::cmp::Ordering::Greater
                })
        })
    }

    /// Streams: the sequence number up to which every record of `unit` is done.
    pub fn through(&self, unit: &str) -> Option<&str> {
        self.state
            .units
            .get(unit)
            .and_then(|u| u.through.as_deref())
    }

    /// Marks records of `unit` done.
    pub fn mark<'a>(&mut self, unit: &str, items: impl IntoIterator<Item = &'a str>) {
        let u = self.state.units.entry(unit.to_string()).or_default();
        u.done.extend(items.into_iter().map(str::to_string));
    }

    /// Marks every record of `unit` done.
    pub fn complete(&mut self, unit: &str) {
        self.state.units.insert(
            unit.to_string(),
            UnitState {
                complete: true,
                ..UnitState::default()
            },
        );
    }

    /// Streams: every record of `unit` up to `seq` is done (the done ones up to it are then
    /// forgotten).
    pub fn advance(&mut self, unit: &str, seq: &str) {
        let u = self.state.units.entry(unit.to_string()).or_default();
        u.done
            .retain(|d| authtrail_core::seqnum::compare(d, seq) == std::cmp::Ordering::Greater);
        u.through = Some(seq.to_string());
    }

    /// Writes the state (to a temporary file next to it, then renamed over it); nothing
    /// without a path.
    pub fn save(&self) -> Result<(), ReplayError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let write_err = |e: std::io::Error| ReplayError::StateWrite {
            path: path.display().to_string(),
            detail: e.to_string(),
        };
        let mut body =
            serde_json::to_vec_pretty(&self.state).map_err(|e| ReplayError::StateWrite {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?;
        body.push(b'\n');
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        std::fs::write(&tmp, body).map_err(write_err)?;
        std::fs::rename(&tmp, path).map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("replay-state-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("state.json");
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn a_saved_state_skips_the_same_objects_and_records_when_opened_again() {
        let p = temp("resume");
        let mut s = StateFile::open(Some(&p), "replay A").unwrap();
        s.complete("s3://b/raw/1");
        s.mark("s3://b/raw/2", ["0", "2"]);
        s.save().unwrap();
        let s = StateFile::open(Some(&p), "replay A").unwrap();
        assert!(s.is_complete("s3://b/raw/1"));
        assert!(s.is_done("s3://b/raw/1", "7"));
        assert!(!s.is_complete("s3://b/raw/2"));
        assert!(s.is_done("s3://b/raw/2", "2"));
        assert!(!s.is_done("s3://b/raw/2", "1"));
        assert!(!s.is_done("s3://b/raw/3", "0"));
    }

    #[test]
    fn a_missing_state_file_is_an_empty_state_and_no_path_keeps_nothing() {
        let p = temp("missing");
        let s = StateFile::open(Some(&p), "replay A").unwrap();
        assert!(s.state().units.is_empty());
        let mut none = StateFile::open(None, "replay A").unwrap();
        none.complete("u");
        none.save().unwrap();
        assert!(!p.exists());
    }

    #[test]
    fn a_state_file_of_another_replay_is_refused() {
        let p = temp("mismatch");
        StateFile::open(Some(&p), "replay A")
            .unwrap()
            .save()
            .unwrap();
        let e = StateFile::open(Some(&p), "replay B").unwrap_err();
        assert!(matches!(e, ReplayError::StateMismatch { .. }), "{e}");
        assert_eq!(e.exit_status(), crate::cli::EXIT_USAGE);
    }

    #[test]
    fn an_unreadable_state_file_is_a_usage_error() {
        let p = temp("garbage");
        std::fs::write(&p, "not json").unwrap();
        let e = StateFile::open(Some(&p), "replay A").unwrap_err();
        assert!(matches!(e, ReplayError::StateRead { .. }), "{e}");
    }

    #[test]
    fn stream_progress_counts_every_sequence_number_up_to_through_as_done() {
        let mut s = StateFile::open(None, "r").unwrap();
        let u = "kinesis://s/shard-0";
        s.mark(u, ["100", "300"]);
        s.advance(u, "200");
        assert_eq!(s.through(u), Some("200"));
        assert!(s.is_done(u, "99") && s.is_done(u, "200") && s.is_done(u, "300"));
        assert!(!s.is_done(u, "201"));
        assert_eq!(
            s.state().units[u].done.len(),
            1,
            "forgets what through covers"
        );
        // Compared as big integers, not as text.
        assert!(!s.is_done(u, "1000"));
    }
}
