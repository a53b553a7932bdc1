//! `splunk-hec`: Splunk HTTP Event Collector. One HEC event object per record, concatenated:
//! `{"host", "source", "sourcetype", ["index",] "time": <epoch seconds with milliseconds>,
//! "event": <record>}`, over the shared [HTTP transport](crate::emit::transport).
//!
//! A 400 whose answer names the bad event (`invalid-event-number`, 0-based) is read per record:
//! HEC indexed the events before it (delivered), the bad one is refused for good (dead-lettered),
//! the ones after it were not read and are retried. Any other 400 is a refusal of the whole
//! request, split to find the records it refuses.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use authtrail_core::preflight::Check;
use reqwest::Method;

use super::transport::probe::{answer_check, shown};
use super::transport::{HttpTransport, ResolvedAuth, classify_response};
use super::{BoxFuture, Emitter, Failure, Outcome};
use crate::ForwarderError;
use crate::record::Prepared;

mod config;

pub use config::{RawSplunkHec, SplunkHecConfig};

/// A Splunk HEC emitter.
pub struct SplunkHecEmitter {
    name: String,
    transport: HttpTransport,
    /// `{"host":..,"source":..,"sourcetype":..[,"index":..],"time":`: every event's start.
    prefix: String,
}

impl SplunkHecEmitter {
    /// The emitter `name` for `config`, with its token read.
    pub fn new(
        name: &str,
        config: &SplunkHecConfig,
        auth: &ResolvedAuth,
    ) -> Result<Self, ForwarderError> {
        let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        let mut prefix = format!(
            "{{\"host\":{},\"source\":{},\"sourcetype\":{}",
            q(&config.host),
            q(&config.source),
            q(&config.sourcetype)
        );
        if let Some(i) = &config.index {
            prefix.push_str(&format!(",\"index\":{}", q(i)));
        }
        prefix.push_str(",\"time\":");
        Ok(Self {
            name: name.to_string(),
            transport: HttpTransport::new(name, &config.target, auth, "application/json")?,
            prefix,
        })
    }

    /// The request body (uncompressed) for a chunk.
    pub fn body(&self, batch: &[Arc<Prepared>]) -> Vec<u8> {
        let size: usize = batch.iter().map(|p| self.size_hint(p)).sum();
        let mut out = Vec::with_capacity(size);
        for p in batch {
            out.extend_from_slice(self.prefix.as_bytes());
            let ms = p.class.time_ms;
            let _ = write!(out, "{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000));
            out.extend_from_slice(b",\"event\":");
            out.extend_from_slice(p.json.as_bytes());
            out.extend_from_slice(b"}\n");
        }
        out
    }

    async fn attempt(&self, batch: &[Arc<Prepared>]) -> Vec<Outcome> {
        match self.transport.post(self.body(batch), batch.len()).await {
            Ok(r) => hec_outcomes(r.status, r.retry_after, &r.text, batch.len()),
            Err(outcomes) => outcomes,
        }
    }

    /// Preflight: HEC's health endpoint (no token needed: 200 healthy, 503 queues full), then
    /// an empty `POST` with the token, which HEC answers `400 No data` (code 5) once the token
    /// is accepted and `401`/`403` (`Invalid token`, code 4; `Token disabled`, code 1) when not.
    async fn preflight(&self) -> Check {
        let name = format!("emitter.{}", self.name);
        let url = self.transport.url().clone();
        let health = health_url(&url);
        let healthy = match self
            .transport
            .probe_request(Method::GET, health.clone(), Vec::new())
            .await
        {
            Err(e) => return e.check(&name, &health),
            Ok(r) if r.status == 503 => {
                return Check::failed(
                    name,
                    format!(
                        "{}: HEC is unhealthy (503: {})",
                        shown(&health),
                        r.text.trim()
                    ),
                    "HEC's queues are full or it is starting: look at the Splunk instance",
                );
            }
            Ok(r) => r.status == 200,
        };
        match self
            .transport
            .probe_request(Method::POST, url.clone(), Vec::new())
            .await
        {
            Err(e) => e.check(&name, &url),
            Ok(r) if matches!(r.status, 401 | 403) => Check::failed(
                name,
                format!(
                    "{}: HEC refused the token: HTTP {}: {}",
                    shown(&url),
                    r.status,
                    r.text.trim()
                ),
                "check the emitter's token / tokenSecretArn, and that the token is enabled in Splunk (Settings > Data inputs > HTTP Event Collector)",
            ),
            Ok(r) if r.status == 400 || (200..300).contains(&r.status) => Check::ok(
                name,
                format!(
                    "{}: token accepted (an empty request answered {}{}){}",
                    shown(&url),
                    r.status,
                    if r.status == 400 { ", \"No data\"" } else { "" },
                    if healthy { "; HEC healthy" } else { "" }
                ),
            ),
            Ok(r) => answer_check(&name, &url, r.status, &r.text, "an empty request"),
        }
    }
}

/// HEC's health endpoint beside the event endpoint `url`: its `/services/collector...` path
/// becomes `/services/collector/health` (a prefix before it, from a proxy, is kept).
fn health_url(url: &reqwest::Url) -> reqwest::Url {
    let mut health = url.clone();
    let path = url.path();
    let base = path.find("/services/collector").map_or("", |i| &path[..i]);
    health.set_path(&format!("{base}/services/collector/health"));
    health.set_query(None);
    health
}

/// The outcomes of a HEC answer for `n` events: a 400 naming the bad event by
/// `invalid-event-number` per event (before it delivered, it refused, after it retried), any
/// other answer for the whole request.
pub fn hec_outcomes(
    status: u16,
    retry_after: Option<Duration>,
    text: &str,
    n: usize,
) -> Vec<Outcome> {
    /// The part of a HEC error answer read here.
    #[derive(serde::Deserialize)]
    struct HecError {
        #[serde(rename = "invalid-event-number")]
        invalid_event_number: Option<u64>,
    }
    let bad = (status == 400)
        .then(|| serde_json::from_str::<HecError>(text).ok())
        .flatten()
        .and_then(|e| e.invalid_event_number)
        .and_then(|k| usize::try_from(k).ok())
        .filter(|&k| k < n);
    let Some(bad) = bad else {
        return classify_response(status, retry_after, text, n);
    };
    let after = Failure::new(
        "hec-not-read",
        format!("HEC stopped at event {bad} of the request and did not read this one"),
    );
    (0..n)
        .map(|i| match i.cmp(&bad) {
            std::cmp::Ordering::Less => Outcome::Delivered,
            std::cmp::Ordering::Equal => Outcome::Permanent(Failure::new("400", text)),
            std::cmp::Ordering::Greater => Outcome::Retryable(after.clone()),
        })
        .collect()
}

impl Emitter for SplunkHecEmitter {
    fn name(&self) -> &str {
        &self.name
    }

