//! ECS 8.x documents: a record's facts written with the ECS
//! categorization fields (`event.kind`, `event.category`, `event.type`, `event.outcome`, the
//! last always set), `user.*` (who acted: the user who authenticated, the admin of an admin
//! event), `user.target.*` and `group.*` (what an admin change acted on), `source.ip`
//! (`source.address` for a value that is not an IP address, such as a pseudonym),
//! `related.user` / `related.ip`, `labels.*` for the identifiers ECS has no field for, and
//! the record itself as text in `event.original`. Records the mapping does not know carry the
//! tag `authtrail-unmapped`, no category, and `event.outcome: unknown` unless the source says.

use std::borrow::Cow;

use serde::Serialize;

use crate::facts::{Address, Facts, Person};
use crate::node::Node;
use crate::table::{Class, Mapping};
use crate::time::Rfc3339;
use crate::{ECS_VERSION, Product};

/// The tag of documents whose record the mapping does not know.
pub const UNMAPPED_TAG: &str = "authtrail-unmapped";

/// One ECS document, borrowing from the facts and the record.
#[derive(Debug, Serialize)]
pub(crate) struct Document<'f> {
    #[serde(rename = "@timestamp")]
    timestamp: Rfc3339,
    ecs: EcsVersion,
    event: Event<'f>,
    observer: Observer,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'f str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<User<'f>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<Group<'f>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<Source<'f>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<UserAgent<'f>>,
    related: Related<'f>,
    labels: Labels<'f>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<[&'static str; 1]>,
}

#[derive(Debug, Serialize)]
struct EcsVersion {
    version: &'static str,
}

#[derive(Debug, Serialize)]
struct Event<'f> {
    kind: &'static str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    category: &'static [&'static str],
    #[serde(rename = "type", skip_serializing_if = "<[_]>::is_empty")]
    kind_of: &'static [&'static str],
    action: &'f str,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'f str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'f str>,
    provider: &'static str,
    original: Cow<'f, str>,
}

#[derive(Debug, Serialize)]
struct Observer {
    vendor: &'static str,
    product: &'static str,
}

#[derive(Debug, Serialize)]
struct User<'f> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'f str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'f str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<&'f str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<Target<'f>>,
}

#[derive(Debug, Serialize)]
struct Target<'f> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'f str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'f str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<&'f str>,
}

#[derive(Debug, Serialize)]
struct Group<'f> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'f str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'f str>,
}

#[derive(Debug, Serialize)]
struct Source<'f> {
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<&'f str>,
    address: &'f str,
}

#[derive(Debug, Serialize)]
struct UserAgent<'f> {
    original: &'f str,
}

#[derive(Debug, Serialize)]
struct Related<'f> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    user: Vec<&'f str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ip: Vec<&'f str>,
}

#[derive(Debug, Serialize)]
struct Labels<'f> {
    #[serde(skip_serializing_if = "Option::is_none")]
    realm_id: Option<&'f str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'f str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<&'f str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_protocol: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_type: Option<&'f str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_path: Option<&'f str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entity_name: Option<&'f str>,
}

/// `event.category` and `event.type` of a mapping (ECS's allowed values, each type expected
/// for one of the categories).
pub fn categorize(m: &Mapping) -> (&'static [&'static str], &'static [&'static str]) {
    const AUTH_SESSION: &[&str] = &["authentication", "session"];
    const AUTH: &[&str] = &["authentication"];
    const IAM: &[&str] = &["iam"];
    match (m.class, m.activity) {
        (Class::Base, _) => (&[], &[]),
        (Class::Authentication, 1) => (AUTH_SESSION, &["start"]),
        (Class::Authentication, 2) => (AUTH_SESSION, &["end"]),
        (Class::Authentication, _) => (AUTH, &["info"]),
        (Class::AccountChange, 1) => (IAM, &["user", "creation"]),
        (Class::AccountChange, 6) => (IAM, &["user", "deletion"]),
        (Class::AccountChange, _) | (Class::UserAccess, _) => (IAM, &["user", "change"]),
        (Class::GroupManagement, 5) => (IAM, &["group", "deletion"]),
        (Class::GroupManagement, 6) => (IAM, &["group", "creation"]),
        (Class::GroupManagement, _) => (IAM, &["group", "change"]),
        (Class::EntityManagement, 1) => (IAM, &["admin", "creation"]),
        (Class::EntityManagement, 4) => (IAM, &["admin", "deletion"]),
        (Class::EntityManagement, 2) => (IAM, &["admin", "info"]),
        (Class::EntityManagement, _) => (IAM, &["admin", "change"]),
    }
}

