//! Deterministic traffic: a realistic mix of Keycloak user and admin events.
//!
//! Everything drawn here comes from one [`SimRng`] seeded from the configured seed, so the same
//! seed and the same sequence of generation calls produce the same events, byte for byte.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::TrafficConfig;
use crate::error::SimError;
use crate::model::{AdminEvent, AuthDetails, Details, EventKind, Fields, Record, UserEvent};
use crate::rng::SimRng;

/// Parameters of one generation call (`POST /sim/generate`, [`crate::SimHandle::generate`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct GenerateSpec {
    /// Number of events to generate.
    pub count: u64,
    /// Earliest event time (epoch ms). Default: `to_ms - count / rate`, but never before the
    /// latest time generated so far (so new events do not land behind visible ones).
    pub from_ms: Option<i64>,
    /// Latest event time (epoch ms). Default: the server clock's now.
    pub to_ms: Option<i64>,
    /// Overrides of the configured hard cases for this call.
    pub tie_fraction: Option<f64>,
    /// Events per same-millisecond burst.
    pub tie_burst: Option<u32>,
    /// Fraction of success events committed late.
    pub late_fraction: Option<f64>,
    /// Maximum commit delay of a late event (ms).
    pub late_max_ms: Option<u64>,
    /// Fraction of admin events.
    pub admin_fraction: Option<f64>,
}

/// What a generation call produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateReport {
    /// Events generated.
    pub generated: u64,
    /// Of which user events.
    pub user_events: u64,
    /// Of which admin events.
    pub admin_events: u64,
    /// Events whose commit lies after the current clock (not visible yet).
    pub pending: u64,
    /// First and last event time used.
    pub from_ms: i64,
    /// Last event time used.
    pub to_ms: i64,
    /// Sequence number of the first generated event.
    pub first_seq: u64,
}

struct User {
    id: String,
    username: String,
    email: String,
    ip: String,
}

struct Client {
    client_id: &'static str,
    internal_id: String,
    redirect_uri: &'static str,
    service_account_id: String,
    confidential: bool,
}

struct Named {
    id: String,
    name: &'static str,
}

struct Pool {
    users: Vec<User>,
    clients: Vec<Client>,
    admins: Vec<User>,
    admin_clients: Vec<String>,
    master_realm_id: String,
    groups: Vec<Named>,
    roles: Vec<Named>,
}

const FIRST_NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yara",
];
const LAST_NAMES: &[&str] = &[
    "smith", "jones", "garcia", "miller", "davis", "lopez", "wilson", "moore", "taylor", "lee",
    "walker", "hall", "young", "king", "wright", "scott",
];
const CLIENTS: &[(&str, &str, bool)] = &[
    ("account-console", "/realms/{realm}/account/", false),
    ("webapp", "https://app.example.com/callback", true),
    ("mobile-app", "com.example.mobile:/oauth2redirect", false),
    ("reporting-service", "https://reports.example.com/*", true),
    (
        "partner-portal",
        "https://partners.example.com/login/callback",
        true,
    ),
];
const GROUPS: &[&str] = &["engineering", "finance", "support", "contractors", "admins"];
const ROLES: &[&str] = &[
    "offline_access",
    "uma_authorization",
    "auditor",
    "billing",
    "operator",
];

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

#[derive(Clone, Copy)]
enum AdminOp {
    CreateUser,
    UpdateUser,
    DeleteUser,
    ResetPassword,
    ExecuteActionsEmail,
    LogoutUser,
    DeleteSession,
    UpdateClient,
    CreateClient,
    JoinGroup,
    LeaveGroup,
    GrantRealmRole,
    RevokeRealmRole,
    CreateGroup,
    UpdateRealm,
}

const ADMIN_MIX: &[(AdminOp, u32)] = &[
    (AdminOp::CreateUser, 20),
    (AdminOp::UpdateUser, 25),
    (AdminOp::DeleteUser, 5),
    (AdminOp::ResetPassword, 8),
    (AdminOp::ExecuteActionsEmail, 3),
    (AdminOp::LogoutUser, 3),
    (AdminOp::DeleteSession, 10),
    (AdminOp::UpdateClient, 4),
    (AdminOp::CreateClient, 1),
    (AdminOp::JoinGroup, 10),
    (AdminOp::LeaveGroup, 4),
    (AdminOp::GrantRealmRole, 6),
    (AdminOp::RevokeRealmRole, 2),
    (AdminOp::CreateGroup, 1),
    (AdminOp::UpdateRealm, 1),
];

