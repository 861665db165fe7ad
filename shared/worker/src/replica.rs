//! Read replicas of hot keys (docs/adr/0018): a node that load placement names a replica of a
//! key serves reads of it from a copy it fetched from the owner.
//!
//! [`Replicas::read`] answers one replica read: it checks, from the key's route (owner, token,
//! replicas: one round trip, remembered for [`ROUTE_TTL`]), that this node is a replica of the
//! key; then it answers from its copy while the copy is younger than the maximum age, else it
//! fetches the value from the owner with the application's `fetch` (one fetch at a time per
//! key: concurrent reads wait for it rather than all asking the owner).
//!
//! What a replica gives: the owner's value as it was at most `max_age` (default
//! [`DEFAULT_MAX_AGE`]) before, plus the fetch's own time. What it does not: read-your-writes
//! (a write goes to the owner; the replica's copy may be older), or monotonic reads across
//! replicas. A node that stops being a replica may still answer for up to [`ROUTE_TTL`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pantheon_client::{ClientError, KeyRoute, NodeId, Pantheon};
use tokio::time::Instant;

/// How long a key's route (is this node a replica, who owns it) is used before it is read again.
pub const ROUTE_TTL: Duration = Duration::from_secs(1);
/// How old a replica's copy may get before the next read fetches it again.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(1);
/// Keys whose routes and copies a node keeps; past it, the oldest are dropped (hot keys are few).
pub const MAX_KEYS: usize = 10_000;

/// Why a replica read could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("{node} is not a read replica of {key:?}")]
    NotReplica { node: NodeId, key: String },
    #[error("cannot read the key's route: {0}")]
    Route(#[from] ClientError),
    #[error("cannot fetch the value from its owner {owner}: {reason}")]
    Fetch { owner: NodeId, reason: String },
}

/// A replica's answer: the value (`None`: the owner has none) and how old the copy is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRead<V> {
    pub value: Option<V>,
    pub owner: NodeId,
    pub age: Duration,
}

/// The read replicas of one node; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Replicas<V> {
    client: Pantheon,
    node: NodeId,
    routes: Arc<Mutex<Routes>>,
    copies: Copies<V>,
}

