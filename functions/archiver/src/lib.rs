//! authtrail archiver: Kinesis batches to S3 as JSON-lines objects, exactly once, never blocked
//! by a malformed record (Contract 2 of DESIGN.md). `main.rs` only wires; everything else is here.

pub mod archive;
pub mod batch;
pub mod config;
pub mod error;
pub mod store;

pub use archive::{Archiver, META_COUNT, META_FIRST, META_LAST, ShardState, Summary};
pub use config::{Compression, Config};
pub use error::ArchiveError;
pub use store::{MemoryStore, ObjectStore, PutOutcome, S3Store};
