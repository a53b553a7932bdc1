//! The digest ledger: how every object the archiver writes ends up in exactly one signed
//! digest (README, "Digests").
//!
//! - Before an object is written, its key is recorded as an *intent* in the shard state; after
//!   the write, the invocation records the object (key, SHA-256, sequence numbers) as *pending*
//!   and drops the intent ([`Journal`]). An intent left behind (a crash, a lost response) is
//!   resolved later with a HEAD: the object is recorded if it exists, forgotten if not. So a
//!   digest lists every object written, and only objects written.
//! - A shard's pending objects of an hour are *closed* into a digest once the shard has moved
//!   past that hour: by the next Kinesis batch of a later hour, or by the scheduled close
//!   ([`crate::schedule`]) for shards that went quiet. Closing first records which digest
//!   it is writing (`closing`), then signs and writes it (`If-None-Match`), then makes it the
//!   shard's head, so concurrent or repeated closes write each digest once and never fork the
//!   chain.

use authtrail_core::s3key::utc_from_epoch_seconds;
use authtrail_core::seqnum;
use base64::Engine;
use bytes::Bytes;
use chrono::{SecondsFormat, Utc};

use crate::archive::{Archiver, META_COUNT, META_FIRST, META_LAST, Summary};
use crate::batch::ShardBatch;
use crate::digest::{
    self, DIGEST_VERSION, Digest, DigestLink, DigestObject, META_PREVIOUS_LAST, META_SIGNATURE,
    ObjectKind,
};
use crate::error::ArchiveError;
use crate::signer::DigestSigner;
use crate::state::{self, Closing, Intent, Ledger, Recorded, Versioned};
use crate::store::{Metadata, ObjectHead, ObjectStore, PutOutcome};

/// Most digests one close writes for a shard (the rest wait for the next close).
const MAX_DIGESTS_PER_CLOSE: usize = 200;

/// The ledger work of one Kinesis invocation for one shard: intents before writes, objects
/// recorded after them, and one final update of the shard state.
#[derive(Debug)]
pub(crate) struct Journal {
    state_key: String,
    stream: String,
    shard: String,
    intended: Vec<String>,
    recorded: Vec<Recorded>,
    /// The state version this invocation last read or wrote (saves a read per update).
    known: Option<Versioned>,
}

impl Journal {
    /// A journal for the shard whose state is under `state_key`, starting from `known`.
    pub(crate) fn new(
        state_key: String,
        stream: &str,
        shard: &str,
        known: Option<Versioned>,
    ) -> Self {
        Self {
            state_key,
            stream: stream.to_string(),
            shard: shard.to_string(),
            intended: Vec::new(),
            recorded: Vec::new(),
            known,
        }
    }

    /// Records that `key` is about to be written (one conditional state write), unless this
    /// invocation did already.
    pub(crate) async fn intend<S: ObjectStore, G>(
        &mut self,
        archiver: &Archiver<S, G>,
        key: &str,
        kind: ObjectKind,
        hour: i64,
    ) -> Result<(), ArchiveError> {
        if self.intended.iter().any(|k| k == key) {
            return Ok(());
        }
        let intent = Intent {
            key: key.to_string(),
            kind,
            hour,
            at: Utc::now().timestamp(),
        };
        let (stream, shard) = (&self.stream, &self.shard);
        let (written, ()) = state::update(
            &archiver.store,
            &archiver.config.bucket,
            &self.state_key,
            self.known.take(),
            |s| {
                let ledger = s.ledger_mut(stream, shard);
                if !ledger.intents.iter().any(|i| i.key == intent.key) {
                    ledger.intents.push(intent.clone());
                }
            },
        )
        .await?;
        self.known = Some(written);
        self.intended.push(key.to_string());
        Ok(())
    }

    /// Records an object this invocation wrote or found stored.
    pub(crate) fn record(&mut self, recorded: Recorded) {
        self.recorded.push(recorded);
    }

