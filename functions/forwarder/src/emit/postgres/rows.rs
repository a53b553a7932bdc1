//! Rows: a record as the default table's row ([`default_row`]) or as a mapped table's row
//! ([`mapped_row`], each value converted for its column's type by [`convert`]), and the SQL
//! that stores them: binary `COPY` into a temporary staging table of text columns
//! ([`stage_sql`], [`copy_sql`]), then `INSERT ... SELECT ... ON CONFLICT DO NOTHING` with each
//! column cast to its type ([`insert_select_sql`]). [`insert_sql`] is the multi-row
//! `INSERT ... VALUES` the bench compares COPY with.
//!
//! Every value travels as text and is cast by the server (`c3::pg_catalog.timestamptz`), so
//! one staging table serves every column type; values are checked here first, so a value that
//! does not fit its column fails its own record, not the statement.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use super::config::TableMapping;
use crate::filter::Pointer;
use crate::record::Prepared;

/// How a column's values are checked and written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ColumnKind {
    /// `text`, `character varying`, `character`: a string as it is, another value as JSON.
    Text,
    /// `timestamp with(out) time zone`: an RFC 3339 string or epoch milliseconds.
    Timestamp,
    /// `smallint`, `integer`, `bigint`: an integer (or its decimal string) within the bounds.
    Integer(i64, i64),
    /// `real`, `double precision`, `numeric`: a finite number (or its decimal string).
    Float,
    /// `boolean`: `true` / `false` (or those strings).
    Boolean,
    /// `json`, `jsonb`: any value, as JSON.
    Json,
    /// Any other type: a string as it is, another value as JSON; the server checks it.
    Other,
}

impl ColumnKind {
    /// The kind of an `information_schema.columns.data_type`.
    pub fn of(data_type: &str) -> Self {
        match data_type {
            "text" | "character varying" | "character" => ColumnKind::Text,
            "timestamp with time zone" | "timestamp without time zone" => ColumnKind::Timestamp,
            "smallint" => ColumnKind::Integer(i16::MIN.into(), i16::MAX.into()),
            "integer" => ColumnKind::Integer(i32::MIN.into(), i32::MAX.into()),
            "bigint" => ColumnKind::Integer(i64::MIN, i64::MAX),
            "real" | "double precision" | "numeric" => ColumnKind::Float,
            "boolean" => ColumnKind::Boolean,
            "json" | "jsonb" => ColumnKind::Json,
            _ => ColumnKind::Other,
        }
    }
}

/// A column of a target table: its name, the type its text parameter is cast to, its kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The column's name (a checked identifier).
    pub name: String,
    /// The SQL type the parameter is cast to (`pg_catalog.timestamptz`, quoted parts).
    pub cast: String,
    /// How its values are checked.
    pub kind: ColumnKind,
}

impl Column {
    /// A column of `kind` whose parameters are cast to `cast`.
    pub fn new(name: &str, cast: &str, kind: ColumnKind) -> Self {
        Self {
            name: name.to_string(),
            cast: cast.to_string(),
            kind,
        }
    }
}

/// The default table's columns, in the migration's order.
pub fn default_columns() -> Vec<Column> {
    let text = |n: &str| Column::new(n, "pg_catalog.text", ColumnKind::Text);
    vec![
        text("event_id"),
        text("kind"),
        text("type"),
        Column::new("time", "pg_catalog.timestamptz", ColumnKind::Timestamp),
        text("realm"),
        text("client"),
        text("user_id"),
        text("session_id"),
        text("ip"),
        text("resource_type"),
        text("resource_path"),
        text("error"),
        Column::new("event", "pg_catalog.jsonb", ColumnKind::Json),
        text("stream"),
        text("shard"),
        text("sequence_number"),
    ]
}

/// One row's parameters, in the table's column order (`None` is SQL `NULL`).
pub type Row = Vec<Option<String>>;

/// The text of a value for a text column: a string's contents, another value's JSON.
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// `key` of the event (`event` of an envelope, else the record), else of its `authDetails`.
fn event_field(event: &Value, key: &str) -> Option<String> {
    event
        .get(key)
        .and_then(text_of)
        .or_else(|| event.get("authDetails")?.get(key).and_then(text_of))
}

/// Epoch milliseconds as an RFC 3339 UTC timestamp.
fn rfc3339_ms(ms: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// The default table's row of `p`. Envelope fields are read from `event` (and its
/// `authDetails` for admin events); other records are read at their top level. The source
/// columns (`stream`, `shard`, `sequence_number`) come from the record's Kinesis position
/// (`NULL` when the record has none, as in unit tests).
pub fn default_row(p: &Prepared) -> Result<Row, String> {
    let value = p
        .value()
        .ok_or_else(|| "the prepared record is not JSON".to_string())?;
    let kind = p.class.kind();
    let event = match kind {
        "user-event" | "admin-event" => value.get("event").unwrap_or(&value),
        _ => &value,
    };
    Ok(vec![
        Some(p.doc_id.clone()),
        Some(kind.to_string()),
        Some(p.class.event_type().to_string()),
        rfc3339_ms(p.class.time_ms),
        event_field(event, "realmId"),
        event_field(event, "clientId"),
        event_field(event, "userId"),
        event_field(event, "sessionId"),
        event_field(event, "ipAddress"),
        event_field(event, "resourceType"),
        event_field(event, "resourcePath"),
        event_field(event, "error"),
        Some(p.json.clone()),
        p.source.as_ref().map(|s| s.stream.to_string()),
        p.source.as_ref().map(|s| s.shard.to_string()),
        p.source.as_ref().map(|s| s.sequence_number.clone()),
    ])
}

/// The row of `p` for `mapping`, whose columns are `columns` (same order as its pointers):
/// an absent or `null` value is `NULL`; a value that does not convert is an error naming the
/// pointer and the column.
pub fn mapped_row(p: &Prepared, mapping: &TableMapping, columns: &[Column]) -> Result<Row, String> {
    let value = p
        .value()
        .ok_or_else(|| "the prepared record is not JSON".to_string())?;
    mapping
        .columns
        .iter()
        .zip(columns)
        .map(|((pointer, _), column)| field(&value, pointer, column))
        .collect()
}

fn field(value: &Value, pointer: &Pointer, column: &Column) -> Result<Option<String>, String> {
    match pointer.get(value) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => convert(column.kind, v).map(Some).map_err(|why| {
            format!(
                "{} does not fit column {} ({why})",
                pointer.as_str(),
                column.name
            )
        }),
    }
}

