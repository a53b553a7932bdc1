//! The settings every emitter has (`name`, `type`, `enabled`, `include` / `exclude`,
//! `buffering`, `emitTimeoutInSec`, `filterPolicies`, `redaction`, `format`) and the check of
//! the keys that belong to its type, which its folder under [`crate::emit`] validates.

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::buffering::{Buffering, RawBuffering, validate_buffering};
use super::filter::{RawFilterPolicies, validate_filter};
use super::redaction::{RawRedaction, validate_redaction};
use super::{Format, TransformConfig, err, keeps_its_text};
use crate::ForwarderError;
use crate::emit::{EmitterSettings, EmitterType};
use crate::filter::Selector;

/// One emitter as written: the settings of every emitter, and the keys of its type, which are
/// checked against the type's own raw form once the type is known.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawEmitter {
    /// Unique name (quorum lists, logs, metrics, dead-letter keys).
    pub(crate) name: String,
    /// The emitter type (`http`, `splunk-hec`, ...).
    #[serde(rename = "type")]
    kind: String,
    /// `false` disables the emitter (default `true`).
    enabled: Option<bool>,
    /// Event type names sent (all when absent).
    include: Option<Vec<String>>,
    /// Event type names not sent (exclude wins).
    exclude: Option<Vec<String>>,
    /// How records are cut into requests.
    buffering: Option<RawBuffering>,
    /// Timeout of one request, seconds, 1-900 (default 60).
    emit_timeout_in_sec: Option<u64>,
    /// This emitter's field filter, instead of the top-level one.
    filter_policies: Option<RawFilterPolicies>,
    /// This emitter's redaction, instead of the top-level one.
    redaction: Option<RawRedaction>,
    /// How records leave: `raw` (default: the record's JSON as it is), `ocsf`, `ecs`, or `cef`
    /// (syslog only). An `http` emitter's `format` also takes its body framings `ndjson` and
    /// `json-array` (raw records), as before.
    format: Option<Value>,
    /// Every other key: the settings of the emitter's type.
    #[serde(flatten)]
    settings: Map<String, Value>,
}

/// One validated, typed emitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmitterConfig {
    /// Unique name.
    pub name: String,
    /// The emitter type.
    pub kind: EmitterType,
    /// Disabled emitters are dropped from [`super::ForwarderConfig::emitters`].
    pub enabled: bool,
    /// `include` / `exclude`.
    pub selector: Selector,
    /// `buffering`, with the type's defaults.
    pub buffering: Buffering,
    /// `emitTimeoutInSec`.
    pub emit_timeout: Duration,
    /// `format`: how records leave (`raw` unless set).
    pub format: Format,
    /// `Some` when this emitter's transform is not the top-level one: its own filter policies
    /// or redaction, or a format other than `raw` (then set by [`super::ForwarderConfig`]'s
    /// validation, with the top-level filter and redaction unless it has its own).
    pub transform_override: Option<TransformConfig>,
    /// The settings of its type.
    pub settings: EmitterSettings,
}

/// Default `emitTimeoutInSec`.
pub const DEFAULT_EMIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Validates one emitter; `label` names it in messages (`emitters[3] ("syslog")`).
pub(crate) fn validate_emitter(
    label: &str,
    e: RawEmitter,
) -> Result<EmitterConfig, ForwarderError> {
    let kind = EmitterType::parse(&e.kind).ok_or_else(|| {
        let names: Vec<&str> = EmitterType::ALL.iter().map(|t| t.as_str()).collect();
        err(
            format!("{label}.type"),
            format!("must be one of {} (got {:?})", names.join(", "), e.kind),
        )
    })?;
    let allowed = kind.setting_keys();
    if let Some(key) = e.settings.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(err(
            format!("{label}.{key}"),
            format!("is not a setting of type {}", kind.as_str()),
        ));
    }
    let selector = Selector::new(
        event_types(label, "include", e.include)?,
        event_types(label, "exclude", e.exclude)?,
    );
    let buffering = validate_buffering(label, e.buffering.as_ref(), kind.buffering_limits())?;
    let emit_timeout = match e.emit_timeout_in_sec {
        Some(0) => {
            return Err(err(
                format!("{label}.emitTimeoutInSec"),
                "must be at least 1",
            ));
        }
        Some(s) if s > 900 => {
            return Err(err(
                format!("{label}.emitTimeoutInSec"),
                format!("must be at most 900 (got {s})"),
            ));
        }
        Some(s) => Duration::from_secs(s),
        None => DEFAULT_EMIT_TIMEOUT,
    };
    let transform_override = if e.filter_policies.is_some() || e.redaction.is_some() {
        Some(TransformConfig {
            filter: validate_filter(
                &format!("{label}.filterPolicies"),
                e.filter_policies.as_ref(),
            )?,
            redaction: validate_redaction(&format!("{label}.redaction"), e.redaction.as_ref())?,
            format: Format::Raw,
        })
    } else {
        None
    };
    let mut type_settings = e.settings;
    let format = validate_format(label, kind, e.format, &mut type_settings)?;
    let mut settings = EmitterSettings::validate(kind, label, type_settings)?;
    if let EmitterSettings::Syslog(syslog) = &mut settings {
        syslog.cef = format == Format::Cef;
    }
    Ok(EmitterConfig {
        name: e.name,
        kind,
        enabled: e.enabled.unwrap_or(true),
        selector,
        buffering,
        emit_timeout,
        format,
        transform_override,
        settings,
    })
}

