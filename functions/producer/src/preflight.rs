//! Preflight of the producer: MPAS reachable (TLS verified), the credentials granted a token,
//! the token allowed to read user events and admin events, the server's API generation; the
//! stream reachable; the checkpoint bucket writable with the conditional writes the cursor and
//! the lease rely on. Run by the function when invoked with `{"authtrail": "preflight"}`, from
//! where it runs (inside its VPC, with its role), and by `authtrail-preflight`.

use std::time::Duration;

use authtrail_core::envelope::EventKind;
use authtrail_core::preflight::{BucketProbe, Check, Report, probe_bucket, within};
use authtrail_core::secret::fetch_secret_string;
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use serde::Serialize;

use crate::config::{Credentials, Settings, SinkTarget, credentials_from_secret_json};
use crate::error::{MpasEndpoint, SourceError};
use crate::mpas::{ClientOptions, DateParam, EventSource, HttpEventSource, PageQuery};
use crate::summary::RunSummary;

/// How long one request of the checks may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the MPAS checks may take together.
pub const MPAS_LIMIT: Duration = Duration::from_secs(45);
/// The names of the MPAS checks, in order.
pub const MPAS_CHECKS: [&str; 5] = [
    "mpas.reachable",
    "mpas.token",
    "mpas.events",
    "mpas.admin-events",
    "mpas.api-generation",
];

/// What the producer returns: a run's summary, or the preflight report.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Response {
    /// The summary of a pull.
    Run(RunSummary),
    /// The preflight report.
    Preflight(Box<Report>),
}

/// The MPAS server and the credentials to check (resolved, never printed).
#[derive(Debug, Clone)]
pub struct MpasTarget {
    /// `MPAS_BASE_URL`.
    pub base_url: String,
    /// `MPAS_REALM`.
    pub realm: String,
    /// The credentials (not a secret ARN).
    pub credentials: Credentials,
    /// PEM CAs to trust in addition to (or with `ca_bundle_only`, instead of) the system's.
    pub ca_bundle_pem: Option<Vec<u8>>,
    /// Trust only `ca_bundle_pem`.
    pub ca_bundle_only: bool,
}

/// The MPAS checks ([`MPAS_CHECKS`]); those after a failed one are skipped.
pub async fn check_mpas(t: &MpasTarget) -> Vec<Check> {
    let mut checks = Vec::new();
    let skip_rest = |checks: &mut Vec<Check>, why: &str| {
        for name in MPAS_CHECKS.iter().skip(checks.len()) {
            checks.push(Check::skipped(*name, why));
        }
    };
    checks.push(reachable(t).await);
    if checks[0].status == authtrail_core::preflight::Status::Failed {
        skip_rest(&mut checks, "MPAS is not reachable");
        return checks;
    }
    let options = ClientOptions {
        ca_bundle_pem: t.ca_bundle_pem.as_deref(),
        ca_bundle_only: t.ca_bundle_only,
        ..ClientOptions::new(REQUEST_TIMEOUT, 1)
    };
    let source = match HttpEventSource::new(&t.base_url, &t.realm, t.credentials.clone(), &options)
    {
        Ok(s) => s,
        Err(e) => {
            checks.push(Check::failed(
                "mpas.token",
                e.to_string(),
                "correct MPAS_CA_BUNDLE",
            ));
            skip_rest(&mut checks, "no MPAS client");
            return checks;
        }
    };
    // The query of Keycloak 26.2 and later: epoch milliseconds and an ascending order.
    let modern = PageQuery {
        date_from: None,
        date_to: Some(DateParam::EpochMs(crate::pull::now_ms())),
        first: 0,
        max: 1,
        ascending: Some(true),
    };
    let first = source.fetch_page(EventKind::User, &modern).await;
    if let Err(e) = &first
        && let Some(failed) = token_failure(e, &t.credentials)
    {
        checks.push(failed);
        skip_rest(&mut checks, "no token");
        return checks;
    }
    checks.push(Check::ok(
        "mpas.token",
        format!(
            "the token endpoint granted a token ({} grant)",
            grant(&t.credentials)
        ),
    ));
    // Older servers refuse epoch dates (400): read them as they are read in legacy mode.
    let legacy = matches!(first, Err(SourceError::BadRequest(_)));
    let query = if legacy {
        PageQuery {
            date_to: None,
            ascending: None,
            ..modern
        }
    } else {
        modern
    };
    let user = if legacy {
        source.fetch_page(EventKind::User, &query).await
    } else {
        first
    };
    checks.push(events_check("mpas.events", "user events", &user));
    let admin = source.fetch_page(EventKind::Admin, &query).await;
    checks.push(events_check("mpas.admin-events", "admin events", &admin));
    checks.push(generation(legacy, user.as_ref().ok(), admin.as_ref().ok()));
    checks
}

