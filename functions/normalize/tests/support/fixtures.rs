//! Fixture records of every source: Keycloak user and admin events in the Contract 1 envelope
//! (the shapes the MPAS simulator and a real server record), Foxpass LDAP / RADIUS records as
//! Foxpass documents them, Blitz records, and records no mapping knows; with the classification
//! the forwarder gives them, and redacted the ways the forwarder redacts.

use authtrail_normalize::{Classification, Kind};
use serde_json::{Value, json};

/// The time of the fixtures (2025-02-12T19:27:50.156Z).
pub const T0: i64 = 1_739_388_470_156;

/// A record and what the forwarder's classification says about it.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// A short name for messages.
    pub name: String,
    /// The record.
    pub record: Value,
    /// Its kind.
    pub kind: Kind,
    /// Its primary event type.
    pub event_type: String,
    /// Its id.
    pub id: Option<String>,
}

impl Fixture {
    /// The classification (as the forwarder gives it).
    pub fn class(&self) -> Classification<'_> {
        Classification {
            kind: self.kind,
            event_type: &self.event_type,
            time_ms: T0,
            id: self.id.as_deref(),
        }
    }

    /// The record's compact JSON text.
    pub fn text(&self) -> String {
        self.record.to_string()
    }
}

/// Details a real server records for a user event type (the simulator's choices).
fn details(ty: &str) -> Value {
    let base = ty.trim_end_matches("_ERROR");
    match base {
        "LOGIN" => json!({"auth_method": "openid-connect", "auth_type": "code",
            "redirect_uri": "https://app.example/cb", "consent": "no_consent_required",
            "code_id": "c0de", "username": "alice"}),
        "CODE_TO_TOKEN" | "REFRESH_TOKEN" => json!({"token_id": "t1",
            "grant_type": if base == "CODE_TO_TOKEN" { "authorization_code" } else { "refresh_token" },
            "refresh_token_type": "Refresh", "scope": "openid profile email",
            "refresh_token_id": "r1", "client_auth_method": "client-secret"}),
        "CLIENT_LOGIN" => json!({"token_id": "t2", "grant_type": "client_credentials",
            "scope": "profile email", "client_auth_method": "client-secret",
            "username": "service-account-reporting"}),
        "LOGOUT" => json!({"redirect_uri": "https://app.example/"}),
        "REGISTER" => json!({"auth_method": "openid-connect", "auth_type": "code",
            "register_method": "form", "redirect_uri": "https://app.example/cb",
            "code_id": "c0de", "email": "alice@example.com", "username": "alice"}),
        "UPDATE_PASSWORD" => json!({"auth_method": "openid-connect",
            "custom_required_action": "UPDATE_PASSWORD", "username": "alice"}),
        "UPDATE_CREDENTIAL" | "REMOVE_CREDENTIAL" => json!({"auth_method": "openid-connect",
            "credential_type": "otp", "username": "alice"}),
        "IDENTITY_PROVIDER_LOGIN" | "IDENTITY_PROVIDER_FIRST_LOGIN" => json!({
            "identity_provider": "google", "identity_provider_identity": "alice@example.com",
            "redirect_uri": "https://app.example/cb", "code_id": "c0de"}),
        "TOKEN_EXCHANGE" => json!({"subject_token_client_id": "webapp",
            "audience": "reporting-service",
            "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_id": "t3"}),
        "IMPERSONATE" => json!({"impersonator": "root-admin", "impersonator_realm": "master"}),
        "USER_DISABLED_BY_TEMPORARY_LOCKOUT" | "USER_DISABLED_BY_PERMANENT_LOCKOUT" => {
            json!({"username": "alice"})
        }
        _ => json!({"auth_method": "openid-connect", "username": "alice"}),
    }
}

/// A Keycloak user event of type `ty` in the Contract 1 envelope.
pub fn user_event(ty: &str) -> Fixture {
    let mut event = json!({
        "id": format!("ev-{ty}"), "time": T0, "type": ty, "realmId": "9f1c1f2e-realm",
        "clientId": "account-console", "userId": "0b3c5d7e-user", "sessionId": "5e55-session",
        "ipAddress": "192.0.2.10", "details": details(ty)
    });
    if ty.ends_with("_ERROR") {
        event["error"] = json!("invalid_user_credentials");
        if let Some(o) = event.as_object_mut() {
            o.remove("sessionId");
        }
    }
    envelope("user-event", event, ty.to_string())
}

/// A Keycloak admin event.
pub fn admin_event(resource: &str, op: &str, path: &str, representation: Option<&str>) -> Fixture {
    let mut event = json!({
        "id": format!("adm-{resource}-{op}"), "time": T0, "realmId": "9f1c1f2e-realm",
        "authDetails": {"realmId": "master", "clientId": "security-admin-console",
            "userId": "a11ce-admin", "ipAddress": "203.0.113.9"},
        "operationType": op, "resourceType": resource, "resourcePath": path
    });
    if let Some(r) = representation {
        event["representation"] = json!(r);
    }
    envelope("admin-event", event, format!("{resource}:{op}"))
}

