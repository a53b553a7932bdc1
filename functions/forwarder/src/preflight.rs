//! Preflight of the forwarder: each emitter probed without delivering an event
//! ([`Emitter::probe`]: reachable, TLS verified, credentials accepted), and the dead-letter and
//! spool prefixes written with the conditional writes the forwarder relies on. Run by the
//! function when invoked with `{"authtrail": "preflight"}` (from where it runs, inside its VPC
//! if it has one) and by `authtrail-preflight` from the operator's machine.

use std::sync::Arc;
use std::time::Duration;

use authtrail_core::preflight::{BucketProbe, Check, Report, probe_bucket, within};

use crate::config::ForwarderConfig;
use crate::emit::Emitter;
use crate::forward::Forwarder;

/// How long one emitter's probe may take (its requests have 10 s each).
pub const EMITTER_PROBE_LIMIT: Duration = Duration::from_secs(25);
/// How long one bucket's probe may take.
pub const BUCKET_PROBE_LIMIT: Duration = Duration::from_secs(15);
/// The probe object's name under a prefix.
pub const PROBE_OBJECT: &str = ".preflight";

/// Where the function writes besides its emitters.
#[derive(Debug, Clone)]
pub struct Targets {
    /// The S3 client of the dead letters and the spool.
    pub s3: aws_sdk_s3::Client,
    /// `DLQ_BUCKET`.
    pub dlq_bucket: String,
    /// `DLQ_PREFIX`.
    pub dlq_prefix: String,
    /// `SPOOL_BUCKET` and `SPOOL_PREFIX`, when the spool is enabled.
    pub spool: Option<(String, String)>,
}

/// The function's preflight: the configuration (read at cold start), every emitter, the
/// dead-letter prefix and, with a spool, the spool prefix.
pub async fn run(forwarder: &Forwarder, targets: &Targets) -> Report {
    let mut report = Report::new("forwarder");
    report.push(Check::ok(
        "config",
        format!(
            "FORWARDER_CONFIG read and valid at cold start: {} emitter(s), secrets read",
            forwarder.slots.len()
        ),
    ));
    let emitters: Vec<Arc<dyn Emitter>> =
        forwarder.slots.iter().map(|s| s.emitter.clone()).collect();
    report.extend(probe_emitters(&emitters).await);
    report.extend(bucket_checks(targets).await);
    report
}

/// Every emitter probed at once, each within [`EMITTER_PROBE_LIMIT`], in configuration order.
pub async fn probe_emitters(emitters: &[Arc<dyn Emitter>]) -> Vec<Check> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, e) in emitters.iter().enumerate() {
        let e = e.clone();
        tasks.spawn(async move {
            let name = format!("emitter.{}", e.name());
            (i, within(&name, EMITTER_PROBE_LIMIT, e.probe()).await)
        });
    }
    let mut done: Vec<(usize, Check)> = Vec::with_capacity(emitters.len());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(c) => done.push(c),
            Err(e) => tracing::error!(error = %e, "an emitter probe did not finish"),
        }
    }
    done.sort_by_key(|(i, _)| *i);
    let mut checks: Vec<Check> = done.into_iter().map(|(_, c)| c).collect();
    // A probe that panicked or was cancelled still shows up, as failed.
    for e in emitters {
        let name = format!("emitter.{}", e.name());
        if !checks.iter().any(|c| c.name == name) {
            checks.push(Check::failed(
                name,
                "the probe did not finish",
                "run the preflight again; the function's log has the reason",
            ));
        }
    }
    checks
}

/// The emitters of `config` built as the function builds them at cold start (secrets read),
/// then probed: an emitter that cannot be built (an unreadable CA bundle, a secret it may not
/// read) fails its check with the reason. For `authtrail-preflight`.
pub async fn probe_config(
    config: &ForwarderConfig,
    sdk: Option<&aws_config::SdkConfig>,
) -> Vec<Check> {
    let mut built = Vec::new();
    let mut failed = Vec::new();
    for e in &config.emitters {
        match e.settings.build(&e.name, sdk).await {
            Ok(emitter) => built.push(emitter),
            Err(err) => failed.push(Check::failed(
                format!("emitter.{}", e.name),
                format!("cannot be built: {err}"),
                "correct the emitter's configuration (the message names the key) or grant the role the secret it references",
            )),
        }
    }
    let mut checks = probe_emitters(&built).await;
    checks.extend(failed);
    checks
}

