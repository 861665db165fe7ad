//! Set-up shared by the benches (each bench uses part of it).
#![allow(dead_code)]

pub mod append;
pub mod server;
pub mod services;
pub mod stream;

use std::time::{SystemTime, UNIX_EPOCH};

use pantheon_domain::entry::{Command, LogEntry, ProbeResult};
use pantheon_domain::{EntryId, NodeId};
use pantheon_store::{Layout, readmodel};
use redis::aio::ConnectionLike;

/// Probe results per pipeline.
const PER_PIPE: usize = 1_000;

/// The first successful probe of each `(node, epoch)`, appended through the service's
/// attested append as a prober would: a joined node owns keys only once it answered
/// (docs/adr/0011). Returns the id of the last entry of the log afterwards.
pub async fn answer_all<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    nodes: impl IntoIterator<Item = (NodeId, u64)>,
) -> EntryId {
    let probes: Vec<LogEntry> = nodes
        .into_iter()
        .map(|(node, epoch)| answered(node, epoch))
        .collect();
    for chunk in probes.chunks(PER_PIPE) {
        pantheon_store::log::append_many_service(con, layout, chunk)
            .await
            .expect("attested append");
    }
    last_id(con, layout).await
}

/// A successful probe of `node` in `epoch`: what makes a joining node alive.
pub fn answered(node: NodeId, epoch: u64) -> LogEntry {
    LogEntry::new(Command::Probe(ProbeResult {
        node,
        epoch,
        ok: true,
        status: Some(200),
        latency_ms: 1,
        error: None,
        prober: Some("bench-prober".into()),
    }))
}

/// The id of the newest entry of the log.
pub async fn last_id<C: ConnectionLike + Send>(con: &mut C, layout: &Layout) -> EntryId {
    let newest = pantheon_store::log::before(con, layout, EntryId::new(u64::MAX, u64::MAX), 1)
        .await
        .expect("read the log");
    newest.first().map(|e| e.id).expect("a non-empty log")
}

/// The last entry the projector applied (its checkpoint), if any.
pub async fn last_applied<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Option<EntryId> {
    readmodel::load_checkpoint(con, layout)
        .await
        .expect("checkpoint")
        .and_then(|c| c.last_id)
}

/// Milliseconds since the Unix epoch: comparable with the time in a stream entry's id.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
