//! TLS trust for emitters: the system's roots plus an optional extra CA bundle (PEM). Server
//! certificates are always verified; nothing here can turn that off.

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

/// A rustls client configuration trusting the system roots and `ca_bundle`.
pub fn client_config(
    emitter: &str,
    ca_bundle: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, ForwarderError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A broken system certificate is skipped, as every TLS client does.
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_bundle {
        for cert in read_pem_bundle(emitter, path)? {
            roots.add(cert).map_err(|e| ForwarderError::Config {
                path: format!("emitter {emitter:?} caBundle"),
                message: format!("{} has an unusable CA certificate: {e}", path.display()),
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ForwarderError::Tls(format!("emitter {emitter:?}: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
