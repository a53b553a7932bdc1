//! Rows of one class to one Parquet object: decoded into Arrow with the class's fixed schema
//! (`arrow-json`, strict: a member without a column is a bug that [`crate::schema::to_row`]
//! prevents) and written with the settings Security Lake asks of custom sources: Parquet 1.0
//! data pages of at most 1 MB, one row group per object (a batch is far below the 256 MB
//! limit), Zstandard compression.

use arrow_array::RecordBatch;
use arrow_json::ReaderBuilder;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{WriterProperties, WriterVersion};

use crate::error::SecurityLakeError;
use crate::schema::OcsfClass;

/// Zstandard level of the Parquet pages: zstd's default (fast, and Security Lake prefers zstd).
pub const ZSTD_LEVEL: i32 = 3;

/// Largest uncompressed data page (Security Lake: at most 1 MB).
pub const DATA_PAGE_SIZE: usize = 1024 * 1024;

/// The writer settings of every object.
pub fn writer_properties() -> Result<WriterProperties, SecurityLakeError> {
    let level = ZstdLevel::try_new(ZSTD_LEVEL).map_err(SecurityLakeError::Parquet)?;
    Ok(WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::ZSTD(level))
        .set_data_page_size_limit(DATA_PAGE_SIZE)
        .set_created_by(format!(
            "authtrail-securitylake {}",
            env!("CARGO_PKG_VERSION")
        ))
        .build())
}

/// The Arrow record batch of `rows` (JSON objects already fitted to `class`'s schema), in the
/// given order.
pub fn record_batch(class: OcsfClass, rows: &[&str]) -> Result<RecordBatch, SecurityLakeError> {
    let schema = class.schema();
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.len().max(1))
        .with_strict_mode(true)
        .build_decoder()
        .map_err(SecurityLakeError::Arrow)?;
    for row in rows {
        let read = decoder
            .decode(row.as_bytes())
            .map_err(SecurityLakeError::Arrow)?;
        if read != row.len() {
            return Err(SecurityLakeError::Arrow(
                arrow_schema::ArrowError::JsonError(format!(
                    "row not read whole ({read} of {} bytes)",
                    row.len()
                )),
            ));
        }
    }
    Ok(decoder
        .flush()
        .map_err(SecurityLakeError::Arrow)?
        .unwrap_or_else(|| RecordBatch::new_empty(schema)))
}

/// The Parquet object holding `rows` of `class`, in the given order.
pub fn parquet_object(class: OcsfClass, rows: &[&str]) -> Result<Bytes, SecurityLakeError> {
    let batch = record_batch(class, rows)?;
    let mut out = Vec::with_capacity(64 * 1024);
    let mut writer = ArrowWriter::try_new(&mut out, class.schema(), Some(writer_properties()?))
        .map_err(SecurityLakeError::Parquet)?;
    writer.write(&batch).map_err(SecurityLakeError::Parquet)?;
    writer.close().map_err(SecurityLakeError::Parquet)?;
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int32Type, Int64Type};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use serde_json::json;

    fn row(v: serde_json::Value) -> String {
        v.to_string()
    }

    #[test]
    fn rows_are_written_as_zstd_parquet_that_reads_back_with_nested_columns() {
        let a = row(json!({
            "class_uid": 3002, "class_name": "Authentication", "time": 1739388470156i64,
            "user": {"uid": "u-1", "name": "alice"}, "src_endpoint": {"ip": "192.0.2.10"},
            "metadata": {"version": "1.1.0", "product": {"name": "MPAS", "vendor_name": "Keycloak"}},
            "is_mfa": true
        }));
        let b = row(json!({"class_uid": 3002, "time": 1739388470157i64, "unmapped": "{}"}));
        let body = parquet_object(OcsfClass::Authentication, &[a.as_str(), b.as_str()]).unwrap();
        let reader = SerializedFileReader::new(body.clone()).unwrap();
        let meta = reader.metadata();
        assert_eq!(meta.num_row_groups(), 1);
        assert_eq!(meta.file_metadata().num_rows(), 2);
        let column = meta.row_group(0).column(0);
        // The level is not stored in the file: the reader reports the codec only.
        assert!(matches!(column.compression(), Compression::ZSTD(_)));
        let batch = ParquetRecordBatchReaderBuilder::try_new(body)
            .unwrap()
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(
            batch.schema().fields().len(),
            OcsfClass::Authentication.schema().fields().len()
        );
        let uids = batch
            .column_by_name("class_uid")
            .unwrap()
            .as_primitive::<Int32Type>();
        assert_eq!(uids.values(), &[3002, 3002]);
        let times = batch
            .column_by_name("time")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(times.value(1), 1739388470157);
        let user = batch.column_by_name("user").unwrap().as_struct();
        let names = user.column_by_name("name").unwrap().as_string::<i32>();
        assert_eq!(names.value(0), "alice");
        assert!(names.is_null(1));
    }

    #[test]
    fn a_member_without_a_column_is_refused_rather_than_dropped() {
        let a = row(json!({"class_uid": 0, "not_ocsf": 1}));
        let e = record_batch(OcsfClass::Base, &[a.as_str()]).unwrap_err();
        assert!(e.to_string().contains("not_ocsf"), "{e}");
    }
}
