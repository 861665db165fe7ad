//! Pantheon's Redis layer. Everything that knows a Redis key name or command lives here;
//! the other crates call these typed operations:
//!
//! * [`acl`] — the least-privilege Redis ACL rules of each role (`pantheon acl`);
//! * [`layout`] — every key of a cluster, all under one hash tag `{cluster}`;
//! * [`stream`] — reading stream replies as raw bytes (field names may repeat);
//! * [`url`], [`deployment`], [`tls`] — which Redis (one server, Sentinel, Cluster; TLS),
//!   parsed once, printed without passwords;
//! * [`resolve`] — the master serving a cluster's hash slot;
//! * [`handle`] — [`Redis`], the connection that follows that master through failovers;
//! * [`connect`] — the timeouts of each kind of connection;
//! * [`commit`] — the fenced, atomic commit of a batch (one Lua script);
//! * [`readmodel`] — the read models' encoding, and loading a `State` back from them;
//! * [`lease`] — the leader lease that fences commits;
//! * [`log`] — appending entries to the log (durably when asked), reading and trimming it;
//! * [`events`] — reading, following and trimming the events stream;
//! * [`rejected`] — looking up why an entry was rejected;
//! * [`group`] — consumer groups: the projector's, and subscriptions' (read, claim, ack);
//! * [`snapshot`] — the state as of a log id, the base of rebuilds;
//! * [`probers`] — the prober replica registry;
//! * [`migrate`] — versioned changes of the stored formats;
//! * [`keys`] — finding and deleting keys by pattern, whole namespaces;
//! * [`reseed`] — putting a leader's state back into a Redis that came back empty;
//! * [`destroy`] — deleting a cluster on purpose (`pantheon destroy`), so nobody re-seeds it;
//! * [`server`] — commands to a whole server (stopping one Pantheon started).

pub mod acl;
pub mod commit;
pub mod connect;
pub mod deployment;
pub mod destroy;
pub mod discover;
pub mod events;
pub mod fleet;
pub mod generation;
pub mod group;
pub mod handle;
pub mod keys;
pub mod layout;
pub mod lease;
pub mod log;
pub mod migrate;
pub mod monitor;
pub mod probers;
pub mod readmodel;
pub mod rejected;
pub mod reseed;
pub mod resolve;
pub mod server;
pub mod snapshot;
pub mod stream;
pub mod tls;
pub mod url;

pub use commit::{Batch, CommitError};
pub use deployment::{Deployment, DeploymentError, Durability};
pub use handle::{PinnedConnection, Redis};
pub use layout::Layout;
pub use stream::RawEntry;
pub use tls::TlsFiles;
pub use url::RedisUrl;

/// Errors of the store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Not marked as the error's source: its text is already in the message, and a cause
    /// chain (`anyhow`'s `{:#}`) would print it twice.
    #[error("redis: {0}")]
    Redis(redis::RedisError),
    #[error("unexpected reply from redis: {0}")]
    Reply(String),
    /// The master cannot be found or reached (the reason names the cause, never a password).
    #[error("redis unavailable: {reason}")]
    Unavailable {
        /// What kind of failure (see [`handle::classify`]): "refused", "timeout", "tls", ...
        class: &'static str,
        reason: String,
    },
    #[error("read model {key} is damaged: {reason}")]
    Damaged { key: String, reason: String },
}

impl StoreError {
    /// True when the error only says the master is (for now) unreachable, moved or failing
    /// over: [`Redis`] already logs that once per change of state, so retry loops stay quiet.
    pub fn is_outage(&self) -> bool {
        match self {
            StoreError::Unavailable { .. } => true,
            StoreError::Redis(e) => handle::is_transient(e),
            _ => false,
        }
    }
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        StoreError::Redis(e)
    }
}
