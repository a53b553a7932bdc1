//! The digest format: signed, chained lists of the objects the archiver wrote, one per shard
//! and hour, so that a verifier can prove that no archive object was altered, removed or added
//! (README, "Digests", documents every field).
//!
//! Pure: the document types, the key layout, what is signed, hashing, and the signature check
//! that both the archiver's tests and `authtrail-verify` use. No I/O here.

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use authtrail_core::s3key::hourly_key;

/// Version of the digest document written by this archiver.
pub const DIGEST_VERSION: u32 = 1;

/// What is signed: this line, then the lower-case hex SHA-256 of the digest object's bytes.
pub const SIGNED_PREFIX: &str = "authtrail-digest-1\n";

/// Metadata name (`x-amz-meta-signature`) of a digest's signature, base64 of the bytes that
/// KMS `Sign` returned (DER for ECDSA).
pub const META_SIGNATURE: &str = "signature";

/// Metadata name on archive and error objects: the last sequence number of the previous object
/// of the same shard and kind (absent on the first object of a chain).
pub const META_PREVIOUS_LAST: &str = "previous-last-sequence-number";

/// Which prefix an object lives under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// An archive object (`ARCHIVE_PREFIX`).
    Archive,
    /// A poison-record object (`ARCHIVE_ERROR_PREFIX`).
    Errors,
}

impl ObjectKind {
    /// The name used in digests and findings.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Archive => "archive",
            ObjectKind::Errors => "errors",
        }
    }
}

/// A link to a digest: its key and the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestLink {
    /// Key of the digest object.
    pub key: String,
    /// Lower-case hex SHA-256 of the digest object's bytes.
    pub sha256: String,
}

/// One archive or error object as a digest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestObject {
    /// The object's key.
    pub key: String,
    /// Archive or error object.
    pub kind: ObjectKind,
    /// Lower-case hex SHA-256 of the stored bytes (as compressed).
    pub sha256: String,
    /// Size of the stored bytes.
    pub size: u64,
    /// Records (lines) in the object.
    pub record_count: u64,
    /// Sequence number of its first record.
    pub first_sequence_number: String,
    /// Sequence number of its last record.
    pub last_sequence_number: String,
    /// Last sequence number of the previous object of the same shard and kind; `None` for the
    /// first object the archiver recorded for that shard and kind.
    pub previous_last_sequence_number: Option<String>,
}

/// A digest: the objects of one shard whose key hour is `hour`, stored since the previous
/// digest of the shard, chained to that digest and signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Digest {
    /// [`DIGEST_VERSION`].
    pub version: u32,
    /// Stream name.
    pub stream: String,
    /// Shard id.
    pub shard_id: String,
    /// The key hour of every listed object, `yyyy-MM-ddTHH:00:00Z`.
    pub hour: String,
    /// When the digest was made (UTC, RFC 3339).
    pub created_at: String,
    /// The KMS key (as configured: id, ARN or alias) that signed it.
    pub signing_key_id: String,
    /// The KMS signing algorithm, such as `ECDSA_SHA_256`.
    pub signature_algorithm: String,
    /// The shard's previous digest; `None` for its first.
    pub previous_digest: Option<DigestLink>,
    /// Lowest first sequence number among the listed objects.
    pub first_sequence_number: String,
    /// Highest last sequence number among the listed objects.
    pub last_sequence_number: String,
    /// The objects, archive objects first, each kind in sequence order; empty in a heartbeat
    /// digest (an hour without objects).
    pub objects: Vec<DigestObject>,
    /// The shard's chain has a digest for every hour from this one on (a heartbeat digest for
    /// an hour without objects) until a digest marked `shardEnded`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub hourly: bool,
    /// The shard is closed (resharded) and this is its last heartbeat: none follows.
    #[serde(default, skip_serializing_if = "is_false")]
    pub shard_ended: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The last part of a heartbeat digest's key name, in place of a sequence number.
pub const HEARTBEAT_NAME: &str = "heartbeat";

