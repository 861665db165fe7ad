//! Retention: the events stream is trimmed by length and age on every commit; the log is
//! trimmed only below a snapshot the projector wrote, so a rebuild always has what it needs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pantheon_domain::{EntryId, State};
use pantheon_store::Connection;
use pantheon_store::lease::Lease;
use pantheon_store::readmodel::Checkpoint;
use pantheon_store::snapshot::{self, Snapshot};
use pantheon_store::{Batch, CommitError, Layout, events, log};
use tracing::info;

use crate::{ProjectorConfig, ProjectorError};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn ms_ago(age: Duration) -> u64 {
    now_ms().saturating_sub(age.as_millis() as u64)
}

/// Adds the events trimming to a commit (approximate trimming is O(1) most of the time).
pub fn stage_events_trim(batch: &mut Batch, layout: &Layout, config: &ProjectorConfig) {
    if let Some(max) = config.events_max_len {
        events::stage_trim_len(batch, layout, max);
    }
    if let Some(age) = config.events_max_age {
        events::stage_trim_before(batch, layout, pantheon_domain::EntryId::new(ms_ago(age), 0));
    }
}

/// Runs `work` with [`tokio::task::block_in_place`] on a multi-threaded runtime (the tasks
/// queued on this worker move to another meanwhile), inline on any other.
pub(crate) fn cpu_heavy<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Serializes `state` as the snapshot at `last_id` and writes its chunks, one bounded write
/// each (docs/adr/0017), so the commit that makes it current carries only the manifest.
/// Serializing takes seconds of CPU at millions of keys: it runs off this worker, so the
/// other tasks on it (the lease renewal; the prober, in a process that runs both) keep
/// their timing.
pub(crate) async fn write_chunks<C: Connection>(
    con: &mut C,
    layout: &Layout,
    state: &State,
    last_id: EntryId,
) -> Result<snapshot::Prepared, ProjectorError> {
    let json = cpu_heavy(|| serde_json::to_vec(&Snapshot::of(state, last_id)))
        .map_err(|e| ProjectorError::Snapshot(e.to_string()))?;
    Ok(snapshot::prepare(con, layout, last_id, &json, snapshot::CHUNK_BYTES).await?)
}

/// Writes a snapshot of `state` at the committed checkpoint (fenced), then trims the log
/// below it, keeping at least `log_min_age` of history.
pub async fn snapshot_and_trim<C: Connection>(
    con: &mut C,
    layout: &Layout,
    lease: &Lease,
    state: &State,
    cp: &Checkpoint,
    config: &ProjectorConfig,
) -> Result<(), ProjectorError> {
    let Some(last_id) = cp.last_id else {
        return Ok(());
    };
    let mut keep_from = last_id;
    if let Some(age) = config.log_min_age {
        keep_from = keep_from.min(pantheon_domain::EntryId::new(ms_ago(age), 0));
    }
    // The chunks go first: the commit below carries only the manifest, so neither Redis nor
    // this task is held by one huge value.
    let started = std::time::Instant::now();
    let prepared = write_chunks(con, layout, state, last_id).await?;
    let chunks_written = started.elapsed();
    let mut batch = Batch::new();
    snapshot::stage_write(&mut batch, layout, &prepared);
    // Entries at or after keep_from stay: everything after the snapshot survives.
    log::stage_trim_below(&mut batch, layout, keep_from);
    let committed = batch
        .commit(
            con,
            lease.key(),
            &layout.checkpoint(),
            lease.token(),
            &cp.last_id_arg(),
        )
        .await;
    if let Err(e @ (CommitError::Fenced | CommitError::Stale(_))) = committed {
        // Refused: no manifest names these chunks. If this fails too, the next snapshot's
        // commit deletes them.
        let _ = snapshot::discard(con, layout, &prepared).await;
        return Err(e.into());
    }
    committed?;
    info!(
        %last_id,
        bytes = prepared.manifest().bytes,
        chunks = prepared.manifest().chunks,
        chunks_ms = chunks_written.as_millis() as u64,
        stale_chunks = prepared.stale().len(),
        trimmed_below = %keep_from,
        "wrote a snapshot"
    );
    Ok(())
}