    /// Writes what this invocation did into the shard state: the recorded objects become
    /// pending and their intents go, the marks rise to `marks` (archive, errors).
    pub(crate) async fn finish<S: ObjectStore, G>(
        &mut self,
        archiver: &Archiver<S, G>,
        marks: [(ObjectKind, Option<&String>); 2],
    ) -> Result<(), ArchiveError> {
        let (stream, shard) = (&self.stream, &self.shard);
        let (recorded, known) = (&self.recorded, self.known.take());
        state::update(
            &archiver.store,
            &archiver.config.bucket,
            &self.state_key,
            known,
            |s| {
                for (kind, mark) in marks {
                    if let Some(m) = mark {
                        s.raise_mark(kind, m);
                    }
                }
                if recorded.is_empty() {
                    return;
                }
                let ledger = s.ledger_mut(stream, shard);
                // The intent of a write that failed stays: the object may exist all the same
                // (a lost response), and the next invocation looks.
                ledger
                    .intents
                    .retain(|i| !recorded.iter().any(|r| r.object.key == i.key));
                for r in recorded {
                    if !ledger.holds(&r.object.key) {
                        ledger.pending.push(r.clone());
                    }
                }
            },
        )
        .await?;
        Ok(())
    }
}

fn seq_metadata(head: &ObjectHead, name: &str) -> Option<String> {
    head.metadata
        .get(name)
        .filter(|v| seqnum::is_valid(v))
        .cloned()
}

impl<S: ObjectStore, G: DigestSigner> Archiver<S, G> {
    /// What a digest records about the stored object `key`, from its HEAD (its metadata and
    /// the SHA-256 S3 keeps; the object is read and hashed when it has no such checksum).
    pub(crate) async fn recorded_from_head(
        &self,
        key: &str,
        kind: ObjectKind,
        hour: i64,
        head: ObjectHead,
    ) -> Result<Recorded, ArchiveError> {
        let foreign = |problem: String| ArchiveError::ForeignObject {
            bucket: self.config.bucket.clone(),
            key: key.to_string(),
            problem,
        };
        let first = seq_metadata(&head, META_FIRST)
            .ok_or_else(|| foreign(format!("has no valid {META_FIRST} metadata")))?;
        let last = seq_metadata(&head, META_LAST)
            .ok_or_else(|| foreign(format!("has no valid {META_LAST} metadata")))?;
        let record_count = head
            .metadata
            .get(META_COUNT)
            .and_then(|c| c.parse::<u64>().ok())
            .ok_or_else(|| foreign(format!("has no valid {META_COUNT} metadata")))?;
        let sha256 = match head
            .sha256
            .as_deref()
            .and_then(digest::hex_from_s3_checksum)
        {
            Some(h) => h,
            None => {
                let body = self
                    .store
                    .get(key)
                    .await?
                    .ok_or_else(|| foreign("vanished while being read".into()))?;
                digest::sha256_hex(&body)
            }
        };
        Ok(Recorded {
            hour,
            object: DigestObject {
                key: key.to_string(),
                kind,
                sha256,
                size: head.size,
                record_count,
                first_sequence_number: first,
                last_sequence_number: last,
                previous_last_sequence_number: seq_metadata(&head, META_PREVIOUS_LAST),
            },
        })
    }

