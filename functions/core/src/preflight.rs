//! Preflight: checks that a deployment can do its job before it has to, each reported as ok,
//! failed (with what to fix) or skipped, never with a secret in it.
//!
//! The same checks run from the operator's machine (`authtrail-preflight`) and from inside each
//! function when it is invoked with the test payload `{"authtrail": "preflight"}`
//! ([`is_preflight_payload`]), so that what sits inside a VPC is checked from where the
//! function runs; the function then returns a [`Report`] as its response instead of doing its
//! job. This module holds the report and the check every function shares: an S3 prefix
//! writable with the conditional writes the functions rely on ([`probe_bucket`]).

use std::fmt::Write as _;
use std::future::Future;
use std::time::Duration;

use aws_sdk_s3::error::ProvideErrorMetadata;
use serde::{Deserialize, Serialize};

/// The key of the test payload.
pub const PAYLOAD_KEY: &str = "authtrail";
/// The value of [`PAYLOAD_KEY`] in the test payload.
pub const PAYLOAD_VALUE: &str = "preflight";

/// Whether a Lambda payload is the preflight test payload: a JSON object whose `authtrail`
/// member is `"preflight"`. Anything larger than a few hundred bytes is not (a Kinesis batch is
/// never mistaken for it, and is not parsed twice).
pub fn is_preflight_payload(payload: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Test {
        authtrail: Option<String>,
    }
    payload.len() <= 512
        && serde_json::from_slice::<Test>(payload)
            .is_ok_and(|t| t.authtrail.as_deref() == Some(PAYLOAD_VALUE))
}

/// [`is_preflight_payload`] for a payload already read as JSON.
pub fn is_preflight_value(payload: &serde_json::Value) -> bool {
    payload.get(PAYLOAD_KEY).and_then(|v| v.as_str()) == Some(PAYLOAD_VALUE)
}

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It works.
    Ok,
    /// It does not: [`Check::fix`] says what to change.
    Failed,
    /// Not checked (nothing to check, or an earlier check failed); not a failure.
    Skipped,
}

/// One check: a stable dotted name (`mpas.token`, `emitter.splunk`, `bucket.archive`), its
/// status, what was found and, when it failed, what to fix. No field ever holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// The check's name.
    pub name: String,
    /// How it ended.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to change, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    /// A check that passed.
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    /// A check that failed, with what to fix.
    pub fn failed(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            status: Status::Failed,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// A check that was not made, and why.
    pub fn skipped(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: Status::Skipped,
            detail: detail.into(),
            fix: None,
        }
    }
}

/// What one preflight found: the checks in the order they ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Always `"authtrail"`: what made this report.
    pub preflight: String,
    /// Where the checks ran: `authtrail-preflight`, or a function (`producer`, ...).
    pub source: String,
    /// No check failed.
    pub ok: bool,
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// An empty report of checks run from `source`.
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            preflight: PAYLOAD_KEY.to_string(),
            source: source.into(),
            ok: true,
            checks: Vec::new(),
        }
    }

    /// Adds a check.
    pub fn push(&mut self, check: Check) {
        self.ok &= check.status != Status::Failed;
        self.checks.push(check);
    }

    /// Adds checks.
    pub fn extend(&mut self, checks: impl IntoIterator<Item = Check>) {
        for c in checks {
            self.push(c);
        }
    }

    /// The checks that failed.
    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == Status::Failed)
    }

    /// Replaces every occurrence of the given values (credentials the caller knows) in the
    /// checks' texts with `<redacted>`: a last guard, the texts are made without them. Values
    /// shorter than 4 characters are left alone (they would blank out ordinary words).
    pub fn redact(&mut self, secrets: &[&str]) {
        let scrub = |text: &mut String| {
            for s in secrets.iter().filter(|s| s.len() >= 4) {
                if text.contains(*s) {
                    *text = text.replace(*s, "<redacted>");
                }
            }
        };
        for c in &mut self.checks {
            scrub(&mut c.detail);
            if let Some(fix) = &mut c.fix {
                scrub(fix);
            }
        }
    }

    /// The report for a person: one line per check, what to fix under each failure, and a
    /// count at the top.
    pub fn render(&self) -> String {
        let count = |s: Status| self.checks.iter().filter(|c| c.status == s).count();
        let mut out = format!(
            "authtrail preflight from {}: {} ok, {} failed, {} skipped\n",
            self.source,
            count(Status::Ok),
            count(Status::Failed),
            count(Status::Skipped)
        );
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &self.checks {
            let status = match c.status {
                Status::Ok => "ok",
                Status::Failed => "FAILED",
                Status::Skipped => "skipped",
            };
            let _ = writeln!(out, "  {status:<8} {:<width$}  {}", c.name, c.detail);
            if let Some(fix) = &c.fix {
                let _ = writeln!(out, "  {:<8} {:<width$}  fix: {fix}", "", "");
            }
        }
        out
    }
}

