//! The checks. For the key hours `[from, to)`:
//!
//! 1. Every digest filed in the range: it parses, its signature verifies with one of the
//!    operator's keys, and it is filed under the key its contents give (`digest-altered`).
//! 2. Every link to a previous digest from a digest of the range, and into the range from the
//!    digests after it: the digest named exists (`digest-deleted`) and its bytes hash to what
//!    the link says (`digest-altered`). The shard state's newest digest, when of the range,
//!    exists too.
//! 3. Every object the range's digests list: it exists (`object-deleted`) with the listed
//!    SHA-256 and size (`object-modified`).
//! 4. Every archive and error object of the range: a digest lists it, or the shard state still
//!    expects it (its hour has not closed: counted as pending), else `object-added`.
//! 5. Per shard and kind, the listed objects in sequence order: each names the last sequence
//!    number of the previous one; a name that is not the previous listed object's is a
//!    `shard-gap` (objects removed together with their digest entries).
//!
//! 6. Per shard with hourly digests (heartbeats), from its first hourly digest (or the hour its
//!    state says it covers) until a `shardEnded` digest: every hour older than the close delay
//!    has a digest, else `digest-missing` (the newest digests deleted and the state rolled
//!    back leave exactly that).
//!
//! An hour without traffic has a heartbeat digest and no object: nothing is reported for it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use authtrail_archiver::digest::{
    self, Digest, DigestObject, META_SIGNATURE, ObjectKind, SigningAlgorithm,
};
use authtrail_archiver::{ObjectStore, ShardState};
use authtrail_core::s3key::{escape_part, utc_from_epoch_seconds};
use authtrail_core::seqnum;
use base64::Engine;
use bytes::Bytes;

use crate::keyring::KeyRing;
use crate::layout::{key_hour, key_of_stream, key_shard, state_key};
use crate::progress::Progress;
use crate::report::{Finding, FindingKind, Report};
use crate::{VerifyError, scan};

/// The archiver's prefixes in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefixes {
    /// `ARCHIVE_PREFIX`.
    pub archive: String,
    /// `ARCHIVE_ERROR_PREFIX`.
    pub errors: String,
    /// `ARCHIVE_DIGEST_PREFIX`.
    pub digests: String,
    /// `ARCHIVE_STATE_PREFIX`.
    pub state: String,
}

impl Default for Prefixes {
    fn default() -> Self {
        Self {
            archive: "raw/".into(),
            errors: "errors/".into(),
            digests: "digests/".into(),
            state: "archiver-state/".into(),
        }
    }
}

/// What to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The bucket (for the report).
    pub bucket: String,
    /// Only this stream (unescaped); `None`: every stream.
    pub stream: Option<String>,
    /// First key hour (epoch seconds, on the hour).
    pub from: i64,
    /// First key hour after the range.
    pub to: i64,
    /// Read and hash every object instead of using the SHA-256 checksum S3 keeps.
    pub read_objects: bool,
    /// The time of the check (epoch seconds): hours that ended `close_delay` before it need
    /// a digest in an hourly chain.
    pub now: i64,
    /// Seconds after an hour's end by which its digests are written.
    pub close_delay: i64,
}

impl Scope {
    fn contains(&self, hour: Option<i64>) -> bool {
        hour.is_some_and(|h| (self.from..self.to).contains(&h))
    }

    fn wants(&self, key: &str) -> bool {
        self.stream.as_deref().is_none_or(|s| key_of_stream(key, s))
    }
}

/// A digest as read, and what is wrong with it.
#[derive(Debug, Clone)]
struct Loaded {
    key: String,
    hour: Option<i64>,
    sha256: String,
    digest: Option<Digest>,
    /// Why it does not verify; `None` when it does.
    problem: Option<String>,
}

/// A listed object: the entry, the digest listing it, its shard (as in keys).
type Listed = (DigestObject, String, (String, String));

