//! The connection to the broker: opening it ([`Target::connect`]: TCP, TLS with the
//! certificate always verified, STOMP `CONNECT` / `CONNECTED` with `heart-beat:0,0`, each step
//! under `connectTimeout`, endpoints tried in order) and one pipelined exchange
//! ([`Connection::exchange`]: the chunk's SEND frames written while the broker's receipts and
//! errors are read, so neither side can block the other).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use authtrail_core::secret::Secret;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::config::Endpoint;
use super::frame::{self, Frame};
use super::refusal::{self, Refusal};
use crate::emit::{Failure, Outcome};

/// Largest frame read from the broker (an `ERROR` may carry a stack trace).
pub const MAX_FRAME_IN: usize = 256 * 1024;
/// A connection idle for longer than this is replaced rather than reused: load balancers and
/// NAT in front of brokers can drop idle connections without a word.
pub const MAX_IDLE: Duration = Duration::from_secs(120);

/// A TCP or TLS stream.
enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Where and as whom the emitter connects (the password is hidden in `Debug`).
pub struct Target {
    /// The endpoints, tried in order.
    pub endpoints: Vec<Endpoint>,
    /// `login` and `passcode`.
    pub login: Option<(String, Secret)>,
    /// The TLS connector (for `stomp+ssl` endpoints).
    pub tls: Option<TlsConnector>,
    /// Time allowed for each step of opening a connection.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let endpoints: Vec<String> = self.endpoints.iter().map(ToString::to_string).collect();
        write!(
            f,
            "Target({endpoints:?}, login: {:?})",
            self.login.as_ref().map(|(u, _)| u)
        )
    }
}

/// An open STOMP connection.
pub struct Connection {
    stream: Stream,
    /// Bytes read and not yet decoded (from `start`).
    rbuf: Vec<u8>,
    start: usize,
    /// The next receipt id.
    next_receipt: u64,
    last_used: std::time::Instant,
}

impl Target {
    /// Opens a connection to the first endpoint that takes it. The failure, when none does,
    /// is that of the last endpoint, or an access refusal when one endpoint refused the login
    /// (an operator fixes that; the others may just be standbys).
    pub async fn connect(&self) -> Result<Connection, Outcome> {
        let mut last = Outcome::Retryable(Failure::new("connect", "no endpoint"));
        for endpoint in &self.endpoints {
            match self.connect_one(endpoint).await {
                Ok(c) => return Ok(c),
                Err(o @ Outcome::Unavailable(_)) => return Err(o),
                Err(o) => last = o,
            }
        }
        Err(last)
    }

    /// TCP (and TLS for `stomp+ssl`) to `endpoint`, then the STOMP handshake.
    async fn connect_one(&self, endpoint: &Endpoint) -> Result<Connection, Outcome> {
        let stream = self.open_stream(endpoint).await?;
        let mut conn = Connection {
            stream,
            rbuf: Vec::with_capacity(8 * 1024),
            start: 0,
            next_receipt: 1,
            last_used: std::time::Instant::now(),
        };
        let mut out = Vec::with_capacity(256);
        let mut headers = vec![
            ("accept-version", "1.2"),
            ("host", endpoint.host.as_str()),
            ("heart-beat", "0,0"),
        ];
        if let Some((user, password)) = &self.login {
            headers.push(("login", user.as_str()));
            headers.push(("passcode", password.expose()));
        }
        frame::encode_into(&mut out, "CONNECT", &headers, b"");
        let answer = async {
            conn.stream.write_all(&out).await?;
            conn.stream.flush().await?;
            conn.read_frame().await
        };
        let answer = tokio::time::timeout(self.connect_timeout, answer)
            .await
            .map_err(|_| retry("timeout", format!("no CONNECTED from {endpoint} in time")))?
            .map_err(|e| retry("closed", format!("CONNECT to {endpoint}: {e}")))?;
        match answer.command.as_str() {
            "CONNECTED" if answer.header("version") == Some("1.2") => Ok(conn),
            "CONNECTED" => Err(Outcome::Unavailable(Failure::new(
                "protocol",
                format!(
                    "{endpoint} answered STOMP version {:?}; this client speaks 1.2",
                    answer.header("version").unwrap_or("1.0")
                ),
            ))),
            "ERROR" => {
                let text = answer.error_text();
                Err(refusal::for_message(
                    refusal::classify(&text),
                    refusal::failure(&text),
                ))
            }
            other => Err(retry(
                "protocol",
                format!("{endpoint} answered CONNECT with {other}"),
            )),
        }
    }