/// `check`, or a failure of `name` when it has not ended within `limit`.
pub async fn within(name: &str, limit: Duration, check: impl Future<Output = Check>) -> Check {
    match tokio::time::timeout(limit, check).await {
        Ok(c) => c,
        Err(_) => Check::failed(
            name,
            format!("no answer within {} s", limit.as_secs()),
            "check that the endpoint is reachable from here (network route, security group, proxy)",
        ),
    }
}

/// What [`probe_bucket`] checks.
#[derive(Debug, Clone)]
pub struct BucketProbe<'a> {
    /// The check's name (`bucket.archive`).
    pub name: &'a str,
    /// The bucket.
    pub bucket: &'a str,
    /// The probe object's key, under the prefix the caller may write.
    pub key: &'a str,
    /// Also check `If-Match` (the producer's cursor is replaced with `If-Match: <ETag>`).
    pub if_match: bool,
    /// Delete the probe object afterwards (when the caller may); else it stays (empty) and
    /// the next preflight finds it.
    pub delete: bool,
}

/// Checks that `probe.key` can be written with the conditions the functions rely on: a `PUT`
/// with `If-None-Match: *` creates it (or answers 412 when an earlier preflight left it, which
/// S3 checks after the permission), a second one answers 412 (the store enforces the
/// condition: the archiver's exactly-once and the spool depend on it), and with `if_match` a
/// `PUT` with the object's ETag succeeds while one with another ETag answers 412.
pub async fn probe_bucket(s3: &aws_sdk_s3::Client, probe: &BucketProbe<'_>) -> Check {
    let name = probe.name;
    let at = format!("s3://{}/{}", probe.bucket, probe.key);
    let (bucket, key) = (probe.bucket, probe.key);
    let created = match put_probe(s3, bucket, key, Cond::IfNoneMatch).await {
        Ok(etag) => Some(etag),
        Err(e) if e.code == "PreconditionFailed" => None,
        Err(e) => return s3_failure(name, &at, &e),
    };
    let mut found = Vec::new();
    if created.is_some() {
        match put_probe(s3, bucket, key, Cond::IfNoneMatch).await {
            Ok(_) => {
                return Check::failed(
                    name,
                    format!("{at}: a second PUT with If-None-Match: * replaced the object"),
                    "use an S3 store that enforces conditional writes (Amazon S3 does); the archive's exactly-once writes and the spool depend on them",
                );
            }
            Err(e) if e.code == "PreconditionFailed" => {
                found.push("If-None-Match: * enforced (412 on an existing key)")
            }
            Err(e) => return s3_failure(name, &at, &e),
        }
    } else {
        found.push("If-None-Match: * enforced (the probe of an earlier run answered 412)");
    }
    if probe.if_match {
        let etag = match created {
            Some(Some(etag)) => etag,
            _ => match s3
                .head_object()
                .bucket(probe.bucket)
                .key(probe.key)
                .send()
                .await
            {
                Ok(h) => h.e_tag().unwrap_or_default().to_string(),
                Err(e) => return s3_failure(name, &at, &S3Failure::of(&e)),
            },
        };
        if let Err(e) = put_probe(s3, bucket, key, Cond::IfMatch(&etag)).await {
            return s3_failure(name, &at, &e);
        }
        match put_probe(
            s3,
            bucket,
            key,
            Cond::IfMatch("\"00000000000000000000000000000000\""),
        )
        .await
        {
            Ok(_) => {
                return Check::failed(
                    name,
                    format!("{at}: a PUT with a stale If-Match ETag replaced the object"),
                    "use an S3 store that enforces If-Match (Amazon S3 does); the producer's cursor and lease depend on it",
                );
            }
            Err(e) if e.code == "PreconditionFailed" => {
                found.push("If-Match enforced (the current ETag writes, a stale one answers 412)")
            }
            Err(e) => return s3_failure(name, &at, &e),
        }
    }
    if probe.delete
        && let Err(e) = s3
            .delete_object()
            .bucket(probe.bucket)
            .key(probe.key)
            .send()
            .await
    {
        found.push("the probe object could not be deleted");
        tracing::warn!(error = %crate::error_chain(&e), key = %at, "preflight probe not deleted");
    }
    Check::ok(name, format!("{at} writable; {}", found.join("; ")))
}

/// A condition of a probe `PUT`.
enum Cond<'a> {
    IfNoneMatch,
    IfMatch(&'a str),
}

/// Why an S3 call failed: the error code (empty when no answer came) and the text.
struct S3Failure {
    code: String,
    status: Option<u16>,
    text: String,
}

impl S3Failure {
    fn of<E>(e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        Self {
            code: e.code().unwrap_or_default().to_string(),
            status: e.raw_response().map(|r| r.status().as_u16()),
            text: crate::error_chain(e),
        }
    }
}