impl Digest {
    /// The key this digest must be filed under ([`digest_key`], or [`heartbeat_key`] when it
    /// lists no object); `None` when its `hour` does not parse.
    pub fn expected_key(&self, prefix: &str) -> Option<String> {
        let hour = DateTime::parse_from_rfc3339(&self.hour).ok()?.to_utc();
        Some(if self.objects.is_empty() {
            heartbeat_key(prefix, hour, &self.stream, &self.shard_id)
        } else {
            digest_key(
                prefix,
                hour,
                &self.stream,
                &self.shard_id,
                &self.first_sequence_number,
            )
        })
    }
}

/// The key of a heartbeat digest: `{prefix}{yyyy}/{MM}/{dd}/{HH}/{stream}-{shardId}-heartbeat.json`.
pub fn heartbeat_key(prefix: &str, hour: DateTime<Utc>, stream: &str, shard: &str) -> String {
    hourly_key(prefix, hour, &[stream, shard, HEARTBEAT_NAME], ".json")
}

/// The key of a digest: `{prefix}{yyyy}/{MM}/{dd}/{HH}/{stream}-{shardId}-{firstSequenceNumber}.json`,
/// `HH` the key hour of the objects it lists, the sequence number the lowest it lists.
pub fn digest_key(
    prefix: &str,
    hour: DateTime<Utc>,
    stream: &str,
    shard: &str,
    first_seq: &str,
) -> String {
    hourly_key(prefix, hour, &[stream, shard, first_seq], ".json")
}

/// `yyyy-MM-ddTHH:00:00Z` of the hour starting at `epoch_hour` (epoch seconds).
pub fn hour_text(epoch_hour: i64) -> String {
    authtrail_core::s3key::utc_from_epoch_seconds(epoch_hour)
        .format("%Y-%m-%dT%H:00:00Z")
        .to_string()
}

/// The start of the UTC hour holding `epoch_seconds`.
pub fn hour_of(epoch_seconds: i64) -> i64 {
    epoch_seconds.div_euclid(3600) * 3600
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
}

/// Base64 SHA-256 of `data`, as S3's `x-amz-checksum-sha256` carries it.
pub fn sha256_base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
}

/// Lower-case hex and base64 of the SHA-256 of `data`, hashing it once.
pub fn sha256_hex_and_base64(data: &[u8]) -> (String, String) {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    (
        hex::encode(d.as_ref()),
        base64::engine::general_purpose::STANDARD.encode(d.as_ref()),
    )
}

/// The hex SHA-256 in an S3 `x-amz-checksum-sha256` value; `None` for a composite checksum
/// of a multipart upload (`...-N`), which is not the hash of the whole object, or a value that
/// is not base64 of 32 bytes.
pub fn hex_from_s3_checksum(value: &str) -> Option<String> {
    if value.contains('-') {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()?;
    (bytes.len() == 32).then(|| hex::encode(bytes))
}

/// The message signed for a digest whose bytes are `body`: [`SIGNED_PREFIX`] and the hex
/// SHA-256 of `body` (KMS `Sign` with `MessageType: RAW`; the signature algorithm hashes it).
pub fn signed_message(body: &[u8]) -> String {
    format!("{SIGNED_PREFIX}{}", sha256_hex(body))
}

/// The KMS signing algorithms the archiver signs with and a verifier checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    /// `ECDSA_SHA_256` (key spec `ECC_NIST_P256`), the default.
    EcdsaSha256,
    /// `ECDSA_SHA_384` (key spec `ECC_NIST_P384`).
    EcdsaSha384,
    /// `RSASSA_PSS_SHA_256` (RSA key specs; salt of 32 bytes, as KMS uses).
    RsassaPssSha256,
    /// `RSASSA_PKCS1_V1_5_SHA_256` (RSA key specs).
    RsassaPkcs1V15Sha256,
}

impl SigningAlgorithm {
    /// Every supported algorithm.
    pub const ALL: [SigningAlgorithm; 4] = [
        SigningAlgorithm::EcdsaSha256,
        SigningAlgorithm::EcdsaSha384,
        SigningAlgorithm::RsassaPssSha256,
        SigningAlgorithm::RsassaPkcs1V15Sha256,
    ];

