//! The MPAS client against loopback servers that misbehave: redirects on the token and events
//! endpoints (never followed, the token form never re-sent), answers over their caps (a gzip
//! bomb stops at the cap), and absurd token lifetimes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authtrail_core::envelope::EventKind;
use authtrail_core::secret::Secret;
use authtrail_producer::config::Credentials;
use authtrail_producer::error::{ErrorType, MpasEndpoint, SourceError};
use authtrail_producer::mpas::{ClientOptions, EventSource, HttpEventSource, PageQuery};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;

const TOKEN_PATH: &str = "/realms/demo/protocol/openid-connect/token";
const EVENTS_PATH: &str = "/admin/realms/demo/events";
const PASSWORD: &str = "pa55-w0rd-never-resent";

/// What a test server answers to one request (method, path).
type Answer = dyn Fn(&str, &str) -> Response + Send + Sync;

/// A loopback HTTP server answering with `answer` and recording every request as
/// `METHOD path body`.
struct Server {
    base: String,
    seen: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone)]
struct ServerState {
    answer: Arc<Answer>,
    seen: Arc<Mutex<Vec<String>>>,
}

async fn record_and_answer(State(s): State<ServerState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    s.seen.lock().unwrap().push(format!(
        "{} {} {}",
        parts.method,
        path,
        String::from_utf8_lossy(&body)
    ));
    (s.answer)(parts.method.as_str(), &path)
}

async fn serve(answer: impl Fn(&str, &str) -> Response + Send + Sync + 'static) -> Server {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = ServerState {
        answer: Arc::new(answer),
        seen: Arc::clone(&seen),
    };
    let app = axum::Router::new()
        .fallback(record_and_answer)
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Server {
        base: format!("http://{addr}"),
        seen,
    }
}

fn respond(status: u16, headers: &[(&str, &str)], body: impl Into<Body>) -> Response {
    let mut b = Response::builder().status(StatusCode::from_u16(status).unwrap());
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body.into()).unwrap()
}

fn token_ok() -> Response {
    respond(
        200,
        &[("content-type", "application/json")],
        r#"{"access_token":"tok","expires_in":300}"#,
    )
}

fn client(base: &str, max_page_bytes: usize) -> HttpEventSource {
    let options = ClientOptions {
        max_page_bytes,
        ..ClientOptions::new(Duration::from_secs(10), 1)
    };
    HttpEventSource::new(
        base,
        "demo",
        Credentials::Password {
            client_id: "admin-cli".into(),
            client_secret: Some(Secret::new("cl1ent-s3cret")),
            username: "svc".into(),
            password: Secret::new(PASSWORD),
        },
        &options,
    )
    .unwrap()
}

fn query() -> PageQuery {
    PageQuery {
        date_from: None,
        date_to: None,
        first: 0,
        max: 100,
        ascending: Some(true),
    }
}

async fn fetch(source: &HttpEventSource) -> Result<Vec<serde_json::Value>, SourceError> {
    tokio::time::timeout(
        Duration::from_secs(60),
        source.fetch_page(EventKind::User, &query()),
    )
    .await
    .expect("the fetch ends")
}

#[tokio::test]
async fn a_redirect_on_the_token_endpoint_is_an_error_and_the_form_is_never_resent() {
    for status in [302u16, 307, 308] {
        let elsewhere = serve(|_, _| token_ok()).await;
        let target = format!(
            "{}/steal?code=abc",
            elsewhere.base.replace("http://", "http://thief:hunter2@")
        );
        let mpas = serve(move |_, _| respond(status, &[("location", target.as_str())], "")).await;
        let e = fetch(&client(&mpas.base, 1 << 20)).await.unwrap_err();
        match &e {
            SourceError::Redirected {
                endpoint,
                status: got,
                location,
            } => {
                assert_eq!(*endpoint, MpasEndpoint::Token);
                assert_eq!(*got, status);
                assert_eq!(location, &format!("{}/steal?…", elsewhere.base));
            }
            other => panic!("{status}: unexpected {other:?}"),
        }
        let text = e.to_string();
        assert!(
            text.contains(&status.to_string()) && text.contains("/steal"),
            "{text}"
        );
        assert!(
            !text.contains("hunter2") && !text.contains("code=abc"),
            "{text}"
        );
        assert_eq!(e.error_type(), ErrorType::MpasRedirected);
        assert!(
            elsewhere.seen.lock().unwrap().is_empty(),
            "{status}: the redirect was followed"
        );
        let seen = mpas.seen.lock().unwrap();
        assert_eq!(
            seen.len(),
            1,
            "{status}: one token request, not retried: {seen:?}"
        );
    }
}

#[tokio::test]
async fn a_redirect_on_the_events_endpoint_is_an_error_naming_status_and_location() {
    let mpas = serve(|method, path| match (method, path) {
        ("POST", TOKEN_PATH) => token_ok(),
        (_, "/moved") => respond(200, &[], "[]"),
        _ => respond(301, &[("location", "/moved")], ""),
    })
    .await;
    let e = fetch(&client(&mpas.base, 1 << 20)).await.unwrap_err();
    match &e {
        SourceError::Redirected {
            endpoint,
            status,
            location,
        } => {
            assert_eq!(*endpoint, MpasEndpoint::Events);
            assert_eq!(*status, 301);
            assert_eq!(location, &format!("{}/moved", mpas.base));
        }
        other => panic!("unexpected {other:?}"),
    }
    let seen = mpas.seen.lock().unwrap();
    assert!(seen.iter().all(|r| !r.contains("/moved")), "{seen:?}");
    assert!(
        seen.iter()
            .any(|r| r.starts_with(&format!("GET {EVENTS_PATH}")))
    );
}

