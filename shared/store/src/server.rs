//! Commands to a Redis server as a whole rather than to a cluster's keys: its clock, and
//! stopping a server Pantheon started itself (`pantheon demo`/`up` without a Redis).

use std::time::Duration;

use redis::aio::ConnectionLike;

use crate::StoreError;

/// Redis's clock (`TIME`), in ms since the epoch: the clock `XADD *` ids follow.
pub async fn now_ms<C: ConnectionLike + Send>(con: &mut C) -> Result<u64, StoreError> {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(con).await?;
    Ok(secs * 1000 + micros / 1000)
}

/// Sends `SHUTDOWN` (which writes the AOF out) to the server at `url` and waits at most
/// `within`: the reply never comes, the server closes the connection as it exits. Errors are
/// ignored; the caller kills the process if it lingers.
pub async fn shutdown(url: &str, within: Duration) {
    if let Ok(client) = redis::Client::open(url)
        && let Ok(mut con) = client.get_multiplexed_async_connection().await
    {
        let _ =
            tokio::time::timeout(within, redis::cmd("SHUTDOWN").query_async::<()>(&mut con)).await;
    }
}
