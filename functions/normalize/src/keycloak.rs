//! MPAS / Keycloak events (Contract 1 envelopes): user events (EventRepresentation) and admin
//! events (AdminEventRepresentation), read into [`Facts`].

use std::borrow::Cow;

use serde_json::Value;

use crate::Kind;
use crate::facts::{Facts, Person, Reader};
use crate::node::{Node, Obj};
use crate::table::{self, AdminRule, Class, Mapping, Refine, Status};
use crate::unmapped::Unmapped;

/// Second-factor credential types: a `credential_type` among them on an authentication means
/// MFA; updating or removing one is an MFA factor change.
const SECOND_FACTORS: &[&str] = &[
    "otp",
    "totp",
    "hotp",
    "webauthn",
    "webauthn-passwordless",
    "recovery-authn-codes",
];

/// Reads the envelope's `event`; `None` when the mapping does not know it.
pub(crate) fn read<'a>(f: &mut Facts<'a>, record: &'a Node<'a>, kind: Kind) -> Option<Mapping> {
    let event = record.as_obj()?.get_obj("event")?;
    match kind {
        Kind::UserEvent => user(f, event),
        Kind::AdminEvent => admin(f, event),
        Kind::Other => None,
    }
}

/// The protocol of `details.auth_method` (`openid-connect` OpenID, `saml` SAML), else OAuth 2.0
/// for token-endpoint grants (`grant_type`), else unknown.
fn protocol(details: Option<&Obj<'_>>) -> (u8, &'static str) {
    let get = |k: &str| details.and_then(|d| d.get_str(k));
    match get("auth_method") {
        Some("openid-connect") => (4, "OpenID"),
        Some("saml") => (5, "SAML"),
        Some("oauth2") => (6, "OAUTH 2.0"),
        _ if get("grant_type").is_some() => (6, "OAUTH 2.0"),
        _ => (0, "Unknown"),
    }
}

/// A user event.
fn user<'a>(f: &mut Facts<'a>, event: &'a Obj<'a>) -> Option<Mapping> {
    let mut ev = Reader::new(event);
    let ty = ev.take("type", true).unwrap_or(f.event_type);
    let details_obj = event.get_obj("details");
    let mut details = details_obj.map(Reader::new);
    let found = table::keycloak_user(ty);
    let failed = ty.ends_with("_ERROR");
    let (mut mapping, refine, status) = found.unwrap_or((
        Mapping::BASE,
        Refine::None,
        if failed {
            Status::Failure
        } else {
            Status::Success
        },
    ));
    let credential = details.as_ref().and_then(|d| d.peek("credential_type"));
    if refine == Refine::CredentialType && credential == Some("password") {
        mapping = match mapping.activity {
            10 => Mapping::new(Class::AccountChange, 3),
            _ => Mapping::other(Class::AccountChange, "Remove Password"),
        };
    }
    f.status = status;
    let class = mapping.class;
    let mapped = class != Class::Base;
    let auth = class == Class::Authentication;
    let has_src = matches!(class, Class::Authentication | Class::AccountChange);
    ev.mark("id");
    if event.get("time").is_some_and(Node::is_number) {
        ev.mark("time");
    }
    f.tenant = ev.take("realmId", true);
    f.reason = ev.take("error", true);
    let uid = ev.take("userId", mapped);
    let name = details
        .as_mut()
        .and_then(|d| d.user_name(&["username"], uid.is_some(), mapped));
    f.user = Person {
        uid: uid.map(Cow::Borrowed),
        name,
        domain: None,
    };
    f.session = ev.take("sessionId", auth);
    f.service = ev.take("clientId", auth);
    f.src = ev.address(&["ipAddress"], has_src);
    if let Some(d) = details.as_mut() {
        if auth && d.peek("auth_method").is_some() {
            d.mark("auth_method");
        }
        f.user_agent = d.take("user_agent", has_src);
        if ty.starts_with("IMPERSONATE") {
            f.actor = Some(Person {
                uid: None,
                name: d.take("impersonator", auth).map(Cow::Borrowed),
                domain: d.take("impersonator_realm", auth),
            });
        }
    }
    f.protocol = Some(protocol(details_obj));
    if auth && credential.is_some_and(|c| SECOND_FACTORS.contains(&c)) {
        f.is_mfa = Some(true);
    }
    let nested = details
        .zip(event.position("details"))
        .map(|(d, at)| (at, d.used));
    f.unmapped = Unmapped::rest_nested(event, ev.used, [nested, None]);
    Some(mapping).filter(|m| m.class != Class::Base)
}

/// An admin event.
fn admin<'a>(f: &mut Facts<'a>, event: &'a Obj<'a>) -> Option<Mapping> {
    let mut ev = Reader::new(event);
    let op = ev.take("operationType", true).unwrap_or("UNKNOWN");
    let resource_type = ev.peek("resourceType").unwrap_or("UNKNOWN");
    let path = ev.peek("resourcePath").unwrap_or_default();
    f.resource_path = Some(path).filter(|p| !p.is_empty());
    let segments: Vec<&'a str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rule = table::admin_rule(resource_type);
    let on_group = segments.first() == Some(&"groups");
    let action = segments.last().copied().unwrap_or_default();
    let mapping = table::keycloak_admin(rule, op, on_group, action);
    let class = mapping.class;
    ev.mark("id");
    if event.get("time").is_some_and(Node::is_number) {
        ev.mark("time");
    }
    f.tenant = ev.take("realmId", true);
    f.reason = ev.take("error", true);
    f.status = if f.reason.is_some() {
        Status::Failure
    } else {
        Status::Success
    };
    let auth_details = event.get_obj("authDetails");
    let mut who = auth_details.map(Reader::new);
    if let Some(a) = who.as_mut() {
        f.actor = Some(Person {
            uid: a.take("userId", true).map(Cow::Borrowed),
            name: None,
            domain: a.take("realmId", true),
        });
        f.invoked_by = a.take("clientId", true);
        f.src = a.address(&["ipAddress"], class == Class::AccountChange);
    }
    let target = Target {
        segments: &segments,
        path,
        resource_type,
        representation: ev.peek("representation"),
    };
    if rule == AdminRule::Entity {
        ev.mark("resourceType");
    }
    target.read(f, rule, on_group);
    let nested = who
        .zip(event.position("authDetails"))
        .map(|(a, at)| (at, a.used));
    f.unmapped = Unmapped::rest_nested(event, ev.used, [nested, None]);
    Some(mapping)
}

