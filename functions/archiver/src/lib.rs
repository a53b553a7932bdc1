//! authtrail archiver: Kinesis batches to S3 as JSON-lines objects, exactly once, never blocked
//! by a malformed record (Contract 2 of DESIGN.md), and signed, chained digests of everything
//! it wrote (README, "Digests"). `main.rs` only wires; everything else is here, the checks
//! of the preflight test payload included ([`preflight`]).

pub mod archive;
pub mod batch;
pub mod config;
pub mod digest;
pub mod error;
pub mod handler;
pub mod jsonscan;
pub mod ledger;
pub mod preflight;
pub mod schedule;
pub mod shards;
pub mod signer;
pub mod state;
pub mod store;

pub use archive::{Archiver, META_COUNT, META_FIRST, META_LAST, Summary};
pub use config::{Compression, Config, DigestConfig};
pub use error::ArchiveError;
pub use schedule::CloseSummary;
pub use shards::{FixedShards, KinesisShards, ShardDirectory};
pub use signer::{DigestSigner, KmsSigner, LocalSigner, NoSigner};
pub use state::ShardState;
pub use store::{MemoryStore, ObjectHead, ObjectStore, PutOutcome, S3Store};
