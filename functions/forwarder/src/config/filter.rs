//! `filterPolicies`: the field filter (JSON pointers kept by `includeIf`, removed by
//! `excludeIf`), at the top level or per emitter.

use serde::Deserialize;

use super::err;
use crate::ForwarderError;
use crate::filter::FieldFilter;

/// `filterPolicies` as written in the configuration.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawFilterPolicies {
    /// The field filter.
    field: Option<RawFieldPolicy>,
}

/// `filterPolicies.field`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFieldPolicy {
    /// When not empty, only these fields are kept (RFC 6901 pointers).
    #[serde(default)]
    include_if: Vec<String>,
    /// Fields removed, also when included (RFC 6901 pointers).
    #[serde(default)]
    exclude_if: Vec<String>,
}

/// Checks that `p` (at key path `path`) is a JSON pointer.
pub(crate) fn validate_pointer(path: &str, p: &str) -> Result<(), ForwarderError> {
    if !p.starts_with('/') {
        return Err(err(
            path,
            format!("must be a JSON pointer starting with '/' (got {p:?})"),
        ));
    }
    Ok(())
}

/// Validates the filter policies at `path` (`filterPolicies` or an emitter's).
pub(crate) fn validate_filter(
    path: &str,
    raw: Option<&RawFilterPolicies>,
) -> Result<FieldFilter, ForwarderError> {
    let Some(field) = raw.and_then(|r| r.field.as_ref()) else {
        return Ok(FieldFilter::default());
    };
    for (i, p) in field.include_if.iter().enumerate() {
        validate_pointer(&format!("{path}.field.includeIf[{i}]"), p)?;
    }
    for (i, p) in field.exclude_if.iter().enumerate() {
        validate_pointer(&format!("{path}.field.excludeIf[{i}]"), p)?;
    }
    FieldFilter::new(&field.include_if, &field.exclude_if)
        .map_err(|e| err(format!("{path}.field"), e.to_string()))
}
