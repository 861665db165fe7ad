//! Recovering from a poisoned log clock: moving the log to a new generation from the current
//! state (docs/adr/0009-a-clock-that-cannot-be-poisoned.md). Run by `pantheon recover-clock`.
//!
//! It takes the lease from whoever leads (the leader stops at its next renewal and cannot
//! commit meanwhile: the fence moves), loads the state from the read models, and switches the
//! log in one transaction ([`pantheon_store::generation::switch`]): nothing applied is
//! folded again, nothing unapplied is lost. It then gives the lease back; the next leader loads
//! the same state and folds the new generation from its first entry.

use std::time::Duration;

use pantheon_domain::EntryId;
use pantheon_store::generation::{SwitchError, Switched, switch};
use pantheon_store::lease::Lease;
use pantheon_store::snapshot;
use pantheon_store::{Layout, Redis, readmodel};
use tracing::info;

use crate::ProjectorError;

/// How often a switch is retried when producers keep appending in between.
const ATTEMPTS: usize = 50;

/// Moves the log of `layout` to a new generation. `holder` names this tool in the lease.
pub async fn recover_clock(
    redis: &Redis,
    layout: &Layout,
    holder: &str,
    lease_ttl: Duration,
) -> Result<Switched, ProjectorError> {
    let mut con = redis.clone();
    let lease = Lease::new(layout.lease(), holder, lease_ttl);
    lease.seize(&mut con).await?;
    let result = switch_with_lease(redis, layout, &lease).await;
    // Give the lease back at once (also on failure), so a projector takes over without
    // waiting out the TTL.
    let released = lease.release(&mut con).await;
    let switched = result?;
    released?;
    info!(
        archive = %switched.archive,
        previous = %switched.previous,
        moved = switched.moved,
        marker = %switched.marker,
        "moved the log to a new generation"
    );
    Ok(switched)
}

async fn switch_with_lease(
    redis: &Redis,
    layout: &Layout,
    lease: &Lease,
) -> Result<Switched, ProjectorError> {
    let mut con = redis.clone();
    let Some(loaded) = readmodel::load(&mut con, layout).await? else {
        return Err(ProjectorError::Config(
            "there is no committed state to move (no checkpoint): start the projector first".into(),
        ));
    };
    if loaded.state.checksum() != loaded.checkpoint.checksum {
        return Err(ProjectorError::Config(
            "the read models disagree with their checkpoint: let the projector rebuild them \
             (start `pantheon up`), then run this again"
                .into(),
        ));
    }
    // The new generation's base: the state as of the checkpoint, before every new id.
    // Its chunks are written once, whatever the number of attempts (docs/adr/0017).
    let prepared =
        crate::retention::write_chunks(&mut con, layout, &loaded.state, EntryId::ZERO).await?;
    let expected = loaded.checkpoint.last_id_arg();
    let mut pinned = redis.dedicated().await?;
    let mut refused = None;
    for _ in 0..ATTEMPTS {
        match switch(&mut pinned, layout, lease, &expected, &prepared).await {
            Err(SwitchError::Raced) => continue,
            Err(SwitchError::Store(e)) => return Err(e.into()),
            Err(e) => {
                refused = Some(ProjectorError::Config(e.to_string()));
                break;
            }
            Ok(switched) => return Ok(switched),
        }
    }
    // Nothing was committed: no manifest names these chunks (the next snapshot's commit
    // deletes them if this fails).
    let _ = snapshot::discard(&mut con, layout, &prepared).await;
    Err(refused.unwrap_or_else(|| {
        ProjectorError::Config(format!(
            "producers appended to the log during each of {ATTEMPTS} attempts: try again \
             when it is quieter"
        ))
    }))
}