    /// The TCP connection to `endpoint`, wrapped in TLS (certificate verified against the
    /// endpoint's host) for `stomp+ssl`.
    async fn open_stream(&self, endpoint: &Endpoint) -> Result<Stream, Outcome> {
        let timeout = self.connect_timeout;
        let target = (endpoint.host.as_str(), endpoint.port);
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(target))
            .await
            .map_err(|_| retry("connect", format!("connecting to {endpoint} timed out")))?
            .map_err(|e| retry("connect", format!("connecting to {endpoint}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        if !endpoint.tls {
            return Ok(Stream::Tcp(tcp));
        }
        let Some(connector) = &self.tls else {
            return Err(Outcome::Unavailable(Failure::new("tls", "no TLS set up")));
        };
        let server =
            rustls_pki_types::ServerName::try_from(endpoint.host.clone()).map_err(|_| {
                Outcome::Unavailable(Failure::new(
                    "tls",
                    format!("{:?} is not a valid TLS server name", endpoint.host),
                ))
            })?;
        let tls = tokio::time::timeout(timeout, connector.connect(server, tcp))
            .await
            .map_err(|_| retry("tls", format!("TLS handshake with {endpoint} timed out")))?
            .map_err(|e| retry("tls", format!("TLS handshake with {endpoint}: {e}")))?;
        Ok(Stream::Tls(Box::new(tls)))
    }
}

/// A retryable failure.
fn retry(status: &str, text: String) -> Outcome {
    Outcome::Retryable(Failure::new(status, text))
}

/// What the broker answered to the receipts of one exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// No answer yet.
    Pending,
    /// `RECEIPT`.
    Confirmed,
    /// An `ERROR` naming this receipt.
    Refused(Refusal, Failure),
}

/// The result of one exchange.
#[derive(Debug)]
pub struct Exchanged {
    /// By receipt, in the order of the ids asked for.
    pub answers: Vec<Answer>,
    /// An `ERROR` naming no receipt of this exchange.
    pub chunk_error: Option<(Refusal, Failure)>,
    /// Why the exchange ended before every receipt was answered (connection lost, timeout).
    pub cut: Option<Failure>,
}

impl Exchanged {
    /// Whether the connection may be used again: every receipt answered and no `ERROR` (the
    /// specification has the server close the connection after one).
    pub fn clean(&self) -> bool {
        self.cut.is_none()
            && self.chunk_error.is_none()
            && self.answers.iter().all(|a| *a == Answer::Confirmed)
    }
}

impl Connection {
    /// Takes `n` receipt ids for the next exchange; returns the first (they are consecutive).
    pub fn take_receipts(&mut self, n: u64) -> u64 {
        let first = self.next_receipt;
        self.next_receipt = self.next_receipt.saturating_add(n);
        first
    }

    /// Whether a kept connection can be used again: not idle too long, not closed by the
    /// broker, nothing unexpected waiting to be read.
    pub async fn usable(&mut self) -> bool {
        if self.last_used.elapsed() > MAX_IDLE {
            return false;
        }
        // One poll: `Ready(0)` is the broker's close, bytes other than end-of-line padding are
        // an unexpected frame (an ERROR before closing); pending is a healthy, quiet connection.
        self.rbuf.reserve(1024);
        let polled =
            tokio::time::timeout(Duration::ZERO, self.stream.read_buf(&mut self.rbuf)).await;
        if matches!(polled, Ok(Ok(0)) | Ok(Err(_))) {
            return false;
        }
        matches!(self.decoded(), Ok(None)) && self.start == self.rbuf.len()
    }

    /// Reads frames until one is complete.
    async fn read_frame(&mut self) -> std::io::Result<Frame> {
        loop {
            if let Some(f) = self.decoded()? {
                return Ok(f);
            }
            self.fill().await?;
        }
    }

