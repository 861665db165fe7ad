//! Appending to a cluster's log: the one place that writes `XADD` for an entry, and that
//! waits for replicas when the deployment asks for durability.

use pantheon_domain::{EntryId, LogEntry};
use redis::aio::ConnectionLike;

use crate::deployment::Durability;
use crate::{Layout, StoreError};

/// What an append achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// On the master and on as many replicas as asked for (none asked: on the master).
    Durable(EntryId),
    /// On the master, but only `acked` of `wanted` replicas confirmed it in time: it may be
    /// lost if the master fails now.
    NotReplicated {
        id: EntryId,
        acked: u32,
        wanted: u32,
    },
}

impl Appended {
    /// The log id, whatever the durability.
    pub fn id(&self) -> EntryId {
        match self {
            Appended::Durable(id) | Appended::NotReplicated { id, .. } => *id,
        }
    }
}

/// The `XADD` of `entry` to the log of `layout`, with a server-assigned id.
pub fn xadd(layout: &Layout, entry: &LogEntry) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(layout.log()).arg("*");
    for (k, v) in entry.encode() {
        cmd.arg(k).arg(v);
    }
    cmd
}

/// Appends `entry`. With `durability.replicas > 0` the `XADD` and a `WAIT` travel in one
/// pipeline on one connection, so the `WAIT` covers exactly this write (`WAIT` counts the
/// writes of its own connection; a `WAIT` sent after a reconnect would cover nothing).
pub async fn append<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    entry: &LogEntry,
    durability: Durability,
) -> Result<Appended, StoreError> {
    let parse = |id: String| {
        id.parse::<EntryId>()
            .map_err(|_| StoreError::Reply(format!("XADD returned {id:?}")))
    };
    if durability.replicas == 0 {
        let id: String = xadd(layout, entry).query_async(con).await?;
        return Ok(Appended::Durable(parse(id)?));
    }
    let timeout_ms = u64::try_from(durability.timeout.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let (id, acked): (String, u32) = redis::pipe()
        .add_command(xadd(layout, entry))
        .cmd("WAIT")
        .arg(durability.replicas)
        .arg(timeout_ms)
        .query_async(con)
        .await?;
    let id = parse(id)?;
    Ok(if acked >= durability.replicas {
        Appended::Durable(id)
    } else {
        Appended::NotReplicated {
            id,
            acked,
            wanted: durability.replicas,
        }
    })
}
