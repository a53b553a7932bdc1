//! Tests of the emitter's delivery against a scripted broker on loopback: a few lines that
//! answer `ApiVersions`, `Metadata` and `Produce` the way a broker does, with a rule for each
//! produce answer, so that splitting, metadata refreshes and reconnects are seen on the wire.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::protocol::{self as wire, Reader, Writer};
use super::*;
use crate::config::ForwarderConfig;
use crate::emit::EmitterSettings;
use crate::emit::test_support::{E1, prepared};

/// What the scripted broker answers a produce request with, given the request's bytes and
/// how many produce requests came before it.
type Rule = dyn Fn(&[u8], usize) -> ProduceAnswer + Send + Sync;

enum ProduceAnswer {
    /// This error code for every partition.
    Code(i16),
    /// Close the connection without answering.
    Hang,
}

#[derive(Default)]
struct Seen {
    metadata: AtomicUsize,
    produce: AtomicUsize,
    connections: AtomicUsize,
    acks: Mutex<Vec<i16>>,
}

async fn broker(rule: Arc<Rule>) -> (u16, Arc<Seen>) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            s.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(conn, port, rule.clone(), s.clone()));
        }
    });
    (port, seen)
}

async fn serve(mut conn: TcpStream, port: u16, rule: Arc<Rule>, seen: Arc<Seen>) {
    loop {
        let mut size = [0u8; 4];
        if conn.read_exact(&mut size).await.is_err() {
            return;
        }
        let mut req = vec![0u8; i32::from_be_bytes(size) as usize];
        conn.read_exact(&mut req).await.unwrap();
        let mut r = Reader::new(&req);
        let (api, version, corr) = (r.i16().unwrap(), r.i16().unwrap(), r.i32().unwrap());
        r.string().unwrap(); // client id
        let mut body = Writer::plain(64);
        match api {
            wire::API_VERSIONS => {
                body.i16(0);
                body.array_len(2);
                for (k, lo, hi) in [(wire::PRODUCE, 3, 8), (wire::METADATA, 4, 8)] {
                    body.i16(k);
                    body.i16(lo);
                    body.i16(hi);
                }
            }
            wire::METADATA => {
                seen.metadata.fetch_add(1, Ordering::SeqCst);
                metadata_answer(&mut body, version, port);
            }
            wire::PRODUCE => {
                let n = seen.produce.fetch_add(1, Ordering::SeqCst);
                r.nullable_string().unwrap();
                seen.acks.lock().unwrap().push(r.i16().unwrap());
                match rule(&req, n) {
                    ProduceAnswer::Hang => return,
                    ProduceAnswer::Code(code) => produce_answer(&mut body, version, code),
                }
            }
            _ => return,
        }
        // The response frame: size, correlation id, body.
        let body = body.into_inner();
        let mut frame = Vec::with_capacity(body.len() + 8);
        frame.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        frame.extend_from_slice(&corr.to_be_bytes());
        frame.extend_from_slice(&body);
        if conn.write_all(&frame).await.is_err() {
            return;
        }
    }
}

fn metadata_answer(w: &mut Writer, version: i16, port: u16) {
    w.i32(0); // throttle
    w.array_len(1);
    w.i32(1);
    w.string("127.0.0.1");
    w.i32(i32::from(port));
    w.nullable_string(None);
    w.nullable_string(Some("cluster"));
    w.i32(1); // controller
    w.array_len(1);
    w.i16(0);
    w.string("t");
    w.bool(false);
    w.array_len(1);
    w.i16(0);
    w.i32(0); // partition
    w.i32(1); // leader
    if version >= 7 {
        w.i32(0);
    }
    for _ in 0..3 {
        w.array_len(1);
        w.i32(1);
    }
    if version >= 8 {
        w.i32(0);
    }
}

fn produce_answer(w: &mut Writer, version: i16, code: i16) {
    w.array_len(1);
    w.string("t");
    w.array_len(1);
    w.i32(0);
    w.i16(code);
    w.i64(0);
    w.i64(-1);
    if version >= 5 {
        w.i64(0);
    }
    if version >= 8 {
        w.array_len(0);
        w.nullable_string(None);
    }
    w.i32(0); // throttle
}

