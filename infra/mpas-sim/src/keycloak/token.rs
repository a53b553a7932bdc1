//! The token endpoint (`client_credentials`, `password` through `admin-cli`, `refresh_token`
//! grants) and the bearer tokens it issues, which the events endpoints check.

use std::sync::Arc;

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;

use super::{json_response, oauth_error, pre_fault};
use crate::state::{IssuedToken, Shared, bump};

/// Refresh token lifetime of the password grant (Keycloak's SSO session idle default).
const REFRESH_LIFETIME_SECS: i64 = 1800;
/// Tokens kept before expired ones are swept.
const TOKEN_SWEEP_AT: usize = 10_000;

/// Compares two secrets in time that depends only on their lengths.
fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `POST /realms/{realm}/protocol/openid-connect/token`
pub(crate) async fn token(
    State(s): State<Arc<Shared>>,
    Path(realm): Path<String>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    bump(&s.counters.token_requests);
    if realm != s.config.realm {
        return json_response(
            StatusCode::NOT_FOUND,
            json!({"error": "Realm does not exist"}),
        );
    }
    let (fault, rates) = s.draw_fault(true);
    if let Some(resp) = pre_fault(fault, &rates).await {
        return resp;
    }
    let resp = token_inner(&s, &headers, form);
    if resp.status() != StatusCode::OK {
        bump(&s.counters.token_rejected);
    }
    resp
}

/// The first value of form parameter `name`.
fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Client id and secret from an HTTP Basic `Authorization` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(u, p)| (u.to_owned(), p.to_owned()))
        })
}

/// The presented client: its id and whether it proved to be the configured confidential
/// client.
struct Client<'a> {
    id: &'a str,
    authenticated: bool,
}

/// A token request after the realm and fault checks: client authentication, then the grant.
fn token_inner(
    s: &Shared,
    headers: &HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let Ok(Form(params)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Expected an application/x-www-form-urlencoded body",
        );
    };
    let Some(grant_type) = param(&params, "grant_type") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing form parameter: grant_type",
        );
    };
    // Client authentication: HTTP Basic wins over form parameters, as in Keycloak.
    let basic = basic_credentials(headers);
    let (client_id, client_secret) = match &basic {
        Some((u, p)) => (Some(u.as_str()), Some(p.as_str())),
        None => (param(&params, "client_id"), param(&params, "client_secret")),
    };
    let Some(client_id) = client_id else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "Missing parameter: client_id",
        );
    };
    let cfg = &s.config;
    let client = Client {
        id: client_id,
        authenticated: client_id == cfg.client_id
            && client_secret.is_some_and(|p| constant_time_eq(p, cfg.client_secret.expose())),
    };
    match grant_type {
        "client_credentials" => client_credentials_grant(s, &client),
        "password" => password_grant(s, &params, &client),
        "refresh_token" => refresh_token_grant(s, &params, &client),
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Unsupported grant_type",
        ),
    }
}

/// Keycloak's answer to a client that failed authentication.
fn invalid_client() -> Response {
    oauth_error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "Invalid client or Invalid client credentials",
    )
}

/// `grant_type=client_credentials`: the confidential client gets an access token (no refresh
/// token); `admin-cli` is public and has no service account.
fn client_credentials_grant(s: &Shared, client: &Client<'_>) -> Response {
    if client.id == "admin-cli" {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized_client",
            "Public client not allowed to retrieve service account",
        );
    }
    if !client.authenticated {
        tracing::info!(
            client_id = client.id,
            "token refused: invalid client credentials"
        );
        return invalid_client();
    }
    issue(s, client.id, false)
}

/// `grant_type=password` through `admin-cli`: the configured user gets an access and a
/// refresh token.
fn password_grant(s: &Shared, params: &[(String, String)], client: &Client<'_>) -> Response {
    if client.id != "admin-cli" {
        if client.authenticated {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "Client not allowed for direct access grants",
            );
        }
        return invalid_client();
    }
    let (Some(username), Some(password)) = (param(params, "username"), param(params, "password"))
    else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing parameter: username",
        );
    };
    let cfg = &s.config;
    let ok = match (&cfg.username, &cfg.password) {
        (Some(u), Some(p)) => u == username && constant_time_eq(password, p.expose()),
        _ => false,
    };
    if !ok {
        tracing::info!(
            client_id = client.id,
            "token refused: invalid user credentials"
        );
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_grant",
            "Invalid user credentials",
        );
    }
    issue(s, client.id, true)
}

