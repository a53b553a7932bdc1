//! The HTTPS server: a TLS accept loop feeding hyper's HTTP/1 connection API. Every connection
//! is tied to the current "up" period, so [`Receiver::go_down`] closes the listener and every
//! open connection at once (what a crashed SIEM looks like), and [`Receiver::come_back`] listens
//! on the same port again.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::ReceiverError;
use crate::bulk::{self, BulkRequest, DocStore};
use crate::certs::CertFiles;
use crate::formats::{self, IngestAuth, Refusal};

/// Which endpoint a request reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Endpoint {
    SplunkHec,
    Elasticsearch,
    Ingest,
}

/// An accepted request.
#[derive(Debug, Clone, Serialize)]
pub struct Received {
    pub endpoint: Endpoint,
    pub path: String,
    pub gzip: bool,
    pub content_type: Option<String>,
    /// Splunk: the event objects (`time`, `host`, ... `event`); generic: the records;
    /// Elasticsearch: `{"action","index","id","source"}` per item.
    pub events: Vec<Value>,
}

/// A request the receiver refused (wrong format or credentials, or an injected failure).
#[derive(Debug, Clone, Serialize)]
pub struct Rejection {
    pub endpoint: Endpoint,
    pub status: u16,
    pub reason: String,
    pub injected: bool,
}

/// Receiver settings.
#[derive(Debug, Clone)]
pub struct ReceiverOptions {
    /// The HEC token Splunk requests must carry.
    pub splunk_token: String,
    pub ingest_auth: IngestAuth,
    /// The exact `Authorization` value `_bulk` requests must carry, if any.
    pub es_authorization: Option<String>,
    /// Port to listen on (0: any free port).
    pub port: u16,
}

impl Default for ReceiverOptions {
    fn default() -> Self {
        Self {
            splunk_token: "test-hec-token".into(),
            ingest_auth: IngestAuth::None,
            es_authorization: None,
            port: 0,
        }
    }
}

#[derive(Default)]
struct Faults {
    count: u32,
    until: Option<Instant>,
    status: u16,
    retry_after: Option<u64>,
    /// Only this endpoint fails (`None`: all data endpoints).
    only: Option<Endpoint>,
    bulk_reject: Option<(String, u16)>,
}

/// An accepted request as kept: `_bulk` requests keep their checked body once (shared with the
/// document store) and become `Value`s only when inspected; the others keep each event as its
/// compact JSON text (a tenth of a `Value`'s memory: a chaos run keeps millions).
struct Stored {
    endpoint: Endpoint,
    path: String,
    gzip: bool,
    content_type: Option<String>,
    events: StoredEvents,
}

enum StoredEvents {
    Json(Vec<Box<str>>),
    Bulk(Arc<BulkRequest>),
}

impl StoredEvents {
    fn from_values(events: Vec<Value>) -> Self {
        Self::Json(
            events
                .into_iter()
                .map(|v| v.to_string().into_boxed_str())
                .collect(),
        )
    }
}

impl Stored {
    fn events(&self) -> Vec<Value> {
        match &self.events {
            StoredEvents::Json(texts) => texts
                .iter()
                .filter_map(|t| serde_json::from_str(t).ok())
                .collect(),
            StoredEvents::Bulk(request) => request.item_values(),
        }
    }

    fn to_received(&self) -> Received {
        Received {
            endpoint: self.endpoint,
            path: self.path.clone(),
            gzip: self.gzip,
            content_type: self.content_type.clone(),
            events: self.events(),
        }
    }
}

#[derive(Default)]
struct Inner {
    received: Vec<Stored>,
    rejections: Vec<Rejection>,
    faults: Faults,
    docs: DocStore,
}