/// What an admin event acted on: its resource path (and its segments), resource type and
/// representation.
struct Target<'s, 'a> {
    segments: &'s [&'a str],
    path: &'a str,
    resource_type: &'a str,
    representation: Option<&'a str>,
}

impl<'a> Target<'_, 'a> {
    /// The id after `collection` in the path (`users/{id}/...`).
    fn id_after(&self, collection: &str) -> Option<&'a str> {
        let at = self.segments.iter().position(|s| *s == collection)?;
        self.segments.get(at + 1).copied()
    }

    /// The target user, group, privileges or entity, by the resource type's rule.
    fn read(&self, f: &mut Facts<'a>, rule: AdminRule, on_group: bool) {
        let representation = self.representation;
        let resource_type = self.resource_type;
        match rule {
            AdminRule::User => {
                f.user.uid = self.id_after("users").map(Cow::Borrowed);
                f.user.name = repr_string(representation, &["username"]).map(Cow::Owned);
            }
            AdminRule::RoleMapping => {
                let target = if on_group { "groups" } else { "users" };
                let id = self.id_after(target).map(Cow::Borrowed);
                if on_group {
                    f.group = Some(Person {
                        uid: id,
                        name: None,
                        domain: None,
                    });
                } else {
                    f.user.uid = id;
                }
                f.privileges = role_names(representation, self.path);
            }
            AdminRule::GroupMembership => {
                f.user.uid = self.id_after("users").map(Cow::Borrowed);
                f.group = Some(Person {
                    uid: self.id_after("groups").map(Cow::Borrowed),
                    name: repr_string(representation, &["name"]).map(Cow::Owned),
                    domain: None,
                });
            }
            AdminRule::Entity => {
                let uid = self.segments.get(1).copied();
                let name = repr_string(
                    representation,
                    &["clientId", "alias", "name", "realm", "username"],
                )
                .map(Cow::Owned)
                .or_else(|| uid.is_none().then_some(Cow::Borrowed(resource_type)));
                f.entity = Some(super::facts::Entity {
                    kind: resource_type,
                    uid,
                    name,
                });
            }
        }
    }
}

/// The first string among `keys` of the representation (a JSON document in a string), when it
/// is readable (it is not when redacted, or when admin event details are off).
fn repr_string(representation: Option<&str>, keys: &[&str]) -> Option<String> {
    let text = representation?;
    if !text.starts_with('{') {
        return None;
    }
    let v: Value = serde_json::from_str(text).ok()?;
    keys.iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .map(str::to_string)
}

/// The role names of a role-mapping representation (a JSON array of RoleRepresentation); when
/// it is not readable, what the resource path says (`role-mappings/realm`,
/// `role-mappings/clients/{id}`), so that the privileges are never empty.
fn role_names<'a>(representation: Option<&str>, path: &'a str) -> Vec<Cow<'a, str>> {
    let names: Vec<Cow<'a, str>> = representation
        .filter(|t| t.starts_with('['))
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
        .and_then(|v| {
            v.as_array().map(|roles| {
                roles
                    .iter()
                    .filter_map(|r| r.get("name").and_then(Value::as_str))
                    .map(|n| Cow::Owned(n.to_string()))
                    .collect()
            })
        })
        .unwrap_or_default();
    if !names.is_empty() {
        return names;
    }
    let scope = path
        .split_once("role-mappings/")
        .map_or(path, |(_, rest)| rest);
    vec![Cow::Borrowed(if scope.is_empty() {
        "unknown"
    } else {
        scope
    })]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_come_from_the_auth_method_or_the_grant() {
        fn d(text: &str) -> Option<Obj<'_>> {
            Node::parse(text).ok().and_then(|n| n.as_obj().cloned())
        }
        let oidc = d(r#"{"auth_method": "openid-connect"}"#);
        assert_eq!(protocol(oidc.as_ref()), (4, "OpenID"));
        let saml = d(r#"{"auth_method": "saml"}"#);
        assert_eq!(protocol(saml.as_ref()), (5, "SAML"));
        let grant = d(r#"{"grant_type": "refresh_token"}"#);
        assert_eq!(protocol(grant.as_ref()), (6, "OAUTH 2.0"));
        assert_eq!(protocol(None), (0, "Unknown"));
    }

    #[test]
    fn role_names_come_from_the_representation_else_the_path() {
        let repr = r#"[{"id":"r1","name":"admin"},{"id":"r2","name":"auditor"}]"#;
        assert_eq!(
            role_names(Some(repr), "users/u/role-mappings/realm"),
            vec!["admin", "auditor"]
        );
        assert_eq!(
            role_names(Some("<redacted>"), "users/u/role-mappings/clients/c1"),
            vec!["clients/c1"]
        );
        assert_eq!(role_names(None, ""), vec!["unknown"]);
    }
}