/// The grant the credentials use.
fn grant(c: &Credentials) -> &'static str {
    match c {
        Credentials::Password { .. } => "password",
        _ => "client_credentials",
    }
}

/// `mpas.reachable`: the realm's OpenID configuration asked for (any HTTP answer will do).
async fn reachable(t: &MpasTarget) -> Check {
    let name = "mpas.reachable";
    let mut builder = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = &t.ca_bundle_pem {
        match reqwest::Certificate::from_pem_bundle(pem) {
            Ok(certs) if t.ca_bundle_only => builder = builder.tls_certs_only(certs),
            Ok(certs) => builder = builder.tls_certs_merge(certs),
            Err(e) => {
                return Check::failed(name, format!("MPAS_CA_BUNDLE: {e}"), "give a PEM file");
            }
        }
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => return Check::failed(name, e.to_string(), "correct MPAS_CA_BUNDLE"),
    };
    let base = t.base_url.trim_end_matches('/');
    let url = format!("{base}/realms/{}/.well-known/openid-configuration", t.realm);
    match client.get(&url).send().await {
        Ok(r) => Check::ok(
            name,
            format!(
                "{base} answered (HTTP {} for the realm's OpenID configuration){}",
                r.status().as_u16(),
                if base.starts_with("https://") {
                    ", TLS certificate verified"
                } else {
                    ", plain HTTP (loopback)"
                }
            ),
        ),
        Err(e) => {
            let text = authtrail_core::error_chain(&e);
            let tls = text.to_ascii_lowercase().contains("certificate");
            Check::failed(
                name,
                format!(
                    "{base}: {}: {text}",
                    if tls {
                        "TLS not verified"
                    } else {
                        "not reachable"
                    }
                ),
                if tls {
                    "trust MPAS's certificate: MPAS_CA_BUNDLE (PEM) with its CA, and the host name the certificate names"
                } else {
                    "check MPAS_BASE_URL and the route from where this runs (VPC subnets, security groups, NAT, proxy)"
                },
            )
        }
    }
}

/// The failed `mpas.token` check when `e` is about the token, else `None`.
fn token_failure(e: &SourceError, c: &Credentials) -> Option<Check> {
    let which = match c {
        Credentials::Password { .. } => "the user name and password (and client id)",
        _ => "the client id and client secret",
    };
    let fix = match e {
        SourceError::TokenRejected { .. } => format!(
            "check {which} (in the secret MPAS_CREDENTIALS_SECRET_ARN names, or the MPAS_* variables), and that the client may use the {} grant",
            grant(c)
        ),
        SourceError::TokenStatus { .. } | SourceError::TokenUnavailable { .. } => {
            "look at MPAS: its token endpoint did not give a token".to_string()
        }
        SourceError::Redirected {
            endpoint: MpasEndpoint::Token,
            ..
        }
        | SourceError::TooLarge {
            endpoint: MpasEndpoint::Token,
            ..
        } => "check MPAS_BASE_URL (it must be the server's base URL, without redirects)".into(),
        SourceError::CaBundle(_) | SourceError::Client(_) | SourceError::UnresolvedCredentials => {
            "correct MPAS_CA_BUNDLE".into()
        }
        _ => return None,
    };
    Some(Check::failed("mpas.token", e.to_string(), fix))
}

