//! A warm standby (docs/adr/0013-loading-keeps-the-lease.md): while another projector leads,
//! a standby keeps its own copy of the state at the leader's last commit, so taking over
//! costs the tail of the log folded since, not a full load.
//!
//! The standby follows what the leader *committed*: it reads the checkpoint, folds the log
//! up to it, and keeps the result only if the state's checksum equals the checkpoint's. The
//! fold is pure, so an equal checksum means the same state; anything else (a trimmed gap, a
//! new log generation, a restored older copy of Redis) fails the check and the standby loads
//! again. Nothing is trusted that Redis did not confirm.

use std::time::Instant;

use pantheon_domain::EntryId;
use pantheon_store::readmodel::{self, Checkpoint};
use pantheon_store::{Layout, Redis, StoreError};
use tracing::{debug, info, warn};

use crate::ProjectorError;
use crate::paging::Paging;
use crate::rebuild::{self, Folded};
use crate::reseed::Held;

/// The state a standby holds, if it matches a checkpoint the leader committed.
#[derive(Debug, Default)]
pub(crate) struct Standby {
    warm: Option<Held>,
}

impl Standby {
    /// The state a leading term ended with (its checkpoint may be ahead of what Redis
    /// confirmed: [`Standby::follow`] checks it like any other).
    pub(crate) fn adopt(&mut self, held: Option<Held>) {
        if held.is_some() {
            self.warm = held;
        }
    }

    /// Drops the state (a schema migration ran, or it can no longer be trusted).
    pub(crate) fn forget(&mut self) {
        self.warm = None;
        self.report();
    }

    /// Brings the state to the leader's latest checkpoint, loading it first when nothing is
    /// held. Returns the checkpoint's id. Errors reaching Redis are returned; a state that
    /// cannot be confirmed is dropped (and loaded again on the next call).
    pub(crate) async fn follow(
        &mut self,
        con: &mut Redis,
        layout: &Layout,
    ) -> Result<Option<EntryId>, ProjectorError> {
        let stored = readmodel::checkpoint(con, layout).await?;
        let committed = match stored.parse() {
            Ok(Some(committed)) => committed,
            // Nothing committed yet, or a damaged checkpoint (the leader rebuilds it): nothing
            // to follow; report what can be read of it.
            Ok(None) | Err(_) => {
                self.warm = None;
                return Ok(stored.last_id().ok().flatten());
            }
        };
        let last_id = committed.last_id;
        if self
            .catch_up(con, layout, committed.clone())
            .await?
            .is_none()
        {
            self.warm_up(con, layout, committed).await?;
        }
        self.report();
        Ok(last_id)
    }

    /// Takes the state for a leading term if it can be brought to Redis's checkpoint by
    /// folding the tail (never a full load: the caller's load path handles that, with its
    /// damage and re-seed checks). Returns the state, its checkpoint and how many entries
    /// the tail held.
    pub(crate) async fn take(
        &mut self,
        con: &mut Redis,
        layout: &Layout,
    ) -> Result<Option<(Held, u64)>, ProjectorError> {
        if self.warm.is_none() {
            return Ok(None);
        }
        let Some(committed) = readmodel::load_checkpoint(con, layout).await? else {
            self.forget();
            return Ok(None);
        };
        let tail = self.catch_up(con, layout, committed).await?;
        let taken = tail.and_then(|tail| self.warm.take().map(|held| (held, tail)));
        self.report();
        Ok(taken)
    }

    fn report(&self) {
        let warm = i64::from(self.warm.is_some());
        pantheon_metrics::process().standby_warm.set(warm);
    }

    /// Folds the held state forward to `committed`. Returns the entries folded, or `None`
    /// (and drops the state) when nothing is held or the result does not match.
    async fn catch_up(
        &mut self,
        con: &mut Redis,
        layout: &Layout,
        committed: Checkpoint,
    ) -> Result<Option<u64>, ProjectorError> {
        let Some(held) = self.warm.take() else {
            return Ok(None);
        };
        if held.cp.last_id > committed.last_id {
            debug!(held = ?held.cp.last_id, committed = ?committed.last_id, "standby state is ahead of the checkpoint: loading again");
            return Ok(None);
        }
        let mut folded = Folded {
            state: held.state,
            last_id: held.cp.last_id,
            entries: 0,
            from_snapshot: None,
        };
        if held.cp.last_id < committed.last_id {
            let until = committed.last_id;
            match rebuild::fold_after(con, layout, &mut folded, until, Paging::Adaptive, |_| {})
                .await
            {
                Ok(()) => {}
                Err(e) if e.is_outage() => return Err(e),
                Err(e) => {
                    warn!(error = %e, "standby could not fold the log tail: loading again");
                    return Ok(None);
                }
            }
        }
        if folded.last_id != committed.last_id || folded.state.checksum() != committed.checksum {
            warn!(
                folded = ?folded.last_id,
                committed = ?committed.last_id,
                "standby state does not match the leader's checkpoint (log trimmed past it, or a new generation): loading again"
            );
            return Ok(None);
        }
        let entries = folded.entries;
        self.warm = Some(Held {
            state: folded.state,
            cp: committed,
        });
        Ok(Some(entries))
    }

    /// Loads the state the leader committed: the read models if they are consistent (a
    /// commit landing during the load makes them not), else the snapshot and the log up to
    /// the checkpoint.
    async fn warm_up(
        &mut self,
        con: &mut Redis,
        layout: &Layout,
        committed: Checkpoint,
    ) -> Result<(), ProjectorError> {
        let started = Instant::now();
        match readmodel::load(con, layout).await {
            Ok(Some(loaded)) if loaded.state.checksum() == loaded.checkpoint.checksum => {
                info!(keys = loaded.state.keys().len(), last_id = ?loaded.checkpoint.last_id, load_ms = started.elapsed().as_millis() as u64, "standby warm: loaded the state from the read models");
                self.warm = Some(Held {
                    state: loaded.state,
                    cp: loaded.checkpoint,
                });
                return Ok(());
            }
            Ok(_) | Err(StoreError::Damaged { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let folded =
            match rebuild::fold_log(con, layout, committed.last_id, Paging::Adaptive, |_| {}).await
            {
                Ok(folded) => folded,
                Err(e) if e.is_outage() => return Err(e),
                Err(e) => {
                    warn!(error = %e, "standby could not fold the log: staying cold");
                    return Ok(());
                }
            };
        if folded.last_id == committed.last_id && folded.state.checksum() == committed.checksum {
            info!(keys = folded.state.keys().len(), entries = folded.entries, last_id = ?committed.last_id, load_ms = started.elapsed().as_millis() as u64, "standby warm: folded the snapshot and the log");
            self.warm = Some(Held {
                state: folded.state,
                cp: committed,
            });
        } else {
            debug!(
                "standby fold does not match the checkpoint (the leader moved on): trying again"
            );
        }
        Ok(())
    }
}
