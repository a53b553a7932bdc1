//! TLS of the `kafka` emitter: the rustls client configuration (aws-lc-rs, the workspace's one
//! provider) trusting the system's roots and `ssl.caBundle` (a PEM file, as every emitter's
//! `caBundle`, or PEM text), or only the bundle; with `ssl.clientCertificateSecretArn`, the
//! client certificate chain and key for mutual TLS. Broker certificates are always verified
//! against the broker's host name; nothing here can turn that off.

use std::sync::Arc;

use authtrail_core::secret::Secret;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Map, Value};

use super::config::{CaBundle, Ssl};
use crate::ForwarderError;
use crate::config::err;

/// The CAs of `bundle`.
fn bundle_certs(
    label: &str,
    bundle: &CaBundle,
) -> Result<Vec<CertificateDer<'static>>, ForwarderError> {
    match bundle {
        CaBundle::File(path) => crate::config::tls::read_pem_bundle(label, path),
        CaBundle::Pem(text) => {
            let certs = CertificateDer::pem_slice_iter(text.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    err(
                        format!("{label}.ssl.caBundle"),
                        format!("is not a PEM certificate bundle: {e}"),
                    )
                })?;
            if certs.is_empty() {
                return Err(err(
                    format!("{label}.ssl.caBundle"),
                    "holds no PEM certificate",
                ));
            }
            Ok(certs)
        }
    }
}

/// The trusted roots: the system's and the bundle's, or only the bundle's.
fn roots(label: &str, ssl: &Ssl) -> Result<RootCertStore, ForwarderError> {
    let mut roots = RootCertStore::empty();
    if !ssl.ca_bundle_only {
        for cert in rustls_native_certs::load_native_certs().certs {
            // A broken system certificate is skipped, as every TLS client does.
            let _ = roots.add(cert);
        }
    }
    if let Some(bundle) = &ssl.ca_bundle {
        for cert in bundle_certs(label, bundle)? {
            roots.add(cert).map_err(|e| {
                err(
                    format!("{label}.ssl.caBundle"),
                    format!("has an unusable CA certificate: {e}"),
                )
            })?;
        }
    }
    Ok(roots)
}

/// The client certificate chain and key in `pem` (the secret's value): PEM text holding both,
/// or a JSON object with `certificate` and `privateKey` fields. Errors name `path`, never the
/// secret's contents.
pub fn client_identity(
    path: &str,
    pem: &Secret,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ForwarderError> {
    let text = pem.expose();
    let (certs, key) = match serde_json::from_str::<Map<String, Value>>(text) {
        Ok(object) => {
            let field = |k: &str| object.get(k).and_then(Value::as_str).map(str::to_string);
            match (field("certificate"), field("privateKey")) {
                (Some(c), Some(k)) => (c, k),
                _ => {
                    let has: Vec<&String> = object.keys().collect();
                    return Err(err(
                        path,
                        format!(
                            "a JSON secret needs string fields certificate and privateKey (its fields: {has:?})"
                        ),
                    ));
                }
            }
        }
        Err(_) => (text.to_string(), text.to_string()),
    };
    let chain = CertificateDer::pem_slice_iter(certs.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| err(path, "the client certificate is not PEM"))?;
    if chain.is_empty() {
        return Err(err(path, "holds no PEM client certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
        .map_err(|_| err(path, "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)"))?;
    Ok((chain, key))
}

/// The rustls client configuration for emitter `label` with `ssl` and the client identity
/// (from the secret) when given.
pub fn client_config(
    label: &str,
    ssl: &Ssl,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<rustls::ClientConfig>, ForwarderError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ForwarderError::Tls(format!("{label}: {e}")))?
        .with_root_certificates(roots(label, ssl)?);
    let config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|e| {
            err(
                format!("{label}.ssl.clientCertificateSecretArn"),
                format!("the client certificate and key do not make a usable identity: {e}"),
            )
        })?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
