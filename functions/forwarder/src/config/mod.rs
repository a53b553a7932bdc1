//! The forwarder's JSON configuration (`FORWARDER_CONFIG` or the file named by
//! `FORWARDER_CONFIG_FILE`): parsed with serde (unknown keys rejected), then validated into a
//! typed [`ForwarderConfig`] whose invalid states cannot be represented. Every error names the
//! offending key path, for example `emitters[2] ("syslog").facility`.
//!
//! This module holds the top level (the emitters list, the quorum `emitToAllOf` /
//! `emitAtLeastOneOf`, `filterPolicies`, `redaction`, `retry`, `spool`); the settings every
//! emitter shares are in [`emitter`] and the shared parts in files of their own ([`buffering`],
//! [`retry`], [`filter`], [`redaction`], [`secret`], [`spool`], [`tls`]). Each emitter type's own
//! settings live in its folder under [`crate::emit`].
//!
//! Secrets (`token`, `password`, `hmacKey` and their `*SecretArn` forms) are kept as
//! [`SecretRef`]s here and resolved at cold start by [`crate::build`]; their values never appear
//! in errors or Debug output.

use std::collections::HashSet;

use serde::Deserialize;

use crate::ForwarderError;
use crate::filter::FieldFilter;
pub use authtrail_normalize::Format;

pub mod buffering;
pub mod emitter;
pub mod filter;
pub mod redaction;
pub mod retry;
pub mod secret;
pub mod spool;
pub mod tls;

pub use crate::emit::{EmitterSettings, EmitterType};
pub use buffering::{
    Buffering, BufferingLimits, DEFAULT_MAX_BATCHED_EVENTS, DEFAULT_MAX_CONCURRENT_REQUESTS,
    DEFAULT_MAX_SIZE,
};
pub use emitter::{DEFAULT_EMIT_TIMEOUT, EmitterConfig};
pub use redaction::RedactionConfig;
pub use retry::RetryPolicy;
pub use secret::SecretRef;
pub use spool::SpoolConfig;

/// The configuration as written (serde form).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    /// The emitters, in order.
    emitters: Vec<emitter::RawEmitter>,
    /// Names of emitters that must all take a record.
    #[serde(default)]
    emit_to_all_of: Option<Vec<String>>,
    /// Names of emitters of which at least one must take a record.
    #[serde(default)]
    emit_at_least_one_of: Option<Vec<String>>,
    /// The field filter of every emitter without its own.
    #[serde(default)]
    filter_policies: Option<filter::RawFilterPolicies>,
    /// The redaction of every emitter without its own.
    #[serde(default)]
    redaction: Option<redaction::RawRedaction>,
    /// The retry policy of every emitter.
    #[serde(default)]
    retry: Option<retry::RawRetry>,
    /// The spool of records an emitter could not take.
    #[serde(default)]
    spool: Option<spool::RawSpool>,
}

/// The transform applied to records before they leave the function: field filter, then
/// redaction, then the emitter's `format`. The top-level one (format `raw`) applies to every
/// emitter without its own override; records are transformed once per distinct transform.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransformConfig {
    /// `filterPolicies.field`.
    pub filter: FieldFilter,
    /// `redaction`.
    pub redaction: Option<RedactionConfig>,
    /// The emitter's `format` (`raw` at the top level).
    pub format: Format,
}

/// Which emitters must take a record for it to be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum {
    /// Names of emitters that must all take the record.
    pub all_of: Vec<String>,
    /// Names of emitters of which at least one must take it (empty: no such condition).
    pub at_least_one_of: Vec<String>,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwarderConfig {
    /// Enabled emitters only, in configuration order.
    pub emitters: Vec<EmitterConfig>,
    /// `emitToAllOf` / `emitAtLeastOneOf`.
    pub quorum: Quorum,
    /// The top-level `filterPolicies` and `redaction`.
    pub transform: TransformConfig,
    /// `retry`.
    pub retry: RetryPolicy,
    /// `spool`.
    pub spool: SpoolConfig,
}

/// A configuration error at key path `path`.
pub(crate) fn err(path: impl Into<String>, message: impl Into<String>) -> ForwarderError {
    ForwarderError::Config {
        path: path.into(),
        message: message.into(),
    }
}

impl ForwarderConfig {
    /// Reads `FORWARDER_CONFIG` (JSON) or the file named by `FORWARDER_CONFIG_FILE`.
    pub fn from_env() -> Result<Self, ForwarderError> {
        let inline = authtrail_core::config::env_opt("FORWARDER_CONFIG");
        let file = authtrail_core::config::env_opt("FORWARDER_CONFIG_FILE");
        match (inline, file) {
            (Some(_), Some(_)) => Err(err(
                "FORWARDER_CONFIG",
                "set either FORWARDER_CONFIG or FORWARDER_CONFIG_FILE, not both",
            )),
            (Some(json), None) => Self::parse(&json),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    err("FORWARDER_CONFIG_FILE", format!("cannot read {path}: {e}"))
                })?;
                Self::parse(&text)
            }
            (None, None) => Err(err(
                "FORWARDER_CONFIG",
                "must be set to the JSON configuration (or FORWARDER_CONFIG_FILE to its path)",
            )),
        }
    }

    /// Parses and validates the JSON configuration.
    pub fn parse(json: &str) -> Result<Self, ForwarderError> {
        let raw: RawConfig = serde_json::from_str(json).map_err(|e| {
            // serde's message names unknown fields and bad types; it may quote the offending
            // value, which can be a secret: for type errors we keep only the position.
            let safe = if keeps_its_text(&e) {
                e.to_string()
            } else {
                format!(
                    "invalid value or type at line {} column {}",
                    e.line(),
                    e.column()
                )
            };
            err("FORWARDER_CONFIG", safe)
        })?;
        validate(raw)
    }
}

