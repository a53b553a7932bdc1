//! [`Database`]: `psql` as the test role over TLS that verifies the throwaway CA, the client
//! the tests read rows back with.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::ROLE;
use crate::HarnessError;

/// Field and record separators of [`Database::query`]'s `psql` output (ASCII US and RS).
const FIELD_SEP: char = '\u{1f}';
const RECORD_SEP: char = '\u{1e}';

/// A `psql` client of one database of a [`Postgres`] server, as the test role over TLS that
/// verifies the throwaway CA: the way tests read rows back with a client other than the
/// emitter's. Owns its connection details, so it outlives a lock on a shared server.
#[derive(Clone)]
pub struct Database {
    pub(super) port: u16,
    pub(super) name: String,
    pub(super) password: String,
    pub(super) psql: PathBuf,
    pub(super) ca_pem: PathBuf,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("port", &self.port)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A libpq connection string for the test role over TLS verifying the throwaway CA
    /// (without the password: `psql` gets it through `PGPASSWORD`).
    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} dbname={} user={ROLE} sslmode=verify-full sslrootcert={}",
            self.port,
            self.name,
            self.ca_pem.display()
        )
    }

    /// Runs `sql` and returns its rows, each a list of column values as text (NULL as the
    /// empty string).
    pub fn query(&self, sql: &str) -> Result<Vec<Vec<String>>, HarnessError> {
        let out = self.psql(&["-A", "-t", "-F", "\u{1f}", "-R", "\u{1e}", "-c", sql])?;
        let out = out.strip_suffix('\n').unwrap_or(&out);
        Ok(out
            .split(RECORD_SEP)
            .filter(|r| !r.is_empty())
            .map(|r| r.split(FIELD_SEP).map(str::to_string).collect())
            .collect())
    }

    /// Runs a `SELECT` and returns its rows as JSON objects (column name to value, with
    /// PostgreSQL's own JSON conversion).
    pub fn query_json(&self, select: &str) -> Result<Vec<serde_json::Value>, HarnessError> {
        let wrapped = format!("SELECT coalesce(json_agg(q), '[]'::json) FROM ({select}) AS q");
        let out = self.psql(&["-A", "-t", "-c", &wrapped])?;
        serde_json::from_str(out.trim()).map_err(|e| HarnessError::Setup(format!("psql JSON: {e}")))
    }

    /// Runs SQL statements, stopping at the first error.
    pub fn execute(&self, sql: &str) -> Result<(), HarnessError> {
        self.psql(&["-c", sql]).map(drop)
    }

    /// Runs a SQL file (`psql -f`), stopping at the first error.
    pub fn execute_file(&self, path: &Path) -> Result<(), HarnessError> {
        let path = path.display().to_string();
        self.psql(&["-f", &path]).map(drop)
    }

    fn psql(&self, args: &[&str]) -> Result<String, HarnessError> {
        let out = Command::new(&self.psql)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &self.conninfo()])
            .args(args)
            .env("PGPASSWORD", &self.password)
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGSERVICE")
            .stdin(Stdio::null())
            .output()
            .map_err(|source| HarnessError::Spawn {
                what: "psql".into(),
                source,
            })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(HarnessError::Command {
                what: "psql".into(),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        }
    }
}
