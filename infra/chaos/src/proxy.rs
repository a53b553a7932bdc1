//! An HTTP proxy in front of the emulator for one function: passes every request through, and on
//! command answers S3 writes with 503 SlowDown, fails some entries of Kinesis PutRecords calls
//! (the entries are not forwarded and are answered `ProvisionedThroughputExceededException`,
//! as a throttled shard answers), or kills the function at a kill point.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use authtrail_runner::LambdaFunction;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::error::ChaosError;
use crate::log::FaultLog;
use crate::schedule::{KillPoint, Rng};

/// Largest request body passed through (a PutRecords call is at most 5 MiB).
const MAX_BODY: usize = 64 << 20;

/// What the proxy does besides passing requests through.
#[derive(Debug)]
struct Shared {
    target: AtomicU16,
    client: reqwest::Client,
    log: Arc<FaultLog>,
    write_faults: AtomicBool,
    /// Fraction of PutRecords calls failed partially, and of their entries failed.
    partial: Mutex<(f64, f64)>,
    rng: Mutex<Rng>,
    /// The armed kill point, and whether a PutRecords call was accepted since it was armed.
    armed: Mutex<Option<(KillPoint, bool)>>,
    victim: Mutex<Option<Arc<LambdaFunction>>>,
}

/// A running proxy; stops with the process.
#[derive(Debug, Clone)]
pub struct AwsProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl AwsProxy {
    /// Starts the proxy on a free loopback port; requests fail until [`Self::set_target`].
    pub async fn start(log: Arc<FaultLog>, seed: u64) -> Result<Self, ChaosError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|source| ChaosError::Injector {
                what: "AWS proxy",
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ChaosError::Injector {
                what: "AWS proxy",
                source,
            })?;
        let shared = Arc::new(Shared {
            target: AtomicU16::new(0),
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_default(),
            log,
            write_faults: AtomicBool::new(false),
            partial: Mutex::new((0.0, 0.0)),
            rng: Mutex::new(Rng::new(seed)),
            armed: Mutex::new(None),
            victim: Mutex::new(None),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared })
    }

    /// `http://127.0.0.1:PORT`, the endpoint to give the function.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Passes requests to `127.0.0.1:{port}` (the emulator).
    pub fn set_target(&self, port: u16) {
        self.shared.target.store(port, Ordering::Relaxed);
    }

    /// The function the kill points kill.
    pub fn set_victim(&self, f: Arc<LambdaFunction>) {
        if let Ok(mut v) = self.shared.victim.lock() {
            *v = Some(f);
        }
    }

    /// Answers S3 writes (PUT, POST, DELETE) with 503 SlowDown while `on`.
    pub fn set_write_faults(&self, on: bool) {
        self.shared.write_faults.store(on, Ordering::Relaxed);
    }

    /// Fails `entries` of the entries of a fraction `calls` of PutRecords calls (0, 0: none).
    pub fn set_partial_failures(&self, calls: f64, entries: f64) {
        if let Ok(mut p) = self.shared.partial.lock() {
            *p = (calls, entries);
        }
    }

    /// Kills the function at the next `point` seen here (mid-PutRecords, mid-checkpoint).
    pub fn arm(&self, point: KillPoint) {
        if let Ok(mut a) = self.shared.armed.lock() {
            *a = Some((point, false));
        }
    }

    /// Stops every fault: writes pass, no partial failures, no armed kill.
    pub fn heal(&self) {
        self.set_write_faults(false);
        self.set_partial_failures(0.0, 0.0);
        if let Ok(mut a) = self.shared.armed.lock() {
            *a = None;
        }
    }
}

fn is_checkpoint_write(method: &Method, path: &str) -> bool {
    method == Method::PUT && path.contains("checkpoint")
}

impl Shared {
    /// Takes the armed kill if the request is at its point (`accepted`: a PutRecords call
    /// just went through).
    fn take_kill(&self, at: KillPoint) -> bool {
        let Ok(mut armed) = self.armed.lock() else {
            return false;
        };
        match *armed {
            // The checkpoint kill waits for a page's records to be accepted first, so that it
            // lands between "accepted" and "saved" rather than on the lease at the run's start.
            Some((KillPoint::MidCheckpoint, true)) if at == KillPoint::MidCheckpoint => {
                *armed = None;
                true
            }
            Some((KillPoint::MidPutRecords, _)) if at == KillPoint::MidPutRecords => {
                *armed = None;
                true
            }
            _ => false,
        }
    }

    fn note_put_records_accepted(&self) {
        if let Ok(mut armed) = self.armed.lock()
            && let Some((KillPoint::MidCheckpoint, seen)) = armed.as_mut()
        {
            *seen = true;
        }
    }

    fn kill(&self, at: KillPoint) {
        let victim = self.victim.lock().ok().and_then(|v| v.clone());
        let pid = victim.and_then(|f| f.kill_now());
        let detail = match pid {
            Some(pid) => format!("pid {pid}"),
            None => "no process to kill".into(),
        };
        self.log
            .fault(&format!("producer-sigkill-{}", at.name()), detail);
    }

