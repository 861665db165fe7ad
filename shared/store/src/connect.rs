//! Connections, each with the timeouts its job needs.
//!
//! redis-rs times responses out after 500 ms by default. That is right for small commands,
//! wrong for a commit script that writes 100,000 keys, and fatal for `XREADGROUP ... BLOCK`,
//! which also stalls everything else multiplexed on its connection. So: one managed
//! connection for commands (reconnects in the background; a command in flight during a
//! reconnect fails and the caller decides whether to retry) and a separate one for blocking
//! reads.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client};

use crate::StoreError;

/// How long a command (including a large commit script) may take before it counts as failed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for a TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Opens a client, with a clear error for a malformed URL.
pub fn client(url: &str) -> Result<Client, StoreError> {
    Ok(Client::open(url)?)
}

/// A reconnecting connection for ordinary commands and commits.
pub async fn commands(client: &Client) -> Result<ConnectionManager, StoreError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT))
        .set_number_of_retries(2);
    Ok(client.get_connection_manager_with_config(config).await?)
}

/// A dedicated connection for blocking reads (`XREADGROUP ... BLOCK`): no response timeout,
/// the BLOCK argument bounds the wait instead.
pub async fn blocking(client: &Client) -> Result<MultiplexedConnection, StoreError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(None);
    Ok(client
        .get_multiplexed_async_connection_with_config(&config)
        .await?)
}

/// A connection of its own for a job that keeps per-connection state (WATCH before a
/// transaction); responses may take up to [`COMMAND_TIMEOUT`]. Not shared with anything else.
pub async fn dedicated(client: &Client) -> Result<MultiplexedConnection, StoreError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT));
    Ok(client
        .get_multiplexed_async_connection_with_config(&config)
        .await?)
}