/// Verifies `scope` in the bucket behind `store`.
pub async fn verify<S: ObjectStore + 'static>(
    store: Arc<S>,
    prefixes: &Prefixes,
    scope: &Scope,
    keys: &KeyRing,
    progress: &mut Progress,
) -> Result<Report, VerifyError> {
    let mut report = Report {
        bucket: scope.bucket.clone(),
        stream: scope.stream.clone(),
        from: utc_from_epoch_seconds(scope.from).to_rfc3339(),
        to: utc_from_epoch_seconds(scope.to).to_rfc3339(),
        ..Report::default()
    };
    progress.phase("listing", 0);
    let digests = read_digests(&store, prefixes, scope, keys, progress).await?;
    check_digests(&mut report, &digests, scope);
    let context = check_links(&*store, &mut report, &digests, prefixes, scope, keys).await?;
    let mut object_keys =
        scan::list_hours(&*store, &prefixes.archive, scope.from, Some(scope.to)).await?;
    object_keys
        .extend(scan::list_hours(&*store, &prefixes.errors, scope.from, Some(scope.to)).await?);
    object_keys.retain(|k| scope.wants(k) && key_shard(k).is_some());
    let mut shards: BTreeSet<(String, String)> =
        object_keys.iter().filter_map(|k| key_shard(k)).collect();
    shards.extend(
        digests
            .values()
            .filter_map(|d| d.digest.as_ref().map(shard_of)),
    );
    shards.extend(state_shards(&*store, prefixes, scope).await?);
    report.shards = shards.len();
    let states = read_states(&*store, prefixes, &shards).await?;
    check_heads(&mut report, &digests, &states, prefixes, scope);
    check_hours(
        &*store,
        &mut report,
        &digests,
        &states,
        prefixes,
        scope,
        keys,
    )
    .await?;
    let listed = listed_objects(&digests, prefixes, scope);
    report.objects = listed.len();
    check_objects(&store, &mut report, &listed, scope, progress).await?;
    check_unlisted(&mut report, &object_keys, &digests, &states);
    check_gaps(&mut report, &listed, &context, &states, prefixes, scope);
    report.findings.sort();
    Ok(report)
}

fn shard_of(d: &Digest) -> (String, String) {
    (
        escape_part(&d.stream).into_owned(),
        escape_part(&d.shard_id).into_owned(),
    )
}

fn finding(
    kind: FindingKind,
    key: &str,
    shard: Option<&(String, String)>,
    detail: String,
) -> Finding {
    Finding {
        finding: kind,
        key: key.to_string(),
        stream: shard.map(|s| s.0.clone()),
        shard: shard.map(|s| s.1.clone()),
        detail,
    }
}

/// Every digest filed from the range's first hour on (the later ones link into the range).
async fn read_digests<S: ObjectStore + 'static>(
    store: &Arc<S>,
    prefixes: &Prefixes,
    scope: &Scope,
    keys: &KeyRing,
    progress: &mut Progress,
) -> Result<BTreeMap<String, Loaded>, VerifyError> {
    let mut names = scan::list_hours(&**store, &prefixes.digests, scope.from, None).await?;
    names.retain(|k| scope.wants(k));
    progress.phase("digests", names.len());
    let read = scan::read_all(store, names, progress, |s, k| async move {
        s.get_with_metadata(&k).await
    })
    .await?;
    Ok(read
        .into_iter()
        .filter_map(|(key, got)| {
            let (body, metadata) = got?;
            let signature = metadata.get(META_SIGNATURE).map(String::as_str);
            Some((key.clone(), load(prefixes, key, &body, signature, keys)))
        })
        .collect())
}

/// Parses and checks one digest's bytes.
fn load(
    prefixes: &Prefixes,
    key: String,
    body: &Bytes,
    signature: Option<&str>,
    keys: &KeyRing,
) -> Loaded {
    let hour = key_hour(&prefixes.digests, &key);
    let sha256 = digest::sha256_hex(body);
    let digest: Option<Digest> = serde_json::from_slice(body).ok();
    let problem = match &digest {
        None => Some("does not parse as a digest".to_string()),
        Some(d) => signature_problem(prefixes, &key, d, body, signature, keys),
    };
    Loaded {
        key,
        hour,
        sha256,
        digest,
        problem,
    }
}

