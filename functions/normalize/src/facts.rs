//! What a record means, read once from its JSON value: the mapping (class, activity, status)
//! and the parties, places and names it carries. Every format is written from these facts.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::node::{Node, Obj};
use crate::table::{Class, Mapping, Status};
use crate::unmapped::{Unmapped, Used};
use crate::{Classification, MASK, Product, keycloak, others};

/// A user: the one who authenticates, the target of an admin change, or the admin (actor).
#[derive(Debug, Clone, Default)]
pub(crate) struct Person<'a> {
    /// The user's id.
    pub uid: Option<Cow<'a, str>>,
    /// The user's name (`None` when it was masked and the id identifies the user).
    pub name: Option<Cow<'a, str>>,
    /// The realm / directory the user belongs to.
    pub domain: Option<&'a str>,
}

impl Person<'_> {
    /// Whether the record names the user at all.
    pub fn is_known(&self) -> bool {
        self.uid.is_some() || self.name.is_some()
    }
}

/// The managed entity of an Entity Management event.
#[derive(Debug, Clone)]
pub(crate) struct Entity<'a> {
    /// Its type (Keycloak's `resourceType`: `CLIENT`, `REALM`, ...).
    pub kind: &'a str,
    /// Its id, from the resource path.
    pub uid: Option<&'a str>,
    /// Its name, from the representation when readable.
    pub name: Option<Cow<'a, str>>,
}

/// The source address of a record, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Address<'a> {
    /// An IP address (IP-typed fields take it).
    Ip(&'a str),
    /// Anything else, a pseudonym for example (string-typed fields only).
    Other(&'a str),
}

impl<'a> Address<'a> {
    /// The address of `text`; `None` for the mask (it carries nothing) and empty text.
    pub fn of(text: &'a str) -> Option<Self> {
        if text.is_empty() || text == MASK {
            None
        } else if text.parse::<IpAddr>().is_ok() {
            Some(Address::Ip(text))
        } else {
            Some(Address::Other(text))
        }
    }

    /// The text as written.
    pub fn text(self) -> &'a str {
        match self {
            Address::Ip(t) | Address::Other(t) => t,
        }
    }
}

/// An OCSF `auth_protocol_id` and its caption (`auth_protocol`).
pub(crate) type Protocol = (u8, &'static str);

/// Everything the formats need to know about one record.
#[derive(Debug, Clone)]
pub(crate) struct Facts<'a> {
    /// The source product.
    pub product: Product,
    /// Class and activity ([`Mapping::BASE`] when the mapping does not know the record).
    pub mapping: Mapping,
    /// Whether the source says it succeeded.
    pub status: Status,
    /// The primary event type.
    pub event_type: &'a str,
    /// The event time, epoch milliseconds.
    pub time_ms: i64,
    /// The event id.
    pub id: Option<&'a str>,
    /// The tenant (the Keycloak realm of the event).
    pub tenant: Option<&'a str>,
    /// The user who authenticates, or the target user of a change.
    pub user: Person<'a>,
    /// Who acted, when not the user (the admin of an admin event, the impersonator).
    pub actor: Option<Person<'a>>,
    /// The client or service through which the actor acted.
    pub invoked_by: Option<&'a str>,
    /// The source address.
    pub src: Option<Address<'a>>,
    /// The session id.
    pub session: Option<&'a str>,
    /// The service (Keycloak client, Foxpass service) authenticated to.
    pub service: Option<&'a str>,
    /// The authentication protocol.
    pub protocol: Option<Protocol>,
    /// Whether a second factor was used (only when the record says so).
    pub is_mfa: Option<bool>,
    /// Why it failed (Keycloak's `error`).
    pub reason: Option<&'a str>,
    /// The source's own message.
    pub message: Option<&'a str>,
    /// The client's user agent.
    pub user_agent: Option<&'a str>,
    /// The entity an Entity Management event acts on.
    pub entity: Option<Entity<'a>>,
    /// The group a Group Management event acts on.
    pub group: Option<Person<'a>>,
    /// The privileges (role names) assigned or revoked.
    pub privileges: Vec<Cow<'a, str>>,
    /// The admin event's resource path.
    pub resource_path: Option<&'a str>,
    /// The source fields placed nowhere else (OCSF `unmapped`).
    pub(crate) unmapped: Unmapped<'a>,
}

