#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::batch::{self, BatchCompression};
use super::protocol::Reader;
use super::*;
use crate::config::ForwarderConfig;
use crate::emit::EmitterSettings;
use crate::emit::test_support::{E1, E2, prepared};

const BASE: &str = r#""name":"k","type":"kafka","bootstrapServers":["b-1.audit.kafka.eu-west-1.amazonaws.com:9096"],"topic":"authtrail.events""#;
const SCRAM: &str = r#""sasl":{"mechanism":"SCRAM-SHA-512","passwordSecretArn":"arn:aws:secretsmanager:eu-west-1:123456789012:secret:AmazonMSK_audit"}"#;

fn parse(emitter: &str) -> Result<KafkaConfig, String> {
    match ForwarderConfig::parse(&format!(r#"{{"emitters":[{emitter}]}}"#)) {
        Ok(c) => match &c.emitters[0].settings {
            EmitterSettings::Kafka(k) => Ok(k.clone()),
            other => panic!("not kafka: {other:?}"),
        },
        Err(e) => Err(e.to_string()),
    }
}

fn kafka(extra: &str) -> Result<KafkaConfig, String> {
    if extra.is_empty() {
        parse(&format!("{{{BASE}}}"))
    } else {
        parse(&format!("{{{BASE},{extra}}}"))
    }
}

#[test]
fn defaults_are_tls_acks_all_no_compression_and_kafkas_own_limits() {
    let c = kafka("").unwrap();
    assert_eq!(c.security_protocol, SecurityProtocol::Ssl);
    assert_eq!(c.topic, "authtrail.events");
    assert_eq!(
        c.bootstrap_servers,
        vec![HostPort {
            host: "b-1.audit.kafka.eu-west-1.amazonaws.com".into(),
            port: 9096
        }]
    );
    assert_eq!(c.tuning, Tuning::default());
    assert_eq!(c.tuning.acks, Acks::All);
    assert_eq!(c.tuning.max_request_size, 1_048_576);
    let with_sasl = kafka(SCRAM).unwrap();
    assert_eq!(with_sasl.security_protocol, SecurityProtocol::SaslSsl);
    let sasl = with_sasl.sasl.unwrap();
    assert_eq!(sasl.mechanism, Mechanism::ScramSha512);
    assert!(matches!(sasl.password, Some(SecretRef::Arn(_))));
    assert_eq!(sasl.username, None, "the MSK secret's username is used");
}

#[test]
fn bootstrap_servers_take_a_list_or_a_comma_separated_string_and_ipv6_in_brackets() {
    let c = parse(r#"{"name":"k","type":"kafka","bootstrapServers":"127.0.0.1:9092, [::1]:9093","topic":"t","securityProtocol":"PLAINTEXT"}"#).unwrap();
    assert_eq!(c.bootstrap_servers.len(), 2);
    assert_eq!(c.bootstrap_servers[1].host, "::1");
    assert_eq!(c.bootstrap_servers[1].to_string(), "[::1]:9093");
    for bad in [
        r#""kafka://b:9092""#,
        r#""b""#,
        r#""b:0""#,
        r#"[]"#,
        r#"[9092]"#,
    ] {
        let e = parse(&format!(
            r#"{{"name":"k","type":"kafka","bootstrapServers":{bad},"topic":"t"}}"#
        ))
        .unwrap_err();
        assert!(
            e.contains("emitters[0] (\"k\").bootstrapServers"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn a_missing_or_illegal_topic_is_refused_naming_the_key() {
    let e = parse(r#"{"name":"k","type":"kafka","bootstrapServers":["b:9092"]}"#).unwrap_err();
    assert!(e.contains("\"k\").topic") && e.contains("required"), "{e}");
    for bad in ["", "a b", "..", "x/y"] {
        let e = kafka(&format!(r#""topic":"{bad}""#));
        // The later "topic" key of the object wins in the JSON parse.
        let e = e.unwrap_err();
        assert!(e.contains("\"k\").topic"), "{bad:?}: {e}");
    }
}

#[test]
fn plain_transport_to_a_remote_broker_is_refused_naming_security_protocol() {
    for protocol in ["PLAINTEXT", "SASL_PLAINTEXT"] {
        let extra = format!(
            r#""securityProtocol":"{protocol}","sasl":{{"mechanism":"PLAIN","username":"u","password":"p"}}"#
        );
        let e = kafka(&extra).unwrap_err();
        assert!(
            e.contains("\"k\").securityProtocol") && e.contains("loopback"),
            "{protocol}: {e}"
        );
        assert!(!e.contains("\"p\""), "no secret in the message: {e}");
    }
    let local = parse(r#"{"name":"k","type":"kafka","bootstrapServers":["localhost:9092","127.0.0.1:9093"],"topic":"t","securityProtocol":"PLAINTEXT"}"#).unwrap();
    assert_eq!(local.security_protocol, SecurityProtocol::Plaintext);
    let e = kafka(r#""securityProtocol":"TLS""#).unwrap_err();
    assert!(
        e.contains("securityProtocol") && e.contains("SASL_SSL"),
        "{e}"
    );
}

#[test]
fn tuning_takes_kafkas_names_and_refuses_an_unknown_one_naming_it() {
    let c = kafka(r#""tuning":{"client.id":"audit-forwarder","acks":"1","compression.type":"gzip","linger.ms":5,"request.timeout.ms":"15000","max.request.size":2097152,"socket.connection.setup.timeout.ms":3000,"metadata.max.age.ms":60000}"#).unwrap();
    let t = c.tuning;
    assert_eq!(t.client_id, "audit-forwarder");
    assert_eq!(t.acks, Acks::Leader);
    assert_eq!(t.compression, Compression::Gzip);
    assert_eq!((t.linger_ms, t.max_request_size), (5, 2_097_152));
    assert_eq!(t.request_timeout, std::time::Duration::from_secs(15));
    assert_eq!(
        t.connection_setup_timeout,
        std::time::Duration::from_secs(3)
    );
    assert_eq!(t.metadata_max_age, std::time::Duration::from_secs(60));
    let e = kafka(r#""tuning":{"batch.size":"16384"}"#).unwrap_err();
    assert!(e.contains("\"k\").tuning.batch.size"), "{e}");
    assert!(
        e.contains("client.id") && e.contains("acks"),
        "lists the supported names: {e}"
    );
}

#[test]
fn acks_0_and_codecs_that_need_c_are_refused_naming_the_key() {
    let e = kafka(r#""tuning":{"acks":"0"}"#).unwrap_err();
    assert!(
        e.contains("tuning.acks") && e.contains("acknowledged"),
        "{e}"
    );
    let e = kafka(r#""tuning":{"acks":0}"#).unwrap_err();
    assert!(e.contains("tuning.acks"), "{e}");
    for codec in ["snappy", "lz4", "zstd"] {
        let e = kafka(&format!(r#""tuning":{{"compression.type":"{codec}"}}"#)).unwrap_err();
        assert!(
            e.contains("tuning.compression.type") && e.contains("gzip"),
            "{codec}: {e}"
        );
    }
    let e = kafka(r#""tuning":{"request.timeout.ms":"soon"}"#).unwrap_err();
    assert!(e.contains("tuning.request.timeout.ms"), "{e}");
}

#[test]
fn sasl_needs_its_protocol_a_mechanism_and_a_password_and_msk_iam_takes_none() {
    let e = kafka(r#""securityProtocol":"SASL_SSL""#).unwrap_err();
    assert!(e.contains("\"k\").sasl") && e.contains("required"), "{e}");
    let e = kafka(&format!(r#""securityProtocol":"SSL",{SCRAM}"#)).unwrap_err();
    assert!(e.contains("securityProtocol"), "{e}");
    let e = kafka(r#""sasl":{"mechanism":"GSSAPI","username":"u","password":"p"}"#).unwrap_err();
    assert!(e.contains("sasl.mechanism") && e.contains("GSSAPI"), "{e}");
    let e = kafka(r#""sasl":{"mechanism":"PLAIN","username":"u"}"#).unwrap_err();
    assert!(e.contains("sasl.passwordSecretArn"), "{e}");
    let e = kafka(r#""sasl":{"mechanism":"PLAIN","password":"p"}"#).unwrap_err();
    assert!(e.contains("sasl.username"), "{e}");
    let iam = kafka(r#""sasl":{"mechanism":"AWS_MSK_IAM"}"#).unwrap();
    assert_eq!(iam.security_protocol, SecurityProtocol::SaslSsl);
    assert_eq!(iam.sasl.unwrap().mechanism.wire_name(), "OAUTHBEARER");
    let e =
        kafka(r#""sasl":{"mechanism":"AWS_MSK_IAM","username":"u","password":"p"}"#).unwrap_err();
    assert!(e.contains("sasl.mechanism") && e.contains("role"), "{e}");
}

#[test]
fn plain_secrets_are_refused_unless_local_runs_allow_them_and_never_shown() {
    crate::config::secret::ALLOW_PLAINTEXT_IN_TESTS.with(|c| c.set(false));
    let e =
        kafka(r#""sasl":{"mechanism":"PLAIN","username":"u","password":"hunter2"}"#).unwrap_err();
    let e2 = kafka(r#""ssl":{"clientCertificate":"-----BEGIN CERTIFICATE-----"}"#).unwrap_err();
    crate::config::secret::ALLOW_PLAINTEXT_IN_TESTS.with(|c| c.set(true));
    assert!(
        e.contains("sasl.password") && e.contains("passwordSecretArn"),
        "{e}"
    );
    assert!(!e.contains("hunter2"));
    assert!(e2.contains("ssl.clientCertificate"), "{e2}");
    let c = kafka(r#""sasl":{"mechanism":"PLAIN","username":"u","password":"hunter2"}"#).unwrap();
    assert!(
        !format!("{c:?}").contains("hunter2"),
        "Debug hides the password"
    );
}

#[test]
fn ssl_takes_a_ca_bundle_file_or_pem_text_and_only_with_tls() {
    let c = kafka(r#""ssl":{"caBundle":"certs/kafka-ca.pem","caBundleOnly":true}"#).unwrap();
    assert_eq!(
        c.ssl.ca_bundle,
        Some(CaBundle::File("certs/kafka-ca.pem".into()))
    );
    assert!(c.ssl.ca_bundle_only);
    let c = kafka(
        r#""ssl":{"caBundle":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}"#,
    )
    .unwrap();
    assert!(matches!(c.ssl.ca_bundle, Some(CaBundle::Pem(_))));
    let e = kafka(r#""ssl":{"caBundleOnly":true}"#).unwrap_err();
    assert!(e.contains("ssl.caBundleOnly"), "{e}");
    let e = parse(r#"{"name":"k","type":"kafka","bootstrapServers":["127.0.0.1:9092"],"topic":"t","securityProtocol":"PLAINTEXT","ssl":{"caBundle":"x.pem"}}"#).unwrap_err();
    assert!(e.contains("\"k\").ssl") && e.contains("PLAINTEXT"), "{e}");
    let e = kafka(r#""ssl":{"enabledProtocols":["TLSv1.2"]}"#).unwrap_err();
    assert!(e.contains("enabledProtocols"), "{e}");
}

/// Reads back one record batch as Kafka's format defines it (an independent walk of the bytes).
/// A record read back: key, value, headers, timestamp.
type ReadRecord = (Vec<u8>, Vec<u8>, Vec<(String, Vec<u8>)>, i64);

fn read_batch(b: &[u8]) -> (i16, Vec<ReadRecord>) {
    let mut r = Reader::new(b);
    assert_eq!(r.i64().unwrap(), 0, "base offset");
    let len = r.i32().unwrap() as usize;
    assert_eq!(len, b.len() - 12, "batch length");
    r.i32().unwrap();
    let mut rest = &b[16..];
    assert_eq!(rest[0], 2, "magic");
    let crc = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]);
    assert_eq!(
        crc,
        crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, &b[21..]) as u32
    );
    rest = &rest[5..];
    let attributes = i16::from_be_bytes([rest[0], rest[1]]);
    let mut r = Reader::new(&rest[2..]);
    let last_delta = r.i32().unwrap();
    let base_ts = r.i64().unwrap();
    r.i64().unwrap();
    assert_eq!(r.i64().unwrap(), -1, "no producer id");
    r.i16().unwrap();
    r.i32().unwrap();
    let count = r.i32().unwrap();
    assert_eq!(last_delta, count - 1);
    let body = &b[batch::BATCH_HEADER..];
    let body = if attributes & 7 == 1 {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        body.to_vec()
    };
    let mut at = 0;
    let varint = |b: &[u8], at: &mut usize| -> i64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let byte = b[*at];
            *at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte < 0x80 {
                break;
            }
        }
        ((v >> 1) as i64) ^ -((v & 1) as i64)
    };
    let mut records = Vec::new();
    for _ in 0..count {
        let len = varint(&body, &mut at) as usize;
        let end = at + len;
        at += 1; // attributes
        let ts = base_ts + varint(&body, &mut at);
        varint(&body, &mut at);
        let klen = varint(&body, &mut at) as usize;
        let key = body[at..at + klen].to_vec();
        at += klen;
        let vlen = varint(&body, &mut at) as usize;
        let value = body[at..at + vlen].to_vec();
        at += vlen;
        let mut headers = Vec::new();
        for _ in 0..varint(&body, &mut at) {
            let hk = varint(&body, &mut at) as usize;
            let name = String::from_utf8(body[at..at + hk].to_vec()).unwrap();
            at += hk;
            let hv = varint(&body, &mut at) as usize;
            headers.push((name, body[at..at + hv].to_vec()));
            at += hv;
        }
        assert_eq!(at, end, "record length");
        records.push((key, value, headers, ts));
    }
    (attributes, records)
}

#[test]
fn a_message_is_keyed_by_event_id_with_the_json_as_value_the_type_header_and_the_event_time() {
    let (a, b) = (prepared(E1, 0), prepared(E2, 1));
    for compression in [BatchCompression::None, BatchCompression::Gzip] {
        let headers_a = [(EVENT_TYPE_HEADER, a.class.event_type().as_bytes())];
        let headers_b = [(EVENT_TYPE_HEADER, b.class.event_type().as_bytes())];
        let batch = batch::record_batch(
            &[message(&a, &headers_a), message(&b, &headers_b)],
            compression,
        )
        .unwrap();
        let (attributes, records) = read_batch(&batch);
        assert_eq!(
            attributes & 7,
            if compression == BatchCompression::Gzip {
                1
            } else {
                0
            }
        );
        assert_eq!(records.len(), 2);
        let (key, value, headers, ts) = &records[0];
        assert_eq!(key, b"id-1");
        assert_eq!(value, E1.as_bytes());
        assert_eq!(
            headers,
            &vec![("authtrail-event-type".to_string(), b"LOGIN".to_vec())]
        );
        assert_eq!(*ts, 1_739_388_470_156);
        let (key, value, headers, _) = &records[1];
        assert_eq!(
            key.len(),
            64,
            "a record without an id is keyed by its SHA-256"
        );
        assert_eq!(value, E2.as_bytes());
        assert_eq!(headers[0].1, b"ldap:bind");
    }
}

#[test]
fn partitions_are_picked_by_murmur2_of_the_key_as_the_java_client_does() {
    // Kafka's own test vectors (UtilsTest.testMurmur2), and kafka-python's partitioner for
    // three partitions.
    let cases: [(&[u8], i32); 6] = [
        (b"21", -973_932_308),
        (b"foobar", -790_332_482),
        (b"a-little-bit-long-string", -985_981_536),
        (b"a-little-bit-longer-string", -1_486_304_829),
        (
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
        ),
        (b"abc", 479_470_107),
    ];
    for (key, hash) in cases {
        assert_eq!(
            batch::murmur2(key),
            hash,
            "{}",
            String::from_utf8_lossy(key)
        );
    }
    assert_eq!(batch::partition_for(b"ev-00001", 3), 0);
    assert_eq!(
        batch::partition_for(b"c3a5e9b1-8f2d-4b7e-9a61-0d2f4e8b7c15", 3),
        2
    );
    assert_eq!(batch::partition_for(b"a-little-bit-long-string", 3), 2);
    assert_eq!(batch::partition_for(b"anything", 1), 0);
}

#[test]
fn network_failures_are_retried_and_tls_auth_and_refusals_are_spooled() {
    let retry = |f: Fault| matches!(f.outcome(), Outcome::Retryable(_));
    let spool = |f: Fault| matches!(f.outcome(), Outcome::Unavailable(_));
    assert!(retry(Fault::Network("connection refused".into())));
    assert!(retry(Fault::Timeout("request")));
    assert!(retry(Fault::Wire("answer cut short")));
    assert!(retry(Fault::Kafka(19, None)));
    assert!(spool(Fault::Tls("invalid peer certificate".into())));
    assert!(spool(Fault::Auth(
        "the broker refused the SASL login".into()
    )));
    assert!(spool(Fault::Refused("plain TCP to a remote broker".into())));
    assert!(spool(Fault::Kafka(29, None)));
}

#[tokio::test]
async fn a_record_over_max_request_size_is_dead_lettered_without_contacting_a_broker() {
    // Nothing listens on this loopback port: a request would fail as retryable, not permanent.
    let c = parse(r#"{"name":"k","type":"kafka","bootstrapServers":["127.0.0.1:1"],"topic":"t","securityProtocol":"PLAINTEXT","tuning":{"max.request.size":1024}}"#).unwrap();
    let e = KafkaEmitter::start("k", &c, None).await.unwrap();
    let big = format!(
        r#"{{"timestamp":"2025-02-12T19:27:50.156Z","eventType":"user-event","event":{{"id":"big","time":1,"type":"LOGIN","details":{{"pad":"{}"}}}}}}"#,
        "x".repeat(2000)
    );
    let batch = [prepared(&big, 0), prepared(E1, 1)];
    let out = e.emit(&batch).await;
    assert!(
        matches!(&out[0], Outcome::Permanent(f) if f.status == "too-large"),
        "{:?}",
        out[0]
    );
    assert!(
        matches!(&out[1], Outcome::Retryable(f) if f.status == "connect"),
        "{:?}",
        out[1]
    );
    assert!(e.size_hint(&batch[1]) > E1.len());
}