fn signature_problem(
    prefixes: &Prefixes,
    key: &str,
    d: &Digest,
    body: &[u8],
    signature: Option<&str>,
    keys: &KeyRing,
) -> Option<String> {
    let Some(signature) = signature else {
        return Some(format!("has no signature (x-amz-meta-{META_SIGNATURE})"));
    };
    let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(signature) else {
        return Some("its signature is not base64".into());
    };
    let Some(algorithm) = SigningAlgorithm::from_name(&d.signature_algorithm) else {
        return Some(format!(
            "names an unknown signature algorithm {:?}",
            d.signature_algorithm
        ));
    };
    if keys.signer_of(algorithm, body, &signature).is_none() {
        return Some("its signature does not verify with the given key(s)".into());
    }
    let expected = d.expected_key(&prefixes.digests)?;
    (expected != key).then(|| format!("is filed under a key its contents do not give ({expected})"))
}

/// Step 1: the range's digests verify.
fn check_digests(report: &mut Report, digests: &BTreeMap<String, Loaded>, scope: &Scope) {
    for d in digests.values().filter(|d| scope.contains(d.hour)) {
        report.digests += 1;
        if let Some(problem) = &d.problem {
            let shard = d.digest.as_ref().map(shard_of);
            report.add(finding(
                FindingKind::DigestAltered,
                &d.key,
                shard.as_ref(),
                problem.clone(),
            ));
        }
    }
}

/// Step 2: links from the range's digests, and into them. Returns the digests before the range
/// that the range's first digests name (their objects precede the range's in the gap check).
async fn check_links<S: ObjectStore>(
    store: &S,
    report: &mut Report,
    digests: &BTreeMap<String, Loaded>,
    prefixes: &Prefixes,
    scope: &Scope,
    keys: &KeyRing,
) -> Result<Vec<Digest>, VerifyError> {
    let mut before: BTreeMap<String, Option<Loaded>> = BTreeMap::new();
    for d in digests.values() {
        let in_range = scope.contains(d.hour);
        let (Some(dg), true) = (&d.digest, in_range || d.problem.is_none()) else {
            continue;
        };
        let Some(link) = &dg.previous_digest else {
            continue;
        };
        let link_hour = key_hour(&prefixes.digests, &link.key);
        if !in_range && !scope.contains(link_hour) {
            continue;
        }
        let target = match digests.get(&link.key) {
            Some(t) => Some(t.clone()),
            None if link_hour.is_some_and(|h| h < scope.from) => {
                if !before.contains_key(&link.key) {
                    let got = store.get_with_metadata(&link.key).await?;
                    let loaded = got.map(|(body, meta)| {
                        let sig = meta.get(META_SIGNATURE).map(String::as_str);
                        load(prefixes, link.key.clone(), &body, sig, keys)
                    });
                    before.insert(link.key.clone(), loaded);
                }
                before.get(&link.key).cloned().flatten()
            }
            None => None,
        };
        let shard = shard_of(dg);
        match target {
            None => report.add(finding(
                FindingKind::DigestDeleted,
                &link.key,
                Some(&shard),
                format!(
                    "{} names it as the shard's previous digest; it is not in the bucket",
                    d.key
                ),
            )),
            Some(t) if t.sha256 != link.sha256 => report.add(finding(
                FindingKind::DigestAltered,
                &link.key,
                Some(&shard),
                format!(
                    "its SHA-256 is {}; {} names {}",
                    t.sha256, d.key, link.sha256
                ),
            )),
            Some(_) => {}
        }
    }
    Ok(before
        .into_values()
        .flatten()
        .filter_map(|l| l.digest)
        .collect())
}

