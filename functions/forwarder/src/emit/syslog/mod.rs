//! `syslog`: RFC 5424 messages ([`format`]) over TCP or TLS (RFC 6587 octet-counting framing,
//! `LEN SP MSG`) or UDP (one datagram per message, RFC 5426). The connection is kept across warm
//! invocations and re-opened after an error or when the collector closed it. UDP messages larger
//! than `maxMessageSize` are dead-lettered, never truncated (a cut JSON event is useless to a
//! SIEM).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{BoxFuture, Emitter, Failure, Outcome, all};
use crate::ForwarderError;
use crate::config::err;
use crate::record::Prepared;

mod config;
pub mod format;

pub use config::{
    RawSeverityMapping, RawSyslog, SeverityMapping, SyslogConfig, SyslogProtocol, facility_code,
    severity_code,
};
use format::Rfc5424;

enum Conn {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Udp(UdpSocket),
}

/// A syslog emitter: its encoder and its one connection.
pub struct SyslogEmitter {
    name: String,
    config: SyslogConfig,
    encoder: Rfc5424,
    tls: Option<(TlsConnector, rustls_pki_types::ServerName<'static>)>,
    conn: Mutex<Option<Conn>>,
}

impl SyslogEmitter {
    /// The emitter `name` for `config` (TLS trust set up; no connection yet).
    pub fn new(name: &str, config: SyslogConfig) -> Result<Self, ForwarderError> {
        let tls = if config.protocol == SyslogProtocol::Tls {
            let client = crate::config::tls::client_config(name, config.ca_bundle.as_deref())?;
            let server =
                rustls_pki_types::ServerName::try_from(config.host.clone()).map_err(|_| {
                    err(
                        format!("emitter {name:?} host"),
                        format!("{:?} is not a valid TLS server name", config.host),
                    )
                })?;
            Some((TlsConnector::from(client), server))
        } else {
            None
        };
        Ok(Self {
            name: name.to_string(),
            encoder: Rfc5424::new(&config),
            config,
            tls,
            conn: Mutex::new(None),
        })
    }

    /// One RFC 5424 message (without framing).
    pub fn format(&self, p: &Prepared) -> String {
        self.encoder.format(p)
    }