/// One probe `PUT`; `Ok` carries the new ETag.
async fn put_probe(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    cond: Cond<'_>,
) -> Result<Option<String>, S3Failure> {
    // Empty, so that whatever reads the prefix line by line (dead letters, the archive's
    // readers) finds nothing in it; the metadata says what it is.
    let req = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .metadata("authtrail", "preflight probe")
        .body(Vec::new().into());
    let req = match cond {
        Cond::IfNoneMatch => req.if_none_match("*"),
        Cond::IfMatch(etag) => req.if_match(etag),
    };
    match req.send().await {
        Ok(out) => Ok(out.e_tag().map(str::to_string)),
        Err(e) => {
            let mut f = S3Failure::of(&e);
            // Some stores answer a failed precondition with the status only.
            if f.code.is_empty() && f.status == Some(412) {
                f.code = "PreconditionFailed".into();
            }
            Err(f)
        }
    }
}

/// The failed check for an S3 error, with what to fix by code.
fn s3_failure(name: &str, at: &str, e: &S3Failure) -> Check {
    let fix = match e.code.as_str() {
        "AccessDenied" | "AllAccessDisabled" => {
            "grant the role s3:PutObject (and s3:GetObject) on this prefix; the stack's role has it unless the prefix was changed"
        }
        "NoSuchBucket" => "create the bucket or correct its name",
        "PermanentRedirect" | "AuthorizationHeaderMalformed" => {
            "the bucket is in another region: use the stack's region"
        }
        "" => {
            "S3 did not answer: check the route to S3 from here (a VPC needs an S3 gateway endpoint or NAT)"
        }
        _ => "see the error code",
    };
    let code = if e.code.is_empty() {
        "no answer".to_string()
    } else {
        e.code.clone()
    };
    Check::failed(name, format!("{at}: {code}: {}", e.text), fix)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_test_payload_is_recognised_and_nothing_else_is() {
        assert!(is_preflight_payload(br#"{"authtrail": "preflight"}"#));
        assert!(is_preflight_payload(br#"{"authtrail":"preflight","x":1}"#));
        for other in [
            &br#"{"authtrail": "run"}"#[..],
            br#"{}"#,
            br#"{"Records": []}"#,
            br#"{"source": "aws.events", "detail-type": "Scheduled Event"}"#,
            br#"["authtrail", "preflight"]"#,
            b"not json",
        ] {
            assert!(
                !is_preflight_payload(other),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
        let big = format!(r#"{{"authtrail":"preflight","pad":"{}"}}"#, "x".repeat(600));
        assert!(!is_preflight_payload(big.as_bytes()));
        assert!(is_preflight_value(
            &serde_json::json!({"authtrail": "preflight"})
        ));
        assert!(!is_preflight_value(&serde_json::json!({"authtrail": 1})));
    }

    #[test]
    fn a_report_is_ok_until_a_check_fails_and_skipped_checks_do_not_fail_it() {
        let mut r = Report::new("producer");
        r.push(Check::ok("a", "fine"));
        r.push(Check::skipped("b", "nothing to check"));
        assert!(r.ok);
        r.push(Check::failed("c", "refused", "fix it"));
        assert!(!r.ok);
        assert_eq!(
            r.failed().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["preflight"], "authtrail");
        assert_eq!(
            v["checks"][0],
            serde_json::json!({"name": "a", "status": "ok", "detail": "fine"})
        );
        assert_eq!(v["checks"][2]["status"], "failed");
        assert_eq!(v["checks"][2]["fix"], "fix it");
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn the_rendered_report_counts_names_every_check_and_says_what_to_fix() {
        let mut r = Report::new("authtrail-preflight");
        r.push(Check::ok("mpas.token", "granted"));
        r.push(Check::failed(
            "emitter.splunk",
            "HEC refused the token",
            "check token",
        ));
        let text = r.render();
        assert!(
            text.starts_with(
                "authtrail preflight from authtrail-preflight: 1 ok, 1 failed, 0 skipped\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  ok       mpas.token      granted\n"),
            "{text}"
        );
        assert!(
            text.contains("  FAILED   emitter.splunk  HEC refused the token\n"),
            "{text}"
        );
        assert!(text.contains("fix: check token"), "{text}");
    }

    #[test]
    fn redaction_removes_known_secret_values_from_every_text() {
        let mut r = Report::new("x");
        r.push(Check::failed(
            "a",
            "token s3cr3t-token was refused",
            "replace s3cr3t-token",
        ));
        r.push(Check::ok("b", "a b c"));
        r.redact(&["s3cr3t-token", "b"]);
        assert_eq!(r.checks[0].detail, "token <redacted> was refused");
        assert_eq!(r.checks[0].fix.as_deref(), Some("replace <redacted>"));
        assert_eq!(r.checks[1].detail, "a b c", "short values are left alone");
    }

    #[tokio::test]
    async fn a_check_that_does_not_end_in_time_fails_naming_the_limit() {
        let c = within("slow", Duration::from_millis(10), async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Check::ok("slow", "late")
        })
        .await;
        assert_eq!(c.status, Status::Failed);
        assert_eq!(c.name, "slow");
    }
}
