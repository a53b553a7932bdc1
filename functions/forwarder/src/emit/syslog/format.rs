//! The syslog encoder: one RFC 5424 message per record,
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID - MSG` with `PRI = facility * 8 + severity`,
//! `TIMESTAMP` the event time (UTC, milliseconds), `MSGID` the primary event type (printable
//! ASCII, at most 32 characters) and `MSG` the (filtered, redacted) JSON record, or with
//! `format: cef` its CEF line (the one the transform made, else made from the JSON record:
//! spooled and replayed records keep their JSON).

use super::config::{SeverityMapping, SyslogConfig};
use crate::record::Prepared;

/// Writes RFC 5424 messages (without framing) for one emitter.
#[derive(Debug, Clone)]
pub struct Rfc5424 {
    facility: u8,
    default_severity: u8,
    mappings: Vec<SeverityMapping>,
    hostname: String,
    app_name: String,
    cef: bool,
}

impl Rfc5424 {
    /// The encoder of `config`.
    pub fn new(config: &SyslogConfig) -> Self {
        Self {
            facility: config.facility,
            default_severity: config.default_severity,
            mappings: config.severity_mappings.clone(),
            hostname: config.hostname.clone(),
            app_name: config.app_name.clone(),
            cef: config.cef,
        }
    }

    /// The severity of a record: the first mapping whose field value (read from the record's
    /// text) is listed, else the default.
    pub fn severity_of(&self, p: &Prepared) -> u8 {
        for m in &self.mappings {
            let Some(key) = p.field_text(&m.pointer) else {
                continue;
            };
            if let Some(sev) = m.values.get(&key) {
                return *sev;
            }
        }
        self.default_severity
    }

    /// One RFC 5424 message (without framing).
    pub fn format(&self, p: &Prepared) -> String {
        use std::fmt::Write;
        let pri = u16::from(self.facility) * 8 + u16::from(self.severity_of(p));
        let mut out = String::with_capacity(p.json.len() + 96);
        let _ = write!(out, "<{pri}>1 ");
        write_timestamp(&mut out, p.class.time_ms);
        out.push(' ');
        out.push_str(&self.hostname);
        out.push(' ');
        out.push_str(&self.app_name);
        out.push_str(" - ");
        let before = out.len();
        out.extend(
            p.class
                .event_type()
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(32),
        );
        if out.len() == before {
            out.push('-');
        }
        out.push_str(" - ");
        if self.cef {
            match &p.cef {
                Some(line) => out.push_str(line),
                None => out.push_str(&p.cef_line()),
            }
        } else {
            out.push_str(&p.json);
        }
        out
    }
}

/// `authtrail_core::envelope::format_timestamp` (RFC 3339, UTC, milliseconds, `Z`) written
/// into `out` without the intermediate allocations.
fn write_timestamp(out: &mut String, epoch_ms: i64) {
    use chrono::{Datelike, Timelike};
    let Some(t) = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(epoch_ms)
        .filter(|t| (0..=9999).contains(&t.year()))
    else {
        out.push_str(&authtrail_core::envelope::format_timestamp(epoch_ms));
        return;
    };
    use std::fmt::Write;
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        epoch_ms.rem_euclid(1000)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_as_the_core_formats_them() {
        for ms in [
            0,
            1739388470156,
            -1,
            -86_400_001,
            253402300799999,
            253402300800000,
            1,
            999,
        ] {
            let mut s = String::new();
            write_timestamp(&mut s, ms);
            assert_eq!(s, authtrail_core::envelope::format_timestamp(ms), "{ms}");
        }
    }

    #[test]
    fn cef_emitters_send_the_cef_line_and_make_it_for_spooled_records() {
        use crate::config::{EmitterSettings, ForwarderConfig};
        use crate::record::{Transform, parse_classify};
        use std::sync::Arc;
        let c = ForwarderConfig::parse(
            r#"{"emitters": [{"name": "s", "type": "syslog", "host": "collector.example", "format": "cef"}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let EmitterSettings::Syslog(config) = &c.emitters[0].settings else {
            panic!("not syslog")
        };
        let encoder = Rfc5424::new(config);
        let raw = r#"{"eventType":"user-event","event":{"id":"e","time":1739388470156,"type":"LOGOUT","userId":"u"}}"#;
        let Ok((text, class)) = parse_classify(raw.as_bytes(), 0) else {
            panic!("not a record")
        };
        let transform = Transform::identity().with_format(authtrail_normalize::Format::Cef);
        let Ok(mut p) = transform.prepare(0, Arc::new(class), text) else {
            panic!("not prepared")
        };
        let line = p.cef.clone().unwrap_or_default();
        let message = encoder.format(&p);
        assert!(
            message.starts_with(
                "<86>1 2025-02-12T19:27:50.156Z authtrail authtrail - LOGOUT - CEF:0|"
            ),
            "{message}"
        );
        assert!(
            message.ends_with(&line) && !message.contains('{'),
            "{message}"
        );
        p.cef = None;
        assert_eq!(encoder.format(&p), message);
    }
}
