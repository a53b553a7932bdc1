//! The writer role as another producer (Foxpass, Blitz, ForgeRock) uses it: assumed with its
//! External ID (`writer.assume-role`), then the stream described with the role's credentials
//! (`writer.stream`), which proves the role may reach it.

use authtrail_core::preflight::Check;
use aws_sdk_sts::error::ProvideErrorMetadata;

use crate::targets::WriterTarget;

/// The two writer checks. Without an External ID both are skipped; without a stream the
/// second is.
pub async fn check_writer(
    sdk: &aws_config::SdkConfig,
    writer: &WriterTarget,
    stream: Option<&str>,
) -> Vec<Check> {
    let Some(external_id) = &writer.external_id else {
        return vec![
            Check::skipped(
                "writer.assume-role",
                "no External ID given (--external-id or AUTHTRAIL_EXTERNAL_ID)",
            ),
            Check::skipped("writer.stream", "the writer role was not assumed"),
        ];
    };
    let sts = aws_sdk_sts::Client::new(sdk);
    let assumed = sts
        .assume_role()
        .role_arn(&writer.role_arn)
        .role_session_name("authtrail-preflight")
        .external_id(external_id.expose())
        .duration_seconds(900)
        .send()
        .await;
    let creds = match assumed {
        Ok(out) => match out.credentials {
            Some(c) => c,
            None => {
                return vec![
                    Check::failed(
                        "writer.assume-role",
                        "STS answered without credentials",
                        "try again; STS gave no credentials",
                    ),
                    Check::skipped("writer.stream", "the writer role was not assumed"),
                ];
            }
        },
        Err(e) => {
            let code = e.code().unwrap_or_default().to_string();
            let (detail, fix) = if code == "AccessDenied" {
                (
                    format!(
                        "{} cannot be assumed with this External ID from these credentials: AccessDenied",
                        writer.role_arn
                    ),
                    "use the External ID the stack was created with (its ExternalId parameter), from the account the role trusts (WriterAccountId; empty = the stack's own account)",
                )
            } else if code.is_empty() {
                (
                    format!("STS did not answer: {}", authtrail_core::error_chain(&e)),
                    "check the route to STS and the AWS credentials of this machine",
                )
            } else {
                (
                    format!(
                        "{}: {code}: {}",
                        writer.role_arn,
                        e.message().unwrap_or_default()
                    ),
                    "see the error code",
                )
            };
            return vec![
                Check::failed("writer.assume-role", detail, fix),
                Check::skipped("writer.stream", "the writer role was not assumed"),
            ];
        }
    };
    let mut checks = vec![Check::ok(
        "writer.assume-role",
        format!("{} assumed with the External ID", writer.role_arn),
    )];
    let Some(stream) = stream else {
        checks.push(Check::skipped(
            "writer.stream",
            "no stream given (--stream)",
        ));
        return checks;
    };
    let credentials = aws_sdk_kinesis::config::Credentials::new(
        creds.access_key_id(),
        creds.secret_access_key(),
        Some(creds.session_token().to_string()),
        None,
        "authtrail-preflight-writer",
    );
    let conf = aws_sdk_kinesis::config::Builder::from(sdk)
        .credentials_provider(credentials)
        .build();
    let kinesis = aws_sdk_kinesis::Client::from_conf(conf);
    checks.push(
        authtrail_producer::preflight::check_stream("writer.stream", &kinesis, stream, false).await,
    );
    checks
}