fn envelope(kind: &str, event: Value, event_type: String) -> Fixture {
    let id = event.get("id").and_then(Value::as_str).map(str::to_string);
    Fixture {
        name: event_type.clone(),
        record: json!({"timestamp": "2025-02-12T19:27:50.156Z", "eventType": kind, "event": event}),
        kind: Kind::from_name(kind),
        event_type,
        id,
    }
}

/// A record of another producer, classified as `other` with `event_type`.
pub fn other(name: &str, record: Value, event_type: &str) -> Fixture {
    let id = record.get("id").and_then(Value::as_str).map(str::to_string);
    Fixture {
        name: name.to_string(),
        record,
        kind: Kind::Other,
        event_type: event_type.to_string(),
        id,
    }
}

/// Every Keycloak user event type of the mapping table and its `_ERROR` twin.
pub fn keycloak_user_events() -> Vec<Fixture> {
    let mut out = Vec::new();
    for (ty, _, _) in authtrail_normalize::table::KEYCLOAK_USER {
        out.push(user_event(ty));
        out.push(user_event(&format!("{ty}_ERROR")));
    }
    let mut not_found = user_event("LOGIN_ERROR");
    not_found.name = "LOGIN_ERROR (user not found)".into();
    if let Some(e) = not_found
        .record
        .get_mut("event")
        .and_then(Value::as_object_mut)
    {
        e.remove("userId");
        e.insert("error".into(), json!("user_not_found"));
    }
    out.push(not_found);
    let mut password = user_event("UPDATE_CREDENTIAL");
    password.name = "UPDATE_CREDENTIAL (password)".into();
    password.record["event"]["details"]["credential_type"] = json!("password");
    out.push(password);
    let mut saml = user_event("LOGIN");
    saml.name = "LOGIN (saml)".into();
    saml.record["event"]["details"]["auth_method"] = json!("saml");
    out.push(saml);
    out
}