async fn read_states<S: ObjectStore>(
    store: &S,
    prefixes: &Prefixes,
    shards: &BTreeSet<(String, String)>,
) -> Result<BTreeMap<(String, String), ShardState>, VerifyError> {
    let mut out = BTreeMap::new();
    for shard in shards {
        let key = state_key(&prefixes.state, &shard.0, &shard.1);
        if let Some(body) = store.get(&key).await? {
            out.insert(
                shard.clone(),
                authtrail_archiver::state::parse_state(&key, &body),
            );
        }
    }
    Ok(out)
}

/// Step 2, the newest digests: the one each shard state names, when of the range, exists.
fn check_heads(
    report: &mut Report,
    digests: &BTreeMap<String, Loaded>,
    states: &BTreeMap<(String, String), ShardState>,
    prefixes: &Prefixes,
    scope: &Scope,
) {
    for (shard, state) in states {
        let Some(head) = state.ledger.as_ref().and_then(|l| l.head.as_ref()) else {
            continue;
        };
        if !scope.contains(key_hour(&prefixes.digests, &head.key)) {
            continue;
        }
        match digests.get(&head.key) {
            None => report.add(finding(
                FindingKind::DigestDeleted,
                &head.key,
                Some(shard),
                "the shard state names it as the newest digest; it is not in the bucket".into(),
            )),
            Some(d) if d.sha256 != head.sha256 => report.add(finding(
                FindingKind::DigestAltered,
                &head.key,
                Some(shard),
                format!(
                    "its SHA-256 is {}; the shard state names {}",
                    d.sha256, head.sha256
                ),
            )),
            Some(_) => {}
        }
    }
}

/// The objects of the range that digests list (also digests that do not verify: what they
/// claim is checked all the same, and they are reported themselves).
fn listed_objects(
    digests: &BTreeMap<String, Loaded>,
    prefixes: &Prefixes,
    scope: &Scope,
) -> BTreeMap<String, Listed> {
    let mut out = BTreeMap::new();
    for d in digests.values() {
        let Some(dg) = &d.digest else { continue };
        for o in &dg.objects {
            let prefix = match o.kind {
                ObjectKind::Archive => &prefixes.archive,
                ObjectKind::Errors => &prefixes.errors,
            };
            if scope.contains(d.hour) || scope.contains(key_hour(prefix, &o.key)) {
                out.entry(o.key.clone())
                    .or_insert_with(|| (o.clone(), d.key.clone(), shard_of(dg)));
            }
        }
    }
    out
}

