//! The settings of type `kafka`, in the vocabulary of Blitz Identity Provider's Kafka emitter
//! (`bootstrapServers`, `topic`, `securityProtocol`, `sasl`, `ssl`, `tuning` with Kafka's own
//! producer setting names) written as JSON.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::ForwarderError;
use crate::config::buffering::BufferingLimits;
use crate::config::err;
use crate::config::secret::{SecretRef, secret_ref};
use crate::emit::{Emitter, EmitterSpec};

pub use super::tuning::{Acks, Compression, TUNING_KEYS, Tuning, tuning};

/// The keys of type `kafka` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawKafka {
    /// The brokers to start from, `host:port` each: a list, or one comma-separated string
    /// (required). The cluster's other brokers are learnt from their metadata.
    bootstrap_servers: Option<Value>,
    /// The topic records are written to (required).
    topic: Option<String>,
    /// `SSL` (default without `sasl`), `SASL_SSL` (default with `sasl`), and for loopback
    /// brokers only `PLAINTEXT` and `SASL_PLAINTEXT`.
    security_protocol: Option<String>,
    /// SASL authentication: `mechanism`, `username`, `passwordSecretArn` (or `password`).
    sasl: Option<RawSasl>,
    /// TLS trust and client certificate: `caBundle`, `caBundleOnly`,
    /// `clientCertificateSecretArn` (or `clientCertificate`).
    ssl: Option<RawSsl>,
    /// Kafka producer settings by their Kafka names (values as strings or numbers): `acks`,
    /// `client.id`, `compression.type`, `linger.ms`, `max.request.size`,
    /// `metadata.max.age.ms`, `request.timeout.ms`, `socket.connection.setup.timeout.ms`.
    tuning: Option<Map<String, Value>>,
}

/// `sasl` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSasl {
    /// `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` or `AWS_MSK_IAM` (required).
    mechanism: Option<String>,
    /// The user (required except for `AWS_MSK_IAM`).
    username: Option<String>,
    /// The password (local runs only, with `AUTHTRAIL_ALLOW_PLAINTEXT_SECRETS=true`).
    password: Option<String>,
    /// Secrets Manager ARN of the password: a plain string, or a JSON object with a
    /// `password` field (an MSK SCRAM secret, `{"username","password"}`; its `username` fills
    /// `username` when not given).
    password_secret_arn: Option<String>,
}

/// `ssl` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSsl {
    /// CAs trusted in addition to the system's: the path of a PEM file, or PEM text itself.
    ca_bundle: Option<String>,
    /// Trust only the CAs of `caBundle` (default `false`).
    ca_bundle_only: Option<bool>,
    /// The client certificate chain and its private key for mutual TLS (local runs only).
    client_certificate: Option<String>,
    /// Secrets Manager ARN of the client certificate chain and key: PEM text holding both, or
    /// a JSON object with `certificate` and `privateKey` PEM fields.
    client_certificate_secret_arn: Option<String>,
}

/// How the emitter talks to the brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// Plain TCP (loopback brokers only).
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL over plain TCP (loopback brokers only).
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Whether TLS is used.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether SASL is used.
    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }
}

/// A SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// `PLAIN`.
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
    /// `AWS_MSK_IAM`: MSK IAM access control, spoken as `OAUTHBEARER` with a signed token.
    AwsMskIam,
}

impl Mechanism {
    /// The mechanism's name on the wire.
    pub fn wire_name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::AwsMskIam => "OAUTHBEARER",
        }
    }
}

/// Validated `sasl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sasl {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// The user (`None` for `AWS_MSK_IAM`, or when the secret holds it).
    pub username: Option<String>,
    /// The password (`None` for `AWS_MSK_IAM`; hidden in `Debug`).
    pub password: Option<SecretRef>,
}

/// `ssl.caBundle`: a file or PEM text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaBundle {
    /// A PEM file's path.
    File(PathBuf),
    /// PEM text.
    Pem(String),
}

/// Validated `ssl`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ssl {
    /// Extra trusted CAs.
    pub ca_bundle: Option<CaBundle>,
    /// Trust only `ca_bundle`.
    pub ca_bundle_only: bool,
    /// The client certificate chain and key (hidden in `Debug`).
    pub client_certificate: Option<SecretRef>,
}

/// A bootstrap broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or address (brackets removed from IPv6).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The validated settings of type `kafka`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Bootstrap brokers.
    pub bootstrap_servers: Vec<HostPort>,
    /// The topic.
    pub topic: String,
    /// The transport.
    pub security_protocol: SecurityProtocol,
    /// SASL, with `SASL_*` protocols.
    pub sasl: Option<Sasl>,
    /// TLS settings, with `SSL` / `SASL_SSL`.
    pub ssl: Ssl,
    /// Producer settings.
    pub tuning: Tuning,
}