/// The dead-letter prefix (the forwarder writes each dead letter with `If-None-Match: *`; its
/// role may not delete there, so the empty probe object stays) and the spool prefix (the same
/// condition; deleted afterwards, as redriven spool objects are).
pub async fn bucket_checks(t: &Targets) -> Vec<Check> {
    let dlq_key = format!("{}{PROBE_OBJECT}", t.dlq_prefix);
    let dlq = BucketProbe {
        name: "bucket.dead-letters",
        bucket: &t.dlq_bucket,
        key: &dlq_key,
        if_match: false,
        delete: false,
    };
    let mut checks = vec![within(dlq.name, BUCKET_PROBE_LIMIT, probe_bucket(&t.s3, &dlq)).await];
    match &t.spool {
        Some((bucket, prefix)) => {
            let key = format!("{prefix}{PROBE_OBJECT}");
            let spool = BucketProbe {
                name: "bucket.spool",
                bucket,
                key: &key,
                if_match: false,
                delete: true,
            };
            checks.push(within(spool.name, BUCKET_PROBE_LIMIT, probe_bucket(&t.s3, &spool)).await);
        }
        None => checks.push(Check::skipped("bucket.spool", "spool.enabled is false")),
    }
    checks
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use authtrail_core::preflight::Status;

    #[tokio::test]
    async fn every_emitter_gets_a_named_check_in_configuration_order() {
        let config = ForwarderConfig::parse(
            r#"{"emitters":[{"name":"b","type":"stdout"},{"name":"a","type":"stdout"}]}"#,
        )
        .unwrap();
        let checks = probe_config(&config, None).await;
        assert_eq!(
            checks.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["emitter.b", "emitter.a"]
        );
        // stdout has no probe: skipped, which is no failure.
        assert!(
            checks.iter().all(|c| c.status == Status::Skipped),
            "{checks:?}"
        );
    }

    #[tokio::test]
    async fn an_emitter_that_cannot_be_built_fails_its_check_naming_the_reason() {
        let config = ForwarderConfig::parse(
            r#"{"emitters":[{"name":"w","type":"http","url":"https://siem.example/in","caBundle":"/nonexistent/ca.pem"}]}"#,
        )
        .unwrap();
        let checks = probe_config(&config, None).await;
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].name, "emitter.w");
        assert_eq!(checks[0].status, Status::Failed);
        assert!(checks[0].detail.contains("caBundle"), "{:?}", checks[0]);
    }

    #[tokio::test]
    async fn a_webhook_that_is_down_fails_its_probe_as_not_reachable() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let config = ForwarderConfig::parse(&format!(
            r#"{{"emitters":[{{"name":"w","type":"http","url":"http://127.0.0.1:{port}/in"}}]}}"#
        ))
        .unwrap();
        let checks = probe_config(&config, None).await;
        assert_eq!(checks[0].status, Status::Failed, "{checks:?}");
        assert!(checks[0].detail.contains("not reachable"), "{checks:?}");
    }
    /// A scratch directory of its own for one test.
    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "authtrail-forwarder-preflight-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn probes_of_the_local_receiver_accept_good_credentials_and_name_bad_ones_without_delivering()
     {
        use siem_receiver::{IngestAuth, Receiver, ReceiverOptions};
        let (dir, other_dir) = (scratch("receiver"), scratch("other-ca"));
        let receiver = Receiver::start(
            &dir,
            ReceiverOptions {
                splunk_token: "good-hec-token".into(),
                es_authorization: Some("ApiKey good-es-key".into()),
                ingest_auth: IngestAuth::Bearer("good-hook-token".into()),
                ..ReceiverOptions::default()
            },
        )
        .await
        .unwrap();
        // Another receiver, whose certificate comes from a CA the emitter does not trust.
        let other = Receiver::start(&other_dir, ReceiverOptions::default())
            .await
            .unwrap();
        let (base, ca) = (receiver.url(), receiver.ca_path().display().to_string());
        let json = serde_json::json!({"emitters": [
            {"name": "splunk", "type": "splunk-hec", "url": format!("{base}/services/collector/event"), "token": "good-hec-token", "caBundle": ca},
            {"name": "splunk-bad", "type": "splunk-hec", "url": format!("{base}/services/collector/event"), "token": "wrong-hec-token", "caBundle": ca},
            {"name": "elastic", "type": "elasticsearch", "url": base, "index": "audit", "token": "good-es-key", "caBundle": ca},
            {"name": "elastic-bad", "type": "elasticsearch", "url": base, "index": "audit", "token": "wrong-es-key", "caBundle": ca},
            {"name": "hook", "type": "http", "url": format!("{base}/ingest"), "token": "good-hook-token", "caBundle": ca, "gzip": true},
            {"name": "untrusted", "type": "http", "url": format!("{}/ingest", other.url()), "caBundle": ca, "caBundleOnly": true}
        ]});
        let config = ForwarderConfig::parse(&json.to_string()).unwrap();
        let checks = probe_config(&config, None).await;
        let status: Vec<(&str, Status)> =
            checks.iter().map(|c| (c.name.as_str(), c.status)).collect();
        assert_eq!(
            status,
            [
                ("emitter.splunk", Status::Ok),
                ("emitter.splunk-bad", Status::Failed),
                ("emitter.elastic", Status::Ok),
                ("emitter.elastic-bad", Status::Failed),
                ("emitter.hook", Status::Ok),
                ("emitter.untrusted", Status::Failed),
            ],
            "{checks:#?}"
        );
        assert!(
            checks[1].detail.contains("refused the token"),
            "{:?}",
            checks[1]
        );
        assert!(
            checks[5].detail.contains("TLS not verified"),
            "{:?}",
            checks[5]
        );
        let text = serde_json::to_string(&checks).unwrap();
        for secret in [
            "good-hec-token",
            "wrong-hec-token",
            "good-es-key",
            "wrong-es-key",
            "good-hook-token",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        // Nothing was delivered anywhere.
        assert!(
            receiver.received().iter().all(|r| r.events.is_empty()),
            "{:?}",
            receiver.received()
        );
        assert!(other.received().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&other_dir);
    }

    #[tokio::test]
    async fn a_syslog_probe_connects_verifies_tls_and_sends_nothing() {
        let (dir, other_dir) = (scratch("syslog"), scratch("syslog-other"));
        let certs = siem_receiver::certs::generate(&dir).unwrap();
        let other = siem_receiver::certs::generate(&other_dir).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(certs.server_config().unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..2 {
                let Ok((tcp, _)) = listener.accept().await else {
                    break;
                };
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    use tokio::io::AsyncReadExt;
                    let mut buf = Vec::new();
                    let _ = tls.read_to_end(&mut buf).await;
                    got.push(buf);
                }
            }
            got
        });
        let emitter = |name: &str, ca: &std::path::Path| {
            serde_json::json!({"name": name, "type": "syslog", "protocol": "TLS", "host": "localhost",
                "port": port, "caBundle": ca.display().to_string(), "caBundleOnly": true})
        };
        let json = serde_json::json!({"emitters": [
            emitter("trusted", &certs.ca_pem_path),
            emitter("untrusted", &other.ca_pem_path)
        ]});
        let config = ForwarderConfig::parse(&json.to_string()).unwrap();
        let checks = probe_config(&config, None).await;
        assert_eq!(checks[0].status, Status::Ok, "{checks:#?}");
        assert!(
            checks[0].detail.contains("certificate verified"),
            "{:?}",
            checks[0]
        );
        assert_eq!(checks[1].status, Status::Failed, "{checks:#?}");
        assert!(
            checks[1]
                .fix
                .as_deref()
                .unwrap_or_default()
                .contains("caBundle")
        );
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            got,
            [Vec::<u8>::new()],
            "one verified connection, closed with nothing sent"
        );
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&other_dir);
    }
}
