//! The transport against a loopback HTTP server that answers with canned bytes: redirects,
//! cut-off and oversized answers, gzip bombs, header secrecy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// The request lines (`POST /path`) a [`serve`]d server received.
type Seen = Arc<Mutex<Vec<String>>>;

/// A loopback server answering every request with `answer(path)` (raw bytes, the connection
/// closed after it); its base URL and what it saw.
async fn serve(answer: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (log, answer) = (log.clone(), answer.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let head_end = loop {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let line = head.lines().next().unwrap_or_default().to_string();
                let path = line.split(' ').nth(1).unwrap_or_default().to_string();
                log.lock().unwrap().push(line);
                let _ = sock.write_all(&answer(&path)).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (url, seen)
}

fn transport(url: &str, headers: Vec<(String, SecretRef)>) -> HttpTransport {
    let target = HttpTarget {
        url: reqwest::Url::parse(url).unwrap(),
        headers,
        ca_bundle: None,
        ca_bundle_only: false,
        auth: HttpAuth::None,
        gzip: false,
    };
    HttpTransport::new("w", &target, &ResolvedAuth::None, "application/json").unwrap()
}

fn answer(status_line: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status_line}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// The outcomes of one POST of two records, as the `http` emitter classifies them.
async fn outcomes(t: &HttpTransport) -> Vec<Outcome> {
    match t.post(b"{}\n{}\n".to_vec(), 2).await {
        Ok(r) => classify_response(r.status, r.retry_after, &r.text, 2),
        Err(o) => o,
    }
}

#[tokio::test]
async fn redirects_are_never_followed_and_name_the_status_and_location_without_secrets() {
    for status in [301u16, 302, 303, 307, 308] {
        let (url, seen) = serve(move |path| {
            if path == "/followed" {
                answer("200 OK", "", b"{}")
            } else {
                answer(
                    &format!("{status} Moved"),
                    "location: http://user:pw@127.0.0.1:9/followed?token=abc#frag\r\n",
                    b"",
                )
            }
        })
        .await;
        let t = transport(&format!("{url}/ingest"), vec![]);
        let o = outcomes(&t).await;
        let Some(Outcome::Permanent(f) | Outcome::Retryable(f) | Outcome::Rejected(f)) = o.first()
        else {
            panic!("{status}: a redirect counted as delivered: {o:?}");
        };
        assert_eq!(f.status, status.to_string());
        assert!(f.text.contains("http://127.0.0.1:9/followed"), "{}", f.text);
        assert!(
            !f.text.contains("pw") && !f.text.contains("abc"),
            "{}",
            f.text
        );
        assert_eq!(seen.lock().unwrap().as_slice(), ["POST /ingest HTTP/1.1"]);
    }
}

#[tokio::test]
async fn a_2xx_whose_body_is_cut_off_is_retryable_not_delivered() {
    let (url, _) = serve(|_| {
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\n{\"errors\":".to_vec()
    })
    .await;
    let o = outcomes(&transport(&url, vec![])).await;
    assert!(
        o.iter()
            .all(|x| matches!(x, Outcome::Retryable(f) if f.status == "response")),
        "{o:?}"
    );
}

#[tokio::test]
async fn an_answer_over_the_cap_is_a_clear_failure() {
    let (url, _) = serve(|path| {
        let status = if path == "/bad" {
            "400 Bad Request"
        } else {
            "200 OK"
        };
        answer(status, "", &vec![b'x'; 5000])
    })
    .await;
    let t = transport(&url, vec![]).with_max_response_bytes(1000);
    let o = outcomes(&t).await;
    assert!(
        matches!(&o[0], Outcome::Retryable(f) if f.status == "response" && f.text.contains("cap of 1000 bytes")),
        "{o:?}"
    );
    // Not a 2xx: the status decides, the text says why the body is missing.
    let t = transport(&format!("{url}/bad"), vec![]).with_max_response_bytes(1000);
    let o = outcomes(&t).await;
    assert!(
        matches!(&o[0], Outcome::Rejected(f) if f.status == "400" && f.text.contains("cap of 1000 bytes")),
        "{o:?}"
    );
}

#[tokio::test]
async fn a_gzip_bomb_stops_at_the_cap_after_decoding() {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![b' '; 1 << 20];
    for _ in 0..64 {
        enc.write_all(&zeros).unwrap();
    }
    let bomb = Arc::new(enc.finish().unwrap());
    assert!(bomb.len() < 1 << 20, "{} bytes compressed", bomb.len());
    let (url, _) = serve(move |_| answer("200 OK", "content-encoding: gzip\r\n", &bomb)).await;
    let t = transport(&url, vec![]).with_max_response_bytes(DEFAULT_MAX_RESPONSE_BYTES);
    let o = outcomes(&t).await;
    assert!(
        matches!(&o[0], Outcome::Retryable(f) if f.text.contains("over the cap")),
        "{o:?}"
    );
}

#[test]
fn every_header_value_is_hidden_in_debug_output() {
    let secret = |v: &str| SecretRef::Plain(authtrail_core::secret::Secret::new(v));
    let t = transport(
        "https://x.example/",
        vec![
            ("X-Api-Key".into(), secret("hunter2-key")),
            ("X-Source".into(), secret("hunter2-plain")),
        ],
    );
    let debug = format!("{:?}", t.headers);
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(t.headers.get("x-api-key").is_some_and(|v| v.is_sensitive()));
    // An unread headersFromSecrets value never reaches the client.
    let target = HttpTarget {
        url: reqwest::Url::parse("https://x.example/").unwrap(),
        headers: vec![(
            "X-Api-Key".into(),
            SecretRef::Arn("arn:aws:secretsmanager:x".into()),
        )],
        ca_bundle: None,
        ca_bundle_only: false,
        auth: HttpAuth::None,
        gzip: false,
    };
    assert!(HttpTransport::new("w", &target, &ResolvedAuth::None, "application/json").is_err());
}