/// `mpas.events` / `mpas.admin-events`: one page of one event asked for.
fn events_check(
    name: &str,
    what: &str,
    page: &Result<Vec<serde_json::Value>, SourceError>,
) -> Check {
    match page {
        Ok(events) => Check::ok(
            name,
            format!(
                "the token may read {what} ({} on a first page of one)",
                events.len()
            ),
        ),
        Err(SourceError::Forbidden { status }) => Check::failed(
            name,
            format!("MPAS refused to list {what} with this token: HTTP {status}"),
            "give the client's service account (or the user) the view-events role of the realm's realm-management client",
        ),
        Err(e) => Check::failed(
            name,
            format!("{what}: {e}"),
            "see the error: MPAS answered the token but not the events endpoint",
        ),
    }
}

/// `mpas.api-generation`: Keycloak 26.2 and later (event ids, epoch filters, ascending order)
/// or an older server (the producer's legacy mode).
fn generation(
    legacy: bool,
    user: Option<&Vec<serde_json::Value>>,
    admin: Option<&Vec<serde_json::Value>>,
) -> Check {
    let name = "mpas.api-generation";
    if legacy {
        return Check::ok(
            name,
            "before Keycloak 26.2 (epoch date filters refused): read in legacy mode (day filters, newest first, events told apart by a hash of their content)",
        );
    }
    let sample = user.into_iter().chain(admin).flatten().next();
    match sample {
        Some(e) if e.get("id").is_some() => Check::ok(
            name,
            "Keycloak 26.2 or later (event ids, epoch date filters, direction=asc)",
        ),
        Some(_) => Check::ok(
            name,
            "epoch date filters accepted but events carry no id: read in legacy mode (detected on the first run)",
        ),
        None => Check::ok(
            name,
            "epoch date filters and direction=asc accepted (Keycloak 26.2 or later); no event yet to look for ids",
        ),
    }
}

/// `stream`: the stream described (`DescribeStreamSummary`, else `DescribeStream`). A role that
/// may not describe it still proves Kinesis reachable and the credentials valid; that counts as
/// ok when `denied_is_ok` (the producer's role may only put records).
pub async fn check_stream(
    name: &str,
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    denied_is_ok: bool,
) -> Check {
    let arn = stream.starts_with("arn:");
    let summary = if arn {
        kinesis.describe_stream_summary().stream_arn(stream)
    } else {
        kinesis.describe_stream_summary().stream_name(stream)
    };
    let code = match summary.send().await {
        Ok(out) => {
            return match out.stream_description_summary() {
                Some(d) => stream_status(
                    name,
                    stream,
                    d.stream_status().as_str(),
                    Some(d.open_shard_count()),
                ),
                None => Check::ok(name, format!("{stream} described")),
            };
        }
        Err(e) => (
            e.code().unwrap_or_default().to_string(),
            authtrail_core::error_chain(&e),
        ),
    };
    let code = if code.0.starts_with("AccessDenied") {
        // A writer role may have DescribeStream only.
        let full = if arn {
            kinesis.describe_stream().stream_arn(stream).limit(1)
        } else {
            kinesis.describe_stream().stream_name(stream).limit(1)
        };
        match full.send().await {
            Ok(out) => {
                return match out.stream_description() {
                    Some(d) => stream_status(name, stream, d.stream_status().as_str(), None),
                    None => Check::ok(name, format!("{stream} described")),
                };
            }
            Err(e) => (
                e.code().unwrap_or_default().to_string(),
                authtrail_core::error_chain(&e),
            ),
        }
    } else {
        code
    };
    match code.0.as_str() {
        c if c.starts_with("AccessDenied") && denied_is_ok => Check::ok(
            name,
            format!(
                "Kinesis reachable and the credentials valid; this role may not describe {stream} (it may only put records), so its existence was not checked"
            ),
        ),
        c if c.starts_with("AccessDenied") => Check::failed(
            name,
            format!("{stream}: access denied: {}", code.1),
            "grant kinesis:DescribeStream on the stream (the writer role of the templates has it)",
        ),
        "ResourceNotFoundException" => Check::failed(
            name,
            format!("{stream}: no such stream"),
            "correct the stream name or ARN (and the region)",
        ),
        "" => Check::failed(
            name,
            format!("Kinesis did not answer: {}", code.1),
            "check the route to Kinesis from here (a VPC needs a Kinesis interface endpoint or NAT)",
        ),
        other => Check::failed(
            name,
            format!("{stream}: {other}: {}", code.1),
            "see the error code",
        ),
    }
}

