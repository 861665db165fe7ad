//! Pantheon's Redis layer. Everything that knows a Redis key name or command lives here;
//! the other crates call these typed operations:
//!
//! * [`acl`] — the least-privilege Redis ACL rules of each role (`pantheon acl`);
//! * [`layout`] — every key of a cluster, all under one hash tag `{cluster}`;
//! * [`stream`] — reading stream replies as raw bytes (field names may repeat);
//! * [`url`], [`deployment`], [`tls`], [`tls_pair`] — which Redis (one server, Sentinel,
//!   Cluster; TLS), parsed once, printed without passwords;
//! * [`resolve`] — the master serving a cluster's hash slot ([`sentinel_auth`]: a Sentinel
//!   refusing its own credentials, said as such);
//! * [`handle`] — [`Redis`], the connection that follows that master through failovers;
//! * [`connection`] — [`Connection`], what the store's operations run on (so that callers
//!   never name a `redis` type);
//! * [`connect`] — the timeouts of each kind of connection;
//! * [`credentials`] — whether Redis refuses this process's credentials right now;
//! * [`commit`] — the fenced, atomic commit of a batch (`MULTI`/`EXEC` under `WATCH`; a Lua
//!   script for the rare commits, ADR 0001);
//! * [`readmodel`] — the read models' encoding, and loading a `State` back from them;
//! * [`lease`] — the leader lease that fences commits;
//! * [`generation`] — moving a cluster's log to a new generation after a poisoned clock;
//! * [`attest`] — the proof that an entry was appended by the service (and reading it back);
//! * [`log`] — appending entries to the log (durably when asked), reading and trimming it;
//! * [`events`] — reading, following and trimming the events stream;
//! * [`feed`] — each node's ownership feed: appended with the commit, read with no gap;
//! * [`rejected`] — looking up why an entry was rejected;
//! * [`group`] — consumer groups: the projector's, and subscriptions' (read, claim, ack);
//! * [`snapshot`] — the state as of a log id, the base of rebuilds (chunks under a manifest);
//! * [`probers`] — the prober replica registry;
//! * [`fleet`] — the registry of processes that share the leading of many clusters;
//! * [`discover`] — finding the clusters that exist under a key prefix (`up --clusters '*'`);
//! * [`monitor`] — reads for status pages, `/metrics` and `/readyz`: leader, lag, groups;
//! * [`migrate`] — versioned changes of the stored formats;
//! * [`migration`] — a half-finished slot migration: following ASK, waiting, naming it;
//! * [`keys`] — finding and deleting keys by pattern, whole namespaces;
//! * [`reseed`] — putting a leader's state back into a Redis that came back empty;
//! * [`destroy`] — deleting a cluster on purpose (`pantheon destroy`), so nobody re-seeds it;
//! * [`server`] — commands to a whole server (stopping one Pantheon started).

pub mod acl;
pub mod attest;
pub mod commit;
pub mod connect;
pub mod connection;
pub mod credentials;
pub mod deployment;
pub mod destroy;
pub mod discover;
pub mod events;
pub mod failure;
pub mod feed;
pub mod fleet;
pub mod generation;
pub mod group;
pub mod handle;
pub mod handoff;
pub mod keys;
pub mod layout;
pub mod lease;
pub mod loads;
pub mod log;
pub mod migrate;
pub mod migration;
pub mod monitor;
pub mod probers;
pub mod readmodel;
pub mod rejected;
pub mod reseed;
pub mod resolve;
pub mod sentinel_auth;
pub mod server;
pub mod setting;
pub mod snapshot;
pub mod stream;
pub mod tls;
pub mod tls_pair;
pub mod url;
pub(crate) mod watch;

pub use commit::{Batch, CommitError, Watched};
pub use connection::Connection;
pub use deployment::{Deployment, DeploymentError, Durability};
pub use failure::Failure;
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
    #[error("redis: {}", summary(.0))]
    Redis(redis::RedisError),
    #[error("unexpected reply from redis: {0}")]
    Reply(String),
    /// The master cannot be found or reached (the reason names the cause, never a password).
    #[error("redis unavailable: {reason}")]
    Unavailable {
        /// What kind of failure.
        class: Failure,
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
            StoreError::Redis(e) => handle::is_transient(e) || migration::refused(e),
            _ => false,
        }
    }

    /// True when a half-finished slot migration refused the command (`ASK`, `TRYAGAIN`, or a
    /// transaction aborted by them): nothing ran, and it may be sent again once the
    /// migration is over.
    pub fn is_migrating(&self) -> bool {
        matches!(self, StoreError::Redis(e) if migration::refused(e))
    }

    /// The kind of failure, when Redis failed or could not be reached.
    pub fn failure(&self) -> Option<Failure> {
        match self {
            StoreError::Unavailable { class, .. } => Some(*class),
            StoreError::Redis(e) => Some(Failure::of(e)),
            _ => None,
        }
    }

    /// True when Redis refused the command to this user (`NOPERM`): retrying cannot help.
    pub fn is_permission_denied(&self) -> bool {
        self.failure() == Some(Failure::Permission)
    }

    /// True when Redis failed in a way that retrying the same command later may fix (the
    /// master moved, is loading, a slot is migrating); see [`handle::is_transient`].
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Redis(e) if handle::is_transient(e))
    }

    /// True when Redis failed in a way that sending the command again may fix (also a
    /// dropped connection or a timeout); see [`handle::may_succeed_again`].
    pub fn may_succeed_again(&self) -> bool {
        matches!(self, StoreError::Redis(e) if handle::may_succeed_again(e))
    }

    /// True when Redis says the consumer group does not exist (`NOGROUP`): it was deleted,
    /// or the stream with it.
    pub fn is_missing_group(&self) -> bool {
        matches!(self, StoreError::Redis(e) if e.code() == Some("NOGROUP"))
    }
}

/// Longest error text kept in a one-line summary.
const SUMMARY_MAX: usize = 300;

/// A Redis error as one short line. A failed pipeline or transaction lists every failed
/// command (thousands of `ASK`s for a batch during a slot migration: a line of many
/// kilobytes); this keeps the first failure and counts the others.
pub fn summary(e: &redis::RedisError) -> String {
    let errors = e
        .clone()
        .into_server_errors()
        .filter(|errors| errors.len() > 1);
    let text = match errors {
        None => e.to_string(),
        Some(errors) => {
            let (index, first) = &errors[0];
            let same = errors
                .iter()
                .filter(|(_, s)| s.code() == first.code())
                .count();
            let what = if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ExecAbort) {
                "transaction aborted"
            } else {
                "pipeline failed"
            };
            format!(
                "{what}: {} commands failed ({same} with {}); the first, command {index}: {first}",
                errors.len(),
                first.code(),
            )
        }
    };
    let mut line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.len() > SUMMARY_MAX {
        let cut = (0..=SUMMARY_MAX)
            .rev()
            .find(|i| line.is_char_boundary(*i))
            .unwrap_or(0);
        line.truncate(cut);
        line.push_str("...");
    }
    line
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        StoreError::Redis(e)
    }
}
