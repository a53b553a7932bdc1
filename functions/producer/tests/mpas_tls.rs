//! Which CAs the MPAS client trusts. The system's roots are stood in for by `SSL_CERT_FILE`
//! (read by the platform verifier), so the test runs itself again as a child process with that
//! variable pointing at CA "A", and an MPAS over TLS presents a certificate of CA "A":
//! - no bundle, or a bundle of CA "B" merged: trusted (the system's roots stay);
//! - `ca_bundle_only` with CA "B": refused (verification on, system roots not trusted);
//! - `ca_bundle_only` with CA "A": trusted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use authtrail_core::envelope::EventKind;
use authtrail_core::secret::Secret;
use authtrail_producer::config::Credentials;
use authtrail_producer::error::SourceError;
use authtrail_producer::mpas::{ClientOptions, EventSource, HttpEventSource, PageQuery};
use siem_receiver::CertFiles;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

/// Set in the child process: the directory holding CAs `a/` and `b/`.
const CHILD_DIR: &str = "AUTHTRAIL_PRODUCER_TLS_TEST_DIR";

#[test]
fn ca_bundle_only_trusts_only_the_given_ca_while_a_merged_bundle_keeps_the_system_roots() {
    let dir = std::env::temp_dir().join(format!(
        "authtrail-producer-tls-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let a = siem_receiver::certs::generate(&dir.join("a")).unwrap();
    siem_receiver::certs::generate(&dir.join("b")).unwrap();
    let empty = dir.join("no-certs");
    std::fs::create_dir_all(&empty).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_of_the_ca_bundle_only_test",
            "--nocapture",
        ])
        .env(CHILD_DIR, &dir)
        .env("SSL_CERT_FILE", &a.ca_pem_path)
        .env("SSL_CERT_DIR", &empty)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

/// Runs only as the child of the test above (returns at once otherwise).
#[tokio::test]
async fn child_process_of_the_ca_bundle_only_test() {
    let Some(dir) = std::env::var_os(CHILD_DIR).map(PathBuf::from) else {
        return;
    };
    let a = cert_files(&dir.join("a"));
    let b_ca = std::fs::read(dir.join("b").join("ca.pem")).unwrap();
    let base = serve_tls(&a).await;

    assert!(
        fetch(&base, None, false).await.is_ok(),
        "system roots (CA A)"
    );
    assert!(
        fetch(&base, Some(&b_ca), false).await.is_ok(),
        "CA B merged into the system roots (CA A)"
    );
    let refused = fetch(&base, Some(&b_ca), true).await.unwrap_err();
    assert!(
        matches!(refused, SourceError::TokenUnavailable { .. }),
        "only CA B: CA A's certificate refused, got {refused:?}"
    );
    assert!(
        fetch(&base, Some(a.ca_pem.as_bytes()), true).await.is_ok(),
        "only CA A"
    );
}

fn cert_files(dir: &Path) -> CertFiles {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    CertFiles {
        ca_pem_path: dir.join("ca.pem"),
        cert_pem_path: dir.join("server.pem"),
        key_pem_path: dir.join("server.key"),
        ca_pem: read("ca.pem"),
        cert_pem: read("server.pem"),
        key_pem: read("server.key"),
    }
}

async fn fetch(
    base: &str,
    ca: Option<&[u8]>,
    only: bool,
) -> Result<Vec<serde_json::Value>, SourceError> {
    let options = ClientOptions {
        ca_bundle_pem: ca,
        ca_bundle_only: only,
        ..ClientOptions::new(Duration::from_secs(5), 0)
    };
    let source = HttpEventSource::new(
        base,
        "demo",
        Credentials::ClientCredentials {
            client_id: "authtrail".into(),
            client_secret: Secret::new("s3cret"),
        },
        &options,
    )?;
    let query = PageQuery {
        date_from: None,
        date_to: None,
        first: 0,
        max: 10,
        ascending: Some(true),
    };
    source.fetch_page(EventKind::User, &query).await
}

/// An HTTPS MPAS on loopback presenting `certs`' leaf: a token for any POST, `[]` otherwise.
async fn serve_tls(certs: &CertFiles) -> String {
    let acceptor = TlsAcceptor::from(certs.server_config().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = Arc::new(acceptor);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = Arc::clone(&acceptor);
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let Ok(n) = tls.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let body = if head.starts_with("POST") {
                    r#"{"access_token":"tok","expires_in":300}"#
                } else {
                    "[]"
                };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    format!("https://127.0.0.1:{port}")
}
