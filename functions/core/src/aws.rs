//! AWS SDK set-up shared by the functions. The standard variables (`AWS_REGION`,
//! `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`, credentials) are honoured by aws-config,
//! so no code path is emulator-specific.

use aws_config::{BehaviorVersion, SdkConfig};

/// Loads the SDK configuration from the standard environment chain.
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// Whether S3 should use path-style addressing: when `AWS_S3_FORCE_PATH_STYLE` is true, or when
/// a custom endpoint is set (emulators and VPC endpoints addressed by hostname need it).
pub fn s3_force_path_style() -> bool {
    if let Some(v) = crate::config::env_opt("AWS_S3_FORCE_PATH_STYLE") {
        return crate::config::parse_bool(&v).unwrap_or(false);
    }
    crate::config::env_opt("AWS_ENDPOINT_URL_S3").is_some()
        || crate::config::env_opt("AWS_ENDPOINT_URL").is_some()
}

/// An S3 client, path-style when [`s3_force_path_style`] says so.
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(s3_force_path_style())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}
