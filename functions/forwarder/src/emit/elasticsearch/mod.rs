//! `elasticsearch` (alias `opensearch`): `POST {url}/_bulk` with a `create` action per record
//! whose `_id` is the record's [document id](crate::record::Prepared::doc_id) (its event id,
//! else the hex SHA-256 of the record's bytes as received), then the
//! record; per-item results honoured ([`bulk`]): a 409 (the document exists) means an earlier
//! delivery took it, so a re-delivery neither duplicates nor overwrites. Over the shared
//! [HTTP transport](crate::emit::transport), answers capped at [`MAX_RESPONSE_BYTES`].

use std::sync::Arc;
use std::time::Duration;

use authtrail_core::preflight::Check;
use reqwest::Method;

use super::transport::probe::{answer_check, shown};
use super::transport::{HttpTransport, ResolvedAuth, classify_response as whole_request};
use super::{BoxFuture, Emitter, Outcome};
use crate::ForwarderError;
use crate::record::Prepared;

pub mod bulk;
mod config;

pub use config::{ElasticsearchConfig, RawElasticsearch};

/// Cap of a `_bulk` answer (after decoding): 8 MiB, room for an error of a few hundred bytes
/// for each of 10,000 documents.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// An Elasticsearch / OpenSearch `_bulk` emitter.
pub struct ElasticsearchEmitter {
    name: String,
    transport: HttpTransport,
    /// `{"create":{"_index":"..","_id":`: every action line's start.
    prefix: String,
}

impl ElasticsearchEmitter {
    /// The emitter `name` for `config`, with its authentication read.
    pub fn new(
        name: &str,
        config: &ElasticsearchConfig,
        auth: &ResolvedAuth,
    ) -> Result<Self, ForwarderError> {
        let index = serde_json::to_string(&config.index).unwrap_or_else(|_| "\"\"".into());
        Ok(Self {
            name: name.to_string(),
            transport: HttpTransport::new(name, &config.target, auth, "application/x-ndjson")?
                .with_max_response_bytes(MAX_RESPONSE_BYTES),
            prefix: format!("{{\"create\":{{\"_index\":{index},\"_id\":"),
        })
    }

    /// The request body (uncompressed) for a chunk.
    pub fn body(&self, batch: &[Arc<Prepared>]) -> Vec<u8> {
        let size: usize = batch.iter().map(|p| self.size_hint(p)).sum();
        let mut out = Vec::with_capacity(size);
        for p in batch {
            out.extend_from_slice(self.prefix.as_bytes());
            if serde_json::to_writer(&mut out, &p.doc_id).is_err() {
                out.extend_from_slice(b"\"\"");
            }
            out.extend_from_slice(b"}}\n");
            out.extend_from_slice(p.json.as_bytes());
            out.push(b'\n');
        }
        out
    }

    async fn attempt(&self, batch: &[Arc<Prepared>]) -> Vec<Outcome> {
        match self.transport.post(self.body(batch), batch.len()).await {
            Ok(r) => classify_response(r.status, r.retry_after, &r.text, batch.len()),
            Err(outcomes) => outcomes,
        }
    }

    /// Preflight: `GET {cluster}/_security/_authenticate` names the user the credentials are;
    /// a cluster without that API (security off, OpenSearch, a proxy) is asked with an empty
    /// `_bulk` instead, which a cluster refuses for its content once it has accepted the
    /// credentials.
    async fn preflight(&self) -> Check {
        let name = format!("emitter.{}", self.name);
        let bulk = self.transport.url().clone();
        let mut auth = bulk.clone();
        let base = bulk
            .path()
            .trim_end_matches('/')
            .trim_end_matches("_bulk")
            .to_string();
        auth.set_path(&format!(
            "{}/_security/_authenticate",
            base.trim_end_matches('/')
        ));
        match self
            .transport
            .probe_request(Method::GET, auth.clone(), Vec::new())
            .await
        {
            Err(e) => return e.check(&name, &auth),
            Ok(r) if r.status == 200 => {
                let user = serde_json::from_str::<serde_json::Value>(&r.text)
                    .ok()
                    .and_then(|v| v["username"].as_str().map(str::to_string))
                    .unwrap_or_else(|| "?".into());
                return Check::ok(
                    name,
                    format!(
                        "{}: credentials accepted, authenticated as {user:?}",
                        shown(&auth)
                    ),
                );
            }
            Ok(r) if matches!(r.status, 401 | 403) => {
                return answer_check(&name, &auth, r.status, &r.text, "an authentication check");
            }
            Ok(_) => {}
        }
        match self
            .transport
            .probe_request(Method::POST, bulk.clone(), Vec::new())
            .await
        {
            Ok(r) => answer_check(&name, &bulk, r.status, &r.text, "an empty _bulk request"),
            Err(e) => e.check(&name, &bulk),
        }
    }
}

