//! The Rust client of Pantheon: "which healthy node owns key K, and why?"
//!
//! It mirrors the Go library's API (`Join`, `Leave`, `Distribute`, `GetNodeKeys`,
//! `GetKeyNode`, the `died`/`revived` events) over Pantheon's Redis streams:
//!
//! * writes ([`Pantheon::join`], [`Pantheon::leave`], [`Pantheon::distribute`], ...) append
//!   an entry to the cluster's log and return its [`EntryId`]; they are validated here with
//!   the same decoder the projector uses, so bad input fails at once with the same message;
//! * [`Pantheon::wait_applied`] waits until the projector has applied an entry (read your
//!   writes) and says whether it was rejected, and why;
//! * reads ([`Pantheon::nodes`], [`Pantheon::node_health`], [`Pantheon::node_keys`],
//!   [`Pantheon::key_node`]) come from the read models the projector commits atomically;
//! * [`Pantheon::locate`] computes the owner of any key locally from the ring definition,
//!   with no round trip (the definition is refreshed when its version changes);
//! * [`Pantheon::explain`] tells the owners a key had over time, and why;
//! * [`Pantheon::watch`] follows one node's ownership feed (snapshot, acquire, release);
//! * [`Pantheon::subscribe`] reads the events stream through a consumer group, with explicit
//!   ack, redelivery of stuck entries, dead-lettering and resume after a restart.
//!
//! Modules, each owning one job:
//!
//! * `lib.rs` — [`Pantheon`], its options and connection;
//! * [`error`] — [`ClientError`], the one error type;
//! * `write` — the write commands, client-side validation, retries with a command id;
//! * `wait` — [`Pantheon::wait_applied`] and [`Applied`];
//! * `read` — the read-model queries;
//! * `explain` — [`Pantheon::explain`], a key's owners from the log;
//! * [`locate`] — the cached placement ([`RingSnapshot`]) behind [`Pantheon::locate`];
//! * [`subscribe`] — [`Subscription`]: consumer groups, claims, dead letters;
//! * [`watch`] — [`Watch`]: one node's ownership changes with their tokens, resumable;
//! * [`tail`] — [`EventTail`], following the events stream without a group;
//! * [`admin`] — [`Admin`], the operator's jobs: schema, permissions, slot, destroy;
//! * [`audit`] — [`Pantheon::timeline`], the audit timeline behind every decision;
//! * [`status`] — [`Pantheon::status`], the cluster status a status page or exporter shows.
//!
//! ```no_run
//! use std::time::Duration;
//! use pantheon_client::{JoinOp, Pantheon};
//!
//! # async fn example() -> Result<(), pantheon_client::ClientError> {
//! let p = Pantheon::connect("redis://127.0.0.1:6379", "my-cluster").await?;
//! let id = p.join(JoinOp::new("node-1", "http://localhost", 8080, "health")).await?;
//! p.wait_applied(id, Duration::from_secs(5)).await?;
//! p.distribute(["user:1", "user:2", "user:3"]).await?;
//! println!("user:1 belongs to {:?}", p.locate("user:1").await?);
//! # Ok(()) }
//! ```

pub mod admin;
pub mod audit;
pub mod error;
mod explain;
pub mod handoff;
pub mod loads;
pub mod locate;
mod read;
pub mod status;
pub mod subscribe;
pub mod tail;
mod tokens;
mod wait;
pub mod watch;
mod write;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use pantheon_store::{Deployment, Durability, Redis, TlsFiles};

pub use admin::Admin;
pub use error::ClientError;
pub use explain::explanation_json;
pub use locate::RingSnapshot;
pub use pantheon_domain::event::Flow;
pub use pantheon_domain::explain::{Explanation, Owned};
pub use pantheon_domain::placement::{Member, Strategy};
pub use pantheon_domain::{EntryId, Event, EventKind, NodeId};
pub use pantheon_store::readmodel::{AssignedKey, KeyRoute, KeyTotals, NodeRecord};
pub use pantheon_store::{Layout, RawEntry};
pub use subscribe::{Delivery, Payload, Start, SubscribeOptions, Subscription};
pub use tail::EventTail;
pub use wait::Applied;
pub use watch::{Watch, WatchLine, WatchOp};
pub use write::JoinOp;

/// The key prefix used unless [`PantheonBuilder::prefix`] says otherwise.
pub const DEFAULT_PREFIX: &str = "pantheon";
/// How often [`Pantheon::locate`] checks the ring version, by default.
pub const DEFAULT_RING_REFRESH: Duration = Duration::from_secs(1);
/// How often a write is retried after a connection failure, by default.
pub const DEFAULT_WRITE_RETRIES: u32 = 3;

/// A handle on one Pantheon cluster. Cheap to clone; clones share one connection and one
/// cached ring.
#[derive(Clone)]
pub struct Pantheon {
    inner: Arc<Inner>,
}

struct Inner {
    /// Follows the cluster's master through failovers; a command in flight when the master
    /// fails fails, which is why writes retry (safely: each carries a unique `cmd` id the
    /// projector de-duplicates).
    redis: Redis,
    layout: Layout,
    cluster: String,
    write_retries: u32,
    ring: locate::RingCache,
    tokens: tokens::TokenCache,
}