/// `grant_type=refresh_token`: a live refresh token (used once) buys a new pair.
fn refresh_token_grant(s: &Shared, params: &[(String, String)], client: &Client<'_>) -> Response {
    let Some(refresh) = param(params, "refresh_token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing form parameter: refresh_token",
        );
    };
    let valid = {
        let mut inner = s.lock();
        let now = inner.clock.now();
        inner
            .tokens
            .remove(refresh)
            .is_some_and(|t| t.refresh && t.expires_at > now)
    };
    if !valid {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid refresh token",
        );
    }
    issue(s, client.id, true)
}

/// A token that looks like a JWT (header, claims, random signature).
fn jwt_like(claims: &serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT","kid":"mpas-sim"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let sig: [u8; 32] = rand::random();
    format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Issues an access token (and a refresh token for the password and refresh grants) and
/// answers with Keycloak's token response.
fn issue(s: &Shared, client_id: &str, with_refresh: bool) -> Response {
    let lifetime = i64::try_from(s.config.token_lifetime_secs).unwrap_or(i64::MAX / 2000);
    let mut inner = s.lock();
    let now = inner.clock.now();
    let session = uuid::Uuid::new_v4().to_string();
    let claims = json!({
        "exp": now / 1000 + lifetime,
        "iat": now / 1000,
        "jti": uuid::Uuid::new_v4().to_string(),
        "iss": format!("/realms/{}", s.config.realm),
        "typ": "Bearer",
        "azp": client_id,
        "scope": "profile email",
        "sid": session,
    });
    let access = jwt_like(&claims);
    if inner.tokens.len() >= TOKEN_SWEEP_AT {
        inner.tokens.retain(|_, t| t.expires_at > now);
    }
    inner.tokens.insert(
        access.clone(),
        IssuedToken {
            expires_at: now.saturating_add(lifetime.saturating_mul(1000)),
            refresh: false,
        },
    );
    let mut body = json!({
        "access_token": access,
        "expires_in": lifetime,
        "refresh_expires_in": 0,
        "token_type": "Bearer",
        "not-before-policy": 0,
        "scope": "profile email",
    });
    if with_refresh {
        let refresh = jwt_like(&json!({"typ": "Refresh", "sid": session, "iat": now / 1000}));
        inner.tokens.insert(
            refresh.clone(),
            IssuedToken {
                expires_at: now + REFRESH_LIFETIME_SECS * 1000,
                refresh: true,
            },
        );
        body["refresh_token"] = json!(refresh);
        body["refresh_expires_in"] = json!(REFRESH_LIFETIME_SECS);
        body["session_state"] = json!(session);
    }
    drop(inner);
    bump(&s.counters.tokens_issued);
    tracing::debug!(client_id, with_refresh, "token issued");
    json_response(StatusCode::OK, body)
}

/// Checks the bearer token of an admin request.
pub(super) fn authorized(s: &Shared, headers: &HeaderMap) -> bool {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
    else {
        return false;
    };
    let inner = s.lock();
    let now = inner.clock.now();
    inner
        .tokens
        .get(token.trim())
        .is_some_and(|t| !t.refresh && t.expires_at > now)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use axum::http::HeaderValue;

    fn with_auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn basic_credentials_split_at_the_first_colon_in_either_case_of_scheme() {
        let encoded = STANDARD.encode("authtrail:se:cret");
        let expected = Some(("authtrail".to_owned(), "se:cret".to_owned()));
        assert_eq!(
            basic_credentials(&with_auth(&format!("Basic {encoded}"))),
            expected
        );
        assert_eq!(
            basic_credentials(&with_auth(&format!("basic {encoded}"))),
            expected
        );
        assert_eq!(
            basic_credentials(&with_auth(&format!("Bearer {encoded}"))),
            None
        );
        assert_eq!(basic_credentials(&with_auth("Basic not-base64!")), None);
        assert_eq!(basic_credentials(&HeaderMap::new()), None);
    }

    #[test]
    fn secrets_match_only_when_equal_in_length_and_bytes() {
        assert!(constant_time_eq("s3cret", "s3cret"));
        assert!(!constant_time_eq("s3cret", "s3creT"));
        assert!(!constant_time_eq("s3cret", "s3cret2"));
        assert!(constant_time_eq("", ""));
    }

    #[test]
    fn issued_tokens_look_like_jwts_with_the_claims_readable() {
        let token = jwt_like(&json!({"azp": "authtrail"}));
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["azp"], "authtrail");
    }
}
