//! `jms`: each event as a JMS text message on an ActiveMQ / Amazon MQ topic or queue, sent over
//! STOMP 1.2 ([`frame`]), which a JMS consumer reads as a `TextMessage` (ForgeRock's
//! `JmsAuditEventHandler` publishes the same way, with ActiveMQ as its documented broker).
//!
//! One SEND frame per record: the body is the record's JSON, without `content-length` (so
//! ActiveMQ makes it a `TextMessage`), with `content-type: application/json`, the event id as
//! `correlation-id` (the JMS correlation id) and as the property `authtrailEventId` (ActiveMQ
//! assigns the JMS message id itself), the event type and kind as `authtrailEventType` and
//! `authtrailEventKind`, and `persistent: true` in `PERSISTENT` mode.
//!
//! A chunk's frames are pipelined on one connection ([`conn`]): in `PERSISTENT` mode each asks
//! for a receipt and counts as delivered only when the broker confirmed it (ActiveMQ answers
//! after storing the message); in `NON_PERSISTENT` mode the last frame asks for one, which
//! confirms the chunk (the broker handles a connection's frames in order). `ERROR` frames map to
//! outcomes by what they say ([`refusal`]). The connection is opened at the first chunk, kept
//! across warm invocations, and replaced after any failure, an `ERROR`, or a long idle time.

use std::sync::Arc;

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Mutex, MutexGuard};
use tokio_rustls::TlsConnector;

use super::{BoxFuture, Emitter, Failure, Outcome, all};
use crate::ForwarderError;
use crate::config::err;
use crate::record::Prepared;

mod config;
pub mod conn;
pub mod frame;
pub mod refusal;

pub use config::{
    DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_PLAIN_PORT,
    DEFAULT_RECEIPT_TIMEOUT_MS, DEFAULT_TLS_PORT, DeliveryMode, Endpoint, JmsConfig, RawJms,
    destination, endpoints, is_loopback,
};
use conn::{Answer, Connection, Exchanged, Target};

/// Room left in `maxMessageSize` for the `receipt` header, added after the size check.
const RECEIPT_ROOM: usize = 32;

/// A `jms` emitter: its settings and its one connection.
pub struct JmsEmitter {
    name: String,
    config: JmsConfig,
    target: Target,
    conns: Vec<Mutex<Option<Connection>>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for JmsEmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JmsEmitter({:?}, {:?})", self.name, self.target)
    }
}

/// Bytes of `s` once escaped as a STOMP header part.
fn escaped_len(s: &str) -> usize {
    s.len()
        + s.bytes()
            .filter(|b| matches!(b, b'\\' | b'\n' | b'\r' | b':'))
            .count()
}

impl JmsEmitter {
    /// The emitter `name` for `config`: the password read (plain or from Secrets Manager), the
    /// TLS trust built. No connection yet: the first chunk opens it.
    pub async fn start(
        name: &str,
        config: &JmsConfig,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Self, ForwarderError> {
        let login = match (&config.username, &config.password) {
            (Some(user), Some(password)) => {
                let secret = password.resolve(sdk, "password").await?;
                if secret.expose().is_empty() || secret.expose().contains(['\n', '\r', '\0']) {
                    return Err(err(
                        format!("emitter {name:?}.password"),
                        "the password is empty or holds a line break or NUL, which a STOMP \
                         CONNECT frame cannot carry",
                    ));
                }
                Some((user.clone(), secret))
            }
            _ => None,
        };
        let tls = if config.endpoints.iter().any(|e| e.tls) {
            let client = crate::config::tls::client_config(
                name,
                config.ca_bundle.as_deref(),
                config.ca_bundle_only,
            )?;
            Some(TlsConnector::from(client))
        } else {
            None
        };
        Ok(Self {
            name: name.to_string(),
            target: Target {
                endpoints: config.endpoints.clone(),
                login,
                tls,
                connect_timeout: config.connect_timeout,
            },
            config: config.clone(),
            conns: (0..config.connections).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        })
    }

    /// The headers of `p`'s SEND frame (with `receipt` when given).
    fn headers<'a>(&'a self, p: &'a Prepared, receipt: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
        let mut h = Vec::with_capacity(8);
        h.push(("destination", self.config.destination.as_str()));
        h.push(("content-type", "application/json"));
        if self.config.delivery_mode == DeliveryMode::Persistent {
            h.push(("persistent", "true"));
        }
        h.push(("correlation-id", p.doc_id.as_str()));
        h.push(("authtrailEventId", p.doc_id.as_str()));
        h.push(("authtrailEventType", p.class.event_type()));
        h.push(("authtrailEventKind", p.class.kind()));
        if let Some(r) = receipt {
            h.push(("receipt", r));
        }
        h
    }