fn stream_status(name: &str, stream: &str, status: &str, shards: Option<i32>) -> Check {
    let shards = shards
        .map(|n| format!(", {n} open shard(s)"))
        .unwrap_or_default();
    if matches!(status, "ACTIVE" | "UPDATING") {
        Check::ok(name, format!("{stream}: {status}{shards}"))
    } else {
        Check::failed(
            name,
            format!("{stream}: {status}{shards}"),
            "wait until the stream is ACTIVE",
        )
    }
}

/// The function's own preflight, with its settings and SDK configuration from cold start.
pub struct Preflight {
    settings: Settings,
    sdk: aws_config::SdkConfig,
}

impl Preflight {
    /// The preflight of the function configured by `settings`.
    pub fn new(settings: Settings, sdk: aws_config::SdkConfig) -> Self {
        Self { settings, sdk }
    }

    /// Every check, from where the function runs.
    pub async fn run(&self) -> Report {
        let s = &self.settings;
        let mut report = Report::new("producer");
        report.push(Check::ok(
            "config",
            "the configuration was read and valid at cold start",
        ));
        match self.mpas_target().await {
            Ok(target) => match tokio::time::timeout(MPAS_LIMIT, check_mpas(&target)).await {
                Ok(checks) => report.extend(checks),
                Err(_) => report.push(Check::failed(
                    "mpas.reachable",
                    format!("the MPAS checks took more than {} s", MPAS_LIMIT.as_secs()),
                    "check the route to MPAS from where this runs (VPC subnets, security groups, NAT, proxy)",
                )),
            },
            Err(failed) => report.push(failed),
        }
        report.push(match &s.sink {
            SinkTarget::Kinesis(stream) => {
                let kinesis = aws_sdk_kinesis::Client::new(&self.sdk);
                within(
                    "stream",
                    REQUEST_TIMEOUT * 2,
                    check_stream("stream", &kinesis, stream, true),
                )
                .await
            }
            SinkTarget::Firehose(name) => Check::skipped(
                "stream",
                format!(
                    "Firehose delivery stream {name}: the role may only put records; not described"
                ),
            ),
        });
        let s3 = authtrail_core::aws::s3_client(&self.sdk);
        let key = format!("{}.preflight", s.checkpoint_key);
        report.push(
            within(
                "bucket.checkpoint",
                REQUEST_TIMEOUT * 3,
                probe_bucket(
                    &s3,
                    &BucketProbe {
                        name: "bucket.checkpoint",
                        bucket: &s.checkpoint_bucket,
                        key: &key,
                        if_match: true,
                        delete: false,
                    },
                ),
            )
            .await,
        );
        report
    }

    /// MPAS and the credentials, read as the cold start read them.
    async fn mpas_target(&self) -> Result<MpasTarget, Check> {
        let s = &self.settings;
        let credentials = match &s.credentials {
            Credentials::SecretArn(arn) => {
                let secret = fetch_secret_string(&self.sdk, arn).await.map_err(|e| {
                    Check::failed(
                        "mpas.token",
                        e.to_string(),
                        "grant the role secretsmanager:GetSecretValue on the secret",
                    )
                })?;
                credentials_from_secret_json(arn, &secret).map_err(|e| {
                    Check::failed("mpas.token", e.to_string(), "correct the secret's JSON")
                })?
            }
            other => other.clone(),
        };
        let ca_bundle_pem = match &s.ca_bundle {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                Check::failed(
                    "mpas.reachable",
                    format!("MPAS_CA_BUNDLE {path}: {e}"),
                    "give a readable PEM file",
                )
            })?),
            None => None,
        };
        Ok(MpasTarget {
            base_url: s.base_url.clone(),
            realm: s.realm.clone(),
            credentials,
            ca_bundle_pem,
            ca_bundle_only: s.ca_bundle_only,
        })
    }
}

#[cfg(test)]
mod tests;
