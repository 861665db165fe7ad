//! Forcing hand-offs that take too long (docs/adr/0016). A node that hands off keeps the keys
//! a planned move gives away until it releases them; if it has not within the policy's
//! `handoff_timeout` (by Redis's clock, from the log time its current hand-off began), the
//! leader appends `handoff_forced` and the fold moves them without their state. The deadline
//! is not fold state: the entry is what replays. After a restore (a new leader that loaded
//! the read models) the start is unknown: the deadline runs from when this leader first saw
//! it, so a takeover can add up to one timeout.

use std::collections::HashMap;

use pantheon_domain::{Command, LogEntry, NodeId, State};
use pantheon_store::Connection;
use pantheon_store::{Layout, log};
use tracing::info;

use crate::ProjectorError;

/// When the leader first saw each node handing off, and when it last forced it (ms, Redis's
/// clock).
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    since: HashMap<NodeId, u64>,
    forced: HashMap<NodeId, u64>,
}

/// Appends `handoff_forced` for every node that has been handing off keys for longer than
/// the policy's `handoff_timeout` at `now`; again after another timeout if it still is (the
/// first entry was lost, or not yet applied).
pub(crate) async fn force_due<C: Connection>(
    con: &mut C,
    layout: &Layout,
    state: &State,
    now: u64,
    deadlines: &mut Deadlines,
) -> Result<(), ProjectorError> {
    let timeout = u64::from(state.policy().handoff_timeout);
    let handing: HashMap<&NodeId, usize> = state.handing_off().nodes().collect();
    deadlines.since.retain(|n, _| handing.contains_key(n));
    deadlines.forced.retain(|n, _| handing.contains_key(n));
    for (node, keys) in handing {
        let seen = *deadlines.since.entry(node.clone()).or_insert(now);
        // A node that finished one hand-off and began another between two of these checks
        // starts afresh: the fold knows when its current one began.
        let since = state.handing_off().started(node).unwrap_or(seen);
        let last = deadlines.forced.get(node).copied().unwrap_or(since);
        if timeout == 0 || now < last.max(since) + timeout {
            continue;
        }
        let entry = LogEntry::new(Command::HandoffForced { node: node.clone() });
        log::append_service(con, layout, &entry).await?;
        info!(%node, keys, waited_ms = now - since, "hand-off forced: not released within handoff_timeout");
        deadlines.forced.insert(node.clone(), now);
    }
    Ok(())
}
