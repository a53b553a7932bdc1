//! Accounting for an authtrail deployment: did every event arrive, once?
//!
//! Sources of records are read into [`Tally`]s keyed by event identity: the identity provider's
//! own record (a ledger of events as served by its API: the MPAS simulator's `/sim/ledger`, or
//! an export), the S3 archive (Contract 2 objects), each SIEM's received sample, and the
//! dead-letter prefix. [`Report::compare`] then says, per time window and event by event, what
//! is missing or duplicated where.
//!
//! Identity: `{eventType}:{event.id}` when the event has an `id` (Keycloak 26.2+); otherwise a
//! SHA-256 of the event with the redacted fields removed (`{eventType}#{hex}`), so an unredacted
//! ledger entry and its redacted archive copy get the same key. Records that are not authtrail
//! envelopes (other producers' JSON) are counted as `foreign` and not matched.
//!
//! [`reconcile`] reads the reconciliation objects a deployed reconciler wrote (one per window
//! of event time) and reports them per window and hop (`authtrail-check reconcile`).
//!
//! The `authtrail-check` binary's command line is [`cli`].

pub mod cli;
mod error;
pub mod reconcile;
mod report;
pub mod sources;
mod tally;
#[cfg(test)]
mod test_lines;

pub use error::CheckError;
pub use report::{Finding, Report, SourceSummary, WindowCounts};
pub use tally::{DEFAULT_HASH_IGNORE, KeyPolicy, Tally};
