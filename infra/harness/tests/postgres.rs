//! The PostgreSQL harness: a real server with TLS on a loopback port, reached by `psql` over
//! TLS that verifies the throwaway CA, with the test role's password, and stopped on drop.

use authtrail_harness::Postgres;

#[test]
fn postgres_starts_with_tls_answers_psql_verifying_the_ca_and_stops_on_drop() {
    let pg = match Postgres::start() {
        Ok(pg) => pg,
        Err(e) => panic!("PostgreSQL did not start: {e}"),
    };
    let port = pg.port();
    // The session is encrypted and the server certificate was verified (sslmode=verify-full).
    let rows = pg
        .query("SELECT ssl::text, current_user FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE pid = pg_backend_pid()")
        .unwrap_or_else(|e| panic!("query over TLS failed: {e}"));
    assert_eq!(
        rows,
        vec![vec!["true".to_string(), "authtrail".to_string()]]
    );

    pg.execute("CREATE TABLE t (id text PRIMARY KEY, at timestamptz); INSERT INTO t VALUES ('a', '2025-02-12T19:27:50.156Z'), ('b\nc', NULL)")
        .unwrap_or_else(|e| panic!("execute failed: {e}"));
    let rows = pg
        .query("SELECT id, at FROM t ORDER BY id")
        .unwrap_or_else(|e| panic!("query failed: {e}"));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0][0], "a");
    assert_eq!(rows[1], vec!["b\nc".to_string(), String::new()]);
    let json = pg
        .query_json("SELECT id FROM t WHERE at IS NOT NULL")
        .unwrap_or_else(|e| panic!("query_json failed: {e}"));
    assert_eq!(json, vec![serde_json::json!({"id": "a"})]);

    drop(pg);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server still listens on {port} after drop"
    );
}

#[test]
fn postgres_refuses_a_client_that_does_not_trust_its_ca_and_a_wrong_password() {
    let pg = match Postgres::start() {
        Ok(pg) => pg,
        Err(e) => panic!("PostgreSQL did not start: {e}"),
    };
    let psql = authtrail_harness::pg_bin_dir().join("psql");
    let run = |conninfo: String, password: &str| {
        std::process::Command::new(&psql)
            .args(["-X", "-q", "-d", &conninfo, "-c", "SELECT 1"])
            .env("PGPASSWORD", password)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(true)
    };
    // Another CA than the server's: verification fails.
    let other_ca =
        std::env::temp_dir().join(format!("authtrail-other-ca-{}.pem", std::process::id()));
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .unwrap_or_else(|e| panic!("other CA: {e}"));
    std::fs::write(&other_ca, other.cert.pem()).unwrap_or_else(|e| panic!("other CA file: {e}"));
    let untrusted = format!(
        "host=127.0.0.1 port={} dbname=authtrail user=authtrail sslmode=verify-full sslrootcert={}",
        pg.port(),
        other_ca.display()
    );
    assert!(!run(untrusted, pg.password()));
    assert!(!run(pg.conninfo(), "not-the-password"));
    assert!(run(pg.conninfo(), pg.password()));
    let _ = std::fs::remove_file(&other_ca);
}

#[test]
fn postgres_databases_keep_tables_apart_and_a_paused_server_comes_back_with_its_rows() {
    let mut pg = match Postgres::start() {
        Ok(pg) => pg,
        Err(e) => panic!("PostgreSQL did not start: {e}"),
    };
    let other = pg
        .create_database("other_db")
        .unwrap_or_else(|e| panic!("create_database: {e}"));
    other
        .execute("CREATE TABLE only_here (n int); INSERT INTO only_here VALUES (7)")
        .unwrap_or_else(|e| panic!("execute: {e}"));
    assert!(pg.query("SELECT n FROM only_here").is_err());
    pg.pause().unwrap_or_else(|e| panic!("pause: {e}"));
    assert!(
        other.query("SELECT n FROM only_here").is_err(),
        "down while paused"
    );
    pg.resume().unwrap_or_else(|e| panic!("resume: {e}"));
    assert_eq!(
        other
            .query("SELECT n FROM only_here")
            .unwrap_or_else(|e| panic!("query: {e}")),
        vec![vec!["7".to_string()]]
    );
}

#[test]
fn the_shared_server_is_started_once_per_test_binary() {
    let a = authtrail_harness::shared_postgres().unwrap_or_else(|e| panic!("shared: {e}"));
    let b = authtrail_harness::shared_postgres().unwrap_or_else(|e| panic!("shared: {e}"));
    assert!(std::ptr::eq(a, b));
    let db = a.lock().unwrap_or_else(|e| panic!("lock: {e}")).db();
    assert_eq!(
        db.query("SELECT 1")
            .unwrap_or_else(|e| panic!("query: {e}")),
        vec![vec!["1".to_string()]]
    );
}
