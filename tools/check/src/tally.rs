//! Event identity ([`KeyPolicy`]) and what one source holds ([`Tally`]): envelopes, ledger
//! entries and wrapped envelopes counted by identity; other producers' records and unreadable
//! lines counted apart.

use std::collections::HashMap;
use std::io::{BufRead, Read};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The fields (JSON pointers into the Keycloak event) left out of the content hash: the
/// documented default redactions of both event kinds, plus `id`.
pub const DEFAULT_HASH_IGNORE: &[&str] = &[
    "/id",
    "/ipAddress",
    "/details/username",
    "/authDetails/ipAddress",
    "/representation",
];

/// How event identities are computed.
#[derive(Debug, Clone)]
pub struct KeyPolicy {
    ignore: Vec<Vec<String>>,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        Self::new(DEFAULT_HASH_IGNORE.iter().map(|s| s.to_string()))
    }
}

impl KeyPolicy {
    /// `ignore`: JSON pointers into the event to leave out of the content hash.
    pub fn new(ignore: impl IntoIterator<Item = String>) -> Self {
        let ignore = ignore
            .into_iter()
            .filter_map(|p| {
                p.strip_prefix('/').map(|rest| {
                    rest.split('/')
                        .map(|t| t.replace("~1", "/").replace("~0", "~"))
                        .collect()
                })
            })
            .collect();
        Self { ignore }
    }

    /// The identity of an event of kind `kind` (`user-event` / `admin-event`).
    pub fn key(&self, kind: &str, event: &Value) -> String {
        if let Some(id) = event.get("id").and_then(Value::as_str) {
            return format!("{kind}:{id}");
        }
        let mut copy = event.clone();
        for path in &self.ignore {
            remove_path(&mut copy, path);
        }
        let digest = Sha256::digest(copy.to_string().as_bytes());
        format!("{kind}#{}", hex::encode(digest))
    }
}

/// Removes the member at `path` (object keys), if there is one.
fn remove_path(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = value;
    for token in parents {
        cur = match cur.get_mut(token.as_str()) {
            Some(next) => next,
            None => return,
        };
    }
    if let Some(map) = cur.as_object_mut() {
        map.remove(last.as_str());
    }
}

/// What one source holds: per identity, how many times and when.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// The source's name (`expected`, `archive`, a SIEM's name, `dead-letter`).
    pub name: String,
    /// Per identity: how many times, and the event time.
    pub(crate) counts: HashMap<String, (u32, i64)>,
    /// Records that are JSON but not authtrail envelopes (other producers).
    pub foreign: u64,
    /// Lines that are not JSON at all.
    pub unreadable: u64,
}

