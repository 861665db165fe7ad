//! Rebuilding the read models from the log: fold the log (after the latest snapshot, if any)
//! in memory, write every read model into a scratch namespace, then swap the scratch keys in
//! with one fenced script. Readers never see a half-built read model.

use pantheon_domain::{EntryId, State};
use pantheon_store::lease::Lease;
use pantheon_store::readmodel::{self, Checkpoint};
use pantheon_store::snapshot::Snapshot;
use pantheon_store::{Batch, Layout, RawEntry, stream};
use redis::aio::ConnectionLike;
use tracing::info;

use crate::ProjectorError;
use crate::runner::Heartbeat;

/// Most entries read per XRANGE page while folding.
const PAGE: usize = 10_000;
/// Pages are cut to about this many fields, so a log of 10,000-key `assign` entries is not
/// read 10,000 entries (100 million keys) at a time.
const PAGE_FIELDS: usize = 200_000;
/// Entries in the first page, before the width of the log's entries is known.
const FIRST_PAGE: usize = 16;

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
pub async fn load_snapshot<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<Option<(State, EntryId)>, ProjectorError> {
    let raw: Option<Vec<u8>> = redis::cmd("GET")
        .arg(layout.snapshot())
        .query_async(con)
        .await?;
    let Some(raw) = raw else { return Ok(None) };
    let snapshot: Snapshot =
        serde_json::from_slice(&raw).map_err(|e| ProjectorError::Snapshot(e.to_string()))?;
    snapshot
        .restore()
        .map(Some)
        .map_err(ProjectorError::Snapshot)
}

/// Folds the log, from the snapshot (if any) up to and including `until` (or the end).
/// `progress(entries)` is called after every page.
///
/// The next page is requested before the current one is folded, on a clone of `con`: the
/// connection's driver parses the reply on another worker thread meanwhile, so reading and
/// folding overlap instead of adding up.
pub async fn fold_log<C: ConnectionLike + Clone + Send + 'static>(
    con: &mut C,
    layout: &Layout,
    until: Option<EntryId>,
    mut progress: impl FnMut(u64),
) -> Result<Folded, ProjectorError> {
    let (mut state, mut last_id, from_snapshot) = match load_snapshot(con, layout).await? {
        Some((state, id)) => (state, Some(id), Some(id)),
        None => (State::default(), None, None),
    };
    let end = until.map(|id| id.to_string()).unwrap_or_else(|| "+".into());
    let fetch = |after: Option<EntryId>, count: usize| {
        let mut con = con.clone();
        let (log, end) = (layout.log(), end.clone());
        let page = tokio::spawn(async move { read_page(&mut con, &log, after, &end, count).await });
        (page, count)
    };
    let mut entries = 0u64;
    // The first page is small whatever the log holds, so folding starts (and overlaps the
    // next read) at once; later pages are sized from the width of the previous one.
    let mut next = Some(fetch(last_id, FIRST_PAGE));
    while let Some((pending, asked)) = next.take() {
        let page = pending
            .await
            .map_err(|e| ProjectorError::Task(format!("log page read: {e}")))??;
        let n = page.len();
        if n == asked {
            let fields: usize = page.iter().map(|e| e.fields.len()).sum();
            let count = (PAGE_FIELDS * n / fields.max(1)).clamp(1, PAGE);
            next = page.last().map(|last| fetch(Some(last.id), count));
        }
        for (i, entry) in page.into_iter().enumerate() {
            // Rejections were recorded when the entry was first applied; a fold only needs
            // the state, and a rejected entry leaves it unchanged.
            let _ = state.apply_raw(entry.id, &entry.fields);
            last_id = Some(entry.id);
            if i % 256 == 255 {
                progress(entries + i as u64 + 1);
                // Long folds must not starve the lease renewal on a single-threaded runtime.
                tokio::task::yield_now().await;
            }
        }
        entries += n as u64;
        progress(entries);
    }
    Ok(Folded {
        state,
        last_id,
        entries,
        from_snapshot,
    })
}

/// Up to `count` log entries after `after` (from the start when `None`) up to `end`.
async fn read_page<C: ConnectionLike + Send>(
    con: &mut C,
    log: &str,
    after: Option<EntryId>,
    end: &str,
    count: usize,
) -> Result<Vec<RawEntry>, ProjectorError> {
    let start = after
        .map(|id| format!("({id}"))
        .unwrap_or_else(|| "-".into());
    let reply: redis::Value = redis::cmd("XRANGE")
        .arg(log)
        .arg(&start)
        .arg(end)
        .arg("COUNT")
        .arg(count)
        .query_async(con)
        .await?;
    Ok(stream::parse_entries(reply)?)
}

/// Deletes every key of a scratch namespace.
async fn clear_namespace<C: ConnectionLike + Send>(
    con: &mut C,
    scratch: &Layout,
) -> Result<(), ProjectorError> {
    let mut keys = vec![
        scratch.nodes(),
        scratch.ring(),
        scratch.keymap(),
        scratch.unowned(),
        scratch.cmds(),
        scratch.checkpoint(),
    ];
    keys.extend(scan_keys(con, &scratch.node_keys_pattern()).await?);
    for chunk in keys.chunks(500) {
        let _: () = redis::cmd("DEL").arg(chunk).query_async(con).await?;
    }
    Ok(())
}