    fn emit<'a>(&'a self, batch: &'a [Arc<Prepared>]) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(self.attempt(batch))
    }

    fn size_hint(&self, p: &Prepared) -> usize {
        p.json.len() + self.prefix.len() + 28
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
    fn the_health_endpoint_sits_beside_the_event_endpoint_behind_any_proxy_prefix() {
        let u = |s: &str| health_url(&reqwest::Url::parse(s).unwrap()).to_string();
        assert_eq!(
            u("https://hec.example:8088/services/collector/event"),
            "https://hec.example:8088/services/collector/health"
        );
        assert_eq!(
            u("https://h.example/splunk/services/collector/event/1.0?channel=x"),
            "https://h.example/splunk/services/collector/health"
        );
        assert_eq!(
            u("https://h.example/"),
            "https://h.example/services/collector/health"
        );
    }

    #[test]
    fn hec_400_with_invalid_event_number_delivers_the_events_before_it_and_retries_the_ones_after()
    {
        let text = r#"{"text":"Invalid data format","code":6,"invalid-event-number":1}"#;
        let o = hec_outcomes(400, None, text, 3);
        assert_eq!(o[0], Outcome::Delivered);
        assert!(
            matches!(&o[1], Outcome::Permanent(f) if f.status == "400" && f.text.contains("Invalid data format")),
            "{o:?}"
        );
        assert!(
            matches!(&o[2], Outcome::Retryable(f) if f.status == "hec-not-read"),
            "{o:?}"
        );
        // Without the number (or out of range) the request is refused as a whole.
        let whole = hec_outcomes(400, None, r#"{"text":"No data","code":5}"#, 2);
        assert!(
            whole.iter().all(|o| matches!(o, Outcome::Rejected(_))),
            "{whole:?}"
        );
        let out_of_range = hec_outcomes(400, None, r#"{"invalid-event-number":2}"#, 2);
        assert!(
            out_of_range
                .iter()
                .all(|o| matches!(o, Outcome::Rejected(_)))
        );
        assert_eq!(
            hec_outcomes(200, None, r#"{"text":"Success","code":0}"#, 2),
            vec![Outcome::Delivered; 2]
        );
    }

    #[test]
    fn splunk_body_has_one_event_object_per_record_with_time_host_source_and_sourcetype() {
        let EmitterSettings::SplunkHec(c) = settings(
            r#"{"name":"t","type":"splunk-hec","url":"https://x.example/","token":"tok",
                "host":"h","source":"s","sourcetype":"_json","index":"main"}"#,
        ) else {
            panic!()
        };
        let auth = ResolvedAuth::Splunk(authtrail_core::secret::Secret::new("tok"));
        let e = SplunkHecEmitter::new("t", &c, &auth).unwrap();
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
}