/// Every user name and id of the event, once each.
fn related_users<'f>(f: &'f Facts<'_>) -> Vec<&'f str> {
    let mut users: Vec<&'f str> = Vec::new();
    for p in [Some(&f.user), f.actor.as_ref()].into_iter().flatten() {
        for v in [p.name.as_deref(), p.uid.as_deref()].into_iter().flatten() {
            if !users.contains(&v) {
                users.push(v);
            }
        }
    }
    users
}

/// `labels`: the identifiers ECS has no field for.
fn labels<'f>(f: &'f Facts<'_>) -> Labels<'f> {
    Labels {
        realm_id: f.tenant,
        client_id: f
            .service
            .filter(|_| f.product != Product::Foxpass)
            .or(f.invoked_by),
        session_id: f.session,
        auth_protocol: f
            .protocol
            .filter(|p| p.0 != 0 && f.mapping.class == Class::Authentication)
            .map(|p| p.1),
        resource_type: f.entity.as_ref().map(|e| e.kind),
        resource_path: f.resource_path.filter(|_| f.product == Product::Keycloak),
        entity_name: f.entity.as_ref().and_then(|e| e.name.as_deref()),
    }
}

fn target<'f>(p: &'f Person<'_>, domain: Option<&'f str>) -> Option<Target<'f>> {
    p.is_known().then(|| Target {
        id: p.uid.as_deref(),
        name: p.name.as_deref(),
        domain: p.domain.or(domain),
    })
}

/// The ECS document of `f`; `record` and its text `text` give `event.original` (the text as it
/// came when given, else the record's compact JSON).
pub(crate) fn document<'f>(
    f: &'f Facts<'_>,
    record: &Node<'_>,
    text: Option<&'f str>,
) -> Document<'f> {
    let (category, kind_of) = categorize(&f.mapping);
    let admin_like = f.actor.is_some();
    let (acting, acted_on) = match &f.actor {
        Some(actor) => (actor, Some(&f.user)),
        None => (&f.user, None),
    };
    let acting_domain = if admin_like { acting.domain } else { f.tenant };
    let user_target = acted_on.and_then(|p| target(p, f.tenant));
    let user = (acting.is_known() || user_target.is_some()).then(|| User {
        id: acting.uid.as_deref(),
        name: acting.name.as_deref(),
        domain: acting.domain.or(acting_domain),
        target: user_target,
    });
    let original = match text {
        Some(t) => Cow::Borrowed(t),
        None => Cow::Owned(record.to_json()),
    };
    Document {
        timestamp: Rfc3339(f.time_ms),
        ecs: EcsVersion {
            version: ECS_VERSION,
        },
        event: Event {
            kind: "event",
            category,
            kind_of,
            action: f.event_type,
            outcome: f.status.outcome(),
            id: f.id,
            reason: f.reason,
            provider: f.product.provider(),
            original,
        },
        observer: Observer {
            vendor: f.product.vendor(),
            product: f.product.name(),
        },
        message: f.message,
        user,
        group: f.group.as_ref().filter(|g| g.is_known()).map(|g| Group {
            id: g.uid.as_deref(),
            name: g.name.as_deref(),
        }),
        source: f.src.map(|a| Source {
            ip: match a {
                Address::Ip(ip) => Some(ip),
                Address::Other(_) => None,
            },
            address: a.text(),
        }),
        user_agent: f.user_agent.map(|original| UserAgent { original }),
        related: Related {
            user: related_users(f),
            ip: match f.src {
                Some(Address::Ip(ip)) => vec![ip],
                _ => Vec::new(),
            },
        },
        labels: labels(f),
        tags: (!f.is_mapped()).then_some([UNMAPPED_TAG]),
    }
}
