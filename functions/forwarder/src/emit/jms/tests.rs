//! The `jms` emitter against scripted STOMP brokers on loopback (plain and TLS), and its
//! configuration. The real broker (ActiveMQ) is in the end-to-end tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use super::frame::{self, Frame};
use super::*;
use crate::emit::test_support::{E1, E2, prepared, settings};
use crate::emit::{EmitterSettings, EmitterSpec};

/// What the scripted broker does for one frame it read.
enum Act {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Close the connection.
    Close,
}

/// A frame's bytes.
fn bytes(command: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = Vec::new();
    frame::encode_into(&mut out, command, headers, body.as_bytes());
    out
}

fn connected() -> Act {
    Act::Send(b"CONNECTED\nversion:1.2\nheart-beat:0,0\nserver:scripted\n\n\0\n".to_vec())
}

fn receipt(f: &Frame) -> Act {
    match f.header("receipt") {
        // Padded with an end-of-line after the NUL, as ActiveMQ does.
        Some(r) => Act::Send([bytes("RECEIPT", &[("receipt-id", r)], ""), b"\n".to_vec()].concat()),
        None => Act::Send(Vec::new()),
    }
}

fn error(f: &Frame, text: &str) -> Act {
    let mut h = vec![("message", text), ("content-type", "text/plain")];
    if let Some(r) = f.header("receipt") {
        h.push(("receipt-id", r));
    }
    Act::Send(bytes("ERROR", &h, text))
}

/// The script: (frame, connection number from 0, SEND number on that connection from 0).
type Script = dyn Fn(&Frame, usize, usize) -> Vec<Act> + Send + Sync;

/// A scripted broker on a loopback port, recording every frame it read.
struct Broker {
    port: u16,
    accepted: Arc<AtomicUsize>,
    frames: Arc<Mutex<Vec<Frame>>>,
}