/// Whether a serde error's text can be shown as it is: syntax errors, unknown and missing
/// fields. Other data errors may quote the offending value, which can be a secret.
pub(crate) fn keeps_its_text(e: &serde_json::Error) -> bool {
    let text = e.to_string();
    !e.is_data() || text.contains("unknown field") || text.contains("missing field")
}

fn validate(raw: RawConfig) -> Result<ForwarderConfig, ForwarderError> {
    if raw.emitters.is_empty() {
        return Err(err("emitters", "must list at least one emitter"));
    }
    let mut names = HashSet::new();
    let mut emitters = Vec::new();
    let mut disabled = HashSet::new();
    for (i, e) in raw.emitters.into_iter().enumerate() {
        let label = format!("emitters[{i}] ({:?})", e.name);
        if e.name.trim().is_empty() {
            return Err(err(
                format!("emitters[{i}].name"),
                "must be a non-empty string",
            ));
        }
        if !names.insert(e.name.clone()) {
            return Err(err(
                format!("{label}.name"),
                "must be unique (another emitter has it)",
            ));
        }
        let emitter = emitter::validate_emitter(&label, e)?;
        if emitter.enabled {
            emitters.push(emitter);
        } else {
            disabled.insert(emitter.name.clone());
        }
    }
    if emitters.is_empty() {
        return Err(err("emitters", "must have at least one enabled emitter"));
    }
    let quorum = validate_quorum(
        &emitters,
        &disabled,
        raw.emit_to_all_of,
        raw.emit_at_least_one_of,
    )?;
    let transform = TransformConfig {
        filter: filter::validate_filter("filterPolicies", raw.filter_policies.as_ref())?,
        redaction: redaction::validate_redaction("redaction", raw.redaction.as_ref())?,
        format: Format::Raw,
    };
    // An emitter with a format of its own transforms with the top-level filter and redaction
    // (or its own) into that format.
    for e in &mut emitters {
        if e.format != Format::Raw {
            let mut own = e
                .transform_override
                .take()
                .unwrap_or_else(|| transform.clone());
            own.format = e.format;
            e.transform_override = Some(own);
        }
    }
    let retry = retry::validate_retry(raw.retry)?;
    let spool = spool::validate_spool(raw.spool)?;
    Ok(ForwarderConfig {
        emitters,
        quorum,
        transform,
        retry,
        spool,
    })
}

/// `emitToAllOf` / `emitAtLeastOneOf`: configured, enabled emitters, each named once; all
/// enabled emitters are required when neither list is given.
fn validate_quorum(
    emitters: &[EmitterConfig],
    disabled: &HashSet<String>,
    all_of: Option<Vec<String>>,
    at_least_one_of: Option<Vec<String>>,
) -> Result<Quorum, ForwarderError> {
    let check_list =
        |key: &str, list: &Option<Vec<String>>| -> Result<Vec<String>, ForwarderError> {
            let list = list.clone().unwrap_or_default();
            let mut seen = HashSet::new();
            for (j, n) in list.iter().enumerate() {
                if disabled.contains(n) {
                    return Err(err(
                        format!("{key}[{j}]"),
                        format!("names emitter {n:?}, which is disabled"),
                    ));
                }
                if !emitters.iter().any(|e| &e.name == n) {
                    return Err(err(
                        format!("{key}[{j}]"),
                        format!("names no configured emitter ({n:?})"),
                    ));
                }
                if !seen.insert(n) {
                    return Err(err(format!("{key}[{j}]"), format!("lists {n:?} twice")));
                }
            }
            Ok(list)
        };
    let mut all = check_list("emitToAllOf", &all_of)?;
    let one = check_list("emitAtLeastOneOf", &at_least_one_of)?;
    if all_of.as_ref().is_some_and(|l| l.is_empty()) {
        return Err(err(
            "emitToAllOf",
            "must name at least one emitter when given (leave it out to require every emitter)",
        ));
    }
    if at_least_one_of.as_ref().is_some_and(|l| l.is_empty()) {
        return Err(err(
            "emitAtLeastOneOf",
            "must name at least one emitter when given",
        ));
    }
    if all_of.is_none() && at_least_one_of.is_none() {
        all = emitters.iter().map(|e| e.name.clone()).collect();
    }
    Ok(Quorum {
        all_of: all,
        at_least_one_of: one,
    })
}

#[cfg(test)]
mod tests;
