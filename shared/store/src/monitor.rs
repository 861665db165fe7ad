//! Reads for monitoring (status pages, `/metrics`, `/readyz`): who leads, how far the
//! projector is behind the log, and how far each consumer group is behind the events stream.
//! One pipeline per call, a handful of small replies, whatever the cluster's size.

use std::collections::HashMap;

use pantheon_domain::EntryId;
use redis::Value;
use redis::aio::ConnectionLike;

use crate::lease::Lease;
use crate::{Layout, StoreError};

/// The projector's position and leadership, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The newest entry in the log.
    pub log_last: Option<EntryId>,
    /// The last entry the projector committed.
    pub applied_last: Option<EntryId>,
    /// Log entries not yet applied (from the projector group's `lag`, Redis 7+; counted by
    /// `XRANGE` when Redis cannot say, e.g. after trimming).
    pub lag_entries: u64,
    /// Whether a projector holds the lease now.
    pub lease_held: bool,
    /// The instance that committed last (the leader, while the lease is held).
    pub leader: Option<String>,
    /// Bumped at every change of leader.
    pub fence: u64,
}

/// One consumer group on the events stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLag {
    pub name: String,
    /// Events not yet delivered to the group (`None` when Redis cannot say).
    pub lag: Option<u64>,
    /// Delivered, not yet acknowledged.
    pub pending: u64,
}

/// Reads the projector's progress and the lease (one pipeline, then `XINFO GROUPS`).
pub async fn progress<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<Progress, StoreError> {
    let lease = layout.lease();
    let fence_key = Lease::new(lease.clone(), "", std::time::Duration::ZERO).fence_key();
    let (last, applied, leader, held, fence): (
        Value,
        Option<String>,
        Option<String>,
        bool,
        Option<u64>,
    ) = redis::pipe()
        .cmd("XREVRANGE")
        .arg(layout.log())
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .cmd("HGET")
        .arg(layout.checkpoint())
        .arg("last_id")
        .cmd("HGET")
        .arg(layout.checkpoint())
        .arg("leader")
        .cmd("EXISTS")
        .arg(&lease)
        .cmd("GET")
        .arg(&fence_key)
        .query_async(con)
        .await?;
    let log_last = crate::stream::parse_entries(last)?
        .into_iter()
        .next()
        .map(|e| e.id);
    let applied_last = applied
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<EntryId>().map_err(|_| StoreError::Damaged {
                key: layout.checkpoint(),
                reason: format!("bad last_id {s:?}"),
            })
        })
        .transpose()?;
    let projector_lag = groups(con, &layout.log())
        .await?
        .into_iter()
        .find(|g| g.name == layout.projector_group())
        .and_then(|g| g.lag);
    let lag_entries = match (projector_lag, log_last) {
        (Some(lag), _) => lag,
        (None, None) => 0,
        (None, Some(_)) => count_after(con, layout, applied_last).await?,
    };
    Ok(Progress {
        log_last,
        applied_last,
        lag_entries,
        lease_held: held,
        leader: leader.filter(|l| !l.is_empty()),
        fence: fence.unwrap_or(0),
    })
}

/// Entries after `after`, counted by reading ids only up to a cap (a fallback: Redis 7 says
/// the lag itself).
async fn count_after<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    after: Option<EntryId>,
) -> Result<u64, StoreError> {
    const CAP: usize = 10_000;
    let entries = crate::log::range(con, layout, after, None, CAP).await?;
    Ok(entries.len() as u64)
}

/// The consumer groups on the events stream, with their lag.
pub async fn event_groups<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<Vec<GroupLag>, StoreError> {
    groups(con, &layout.events()).await
}

/// `XINFO GROUPS key`; no groups (or no stream) is an empty list.
async fn groups<C: ConnectionLike + Send>(
    con: &mut C,
    key: &str,
) -> Result<Vec<GroupLag>, StoreError> {
    let reply: Result<Vec<HashMap<String, Value>>, redis::RedisError> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(key)
        .query_async(con)
        .await;
    let rows = match reply {
        Ok(rows) => rows,
        Err(e) if e.to_string().contains("no such key") => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = match row.get("name") {
            Some(v) => redis::from_redis_value(v.clone())
                .map_err(|e| StoreError::Reply(format!("XINFO GROUPS name: {e}")))?,
            None => continue,
        };
        let number = |field: &str| -> Option<u64> {
            row.get(field)
                .and_then(|v| redis::from_redis_value::<Option<u64>>(v.clone()).ok())
                .flatten()
        };
        out.push(GroupLag {
            name,
            lag: number("lag"),
            pending: number("pending").unwrap_or(0),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
