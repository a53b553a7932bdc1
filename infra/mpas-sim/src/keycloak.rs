//! The Keycloak endpoints: token, user events, admin events.

use std::sync::Arc;
use std::time::Duration;

use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;

use crate::model::EventKind;
use crate::state::{Fault, IssuedToken, Shared, bump};
use crate::store::{AdminFilter, EventQuery, Filter, UserFilter};

/// Keycloak's default `max`.
const DEFAULT_MAX: usize = 100;
/// Refresh token lifetime of the password grant (Keycloak's SSO session idle default).
const REFRESH_LIFETIME_SECS: i64 = 1800;
/// Tokens kept before expired ones are swept.
const TOKEN_SWEEP_AT: usize = 10_000;

pub(crate) fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(
        status,
        json!({"error": error, "error_description": description}),
    )
}

fn server_error() -> Response {
    oauth_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "unknown_error",
        "For more on this error consult the server log.",
    )
}

fn too_many(retry_after_secs: u64) -> Response {
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
    if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// Applies the "before" half of a fault: an error answer to return, or a delay.
async fn pre_fault(fault: Fault, rates: &crate::config::FaultRates) -> Option<Response> {
    match fault {
        Fault::Error500 => Some(server_error()),
        Fault::TooMany429 => Some(too_many(rates.retry_after_secs)),
        Fault::Slow => {
            tokio::time::sleep(Duration::from_millis(rates.slow_ms)).await;
            None
        }
        Fault::Truncate | Fault::None => None,
    }
}

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
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let Some(grant_type) = param("grant_type") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing form parameter: grant_type",
        );
    };
    // Client authentication: HTTP Basic wins over form parameters, as in Keycloak.
    let basic = headers
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
        });
    let (client_id, client_secret) = match &basic {
        Some((u, p)) => (Some(u.as_str()), Some(p.as_str())),
        None => (param("client_id"), param("client_secret")),
    };
    let Some(client_id) = client_id else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "Missing parameter: client_id",
        );
    };
    let cfg = &s.config;
    let is_our_client = client_id == cfg.client_id
        && client_secret.is_some_and(|p| constant_time_eq(p, cfg.client_secret.expose()));
    let invalid_client = || {
        oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Invalid client or Invalid client credentials",
        )
    };
    match grant_type {
        "client_credentials" => {
            if client_id == "admin-cli" {
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized_client",
                    "Public client not allowed to retrieve service account",
                );
            }
            if !is_our_client {
                tracing::info!(client_id, "token refused: invalid client credentials");
                return invalid_client();
            }
            issue(s, client_id, false)
        }
        "password" => {
            if client_id != "admin-cli" {
                if is_our_client {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "unauthorized_client",
                        "Client not allowed for direct access grants",
                    );
                }
                return invalid_client();
            }
            let (Some(username), Some(password)) = (param("username"), param("password")) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Missing parameter: username",
                );
            };
            let ok = match (&cfg.username, &cfg.password) {
                (Some(u), Some(p)) => u == username && constant_time_eq(password, p.expose()),
                _ => false,
            };
            if !ok {
                tracing::info!(client_id, "token refused: invalid user credentials");
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_grant",
                    "Invalid user credentials",
                );
            }
            issue(s, client_id, true)
        }
        "refresh_token" => {
            let Some(refresh) = param("refresh_token") else {
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
            issue(s, client_id, true)
        }
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Unsupported grant_type",
        ),
    }
}

fn jwt_like(claims: &serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT","kid":"mpas-sim"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let sig: [u8; 32] = rand::random();
    format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(sig))
}

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
fn authorized(s: &Shared, headers: &HeaderMap) -> bool {
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

/// A 400 as Keycloak's error handler renders a `BadRequestException`.
fn bad_request(message: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, json!({"error": message}))
}

