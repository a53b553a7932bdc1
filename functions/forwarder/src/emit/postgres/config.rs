//! The settings of type `postgres` (alias `jdbc`, the name ForgeRock users know).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::ForwarderError;
use crate::config::err;
use crate::config::secret::{SecretRef, secret_ref};
use crate::emit::{Emitter, EmitterSpec};
use crate::filter::Pointer;

/// Default `port`.
pub const DEFAULT_PORT: u16 = 5432;
/// Default `table`: the one the migration SQL creates.
pub const DEFAULT_TABLE: &str = "authtrail_events";
/// Default `connectionPool.maxPoolSize`.
pub const DEFAULT_POOL_SIZE: usize = 2;
/// Largest `connectionPool.maxPoolSize`.
pub const MAX_POOL_SIZE: usize = 20;
/// Default `connectionPool.connectionTimeout`, seconds.
pub const DEFAULT_CONNECTION_TIMEOUT_SECS: u64 = 5;

/// The keys of type `postgres` / `jdbc` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawPostgres {
    /// The server's host name (required unless the `passwordSecretArn` secret holds `host`).
    host: Option<String>,
    /// The server's port (default 5432, or the secret's `port`).
    port: Option<u16>,
    /// The database (required unless the secret holds `dbname`).
    database: Option<String>,
    /// The user (required unless the secret holds `username`).
    username: Option<String>,
    /// The password (local runs only, with `AUTHTRAIL_ALLOW_PLAINTEXT_SECRETS=true`).
    password: Option<String>,
    /// Secrets Manager ARN of the password: a plain string, or an RDS-managed secret's JSON
    /// (`{"username","password","host","port","dbname"}`), whose fields fill the keys not given.
    password_secret_arn: Option<String>,
    /// RDS IAM database authentication: each new connection's password is a token signed
    /// with the function's role (default `false`; excludes `password` and
    /// `passwordSecretArn`; needs TLS and `host`, `database`, `username`).
    iam_auth: Option<bool>,
    /// TLS to the server, certificate always verified (default `true`; `false` only for a
    /// loopback host).
    tls: Option<bool>,
    /// Path of a PEM file whose CAs are trusted in addition to the system's (RDS publishes
    /// its bundle), or alone with `caBundleOnly`.
    ca_bundle: Option<PathBuf>,
    /// Trust only the CAs of `caBundle` (default `false`).
    ca_bundle_only: Option<bool>,
    /// The default table (default `authtrail_events`): records no `tableMappings` entry
    /// takes go there, with the migration's columns.
    table: Option<String>,
    /// Run the migration SQL (the default table and its indexes) at cold start (default
    /// `false`: the emitter never changes the schema otherwise).
    create_schema: Option<bool>,
    /// Per event kind or type, a table and the columns filled from JSON pointers.
    table_mappings: Option<Vec<RawTableMapping>>,
    /// The connections kept across warm invocations.
    connection_pool: Option<RawConnectionPool>,
}

/// One `tableMappings` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawTableMapping {
    /// `user-event`, `admin-event`, `other` or an event type name (`LOGIN_ERROR`,
    /// `USER:CREATE`, `ldap:bind`).
    event: Option<String>,
    /// The table (`name` or `schema.name`, lowercase).
    table: Option<String>,
    /// JSON pointer to column name.
    field_to_column: Option<BTreeMap<String, String>>,
}

/// `connectionPool` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawConnectionPool {
    /// Connections kept open (default 2, 1..=20); also the emitter's concurrent requests.
    max_pool_size: Option<usize>,
    /// Seconds to wait for a connection to open (default 5, 1..=60).
    connection_timeout: Option<u64>,
}

/// How the emitter logs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// A password, plain or by ARN (hidden in `Debug`).
    Password(SecretRef),
    /// RDS IAM authentication: a token signed with the function's role per connection.
    Iam,
}

/// A validated `tableMappings` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMapping {
    /// The event kind or type name it takes.
    pub event: String,
    /// The table, checked as an identifier.
    pub table: String,
    /// (JSON pointer, column) pairs, in the order written.
    pub columns: Vec<(Pointer, String)>,
}

