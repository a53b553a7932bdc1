//! Records of other producers: Foxpass (LDAP `bind`, RADIUS `authorize`) and Blitz Identity
//! Provider, read into [`Facts`]. Field names are read in order of preference; the first
//! present wins.

use std::borrow::Cow;

use crate::facts::{Entity, Facts, Person, Reader};
use crate::node::{Node, Obj};
use crate::table::{self, Class, Mapping, Status};
use crate::unmapped::Unmapped;

/// Where a record's time may be (the caller's classification has already read it).
const TIME_KEYS: &[&str] = &["timestamp", "time", "date", "@timestamp"];

/// Marks the time field that the classification read.
fn mark_time(r: &mut Reader<'_>) {
    if let Some(k) = TIME_KEYS.iter().find(|k| r.obj.contains_key(k)) {
        r.mark(k);
    }
}

/// A Foxpass record: `service`, `method`, `message`, `timestamp`, `success`, and `username`,
/// `bind_dn` (LDAP) or `ipAddress` (RADIUS).
pub(crate) fn foxpass<'a>(f: &mut Facts<'a>, obj: &'a Obj<'a>) -> Option<Mapping> {
    let (_, id, caption) = table::FOXPASS
        .iter()
        .find(|(name, _, _)| *name == f.event_type)?;
    let mut r = Reader::new(obj);
    f.service = r.take("service", true);
    r.mark("method");
    r.mark("id");
    mark_time(&mut r);
    f.status = match obj.get("success").and_then(Node::as_bool) {
        Some(true) => Status::Success,
        Some(false) => Status::Failure,
        None => Status::Unknown,
    };
    if obj.get("success").and_then(Node::as_bool).is_some() {
        r.mark("success");
    }
    f.message = r.take("message", true);
    let uid = r.take("bind_dn", true);
    f.user = Person {
        uid: uid.map(Cow::Borrowed),
        name: r.user_name(&["username", "user"], uid.is_some(), true),
        domain: None,
    };
    f.src = r.address(&["ipAddress", "ip"], true);
    f.protocol = Some((*id, caption));
    f.unmapped = Unmapped::rest(obj, r.used);
    Some(Mapping::new(Class::Authentication, 1))
}

/// A Blitz Identity Provider record: `type`, `id`, its time, the subject (`subjectId`,
/// `userId` or `sub`; `login`, `username` or `userName`), `ip`, `ua`, the relying party
/// (`rpId`, `clientId`), `sessionId`, `error`; `admin_*` records name the object acted on in
/// `objectId` / `targetId` and `objectName` / `targetName`.
pub(crate) fn blitz<'a>(f: &mut Facts<'a>, obj: &'a Obj<'a>) -> Option<Mapping> {
    let (mapping, status) = table::blitz(f.event_type)?;
    let class = mapping.class;
    let with_src = matches!(class, Class::Authentication | Class::AccountChange);
    let auth = class == Class::Authentication;
    let mut r = Reader::new(obj);
    r.mark("type");
    r.mark("id");
    mark_time(&mut r);
    f.reason = r.take_any(&["error", "reason"], true);
    f.status = if f.reason.is_some() {
        Status::Failure
    } else {
        status
    };
    let admin = class == Class::EntityManagement;
    let uid = r.take_any(&["subjectId", "userId", "sub"], true);
    let subject = Person {
        uid: uid.map(Cow::Borrowed),
        name: r.user_name(&["login", "username", "userName"], uid.is_some(), true),
        domain: None,
    };
    if admin {
        f.actor = Some(subject);
        let kind = f.event_type.strip_prefix("admin_").unwrap_or(f.event_type);
        let uid = r.take_any(&["objectId", "targetId"], true);
        let name = r
            .take_any(&["objectName", "targetName"], true)
            .map(Cow::Borrowed);
        f.entity = Some(Entity {
            kind,
            uid,
            name: name.or_else(|| uid.is_none().then_some(Cow::Borrowed(kind))),
        });
    } else {
        f.user = subject;
    }
    f.src = r.address(&["ip", "ipAddress"], with_src);
    f.user_agent = r.take_any(&["ua", "userAgent"], with_src);
    f.service = r.take_any(&["rpId", "clientId"], auth);
    f.session = r.take_any(&["sessionId", "sid"], auth);
    f.protocol = Some((0, "Unknown"));
    f.unmapped = Unmapped::rest(obj, r.used);
    Some(mapping)
}
