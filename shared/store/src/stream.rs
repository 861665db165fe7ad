//! Stream replies as raw bytes, and the stream reads the typed modules ([`crate::log`],
//! [`crate::events`], [`crate::rejected`]) are made of. A stream entry may repeat a field
//! name (an `assign` entry repeats `key`), so replies are read as ordered pairs, never into
//! a map.

use pantheon_domain::EntryId;
use redis::Value;
use redis::aio::ConnectionLike;

use crate::StoreError;

/// One stream entry: its id and its field/value pairs, in order, as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    pub id: EntryId,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl RawEntry {
    /// The value of the first field with this name, as text.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

fn bad(what: &str, v: &Value) -> StoreError {
    StoreError::Reply(format!("{what}: {v:?}"))
}

fn bytes(v: Value) -> Result<Vec<u8>, StoreError> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        other => Err(bad("expected a string", &other)),
    }
}

/// Parses an XRANGE reply (or the entries part of an XREAD reply).
pub fn parse_entries(v: Value) -> Result<Vec<RawEntry>, StoreError> {
    let items = match v {
        Value::Array(items) => items,
        Value::Nil => return Ok(Vec::new()),
        other => return Err(bad("expected an entry list", &other)),
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(mut parts) = item else {
            return Err(bad("expected [id, fields]", &item));
        };
        if parts.len() != 2 {
            return Err(StoreError::Reply(format!(
                "entry with {} parts",
                parts.len()
            )));
        }
        let fields_v = parts.pop().unwrap_or(Value::Nil);
        let id_raw = bytes(parts.pop().unwrap_or(Value::Nil))?;
        let id = std::str::from_utf8(&id_raw)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| StoreError::Reply(format!("bad entry id {id_raw:?}")))?;
        let flat = match fields_v {
            Value::Array(f) => f,
            // XAUTOCLAIM/XREADGROUP return nil fields for entries deleted meanwhile.
            Value::Nil => Vec::new(),
            Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            other => return Err(bad("expected fields", &other)),
        };
        let mut fields = Vec::with_capacity(flat.len() / 2);
        let mut it = flat.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            fields.push((bytes(k)?, bytes(v)?));
        }
        out.push(RawEntry { id, fields });
    }
    Ok(out)
}

/// Parses an XREAD/XREADGROUP reply for one stream.
pub fn parse_read(v: Value) -> Result<Vec<RawEntry>, StoreError> {
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Array(streams) => {
            let mut out = Vec::new();
            for s in streams {
                let Value::Array(mut kv) = s else {
                    return Err(bad("expected [stream, entries]", &s));
                };
                if kv.len() == 2 {
                    out.extend(parse_entries(kv.pop().unwrap_or(Value::Nil))?);
                }
            }
            Ok(out)
        }
        Value::Map(streams) => {
            let mut out = Vec::new();
            for (_, entries) in streams {
                out.extend(parse_entries(entries)?);
            }
            Ok(out)
        }
        other => Err(bad("expected a stream list", &other)),
    }
}

/// The id as Redis wants it in commands.
pub fn id_arg(id: EntryId) -> String {
    id.to_string()
}

/// One end of a range of stream ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// No limit on this side (`-` as the low end, `+` as the high end).
    Open,
    Including(EntryId),
    Excluding(EntryId),
}

impl Bound {
    fn arg(self, open: &'static str) -> std::borrow::Cow<'static, str> {
        match self {
            Bound::Open => open.into(),
            Bound::Including(id) => id.to_string().into(),
            Bound::Excluding(id) => format!("({id}").into(),
        }
    }
}

/// Where an `XREAD` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Entries after this id (`0-0` for all).
    Id(EntryId),
    /// Only entries added from now on (`$`).
    Now,
}

/// `XRANGE key low high [COUNT count]`, oldest first.
pub(crate) async fn range<C: ConnectionLike + Send>(
    con: &mut C,
    key: &str,
    low: Bound,
    high: Bound,
    count: Option<usize>,
) -> Result<Vec<RawEntry>, StoreError> {
    let (low, high) = (low.arg("-"), high.arg("+"));
    ranged(con, "XRANGE", key, [&*low, &*high], count).await
}