    /// Bytes of `p`'s SEND frame without its receipt header.
    fn frame_len(&self, p: &Prepared) -> usize {
        let headers: usize = self
            .headers(p, None)
            .iter()
            .map(|(n, v)| escaped_len(n) + escaped_len(v) + 2)
            .sum();
        "SEND\n".len() + headers + 1 + p.json.len() + 1
    }

    /// The records of `batch` that can be sent (their positions); the others get their
    /// permanent outcome in `outcomes`.
    fn sendable(&self, batch: &[Arc<Prepared>], outcomes: &mut [Outcome]) -> Vec<usize> {
        let mut send = Vec::with_capacity(batch.len());
        for (i, p) in batch.iter().enumerate() {
            let size = self.frame_len(p) + RECEIPT_ROOM;
            if p.json.contains('\0') {
                outcomes[i] = Outcome::Permanent(Failure::new(
                    "nul",
                    "the record holds a NUL byte, which a STOMP text message cannot carry",
                ));
            } else if size > self.config.max_message_size {
                outcomes[i] = Outcome::Permanent(Failure::new(
                    "too-large",
                    format!(
                        "the SEND frame would be {size} bytes, over maxMessageSize ({})",
                        self.config.max_message_size
                    ),
                ));
            } else {
                send.push(i);
            }
        }
        send
    }

    /// The SEND frames of `send` (positions in `batch`), with receipts from `first`: one per
    /// frame when persistent, else one on the last frame.
    fn encode(&self, batch: &[Arc<Prepared>], send: &[usize], first: u64) -> Vec<u8> {
        let persistent = self.config.delivery_mode == DeliveryMode::Persistent;
        let bytes: usize = send
            .iter()
            .filter_map(|&i| batch.get(i))
            .map(|p| p.json.len() + 256)
            .sum();
        let mut out = Vec::with_capacity(bytes);
        let last = send.len().saturating_sub(1);
        for (k, p) in send.iter().filter_map(|&i| batch.get(i)).enumerate() {
            let receipt = if persistent {
                Some(first + k as u64)
            } else {
                (k == last).then_some(first)
            };
            let receipt = receipt.map(|r| r.to_string());
            frame::encode_into(
                &mut out,
                "SEND",
                &self.headers(p, receipt.as_deref()),
                p.json.as_bytes(),
            );
        }
        out
    }

    /// A free connection slot, else the next one once it is free.
    async fn slot(&self) -> Option<MutexGuard<'_, Option<Connection>>> {
        let n = self.conns.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Ok(g) = self.conns.get((start + i) % n)?.try_lock() {
                return Some(g);
            }
        }
        Some(self.conns.get(start % n)?.lock().await)
    }

    /// One attempt for `batch` on a kept connection (opened or replaced when needed).
    async fn attempt(&self, batch: &[Arc<Prepared>]) -> Vec<Outcome> {
        let mut outcomes = vec![Outcome::Delivered; batch.len()];
        let send = self.sendable(batch, &mut outcomes);
        if send.is_empty() {
            return outcomes;
        }
        // Held for the whole attempt: if the attempt is cut off (the emit timeout), the slot
        // stays empty and the half-used connection is dropped with the future.
        let Some(mut slot) = self.slot().await else {
            return outcomes;
        };
        let mut kept = slot.take();
        if let Some(c) = kept.as_mut()
            && !c.usable().await
        {
            kept = None;
        }
        let mut conn = match kept {
            Some(c) => c,
            None => match self.target.connect().await {
                Ok(c) => {
                    tracing::info!(emitter = self.name, "connected to the STOMP broker");
                    c
                }
                Err(o) => {
                    log_failure(&self.name, &o);
                    send.iter().for_each(|&i| outcomes[i] = o.clone());
                    return outcomes;
                }
            },
        };
        let persistent = self.config.delivery_mode == DeliveryMode::Persistent;
        let receipts = if persistent { send.len() } else { 1 };
        let first = conn.take_receipts(receipts as u64);
        let out = self.encode(batch, &send, first);
        let ex = conn
            .exchange(&out, first, receipts, self.config.receipt_timeout)
            .await;
        apply(&ex, persistent, &send, &mut outcomes);
        if ex.clean() {
            *slot = Some(conn);
        } else if let Some(o) = send.iter().find_map(|&i| match &outcomes[i] {
            Outcome::Delivered => None,
            other => Some(other),
        }) {
            log_failure(&self.name, o);
        }
        outcomes
    }
}

