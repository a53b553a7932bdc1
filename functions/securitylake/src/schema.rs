//! The OCSF classes the writer stores and the fixed Arrow schema of each one's Parquet objects.
//!
//! Each class has one custom source (Security Lake wants one OCSF class per source and per
//! object) and one schema: the OCSF 1.1.0 attributes the mapping (`authtrail-normalize`) sets
//! for that class, objects as nested structs, arrays of strings as lists. Two attributes are
//! written differently from OCSF's JSON form, because a fixed schema cannot hold an open
//! object: `unmapped` is the compact JSON text of the OCSF `unmapped` object, and an attribute
//! the schema does not have (or whose value does not fit its column) is never dropped: [`fit`]
//! moves it into `unmapped` under `ocsf_overflow`, keyed by its dotted path. The unit tests hold
//! every mapped fixture to its schema with no overflow at all.

use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use serde_json::{Map, Value};

/// The key under `unmapped` that holds OCSF attributes the schema has no column for.
pub const OVERFLOW_KEY: &str = "ocsf_overflow";

/// An OCSF class the writer stores, with its own custom source and schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OcsfClass {
    /// Base Event (0): records the mapping does not know, their source fields in `unmapped`.
    Base,
    /// Account Change (3001).
    AccountChange,
    /// Authentication (3002).
    Authentication,
    /// Entity Management (3004).
    EntityManagement,
    /// User Access Management (3005).
    UserAccess,
    /// Group Management (3006).
    GroupManagement,
}

impl OcsfClass {
    /// Every class, in `class_uid` order.
    pub const ALL: &'static [OcsfClass] = &[
        OcsfClass::Base,
        OcsfClass::AccountChange,
        OcsfClass::Authentication,
        OcsfClass::EntityManagement,
        OcsfClass::UserAccess,
        OcsfClass::GroupManagement,
    ];

    /// The class of a `class_uid`, `None` for a class the writer has no source for.
    pub fn from_uid(uid: i64) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|c| i64::from(c.uid()) == uid)
    }

    /// `class_uid`.
    pub const fn uid(self) -> u16 {
        match self {
            OcsfClass::Base => 0,
            OcsfClass::AccountChange => 3001,
            OcsfClass::Authentication => 3002,
            OcsfClass::EntityManagement => 3004,
            OcsfClass::UserAccess => 3005,
            OcsfClass::GroupManagement => 3006,
        }
    }

    /// The end of the class's custom source name (`authtrail-auth`).
    pub const fn source_suffix(self) -> &'static str {
        match self {
            OcsfClass::Base => "base",
            OcsfClass::AccountChange => "account",
            OcsfClass::Authentication => "auth",
            OcsfClass::EntityManagement => "entity",
            OcsfClass::UserAccess => "access",
            OcsfClass::GroupManagement => "group",
        }
    }

    /// The `eventClasses` value of `CreateCustomLogSource` for the class, when Security Lake's
    /// list has one (it has none for User Access Management, Group Management and the Base
    /// Event; those sources are registered without `eventClasses`, which is optional).
    pub const fn security_lake_event_class(self) -> Option<&'static str> {
        match self {
            OcsfClass::AccountChange => Some("ACCOUNT_CHANGE"),
            OcsfClass::Authentication => Some("AUTHENTICATION"),
            OcsfClass::EntityManagement => Some("ENTITY_MANAGEMENT_AUDIT"),
            OcsfClass::Base | OcsfClass::UserAccess | OcsfClass::GroupManagement => None,
        }
    }

    /// The Arrow schema of the class's Parquet objects (built once).
    pub fn schema(self) -> SchemaRef {
        static SCHEMAS: OnceLock<Vec<SchemaRef>> = OnceLock::new();
        let all = SCHEMAS.get_or_init(|| Self::ALL.iter().map(|c| Arc::new(build(*c))).collect());
        let i = Self::ALL.iter().position(|c| *c == self).unwrap_or(0);
        all.get(i).cloned().unwrap_or_else(|| Arc::new(build(self)))
    }
}

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn int32(name: &str) -> Field {
    Field::new(name, DataType::Int32, true)
}

fn int64(name: &str) -> Field {
    Field::new(name, DataType::Int64, true)
}

fn boolean(name: &str) -> Field {
    Field::new(name, DataType::Boolean, true)
}

