//! Normalised identity events: one audit record (already filtered and redacted) rendered as an
//! OCSF 1.1.0 event ([`ocsf`]), an ECS 8.x document ([`ecs`]) or a CEF line ([`cef`]).
//!
//! The input is the record (its JSON text for [`render_text`], the fast path, or a
//! `serde_json::Value` for [`render`]) and its [`Classification`] (kind, event type, time,
//! event id), which the caller already knows; the source product (MPAS / Keycloak, Foxpass,
//! Blitz) is recognised from them ([`Product::detect`]). The text is read into a tree that
//! borrows its strings from it (no `Value`); what the record means is read once from it
//! (driven by the mapping [`table`]), and each format writes that its own way.
//!
//! A record the mapping does not know is never dropped: OCSF writes it as the Base Event
//! (`class_uid` 0) with the whole source record under `unmapped`; ECS as an event with the tag
//! `authtrail-unmapped` and `event.outcome: unknown`; CEF with the record's JSON in `msg`.
//!
//! Redaction happens before mapping: a redacted value is mapped as it is (a `hmac-sha256:`
//! pseudonym stays a pseudonym). The mask `<redacted>` carries nothing, so it is left out of
//! user names and addresses (it stays in `unmapped` / `event.original`), and a value that is
//! not an IP address never goes into an IP-typed field.

pub mod cef;
pub mod ecs;
pub mod error;
mod facts;
mod keycloak;
mod node;
pub mod ocsf;
mod others;
pub mod table;
mod time;
mod unmapped;

use std::fmt;

use serde_json::Value;

pub use error::NormalizeError;
pub use table::{Class, Mapping, Status};

use facts::Facts;
use node::Node;

/// The mask redaction writes in place of a value (the same text as the forwarder's).
pub const MASK: &str = "<redacted>";

/// The OCSF schema version the events follow.
pub const OCSF_VERSION: &str = "1.1.0";

/// The ECS version the documents follow.
pub const ECS_VERSION: &str = "8.11.0";

/// How a record leaves: as it is, or normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// The record's own JSON, unchanged.
    #[default]
    Raw,
    /// An OCSF 1.1.0 event (JSON).
    Ocsf,
    /// An ECS 8.x document (JSON).
    Ecs,
    /// A CEF line (text, not JSON).
    Cef,
}

impl Format {
    /// Every format, in the order of their names in messages.
    pub const ALL: &'static [Format] = &[Format::Raw, Format::Ocsf, Format::Ecs, Format::Cef];

    /// The format named `name` (`raw`, `ocsf`, `ecs`, `cef`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "raw" => Some(Format::Raw),
            "ocsf" => Some(Format::Ocsf),
            "ecs" => Some(Format::Ecs),
            "cef" => Some(Format::Cef),
            _ => None,
        }
    }

    /// The format's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Ocsf => "ocsf",
            Format::Ecs => "ecs",
            Format::Cef => "cef",
        }
    }

    /// Whether the format writes JSON (every one but CEF).
    pub fn is_json(self) -> bool {
        !matches!(self, Format::Cef)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of a record, as the forwarder classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A Contract 1 envelope with `eventType: user-event` (a Keycloak EventRepresentation).
    UserEvent,
    /// A Contract 1 envelope with `eventType: admin-event` (an AdminEventRepresentation).
    AdminEvent,
    /// Any other JSON object (Foxpass, Blitz, unknown producers).
    Other,
}

impl Kind {
    /// The kind named `user-event`, `admin-event`, anything else being [`Kind::Other`].
    pub fn from_name(name: &str) -> Self {
        match name {
            "user-event" => Kind::UserEvent,
            "admin-event" => Kind::AdminEvent,
            _ => Kind::Other,
        }
    }
}

/// The product a record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    /// MPAS, whose events are Keycloak's (Contract 1 envelopes).
    Keycloak,
    /// Foxpass LDAP `bind` and RADIUS `authorize` records.
    Foxpass,
    /// Blitz Identity Provider audit records.
    Blitz,
    /// Anything else.
    Unknown,
}

impl Product {
    /// Recognises the product from the record's kind and primary event type: envelopes are
    /// MPAS / Keycloak; `ldap:bind` and `radius:authorize` (Foxpass's `service:method`) are
    /// Foxpass; the Blitz event types of [`table::BLITZ`] and `admin_*` are Blitz.
    pub fn detect(kind: Kind, event_type: &str) -> Self {
        match kind {
            Kind::UserEvent | Kind::AdminEvent => Product::Keycloak,
            Kind::Other if matches!(event_type, "ldap:bind" | "radius:authorize") => {
                Product::Foxpass
            }
            Kind::Other if table::is_blitz_type(event_type) => Product::Blitz,
            Kind::Other => Product::Unknown,
        }
    }