/// The traffic generator: a seeded random source, a fixed pool of actors, the realm's ids.
pub(crate) struct Generator {
    rng: SimRng,
    pool: Pool,
    realm: String,
    realm_id: String,
    legacy: bool,
    traffic: TrafficConfig,
    next_seq: u64,
    /// Latest event time generated so far.
    pub(crate) last_time: Option<i64>,
}

/// Hard-case parameters resolved for one call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub(crate) tie_fraction: f64,
    pub(crate) tie_burst: u32,
    pub(crate) late_fraction: f64,
    pub(crate) late_max_ms: u64,
    pub(crate) admin_fraction: f64,
}

impl Generator {
    pub(crate) fn new(
        seed: u64,
        realm: &str,
        realm_id: Option<&str>,
        legacy: bool,
        traffic: TrafficConfig,
    ) -> Self {
        let mut rng = SimRng::new(seed);
        let realm_id = realm_id.map_or_else(|| rng.uuid(), str::to_owned);
        let pool = Pool::build(&mut rng, realm, traffic.users);
        Self {
            rng,
            pool,
            realm: realm.to_owned(),
            realm_id,
            legacy,
            traffic,
            next_seq: 0,
            last_time: None,
        }
    }

    pub(crate) fn realm_id(&self) -> &str {
        &self.realm_id
    }

    /// The configured shape with a call's overrides applied (validated).
    pub(crate) fn shape(&self, spec: &GenerateSpec) -> Result<Shape, SimError> {
        let t = TrafficConfig {
            tie_fraction: spec.tie_fraction.unwrap_or(self.traffic.tie_fraction),
            tie_burst: spec.tie_burst.unwrap_or(self.traffic.tie_burst),
            late_fraction: spec.late_fraction.unwrap_or(self.traffic.late_fraction),
            late_max_ms: spec.late_max_ms.unwrap_or(self.traffic.late_max_ms),
            admin_fraction: spec.admin_fraction.unwrap_or(self.traffic.admin_fraction),
            users: self.traffic.users,
        };
        t.validate()?;
        Ok(Shape {
            tie_fraction: t.tie_fraction,
            tie_burst: t.tie_burst,
            late_fraction: t.late_fraction,
            late_max_ms: t.late_max_ms,
            admin_fraction: t.admin_fraction,
        })
    }

    /// Generates `count` events with times in `[from, to]` (non-decreasing in generation
    /// order), bursts of ties and late commits as `shape` says.
    pub(crate) fn generate(
        &mut self,
        count: u64,
        from: i64,
        to: i64,
        shape: Shape,
    ) -> Result<Vec<Record>, SimError> {
        let (from, to) = if from <= to { (from, to) } else { (to, from) };
        let times = self.times(count, from, to, shape);
        let mut out = Vec::with_capacity(times.len());
        for time in times {
            let rec = if self.rng.chance(shape.admin_fraction) {
                self.admin_event(time, shape)?
            } else {
                self.user_event(time, shape)?
            };
            out.push(rec);
        }
        if let Some(last) = out.last() {
            self.last_time = Some(self.last_time.map_or(last.time, |t| t.max(last.time)));
        }
        Ok(out)
    }

    /// Event times: slots spread evenly (with jitter) over the range; a slot is a single event
    /// or, with the probability that makes `tie_fraction` of events tied, a burst.
    fn times(&mut self, count: u64, from: i64, to: i64, shape: Shape) -> Vec<i64> {
        let burst = u64::from(shape.tie_burst);
        let f = shape.tie_fraction;
        // P(slot is a burst) such that the expected share of events in bursts is f.
        let p_burst = if f >= 1.0 {
            1.0
        } else {
            f / (burst as f64 * (1.0 - f) + f)
        };
        let mut sizes = Vec::new();
        let mut left = count;
        while left > 0 {
            let size = if self.rng.chance(p_burst) {
                burst.min(left)
            } else {
                1
            };
            sizes.push(size);
            left -= size;
        }
        let slots = sizes.len() as u64;
        let span = to.saturating_sub(from).max(0) as f64 + 1.0;
        let mut times = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        for (k, size) in sizes.into_iter().enumerate() {
            let pos = (k as f64 + self.rng.f64()) / slots as f64;
            let t = from.saturating_add((pos * span) as i64).min(to);
            for _ in 0..size {
                times.push(t);
            }
        }
        times
    }