    /// The shard state to start from. With digests on, intents left behind are resolved first
    /// and the hours before this batch's are closed into digests (a failure there is logged
    /// and counted, never blocks the batch: the objects stay pending).
    /// Without digests, the state is read without its version (as before digests existed).
    pub(crate) async fn begin_shard(
        &self,
        state_key: &str,
        batch: &ShardBatch<'_>,
        summary: &mut Summary,
    ) -> Result<Versioned, ArchiveError> {
        if self.config.digests.is_none() {
            let state = self.load_state(state_key).await?;
            return Ok(Versioned { state, etag: None });
        }
        let loaded = state::load(&self.store, state_key).await?;
        let current = self.resolve_intents(state_key, loaded, None).await?;
        let arrivals = batch.goods.iter().map(|g| g.arrival);
        let Some(earliest) = arrivals.chain(batch.poison.iter().map(|p| p.arrival)).min() else {
            return Ok(current);
        };
        let before = digest::hour_of(earliest);
        let due = current.state.ledger.as_ref().is_some_and(|l| {
            l.closing.is_some()
                || l.pending.iter().any(|r| r.hour < before)
                || next_heartbeat(l, before).is_some()
        });
        if !due {
            return Ok(current);
        }
        // Closing changes no mark: the version it leaves only saves the journal a read.
        let marks = current.state.clone();
        match self
            .close_hours(state_key, before, Some(current), false)
            .await
        {
            Ok((n, latest)) => {
                summary.digests += n;
                Ok(latest.unwrap_or(Versioned {
                    state: marks,
                    etag: None,
                }))
            }
            Err(e) => {
                tracing::warn!(error = %e, stream = %batch.stream, shard = %batch.shard,
                    "writing digests failed: their objects stay pending");
                summary.digest_failures += 1;
                // Unknown version: the journal's first update reads the state again.
                Ok(Versioned {
                    state: marks,
                    etag: None,
                })
            }
        }
    }

    /// Resolves the intents of `state` (only those recorded before `stale_before`, when given):
    /// an object that exists is recorded as pending and raises its mark; a missing one is
    /// forgotten. Returns the state as it is afterwards.
    pub(crate) async fn resolve_intents(
        &self,
        state_key: &str,
        current: Versioned,
        stale_before: Option<i64>,
    ) -> Result<Versioned, ArchiveError> {
        let intents: Vec<Intent> = current
            .state
            .ledger
            .as_ref()
            .map(|l| l.intents.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|i| stale_before.is_none_or(|t| i.at < t))
            .collect();
        if intents.is_empty() {
            return Ok(current);
        }
        let mut resolved = Vec::with_capacity(intents.len());
        for intent in intents {
            let recorded = match self.store.head(&intent.key).await? {
                Some(head) => Some(
                    self.recorded_from_head(&intent.key, intent.kind, intent.hour, head)
                        .await?,
                ),
                None => None,
            };
            tracing::info!(
                key = intent.key,
                found = recorded.is_some(),
                "intent resolved"
            );
            resolved.push((intent, recorded));
        }
        let bucket = &self.config.bucket;
        let (written, ()) = state::update(&self.store, bucket, state_key, Some(current), |s| {
            for (intent, recorded) in &resolved {
                let Some(ledger) = s.ledger.as_mut() else {
                    return;
                };
                let before = ledger.intents.len();
                ledger.intents.retain(|i| i.key != intent.key);
                if ledger.intents.len() == before {
                    continue; // resolved meanwhile by someone else
                }
                if let Some(r) = recorded {
                    if !ledger.holds(&r.object.key) {
                        ledger.pending.push(r.clone());
                    }
                    let last = r.object.last_sequence_number.clone();
                    s.raise_mark(r.object.kind, &last);
                }
            }
        })
        .await?;
        Ok(written)
    }

