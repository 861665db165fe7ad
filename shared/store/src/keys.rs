//! Keys as a whole, whatever they hold: finding them by pattern (`SCAN`, never `KEYS`),
//! checking and deleting them, and removing a cluster's whole namespace.

use redis::aio::ConnectionLike;

use crate::readmodel::scan_all;
use crate::{Layout, StoreError};

/// Most keys per `DEL`.
const DELETE_CHUNK: usize = 500;

/// Every key matching `pattern`.
pub async fn matching<C: ConnectionLike + Send>(
    con: &mut C,
    pattern: &str,
) -> Result<Vec<String>, StoreError> {
    scan_all(con, "SCAN", None, Some(pattern)).await
}

pub async fn exists<C: ConnectionLike + Send>(con: &mut C, key: &str) -> Result<bool, StoreError> {
    Ok(redis::cmd("EXISTS").arg(key).query_async(con).await?)
}

/// Deletes `keys` (a few hundred per `DEL`); returns how many existed.
pub async fn delete<C: ConnectionLike + Send>(
    con: &mut C,
    keys: &[String],
) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for chunk in keys.chunks(DELETE_CHUNK) {
        let n: u64 = redis::cmd("DEL").arg(chunk).query_async(con).await?;
        deleted += n;
    }
    Ok(deleted)
}

/// Deletes every key of a cluster (log, events, read models, lease, ...), page by page;
/// returns how many. For throw-away clusters (the demo), never a live one.
pub async fn delete_cluster<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<u64, StoreError> {
    let pattern = layout.all_keys_pattern();
    let mut cursor = 0u64;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(con)
            .await?;
        if !keys.is_empty() {
            let n: u64 = redis::cmd("DEL").arg(&keys).query_async(con).await?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}
