//! A Redis that came back empty (docs/adr/0012-redis-that-comes-back-empty.md): what the
//! projector remembers across leading terms, how it tells an emptied Redis from a new
//! cluster, and putting its state back.
//!
//! The leader keeps the state it folded ([`Memory::held`]) when a leading term ends on an
//! error (Redis restarting), and gives it up as soon as it sees another projector hold the
//! lease (its state is then older than what that one commits; the standby may only follow it
//! to that one's commits, see `crate::standby`). At the start of a term, a cluster
//! with no checkpoint, no snapshot and no events whose log does not reach back to the held
//! state's last entry was emptied under us: the held state goes back as a new generation
//! ([`pantheon_store::reseed`]). A `destroy` tombstone means the emptying was wanted: the
//! state is forgotten. A process that holds no state but saw the cluster's checkpoint says so
//! (`lost` marker, `pantheon doctor` fails) instead of starting an empty history.

use pantheon_domain::{EntryId, State};
use pantheon_store::lease::Lease;
use pantheon_store::readmodel::Checkpoint;
use pantheon_store::reseed::{self, ReseedError, Survey};
use pantheon_store::snapshot;
use pantheon_store::{Layout, Redis};
use tracing::{error, info, warn};

use crate::ProjectorError;

/// How often a re-seed is retried when producers keep appending in between.
const ATTEMPTS: usize = 50;

/// The state a leader folded, and the checkpoint it stands for (committed, or staged in a
/// commit that Redis may have lost with everything else).
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) state: State,
    pub(crate) cp: Checkpoint,
}

/// What one projector remembers of its cluster across leading terms.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    pub(crate) held: Option<Held>,
    /// The newest checkpoint this process saw committed (leading or standing by).
    pub(crate) seen: Option<EntryId>,
    /// The loss was already logged (one ERROR line, not one per attempt).
    reported: bool,
}

impl Memory {
    /// The cluster was destroyed on purpose: it starts again as new.
    pub(crate) fn forget_all(&mut self) {
        *self = Self::default();
    }

    /// The latest observation wins, not the largest: a new generation (`recover-clock`)
    /// restarts ids lower, and the old ones must not make its log look too short.
    pub(crate) fn saw(&mut self, id: Option<EntryId>) {
        if id.is_some() {
            self.seen = id;
        }
    }

    fn last_known(&self) -> Option<EntryId> {
        let held = self.held.as_ref().and_then(|h| h.cp.last_id);
        held.max(self.seen)
    }
}

/// What a cluster without a checkpoint is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Never committed anything that anyone here knows of: fold the log from its start.
    New,
    /// Events or a snapshot survive (read models deleted): rebuild from the log.
    Rebuild,
    /// Destroyed on purpose (the tombstone's content).
    Destroyed(String),
    /// Emptied, and this leader holds the state: put it back.
    Emptied,
    /// Emptied, known to have existed up to this entry, and nothing here holds its state.
    Lost(EntryId),
}

/// Judges a cluster whose checkpoint is missing. A checkpoint that moved backwards (an older
/// copy of Redis, a lagging replica promoted) or was reset by `recover-clock` never gets here:
/// those are consistent histories, and the leader continues from them.
pub(crate) fn judge(memory: &Memory, survey: &Survey) -> Verdict {
    if let Some(by) = &survey.destroyed {
        return Verdict::Destroyed(by.clone());
    }
    if survey.events > 0 || survey.snapshot {
        return Verdict::Rebuild;
    }
    let Some(last) = memory.last_known() else {
        return match &memory.held {
            // Held, but nothing applied yet: a state with nodes or keys still came from
            // somewhere (a re-seeded or recovered base), so it is put back too.
            Some(h) if h.state.nodes().next().is_some() || !h.state.keys().is_empty() => {
                Verdict::Emptied
            }
            _ => Verdict::New,
        };
    };
    // The log still reaches back to what was applied: it is the history, fold it.
    if survey.log_first.is_some_and(|first| first <= last) {
        return Verdict::New;
    }
    if memory.held.is_some() {
        Verdict::Emptied
    } else {
        Verdict::Lost(last)
    }
}