async fn emitter(port: u16, tuning: &str) -> KafkaEmitter {
    let json = format!(
        r#"{{"emitters":[{{"name":"k","type":"kafka","bootstrapServers":["127.0.0.1:{port}"],"topic":"t","securityProtocol":"PLAINTEXT","tuning":{{{tuning}}}}}]}}"#
    );
    let c = ForwarderConfig::parse(&json).unwrap();
    let EmitterSettings::Kafka(k) = &c.emitters[0].settings else {
        panic!()
    };
    KafkaEmitter::start("k", k, None).await.unwrap()
}

fn login(id: &str) -> String {
    E1.replace("id-1", id)
}

#[tokio::test]
async fn a_chunk_refused_for_one_record_is_split_until_that_record_is_alone() {
    let rule: Arc<Rule> = Arc::new(|req: &[u8], _| {
        let bad = req.windows(5).any(|w| w == b"BAD-1");
        ProduceAnswer::Code(if bad { 10 } else { 0 })
    });
    let (port, seen) = broker(rule).await;
    let e = emitter(port, "").await;
    let ids = ["a-0", "a-1", "a-2", "BAD-1", "a-4", "a-5", "a-6", "a-7"];
    let batch: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| prepared(&login(id), i))
        .collect();
    let out = e.emit(&batch).await;
    for (id, o) in ids.iter().zip(&out) {
        match (*id, o) {
            ("BAD-1", Outcome::Permanent(f)) => assert_eq!(f.status, "MESSAGE_TOO_LARGE"),
            (_, Outcome::Delivered) => {}
            other => panic!("{other:?}"),
        }
    }
    // 8 records: the whole chunk, then halves down to the bad one: 1 + 2 + 2 + 2 requests.
    assert_eq!(seen.produce.load(Ordering::SeqCst), 7);
    assert_eq!(
        *seen.acks.lock().unwrap(),
        vec![-1; 7],
        "acks=all on every request"
    );
}

#[tokio::test]
async fn a_leader_change_reads_the_metadata_again_and_the_retry_is_delivered() {
    let rule: Arc<Rule> = Arc::new(|_: &[u8], n| ProduceAnswer::Code(if n == 0 { 6 } else { 0 }));
    let (port, seen) = broker(rule).await;
    let e = emitter(port, r#""acks":"1""#).await;
    let batch = [prepared(&login("x-1"), 0)];
    let first = e.emit(&batch).await;
    assert!(
        matches!(&first[0], Outcome::Retryable(f) if f.status == "NOT_LEADER_OR_FOLLOWER"),
        "{first:?}"
    );
    let second = e.emit(&batch).await;
    assert_eq!(second, vec![Outcome::Delivered]);
    assert_eq!(
        seen.metadata.load(Ordering::SeqCst),
        2,
        "read again after NOT_LEADER_OR_FOLLOWER"
    );
    assert_eq!(
        seen.connections.load(Ordering::SeqCst),
        1,
        "the connection is kept"
    );
    assert_eq!(*seen.acks.lock().unwrap(), vec![1, 1]);
}

#[tokio::test]
async fn a_connection_cut_before_the_answer_is_retryable_and_a_new_one_is_opened() {
    let rule: Arc<Rule> = Arc::new(|_: &[u8], n| {
        if n == 0 {
            ProduceAnswer::Hang
        } else {
            ProduceAnswer::Code(0)
        }
    });
    let (port, seen) = broker(rule).await;
    let e = emitter(port, "").await;
    let batch = [prepared(&login("y-1"), 0), prepared(&login("y-2"), 1)];
    let first = e.emit(&batch).await;
    assert!(
        first
            .iter()
            .all(|o| matches!(o, Outcome::Retryable(f) if f.status == "connect")),
        "{first:?}"
    );
    assert_eq!(
        e.emit(&batch).await,
        vec![Outcome::Delivered, Outcome::Delivered]
    );
    assert_eq!(
        seen.connections.load(Ordering::SeqCst),
        2,
        "the broken connection was replaced"
    );
}