struct Shared {
    options: ReceiverOptions,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock must not hide what was received.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Running {
    accept: JoinHandle<()>,
    kill: watch::Sender<bool>,
}

/// A local HTTPS SIEM receiver.
pub struct Receiver {
    port: u16,
    shared: Arc<Shared>,
    acceptor: TlsAcceptor,
    certs: CertFiles,
    running: tokio::sync::Mutex<Option<Running>>,
}

const MAX_BODY: usize = 64 * 1024 * 1024;

impl Receiver {
    /// Generates certificates into `dir` and starts listening on 127.0.0.1.
    pub async fn start(dir: &Path, options: ReceiverOptions) -> Result<Self, ReceiverError> {
        let certs = crate::certs::generate(dir)?;
        let acceptor = TlsAcceptor::from(certs.server_config()?);
        let listener = TcpListener::bind(("127.0.0.1", options.port)).await?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            options,
            inner: Mutex::new(Inner::default()),
        });
        let running = spawn(listener, acceptor.clone(), shared.clone());
        Ok(Self {
            port,
            shared,
            acceptor,
            certs,
            running: tokio::sync::Mutex::new(Some(running)),
        })
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA certificate (PEM file) to give an emitter as `caBundle`.
    pub fn ca_path(&self) -> &Path {
        &self.certs.ca_pem_path
    }

    pub fn certs(&self) -> &CertFiles {
        &self.certs
    }

    /// Every accepted request, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared
            .lock()
            .received
            .iter()
            .map(Stored::to_received)
            .collect()
    }

    /// The events of every accepted request of one endpoint, flattened.
    pub fn events(&self, endpoint: Endpoint) -> Vec<Value> {
        self.shared
            .lock()
            .received
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .flat_map(Stored::events)
            .collect()
    }

    pub fn rejections(&self) -> Vec<Rejection> {
        self.shared.lock().rejections.clone()
    }

    /// The Elasticsearch documents stored, by (index, id).
    pub fn documents(&self) -> BTreeMap<(String, String), Value> {
        self.shared.lock().docs.documents()
    }

    /// Answers the next `count` data requests with `status` (no data is recorded).
    pub fn fail_next(&self, count: u32, status: u16) {
        let mut inner = self.shared.lock();
        inner.faults.count = count;
        inner.faults.status = status;
    }

    /// Answers every data request with `status` for `duration`.
    pub fn fail_for(&self, duration: Duration, status: u16) {
        let mut inner = self.shared.lock();
        inner.faults.until = Some(Instant::now() + duration);
        inner.faults.status = status;
    }

    /// Answers every request of one endpoint with `status` for `duration`.
    pub fn fail_endpoint_for(&self, endpoint: Endpoint, duration: Duration, status: u16) {
        let mut inner = self.shared.lock();
        inner.faults.until = Some(Instant::now() + duration);
        inner.faults.status = status;
        inner.faults.only = Some(endpoint);
    }

    /// The `Retry-After` (seconds) sent with injected failures.
    pub fn set_retry_after(&self, seconds: Option<u64>) {
        self.shared.lock().faults.retry_after = seconds;
    }

    /// `_bulk` items whose source contains `needle` fail with `status` (item-level errors).
    pub fn reject_bulk_items_containing(&self, needle: &str, status: u16) {
        self.shared.lock().faults.bulk_reject = Some((needle.to_string(), status));
    }

    /// Stops injected failures.
    pub fn heal(&self) {
        self.shared.lock().faults = Faults::default();
    }

    /// Stops listening and drops every open connection.
    pub async fn go_down(&self) {
        if let Some(r) = self.running.lock().await.take() {
            let _ = r.kill.send(true);
            r.accept.abort();
            let _ = r.accept.await;
        }
    }

    /// Listens again on the same port.
    pub async fn come_back(&self) -> Result<(), ReceiverError> {
        let mut running = self.running.lock().await;
        if running.is_some() {
            return Ok(());
        }
        let mut last = None;
        for _ in 0..50 {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => {
                    *running = Some(spawn(listener, self.acceptor.clone(), self.shared.clone()));
                    return Ok(());
                }
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Err(last
            .map(ReceiverError::Io)
            .unwrap_or(ReceiverError::Cert("could not listen again".into())))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Ok(mut r) = self.running.try_lock()
            && let Some(r) = r.take()
        {
            let _ = r.kill.send(true);
            r.accept.abort();
        }
    }
}

