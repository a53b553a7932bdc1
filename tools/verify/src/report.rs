//! Findings and the report: what a verification found, as text for people and JSON
//! (`--json`) for machines.

use std::collections::BTreeSet;
use std::fmt::Write;

use serde::Serialize;

/// What is wrong, by name (the names are stable: scripts and alarms match on them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// A digest lists the object; the bucket does not hold it.
    ObjectDeleted,
    /// The object's bytes are not those whose SHA-256 (or size) its digest lists.
    ObjectModified,
    /// An archive or error object of the range that no digest lists (and the shard state does
    /// not expect).
    ObjectAdded,
    /// A digest that the chain (or the shard state) names is not in the bucket.
    DigestDeleted,
    /// A digest whose signature does not verify, that does not parse, that is filed under a
    /// key its contents do not give, or whose bytes are not those its successor names.
    DigestAltered,
    /// An object names a previous object (by its last sequence number) that no digest lists.
    ShardGap,
    /// An hour of a shard's hourly chain, older than the close delay, has no digest (neither
    /// one listing objects nor a heartbeat): the newest digests deleted, or a close never ran.
    DigestMissing,
}

impl FindingKind {
    /// The name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::ObjectDeleted => "object-deleted",
            FindingKind::ObjectModified => "object-modified",
            FindingKind::ObjectAdded => "object-added",
            FindingKind::DigestDeleted => "digest-deleted",
            FindingKind::DigestAltered => "digest-altered",
            FindingKind::ShardGap => "shard-gap",
            FindingKind::DigestMissing => "digest-missing",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// What is wrong.
    pub finding: FindingKind,
    /// The object or digest concerned.
    pub key: String,
    /// Its stream, when known (as in keys).
    pub stream: Option<String>,
    /// Its shard, when known.
    pub shard: Option<String>,
    /// The evidence, in words.
    pub detail: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The bucket.
    pub bucket: String,
    /// The stream verified (`None`: every stream in the bucket).
    pub stream: Option<String>,
    /// First hour of the range (RFC 3339).
    pub from: String,
    /// First hour after the range (RFC 3339).
    pub to: String,
    /// Digests of the range checked.
    pub digests: usize,
    /// Objects the range's digests list, checked.
    pub objects: usize,
    /// Objects of the range written but not yet in a digest (the shard state lists them:
    /// their hour has not closed).
    pub pending: usize,
    /// Shards seen.
    pub shards: usize,
    /// What is wrong, sorted; empty when the range is intact.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Adds a finding once (the same kind for the same key is kept once).
    pub fn add(&mut self, finding: Finding) {
        if !self
            .findings
            .iter()
            .any(|f| f.finding == finding.finding && f.key == finding.key)
        {
            self.findings.push(finding);
        }
    }

    /// The distinct kinds found.
    pub fn kinds(&self) -> BTreeSet<FindingKind> {
        self.findings.iter().map(|f| f.finding).collect()
    }

    /// The report for people: one summary line, then one line per finding (at most `max`).
    pub fn render(&self, max: usize) -> String {
        let mut out = String::new();
        let what = self.stream.as_deref().unwrap_or("all streams");
        let _ = writeln!(
            out,
            "s3://{} ({what}) {} .. {}: {} digests, {} objects, {} pending, {} shards",
            self.bucket, self.from, self.to, self.digests, self.objects, self.pending, self.shards
        );
        if self.findings.is_empty() {
            out.push_str("intact: every digest verifies and chains, every listed object is as listed, nothing unlisted, no gap\n");
            return out;
        }
        let _ = writeln!(out, "{} findings:", self.findings.len());
        for f in self.findings.iter().take(max) {
            let place = match (&f.stream, &f.shard) {
                (Some(s), Some(h)) => format!(" [{s} {h}]"),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "  {:<16} {}{place}: {}",
                f.finding.as_str(),
                f.key,
                f.detail
            );
        }
        if self.findings.len() > max {
            let _ = writeln!(out, "  ... {} more", self.findings.len() - max);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn finding(kind: FindingKind, key: &str) -> Finding {
        Finding {
            finding: kind,
            key: key.into(),
            stream: Some("audit".into()),
            shard: Some("shardId-000000000000".into()),
            detail: "d".into(),
        }
    }

    #[test]
    fn findings_are_named_in_json_as_documented_and_kept_once() {
        let mut r = Report::default();
        r.add(finding(FindingKind::ObjectDeleted, "raw/a"));
        r.add(finding(FindingKind::ObjectDeleted, "raw/a"));
        r.add(finding(FindingKind::ShardGap, "raw/b"));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["findings"].as_array().unwrap().len(), 2);
        assert_eq!(v["findings"][0]["finding"], "object-deleted");
        assert_eq!(v["findings"][1]["finding"], "shard-gap");
        for k in [
            FindingKind::ObjectDeleted,
            FindingKind::ObjectModified,
            FindingKind::ObjectAdded,
            FindingKind::DigestDeleted,
            FindingKind::DigestAltered,
            FindingKind::ShardGap,
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }

    #[test]
    fn the_text_says_intact_or_lists_the_findings() {
        let mut r = Report {
            bucket: "b".into(),
            ..Report::default()
        };
        assert!(r.render(10).contains("intact"));
        r.add(finding(FindingKind::DigestAltered, "digests/x.json"));
        let text = r.render(10);
        assert!(text.contains("1 findings"), "{text}");
        assert!(
            text.contains("digest-altered   digests/x.json [audit shardId-000000000000]: d"),
            "{text}"
        );
    }
}