/// `XREVRANGE key high low [COUNT count]`, newest first.
pub(crate) async fn rev_range<C: ConnectionLike + Send>(
    con: &mut C,
    key: &str,
    low: Bound,
    high: Bound,
    count: Option<usize>,
) -> Result<Vec<RawEntry>, StoreError> {
    let (low, high) = (low.arg("-"), high.arg("+"));
    ranged(con, "XREVRANGE", key, [&*high, &*low], count).await
}

async fn ranged<C: ConnectionLike + Send>(
    con: &mut C,
    command: &str,
    key: &str,
    bounds: [&str; 2],
    count: Option<usize>,
) -> Result<Vec<RawEntry>, StoreError> {
    let mut cmd = redis::cmd(command);
    cmd.arg(key).arg(bounds[0]).arg(bounds[1]);
    if let Some(count) = count {
        cmd.arg("COUNT").arg(count);
    }
    parse_entries(cmd.query_async(con).await?)
}

/// `XREAD COUNT count BLOCK block STREAMS key after`: blocks the connection, so callers pass
/// a dedicated one ([`crate::Redis::blocking`]). `BLOCK 0` waits forever.
pub(crate) async fn read<C: ConnectionLike + Send>(
    con: &mut C,
    key: &str,
    after: After,
    count: usize,
    block: std::time::Duration,
) -> Result<Vec<RawEntry>, StoreError> {
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT")
        .arg(count)
        .arg("BLOCK")
        .arg(millis(block))
        .arg("STREAMS")
        .arg(key);
    match after {
        After::Id(id) => cmd.arg(id.to_string()),
        After::Now => cmd.arg("$"),
    };
    parse_read(cmd.query_async(con).await?)
}

/// Up to `count` entries after `after` from each of two streams, read by one `XREAD`, so
/// both replies show the same instant; waits up to `block` for the first entry in either.
/// The streams must share a hash slot (one cluster's keys always do).
pub(crate) async fn read_two<C: ConnectionLike + Send>(
    con: &mut C,
    keys: [&str; 2],
    after: EntryId,
    count: usize,
    block: std::time::Duration,
) -> Result<[Vec<RawEntry>; 2], StoreError> {
    let after = after.to_string();
    let reply: Value = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(count)
        .arg("BLOCK")
        .arg(millis(block))
        .arg("STREAMS")
        .arg(keys[0])
        .arg(keys[1])
        .arg(&after)
        .arg(&after)
        .query_async(con)
        .await?;
    let mut out = [Vec::new(), Vec::new()];
    for (name, part) in streams_of(reply)? {
        let Some(at) = keys.iter().position(|k| k.as_bytes() == name.as_slice()) else {
            return Err(StoreError::Reply(format!(
                "XREAD answered for a stream not asked for: {:?}",
                String::from_utf8_lossy(&name)
            )));
        };
        out[at] = parse_entries(part)?;
    }
    Ok(out)
}

/// The (stream name, entries) pairs of an XREAD reply, in RESP2 or RESP3 form.
fn streams_of(v: Value) -> Result<Vec<(Vec<u8>, Value)>, StoreError> {
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Array(streams) => streams
            .into_iter()
            .map(|s| match s {
                Value::Array(kv) if kv.len() == 2 => {
                    let mut kv = kv.into_iter();
                    let key = bytes(kv.next().unwrap_or(Value::Nil))?;
                    Ok((key, kv.next().unwrap_or(Value::Nil)))
                }
                other => Err(bad("expected [stream, entries]", &other)),
            })
            .collect(),
        Value::Map(streams) => streams
            .into_iter()
            .map(|(k, entries)| Ok((bytes(k)?, entries)))
            .collect(),
        other => Err(bad("expected a stream list", &other)),
    }
}

/// `XLEN key`.
pub(crate) async fn len<C: ConnectionLike + Send>(
    con: &mut C,
    key: &str,
) -> Result<u64, StoreError> {
    Ok(redis::cmd("XLEN").arg(key).query_async(con).await?)
}

/// Milliseconds as Redis takes them (saturating, never a panic on huge durations).
pub(crate) fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_written_as_redis_reads_them() {
        let id = EntryId::new(5, 1);
        assert_eq!(Bound::Open.arg("-"), "-");
        assert_eq!(Bound::Open.arg("+"), "+");
        assert_eq!(Bound::Including(id).arg("-"), "5-1");
        assert_eq!(Bound::Excluding(id).arg("+"), "(5-1");
    }
}