fn spawn(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>) -> Running {
    let (kill, kill_rx) = watch::channel(false);
    let accept = tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let shared = shared.clone();
            let mut kill_rx = kill_rx.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = serve(tcp, peer, acceptor, shared) => {}
                    _ = kill_rx.changed() => {}
                }
            });
        }
    });
    Running { accept, kill }
}

async fn serve(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
) {
    let tls = match acceptor.accept(tcp).await {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
    };
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(shared, req).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(Io(tls), service)
        .await
    {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

fn respond(status: u16, body: &Value) -> Response<Body> {
    respond_bytes(status, body.to_string().into_bytes())
}

fn respond_bytes(status: u16, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn header(req: &Request<Incoming>, name: http::header::HeaderName) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        kv.split_once('=')
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    })
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let method = req.method().clone();

    // Inspection and control endpoints (no auth: local tests only).
    match (method.as_str(), path.as_str()) {
        ("GET", "/health") => return respond(200, &json!({"status": "ok"})),
        ("GET", "/_received") => {
            let inner = shared.lock();
            let received: Vec<Received> = inner.received.iter().map(Stored::to_received).collect();
            return respond(
                200,
                &json!({"received": received, "rejections": inner.rejections}),
            );
        }
        ("POST", "/_control/fail") => {
            let status = query_param(query.as_deref(), "status")
                .and_then(|s| s.parse().ok())
                .unwrap_or(503);
            let mut inner = shared.lock();
            inner.faults.status = status;
            inner.faults.retry_after =
                query_param(query.as_deref(), "retryAfter").and_then(|s| s.parse().ok());
            if let Some(n) = query_param(query.as_deref(), "count").and_then(|s| s.parse().ok()) {
                inner.faults.count = n;
            }
            if let Some(s) =
                query_param(query.as_deref(), "seconds").and_then(|s| s.parse::<u64>().ok())
            {
                inner.faults.until = Some(Instant::now() + Duration::from_secs(s));
            }
            return respond(200, &json!({"ok": true}));
        }
        ("POST", "/_control/heal") => {
            shared.lock().faults = Faults::default();
            return respond(200, &json!({"ok": true}));
        }
        _ => {}
    }

    let endpoint = if path == "/services/collector/event" || path == "/services/collector" {
        Endpoint::SplunkHec
    } else if path == "/_bulk" || (path.ends_with("/_bulk") && path.matches('/').count() == 2) {
        Endpoint::Elasticsearch
    } else if path == "/ingest" || path.starts_with("/ingest/") {
        Endpoint::Ingest
    } else {
        return respond(404, &json!({"error": "no such endpoint", "path": path}));
    };
    if method != http::Method::POST
        && !(endpoint == Endpoint::Elasticsearch && method == http::Method::PUT)
    {
        return respond(405, &json!({"error": "method not allowed"}));
    }

    // Injected failures.
    {
        let mut inner = shared.lock();
        let now = Instant::now();
        let applies = inner.faults.only.is_none_or(|e| e == endpoint);
        let failing = if !applies {
            false
        } else if inner.faults.count > 0 {
            inner.faults.count -= 1;
            true
        } else {
            inner.faults.until.is_some_and(|u| now < u)
        };
        if failing {
            let status = inner.faults.status;
            let retry_after = inner.faults.retry_after;
            inner.rejections.push(Rejection {
                endpoint,
                status,
                reason: "injected failure".into(),
                injected: true,
            });
            let body = match endpoint {
                Endpoint::SplunkHec => json!({"text": "Server is busy", "code": 9}),
                _ => json!({"error": "injected failure", "status": status}),
            };
            let mut r = respond(status, &body);
            if let Some(s) = retry_after
                && let Ok(v) = http::HeaderValue::from_str(&s.to_string())
            {
                r.headers_mut().insert(http::header::RETRY_AFTER, v);
            }
            return r;
        }
    }

    let authorization = header(&req, http::header::AUTHORIZATION);
    let content_type = header(&req, http::header::CONTENT_TYPE);
    let encoding = header(&req, http::header::CONTENT_ENCODING);
    let raw = match axum::body::to_bytes(Body::new(req.into_body()), MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return respond(400, &json!({"error": format!("body: {e}")})),
    };
    let gzip = encoding
        .as_deref()
        .is_some_and(|e| e.eq_ignore_ascii_case("gzip"));
    let body = if gzip {
        let mut out = Vec::with_capacity(raw.len().saturating_mul(4).min(MAX_BODY));
        if let Err(e) = flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out) {
            return reject(
                &shared,
                endpoint,
                Refusal {
                    status: 400,
                    body: json!({"error": "bad gzip body"}),
                    reason: format!("gzip: {e}"),
                },
            );
        }
        out
    } else if encoding.is_some() {
        return reject(
            &shared,
            endpoint,
            Refusal {
                status: 415,
                body: json!({"error": "unsupported Content-Encoding"}),
                reason: format!("Content-Encoding {encoding:?}"),
            },
        );
    } else {
        Vec::from(raw)
    };

    let record = |events: StoredEvents| Stored {
        endpoint,
        path: path.clone(),
        gzip,
        content_type: content_type.clone(),
        events,
    };
    match endpoint {
        Endpoint::SplunkHec => match formats::check_splunk(
            authorization.as_deref(),
            &shared.options.splunk_token,
            &body,
        ) {
            Ok(events) => {
                shared
                    .lock()
                    .received
                    .push(record(StoredEvents::from_values(events)));
                respond(200, &json!({"text": "Success", "code": 0}))
            }
            Err(r) => reject(&shared, endpoint, r),
        },
        Endpoint::Ingest => match formats::check_ingest(
            &shared.options.ingest_auth,
            authorization.as_deref(),
            content_type.as_deref(),
            &body,
        ) {
            Ok(events) => {
                let n = events.len();
                shared
                    .lock()
                    .received
                    .push(record(StoredEvents::from_values(events)));
                respond(200, &json!({"received": n}))
            }
            Err(r) => reject(&shared, endpoint, r),
        },
        Endpoint::Elasticsearch => {
            if let Some(expected) = &shared.options.es_authorization
                && authorization.as_deref() != Some(expected.as_str())
            {
                return reject(
                    &shared,
                    endpoint,
                    Refusal {
                        status: 401,
                        body: json!({"error": {"type": "security_exception", "reason": "missing authentication credentials"}, "status": 401}),
                        reason: "bad or missing credentials".into(),
                    },
                );
            }
            let url_index = path
                .strip_suffix("/_bulk")
                .map(|p| p.trim_start_matches('/'))
                .filter(|p| !p.is_empty());
            match bulk::parse_bulk(content_type.as_deref(), url_index, body) {
                Ok(request) => {
                    let request = Arc::new(request);
                    let answer = {
                        let mut inner = shared.lock();
                        let inner = &mut *inner;
                        let answer = inner
                            .docs
                            .apply(&request, inner.faults.bulk_reject.as_ref());
                        inner.received.push(record(StoredEvents::Bulk(request)));
                        answer
                    };
                    respond_bytes(200, answer.to_json())
                }
                Err(r) => reject(&shared, endpoint, r),
            }
        }
    }
}

fn reject(shared: &Shared, endpoint: Endpoint, r: Refusal) -> Response<Body> {
    tracing::warn!(?endpoint, status = r.status, reason = %r.reason, "request refused");
    shared.lock().rejections.push(Rejection {
        endpoint,
        status: r.status,
        reason: r.reason.clone(),
        injected: false,
    });
    respond(r.status, &r.body)
}

/// Adapts a tokio stream to hyper's IO traits (what hyper-util's `TokioIo` does).
struct Io<T>(T);

impl<T: AsyncRead + Unpin> hyper::rt::Read for Io<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let mut tmp = [0u8; 16 * 1024];
        let n = buf.remaining().min(tmp.len());
        let mut rb = tokio::io::ReadBuf::new(&mut tmp[..n]);
        match Pin::new(&mut self.get_mut().0).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                buf.put_slice(rb.filled());
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> hyper::rt::Write for Io<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