    fn next_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    fn commit_delay(&mut self, is_error: bool, shape: Shape) -> i64 {
        if !is_error && shape.late_fraction > 0.0 && self.rng.chance(shape.late_fraction) {
            1 + self.rng.below(shape.late_max_ms) as i64
        } else {
            0
        }
    }

    fn user_event(&mut self, time: i64, shape: Shape) -> Result<Record, SimError> {
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

    fn admin_event(&mut self, time: i64, shape: Shape) -> Result<Record, SimError> {
        let i = self.rng.weighted(ADMIN_MIX.iter().map(|(_, w)| *w));
        let op = ADMIN_MIX.get(i).map_or(AdminOp::UpdateUser, |(o, _)| *o);
        let id = self.rng.uuid();
        let rng = &mut self.rng;
        let pool = &self.pool;
        let (Some(admin), Some(user), Some(client), Some(group), Some(role), Some(admin_client)) = (
            rng.pick(&pool.admins),
            rng.pick(&pool.users),
            rng.pick(&pool.clients),
            rng.pick(&pool.groups),
            rng.pick(&pool.roles),
            rng.pick(&pool.admin_clients),
        ) else {
            return Err(SimError::config("traffic.users", "empty actor pool"));
        };
        let user_repr = |enabled: bool| {
            serde_json::json!({
                "username": user.username,
                "email": user.email,
                "enabled": enabled,
                "emailVerified": true,
                "firstName": user.username.split('.').next().unwrap_or_default(),
                "attributes": {},
                "groups": [],
            })
            .to_string()
        };
        let (operation_type, resource_type, resource_path, representation) = match op {
            AdminOp::CreateUser => (
                "CREATE",
                "USER",
                format!("users/{}", user.id),
                Some(user_repr(true)),
            ),
            AdminOp::UpdateUser => (
                "UPDATE",
                "USER",
                format!("users/{}", user.id),
                Some(user_repr(rng.chance(0.9))),
            ),
            AdminOp::DeleteUser => ("DELETE", "USER", format!("users/{}", user.id), None),
            AdminOp::ResetPassword => (
                "ACTION",
                "USER",
                format!("users/{}/reset-password", user.id),
                Some(r#"{"type":"password","temporary":true}"#.to_owned()),
            ),
            AdminOp::ExecuteActionsEmail => (
                "ACTION",
                "USER",
                format!("users/{}/execute-actions-email", user.id),
                Some(r#"["UPDATE_PASSWORD","VERIFY_EMAIL"]"#.to_owned()),
            ),
            AdminOp::LogoutUser => (
                "ACTION",
                "USER",
                format!("users/{}/logout", user.id),
                None,
            ),
            AdminOp::DeleteSession => (
                "DELETE",
                "USER_SESSION",
                format!("sessions/{}", rng.uuid()),
                None,
            ),
            AdminOp::UpdateClient => (
                "UPDATE",
                "CLIENT",
                format!("clients/{}", client.internal_id),
                Some(
                    serde_json::json!({
                        "id": client.internal_id,
                        "clientId": client.client_id,
                        "enabled": true,
                        "publicClient": !client.confidential,
                        "redirectUris": [client.redirect_uri],
                        "serviceAccountsEnabled": client.confidential,
                    })
                    .to_string(),
                ),
            ),
            AdminOp::CreateClient => {
                let new_id = rng.uuid();
                let name = format!("app-{}", rng.hex(6));
                (
                    "CREATE",
                    "CLIENT",
                    format!("clients/{new_id}"),
                    Some(
                        serde_json::json!({"clientId": name, "enabled": true, "protocol": "openid-connect"})
                            .to_string(),
                    ),
                )
            }
            AdminOp::JoinGroup | AdminOp::LeaveGroup => (
                if matches!(op, AdminOp::JoinGroup) {
                    "CREATE"
                } else {
                    "DELETE"
                },
                "GROUP_MEMBERSHIP",
                format!("users/{}/groups/{}", user.id, group.id),
                Some(
                    serde_json::json!({"id": group.id, "name": group.name, "path": format!("/{}", group.name), "subGroups": []})
                        .to_string(),
                ),
            ),
            AdminOp::GrantRealmRole | AdminOp::RevokeRealmRole => (
                if matches!(op, AdminOp::GrantRealmRole) {
                    "CREATE"
                } else {
                    "DELETE"
                },
                "REALM_ROLE_MAPPING",
                format!("users/{}/role-mappings/realm", user.id),
                Some(
                    serde_json::json!([{"id": role.id, "name": role.name, "composite": false, "clientRole": false, "containerId": self.realm_id}])
                        .to_string(),
                ),
            ),
            AdminOp::CreateGroup => {
                let gid = rng.uuid();
                (
                    "CREATE",
                    "GROUP",
                    format!("groups/{gid}"),
                    Some(serde_json::json!({"name": format!("team-{}", rng.hex(4))}).to_string()),
                )
            }
            AdminOp::UpdateRealm => (
                "UPDATE",
                "REALM",
                String::new(),
                Some(
                    serde_json::json!({"realm": self.realm, "enabled": true, "eventsEnabled": true, "adminEventsEnabled": true, "adminEventsDetailsEnabled": true})
                        .to_string(),
                ),
            ),
        };
        let error = (rng.chance(0.01)).then(|| "unknown_error".to_owned());
        let is_error = error.is_some();
        let auth_ip = admin.ip.clone();
        let event = AdminEvent {
            id: (!self.legacy).then(|| id.clone()),
            time,
            realm_id: self.realm_id.clone(),
            auth_details: AuthDetails {
                realm_id: pool.master_realm_id.clone(),
                client_id: admin_client.clone(),
                user_id: admin.id.clone(),
                ip_address: auth_ip,
            },
            operation_type,
            resource_type,
            resource_path,
            representation,
            error,
            details: None,
        };
        let json: Arc<str> = serde_json::to_string(&event)?.into();
        let commit_at = time.saturating_add(self.commit_delay(is_error, shape));
        let AdminEvent {
            auth_details,
            resource_path,
            ..
        } = event;
        Ok(Record {
            seq: self.next_seq(),
            kind: EventKind::Admin,
            id,
            time,
            commit_at,
            is_error,
            fields: Fields::Admin {
                operation_type,
                resource_type,
                resource_path,
                auth_realm: auth_details.realm_id,
                auth_client: auth_details.client_id,
                auth_user: auth_details.user_id,
                auth_ip: auth_details.ip_address,
            },
            json,
        })
    }
}

fn random_ip(rng: &mut SimRng) -> String {
    match rng.below(10) {
        0..=3 => format!(
            "10.{}.{}.{}",
            rng.below(256),
            rng.below(256),
            1 + rng.below(254)
        ),
        4..=5 => format!("203.0.113.{}", 1 + rng.below(254)),
        6..=7 => format!("198.51.100.{}", 1 + rng.below(254)),
        8 => format!("192.0.2.{}", 1 + rng.below(254)),
        _ => format!("2001:db8::{:x}", 1 + rng.below(0xffff)),
    }
}

impl Pool {
    fn build(rng: &mut SimRng, realm: &str, users: u32) -> Self {
        let mut user_list = Vec::with_capacity(users as usize);
        for n in 0..users {
            let first = rng.pick(FIRST_NAMES).copied().unwrap_or("user");
            let last = rng.pick(LAST_NAMES).copied().unwrap_or("name");
            let username = format!("{first}.{last}{n}");
            user_list.push(User {
                id: rng.uuid(),
                email: format!("{username}@example.com"),
                username,
                ip: random_ip(rng),
            });
        }
        let clients = CLIENTS
            .iter()
            .map(|(client_id, redirect_uri, confidential)| Client {
                client_id,
                internal_id: rng.uuid(),
                redirect_uri,
                service_account_id: rng.uuid(),
                confidential: *confidential,
            })
            .collect();
        let admins = ["admin", "ops.oncall", "helpdesk"]
            .iter()
            .map(|name| User {
                id: rng.uuid(),
                username: (*name).to_owned(),
                email: format!("{name}@example.com"),
                ip: random_ip(rng),
            })
            .collect();
        // security-admin-console and admin-cli of the master realm.
        let admin_clients = vec![rng.uuid(), rng.uuid()];
        let master_realm_id = if realm == "master" {
            String::new()
        } else {
            rng.uuid()
        };
        let groups = GROUPS
            .iter()
            .map(|name| Named {
                id: rng.uuid(),
                name,
            })
            .collect();
        let roles = ROLES
            .iter()
            .map(|name| Named {
                id: rng.uuid(),
                name,
            })
            .collect();
        Self {
            users: user_list,
            clients,
            admins,
            admin_clients,
            master_realm_id,
            groups,
            roles,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn shape() -> Shape {
        Shape {
            tie_fraction: 0.0,
            tie_burst: 20,
            late_fraction: 0.0,
            late_max_ms: 5000,
            admin_fraction: 0.2,
        }
    }

    #[test]
    fn same_seed_generates_identical_json_and_other_seed_differs() {
        let gen_all = |seed| {
            let mut g = Generator::new(seed, "demo", None, false, TrafficConfig::default());
            g.generate(500, 1_000_000, 1_100_000, shape())
                .unwrap()
                .into_iter()
                .map(|r| r.json.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(gen_all(5), gen_all(5));
        assert_ne!(gen_all(5), gen_all(6));
    }

    #[test]
    fn tie_fraction_puts_about_that_share_of_events_in_shared_milliseconds() {
        let mut g = Generator::new(1, "demo", None, false, TrafficConfig::default());
        let s = Shape {
            tie_fraction: 0.3,
            ..shape()
        };
        // A wide range, so singles almost never collide by chance.
        let recs = g.generate(20_000, 0, 1_000_000_000, s).unwrap();
        let mut counts = std::collections::HashMap::new();
        for r in &recs {
            *counts.entry(r.time).or_insert(0u32) += 1;
        }
        let tied: u32 = counts.values().filter(|c| **c > 1).sum();
        let share = f64::from(tied) / recs.len() as f64;
        assert!((0.2..0.4).contains(&share), "tied share {share}");
        assert!(recs.windows(2).all(|w| w[0].time <= w[1].time));
    }

    #[test]
    fn late_commits_only_success_events_within_the_maximum_delay() {
        let mut g = Generator::new(3, "demo", None, false, TrafficConfig::default());
        let s = Shape {
            late_fraction: 0.5,
            late_max_ms: 3000,
            ..shape()
        };
        let recs = g.generate(5000, 0, 10_000_000, s).unwrap();
        let late: Vec<_> = recs.iter().filter(|r| r.commit_at > r.time).collect();
        assert!(late.len() > 1500, "late count {}", late.len());
        assert!(late.iter().all(|r| !r.is_error));
        assert!(late.iter().all(|r| r.commit_at - r.time <= 3000));
        assert!(recs.iter().any(|r| r.is_error));
    }

    #[test]
    fn legacy_events_have_no_id_and_modern_events_do() {
        let mut modern = Generator::new(9, "demo", None, false, TrafficConfig::default());
        let mut legacy = Generator::new(9, "demo", None, true, TrafficConfig::default());
        for r in modern.generate(200, 0, 1000, shape()).unwrap() {
            let v: serde_json::Value = serde_json::from_str(&r.json).unwrap();
            assert_eq!(v["id"].as_str(), Some(r.id.as_str()));
        }
        for r in legacy.generate(200, 0, 1000, shape()).unwrap() {
            let v: serde_json::Value = serde_json::from_str(&r.json).unwrap();
            assert!(v.get("id").is_none());
        }
    }

    #[test]
    fn admin_events_carry_paths_auth_details_and_string_representations() {
        let mut g = Generator::new(11, "demo", None, false, TrafficConfig::default());
        let s = Shape {
            admin_fraction: 1.0,
            ..shape()
        };
        for r in g.generate(300, 0, 1000, s).unwrap() {
            let v: serde_json::Value = serde_json::from_str(&r.json).unwrap();
            assert!(v["authDetails"]["userId"].is_string());
            assert!(v["operationType"].is_string());
            if let Some(repr) = v.get("representation") {
                let inner: serde_json::Value =
                    serde_json::from_str(repr.as_str().unwrap()).unwrap();
                assert!(inner.is_object() || inner.is_array());
            }
        }
    }
}
