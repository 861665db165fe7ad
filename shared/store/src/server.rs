//! Commands to a Redis server as a whole rather than to a cluster's keys: stopping a server
//! Pantheon started itself (`pantheon demo`/`up` without a Redis).

use std::time::Duration;

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
