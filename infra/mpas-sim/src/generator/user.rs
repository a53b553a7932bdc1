//! User events: the mix of Keycloak event types and, per type, the details, ids and errors a
//! real server records.

use std::sync::Arc;

use super::pool::{Client, Pool, User, random_ip};
use super::{Generator, Shape};
use crate::error::SimError;
use crate::model::{Details, EventKind, Fields, Record, UserEvent};
use crate::rng::SimRng;

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
        let mut draft = Draft {
            event_type,
            pool,
            user,
            client,
            redirect,
            d: Details::default(),
            user_id: Some(user.id.clone()),
            session_id: Some(session.clone()),
            client_id: Some(client.client_id.to_owned()),
            error: None,
            session,
        };
        draft.fill(rng);
        if event_type == "CLIENT_LOGIN" && rng.chance(0.9) {
            // Service-account logins carry no user session in current Keycloak versions.
            draft.session_id = None;
        }
        let event = UserEvent {
            id: (!self.legacy).then(|| id.clone()),
            time,
            event_type,
            realm_id: self.realm_id.clone(),
            client_id: draft.client_id,
            user_id: draft.user_id,
            session_id: draft.session_id,
            ip_address: Some(ip),
            error: draft.error.map(str::to_owned),
            details: Some(draft.d),
        };
        self.user_record(event, id, shape)
    }

    /// Serialises a user event into a stored record with its commit time and filter fields.
    fn user_record(
        &mut self,
        event: UserEvent,
        id: String,
        shape: Shape,
    ) -> Result<Record, SimError> {
        let is_error = event.error.is_some();
        let time = event.time;
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
                event_type: event.event_type,
                client_id: event.client_id,
                user_id: event.user_id,
                ip_address: event.ip_address,
            },
            json,
        })
    }
}

/// A user event being drawn: who and where from, and the parts its type decides.
struct Draft<'a> {
    event_type: &'static str,
    pool: &'a Pool,
    user: &'a User,
    client: &'a Client,
    /// The client's redirect URI in this realm.
    redirect: String,
    /// The user session (also the `code_id` of code flows).
    session: String,
    d: Details,
    user_id: Option<String>,
    session_id: Option<String>,
    client_id: Option<String>,
    error: Option<&'static str>,
}

