//! Letting log time reach a damped node's reuse time on a quiet cluster (ADR 0007). The fold
//! undamps a node at the first entry at or after its reuse time, but a cluster whose nodes are
//! all healthy writes nothing (probers log failures, not successes), so that entry may never
//! come. The leader appends a `tick` once Redis's clock has passed the earliest reuse time and
//! no applied entry has: one entry per due reuse time, replayed like any other.

use pantheon_domain::{Command, EntryId, LogEntry, State};
use pantheon_store::Connection;
use pantheon_store::{Layout, log};
use tracing::debug;

use crate::ProjectorError;

/// Appends a `tick` when the earliest reuse time is due by Redis's clock (`now`, ms) but not
/// yet by the log's; `sent` remembers the reuse time already ticked for (until it is applied).
pub(crate) async fn tick_if_due<C: Connection>(
    con: &mut C,
    layout: &Layout,
    state: &State,
    now: u64,
    applied: Option<EntryId>,
    sent: &mut Option<u64>,
) -> Result<(), ProjectorError> {
    let Some(due) = state.next_undamp() else {
        *sent = None;
        return Ok(());
    };
    if applied.is_some_and(|id| id.ms >= due) || *sent == Some(due) {
        return Ok(());
    }
    if now < due {
        return Ok(());
    }
    // No WAIT: a lost tick is sent again by the next leader, whose `sent` starts empty.
    log::append_service(con, layout, &LogEntry::new(Command::Tick)).await?;
    debug!(due, "tick: log time passes a damped node's reuse time");
    *sent = Some(due);
    Ok(())
}
