//! The configuration's parsing and validation, through [`ForwarderConfig::parse`].
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use super::*;
use crate::emit::syslog::SyslogProtocol;
use crate::emit::transport::HttpAuth;

const EXAMPLE: &str = r#"{
  "emitters": [
    {"name": "splunk", "type": "splunk-hec", "url": "https://splunk.example:8088/services/collector/event",
     "tokenSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:hec", "include": ["LOGIN_ERROR", "admin-event"],
     "buffering": {"maxBatchedEvents": 500, "maxSize": 1048576}, "emitTimeoutInSec": 30},
    {"name": "webhook", "type": "http", "url": "https://siem.example/ingest", "headers": {"X-Source": "authtrail"}, "exclude": ["REFRESH_TOKEN"]},
    {"name": "elastic", "type": "elasticsearch", "url": "https://es.example:9200", "index": "audit"},
    {"name": "syslog", "type": "syslog", "protocol": "TLS", "host": "collector.example", "port": 6514,
     "connectTimeout": 30000, "facility": "authpriv",
     "severityFieldMappings": [{"field": "/event/type", "valueMappings": {"LOGIN_ERROR": "warning", "LOGIN": "informational"}}]},
    {"name": "firehose", "type": "firehose", "deliveryStream": "siem-backup"},
    {"name": "stdout", "type": "stdout", "enabled": false}
  ],
  "emitToAllOf": ["syslog"],
  "emitAtLeastOneOf": ["splunk", "webhook", "elastic"],
  "filterPolicies": {"field": {"excludeIf": ["/event/details/code_id"], "includeIf": []}},
  "redaction": {"mode": "hash", "fields": ["/event/ipAddress", "/event/details/username"], "hmacKeySecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:hmac"}
}"#;

fn message(json: &str) -> String {
    ForwarderConfig::parse(json).unwrap_err().to_string()
}

#[test]
fn the_issue_example_parses_into_typed_settings() {
    let c = ForwarderConfig::parse(EXAMPLE).unwrap();
    // The disabled stdout emitter is dropped.
    assert_eq!(c.emitters.len(), 5);
    assert_eq!(c.quorum.all_of, vec!["syslog"]);
    assert_eq!(
        c.quorum.at_least_one_of,
        vec!["splunk", "webhook", "elastic"]
    );
    let splunk = &c.emitters[0];
    assert_eq!(splunk.emit_timeout, Duration::from_secs(30));
    assert_eq!(splunk.buffering.max_batched_events, 500);
    assert_eq!(
        splunk.buffering.max_concurrent_requests,
        DEFAULT_MAX_CONCURRENT_REQUESTS
    );
    let EmitterSettings::SplunkHec(h) = &splunk.settings else {
        panic!()
    };
    assert!(matches!(h.target.auth, HttpAuth::Splunk(SecretRef::Arn(_))));
    assert!(h.target.gzip);
    let EmitterSettings::Elasticsearch(es) = &c.emitters[2].settings else {
        panic!()
    };
    assert_eq!(es.target.url.as_str(), "https://es.example:9200/_bulk");
    let EmitterSettings::Syslog(s) = &c.emitters[3].settings else {
        panic!()
    };
    assert_eq!(
        (s.facility, s.port, s.protocol),
        (10, 6514, SyslogProtocol::Tls)
    );
    assert_eq!(s.severity_mappings[0].values["LOGIN_ERROR"], 4);
    assert_eq!(c.emitters[1].emit_timeout, DEFAULT_EMIT_TIMEOUT);
    assert!(matches!(
        c.transform.redaction,
        Some(RedactionConfig::Hash { .. })
    ));
}

#[test]
fn without_quorum_lists_every_enabled_emitter_is_required() {
    let c = ForwarderConfig::parse(
        r#"{"emitters":[{"name":"a","type":"stdout"},{"name":"b","type":"stdout"},{"name":"c","type":"stdout","enabled":false}]}"#,
    )
    .unwrap();
    assert_eq!(c.quorum.all_of, vec!["a", "b"]);
    assert!(c.quorum.at_least_one_of.is_empty());
}

