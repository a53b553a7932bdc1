//! HTTP emitters: generic webhook (NDJSON or JSON array), Splunk HEC and Elasticsearch /
//! OpenSearch `_bulk`. One `reqwest::Client` per emitter, built at cold start and reused across
//! warm invocations (connection pooling), with the system roots plus the emitter's `caBundle`.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use authtrail_core::secret::Secret;
use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};
use serde_json::Value;

use super::{BoxFuture, Emitter, Failure, Outcome, all};
use crate::ForwarderError;
use crate::config::{EmitterType, HttpFlavor, HttpFormat};
use crate::record::Prepared;

/// Resolved authentication (secrets already read).
pub enum ResolvedAuth {
    None,
    Bearer(Secret),
    Basic { username: String, password: Secret },
    Splunk(Secret),
    ApiKey(Secret),
}

pub struct HttpEmitter {
    name: String,
    kind: EmitterType,
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    gzip: bool,
    flavor: HttpFlavor,
    /// Splunk: `{"host":..,"source":..,"sourcetype":..[,"index":..],"time":` prefix.
    splunk_prefix: String,
    /// Elasticsearch: `{"index":{"_index":"..","_id":` prefix.
    es_prefix: String,
}

fn sensitive(value: String) -> Result<HeaderValue, ForwarderError> {
    let mut v = HeaderValue::from_str(&value)
        .map_err(|_| ForwarderError::Tls("a secret is not a valid HTTP header value".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

impl HttpEmitter {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        kind: EmitterType,
        url: reqwest::Url,
        extra_headers: &[(String, String)],
        ca_bundle: Option<&std::path::Path>,
        auth: ResolvedAuth,
        gzip: bool,
        flavor: HttpFlavor,
    ) -> Result<Self, ForwarderError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(30))
            .user_agent(concat!("authtrail-forwarder/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_bundle {
            let certs = super::tls::read_pem_bundle(name, path)?;
            let certs = certs
                .iter()
                .map(|c| reqwest::Certificate::from_der(c.as_ref()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ForwarderError::Tls(format!("emitter {name:?} caBundle: {e}")))?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder
            .build()
            .map_err(|e| ForwarderError::Tls(format!("emitter {name:?}: {e}")))?;

        let mut headers = HeaderMap::new();
        for (k, v) in extra_headers {
            let name_h =
                HeaderName::from_bytes(k.as_bytes()).map_err(|_| ForwarderError::Config {
                    path: format!("emitter {name:?} headers"),
                    message: format!("{k:?} is not a header name"),
                })?;
            let value = HeaderValue::from_str(v).map_err(|_| ForwarderError::Config {
                path: format!("emitter {name:?} headers.{k}"),
                message: "is not a header value".into(),
            })?;
            headers.insert(name_h, value);
        }
        match auth {
            ResolvedAuth::None => {}
            ResolvedAuth::Bearer(t) => {
                headers.insert(AUTHORIZATION, sensitive(format!("Bearer {}", t.expose()))?);
            }
            ResolvedAuth::Splunk(t) => {
                headers.insert(AUTHORIZATION, sensitive(format!("Splunk {}", t.expose()))?);
            }
            ResolvedAuth::ApiKey(t) => {
                headers.insert(AUTHORIZATION, sensitive(format!("ApiKey {}", t.expose()))?);
            }
            ResolvedAuth::Basic { username, password } => {
                use base64::Engine;
                let raw = format!("{username}:{}", password.expose());
                let enc = base64::engine::general_purpose::STANDARD.encode(raw);
                headers.insert(AUTHORIZATION, sensitive(format!("Basic {enc}"))?);
            }
        }
        let content_type = match &flavor {
            HttpFlavor::Generic {
                format: HttpFormat::Ndjson,
            }
            | HttpFlavor::Elasticsearch { .. } => "application/x-ndjson",
            HttpFlavor::Generic {
                format: HttpFormat::JsonArray,
            }
            | HttpFlavor::SplunkHec { .. } => "application/json",
        };
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }

        let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        let splunk_prefix = match &flavor {
            HttpFlavor::SplunkHec {
                host,
                source,
                sourcetype,
                index,
            } => {
                let mut p = format!(
                    "{{\"host\":{},\"source\":{},\"sourcetype\":{}",
                    q(host),
                    q(source),
                    q(sourcetype)
                );
                if let Some(i) = index {
                    p.push_str(&format!(",\"index\":{}", q(i)));
                }
                p.push_str(",\"time\":");
                p
            }
            _ => String::new(),
        };
        let es_prefix = match &flavor {
            HttpFlavor::Elasticsearch { index } => {
                format!("{{\"index\":{{\"_index\":{},\"_id\":", q(index))
            }
            _ => String::new(),
        };
        Ok(Self {
            name: name.to_string(),
            kind,
            client,
            url,
            headers,
            gzip,
            flavor,
            splunk_prefix,
            es_prefix,
        })
    }

    /// The request body (uncompressed) for a chunk.
    pub fn body(&self, batch: &[Arc<Prepared>]) -> Vec<u8> {
        let size: usize = batch.iter().map(|p| self.size_hint(p)).sum();
        let mut out = Vec::with_capacity(size);
        match &self.flavor {
            HttpFlavor::Generic {
                format: HttpFormat::Ndjson,
            } => {
                for p in batch {
                    out.extend_from_slice(p.json.as_bytes());
                    out.push(b'\n');
                }
            }
            HttpFlavor::Generic {
                format: HttpFormat::JsonArray,
            } => {
                out.push(b'[');
                for (i, p) in batch.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(p.json.as_bytes());
                }
                out.push(b']');
            }
            HttpFlavor::SplunkHec { .. } => {
                for p in batch {
                    out.extend_from_slice(self.splunk_prefix.as_bytes());
                    let ms = p.class.time_ms;
                    let _ = write!(out, "{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000));
                    out.extend_from_slice(b",\"event\":");
                    out.extend_from_slice(p.json.as_bytes());
                    out.extend_from_slice(b"}\n");
                }
            }
            HttpFlavor::Elasticsearch { .. } => {
                for p in batch {
                    out.extend_from_slice(self.es_prefix.as_bytes());
                    if serde_json::to_writer(&mut out, &p.doc_id).is_err() {
                        out.extend_from_slice(b"\"\"");
                    }
                    out.extend_from_slice(b"}}\n");
                    out.extend_from_slice(p.json.as_bytes());
                    out.push(b'\n');
                }
            }
        }
        out
    }

    async fn attempt(&self, batch: &[Arc<Prepared>]) -> Vec<Outcome> {
        let body = self.body(batch);
        let body = if self.gzip {
            let mut enc = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
            if enc.write_all(&body).is_err() {
                return all(
                    batch.len(),
                    Outcome::Permanent(Failure::new("gzip", "could not compress the body")),
                );
            }
            match enc.finish() {
                Ok(b) => b,
                Err(e) => {
                    return all(
                        batch.len(),
                        Outcome::Permanent(Failure::new("gzip", e.to_string())),
                    );
                }
            }
        } else {
            body
        };
        let sent = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let status = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "transport"
                };
                // reqwest's error text names the URL, never header values.
                return all(
                    batch.len(),
                    Outcome::Retryable(Failure::new(status, error_chain(&e))),
                );
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let text = resp.text().await.unwrap_or_default();
        classify_response(&self.flavor, status, retry_after, &text, batch.len())
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// `Retry-After`: delta-seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.timestamp_millis() - chrono::Utc::now().timestamp_millis();
    Some(Duration::from_millis(delta.max(0) as u64))
}

/// Whether an HTTP status is worth retrying: timeouts, 429 and 5xx.
pub fn retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

/// Whether a refusal is about the request's content, so that smaller requests may pass: 400,
/// 413 (too large) and 422. Other 4xx (401, 403, 404, ...) are about the request itself and
/// would refuse every part of it.
pub fn splittable_status(status: u16) -> bool {
    matches!(status, 400 | 413 | 422)
}

/// Maps a response to per-record outcomes. Elasticsearch answers 200 with per-item results; the
/// others accept or refuse a whole request.
pub fn classify_response(
    flavor: &HttpFlavor,
    status: u16,
    retry_after: Option<Duration>,
    text: &str,
    n: usize,
) -> Vec<Outcome> {
    if (200..300).contains(&status) {
        if let HttpFlavor::Elasticsearch { .. } = flavor {
            return es_items(text, n);
        }
        return all(n, Outcome::Delivered);
    }
    let mut failure = Failure::new(status.to_string(), text.to_string());
    failure.retry_after = retry_after;
    if retryable_status(status) {
        all(n, Outcome::Retryable(failure))
    } else if splittable_status(status) {
        all(n, Outcome::Rejected(failure))
    } else {
        all(n, Outcome::Permanent(failure))
    }
}

/// Per-item results of a `_bulk` answer. When the answer says `errors: false` (or cannot be
/// read although the status was 2xx) every item was taken.
fn es_items(text: &str, n: usize) -> Vec<Outcome> {
    /// The answer's `errors` flag alone: the items are only read when it is `true`.
    #[derive(serde::Deserialize)]
    struct Flag {
        errors: Option<Value>,
    }
    match serde_json::from_str::<Flag>(text) {
        Ok(Flag {
            errors: Some(Value::Bool(true)),
        })
        | Err(_) => {}
        Ok(_) => return all(n, Outcome::Delivered),
    }
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return all(n, Outcome::Delivered);
    };
    if v.get("errors").and_then(Value::as_bool) != Some(true) {
        return all(n, Outcome::Delivered);
    }
    let Some(items) = v.get("items").and_then(Value::as_array) else {
        return all(
            n,
            Outcome::Retryable(Failure::new("bulk", "errors: true without items")),
        );
    };
    if items.len() != n {
        return all(
            n,
            Outcome::Retryable(Failure::new(
                "bulk",
                format!("{} items for {n} documents", items.len()),
            )),
        );
    }
    items
        .iter()
        .map(|item| {
            let result = item.as_object().and_then(|o| o.values().next());
            let status = result
                .and_then(|r| r.get("status"))
                .and_then(Value::as_u64)
                .unwrap_or(0) as u16;
            if (200..300).contains(&status) {
                return Outcome::Delivered;
            }
            let error = result
                .and_then(|r| r.get("error"))
                .map(|e| e.to_string())
                .unwrap_or_default();
            let failure = Failure::new(status.to_string(), error);
            if retryable_status(status) || status == 0 {
                Outcome::Retryable(failure)
            } else {
                Outcome::Permanent(failure)
            }
        })
        .collect()
}

impl Emitter for HttpEmitter {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> EmitterType {
        self.kind
    }

    fn emit<'a>(&'a self, batch: &'a [Arc<Prepared>]) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(self.attempt(batch))
    }

    fn size_hint(&self, p: &Prepared) -> usize {
        match &self.flavor {
            HttpFlavor::Generic { .. } => p.json.len() + 1,
            HttpFlavor::SplunkHec { .. } => p.json.len() + self.splunk_prefix.len() + 28,
            HttpFlavor::Elasticsearch { .. } => {
                p.json.len() + self.es_prefix.len() + p.doc_id.len() + 8
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::record::{Transform, parse_classify};

    fn prepared(json: &str, i: usize) -> Arc<Prepared> {
        let class = Arc::new(parse_classify(json.as_bytes(), 0).unwrap().1);
        Arc::new(Transform::identity().prepare(i, class, json).unwrap())
    }

    fn emitter(flavor: HttpFlavor) -> HttpEmitter {
        HttpEmitter::new(
            "t",
            EmitterType::Http,
            reqwest::Url::parse("https://x.example/").unwrap(),
            &[],
            None,
            ResolvedAuth::Splunk(Secret::new("tok")),
            false,
            flavor,
        )
        .unwrap()
    }

    const E1: &str = r#"{"timestamp":"2025-02-12T19:27:50.156Z","eventType":"user-event","event":{"id":"id-1","time":1739388470156,"type":"LOGIN"}}"#;
    const E2: &str = r#"{"service":"ldap","method":"bind","timestamp":1739388471}"#;

    #[test]
    fn splunk_body_has_one_event_object_per_record_with_time_host_source_and_sourcetype() {
        let e = emitter(HttpFlavor::SplunkHec {
            host: "h".into(),
            source: "s".into(),
            sourcetype: "_json".into(),
            index: Some("main".into()),
        });
        let body = String::from_utf8(e.body(&[prepared(E1, 0), prepared(E2, 1)])).unwrap();
        let objs: Vec<Value> = serde_json::Deserializer::from_str(&body)
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[0]["time"].as_f64().unwrap(), 1739388470.156);
        assert_eq!(
            (
                objs[0]["host"].as_str(),
                objs[0]["source"].as_str(),
                objs[0]["sourcetype"].as_str(),
                objs[0]["index"].as_str()
            ),
            (Some("h"), Some("s"), Some("_json"), Some("main"))
        );
        assert_eq!(objs[0]["event"]["event"]["type"], "LOGIN");
        assert_eq!(objs[1]["time"].as_f64().unwrap(), 1739388471.0);
    }

    #[test]
    fn elasticsearch_body_pairs_an_index_action_with_the_event_id_and_the_document() {
        let e = emitter(HttpFlavor::Elasticsearch {
            index: "audit".into(),
        });
        let p2 = prepared(E2, 1);
        let body = String::from_utf8(e.body(&[prepared(E1, 0), p2.clone()])).unwrap();
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], r#"{"index":{"_index":"audit","_id":"id-1"}}"#);
        assert_eq!(lines[1], E1);
        let action: Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(action["index"]["_id"], p2.doc_id.as_str());
        assert!(body.ends_with('\n'));
    }

    #[test]
    fn generic_body_is_ndjson_or_a_json_array() {
        let e = emitter(HttpFlavor::Generic {
            format: HttpFormat::Ndjson,
        });
        assert_eq!(
            String::from_utf8(e.body(&[prepared(E1, 0), prepared(E2, 1)])).unwrap(),
            format!("{E1}\n{E2}\n")
        );
        let e = emitter(HttpFlavor::Generic {
            format: HttpFormat::JsonArray,
        });
        let v: Value =
            serde_json::from_slice(&e.body(&[prepared(E1, 0), prepared(E2, 1)])).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
    }

    #[test]
    fn responses_429_and_5xx_are_retryable_with_retry_after_and_other_4xx_are_permanent() {
        let f = HttpFlavor::Generic {
            format: HttpFormat::Ndjson,
        };
        let o = classify_response(&f, 429, Some(Duration::from_secs(3)), "slow down", 2);
        assert!(
            matches!(&o[0], Outcome::Retryable(x) if x.retry_after == Some(Duration::from_secs(3)) && x.status == "429")
        );
        assert!(matches!(
            &classify_response(&f, 503, None, "", 1)[0],
            Outcome::Retryable(_)
        ));
        assert!(
            matches!(&classify_response(&f, 400, None, "bad", 1)[0], Outcome::Rejected(x) if x.text == "bad")
        );
        assert!(matches!(
            &classify_response(&f, 413, None, "", 1)[0],
            Outcome::Rejected(_)
        ));
        assert!(matches!(
            &classify_response(&f, 403, None, "", 1)[0],
            Outcome::Permanent(_)
        ));
        assert_eq!(
            classify_response(&f, 204, None, "", 3),
            vec![Outcome::Delivered; 3]
        );
    }

    #[test]
    fn bulk_item_errors_are_reported_per_document() {
        let f = HttpFlavor::Elasticsearch { index: "a".into() };
        let text = r#"{"took":1,"errors":true,"items":[{"index":{"status":201}},{"index":{"status":400,"error":{"type":"mapper_parsing_exception"}}},{"index":{"status":429,"error":{"type":"es_rejected_execution_exception"}}}]}"#;
        let o = classify_response(&f, 200, None, text, 3);
        assert_eq!(o[0], Outcome::Delivered);
        assert!(
            matches!(&o[1], Outcome::Permanent(x) if x.status == "400" && x.text.contains("mapper_parsing_exception"))
        );
        assert!(matches!(&o[2], Outcome::Retryable(x) if x.status == "429"));
        assert_eq!(
            classify_response(&f, 200, None, r#"{"errors":false,"items":[]}"#, 2),
            vec![Outcome::Delivered; 2]
        );
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