impl<'a> Facts<'a> {
    /// Reads `record` (classified as `class`).
    pub(crate) fn read(record: &'a Node<'a>, class: &Classification<'a>) -> Self {
        let product = Product::detect(class.kind, class.event_type);
        let mut f = Facts {
            product,
            mapping: Mapping::BASE,
            status: Status::Unknown,
            event_type: class.event_type,
            time_ms: class.time_ms,
            id: class.id,
            tenant: None,
            user: Person::default(),
            actor: None,
            invoked_by: None,
            src: None,
            session: None,
            service: None,
            protocol: None,
            is_mfa: None,
            reason: None,
            message: None,
            user_agent: None,
            entity: None,
            group: None,
            privileges: Vec::new(),
            resource_path: None,
            unmapped: Unmapped::None,
        };
        let mapping = match (product, record.as_obj()) {
            (Product::Keycloak, _) => keycloak::read(&mut f, record, class.kind),
            (Product::Foxpass, Some(obj)) => others::foxpass(&mut f, obj),
            (Product::Blitz, Some(obj)) => others::blitz(&mut f, obj),
            _ => None,
        };
        match mapping {
            Some(m) => f.mapping = m,
            None => {
                f.mapping = Mapping::BASE;
                f.unmapped = Unmapped::Whole(record);
            }
        }
        f
    }

    /// Whether the mapping knows the record (it is not the Base Event).
    pub fn is_mapped(&self) -> bool {
        self.mapping.class != Class::Base
    }

    /// `severity_id` (see [`Mapping::severity_id`]).
    pub fn severity_id(&self) -> u8 {
        self.mapping.severity_id(self.status)
    }

    /// Whether OCSF's `unmapped` has anything to write.
    pub(crate) fn has_unmapped(&self) -> bool {
        !self.unmapped.is_empty()
    }
}

/// Reads source fields and records which ones were placed (for `unmapped`).
pub(crate) struct Reader<'a> {
    pub(crate) obj: &'a Obj<'a>,
    pub(crate) used: Used,
}

impl<'a> Reader<'a> {
    /// A reader of `obj`.
    pub(crate) fn new(obj: &'a Obj<'a>) -> Self {
        Self {
            obj,
            used: Used::default(),
        }
    }

    /// The string at `key`, not marked (the caller decides whether it was placed).
    pub(crate) fn peek(&self, key: &str) -> Option<&'a str> {
        self.obj.get_str(key)
    }

    /// The string at `key` and its position.
    fn find(&self, key: &str) -> Option<(usize, &'a str)> {
        let i = self.obj.position(key)?;
        Some((i, self.obj.at(i)?.as_str()?))
    }

    /// Records the member at `position` as placed when `place`.
    fn placed(&mut self, position: usize, place: bool) {
        if place {
            self.used.set(position);
        }
    }

    /// The string at `key`, marked as placed when `place` and present.
    pub(crate) fn take(&mut self, key: &str, place: bool) -> Option<&'a str> {
        let (i, v) = self.find(key)?;
        self.placed(i, place);
        Some(v)
    }

    /// The first string among `keys`, marked as placed when `place`.
    pub(crate) fn take_any(&mut self, keys: &[&str], place: bool) -> Option<&'a str> {
        keys.iter().find_map(|k| self.take(k, place))
    }

    /// Marks `key` as placed when present.
    pub(crate) fn mark(&mut self, key: &str) {
        if let Some(i) = self.obj.position(key) {
            self.used.set(i);
        }
    }

    /// The user name at one of `keys`: placed unless it is the mask and `uid_known` (the id
    /// identifies the user then; a masked name alone is kept so that the user is named at all).
    pub(crate) fn user_name(
        &mut self,
        keys: &[&str],
        uid_known: bool,
        place: bool,
    ) -> Option<Cow<'a, str>> {
        let (i, name) = keys.iter().find_map(|k| self.find(k))?;
        if name == MASK && uid_known {
            return None;
        }
        self.placed(i, place);
        Some(Cow::Borrowed(name))
    }

    /// The source address at one of `keys` (the mask is not an address and stays unmapped).
    pub(crate) fn address(&mut self, keys: &[&str], place: bool) -> Option<Address<'a>> {
        let (i, text) = keys.iter().find_map(|k| self.find(k))?;
        let address = Address::of(text)?;
        self.placed(i, place);
        Some(address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_ips_others_or_nothing_for_the_mask() {
        assert_eq!(Address::of("192.0.2.1"), Some(Address::Ip("192.0.2.1")));
        assert_eq!(Address::of("2001:db8::1"), Some(Address::Ip("2001:db8::1")));
        assert_eq!(
            Address::of("hmac-sha256:ab"),
            Some(Address::Other("hmac-sha256:ab"))
        );
        assert_eq!(Address::of(MASK), None);
        assert_eq!(Address::of(""), None);
    }
}