impl Draft<'_> {
    /// Fills in what the event type decides: details, error, and which ids it carries.
    fn fill(&mut self, rng: &mut SimRng) {
        let (user, is_error) = (self.user, self.event_type.ends_with("_ERROR"));
        match self.event_type {
            "LOGIN" | "LOGIN_ERROR" => self.login(rng, is_error),
            "CODE_TO_TOKEN" | "CODE_TO_TOKEN_ERROR" => self.code_to_token(rng, is_error),
            "REFRESH_TOKEN" | "REFRESH_TOKEN_ERROR" => self.refresh_token(rng, is_error),
            "CLIENT_LOGIN" | "CLIENT_LOGIN_ERROR" => self.client_login(rng, is_error),
            "LOGOUT" | "LOGOUT_ERROR" => {
                self.d.put("redirect_uri", self.redirect.clone());
                if is_error {
                    self.error = Some("invalid_token");
                }
            }
            "REGISTER" => self.register(),
            "UPDATE_PASSWORD" | "UPDATE_CREDENTIAL" | "REMOVE_CREDENTIAL" => self.credential(rng),
            "RESET_PASSWORD" | "SEND_RESET_PASSWORD" => {
                self.d.put("auth_method", "openid-connect");
                self.d.put("redirect_uri", self.redirect.clone());
                self.d.put("code_id", self.session.clone());
                self.d.put("email", user.email.clone());
                self.d.put("username", user.username.clone());
            }
            "IDENTITY_PROVIDER_LOGIN" => self.identity_provider_login(rng),
            "TOKEN_EXCHANGE" => {
                self.d.put("subject_token_client_id", "webapp");
                self.d.put("audience", "reporting-service");
                self.d.put(
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                );
                self.d.put("token_id", rng.uuid());
            }
            "IMPERSONATE" => self.impersonate(rng),
            "USER_DISABLED_BY_TEMPORARY_LOCKOUT" => {
                self.session_id = None;
                self.d.put("username", user.username.clone());
            }
            _ => {
                self.d.put("auth_method", "openid-connect");
                self.d.put("username", user.username.clone());
            }
        }
    }

    /// `REGISTER`: a registration form in the code flow.
    fn register(&mut self) {
        self.d.put("auth_method", "openid-connect");
        self.d.put("auth_type", "code");
        self.d.put("register_method", "form");
        self.d.put("redirect_uri", self.redirect.clone());
        self.d.put("code_id", self.session.clone());
        self.d.put("email", self.user.email.clone());
        self.d.put("username", self.user.username.clone());
    }

    /// `LOGIN` / `LOGIN_ERROR`: a failed login has no session and, sometimes, no known user.
    fn login(&mut self, rng: &mut SimRng, is_error: bool) {
        self.d.put("auth_method", "openid-connect");
        self.d.put("auth_type", "code");
        self.d.put("redirect_uri", self.redirect.clone());
        if !is_error {
            self.d.put("consent", "no_consent_required");
        }
        self.d.put("code_id", self.session.clone());
        let username = self.user.username.clone();
        if !is_error {
            self.d.put("username", username);
            return;
        }
        self.session_id = None;
        if rng.chance(0.3) {
            self.user_id = None;
            self.error = Some("user_not_found");
            self.d.put("username", format!("{username}x"));
        } else {
            self.error = Some("invalid_user_credentials");
            self.d.put("username", username);
        }
    }

    /// How the client authenticated at the token endpoint.
    fn client_auth_method(&self) -> &'static str {
        if self.client.confidential {
            "client-secret"
        } else {
            "none"
        }
    }

    /// `CODE_TO_TOKEN` / `_ERROR`.
    fn code_to_token(&mut self, rng: &mut SimRng, is_error: bool) {
        self.d.put("token_id", rng.uuid());
        self.d.put("grant_type", "authorization_code");
        self.d.put("refresh_token_type", "Refresh");
        self.d.put("scope", "openid profile email");
        self.d.put("refresh_token_id", rng.uuid());
        self.d.put("code_id", self.session.clone());
        self.d.put("client_auth_method", self.client_auth_method());
        if is_error {
            self.error = Some("invalid_code");
        }
    }

    /// `REFRESH_TOKEN` / `_ERROR`: a failed refresh has no session.
    fn refresh_token(&mut self, rng: &mut SimRng, is_error: bool) {
        self.d.put("token_id", rng.uuid());
        self.d.put("grant_type", "refresh_token");
        self.d.put("refresh_token_type", "Refresh");
        self.d.put("scope", "openid profile email");
        self.d.put("updated_refresh_token_id", rng.uuid());
        self.d.put("refresh_token_id", rng.uuid());
        self.d.put("client_auth_method", self.client_auth_method());
        if is_error {
            self.error = Some(if rng.chance(0.5) {
                "invalid_token"
            } else {
                "session_expired"
            });
            self.session_id = None;
        }
    }

    /// `CLIENT_LOGIN` / `_ERROR`: a confidential client's service account.
    fn client_login(&mut self, rng: &mut SimRng, is_error: bool) {
        let svc = self
            .pool
            .clients
            .iter()
            .filter(|c| c.confidential)
            .nth(rng.index(3))
            .unwrap_or(self.client);
        self.client_id = Some(svc.client_id.to_owned());
        self.user_id = Some(svc.service_account_id.clone());
        self.d.put("token_id", rng.uuid());
        self.d.put("grant_type", "client_credentials");
        self.d.put("scope", "profile email");
        self.d.put("client_auth_method", "client-secret");
        self.d
            .put("username", format!("service-account-{}", svc.client_id));
        if is_error {
            self.error = Some("invalid_client_credentials");
            self.user_id = None;
            self.session_id = None;
        }
    }

    /// `UPDATE_PASSWORD`, `UPDATE_CREDENTIAL`, `REMOVE_CREDENTIAL`.
    fn credential(&mut self, rng: &mut SimRng) {
        self.d.put("auth_method", "openid-connect");
        if self.event_type == "UPDATE_PASSWORD" {
            self.d.put("custom_required_action", "UPDATE_PASSWORD");
        } else {
            self.d.put(
                "credential_type",
                if rng.chance(0.5) { "otp" } else { "webauthn" },
            );
        }
        self.d.put("username", self.user.username.clone());
    }

    /// `IDENTITY_PROVIDER_LOGIN`: through Google or Azure AD.
    fn identity_provider_login(&mut self, rng: &mut SimRng) {
        self.d.put(
            "identity_provider",
            if rng.chance(0.5) {
                "google"
            } else {
                "azure-ad"
            },
        );
        self.d
            .put("identity_provider_identity", self.user.email.clone());
        self.d.put("redirect_uri", self.redirect.clone());
        self.d.put("code_id", self.session.clone());
    }

    /// `IMPERSONATE`: by one of the master realm's admins.
    fn impersonate(&mut self, rng: &mut SimRng) {
        let admin_i = rng.index(self.pool.admins.len());
        if let Some(admin) = self.pool.admins.get(admin_i) {
            self.d.put("impersonator", admin.username.clone());
            self.d.put("impersonator_realm", "master");
        }
    }
}
