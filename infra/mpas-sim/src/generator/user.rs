//! User events: the mix of Keycloak event types and, per type, the details, ids and errors a
//! real server records.

use std::sync::Arc;

use super::pool::random_ip;
use super::{Generator, Shape};
use crate::error::SimError;
use crate::model::{Details, EventKind, Fields, Record, UserEvent};

/// User event types and their relative weights (per 1000).
const USER_MIX: &[(&str, u32)] = &[
    ("LOGIN", 300),
    ("CODE_TO_TOKEN", 200),
    ("REFRESH_TOKEN", 140),
    ("LOGOUT", 70),
    ("LOGIN_ERROR", 100),
    ("CLIENT_LOGIN", 80),
    ("CODE_TO_TOKEN_ERROR", 8),
    ("REFRESH_TOKEN_ERROR", 12),
    ("CLIENT_LOGIN_ERROR", 5),
    ("UPDATE_PASSWORD", 8),
    ("REGISTER", 8),
    ("RESET_PASSWORD", 5),
    ("SEND_RESET_PASSWORD", 5),
    ("UPDATE_PROFILE", 8),
    ("VERIFY_EMAIL", 5),
    ("UPDATE_CREDENTIAL", 4),
    ("REMOVE_CREDENTIAL", 2),
    ("IDENTITY_PROVIDER_LOGIN", 10),
    ("TOKEN_EXCHANGE", 5),
    ("IMPERSONATE", 1),
    ("USER_DISABLED_BY_TEMPORARY_LOCKOUT", 2),
    ("LOGOUT_ERROR", 2),
    ("DELETE_ACCOUNT", 1),
];