/// The body framings of type `http` that its `format` key has always taken (raw records).
const HTTP_FRAMINGS: &[&str] = &["ndjson", "json-array", "json"];

/// `format`: `raw`, `ocsf`, `ecs`, or `cef` for `syslog`. For type `http` the key also takes
/// the body framings `ndjson` and `json-array`, handed to the type's own settings (the records
/// stay raw).
fn validate_format(
    label: &str,
    kind: EmitterType,
    value: Option<Value>,
    type_settings: &mut Map<String, Value>,
) -> Result<Format, ForwarderError> {
    let key = format!("{label}.format");
    let Some(value) = value else {
        return Ok(Format::Raw);
    };
    let Some(name) = value.as_str() else {
        return Err(err(key, "must be a string"));
    };
    if kind == EmitterType::Http && HTTP_FRAMINGS.contains(&name) {
        type_settings.insert("format".into(), value);
        return Ok(Format::Raw);
    }
    let names: Vec<&str> = Format::ALL
        .iter()
        .filter(|f| **f != Format::Cef || kind == EmitterType::Syslog)
        .map(|f| f.as_str())
        .collect();
    let extra = if kind == EmitterType::Http {
        ", or the body framings ndjson, json-array"
    } else {
        ""
    };
    match Format::parse(name) {
        Some(Format::Cef) if kind != EmitterType::Syslog => Err(err(
            key,
            format!(
                "cef is only for type syslog (CEF lines travel in syslog messages); type {} \
                 takes {}{extra}",
                kind.as_str(),
                names.join(", ")
            ),
        )),
        Some(format) => Ok(format),
        None => Err(err(
            key,
            format!("must be one of {}{extra} (got {name:?})", names.join(", ")),
        )),
    }
}

/// `include` / `exclude`: non-empty event type names.
fn event_types(
    label: &str,
    key: &str,
    list: Option<Vec<String>>,
) -> Result<Vec<String>, ForwarderError> {
    let list = list.unwrap_or_default();
    for (j, t) in list.iter().enumerate() {
        if t.trim().is_empty() {
            return Err(err(
                format!("{label}.{key}[{j}]"),
                "must be a non-empty event type",
            ));
        }
    }
    Ok(list)
}

/// Reads an emitter type's own keys into its raw form `R`. A value of the wrong type is
/// reported at its key without quoting it (it may be a secret).
pub(crate) fn raw_settings<R: DeserializeOwned>(
    label: &str,
    settings: Map<String, Value>,
) -> Result<R, ForwarderError> {
    let whole = match R::deserialize(Value::Object(settings.clone())) {
        Ok(raw) => return Ok(raw),
        Err(e) => e,
    };
    // Find the key at fault: every key of a raw form is optional, so each one alone parses
    // unless its value is wrong.
    for (key, value) in settings {
        let one = Map::from_iter([(key.clone(), value)]);
        if let Err(e) = R::deserialize(Value::Object(one)) {
            return Err(err(format!("{label}.{key}"), safe_text(&e)));
        }
    }
    Err(err(label, safe_text(&whole)))
}

fn safe_text(e: &serde_json::Error) -> String {
    if keeps_its_text(e) {
        e.to_string()
    } else {
        "invalid value or type".to_string()
    }
}

/// The JSON names of the fields of a raw settings struct (`#[derive(Deserialize)]`, no
/// `flatten`): the keys an emitter type accepts, read from the struct itself so that the list
/// cannot drift from it.
pub(crate) fn field_names<R: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = R::deserialize(FieldNames(&mut fields));
    fields
}

