//! `syslog`: RFC 5424 messages ([`format`]) over TLS (the default) or TCP (RFC 6587 / 5425
//! octet-counting framing, `LEN SP MSG`) or UDP (one datagram per message, RFC 5426). The
//! connection is kept across warm invocations and re-opened after an error or when the collector
//! closed it. A write that did not complete (an error, or the emit timeout cutting it off) drops
//! the connection, so no partial frame is ever followed by another. Messages larger than
//! `maxMessageSize` (every protocol; default 8192, rsyslog's default) are dead-lettered, never
//! truncated (a cut JSON event is useless to a SIEM, and rsyslog would cut it silently).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use authtrail_core::preflight::Check;

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
            let client = crate::config::tls::client_config(
                name,
                config.ca_bundle.as_deref(),
                config.ca_bundle_only,
            )?;
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

    /// Whether a kept connection was closed (or sent something, which a syslog collector only
    /// does when closing) since the last use. TLS is read through the TLS layer, which consumes
    /// what the server may send after the handshake (TLS 1.3 session tickets, key updates)
    /// without it counting as data.
    async fn is_stale(conn: &mut Conn) -> bool {
        let mut buf = [0u8; 1];
        let polled = match conn {
            Conn::Tcp(t) => tokio::time::timeout(Duration::ZERO, t.peek(&mut buf)).await,
            Conn::Tls(t) => tokio::time::timeout(Duration::ZERO, t.read(&mut buf)).await,
            Conn::Udp(_) => return false,
        };
        // Nothing to read yet: open and silent. EOF, data or an error: stale.
        polled.is_ok()
    }

    async fn attempt(&self, batch: &[Arc<Prepared>]) -> Vec<Outcome> {
        let max = self.config.max_message_size;
        let messages: Vec<String> = batch.iter().map(|p| self.format(p)).collect();
        let mut guard = self.conn.lock().await;
        // The connection is taken out while it is used and put back only after a complete
        // write: if this future is dropped mid-write (the emit timeout), the connection and its
        // partial frame are dropped with it.
        let kept = match guard.take() {
            Some(mut c) => (!Self::is_stale(&mut c).await).then_some(c),
            None => None,
        };
        let mut conn = match kept {
            Some(c) => c,
            None => match self.connect().await {
                Ok(c) => c,
                Err(f) => return all(batch.len(), Outcome::Retryable(f)),
            },
        };
        let (outcomes, broken) = match &mut conn {
            Conn::Udp(sock) => send_datagrams(sock, &messages, max).await,
            Conn::Tcp(t) => send_framed(t, &messages, max).await,
            Conn::Tls(t) => send_framed(t.as_mut(), &messages, max).await,
        };
        if !broken {
            *guard = Some(conn);
        }
        outcomes
    }
}

/// The failure of a message over `maxMessageSize`: dead-lettered, never truncated.
fn too_large(len: usize, max: usize) -> Outcome {
    Outcome::Permanent(Failure::new(
        "too-large",
        format!("{len} bytes is more than maxMessageSize {max}"),
    ))
}

