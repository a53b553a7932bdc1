//! Object keys: the Security Lake partition layout of custom sources for data objects, the
//! archiver's hourly layout for error objects, one state object per shard.
//!
//! ```text
//! ext/{sourceName}/region={region}/accountId={accountId}/eventDay={YYYYMMDD}/{stream}-{shardId}-{firstSequenceNumber}.parquet
//! {errorPrefix}{yyyy}/{MM}/{dd}/{HH}/{stream}-{shardId}-{firstSequenceNumber}.jsonl
//! {statePrefix}{stream}-{shardId}.json
//! ```
//!
//! The file name depends only on the object's first record, so a retried batch collides with
//! the object already written, on purpose (see [`crate::writer`]). Parts are escaped with
//! core's [`escape_part`], which leaves real stream names, shard ids and sequence numbers as
//! they are.

use authtrail_core::s3key::{escape_part, hourly_key, utc_from_epoch_seconds};

use crate::config::Config;
use crate::schema::OcsfClass;

/// The prefix Security Lake gives custom sources in its bucket.
pub const CUSTOM_SOURCE_ROOT: &str = "ext/";

/// `ext/{sourceName}/region={region}/accountId={accountId}/eventDay={YYYYMMDD}/`: the partition
/// of `class`'s rows of `day`.
pub fn partition(config: &Config, class: OcsfClass, day: u32) -> String {
    format!(
        "{CUSTOM_SOURCE_ROOT}{}/region={}/accountId={}/eventDay={day:08}/",
        config.source_name(class),
        config.region,
        config.account_id
    )
}

/// The key of a data object whose first record is `seq`.
pub fn data_key(
    config: &Config,
    class: OcsfClass,
    day: u32,
    stream: &str,
    shard: &str,
    seq: &str,
) -> String {
    format!(
        "{}{}-{}-{}.parquet",
        partition(config, class, day),
        escape_part(stream),
        escape_part(shard),
        escape_part(seq)
    )
}

/// The key of an error object whose first poison record is `seq` and arrived at `arrival`
/// (epoch seconds).
pub fn error_key(config: &Config, stream: &str, shard: &str, seq: &str, arrival: i64) -> String {
    hourly_key(
        &config.error_prefix,
        utc_from_epoch_seconds(arrival),
        &[stream, shard, seq],
        ".jsonl",
    )
}

/// The key of a shard's state object.
pub fn state_key(config: &Config, stream: &str, shard: &str) -> String {
    format!(
        "{}{}-{}.json",
        config.state_prefix,
        escape_part(stream),
        escape_part(shard)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::new(
            "aws-security-data-lake-eu-west-1-abc",
            "eu-west-1",
            "123456789012",
            "work",
        )
    }

    #[test]
    fn data_keys_follow_the_custom_source_partition_layout() {
        let k = data_key(
            &config(),
            OcsfClass::Authentication,
            20250212,
            "authtrail-events",
            "shardId-000000000000",
            "49590338271490256608559692538361571095921575989136588898",
        );
        assert_eq!(
            k,
            "ext/authtrail-auth/region=eu-west-1/accountId=123456789012/eventDay=20250212/\
             authtrail-events-shardId-000000000000-49590338271490256608559692538361571095921575989136588898.parquet"
        );
    }

    #[test]
    fn error_and_state_keys_live_under_their_own_prefixes() {
        let c = config();
        assert_eq!(
            error_key(&c, "s", "shardId-1", "42", 1_739_388_470),
            "securitylake-errors/2025/02/12/19/s-shardId-1-42.jsonl"
        );
        assert_eq!(
            state_key(&c, "s", "shardId-1"),
            "securitylake-state/s-shardId-1.json"
        );
        assert_eq!(state_key(&c, "a b", "x"), "securitylake-state/a%20b-x.json");
    }
}