/// Logs why a chunk was not (wholly) delivered (the broker's text and the status; never a
/// secret: the broker is never sent back the password).
fn log_failure(name: &str, o: &Outcome) {
    let f = match o {
        Outcome::Delivered => return,
        Outcome::Retryable(f)
        | Outcome::Permanent(f)
        | Outcome::Unavailable(f)
        | Outcome::Rejected(f) => f,
    };
    tracing::warn!(
        emitter = name,
        status = f.status,
        error = f.text,
        "STOMP delivery failed"
    );
}

/// Fills the outcomes of the records sent (`send`, positions in the chunk) from the broker's
/// answers: a receipt delivers; an `ERROR` naming a receipt decides for its message(s); the
/// rest follow an `ERROR` naming no receipt, else the cut connection (retried).
fn apply(ex: &Exchanged, persistent: bool, send: &[usize], outcomes: &mut [Outcome]) {
    let confirmed_any = ex.answers.contains(&Answer::Confirmed);
    // Whether a refusal naming no message can only be about one message.
    let alone = if persistent {
        ex.answers.iter().filter(|a| **a == Answer::Pending).count() == 1
    } else {
        send.len() == 1
    };
    let whole = !confirmed_any && outcomes.iter().all(|o| *o == Outcome::Delivered);
    let cut =
        || {
            Outcome::Retryable(ex.cut.clone().unwrap_or_else(|| {
                Failure::new("closed", "no receipt before the connection ended")
            }))
        };
    for (k, &i) in send.iter().enumerate() {
        let answer = ex.answers.get(if persistent { k } else { 0 });
        outcomes[i] = match (answer, &ex.chunk_error) {
            (Some(Answer::Confirmed), None) => Outcome::Delivered,
            (Some(Answer::Confirmed), Some(_)) if persistent => Outcome::Delivered,
            (Some(Answer::Refused(kind, f)), _) => refusal::for_message(*kind, f.clone()),
            (_, Some((kind, f))) => refusal::for_chunk(*kind, f.clone(), alone, whole),
            (_, None) => cut(),
        };
    }
    // A chunk is refused as a whole (and split by the caller) only when every record of it is.
    let rejected = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Rejected(_)))
        .count();
    if rejected > 0 && rejected < outcomes.len() {
        for o in outcomes.iter_mut() {
            if let Outcome::Rejected(f) = o {
                *o = Outcome::Retryable(f.clone());
            }
        }
    }
}

impl Emitter for JmsEmitter {
    fn name(&self) -> &str {
        &self.name
    }

    fn emit<'a>(&'a self, batch: &'a [Arc<Prepared>]) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(async move {
            if batch.is_empty() {
                return all(0, Outcome::Delivered);
            }
            self.attempt(batch).await
        })
    }

    /// One chunk per connection at a time (`connections`, default 1: one ordered stream).
    fn max_concurrent_requests(&self) -> usize {
        self.conns.len()
    }

    fn size_hint(&self, record: &Prepared) -> usize {
        record.json.len() + 256
    }
}

#[cfg(test)]
mod tests;