/// One datagram per message; messages over `max` are permanent failures. The flag says
/// whether the socket broke (it is then re-opened).
async fn send_datagrams(sock: &UdpSocket, messages: &[String], max: usize) -> (Vec<Outcome>, bool) {
    let mut out = Vec::with_capacity(messages.len());
    let mut broken: Option<Failure> = None;
    for m in messages {
        if let Some(f) = &broken {
            out.push(Outcome::Retryable(Failure::clone(f)));
            continue;
        }
        if m.len() > max {
            out.push(too_large(m.len(), max));
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

/// The messages octet-counted (`LEN SP MSG`) in one write, flushed; messages over `max` are
/// left out as permanent failures. The flag says whether the connection broke (it is then
/// dropped and re-opened).
async fn send_framed<W: AsyncWriteExt + Unpin>(
    w: &mut W,
    messages: &[String],
    max: usize,
) -> (Vec<Outcome>, bool) {
    let total: usize = messages.iter().map(|m| m.len() + 8).sum();
    let mut buf = Vec::with_capacity(total);
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        if m.len() > max {
            out.push(too_large(m.len(), max));
            continue;
        }
        buf.extend_from_slice(m.len().to_string().as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(m.as_bytes());
        out.push(Outcome::Delivered);
    }
    if buf.is_empty() {
        return (out, false);
    }
    let written = async {
        w.write_all(&buf).await?;
        w.flush().await
    };
    match written.await {
        Ok(()) => (out, false),
        Err(e) => {
            let f = Failure::new("send", e.to_string());
            for o in &mut out {
                if *o == Outcome::Delivered {
                    *o = Outcome::Retryable(f.clone());
                }
            }
            (out, true)
        }
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

    fn probe(&self) -> BoxFuture<'_, Check> {
        Box::pin(self.preflight())
    }
}

impl SyslogEmitter {
    /// Preflight: a connection of its own (TCP connect; with TLS the handshake, the
    /// collector's certificate verified), closed without sending a message. UDP has no
    /// handshake: the check is skipped.
    async fn preflight(&self) -> Check {
        let name = format!("emitter.{}", self.name);
        let at = format!("{}:{}", self.config.host, self.config.port);
        match (self.config.protocol, self.connect().await) {
            (SyslogProtocol::Udp, _) => Check::skipped(
                name,
                format!("{at} over UDP: no handshake to check without sending a message"),
            ),
            (_, Ok(Conn::Tls(mut tls))) => {
                let _ = tls.shutdown().await;
                Check::ok(
                    name,
                    format!("{at}: TLS handshake done, certificate verified; nothing sent"),
                )
            }
            (_, Ok(_)) => Check::ok(name, format!("{at}: TCP connection accepted; nothing sent")),
            (_, Err(f)) if f.status == "tls" => Check::failed(
                name,
                f.text,
                "trust the collector's certificate: give its CA as caBundle (PEM), and make host the name the certificate names",
            ),
            (_, Err(f)) => Check::failed(
                name,
                f.text,
                "check host and port and that the collector listens there (firewall, security group)",
            ),
        }
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

    /// A scratch directory of its own for one test.
    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "authtrail-forwarder-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn a_write_cut_off_by_the_emit_timeout_drops_the_connection() {
        // A collector that accepts and never reads: the write blocks once the buffers are full.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = tokio::spawn(async move { listener.accept().await.map(|(sock, _)| sock) });
        let s = syslog(&format!(
            r#","protocol":"TCP","port":{port},"maxMessageSize":1048576"#
        ));
        let big = prepared(&format!(
            r#"{{"type":"X","pad":"{}"}}"#,
            "a".repeat(500_000)
        ));
        let batch = vec![big; 64];
        let cut = tokio::time::timeout(Duration::from_millis(300), s.emit(&batch)).await;
        assert!(cut.is_err(), "the write was expected to block");
        assert!(
            s.conn.lock().await.is_none(),
            "a connection holding a partial frame was kept"
        );
        drop(held);
    }

    #[tokio::test]
    async fn tcp_messages_over_max_message_size_are_dead_lettered_not_truncated() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let s = syslog(&format!(
            r#","protocol":"TCP","port":{port},"maxMessageSize":480"#
        ));
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut got = String::new();
            sock.read_to_string(&mut got).await.unwrap();
            got
        });
        let big = format!(r#"{{"type":"X","pad":"{}"}}"#, "a".repeat(600));
        let small = prepared(LOGIN_ERROR);
        let out = s.emit(&[small.clone(), prepared(&big)]).await;
        assert_eq!(out[0], Outcome::Delivered);
        assert!(
            matches!(&out[1], Outcome::Permanent(f) if f.status == "too-large"),
            "{out:?}"
        );
        drop(s);
        let msg = syslog("").format(&small);
        assert_eq!(server.await.unwrap(), format!("{} {msg}", msg.len()));
    }

    #[tokio::test]
    async fn a_tls_connection_to_rsyslog_is_not_stale_because_of_unread_session_tickets() {
        let dir = scratch("rsyslog-tls");
        let certs = siem_receiver::certs::generate(&dir.join("certs")).unwrap();
        let mut rsyslog = siem_receiver::Rsyslog::start(&dir.join("rsyslog"), &certs)
            .await
            .expect("rsyslogd with rsyslog-gnutls is needed (make apt-deps)");
        let json = format!(
            r#"{{"emitters":[{{"name":"s","type":"syslog","protocol":"TLS","host":"localhost",
                "port":{},"caBundle":{:?},"caBundleOnly":true}}]}}"#,
            rsyslog.tls_port,
            certs.ca_pem_path.display().to_string()
        );
        let c = ForwarderConfig::parse(&json).unwrap();
        let EmitterSettings::Syslog(cfg) = c.emitters[0].settings.clone() else {
            panic!()
        };
        let s = SyslogEmitter::new("s", cfg).unwrap();
        let p = prepared(LOGIN_ERROR);
        assert_eq!(
            s.emit(std::slice::from_ref(&p)).await,
            vec![Outcome::Delivered]
        );
        // Whatever the server sent after the handshake (TLS 1.3 tickets) has arrived by now.
        tokio::time::sleep(Duration::from_millis(300)).await;
        {
            let mut guard = s.conn.lock().await;
            let conn = guard.as_mut().expect("the connection is kept");
            assert!(!SyslogEmitter::is_stale(conn).await, "{}", rsyslog.log());
        }
        assert_eq!(
            s.emit(std::slice::from_ref(&p)).await,
            vec![Outcome::Delivered]
        );
        let got = rsyslog.wait_for(2, Duration::from_secs(10)).await;
        rsyslog.stop().await;
        assert_eq!(got.len(), 2, "{}", rsyslog.log());
        assert!(
            got.iter()
                .all(|m| m.input == "tls" && m.msgid == "LOGIN_ERROR"),
            "{got:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_tls13_connection_is_not_stale_because_of_unread_session_tickets() {
        // rustls servers send two TLS 1.3 session tickets after the handshake by default.
        let dir = scratch("tls13");
        let certs = siem_receiver::certs::generate(&dir).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(certs.server_config().unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = tls.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            String::from_utf8(got).unwrap()
        });
        let json = format!(
            r#"{{"emitters":[{{"name":"s","type":"syslog","protocol":"TLS","host":"localhost",
                "port":{port},"caBundle":{:?},"caBundleOnly":true}}]}}"#,
            certs.ca_pem_path.display().to_string()
        );
        let c = ForwarderConfig::parse(&json).unwrap();
        let EmitterSettings::Syslog(cfg) = c.emitters[0].settings.clone() else {
            panic!()
        };
        let s = SyslogEmitter::new("s", cfg).unwrap();
        let p = prepared(LOGIN_ERROR);
        assert_eq!(
            s.emit(std::slice::from_ref(&p)).await,
            vec![Outcome::Delivered]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        {
            let mut guard = s.conn.lock().await;
            let conn = guard.as_mut().expect("the connection is kept");
            assert!(!SyslogEmitter::is_stale(conn).await);
        }
        // The second batch travels on the same connection: the server saw both frames on it.
        assert_eq!(
            s.emit(std::slice::from_ref(&p)).await,
            vec![Outcome::Delivered]
        );
        let msg = s.format(&p);
        drop(s);
        let frame = format!("{} {msg}", msg.len());
        assert_eq!(server.await.unwrap(), format!("{frame}{frame}"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
