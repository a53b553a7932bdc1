//! A throw-away certificate authority and a server certificate for `127.0.0.1` / `localhost`,
//! written as PEM files: `ca.pem` (what an emitter's `caBundle` points to), `server.pem` and
//! `server.key` (for this receiver and for rsyslog's TLS listener).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::ReceiverError;

/// Paths and contents of the generated certificates.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub ca_pem_path: PathBuf,
    pub cert_pem_path: PathBuf,
    pub key_pem_path: PathBuf,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

fn rc(e: rcgen::Error) -> ReceiverError {
    ReceiverError::Cert(e.to_string())
}

/// Generates a CA and a leaf certificate (SANs `localhost`, `127.0.0.1`, `::1`) into `dir`.
pub fn generate(dir: &Path) -> Result<CertFiles, ReceiverError> {
    std::fs::create_dir_all(dir)?;
    let ca_key = KeyPair::generate().map_err(rc)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "authtrail local test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(rc)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().map_err(rc)?;
    let mut leaf = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .map_err(rc)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(rc)?;

    let files = CertFiles {
        ca_pem_path: dir.join("ca.pem"),
        cert_pem_path: dir.join("server.pem"),
        key_pem_path: dir.join("server.key"),
        ca_pem: ca_cert.pem(),
        cert_pem: leaf_cert.pem(),
        key_pem: leaf_key.serialize_pem(),
    };
    std::fs::write(&files.ca_pem_path, &files.ca_pem)?;
    std::fs::write(&files.cert_pem_path, &files.cert_pem)?;
    std::fs::write(&files.key_pem_path, &files.key_pem)?;
    Ok(files)
}

impl CertFiles {
    /// A rustls server configuration presenting the leaf certificate.
    pub fn server_config(&self) -> Result<std::sync::Arc<rustls::ServerConfig>, ReceiverError> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ReceiverError::Cert(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| ReceiverError::Cert(e.to_string()))?;
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ReceiverError::Cert(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| ReceiverError::Cert(e.to_string()))?;
        Ok(std::sync::Arc::new(config))
    }
}
