//! Unit tests of the postgres emitter: configuration checks, rows, conversion, statements.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use super::rows::{Column, ColumnKind, convert, default_row, insert_sql, mapped_row};
use super::*;
use crate::config::ForwarderConfig;
use crate::emit::test_support::{E1, E2, prepared, settings};
use crate::emit::{EmitterSettings, EmitterType};

fn pg(json: &str) -> PostgresConfig {
    match settings(json) {
        EmitterSettings::Postgres(c) => c,
        other => panic!("{other:?}"),
    }
}

fn refusal(emitter: &str) -> String {
    ForwarderConfig::parse(&format!(r#"{{"emitters":[{emitter}]}}"#))
        .unwrap_err()
        .to_string()
}

const BASE: &str = r#""name":"pg","type":"postgres","host":"db.example","database":"audit","username":"forwarder","passwordSecretArn":"arn:aws:secretsmanager:eu-west-1:1:secret:pg""#;

#[test]
fn postgres_defaults_are_port_5432_tls_on_the_default_table_and_a_pool_of_two() {
    let c = pg(&format!("{{{BASE}}}"));
    assert_eq!(c.host.as_deref(), Some("db.example"));
    assert_eq!(c.port, None);
    assert!(c.tls);
    assert_eq!(c.table, "authtrail_events");
    assert!(!c.create_schema);
    assert!(c.table_mappings.is_empty());
    assert_eq!(c.max_pool_size, 2);
    assert_eq!(c.connection_timeout, std::time::Duration::from_secs(5));
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn jdbc_is_accepted_as_an_alias_of_postgres() {
    assert_eq!(EmitterType::parse("jdbc"), Some(EmitterType::Postgres));
    let c = pg(&format!("{{{}}}", BASE.replace("\"postgres\"", "\"jdbc\"")));
    assert_eq!(c.database.as_deref(), Some("audit"));
}

#[test]
fn host_database_and_username_may_come_from_the_rds_secret_only_with_a_secret_arn() {
    let c = pg(
        r#"{"name":"pg","type":"postgres","passwordSecretArn":"arn:aws:secretsmanager:eu-west-1:1:secret:rds"}"#,
    );
    assert_eq!(c.host, None);
    let e = refusal(r#"{"name":"pg","type":"postgres","password":"hunter2","database":"a","username":"u"}"#);
    assert!(e.contains("\"pg\").host") && e.contains("required"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    let e = refusal(r#"{"name":"pg","type":"postgres","host":"h","database":"a","username":"u"}"#);
    assert!(e.contains("passwordSecretArn"), "{e}");
}

const IAM: &str = r#""name":"pg","type":"postgres","host":"audit.cluster-abc.eu-west-1.rds.amazonaws.com","database":"audit","username":"forwarder","iamAuth":true"#;

#[test]
fn iam_auth_needs_no_password_and_logs_in_with_a_token() {
    let c = pg(&format!("{{{IAM}}}"));
    assert_eq!(c.auth, Auth::Iam);
    assert!(c.tls);
    let c = pg(&format!("{{{BASE}}}"));
    assert!(matches!(c.auth, Auth::Password(_)));
    let c = pg(&format!("{{{BASE},\"iamAuth\":false}}"));
    assert!(matches!(c.auth, Auth::Password(_)));
}

#[test]
fn iam_auth_with_a_password_without_tls_or_without_host_is_refused_naming_the_key() {
    let arn = r#""passwordSecretArn":"arn:aws:secretsmanager:eu-west-1:1:secret:pg""#;
    let cases = [
        (format!("{{{IAM},{arn}}}"), "\"pg\").iamAuth"),
        (format!("{{{IAM},\"password\":\"hunter2\"}}"), "\"pg\").iamAuth"),
        (format!("{{{IAM},\"tls\":false}}"), "\"pg\").tls"),
        (
            format!("{{{},\"tls\":false}}", IAM.replace("audit.cluster-abc.eu-west-1.rds.amazonaws.com", "127.0.0.1")),
            "\"pg\").tls",
        ),
        (
            format!("{{{}}}", IAM.replace(r#""host":"audit.cluster-abc.eu-west-1.rds.amazonaws.com","#, "")),
            "\"pg\").host",
        ),
        (format!("{{{}}}", IAM.replace(r#","username":"forwarder""#, "")), "\"pg\").username"),
    ];
    for (emitter, key) in cases {
        let e = refusal(&emitter);
        assert!(e.contains(key), "{emitter}: {e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}

#[test]
fn plaintext_to_a_remote_host_is_refused_naming_tls_and_allowed_to_loopback() {
    let e = refusal(&format!("{{{BASE},\"tls\":false}}"));
    assert!(e.contains("\"pg\").tls") && e.contains("loopback"), "{e}");
    let c = pg(&format!(
        "{{{},\"tls\":false}}",
        BASE.replace("db.example", "127.0.0.1")
    ));
    assert!(!c.tls);
}

#[test]
fn unknown_keys_bad_tables_columns_pointers_and_pool_sizes_are_refused_naming_the_key() {
    let cases = [
        (r#""tablename":"x""#, "tablename"),
        (r#""table":"Audit""#, ".table"),
        (r#""table":"a.b.c""#, ".table"),
        (r#""port":0"#, ".port"),
        (r#""caBundleOnly":true"#, ".caBundleOnly"),
        (r#""connectionPool":{"maxPoolSize":0}"#, "connectionPool.maxPoolSize"),
        (r#""connectionPool":{"connectionTimeout":0}"#, "connectionPool.connectionTimeout"),
        (r#""connectionPool":{"jdbcUrl":"x"}"#, "jdbcUrl"),
        (
            r#""tableMappings":[{"event":"user-event","table":"t","fieldToColumn":{"/a":"Bad Col"}}]"#,
            "tableMappings[0].fieldToColumn./a",
        ),
        (
            r#""tableMappings":[{"event":"user-event","table":"t","fieldToColumn":{"a":"c"}}]"#,
            "tableMappings[0].fieldToColumn.a",
        ),
        (
            r#""tableMappings":[{"table":"t","fieldToColumn":{"/a":"c"}}]"#,
            "tableMappings[0].event",
        ),
        (
            r#""tableMappings":[{"event":"other","table":"t","fieldToColumn":{}}]"#,
            "tableMappings[0].fieldToColumn",
        ),
        (
            r#""tableMappings":[{"event":"other","table":"t","fieldToColumn":{"/a":"c","/b":"c"}}]"#,
            "mapped twice",
        ),
        (
            r#""tableMappings":[{"event":"other","table":"t","columns":{}}]"#,
            "columns",
        ),
    ];
    for (extra, key) in cases {
        let e = refusal(&format!("{{{BASE},{extra}}}"));
        assert!(e.contains(key), "{extra}: {e}");
    }
}

#[test]
fn table_mappings_keep_their_pointers_and_columns_in_order() {
    let c = pg(&format!(
        r#"{{{BASE},"table":"audit.events","createSchema":true,"connectionPool":{{"maxPoolSize":4,"connectionTimeout":2}},
        "tableMappings":[{{"event":"LOGIN_ERROR","table":"audit.failed_logins","fieldToColumn":{{"/event/time":"at","/event/userId":"user_id"}}}}]}}"#
    ));
    assert_eq!(c.table, "audit.events");
    assert!(c.create_schema);
    assert_eq!(c.max_pool_size, 4);
    let m = &c.table_mappings[0];
    assert_eq!(m.event, "LOGIN_ERROR");
    assert_eq!(m.table, "audit.failed_logins");
    let cols: Vec<(&str, &str)> = m
        .columns
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    assert_eq!(cols, [("/event/time", "at"), ("/event/userId", "user_id")]);
}

#[test]
fn the_default_row_holds_the_event_id_kind_type_time_and_envelope_fields() {
    let admin = r#"{"eventType":"admin-event","event":{"id":"a-1","time":1739388470156,"realmId":"r1","operationType":"CREATE","resourceType":"USER","resourcePath":"users/u9","authDetails":{"realmId":"master","clientId":"admin-cli","userId":"u0","ipAddress":"192.0.2.1"}}}"#;
    let row = default_row(&prepared(admin, 0)).unwrap();
    assert_eq!(row.len(), rows::default_columns().len());
    let s = |i: usize| row[i].as_deref();
    assert_eq!(s(0), Some("a-1"));
    assert_eq!(s(1), Some("admin-event"));
    assert_eq!(s(2), Some("USER:CREATE"));
    assert_eq!(s(3), Some("2025-02-12T19:27:50.156Z"));
    assert_eq!(s(4), Some("r1"), "the event's realm before authDetails'");
    assert_eq!(s(5), Some("admin-cli"));
    assert_eq!(s(6), Some("u0"));
    assert_eq!(s(8), Some("192.0.2.1"));
    assert_eq!(s(9), Some("USER"));
    assert_eq!(s(10), Some("users/u9"));
    assert_eq!(s(12), Some(admin));
    let user = default_row(&prepared(E1, 0)).unwrap();
    assert_eq!(user[0].as_deref(), Some("id-1"));
    assert_eq!(user[2].as_deref(), Some("LOGIN"));
}

#[test]
fn a_record_without_an_id_gets_the_sha256_of_its_bytes_as_event_id() {
    let p = prepared(E2, 0);
    let row = default_row(&p).unwrap();
    assert_eq!(row[0].as_deref(), Some(p.doc_id.as_str()));
    assert_eq!(p.doc_id.len(), 64);
    assert_eq!(row[1].as_deref(), Some("other"));
    assert_eq!(row[2].as_deref(), Some("ldap:bind"));
}

#[test]
fn values_convert_for_their_column_type_or_fail_with_the_reason() {
    let ts = ColumnKind::of("timestamp with time zone");
    assert_eq!(
        convert(ts, &json!("2025-02-12T20:27:50.156+01:00")).unwrap(),
        "2025-02-12T19:27:50.156Z"
    );
    assert_eq!(convert(ts, &json!(1739388470156_i64)).unwrap(), "2025-02-12T19:27:50.156Z");
    assert!(convert(ts, &json!("yesterday")).is_err());
    assert!(convert(ts, &json!(true)).is_err());
    let int = ColumnKind::of("integer");
    assert_eq!(convert(int, &json!(42)).unwrap(), "42");
    assert_eq!(convert(int, &json!("42")).unwrap(), "42");
    assert!(convert(int, &json!(3_000_000_000_i64)).unwrap_err().contains("range"));
    assert!(convert(int, &json!(1.5)).is_err());
    assert!(convert(ColumnKind::of("smallint"), &json!(40000)).is_err());
    assert_eq!(convert(ColumnKind::of("double precision"), &json!(1.5)).unwrap(), "1.5");
    assert!(convert(ColumnKind::of("numeric"), &json!("x")).is_err());
    assert_eq!(convert(ColumnKind::of("boolean"), &json!(true)).unwrap(), "true");
    assert!(convert(ColumnKind::of("boolean"), &json!(1)).is_err());
    assert_eq!(convert(ColumnKind::of("jsonb"), &json!({"a":1})).unwrap(), r#"{"a":1}"#);
    assert_eq!(convert(ColumnKind::of("text"), &json!("s")).unwrap(), "s");
    assert_eq!(convert(ColumnKind::of("text"), &json!([1])).unwrap(), "[1]");
    assert_eq!(convert(ColumnKind::of("uuid"), &json!("u")).unwrap(), "u");
}

#[test]
fn a_mapped_row_fills_absent_values_with_null_and_names_the_field_that_does_not_fit() {
    let c = pg(&format!(
        r#"{{{BASE},"tableMappings":[{{"event":"user-event","table":"t","fieldToColumn":{{"/event/time":"at","/event/userId":"who"}}}}]}}"#
    ));
    let m = &c.table_mappings[0];
    let cols = [
        Column::new("at", "pg_catalog.timestamptz", ColumnKind::Timestamp),
        Column::new("who", "pg_catalog.text", ColumnKind::Text),
    ];
    let row = mapped_row(&prepared(E1, 0), m, &cols).unwrap();
    assert_eq!(row, vec![Some("2025-02-12T19:27:50.156Z".into()), None]);
    let bad = r#"{"eventType":"user-event","event":{"id":"x","time":"not a time","type":"LOGIN"}}"#;
    let e = mapped_row(&prepared(bad, 0), m, &cols).unwrap_err();
    assert!(e.contains("/event/time") && e.contains("column at"), "{e}");
}

#[test]
fn one_insert_statement_carries_every_row_and_skips_rows_already_stored() {
    let cols = [
        Column::new("event_id", "pg_catalog.text", ColumnKind::Text),
        Column::new("time", "pg_catalog.timestamptz", ColumnKind::Timestamp),
    ];
    assert_eq!(
        insert_sql("authtrail_events", &cols, 2, "(event_id) "),
        "INSERT INTO authtrail_events (event_id, time) VALUES \
         ($1::text::pg_catalog.text, $2::text::pg_catalog.timestamptz), \
         ($3::text::pg_catalog.text, $4::text::pg_catalog.timestamptz) \
         ON CONFLICT (event_id) DO NOTHING"
    );
    assert!(insert_sql("t", &cols, 1, "").ends_with("ON CONFLICT DO NOTHING"));
    assert!(rows::rows_per_statement(16) * 16 <= 65_535);
}

#[test]
fn a_chunk_is_copied_into_a_text_staging_table_and_inserted_with_casts_skipping_rows_already_stored() {
    let cols = [
        Column::new("event_id", "pg_catalog.text", ColumnKind::Text),
        Column::new("time", "pg_catalog.timestamptz", ColumnKind::Timestamp),
    ];
    let stage = rows::stage_name(0);
    assert_eq!(
        rows::stage_sql(&stage, &cols),
        "CREATE TEMP TABLE IF NOT EXISTS authtrail_stage_0 (c0 text, c1 text) ON COMMIT DELETE ROWS;"
    );
    assert_eq!(
        rows::copy_sql(&stage),
        "COPY pg_temp.authtrail_stage_0 FROM STDIN (FORMAT binary)"
    );
    assert_eq!(
        rows::insert_select_sql("authtrail_events", &cols, &stage, "(event_id) "),
        "INSERT INTO authtrail_events (\"event_id\", \"time\") \
         SELECT c0::pg_catalog.text, c1::pg_catalog.timestamptz FROM pg_temp.authtrail_stage_0 \
         ON CONFLICT (event_id) DO NOTHING"
    );
    assert!(rows::insert_select_sql("t", &cols, "s", "").ends_with("ON CONFLICT DO NOTHING"));
}

#[test]
fn the_migration_creates_the_default_table_with_its_key_and_indexes() {
    let sql = db::MIGRATION;
    for needle in [
        "CREATE TABLE IF NOT EXISTS authtrail_events",
        "event_id        text PRIMARY KEY",
        "event           jsonb NOT NULL",
        "ON authtrail_events (time)",
        "ON authtrail_events (user_id)",
        "ON authtrail_events (type)",
    ] {
        assert!(sql.contains(needle), "{needle}");
    }
    for c in rows::default_columns() {
        assert!(sql.contains(&format!("\n    {} ", c.name)), "{}", c.name);
    }
}

/// Live tests against a PostgreSQL server (run with `--ignored`): `AUTHTRAIL_PG_TEST_PORT`
/// (on 127.0.0.1, TLS on), `AUTHTRAIL_PG_TEST_PASSWORD` (user `postgres`, database `audit`),
/// `AUTHTRAIL_PG_TEST_CA` (the PEM of the CA that signed the server's certificate).
mod live {
    use super::*;

    fn env(k: &str) -> String {
        std::env::var(k).unwrap_or_else(|_| panic!("{k} is needed by the live tests"))
    }

    fn config(extra: &str) -> PostgresConfig {
        pg(&format!(
            r#"{{"name":"pg","type":"postgres","host":"127.0.0.1","port":{},"database":"audit",
            "username":"postgres","password":{:?},"caBundle":{:?},"caBundleOnly":true{extra}}}"#,
            env("AUTHTRAIL_PG_TEST_PORT"),
            env("AUTHTRAIL_PG_TEST_PASSWORD"),
            env("AUTHTRAIL_PG_TEST_CA"),
        ))
    }

    async fn sql(statements: &str) -> Vec<tokio_postgres::Row> {
        let c = config("");
        let target = db::Target::resolve("check", &c, None).await.unwrap();
        let client = target.connect().await.unwrap();
        let mut last = Vec::new();
        for s in statements.split(';').filter(|s| !s.trim().is_empty()) {
            last = client.query(s, &[]).await.unwrap();
        }
        last
    }

    const ADMIN: &str = r#"{"eventType":"admin-event","event":{"id":"a-1","time":1739388470156,"realmId":"r1","operationType":"CREATE","resourceType":"USER","resourcePath":"users/u9","authDetails":{"userId":"u0"}}}"#;

    #[tokio::test]
    #[ignore = "needs a PostgreSQL server (AUTHTRAIL_PG_TEST_*)"]
    async fn live_rows_land_once_over_tls_even_when_the_chunk_is_sent_twice() {
        sql("DROP TABLE IF EXISTS live_events").await;
        let c = config(r#","table":"live_events","createSchema":true"#);
        let e = PostgresEmitter::start("pg", &c, None).await.unwrap();
        let batch = [prepared(E1, 0), prepared(E2, 1), prepared(ADMIN, 2)];
        assert_eq!(e.emit(&batch).await, vec![Outcome::Delivered; 3]);
        assert_eq!(e.emit(&batch).await, vec![Outcome::Delivered; 3]);
        let rows = sql("SELECT kind, type, user_id, time::text, event->>'eventType' FROM live_events ORDER BY kind, type").await;
        let got: Vec<(String, String, Option<String>)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        assert_eq!(
            got,
            [
                ("admin-event".into(), "USER:CREATE".into(), Some("u0".into())),
                ("other".into(), "ldap:bind".into(), None),
                ("user-event".into(), "LOGIN".into(), None),
            ]
        );
    }

    #[tokio::test]
    #[ignore = "needs a PostgreSQL server (AUTHTRAIL_PG_TEST_*)"]
    async fn live_a_mapped_value_that_does_not_fit_is_refused_and_the_rest_stored() {
        sql("DROP TABLE IF EXISTS live_logins; CREATE TABLE live_logins (id text PRIMARY KEY, at timestamptz NOT NULL, n integer)").await;
        let c = config(
            r#","tableMappings":[{"event":"user-event","table":"live_logins","fieldToColumn":{"/event/id":"id","/event/time":"at","/event/n":"n"}}]"#,
        );
        let e = PostgresEmitter::start("pg", &c, None).await.unwrap();
        let bad_time = r#"{"eventType":"user-event","event":{"id":"b-1","time":"never","type":"LOGIN"}}"#;
        let null_time = r#"{"eventType":"user-event","event":{"id":"b-2","type":"LOGIN","time":null,"n":1}}"#;
        let o = e
            .emit(&[prepared(E1, 0), prepared(bad_time, 1), prepared(null_time, 2)])
            .await;
        assert_eq!(o[0], Outcome::Delivered);
        assert!(matches!(&o[1], Outcome::Permanent(f) if f.status == "column"), "{o:?}");
        assert!(matches!(&o[2], Outcome::Permanent(f) if f.status == "23502"), "{o:?}");
        let rows = sql("SELECT id, at::text FROM live_logins").await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get::<_, String>(0), "id-1");
    }

    #[tokio::test]
    #[ignore = "needs a PostgreSQL server (AUTHTRAIL_PG_TEST_*)"]
    async fn live_a_mapping_to_an_unknown_column_fails_the_cold_start_naming_the_key() {
        sql("DROP TABLE IF EXISTS live_small; CREATE TABLE live_small (id text)").await;
        let c = config(
            r#","tableMappings":[{"event":"other","table":"live_small","fieldToColumn":{"/id":"id","/x":"nope"}}]"#,
        );
        let e = PostgresEmitter::start("pg", &c, None).await.err().unwrap().to_string();
        assert!(e.contains("tableMappings[0].fieldToColumn./x") && e.contains("nope"), "{e}");
        let c = config(
            r#","tableMappings":[{"event":"other","table":"live_missing","fieldToColumn":{"/id":"id"}}]"#,
        );
        let e = PostgresEmitter::start("pg", &c, None).await.err().unwrap().to_string();
        assert!(e.contains("tableMappings[0].table"), "{e}");
    }
}

#[test]
fn a_record_goes_to_the_mapping_naming_its_type_before_the_one_naming_its_kind() {
    let c = pg(&format!(
        r#"{{{BASE},"tableMappings":[
        {{"event":"user-event","table":"users","fieldToColumn":{{"/a":"a"}}}},
        {{"event":"LOGIN","table":"logins","fieldToColumn":{{"/a":"a"}}}},
        {{"event":"ldap","table":"ldap","fieldToColumn":{{"/a":"a"}}}}]}}"#
    ));
    let m = &c.table_mappings;
    assert_eq!(route(m, &prepared(E1, 0).class), Dest::Mapping(1));
    assert_eq!(route(m, &prepared(E2, 0).class), Dest::Mapping(2));
    let admin = r#"{"eventType":"admin-event","event":{"id":"a","operationType":"CREATE"}}"#;
    assert_eq!(route(m, &prepared(admin, 0).class), Dest::Default);
    assert_eq!(route(&[], &prepared(E1, 0).class), Dest::Default);
}