impl Tally {
    /// An empty tally called `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            ..Self::default()
        }
    }

    /// Counts one copy of the event `key` (its time is kept from the first copy).
    pub fn add(&mut self, key: String, time_ms: i64) {
        let entry = self.counts.entry(key).or_insert((0, time_ms));
        entry.0 += 1;
    }

    /// Adds one record line: an envelope `{"timestamp","eventType","event"}`, a ledger entry
    /// `{"kind","event",...}`, or an object carrying an envelope in a `msg`/`event` string field
    /// (syslog and HEC samples).
    pub fn add_line(&mut self, policy: &KeyPolicy, line: &[u8]) {
        let line = trim_ascii(line);
        if line.is_empty() {
            return;
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(v) => self.add_value(policy, &v),
            Err(_) => self.unreadable += 1,
        }
    }

    /// Adds one record already parsed (see [`Self::add_line`] for the shapes).
    pub fn add_value(&mut self, policy: &KeyPolicy, v: &Value) {
        if let Some((kind, event)) = envelope_parts(v) {
            let time = event.get("time").and_then(Value::as_i64).unwrap_or(0);
            self.add(policy.key(kind, event), time);
            return;
        }
        // A wrapper whose message is an envelope (syslog JSON, HEC event, ES source).
        for field in ["msg", "message", "event", "_source", "source", "record"] {
            match v.get(field) {
                Some(Value::String(s)) => {
                    if let Ok(inner) = serde_json::from_str::<Value>(s)
                        && envelope_parts(&inner).is_some()
                    {
                        return self.add_value(policy, &inner);
                    }
                }
                Some(inner @ Value::Object(_)) if envelope_parts(inner).is_some() => {
                    return self.add_value(policy, inner);
                }
                _ => {}
            }
        }
        self.foreign += 1;
    }

    /// Reads JSON lines from a reader.
    pub fn read_lines(&mut self, policy: &KeyPolicy, reader: impl Read) -> std::io::Result<()> {
        let mut reader = std::io::BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf)? == 0 {
                return Ok(());
            }
            self.add_line(policy, &buf);
        }
    }

    /// Distinct events.
    pub fn distinct(&self) -> usize {
        self.counts.len()
    }

    /// Event records, copies included.
    pub fn total(&self) -> u64 {
        self.counts.values().map(|(n, _)| u64::from(*n)).sum()
    }

    /// A tally with each distinct event of this one once, under another name.
    pub fn distinct_copy(&self, name: &str) -> Tally {
        Tally {
            name: name.to_string(),
            counts: self
                .counts
                .iter()
                .map(|(k, (_, t))| (k.clone(), (1, *t)))
                .collect(),
            foreign: 0,
            unreadable: 0,
        }
    }

    /// Copies of the event `key`.
    pub fn count(&self, key: &str) -> u32 {
        self.counts.get(key).map_or(0, |(n, _)| *n)
    }
}

/// `(eventType, event)` of an envelope or a ledger entry.
fn envelope_parts(v: &Value) -> Option<(&str, &Value)> {
    let event = v.get("event").filter(|e| e.is_object())?;
    let kind = v
        .get("eventType")
        .or_else(|| v.get("kind"))
        .and_then(Value::as_str)
        .filter(|k| *k == "user-event" || *k == "admin-event")?;
    Some((kind, event))
}

/// `s` without leading and trailing ASCII whitespace.
fn trim_ascii(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest
        } else {
            break;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::test_lines::envelope;
    use serde_json::json;

    #[test]
    fn events_with_ids_match_by_kind_and_id_whatever_the_redaction() {
        let p = KeyPolicy::default();
        let a = p.key("user-event", &json!({"id": "e1", "ipAddress": "192.0.2.1"}));
        let b = p.key(
            "user-event",
            &json!({"id": "e1", "ipAddress": "<redacted>"}),
        );
        assert_eq!(a, b);
        assert_ne!(a, p.key("admin-event", &json!({"id": "e1"})));
    }

    #[test]
    fn events_without_ids_match_by_content_minus_redacted_fields() {
        let p = KeyPolicy::default();
        let raw = json!({"time": 1, "type": "LOGIN", "ipAddress": "192.0.2.1", "details": {"username": "alice", "auth_method": "x"}});
        let red = json!({"time": 1, "type": "LOGIN", "ipAddress": "<redacted>", "details": {"username": "<redacted>", "auth_method": "x"}});
        assert_eq!(p.key("user-event", &raw), p.key("user-event", &red));
        let other = json!({"time": 2, "type": "LOGIN", "ipAddress": "192.0.2.1", "details": {"username": "alice", "auth_method": "x"}});
        assert_ne!(p.key("user-event", &raw), p.key("user-event", &other));
    }

    #[test]
    fn wrapped_envelopes_in_syslog_or_hec_samples_are_unwrapped() {
        let p = KeyPolicy::default();
        let mut t = Tally::new("syslog");
        let env =
            String::from_utf8(envelope("user-event", json!({"id": "e1", "time": 1}))).unwrap();
        t.add_value(&p, &json!({"msg": env, "severity": "info"}));
        t.add_value(&p, &json!({"time": 1, "event": {"eventType": "user-event", "event": {"id": "e2", "time": 1}}}));
        assert_eq!(t.distinct(), 2);
        assert_eq!(t.foreign, 0);
    }
}
