//! Rebuilding the read models from the log: fold the log (after the latest snapshot, if any)
//! in memory, write every read model into a scratch namespace, then swap the scratch keys in
//! with one fenced script. Readers never see a half-built read model.

use pantheon_domain::{EntryId, State};
use pantheon_store::Connection;
use pantheon_store::lease::Lease;
use pantheon_store::readmodel::{self, Checkpoint};
use pantheon_store::{Batch, Layout, StoreError, attest, keys, log, snapshot};
use tracing::info;

use crate::ProjectorError;
use crate::lease_keeper::Heartbeat;
use crate::paging::Paging;

/// Entries folded between two settles of the placement. Not per page: with pages of a few
/// entries, a log of 10,000 joins would rebuild the ring a thousand times.
const SETTLE_EVERY: u64 = 10_000;

/// The folded state, the last log id folded, and how many entries were read.
#[derive(Debug)]
pub struct Folded {
    pub state: State,
    pub last_id: Option<EntryId>,
    pub entries: u64,
    /// Where the fold started: the snapshot's id, if one was used.
    pub from_snapshot: Option<EntryId>,
}

/// Loads the snapshot, if any.
pub async fn load_snapshot<C: Connection>(
    con: &mut C,
    layout: &Layout,
) -> Result<Option<(State, EntryId)>, ProjectorError> {
    let snapshot = match snapshot::load(con, layout).await {
        Ok(Some(snapshot)) => snapshot,
        Ok(None) => return Ok(None),
        Err(StoreError::Damaged { reason, .. }) => return Err(ProjectorError::Snapshot(reason)),
        Err(e) => return Err(e.into()),
    };
    snapshot
        .restore()
        .map(Some)
        .map_err(ProjectorError::Snapshot)
}

/// Folds the log, from the snapshot (if any) up to and including `until` (or the end), in
/// pages sized by `paging`. `progress(entries)` is called after every page.
pub async fn fold_log<C: Connection + Clone + 'static>(
    con: &mut C,
    layout: &Layout,
    until: Option<EntryId>,
    paging: Paging,
    progress: impl FnMut(u64),
) -> Result<Folded, ProjectorError> {
    let (state, last_id, from_snapshot) = match load_snapshot(con, layout).await? {
        Some((state, id)) => (state, Some(id), Some(id)),
        None => (State::default(), None, None),
    };
    let mut folded = Folded {
        state,
        last_id,
        entries: 0,
        from_snapshot,
    };
    fold_after(con, layout, &mut folded, until, paging, progress).await?;
    Ok(folded)
}

/// Folds the log entries after `folded.last_id` up to and including `until` (or the end) into
/// `folded`, in pages sized by `paging`. `progress(entries)` is called after every page.
///
/// The next page is requested before the current one is folded, on a clone of `con`: the
/// connection's driver parses the reply on another worker thread meanwhile, so reading and
/// folding overlap instead of adding up.
pub(crate) async fn fold_after<C: Connection + Clone + 'static>(
    con: &mut C,
    layout: &Layout,
    folded: &mut Folded,
    until: Option<EntryId>,
    paging: Paging,
    mut progress: impl FnMut(u64),
) -> Result<(), ProjectorError> {
    let legacy_until = attest::legacy_until(con, layout).await?;
    let fetch = |after: Option<EntryId>, count: usize| {
        let (mut con, layout) = (con.clone(), layout.clone());
        let page = tokio::spawn(async move {
            let page = log::range(&mut con, &layout, after, until, count).await?;
            let origins = attest::origins(&mut con, &layout, &page, legacy_until).await?;
            Ok::<_, StoreError>((page, origins))
        });
        (page, count)
    };
    let state = &mut folded.state;
    let mut unsettled = 0u64;
    let mut next = Some(fetch(folded.last_id, paging.first()));
    while let Some((pending, asked)) = next.take() {
        let (page, origins) = pending
            .await
            .map_err(|e| ProjectorError::Task(format!("log page read: {e}")))??;
        let n = page.len();
        if n == asked {
            let count = paging.after(&page);
            next = page.last().map(|last| fetch(Some(last.id), count));
        }
        for (i, (entry, origin)) in page.into_iter().zip(origins).enumerate() {
            // Rejections were recorded when the entry was first applied; a fold only needs
            // the state, and a rejected entry leaves it unchanged.
            // Keys move once per page, not once per change of members (the settled state is
            // the same however the log is cut).
            let _ = state.apply_raw_deferred(entry.id, &entry.fields, origin);
            folded.last_id = Some(entry.id);
            if i % 256 == 255 {
                progress(folded.entries + i as u64 + 1);
                // Long folds must not starve the lease renewal on a single-threaded runtime.
                tokio::task::yield_now().await;
            }
        }
        unsettled += n as u64;
        if unsettled >= SETTLE_EVERY || next.is_none() {
            state.settle_unlisted();
            unsettled = 0;
        }
        folded.entries += n as u64;
        progress(folded.entries);
    }
    Ok(())
}

