//! Turns fold results into commit operations: one batch of log entries → one [`Batch`].

use pantheon_domain::event::EventKind;
use pantheon_domain::{EntryId, Origin, Rejection, State};
use pantheon_store::readmodel::{self, Checkpoint};
use pantheon_store::{Batch, Layout, RawEntry, feed, group};

/// Most raw fields copied into a `rejected` entry (a 20,000-field entry is not copied whole).
const MAX_REJECTED_FIELDS: usize = 64;

/// When a staged batch is cut, and how the caller shows it is still making progress.
pub struct Limits<'a> {
    /// Most commit arguments in one batch.
    pub max_args: usize,
    /// Most time spent folding one batch.
    pub max_fold: std::time::Duration,
    /// Called before each entry is folded (keeps the lease's progress stamp fresh).
    pub beat: &'a (dyn Fn() + Sync),
}

impl std::fmt::Debug for Limits<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("max_args", &self.max_args)
            .field("max_fold", &self.max_fold)
            .finish()
    }
}

/// A staged batch and the checkpoint it commits.
#[derive(Debug)]
pub struct Staged {
    pub batch: Batch,
    pub checkpoint: Checkpoint,
    /// Log entries folded (rejected ones included; redelivered ones excluded).
    pub applied: usize,
    pub events: usize,
    pub rejected: usize,
}

/// Folds `entries` (in log order, each with its origin: see [`pantheon_store::attest`]) into
/// `state` and stages everything to commit.
///
/// Stops early once the batch reaches `max_args` arguments; returns how many entries were
/// consumed. Entries at or below the checkpoint were applied before (a redelivery after a
/// crash): they are only acknowledged.
pub fn stage_entries(
    state: &mut State,
    committed: &Checkpoint,
    layout: &Layout,
    entries: &[RawEntry],
    origins: &[Origin],
    leader: &str,
    limits: &Limits<'_>,
) -> (Staged, usize) {
    let started = std::time::Instant::now();
    let mut batch = Batch::new();
    let mut cp = committed.clone();
    let (mut applied_n, mut events_n, mut rejected_n) = (0, 0, 0);
    let mut consumed = 0;
    let mut ring_dirty = false;
    let mut ring_bumped = false;
    let token_clock = state.tokens().clock();
    for (entry, origin) in entries.iter().zip(origins) {
        // Stop at the size limit, or after `max_fold` of folding: a burst of entries that each
        // rebuild a large ring (hundreds of joins) must not keep a batch uncommitted for so
        // long that the lease lapses and the same batch is folded again and again.
        if consumed > 0 && (batch.args() >= limits.max_args || started.elapsed() >= limits.max_fold)
        {
            break;
        }
        (limits.beat)();
        consumed += 1;
        if cp.last_id.is_some_and(|last| entry.id <= last) {
            continue;
        }
        applied_n += 1;
        // Deferred: the keys move once, at the end of the batch (a burst of joins or deaths
        // rebalances once per commit, not once per entry).
        match state.apply_raw_deferred(entry.id, &entry.fields, *origin) {
            Ok(applied) => {
                pantheon_metrics::process().entry(Ok(()));
                readmodel::stage_applied(&mut batch, layout, state, &applied);
                feed::stage(&mut batch, layout, state, &applied, entry.id);
                let policy_changed = applied.events.iter().any(|e| {
                    matches!(
                        e.kind,
                        EventKind::PolicyChanged { .. }
                            | EventKind::ProbersChanged { .. }
                            | EventKind::NoProber
                    )
                });
                if applied.ring_changed {
                    cp.ring_version += 1;
                    ring_bumped = true;
                }
                ring_dirty |= applied.ring_changed || policy_changed;
                for event in &applied.events {
                    pantheon_metrics::process().event(&event.kind);
                    batch.xadd(&layout.events(), "*", &event.encode());
                }
                events_n += applied.events.len();
            }
            Err(rejection) => {
                pantheon_metrics::process().entry(Err(&rejection));
                stage_rejection(&mut batch, layout, entry, &rejection);
                rejected_n += 1;
            }
        }
        cp.last_id = Some(entry.id);
    }
    if cp.last_id.is_some() && !state.is_settled() {
        let settled = state.settle();
        readmodel::stage_applied(&mut batch, layout, state, &settled);
        // The keys move for the latest entry that changed the members (the `rebalanced`
        // event's cause).
        let cause = settled.events.first().map(|e| e.cause);
        if let Some(cause) = cause.or(cp.last_id) {
            feed::stage(&mut batch, layout, state, &settled, cause);
        }
        if settled.ring_changed {
            cp.ring_version += 1;
            ring_bumped = true;
        }
        ring_dirty |= settled.ring_changed;
        for event in &settled.events {
            pantheon_metrics::process().event(&event.kind);
            batch.xadd(&layout.events(), "*", &event.encode());
        }
        events_n += settled.events.len();
    }
    // Tokens changed (a node died and came back within the batch, say): the ring hash holds
    // them, and clients cache it by version, so the version moves too.
    if state.tokens().clock() != token_clock {
        ring_dirty = true;
        if !ring_bumped {
            cp.ring_version += 1;
        }
    }
    // The ring hash holds the whole member list: written once per batch, with the final
    // version, not once per entry (a burst of joins rewrote it hundreds of times).
    if ring_dirty {
        readmodel::stage_ring(&mut batch, layout, state, cp.ring_version);
    }
    if applied_n > 0 {
        cp.checksum = state.checksum();
        cp.next_epoch = state.next_epoch();
        readmodel::stage_checkpoint(&mut batch, layout, state, &cp, leader);
    }
    if consumed > 0 {
        // The group's position follows the checkpoint, atomically with it: `XINFO GROUPS`
        // shows how far the projector is (and its lag) to any Redis tool.
        group::stage_projector_position(&mut batch, layout, cp.last_id);
    }
    (
        Staged {
            batch,
            checkpoint: cp,
            applied: applied_n,
            events: events_n,
            rejected: rejected_n,
        },
        consumed,
    )
}

/// `rejected` entries reuse the log entry's id, so "was entry X rejected, and why?" is one
/// `XRANGE rejected X X`. Raw fields are copied under `raw:<name>`, each clipped to a few KB.
pub fn stage_rejection(batch: &mut Batch, layout: &Layout, entry: &RawEntry, why: &Rejection) {
    // Clipped to a few KB per field (with the original size): see pantheon_store::rejected.
    let fields = pantheon_store::rejected::fields(
        entry.id,
        &why.to_string(),
        &entry.fields,
        MAX_REJECTED_FIELDS,
    );
    batch.xadd(&layout.rejected(), &entry.id.to_string(), &fields);
}

/// The checkpoint a brand-new state commits.
pub fn fresh_checkpoint(state: &State, last_id: Option<EntryId>) -> Checkpoint {
    Checkpoint {
        last_id,
        checksum: state.checksum(),
        next_epoch: state.next_epoch(),
        ring_version: 0,
    }
}
