//! One record to one OCSF row: classified ([`crate::classify`]), mapped to an OCSF 1.1.0 event
//! by `authtrail-normalize`, then fitted to its class's Parquet schema
//! ([`crate::schema::to_row`]).
//!
//! Nothing is dropped: a record the mapping does not know is an OCSF Base Event with the whole
//! record under `unmapped` (the mapping's own rule), and an event of a class the writer has no
//! source for is written the same way, its OCSF form kept under `unmapped.ocsf_event`.

use authtrail_normalize::Format;
use serde_json::{Map, Value, json};

use crate::classify::{Classified, classify};
use crate::schema::{OcsfClass, to_row};

/// The OCSF version of every row.
pub const OCSF_VERSION: &str = authtrail_normalize::OCSF_VERSION;

/// One record mapped and fitted to its class's schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// The class (and so the custom source) the row belongs to.
    pub class: OcsfClass,
    /// `time`, epoch milliseconds (the `eventDay` partition and the row order).
    pub time_ms: i64,
    /// The row, fitted to the class's schema.
    pub row: Map<String, Value>,
    /// OCSF attributes moved to `unmapped.ocsf_overflow` because the schema has no column for
    /// them (zero for every fixture; counted in the metrics).
    pub overflow: usize,
}

/// Maps one record (a JSON object) that arrived at `arrival_ms`.
pub fn map_record(record: &Value, arrival_ms: i64) -> Mapped {
    let class = classify(record, arrival_ms);
    let event = ocsf_event(record, &class);
    let (class_of, mut row) = match event {
        Value::Object(map) => {
            let uid = map.get("class_uid").and_then(Value::as_i64);
            match uid.and_then(OcsfClass::from_uid) {
                Some(c) => (c, map),
                None => (
                    OcsfClass::Base,
                    base_event(record, &class, Some(Value::Object(map))),
                ),
            }
        }
        _ => (OcsfClass::Base, base_event(record, &class, None)),
    };
    let time_ms = row
        .get("time")
        .and_then(Value::as_i64)
        .unwrap_or(class.time_ms);
    let overflow = to_row(class_of, &mut row);
    Mapped {
        class: class_of,
        time_ms,
        row,
        overflow,
    }
}

/// The OCSF event of a record as the mapping (`authtrail-normalize`) writes it: its public
/// `render` API gives the event's JSON text, read back here (`Null` if that ever fails, which
/// makes the record a Base Event rather than losing it).
fn ocsf_event(record: &Value, class: &Classified) -> Value {
    let mut text = String::new();
    let classification = class.as_classification();
    match authtrail_normalize::render(Format::Ocsf, record, &classification, None, &mut text) {
        Ok(()) => serde_json::from_str(&text).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// The OCSF Base Event of a record: the classification's time and id, the whole record under
/// `unmapped` (and the mapped event under `unmapped.ocsf_event` when its class has no source).
pub fn base_event(record: &Value, class: &Classified, mapped: Option<Value>) -> Map<String, Value> {
    let mut unmapped = Map::new();
    unmapped.insert("record".into(), record.clone());
    if let Some(m) = mapped {
        unmapped.insert("ocsf_event".into(), m);
    }
    let mut metadata = json!({
        "version": OCSF_VERSION,
        "product": {"name": "Unknown", "vendor_name": "Unknown"},
        "log_provider": "authtrail",
    });
    if let (Some(id), Some(m)) = (&class.id, metadata.as_object_mut()) {
        m.insert("uid".into(), Value::String(id.clone()));
    }
    let event = json!({
        "class_uid": 0,
        "class_name": "Base Event",
        "category_uid": 0,
        "category_name": "Uncategorized",
        "activity_id": 0,
        "activity_name": "Unknown",
        "type_uid": 0,
        "type_name": "Base Event: Unknown",
        "severity_id": 1,
        "severity": "Informational",
        "status_id": 0,
        "status": "Unknown",
        "time": class.time_ms,
        "message": class.event_type,
        "metadata": metadata,
        "unmapped": unmapped,
    });
    match event {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_record_the_mapping_knows_gets_its_class_and_an_unknown_one_the_base_event() {
        let login = json!({"timestamp": "2025-02-12T19:27:50.156Z", "eventType": "user-event",
            "event": {"id": "e1", "time": 1739388470156i64, "type": "LOGIN", "userId": "u1"}});
        let m = map_record(&login, 0);
        assert_eq!(m.class, OcsfClass::Authentication);
        assert_eq!(m.time_ms, 1739388470156);
        assert_eq!(m.row["metadata"]["uid"], "e1");
        let other = json!({"something": "else", "timestamp": 1739388470});
        let m = map_record(&other, 0);
        assert_eq!(m.class, OcsfClass::Base);
        assert_eq!(m.time_ms, 1739388470000);
        let unmapped: Value = serde_json::from_str(m.row["unmapped"].as_str().unwrap()).unwrap();
        assert!(unmapped.to_string().contains("something"), "{unmapped}");
    }

    #[test]
    fn an_event_of_a_class_without_a_source_is_kept_whole_in_a_base_event() {
        let record = json!({"type": "x", "id": "r1"});
        let class = classify(&record, 5);
        let authorize = json!({"class_uid": 3003, "activity_id": 1});
        let base = base_event(&record, &class, Some(authorize.clone()));
        assert_eq!(base["class_uid"], 0);
        assert_eq!(base["time"], 5);
        assert_eq!(base["metadata"]["uid"], "r1");
        assert_eq!(base["unmapped"]["record"], record);
        assert_eq!(base["unmapped"]["ocsf_event"], authorize);
    }
}
