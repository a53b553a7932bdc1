//! The simulator's own control and ledger API under `/sim` (not part of Keycloak).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::body::Frame;
use serde::Deserialize;
use serde_json::json;

use crate::config::FaultRates;
use crate::generator::GenerateSpec;
use crate::keycloak::json_response;
use crate::model::{EventKind, LedgerEntry};
use crate::state::{Shared, bump};

fn bad(msg: impl std::fmt::Display) -> Response {
    json_response(StatusCode::BAD_REQUEST, json!({"error": msg.to_string()}))
}

fn count(s: &Shared) {
    bump(&s.counters.control_requests);
}

/// `GET /sim/health`
pub(crate) async fn health(State(s): State<Arc<Shared>>) -> Response {
    count(&s);
    json_response(StatusCode::OK, json!({"status": "UP"}))
}

/// `GET /sim/info`: realm, ids and mode, so clients need no out-of-band knowledge.
pub(crate) async fn info(State(s): State<Arc<Shared>>) -> Response {
    count(&s);
    let c = &s.config;
    json_response(
        StatusCode::OK,
        json!({
            "realm": c.realm,
            "realmId": s.realm_id,
            "clientId": c.client_id,
            "legacy": c.legacy,
            "seed": c.seed,
            "rate": c.rate,
            "live": c.live,
            "tokenLifetimeSecs": c.token_lifetime_secs,
        }),
    )
}

/// `GET /sim/stats`
pub(crate) async fn stats(State(s): State<Arc<Shared>>) -> Response {
    count(&s);
    (StatusCode::OK, Json(s.stats())).into_response()
}

/// `POST /sim/generate` with a [`GenerateSpec`].
pub(crate) async fn generate(
    State(s): State<Arc<Shared>>,
    body: Result<Json<GenerateSpec>, JsonRejection>,
) -> Response {
    count(&s);
    let Ok(Json(spec)) = body else {
        return bad("expected a JSON GenerateSpec body");
    };
    let result = s.lock().generate(&spec, s.config.rate);
    match result {
        Ok(report) => {
            tracing::info!(
                generated = report.generated,
                pending = report.pending,
                "events generated"
            );
            (StatusCode::OK, Json(report)).into_response()
        }
        Err(e) => bad(e),
    }
}

/// `GET /sim/faults`
pub(crate) async fn get_faults(State(s): State<Arc<Shared>>) -> Response {
    count(&s);
    let rates = s.lock().faults.clone();
    (StatusCode::OK, Json(rates)).into_response()
}

/// `POST /sim/faults` with a [`FaultRates`] (missing fields take their defaults).
pub(crate) async fn set_faults(
    State(s): State<Arc<Shared>>,
    body: Result<Json<FaultRates>, JsonRejection>,
) -> Response {
    count(&s);
    let Ok(Json(rates)) = body else {
        return bad("expected a JSON FaultRates body");
    };
    if let Err(e) = rates.validate() {
        return bad(e);
    }
    tracing::info!(?rates, "fault rates changed");
    s.lock().faults = rates.clone();
    (StatusCode::OK, Json(rates)).into_response()
}

/// Body of `POST /sim/clock`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub(crate) struct ClockRequest {
    advance_ms: Option<i64>,
    freeze: Option<bool>,
}

fn clock_json(s: &Shared) -> Response {
    let (now, frozen) = {
        let mut inner = s.lock();
        let now = inner.sync();
        (now, inner.clock.is_frozen())
    };
    json_response(StatusCode::OK, json!({"nowMs": now, "frozen": frozen}))
}

/// `GET /sim/clock`
pub(crate) async fn get_clock(State(s): State<Arc<Shared>>) -> Response {
    count(&s);
    clock_json(&s)
}

/// `POST /sim/clock` `{"freeze":true|false,"advanceMs":N}` (freeze applies first).
pub(crate) async fn set_clock(
    State(s): State<Arc<Shared>>,
    body: Result<Json<ClockRequest>, JsonRejection>,
) -> Response {
    count(&s);
    let Ok(Json(req)) = body else {
        return bad("expected {\"freeze\":bool,\"advanceMs\":int}");
    };
    {
        let mut inner = s.lock();
        match req.freeze {
            Some(true) => inner.clock.freeze(),
            Some(false) => inner.clock.unfreeze(),
            None => {}
        }
        if let Some(ms) = req.advance_ms {
            inner.clock.advance(ms);
        }
    }
    clock_json(&s)
}

/// `POST /sim/commit`: every pending event becomes visible now.
pub(crate) async fn commit(State(s): State<Arc<Shared>>) -> Response {
    count(&s);
    let committed = {
        let mut inner = s.lock();
        let now = inner.sync();
        inner.store.commit_all(now)
    };
    json_response(StatusCode::OK, json!({"committed": committed}))
}

