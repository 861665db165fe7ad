//! Timeouts of connections to Redis, one per kind of job.
//!
//! redis-rs times responses out after 500 ms by default. That is right for small commands,
//! wrong for a commit script that writes 100,000 keys, and fatal for `XREADGROUP ... BLOCK`,
//! which also stalls everything else multiplexed on its connection. So [`crate::Redis`]
//! gives ordinary commands [`COMMAND_TIMEOUT`] and blocking reads a connection of their own
//! with no response timeout.

use std::time::Duration;

/// How long a command (including a large commit script) may take before it counts as failed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for a TCP (and TLS) connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