    /// The next complete frame already read, if any.
    fn decoded(&mut self) -> std::io::Result<Option<Frame>> {
        let pending = self.rbuf.get(self.start..).unwrap_or_default();
        match frame::decode(pending, MAX_FRAME_IN) {
            Ok(Some((f, used))) => {
                self.start += used;
                Ok(Some(f))
            }
            Ok(None) => {
                // End-of-line bytes after a frame (ActiveMQ pads every frame with one) are
                // heart-beats: nothing is waiting.
                if pending.iter().all(|b| matches!(b, b'\n' | b'\r')) {
                    self.start = self.rbuf.len();
                }
                Ok(None)
            }
            Err(e) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e.to_string(),
            )),
        }
    }

    /// Reads more bytes (compacting the buffer first); end of stream is an error.
    async fn fill(&mut self) -> std::io::Result<()> {
        if self.start > 0 {
            self.rbuf.drain(..self.start);
            self.start = 0;
        }
        self.rbuf.reserve(16 * 1024);
        let n = self.stream.read_buf(&mut self.rbuf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed by the broker",
            ));
        }
        Ok(())
    }

    /// Writes `out` (SEND frames asking for the receipts `first..first + n`) while reading the
    /// broker's answers, until every receipt is answered, the connection ends, or the broker
    /// stays silent for `silence` while answers are awaited.
    pub async fn exchange(
        &mut self,
        out: &[u8],
        first: u64,
        n: usize,
        silence: Duration,
    ) -> Exchanged {
        let mut ex = Exchanged {
            answers: vec![Answer::Pending; n],
            chunk_error: None,
            cut: None,
        };
        let mut open = n;
        let mut written = 0;
        let mut flushed = out.is_empty();
        let mut quiet_until = Instant::now() + silence;
        self.last_used = std::time::Instant::now();
        let lost = |what: &str| {
            Some(Failure::new(
                "closed",
                format!("connection lost while {what}"),
            ))
        };
        while open > 0 || !flushed {
            if let Err(e) = self.take_frames(first, &mut ex, &mut open) {
                ex.cut = Some(Failure::new("protocol", e.to_string()));
                break;
            }
            if open == 0 && flushed {
                break;
            }
            if self.start > 0 && self.start == self.rbuf.len() {
                self.rbuf.clear();
                self.start = 0;
            }
            self.rbuf.reserve(16 * 1024);
            let rest = out.get(written..).unwrap_or_default();
            let (mut reader, mut writer) = tokio::io::split(&mut self.stream);
            // Writing, flushing and reading in one loop: the broker's receipts are read while
            // the chunk is still being written, so neither side's buffers fill up and block.
            tokio::select! {
                w = async {
                    if rest.is_empty() {
                        writer.flush().await.map(|()| None)
                    } else {
                        writer.write(rest).await.map(Some)
                    }
                }, if !flushed => match w {
                    Ok(Some(0)) | Err(_) => {
                        ex.cut = lost("sending");
                        break;
                    }
                    Ok(Some(k)) => {
                        written += k;
                        quiet_until = Instant::now() + silence;
                    }
                    Ok(None) => flushed = true,
                },
                r = reader.read_buf(&mut self.rbuf) => match r {
                    Ok(0) => {
                        ex.cut = Some(Failure::new("closed", "connection closed by the broker"));
                        break;
                    }
                    Err(e) => {
                        ex.cut = Some(Failure::new("closed", format!("reading from the broker: {e}")));
                        break;
                    }
                    Ok(_) => quiet_until = Instant::now() + silence,
                },
                () = tokio::time::sleep_until(quiet_until) => {
                    ex.cut = Some(Failure::new(
                        "timeout",
                        format!("no answer from the broker within {} ms", silence.as_millis()),
                    ));
                    break;
                }
            }
        }
        self.last_used = std::time::Instant::now();
        ex
    }

    /// Applies the complete frames read so far to `ex`.
    fn take_frames(
        &mut self,
        first: u64,
        ex: &mut Exchanged,
        open: &mut usize,
    ) -> std::io::Result<()> {
        while let Some(f) = self.decoded()? {
            let slot = f
                .header("receipt-id")
                .and_then(|id| id.trim().parse::<u64>().ok())
                .and_then(|id| id.checked_sub(first))
                .and_then(|k| usize::try_from(k).ok())
                .filter(|k| *k < ex.answers.len());
            match (f.command.as_str(), slot) {
                ("RECEIPT", Some(k)) => {
                    if ex.answers[k] == Answer::Pending {
                        *open -= 1;
                    }
                    ex.answers[k] = Answer::Confirmed;
                }
                ("ERROR", Some(k)) => {
                    let text = f.error_text();
                    if ex.answers[k] == Answer::Pending {
                        *open -= 1;
                    }
                    ex.answers[k] =
                        Answer::Refused(refusal::classify(&text), refusal::failure(&text));
                }
                ("ERROR", None) => {
                    let text = f.error_text();
                    ex.chunk_error
                        .get_or_insert((refusal::classify(&text), refusal::failure(&text)));
                }
                // Receipts of other exchanges and anything else are not ours to answer.
                _ => {}
            }
        }
        Ok(())
    }
}
