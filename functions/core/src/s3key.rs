//! Hour-partitioned S3 keys: `{prefix}{yyyy}/{MM}/{dd}/{HH}/{part}-{part}-...{extension}`.
//!
//! Each part is escaped with [`escape_part`]: bytes outside `[A-Za-z0-9._-]` are
//! percent-encoded, `%` included, so two different parts never give the same text (`a b` is
//! `a%20b`, `a_b` stays `a_b`). Real stream names (`[A-Za-z0-9_.-]`), shard ids
//! (`shardId-000000000000`) and sequence numbers (digits) are left exactly as they are, so
//! the archive keys of Contract 2 do not change.

use std::borrow::Cow;
use std::fmt::Write;

use chrono::{DateTime, Utc};

/// Whether `b` is kept as it is in a key part.
fn is_kept(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// `part` with every byte outside `[A-Za-z0-9._-]` written as `%XX` (upper-case hex). The
/// result is borrowed when nothing needed escaping. Injective: different parts give
/// different results.
pub fn escape_part(part: &str) -> Cow<'_, str> {
    if part.bytes().all(is_kept) {
        return Cow::Borrowed(part);
    }
    let mut out = String::with_capacity(part.len() + 8);
    for b in part.bytes() {
        if is_kept(b) {
            out.push(char::from(b));
        } else {
            // Writing into a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    Cow::Owned(out)
}

/// `yyyy/MM/dd/HH` of `time`.
pub fn hour_path(time: DateTime<Utc>) -> String {
    time.format("%Y/%m/%d/%H").to_string()
}

/// The UTC time of an epoch second; out-of-range values give the epoch (no real record has
/// one).
pub fn utc_from_epoch_seconds(epoch_seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(epoch_seconds, 0).unwrap_or_default()
}

/// `{prefix}{yyyy}/{MM}/{dd}/{HH}/{parts joined by '-'}{extension}`, each part escaped with
/// [`escape_part`]; `prefix` and `extension` are written as given (`raw/`, `.jsonl.gz`).
pub fn hourly_key(prefix: &str, time: DateTime<Utc>, parts: &[&str], extension: &str) -> String {
    let mut key = String::with_capacity(
        prefix.len() + 14 + parts.iter().map(|p| p.len() + 1).sum::<usize>() + extension.len(),
    );
    key.push_str(prefix);
    // Writing into a String cannot fail.
    let _ = write!(key, "{}/", time.format("%Y/%m/%d/%H"));
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push('-');
        }
        key.push_str(&escape_part(part));
    }
    key.push_str(extension);
    key
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use chrono::TimeZone;

    fn t() -> DateTime<Utc> {
        // 2025-02-12T19:27:50Z
        utc_from_epoch_seconds(1_739_388_470)
    }

    #[test]
    fn real_stream_shard_and_sequence_numbers_are_kept_byte_for_byte() {
        let key = hourly_key(
            "raw/",
            t(),
            &[
                "authtrail-events",
                "shardId-000000000000",
                "49590338271490256608559692538361571095921575989136588898",
            ],
            ".jsonl.gz",
        );
        assert_eq!(
            key,
            "raw/2025/02/12/19/authtrail-events-shardId-000000000000-49590338271490256608559692538361571095921575989136588898.jsonl.gz"
        );
        assert!(matches!(escape_part("My_Stream.v2-eu"), Cow::Borrowed(_)));
    }

    #[test]
    fn escaping_is_injective_where_replacing_was_not() {
        assert_eq!(escape_part("a b"), "a%20b");
        assert_eq!(escape_part("a_b"), "a_b");
        assert_ne!(escape_part("a b"), escape_part("a_b"));
        assert_eq!(escape_part("a%20b"), "a%2520b");
        assert_ne!(escape_part("a%20b"), escape_part("a b"));
        assert_eq!(escape_part("x/y:z"), "x%2Fy%3Az");
        assert_eq!(escape_part("é"), "%C3%A9");
        assert_eq!(escape_part(""), "");
    }

    #[test]
    fn escaped_parts_decode_back_to_the_original() {
        let decode = |s: &str| {
            let b = s.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                    i += 3;
                } else {
                    out.push(b[i]);
                    i += 1;
                }
            }
            String::from_utf8(out).unwrap()
        };
        for s in [
            "a b",
            "a_b",
            "100%",
            "x/y",
            "tab\there",
            "ünï",
            "~!*'()",
            "-._",
        ] {
            assert_eq!(decode(&escape_part(s)), s);
        }
    }

    #[test]
    fn hour_is_the_utc_hour_of_the_time() {
        assert_eq!(hour_path(t()), "2025/02/12/19");
        let midnight = Utc.with_ymd_and_hms(2024, 12, 31, 23, 59, 59).unwrap();
        assert_eq!(hour_path(midnight), "2024/12/31/23");
        assert_eq!(hour_path(utc_from_epoch_seconds(i64::MAX)), "1970/01/01/00");
        assert_eq!(
            hourly_key("dlq/", t(), &["s", "shard 1", "7", "siem"], ".json"),
            "dlq/2025/02/12/19/s-shard%201-7-siem.json"
        );
    }
}
