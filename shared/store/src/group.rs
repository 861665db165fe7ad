//! Consumer groups: the projector's group on the log (its position mirrors the checkpoint,
//! for monitoring) and consumers' groups on the events stream (subscriptions: read, claim,
//! count deliveries, ack, dead-letter).

use std::time::Duration;

use pantheon_domain::EntryId;
use redis::Value;
use redis::aio::ConnectionLike;

use crate::stream::{self, millis};
use crate::{Batch, Layout, RawEntry, StoreError};

/// A consumer group on one of a cluster's streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    stream: String,
    name: String,
}

impl Group {
    /// The projector's group on the log.
    pub fn projector(layout: &Layout) -> Self {
        Self {
            stream: layout.log(),
            name: layout.projector_group().to_owned(),
        }
    }

    /// A consumers' group on the events stream.
    pub fn events(layout: &Layout, name: &str) -> Self {
        Self {
            stream: layout.events(),
            name: name.to_owned(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stream's key.
    pub fn stream(&self) -> &str {
        &self.stream
    }
}

/// Where a new group starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Every entry in the stream (`0`).
    Beginning,
    /// Entries added after the group is created (`$`).
    Now,
}

/// Creates the group (and the stream if missing). An existing group keeps its position:
/// `BUSYGROUP` is success, so every process can call this on start.
pub async fn create<C: ConnectionLike + Send>(
    con: &mut C,
    group: &Group,
    start: Start,
) -> Result<(), StoreError> {
    let at = match start {
        Start::Beginning => "0",
        Start::Now => "$",
    };
    let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&group.stream)
        .arg(&group.name)
        .arg(at)
        .arg("MKSTREAM")
        .query_async(con)
        .await;
    match created {
        Err(e) if e.code() != Some("BUSYGROUP") => Err(e.into()),
        _ => Ok(()),
    }
}

/// Moves the group's last-delivered id to `id` (`0` when `None`).
pub async fn set_id<C: ConnectionLike + Send>(
    con: &mut C,
    group: &Group,
    id: Option<EntryId>,
) -> Result<(), StoreError> {
    let at = id.map_or_else(|| "0".to_owned(), |id| id.to_string());
    let _: () = redis::cmd("XGROUP")
        .arg("SETID")
        .arg(&group.stream)
        .arg(&group.name)
        .arg(at)
        .query_async(con)
        .await?;
    Ok(())
}

/// Stages moving the projector's group to the checkpoint `id` (`0` when `None`), so it
/// moves atomically with the commit and `XINFO GROUPS` shows the projector's lag.
pub fn stage_projector_position(batch: &mut Batch, layout: &Layout, id: Option<EntryId>) {
    let at = id.map_or_else(|| "0".to_owned(), |id| id.to_string());
    batch.call(
        "XGROUP SETID",
        &[&layout.log()],
        [layout.projector_group(), at.as_str()],
    );
}

/// Removes a consumer (and its pending entries) from the group; returns how many entries
/// it had pending.
pub async fn delete_consumer<C: ConnectionLike + Send>(
    con: &mut C,
    group: &Group,
    consumer: &str,
) -> Result<u64, StoreError> {
    Ok(redis::cmd("XGROUP")
        .arg("DELCONSUMER")
        .arg(&group.stream)
        .arg(&group.name)
        .arg(consumer)
        .query_async(con)
        .await?)
}

/// What an `XREADGROUP` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// This consumer's own pending entries after this id (delivered before, not acked).
    Pending(EntryId),
    /// Entries never delivered to the group (`>`).
    New,
}

/// `XREADGROUP` of up to `count` entries for `consumer`, blocking up to `block` (at least
/// 1 ms: `BLOCK 0` would wait forever) when given; a blocking read needs a dedicated
/// connection.
pub async fn read<C: ConnectionLike + Send>(
    con: &mut C,
    group: &Group,
    consumer: &str,
    from: Read,
    count: usize,
    block: Option<Duration>,
) -> Result<Vec<RawEntry>, StoreError> {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(&group.name)
        .arg(consumer)
        .arg("COUNT")
        .arg(count);
    if let Some(block) = block {
        cmd.arg("BLOCK").arg(millis(block).max(1));
    }
    cmd.arg("STREAMS").arg(&group.stream);
    match from {
        Read::Pending(after) => cmd.arg(after.to_string()),
        Read::New => cmd.arg(">"),
    };
    stream::parse_read(cmd.query_async(con).await?)
}

