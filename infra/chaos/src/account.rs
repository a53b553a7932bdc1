//! Reading every place at the end of the run: the stream itself, the archive (and its error
//! objects), each receiver, the dead letters and the spool. MPAS events are counted by identity
//! ([`authtrail_check::Tally`]); the foreign producer's records by their tracking ids.

use std::collections::{BTreeMap, HashMap};

use authtrail_check::sources::maybe_gunzip;
use authtrail_check::{KeyPolicy, Tally};
use authtrail_demo::RunContext;
use base64::Engine;
use serde_json::{Value, json};
use siem_receiver::Endpoint;

use crate::error::ChaosError;
use crate::foreign::{FOREIGN_PREFIX, MALFORMED_PREFIX};

/// What one place holds.
#[derive(Debug)]
pub struct Place {
    /// The place's name in the report.
    pub name: String,
    /// MPAS events by identity.
    pub tally: Tally,
    /// Foreign records by tracking id: copies.
    pub foreign: HashMap<String, u32>,
    /// Malformed records by tracking id: the reason given with them.
    pub malformed: BTreeMap<String, String>,
}

impl Place {
    fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            tally: Tally::new(name),
            foreign: HashMap::new(),
            malformed: BTreeMap::new(),
        }
    }

    fn add_value(&mut self, policy: &KeyPolicy, v: &Value) {
        self.tally.add_value(policy, v);
        for id in ids_in(&v.to_string(), FOREIGN_PREFIX) {
            *self.foreign.entry(id).or_default() += 1;
        }
    }

    fn add_line(&mut self, policy: &KeyPolicy, line: &[u8]) {
        match serde_json::from_slice::<Value>(line) {
            Ok(v) => self.add_value(policy, &v),
            Err(_) => {
                for id in ids_in(&String::from_utf8_lossy(line), MALFORMED_PREFIX) {
                    self.malformed.insert(id, String::new());
                }
            }
        }
    }

    /// A dead letter or an archive error object line: the record it holds (JSON `record`, or
    /// base64 `dataBase64` / `data`), with its `reason`.
    fn add_letter(&mut self, policy: &KeyPolicy, letter: &Value) {
        let reason = letter
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let raw = ["dataBase64", "data"]
            .iter()
            .find_map(|f| letter.get(*f).and_then(Value::as_str))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
        if let Some(raw) = raw {
            let text = String::from_utf8_lossy(&raw);
            for id in ids_in(&text, MALFORMED_PREFIX) {
                self.malformed.insert(id, reason.to_string());
            }
            for id in ids_in(&text, FOREIGN_PREFIX) {
                *self.foreign.entry(id).or_default() += 1;
            }
            if let Ok(v) = serde_json::from_slice::<Value>(&raw) {
                self.tally.add_value(policy, &v);
            }
            return;
        }
        self.add_value(policy, letter);
    }
}

/// The tracking ids (prefix and 8 digits) in `text`.
pub fn ids_in(text: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let tail = &rest[i + prefix.len()..];
        let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
        if digits.len() == 8 {
            out.push(format!("{prefix}{digits}"));
        }
        rest = tail;
    }
    out
}

/// Every place, read once the pipeline drained.
#[derive(Debug)]
pub struct Places {
    /// The simulator's ledger: every event made.
    pub expected: Tally,
    pub stream: Place,
    pub archive: Place,
    /// The archiver's error objects (malformed records with their reason).
    pub archive_errors: Place,
    /// The receivers, by name: splunk, elastic (the index), webhook, syslog.
    pub receivers: Vec<Place>,
    /// The forwarder's dead letters (and any batch a mapping gave up on).
    pub dead_letters: Place,
    /// Spool objects left (records waiting for their emitter).
    pub spool_left: usize,
}

fn read_err(place: &str) -> impl Fn(String) -> ChaosError + '_ {
    move |detail| ChaosError::Read {
        place: place.to_string(),
        detail,
    }
}