/// Deflate bits, least significant first.
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u32, bits: u32) {
        self.acc |= u64::from(value) << self.n;
        self.n += bits;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// A Huffman code, most significant bit first.
    fn code(&mut self, code: u32, bits: u32) {
        self.put(code.reverse_bits() >> (32 - bits), bits);
    }
}

/// A single-member gzip body of about `compressed` bytes that decodes to about 158 times as
/// many spaces: one fixed-Huffman deflate block of a literal space and then (length 258,
/// distance 1) copies, 13 bits each. The trailer's CRC is not computed (a reader stops at its
/// cap long before it).
fn gzip_bomb(compressed: usize) -> Vec<u8> {
    let mut bits = Bits::default();
    bits.out
        .extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    bits.put(1, 1); // BFINAL
    bits.put(1, 2); // BTYPE fixed Huffman
    bits.code(0x30 + u32::from(b' '), 8);
    while bits.out.len() < compressed {
        bits.code(0b1100_0101, 8); // length symbol 285: 258 bytes
        bits.code(0, 5); // distance symbol 0: distance 1
    }
    bits.code(0, 7); // end of block
    bits.put(0, 7);
    bits.out.extend_from_slice(&[0; 8]);
    bits.out
}

#[test]
fn the_gzip_bomb_decodes_to_spaces() {
    use std::io::Read;
    let bomb = gzip_bomb(1000);
    let mut decoded = Vec::new();
    let _ = flate2::read::GzDecoder::new(&bomb[..]).read_to_end(&mut decoded);
    assert!(decoded.len() > 150_000, "{}", decoded.len());
    assert!(decoded.iter().all(|b| *b == b' '));
}

#[tokio::test]
async fn a_gzip_bomb_page_stops_at_the_cap_with_mpas_response_too_large() {
    // 10 MB of gzip that decodes to about 1.6 GB of spaces (JSON whitespace, so nothing but
    // the cap stops the read).
    let bomb = gzip_bomb(10_000_000);
    assert!(bomb.len() > 9_000_000, "{}", bomb.len());
    let bomb = axum::body::Bytes::from(bomb);
    let mpas = serve(move |method, path| match (method, path) {
        ("POST", TOKEN_PATH) => token_ok(),
        _ => respond(
            200,
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            bomb.clone(),
        ),
    })
    .await;
    let started = Instant::now();
    let e = fetch(&client(&mpas.base, 2 << 20)).await.unwrap_err();
    assert!(
        matches!(
            e,
            SourceError::TooLarge {
                endpoint: MpasEndpoint::Events,
                limit: 2_097_152
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.error_type(), ErrorType::MpasResponseTooLarge);
    assert!(e.to_string().contains("2097152-byte cap"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let seen = mpas.seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "token + one page, no retry: {seen:?}");
}

#[tokio::test]
async fn a_page_within_its_cap_is_read_and_one_byte_over_is_refused() {
    let page = format!("[{}]", r#"{"time":1,"id":"a"}"#);
    let len = page.len();
    let body = page.clone();
    let mpas = serve(move |method, path| match (method, path) {
        ("POST", TOKEN_PATH) => token_ok(),
        _ => respond(200, &[("content-type", "application/json")], body.clone()),
    })
    .await;
    assert_eq!(fetch(&client(&mpas.base, len)).await.unwrap().len(), 1);
    let e = fetch(&client(&mpas.base, len - 1)).await.unwrap_err();
    assert!(matches!(e, SourceError::TooLarge { .. }), "{e:?}");
}

#[tokio::test]
async fn a_token_answer_over_512_kib_is_refused_as_too_large() {
    let huge = format!(
        r#"{{"access_token":"{}","expires_in":300}}"#,
        "x".repeat(600 * 1024)
    );
    let mpas = serve(move |_, _| respond(200, &[], huge.clone())).await;
    let e = fetch(&client(&mpas.base, 1 << 20)).await.unwrap_err();
    assert!(
        matches!(
            e,
            SourceError::TooLarge {
                endpoint: MpasEndpoint::Token,
                limit: 524_288
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_token_with_an_expires_in_of_u64_max_is_used_without_overflow() {
    let mpas = serve(|method, path| match (method, path) {
        ("POST", TOKEN_PATH) => respond(
            200,
            &[],
            r#"{"access_token":"tok","expires_in":18446744073709551615}"#,
        ),
        _ => respond(200, &[], "[]"),
    })
    .await;
    let source = client(&mpas.base, 1 << 20);
    assert!(fetch(&source).await.unwrap().is_empty());
    assert!(fetch(&source).await.unwrap().is_empty());
    let seen = mpas.seen.lock().unwrap();
    let tokens = seen.iter().filter(|r| r.contains(TOKEN_PATH)).count();
    assert_eq!(tokens, 1, "the token is cached: {seen:?}");
}
