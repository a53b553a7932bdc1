//! `postgres` (alias `jdbc`): each record as a row of the default table (the migration in
//! `sql/postgres/`; its `event_id` is the record's [document id](crate::record::Prepared::doc_id))
//! or, through `tableMappings`, of a custom table whose column types are read from
//! `information_schema` at the first connection ([`db::prepare`]). A chunk is stored in one
//! transaction: per table, its rows by binary `COPY` into a temporary staging table of text
//! columns, then `INSERT ... SELECT` with each column cast to its type `ON CONFLICT DO
//! NOTHING`, so a re-delivery never duplicates a row (a row already there counts as
//! delivered); COPY stores about twice as many rows/s as multi-row `INSERT ... VALUES` (see
//! the bench). A value that does not fit its column fails its record only ([`rows`]); a set
//! the server refuses for its data is split in halves until the bad record is alone.
//! Connections are kept in a small pool across warm invocations; each logs in with the
//! password or, with `iamAuth`, a fresh RDS IAM token ([`iam`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Mutex, MutexGuard, OnceCell};
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use super::{BoxFuture, Emitter, Failure, Outcome};
use crate::ForwarderError;
use crate::record::{Classified, Prepared};

mod config;
pub mod db;
pub mod iam;
pub mod rows;

pub use config::{Auth, PostgresConfig, RawConnectionPool, RawPostgres, RawTableMapping, TableMapping};
use db::{Schema, Target};
use rows::{Column, Row};

/// Where a record goes: the default table or mapping `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dest {
    Default,
    Mapping(usize),
}

/// Where a record of `class` goes: the first mapping naming one of its event types (the
/// type or its part), else the first naming its kind, else the default table.
fn route(maps: &[TableMapping], class: &Classified) -> Dest {
    let kind = class.kind();
    let by_type = maps
        .iter()
        .position(|m| m.event != kind && class.names().any(|n| n == m.event));
    by_type
        .or_else(|| maps.iter().position(|m| m.event == kind))
        .map_or(Dest::Default, Dest::Mapping)
}

/// One row to store: the record's position in the chunk, where it goes, its parameters.
struct Pending {
    at: usize,
    dest: Dest,
    row: Row,
}

/// A pooled connection: its client, and whether its session's staging tables exist.
struct Conn {
    client: Client,
    staged: bool,
}

impl Conn {
    fn new(client: Client) -> Self {
        Self {
            client,
            staged: false,
        }
    }
}

/// A PostgreSQL emitter.
pub struct PostgresEmitter {
    name: String,
    config: PostgresConfig,
    target: Target,
    default_columns: Vec<Column>,
    schema: OnceCell<Schema>,
    pool: Vec<Mutex<Option<Conn>>>,
    next: AtomicUsize,
}

