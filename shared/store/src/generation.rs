//! Moving a cluster's log to a new generation (docs/adr/0009-a-clock-that-cannot-be-poisoned.md).
//!
//! After an entry id far in the future, Redis gives every later entry an id at least that
//! large: the log's clock is stuck. A new generation renames the log to an archive key, so
//! `XADD *` on the (new, empty) log follows Redis's clock again. In one `MULTI`/`EXEC`:
//! the rename, a `generation` marker as the new log's first entry, the entries not applied yet
//! (moved over, same fields, fresh ids, same order), the checkpoint reset to "nothing applied
//! in this generation", and a snapshot of the state as the new generation's base (a rebuild
//! is then snapshot + new log). It `WATCH`es the log, the checkpoint and the lease's fence: a
//! producer's `XADD` in between makes it retry, so no entry is lost or applied twice.

use pantheon_domain::clock::Generation;
use pantheon_domain::{Command, EntryId, LogEntry};

use crate::lease::Lease;
use crate::snapshot::Prepared;
use crate::stream::{self, Bound};
use crate::{Batch, Layout, PinnedConnection, StoreError};

/// What a switch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switched {
    /// The key the old log now lives under.
    pub archive: String,
    /// The old log's last entry.
    pub previous: EntryId,
    /// Entries after the checkpoint (not applied yet), appended to the new log.
    pub moved: usize,
    /// The new log's first entry, the `generation` marker.
    pub marker: EntryId,
}

/// Why a switch did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the lease is held by {0:?}, not by this process")]
    Fenced(Option<String>),
    #[error("the checkpoint is at {found:?}, expected {expected:?} (the projector committed)")]
    Stale { found: String, expected: String },
    #[error("the log {0} is empty: there is nothing to move")]
    EmptyLog(String),
    #[error("the archive key {0} already exists")]
    ArchiveExists(String),
    /// A producer appended (or something else touched the watched keys) in between: nothing
    /// was changed, try again.
    #[error("the log changed while switching")]
    Raced,
}

/// The archive key for a log whose last entry is `previous` (the cluster's hash tag, so the
/// rename stays within one slot on Redis Cluster).
pub fn archive_key(layout: &Layout, previous: EntryId) -> String {
    format!("{}:gen:{previous}", layout.log())
}

/// Where the attestations of an archived log go (beside it, under the same hash tag).
pub fn archive_attest_key(archive: &str) -> String {
    format!("{archive}:attest")
}

/// Switches the log of `layout` to a new generation, if `lease` is held and the checkpoint is
/// at `expected_last` ("" = nothing applied). `snapshot` is the state as of the checkpoint,
/// a [`crate::snapshot::Snapshot`] whose `last_id` is `0-0`, with its chunks written
/// ([`crate::snapshot::prepare`]); its manifest is committed with the switch.
/// `con` must be used by no one else (WATCH state is per connection).
pub async fn switch(
    con: &mut PinnedConnection,
    layout: &Layout,
    lease: &Lease,
    expected_last: &str,
    snapshot: &Prepared,
) -> Result<Switched, SwitchError> {
    let (log, checkpoint) = (layout.log(), layout.checkpoint());
    crate::watch::fenced(con, lease, &checkpoint, &[&log], async |con, seen| {
        if !seen.holds(lease) {
            return Err(SwitchError::Fenced(seen.holder));
        }
        if seen.last_id() != expected_last {
            return Err(SwitchError::Stale {
                found: seen.last_id().to_owned(),
                expected: expected_last.to_owned(),
            });
        }
        prepare_and_exec(con, layout, expected_last, snapshot).await
    })
    .await
}

/// The switch itself, once the lease and the checkpoint are known to be as expected.
async fn prepare_and_exec(
    con: &mut PinnedConnection,
    layout: &Layout,
    expected_last: &str,
    snapshot: &Prepared,
) -> Result<Switched, SwitchError> {
    let (log, checkpoint) = (layout.log(), layout.checkpoint());
    let newest = stream::rev_range(con, &log, Bound::Open, Bound::Open, Some(1)).await?;
    let Some(previous) = newest.first().map(|e| e.id) else {
        return Err(SwitchError::EmptyLog(log));
    };
    let archive = archive_key(layout, previous);
    if crate::keys::exists(con, &archive).await? {
        return Err(SwitchError::ArchiveExists(archive));
    }
    let after = match expected_last {
        "" => Bound::Open,
        id => Bound::Excluding(
            id.parse()
                .map_err(|_| StoreError::Reply(format!("bad checkpoint id {id:?}")))?,
        ),
    };
    let tail = stream::range(con, &log, after, Bound::Open, None).await?;
    let has_attestations = crate::keys::exists(con, &layout.attest()).await?;

    let marker = LogEntry::new(Command::Generation(Generation {
        previous,
        archive: archive.clone(),
    }));
    let mut pipe = redis::pipe();
    pipe.atomic();
    pipe.cmd("RENAME").arg(&log).arg(&archive).ignore();
    if has_attestations {
        // The archive keeps its proofs; the new log's ids start below the poisoned ones, which
        // the attest stream (ids only grow) could not take.
        pipe.cmd("RENAME")
            .arg(layout.attest())
            .arg(archive_attest_key(&archive))
            .ignore();
    }
    // Every entry of the new generation is read by today's rules: none is legacy.
    pipe.cmd("HDEL")
        .arg(layout.meta())
        .arg(crate::attest::LEGACY_UNTIL)
        .ignore();
    pipe.add_command(crate::attest::eval(layout, [marker.encode().as_slice()]));
    crate::attest::stage_reappend(con, layout, &mut pipe, &tail).await?;
    pipe.cmd("HSET")
        .arg(&checkpoint)
        .arg("last_id")
        .arg("")
        .ignore();
    let mut manifest = Batch::new();
    crate::snapshot::stage_write(&mut manifest, layout, snapshot);
    manifest.add_to(&mut pipe);
    // EXEC answers nil when a watched key changed: nothing ran.
    let reply: Option<(String,)> = pipe.query_async(con).await.map_err(StoreError::from)?;
    let Some((marker,)) = reply else {
        return Err(SwitchError::Raced);
    };
    let marker = marker
        .parse()
        .map_err(|_| StoreError::Reply(format!("bad marker id {marker:?}")))?;
    Ok(Switched {
        archive,
        previous,
        moved: tail.len(),
        marker,
    })
}
