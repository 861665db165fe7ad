//! Pantheon's Redis layer. Everything that knows a Redis key name or command lives here:
//!
//! * [`layout`] — every key of a cluster, all under one hash tag `{cluster}`;
//! * [`stream`] — reading stream replies as raw bytes (field names may repeat);
//! * [`connect`] — connections with the right timeouts for each job;
//! * [`commit`] — the fenced, atomic commit of a batch (one Lua script);
//! * [`readmodel`] — the read models' encoding, and loading a `State` back from them;
//! * [`lease`] — the leader lease that fences commits.

pub mod commit;
pub mod connect;
pub mod layout;
pub mod lease;
pub mod migrate;
pub mod probers;
pub mod readmodel;
pub mod snapshot;
pub mod stream;

pub use commit::{Batch, CommitError};
pub use layout::Layout;
pub use stream::RawEntry;

/// Errors of the store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected reply from redis: {0}")]
    Reply(String),
    #[error("read model {key} is damaged: {reason}")]
    Damaged { key: String, reason: String },
}
