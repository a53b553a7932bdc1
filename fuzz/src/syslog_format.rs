//! The syslog formatter (`emit::syslog::format::Rfc5424`).
//!
//! Input: four control bytes, then the record's bytes. The control bytes choose the emitter's
//! settings: byte 0 the facility, byte 1 the default severity, bytes 2-3 the severity mapping
//! (which field of [`FIELDS`], which value to map from the record itself). The record is
//! classified and prepared (identity transform) as the forwarder does.
//!
//! Properties of every message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID - MSG` with
//! `PRI = facility * 8 + severity` at most 191, a header of printable ASCII without line
//! breaks, a MSGID of at most 32 printable characters and the prepared record as the MSG.

use std::sync::Arc;

use authtrail_forwarder::config::ForwarderConfig;
use authtrail_forwarder::emit::EmitterSettings;
use authtrail_forwarder::emit::syslog::format::Rfc5424;
use authtrail_forwarder::filter::Pointer;
use authtrail_forwarder::record::{Transform, parse_classify};
use serde_json::json;

/// Facility names, as the configuration spells them.
const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "security", "console", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

/// Severity names, as the configuration spells them.
const SEVERITIES: [&str; 8] = [
    "emergency",
    "alert",
    "critical",
    "error",
    "warning",
    "notice",
    "informational",
    "debug",
];

/// The fields a severity mapping may read.
const FIELDS: [&str; 4] = ["/event/type", "/event/error", "/type", "/event/details/n"];

/// Number of control bytes before the record.
pub const CONTROL: usize = 4;

/// One input: control bytes, then the record.
pub fn run(data: &[u8]) {
    let Some((control, raw)) = data.split_at_checked(CONTROL) else {
        return;
    };
    let Ok((text, class)) = parse_classify(raw, 1_739_388_470_156) else {
        return;
    };
    let Ok(prepared) = Transform::identity().prepare(0, Arc::new(class), text) else {
        return;
    };
    let field = FIELDS[usize::from(control[2]) % FIELDS.len()];
    // Map the record's own value of the field (so that mappings match), or a fixed one.
    let mapped = Pointer::parse(field)
        .ok()
        .and_then(|p| prepared.field_text(&p))
        .filter(|_| control[3] & 1 == 1)
        .unwrap_or_else(|| "LOGIN_ERROR".to_string());
    let severity = SEVERITIES[usize::from(control[3] >> 1) % SEVERITIES.len()];
    let config = json!({"emitters": [{
        "name": "s", "type": "syslog", "protocol": "TCP", "host": "127.0.0.1",
        "facility": FACILITIES[usize::from(control[0]) % FACILITIES.len()],
        "defaultSeverity": SEVERITIES[usize::from(control[1]) % SEVERITIES.len()],
        "severityFieldMappings": [{"field": field, "valueMappings": {mapped: severity}}],
    }]});
    let Ok(config) = ForwarderConfig::parse(&config.to_string()) else {
        return;
    };
    let Some(EmitterSettings::Syslog(syslog)) = config.emitters.first().map(|e| &e.settings) else {
        return;
    };
    let message = Rfc5424::new(syslog).format(&prepared);
    check(&message, &prepared.json);
}

/// The RFC 5424 shape of `message`, whose MSG must be `json`.
fn check(message: &str, json: &str) {
    let Some(header) = message.strip_suffix(json) else {
        panic!("the MSG is not the record: {message}");
    };
    assert!(
        header.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
        "the header has bytes other than printable ASCII: {header:?}"
    );
    let Some(rest) = header.strip_prefix('<') else {
        panic!("no PRI: {header:?}");
    };
    let Some((pri, rest)) = rest.split_once(">1 ") else {
        panic!("no version after PRI: {header:?}");
    };
    assert!(
        pri.parse::<u16>().is_ok_and(|p| p <= 191),
        "PRI out of range: {pri}"
    );
    let fields: Vec<&str> = rest.split(' ').collect();
    // TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD, then the empty field before the MSG.
    assert_eq!(fields.len(), 7, "header fields: {header:?}");
    assert!(
        fields[..6].iter().all(|f| !f.is_empty()),
        "empty header field: {header:?}"
    );
    assert!(
        fields[4].len() <= 32,
        "MSGID longer than 32: {:?}",
        fields[4]
    );
}
