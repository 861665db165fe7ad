//! Putting a leader's state back into a Redis that came back empty
//! (docs/adr/0012-redis-that-comes-back-empty.md).
//!
//! A Redis without persistence that restarts has no log, no read models, no checkpoint and no
//! snapshot. The projector leader still holds the state it folded; [`reseed`] writes it back
//! as the base of a new log generation, in one `MULTI`/`EXEC`: the entries already written to
//! the empty Redis (probe results, producers' writes) move to an archive key and come back
//! after a `restored` marker (same fields, fresh ids, same order); the state becomes the
//! snapshot (`last_id` 0-0), the read models, and a checkpoint with nothing of the new log
//! applied. It `WATCH`es the log, the checkpoint, the lease's fence and the `destroy`
//! tombstone, and checks inside that the lease is held, no checkpoint exists and the cluster
//! was not destroyed: a second leader, a commit, or `pantheon destroy` in between wins.
//!
//! [`survey`] is what the projector reads to tell "emptied" from "new", "rolled back",
//! "recovered" or "destroyed"; [`mark_lost`] records, for `pantheon doctor`, that the data is
//! gone and nobody holds it.

use pantheon_domain::restore::Restored;
use pantheon_domain::{Command, EntryId, LogEntry, State};
use redis::aio::ConnectionLike;

use crate::lease::Lease;
use crate::readmodel::{self, Checkpoint};
use crate::snapshot::Prepared;
use crate::stream::{self, Bound};
use crate::{Batch, Layout, PinnedConnection, StoreError};

/// How long the `lost` marker stays without a re-seed or a destroy refreshing or removing it
/// (the projector that finds the loss rewrites it at every attempt).
const LOST_TTL_MS: u64 = 24 * 3600 * 1000;

/// What a cluster's keys show at a leader's start, beyond the read models.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Survey {
    /// A snapshot exists (the base of a rebuild, or of a recovered generation).
    pub snapshot: bool,
    /// Entries in the events stream (0 when it does not exist).
    pub events: u64,
    /// The log's first entry, if any.
    pub log_first: Option<EntryId>,
    /// The `destroy` tombstone's content, when `pantheon destroy` ran recently.
    pub destroyed: Option<String>,
}

/// Reads what [`Survey`] holds (four reads; once per leading term).
pub async fn survey<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<Survey, StoreError> {
    let snapshot = crate::keys::exists(con, &layout.snapshot()).await?;
    let events = crate::events::len(con, layout).await?;
    let first = stream::range(con, &layout.log(), Bound::Open, Bound::Open, Some(1)).await?;
    let destroyed: Option<String> = redis::cmd("GET")
        .arg(layout.destroyed())
        .query_async(con)
        .await?;
    Ok(Survey {
        snapshot,
        events,
        log_first: first.first().map(|e| e.id),
        destroyed,
    })
}

/// Records that this cluster's data is gone and no running leader holds it (`why` is shown
/// by `pantheon doctor`).
pub async fn mark_lost<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    why: &str,
) -> Result<(), StoreError> {
    let _: () = redis::cmd("SET")
        .arg(layout.lost())
        .arg(why)
        .arg("PX")
        .arg(LOST_TTL_MS)
        .query_async(con)
        .await?;
    Ok(())
}

/// The `lost` marker, if a projector wrote one.
pub async fn lost<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<Option<String>, StoreError> {
    Ok(redis::cmd("GET")
        .arg(layout.lost())
        .query_async(con)
        .await?)
}

/// What a re-seed did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reseeded {
    /// The new log's first entry, the `restored` marker.
    pub marker: EntryId,
    /// Where the entries found in the emptied log were moved from (renamed), if any.
    pub archive: Option<String>,
    /// Entries found in the emptied log, appended after the marker.
    pub moved: usize,
    /// The checkpoint now committed: nothing of the new log applied yet.
    pub checkpoint: Checkpoint,
}

/// Why a re-seed did not happen. Nothing was written in every case.
#[derive(Debug, thiserror::Error)]
pub enum ReseedError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the lease is held by {0:?}, not by this process")]
    Fenced(Option<String>),
    #[error("a checkpoint exists again (another projector committed)")]
    NotEmpty,
    #[error("the cluster was destroyed ({0})")]
    Destroyed(String),
    #[error("the archive key {0} already exists")]
    ArchiveExists(String),
    /// Something touched the watched keys in between (a producer's `XADD`): try again.
    #[error("the log changed while re-seeding")]
    Raced,
}