/// The text form of `v` for a column of `kind`, or why it does not fit.
pub fn convert(kind: ColumnKind, v: &Value) -> Result<String, String> {
    match (kind, v) {
        (ColumnKind::Text | ColumnKind::Other, Value::String(s)) => Ok(s.clone()),
        (ColumnKind::Text | ColumnKind::Other | ColumnKind::Json, other) => Ok(other.to_string()),
        (ColumnKind::Timestamp, Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::AutoSi, true))
            .map_err(|_| "not an RFC 3339 timestamp".to_string()),
        (ColumnKind::Timestamp, Value::Number(n)) => n
            .as_i64()
            .and_then(rfc3339_ms)
            .ok_or_else(|| "not epoch milliseconds".to_string()),
        (ColumnKind::Integer(min, max), v) => {
            let n = match v {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse::<i64>().ok(),
                _ => None,
            };
            match n {
                Some(n) if (min..=max).contains(&n) => Ok(n.to_string()),
                Some(_) => Err("out of the column's range".into()),
                None => Err("not an integer".into()),
            }
        }
        (ColumnKind::Float, v) => {
            let n = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            match n {
                Some(n) if n.is_finite() => Ok(match v {
                    Value::Number(n) => n.to_string(),
                    _ => n.to_string(),
                }),
                _ => Err("not a number".into()),
            }
        }
        (ColumnKind::Boolean, Value::Bool(b)) => Ok(b.to_string()),
        (ColumnKind::Boolean, Value::String(s)) if s == "true" || s == "false" => Ok(s.clone()),
        (ColumnKind::Boolean, _) => Err("not a boolean".into()),
        (ColumnKind::Timestamp, _) => Err("not a timestamp".into()),
    }
}

/// The staging table of destination `n` (0: the default table, `i + 1`: mapping `i`), in the
/// session's temporary schema.
pub fn stage_name(n: usize) -> String {
    format!("authtrail_stage_{n}")
}

/// `CREATE TEMP TABLE IF NOT EXISTS {stage} (c0 text, ...) ON COMMIT DELETE ROWS;`: one text
/// column per column of the target table, emptied at the end of each transaction.
pub fn stage_sql(stage: &str, columns: &[Column]) -> String {
    let cols: Vec<String> = (0..columns.len()).map(|i| format!("c{i} text")).collect();
    format!(
        "CREATE TEMP TABLE IF NOT EXISTS {stage} ({}) ON COMMIT DELETE ROWS;",
        cols.join(", ")
    )
}

/// `COPY pg_temp.{stage} FROM STDIN (FORMAT binary)`.
pub fn copy_sql(stage: &str) -> String {
    format!("COPY pg_temp.{stage} FROM STDIN (FORMAT binary)")
}

/// `INSERT INTO {table} ("col", ...) SELECT c0::type, ... FROM pg_temp.{stage} ON CONFLICT
/// {conflict}DO NOTHING`.
pub fn insert_select_sql(table: &str, columns: &[Column], stage: &str, conflict: &str) -> String {
    let names: Vec<String> = columns.iter().map(|c| format!("\"{}\"", c.name)).collect();
    let casts: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("c{i}::{}", c.cast))
        .collect();
    format!(
        "INSERT INTO {table} ({}) SELECT {} FROM pg_temp.{stage} ON CONFLICT {conflict}DO NOTHING",
        names.join(", "),
        casts.join(", ")
    )
}

/// `INSERT INTO {table} (cols) VALUES ($1::text::type, ...), ... ON CONFLICT {conflict} DO
/// NOTHING` for `rows` rows (the statement the bench compares COPY with).
pub fn insert_sql(table: &str, columns: &[Column], rows: usize, conflict: &str) -> String {
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let mut sql = format!("INSERT INTO {table} ({}) VALUES ", names.join(", "));
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for (i, c) in columns.iter().enumerate() {
            n += 1;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${n}::text::{}", c.cast));
        }
        sql.push(')');
    }
    sql.push_str(&format!(" ON CONFLICT {conflict}DO NOTHING"));
    sql
}

/// Rows per [`insert_sql`] statement for `columns` columns (the protocol allows 65,535
/// parameters).
pub fn rows_per_statement(columns: usize) -> usize {
    (u16::MAX as usize / columns.max(1)).clamp(1, 1000)
}
