//! Local placement: [`Pantheon::locate`] answers "which node owns key K?" from a cached copy
//! of the ring definition (the `ring` hash: strategy, vnodes, members with weights,
//! version), with the same algorithm the projector uses (`docs/placement.md`), so it agrees
//! with [`Pantheon::key_node`] for assigned keys and also answers for keys never assigned.
//!
//! The cache is checked against the ring `version` at most once per refresh interval (one
//! small `HGET`); the full definition is fetched and the placement rebuilt only when the
//! version changed.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pantheon_domain::NodeId;
use pantheon_domain::placement::{self, Member, Placement, Strategy};
use pantheon_store::readmodel;
use tokio::time::Instant;

use crate::{ClientError, Pantheon};

/// One version of the ring definition, with its placement built.
pub struct RingSnapshot {
    version: u64,
    strategy: Strategy,
    vnodes: u32,
    placement: Box<dyn Placement>,
    tokens: HashMap<NodeId, u64>,
}

impl fmt::Debug for RingSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingSnapshot")
            .field("version", &self.version)
            .field("strategy", &self.strategy)
            .field("vnodes", &self.vnodes)
            .field("members", &self.placement.members())
            .finish()
    }
}

impl RingSnapshot {
    /// The ring version (0 before the projector first wrote a ring).
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Ring points per unit of weight.
    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// The nodes that own keys (alive or suspect, not draining), sorted by id.
    pub fn members(&self) -> &[Member] {
        self.placement.members()
    }

    /// The owner of `key` in this version, or `None` when no node can own keys.
    pub fn owner(&self, key: &str) -> Option<&NodeId> {
        self.placement.owner(key)
    }

    /// The owner of `key` and the key's ownership token (docs/adr/0015): a newer owner of a
    /// key always holds a larger token, so a worker can refuse a request whose token is
    /// smaller than its own. The token is `None` only in a ring written before tokens.
    pub fn owner_with_token(&self, key: &str) -> Option<(&NodeId, Option<u64>)> {
        let owner = self.owner(key)?;
        Some((owner, self.tokens.get(owner).copied()))
    }

    /// The token of the keys `node` owns in this version (`None`: not a member).
    pub fn token(&self, node: &NodeId) -> Option<u64> {
        self.tokens.get(node).copied()
    }
}

/// The cached snapshot and when its version was last checked.
#[derive(Clone)]
struct Cached {
    ring: Arc<RingSnapshot>,
    checked: Instant,
}

pub(crate) struct RingCache {
    interval: Duration,
    // std Mutex: held only to copy an Arc, never across an await.
    current: Mutex<Option<Cached>>,
    // One refresh at a time: building a big ring takes a while, and N callers would build
    // the same thing N times.
    refresh: tokio::sync::Mutex<()>,
}

impl RingCache {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            current: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    fn get(&self) -> Option<Cached> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn fresh(&self) -> Option<Arc<RingSnapshot>> {
        self.get()
            .filter(|c| c.checked.elapsed() < self.interval)
            .map(|c| c.ring)
    }

    fn store(&self, ring: Arc<RingSnapshot>) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(Cached {
            ring,
            checked: Instant::now(),
        });
    }
}