    /// The entries of this PutRecords call to fail (none for most calls).
    fn draw_failures(&self, n: usize) -> Vec<bool> {
        let (calls, entries) = self.partial.lock().map(|p| *p).unwrap_or((0.0, 0.0));
        let Ok(mut rng) = self.rng.lock() else {
            return vec![false; n];
        };
        if n < 2 || rng.unit() >= calls {
            return vec![false; n];
        }
        let mut fail: Vec<bool> = (0..n).map(|_| rng.unit() < entries).collect();
        // At least one entry goes through, so the call itself is valid.
        if fail.iter().all(|f| *f) {
            fail[0] = false;
        }
        fail
    }
}

async fn handle(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let amz_target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let is_s3 = amz_target.is_empty();
    if is_s3
        && s.write_faults.load(Ordering::Relaxed)
        && matches!(parts.method, Method::PUT | Method::POST | Method::DELETE)
    {
        s.log.fault_n("s3-write-fault-answers", 1, "");
        return slow_down();
    }
    if is_s3 && is_checkpoint_write(&parts.method, &path) && s.take_kill(KillPoint::MidCheckpoint) {
        // The checkpoint write never reaches S3: the page's records were accepted, not saved.
        s.kill(KillPoint::MidCheckpoint);
        return StatusCode::BAD_GATEWAY.into_response();
    }
    if amz_target.ends_with(".PutRecords") {
        return put_records(&s, &parts.method, &path, &parts.headers, body).await;
    }
    forward(&s, &parts.method, &path, &parts.headers, body).await
}

/// A PutRecords call: some entries failed on purpose, the rest forwarded; a kill after the
/// answer when armed.
async fn put_records(
    s: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(mut call) = serde_json::from_slice::<Value>(&body) else {
        return forward(s, method, path, headers, body).await;
    };
    let records = call
        .get("Records")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let fail = s.draw_failures(records.len());
    let failed = fail.iter().filter(|f| **f).count();
    let kept: Vec<Value> = records
        .iter()
        .zip(&fail)
        .filter(|(_, f)| !**f)
        .map(|(r, _)| r.clone())
        .collect();
    call["Records"] = Value::Array(kept);
    let forwarded = Bytes::from(call.to_string());
    let (status, resp_headers, resp_body) = match send(s, method, path, headers, forwarded).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if status.is_success() {
        s.note_put_records_accepted();
        if s.take_kill(KillPoint::MidPutRecords) {
            // Kinesis took the records; the producer dies before it hears so.
            s.kill(KillPoint::MidPutRecords);
            return StatusCode::BAD_GATEWAY.into_response();
        }
    }
    if failed == 0 || !status.is_success() {
        return respond(status, &resp_headers, resp_body);
    }
    let Ok(answer) = serde_json::from_slice::<Value>(&resp_body) else {
        return respond(status, &resp_headers, resp_body);
    };
    s.log
        .fault_n("kinesis-put-records-entries-failed", failed as u64, "");
    s.log.fault_n("kinesis-put-records-partial-calls", 1, "");
    let mut results = answer
        .get("Records")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter();
    let merged: Vec<Value> = fail
        .iter()
        .map(|f| {
            if *f {
                json!({"ErrorCode": "ProvisionedThroughputExceededException",
                       "ErrorMessage": "Rate exceeded for shard (chaos run)"})
            } else {
                results.next().unwrap_or(Value::Null)
            }
        })
        .collect();
    let already = answer
        .get("FailedRecordCount")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let mut out = answer.clone();
    out["Records"] = Value::Array(merged);
    out["FailedRecordCount"] = json!(already + failed as u64);
    respond(status, &resp_headers, Bytes::from(out.to_string()))
}

async fn forward(
    s: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    match send(s, method, path, headers, body).await {
        Ok((status, h, b)) => respond(status, &h, b),
        Err(resp) => resp,
    }
}

async fn send(
    s: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, HeaderMap, Bytes), Response> {
    let port = s.target.load(Ordering::Relaxed);
    let url = format!("http://127.0.0.1:{port}{path}");
    let mut req = s.client.request(method.clone(), url).body(body);
    for (k, v) in headers {
        if k != "host" && k != "content-length" && k != "transfer-encoding" && k != "expect" {
            req = req.header(k, v);
        }
    }
    let resp = req
        .send()
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY.into_response())?;
    let status = resp.status();
    let h = resp.headers().clone();
    let b = resp
        .bytes()
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY.into_response())?;
    Ok((status, h, b))
}

fn respond(status: StatusCode, headers: &HeaderMap, body: Bytes) -> Response {
    let mut builder = Response::builder().status(status);
    for (k, v) in headers {
        if k != "content-length" && k != "transfer-encoding" && k != "connection" {
            builder = builder.header(k, v);
        }
    }
    builder
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

fn slow_down() -> Response {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
    Response::builder()
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .header("content-type", "application/xml")
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::SERVICE_UNAVAILABLE.into_response())
}
