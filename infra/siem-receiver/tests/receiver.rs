//! The receiver over real HTTPS (its own CA trusted by a reqwest client), and the rsyslog helper.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};
use siem_receiver::{Endpoint, IngestAuth, Receiver, ReceiverOptions, Rsyslog};

fn tmp(label: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("siem-receiver-test-{label}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn client(receiver: &Receiver) -> reqwest::Client {
    let pem = std::fs::read(receiver.ca_path()).unwrap();
    let certs = reqwest::Certificate::from_pem_bundle(&pem).unwrap();
    reqwest::Client::builder()
        .tls_certs_only(certs)
        .build()
        .unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn splunk_and_bulk_requests_over_https_with_gzip_are_checked_and_recorded() {
    let r = Receiver::start(
        &tmp("https"),
        ReceiverOptions {
            ingest_auth: IngestAuth::Bearer("t".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let c = client(&r);
    let hec = r#"{"time":1.5,"host":"h","source":"s","sourcetype":"_json","event":{"a":1}}"#;
    let resp = c
        .post(format!("{}/services/collector/event", r.url()))
        .header("Authorization", "Splunk test-hec-token")
        .header("Content-Encoding", "gzip")
        .body(gzip(hec.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"text": "Success", "code": 0})
    );
    let bad = c
        .post(format!("{}/services/collector/event", r.url()))
        .header("Authorization", "Splunk nope")
        .body(hec)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 403);

    let bulk = "{\"index\":{\"_index\":\"audit\",\"_id\":\"e1\"}}\n{\"a\":1}\n";
    for _ in 0..2 {
        let resp = c
            .post(format!("{}/_bulk", r.url()))
            .header("Content-Type", "application/x-ndjson")
            .body(bulk)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(r.documents().len(), 1, "same _id overwrites");
    assert_eq!(r.events(Endpoint::SplunkHec).len(), 1);
    assert!(r.received()[0].gzip);
    assert_eq!(r.rejections().len(), 1);

    // The GET endpoint shows the same.
    let seen: Value = c
        .get(format!("{}/_received", r.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["received"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn bulk_over_https_answers_per_item_and_records_every_item_with_its_source() {
    let r = Receiver::start(&tmp("bulk"), ReceiverOptions::default())
        .await
        .unwrap();
    let c = client(&r);
    r.reject_bulk_items_containing("LOGIN_ERROR", 400);
    let bulk = concat!(
        "{\"index\":{\"_id\":\"e1\"}}\n{\"type\":\"LOGIN\",\"n\":1}\n",
        "{\"index\":{\"_id\":\"e2\"}}\n{\"type\":\"LOGIN_ERROR\"}\n",
        "{\"create\":{\"_id\":\"e1\"}}\n{\"type\":\"LOGIN\",\"n\":2}\n",
    );
    let resp = c
        .post(format!("{}/audit/_bulk", r.url()))
        .header("Content-Type", "application/x-ndjson")
        .header("Content-Encoding", "gzip")
        .body(gzip(bulk.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["errors"], true);
    let statuses: Vec<(String, u64)> = answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let (action, result) = item.as_object().unwrap().iter().next().unwrap();
            (action.clone(), result["status"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("index".to_string(), 201),
            ("index".to_string(), 400),
            ("create".to_string(), 409)
        ]
    );
    let docs = r.documents();
    assert_eq!(docs.len(), 1);
    assert_eq!(
        docs[&("audit".to_string(), "e1".to_string())],
        json!({"type": "LOGIN", "n": 1})
    );
    let events = r.events(Endpoint::Elasticsearch);
    assert_eq!(events.len(), 3, "every item is recorded, accepted or not");
    assert_eq!(
        events[0],
        json!({"action": "index", "index": "audit", "id": "e1", "source": {"type": "LOGIN", "n": 1}})
    );
    let received = r.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].gzip && received[0].path == "/audit/_bulk");
    assert_eq!(received[0].events, events);
    let seen: Value = c
        .get(format!("{}/_received", r.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["received"][0]["events"][2]["source"]["n"], 2);

    // A malformed request is refused whole and leaves nothing behind.
    let bad = c
        .post(format!("{}/_bulk", r.url()))
        .header("Content-Type", "application/x-ndjson")
        .body("{\"index\":{\"_index\":\"audit\",\"_id\":\"e9\"}}\n[1]\n")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["type"], "mapper_parsing_exception");
    assert_eq!(r.documents().len(), 1);
    assert_eq!(r.rejections().len(), 1);
}

#[tokio::test]
async fn injected_failures_answer_with_the_status_and_retry_after_then_stop() {
    let r = Receiver::start(&tmp("faults"), ReceiverOptions::default())
        .await
        .unwrap();
    let c = client(&r);
    r.fail_next(1, 429);
    r.set_retry_after(Some(2));
    let post = || {
        c.post(format!("{}/ingest", r.url()))
            .header("Content-Type", "application/x-ndjson")
            .body("{\"a\":1}\n")
            .send()
    };
    let first = post().await.unwrap();
    assert_eq!(first.status(), 429);
    assert_eq!(first.headers()["retry-after"], "2");
    assert_eq!(post().await.unwrap().status(), 200);
    assert_eq!(r.events(Endpoint::Ingest).len(), 1);
}

#[tokio::test]
async fn a_receiver_that_went_down_refuses_connections_and_serves_again_after_coming_back() {
    let r = Receiver::start(&tmp("down"), ReceiverOptions::default())
        .await
        .unwrap();
    let c = client(&r);
    let health = || c.get(format!("{}/health", r.url())).send();
    assert_eq!(health().await.unwrap().status(), 200);
    r.go_down().await;
    assert!(health().await.is_err());
    r.come_back().await.unwrap();
    assert_eq!(health().await.unwrap().status(), 200);
}

#[tokio::test]
async fn rsyslog_parses_rfc5424_over_tcp_and_udp() {
    let dir = tmp("rsyslog");
    let certs = siem_receiver::certs::generate(&dir.join("certs")).unwrap();
    let rs = Rsyslog::start(&dir.join("rs"), &certs)
        .await
        .expect("rsyslog (make apt-deps)");
    let msg = r#"<84>1 2025-02-12T19:27:50.156Z host app - LOGIN_ERROR - {"a":"b c"}"#;
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", rs.tcp_port)).unwrap();
    write!(tcp, "{} {msg}", msg.len()).unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(msg.as_bytes(), ("127.0.0.1", rs.udp_port))
        .unwrap();
    let got = rs.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2, "{}", rs.log());
    for m in &got {
        assert_eq!(
            (
                m.facility.as_str(),
                m.severity.as_str(),
                m.msgid.as_str(),
                m.msg.as_str()
            ),
            ("authpriv", "warning", "LOGIN_ERROR", r#"{"a":"b c"}"#)
        );
    }
    assert_eq!(
        got.iter()
            .map(|m| m.input.as_str())
            .collect::<std::collections::BTreeSet<_>>(),
        ["tcp", "udp"].into()
    );
}
