//! Deleting a cluster on purpose (`pantheon destroy`; docs/adr/0012-redis-that-comes-back-empty.md).
//!
//! A running projector leader puts its state back when the cluster's keys vanish; a deletion
//! the operator asked for must not look like that. So, in this order: a tombstone is written
//! first (`<prefix>:{<cluster>}:destroyed`, with an expiry), the projector's lease is seized
//! (the fence moves: the leader cannot commit again and re-contends), then every other key of
//! the cluster is deleted (`SCAN` by the cluster's pattern, never `KEYS`). A leader that finds
//! the tombstone forgets the state it holds and starts the cluster empty; the re-seed
//! transaction checks it too, so a re-seed racing the deletion cannot land.

use std::time::Duration;

use redis::aio::ConnectionLike;

use crate::lease::Lease;
use crate::{Layout, StoreError};

/// How long the tombstone outlives the deletion: far longer than any leader takes to notice,
/// short enough that it does not linger for a cluster name reused later.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(24 * 3600);

/// What a destroy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destroyed {
    /// Keys deleted (the tombstone excluded).
    pub deleted: u64,
}

/// Destroys the cluster of `layout` (see the module docs). `by` is written into the tombstone
/// (who and when, for the leader's log line). Running it twice is harmless.
pub async fn destroy<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    by: &str,
    lease_ttl: Duration,
) -> Result<Destroyed, StoreError> {
    let tombstone = layout.destroyed();
    let _: () = redis::cmd("SET")
        .arg(&tombstone)
        .arg(by)
        .arg("PX")
        .arg(TOMBSTONE_TTL.as_millis() as u64)
        .query_async(con)
        .await?;
    Lease::new(layout.lease(), "destroy", lease_ttl)
        .seize(con)
        .await?;
    let mut keys = crate::keys::matching(con, &layout.all_keys_pattern()).await?;
    keys.retain(|k| *k != tombstone);
    let deleted = crate::keys::delete(con, &keys).await?;
    Ok(Destroyed { deleted })
}

/// The tombstone's content, when the cluster was destroyed within [`TOMBSTONE_TTL`].
pub async fn tombstone<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<Option<String>, StoreError> {
    Ok(redis::cmd("GET")
        .arg(layout.destroyed())
        .query_async(con)
        .await?)
}
