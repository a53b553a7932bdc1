//! authtrail Security Lake writer: Kinesis batches of identity events mapped to OCSF 1.1.0 and
//! written as Parquet objects of Amazon Security Lake custom sources (one source per OCSF
//! class), under `ext/{sourceName}/region={region}/accountId={accountId}/eventDay={YYYYMMDD}/`,
//! exactly once, never blocked by a malformed record. `main.rs` only wires; everything else is
//! here.
//!
//! - [`config`]: the environment variables.
//! - [`classify`], [`ocsf`]: a record's classification and its OCSF row.
//! - [`schema`]: the classes, their Arrow schemas, fitting a row to its schema.
//! - [`encode`]: rows to a Parquet object.
//! - [`batch`]: a shard's records grouped into sinks (class and day, errors).
//! - [`keys`]: object keys. [`store`]: the S3 capability.
//! - [`writer`]: the handler and its exactly-once scheme.

pub mod batch;
pub mod classify;
pub mod config;
pub mod encode;
pub mod error;
pub mod keys;
pub mod ocsf;
pub mod schema;
pub mod store;
pub mod writer;

pub use config::Config;
pub use error::SecurityLakeError;
pub use schema::OcsfClass;
pub use store::{MemoryStore, ObjectStore, PutOutcome, S3Store};
pub use writer::{META_COUNT, META_FIRST, META_LAST, ShardState, Summary, Writer};