/// A deserializer that only records the field list serde's derive hands to it.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> serde::Deserializer<'de> for FieldNames<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(serde::de::Error::custom("field names read"))
    }

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("not a struct"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod format_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::super::ForwarderConfig;
    use super::*;

    fn parse(emitter: &str, top: &str) -> Result<ForwarderConfig, ForwarderError> {
        ForwarderConfig::parse(&format!(r#"{{"emitters": [{emitter}]{top}}}"#))
    }

    fn message(emitter: &str) -> String {
        parse(emitter, "").unwrap_err().to_string()
    }

    #[test]
    fn format_defaults_to_raw_and_takes_ocsf_and_ecs_on_every_type() {
        let c = parse(r#"{"name": "s", "type": "stdout"}"#, "").unwrap();
        assert_eq!(c.emitters[0].format, Format::Raw);
        assert_eq!(c.emitters[0].transform_override, None);
        for (ty, extra) in [
            ("stdout", ""),
            ("http", r#", "url": "https://siem.example/in""#),
            ("firehose", r#", "deliveryStream": "d""#),
            ("syslog", r#", "host": "collector.example""#),
        ] {
            for f in ["ocsf", "ecs"] {
                let c = parse(
                    &format!(r#"{{"name": "e", "type": "{ty}", "format": "{f}"{extra}}}"#),
                    "",
                )
                .unwrap();
                assert_eq!(c.emitters[0].format.as_str(), f, "{ty}");
            }
        }
    }

    #[test]
    fn cef_is_refused_outside_syslog_naming_the_key() {
        let m = message(
            r#"{"name": "web", "type": "http", "url": "https://siem.example/in", "format": "cef"}"#,
        );
        assert!(
            m.contains(r#"emitters[0] ("web").format"#) && m.contains("only for type syslog"),
            "{m}"
        );
        assert!(
            m.contains("raw, ocsf, ecs, or the body framings ndjson, json-array"),
            "{m}"
        );
        let m = message(r#"{"name": "out", "type": "stdout", "format": "cef"}"#);
        assert!(
            m.contains(r#"("out").format"#) && m.contains("takes raw, ocsf, ecs"),
            "{m}"
        );
        let c = parse(
            r#"{"name": "sl", "type": "syslog", "host": "collector.example", "format": "cef"}"#,
            "",
        )
        .unwrap();
        let EmitterSettings::Syslog(s) = &c.emitters[0].settings else {
            panic!("not syslog")
        };
        assert!(s.cef);
        assert_eq!(c.emitters[0].format, Format::Cef);
    }

    #[test]
    fn unknown_and_non_string_formats_are_refused_naming_the_key() {
        let m = message(r#"{"name": "s", "type": "stdout", "format": "leef"}"#);
        assert!(
            m.contains(r#"("s").format"#)
                && m.contains(r#"must be one of raw, ocsf, ecs (got "leef")"#),
            "{m}"
        );
        let m = message(r#"{"name": "s", "type": "syslog", "host": "h", "format": "OCSF"}"#);
        assert!(m.contains("must be one of raw, ocsf, ecs, cef"), "{m}");
        let m = message(r#"{"name": "s", "type": "stdout", "format": 3}"#);
        assert!(m.contains(r#"("s").format: must be a string"#), "{m}");
    }

    #[test]
    fn http_body_framings_keep_working_under_the_format_key() {
        let c = parse(
            r#"{"name": "w", "type": "http", "url": "https://siem.example/in", "format": "json-array"}"#,
            "",
        )
        .unwrap();
        assert_eq!(c.emitters[0].format, Format::Raw);
        let EmitterSettings::Http(h) = &c.emitters[0].settings else {
            panic!("not http")
        };
        assert!(matches!(h.format, crate::emit::http::HttpFormat::JsonArray));
    }

    #[test]
    fn a_format_uses_the_top_level_filter_and_redaction_unless_the_emitter_has_its_own() {
        let top = r#", "redaction": {"fields": ["/event/ipAddress"]}"#;
        let c = parse(
            r#"{"name": "a", "type": "stdout", "format": "ocsf"},
               {"name": "b", "type": "stdout", "format": "ecs", "redaction": {"fields": ["/event/userId"]}},
               {"name": "c", "type": "stdout"}"#,
            top,
        )
        .unwrap();
        let a = c.emitters[0].transform_override.as_ref().unwrap();
        assert_eq!(
            (a.format, &a.redaction),
            (Format::Ocsf, &c.transform.redaction)
        );
        let b = c.emitters[1].transform_override.as_ref().unwrap();
        assert_eq!(b.format, Format::Ecs);
        assert_ne!(b.redaction, c.transform.redaction);
        assert_eq!(c.emitters[2].transform_override, None);
        assert_eq!(c.transform.format, Format::Raw);
    }
}