/// Keycloak admin events of every rule.
pub fn keycloak_admin_events() -> Vec<Fixture> {
    let user_repr = r#"{"username":"carol","email":"carol@example.com","enabled":true}"#;
    let roles = r#"[{"id":"r1","name":"auditor","composite":false,"clientRole":false}]"#;
    let group = r#"{"id":"g1","name":"ops","path":"/ops","subGroups":[]}"#;
    let mut out = vec![
        admin_event("USER", "CREATE", "users/u-1", Some(user_repr)),
        admin_event("USER", "UPDATE", "users/u-1", Some(user_repr)),
        admin_event("USER", "DELETE", "users/u-1", None),
        admin_event(
            "USER",
            "ACTION",
            "users/u-1/reset-password",
            Some(r#"{"type":"password","temporary":true}"#),
        ),
        admin_event(
            "USER",
            "ACTION",
            "users/u-1/execute-actions-email",
            Some(r#"["UPDATE_PASSWORD"]"#),
        ),
        admin_event("USER", "ACTION", "users/u-1/logout", None),
        admin_event("USER_SESSION", "DELETE", "sessions/s-1", None),
        admin_event(
            "CLIENT",
            "UPDATE",
            "clients/c-1",
            Some(r#"{"id":"c-1","clientId":"webapp","enabled":true}"#),
        ),
        admin_event(
            "CLIENT",
            "CREATE",
            "clients/c-2",
            Some(r#"{"clientId":"app-x","enabled":true}"#),
        ),
        admin_event(
            "GROUP_MEMBERSHIP",
            "CREATE",
            "users/u-1/groups/g1",
            Some(group),
        ),
        admin_event(
            "GROUP_MEMBERSHIP",
            "DELETE",
            "users/u-1/groups/g1",
            Some(group),
        ),
        admin_event(
            "REALM_ROLE_MAPPING",
            "CREATE",
            "users/u-1/role-mappings/realm",
            Some(roles),
        ),
        admin_event(
            "REALM_ROLE_MAPPING",
            "DELETE",
            "users/u-1/role-mappings/realm",
            Some(roles),
        ),
        admin_event(
            "CLIENT_ROLE_MAPPING",
            "CREATE",
            "users/u-1/role-mappings/clients/c-1",
            Some(roles),
        ),
        admin_event(
            "REALM_ROLE_MAPPING",
            "CREATE",
            "groups/g1/role-mappings/realm",
            Some(roles),
        ),
        admin_event("GROUP", "CREATE", "groups/g2", Some(r#"{"name":"team-a"}"#)),
        admin_event(
            "REALM",
            "UPDATE",
            "",
            Some(r#"{"realm":"demo","enabled":true}"#),
        ),
        admin_event(
            "IDENTITY_PROVIDER",
            "CREATE",
            "identity-provider/instances/google",
            Some(r#"{"alias":"google"}"#),
        ),
        admin_event("COMPONENT", "UPDATE", "components/k-1", None),
        admin_event(
            "AUTH_FLOW",
            "ACTION",
            "authentication/flows/browser/copy",
            None,
        ),
    ];
    let mut failed = admin_event("USER", "CREATE", "users/u-2", Some(user_repr));
    failed.name = "USER:CREATE (error)".into();
    failed.record["event"]["error"] = json!("unknown_error");
    out.push(failed);
    out
}

/// Foxpass records as Foxpass documents them (and the looser shape the other tests use).
pub fn foxpass_records() -> Vec<Fixture> {
    vec![
        other(
            "ldap:bind",
            json!({"service": "ldap", "method": "bind", "message": "bind succeeded",
                "timestamp": "2025-02-12 19:27:50.156", "success": true,
                "bind_dn": "uid=bob,ou=people,dc=example,dc=com", "user_type": "user",
                "username": "bob"}),
            "ldap:bind",
        ),
        other(
            "ldap:bind (failed, user not found)",
            json!({"service": "ldap", "method": "bind", "message": "user not found",
                "timestamp": "2025-02-12 19:27:50.156", "success": false,
                "bind_dn": "uid=nobody,ou=people,dc=example,dc=com", "user_type": null,
                "username": null}),
            "ldap:bind",
        ),
        other(
            "radius:authorize",
            json!({"service": "radius", "method": "authorize", "message": "authorized",
                "timestamp": "2025-02-12 19:27:50.156", "success": true,
                "ipAddress": "198.51.100.20", "username": "bob"}),
            "radius:authorize",
        ),
        other(
            "radius:authorize (failed)",
            json!({"service": "radius", "method": "authorize", "message": "bad password",
                "timestamp": "2025-02-12 19:27:50.156", "success": false,
                "ipAddress": "198.51.100.20", "username": "bob"}),
            "radius:authorize",
        ),
        other(
            "ldap:bind (loose shape)",
            json!({"service": "ldap", "method": "bind", "message": "bind succeeded",
                "timestamp": "2025-02-12T19:27:50.156Z", "success": true, "user": "bob",
                "ip": "192.0.2.7", "id": "fx-1"}),
            "ldap:bind",
        ),
    ]
}

/// Blitz Identity Provider records.
pub fn blitz_records() -> Vec<Fixture> {
    let rec = |ty: &str, extra: Value| {
        let mut r = json!({"id": format!("bz-{ty}"), "type": ty, "date": T0,
            "ip": "198.51.100.30", "ua": "Mozilla/5.0", "subjectId": "s-42", "login": "dave",
            "rpId": "portal", "sessionId": "bz-session"});
        if let (Some(o), Some(e)) = (r.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        other(ty, r, ty)
    };
    vec![
        rec("login", json!({})),
        rec("login_failed", json!({"error": "wrong_password"})),
        rec("logout", json!({})),
        rec("user_locked", json!({})),
        rec(
            "admin_user_created",
            json!({"objectId": "s-43", "objectName": "erin"}),
        ),
        rec("admin_role_removed", json!({"objectId": "role-7"})),
        rec("admin_settings_viewed", json!({})),
    ]
}

/// Records no mapping knows.
pub fn unknown_records() -> Vec<Fixture> {
    let mut custom = user_event("CUSTOM_REQUIRED_ACTION");
    custom.name = "CUSTOM_REQUIRED_ACTION".into();
    vec![
        custom,
        other(
            "ForgeRock-style",
            json!({"eventName": "AM-SESSION-CREATED", "_id": "fr-1", "timestamp": "2025-02-12T19:27:50.156Z",
                "userId": "id=demo,ou=user", "trackingIds": ["t1"]}),
            "AM-SESSION-CREATED",
        ),
        other("no type", json!({"a": 1, "line": "x\ny"}), "unknown"),
        envelope("user-event", json!("not an object"), "UNKNOWN".into()),
    ]
}

/// Every mapped fixture.
pub fn mapped() -> Vec<Fixture> {
    let mut all = keycloak_user_events();
    all.extend(keycloak_admin_events());
    all.extend(foxpass_records());
    all.extend(blitz_records());
    all
}

/// The redacted value of `mode` (`mask` or `hash`) for `v`.
fn redacted(mode: &str, v: &Value) -> Value {
    match mode {
        "mask" => json!("<redacted>"),
        _ => json!(format!(
            "hmac-sha256:{:064x}",
            v.to_string().len() as u128 * 0x9e37_79b9_7f4a_7c15
        )),
    }
}

/// `f` with the forwarder's default redactions applied (`mask` or `hash`): user events'
/// `ipAddress` and `details.username`, admin events' `authDetails.ipAddress` and
/// `representation`, other records' `ip`, `ipAddress`, `username`, `user` and `login`.
pub fn redact(f: &Fixture, mode: &str) -> Fixture {
    let mut out = f.clone();
    out.name = format!("{} ({mode}ed)", f.name);
    let pointers: &[&str] = match f.kind {
        Kind::UserEvent => &["/event/ipAddress", "/event/details/username"],
        Kind::AdminEvent => &["/event/authDetails/ipAddress", "/event/representation"],
        Kind::Other => &["/ip", "/ipAddress", "/username", "/user", "/login"],
    };
    for p in pointers {
        if let Some(v) = out.record.pointer_mut(p)
            && !v.is_null()
        {
            *v = redacted(mode, v);
        }
    }
    out
}
