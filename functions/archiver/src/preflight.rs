//! Preflight of the archiver, run when it is invoked with `{"authtrail": "preflight"}` instead
//! of a Kinesis batch: the archive bucket written with the conditional write the exactly-once
//! archive relies on (`If-None-Match: *`), a missing object answering 404 (not 403: the
//! archiver reads "absent" from it, which needs `s3:ListBucket`), and, with digests, the KMS
//! key signing. From where the function runs, with its role.

use std::time::Duration;

use authtrail_core::preflight::{BucketProbe, Check, Report, probe_bucket, within};
use aws_lambda_events::event::streams::KinesisEventResponse;
use aws_sdk_s3::error::ProvideErrorMetadata;
use serde::Serialize;

use crate::config::Config;
use crate::signer::DigestSigner;

/// How long one check may take.
pub const CHECK_LIMIT: Duration = Duration::from_secs(20);
/// The probe object under the state prefix (the archiver reads state objects by their key
/// only, so it is never mistaken for one).
pub const PROBE_OBJECT: &str = ".preflight";

/// What the archiver returns: the partial-batch response, or the preflight report.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Response {
    /// `{"batchItemFailures": [...]}`.
    Batch(KinesisEventResponse),
    /// The preflight report.
    Preflight(Box<Report>),
}

/// The archiver's preflight: its bucket, prefixes and signer from cold start.
pub struct Preflight<G> {
    s3: aws_sdk_s3::Client,
    config: Config,
    signer: Option<G>,
}

impl<G: DigestSigner> Preflight<G> {
    /// The preflight of the archiver configured by `config`, signing with `signer` when it
    /// writes digests.
    pub fn new(s3: aws_sdk_s3::Client, config: Config, signer: Option<G>) -> Self {
        Self { s3, config, signer }
    }

    /// Every check.
    pub async fn run(&self) -> Report {
        let mut report = Report::new("archiver");
        report.push(Check::ok(
            "config",
            "the configuration was read and valid at cold start",
        ));
        let key = format!("{}{PROBE_OBJECT}", self.config.state_prefix);
        let probe = BucketProbe {
            name: "bucket.archive",
            bucket: &self.config.bucket,
            key: &key,
            if_match: false,
            delete: false,
        };
        report.push(
            within(
                "bucket.archive",
                CHECK_LIMIT,
                probe_bucket(&self.s3, &probe),
            )
            .await,
        );
        report.push(within("bucket.missing-is-404", CHECK_LIMIT, self.missing_is_404()).await);
        report.push(match &self.signer {
            Some(signer) => within("digests.sign", CHECK_LIMIT, sign(signer)).await,
            None => Check::skipped("digests.sign", "digests are off (no ARCHIVE_DIGEST_KEY_ID)"),
        });
        report
    }

    /// `bucket.missing-is-404`: a `HEAD` of a key that does not exist answers 404.
    async fn missing_is_404(&self) -> Check {
        let name = "bucket.missing-is-404";
        let key = format!("{}{PROBE_OBJECT}-absent", self.config.state_prefix);
        let at = format!("s3://{}/{key}", self.config.bucket);
        match self
            .s3
            .head_object()
            .bucket(&self.config.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(_) => Check::ok(
                name,
                format!("{at} exists (someone wrote it); HEAD allowed"),
            ),
            Err(e) => match e.raw_response().map(|r| r.status().as_u16()) {
                Some(404) => Check::ok(name, format!("{at}: a missing object answers 404")),
                Some(403) => Check::failed(
                    name,
                    format!("{at}: a missing object answers 403"),
                    "grant the role s3:ListBucket on the bucket: without it S3 hides 404 behind 403 and the archiver cannot tell an absent object from a refusal",
                ),
                status => Check::failed(
                    name,
                    format!(
                        "{at}: {} ({})",
                        e.code().unwrap_or("no answer"),
                        status.map_or("no status".into(), |s| s.to_string())
                    ),
                    "check the route to S3 from here (a VPC needs an S3 gateway endpoint or NAT)",
                ),
            },
        }
    }
}

/// `digests.sign`: the KMS key signs a probe message.
async fn sign<G: DigestSigner>(signer: &G) -> Check {
    let name = "digests.sign";
    match signer.sign(b"authtrail preflight").await {
        Ok(sig) => Check::ok(
            name,
            format!(
                "{} signs ({:?}, {} bytes)",
                signer.key_id(),
                signer.algorithm(),
                sig.len()
            ),
        ),
        Err(e) => Check::failed(
            name,
            format!("{}: {e}", signer.key_id()),
            "grant the role kms:Sign on the key (an asymmetric SIGN_VERIFY key of the configured algorithm)",
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::signer::{LocalSigner, NoSigner};
    use authtrail_core::preflight::Status;

    fn client() -> aws_sdk_s3::Client {
        // Nothing listens on this port: the S3 checks fail as unreachable.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "a", "b", None, None, "t",
            ))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    #[tokio::test]
    async fn an_unreachable_bucket_fails_its_checks_and_digests_off_are_skipped() {
        let p: Preflight<NoSigner> = Preflight::new(client(), Config::new("arch"), None);
        let r = p.run().await;
        let got: Vec<(&str, Status)> = r
            .checks
            .iter()
            .map(|c| (c.name.as_str(), c.status))
            .collect();
        assert_eq!(
            got,
            [
                ("config", Status::Ok),
                ("bucket.archive", Status::Failed),
                ("bucket.missing-is-404", Status::Failed),
                ("digests.sign", Status::Skipped),
            ]
        );
        assert!(!r.ok);
    }

    #[tokio::test]
    async fn a_signer_that_signs_passes_the_digest_check() {
        let c = sign(&LocalSigner::generate().unwrap()).await;
        assert_eq!(c.status, Status::Ok, "{c:?}");
    }
}
