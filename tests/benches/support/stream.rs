//! A Redis connection without a response timeout (for blocking reads and long pipelines),
//! and a task that follows a stream.

use std::time::Duration;

use pantheon_store::{RawEntry, stream};
use redis::aio::MultiplexedConnection;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A connection to `url` that may block (no response timeout); connecting gives up after 5 s.
pub async fn connect_to(url: &str) -> MultiplexedConnection {
    let client = redis::Client::open(url).expect("redis url");
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(None);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Follows stream `key` from `from` (`0-0`, or `$` for only new entries) until `stop`,
/// handing each batch to `on_batch` as soon as it is read (blocking reads of `block_ms`).
pub fn follow(
    url: String,
    key: String,
    from: &str,
    block_ms: u64,
    stop: CancellationToken,
    mut on_batch: impl FnMut(Vec<RawEntry>) + Send + 'static,
) -> JoinHandle<()> {
    let mut last = from.to_owned();
    tokio::spawn(async move {
        let mut con = connect_to(&url).await;
        while !stop.is_cancelled() {
            let v: redis::Value = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(1000)
                .arg("BLOCK")
                .arg(block_ms)
                .arg("STREAMS")
                .arg(&key)
                .arg(&last)
                .query_async(&mut con)
                .await
                .expect("XREAD");
            let entries = stream::parse_read(v).expect("stream entries");
            if let Some(e) = entries.last() {
                last = e.id.to_string();
            }
            on_batch(entries);
        }
    })
}
