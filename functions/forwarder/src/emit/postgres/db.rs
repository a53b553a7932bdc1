//! The database side: where to connect ([`Target`], from the settings and the secret),
//! opening a connection (TLS with rustls, certificate always verified; logging in with the
//! password or a fresh RDS IAM token per connection, [`super::iam`]), preparing the schema
//! at the first connection (`createSchema`, the mapped tables' column types from
//! `information_schema`), and what a failed statement means for its records ([`classify`]).

use std::sync::Arc;
use std::time::Duration;

use authtrail_core::secret::Secret;
use serde_json::{Map, Value};
use tokio_postgres::Client;
use tokio_postgres::config::SslMode;

use super::config::{Auth, DEFAULT_PORT, DEFAULT_TABLE, PostgresConfig, is_loopback};
use super::iam::Signer;
use super::rows::{Column, ColumnKind};
use crate::ForwarderError;
use crate::config::err;
use crate::config::secret::SecretRef;
use crate::emit::{Failure, Outcome};

/// The migration that creates the default table and its indexes.
pub const MIGRATION: &str = include_str!("../../../sql/postgres/001_authtrail_events.sql");

/// How a connection logs in.
enum Login {
    /// A password read at cold start.
    Password(Secret),
    /// A token signed for each new connection.
    Iam(Signer),
}

/// Where and as whom the emitter connects (the password is hidden in `Debug`).
pub struct Target {
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database.
    pub database: String,
    /// User.
    pub username: String,
    /// The password, or the signer of IAM tokens.
    login: Login,
    /// The TLS client configuration, `None` for plaintext to a loopback host.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Time allowed to open a connection (TCP, TLS, authentication).
    timeout: Duration,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Target({}@{}:{}/{}, tls: {}, login: {})",
            self.username,
            self.host,
            self.port,
            self.database,
            self.tls.is_some(),
            match self.login {
                Login::Password(_) => "password",
                Login::Iam(_) => "iam",
            }
        )
    }
}

/// The fields of an RDS-managed secret besides the password.
#[derive(Default)]
struct SecretFields {
    username: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    dbname: Option<String>,
}

/// The password and the other fields of the secret at `arn` holding `s`: an RDS-managed
/// secret's JSON object (which must hold `password`), else the whole string.
fn read_secret(arn: &str, s: Secret) -> Result<(Secret, SecretFields), ForwarderError> {
    let Ok(object) = serde_json::from_str::<Map<String, Value>>(s.expose()) else {
        return Ok((s, SecretFields::default()));
    };
    let text = |k: &str| object.get(k).and_then(Value::as_str).map(str::to_string);
    let Some(password) = text("password") else {
        return Err(ForwarderError::SecretFieldMissing {
            arn: arn.to_string(),
            field: "password".into(),
            has: object.keys().cloned().collect(),
        });
    };
    let port = match object.get("port") {
        Some(Value::Number(n)) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        Some(Value::String(p)) => p.parse().ok(),
        _ => None,
    };
    Ok((
        Secret::new(password),
        SecretFields {
            username: text("username"),
            host: text("host"),
            port,
            dbname: text("dbname"),
        },
    ))
}

