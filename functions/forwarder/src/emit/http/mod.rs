//! `http`: a generic webhook receiving `POST`s of NDJSON (one record per line) or a JSON array,
//! over the shared [HTTP transport](crate::emit::transport).

use std::sync::Arc;

use authtrail_core::preflight::Check;
use reqwest::Method;

use super::transport::probe::answer_check;
use super::transport::{HttpTransport, ResolvedAuth, classify_response};
use super::{BoxFuture, Emitter, Outcome};
use crate::ForwarderError;
use crate::record::Prepared;

mod config;

pub use config::{HttpConfig, HttpFormat, RawHttp};

/// A generic webhook emitter.
pub struct HttpEmitter {
    name: String,
    transport: HttpTransport,
    format: HttpFormat,
}

impl HttpEmitter {
    /// The emitter `name` for `config`, with its authentication read.
    pub fn new(
        name: &str,
        config: &HttpConfig,
        auth: &ResolvedAuth,
    ) -> Result<Self, ForwarderError> {
        let content_type = match config.format {
            HttpFormat::Ndjson => "application/x-ndjson",
            HttpFormat::JsonArray => "application/json",
        };
        Ok(Self {
            name: name.to_string(),
            transport: HttpTransport::new(name, &config.target, auth, content_type)?,
            format: config.format,
        })
    }

    /// The request body (uncompressed) for a chunk.
    pub fn body(&self, batch: &[Arc<Prepared>]) -> Vec<u8> {
        let size: usize = batch.iter().map(|p| self.size_hint(p)).sum();
        let mut out = Vec::with_capacity(size);
        match self.format {
            HttpFormat::Ndjson => {
                for p in batch {
                    out.extend_from_slice(p.json.as_bytes());
                    out.push(b'\n');
                }
            }
            HttpFormat::JsonArray => {
                out.push(b'[');
                for (i, p) in batch.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(p.json.as_bytes());
                }
                out.push(b']');
            }
        }
        out
    }

    async fn attempt(&self, batch: &[Arc<Prepared>]) -> Vec<Outcome> {
        match self.transport.post(self.body(batch), batch.len()).await {
            Ok(r) => classify_response(r.status, r.retry_after, &r.text, batch.len()),
            Err(outcomes) => outcomes,
        }
    }

    /// Preflight: a `POST` of no records (an empty NDJSON body, or `[]`) with the emitter's
    /// credentials.
    async fn preflight(&self) -> Check {
        let name = format!("emitter.{}", self.name);
        let body = match self.format {
            HttpFormat::Ndjson => Vec::new(),
            HttpFormat::JsonArray => b"[]".to_vec(),
        };
        let url = self.transport.url().clone();
        match self
            .transport
            .probe_request(Method::POST, url.clone(), body)
            .await
        {
            Ok(r) => answer_check(&name, &url, r.status, &r.text, "a request of no records"),
            Err(e) => e.check(&name, &url),
        }
    }
}

impl Emitter for HttpEmitter {
    fn name(&self) -> &str {
        &self.name
    }

    fn emit<'a>(&'a self, batch: &'a [Arc<Prepared>]) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(self.attempt(batch))
    }

    fn size_hint(&self, p: &Prepared) -> usize {
        p.json.len() + 1
    }

    fn probe(&self) -> BoxFuture<'_, Check> {
        Box::pin(self.preflight())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::emit::EmitterSettings;
    use crate::emit::test_support::{E1, E2, prepared, settings};
    use serde_json::Value;

    fn emitter(format: &str) -> HttpEmitter {
        let EmitterSettings::Http(c) = settings(&format!(
            r#"{{"name":"t","type":"http","url":"https://x.example/","format":"{format}"}}"#
        )) else {
            panic!()
        };
        HttpEmitter::new("t", &c, &ResolvedAuth::None).unwrap()
    }

    #[test]
    fn generic_body_is_ndjson_or_a_json_array() {
        let e = emitter("ndjson");
        assert_eq!(
            String::from_utf8(e.body(&[prepared(E1, 0), prepared(E2, 1)])).unwrap(),
            format!("{E1}\n{E2}\n")
        );
        let e = emitter("json-array");
        let v: Value =
            serde_json::from_slice(&e.body(&[prepared(E1, 0), prepared(E2, 1)])).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
    }
}
