//! One connection to one broker: TCP, TLS when configured, `ApiVersions` to agree on versions,
//! SASL when configured; then requests one at a time ([`Conn::call`]), each answer matched by
//! its correlation id. A connection whose request failed or was abandoned half-way is dropped,
//! never reused; [`Fault`] says why it failed and what that means for the records.

use std::sync::Arc;
use std::time::Duration;

use authtrail_core::secret::Secret;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use super::config::{HostPort, Mechanism};
use super::msk_iam::Signer;
use super::protocol::{self as wire, WireError, Writer};
use super::sasl::{self, Scram, ScramHash};
use crate::emit::{Failure, Outcome};

/// How a connection authenticates (secrets hidden in `Debug`).
pub enum Auth {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` with a user and password.
    Password {
        /// The mechanism.
        mechanism: Mechanism,
        /// The user.
        username: String,
        /// The password.
        password: Secret,
    },
    /// `AWS_MSK_IAM`: a fresh signed token per connection.
    MskIam(Signer),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Password {
                mechanism,
                username,
                ..
            } => write!(f, "{mechanism:?}({username}, <secret>)"),
            Auth::MskIam(s) => write!(f, "AwsMskIam({s:?})"),
        }
    }
}

/// What every connection of an emitter needs: TLS, authentication, the client id, timeouts.
#[derive(Debug)]
pub struct Security {
    /// TLS client configuration (`None`: plain TCP, loopback brokers only).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// SASL (`None`: none).
    pub auth: Option<Auth>,
    /// `client.id`.
    pub client_id: String,
    /// Time allowed to open a connection (TCP, TLS, versions, SASL).
    pub setup_timeout: Duration,
}

/// Why a request (or opening its connection) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The broker could not be reached or the connection broke (refused, reset, closed).
    Network(String),
    /// No answer in time.
    Timeout(&'static str),
    /// The answer could not be read.
    Wire(&'static str),
    /// TLS failed for a reason an operator fixes (an untrusted or mismatching certificate).
    Tls(String),
    /// The broker refused the credentials, or the mechanism.
    Auth(String),
    /// The broker cannot serve this client (versions), or plain TCP to a remote broker.
    Refused(String),
    /// A Kafka error code for the whole request or topic.
    Kafka(i16, Option<String>),
}

impl Fault {
    /// What the failure means for the records of the request.
    pub fn outcome(&self) -> Outcome {
        match self {
            Fault::Network(m) => Outcome::Retryable(Failure::new("connect", m.clone())),
            Fault::Timeout(what) => Outcome::Retryable(Failure::new(
                "timeout",
                format!("no answer from the broker in time ({what})"),
            )),
            Fault::Wire(what) => Outcome::Retryable(Failure::new(
                "protocol",
                format!("unreadable broker answer: {what}"),
            )),
            Fault::Tls(m) => Outcome::Unavailable(Failure::new("tls", m.clone())),
            Fault::Auth(m) => Outcome::Unavailable(Failure::new("auth", m.clone())),
            Fault::Refused(m) => Outcome::Unavailable(Failure::new("refused", m.clone())),
            Fault::Kafka(code, message) => super::outcome::for_code(*code, message.as_deref()),
        }
    }
}

impl From<WireError> for Fault {
    fn from(e: WireError) -> Self {
        Fault::Wire(e.0)
    }
}

/// An I/O error as a fault: a certificate problem is the operator's, the rest the network's.
fn io_fault(e: std::io::Error) -> Fault {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return match tls {
            rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::AlertReceived(_) => {
                Fault::Tls(format!("TLS with the broker failed: {tls}"))
            }
            other => Fault::Network(format!("TLS: {other}")),
        };
    }
    Fault::Network(e.to_string())
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    async fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(b).await,
            Stream::Tls(s) => {
                s.write_all(b).await?;
                s.flush().await
            }
        }
    }

    async fn read_exact(&mut self, b: &mut [u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.read_exact(b).await.map(drop),
            Stream::Tls(s) => s.read_exact(b).await.map(drop),
        }
    }
}

/// An open, authenticated connection to one broker.
pub struct Conn {
    stream: Stream,
    next_id: i32,
    client_id: Arc<str>,
    /// `Produce` version agreed with this broker.
    pub produce_version: i16,
    /// `Metadata` version agreed with this broker.
    pub metadata_version: i16,
    /// When the SASL session ends (the broker closes it then): reconnect before.
    expires: Option<Instant>,
}

impl Conn {
    /// Opens a connection to `addr` within the setup timeout.
    pub async fn open(addr: &HostPort, security: &Security) -> Result<Conn, Fault> {
        match tokio::time::timeout(security.setup_timeout, Self::open_now(addr, security)).await {
            Ok(r) => r,
            Err(_) => Err(Fault::Timeout("connection setup")),
        }
    }

    async fn open_now(addr: &HostPort, security: &Security) -> Result<Conn, Fault> {
        let tcp = TcpStream::connect((addr.host.as_str(), addr.port))
            .await
            .map_err(|e| Fault::Network(format!("{addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let stream = match &security.tls {
            Some(config) => {
                let name = ServerName::try_from(addr.host.clone()).map_err(|_| {
                    Fault::Refused(format!("{:?} is not a valid TLS server name", addr.host))
                })?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(io_fault)?;
                Stream::Tls(Box::new(tls))
            }
            None => Stream::Plain(tcp),
        };
        let mut conn = Conn {
            stream,
            next_id: 0,
            client_id: Arc::from(security.client_id.as_str()),
            produce_version: 3,
            metadata_version: 4,
            expires: None,
        };
        let apis = conn.api_versions().await?;
        let pick = |api, name: &str| {
            wire::pick_version(&apis, api).ok_or_else(|| {
                Fault::Refused(format!("the broker at {addr} does not speak {name} in a version this client does (Kafka 1.0 or later is needed)"))
            })
        };
        conn.produce_version = pick(wire::PRODUCE, "Produce")?;
        conn.metadata_version = pick(wire::METADATA, "Metadata")?;
        if let Some(auth) = &security.auth {
            let version = pick(wire::SASL_AUTHENTICATE, "SaslAuthenticate")?;
            conn.authenticate(auth, version).await?;
        }
        Ok(conn)
    }

    /// Whether the connection's SASL session is (nearly) over.
    pub fn expired(&self) -> bool {
        self.expires.is_some_and(|at| Instant::now() >= at)
    }

    /// Sends one request (`body` writes its body) and returns the answer's body.
    pub async fn call(
        &mut self,
        api: i16,
        version: i16,
        capacity: usize,
        body: impl FnOnce(&mut Writer),
    ) -> Result<Vec<u8>, Fault> {
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        let mut w = Writer::request(api, version, id, &self.client_id, capacity);
        body(&mut w);
        self.stream
            .write_all(&w.finish_frame())
            .await
            .map_err(io_fault)?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).await.map_err(io_fault)?;
        let size = i32::from_be_bytes(size);
        let size = usize::try_from(size)
            .ok()
            .filter(|s| (4..=wire::MAX_RESPONSE).contains(s))
            .ok_or(Fault::Wire("answer size out of range"))?;
        let mut answer = vec![0u8; size];
        self.stream
            .read_exact(&mut answer)
            .await
            .map_err(io_fault)?;
        let (head, rest) = answer.split_at(4);
        if i32::from_be_bytes([head[0], head[1], head[2], head[3]]) != id {
            return Err(Fault::Wire("answer to another request"));
        }
        Ok(rest.to_vec())
    }

    async fn api_versions(&mut self) -> Result<wire::ApiVersions, Fault> {
        let body = self.call(wire::API_VERSIONS, 0, 0, |_| {}).await?;
        let (error, apis) = wire::read_api_versions(&body)?;
        if apis.is_empty() {
            return Err(Fault::Kafka(
                error,
                Some("ApiVersions answered no versions".into()),
            ));
        }
        Ok(apis)
    }

    /// One `SaslAuthenticate` round: the broker's bytes.
    async fn sasl_round(&mut self, version: i16, bytes: &[u8]) -> Result<Vec<u8>, Fault> {
        let body = self
            .call(wire::SASL_AUTHENTICATE, version, bytes.len() + 4, |w| {
                w.bytes(bytes)
            })
            .await?;
        let answer = wire::read_sasl_authenticate(version, &body)?;
        if answer.error != 0 {
            let why = answer
                .message
                .unwrap_or_else(|| wire::error_name(answer.error).into());
            return Err(Fault::Auth(format!(
                "the broker refused the SASL login: {why}"
            )));
        }
        if answer.session_lifetime_ms > 0 {
            // Reconnect when nine tenths of the session have passed.
            let ms = u64::try_from(answer.session_lifetime_ms).unwrap_or(0) / 10 * 9;
            self.expires = Some(Instant::now() + Duration::from_millis(ms));
        }
        Ok(answer.auth_bytes)
    }

    async fn authenticate(&mut self, auth: &Auth, version: i16) -> Result<(), Fault> {
        let mechanism = match auth {
            Auth::Password { mechanism, .. } => *mechanism,
            Auth::MskIam(_) => Mechanism::AwsMskIam,
        };
        let name = mechanism.wire_name();
        let body = self
            .call(wire::SASL_HANDSHAKE, 1, name.len() + 2, |w| {
                wire::write_sasl_handshake(w, name)
            })
            .await?;
        let (error, enabled) = wire::read_sasl_handshake(&body)?;
        if error != 0 {
            return Err(Fault::Auth(format!(
                "the broker does not enable SASL mechanism {name} (it enables {enabled:?})"
            )));
        }
        let sasl_err = |e: sasl::SaslError| Fault::Auth(e.0);
        match auth {
            Auth::Password {
                mechanism: Mechanism::Plain,
                username,
                password,
            } => self
                .sasl_round(version, &sasl::plain(username, password))
                .await
                .map(drop),
            Auth::Password {
                mechanism,
                username,
                password,
            } => {
                let hash = if *mechanism == Mechanism::ScramSha512 {
                    ScramHash::Sha512
                } else {
                    ScramHash::Sha256
                };
                let mut scram = Scram::new(
                    hash,
                    username,
                    password,
                    Scram::random_nonce().map_err(sasl_err)?,
                );
                let server_first = self.sasl_round(version, &scram.client_first()).await?;
                let last = scram.client_final(&server_first).map_err(sasl_err)?;
                let server_final = self.sasl_round(version, &last).await?;
                scram.verify_server_final(&server_final).map_err(sasl_err)
            }
            Auth::MskIam(signer) => {
                let token = signer.token().await.map_err(Fault::Auth)?;
                self.sasl_round(version, &sasl::oauthbearer(&token))
                    .await
                    .map(drop)
            }
        }
    }
}
