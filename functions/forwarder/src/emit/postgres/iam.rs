//! RDS IAM database authentication (`iamAuth: true`): the password of each new connection is
//! an authentication token signed with the function's role, as `aws rds generate-db-auth-token`
//! makes it: a SigV4 presigned `GET https://{host}:{port}/?Action=connect&DBUser={user}` for
//! the service `rds-db` in the function's region, valid 15 minutes (`X-Amz-Expires=900`), the
//! signature in the query, written without its scheme. RDS checks a token when a connection
//! opens, so a pooled connection stays open past the token's lifetime; every new connection
//! signs a fresh one.
//!
//! A token is a credential: it is held as a [`Secret`], never logged, never in `Debug` output
//! or an error message.

use std::time::{Duration, SystemTime};

use authtrail_core::secret::Secret;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings};
use aws_sigv4::sign::v4;

use crate::ForwarderError;
use crate::config::err;
use crate::emit::Failure;

/// How long a token is valid (RDS's maximum).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);
/// The service name tokens are signed for.
const SERVICE: &str = "rds-db";

/// Signs RDS authentication tokens with the function's credentials (its role on Lambda).
pub struct Signer {
    credentials: SharedCredentialsProvider,
    region: String,
    /// The signing time of a token (the system clock; tests step it).
    clock: fn() -> SystemTime,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer(rds-db, {})", self.region)
    }
}

impl Signer {
    /// The signer of the SDK configuration's credentials and region; `label` names the emitter
    /// in the error when either is missing.
    pub fn from_sdk(
        label: &str,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Self, ForwarderError> {
        let credentials = sdk.and_then(aws_config::SdkConfig::credentials_provider);
        let region = sdk.and_then(aws_config::SdkConfig::region);
        match (credentials, region) {
            (Some(credentials), Some(region)) => Ok(Self::new(credentials, region.as_ref())),
            _ => Err(err(
                format!("{label}.iamAuth"),
                "needs the function's AWS credentials and region (AWS_REGION) to sign tokens",
            )),
        }
    }

    /// A signer of `credentials` for databases in `region`.
    pub fn new(credentials: SharedCredentialsProvider, region: &str) -> Self {
        Self {
            credentials,
            region: region.to_string(),
            clock: SystemTime::now,
        }
    }

    /// The signer with another clock (tests).
    #[cfg(test)]
    pub fn with_clock(mut self, clock: fn() -> SystemTime) -> Self {
        self.clock = clock;
        self
    }

    /// A fresh token for `user` at `host:port`. A failure (no credentials, a signing error)
    /// is retryable: the credentials provider may answer next time.
    pub async fn token(&self, host: &str, port: u16, user: &str) -> Result<Secret, Failure> {
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| Failure::new("credentials", format!("no AWS credentials to sign the RDS token: {e}")))?;
        auth_token(host, port, user, &self.region, &credentials, (self.clock)())
            .map_err(|why| Failure::new("credentials", format!("signing the RDS token: {why}")))
    }
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

/// The RDS authentication token for `user` at `host:port` in `region`, signed with
/// `credentials` at `now`: `{host}:{port}/?Action=connect&DBUser={user}&X-Amz-Algorithm=
/// AWS4-HMAC-SHA256&X-Amz-Credential=...&X-Amz-Date=...&X-Amz-Expires=900&
/// X-Amz-SignedHeaders=host[&X-Amz-Security-Token=...]&X-Amz-Signature=...`.
pub fn auth_token(
    host: &str,
    port: u16,
    user: &str,
    region: &str,
    credentials: &Credentials,
    now: SystemTime,
) -> Result<Secret, String> {
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
    let url = format!("https://{host}:{port}/?Action=connect&DBUser={}", encode(user));
    let request = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| e.to_string())?;
    let (instructions, _) = aws_sigv4::http_request::sign(request, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    let mut token = url.get("https://".len()..).unwrap_or_default().to_string();
    for (name, value) in instructions.params() {
        token.push('&');
        token.push_str(name);
        token.push('=');
        token.push_str(&encode(value));
    }
    Ok(Secret::new(token))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::time::UNIX_EPOCH;

    use super::*;

    const HOST: &str = "prod-instance.us-east-1.rds.amazonaws.com";

    #[test]
    fn the_token_is_the_presigned_connect_url_the_aws_sdk_makes_for_the_same_inputs() {
        // The AWS SDK for Rust's own test vector (aws-sdk-rds, auth_token::test::signing_works).
        let creds = Credentials::new("akid", "secret", None, None, "test");
        let at = UNIX_EPOCH + Duration::from_secs(1_724_709_600);
        let token = auth_token(HOST, 3306, "peccy", "us-east-1", &creds, at).unwrap();
        assert_eq!(
            token.expose(),
            "prod-instance.us-east-1.rds.amazonaws.com:3306/?Action=connect&DBUser=peccy\
             &X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=akid%2F20240826%2Fus-east-1%2Frds-db%2Faws4_request\
             &X-Amz-Date=20240826T220000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=dd0cba843009474347af724090233265628ace491ea17ce3eb3da098b983ad89"
        );
    }

    #[test]
    fn a_role_token_carries_the_session_token_and_an_encoded_user() {
        let creds = Credentials::new("ASIAEXAMPLE", "wJalrXUtnFEMI", Some("IQo+b3/Jp=".into()), None, "role");
        let at = UNIX_EPOCH + Duration::from_secs(1_739_388_470);
        let token = auth_token("db.example", 5432, "audit writer", "eu-west-1", &creds, at).unwrap();
        let t = token.expose();
        assert!(t.starts_with("db.example:5432/?Action=connect&DBUser=audit%20writer&X-Amz-Algorithm=AWS4-HMAC-SHA256&"), "{t}");
        assert!(t.contains("&X-Amz-Credential=ASIAEXAMPLE%2F20250212%2Feu-west-1%2Frds-db%2Faws4_request&"), "{t}");
        assert!(t.contains("&X-Amz-Expires=900&"), "{t}");
        assert!(t.contains("&X-Amz-Security-Token=IQo%2Bb3%2FJp%3D"), "{t}");
        assert!(!t.contains("wJalrXUtnFEMI"), "the secret key never travels");
        let sig = t.split_once("&X-Amz-Signature=").unwrap().1;
        let sig = sig.split('&').next().unwrap();
        assert_eq!(sig.len(), 64);
        assert!(sig.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[tokio::test]
    async fn tokens_and_credentials_never_show_in_debug_output() {
        let creds = Credentials::new("ASIAEXAMPLE", "wJalrXUtnFEMI", Some("sessiontok".into()), None, "role");
        let signer = Signer::new(SharedCredentialsProvider::new(creds), "eu-west-1");
        let token = signer.token("db.example", 5432, "writer").await.unwrap();
        assert!(token.expose().contains("X-Amz-Signature="));
        let shown = format!("{token:?} {token} {signer:?}");
        for hidden in ["X-Amz", "ASIAEXAMPLE", "wJalrXUtnFEMI", "sessiontok"] {
            assert!(!shown.contains(hidden), "{hidden} in {shown}");
        }
    }

    #[test]
    fn an_sdk_without_credentials_or_region_is_refused_naming_iam_auth() {
        let e = Signer::from_sdk("emitter \"pg\"", None).unwrap_err().to_string();
        assert!(e.contains("\"pg\".iamAuth") && e.contains("AWS_REGION"), "{e}");
        let sdk = aws_config::SdkConfig::builder().build();
        assert!(Signer::from_sdk("emitter \"pg\"", Some(&sdk)).is_err());
    }
}