/// Puts the held state back as a new generation; returns the state and checkpoint to lead
/// from. `Ok(None)`: the cluster was destroyed meanwhile (the state is forgotten).
pub(crate) async fn restore(
    redis: &Redis,
    layout: &Layout,
    lease: &Lease,
    memory: &mut Memory,
) -> Result<Option<(State, Checkpoint)>, ProjectorError> {
    let Some(held) = memory.held.as_ref() else {
        return Err(ProjectorError::Task("restore without a held state".into()));
    };
    let previous = held.cp.last_id.unwrap_or(EntryId::ZERO);
    // The new generation's base, its chunks written once for every attempt (docs/adr/0017).
    let mut con = redis.clone();
    let prepared =
        crate::retention::write_chunks(&mut con, layout, &held.state, EntryId::ZERO).await?;
    let mut pinned = redis.dedicated().await?;
    for _ in 0..ATTEMPTS {
        let ring_version = held.cp.ring_version.saturating_add(1);
        let refused = match reseed::reseed(
            &mut pinned,
            layout,
            lease,
            &held.state,
            &prepared,
            previous,
            ring_version,
        )
        .await
        {
            Err(ReseedError::Raced) => continue,
            Err(ReseedError::Store(e)) => return Err(e.into()),
            Err(refused) => refused,
            Ok(done) => {
                error!(
                    previous = %previous,
                    nodes = held.state.node_count(),
                    keys = held.state.keys().len(),
                    moved = done.moved,
                    archive = done.archive.as_deref().unwrap_or(""),
                    marker = %done.marker,
                    "Redis lost this cluster's data (log, checkpoint and read models gone, as \
                     after a restart without persistence): restored the state this leader \
                     held, folded up to {previous}, as a new log generation; entries appended \
                     after the last one this leader read were lost with Redis and cannot be \
                     counted"
                );
                memory.reported = false;
                let Some(held) = memory.held.take() else {
                    return Err(ProjectorError::Task("held state vanished".into()));
                };
                return Ok(Some((held.state, done.checkpoint)));
            }
        };
        // Refused, so nothing was written: no manifest names the chunks (the next snapshot's
        // commit deletes them if this fails; `pantheon destroy` has already run its sweep).
        let _ = snapshot::discard(&mut con, layout, &prepared).await;
        return match refused {
            ReseedError::Destroyed(by) => {
                info!(%by, "the cluster was destroyed while re-seeding: forgetting its state");
                memory.forget_all();
                Ok(None)
            }
            e => Err(ProjectorError::Reseed(e.to_string())),
        };
    }
    let _ = snapshot::discard(&mut con, layout, &prepared).await;
    Err(ProjectorError::Reseed(format!(
        "producers appended to the log during each of {ATTEMPTS} attempts"
    )))
}

/// Records and reports that the cluster's data is gone with nobody holding it; the caller
/// stops leading (so a process that does hold the state can take the lease) and retries.
pub(crate) async fn report_lost(
    con: &mut Redis,
    layout: &Layout,
    memory: &mut Memory,
    last: EntryId,
) -> ProjectorError {
    let why = format!(
        "Redis lost this cluster's log and checkpoint (it had applied up to {last}) and no \
         running projector holds its state"
    );
    if !memory.reported {
        error!(
            last_applied = %last,
            "{why}: not starting an empty history; restart the projector that led it if it \
             still runs, or run `pantheon destroy --yes-i-am-sure` to start the cluster empty"
        );
        memory.reported = true;
    }
    if let Err(e) = reseed::mark_lost(con, layout, &why).await {
        warn!(error = %e, "could not record the loss for `pantheon doctor`");
    }
    ProjectorError::Lost(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64) -> EntryId {
        EntryId { ms, seq: 0 }
    }

    fn holding(last: u64) -> Memory {
        Memory {
            held: Some(Held {
                state: State::default(),
                cp: Checkpoint {
                    last_id: Some(id(last)),
                    ..Checkpoint::default()
                },
            }),
            seen: Some(id(last)),
            reported: false,
        }
    }

    fn emptied() -> Survey {
        Survey::default()
    }

    #[test]
    fn a_leader_holding_state_finds_an_emptied_redis_and_puts_it_back() {
        assert_eq!(judge(&holding(100), &emptied()), Verdict::Emptied);
        // Entries written to the empty Redis before the leader came back are newer.
        let written_after = Survey {
            log_first: Some(id(200)),
            ..emptied()
        };
        assert_eq!(judge(&holding(100), &written_after), Verdict::Emptied);
    }

    #[test]
    fn a_destroyed_cluster_is_never_put_back() {
        let destroyed = Survey {
            destroyed: Some("pantheon destroy".into()),
            ..emptied()
        };
        assert!(matches!(
            judge(&holding(100), &destroyed),
            Verdict::Destroyed(_)
        ));
    }

    #[test]
    fn deleted_read_models_with_events_or_a_snapshot_left_are_rebuilt_from_the_log() {
        let events = Survey {
            events: 3,
            ..emptied()
        };
        let snapshot = Survey {
            snapshot: true,
            ..emptied()
        };
        assert_eq!(judge(&holding(100), &events), Verdict::Rebuild);
        assert_eq!(judge(&holding(100), &snapshot), Verdict::Rebuild);
    }

    #[test]
    fn a_log_that_still_reaches_back_is_the_history_and_is_folded() {
        let kept = Survey {
            log_first: Some(id(50)),
            ..emptied()
        };
        assert_eq!(judge(&holding(100), &kept), Verdict::New);
    }

    #[test]
    fn a_standby_that_saw_the_cluster_but_holds_nothing_reports_the_loss() {
        let standby = Memory {
            seen: Some(id(100)),
            ..Memory::default()
        };
        assert_eq!(judge(&standby, &emptied()), Verdict::Lost(id(100)));
    }

    #[test]
    fn a_process_that_knows_nothing_starts_a_new_cluster() {
        assert_eq!(judge(&Memory::default(), &emptied()), Verdict::New);
    }
}
