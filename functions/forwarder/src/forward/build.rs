//! Building the forwarder from a validated configuration, once per cold start: the transforms
//! (secrets read, HMAC keyed) and one emitter per configured one.

use std::sync::Arc;

use authtrail_core::redact::{RedactionMode, Redactor};

use super::{Forwarder, Slot};
use crate::ForwarderError;
use crate::config::{ForwarderConfig, RedactionConfig, TransformConfig, err};
use crate::dlq::DeadLetterSink;
use crate::record::Transform;

async fn build_transform(
    sdk: Option<&aws_config::SdkConfig>,
    t: &TransformConfig,
) -> Result<Transform, ForwarderError> {
    let redactor = match &t.redaction {
        None => None,
        Some(RedactionConfig::Mask { fields }) => Some(Redactor::new(fields, RedactionMode::Mask)),
        Some(RedactionConfig::Hash { fields, key }) => {
            let key = key.resolve(sdk, "hmacKey").await?;
            Some(Redactor::new(fields, RedactionMode::Hash(key)))
        }
    };
    let redactor = redactor
        .transpose()
        .map_err(|e| err("redaction", e.to_string()))?;
    Ok(Transform::new(t.filter.clone(), redactor).with_format(t.format))
}

/// Builds the forwarder from a validated configuration: reads secrets, builds one client per
/// emitter. `sdk` is needed for Secrets Manager ARNs and Firehose emitters.
pub async fn build(
    config: &ForwarderConfig,
    sdk: Option<&aws_config::SdkConfig>,
    dlq: Arc<dyn DeadLetterSink>,
    dlq_prefix: &str,
) -> Result<Forwarder, ForwarderError> {
    let mut profiles = vec![build_transform(sdk, &config.transform).await?];
    // One profile per distinct transform (filter, redaction, format): records are transformed
    // once per profile, however many emitters share it.
    let mut distinct = vec![&config.transform];
    let mut slots = Vec::new();
    for e in &config.emitters {
        let profile = match &e.transform_override {
            Some(t) => match distinct.iter().position(|d| *d == t) {
                Some(i) => i,
                None => {
                    profiles.push(build_transform(sdk, t).await?);
                    distinct.push(t);
                    profiles.len() - 1
                }
            },
            None => 0,
        };
        slots.push(Slot {
            emitter: e.settings.build(&e.name, sdk).await?,
            selector: e.selector.clone(),
            buffering: e.buffering,
            timeout: e.emit_timeout,
            profile,
        });
    }
    let index_of = |names: &[String]| -> Vec<usize> {
        names
            .iter()
            .filter_map(|n| config.emitters.iter().position(|e| &e.name == n))
            .collect()
    };
    Ok(Forwarder {
        slots,
        profiles,
        all_of: index_of(&config.quorum.all_of),
        at_least_one_of: index_of(&config.quorum.at_least_one_of),
        retry: config.retry,
        dlq,
        dlq_prefix: dlq_prefix.to_string(),
        spool: None,
    })
}
