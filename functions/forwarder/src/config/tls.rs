//! TLS trust for emitters: the system's roots plus an optional extra CA bundle (PEM), or only
//! that bundle (`caBundleOnly`: pinning a private CA). Server certificates are always verified;
//! nothing here can turn that off.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::ForwarderError;

/// Reads every certificate of a PEM bundle; an empty or unreadable bundle is an error.
pub fn read_pem_bundle(
    emitter: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ForwarderError> {
    let bad = |message: String| ForwarderError::Config {
        path: format!("emitter {emitter:?} caBundle"),
        message,
    };
    let pem =
        std::fs::read(path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            bad(format!(
                "{} is not a PEM certificate bundle: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(bad(format!("{} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

/// A rustls client configuration trusting the system roots and `ca_bundle`, or only
/// `ca_bundle` when `ca_bundle_only`.
pub fn client_config(
    emitter: &str,
    ca_bundle: Option<&Path>,
    ca_bundle_only: bool,
) -> Result<Arc<rustls::ClientConfig>, ForwarderError> {
    let roots = root_store(emitter, ca_bundle, ca_bundle_only)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ForwarderError::Tls(format!("emitter {emitter:?}: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The trusted roots: the system's and `ca_bundle`'s, or only `ca_bundle`'s.
fn root_store(
    emitter: &str,
    ca_bundle: Option<&Path>,
    ca_bundle_only: bool,
) -> Result<RootCertStore, ForwarderError> {
    let mut roots = RootCertStore::empty();
    if !ca_bundle_only {
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // A broken system certificate is skipped, as every TLS client does.
            let _ = roots.add(cert);
        }
    }
    if let Some(path) = ca_bundle {
        for cert in read_pem_bundle(emitter, path)? {
            roots.add(cert).map_err(|e| ForwarderError::Config {
                path: format!("emitter {emitter:?} caBundle"),
                message: format!("{} has an unusable CA certificate: {e}", path.display()),
            })?;
        }
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn ca_bundle_only_trusts_the_bundle_alone_and_the_default_adds_it_to_the_system_roots() {
        let dir = std::env::temp_dir().join(format!(
            "authtrail-forwarder-tls-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let certs = siem_receiver::certs::generate(&dir).unwrap();
        let only = root_store("e", Some(&certs.ca_pem_path), true).unwrap();
        assert_eq!(only.len(), 1);
        let merged = root_store("e", Some(&certs.ca_pem_path), false).unwrap();
        let system = root_store("e", None, false).unwrap();
        assert_eq!(merged.len(), system.len() + 1);
        assert!(client_config("e", Some(&certs.ca_pem_path), true).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