    /// Writes the digests of every hour before `before` (epoch seconds) that has pending
    /// objects in the shard state under `state_key`, and a heartbeat digest for every hour
    /// since the shard's newest digest that has none, in hour order, and any digest a previous
    /// close left half-written, starting from the state version `known` when given. With
    /// `shard_closed` (Kinesis says the shard is closed), a heartbeat written when nothing is
    /// pending is the shard's last (`shardEnded`). Returns how many digests it wrote and the
    /// state version it left.
    pub(crate) async fn close_hours(
        &self,
        state_key: &str,
        before: i64,
        known: Option<Versioned>,
        shard_closed: bool,
    ) -> Result<(usize, Option<Versioned>), ArchiveError> {
        let Some(settings) = self.config.digests.as_ref() else {
            return Ok((0, known));
        };
        let bucket = &self.config.bucket;
        let mut known = known;
        let mut written = 0;
        while written < MAX_DIGESTS_PER_CLOSE {
            let (current, closing) =
                state::update(&self.store, bucket, state_key, known.take(), |s| {
                    let ledger = s.ledger.as_mut()?;
                    if ledger.closing.is_none() {
                        ledger.closing = plan_close(ledger, &settings.prefix, before, shard_closed);
                    }
                    ledger.closing.clone()
                })
                .await?;
            let (Some(closing), Some(ledger)) = (closing, current.state.ledger.clone()) else {
                known = Some(current);
                break;
            };
            let link = self.write_digest(&ledger, &closing).await?;
            let (after, ()) = state::update(&self.store, bucket, state_key, Some(current), |s| {
                let Some(l) = s.ledger.as_mut() else {
                    return;
                };
                if l.closing.as_ref().is_some_and(|c| c.key == closing.key) {
                    l.pending
                        .retain(|r| !closing.objects.contains(&r.object.key));
                    if let Some(link) = &link {
                        l.head = Some(link.clone());
                        l.covered_through = l.covered_through.max(Some(closing.hour));
                        l.ended |= closing.ended;
                    }
                    l.closing = None;
                }
            })
            .await?;
            known = Some(after);
            if link.is_some() {
                written += 1;
            }
        }
        Ok((written, known))
    }

    /// Signs and writes the digest `closing` describes (once: a digest already under its key
    /// that continues the same chain is taken as written). `None` when it lists nothing.
    async fn write_digest(
        &self,
        ledger: &Ledger,
        closing: &Closing,
    ) -> Result<Option<DigestLink>, ArchiveError> {
        let Some(body) = self.digest_body(ledger, closing)? else {
            return Ok(None);
        };
        let signer = self.signer.as_ref().ok_or_else(|| ArchiveError::Sign {
            key_id: "(none)".into(),
            message: "digests are configured but no signer was given".into(),
        })?;
        let signature = signer
            .sign(digest::signed_message(&body).as_bytes())
            .await?;
        let mut metadata = Metadata::new();
        metadata.insert(
            META_SIGNATURE.into(),
            base64::engine::general_purpose::STANDARD.encode(signature),
        );
        let sha256 = digest::sha256_base64(&body);
        let outcome = self
            .store
            .put_if_absent(
                &closing.key,
                Bytes::from(body.clone()),
                "application/json",
                &metadata,
                &sha256,
            )
            .await?;
        if outcome == PutOutcome::Created {
            tracing::info!(
                key = closing.key,
                objects = closing.objects.len(),
                "digest written"
            );
            return Ok(Some(DigestLink {
                key: closing.key.clone(),
                sha256: digest::sha256_hex(&body),
            }));
        }
        // A previous attempt of this close wrote it (and did not get to record it).
        let foreign = |problem: &str| ArchiveError::ForeignObject {
            bucket: self.config.bucket.clone(),
            key: closing.key.clone(),
            problem: problem.to_string(),
        };
        let stored = self
            .store
            .get(&closing.key)
            .await?
            .ok_or_else(|| foreign("vanished while being read"))?;
        let existing: Digest =
            serde_json::from_slice(&stored).map_err(|_| foreign("is not a digest"))?;
        if existing.previous_digest != ledger.head
            || existing.stream != ledger.stream
            || existing.shard_id != ledger.shard
        {
            return Err(foreign(
                "is not the digest that continues this shard's chain",
            ));
        }
        Ok(Some(DigestLink {
            key: closing.key.clone(),
            sha256: digest::sha256_hex(&stored),
        }))
    }