/// Writes `state`, folded up to `previous`, back into the emptied cluster of `layout` as a new
/// generation (see the module docs). `snapshot` is `state` as a
/// [`crate::snapshot::Snapshot`] whose `last_id` is `0-0`, with its chunks written
/// ([`crate::snapshot::prepare`], once for every attempt); its manifest is committed here.
/// `ring_version` should be above the one clients may have cached. `con` must be used by no
/// one else (WATCH state is per connection).
pub async fn reseed(
    con: &mut PinnedConnection,
    layout: &Layout,
    lease: &Lease,
    state: &State,
    snapshot: &Prepared,
    previous: EntryId,
    ring_version: u64,
) -> Result<Reseeded, ReseedError> {
    let (log, destroyed) = (layout.log(), layout.destroyed());
    crate::watch::fenced(
        con,
        lease,
        &layout.checkpoint(),
        &[&log, &destroyed],
        async |con, seen| {
            if !seen.holds(lease) {
                return Err(ReseedError::Fenced(seen.holder));
            }
            prepare_and_exec(con, layout, lease, state, snapshot, previous, ring_version).await
        },
    )
    .await
}

async fn prepare_and_exec(
    con: &mut PinnedConnection,
    layout: &Layout,
    lease: &Lease,
    state: &State,
    snapshot: &Prepared,
    previous: EntryId,
    ring_version: u64,
) -> Result<Reseeded, ReseedError> {
    let (log, checkpoint_key) = (layout.log(), layout.checkpoint());
    let (checkpoint, destroyed): (bool, Option<String>) = redis::pipe()
        .cmd("EXISTS")
        .arg(&checkpoint_key)
        .cmd("GET")
        .arg(layout.destroyed())
        .query_async(con)
        .await
        .map_err(StoreError::from)?;
    if checkpoint {
        return Err(ReseedError::NotEmpty);
    }
    if let Some(tombstone) = destroyed {
        return Err(ReseedError::Destroyed(tombstone));
    }
    let tail = stream::range(con, &log, Bound::Open, Bound::Open, None).await?;
    let archive = match tail.last() {
        None => None,
        Some(last) => {
            let archive = crate::generation::archive_key(layout, last.id);
            if crate::keys::exists(con, &archive).await? {
                return Err(ReseedError::ArchiveExists(archive));
            }
            Some(archive)
        }
    };
    let marker = LogEntry::new(Command::Restored(Restored {
        previous,
        nodes: state.node_count() as u64,
        keys: state.keys().len() as u64,
        archive: archive.clone(),
    }));
    let cp = Checkpoint {
        last_id: None,
        checksum: state.checksum(),
        next_epoch: state.next_epoch(),
        ring_version,
    };

    let mut pipe = redis::pipe();
    pipe.atomic();
    if let Some(archive) = &archive {
        pipe.cmd("RENAME").arg(&log).arg(archive).ignore();
    }
    // The marker is a service entry (docs/adr/0011); service entries of the tail keep their
    // proof in the new log.
    pipe.add_command(crate::attest::eval(layout, [marker.encode().as_slice()]));
    crate::attest::stage_reappend(con, layout, &mut pipe, &tail).await?;
    let mut models = Batch::new();
    crate::snapshot::stage_write(&mut models, layout, snapshot);
    readmodel::stage_full(&mut models, layout, state);
    readmodel::stage_ring(&mut models, layout, state, ring_version);
    readmodel::stage_checkpoint(&mut models, layout, state, &cp, lease.token());
    models.add_to(&mut pipe);
    pipe.cmd("DEL").arg(layout.lost()).ignore();
    // EXEC answers nil when a watched key changed: nothing ran.
    let reply: Option<(String,)> = pipe.query_async(con).await.map_err(StoreError::from)?;
    let Some((marker,)) = reply else {
        return Err(ReseedError::Raced);
    };
    let marker = marker
        .parse()
        .map_err(|_| StoreError::Reply(format!("bad marker id {marker:?}")))?;
    Ok(Reseeded {
        marker,
        archive,
        moved: tail.len(),
        checkpoint: cp,
    })
}
