//! The prober replica registry: hash `probers`, field = prober id, value =
//! `"<expires_ms> <since_ms>"` in Redis server time, so replicas on machines with skewed
//! clocks agree on who is alive.

use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionLike;

use crate::StoreError;
use crate::layout::Layout;

/// Registers (or refreshes) a replica and returns the registry as of Redis's clock.
const HEARTBEAT_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] ~= '' then
  local since = now
  local old = redis.call('HGET', KEYS[1], ARGV[1])
  if old then
    local exp, s = string.match(old, '(%d+) (%d+)')
    if exp and tonumber(exp) > now then since = tonumber(s) end
  end
  redis.call('HSET', KEYS[1], ARGV[1], (now + tonumber(ARGV[2])) .. ' ' .. since)
end
return {now, redis.call('HGETALL', KEYS[1])}
"#;

/// One registered replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProberEntry {
    pub id: String,
    pub expires_ms: u64,
    pub since_ms: u64,
}

/// The registry as seen at `now_ms` (Redis server time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    pub now_ms: u64,
    pub entries: Vec<ProberEntry>,
}

impl Registry {
    /// Replicas whose registration has not expired, sorted by id.
    pub fn live(&self) -> Vec<&ProberEntry> {
        let mut live: Vec<&ProberEntry> = self
            .entries
            .iter()
            .filter(|e| e.expires_ms > self.now_ms)
            .collect();
        live.sort_by(|a, b| a.id.cmp(&b.id));
        live
    }

    pub fn live_ids(&self) -> Vec<String> {
        self.live().into_iter().map(|e| e.id.clone()).collect()
    }
}

/// Registers (or refreshes) `id` in the registry hash `key` for `ttl`; also the fleet registry
/// of `up` processes ([`crate::fleet`]).
pub(crate) async fn heartbeat_key<C: ConnectionLike + Send>(
    con: &mut C,
    key: &str,
    id: &str,
    ttl: Duration,
) -> Result<Registry, StoreError> {
    let (now_ms, flat): (u64, Vec<String>) = Script::new(HEARTBEAT_LUA)
        .key(key)
        .arg(id)
        .arg(ttl.as_millis() as u64)
        .invoke_async(con)
        .await?;
    Ok(parse(now_ms, &flat))
}

fn parse(now_ms: u64, flat: &[String]) -> Registry {
    let mut entries = Vec::new();
    for pair in flat.chunks(2) {
        let [id, value] = pair else { continue };
        let mut parts = value.split(' ').map(str::parse::<u64>);
        // A value we cannot read counts as expired rather than stopping everyone.
        let (expires_ms, since_ms) = match (parts.next(), parts.next()) {
            (Some(Ok(e)), Some(Ok(s))) => (e, s),
            _ => (0, 0),
        };
        entries.push(ProberEntry {
            id: id.clone(),
            expires_ms,
            since_ms,
        });
    }
    Registry { now_ms, entries }
}

/// Registers replica `id` for `ttl` and returns the registry.
pub async fn heartbeat<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    id: &str,
    ttl: Duration,
) -> Result<Registry, StoreError> {
    heartbeat_key(con, &layout.probers(), id, ttl).await
}

/// Reads the registry without registering: `TIME` and `HGETALL` in one pipeline, not the
/// heartbeat script, so a read-only user (the `reader` ACL role, which may not run scripts)
/// can read it.
pub async fn read<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<Registry, StoreError> {
    let ((secs, micros), flat): ((u64, u64), Vec<String>) = redis::pipe()
        .cmd("TIME")
        .cmd("HGETALL")
        .arg(layout.probers())
        .query_async(con)
        .await?;
    Ok(parse(secs * 1000 + micros / 1000, &flat))
}

/// Removes a replica (graceful shutdown: others take its nodes at once).
pub async fn deregister<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    id: &str,
) -> Result<(), StoreError> {
    let _: i64 = redis::cmd("HDEL")
        .arg(layout.probers())
        .arg(id)
        .query_async(con)
        .await?;
    Ok(())
}

/// Drops registrations that expired long ago (keeps the hash small).
pub async fn prune<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    registry: &Registry,
    older_than: Duration,
) -> Result<(), StoreError> {
    let cutoff = registry
        .now_ms
        .saturating_sub(older_than.as_millis() as u64);
    let stale: Vec<&str> = registry
        .entries
        .iter()
        .filter(|e| e.expires_ms < cutoff)
        .map(|e| e.id.as_str())
        .collect();
    if !stale.is_empty() {
        let _: i64 = redis::cmd("HDEL")
            .arg(layout.probers())
            .arg(&stale)
            .query_async(con)
            .await?;
    }
    Ok(())
}