impl PostgresEmitter {
    /// The emitter `name` for `config`: secret read, TLS set up; one connection opened and the
    /// schema prepared now when the database answers (a mapping naming a missing table or
    /// column fails the cold start), else at the first chunk.
    pub async fn start(
        name: &str,
        config: &PostgresConfig,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Self, ForwarderError> {
        let target = Target::resolve(name, config, sdk).await?;
        let emitter = Self {
            name: name.to_string(),
            config: config.clone(),
            target,
            default_columns: rows::default_columns(),
            schema: OnceCell::new(),
            pool: (0..config.max_pool_size).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        };
        match emitter.target.connect().await {
            Ok(client) => {
                let schema = db::prepare(name, config, &client).await?;
                let _ = emitter.schema.set(schema);
                if let Some(slot) = emitter.pool.first() {
                    *slot.lock().await = Some(Conn::new(client));
                }
            }
            Err(f) => tracing::warn!(
                emitter = name,
                status = f.status,
                error = f.text,
                "PostgreSQL not reachable at cold start; connecting at the first chunk"
            ),
        }
        Ok(emitter)
    }

    /// A free pooled connection, or the next one once it is free.
    async fn slot(&self) -> Option<MutexGuard<'_, Option<Conn>>> {
        let n = self.pool.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Ok(g) = self.pool.get((start + i) % n)?.try_lock() {
                return Some(g);
            }
        }
        Some(self.pool.get(start % n)?.lock().await)
    }

    async fn attempt(&self, batch: &[Arc<Prepared>]) -> Vec<Outcome> {
        let Some(mut slot) = self.slot().await else {
            return super::all(batch.len(), Outcome::Retryable(Failure::new("pool", "no connection slot")));
        };
        if slot.as_ref().is_none_or(|c| c.client.is_closed()) {
            *slot = None;
            match self.target.connect().await {
                Ok(c) => *slot = Some(Conn::new(c)),
                Err(f) => return super::all(batch.len(), db::connect_outcome(f)),
            }
        }
        let Some(conn) = slot.as_mut() else {
            return super::all(batch.len(), Outcome::Retryable(Failure::new("connect", "no connection")));
        };
        let schema = match self
            .schema
            .get_or_try_init(|| db::prepare(&self.name, &self.config, &conn.client))
            .await
        {
            Ok(s) => s,
            Err(e) => return super::all(batch.len(), Outcome::Unavailable(Failure::new("schema", e.to_string()))),
        };
        let mut outcomes = vec![Outcome::Delivered; batch.len()];
        let mut pending = Vec::with_capacity(batch.len());
        for (at, p) in batch.iter().enumerate() {
            let dest = route(&self.config.table_mappings, &p.class);
            let row = match dest {
                Dest::Default => rows::default_row(p),
                Dest::Mapping(i) => match (self.config.table_mappings.get(i), schema.get(i)) {
                    (Some(m), Some(cols)) => rows::mapped_row(p, m, cols),
                    _ => Err("mapping without columns".to_string()),
                },
            };
            match row {
                Ok(row) if row.len() == self.columns(dest, schema).map_or(0, <[Column]>::len) => {
                    pending.push(Pending { at, dest, row });
                }
                Ok(_) => outcomes[at] = Outcome::Permanent(Failure::new("column", "row does not match its table's columns")),
                Err(why) => outcomes[at] = Outcome::Permanent(Failure::new("column", why)),
            }
        }
        let broken = self.store(conn, schema, pending, &mut outcomes).await;
        if broken {
            *slot = None;
        }
        outcomes
    }

    /// The columns of `dest`'s table.
    fn columns<'s>(&'s self, dest: Dest, schema: &'s Schema) -> Option<&'s [Column]> {
        match dest {
            Dest::Default => Some(&self.default_columns),
            Dest::Mapping(i) => schema.get(i).map(Vec::as_slice),
        }
    }

    /// `dest`'s table, columns, conflict target and staging table.
    fn destination<'s>(&'s self, dest: Dest, schema: &'s Schema) -> Option<(&'s str, &'s [Column], &'static str, String)> {
        let columns = self.columns(dest, schema)?;
        match dest {
            Dest::Default => Some((self.config.table.as_str(), columns, "(event_id) ", rows::stage_name(0))),
            Dest::Mapping(i) => {
                let m = self.config.table_mappings.get(i)?;
                Some((m.table.as_str(), columns, "", rows::stage_name(i + 1)))
            }
        }
    }

    /// Stores `pending`, splitting a set the server refuses for its data until the bad rows
    /// are alone; fills `outcomes`. Whether the connection is broken (to be reopened).
    async fn store(
        &self,
        conn: &mut Conn,
        schema: &Schema,
        pending: Vec<Pending>,
        outcomes: &mut [Outcome],
    ) -> bool {
        let mut queue = vec![pending];
        while let Some(set) = queue.pop() {
            if set.is_empty() {
                continue;
            }
            let Err(e) = self.transaction(conn, schema, &set).await else {
                continue;
            };
            let outcome = db::classify(&e);
            match outcome {
                Outcome::Rejected(f) if set.len() == 1 => {
                    set.iter().for_each(|r| outcomes[r.at] = Outcome::Permanent(f.clone()));
                }
                Outcome::Rejected(_) => {
                    let mut left = set;
                    let right = left.split_off(left.len() / 2);
                    queue.push(right);
                    queue.push(left);
                }
                other => {
                    for r in set.iter().chain(queue.iter().flatten()) {
                        outcomes[r.at] = other.clone();
                    }
                    return conn.client.is_closed() || matches!(other, Outcome::Retryable(_));
                }
            }
        }
        false
    }

    /// One transaction storing `set`: per destination, its rows copied into the session's
    /// staging table (made at the connection's first use) and inserted from there.
    async fn transaction(
        &self,
        conn: &mut Conn,
        schema: &Schema,
        set: &[Pending],
    ) -> Result<(), tokio_postgres::Error> {
        if !conn.staged {
            let dests = std::iter::once(Dest::Default)
                .chain((0..self.config.table_mappings.len()).map(Dest::Mapping));
            let sql: String = dests
                .filter_map(|d| self.destination(d, schema))
                .map(|(_, columns, _, stage)| rows::stage_sql(&stage, columns))
                .collect();
            conn.client.batch_execute(&sql).await?;
            conn.staged = true;
        }
        let tx = conn.client.transaction().await?;
        let mut seen = Vec::new();
        for dest in set.iter().map(|r| r.dest) {
            if seen.contains(&dest) {
                continue;
            }
            seen.push(dest);
            let Some((table, columns, conflict, stage)) = self.destination(dest, schema) else {
                continue;
            };
            let sink = tx.copy_in(rows::copy_sql(&stage).as_str()).await?;
            let types = vec![Type::TEXT; columns.len()];
            let writer = BinaryCopyInWriter::new(sink, &types);
            let mut writer = std::pin::pin!(writer);
            for r in set.iter().filter(|r| r.dest == dest) {
                writer.as_mut().write_raw(r.row.iter()).await?;
            }
            writer.finish().await?;
            tx.batch_execute(&rows::insert_select_sql(table, columns, &stage, conflict))
                .await?;
        }
        tx.commit().await
    }
}

impl Emitter for PostgresEmitter {
    fn name(&self) -> &str {
        &self.name
    }

    fn emit<'a>(&'a self, batch: &'a [Arc<Prepared>]) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(self.attempt(batch))
    }

    fn max_concurrent_requests(&self) -> usize {
        self.pool.len()
    }
}

#[cfg(test)]
mod tests;
