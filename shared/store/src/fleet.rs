//! The fleet registry: `up` processes that share the leading of many clusters (issue 13,
//! docs/adr/0010-many-clusters-one-fleet.md) register here, with the same heartbeat as
//! prober replicas (`probers.rs`: expiry and start in Redis server time), under one key per
//! key prefix and kind of process: `<prefix>:{fleet}:<role>` (`up`, `projector`, `prober`:
//! projector-only and prober-only processes split the clusters among their own kind). Its
//! hash tag is `{fleet}`, so on Redis Cluster it lives in the slot of a cluster named
//! `fleet` (different key names, no clash).

use std::time::Duration;

use redis::aio::ConnectionLike;

use crate::StoreError;
use crate::probers::Registry;

/// The hash tag (and the name to open a [`crate::Redis`] handle with) of the registry.
pub const TAG: &str = "fleet";

/// The registry key of processes of kind `role` under key prefix `prefix`.
pub fn key(prefix: &str, role: &str) -> String {
    format!("{prefix}:{{{TAG}}}:{role}")
}

/// Every registry key under `prefix` (an ACL key pattern).
pub fn pattern(prefix: &str) -> String {
    format!("{prefix}:{{{TAG}}}:*")
}

/// Registers (or refreshes) process `id` for `ttl`; returns the registry as of Redis's clock.
pub async fn heartbeat<C: ConnectionLike + Send>(
    con: &mut C,
    prefix: &str,
    role: &str,
    id: &str,
    ttl: Duration,
) -> Result<Registry, StoreError> {
    crate::probers::heartbeat_key(con, &key(prefix, role), id, ttl).await
}

/// Removes process `id` (graceful shutdown: the others take its clusters at once).
pub async fn deregister<C: ConnectionLike + Send>(
    con: &mut C,
    prefix: &str,
    role: &str,
    id: &str,
) -> Result<(), StoreError> {
    let _: i64 = redis::cmd("HDEL")
        .arg(key(prefix, role))
        .arg(id)
        .query_async(con)
        .await?;
    Ok(())
}