/// Reads every place.
pub async fn collect(ctx: &RunContext) -> Result<Places, ChaosError> {
    let policy = KeyPolicy::default();
    let s3 = aws_sdk_s3::Client::new(&ctx.sdk);
    let mut expected = Tally::new("made at IdP");
    for entry in ctx.sim.ledger() {
        if let Ok(event) = entry.event() {
            expected.add_value(&policy, &json!({"kind": entry.kind, "event": event}));
        }
    }
    let stream = read_stream(ctx, &policy).await?;
    let mut archive = Place::new("archive");
    for text in objects(&s3, &ctx.archive_bucket, "raw/").await? {
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            archive.add_line(&policy, line);
        }
    }
    let mut archive_errors = Place::new("archive errors");
    for text in objects(&s3, &ctx.archive_bucket, "errors/").await? {
        letters(&policy, &mut archive_errors, &text);
    }
    let mut dead_letters = Place::new("dead letters");
    for text in objects(&s3, &ctx.dlq_bucket, "").await? {
        letters(&policy, &mut dead_letters, &text);
    }
    let mut receivers = Vec::new();
    for (name, endpoint) in [
        ("splunk", Endpoint::SplunkHec),
        ("webhook", Endpoint::Ingest),
    ] {
        let mut p = Place::new(name);
        for v in ctx.receiver.events(endpoint) {
            p.add_value(&policy, &v);
        }
        receivers.push(p);
    }
    let mut elastic = Place::new("elastic");
    for v in ctx.receiver.documents().values() {
        elastic.add_value(&policy, v);
    }
    receivers.insert(1, elastic);
    let mut syslog = Place::new("syslog");
    for m in ctx.rsyslog.messages() {
        syslog.add_value(&policy, &json!({"msg": m.msg}));
    }
    receivers.push(syslog);
    let spool_left = authtrail_demo::spooled_objects(&s3, &ctx.dlq_bucket, &ctx.spool_prefix).await;
    Ok(Places {
        expected,
        stream,
        archive,
        archive_errors,
        receivers,
        dead_letters,
        spool_left,
    })
}

/// Letters: one JSON document per object, a JSON array, or JSON lines.
fn letters(policy: &KeyPolicy, place: &mut Place, text: &[u8]) {
    if let Ok(doc) = serde_json::from_slice::<Value>(text) {
        match doc {
            Value::Array(items) => items.iter().for_each(|l| place.add_letter(policy, l)),
            other => place.add_letter(policy, &other),
        }
        return;
    }
    for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        if let Ok(v) = serde_json::from_slice::<Value>(line) {
            place.add_letter(policy, &v);
        }
    }
}

/// The bodies (gunzipped) of every object under `prefix`, the spool's excepted.
async fn objects(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<Vec<u8>>, ChaosError> {
    let place = format!("s3://{bucket}/{prefix}");
    let err = read_err(&place);
    let mut out = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| err(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
        for obj in page.contents() {
            let Some(key) = obj.key() else { continue };
            if key.starts_with("spool/") || key.contains("/spool/") {
                continue;
            }
            let got = s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| {
                    err(format!(
                        "{key}: {}",
                        aws_sdk_s3::error::DisplayErrorContext(e)
                    ))
                })?;
            let body = got
                .body
                .collect()
                .await
                .map_err(|e| err(format!("{key}: {e}")))?
                .into_bytes();
            out.push(maybe_gunzip(&body).map_err(|e| err(format!("{key}: {e}")))?);
        }
    }
    Ok(out)
}

/// Every record in the stream, from the start of each shard.
async fn read_stream(ctx: &RunContext, policy: &KeyPolicy) -> Result<Place, ChaosError> {
    let err = read_err("the stream");
    let kinesis = aws_sdk_kinesis::Client::new(&ctx.sdk);
    let mut place = Place::new("stream");
    let shards = kinesis
        .list_shards()
        .stream_name(&ctx.stream)
        .send()
        .await
        .map_err(|e| err(aws_sdk_kinesis::error::DisplayErrorContext(e).to_string()))?;
    for shard in shards.shards() {
        let mut iterator = kinesis
            .get_shard_iterator()
            .stream_name(&ctx.stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .map_err(|e| err(aws_sdk_kinesis::error::DisplayErrorContext(e).to_string()))?
            .shard_iterator
            .unwrap_or_default();
        while !iterator.is_empty() {
            let page = kinesis
                .get_records()
                .shard_iterator(&iterator)
                .limit(10_000)
                .send()
                .await
                .map_err(|e| err(aws_sdk_kinesis::error::DisplayErrorContext(e).to_string()))?;
            if page.records().is_empty() {
                break;
            }
            for r in page.records() {
                place.add_line(policy, r.data().as_ref());
            }
            iterator = page.next_shard_iterator.unwrap_or_default();
        }
    }
    Ok(place)
}