impl Pantheon {
    /// The owner of `key` computed locally from the cached ring definition: no round trip,
    /// except a version check (one `HGET`) at most once per
    /// [`ring_refresh`](crate::PantheonBuilder::ring_refresh) interval. Works for any key,
    /// assigned or not; for an assigned key it equals [`Pantheon::key_node`] once both see
    /// the same ring version. `None` when no node can own keys.
    ///
    /// ```no_run
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), pantheon_client::ClientError> {
    /// if let Some(node) = p.locate("user:42").await? {
    ///     println!("send user:42 to {node}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn locate(&self, key: &str) -> Result<Option<NodeId>, ClientError> {
        Ok(self.ring().await?.owner(key).cloned())
    }

    /// The owner of `key` and its ownership token, computed locally like
    /// [`Pantheon::locate`] (see [`RingSnapshot::owner_with_token`]).
    pub async fn locate_with_token(
        &self,
        key: &str,
    ) -> Result<Option<(NodeId, Option<u64>)>, ClientError> {
        let ring = self.ring().await?;
        Ok(ring.owner_with_token(key).map(|(n, t)| (n.clone(), t)))
    }

    /// Like [`Pantheon::locate_with_token`], for a process that places one key and exits (the
    /// CLI's `locate`): reads the stored ring definition and computes the owner without
    /// building the ring (one pass over its points, nothing sorted or cached), and returns the
    /// ring version too. For many keys, [`Pantheon::ring`] builds it once instead.
    pub async fn locate_once(
        &self,
        key: &str,
    ) -> Result<(Option<(NodeId, Option<u64>)>, u64), ClientError> {
        let mut con = self.con();
        let readmodel::RingDefinition {
            version,
            strategy,
            vnodes,
            members,
            tokens,
        } = readmodel::ring(&mut con, &self.inner.layout).await?;
        let key_owned = key.to_owned();
        // Hashing up to millions of points: keep it off the async workers.
        let owner = tokio::task::spawn_blocking(move || {
            placement::owner_of_one(strategy, vnodes, members, &key_owned)
        })
        .await
        .map_err(|e| ClientError::Config(format!("placing the key failed: {e}")))?;
        let owner = owner.map(|n| {
            let token = tokens.get(&n).copied();
            (n, token)
        });
        Ok((owner, version))
    }

    /// The token of the keys `node` owns now (one `HGET`; `None`: not a member).
    pub async fn member_token(&self, node: &NodeId) -> Result<Option<u64>, ClientError> {
        let mut con = self.con();
        Ok(readmodel::member_token(&mut con, &self.inner.layout, node).await?)
    }

    /// The cached ring, checked against the stored version if the refresh interval passed.
    /// Hold on to it to place many keys against one consistent version.
    ///
    /// ```no_run
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), pantheon_client::ClientError> {
    /// let ring = p.ring().await?;
    /// for key in ["a", "b", "c"] {
    ///     println!("{key} → {:?} (ring v{})", ring.owner(key), ring.version());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn ring(&self) -> Result<Arc<RingSnapshot>, ClientError> {
        if let Some(ring) = self.inner.ring.fresh() {
            return Ok(ring);
        }
        self.check_ring(false).await
    }

    /// Checks the ring version now (ignoring the interval) and reloads the ring if it
    /// changed, e.g. right after [`Pantheon::wait_applied`] of a membership change.
    ///
    /// ```no_run
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), pantheon_client::ClientError> {
    /// let id = p.drain("node-1").await?;
    /// p.wait_applied(id, std::time::Duration::from_secs(5)).await?;
    /// p.refresh_ring().await?;
    /// assert_ne!(p.locate("user:1").await?.map(|n| n.to_string()), Some("node-1".into()));
    /// # Ok(()) }
    /// ```
    pub async fn refresh_ring(&self) -> Result<Arc<RingSnapshot>, ClientError> {
        self.check_ring(true).await
    }

    /// The stored ring version (one `HGET`; 0 before the projector first wrote a ring),
    /// without building the ring.
    pub async fn ring_version(&self) -> Result<u64, ClientError> {
        let mut con = self.con();
        Ok(readmodel::ring_version(&mut con, &self.inner.layout).await?)
    }

    async fn check_ring(&self, force: bool) -> Result<Arc<RingSnapshot>, ClientError> {
        let cache = &self.inner.ring;
        let _one_at_a_time = cache.refresh.lock().await;
        // Another caller may have refreshed while this one waited for the lock.
        if !force && let Some(ring) = cache.fresh() {
            return Ok(ring);
        }
        let layout = &self.inner.layout;
        let mut con = self.con();
        if let Some(cached) = cache.get() {
            let version = readmodel::ring_version(&mut con, layout).await?;
            if version == cached.ring.version {
                cache.store(cached.ring.clone());
                return Ok(cached.ring);
            }
        }
        let readmodel::RingDefinition {
            version,
            strategy,
            vnodes,
            members,
            tokens,
        } = readmodel::ring(&mut con, layout).await?;
        // Hashing vnodes × weight points per member: keep it off the async workers.
        let placement =
            tokio::task::spawn_blocking(move || placement::build(strategy, vnodes, members))
                .await
                .map_err(|e| ClientError::Config(format!("building the ring failed: {e}")))?;
        let ring = Arc::new(RingSnapshot {
            version,
            strategy,
            vnodes,
            placement,
            tokens,
        });
        cache.store(ring.clone());
        Ok(ring)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_placed_without_building_is_the_built_placements_owner() {
        let members = readmodel::parse_members("a=1 b=1 c=2").unwrap();
        for strategy in [Strategy::Ring, Strategy::Rendezvous] {
            let built = placement::build(strategy, 64, members.clone());
            for i in 0..500 {
                let k = format!("k{i}");
                assert_eq!(
                    placement::owner_of_one(strategy, 64, members.clone(), &k).as_ref(),
                    built.owner(&k),
                    "{strategy:?} {k}"
                );
            }
        }
    }

    #[test]
    fn a_snapshot_places_keys_like_the_domain() {
        let members = readmodel::parse_members("a=1 b=1 c=2").unwrap();
        let reference = placement::build(Strategy::Ring, 64, members.clone());
        let snap = RingSnapshot {
            version: 1,
            strategy: Strategy::Ring,
            vnodes: 64,
            placement: placement::build(Strategy::Ring, 64, members),
            tokens: HashMap::new(),
        };
        for i in 0..1000 {
            let k = format!("k{i}");
            assert_eq!(snap.owner(&k), reference.owner(&k));
        }
    }
}