/// Step 3: listed objects exist with the listed SHA-256 and size.
async fn check_objects<S: ObjectStore + 'static>(
    store: &Arc<S>,
    report: &mut Report,
    listed: &BTreeMap<String, Listed>,
    scope: &Scope,
    progress: &mut Progress,
) -> Result<(), VerifyError> {
    progress.phase("objects", listed.len());
    let read_objects = scope.read_objects;
    let found = scan::read_all(
        store,
        listed.keys().cloned().collect(),
        progress,
        move |s, k| async move {
            let Some(head) = s.head(&k).await? else {
                return Ok(None);
            };
            let kept = head
                .sha256
                .as_deref()
                .and_then(digest::hex_from_s3_checksum);
            let sha256 = match kept {
                Some(h) if !read_objects => Some(h),
                _ => s.get(&k).await?.map(|b| digest::sha256_hex(&b)),
            };
            Ok(sha256.map(|h| (h, head.size)))
        },
    )
    .await?;
    for (key, got) in found {
        let Some((entry, digest_key, shard)) = listed.get(&key) else {
            continue;
        };
        match got {
            None => report.add(finding(
                FindingKind::ObjectDeleted,
                &key,
                Some(shard),
                format!("{digest_key} lists it; it is not in the bucket"),
            )),
            Some((sha256, size)) if sha256 != entry.sha256 || size != entry.size => {
                report.add(finding(
                    FindingKind::ObjectModified,
                    &key,
                    Some(shard),
                    format!(
                        "its SHA-256 is {sha256} ({size} bytes); {digest_key} lists {} ({} bytes)",
                        entry.sha256, entry.size
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Step 4: every object of the range is listed, or still expected by its shard state.
fn check_unlisted(
    report: &mut Report,
    object_keys: &[String],
    digests: &BTreeMap<String, Loaded>,
    states: &BTreeMap<(String, String), ShardState>,
) {
    let listed: BTreeSet<&str> = digests
        .values()
        .filter_map(|d| d.digest.as_ref())
        .flat_map(|d| d.objects.iter().map(|o| o.key.as_str()))
        .collect();
    for key in object_keys {
        if listed.contains(key.as_str()) {
            continue;
        }
        let shard = key_shard(key);
        let expected = shard
            .as_ref()
            .and_then(|s| states.get(s))
            .and_then(|s| s.ledger.as_ref())
            .is_some_and(|l| l.holds(key) || l.intents.iter().any(|i| &i.key == key));
        if expected {
            report.pending += 1;
        } else {
            report.add(finding(
                FindingKind::ObjectAdded,
                key,
                shard.as_ref(),
                "no digest lists it and the shard state does not expect it".into(),
            ));
        }
    }
}

/// Step 5: per shard and kind, each listed object of the range names the previous one.
fn check_gaps(
    report: &mut Report,
    listed: &BTreeMap<String, Listed>,
    context: &[Digest],
    states: &BTreeMap<(String, String), ShardState>,
    prefixes: &Prefixes,
    scope: &Scope,
) {
    let mut chains: BTreeMap<((String, String), ObjectKind), BTreeMap<String, DigestObject>> =
        BTreeMap::new();
    let mut add = |shard: (String, String), o: &DigestObject| {
        chains
            .entry((shard, o.kind))
            .or_default()
            .entry(o.key.clone())
            .or_insert_with(|| o.clone());
    };
    for (o, _, shard) in listed.values() {
        add(shard.clone(), o);
    }
    for d in context {
        d.objects.iter().for_each(|o| add(shard_of(d), o));
    }
    for (shard, state) in states {
        let pending = state.ledger.iter().flat_map(|l| l.pending.iter());
        pending.for_each(|r| add(shard.clone(), &r.object));
    }
    for ((shard, kind), objects) in chains {
        let mut chain: Vec<DigestObject> = objects.into_values().collect();
        chain.sort_by(|a, b| seqnum::compare(&a.first_sequence_number, &b.first_sequence_number));
        let prefix = match kind {
            ObjectKind::Archive => &prefixes.archive,
            ObjectKind::Errors => &prefixes.errors,
        };
        for pair in chain.windows(2) {
            let (prev, next) = (&pair[0], &pair[1]);
            let Some(named) = &next.previous_last_sequence_number else {
                continue;
            };
            if *named != prev.last_sequence_number && scope.contains(key_hour(prefix, &next.key)) {
                report.add(finding(
                    FindingKind::ShardGap,
                    &next.key,
                    Some(&shard),
                    format!(
                        "follows an object ending at sequence number {named}; the previous listed {} object ({}) ends at {}",
                        kind.as_str(),
                        prev.key,
                        prev.last_sequence_number
                    ),
                ));
            }
        }
    }
}

/// The shards whose state objects are in the bucket (of the scope's stream), as in keys.
async fn state_shards<S: ObjectStore>(
    store: &S,
    prefixes: &Prefixes,
    scope: &Scope,
) -> Result<BTreeSet<(String, String)>, VerifyError> {
    let mut out = BTreeSet::new();
    let mut start: Option<String> = None;
    loop {
        let page = store.list_after(&prefixes.state, start.as_deref()).await?;
        let Some(last) = page.last().cloned() else {
            return Ok(out);
        };
        for key in page {
            let name = key[prefixes.state.len()..].strip_suffix(".json");
            let Some((stream, shard)) = name.and_then(|n| {
                let at = n.rfind("-shardId-")?;
                Some((n[..at].to_string(), n[at + 1..].to_string()))
            }) else {
                continue;
            };
            if scope
                .stream
                .as_deref()
                .is_none_or(|s| escape_part(s) == stream)
            {
                out.insert((stream, shard));
            }
        }
        start = Some(last);
    }
}

/// Whether `d` verified and is its shard's final digest; its hour when so.
fn ended_at(d: &Loaded) -> Option<i64> {
    let dg = d.digest.as_ref()?;
    (d.problem.is_none() && dg.shard_ended).then_some(d.hour?)
}

/// Step 6: every hour of an hourly chain that is old enough has a digest.
async fn check_hours<S: ObjectStore>(
    store: &S,
    report: &mut Report,
    digests: &BTreeMap<String, Loaded>,
    states: &BTreeMap<(String, String), ShardState>,
    prefixes: &Prefixes,
    scope: &Scope,
    keys: &KeyRing,
) -> Result<(), VerifyError> {
    // An hour is due once it ended `close_delay` before the check.
    let due_end = digest::hour_of(scope.now - 3600 - scope.close_delay) + 3600;
    let end_all = scope.to.min(due_end);
    let mut per_shard: BTreeMap<(String, String), Vec<&Loaded>> = BTreeMap::new();
    for d in digests.values() {
        let shard = d
            .digest
            .as_ref()
            .map(shard_of)
            .or_else(|| key_shard(&d.key));
        if let Some(shard) = shard {
            per_shard.entry(shard).or_default().push(d);
        }
    }
    let shards: BTreeSet<&(String, String)> = per_shard.keys().chain(states.keys()).collect();
    for shard in shards {
        let mine = per_shard.get(shard).map(Vec::as_slice).unwrap_or_default();
        let ledger = states.get(shard).and_then(|s| s.ledger.as_ref());
        let hourly = mine
            .iter()
            .filter(|d| d.digest.as_ref().is_some_and(|g| g.hourly))
            .filter_map(|d| d.hour);
        let Some(start) = hourly.chain(ledger.and_then(|l| l.covered_through)).min() else {
            continue;
        };
        let mut end = end_all;
        let mut ended = mine.iter().filter_map(|d| ended_at(d)).min();
        if ended.is_none()
            && let Some(head) = ledger.filter(|l| l.ended).and_then(|l| l.head.as_ref())
            && !digests.contains_key(&head.key)
            && let Some((body, meta)) = store.get_with_metadata(&head.key).await?
        {
            let sig = meta.get(META_SIGNATURE).map(String::as_str);
            ended = ended_at(&load(prefixes, head.key.clone(), &body, sig, keys));
        }
        if let Some(e) = ended {
            end = end.min(e + 3600);
        }
        let mut covered: BTreeSet<i64> = mine.iter().filter_map(|d| d.hour).collect();
        covered.extend(
            report
                .findings
                .iter()
                .filter(|f| f.finding == FindingKind::DigestDeleted)
                .filter(|f| {
                    f.stream.as_ref() == Some(&shard.0) && f.shard.as_ref() == Some(&shard.1)
                })
                .filter_map(|f| key_hour(&prefixes.digests, &f.key)),
        );
        let mut hour = start.max(scope.from);
        while hour < end {
            if !covered.contains(&hour) {
                let key = format!(
                    "{}/{}-{}-{}.json",
                    crate::layout::hour_start_after(&prefixes.digests, hour),
                    shard.0,
                    shard.1,
                    digest::HEARTBEAT_NAME
                );
                report.add(finding(
                    FindingKind::DigestMissing,
                    &key,
                    Some(shard),
                    format!(
                        "no digest of the shard covers the hour {}: its chain has a digest (or a heartbeat) for every hour since {} and the hour ended more than {} s before the check",
                        digest::hour_text(hour),
                        digest::hour_text(start),
                        scope.close_delay
                    ),
                ));
            }
            hour += 3600;
        }
    }
    Ok(())
}