impl<V: Clone + Send + 'static> Replicas<V> {
    /// Replicas of `node`, reading routes through `client`, copies kept for [`DEFAULT_MAX_AGE`].
    pub fn new(client: Pantheon, node: NodeId) -> Self {
        Self {
            client,
            node,
            routes: Arc::default(),
            copies: Copies::new(DEFAULT_MAX_AGE),
        }
    }

    /// Keeps copies for `max_age` instead: older values, fewer fetches from the owner.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.copies = Copies::new(max_age);
        self
    }

    /// Answers a read of `key` as its replica; `fetch(owner, owner_token)` reads the value
    /// from the owner when the copy is missing or too old.
    pub async fn read<F, Fut>(&self, key: &str, fetch: F) -> Result<ReplicaRead<V>, ReplicaError>
    where
        F: FnOnce(NodeId, Option<u64>) -> Fut,
        Fut: Future<Output = Result<Option<V>, String>>,
    {
        let route = self.route(key).await?;
        let Some(route) = route.filter(|r| r.replicas.contains(&self.node)) else {
            return Err(ReplicaError::NotReplica {
                node: self.node.clone(),
                key: key.to_owned(),
            });
        };
        let owner = route.owner.clone();
        let (value, age) = self
            .copies
            .get_or_fetch(key, || fetch(route.owner, route.token))
            .await
            .map_err(|reason| ReplicaError::Fetch {
                owner: owner.clone(),
                reason,
            })?;
        Ok(ReplicaRead { value, owner, age })
    }

    async fn route(&self, key: &str) -> Result<Option<KeyRoute>, ClientError> {
        let now = Instant::now();
        let known = lock(&self.routes)
            .get(key)
            .filter(|(at, _)| now.duration_since(*at) < ROUTE_TTL)
            .map(|(_, r)| r.clone());
        if let Some(route) = known {
            return Ok(route);
        }
        let route = self.client.key_route(key).await?;
        let mut routes = lock(&self.routes);
        if routes.len() >= MAX_KEYS {
            routes.retain(|_, (at, _)| now.duration_since(*at) < ROUTE_TTL);
            if routes.len() >= MAX_KEYS {
                routes.clear();
            }
        }
        routes.insert(key.to_owned(), (now, route.clone()));
        Ok(route)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Each key's route, with when it was read (`None`: the key has no owner).
type Routes = HashMap<String, (Instant, Option<KeyRoute>)>;

/// One key's copy: when it was fetched, and the value (`None`: the owner had none).
type Copy<V> = Option<(Instant, Option<V>)>;

/// One slot per key, locked through its fetch.
type Slots<V> = HashMap<String, Arc<tokio::sync::Mutex<Copy<V>>>>;

/// Copies of values with their age; one fetch at a time per key.
#[derive(Debug, Clone)]
struct Copies<V> {
    max_age: Duration,
    // std Mutex around the map (never held across an await); a tokio Mutex per key, held
    // through its fetch so that concurrent reads share it.
    slots: Arc<Mutex<Slots<V>>>,
}

impl<V: Clone> Copies<V> {
    fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            slots: Arc::default(),
        }
    }

    async fn get_or_fetch<F, Fut>(
        &self,
        key: &str,
        fetch: F,
    ) -> Result<(Option<V>, Duration), String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, String>>,
    {
        let slot = {
            let mut slots = lock(&self.slots);
            if slots.len() >= MAX_KEYS && !slots.contains_key(key) {
                // Reads in flight keep their slots; the next reads start again.
                slots.clear();
            }
            slots.entry(key.to_owned()).or_default().clone()
        };
        let mut copy = slot.lock().await;
        if let Some((at, value)) = copy.as_ref() {
            let age = at.elapsed();
            if age < self.max_age {
                return Ok((value.clone(), age));
            }
        }
        let value = fetch().await?;
        *copy = Some((Instant::now(), value.clone()));
        Ok((value, Duration::ZERO))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_copy_is_used_until_it_is_too_old_then_fetched_again() {
        let copies = Copies::new(Duration::from_secs(1));
        let fetched = AtomicU32::new(0);
        let fetch = || async {
            let n = fetched.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(Some(n))
        };
        assert_eq!(
            copies.get_or_fetch("k", fetch).await,
            Ok((Some(1), Duration::ZERO))
        );
        tokio::time::advance(Duration::from_millis(600)).await;
        let (v, age) = copies.get_or_fetch("k", fetch).await.unwrap();
        assert_eq!((v, age), (Some(1), Duration::from_millis(600)));
        tokio::time::advance(Duration::from_millis(400)).await;
        assert_eq!(
            copies.get_or_fetch("k", fetch).await,
            Ok((Some(2), Duration::ZERO))
        );
        assert_eq!(
            copies.get_or_fetch("other", fetch).await,
            Ok((Some(3), Duration::ZERO))
        );
        assert_eq!(fetched.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_reads_share_one_fetch_and_a_failed_fetch_is_not_kept() {
        let copies: Copies<u32> = Copies::new(Duration::from_secs(1));
        let fetched = AtomicU32::new(0);
        let slow = || async {
            fetched.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(Some(7))
        };
        let (a, b, c) = tokio::join!(
            copies.get_or_fetch("k", slow),
            copies.get_or_fetch("k", slow),
            copies.get_or_fetch("k", slow)
        );
        assert_eq!(fetched.load(Ordering::SeqCst), 1);
        for r in [a, b, c] {
            assert_eq!(r.unwrap().0, Some(7));
        }
        let failing = || async { Err::<Option<u32>, _>("owner down".to_owned()) };
        assert_eq!(
            copies.get_or_fetch("x", failing).await,
            Err("owner down".to_owned())
        );
        // Nothing was kept for x: the next read fetches.
        let ok = || async { Ok(None) };
        assert_eq!(
            copies.get_or_fetch("x", ok).await,
            Ok((None, Duration::ZERO))
        );
    }
}
