//! A cluster's log: the one place that writes `XADD` for an entry (waiting for replicas when
//! the deployment asks for durability), reads it, and trims it.

use pantheon_domain::{EntryId, LogEntry};
use redis::aio::ConnectionLike;

use crate::deployment::Durability;
use crate::stream::{self, Bound};
use crate::{Batch, Layout, RawEntry, StoreError};

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
    let (ids, replicated) =
        append_all(con, layout, std::slice::from_ref(entry), durability).await?;
    let id = *ids
        .first()
        .ok_or_else(|| StoreError::Reply("XADD returned no id".to_owned()))?;
    Ok(match replicated {
        Replicated::Enough => Appended::Durable(id),
        Replicated::Short { acked, wanted } => Appended::NotReplicated { id, acked, wanted },
    })
}

/// Whether the replicas asked for confirmed a round trip of appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replicated {
    /// As many replicas as asked for (or none asked).
    Enough,
    /// Only `acked` of `wanted` replicas confirmed in time: the entries are on the master and
    /// may be lost if it fails now.
    Short { acked: u32, wanted: u32 },
}

/// Appends `entries` in order in one round trip: one pipeline on one connection, ending in
/// one `WAIT` when the deployment asks for replicas. `WAIT` waits for every earlier write of
/// its connection, so one replica round trip confirms them all — where a `WAIT` per entry
/// would make a large `distribute` wait for the replica once per 10,000 keys. Returns the
/// ids in the order of `entries`.
pub async fn append_all<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    entries: &[LogEntry],
    durability: Durability,
) -> Result<(Vec<EntryId>, Replicated), StoreError> {
    if entries.is_empty() {
        return Ok((Vec::new(), Replicated::Enough));
    }
    let mut pipe = redis::pipe();
    for entry in entries {
        pipe.add_command(xadd(layout, entry));
    }
    if durability.replicas > 0 {
        let timeout_ms = u64::try_from(durability.timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        pipe.cmd("WAIT").arg(durability.replicas).arg(timeout_ms);
    }
    let replies: Vec<redis::Value> = pipe.query_async(con).await?;
    // A refused write (MOVED, READONLY, NOPERM, ...) comes back as an error reply among the
    // values: surface it as the Redis error it is, so callers can tell a failover from bad
    // input.
    let mut replies = replies
        .into_iter()
        .map(redis::Value::extract_error)
        .collect::<Result<Vec<_>, _>>()?;
    let replicated = if durability.replicas > 0 {
        let acked: u32 = match replies.pop() {
            Some(reply) => redis::from_redis_value(reply)
                .map_err(|e| StoreError::Reply(format!("WAIT returned {e}")))?,
            None => return Err(StoreError::Reply("WAIT returned nothing".to_owned())),
        };
        if acked >= durability.replicas {
            Replicated::Enough
        } else {
            Replicated::Short {
                acked,
                wanted: durability.replicas,
            }
        }
    } else {
        Replicated::Enough
    };
    if replies.len() != entries.len() {
        return Err(StoreError::Reply(format!(
            "{} XADDs returned {} replies",
            entries.len(),
            replies.len()
        )));
    }
    let ids = replies
        .into_iter()
        .map(|reply| {
            let id: String = redis::from_redis_value(reply)
                .map_err(|e| StoreError::Reply(format!("XADD returned {e}")))?;
            id.parse::<EntryId>()
                .map_err(|_| StoreError::Reply(format!("XADD returned {id:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((ids, replicated))
}

/// Appends an entry only the service writes (a `probers`, `tick` or `clock_skew` entry of the
/// projector leader) through the attested append (see [`crate::attest`]), without `WAIT`:
/// a failover that could lose it also ends the leader's term, and the next leader reports
/// again.
pub async fn append_service<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    entry: &LogEntry,
) -> Result<EntryId, StoreError> {
    let id: String = crate::attest::eval(layout, [entry.encode().as_slice()])
        .query_async(con)
        .await?;
    id.parse()
        .map_err(|_| StoreError::Reply(format!("attested append returned {id:?}")))
}

/// Appends several service entries (probe results) in one pipeline through the attested
/// append, without `WAIT`: observations that are reported again if lost, where a round trip
/// per entry would cost more.
pub async fn append_many_service<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    entries: &[LogEntry],
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    crate::attest::stage_append_many(&mut pipe, layout, entries);
    pipe.query_async::<()>(con).await?;
    Ok(())
}

/// Up to `count` entries after `after` (from the start when `None`) up to and including
/// `until` (the end when `None`), oldest first.
pub async fn range<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    after: Option<EntryId>,
    until: Option<EntryId>,
    count: usize,
) -> Result<Vec<RawEntry>, StoreError> {
    let low = after.map_or(Bound::Open, Bound::Excluding);
    let high = until.map_or(Bound::Open, Bound::Including);
    stream::range(con, &layout.log(), low, high, Some(count)).await
}

/// Up to `count` entries before `before`, newest first (looking back from an entry).
pub async fn before<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    before: EntryId,
    count: usize,
) -> Result<Vec<RawEntry>, StoreError> {
    let high = Bound::Excluding(before);
    stream::rev_range(con, &layout.log(), Bound::Open, high, Some(count)).await
}

/// The entry `id`, if it is still in the log (not trimmed).
pub async fn entry<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    id: EntryId,
) -> Result<Option<RawEntry>, StoreError> {
    let at = Bound::Including(id);
    Ok(stream::range(con, &layout.log(), at, at, None)
        .await?
        .into_iter()
        .next())
}

/// Entries in the log.
pub async fn len<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<u64, StoreError> {
    stream::len(con, &layout.log()).await
}

/// Stages trimming the log below `keep_from` (`XTRIM MINID`: entries at or after it stay),
/// and the attestations of the entries trimmed.
pub fn stage_trim_below(batch: &mut Batch, layout: &Layout, keep_from: EntryId) {
    batch.call(
        "XTRIM",
        &[&layout.log()],
        ["MINID".as_bytes(), keep_from.to_string().as_bytes()],
    );
    crate::attest::stage_trim_below(batch, layout, keep_from);
}
