//! Local SIEM receivers for tests and the demo.
//!
//! - [`Receiver`]: an HTTPS server (self-signed CA generated with rcgen, written as `ca.pem` for
//!   an emitter's `caBundle`) with strict wire-format checks of Splunk HEC
//!   (`/services/collector/event`), Elasticsearch / OpenSearch `_bulk` (`/_bulk`,
//!   `/{index}/_bulk`) and a generic JSON endpoint (`/ingest`); gzip bodies accepted. It records
//!   what it accepted (in-process API and `GET /_received`) and can fail on demand (a number of
//!   requests or a while, any status, with `Retry-After`) or go down and come back.
//!   `_bulk` requests are checked without building a `Value` per document ([`bulk`]): each
//!   request's body is kept once and its items become `Value`s only when a test inspects them.
//! - [`Rsyslog`]: a real rsyslogd on loopback with TCP, TLS and UDP inputs that writes what it
//!   parsed as JSON lines.

pub mod bulk;
pub mod certs;
pub mod formats;
pub mod rsyslog;
pub mod server;

pub use certs::CertFiles;
pub use formats::IngestAuth;
pub use rsyslog::{Rsyslog, SyslogMessage};
pub use server::{Endpoint, Received, Receiver, ReceiverOptions, Rejection};

#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
    #[error("certificate error: {0}")]
    Cert(String),
    #[error("{0}")]
    Missing(String),
}