/// All keys matching a pattern (SCAN, never KEYS).
pub async fn scan_keys<C: ConnectionLike + Send>(
    con: &mut C,
    pattern: &str,
) -> Result<Vec<String>, ProjectorError> {
    Ok(readmodel::scan_all(con, "SCAN", None, Some(pattern)).await?)
}

/// Writes every read model of `state` (and a checkpoint) into `scratch`, replacing what was
/// there. Not atomic: nobody reads a scratch namespace.
pub async fn write_scratch<C: ConnectionLike + Send>(
    con: &mut C,
    scratch: &Layout,
    state: &State,
    checkpoint: &Checkpoint,
) -> Result<(), ProjectorError> {
    clear_namespace(con, scratch).await?;
    let mut batch = Batch::new();
    readmodel::stage_full(&mut batch, scratch, state);
    readmodel::stage_ring(&mut batch, scratch, state, checkpoint.ring_version);
    readmodel::stage_checkpoint(&mut batch, scratch, state, checkpoint, "rebuild");
    batch.run_unfenced(con).await?;
    Ok(())
}

/// Rebuilds the live read models from the log while holding the lease.
pub(crate) async fn rebuild_live<C: ConnectionLike + Clone + Send + 'static>(
    con: &mut C,
    layout: &Layout,
    lease: &Lease,
    leader: &str,
    heartbeat: &Heartbeat,
) -> Result<(State, Checkpoint), ProjectorError> {
    let started = std::time::Instant::now();
    let folded = fold_log(con, layout, None, |_| heartbeat.beat()).await?;
    let live_cp: Option<String> = redis::cmd("HGET")
        .arg(layout.checkpoint())
        .arg("last_id")
        .query_async(con)
        .await?;
    let live_ring_version: Option<u64> = redis::cmd("HGET")
        .arg(layout.checkpoint())
        .arg("ring_version")
        .query_async(con)
        .await?;
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
    let mut live_sets = scan_keys(con, &layout.node_keys_pattern()).await?;
    live_sets.extend([
        layout.nodes(),
        layout.keymap(),
        layout.unowned(),
        layout.cmds(),
        layout.ring(),
    ]);
    for key in &live_sets {
        swap.call("DEL", &[key], std::iter::empty::<&str>());
    }
    let mut pairs = vec![
        (scratch.nodes(), layout.nodes()),
        (scratch.keymap(), layout.keymap()),
        (scratch.unowned(), layout.unowned()),
        (scratch.cmds(), layout.cmds()),
        (scratch.ring(), layout.ring()),
    ];
    for node in folded.state.nodes() {
        pairs.push((scratch.node_keys(&node.id), layout.node_keys(&node.id)));
    }
    for (from, to) in &pairs {
        let exists: bool = redis::cmd("EXISTS").arg(from).query_async(con).await?;
        if exists {
            swap.call("RENAME", &[from, to], std::iter::empty::<&str>());
        }
    }
    swap.call("DEL", &[&scratch.checkpoint()], std::iter::empty::<&str>());
    readmodel::stage_checkpoint(&mut swap, layout, &folded.state, &cp, leader);
    swap.commit(
        con,
        lease.key(),
        &layout.checkpoint(),
        lease.token(),
        live_cp.as_deref().unwrap_or(""),
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

/// What `rebuild --verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub last_id: Option<EntryId>,
    pub entries: u64,
    pub live_checksum: Option<u64>,
    /// Checksum of the state folded from the log in memory.
    pub folded_checksum: u64,
    /// Checksum of the state loaded back from the scratch read models written from the fold.
    pub scratch_checksum: u64,
}

impl Verification {
    pub fn matches(&self) -> bool {
        self.live_checksum == Some(self.folded_checksum)
            && self.folded_checksum == self.scratch_checksum
    }
}

/// Folds the log up to the live checkpoint into a scratch namespace and compares checksums
/// with the live state. Does not touch the live read models.
pub async fn verify<C: ConnectionLike + Clone + Send + 'static>(
    con: &mut C,
    layout: &Layout,
    progress: impl FnMut(u64),
) -> Result<Verification, ProjectorError> {
    let live = readmodel::load_checkpoint(con, layout).await?;
    let until = live.as_ref().and_then(|c| c.last_id);
    let folded = fold_log(con, layout, until, progress).await?;
    let cp = Checkpoint {
        last_id: folded.last_id,
        checksum: folded.state.checksum(),
        next_epoch: folded.state.next_epoch(),
        ring_version: live.as_ref().map_or(0, |c| c.ring_version),
    };
    let scratch = layout.scratch("verify");
    write_scratch(con, &scratch, &folded.state, &cp).await?;
    let reloaded = readmodel::load(con, &scratch).await?;
    clear_namespace(con, &scratch).await?;
    Ok(Verification {
        last_id: folded.last_id,
        entries: folded.entries,
        live_checksum: live.map(|c| c.checksum),
        folded_checksum: cp.checksum,
        scratch_checksum: reloaded.map_or(0, |l| l.state.checksum()),
    })
}