    async fn connect(&self) -> Result<Conn, Failure> {
        let target = format!("{}:{}", self.config.host, self.config.port);
        let timeout = self.config.connect_timeout;
        let addrs: Vec<_> = tokio::time::timeout(timeout, tokio::net::lookup_host(&target))
            .await
            .map_err(|_| Failure::new("connect", format!("resolving {target} timed out")))?
            .map_err(|e| Failure::new("connect", format!("resolving {target}: {e}")))?
            .collect();
        let addr = *addrs
            .first()
            .ok_or_else(|| Failure::new("connect", format!("{target} has no address")))?;
        if self.config.protocol == SyslogProtocol::Udp {
            let bind = if addr.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            let sock = UdpSocket::bind(bind)
                .await
                .map_err(|e| Failure::new("connect", e.to_string()))?;
            sock.connect(addr)
                .await
                .map_err(|e| Failure::new("connect", e.to_string()))?;
            return Ok(Conn::Udp(sock));
        }
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Failure::new("connect", format!("connecting to {target} timed out")))?
            .map_err(|e| Failure::new("connect", format!("connecting to {target}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let Some((connector, server)) = &self.tls else {
            return Ok(Conn::Tcp(tcp));
        };
        let tls = tokio::time::timeout(timeout, connector.connect(server.clone(), tcp))
            .await
            .map_err(|_| Failure::new("tls", format!("TLS handshake with {target} timed out")))?
            .map_err(|e| Failure::new("tls", format!("TLS handshake with {target}: {e}")))?;
        Ok(Conn::Tls(Box::new(tls)))
    }

    /// Whether a kept TCP connection was closed (or sent something, which a syslog collector
    /// only does when closing) since the last use.
    async fn is_stale(conn: &Conn) -> bool {
        let tcp = match conn {
            Conn::Tcp(t) => t,
            Conn::Tls(t) => t.get_ref().0,
            Conn::Udp(_) => return false,
        };
        let mut buf = [0u8; 1];
        match tokio::time::timeout(Duration::ZERO, tcp.peek(&mut buf)).await {
            Err(_) => false,
            Ok(Ok(_)) | Ok(Err(_)) => true,
        }
    }

    async fn attempt(&self, batch: &[Arc<Prepared>]) -> Vec<Outcome> {
        let messages: Vec<String> = batch.iter().map(|p| self.format(p)).collect();
        let mut guard = self.conn.lock().await;
        if let Some(conn) = guard.as_ref()
            && Self::is_stale(conn).await
        {
            *guard = None;
        }
        if guard.is_none() {
            match self.connect().await {
                Ok(c) => *guard = Some(c),
                Err(f) => return all(batch.len(), Outcome::Retryable(f)),
            }
        }
        let Some(conn) = guard.as_mut() else {
            return all(
                batch.len(),
                Outcome::Retryable(Failure::new("connect", "no connection")),
            );
        };
        let (outcomes, broken) = match conn {
            Conn::Udp(sock) => self.send_datagrams(sock, &messages).await,
            Conn::Tcp(t) => send_framed(t, &messages).await,
            Conn::Tls(t) => send_framed(t.as_mut(), &messages).await,
        };
        if broken {
            *guard = None;
        }
        outcomes
    }

    /// One datagram per message; messages over `maxMessageSize` are permanent failures. The
    /// flag says whether the socket broke (it is then re-opened).
    async fn send_datagrams(&self, sock: &UdpSocket, messages: &[String]) -> (Vec<Outcome>, bool) {
        let mut out = Vec::with_capacity(messages.len());
        let mut broken: Option<Failure> = None;
        for m in messages {
            if let Some(f) = &broken {
                out.push(Outcome::Retryable(Failure::clone(f)));
                continue;
            }
            if m.len() > self.config.max_message_size {
                out.push(Outcome::Permanent(Failure::new(
                    "too-large",
                    format!(
                        "{} bytes is more than maxMessageSize {} for UDP",
                        m.len(),
                        self.config.max_message_size
                    ),
                )));
                continue;
            }
            match sock.send(m.as_bytes()).await {
                Ok(_) => out.push(Outcome::Delivered),
                Err(e) => {
                    let f = Failure::new("send", e.to_string());
                    out.push(Outcome::Retryable(f.clone()));
                    broken = Some(f);
                }
            }
        }
        (out, broken.is_some())
    }
}

/// The messages octet-counted (`LEN SP MSG`) in one write, flushed. The flag says whether the
/// connection broke (it is then re-opened).
async fn send_framed<W: AsyncWriteExt + Unpin>(
    w: &mut W,
    messages: &[String],
) -> (Vec<Outcome>, bool) {
    let total: usize = messages.iter().map(|m| m.len() + 8).sum();
    let mut buf = Vec::with_capacity(total);
    for m in messages {
        buf.extend_from_slice(m.len().to_string().as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(m.as_bytes());
    }
    let written = async {
        w.write_all(&buf).await?;
        w.flush().await
    };
    match written.await {
        Ok(()) => (all(messages.len(), Outcome::Delivered), false),
        Err(e) => (
            all(
                messages.len(),
                Outcome::Retryable(Failure::new("send", e.to_string())),
            ),
            true,
        ),
    }
}

impl Emitter for SyslogEmitter {
    fn name(&self) -> &str {
        &self.name
    }

    fn emit<'a>(&'a self, batch: &'a [Arc<Prepared>]) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(self.attempt(batch))
    }

    fn size_hint(&self, p: &Prepared) -> usize {
        p.json.len() + 96
    }

    fn max_concurrent_requests(&self) -> usize {
        1 // one connection, one ordered stream
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::config::{EmitterSettings, ForwarderConfig};
    use crate::record::{Transform, parse_classify};
    use tokio::io::AsyncReadExt;

    fn syslog(extra: &str) -> SyslogEmitter {
        let json = format!(
            r#"{{"emitters":[{{"name":"s","type":"syslog","host":"127.0.0.1","facility":"authpriv",
            "severityFieldMappings":[{{"field":"/event/type","valueMappings":{{"LOGIN_ERROR":"warning","LOGIN":"informational"}}}}]{extra}}}]}}"#
        );
        let c = ForwarderConfig::parse(&json).unwrap();
        let EmitterSettings::Syslog(s) = c.emitters[0].settings.clone() else {
            panic!()
        };
        SyslogEmitter::new("s", s).unwrap()
    }

    fn prepared(json: &str) -> Arc<Prepared> {
        Arc::new(
            Transform::identity()
                .prepare(
                    0,
                    Arc::new(parse_classify(json.as_bytes(), 0).unwrap().1),
                    json,
                )
                .unwrap(),
        )
    }

    const LOGIN_ERROR: &str = r#"{"timestamp":"2025-02-12T19:27:50.156Z","eventType":"user-event","event":{"time":1739388470156,"type":"LOGIN_ERROR"}}"#;

    #[test]
    fn messages_are_rfc5424_with_pri_from_facility_and_mapped_severity() {
        let s = syslog("");
        let m = s.format(&prepared(LOGIN_ERROR));
        // authpriv (10) * 8 + warning (4) = 84
        assert_eq!(
            m,
            format!(
                "<84>1 2025-02-12T19:27:50.156Z authtrail authtrail - LOGIN_ERROR - {LOGIN_ERROR}"
            )
        );
        let other = s.format(&prepared(
            r#"{"service":"radius","method":"authorize","timestamp":1739388470}"#,
        ));
        assert!(
            other.starts_with(
                "<86>1 2025-02-12T19:27:50.000Z authtrail authtrail - radius:authorize - {"
            ),
            "{other}"
        );
    }

    #[tokio::test]
    async fn tcp_frames_use_octet_counting_and_reconnect_after_the_peer_closed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let s = syslog(&format!(r#","protocol":"TCP","port":{port}"#));
        let server = tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..2 {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                // Read one batch, then close: the emitter must notice and reconnect.
                let mut chunk = [0u8; 4096];
                let n = sock.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                got.push(String::from_utf8(buf).unwrap());
            }
            got
        });
        let p = prepared(LOGIN_ERROR);
        assert_eq!(
            s.emit(std::slice::from_ref(&p)).await,
            vec![Outcome::Delivered]
        );
        // Give the server time to close its end before the next batch.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            s.emit(std::slice::from_ref(&p)).await,
            vec![Outcome::Delivered]
        );
        let got = server.await.unwrap();
        let msg = s.format(&p);
        assert_eq!(got[0], format!("{} {msg}", msg.len()));
        assert_eq!(got[1], format!("{} {msg}", msg.len()));
    }

    #[tokio::test]
    async fn udp_messages_over_the_size_limit_are_permanent_failures_not_truncated() {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = sock.local_addr().unwrap().port();
        let s = syslog(&format!(
            r#","protocol":"UDP","port":{port},"maxMessageSize":480"#
        ));
        let big = format!(r#"{{"type":"X","pad":"{}"}}"#, "a".repeat(600));
        let out = s.emit(&[prepared(LOGIN_ERROR), prepared(&big)]).await;
        assert_eq!(out[0], Outcome::Delivered);
        assert!(matches!(&out[1], Outcome::Permanent(f) if f.status == "too-large"));
        let mut buf = [0u8; 2048];
        let n = sock.recv(&mut buf).await.unwrap();
        assert!(
            std::str::from_utf8(&buf[..n])
                .unwrap()
                .starts_with("<84>1 ")
        );
    }

    #[tokio::test]
    async fn a_collector_that_is_down_gives_retryable_connect_failures() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let s = syslog(&format!(
            r#","protocol":"TCP","port":{port},"connectTimeout":2000"#
        ));
        let out = s.emit(&[prepared(LOGIN_ERROR)]).await;
        assert!(
            matches!(&out[0], Outcome::Retryable(f) if f.status == "connect"),
            "{out:?}"
        );
    }
}