impl fmt::Debug for Pantheon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pantheon")
            .field("cluster", &self.inner.cluster)
            .field("layout", &self.inner.layout)
            .finish_non_exhaustive()
    }
}

impl Pantheon {
    /// Connects to the cluster `cluster` on the Redis at `redis_url`, with the default
    /// options (prefix `pantheon`, ring refresh every second).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), pantheon_client::ClientError> {
    /// let p = pantheon_client::Pantheon::connect("redis://127.0.0.1:6379", "prod").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(redis_url: &str, cluster: &str) -> Result<Self, ClientError> {
        Self::builder(redis_url, cluster).connect().await
    }

    /// Options beyond the defaults.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// # async fn example() -> Result<(), pantheon_client::ClientError> {
    /// let p = pantheon_client::Pantheon::builder("redis://127.0.0.1:6379", "prod")
    ///     .prefix("acme")
    ///     .ring_refresh(Duration::from_millis(200))
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn builder(redis_url: &str, cluster: &str) -> PantheonBuilder {
        PantheonBuilder {
            redis_url: redis_url.to_owned(),
            tls: TlsFiles::default(),
            durability: None,
            deployment: None,
            cluster: cluster.to_owned(),
            prefix: DEFAULT_PREFIX.to_owned(),
            ring_refresh: DEFAULT_RING_REFRESH,
            write_retries: DEFAULT_WRITE_RETRIES,
        }
    }

    /// The cluster's key names.
    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    /// The cluster name.
    pub fn cluster(&self) -> &str {
        &self.inner.cluster
    }

    fn con(&self) -> Redis {
        self.inner.redis.clone()
    }

    /// The Redis handle (deployment, current master) this client talks through.
    pub fn redis(&self) -> &Redis {
        &self.inner.redis
    }
}

/// Options of a [`Pantheon`] handle; finish with [`PantheonBuilder::connect`].
#[derive(Debug, Clone)]
pub struct PantheonBuilder {
    redis_url: String,
    tls: TlsFiles,
    durability: Option<Durability>,
    deployment: Option<Deployment>,
    cluster: String,
    prefix: String,
    ring_refresh: Duration,
    write_retries: u32,
}

impl PantheonBuilder {
    /// Key prefix: keys are `<prefix>:{<cluster>}:...` (default `pantheon`).
    pub fn prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.prefix);
        self
    }

    /// How long [`Pantheon::locate`] trusts its cached ring before checking the ring version
    /// again (one `HGET`). Zero checks on every call. Default 1 s.
    pub fn ring_refresh(mut self, every: Duration) -> Self {
        self.ring_refresh = every;
        self
    }

    /// How many times a write is retried after a connection failure (default 3).
    pub fn write_retries(mut self, retries: u32) -> Self {
        self.write_retries = retries;
        self
    }

    /// TLS files for a `rediss://` URL (CA, client certificate and key).
    pub fn tls(mut self, files: TlsFiles) -> Self {
        self.tls = files;
        self
    }

    /// How many replicas must have a write before it is reported (default: one on Sentinel
    /// and Cluster URLs, none on a single server), and how long to wait for them.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = Some(durability);
        self
    }

    /// Uses an already configured deployment instead of the URL given to
    /// [`Pantheon::builder`] (and its TLS and durability settings).
    pub fn deployment(mut self, deployment: Deployment) -> Self {
        self.deployment = Some(deployment);
        self
    }

    /// Opens the connection: resolves the master serving the cluster (through Sentinel or
    /// Redis Cluster when the URL says so) and connects to it.
    pub async fn connect(self) -> Result<Pantheon, ClientError> {
        check_name("cluster", &self.cluster)?;
        check_name("prefix", &self.prefix)?;
        let mut deployment = match self.deployment {
            Some(d) => d,
            None => Deployment::new(&self.redis_url, &self.tls)
                .map_err(|e| ClientError::Config(e.to_string()))?,
        };
        if let Some(durability) = self.durability {
            deployment = deployment.with_durability(durability);
        }
        let redis = Redis::new(deployment, &self.cluster);
        redis.connect().await?;
        Ok(Pantheon {
            inner: Arc::new(Inner {
                redis,
                layout: Layout::new(&self.prefix, &self.cluster),
                cluster: self.cluster,
                write_retries: self.write_retries,
                ring: locate::RingCache::new(self.ring_refresh),
                tokens: tokens::TokenCache::default(),
            }),
        })
    }
}

/// Cluster names and prefixes end up in key names and SCAN patterns: the same rule as the
/// services apply.
fn check_name(what: &str, name: &str) -> Result<(), ClientError> {
    if name.is_empty() || name.len() > 64 {
        return Err(ClientError::Config(format!(
            "{what} must be 1 to 64 characters, got {name:?}"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(ClientError::Config(format!(
            "{what} {name:?} contains {c:?}; use letters, digits, - _ ."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_like_the_services_do() {
        assert!(check_name("cluster", "prod-eu_1.a").is_ok());
        assert!(check_name("cluster", "").is_err());
        assert!(check_name("cluster", "a{b}").is_err());
        assert!(check_name("prefix", &"x".repeat(65)).is_err());
    }
}