impl Generator {
    /// One user event at `time` of a type drawn from [`USER_MIX`].
    pub(super) fn user_event(&mut self, time: i64, shape: Shape) -> Result<Record, SimError> {
        let i = self.rng.weighted(USER_MIX.iter().map(|(_, w)| *w));
        let event_type = USER_MIX.get(i).map_or("LOGIN", |(t, _)| *t);
        let id = self.rng.uuid();
        let rng = &mut self.rng;
        let pool = &self.pool;
        let user_i = rng.index(pool.users.len());
        let client_i = rng.index(pool.clients.len());
        let (Some(user), Some(client)) = (pool.users.get(user_i), pool.clients.get(client_i))
        else {
            return Err(SimError::config("traffic.users", "empty actor pool"));
        };
        // Most logins come from the user's usual address, some from elsewhere.
        let ip = if rng.chance(0.85) {
            user.ip.clone()
        } else {
            random_ip(rng)
        };
        let session = rng.uuid();
        let redirect = client.redirect_uri.replace("{realm}", &self.realm);
        let mut d = Details::default();
        let mut user_id = Some(user.id.clone());
        let mut session_id = Some(session.clone());
        let mut client_id = Some(client.client_id.to_owned());
        let mut error = None;
        match event_type {
            "LOGIN" | "LOGIN_ERROR" => {
                d.put("auth_method", "openid-connect");
                d.put("auth_type", "code");
                d.put("redirect_uri", redirect);
                if event_type == "LOGIN" {
                    d.put("consent", "no_consent_required");
                }
                d.put("code_id", session.clone());
                if event_type == "LOGIN_ERROR" {
                    session_id = None;
                    if rng.chance(0.3) {
                        user_id = None;
                        error = Some("user_not_found");
                        d.put("username", format!("{}x", user.username));
                    } else {
                        error = Some("invalid_user_credentials");
                        d.put("username", user.username.clone());
                    }
                } else {
                    d.put("username", user.username.clone());
                }
            }
            "CODE_TO_TOKEN" | "CODE_TO_TOKEN_ERROR" => {
                d.put("token_id", rng.uuid());
                d.put("grant_type", "authorization_code");
                d.put("refresh_token_type", "Refresh");
                d.put("scope", "openid profile email");
                d.put("refresh_token_id", rng.uuid());
                d.put("code_id", session.clone());
                d.put(
                    "client_auth_method",
                    if client.confidential {
                        "client-secret"
                    } else {
                        "none"
                    },
                );
                if event_type.ends_with("_ERROR") {
                    error = Some("invalid_code");
                }
            }
            "REFRESH_TOKEN" | "REFRESH_TOKEN_ERROR" => {
                d.put("token_id", rng.uuid());
                d.put("grant_type", "refresh_token");
                d.put("refresh_token_type", "Refresh");
                d.put("scope", "openid profile email");
                d.put("updated_refresh_token_id", rng.uuid());
                d.put("refresh_token_id", rng.uuid());
                d.put(
                    "client_auth_method",
                    if client.confidential {
                        "client-secret"
                    } else {
                        "none"
                    },
                );
                if event_type.ends_with("_ERROR") {
                    error = Some(if rng.chance(0.5) {
                        "invalid_token"
                    } else {
                        "session_expired"
                    });
                    session_id = None;
                }
            }
            "CLIENT_LOGIN" | "CLIENT_LOGIN_ERROR" => {
                let svc = pool
                    .clients
                    .iter()
                    .filter(|c| c.confidential)
                    .nth(rng.index(3))
                    .unwrap_or(client);
                client_id = Some(svc.client_id.to_owned());
                user_id = Some(svc.service_account_id.clone());
                d.put("token_id", rng.uuid());
                d.put("grant_type", "client_credentials");
                d.put("scope", "profile email");
                d.put("client_auth_method", "client-secret");
                d.put("username", format!("service-account-{}", svc.client_id));
                if event_type.ends_with("_ERROR") {
                    error = Some("invalid_client_credentials");
                    user_id = None;
                    session_id = None;
                }
            }
            "LOGOUT" | "LOGOUT_ERROR" => {
                d.put("redirect_uri", redirect);
                if event_type.ends_with("_ERROR") {
                    error = Some("invalid_token");
                }
            }
            "REGISTER" => {
                d.put("auth_method", "openid-connect");
                d.put("auth_type", "code");
                d.put("register_method", "form");
                d.put("redirect_uri", redirect);
                d.put("code_id", session.clone());
                d.put("email", user.email.clone());
                d.put("username", user.username.clone());
            }
            "UPDATE_PASSWORD" | "UPDATE_CREDENTIAL" | "REMOVE_CREDENTIAL" => {
                d.put("auth_method", "openid-connect");
                if event_type == "UPDATE_PASSWORD" {
                    d.put("custom_required_action", "UPDATE_PASSWORD");
                } else {
                    d.put(
                        "credential_type",
                        if rng.chance(0.5) { "otp" } else { "webauthn" },
                    );
                }
                d.put("username", user.username.clone());
            }
            "RESET_PASSWORD" | "SEND_RESET_PASSWORD" => {
                d.put("auth_method", "openid-connect");
                d.put("redirect_uri", redirect);
                d.put("code_id", session.clone());
                d.put("email", user.email.clone());
                d.put("username", user.username.clone());
            }
            "IDENTITY_PROVIDER_LOGIN" => {
                d.put(
                    "identity_provider",
                    if rng.chance(0.5) {
                        "google"
                    } else {
                        "azure-ad"
                    },
                );
                d.put("identity_provider_identity", user.email.clone());
                d.put("redirect_uri", redirect);
                d.put("code_id", session.clone());
            }
            "TOKEN_EXCHANGE" => {
                d.put("subject_token_client_id", "webapp");
                d.put("audience", "reporting-service");
                d.put(
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                );
                d.put("token_id", rng.uuid());
            }
            "IMPERSONATE" => {
                let admin_i = rng.index(pool.admins.len());
                if let Some(admin) = pool.admins.get(admin_i) {
                    d.put("impersonator", admin.username.clone());
                    d.put("impersonator_realm", "master");
                }
            }
            "USER_DISABLED_BY_TEMPORARY_LOCKOUT" => {
                session_id = None;
                d.put("username", user.username.clone());
            }
            _ => {
                d.put("auth_method", "openid-connect");
                d.put("username", user.username.clone());
            }
        }
        let is_error = error.is_some();
        if event_type == "CLIENT_LOGIN" && rng.chance(0.9) {
            // Service-account logins carry no user session in current Keycloak versions.
            session_id = None;
        }
        let event = UserEvent {
            id: (!self.legacy).then(|| id.clone()),
            time,
            event_type,
            realm_id: self.realm_id.clone(),
            client_id: client_id.take(),
            user_id: user_id.take(),
            session_id,
            ip_address: Some(ip),
            error: error.map(str::to_owned),
            details: Some(d),
        };
        let json: Arc<str> = serde_json::to_string(&event)?.into();
        let commit_at = time.saturating_add(self.commit_delay(is_error, shape));
        Ok(Record {
            seq: self.next_seq(),
            kind: EventKind::User,
            id,
            time,
            commit_at,
            is_error,
            fields: Fields::User {
                event_type,
                client_id: event.client_id,
                user_id: event.user_id,
                ip_address: event.ip_address,
            },
            json,
        })
    }
}