    /// `metadata.product.name` (OCSF), `observer.product` (ECS), the CEF Device Product.
    pub fn name(self) -> &'static str {
        match self {
            Product::Keycloak => "MPAS",
            Product::Foxpass => "Foxpass",
            Product::Blitz => "Blitz Identity Provider",
            Product::Unknown => "Unknown",
        }
    }

    /// `metadata.product.vendor_name` (OCSF), `observer.vendor` (ECS).
    pub fn vendor(self) -> &'static str {
        match self {
            Product::Keycloak => "Keycloak",
            Product::Foxpass => "Foxpass",
            Product::Blitz => "Reaxoft",
            Product::Unknown => "Unknown",
        }
    }

    /// ECS `event.provider`: the product in lower case, one word.
    pub fn provider(self) -> &'static str {
        match self {
            Product::Keycloak => "keycloak",
            Product::Foxpass => "foxpass",
            Product::Blitz => "blitz",
            Product::Unknown => "unknown",
        }
    }
}

/// What the caller knows about a record before it is normalised.
#[derive(Debug, Clone, Copy)]
pub struct Classification<'a> {
    /// The record's kind.
    pub kind: Kind,
    /// Its primary event type (`LOGIN_ERROR`, `USER:CREATE`, `ldap:bind`, `login_failed`).
    pub event_type: &'a str,
    /// The event time, epoch milliseconds.
    pub time_ms: i64,
    /// The event's id, when it has one.
    pub id: Option<&'a str>,
}

/// Renders the record whose JSON text is `text` (one JSON value; the record as it leaves
/// after filter and redaction) in `format` into `out` (replaced). [`Format::Raw`] writes `text`
/// as it is. ECS `event.original` and the CEF `msg` of unknown records are `text`.
pub fn render_text(
    format: Format,
    text: &str,
    class: &Classification<'_>,
    out: &mut String,
) -> Result<(), NormalizeError> {
    if format == Format::Raw {
        out.clear();
        out.push_str(text);
        return Ok(());
    }
    let record = Node::parse(text).map_err(NormalizeError::NotJson)?;
    write(format, &record, class, Some(text), out)
}

/// Renders `record` in `format` into `out` (replaced); `text`, the record's JSON text when
/// the caller has it, is written as ECS `event.original` and the CEF `msg` of unknown records
/// (else the record's compact JSON is). [`Format::Raw`] writes `text`, or the compact JSON.
pub fn render(
    format: Format,
    record: &Value,
    class: &Classification<'_>,
    text: Option<&str>,
    out: &mut String,
) -> Result<(), NormalizeError> {
    write(format, &Node::from_value(record), class, text, out)
}

fn write(
    format: Format,
    record: &Node<'_>,
    class: &Classification<'_>,
    text: Option<&str>,
    out: &mut String,
) -> Result<(), NormalizeError> {
    out.clear();
    match format {
        Format::Raw => match text {
            Some(t) => out.push_str(t),
            None => *out = to_json(record)?,
        },
        Format::Ocsf => *out = to_json(&ocsf::event(&Facts::read(record, class)))?,
        Format::Ecs => {
            let facts = Facts::read(record, class);
            *out = to_json(&ecs::document(&facts, record, text))?;
        }
        Format::Cef => cef::write(out, &Facts::read(record, class), record, text),
    }
    Ok(())
}

/// The compact JSON of `value`.
fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, NormalizeError> {
    serde_json::to_string(value).map_err(NormalizeError::Serialize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_named_as_in_the_configuration() {
        for f in Format::ALL {
            assert_eq!(Format::parse(f.as_str()), Some(*f));
            assert_eq!(f.to_string(), f.as_str());
        }
        assert_eq!(Format::parse("OCSF"), None);
        assert_eq!(Format::default(), Format::Raw);
        assert!(Format::Ocsf.is_json() && !Format::Cef.is_json());
    }

    #[test]
    fn products_are_recognised_from_kind_and_event_type() {
        assert_eq!(Product::detect(Kind::UserEvent, "LOGIN"), Product::Keycloak);
        assert_eq!(
            Product::detect(Kind::AdminEvent, "USER:CREATE"),
            Product::Keycloak
        );
        assert_eq!(Product::detect(Kind::Other, "ldap:bind"), Product::Foxpass);
        assert_eq!(
            Product::detect(Kind::Other, "radius:authorize"),
            Product::Foxpass
        );
        assert_eq!(Product::detect(Kind::Other, "login_failed"), Product::Blitz);
        assert_eq!(
            Product::detect(Kind::Other, "admin_user_created"),
            Product::Blitz
        );
        assert_eq!(Product::detect(Kind::Other, "unknown"), Product::Unknown);
        assert_eq!(Kind::from_name("admin-event"), Kind::AdminEvent);
        assert_eq!(Kind::from_name("other"), Kind::Other);
    }
}