impl Broker {
    async fn start(script: Arc<Script>, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let frames = Arc::new(Mutex::new(Vec::new()));
        let (acc, fr) = (accepted.clone(), frames.clone());
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let n = acc.fetch_add(1, Ordering::SeqCst);
                let (script, fr, tls) = (script.clone(), fr.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(t) => {
                            if let Ok(s) = t.accept(sock).await {
                                serve(s, n, script, fr).await;
                            }
                        }
                        None => serve(sock, n, script, fr).await,
                    }
                });
            }
        });
        Broker {
            port,
            accepted,
            frames,
        }
    }

    async fn plain(
        script: impl Fn(&Frame, usize, usize) -> Vec<Act> + Send + Sync + 'static,
    ) -> Self {
        Self::start(Arc::new(script), None).await
    }

    fn sends(&self) -> Vec<Frame> {
        self.frames
            .lock()
            .unwrap()
            .iter()
            .filter(|f| f.command == "SEND")
            .cloned()
            .collect()
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    conn: usize,
    script: Arc<Script>,
    frames: Arc<Mutex<Vec<Frame>>>,
) {
    let mut buf = Vec::new();
    let mut sends = 0;
    let mut chunk = [0u8; 8192];
    loop {
        while let Ok(Some((f, used))) = frame::decode(&buf, 1 << 20) {
            buf.drain(..used);
            let n = sends;
            if f.command == "SEND" {
                sends += 1;
            }
            frames.lock().unwrap().push(f.clone());
            for act in script(&f, conn, n) {
                match act {
                    Act::Send(b) => {
                        if s.write_all(&b).await.is_err() {
                            return;
                        }
                    }
                    Act::Close => return,
                }
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
}

/// Answers CONNECT and receipts every SEND.
fn happy(f: &Frame, _conn: usize, _n: usize) -> Vec<Act> {
    match f.command.as_str() {
        "CONNECT" => vec![connected()],
        _ => vec![receipt(f)],
    }
}

fn config(extra: &str) -> JmsConfig {
    let mut emitter: serde_json::Value = serde_json::from_str(
        r#"{"name":"mq","type":"jms","destination":"queue://audit","username":"authtrail","password":"hunter2"}"#,
    )
    .unwrap();
    let extra: serde_json::Value = serde_json::from_str(&format!("{{\"_\":0{extra}}}")).unwrap();
    for (k, v) in extra.as_object().unwrap() {
        if k != "_" {
            emitter[k] = v.clone();
        }
    }
    let EmitterSettings::Jms(c) = settings(&emitter.to_string()) else {
        panic!("not jms")
    };
    c
}

async fn emitter(port: u16, extra: &str) -> JmsEmitter {
    let c = config(&format!(r#","url":"stomp://127.0.0.1:{port}"{extra}"#));
    JmsEmitter::start("mq", &c, None).await.unwrap()
}

fn records(n: usize) -> Vec<Arc<Prepared>> {
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                prepared(&E1.replace("id-1", &format!("id-{i}")), i)
            } else {
                prepared(E2, i)
            }
        })
        .collect()
}

fn is_retryable(o: &Outcome, status: &str) -> bool {
    matches!(o, Outcome::Retryable(f) if f.status == status)
}

#[tokio::test]
async fn a_persistent_chunk_is_delivered_once_each_message_is_receipted_with_the_documented_headers()
 {
    let broker = Broker::plain(happy).await;
    let e = emitter(broker.port, "").await;
    let batch = records(2);
    assert_eq!(e.emit(&batch).await, vec![Outcome::Delivered; 2]);
    let frames = broker.frames.lock().unwrap().clone();
    let connect = &frames[0];
    assert_eq!(connect.command, "CONNECT");
    assert_eq!(connect.header("accept-version"), Some("1.2"));
    assert_eq!(connect.header("heart-beat"), Some("0,0"));
    assert_eq!(connect.header("host"), Some("127.0.0.1"));
    assert_eq!(connect.header("login"), Some("authtrail"));
    assert_eq!(connect.header("passcode"), Some("hunter2"));
    let sends = broker.sends();
    assert_eq!(sends.len(), 2);
    let (user, fox) = (&sends[0], &sends[1]);
    assert_eq!(user.body, batch[0].json.as_bytes());
    for (name, value) in [
        ("destination", "/queue/audit"),
        ("content-type", "application/json"),
        ("persistent", "true"),
        ("correlation-id", "id-0"),
        ("authtrailEventId", "id-0"),
        ("authtrailEventType", "LOGIN"),
        ("authtrailEventKind", "user-event"),
    ] {
        assert_eq!(user.header(name), Some(value), "{name}");
    }
    assert_eq!(
        user.header("content-length"),
        None,
        "a TextMessage has no content-length"
    );
    assert!(user.header("receipt").is_some() && fox.header("receipt").is_some());
    assert_ne!(user.header("receipt"), fox.header("receipt"));
    assert_eq!(fox.header("authtrailEventType"), Some("ldap:bind"));
    assert_eq!(fox.header("authtrailEventKind"), Some("other"));
    assert_eq!(fox.header("correlation-id"), Some(batch[1].doc_id.as_str()));
    assert_eq!(
        batch[1].doc_id.len(),
        64,
        "a Foxpass record's id is its SHA-256"
    );
}

#[tokio::test]
async fn the_connection_is_reused_across_chunks_and_replaced_once_the_broker_closed_it() {
    // The broker closes the first connection after its third SEND.
    let broker = Broker::plain(|f, conn, n| match f.command.as_str() {
        "CONNECT" => vec![connected()],
        _ if conn == 0 && n == 2 => vec![receipt(f), Act::Close],
        _ => vec![receipt(f)],
    })
    .await;
    let e = emitter(broker.port, "").await;
    assert_eq!(e.emit(&records(2)).await, vec![Outcome::Delivered; 2]);
    assert_eq!(e.emit(&records(1)).await, vec![Outcome::Delivered]);
    assert_eq!(
        broker.accepted.load(Ordering::SeqCst),
        1,
        "one connection for both chunks"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(e.emit(&records(2)).await, vec![Outcome::Delivered; 2]);
    assert_eq!(
        broker.accepted.load(Ordering::SeqCst),
        2,
        "reconnected after the close"
    );
}

#[tokio::test]
async fn an_error_naming_one_receipt_fails_that_message_only() {
    let broker = Broker::plain(|f, _, n| match f.command.as_str() {
        "CONNECT" => vec![connected()],
        _ if n == 1 => vec![error(
            f,
            "User authtrail is not authorized to write to: queue://audit",
        )],
        _ if n == 2 => vec![error(f, "javax.jms.MessageFormatException: bad message")],
        _ => vec![receipt(f)],
    })
    .await;
    let e = emitter(broker.port, "").await;
    let out = e.emit(&records(4)).await;
    assert_eq!(out[0], Outcome::Delivered);
    assert!(
        matches!(&out[1], Outcome::Unavailable(f) if f.status == "stomp-error" && f.text.contains("not authorized")),
        "{out:?}"
    );
    assert!(
        matches!(&out[2], Outcome::Permanent(f) if f.text.contains("MessageFormat")),
        "{out:?}"
    );
    assert_eq!(out[3], Outcome::Delivered);
    // After an ERROR the connection is replaced.
    assert_eq!(e.emit(&records(1)).await, vec![Outcome::Delivered]);
    assert_eq!(broker.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_refused_login_leaves_every_record_unavailable_for_the_spool() {
    let broker = Broker::plain(|f, _, _| {
        vec![
            error(f, "User name [authtrail] or password is invalid."),
            Act::Close,
        ]
    })
    .await;
    let e = emitter(broker.port, "").await;
    let out = e.emit(&records(3)).await;
    assert!(
        out.iter().all(
            |o| matches!(o, Outcome::Unavailable(f) if f.text.contains("password is invalid"))
        ),
        "{out:?}"
    );
    assert!(
        !format!("{out:?}{e:?}").contains("hunter2"),
        "no password in outcomes or Debug"
    );
}

#[tokio::test]
async fn a_broker_closing_mid_chunk_leaves_the_receipted_delivered_and_the_rest_retryable() {
    let broker = Broker::plain(|f, conn, n| match f.command.as_str() {
        "CONNECT" => vec![connected()],
        _ if conn == 0 && n == 2 => vec![Act::Close],
        _ => vec![receipt(f)],
    })
    .await;
    let e = emitter(broker.port, "").await;
    let out = e.emit(&records(4)).await;
    assert_eq!(out[..2], [Outcome::Delivered, Outcome::Delivered]);
    assert!(
        out[2..].iter().all(|o| is_retryable(o, "closed")),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_silent_broker_times_out_and_the_records_are_retried_on_a_new_connection() {
    let broker = Broker::plain(|f, conn, _| match f.command.as_str() {
        "CONNECT" => vec![connected()],
        _ if conn == 0 => vec![],
        _ => vec![receipt(f)],
    })
    .await;
    let e = emitter(broker.port, r#","receiptTimeout":300"#).await;
    let out = e.emit(&records(2)).await;
    assert!(out.iter().all(|o| is_retryable(o, "timeout")), "{out:?}");
    assert_eq!(e.emit(&records(2)).await, vec![Outcome::Delivered; 2]);
}

#[tokio::test]
async fn a_frame_size_error_naming_no_message_splits_a_chunk_and_blames_a_lone_message() {
    let broker = Broker::plain(|f, _, _| match f.command.as_str() {
        "CONNECT" => vec![connected()],
        _ => vec![
            Act::Send(bytes(
                "ERROR",
                &[("message", "The maximum frame size was exceeded")],
                "",
            )),
            Act::Close,
        ],
    })
    .await;
    let e = emitter(broker.port, "").await;
    let out = e.emit(&records(3)).await;
    assert!(
        out.iter().all(|o| matches!(o, Outcome::Rejected(_))),
        "{out:?}"
    );
    let out = e.emit(&records(1)).await;
    assert!(
        matches!(&out[0], Outcome::Permanent(f) if f.text.contains("frame size")),
        "{out:?}"
    );
}

#[tokio::test]
async fn non_persistent_mode_asks_one_receipt_per_chunk_and_sends_no_persistent_header() {
    let broker = Broker::plain(happy).await;
    let e = emitter(broker.port, r#","deliveryMode":"NON_PERSISTENT""#).await;
    assert_eq!(e.emit(&records(3)).await, vec![Outcome::Delivered; 3]);
    let sends = broker.sends();
    let receipts: Vec<_> = sends
        .iter()
        .map(|f| f.header("receipt").is_some())
        .collect();
    assert_eq!(receipts, [false, false, true]);
    assert!(sends.iter().all(|f| f.header("persistent").is_none()));
}

#[tokio::test]
async fn a_record_over_max_message_size_is_dead_lettered_and_the_others_sent() {
    let broker = Broker::plain(happy).await;
    let e = emitter(broker.port, r#","maxMessageSize":1024"#).await;
    let big = prepared(&E1.replace("LOGIN", &"X".repeat(2000)), 1);
    let batch = vec![records(1).remove(0), big];
    let out = e.emit(&batch).await;
    assert_eq!(out[0], Outcome::Delivered);
    assert!(
        matches!(&out[1], Outcome::Permanent(f) if f.status == "too-large"),
        "{out:?}"
    );
    assert_eq!(broker.sends().len(), 1);
}

#[tokio::test]
async fn chunks_in_flight_together_take_one_connection_each_up_to_connections() {
    let broker = Broker::plain(happy).await;
    let e = emitter(broker.port, r#","connections":2"#).await;
    assert_eq!(e.max_concurrent_requests(), 2);
    let (a, b) = (records(50), records(50));
    let (x, y) = tokio::join!(e.emit(&a), e.emit(&b));
    assert!(x.iter().chain(&y).all(|o| *o == Outcome::Delivered));
    assert_eq!(broker.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(e.emit(&records(3)).await, vec![Outcome::Delivered; 3]);
    assert_eq!(broker.accepted.load(Ordering::SeqCst), 2, "both kept");
}

#[tokio::test]
async fn a_refused_connection_is_retried_and_failover_takes_the_next_endpoint() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = emitter(dead, "").await;
    let out = e.emit(&records(1)).await;
    assert!(is_retryable(&out[0], "connect"), "{out:?}");
    let broker = Broker::plain(happy).await;
    let c = config(&format!(
        r#","url":"failover:(stomp://127.0.0.1:{dead},stomp://127.0.0.1:{})""#,
        broker.port
    ));
    let e = JmsEmitter::start("mq", &c, None).await.unwrap();
    assert_eq!(e.emit(&records(2)).await, vec![Outcome::Delivered; 2]);
}

#[tokio::test]
async fn tls_is_verified_against_the_ca_bundle_and_refused_without_it() {
    let dir = std::env::temp_dir().join(format!("authtrail-jms-tls-{}", std::process::id()));
    let certs = siem_receiver::certs::generate(&dir).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(certs.server_config().unwrap());
    let broker = Broker::start(Arc::new(happy), Some(acceptor)).await;
    let url = format!("stomp+ssl://localhost:{}", broker.port);
    let trusted = config(&format!(
        r#","url":"{url}","caBundle":"{}""#,
        certs.ca_pem_path.display()
    ));
    let e = JmsEmitter::start("mq", &trusted, None).await.unwrap();
    assert_eq!(e.emit(&records(2)).await, vec![Outcome::Delivered; 2]);
    let untrusted = config(&format!(r#","url":"{url}""#));
    let e = JmsEmitter::start("mq", &untrusted, None).await.unwrap();
    let out = e.emit(&records(1)).await;
    assert!(is_retryable(&out[0], "tls"), "{out:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

fn refusal(emitter: &str) -> String {
    crate::config::ForwarderConfig::parse(&format!(r#"{{"emitters":[{emitter}]}}"#))
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_settings_are_refused_naming_the_key() {
    let base =
        r#""name":"mq","type":"jms","url":"stomp+ssl://b-1.mq.eu-west-1.amazonaws.com:61614""#;
    for (extra, key) in [
        (
            r#","destination":"topic://audit","brokerUrl":"x""#,
            "brokerUrl",
        ),
        ("", "destination"),
        (r#","destination":"audit""#, "destination"),
        (r#","destination":"topic://""#, "destination"),
        (r#","destination":"queue://a b""#, "destination"),
        (
            r#","destination":"topic://audit","deliveryMode":"persistent""#,
            "deliveryMode",
        ),
        (
            r#","destination":"topic://audit","username":"u""#,
            "passwordSecretArn",
        ),
        (
            r#","destination":"topic://audit","password":"p""#,
            "username",
        ),
        (
            r#","destination":"topic://audit","caBundleOnly":true"#,
            "caBundleOnly",
        ),
        (
            r#","destination":"topic://audit","receiptTimeout":0"#,
            "receiptTimeout",
        ),
        (
            r#","destination":"topic://audit","maxMessageSize":10"#,
            "maxMessageSize",
        ),
        (
            r#","destination":"topic://audit","connections":0"#,
            "connections",
        ),
        (
            r#","destination":"topic://audit","connections":9"#,
            "connections",
        ),
    ] {
        let e = refusal(&format!("{{{base}{extra}}}"));
        assert!(e.contains(key), "{key}: {e}");
    }
    let missing_url = refusal(r#"{"name":"mq","type":"jms","destination":"topic://audit"}"#);
    assert!(missing_url.contains(".url"), "{missing_url}");
}

#[test]
fn plain_stomp_is_for_loopback_hosts_and_other_schemes_are_refused_naming_them() {
    let with_url = |url: &str| {
        refusal(&format!(
            r#"{{"name":"mq","type":"jms","url":"{url}","destination":"topic://audit"}}"#
        ))
    };
    let plain = with_url("stomp://broker.example.com:61613");
    assert!(
        plain.contains(".url") && plain.contains("loopback"),
        "{plain}"
    );
    for scheme in ["amqps", "amqp", "ssl", "tcp", "mqtt+ssl"] {
        let e = with_url(&format!("{scheme}://b-1.mq.eu-west-1.amazonaws.com:5671"));
        assert!(
            e.contains(&format!("{scheme:?}")) && e.contains("not implemented"),
            "{e}"
        );
    }
    let creds = with_url("stomp+ssl://user:hunter2@broker.example.com");
    assert!(
        creds.contains("credentials") && !creds.contains("hunter2"),
        "{creds}"
    );
    assert!(with_url("stomp+ssl://host:0").contains("port"));
    assert!(with_url("stomp+ssl://host/path").contains("path"));
    assert!(with_url("failover:(stomp+ssl://a:61614)?randomize=false").contains("failover"));
}

#[test]
fn urls_destinations_and_defaults_are_read_as_documented() {
    let e = endpoints(
        "u",
        "failover:(stomp+ssl://b-1.mq.aws:61614, stomp+ssl://b-2.mq.aws)",
    )
    .unwrap();
    assert_eq!(
        e,
        [
            Endpoint {
                host: "b-1.mq.aws".into(),
                port: 61614,
                tls: true
            },
            Endpoint {
                host: "b-2.mq.aws".into(),
                port: DEFAULT_TLS_PORT,
                tls: true
            },
        ]
    );
    let local = endpoints("u", "stomp://[::1]").unwrap();
    assert_eq!(
        local[0],
        Endpoint {
            host: "::1".into(),
            port: DEFAULT_PLAIN_PORT,
            tls: false
        }
    );
    assert_eq!(local[0].to_string(), "stomp://[::1]:61613");
    assert_eq!(
        destination("d", "topic://audit.events").unwrap(),
        "/topic/audit.events"
    );
    assert_eq!(destination("d", "queue://audit").unwrap(), "/queue/audit");
    let c = config(r#","url":"stomp+ssl://broker.example.com""#);
    assert_eq!(c.delivery_mode, DeliveryMode::Persistent);
    assert_eq!(
        c.connect_timeout,
        Duration::from_millis(DEFAULT_CONNECT_TIMEOUT_MS)
    );
    assert_eq!(
        c.receipt_timeout,
        Duration::from_millis(DEFAULT_RECEIPT_TIMEOUT_MS)
    );
    assert_eq!(c.max_message_size, DEFAULT_MAX_MESSAGE_SIZE);
    assert_eq!(c.connections, 1);
    let limits = crate::emit::EmitterType::Jms.buffering_limits();
    assert_eq!(
        (limits.default_batched_events, limits.default_size),
        (2000, 4 << 20)
    );
    assert!(!format!("{c:?}").contains("hunter2"), "{c:?}");
    assert!(
        JmsConfig::validate(
            "l",
            serde_json::from_str::<RawJms>(
                r#"{"url":"stomp://localhost","destination":"queue://q"}"#
            )
            .unwrap()
        )
        .is_ok()
    );
}

// ---------------------------------------------------------------------------------------------
// Against a real ActiveMQ (run with --ignored; needs the activemq package)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts a real ActiveMQ broker (make apt-deps)"]
async fn live_jms_chunks_are_receipted_over_tls_on_one_or_more_connections() {
    let mq = tokio::task::spawn_blocking(authtrail_harness::activemq::ActiveMq::start)
        .await
        .unwrap()
        .unwrap();
    let batch = records(10_000);
    let runs = [
        (500, 1),
        (500, 2),
        (2000, 1),
        (2000, 2),
        (500, 1),
        (500, 2),
        (2000, 1),
        (2000, 2),
    ];
    for (i, (chunk, connections)) in runs.into_iter().enumerate() {
        let c = config(&format!(
            r#","url":"{}","password":"{}","caBundle":"{}","destination":"queue://audit.live.{i}","connections":{connections}"#,
            mq.stomp_ssl_url(),
            mq.writer_password(),
            mq.ca_pem_path().display()
        ));
        let e = Arc::new(JmsEmitter::start("mq", &c, None).await.unwrap());
        let t = std::time::Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let mut parts = batch.chunks(chunk).map(<[_]>::to_vec);
        loop {
            while tasks.len() < connections {
                let Some(part) = parts.next() else { break };
                let e = e.clone();
                tasks.spawn(async move { e.emit(&part).await });
            }
            let Some(done) = tasks.join_next().await else {
                break;
            };
            let out = done.unwrap();
            assert!(
                out.iter().all(|o| *o == Outcome::Delivered),
                "{:?}",
                out.iter().find(|o| **o != Outcome::Delivered)
            );
        }
        println!(
            "{chunk}/chunk, {connections} connection(s): {:?}",
            t.elapsed()
        );
    }
}