    /// The bytes of the digest `closing` describes (no object for a heartbeat), `None` when
    /// none of its objects is pending.
    fn digest_body(
        &self,
        ledger: &Ledger,
        closing: &Closing,
    ) -> Result<Option<Vec<u8>>, ArchiveError> {
        let mut objects: Vec<DigestObject> = ledger
            .pending
            .iter()
            .filter(|r| closing.objects.contains(&r.object.key))
            .map(|r| r.object.clone())
            .collect();
        objects.sort_by(|a, b| {
            a.kind
                .cmp(&b.kind)
                .then_with(|| seqnum::compare(&a.first_sequence_number, &b.first_sequence_number))
        });
        let first = objects
            .iter()
            .map(|o| &o.first_sequence_number)
            .min_by(|a, b| seqnum::compare(a, b));
        let last = objects
            .iter()
            .map(|o| &o.last_sequence_number)
            .max_by(|a, b| seqnum::compare(a, b));
        let (first, last) = match (first.cloned(), last.cloned()) {
            (Some(first), Some(last)) => (first, last),
            _ if closing.heartbeat => (String::new(), String::new()),
            _ => return Ok(None),
        };
        let (key_id, algorithm) = match &self.signer {
            Some(s) => (s.key_id().to_string(), s.algorithm().as_str()),
            None => (String::new(), ""),
        };
        let digest = Digest {
            version: DIGEST_VERSION,
            stream: ledger.stream.clone(),
            shard_id: ledger.shard.clone(),
            hour: digest::hour_text(closing.hour),
            created_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            signing_key_id: key_id,
            signature_algorithm: algorithm.to_string(),
            previous_digest: ledger.head.clone(),
            first_sequence_number: first,
            last_sequence_number: last,
            objects,
            hourly: !ledger.ended,
            shard_ended: closing.ended,
        };
        serde_json::to_vec_pretty(&digest)
            .map(Some)
            .map_err(ArchiveError::Encode)
    }
}

/// The hour of the next heartbeat the shard needs before `before`: the hour after its newest
/// covered one, unless the shard ended or has no digest of this version yet.
fn next_heartbeat(ledger: &Ledger, before: i64) -> Option<i64> {
    let next = ledger.covered_through? + 3600;
    (!ledger.ended && next < before).then_some(next)
}

/// The next digest to write, oldest hour first: the pending objects of the oldest hour before
/// `before`, or a heartbeat for the hour after the newest covered one when that is older and
/// has no pending object. A heartbeat of a closed shard with nothing pending or intended is
/// its last (`shardEnded`).
fn plan_close(ledger: &Ledger, prefix: &str, before: i64, shard_closed: bool) -> Option<Closing> {
    let oldest = ledger
        .pending
        .iter()
        .map(|r| r.hour)
        .filter(|h| *h < before)
        .min();
    match (oldest, next_heartbeat(ledger, before)) {
        (Some(hour), quiet) if quiet.is_none_or(|q| hour <= q) => {
            plan_objects(ledger, prefix, hour)
        }
        (_, Some(hour)) => Some(Closing {
            key: digest::heartbeat_key(
                prefix,
                utc_from_epoch_seconds(hour),
                &ledger.stream,
                &ledger.shard,
            ),
            hour,
            objects: Vec::new(),
            heartbeat: true,
            ended: shard_closed && ledger.pending.is_empty() && ledger.intents.is_empty(),
        }),
        _ => None,
    }
}

/// The digest of the pending objects of `hour`.
fn plan_objects(ledger: &Ledger, prefix: &str, hour: i64) -> Option<Closing> {
    let objects: Vec<&Recorded> = ledger.pending.iter().filter(|r| r.hour == hour).collect();
    let first = objects
        .iter()
        .map(|r| &r.object.first_sequence_number)
        .min_by(|a, b| seqnum::compare(a, b))?;
    Some(Closing {
        key: digest::digest_key(
            prefix,
            utc_from_epoch_seconds(hour),
            &ledger.stream,
            &ledger.shard,
            first,
        ),
        hour,
        objects: objects.iter().map(|r| r.object.key.clone()).collect(),
        heartbeat: false,
        ended: false,
    })
}
