//! Syslog emitter: RFC 5424 messages over TCP or TLS (RFC 6587 octet-counting framing,
//! `LEN SP MSG`) or UDP (one datagram per message, RFC 5426). The connection is kept across warm
//! invocations and re-opened after an error or when the collector closed it.
//!
//! Message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID - MSG` with `PRI = facility * 8 +
//! severity`, `TIMESTAMP` the event time (UTC, milliseconds), `MSGID` the event type and `MSG` the
//! (filtered, redacted) JSON record. UDP messages larger than `maxMessageSize` are dead-lettered,
//! never truncated (a cut JSON event is useless to a SIEM).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{BoxFuture, Emitter, Failure, Outcome, all};
use crate::ForwarderError;
use crate::config::{EmitterType, SyslogConfig, SyslogProtocol};
use crate::filter::Pointer;
use crate::record::Prepared;

enum Conn {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Udp(UdpSocket),
}

pub struct SyslogEmitter {
    name: String,
    config: SyslogConfig,
    mappings: Vec<(Pointer, std::collections::HashMap<String, u8>)>,
    tls: Option<(TlsConnector, rustls_pki_types::ServerName<'static>)>,
    conn: Mutex<Option<Conn>>,
}

impl SyslogEmitter {
    pub fn new(name: &str, config: SyslogConfig) -> Result<Self, ForwarderError> {
        let mut mappings = Vec::new();
        for m in &config.severity_mappings {
            let p = Pointer::parse(&m.field).map_err(|message| ForwarderError::Config {
                path: format!("emitter {name:?} severityFieldMappings"),
                message,
            })?;
            mappings.push((p, m.values.clone()));
        }
        let tls = if config.protocol == SyslogProtocol::Tls {
            let client = super::tls::client_config(name, config.ca_bundle.as_deref())?;
            let server =
                rustls_pki_types::ServerName::try_from(config.host.clone()).map_err(|_| {
                    ForwarderError::Config {
                        path: format!("emitter {name:?} host"),
                        message: format!("{:?} is not a valid TLS server name", config.host),
                    }
                })?;
            Some((TlsConnector::from(client), server))
        } else {
            None
        };
        Ok(Self {
            name: name.to_string(),
            config,
            mappings,
            tls,
            conn: Mutex::new(None),
        })
    }

    /// The severity of a record: the first mapping whose field value is listed, else the
    /// default.
    pub fn severity(&self, value: &Value) -> u8 {
        for (pointer, values) in &self.mappings {
            let key = match pointer.get(value) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => continue,
                Some(other) => other.to_string(),
            };
            if let Some(sev) = values.get(&key) {
                return *sev;
            }
        }
        self.config.default_severity
    }

    /// [`SyslogEmitter::severity`] read from the record's text.
    pub fn severity_of(&self, p: &Prepared) -> u8 {
        for (pointer, values) in &self.mappings {
            let Some(key) = p.field_text(pointer) else {
                continue;
            };
            if let Some(sev) = values.get(&key) {
                return *sev;
            }
        }
        self.config.default_severity
    }

    /// One RFC 5424 message (without framing).
    pub fn format(&self, p: &Prepared) -> String {
        use std::fmt::Write;
        let pri = u16::from(self.config.facility) * 8 + u16::from(self.severity_of(p));
        let mut out = String::with_capacity(p.json.len() + 96);
        let _ = write!(out, "<{pri}>1 ");
        write_timestamp(&mut out, p.class.time_ms);
        out.push(' ');
        out.push_str(&self.config.hostname);
        out.push(' ');
        out.push_str(&self.config.app_name);
        out.push_str(" - ");
        let before = out.len();
        out.extend(
            p.class
                .event_type()
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(32),
        );
        if out.len() == before {
            out.push('-');
        }
        out.push_str(" - ");
        out.push_str(&p.json);
        out
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
        match self.config.protocol {
            SyslogProtocol::Udp => {
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
                Ok(Conn::Udp(sock))
            }
            SyslogProtocol::Tcp | SyslogProtocol::Tls => {
                let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
                    .await
                    .map_err(|_| {
                        Failure::new("connect", format!("connecting to {target} timed out"))
                    })?
                    .map_err(|e| Failure::new("connect", format!("connecting to {target}: {e}")))?;
                let _ = tcp.set_nodelay(true);
                match &self.tls {
                    None => Ok(Conn::Tcp(tcp)),
                    Some((connector, server)) => {
                        let tls =
                            tokio::time::timeout(timeout, connector.connect(server.clone(), tcp))
                                .await
                                .map_err(|_| {
                                    Failure::new(
                                        "tls",
                                        format!("TLS handshake with {target} timed out"),
                                    )
                                })?
                                .map_err(|e| {
                                    Failure::new("tls", format!("TLS handshake with {target}: {e}"))
                                })?;
                        Ok(Conn::Tls(Box::new(tls)))
                    }
                }
            }
        }
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
        match conn {
            Conn::Udp(sock) => {
                let mut out = Vec::with_capacity(messages.len());
                let mut broken = None;
                for m in &messages {
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
                if broken.is_some() {
                    *guard = None;
                }
                out
            }
            Conn::Tcp(_) | Conn::Tls(_) => {
                let total: usize = messages.iter().map(|m| m.len() + 8).sum();
                let mut buf = Vec::with_capacity(total);
                for m in &messages {
                    buf.extend_from_slice(m.len().to_string().as_bytes());
                    buf.push(b' ');
                    buf.extend_from_slice(m.as_bytes());
                }
                let result = match conn {
                    Conn::Tcp(t) => write_all_flush(t, &buf).await,
                    Conn::Tls(t) => write_all_flush(t.as_mut(), &buf).await,
                    Conn::Udp(_) => Ok(()),
                };
                match result {
                    Ok(()) => all(batch.len(), Outcome::Delivered),
                    Err(e) => {
                        *guard = None;
                        all(
                            batch.len(),
                            Outcome::Retryable(Failure::new("send", e.to_string())),
                        )
                    }
                }
            }
        }
    }
}

async fn write_all_flush<W: AsyncWriteExt + Unpin>(w: &mut W, buf: &[u8]) -> std::io::Result<()> {
    w.write_all(buf).await?;
    w.flush().await
}

impl Emitter for SyslogEmitter {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> EmitterType {
        EmitterType::Syslog
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

/// `authtrail_core::envelope::format_timestamp` (RFC 3339, UTC, milliseconds, `Z`) written
/// into `out` without the intermediate allocations.
fn write_timestamp(out: &mut String, epoch_ms: i64) {
    use chrono::{Datelike, Timelike};
    let Some(t) = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(epoch_ms)
        .filter(|t| (0..=9999).contains(&t.year()))
    else {
        out.push_str(&authtrail_core::envelope::format_timestamp(epoch_ms));
        return;
    };
    use std::fmt::Write;
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        epoch_ms.rem_euclid(1000)
    );
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

    #[test]
    fn timestamps_are_written_as_the_core_formats_them() {
        for ms in [
            0,
            1739388470156,
            -1,
            -86_400_001,
            253402300799999,
            253402300800000,
            1,
            999,
        ] {
            let mut s = String::new();
            write_timestamp(&mut s, ms);
            assert_eq!(s, authtrail_core::envelope::format_timestamp(ms), "{ms}");
        }
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
