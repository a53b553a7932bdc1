//! Signing digests: the capability ([`DigestSigner`]), AWS KMS `Sign` ([`KmsSigner`]) and an
//! in-process key for tests and offline checks of the format ([`LocalSigner`]).

use std::future::Future;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};

use crate::digest::SigningAlgorithm;
use crate::error::ArchiveError;

/// What the archiver asks of a signing key.
pub trait DigestSigner: Send + Sync {
    /// The key as named in digests (`signingKeyId`).
    fn key_id(&self) -> &str;

    /// The algorithm it signs with.
    fn algorithm(&self) -> SigningAlgorithm;

    /// The signature of `message` (at most 4096 bytes: KMS signs raw messages up to that size).
    fn sign(&self, message: &[u8]) -> impl Future<Output = Result<Vec<u8>, ArchiveError>> + Send;
}

/// The signer of an archiver without digests: it refuses to sign.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSigner;

impl DigestSigner for NoSigner {
    fn key_id(&self) -> &str {
        ""
    }

    fn algorithm(&self) -> SigningAlgorithm {
        SigningAlgorithm::EcdsaSha256
    }

    async fn sign(&self, _message: &[u8]) -> Result<Vec<u8>, ArchiveError> {
        Err(ArchiveError::Sign {
            key_id: "(none)".into(),
            message: "no signing key is configured".into(),
        })
    }
}

/// [`DigestSigner`] on an asymmetric AWS KMS key (`kms:Sign`, `MessageType: RAW`).
#[derive(Debug, Clone)]
pub struct KmsSigner {
    client: aws_sdk_kms::Client,
    key_id: String,
    algorithm: SigningAlgorithm,
}

impl KmsSigner {
    /// A signer using `key_id` (key id, key ARN, alias name or alias ARN).
    pub fn new(
        client: aws_sdk_kms::Client,
        key_id: impl Into<String>,
        algorithm: SigningAlgorithm,
    ) -> Self {
        Self {
            client,
            key_id: key_id.into(),
            algorithm,
        }
    }
}

fn kms_algorithm(a: SigningAlgorithm) -> SigningAlgorithmSpec {
    match a {
        SigningAlgorithm::EcdsaSha256 => SigningAlgorithmSpec::EcdsaSha256,
        SigningAlgorithm::EcdsaSha384 => SigningAlgorithmSpec::EcdsaSha384,
        SigningAlgorithm::RsassaPssSha256 => SigningAlgorithmSpec::RsassaPssSha256,
        SigningAlgorithm::RsassaPkcs1V15Sha256 => SigningAlgorithmSpec::RsassaPkcs1V15Sha256,
    }
}

impl DigestSigner for KmsSigner {
    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ArchiveError> {
        let failed = |message: String| ArchiveError::Sign {
            key_id: self.key_id.clone(),
            message,
        };
        let out = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(Blob::new(message))
            .message_type(MessageType::Raw)
            .signing_algorithm(kms_algorithm(self.algorithm))
            .send()
            .await
            .map_err(|e| failed(authtrail_core::error_chain(&e)))?;
        out.signature()
            .map(|s| s.as_ref().to_vec())
            .ok_or_else(|| failed("KMS returned no signature".into()))
    }
}

/// [`DigestSigner`] on an ECDSA P-256 key held in memory (`ECDSA_SHA_256`), for tests and for
/// checking the digest format without KMS. Its key id is `local`.
pub struct LocalSigner {
    key: EcdsaKeyPair,
    public_der: Vec<u8>,
}

impl std::fmt::Debug for LocalSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSigner").finish_non_exhaustive()
    }
}

impl LocalSigner {
    /// A new random key.
    pub fn generate() -> Result<Self, ArchiveError> {
        let failed = |what: &str| ArchiveError::Sign {
            key_id: "local".into(),
            message: what.into(),
        };
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)
            .map_err(|_| failed("generating a P-256 key failed"))?;
        let public_der = key
            .public_key()
            .as_der()
            .map_err(|_| failed("encoding the public key failed"))?
            .as_ref()
            .to_vec();
        Ok(Self { key, public_der })
    }

    /// The public key, DER `SubjectPublicKeyInfo` (as KMS `GetPublicKey` returns it).
    pub fn public_key_der(&self) -> &[u8] {
        &self.public_der
    }
}

impl DigestSigner for LocalSigner {
    fn key_id(&self) -> &str {
        "local"
    }

    fn algorithm(&self) -> SigningAlgorithm {
        SigningAlgorithm::EcdsaSha256
    }

    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ArchiveError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.key
            .sign(&rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| ArchiveError::Sign {
                key_id: "local".into(),
                message: "signing failed".into(),
            })
    }
}