/// The validated settings of type `postgres`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// Host (`None`: from the secret).
    pub host: Option<String>,
    /// Port (`None`: the secret's, else 5432).
    pub port: Option<u16>,
    /// Database (`None`: from the secret).
    pub database: Option<String>,
    /// User (`None`: from the secret).
    pub username: Option<String>,
    /// How it logs in.
    pub auth: Auth,
    /// Whether TLS is used (verification always on).
    pub tls: bool,
    /// Extra trusted CAs.
    pub ca_bundle: Option<PathBuf>,
    /// Trust only `ca_bundle`.
    pub ca_bundle_only: bool,
    /// The default table.
    pub table: String,
    /// Run the migration at cold start.
    pub create_schema: bool,
    /// The custom tables.
    pub table_mappings: Vec<TableMapping>,
    /// Connections kept open.
    pub max_pool_size: usize,
    /// Time allowed to open a connection.
    pub connection_timeout: Duration,
}

/// Whether `host` is a loopback host (`localhost`, 127.0.0.0/8, `::1`).
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Checks a table name at `path`: `name` or `schema.name`, each part lowercase letters,
/// digits and `_`, not starting with a digit, at most 63 bytes.
pub fn check_table(path: &str, name: &str) -> Result<String, ForwarderError> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > 2 || !parts.iter().all(|p| is_identifier(p)) {
        return Err(err(
            path,
            format!(
                "must be a lowercase table name (letters, digits, _; optionally schema.table) \
                 (got {name:?})"
            ),
        ));
    }
    Ok(name.to_string())
}

/// Whether `s` is a lowercase SQL identifier that needs no quoting.
pub fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn mapping(label: &str, i: usize, raw: RawTableMapping) -> Result<TableMapping, ForwarderError> {
    let path = format!("{label}.tableMappings[{i}]");
    let event = raw
        .event
        .filter(|e| !e.is_empty())
        .ok_or_else(|| err(format!("{path}.event"), "is required (user-event, admin-event, other or an event type name)"))?;
    let table = raw
        .table
        .ok_or_else(|| err(format!("{path}.table"), "is required"))?;
    let table = check_table(&format!("{path}.table"), &table)?;
    let fields = raw.field_to_column.unwrap_or_default();
    if fields.is_empty() {
        return Err(err(
            format!("{path}.fieldToColumn"),
            "must map at least one JSON pointer to a column",
        ));
    }
    let mut columns: Vec<(Pointer, String)> = Vec::with_capacity(fields.len());
    for (pointer, column) in fields {
        let key = format!("{path}.fieldToColumn.{pointer}");
        let p = Pointer::parse(&pointer).map_err(|e| err(&key, e.to_string()))?;
        if !is_identifier(&column) {
            return Err(err(
                &key,
                format!("must name a lowercase column (letters, digits, _) (got {column:?})"),
            ));
        }
        if columns.iter().any(|(_, c)| *c == column) {
            return Err(err(&key, format!("column {column:?} is mapped twice")));
        }
        columns.push((p, column));
    }
    Ok(TableMapping {
        event,
        table,
        columns,
    })
}

fn pool(
    label: &str,
    raw: Option<RawConnectionPool>,
) -> Result<(usize, Duration), ForwarderError> {
    let raw = raw.unwrap_or(RawConnectionPool {
        max_pool_size: None,
        connection_timeout: None,
    });
    let size = raw.max_pool_size.unwrap_or(DEFAULT_POOL_SIZE);
    if !(1..=MAX_POOL_SIZE).contains(&size) {
        return Err(err(
            format!("{label}.connectionPool.maxPoolSize"),
            format!("must be 1..={MAX_POOL_SIZE} (got {size})"),
        ));
    }
    let secs = raw
        .connection_timeout
        .unwrap_or(DEFAULT_CONNECTION_TIMEOUT_SECS);
    if !(1..=60).contains(&secs) {
        return Err(err(
            format!("{label}.connectionPool.connectionTimeout"),
            format!("must be 1..=60 seconds (got {secs})"),
        ));
    }
    Ok((size, Duration::from_secs(secs)))
}