impl Target {
    /// The target of `config` for emitter `name`: its password read (plain, or from Secrets
    /// Manager, whose RDS fields fill the keys not given), its TLS trust built.
    pub async fn resolve(
        name: &str,
        config: &PostgresConfig,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Self, ForwarderError> {
        let label = format!("emitter {name:?}");
        let (login, fields) = match &config.auth {
            Auth::Iam => (Login::Iam(Signer::from_sdk(&label, sdk)?), SecretFields::default()),
            Auth::Password(SecretRef::Plain(s)) => (Login::Password(s.clone()), SecretFields::default()),
            Auth::Password(SecretRef::Arn(arn)) => {
                let Some(sdk) = sdk else {
                    return Err(err(arn.clone(), "Secrets Manager is not available here"));
                };
                let s = authtrail_core::secret::fetch_secret_string(sdk, arn).await?;
                let (password, fields) = read_secret(arn, s)?;
                (Login::Password(password), fields)
            }
        };
        let need = |key: &str, v: Option<String>| {
            v.ok_or_else(|| {
                err(
                    format!("{label}.{key}"),
                    "is required (neither given nor in the passwordSecretArn secret)",
                )
            })
        };
        let host = need("host", config.host.clone().or(fields.host))?;
        if !config.tls && !is_loopback(&host) {
            return Err(err(
                format!("{label}.tls"),
                format!("may be false only for a loopback host (host is {host:?})"),
            ));
        }
        let tls = if config.tls {
            Some(crate::config::tls::client_config(
                name,
                config.ca_bundle.as_deref(),
                config.ca_bundle_only,
            )?)
        } else {
            None
        };
        Ok(Target {
            host,
            port: config.port.or(fields.port).unwrap_or(DEFAULT_PORT),
            database: need("database", config.database.clone().or(fields.dbname))?,
            username: need("username", config.username.clone().or(fields.username))?,
            login,
            tls,
            timeout: config.connection_timeout,
        })
    }

    /// Opens a connection (with a fresh token under IAM authentication); its driver task runs
    /// until the client is dropped.
    pub async fn connect(&self) -> Result<Client, Failure> {
        let password = match &self.login {
            Login::Password(p) => p.clone(),
            Login::Iam(signer) => signer.token(&self.host, self.port, &self.username).await?,
        };
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .dbname(&self.database)
            .user(&self.username)
            .password(password.expose())
            .application_name("authtrail-forwarder")
            .connect_timeout(self.timeout);
        let opened = match &self.tls {
            Some(tls) => {
                c.ssl_mode(SslMode::Require);
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
                tokio::time::timeout(self.timeout, c.connect(tls))
                    .await
                    .map(|r| r.map(|(client, conn)| (client, spawn(conn))))
            }
            None => {
                c.ssl_mode(SslMode::Disable);
                tokio::time::timeout(self.timeout, c.connect(tokio_postgres::NoTls))
                    .await
                    .map(|r| r.map(|(client, conn)| (client, spawn(conn))))
            }
        };
        match opened {
            Err(_) => Err(Failure::new("timeout", "connecting to PostgreSQL timed out")),
            Ok(Err(e)) => Err(Failure::new(status_of(&e, "connect"), e.to_string())),
            Ok(Ok((client, ()))) => Ok(client),
        }
    }
}

/// Runs a connection's driver in the background.
fn spawn<S, T>(conn: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "PostgreSQL connection closed");
        }
    });
}

/// The schema as the emitter uses it: the columns of each mapping's table, in the mapping's
/// order.
pub type Schema = Vec<Vec<Column>>;

/// Prepares the schema on `client` for emitter `name`: runs the migration when
/// `createSchema`, reads each mapped table's column types (a missing table or column is a
/// configuration error naming its key).
pub async fn prepare(
    name: &str,
    config: &PostgresConfig,
    client: &Client,
) -> Result<Schema, ForwarderError> {
    let db = |e: tokio_postgres::Error| ForwarderError::Postgres {
        emitter: name.to_string(),
        detail: e.to_string(),
    };
    if config.create_schema {
        let sql = if config.table == DEFAULT_TABLE {
            MIGRATION.to_string()
        } else {
            MIGRATION.replace(DEFAULT_TABLE, &config.table)
        };
        client.batch_execute(&sql).await.map_err(db)?;
    }
    let mut schema = Vec::with_capacity(config.table_mappings.len());
    for (i, m) in config.table_mappings.iter().enumerate() {
        let (schema_name, table) = match m.table.split_once('.') {
            Some((s, t)) => (Some(s), t),
            None => (None, m.table.as_str()),
        };
        let rows = client
            .query(
                "SELECT column_name::text, data_type::text, udt_schema::text, udt_name::text \
                 FROM information_schema.columns \
                 WHERE table_schema = COALESCE($1::text, current_schema()) AND table_name = $2::text",
                &[&schema_name, &table],
            )
            .await
            .map_err(db)?;
        let path = format!("emitter {name:?}.tableMappings[{i}]");
        if rows.is_empty() {
            return Err(err(
                format!("{path}.table"),
                format!("table {:?} does not exist (or is not visible to the user)", m.table),
            ));
        }
        let mut columns = Vec::with_capacity(m.columns.len());
        for (pointer, column) in &m.columns {
            let found = rows.iter().find(|r| r.get::<_, String>(0) == *column);
            let Some(r) = found else {
                return Err(err(
                    format!("{path}.fieldToColumn.{}", pointer.as_str()),
                    format!("table {:?} has no column {column:?}", m.table),
                ));
            };
            let cast = format!(
                "{}.{}",
                quote(&r.get::<_, String>(2)),
                quote(&r.get::<_, String>(3))
            );
            columns.push(Column::new(column, &cast, ColumnKind::of(&r.get::<_, String>(1))));
        }
        schema.push(columns);
    }
    Ok(schema)
}