fn strings(name: &str) -> Field {
    let item = Field::new("item", DataType::Utf8, true);
    Field::new(name, DataType::List(Arc::new(item)), true)
}

fn object(name: &str, fields: Vec<Field>) -> Field {
    Field::new(name, DataType::Struct(Fields::from(fields)), true)
}

/// OCSF `user` (also `actor.user`).
fn user(name: &str) -> Field {
    object(
        name,
        vec![
            utf8("uid"),
            utf8("name"),
            utf8("domain"),
            int32("type_id"),
            utf8("type"),
        ],
    )
}

fn actor() -> Field {
    object("actor", vec![user("user"), utf8("invoked_by")])
}

fn src_endpoint() -> Field {
    object("src_endpoint", vec![utf8("ip"), utf8("uid")])
}

fn http_request() -> Field {
    object("http_request", vec![utf8("user_agent")])
}

fn named(name: &str) -> Field {
    object(name, vec![utf8("uid"), utf8("name")])
}

/// The attributes every class has, in schema order, before the class's own.
fn head() -> Vec<Field> {
    vec![
        int32("class_uid"),
        utf8("class_name"),
        int32("category_uid"),
        utf8("category_name"),
        int32("activity_id"),
        utf8("activity_name"),
        int64("type_uid"),
        utf8("type_name"),
        int32("severity_id"),
        utf8("severity"),
        int32("status_id"),
        utf8("status"),
        utf8("status_detail"),
        int64("time"),
        utf8("message"),
        object(
            "metadata",
            vec![
                utf8("version"),
                object("product", vec![utf8("name"), utf8("vendor_name")]),
                utf8("uid"),
                utf8("tenant_uid"),
                utf8("log_provider"),
                strings("profiles"),
            ],
        ),
    ]
}

fn build(class: OcsfClass) -> Schema {
    let mut fields = head();
    fields.extend(match class {
        OcsfClass::Base => vec![],
        OcsfClass::AccountChange => vec![actor(), user("user"), src_endpoint(), http_request()],
        OcsfClass::Authentication => vec![
            actor(),
            user("user"),
            src_endpoint(),
            object("session", vec![utf8("uid")]),
            named("service"),
            int32("auth_protocol_id"),
            utf8("auth_protocol"),
            boolean("is_mfa"),
            http_request(),
        ],
        OcsfClass::EntityManagement => vec![
            actor(),
            object("entity", vec![utf8("type"), utf8("uid"), utf8("name")]),
        ],
        OcsfClass::UserAccess => vec![actor(), user("user"), strings("privileges")],
        OcsfClass::GroupManagement => {
            vec![actor(), user("user"), named("group"), strings("privileges")]
        }
    });
    fields.push(utf8("unmapped"));
    Schema::new(fields)
}

/// Whether a JSON value can go into a column of type `t` as it is (null always can; objects
/// and lists are checked member by member by [`fit`]).
fn fits_scalar(value: &Value, t: &DataType) -> bool {
    match (value, t) {
        (Value::Null, _) => true,
        (Value::String(_), DataType::Utf8) => true,
        (Value::Bool(_), DataType::Boolean) => true,
        (Value::Number(n), DataType::Int32) => n.as_i64().is_some_and(|v| i32::try_from(v).is_ok()),
        (Value::Number(n), DataType::Int64) => n.as_i64().is_some(),
        (Value::Array(items), DataType::List(item)) => items
            .iter()
            .all(|v| fits_scalar(v, item.data_type()) && !v.is_object()),
        _ => false,
    }
}

/// Removes from `object` every member that has no column in `fields`, or whose value does not
/// fit its column, and returns them with their dotted paths (under `path`). Struct members are
/// fitted recursively, so what remains decodes with the schema in strict mode.
pub fn fit(object: &mut Map<String, Value>, fields: &Fields, path: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let keys: Vec<String> = object.keys().cloned().collect();
    for key in keys {
        let member = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        let field = fields.iter().find(|f| f.name() == &key);
        let keep = match (field.map(|f| f.data_type()), object.get_mut(&key)) {
            (Some(DataType::Struct(inner)), Some(Value::Object(child))) => {
                out.extend(fit(child, inner, &member));
                true
            }
            (Some(t), Some(v)) => fits_scalar(v, t),
            _ => false,
        };
        if !keep && let Some(v) = object.remove(&key) {
            out.push((member, v));
        }
    }
    out
}