/// `dateFrom`/`dateTo`: `yyyy-MM-dd` (whole UTC day) or, from 26.2, epoch milliseconds.
fn parse_date(value: &str, end_of_day: bool, legacy: bool) -> Result<i64, String> {
    let which = if end_of_day { "To" } else { "From" };
    let msg = if legacy {
        format!("Invalid value for 'Date({which})', expected format is yyyy-MM-dd")
    } else {
        format!("Invalid value for 'Date({which})', must be formatted as yyyy-MM-dd or epoch ms")
    };
    if value.contains('-') {
        let day = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| msg.clone())?;
        let start = day
            .and_hms_opt(0, 0, 0)
            .ok_or_else(|| msg.clone())?
            .and_utc()
            .timestamp_millis();
        Ok(if end_of_day {
            start + 86_400_000 - 1
        } else {
            start
        })
    } else if legacy {
        Err(msg)
    } else {
        value.trim().parse::<i64>().map_err(|_| msg)
    }
}

fn parse_int(name: &str, value: &str) -> Result<i64, String> {
    value
        .trim()
        .parse::<i64>()
        .map_err(|_| format!("Invalid value for '{name}', expected an integer"))
}

/// Enum-valued filters (`type`, `operationTypes`, `resourceTypes`): Keycloak rejects values that
/// are not enum constants; the simulator accepts any constant-shaped name (unknown ones match
/// nothing) and rejects the rest.
fn enum_value(name: &str, value: &str) -> Result<String, String> {
    if !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        Ok(value.to_owned())
    } else {
        Err(format!("Invalid value for '{name}': {value}"))
    }
}

pub(crate) fn parse_query(
    kind: EventKind,
    params: &[(String, String)],
    legacy: bool,
) -> Result<EventQuery, String> {
    // JAX-RS gives a single-valued parameter its first occurrence.
    let one = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let many = |name: &str| -> Result<Vec<String>, String> {
        params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| enum_value(name, v))
            .collect()
    };
    let from = one("dateFrom")
        .map(|v| parse_date(&v, false, legacy))
        .transpose()?;
    let to = one("dateTo")
        .map(|v| parse_date(&v, true, legacy))
        .transpose()?;
    // Keycloak's pagination ignores a negative first and treats a negative max as "no limit".
    let first = match one("first") {
        Some(v) => usize::try_from(parse_int("first", &v)?.max(0)).unwrap_or(usize::MAX),
        None => 0,
    };
    let max = match one("max") {
        Some(v) => {
            let m = parse_int("max", &v)?;
            if m < 0 {
                None
            } else {
                Some(usize::try_from(m).unwrap_or(usize::MAX))
            }
        }
        None => Some(DEFAULT_MAX),
    };
    let ascending = if legacy {
        // Before 26.2 there is no `direction`: unknown parameters are ignored, newest first.
        false
    } else {
        match one("direction").as_deref() {
            None | Some("desc") => false,
            Some("asc") => true,
            Some(_) => {
                return Err("Invalid value for 'direction', must be 'asc' or 'desc'".to_owned());
            }
        }
    };
    let filter = match kind {
        EventKind::User => Filter::User(UserFilter {
            types: many("type")?,
            client: one("client"),
            user: one("user"),
            ip_address: one("ipAddress"),
        }),
        EventKind::Admin => Filter::Admin(AdminFilter {
            operation_types: many("operationTypes")?,
            resource_types: many("resourceTypes")?,
            resource_path: one("resourcePath"),
            auth_realm: one("authRealm"),
            auth_client: one("authClient"),
            auth_user: one("authUser"),
            auth_ip_address: one("authIpAddress"),
        }),
    };
    Ok(EventQuery {
        from,
        to,
        first,
        max,
        ascending,
        filter,
    })
}

/// `GET /admin/realms/{realm}/events`
pub(crate) async fn user_events(
    state: State<Arc<Shared>>,
    path: Path<String>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    bump(&state.counters.event_requests);
    events(EventKind::User, state, path, headers, query).await
}

