//! Every fixture record of the OCSF mapping (the normalize crate's own fixtures: Keycloak user
//! and admin events, Foxpass, Blitz, unknown records, and their redacted forms) mapped the way
//! the function maps it, fitted to its class's Parquet schema with nothing left over, and
//! written to Parquet and read back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../normalize/tests/support/fixtures.rs"]
#[allow(dead_code)]
mod fixtures;

use std::collections::BTreeMap;

use authtrail_securitylake::OcsfClass;
use authtrail_securitylake::classify::classify;
use authtrail_securitylake::encode::{parquet_object, record_batch};
use authtrail_securitylake::ocsf::map_record;
use authtrail_securitylake::schema::OVERFLOW_KEY;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

fn all_fixtures() -> Vec<fixtures::Fixture> {
    let mut all = fixtures::mapped();
    all.extend(fixtures::unknown_records());
    let redacted: Vec<fixtures::Fixture> = all
        .iter()
        .flat_map(|f| [fixtures::redact(f, "mask"), fixtures::redact(f, "hash")])
        .collect();
    all.extend(redacted);
    all
}

#[test]
fn the_classification_agrees_with_the_forwarders_for_every_mapped_fixture() {
    for f in fixtures::mapped() {
        let c = classify(&f.record, fixtures::T0);
        assert_eq!(c.kind, f.kind, "{}", f.name);
        assert_eq!(c.event_type, f.event_type, "{}", f.name);
        assert_eq!(c.id, f.id, "{}", f.name);
    }
}

#[test]
fn every_fixture_maps_to_a_row_that_fits_its_class_schema_with_no_overflow() {
    for f in all_fixtures() {
        let m = map_record(&f.record, fixtures::T0);
        assert_eq!(m.overflow, 0, "{}: {:?}", f.name, m.row.get("unmapped"));
        if let Some(Value::String(u)) = m.row.get("unmapped") {
            let u: Value = serde_json::from_str(u).unwrap();
            assert!(u.get(OVERFLOW_KEY).is_none(), "{}", f.name);
        }
        assert_eq!(
            m.row.get("class_uid").and_then(Value::as_i64),
            Some(i64::from(m.class.uid())),
            "{}",
            f.name
        );
        let text = Value::Object(m.row.clone()).to_string();
        let batch = record_batch(m.class, &[text.as_str()])
            .unwrap_or_else(|e| panic!("{} does not decode: {e}", f.name));
        assert_eq!(batch.num_rows(), 1);
    }
}

#[test]
fn mapped_fixtures_get_their_ocsf_class_and_unknown_records_the_base_event() {
    for f in fixtures::mapped() {
        let m = map_record(&f.record, fixtures::T0);
        assert_ne!(m.class, OcsfClass::Base, "{}", f.name);
    }
    for f in fixtures::unknown_records() {
        let m = map_record(&f.record, fixtures::T0);
        assert_eq!(m.class, OcsfClass::Base, "{}", f.name);
        let u: Value =
            serde_json::from_str(m.row["unmapped"].as_str().expect("unmapped text")).unwrap();
        assert!(
            u.is_object() && !u.as_object().unwrap().is_empty(),
            "{}",
            f.name
        );
    }
}

#[test]
fn all_fixtures_of_a_class_write_one_parquet_object_that_reads_back_row_for_row() {
    let mut by_class: BTreeMap<OcsfClass, Vec<String>> = BTreeMap::new();
    for f in all_fixtures() {
        let m = map_record(&f.record, fixtures::T0);
        by_class
            .entry(m.class)
            .or_default()
            .push(Value::Object(m.row).to_string());
    }
    assert!(
        by_class.len() >= 5,
        "{:?}",
        by_class.keys().collect::<Vec<_>>()
    );
    for (class, rows) in by_class {
        let refs: Vec<&str> = rows.iter().map(String::as_str).collect();
        let body = parquet_object(class, &refs).unwrap();
        let read: usize = ParquetRecordBatchReaderBuilder::try_new(body)
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap().num_rows())
            .sum();
        assert_eq!(read, rows.len(), "{class:?}");
    }
}