/// How emitter `label` logs in: `iamAuth`, else `password` / `passwordSecretArn` (one of
/// them required).
fn auth(label: &str, raw: &RawPostgres) -> Result<Auth, ForwarderError> {
    if raw.iam_auth == Some(true) {
        if raw.password.is_some() || raw.password_secret_arn.is_some() {
            return Err(err(
                format!("{label}.iamAuth"),
                "excludes password and passwordSecretArn (the password is a token signed with \
                 the function's role)",
            ));
        }
        return Ok(Auth::Iam);
    }
    secret_ref(
        label,
        "password",
        "passwordSecretArn",
        raw.password.as_ref(),
        raw.password_secret_arn.as_ref(),
    )?
    .map(Auth::Password)
    .ok_or_else(|| {
        err(
            format!("{label}.passwordSecretArn"),
            "is required for type postgres (or iamAuth: true, or password for local runs only)",
        )
    })
}

fn non_empty(label: &str, key: &str, v: Option<String>) -> Result<Option<String>, ForwarderError> {
    match v {
        Some(s) if s.trim().is_empty() => Err(err(format!("{label}.{key}"), "must not be empty")),
        other => Ok(other),
    }
}

impl EmitterSpec for PostgresConfig {
    type Raw = RawPostgres;

    fn validate(label: &str, raw: RawPostgres) -> Result<Self, ForwarderError> {
        let auth = auth(label, &raw)?;
        let from_secret = matches!(auth, Auth::Password(SecretRef::Arn(_)));
        let host = non_empty(label, "host", raw.host)?;
        let database = non_empty(label, "database", raw.database)?;
        let username = non_empty(label, "username", raw.username)?;
        for (key, v) in [("host", &host), ("database", &database), ("username", &username)] {
            if v.is_none() && !from_secret {
                return Err(err(
                    format!("{label}.{key}"),
                    "is required for type postgres (unless the passwordSecretArn secret holds it)",
                ));
            }
        }
        if raw.port == Some(0) {
            return Err(err(format!("{label}.port"), "must be 1..=65535 (got 0)"));
        }
        let tls = raw.tls.unwrap_or(true);
        if auth == Auth::Iam && !tls {
            return Err(err(
                format!("{label}.tls"),
                "must be true with iamAuth (RDS accepts IAM tokens over TLS only)",
            ));
        }
        if let Some(h) = &host
            && !tls
            && !is_loopback(h)
        {
            return Err(err(
                format!("{label}.tls"),
                format!("may be false only for a loopback host (host is {h:?})"),
            ));
        }
        if raw.ca_bundle_only == Some(true) && raw.ca_bundle.is_none() {
            return Err(err(
                format!("{label}.caBundleOnly"),
                "needs caBundle (the CAs to trust)",
            ));
        }
        let table = check_table(
            &format!("{label}.table"),
            raw.table.as_deref().unwrap_or(DEFAULT_TABLE),
        )?;
        let table_mappings = raw
            .table_mappings
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, m)| mapping(label, i, m))
            .collect::<Result<Vec<_>, _>>()?;
        let (max_pool_size, connection_timeout) = pool(label, raw.connection_pool)?;
        Ok(PostgresConfig {
            host,
            port: raw.port,
            database,
            username,
            auth,
            tls,
            ca_bundle: raw.ca_bundle,
            ca_bundle_only: raw.ca_bundle_only.unwrap_or(false),
            table,
            create_schema: raw.create_schema.unwrap_or(false),
            table_mappings,
            max_pool_size,
            connection_timeout,
        })
    }

    async fn build(
        &self,
        name: &str,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Arc<dyn Emitter>, ForwarderError> {
        Ok(Arc::new(super::PostgresEmitter::start(name, self, sdk).await?))
    }
}