/// `GET /admin/realms/{realm}/admin-events`
pub(crate) async fn admin_events(
    state: State<Arc<Shared>>,
    path: Path<String>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    bump(&state.counters.admin_event_requests);
    events(EventKind::Admin, state, path, headers, query).await
}

async fn events(
    kind: EventKind,
    State(s): State<Arc<Shared>>,
    Path(realm): Path<String>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let c = &s.counters;
    if !authorized(&s, &headers) {
        bump(&c.unauthorized);
        let mut resp = json_response(
            StatusCode::UNAUTHORIZED,
            json!({"error": "HTTP 401 Unauthorized"}),
        );
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    }
    if realm != s.config.realm {
        bump(&c.not_found);
        return json_response(StatusCode::NOT_FOUND, json!({"error": "Realm not found."}));
    }
    let (fault, rates) = s.draw_fault(false);
    if let Some(resp) = pre_fault(fault, &rates).await {
        tracing::debug!(?fault, kind = kind.as_str(), "fault injected");
        return resp;
    }
    let Ok(Query(params)) = query else {
        bump(&c.bad_requests);
        return bad_request("Invalid query string");
    };
    let q = match parse_query(kind, &params, s.config.legacy) {
        Ok(q) => q,
        Err(msg) => {
            bump(&c.bad_requests);
            return bad_request(&msg);
        }
    };
    let window = {
        let mut inner = s.lock();
        inner.sync();
        inner.store.query(kind, &q)
    };
    let rows = window.finish();
    let size: usize = rows.iter().map(|r| r.json.len() + 1).sum::<usize>() + 2;
    let mut body = Vec::with_capacity(size);
    body.push(b'[');
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(r.json.as_bytes());
    }
    body.push(b']');
    let served = rows.len() as u64;
    match kind {
        EventKind::User => crate::state::add(&c.user_events_served, served),
        EventKind::Admin => crate::state::add(&c.admin_events_served, served),
    }
    if fault == Fault::Truncate {
        // Cut in the middle: never a complete JSON document.
        let cut = (body.len() / 2).max(1);
        body.truncate(cut);
        tracing::debug!(kind = kind.as_str(), cut, "fault injected: truncated body");
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn day_dates_cover_the_whole_utc_day_and_epoch_dates_are_exact() {
        assert_eq!(
            parse_date("2025-02-12", false, false).unwrap(),
            1_739_318_400_000
        );
        assert_eq!(
            parse_date("2025-02-12", true, false).unwrap(),
            1_739_318_400_000 + 86_400_000 - 1
        );
        assert_eq!(
            parse_date("1739388470156", true, false).unwrap(),
            1_739_388_470_156
        );
        assert!(parse_date("yesterday", false, false).is_err());
        assert!(parse_date("2025-13-01", false, false).is_err());
    }

    #[test]
    fn legacy_mode_rejects_epoch_dates_and_ignores_direction() {
        assert!(parse_date("1739388470156", false, true).is_err());
        let q = parse_query(EventKind::User, &p(&[("direction", "sideways")]), true).unwrap();
        assert!(!q.ascending);
    }

    #[test]
    fn query_defaults_to_newest_first_max_100_and_rejects_bad_values() {
        let q = parse_query(EventKind::User, &[], false).unwrap();
        assert_eq!((q.first, q.max, q.ascending), (0, Some(100), false));
        let q = parse_query(
            EventKind::User,
            &p(&[("first", "-5"), ("max", "-1")]),
            false,
        )
        .unwrap();
        assert_eq!((q.first, q.max), (0, None));
        for bad in [
            ("direction", "ASC"),
            ("first", "x"),
            ("max", "1.5"),
            ("dateFrom", "abc"),
            ("type", "login; drop"),
        ] {
            assert!(
                parse_query(EventKind::User, &p(&[bad]), false).is_err(),
                "{bad:?}"
            );
        }
    }
}
