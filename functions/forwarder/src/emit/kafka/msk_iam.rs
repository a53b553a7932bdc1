//! MSK IAM access control (`sasl.mechanism: AWS_MSK_IAM`), spoken as SASL `OAUTHBEARER` with
//! the token AWS's MSK signer libraries make (`aws-msk-iam-sasl-signer` for Python, Go,
//! JavaScript): a SigV4 presigned `GET https://kafka.{region}.amazonaws.com/?Action=
//! kafka-cluster%3AConnect` for the service `kafka-cluster`, valid 15 minutes, with a
//! `User-Agent` parameter appended after signing, base64url-encoded without padding. MSK checks
//! the token when a connection authenticates; every new connection signs a fresh one with the
//! function's credentials (its role on Lambda).
//!
//! A token is a credential: it is held as a [`Secret`], never logged, never in `Debug` output
//! or an error message.

use std::time::{Duration, SystemTime};

use authtrail_core::secret::Secret;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings};
use aws_sigv4::sign::v4;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::ForwarderError;
use crate::config::err;

/// How long a token is valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);
/// The service tokens are signed for.
const SERVICE: &str = "kafka-cluster";
/// The `User-Agent` parameter appended to the signed URL.
const USER_AGENT: &str = "authtrail-forwarder";

/// Signs MSK IAM tokens with the function's credentials.
pub struct Signer {
    credentials: SharedCredentialsProvider,
    region: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer(kafka-cluster, {})", self.region)
    }
}

impl Signer {
    /// The signer of the SDK configuration's credentials and region; `path` names the key in
    /// the error when either is missing.
    pub fn from_sdk(
        path: &str,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Self, ForwarderError> {
        let credentials = sdk.and_then(aws_config::SdkConfig::credentials_provider);
        let region = sdk.and_then(aws_config::SdkConfig::region);
        match (credentials, region) {
            (Some(credentials), Some(region)) => Ok(Self {
                credentials,
                region: region.as_ref().to_string(),
            }),
            _ => Err(err(
                path,
                "AWS_MSK_IAM needs the function's AWS credentials and region (AWS_REGION) to sign tokens",
            )),
        }
    }

    /// A fresh token, signed now.
    pub async fn token(&self) -> Result<Secret, String> {
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| format!("no AWS credentials to sign the MSK IAM token: {e}"))?;
        token(&self.region, &credentials, SystemTime::now())
    }
}

/// The MSK IAM token for `region`, signed with `credentials` at `now`.
pub fn token(region: &str, credentials: &Credentials, now: SystemTime) -> Result<Secret, String> {
    Ok(Secret::new(URL_SAFE_NO_PAD.encode(signed_url(
        region,
        credentials,
        now,
    )?)))
}

/// The presigned URL inside the token (with its `User-Agent` parameter).
fn signed_url(region: &str, credentials: &Credentials, now: SystemTime) -> Result<String, String> {
    let mut settings = SigningSettings::default();
    settings.expires_in = Some(TOKEN_LIFETIME);
    settings.signature_location = SignatureLocation::QueryParams;
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let mut url = format!("https://kafka.{region}.amazonaws.com/?Action=kafka-cluster%3AConnect");
    let request = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| e.to_string())?;
    let (instructions, _) = aws_sigv4::http_request::sign(request, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    for (name, value) in instructions.params() {
        url.push('&');
        url.push_str(name);
        url.push('=');
        url.push_str(&encode(value));
    }
    url.push_str("&User-Agent=");
    url.push_str(USER_AGENT);
    Ok(url)
}

/// `s` percent-encoded for a query string: every byte but `A-Z a-z 0-9 - _ . ~` as `%XX`.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::time::UNIX_EPOCH;

    use super::*;

    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_724_709_600) // 2024-08-26T22:00:00Z
    }

    fn decoded(token: &Secret) -> String {
        String::from_utf8(URL_SAFE_NO_PAD.decode(token.expose()).unwrap()).unwrap()
    }

    #[test]
    fn the_token_is_the_url_botocores_sigv4_query_signer_makes_for_the_same_inputs() {
        // Expected URLs from botocore's SigV4QueryAuth (service kafka-cluster, 900 s), which
        // the MSK signer for Python uses, at the same time with the same credentials.
        let creds = Credentials::new("akid", "secret", None, None, "test");
        let url = decoded(&token("us-east-1", &creds, at()).unwrap());
        assert_eq!(
            url,
            "https://kafka.us-east-1.amazonaws.com/?Action=kafka-cluster%3AConnect\
             &X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=akid%2F20240826%2Fus-east-1%2Fkafka-cluster%2Faws4_request\
             &X-Amz-Date=20240826T220000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=33595f885411d3e912123ff1b90639394ecbf86d346d8420231d499c90774eb9\
             &User-Agent=authtrail-forwarder"
        );
    }

    #[test]
    fn a_role_token_carries_the_session_token_and_never_the_secret_key() {
        let creds = Credentials::new(
            "ASIAEXAMPLE",
            "wJalrXUtnFEMI",
            Some("IQo+b3/Jp=".into()),
            None,
            "role",
        );
        let token = token("eu-west-1", &creds, at()).unwrap();
        assert!(!token.expose().contains('='), "no padding");
        let url = decoded(&token);
        assert!(
            url.contains("&X-Amz-Security-Token=IQo%2Bb3%2FJp%3D&"),
            "{url}"
        );
        assert!(
            url.contains(
                "&X-Amz-Signature=a9083f4ca902b473115f2c694ac4b2fa09f16870401f6a2c97c97fbaddd78d41&"
            ),
            "{url}"
        );
        assert!(!url.contains("wJalrXUtnFEMI"));
        let signer = Signer {
            credentials: SharedCredentialsProvider::new(creds),
            region: "eu-west-1".into(),
        };
        assert_eq!(format!("{signer:?}"), "Signer(kafka-cluster, eu-west-1)");
        assert_eq!(format!("{token:?}"), "<secret>");
    }

    #[test]
    fn an_sdk_without_credentials_or_region_is_refused_naming_the_mechanism_key() {
        let e = Signer::from_sdk("emitters[0] (\"k\").sasl.mechanism", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sasl.mechanism") && e.contains("AWS_REGION"),
            "{e}"
        );
    }
}
