//! `postgres` (alias `jdbc`): each record as a row of the default table (the migration in
//! `sql/postgres/`; its `event_id` is the record's [document id](crate::record::Prepared::doc_id))
//! or, through `tableMappings`, of a custom table whose column types are read from
//! `information_schema` at the first connection ([`db::prepare`]). A chunk is stored by
//! multi-row `INSERT ... ON CONFLICT DO NOTHING` statements in one transaction, so a
//! re-delivery never duplicates a row (a row already there counts as delivered). A value that
//! does not fit its column fails its record only ([`rows`]); a statement the server refuses
//! for its data is split in halves until the bad record is alone. Connections are kept in a
//! small pool across warm invocations; each logs in with the password or, with `iamAuth`, a
//! fresh RDS IAM token ([`iam`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Mutex, MutexGuard, OnceCell};
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

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

/// A PostgreSQL emitter.
pub struct PostgresEmitter {
    name: String,
    config: PostgresConfig,
    target: Target,
    default_columns: Vec<Column>,
    schema: OnceCell<Schema>,
    pool: Vec<Mutex<Option<Client>>>,
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
                    *slot.lock().await = Some(client);
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
    async fn slot(&self) -> Option<MutexGuard<'_, Option<Client>>> {
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
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = None;
            match self.target.connect().await {
                Ok(c) => *slot = Some(c),
                Err(f) => return super::all(batch.len(), db::connect_outcome(f)),
            }
        }
        let Some(client) = slot.as_mut() else {
            return super::all(batch.len(), Outcome::Retryable(Failure::new("connect", "no connection")));
        };
        let schema = match self
            .schema
            .get_or_try_init(|| db::prepare(&self.name, &self.config, client))
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
                Ok(row) => pending.push(Pending { at, dest, row }),
                Err(why) => outcomes[at] = Outcome::Permanent(Failure::new("column", why)),
            }
        }
        let broken = self.store(client, schema, pending, &mut outcomes).await;
        if broken {
            *slot = None;
        }
        outcomes
    }

    /// Stores `pending`, splitting a set the server refuses for its data until the bad rows
    /// are alone; fills `outcomes`. Whether the connection is broken (to be reopened).
    async fn store(
        &self,
        client: &mut Client,
        schema: &Schema,
        pending: Vec<Pending>,
        outcomes: &mut [Outcome],
    ) -> bool {
        let mut queue = vec![pending];
        while let Some(set) = queue.pop() {
            if set.is_empty() {
                continue;
            }
            let Err(e) = self.transaction(client, schema, &set).await else {
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
                    return client.is_closed() || matches!(other, Outcome::Retryable(_));
                }
            }
        }
        false
    }

    /// One transaction inserting `set`: one multi-row statement per destination and chunk of
    /// at most [`rows::rows_per_statement`] rows.
    async fn transaction(
        &self,
        client: &mut Client,
        schema: &Schema,
        set: &[Pending],
    ) -> Result<(), tokio_postgres::Error> {
        let tx = client.transaction().await?;
        let mut dests: Vec<Dest> = set.iter().map(|r| r.dest).collect();
        dests.dedup();
        let mut seen = Vec::new();
        for dest in dests {
            if seen.contains(&dest) {
                continue;
            }
            seen.push(dest);
            let (table, columns, conflict) = match dest {
                Dest::Default => (self.config.table.as_str(), &self.default_columns, "(event_id) "),
                Dest::Mapping(i) => match (self.config.table_mappings.get(i), schema.get(i)) {
                    (Some(m), Some(c)) => (m.table.as_str(), c, ""),
                    _ => continue,
                },
            };
            let rows: Vec<&Row> = set.iter().filter(|r| r.dest == dest).map(|r| &r.row).collect();
            for chunk in rows.chunks(rows::rows_per_statement(columns.len())) {
                let sql = rows::insert_sql(table, columns, chunk.len(), conflict);
                let params: Vec<&(dyn ToSql + Sync)> = chunk
                    .iter()
                    .flat_map(|r| r.iter().map(|v| v as &(dyn ToSql + Sync)))
                    .collect();
                tx.execute(sql.as_str(), &params).await?;
            }
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