/// `s` as a quoted SQL identifier.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A failure's status: the SQLSTATE of a server error, else `fallback`.
fn status_of(e: &tokio_postgres::Error, fallback: &str) -> String {
    e.code()
        .map_or_else(|| fallback.to_string(), |c| c.code().to_string())
}

/// What a failed statement means for its records: data errors (SQLSTATE classes 22 and 23)
/// are [`Outcome::Rejected`] (the rows are split to find the bad one); a missing table or
/// column, a privilege or a login refused (classes 42, 28, 3D, 3F) are
/// [`Outcome::Unavailable`] (an operator fixes them); anything else (connection lost,
/// server shutting down, serialization failure, timeout) is [`Outcome::Retryable`].
pub fn classify(e: &tokio_postgres::Error) -> Outcome {
    let text = e
        .as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_string());
    let failure = Failure::new(status_of(e, "postgres"), text);
    match e.code().map(|c| c.code().get(..2).unwrap_or_default()) {
        Some("22" | "23") => Outcome::Rejected(failure),
        Some("42" | "28" | "3D" | "3F") => Outcome::Unavailable(failure),
        _ => Outcome::Retryable(failure),
    }
}

/// The outcome of a login failure while connecting (a refused password is for an operator).
pub fn connect_outcome(f: Failure) -> Outcome {
    if f.status.starts_with("28") || f.status.starts_with("3D") {
        Outcome::Unavailable(f)
    } else {
        Outcome::Retryable(f)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const ARN: &str = "arn:aws:secretsmanager:eu-west-1:1:secret:rds";

    #[test]
    fn an_rds_secret_gives_its_password_and_the_connection_fields() {
        let s = Secret::new(
            r#"{"username":"fwd","password":"hunter2","engine":"postgres","host":"db.example","port":5433,"dbname":"audit"}"#,
        );
        let (pw, f) = read_secret(ARN, s).unwrap();
        assert_eq!(pw.expose(), "hunter2");
        assert_eq!(f.username.as_deref(), Some("fwd"));
        assert_eq!(f.host.as_deref(), Some("db.example"));
        assert_eq!(f.port, Some(5433));
        assert_eq!(f.dbname.as_deref(), Some("audit"));
        let (_, f) = read_secret(ARN, Secret::new(r#"{"password":"p","port":"6543"}"#)).unwrap();
        assert_eq!(f.port, Some(6543));
    }

    #[test]
    fn a_plain_secret_is_the_password_and_a_json_one_without_password_names_its_fields_only() {
        let (pw, f) = read_secret(ARN, Secret::new("s3cret")).unwrap();
        assert_eq!(pw.expose(), "s3cret");
        assert!(f.host.is_none());
        let e = read_secret(ARN, Secret::new(r#"{"username":"u","pass":"hunter2"}"#))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("\"password\"") && e.contains("pass"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[tokio::test]
    async fn the_target_takes_given_keys_over_the_secret_and_hides_the_password() {
        let crate::emit::EmitterSettings::Postgres(c) = crate::emit::test_support::settings(
            r#"{"name":"pg","type":"postgres","host":"127.0.0.1","database":"a","username":"u","password":"hunter2","tls":false}"#,
        ) else {
            panic!()
        };
        let t = Target::resolve("pg", &c, None).await.unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 5432));
        let shown = format!("{t:?}");
        assert!(!shown.contains("hunter2") && shown.contains("tls: false"), "{shown}");
    }

    /// A loopback server that asks for a cleartext password, sends each one it receives to
    /// `seen` and refuses the login (SQLSTATE 28P01).
    async fn password_catcher() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (seen, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let len = sock.read_u32().await.unwrap() as usize;
                let mut startup = vec![0; len - 4];
                sock.read_exact(&mut startup).await.unwrap();
                sock.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).await.unwrap();
                assert_eq!(sock.read_u8().await.unwrap(), b'p');
                let len = sock.read_u32().await.unwrap() as usize;
                let mut password = vec![0; len - 4];
                sock.read_exact(&mut password).await.unwrap();
                password.pop();
                seen.send(String::from_utf8(password).unwrap()).unwrap();
                let fields = b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed\0\0";
                let mut reply = vec![b'E'];
                reply.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
                reply.extend_from_slice(fields);
                sock.write_all(&reply).await.unwrap();
            }
        });
        (port, rx)
    }

    /// A clock a minute further on at each call.
    fn stepping_clock() -> std::time::SystemTime {
        static STEP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = STEP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::time::UNIX_EPOCH + Duration::from_secs(1_739_388_470 + 60 * n)
    }

    #[tokio::test]
    async fn with_iam_auth_each_new_connection_logs_in_with_a_fresh_token_that_no_error_shows() {
        use aws_credential_types::Credentials;
        use aws_credential_types::provider::SharedCredentialsProvider;
        let (port, mut seen) = password_catcher().await;
        let creds = Credentials::new("ASIAEXAMPLE", "wJalrXUtnFEMI", Some("sessiontok".into()), None, "role");
        let signer = Signer::new(SharedCredentialsProvider::new(creds), "eu-west-1").with_clock(stepping_clock);
        // TLS is required with iamAuth; this loopback catcher speaks plaintext, so the target is
        // built here rather than from a configuration.
        let target = Target {
            host: "127.0.0.1".into(),
            port,
            database: "audit".into(),
            username: "writer".into(),
            login: Login::Iam(signer),
            tls: None,
            timeout: Duration::from_secs(5),
        };
        let mut tokens = Vec::new();
        for _ in 0..2 {
            let f = target.connect().await.unwrap_err();
            let token = seen.recv().await.unwrap();
            assert!(!f.text.contains(&token) && !f.text.contains("X-Amz"), "{}", f.text);
            assert!(matches!(connect_outcome(f), Outcome::Unavailable(_)));
            tokens.push(token);
        }
        let prefix = format!("127.0.0.1:{port}/?Action=connect&DBUser=writer&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAEXAMPLE%2F");
        for t in &tokens {
            assert!(t.starts_with(&prefix) && t.contains("%2Feu-west-1%2Frds-db%2Faws4_request&"), "{t}");
            assert!(t.contains("&X-Amz-Expires=900&") && t.contains("X-Amz-Security-Token=sessiontok"), "{t}");
        }
        assert_ne!(tokens[0], tokens[1], "a token per connection, signed when it opens");
        let shown = format!("{target:?}");
        assert!(shown.contains("login: iam") && !shown.contains("X-Amz") && !shown.contains("ASIA"), "{shown}");
    }

    #[tokio::test]
    async fn a_connection_refused_is_retried_not_dead_lettered() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let crate::emit::EmitterSettings::Postgres(c) = crate::emit::test_support::settings(
            &format!(r#"{{"name":"pg","type":"postgres","host":"127.0.0.1","port":{port},"database":"a","username":"u","password":"p","tls":false}}"#),
        ) else {
            panic!()
        };
        let t = Target::resolve("pg", &c, None).await.unwrap();
        let f = t.connect().await.unwrap_err();
        assert!(matches!(connect_outcome(f), Outcome::Retryable(_)));
    }
}
