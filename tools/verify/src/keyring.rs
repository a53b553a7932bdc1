//! The public keys signatures are checked with: given by the operator as files (PEM
//! `PUBLIC KEY` or DER `SubjectPublicKeyInfo`) or fetched from KMS (`GetPublicKey`). Never
//! the key a digest names: anyone able to write to the bucket could name their own.

use std::path::Path;

use authtrail_archiver::digest::{SigningAlgorithm, verify_digest};
use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject;

use crate::VerifyError;

/// One public key and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The file or KMS key it came from.
    pub name: String,
    /// DER `SubjectPublicKeyInfo`.
    pub der: Vec<u8>,
}

/// The keys a digest may be signed with (a rotated key: give the old and the new one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRing {
    keys: Vec<PublicKey>,
}

impl KeyRing {
    /// An empty key ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key.
    pub fn add(&mut self, name: impl Into<String>, der: Vec<u8>) {
        self.keys.push(PublicKey {
            name: name.into(),
            der,
        });
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds the key in `path`: PEM (`-----BEGIN PUBLIC KEY-----`) or DER.
    pub fn add_file(&mut self, path: &Path) -> Result<(), VerifyError> {
        let failed = |detail: String| VerifyError::PublicKeyFile {
            path: path.display().to_string(),
            detail,
        };
        let bytes = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
        let der = if bytes.starts_with(b"-----BEGIN") {
            SubjectPublicKeyInfoDer::from_pem_slice(&bytes)
                .map_err(|e| failed(format!("not a PEM PUBLIC KEY: {e:?}")))?
                .as_ref()
                .to_vec()
        } else {
            bytes
        };
        self.add(path.display().to_string(), der);
        Ok(())
    }

    /// Adds the public key of the KMS key `key_id` (`kms:GetPublicKey`).
    pub async fn add_kms(
        &mut self,
        client: &aws_sdk_kms::Client,
        key_id: &str,
    ) -> Result<(), VerifyError> {
        let failed = |detail: String| VerifyError::Kms {
            key_id: key_id.to_string(),
            detail,
        };
        let out = client
            .get_public_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| failed(authtrail_core::error_chain(&e)))?;
        let der = out
            .public_key()
            .ok_or_else(|| failed("no public key in the answer".into()))?;
        self.add(format!("kms:{key_id}"), der.as_ref().to_vec());
        Ok(())
    }

    /// The name of the key that signed `body` (`signature` under `algorithm`), if any did.
    pub fn signer_of(
        &self,
        algorithm: SigningAlgorithm,
        body: &[u8],
        signature: &[u8],
    ) -> Option<&str> {
        self.keys
            .iter()
            .find(|k| verify_digest(algorithm, &k.der, body, signature))
            .map(|k| k.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use authtrail_archiver::digest::signed_message;
    use authtrail_archiver::{DigestSigner, LocalSigner};
    use base64::Engine;

    fn pem(der: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }

    #[tokio::test]
    async fn a_pem_or_der_file_checks_the_signature_of_its_key_only() {
        let signer = LocalSigner::generate().unwrap();
        let other = LocalSigner::generate().unwrap();
        let dir = std::env::temp_dir().join(format!("verify-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pem_path = dir.join("digests.pem");
        std::fs::write(&pem_path, pem(signer.public_key_der())).unwrap();
        let der_path = dir.join("other.der");
        std::fs::write(&der_path, other.public_key_der()).unwrap();
        let mut ring = KeyRing::new();
        ring.add_file(&der_path).unwrap();
        let body = b"{}";
        let sig = signer.sign(signed_message(body).as_bytes()).await.unwrap();
        assert_eq!(ring.signer_of(signer.algorithm(), body, &sig), None);
        ring.add_file(&pem_path).unwrap();
        assert_eq!(
            ring.signer_of(signer.algorithm(), body, &sig),
            Some(pem_path.display().to_string().as_str())
        );
        std::fs::write(&pem_path, "-----BEGIN PUBLIC KEY-----\nnot base64\n").unwrap();
        let e = KeyRing::new().add_file(&pem_path).unwrap_err();
        assert!(e.to_string().contains("not a PEM PUBLIC KEY"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