/// All keys matching a pattern (SCAN, never KEYS).
pub async fn scan_keys<C: Connection>(
    con: &mut C,
    pattern: &str,
) -> Result<Vec<String>, ProjectorError> {
    Ok(keys::matching(con, pattern).await?)
}

/// Writes every read model of `state` (and a checkpoint) into `scratch`, replacing what was
/// there. Not atomic: nobody reads a scratch namespace.
pub async fn write_scratch<C: Connection>(
    con: &mut C,
    scratch: &Layout,
    state: &State,
    checkpoint: &Checkpoint,
) -> Result<(), ProjectorError> {
    readmodel::clear(con, scratch).await?;
    let mut batch = Batch::new();
    readmodel::stage_full(&mut batch, scratch, state);
    readmodel::stage_ring(&mut batch, scratch, state, checkpoint.ring_version);
    readmodel::stage_checkpoint(&mut batch, scratch, state, checkpoint, "rebuild");
    batch.run_unfenced(con).await?;
    Ok(())
}

/// Rebuilds the live read models from the log while holding the lease.
pub(crate) async fn rebuild_live<C: Connection + Clone + 'static>(
    con: &mut C,
    layout: &Layout,
    lease: &Lease,
    leader: &str,
    heartbeat: &Heartbeat,
) -> Result<(State, Checkpoint), ProjectorError> {
    let started = std::time::Instant::now();
    let folded = fold_log(con, layout, None, Paging::Adaptive, |_| heartbeat.beat()).await?;
    // Read leniently: the checkpoint itself may be what is damaged.
    let live = readmodel::checkpoint(con, layout).await?;
    let live_ring_version = live.ring_version()?;
    let cp = Checkpoint {
        last_id: folded.last_id,
        checksum: folded.state.checksum(),
        next_epoch: folded.state.next_epoch(),
        // Bumped so that clients caching the ring refresh it.
        ring_version: live_ring_version.unwrap_or(0) + 1,
    };
    let scratch = layout.scratch("rebuild");
    heartbeat.beat();
    write_scratch(con, &scratch, &folded.state, &cp).await?;
    heartbeat.beat();

    // One fenced script: drop the live read models, rename the scratch ones in.
    let mut swap = Batch::new();
    let nodes = folded.state.nodes().map(|n| &n.id);
    readmodel::stage_swap(con, &mut swap, layout, &scratch, nodes).await?;
    readmodel::stage_checkpoint(&mut swap, layout, &folded.state, &cp, leader);
    swap.commit(
        con,
        lease.key(),
        &layout.checkpoint(),
        lease.token(),
        live.last_id_raw().unwrap_or(""),
    )
    .await?;
    info!(
        entries = folded.entries,
        from_snapshot = ?folded.from_snapshot,
        keys = folded.state.keys().len(),
        took = ?started.elapsed(),
        "rebuilt the read models from the log"
    );
    Ok((folded.state, cp))
}
