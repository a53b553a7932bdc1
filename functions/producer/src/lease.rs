//! The lease: only one producer pulls a realm at a time (Contract 3).
//!
//! A run reads the checkpoint object; if another invocation holds an unexpired lease, it stands
//! down without writing. Otherwise it writes `lease: {owner, expiresAt: <its deadline>}` with
//! `If-Match` (or `If-None-Match: *` on the first run) and reads it back; a conflict or another
//! owner in the object means another invocation won, and this one stands down. The lease is
//! released when the run ends (also after a failure, best effort) and expires on its own at its
//! holder's deadline, so the next scheduled run never waits for a holder that died.

use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, CheckpointStore, Condition, HeldCheckpoint};
use crate::error::{CheckpointStoreError, ProducerError};
use crate::pull::{iso, now_ms};
use crate::summary::RunSummary;

/// The lease as stored in the checkpoint document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// A random id of the invocation holding it.
    pub owner: String,
    /// Epoch ms; a lease past this time is free to take over.
    pub expires_at: i64,
}

/// The lease as this run holds it.
#[derive(Debug)]
pub struct HeldLease {
    /// This run's owner id (in the stored lease).
    pub owner: String,
    /// The checkpoint as saved with the lease in it.
    pub checkpoint: HeldCheckpoint,
}

/// Takes the lease until `deadline_ms`. `None` (with `summary.stood_down` set) when another
/// invocation holds it or wins the race for it; counts the lease write in the summary.
pub async fn acquire<C: CheckpointStore>(
    store: &C,
    deadline_ms: i64,
    summary: &mut RunSummary,
) -> Result<Option<HeldLease>, ProducerError> {
    let owner = uuid::Uuid::new_v4().to_string();
    let (mut cp, etag) = checkpoint::load(store).await?;
    let now = now_ms();
    if let Some(lease) = &cp.lease {
        if lease.expires_at > now {
            tracing::warn!(
                holder = %lease.owner,
                expires_at = %iso(lease.expires_at),
                "another producer invocation holds the lease; standing down without writing"
            );
            summary.stood_down = true;
            return Ok(None);
        }
        tracing::warn!(holder = %lease.owner, "taking over an expired lease (its holder died)");
    }
    cp.lease = Some(Lease {
        owner: owner.clone(),
        expires_at: deadline_ms.max(now + 1000),
    });
    let condition = match etag {
        Some(e) => Condition::IfMatch(e),
        None => Condition::IfNoneMatch,
    };
    let etag = match store.save(cp.to_bytes()?, condition).await {
        Ok(e) => e,
        Err(CheckpointStoreError::Conflict) => {
            tracing::warn!("another producer invocation took the lease first; standing down");
            summary.stood_down = true;
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    summary.checkpoint_saves += 1;
    // Read back: an emulator's conditional write may not be atomic; whoever is in the object
    // now owns the lease.
    let (check, check_etag) = checkpoint::load(store).await?;
    if check.lease.as_ref().map(|l| l.owner.as_str()) != Some(owner.as_str())
        || check_etag.as_deref() != Some(etag.as_str())
    {
        tracing::warn!("lost the lease race to another invocation; standing down");
        summary.stood_down = true;
        return Ok(None);
    }
    Ok(Some(HeldLease {
        owner,
        checkpoint: HeldCheckpoint { doc: cp, etag },
    }))
}

/// Ends a successful run: saves the checkpoint without the lease.
pub async fn release<C: CheckpointStore>(
    store: &C,
    checkpoint: &mut HeldCheckpoint,
) -> Result<(), ProducerError> {
    checkpoint.doc.lease = None;
    checkpoint.save(store, None).await
}

/// Best effort after a failed run: drops `owner`'s lease from the stored checkpoint (the cursor
/// stays as last saved) and closes its pending puts now (see
/// [`crate::pending::PendingPuts::close_at`]: the run's calls were all answered, so the next run,
/// which may start at once, neither reads past now plus the arrival margin nor polls the tips).
/// When that fails too, the lease expires at the invocation's deadline.
pub async fn release_after_error<C: CheckpointStore>(store: &C, owner: &str) {
    let Ok((mut cp, Some(etag))) = checkpoint::load(store).await else {
        return;
    };
    if cp.lease.as_ref().map(|l| l.owner.as_str()) != Some(owner) {
        return;
    }
    cp.lease = None;
    cp.pending.close_at(now_ms());
    if let Ok(body) = cp.to_bytes()
        && let Err(e) = store.save(body, Condition::IfMatch(etag)).await
    {
        tracing::warn!(error = %e, "could not release the lease after a failed run; it expires at the invocation deadline");
    }
}
