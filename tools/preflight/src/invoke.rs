//! `--invoke`: each deployed function invoked with the test payload `{"authtrail": "preflight"}`
//! (Lambda `Invoke`, synchronous), so that MPAS, the SIEMs and AWS are checked from where the
//! function runs, with its role, inside its VPC if it has one. Its report's checks join this
//! one, named `<function>:<check>`.

use authtrail_core::preflight::{Check, Report};

/// The test payload.
pub const TEST_PAYLOAD: &str = r#"{"authtrail": "preflight"}"#;

/// The checks of function `label` (`producer`, ...) named `name`, from its answer.
pub async fn check_function(
    lambda: &aws_sdk_lambda::Client,
    label: &str,
    name: &str,
) -> Vec<Check> {
    let sent = lambda
        .invoke()
        .function_name(name)
        .payload(aws_sdk_lambda::primitives::Blob::new(TEST_PAYLOAD))
        .send()
        .await;
    let out = match sent {
        Ok(out) => out,
        Err(e) => {
            return vec![Check::failed(
                format!("{label}:invoke"),
                format!(
                    "{name} could not be invoked: {}",
                    authtrail_core::error_chain(&e)
                ),
                "grant these credentials lambda:InvokeFunction on the function",
            )];
        }
    };
    let body = out
        .payload()
        .map(|b| b.as_ref().to_vec())
        .unwrap_or_default();
    from_answer(label, name, out.function_error(), &body)
}

/// The checks in a function's answer: its report's checks renamed `<label>:<check>`, or one
/// failed check when it answered with an error (a cold start that failed: the configuration
/// or a secret it cannot read) or with something that is not a report (code without the
/// preflight, deployed before it).
pub fn from_answer(
    label: &str,
    name: &str,
    function_error: Option<&str>,
    body: &[u8],
) -> Vec<Check> {
    let text = String::from_utf8_lossy(body);
    if function_error.is_some() {
        let error: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        return vec![Check::failed(
            format!("{label}:invoke"),
            format!(
                "{name} failed: {}: {}",
                error["errorType"].as_str().unwrap_or("error"),
                error["errorMessage"].as_str().unwrap_or(&text)
            ),
            "the function's log names the variable or the permission (a failed cold start)",
        )];
    }
    match serde_json::from_slice::<Report>(body) {
        Ok(report) => report
            .checks
            .into_iter()
            .map(|c| Check {
                name: format!("{label}:{}", c.name),
                ..c
            })
            .collect(),
        Err(_) => vec![Check::failed(
            format!("{label}:invoke"),
            format!("{name} did not answer with a preflight report (it ran its job instead?)"),
            "deploy a version of the function that knows the preflight payload",
        )],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use authtrail_core::preflight::Status;

    #[test]
    fn a_function_report_joins_with_its_checks_named_after_the_function() {
        let mut r = Report::new("producer");
        r.push(Check::ok("mpas.token", "granted"));
        r.push(Check::failed("stream", "no such stream", "fix"));
        let body = serde_json::to_vec(&r).unwrap();
        let checks = from_answer("producer", "p-fn", None, &body);
        assert_eq!(
            checks
                .iter()
                .map(|c| (c.name.as_str(), c.status))
                .collect::<Vec<_>>(),
            [
                ("producer:mpas.token", Status::Ok),
                ("producer:stream", Status::Failed)
            ]
        );
    }

    #[test]
    fn a_failed_cold_start_or_an_old_version_is_one_failed_check() {
        let err = br#"{"errorType":"Config","errorMessage":"MPAS_REALM: missing"}"#;
        let c = from_answer("producer", "p-fn", Some("Unhandled"), err);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].status, Status::Failed);
        assert!(c[0].detail.contains("MPAS_REALM"), "{:?}", c[0]);
        let old = from_answer("archiver", "a-fn", None, br#"{"batchItemFailures":[]}"#);
        assert_eq!(old[0].name, "archiver:invoke");
        assert_eq!(old[0].status, Status::Failed);
    }
}