/// `XAUTOCLAIM`: takes over up to `count` entries pending at any consumer for at least
/// `min_idle`, scanning from `cursor`. Returns the next cursor ([`EntryId::ZERO`] when the
/// scan is complete) and the claimed entries (without fields if deleted meanwhile).
pub async fn claim<C: ConnectionLike + Send>(
    con: &mut C,
    group: &Group,
    consumer: &str,
    min_idle: Duration,
    cursor: EntryId,
    count: usize,
) -> Result<(EntryId, Vec<RawEntry>), StoreError> {
    let reply: Value = redis::cmd("XAUTOCLAIM")
        .arg(&group.stream)
        .arg(&group.name)
        .arg(consumer)
        .arg(millis(min_idle))
        .arg(cursor.to_string())
        .arg("COUNT")
        .arg(count)
        .query_async(con)
        .await?;
    parse_autoclaim(reply)
}

/// How many times each entry has been delivered (`XPENDING` per id, one pipeline); `None`
/// for an entry no longer pending (acked meanwhile).
pub async fn deliveries<C: ConnectionLike + Send>(
    con: &mut C,
    group: &Group,
    ids: impl IntoIterator<Item = EntryId>,
) -> Result<Vec<Option<u64>>, StoreError> {
    let mut pipe = redis::pipe();
    for id in ids {
        let id = id.to_string();
        pipe.cmd("XPENDING")
            .arg(&group.stream)
            .arg(&group.name)
            .arg(&id)
            .arg(&id)
            .arg(1);
    }
    if pipe.is_empty() {
        return Ok(Vec::new());
    }
    let counts: Vec<Vec<(String, String, u64, u64)>> = pipe.query_async(con).await?;
    Ok(counts
        .into_iter()
        .map(|pending| pending.first().map(|&(_, _, _, deliveries)| deliveries))
        .collect())
}

/// Acknowledges entries; returns how many were still pending.
pub async fn ack<C: ConnectionLike + Send>(
    con: &mut C,
    group: &Group,
    ids: impl IntoIterator<Item = EntryId>,
) -> Result<u64, StoreError> {
    let mut cmd = redis::cmd("XACK");
    cmd.arg(&group.stream).arg(&group.name);
    for id in ids {
        cmd.arg(id.to_string());
    }
    Ok(cmd.query_async(con).await?)
}

/// Copies `entry` to the dead-letter stream `dead` (with `original_id`, `group`,
/// `deliveries` and its fields) and acks it, in one transaction (both keys share the
/// cluster's hash tag, so this works on Redis Cluster too).
pub async fn dead_letter<C: ConnectionLike + Send>(
    con: &mut C,
    group: &Group,
    dead: &str,
    entry: &RawEntry,
    deliveries: u64,
) -> Result<(), StoreError> {
    let id = entry.id.to_string();
    let mut pipe = redis::pipe();
    pipe.atomic();
    pipe.cmd("XADD")
        .arg(dead)
        .arg("*")
        .arg("original_id")
        .arg(&id)
        .arg("group")
        .arg(&group.name)
        .arg("deliveries")
        .arg(deliveries);
    for (k, v) in &entry.fields {
        pipe.arg(k.as_slice()).arg(v.as_slice());
    }
    pipe.ignore();
    pipe.cmd("XACK")
        .arg(&group.stream)
        .arg(&group.name)
        .arg(&id)
        .ignore();
    let () = pipe.query_async(con).await?;
    Ok(())
}

/// `XAUTOCLAIM` replies `[next-cursor, entries]` (Redis 6.2) or `[next-cursor, entries,
/// deleted-ids]` (7.0+, which also drops the deleted ids from the pending list itself).
fn parse_autoclaim(reply: Value) -> Result<(EntryId, Vec<RawEntry>), StoreError> {
    let Value::Array(mut parts) = reply else {
        return Err(StoreError::Reply(format!("XAUTOCLAIM: {reply:?}")));
    };
    if parts.len() < 2 {
        return Err(StoreError::Reply(format!("XAUTOCLAIM: {parts:?}")));
    }
    let entries = stream::parse_entries(parts.swap_remove(1))?;
    let cursor = match &parts[0] {
        Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| StoreError::Reply(format!("XAUTOCLAIM cursor: {:?}", parts[0])))?;
    Ok((cursor, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autoclaim_replies_of_both_shapes_parse() {
        let entry = Value::Array(vec![
            Value::BulkString(b"5-1".to_vec()),
            Value::Array(vec![
                Value::BulkString(b"type".to_vec()),
                Value::BulkString(b"left".to_vec()),
            ]),
        ]);
        let v7 = Value::Array(vec![
            Value::BulkString(b"0-0".to_vec()),
            Value::Array(vec![entry.clone()]),
            Value::Array(vec![]),
        ]);
        let (cursor, entries) = parse_autoclaim(v7).unwrap();
        assert_eq!(cursor, EntryId::ZERO);
        assert_eq!(entries[0].id, EntryId::new(5, 1));
        let v62 = Value::Array(vec![
            Value::BulkString(b"9-0".to_vec()),
            Value::Array(vec![entry]),
        ]);
        assert_eq!(parse_autoclaim(v62).unwrap().0, EntryId::new(9, 0));
    }
}
