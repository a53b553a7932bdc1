//! Keycloak's JSON event representations and the simulator's stored records.

use std::sync::Arc;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

/// Which of Keycloak's two event streams a record belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub enum EventKind {
    /// `GET /admin/realms/{realm}/events` (EventRepresentation).
    #[serde(rename = "user-event")]
    User,
    /// `GET /admin/realms/{realm}/admin-events` (AdminEventRepresentation).
    #[serde(rename = "admin-event")]
    Admin,
}

impl EventKind {
    /// `user-event` or `admin-event` (the envelope's `eventType` vocabulary).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user-event",
            Self::Admin => "admin-event",
        }
    }
}

/// Keycloak's `details` map; keeps insertion order (Keycloak's is a hash map: order is not
/// meaningful).
#[derive(Clone, Debug, Default)]
pub(crate) struct Details(pub(crate) Vec<(&'static str, String)>);

impl Details {
    pub(crate) fn put(&mut self, key: &'static str, value: impl Into<String>) {
        self.0.push((key, value.into()));
    }
}

impl Serialize for Details {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Keycloak's EventRepresentation (nulls omitted, as Keycloak's admin API serializes them).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UserEvent {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
    pub(crate) time: i64,
    #[serde(rename = "type")]
    pub(crate) event_type: &'static str,
    pub(crate) realm_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ip_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) details: Option<Details>,
}

/// Keycloak's AuthDetailsRepresentation.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuthDetails {
    pub(crate) realm_id: String,
    pub(crate) client_id: String,
    pub(crate) user_id: String,
    pub(crate) ip_address: String,
}

/// Keycloak's AdminEventRepresentation.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AdminEvent {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
    pub(crate) time: i64,
    pub(crate) realm_id: String,
    pub(crate) auth_details: AuthDetails,
    pub(crate) operation_type: &'static str,
    pub(crate) resource_type: &'static str,
    pub(crate) resource_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) representation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) details: Option<Details>,
}

/// The fields the events endpoints filter on, kept next to the serialized JSON.
#[derive(Clone, Debug)]
pub(crate) enum Fields {
    User {
        event_type: &'static str,
        client_id: Option<String>,
        user_id: Option<String>,
        ip_address: Option<String>,
    },
    Admin {
        operation_type: &'static str,
        resource_type: &'static str,
        resource_path: String,
        auth_realm: String,
        auth_client: String,
        auth_user: String,
        auth_ip: String,
    },
}

/// One stored event: what the server serves, plus what it needs to filter and order it.
#[derive(Debug)]
pub(crate) struct Record {
    /// Generation order (0-based, over both kinds).
    pub(crate) seq: u64,
    pub(crate) kind: EventKind,
    /// The event's UUID (also kept in legacy mode, where the JSON has no `id`).
    pub(crate) id: String,
    pub(crate) time: i64,
    /// When its transaction commits (becomes visible), epoch ms.
    pub(crate) commit_at: i64,
    pub(crate) is_error: bool,
    pub(crate) fields: Fields,
    /// The JSON object exactly as the events endpoint serves it.
    pub(crate) json: Arc<str>,
}

/// One event that has become visible to clients, as the ledger reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntry {
    /// Generation order (0-based, over both kinds).
    pub seq: u64,
    /// User or admin event.
    pub kind: EventKind,
    /// The event's UUID (present in the JSON only in modern mode).
    pub id: String,
    /// The event's `time` (epoch ms).
    pub time: i64,
    /// When the event became visible to clients (epoch ms of the server clock).
    pub visible_at: i64,
    /// Whether the event is an error event (LOGIN_ERROR, an admin event with `error`, ...).
    pub is_error: bool,
    /// The event JSON exactly as the events endpoint serves it.
    #[serde(skip)]
    pub json: Arc<str>,
}

impl LedgerEntry {
    /// The event JSON parsed into a value.
    pub fn event(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(&self.json)
    }
}