    /// The KMS name.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::EcdsaSha256 => "ECDSA_SHA_256",
            SigningAlgorithm::EcdsaSha384 => "ECDSA_SHA_384",
            SigningAlgorithm::RsassaPssSha256 => "RSASSA_PSS_SHA_256",
            SigningAlgorithm::RsassaPkcs1V15Sha256 => "RSASSA_PKCS1_V1_5_SHA_256",
        }
    }

    /// The algorithm of a KMS name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    fn verification(self) -> &'static dyn VerificationAlgorithm {
        match self {
            SigningAlgorithm::EcdsaSha256 => &signature::ECDSA_P256_SHA256_ASN1,
            SigningAlgorithm::EcdsaSha384 => &signature::ECDSA_P384_SHA384_ASN1,
            SigningAlgorithm::RsassaPssSha256 => &signature::RSA_PSS_2048_8192_SHA256,
            SigningAlgorithm::RsassaPkcs1V15Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        }
    }

    /// Whether `signature` is this algorithm's signature of `message` by the key whose
    /// DER `SubjectPublicKeyInfo` (what KMS `GetPublicKey` returns) is `public_key`.
    pub fn verify(self, public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(self.verification(), public_key)
            .verify(message, signature)
            .is_ok()
    }
}

/// Whether the digest bytes `body` carry a valid `signature` (the bytes of
/// [`META_SIGNATURE`], decoded) by `public_key` under `algorithm`.
pub fn verify_digest(
    algorithm: SigningAlgorithm,
    public_key: &[u8],
    body: &[u8],
    signature: &[u8],
) -> bool {
    algorithm.verify(public_key, signed_message(body).as_bytes(), signature)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::signer::{DigestSigner, LocalSigner};

    #[test]
    fn the_signed_message_is_the_prefix_and_the_hex_sha256_of_the_bytes() {
        assert_eq!(
            signed_message(b"abc"),
            "authtrail-digest-1\nba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn s3_checksums_convert_to_hex_and_composite_ones_are_refused() {
        let b64 = sha256_base64(b"hello world");
        assert_eq!(b64, "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=");
        assert_eq!(
            hex_from_s3_checksum(&b64).unwrap(),
            sha256_hex(b"hello world")
        );
        assert_eq!(hex_from_s3_checksum(&format!("{b64}-3")), None);
        assert_eq!(hex_from_s3_checksum("not base64!"), None);
    }

    #[test]
    fn digest_keys_are_hourly_with_stream_shard_and_first_sequence_number() {
        let hour = authtrail_core::s3key::utc_from_epoch_seconds(1_739_386_800);
        assert_eq!(
            digest_key("digests/", hour, "events", "shardId-000000000001", "4959"),
            "digests/2025/02/12/19/events-shardId-000000000001-4959.json"
        );
        assert_eq!(hour_text(1_739_386_800), "2025-02-12T19:00:00Z");
        assert_eq!(hour_of(1_739_388_470), 1_739_386_800);
    }

    #[test]
    fn algorithm_names_round_trip() {
        for a in SigningAlgorithm::ALL {
            assert_eq!(SigningAlgorithm::from_name(a.as_str()), Some(a));
        }
        assert_eq!(SigningAlgorithm::from_name("SM2DSA"), None);
    }

    #[tokio::test]
    async fn a_signed_digest_verifies_and_any_changed_byte_does_not() {
        let signer = LocalSigner::generate().unwrap();
        let body = br#"{"version":1}"#;
        let sig = signer.sign(signed_message(body).as_bytes()).await.unwrap();
        let key = signer.public_key_der();
        assert!(verify_digest(signer.algorithm(), key, body, &sig));
        assert!(!verify_digest(
            signer.algorithm(),
            key,
            br#"{"version":2}"#,
            &sig
        ));
        let other = LocalSigner::generate().unwrap();
        assert!(!verify_digest(
            signer.algorithm(),
            other.public_key_der(),
            body,
            &sig
        ));
    }
}
