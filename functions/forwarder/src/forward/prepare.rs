//! Step 1: parse and classify every record once, and transform it once per transform profile
//! that an emitter uses.

use std::sync::Arc;

use super::{InputRecord, Slot};
use crate::ForwarderError;
use crate::record::{self, Classified, Prepared, Transform};

/// The batch after step 1.
pub(super) struct PreparedBatch {
    /// Per profile, per record: the transformed record (`None` when malformed, or when no
    /// emitter uses the profile).
    pub prepared: Vec<Arc<Vec<Option<Arc<Prepared>>>>>,
    /// Per record: its classification (`None` when malformed).
    pub classes: Vec<Option<Arc<Classified>>>,
    /// The malformed records: position and why.
    pub malformed: Vec<(usize, ForwarderError)>,
}

/// Parses, classifies and transforms `records` for the profiles the `slots` use.
pub(super) fn prepare(
    profiles: &[Transform],
    slots: &[Slot],
    records: &[InputRecord],
) -> PreparedBatch {
    let n = records.len();
    let mut used = vec![false; profiles.len()];
    for s in slots {
        if let Some(u) = used.get_mut(s.profile) {
            *u = true;
        }
    }
    let used: Vec<usize> = used
        .iter()
        .enumerate()
        .filter(|(_, u)| **u)
        .map(|(i, _)| i)
        .collect();
    let mut prepared: Vec<Vec<Option<Arc<Prepared>>>> = vec![vec![None; n]; profiles.len()];
    let mut classes: Vec<Option<Arc<Classified>>> = vec![None; n];
    let mut malformed = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let parsed =
            record::parse_classify(&r.data, r.source.arrival_ms).and_then(|(raw, class)| {
                let class = Arc::new(class);
                let source = Arc::new(r.source.clone());
                let mut out = Vec::with_capacity(used.len());
                for &p in &used {
                    if let Some(t) = profiles.get(p) {
                        let mut prep = t.prepare(i, class.clone(), raw)?;
                        prep.source = Some(source.clone());
                        out.push((p, Arc::new(prep)));
                    }
                }
                Ok((class, out))
            });
        match parsed {
            Ok((class, out)) => {
                for (p, prep) in out {
                    prepared[p][i] = Some(prep);
                }
                classes[i] = Some(class);
            }
            Err(reason) => malformed.push((i, reason)),
        }
    }
    PreparedBatch {
        prepared: prepared.into_iter().map(Arc::new).collect(),
        classes,
        malformed,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::config::ForwarderConfig;
    use crate::record::Source;
    use crate::replay::MemoryDeadLetters;

    const RECORD: &str = r#"{"timestamp":"2025-02-12T19:27:50.156Z","eventType":"user-event","event":{"id":"e-1","time":1739388470156,"type":"LOGIN","realmId":"r","clientId":"c","userId":"u","ipAddress":"192.0.2.1","details":{"auth_method":"openid-connect","username":"alice"}}}"#;

    fn record(data: &str) -> InputRecord {
        InputRecord {
            source: Source {
                stream: "s".into(),
                shard: "shardId-000000000000".into(),
                sequence_number: "1".into(),
                arrival_ms: 0,
            },
            data: data.as_bytes().to_vec(),
        }
    }

    #[tokio::test]
    async fn each_distinct_filter_redaction_and_format_is_one_profile_computed_once_per_record() {
        let config = ForwarderConfig::parse(
            r#"{"emitters": [
                {"name": "raw", "type": "stdout"},
                {"name": "ocsf-1", "type": "stdout", "format": "ocsf"},
                {"name": "ocsf-2", "type": "stdout", "format": "ocsf"},
                {"name": "ecs", "type": "stdout", "format": "ecs"},
                {"name": "cef", "type": "syslog", "protocol": "TCP", "host": "127.0.0.1", "port": 5514, "format": "cef"}
            ], "redaction": {"fields": ["/event/details/username"]}}"#,
        )
        .unwrap();
        let fwd = crate::build(
            &config,
            None,
            Arc::new(MemoryDeadLetters::default()),
            "dlq/",
        )
        .await
        .unwrap();
        let profiles: Vec<usize> = fwd.slots.iter().map(|s| s.profile).collect();
        assert_eq!(profiles, [0, 1, 1, 2, 3]);
        assert_eq!(fwd.profiles.len(), 4);
        let batch = prepare(&fwd.profiles, &fwd.slots, &[record(RECORD)]);
        let at = |p: usize| batch.prepared[p][0].clone().unwrap();
        let raw = at(0);
        assert_eq!(
            raw.json,
            RECORD.replace(r#""username":"alice""#, r#""username":"<redacted>""#)
        );
        assert_eq!(at(1).value().unwrap()["class_uid"], 3002);
        assert_eq!(at(2).value().unwrap()["event"]["outcome"], "success");
        assert_eq!(at(3).json, raw.json);
        assert!(
            at(3)
                .cef
                .as_deref()
                .unwrap()
                .starts_with("CEF:0|authtrail|MPAS|")
        );
        for p in 0..4 {
            assert_eq!(at(p).doc_id, "e-1");
            assert!(!at(p).json.contains("alice"));
        }
    }
}
