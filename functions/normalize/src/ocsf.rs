//! OCSF 1.1.0 events: a record's facts written as an event of its class
//! (category 3, Identity & Access Management), or as the Base Event (`class_uid` 0) with the
//! source record under `unmapped` when the mapping does not know it.
//!
//! Each class gets only the attributes the schema gives it: `src_endpoint` and `http_request`
//! in Authentication and Account Change, `session`, `service` and `auth_protocol_id` in
//! Authentication; source fields with no attribute in the class stay in `unmapped`. `actor`
//! belongs to the `host` profile in Entity, User Access and Group Management: those events list
//! it in `metadata.profiles`.

use serde::Serialize;

use crate::facts::{Address, Facts, Person};
use crate::table::{Class, TypeName, severity_caption};
use crate::unmapped::Unmapped;
use crate::{OCSF_VERSION, Product};

/// One OCSF event, borrowing from the facts it is written from.
#[derive(Debug, Serialize)]
pub(crate) struct Event<'f> {
    class_uid: u16,
    class_name: &'static str,
    category_uid: u8,
    category_name: &'static str,
    activity_id: u8,
    activity_name: &'static str,
    type_uid: u32,
    type_name: TypeName,
    severity_id: u8,
    severity: &'static str,
    status_id: u8,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_detail: Option<&'f str>,
    time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'f str>,
    metadata: Metadata<'f>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<Actor<'f>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<User<'f>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_endpoint: Option<Endpoint<'f>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<Uid<'f>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<Named<'f>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_protocol_id: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_protocol: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_mfa: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_request: Option<HttpRequest<'f>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entity: Option<ManagedEntity<'f>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<Named<'f>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    privileges: Option<Vec<&'f str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unmapped: Option<&'f Unmapped<'f>>,
}

#[derive(Debug, Serialize)]
struct Metadata<'f> {
    version: &'static str,
    product: ProductOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'f str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant_uid: Option<&'f str>,
    log_provider: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    profiles: Option<&'static [&'static str]>,
}

#[derive(Debug, Serialize)]
struct ProductOut {
    name: &'static str,
    vendor_name: &'static str,
}

#[derive(Debug, Serialize)]
struct User<'f> {
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'f str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'f str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<&'f str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    type_id: Option<u8>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
}

#[derive(Debug, Serialize)]
struct Actor<'f> {
    user: User<'f>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invoked_by: Option<&'f str>,
}

#[derive(Debug, Serialize)]
struct Endpoint<'f> {
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<&'f str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'f str>,
}

#[derive(Debug, Serialize)]
struct Uid<'f> {
    uid: &'f str,
}

#[derive(Debug, Serialize)]
struct Named<'f> {
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'f str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'f str>,
}

#[derive(Debug, Serialize)]
struct HttpRequest<'f> {
    user_agent: &'f str,
}

#[derive(Debug, Serialize)]
struct ManagedEntity<'f> {
    #[serde(rename = "type")]
    kind: &'f str,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'f str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'f str>,
}

/// What names a user who is not known at all (the classes that require a user).
const UNKNOWN_USER: &str = "unknown";

fn user<'f>(p: &'f Person<'_>, admin: bool) -> User<'f> {
    let (uid, name) = (p.uid.as_deref(), p.name.as_deref());
    User {
        uid,
        name: name.or((uid.is_none()).then_some(UNKNOWN_USER)),
        domain: p.domain,
        type_id: admin.then_some(2),
        kind: admin.then_some("Admin"),
    }
}

fn endpoint(a: Address<'_>) -> Endpoint<'_> {
    match a {
        Address::Ip(ip) => Endpoint {
            ip: Some(ip),
            uid: None,
        },
        Address::Other(text) => Endpoint {
            ip: None,
            uid: Some(text),
        },
    }
}

/// The OCSF event of `f`.
pub(crate) fn event<'f>(f: &'f Facts<'_>) -> Event<'f> {
    let m = &f.mapping;
    let class = m.class;
    let severity_id = f.severity_id();
    let auth = class == Class::Authentication;
    let with_src = matches!(class, Class::Authentication | Class::AccountChange);
    let needs_user = matches!(
        class,
        Class::Authentication | Class::AccountChange | Class::UserAccess
    );
    let with_user = needs_user || (class == Class::GroupManagement && f.user.is_known());
    let actor = f.actor.as_ref().filter(|_| class != Class::Base);
    let host_profile = actor.is_some()
        && matches!(
            class,
            Class::EntityManagement | Class::UserAccess | Class::GroupManagement
        );
    let product = f.product;
    Event {
        class_uid: class.uid(),
        class_name: class.name(),
        category_uid: class.category_uid(),
        category_name: class.category_name(),
        activity_id: m.activity,
        activity_name: m.activity_name(),
        type_uid: m.type_uid(),
        type_name: m.type_name(),
        severity_id,
        severity: severity_caption(severity_id),
        status_id: f.status.id(),
        status: f.status.caption(),
        status_detail: f.reason,
        time: f.time_ms,
        message: f.message,
        metadata: metadata(f, host_profile),
        actor: actor.map(|a| Actor {
            user: user(a, true),
            invoked_by: f.invoked_by,
        }),
        user: with_user.then(|| user(&f.user, false)),
        src_endpoint: f.src.filter(|_| with_src).map(endpoint),
        session: f.session.filter(|_| auth).map(|uid| Uid { uid }),
        service: auth.then(|| Named {
            uid: None,
            name: Some(service_name(f, product)),
        }),
        auth_protocol_id: f.protocol.filter(|_| auth).map(|p| p.0),
        auth_protocol: f.protocol.filter(|_| auth).map(|p| p.1),
        is_mfa: f.is_mfa.filter(|_| auth),
        http_request: f
            .user_agent
            .filter(|_| with_src)
            .map(|user_agent| HttpRequest { user_agent }),
        entity: f
            .entity
            .as_ref()
            .filter(|_| class == Class::EntityManagement)
            .map(|e| ManagedEntity {
                kind: e.kind,
                uid: e.uid,
                name: e.name.as_deref(),
            }),
        group: (class == Class::GroupManagement).then(|| group(f)),
        privileges: (matches!(class, Class::UserAccess | Class::GroupManagement)
            && !f.privileges.is_empty())
        .then(|| f.privileges.iter().map(|p| p.as_ref()).collect()),
        unmapped: f.has_unmapped().then_some(&f.unmapped),
    }
}

/// `metadata`, listing the `host` profile when `host_profile`.
fn metadata<'f>(f: &'f Facts<'_>, host_profile: bool) -> Metadata<'f> {
    Metadata {
        version: OCSF_VERSION,
        product: ProductOut {
            name: f.product.name(),
            vendor_name: f.product.vendor(),
        },
        uid: f.id,
        tenant_uid: f.tenant,
        log_provider: "authtrail",
        profiles: host_profile.then_some(&["host"]),
    }
}

/// The group of a Group Management event (named `unknown` when the record names none).
fn group<'f>(f: &'f Facts<'_>) -> Named<'f> {
    let g = f.group.as_ref();
    let (uid, name) = (
        g.and_then(|g| g.uid.as_deref()),
        g.and_then(|g| g.name.as_deref()),
    );
    Named {
        uid,
        name: name.or(uid.is_none().then_some(UNKNOWN_USER)),
    }
}

/// The service authenticated to: the client, else the realm, else the product.
fn service_name<'f>(f: &'f Facts<'_>, product: Product) -> &'f str {
    f.service.or(f.tenant).unwrap_or(product.name())
}