#[test]
fn unknown_keys_are_rejected_by_name() {
    let m = message(r#"{"emitters":[{"name":"a","type":"stdout","colour":"red"}]}"#);
    assert!(m.contains("colour"), "{m}");
    let m = message(r#"{"emitters":[{"name":"a","type":"stdout"}],"emitToAll":["a"]}"#);
    assert!(m.contains("emitToAll"), "{m}");
}

#[test]
fn keys_of_another_emitter_type_are_rejected_with_the_emitter_named() {
    let m = message(
        r#"{"emitters":[{"name":"web","type":"http","url":"https://x.example/","facility":"auth"}]}"#,
    );
    assert!(
        m.contains("emitters[0] (\"web\").facility") && m.contains("type http"),
        "{m}"
    );
}

#[test]
fn bad_values_name_their_key_path() {
    let cases = [
        (
            r#"{"emitters":[{"name":"s","type":"syslog","host":"h","facility":"bogus"}]}"#,
            "emitters[0] (\"s\").facility",
        ),
        (
            r#"{"emitters":[{"name":"s","type":"syslog","host":"h","port":70000}]}"#,
            ".port",
        ),
        (
            r#"{"emitters":[{"name":"s","type":"syslog","host":"h","protocol":"SCTP"}]}"#,
            ".protocol",
        ),
        (
            r#"{"emitters":[{"name":"s","type":"syslog","host":"h","severityFieldMappings":[{"field":"/t","valueMappings":{"X":"loud"}}]}]}"#,
            "severityFieldMappings[0].valueMappings.X",
        ),
        (
            r#"{"emitters":[{"name":"w","type":"http","url":"http://siem.example/ingest"}]}"#,
            ".url",
        ),
        (r#"{"emitters":[{"name":"w","type":"bogus"}]}"#, ".type"),
        (
            r#"{"emitters":[{"name":"a","type":"stdout"}],"emitToAllOf":["b"]}"#,
            "emitToAllOf[0]",
        ),
        (
            r#"{"emitters":[{"name":"a","type":"stdout"},{"name":"b","type":"stdout","enabled":false}],"emitAtLeastOneOf":["b"]}"#,
            "emitAtLeastOneOf[0]",
        ),
        (
            r#"{"emitters":[{"name":"a","type":"stdout"},{"name":"a","type":"stdout"}]}"#,
            "emitters[1] (\"a\").name",
        ),
        (
            r#"{"emitters":[{"name":"a","type":"stdout"}],"redaction":{"mode":"hash","fields":["/x"]}}"#,
            "redaction.hmacKeySecretArn",
        ),
        (
            r#"{"emitters":[{"name":"a","type":"stdout"}],"redaction":{"fields":["x"]}}"#,
            "redaction.fields[0]",
        ),
        (
            r#"{"emitters":[{"name":"a","type":"stdout"}],"filterPolicies":{"field":{"excludeIf":["x"]}}}"#,
            "filterPolicies.field.excludeIf[0]",
        ),
        (
            r#"{"emitters":[{"name":"f","type":"firehose","deliveryStream":"d","buffering":{"maxBatchedEvents":501}}]}"#,
            "buffering.maxBatchedEvents",
        ),
        (
            r#"{"emitters":[{"name":"h","type":"splunk-hec","url":"https://s.example"}]}"#,
            "tokenSecretArn",
        ),
        (
            r#"{"emitters":[{"name":"a","type":"stdout","buffering":{"maxConcurrentRequests":0}}]}"#,
            "buffering.maxConcurrentRequests",
        ),
    ];
    for (json, path) in cases {
        let m = message(json);
        assert!(m.contains(path), "expected {path:?} in {m:?}");
    }
}

#[test]
fn http_is_allowed_for_loopback_receivers_only() {
    assert!(
        ForwarderConfig::parse(
            r#"{"emitters":[{"name":"w","type":"http","url":"http://127.0.0.1:8080/ingest"}]}"#
        )
        .is_ok()
    );
    assert!(
        ForwarderConfig::parse(
            r#"{"emitters":[{"name":"w","type":"http","url":"http://localhost:8080/ingest"}]}"#
        )
        .is_ok()
    );
    assert!(
        ForwarderConfig::parse(
            r#"{"emitters":[{"name":"w","type":"http","url":"http://192.0.2.1/ingest"}]}"#
        )
        .is_err()
    );
}

#[test]
fn secrets_never_appear_in_errors_or_debug_output() {
    let json = r#"{"emitters":[{"name":"w","type":"http","url":"https://x.example/","token":"hunter2-token","headers":{"X":"y"}}],
        "redaction":{"mode":"hash","fields":["/a"],"hmacKey":"hunter2-key"}}"#;
    let c = ForwarderConfig::parse(json).unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    // A bad type next to a secret: the message gives the position, not the value.
    let m = message(
        r#"{"emitters":[{"name":"w","type":"http","url":"https://x.example/","token":["hunter2"]}]}"#,
    );
    assert!(!m.contains("hunter2"), "{m}");
    // Both forms of one secret.
    let m = message(
        r#"{"emitters":[{"name":"w","type":"http","url":"https://x.example/","token":"hunter2","tokenSecretArn":"arn:x"}]}"#,
    );
    assert!(m.contains("token") && !m.contains("hunter2"), "{m}");
}

#[test]
fn authorization_headers_are_refused_in_favour_of_secret_settings() {
    let m = message(
        r#"{"emitters":[{"name":"w","type":"http","url":"https://x.example/","headers":{"Authorization":"Bearer x"}}]}"#,
    );
    assert!(m.contains("headers.Authorization"), "{m}");
}

#[test]
fn a_value_of_the_wrong_type_is_reported_at_its_key_without_quoting_it() {
    let m = message(r#"{"emitters":[{"name":"s","type":"syslog","host":"h","port":"hunter2"}]}"#);
    assert!(m.contains("emitters[0] (\"s\").port"), "{m}");
    assert!(!m.contains("hunter2"), "{m}");
    let m = message(
        r#"{"emitters":[{"name":"s","type":"syslog","host":"h","severityFieldMappings":[{"field":"/t","valueMapping":{}}]}]}"#,
    );
    assert!(
        m.contains("severityFieldMappings") && m.contains("valueMapping"),
        "{m}"
    );
}

#[test]
fn an_empty_emit_to_all_of_is_refused_not_read_as_no_quorum() {
    let m = message(r#"{"emitters":[{"name":"a","type":"stdout"}],"emitToAllOf":[]}"#);
    assert!(
        m.contains("emitToAllOf") && m.contains("at least one"),
        "{m}"
    );
}

#[test]
fn urls_with_credentials_are_refused_and_never_echoed() {
    for url in [
        "https://alice:hunter2@siem.example/ingest",
        "http://alice:hunter2@192.0.2.1/ingest",
        "ftp://alice:hunter2@siem.example/",
        "https://alice:hunter2@[bad/",
    ] {
        let m = message(&format!(
            r#"{{"emitters":[{{"name":"w","type":"http","url":"{url}"}}]}}"#
        ));
        assert!(m.contains(".url"), "{m}");
        assert!(!m.contains("hunter2") && !m.contains("alice"), "{m}");
    }
}

#[test]
fn header_values_may_come_from_secrets_and_are_hidden_in_debug_output() {
    let c = ForwarderConfig::parse(
        r#"{"emitters":[{"name":"w","type":"http","url":"https://x.example/",
            "headers":{"X-Source":"hunter2-plain"},
            "headersFromSecrets":{"X-Api-Key":"arn:aws:secretsmanager:eu-west-1:1:secret:k"}}]}"#,
    )
    .unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    let EmitterSettings::Http(h) = &c.emitters[0].settings else {
        panic!()
    };
    assert!(matches!(&h.target.headers[1], (n, SecretRef::Arn(_)) if n == "X-Api-Key"));
    for (extra, path) in [
        (
            r#""headersFromSecrets":{"X-Api-Key":"not-an-arn"}"#,
            "headersFromSecrets.X-Api-Key",
        ),
        (
            r#""headers":{"x-api-key":"a"},"headersFromSecrets":{"X-Api-Key":"arn:x"}"#,
            "headersFromSecrets.X-Api-Key",
        ),
        (
            r#""headersFromSecrets":{"Authorization":"arn:x"}"#,
            "headersFromSecrets.Authorization",
        ),
    ] {
        let m = message(&format!(
            r#"{{"emitters":[{{"name":"w","type":"http","url":"https://x.example/",{extra}}}]}}"#
        ));
        assert!(m.contains(path), "expected {path:?} in {m:?}");
    }
}

#[test]
fn ca_bundle_only_needs_a_ca_bundle() {
    for kind in [
        r#""type":"http","url":"https://x.example/""#,
        r#""type":"syslog","host":"h","protocol":"TLS""#,
    ] {
        let m = message(&format!(
            r#"{{"emitters":[{{"name":"w",{kind},"caBundleOnly":true}}]}}"#
        ));
        assert!(m.contains("caBundleOnly") && m.contains("caBundle"), "{m}");
    }
}

#[test]
fn syslog_defaults_to_tls_on_6514_with_rsyslog_s_message_size() {
    let c = ForwarderConfig::parse(r#"{"emitters":[{"name":"s","type":"syslog","host":"h"}]}"#)
        .unwrap();
    let EmitterSettings::Syslog(s) = &c.emitters[0].settings else {
        panic!()
    };
    assert_eq!(s.protocol, crate::emit::syslog::SyslogProtocol::Tls);
    assert_eq!((s.port, s.max_message_size), (6514, 8192));
    // TCP and TLS allow larger caps than one UDP datagram.
    let m = message(
        r#"{"emitters":[{"name":"s","type":"syslog","host":"h","protocol":"UDP","maxMessageSize":70000}]}"#,
    );
    assert!(m.contains("maxMessageSize"), "{m}");
    assert!(
        ForwarderConfig::parse(
            r#"{"emitters":[{"name":"s","type":"syslog","host":"h","protocol":"TCP","maxMessageSize":70000}]}"#
        )
        .is_ok()
    );
}

#[test]
fn plain_secrets_in_the_configuration_are_refused_without_the_local_run_switch() {
    let json =
        r#"{"emitters":[{"name":"w","type":"http","url":"https://x.example/","token":"hunter2"}]}"#;
    crate::config::secret::ALLOW_PLAINTEXT_IN_TESTS.with(|c| c.set(false));
    let refused = message(json);
    crate::config::secret::ALLOW_PLAINTEXT_IN_TESTS.with(|c| c.set(true));
    assert!(refused.contains("emitters[0] (\"w\").token"), "{refused}");
    assert!(!refused.contains("hunter2"), "{refused}");
    assert!(ForwarderConfig::parse(json).is_ok());
}