/// The outcomes of a `_bulk` answer: per item when it is 2xx, else for the whole request.
pub fn classify_response(
    status: u16,
    retry_after: Option<Duration>,
    text: &str,
    n: usize,
) -> Vec<Outcome> {
    if (200..300).contains(&status) {
        bulk::items(text, n)
    } else {
        whole_request(status, retry_after, text, n)
    }
}

impl Emitter for ElasticsearchEmitter {
    fn name(&self) -> &str {
        &self.name
    }

    fn emit<'a>(&'a self, batch: &'a [Arc<Prepared>]) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(self.attempt(batch))
    }

    fn size_hint(&self, p: &Prepared) -> usize {
        p.json.len() + self.prefix.len() + p.doc_id.len() + 8
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

    #[test]
    fn elasticsearch_body_pairs_a_create_action_with_the_event_id_and_the_document() {
        let EmitterSettings::Elasticsearch(c) = settings(
            r#"{"name":"t","type":"elasticsearch","url":"https://x.example/","index":"audit"}"#,
        ) else {
            panic!()
        };
        let e = ElasticsearchEmitter::new("t", &c, &ResolvedAuth::None).unwrap();
        let p2 = prepared(E2, 1);
        let body = String::from_utf8(e.body(&[prepared(E1, 0), p2.clone()])).unwrap();
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], r#"{"create":{"_index":"audit","_id":"id-1"}}"#);
        assert_eq!(lines[1], E1);
        let action: Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(action["create"]["_id"], p2.doc_id.as_str());
        assert!(body.ends_with('\n'));
    }

    #[test]
    fn bulk_item_errors_are_reported_per_document() {
        let text = r#"{"took":1,"errors":true,"items":[{"index":{"status":201}},{"index":{"status":400,"error":{"type":"mapper_parsing_exception"}}},{"index":{"status":429,"error":{"type":"es_rejected_execution_exception"}}}]}"#;
        let o = classify_response(200, None, text, 3);
        assert_eq!(o[0], Outcome::Delivered);
        assert!(
            matches!(&o[1], Outcome::Permanent(x) if x.status == "400" && x.text.contains("mapper_parsing_exception"))
        );
        assert!(matches!(&o[2], Outcome::Retryable(x) if x.status == "429"));
        assert_eq!(
            classify_response(200, None, r#"{"errors":false,"items":[]}"#, 2),
            vec![Outcome::Delivered; 2]
        );
    }

    #[test]
    fn a_bulk_2xx_that_cannot_be_read_is_retried_never_counted_delivered() {
        for text in [
            "",
            "<html>proxy error</html>",
            "{}",
            r#"{"took":1,"items":[]}"#,
            r#"{"errors":true}"#,
            r#"{"errors":true,"items":[{"create":{"status":201}}]}"#,
        ] {
            let o = classify_response(200, None, text, 2);
            assert!(
                o.iter()
                    .all(|x| matches!(x, Outcome::Retryable(f) if f.status == "bulk")),
                "{text:?}: {o:?}"
            );
        }
    }

    #[test]
    fn a_409_on_create_means_an_earlier_delivery_stored_the_document() {
        let text = r#"{"errors":true,"items":[{"create":{"_id":"id-1","status":409,"error":{"type":"version_conflict_engine_exception"}}},{"create":{"_id":"id-2","status":201}}]}"#;
        assert_eq!(
            classify_response(200, None, text, 2),
            vec![Outcome::Delivered; 2]
        );
    }
}