/// Whether `host` is a loopback host (`localhost`, 127.0.0.0/8, `::1`).
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Parses `host:port` (`[v6]:port` for IPv6).
fn host_port(path: &str, s: &str) -> Result<HostPort, ForwarderError> {
    let bad = || {
        err(
            path,
            format!("must be host:port (got {s:?}); give the broker's address without a scheme"),
        )
    };
    let s = s.trim();
    if s.contains("://") {
        return Err(bad());
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(bad)?;
    if host.is_empty() || host.contains(['/', ' ', '@']) {
        return Err(bad());
    }
    Ok(HostPort {
        host: host.to_string(),
        port,
    })
}

fn bootstrap(label: &str, raw: Option<Value>) -> Result<Vec<HostPort>, ForwarderError> {
    let path = format!("{label}.bootstrapServers");
    let items: Vec<String> = match raw {
        None => Vec::new(),
        Some(Value::String(s)) => s.split(',').map(str::to_string).collect(),
        Some(Value::Array(a)) => a
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(err(
                    &path,
                    format!("must list host:port strings (got {other})"),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(err(
                &path,
                format!("must be a list of host:port (got {other})"),
            ));
        }
    };
    let servers = items
        .iter()
        .filter(|s| !s.trim().is_empty())
        .enumerate()
        .map(|(i, s)| host_port(&format!("{path}[{i}]"), s))
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err(err(
            path,
            "is required for type kafka (a list of host:port)",
        ));
    }
    Ok(servers)
}

/// Checks a topic name as Kafka does: 1-249 of `a-z A-Z 0-9 . _ -`, not `.` or `..`.
fn topic(label: &str, raw: Option<String>) -> Result<String, ForwarderError> {
    let path = format!("{label}.topic");
    let t = raw.ok_or_else(|| err(&path, "is required for type kafka"))?;
    let legal = !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !legal {
        return Err(err(
            path,
            format!("must be a Kafka topic name: 1-249 of a-z A-Z 0-9 . _ - (got {t:?})"),
        ));
    }
    Ok(t)
}

fn mechanism(path: &str, raw: Option<&str>) -> Result<Mechanism, ForwarderError> {
    match raw {
        Some("PLAIN") => Ok(Mechanism::Plain),
        Some("SCRAM-SHA-256") => Ok(Mechanism::ScramSha256),
        Some("SCRAM-SHA-512") => Ok(Mechanism::ScramSha512),
        Some("AWS_MSK_IAM") => Ok(Mechanism::AwsMskIam),
        Some(other) => Err(err(
            path,
            format!("must be PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or AWS_MSK_IAM (got {other:?})"),
        )),
        None => Err(err(
            path,
            "is required (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or AWS_MSK_IAM)",
        )),
    }
}

fn sasl(label: &str, raw: RawSasl) -> Result<Sasl, ForwarderError> {
    let path = format!("{label}.sasl");
    let mechanism = mechanism(&format!("{path}.mechanism"), raw.mechanism.as_deref())?;
    let password = secret_ref(
        &path,
        "password",
        "passwordSecretArn",
        raw.password.as_ref(),
        raw.password_secret_arn.as_ref(),
    )?;
    let username = match raw.username {
        Some(u) if u.is_empty() => {
            return Err(err(format!("{path}.username"), "must not be empty"));
        }
        other => other,
    };
    if mechanism == Mechanism::AwsMskIam {
        if username.is_some() || password.is_some() {
            return Err(err(
                format!("{path}.mechanism"),
                "AWS_MSK_IAM signs in with the function's role: give no username or password",
            ));
        }
        return Ok(Sasl {
            mechanism,
            username: None,
            password: None,
        });
    }
    let Some(password) = password else {
        return Err(err(
            format!("{path}.passwordSecretArn"),
            "is required for SASL (or password, local runs only)",
        ));
    };
    if username.is_none() && !matches!(password, SecretRef::Arn(_)) {
        return Err(err(format!("{path}.username"), "is required for SASL"));
    }
    Ok(Sasl {
        mechanism,
        username,
        password: Some(password),
    })
}

fn ssl(label: &str, raw: RawSsl) -> Result<Ssl, ForwarderError> {
    let path = format!("{label}.ssl");
    let ca_bundle = match raw.ca_bundle {
        Some(s) if s.trim().is_empty() => {
            return Err(err(format!("{path}.caBundle"), "must not be empty"));
        }
        Some(s) if s.contains("-----BEGIN") => Some(CaBundle::Pem(s)),
        Some(s) => Some(CaBundle::File(PathBuf::from(s))),
        None => None,
    };
    let ca_bundle_only = raw.ca_bundle_only.unwrap_or(false);
    if ca_bundle_only && ca_bundle.is_none() {
        return Err(err(
            format!("{path}.caBundleOnly"),
            "needs caBundle (the CAs to trust)",
        ));
    }
    let client_certificate = secret_ref(
        &path,
        "clientCertificate",
        "clientCertificateSecretArn",
        raw.client_certificate.as_ref(),
        raw.client_certificate_secret_arn.as_ref(),
    )?;
    Ok(Ssl {
        ca_bundle,
        ca_bundle_only,
        client_certificate,
    })
}

fn security_protocol(
    label: &str,
    raw: Option<&str>,
    has_sasl: bool,
) -> Result<SecurityProtocol, ForwarderError> {
    let path = format!("{label}.securityProtocol");
    match raw {
        None if has_sasl => Ok(SecurityProtocol::SaslSsl),
        None => Ok(SecurityProtocol::Ssl),
        Some("PLAINTEXT") => Ok(SecurityProtocol::Plaintext),
        Some("SSL") => Ok(SecurityProtocol::Ssl),
        Some("SASL_PLAINTEXT") => Ok(SecurityProtocol::SaslPlaintext),
        Some("SASL_SSL") => Ok(SecurityProtocol::SaslSsl),
        Some(other) => Err(err(
            path,
            format!(
                "must be SSL, SASL_SSL, or for loopback brokers PLAINTEXT or SASL_PLAINTEXT (got {other:?})"
            ),
        )),
    }
}

impl EmitterSpec for KafkaConfig {
    type Raw = RawKafka;

    /// Produce requests carry 1,000,000 bytes of records by default, under the broker's default
    /// `message.max.bytes` (1 MiB and a few bytes).
    const BUFFERING: BufferingLimits = BufferingLimits {
        default_batched_events: 500,
        max_batched_events: 10_000,
        default_size: 1_000_000,
        max_size: 100 * 1024 * 1024,
    };

    fn validate(label: &str, raw: RawKafka) -> Result<Self, ForwarderError> {
        let bootstrap_servers = bootstrap(label, raw.bootstrap_servers)?;
        let topic = topic(label, raw.topic)?;
        let protocol =
            security_protocol(label, raw.security_protocol.as_deref(), raw.sasl.is_some())?;
        if !protocol.tls()
            && let Some(remote) = bootstrap_servers.iter().find(|s| !is_loopback(&s.host))
        {
            return Err(err(
                format!("{label}.securityProtocol"),
                format!(
                    "{} (no TLS) is for loopback brokers only ({remote} is not): use SSL or SASL_SSL",
                    protocol.name()
                ),
            ));
        }
        let sasl = match (protocol.sasl(), raw.sasl) {
            (true, Some(s)) => Some(sasl(label, s)?),
            (true, None) => {
                return Err(err(
                    format!("{label}.sasl"),
                    format!("is required with {}", protocol.name()),
                ));
            }
            (false, Some(_)) => {
                return Err(err(
                    format!("{label}.securityProtocol"),
                    format!(
                        "{} does not authenticate: use SASL_SSL with sasl",
                        protocol.name()
                    ),
                ));
            }
            (false, None) => None,
        };
        if sasl
            .as_ref()
            .is_some_and(|s| s.mechanism == Mechanism::AwsMskIam)
            && !protocol.tls()
        {
            return Err(err(
                format!("{label}.securityProtocol"),
                "must be SASL_SSL with AWS_MSK_IAM (MSK takes IAM tokens over TLS only)",
            ));
        }
        let ssl = match (protocol.tls(), raw.ssl) {
            (true, Some(s)) => ssl(label, s)?,
            (true, None) => Ssl::default(),
            (false, Some(_)) => {
                return Err(err(
                    format!("{label}.ssl"),
                    format!("is for SSL or SASL_SSL, not {}", protocol.name()),
                ));
            }
            (false, None) => Ssl::default(),
        };
        Ok(KafkaConfig {
            bootstrap_servers,
            topic,
            security_protocol: protocol,
            sasl,
            ssl,
            tuning: tuning(label, raw.tuning)?,
        })
    }

    async fn build(
        &self,
        name: &str,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Arc<dyn Emitter>, ForwarderError> {
        Ok(Arc::new(super::KafkaEmitter::start(name, self, sdk).await?))
    }
}
