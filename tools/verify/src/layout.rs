//! What an archiver key says: its hour (`{prefix}yyyy/MM/dd/HH/...`) and, from its name
//! (`{stream}-{shardId}-{sequenceNumber}.ext`, parts escaped as the archiver escapes them),
//! its stream and shard.

use authtrail_core::s3key::escape_part;
use chrono::NaiveDate;

/// The start (epoch seconds) of the key hour of `key` under `prefix`, `None` when the key is
/// not `{prefix}yyyy/MM/dd/HH/...`.
pub fn key_hour(prefix: &str, key: &str) -> Option<i64> {
    let rest = key.strip_prefix(prefix)?;
    let path = rest.get(..13)?;
    if rest.as_bytes().get(13) != Some(&b'/') {
        return None;
    }
    let mut parts = path.split('/');
    let (y, m, d, h) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if [y.len(), m.len(), d.len(), h.len()] != [4, 2, 2, 2] {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)?;
    let time = date.and_hms_opt(h.parse().ok()?, 0, 0)?;
    Some(time.and_utc().timestamp())
}

/// The `{prefix}yyyy/MM/dd/HH` of the hour starting at `hour` (epoch seconds): every key of
/// that hour or a later one sorts after it, every key of an earlier hour before it.
pub fn hour_start_after(prefix: &str, hour: i64) -> String {
    let t = authtrail_core::s3key::utc_from_epoch_seconds(hour);
    format!("{prefix}{}", t.format("%Y/%m/%d/%H"))
}

/// The shard a key's name belongs to: `(stream, shard)` as they appear in keys (escaped).
pub fn key_shard(key: &str) -> Option<(String, String)> {
    let name = key.rsplit('/').next()?;
    let at = name.rfind("-shardId-")?;
    let stream = &name[..at];
    let rest = &name[at + 1..];
    // shardId-000000000000-<digits>.ext
    let shard_end = rest["shardId-".len()..].find('-')? + "shardId-".len();
    Some((stream.to_string(), rest[..shard_end].to_string()))
}

/// Whether `key`'s name belongs to `stream` (given unescaped, as a user types it).
pub fn key_of_stream(key: &str, stream: &str) -> bool {
    key_shard(key).is_some_and(|(s, _)| s == escape_part(stream))
}

/// The key of a shard's state object (stream and shard as they appear in keys).
pub fn state_key(state_prefix: &str, stream: &str, shard: &str) -> String {
    format!("{state_prefix}{stream}-{shard}.json")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_hour_comes_from_the_path_after_the_prefix() {
        assert_eq!(
            key_hour(
                "raw/",
                "raw/2025/02/12/19/a-shardId-000000000000-1.jsonl.gz"
            ),
            Some(1_739_386_800)
        );
        assert_eq!(key_hour("raw/", "errors/2025/02/12/19/x"), None);
        assert_eq!(key_hour("raw/", "raw/2025/02/12/x9/y"), None);
        assert_eq!(key_hour("raw/", "raw/2025/02/12/19"), None);
        assert_eq!(
            hour_start_after("digests/", 1_739_386_800),
            "digests/2025/02/12/19"
        );
    }

    #[test]
    fn stream_and_shard_come_from_the_name_even_with_dashes_in_the_stream() {
        let key = "raw/2025/02/12/19/my-audit-events-shardId-000000000001-4959.jsonl.gz";
        assert_eq!(
            key_shard(key),
            Some(("my-audit-events".into(), "shardId-000000000001".into()))
        );
        assert!(key_of_stream(key, "my-audit-events"));
        assert!(!key_of_stream(key, "my-audit"));
        assert_eq!(key_shard("raw/2025/02/12/19/other.json"), None);
        assert_eq!(
            state_key("archiver-state/", "s", "shardId-000000000001"),
            "archiver-state/s-shardId-000000000001.json"
        );
    }
}
