//! The events endpoints, `GET /admin/realms/{realm}/events` and `.../admin-events`: bearer
//! check, Keycloak's query parameters (dates, paging, direction, filters) and the JSON array
//! answer.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::token::authorized;
use super::{json_response, pre_fault};
use crate::model::{EventKind, Record};
use crate::state::{Fault, Shared, bump};
use crate::store::{AdminFilter, EventQuery, Filter, UserFilter};

/// Keycloak's default `max`.
const DEFAULT_MAX: usize = 100;

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

/// An integer parameter.
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

/// The query of an events request, checked as Keycloak checks it (messages as it words them).
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

/// Both events endpoints: bearer token, realm, faults, query, then one page of events.
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
    let mut body = json_array(&rows);
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

/// The events as one JSON array, their stored texts joined as they are.
fn json_array(rows: &[Arc<Record>]) -> Vec<u8> {
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
    body
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
