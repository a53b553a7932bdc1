//! The producer's MPAS token and page readers, through the real client (`HttpEventSource`).
//!
//! The readers take a `reqwest::Response` and are private to `mpas.rs`, so this target drives
//! `HttpEventSource::fetch_page` against an in-process HTTP/1.1 server on loopback that answers
//! with the input. Per input: the events request is answered 401 (so the client renews its
//! token), the token request with the token body, the retried events request with the page
//! status, `Retry-After` and body. The client makes no retries of its own (`max_retries` 0),
//! so no input makes it sleep.
//!
//! Input: byte 0 chooses the page's status ([`STATUSES`]), then the token body, the page body
//! and the `Retry-After` value, separated by `0x00` bytes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use authtrail_core::envelope::EventKind;
use authtrail_core::secret::Secret;
use authtrail_producer::config::Credentials;
use authtrail_producer::mpas::{ClientOptions, DateParam, EventSource, HttpEventSource, PageQuery};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// The page statuses byte 0 chooses from.
pub const STATUSES: [u16; 8] = [200, 200, 200, 400, 429, 500, 503, 404];

/// What the server answers for the current input.
#[derive(Debug, Default, Clone)]
struct Script {
    token_body: Vec<u8>,
    page_status: u16,
    page_body: Vec<u8>,
    retry_after: Option<String>,
    events_requests: u32,
}

/// The runtime, the server and one client, made once per process.
struct Setup {
    /// Held for the whole of one input: the script is shared (tests run in parallel).
    busy: Mutex<()>,
    runtime: Runtime,
    script: Arc<Mutex<Script>>,
    source: HttpEventSource,
}

fn setup() -> Option<&'static Setup> {
    static SETUP: OnceLock<Option<Setup>> = OnceLock::new();
    SETUP
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            let script = Arc::new(Mutex::new(Script::default()));
            let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).ok()?;
            let addr: SocketAddr = listener.local_addr().ok()?;
            runtime.spawn(serve(listener, script.clone()));
            let credentials = Credentials::ClientCredentials {
                client_id: "authtrail".to_string(),
                client_secret: Secret::new("fuzz-client-secret"),
            };
            let source = HttpEventSource::new(
                &format!("http://{addr}"),
                "fuzz",
                credentials,
                &ClientOptions::new(Duration::from_secs(10), 0),
            )
            .ok()?;
            Some(Setup {
                busy: Mutex::new(()),
                runtime,
                script,
                source,
            })
        })
        .as_ref()
}

/// One input: `[status, token body, 0, page body, 0, retry-after]`.
pub fn run(data: &[u8]) {
    let _ = fetch(data);
}

/// What the client made of one input: the number of events of the page, or its error's
/// text; `None` for an empty input or when the server could not start.
pub fn fetch(data: &[u8]) -> Option<Result<usize, String>> {
    let (&status, rest) = data.split_first()?;
    let mut parts = rest.splitn(3, |&b| b == 0);
    let token_body = parts.next().unwrap_or_default().to_vec();
    let page_body = parts.next().unwrap_or_default().to_vec();
    let retry_after = parts
        .next()
        .and_then(|v| std::str::from_utf8(v).ok())
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b == b' ' || b.is_ascii_graphic()))
        .map(str::to_string);
    let setup = setup()?;
    let _busy = setup
        .busy
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Ok(mut script) = setup.script.lock() {
        *script = Script {
            token_body,
            page_status: STATUSES[usize::from(status) % STATUSES.len()],
            page_body,
            retry_after,
            events_requests: 0,
        };
    }
    let query = PageQuery {
        date_from: Some(DateParam::EpochMs(1_739_388_000_000)),
        date_to: Some(DateParam::EpochMs(1_739_388_470_156)),
        first: 0,
        max: 100,
        ascending: Some(true),
    };
    let page = setup
        .runtime
        .block_on(setup.source.fetch_page(EventKind::User, &query));
    Some(page.map(|events| events.len()).map_err(|e| e.to_string()))
}

/// Accepts connections for the life of the process.
async fn serve(listener: TcpListener, script: Arc<Mutex<Script>>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(connection(stream, script.clone()));
    }
}

/// Answers the requests of one keep-alive connection.
async fn connection(mut stream: TcpStream, script: Arc<Mutex<Script>>) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let Some(path) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        let answer = match script.lock() {
            Ok(mut s) => answer(&mut s, &path),
            Err(_) => return,
        };
        if stream.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// Reads one request (head and `Content-Length` body) from `stream`; its path.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                read_more(stream, buf).await?;
            }
            buf.drain(..end + 4 + length);
            return head.split(' ').nth(1).map(str::to_string);
        }
        read_more(stream, buf).await?;
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

/// The response to a request for `path`.
fn answer(script: &mut Script, path: &str) -> Vec<u8> {
    if path.contains("/protocol/openid-connect/token") {
        return response(200, None, &script.token_body);
    }
    script.events_requests += 1;
    if script.events_requests == 1 {
        return response(401, None, b"");
    }
    response(
        script.page_status,
        script.retry_after.as_deref(),
        &script.page_body,
    )
}

fn response(status: u16, retry_after: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} Fuzz\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    )
    .into_bytes();
    if let Some(v) = retry_after {
        out.extend_from_slice(format!("retry-after: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}