/// Turns one mapped OCSF event into a row of `class`'s schema: fits it ([`fit`]), moves what
/// does not fit into `unmapped.ocsf_overflow`, and writes `unmapped` as JSON text. Returns the
/// number of attributes moved.
pub fn to_row(class: OcsfClass, event: &mut Map<String, Value>) -> usize {
    let unmapped = event.remove("unmapped");
    let schema = class.schema();
    let overflow = fit(event, schema.fields(), "");
    let moved = overflow.len();
    let unmapped = match (unmapped, overflow.is_empty()) {
        (None, true) => None,
        (Some(u), true) => Some(u),
        (u, false) => {
            let mut map = match u {
                Some(Value::Object(m)) => m,
                Some(other) => Map::from_iter([("value".to_string(), other)]),
                None => Map::new(),
            };
            map.insert(
                OVERFLOW_KEY.to_string(),
                Value::Object(overflow.into_iter().collect()),
            );
            Some(Value::Object(map))
        }
    };
    if let Some(u) = unmapped.filter(|u| !u.is_null()) {
        event.insert("unmapped".into(), Value::String(u.to_string()));
    }
    moved
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn every_class_round_trips_through_its_uid_and_has_a_short_source_suffix() {
        for c in OcsfClass::ALL {
            assert_eq!(OcsfClass::from_uid(i64::from(c.uid())), Some(*c));
            assert!(c.source_suffix().len() <= 8);
            let schema = c.schema();
            assert_eq!(schema.field(0).name(), "class_uid");
            assert_eq!(schema.fields().last().unwrap().name(), "unmapped");
        }
        assert_eq!(OcsfClass::from_uid(3003), None);
    }

    #[test]
    fn attributes_without_a_column_move_to_unmapped_overflow_with_their_paths() {
        let mut e = json!({
            "class_uid": 3002, "time": 1, "user": {"uid": "u1", "email_addr": "a@example.com"},
            "cloud": {"provider": "AWS"}, "unmapped": {"details": {"k": "v"}}
        })
        .as_object()
        .cloned()
        .unwrap();
        let moved = to_row(OcsfClass::Authentication, &mut e);
        assert_eq!(moved, 2);
        assert_eq!(e["user"], json!({"uid": "u1"}));
        assert!(e.get("cloud").is_none());
        let unmapped: Value = serde_json::from_str(e["unmapped"].as_str().unwrap()).unwrap();
        assert_eq!(unmapped["details"], json!({"k": "v"}));
        assert_eq!(unmapped[OVERFLOW_KEY]["user.email_addr"], "a@example.com");
        assert_eq!(unmapped[OVERFLOW_KEY]["cloud"], json!({"provider": "AWS"}));
    }

    #[test]
    fn values_of_the_wrong_type_move_to_overflow_instead_of_failing_the_object() {
        let mut e = json!({
            "class_uid": "3002", "activity_id": 1, "severity_id": 70000000000i64,
            "is_mfa": "yes", "metadata": {"profiles": ["host", 1]}, "session": "s"
        })
        .as_object()
        .cloned()
        .unwrap();
        let moved = to_row(OcsfClass::Authentication, &mut e);
        assert_eq!(moved, 5, "{e:?}");
        assert_eq!(e["activity_id"], 1);
        let unmapped: Value = serde_json::from_str(e["unmapped"].as_str().unwrap()).unwrap();
        assert_eq!(unmapped[OVERFLOW_KEY]["class_uid"], "3002");
        assert_eq!(
            unmapped[OVERFLOW_KEY]["metadata.profiles"],
            json!(["host", 1])
        );
    }

    #[test]
    fn an_event_that_fits_keeps_its_unmapped_object_as_json_text_and_nothing_else_changes() {
        let mut e = json!({"class_uid": 0, "time": 5, "unmapped": {"a": [1, 2]}})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(to_row(OcsfClass::Base, &mut e), 0);
        assert_eq!(e["unmapped"], "{\"a\":[1,2]}");
        let mut plain = json!({"class_uid": 0}).as_object().cloned().unwrap();
        assert_eq!(to_row(OcsfClass::Base, &mut plain), 0);
        assert!(plain.get("unmapped").is_none());
    }
}
