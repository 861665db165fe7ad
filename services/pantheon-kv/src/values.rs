//! [`Values`]: the values of the keys a worker owns, in memory, and the [`Ownership`]
//! callbacks that keep them in step with the feed: a released key loses its value, a key
//! acquired without handed-over state starts empty, and a planned hand-off carries values
//! (`on_handoff` gives them, `on_state` takes them).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::Bytes;
use pantheon_worker::{AppError, NodeId, Ownership};

/// The value map, shared by the request handlers and the ownership callbacks. Cheap to clone.
///
/// A std `Mutex`, not tokio's: it is never held across an `.await`, and the handlers' check
/// of ownership and their read or write happen under it, like the release of keys, so a
/// value is never written for a key that was just released.
#[derive(Debug, Clone)]
pub struct Values {
    inner: Arc<Mutex<Inner>>,
    max_value: usize,
}

#[derive(Debug, Default)]
pub struct Inner {
    map: HashMap<String, Bytes>,
    /// Keys whose state was handed over (`on_state`) and whose acquire has not come yet.
    handed: HashSet<String>,
}

impl Inner {
    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.map.get(key).cloned()
    }

    pub fn put(&mut self, key: &str, value: Bytes) {
        self.map.insert(key.to_owned(), value);
    }
}

impl Values {
    /// An empty map accepting values of at most `max_value` bytes.
    pub fn new(max_value: usize) -> Self {
        Self {
            inner: Arc::default(),
            max_value,
        }
    }

    /// The largest value accepted, in bytes.
    pub fn max_value(&self) -> usize {
        self.max_value
    }

    /// The map, locked; hold it only for a check and a read or write, never across an await.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many values are held.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Ownership for Values {
    async fn on_acquire(
        &self,
        keys: &[String],
        token: u64,
        from: Option<&NodeId>,
    ) -> Result<(), AppError> {
        let mut inner = self.lock();
        let mut carried = 0;
        for k in keys {
            // A value left from an earlier ownership of the key is not served: the key
            // starts empty unless its previous owner handed its value over.
            if inner.handed.remove(k) {
                carried += 1;
            } else {
                inner.map.remove(k);
            }
        }
        tracing::info!(keys = keys.len(), carried, token, from = ?from.map(NodeId::as_str), "acquired");
        Ok(())
    }

    async fn on_release(
        &self,
        keys: &[String],
        token: u64,
        to: Option<&NodeId>,
    ) -> Result<(), AppError> {
        let mut inner = self.lock();
        let dropped = keys
            .iter()
            .filter(|k| {
                inner.handed.remove(*k);
                inner.map.remove(*k).is_some()
            })
            .count();
        tracing::info!(keys = keys.len(), dropped, token, to = ?to.map(NodeId::as_str), "released");
        Ok(())
    }

    async fn on_handoff(
        &self,
        keys: &[String],
        to: &NodeId,
    ) -> Result<Vec<(String, Vec<u8>)>, AppError> {
        let inner = self.lock();
        let state: Vec<(String, Vec<u8>)> = keys
            .iter()
            .filter_map(|k| inner.map.get(k).map(|v| (k.clone(), v.to_vec())))
            .collect();
        tracing::info!(keys = keys.len(), values = state.len(), to = %to, "handing over");
        Ok(state)
    }

    async fn on_state(&self, state: Vec<(String, Vec<u8>)>, from: &NodeId) -> Result<(), AppError> {
        let mut inner = self.lock();
        let mut taken = 0;
        for (k, v) in state {
            // Values come from another worker with the same limit; one over ours is dropped
            // (the key then starts empty) rather than kept beyond the documented bound.
            if v.len() <= self.max_value {
                inner.map.insert(k.clone(), Bytes::from(v));
                inner.handed.insert(k);
                taken += 1;
            }
        }
        tracing::info!(values = taken, from = %from, "state received");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| (*s).to_owned()).collect()
    }

    fn node(id: &str) -> NodeId {
        NodeId::new(id).expect("node id")
    }

    #[tokio::test]
    async fn a_released_key_loses_its_value_and_comes_back_empty() {
        let v = Values::new(16);
        v.on_acquire(&keys(&["a", "b"]), 5, None)
            .await
            .expect("callback");
        v.lock().put("a", Bytes::from_static(b"1"));
        v.lock().put("b", Bytes::from_static(b"2"));
        v.on_release(&keys(&["a"]), 6, Some(&node("n2")))
            .await
            .expect("callback");
        assert_eq!(v.lock().get("a"), None);
        assert_eq!(v.lock().get("b"), Some(Bytes::from_static(b"2")));
        // A leftover value (say, written by a request racing a release) is not served after a
        // later acquire without handed-over state.
        v.lock().put("a", Bytes::from_static(b"old"));
        v.on_acquire(&keys(&["a"]), 9, Some(&node("n2")))
            .await
            .expect("callback");
        assert_eq!(v.lock().get("a"), None);
    }

    #[tokio::test]
    async fn a_handoff_carries_the_values_and_the_acquire_keeps_them() {
        let old = Values::new(16);
        old.lock().put("a", Bytes::from_static(b"1"));
        let state = old
            .on_handoff(&keys(&["a", "b"]), &node("n2"))
            .await
            .expect("callback");
        assert_eq!(state, vec![("a".to_owned(), b"1".to_vec())]);

        let new = Values::new(16);
        new.on_state(state, &node("n1")).await.expect("callback");
        new.on_acquire(&keys(&["a", "b"]), 7, Some(&node("n1")))
            .await
            .expect("callback");
        assert_eq!(new.lock().get("a"), Some(Bytes::from_static(b"1")));
        assert_eq!(new.lock().get("b"), None);
    }

    #[tokio::test]
    async fn handed_values_over_the_limit_are_dropped() {
        let v = Values::new(2);
        v.on_state(vec![("a".into(), b"too long".to_vec())], &node("n1"))
            .await
            .expect("callback");
        v.on_acquire(&keys(&["a"]), 3, Some(&node("n1")))
            .await
            .expect("callback");
        assert!(v.is_empty());
    }
}