/// Body of `POST /sim/expire`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ExpireRequest {
    before_ms: i64,
}

/// `POST /sim/expire` `{"beforeMs":T}`: deletes every event with `time < T`.
pub(crate) async fn expire(
    State(s): State<Arc<Shared>>,
    body: Result<Json<ExpireRequest>, JsonRejection>,
) -> Response {
    count(&s);
    let Ok(Json(req)) = body else {
        return bad("expected {\"beforeMs\":int}");
    };
    {
        let mut inner = s.lock();
        inner.sync();
        inner.store.expire_before(req.before_ms);
    }
    (StatusCode::OK, Json(s.stats())).into_response()
}

/// Body of `POST /sim/retention`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RetentionRequest {
    retention_secs: Option<u64>,
}

/// `POST /sim/retention` `{"retentionSecs":N|null}`.
pub(crate) async fn retention(
    State(s): State<Arc<Shared>>,
    body: Result<Json<RetentionRequest>, JsonRejection>,
) -> Response {
    count(&s);
    let Ok(Json(req)) = body else {
        return bad("expected {\"retentionSecs\":int|null}");
    };
    {
        let mut inner = s.lock();
        inner.retention_ms = req
            .retention_secs
            .map(|v| i64::try_from(v.saturating_mul(1000)).unwrap_or(i64::MAX));
        inner.sync();
    }
    (StatusCode::OK, Json(s.stats())).into_response()
}

/// Query of `GET /sim/ledger`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct LedgerQuery {
    /// Skip the first `since` ledger entries (for incremental reads).
    since: usize,
    /// `jsonl` (default) or `json` (one array).
    format: Option<String>,
    /// `user-event` or `admin-event` only.
    kind: Option<EventKind>,
}

/// `GET /sim/ledger`: every event made visible so far, in order of visibility, streamed.
///
/// Each line (or array element) is
/// `{"seq":N,"kind":"user-event","id":"…","time":T,"visibleAt":V,"isError":false,"event":{…}}`.
/// The `x-ledger-length` header gives the ledger length at the time of the call (pass it as
/// `since` next time).
pub(crate) async fn ledger(
    State(s): State<Arc<Shared>>,
    query: Result<Query<LedgerQuery>, QueryRejection>,
) -> Response {
    count(&s);
    let Ok(Query(q)) = query else {
        return bad("expected ?since=N&format=jsonl|json&kind=user-event|admin-event");
    };
    let array = match q.format.as_deref() {
        None | Some("jsonl") => false,
        Some("json") => true,
        Some(other) => return bad(format!("unknown format {other:?}")),
    };
    let (entries, total) = {
        let mut inner = s.lock();
        inner.sync();
        let all = inner.store.ledger();
        let total = all.len();
        let entries: Vec<LedgerEntry> = all
            .get(q.since.min(total)..)
            .unwrap_or_default()
            .iter()
            .filter(|e| q.kind.is_none_or(|k| e.kind == k))
            .cloned()
            .collect();
        (entries, total)
    };
    let body = LedgerBody {
        entries,
        pos: 0,
        array,
        started: false,
        finished: false,
    };
    let mut resp = Response::new(Body::new(body));
    let ctype = if array {
        "application/json"
    } else {
        "application/x-ndjson"
    };
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(&total.to_string()) {
        resp.headers_mut().insert("x-ledger-length", v);
    }
    resp
}

/// Writes one ledger entry as a JSON object (the event is embedded as served).
pub(crate) fn write_ledger_line(out: &mut Vec<u8>, e: &LedgerEntry) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "{{\"seq\":{},\"kind\":\"{}\",\"id\":\"{}\",\"time\":{},\"visibleAt\":{},\"isError\":{},\"event\":",
        e.seq,
        e.kind.as_str(),
        e.id,
        e.time,
        e.visible_at,
        e.is_error
    );
    out.extend_from_slice(e.json.as_bytes());
    out.push(b'}');
}

/// Streams the ledger in chunks of about 64 KiB instead of building one large body.
struct LedgerBody {
    entries: Vec<LedgerEntry>,
    pos: usize,
    array: bool,
    started: bool,
    finished: bool,
}

const CHUNK: usize = 64 * 1024;

impl hyper::body::Body for LedgerBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let mut buf = Vec::with_capacity(CHUNK + 1024);
        if !self.started {
            self.started = true;
            if self.array {
                buf.push(b'[');
            }
        }
        while buf.len() < CHUNK {
            let pos = self.pos;
            let Some(e) = self.entries.get(pos) else {
                break;
            };
            if self.array && pos > 0 {
                buf.push(b',');
            }
            write_ledger_line(&mut buf, e);
            if !self.array {
                buf.push(b'\n');
            }
            self.pos += 1;
        }
        if self.pos >= self.entries.len() {
            self.finished = true;
            if self.array {
                buf.push(b']');
            }
        }
        if buf.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }
}
