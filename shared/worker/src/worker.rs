//! [`Worker`]: starts the health endpoint, joins, and follows the node's feed in a task of
//! its own, calling the application's [`Ownership`] callbacks and recording its position after
//! each line.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use pantheon_client::handoff::MAX_HANDOFF_BYTES;
use pantheon_client::{EntryId, NodeId, Pantheon, WatchLine, WatchOp};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::LoadMeter;
use crate::health::{self, Health};
use crate::owned::{self, Step};
use crate::state::{State, StateFile};
use crate::{Ownership, WorkerError};

/// How long [`WorkerBuilder::start`] waits for the join to be applied, by default.
pub const DEFAULT_JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// One wait for a feed line (a stop cuts it short). A wait that ends empty costs a round
/// trip to read the feed again and a new blocking read: at 1,000 workers a 500 ms wait was
/// 4,000 Redis commands a second while nothing changed (docs/benchmarks.md, issue 21).
const POLL: Duration = Duration::from_secs(5);
/// Backoff after a failed feed read (Redis away): doubling up to the maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The keys the worker owns and their tokens, shared with request handlers, and how current
/// that knowledge is. Cheap to clone.
///
/// std locks, not tokio's: they are never held across an `.await`, and readers (request
/// handlers calling [`OwnedKeys::owns`]) are many.
#[derive(Debug, Clone)]
pub struct OwnedKeys {
    keys: Arc<RwLock<HashMap<String, u64>>>,
    feed: Arc<FeedMark>,
}

/// How far the feed has been delivered, and since when that is known to be all of it.
#[derive(Debug)]
struct FeedMark {
    client: Pantheon,
    node: String,
    /// The last line whose callbacks returned (and whose keys [`OwnedKeys::owns`] reflects).
    delivered: Mutex<Option<EntryId>>,
    /// Every line committed before this instant has been read (and delivered, or is being
    /// delivered now).
    current_at: Mutex<Option<Instant>>,
}

impl FeedMark {
    fn mark_current(&self, at: Instant) {
        let mut current = self
            .current_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if current.is_none_or(|c| c < at) {
            *current = Some(at);
        }
    }
}

impl OwnedKeys {
    fn new(client: Pantheon, node: &str, position: Option<EntryId>) -> Self {
        Self {
            keys: Arc::default(),
            feed: Arc::new(FeedMark {
                client,
                node: node.to_owned(),
                delivered: Mutex::new(position),
                current_at: Mutex::new(None),
            }),
        }
    }

    /// The token with which this node owns `key`, or `None` if it does not own it. Refuse a
    /// request for a key it does not own, or one carrying a smaller token than this (compare
    /// with `<`: a key's token also grows when other keys move, see ADR 0015).
    ///
    /// This is what the feed said as far as it was read: check [`OwnedKeys::current_within`]
    /// too, or a worker that was paused or cut off from Redis serves keys that moved away
    /// meanwhile.
    pub fn owns(&self, key: &str) -> Option<u64> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .copied()
    }

    /// A copy of every owned key with its token.
    pub fn all(&self) -> BTreeMap<String, u64> {
        let map = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        map.iter().map(|(k, t)| (k.clone(), *t)).collect()
    }

    /// Whether every feed line committed before some moment less than `max` ago has been
    /// read, so that [`OwnedKeys::owns`] misses no move committed before then. The feed
    /// reader's own reads say so while lines come; on a quiet feed (the reader then waits up
    /// to 5 s for a line) one Redis read checks that no line waits after the last one
    /// delivered, and that answer serves the callers of the next `max` too. `false` after the
    /// process was paused (SIGSTOP, a stalled machine) or while Redis is out of reach, until
    /// the reader catches up: a death or a forced hand-off may have moved keys meanwhile, so
    /// refuse requests then. `max` must be shorter than the time the cluster takes to move
    /// keys away from a node that does not answer (its death detection, the policy's
    /// `handoff_timeout`).
    pub async fn current_within(&self, max: Duration) -> Result<bool, WorkerError> {
        let asked = Instant::now();
        let known = *self
            .feed
            .current_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if known.is_some_and(|t| asked.saturating_duration_since(t) < max) {
            return Ok(true);
        }
        let delivered = *self
            .feed
            .delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(delivered) = delivered else {
            return Ok(false);
        };
        if self
            .feed
            .client
            .feed_has_after(&self.feed.node, delivered)
            .await?
        {
            return Ok(false);
        }
        // Nothing after the last line delivered, read after `asked`: current as of `asked`.
        self.feed.mark_current(asked);
        Ok(true)
    }

    fn update(&self, f: impl FnOnce(&mut HashMap<String, u64>)) {
        f(&mut self.keys.write().unwrap_or_else(PoisonError::into_inner));
    }

    fn delivered(&self, id: EntryId) {
        *self
            .feed
            .delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(id);
    }
}

/// Options of a [`Worker`]; finish with [`WorkerBuilder::start`].
#[derive(Debug, Clone)]
pub struct WorkerBuilder {
    client: Pantheon,
    node: String,
    state_file: PathBuf,
    health: Health,
    weight: Option<u32>,
    join_timeout: Duration,
    meter: Option<LoadMeter>,
}

impl WorkerBuilder {
    /// Reports load (docs/adr/0018): the hottest keys the application counts with
    /// [`LoadMeter::hit`] go to the log every 2 s, and the library's health answers carry
    /// the node's rate in `X-Pantheon-Load` (an application that answers health itself sets
    /// that header from [`LoadMeter::header_value`]).
    pub fn load_meter(mut self, meter: LoadMeter) -> Self {
        self.meter = Some(meter);
        self
    }

    /// Who answers health checks (default: the library, on `127.0.0.1`, any free port).
    pub fn health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    /// The node's share of keys relative to the others, `1..=100` (default: the cluster's 1).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = Some(weight);
        self
    }

    /// How long to wait for the join to be applied (default 10 s).
    pub fn join_timeout(mut self, timeout: Duration) -> Self {
        self.join_timeout = timeout;
        self
    }

    /// Loads the state file, starts the health endpoint, joins (unless the node is already
    /// a member at the same URL: a re-join would start a new epoch and take its keys away
    /// until the next probe), waits until the join is applied, then follows the feed from
    /// the saved position in a task of its own.
    pub async fn start<A: Ownership>(self, app: A) -> Result<Worker, WorkerError> {
        let mut file = StateFile::new(&self.state_file, &self.node);
        let state = file.load().await?;
        let (stop, stopped) = watch::channel(false);
        let endpoint = health::start(&self.health, self.meter.clone(), stopped.clone()).await?;
        let started = self.join(&endpoint.url).await;
        if let Err(e) = started {
            let _ = stop.send(true);
            return Err(e);
        }
        if let Some(meter) = self.meter.clone() {
            tokio::spawn(crate::load::report(
                self.client.clone(),
                self.node.clone(),
                meter,
                stopped.clone(),
            ));
        }
        let owned = OwnedKeys::new(self.client.clone(), &self.node, state.position);
        owned.update(|m| m.extend(state.owned.iter().map(|(k, t)| (k.clone(), *t))));
        let held = Arc::new(AtomicUsize::new(state.owned.len()));
        let follow = Follow {
            client: self.client.clone(),
            node: self.node.clone(),
            file,
            state,
            owned: owned.clone(),
            held: held.clone(),
            app,
            stopped,
        };
        Ok(Worker {
            client: self.client,
            node: self.node,
            health_url: endpoint.url,
            owned,
            held,
            stop,
            follow: Some(tokio::spawn(follow.run())),
            health: endpoint.task,
            join_timeout: self.join_timeout,
        })
    }

    async fn join(&self, url: &str) -> Result<(), WorkerError> {
        if let Some(rec) = self.client.node_health(&self.node).await? {
            let member = matches!(rec.state.as_str(), "alive" | "suspect" | "joining");
            let same_weight = self.weight.is_none_or(|w| w == rec.weight);
            if member && rec.url == url && same_weight && rec.handoff {
                tracing::info!(node = %self.node, "already a member at {url}; not joining again");
                return Ok(());
            }
        }
        let id = self
            .client
            .join_url_with_handoff(&self.node, url, self.weight)
            .await?;
        self.client.wait_applied(id, self.join_timeout).await?;
        tracing::info!(node = %self.node, %url, "joined");
        Ok(())
    }
}

/// A running worker: its feed is followed in the background. Request handlers ask
/// [`Worker::owns`] (or a clone of [`Worker::owned_keys`]).
#[derive(Debug)]
pub struct Worker {
    client: Pantheon,
    node: String,
    health_url: String,
    owned: OwnedKeys,
    /// How many keys the node owns as its feed said last (handing off or not).
    held: Arc<AtomicUsize>,
    stop: watch::Sender<bool>,
    follow: Option<JoinHandle<Result<(), WorkerError>>>,
    health: Option<JoinHandle<()>>,
    join_timeout: Duration,
}

impl Worker {
    /// A worker for node `node` of the cluster `client` talks to, saving its position in
    /// `state_file` (created if missing; keep it on local disk, one per node).
    pub fn builder(client: Pantheon, node: &str, state_file: impl AsRef<Path>) -> WorkerBuilder {
        WorkerBuilder {
            client,
            node: node.to_owned(),
            state_file: state_file.as_ref().to_owned(),
            health: Health::serve(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
            weight: None,
            join_timeout: DEFAULT_JOIN_TIMEOUT,
            meter: None,
        }
    }

    /// The node id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The health URL the node joined with.
    pub fn health_url(&self) -> &str {
        &self.health_url
    }

    /// The token with which this node owns `key`, or `None`; see [`OwnedKeys::owns`].
    pub fn owns(&self, key: &str) -> Option<u64> {
        self.owned.owns(key)
    }

    /// A handle on the owned keys for request handlers.
    pub fn owned_keys(&self) -> OwnedKeys {
        self.owned.clone()
    }

    /// The graceful way out (for SIGTERM, see [`shutdown_signal`]): drains the node, hands
    /// every key over with its state (the feed's `handoff` lines are answered by the follow
    /// task, calling [`crate::Ownership::on_handoff`] then, once released,
    /// `on_release`), leaves once it owns nothing, and stops. Bounded by `timeout`: past it
    /// the node leaves anyway (keys still handing off then move without their state, as a
    /// forced hand-off would). Started again with the same node id, a worker joins and gets
    /// its share back through hand-offs from the others.
    pub async fn graceful_shutdown(self, timeout: Duration) -> Result<(), WorkerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let left = self.drain_and_leave(deadline).await;
        let stopped = self.shutdown().await;
        left.and(stopped)
    }

    async fn drain_and_leave(&self, deadline: tokio::time::Instant) -> Result<(), WorkerError> {
        let remaining = || deadline.saturating_duration_since(tokio::time::Instant::now());
        let id = self.client.drain(&self.node).await?;
        self.client.wait_applied(id, remaining()).await?;
        while self.held.load(Ordering::Acquire) > 0 && !remaining().is_zero() {
            tokio::time::sleep(Duration::from_millis(10).min(remaining())).await;
        }
        let held = self.held.load(Ordering::Acquire);
        if held > 0 {
            tracing::warn!(node = %self.node, held, "graceful shutdown timed out with keys still owned; leaving anyway");
        }
        let id = self.client.leave(&self.node).await?;
        // Leaving is what matters most: give it a moment even past the deadline.
        let wait = remaining().max(Duration::from_secs(2));
        self.client.wait_applied(id, wait).await?;
        Ok(())
    }

    /// How many keys the node owns as its feed said last, including keys it is handing off.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// Shutdown hook: the node leaves the cluster for good (waits until applied); its keys
    /// move at once, without hand-off (prefer [`Worker::graceful_shutdown`]). The feed keeps
    /// being followed, so `on_release` is called for its keys; stop with
    /// [`Worker::shutdown`] once [`Worker::owned_keys`] is empty.
    pub async fn leave(&self) -> Result<EntryId, WorkerError> {
        let id = self.client.leave(&self.node).await?;
        self.client.wait_applied(id, self.join_timeout).await?;
        Ok(id)
    }

    /// Shutdown hook for maintenance: the node stays joined but its keys move away, each
    /// handed over with its state (waits until the drain is applied, not the hand-offs);
    /// `undrain` with the client brings them back the same way.
    pub async fn drain(&self) -> Result<EntryId, WorkerError> {
        let id = self.client.drain(&self.node).await?;
        self.client.wait_applied(id, self.join_timeout).await?;
        Ok(id)
    }

    /// Stops following (never in the middle of a callback) and stops the health endpoint.
    /// Returns the follow task's error if it had stopped on one. Does not leave: the node
    /// stays in the cluster, and a restart with the same state file resumes.
    pub async fn shutdown(mut self) -> Result<(), WorkerError> {
        let _ = self.stop.send(true);
        if let Some(task) = self.health.take() {
            let _ = task.await;
        }
        self.finished().await
    }

    /// Waits until following stops. [`Worker::shutdown`] consumes the worker, so this returns
    /// only when the follow task ended by itself: on an error (a failed callback). Returns
    /// `Ok` at once if it was already awaited.
    pub async fn finished(&mut self) -> Result<(), WorkerError> {
        match self.follow.take() {
            Some(task) => task.await.map_err(|e| WorkerError::Task(e.to_string()))?,
            None => Ok(()),
        }
    }
}

/// The follow loop's state, owned by its task.
struct Follow<A> {
    client: Pantheon,
    node: String,
    file: StateFile,
    state: State,
    owned: OwnedKeys,
    held: Arc<AtomicUsize>,
    app: A,
    stopped: watch::Receiver<bool>,
}

impl<A: Ownership> Follow<A> {
    async fn run(mut self) -> Result<(), WorkerError> {
        let mut backoff = FIRST_BACKOFF;
        'resume: loop {
            let mut feed = self.client.watch(&self.node, self.state.position)?;
            loop {
                if *self.stopped.borrow() {
                    return self.file.sync().await;
                }
                // With nothing buffered the read below goes to Redis: once it returns, every
                // line committed before `reading` has been read.
                let reading = (feed.buffered() == 0).then(Instant::now);
                // Only the wait for a line is cut short by a stop, never a callback.
                let line = tokio::select! {
                    biased;
                    _ = self.stopped.wait_for(|s| *s) => None,
                    line = feed.next_within(POLL) => Some(line),
                };
                let Some(line) = line else {
                    return self.file.sync().await;
                };
                if let (Some(at), Ok(_)) = (reading, &line) {
                    self.owned.feed.mark_current(at);
                }
                match line {
                    Ok(Some(line)) => {
                        backoff = FIRST_BACKOFF;
                        match self.deliver(line).await {
                            Ok(()) => {}
                            // Redis away mid-line (a hand-off's state, a release): the line
                            // was not recorded, so it is delivered again after a resume.
                            Err(WorkerError::Client(e)) => {
                                tracing::warn!(node = %self.node, error = %e, "a feed line's call to Pantheon failed; delivering it again in {backoff:?}");
                                tokio::time::sleep(backoff).await;
                                backoff = (backoff * 2).min(MAX_BACKOFF);
                                continue 'resume;
                            }
                            Err(e) => return Err(e),
                        }
                        // One disk sync per burst of lines, once none is waiting.
                        if feed.buffered() == 0 {
                            self.file.sync().await?;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(node = %self.node, error = %e, "reading the feed failed; retrying in {backoff:?}");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue 'resume;
                    }
                }
            }
        }
    }

    /// Calls the line's callbacks, then records the line as delivered: at least once.
    async fn deliver(&mut self, line: WatchLine) -> Result<(), WorkerError> {
        for step in owned::plan(&self.state.owned, &line) {
            match step {
                Step::Release { keys, token, to } => {
                    // Refuse requests for these keys from now on, while the app lets go.
                    self.owned.update(|m| {
                        for k in &keys {
                            m.remove(k);
                        }
                    });
                    self.app
                        .on_release(&keys, token, to.as_ref())
                        .await
                        .map_err(|source| WorkerError::Callback {
                            callback: "on_release",
                            source,
                        })?;
                }
                Step::HandOff { keys, to } => self.hand_off(keys, to).await?,
                Step::Acquire { keys, token, from } => {
                    let handed_by = from.as_ref().filter(|_| line.state);
                    if let Some(peer) = handed_by {
                        let values = self.client.take_handoff_state(peer, &keys).await?;
                        self.app.on_state(values, peer).await.map_err(|source| {
                            WorkerError::Callback {
                                callback: "on_state",
                                source,
                            }
                        })?;
                    }
                    self.app
                        .on_acquire(&keys, token, from.as_ref())
                        .await
                        .map_err(|source| WorkerError::Callback {
                            callback: "on_acquire",
                            source,
                        })?;
                    // Serve them only once the app is ready for them.
                    self.owned
                        .update(|m| m.extend(keys.iter().map(|k| (k.clone(), token))));
                    if let Some(peer) = handed_by
                        && let Err(e) = self.client.forget_handoff_state(peer, &keys).await
                    {
                        // Not worth failing for: the values expire on their own.
                        tracing::warn!(node = %self.node, error = %e, "could not delete handed-over state");
                    }
                }
            }
        }
        owned::fold(&mut self.state.owned, &line);
        if line.op == WatchOp::Snapshot {
            // Keys kept across the snapshot now carry its token.
            let all = &self.state.owned;
            self.owned.update(|m| {
                m.clear();
                m.extend(all.iter().map(|(k, t)| (k.clone(), *t)));
            });
        }
        self.state.position = Some(line.id);
        self.owned.delivered(line.id);
        self.held.store(self.state.owned.len(), Ordering::Release);
        self.file.record(&line, &self.state).await
    }

    /// Answers a `handoff` line: stop serving the keys (so no write lands after their state
    /// is taken), take their state from the app, store it, then release them. The node still
    /// owns them until the release commits; its `release` line follows (or, if the move was
    /// undone meanwhile, an `acquire` that gives them back).
    async fn hand_off(&mut self, keys: Vec<String>, to: Option<NodeId>) -> Result<(), WorkerError> {
        self.owned.update(|m| {
            for k in &keys {
                m.remove(k);
            }
        });
        if let Some(to) = &to {
            let values =
                self.app
                    .on_handoff(&keys, to)
                    .await
                    .map_err(|source| WorkerError::Callback {
                        callback: "on_handoff",
                        source,
                    })?;
            for part in within_limits(&self.node, values, &keys) {
                self.client.put_handoff_state(&self.node, &part).await?;
            }
        }
        self.client.release(&self.node, &keys).await?;
        Ok(())
    }
}

/// The values of `keys` only, without any over the per-value limit (logged), in parts of at
/// most [`MAX_HANDOFF_BYTES`].
fn within_limits(
    node: &str,
    values: Vec<(String, Vec<u8>)>,
    keys: &[String],
) -> Vec<Vec<(String, Vec<u8>)>> {
    use pantheon_client::handoff::MAX_HANDOFF_VALUE_BYTES;
    let wanted: std::collections::HashSet<&str> = keys.iter().map(String::as_str).collect();
    let mut parts: Vec<Vec<(String, Vec<u8>)>> = Vec::new();
    let mut size = 0usize;
    for (key, value) in values {
        if !wanted.contains(key.as_str()) {
            continue;
        }
        if value.len() > MAX_HANDOFF_VALUE_BYTES {
            tracing::warn!(%node, %key, bytes = value.len(), "state over the hand-off limit of {MAX_HANDOFF_VALUE_BYTES} bytes: handed over without it");
            continue;
        }
        if parts.is_empty() || size + value.len() > MAX_HANDOFF_BYTES {
            parts.push(Vec::new());
            size = 0;
        }
        size += value.len();
        if let Some(part) = parts.last_mut() {
            part.push((key, value));
        }
    }
    parts
}

/// Resolves on SIGTERM or Ctrl-C: `tokio::select!` it with the application's work and call
/// [`Worker::graceful_shutdown`].
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pantheon_client::handoff::MAX_HANDOFF_VALUE_BYTES;

    #[test]
    fn handed_over_state_keeps_only_the_keys_asked_drops_oversize_values_and_splits_at_the_limit() {
        let keys: Vec<String> = (0..70).map(|i| format!("k{i}")).collect();
        let mut values: Vec<(String, Vec<u8>)> = keys
            .iter()
            .map(|k| (k.clone(), vec![0u8; MAX_HANDOFF_VALUE_BYTES]))
            .collect();
        values.push(("not-asked".to_owned(), vec![1]));
        values.push(("k0".to_owned(), vec![0u8; MAX_HANDOFF_VALUE_BYTES + 1]));
        let parts = within_limits("w1", values, &keys);
        let sizes: Vec<usize> = parts
            .iter()
            .map(|p| p.iter().map(|(_, v)| v.len()).sum())
            .collect();
        assert!(sizes.iter().all(|s| *s <= MAX_HANDOFF_BYTES), "{sizes:?}");
        assert_eq!(parts.len(), 2, "70 MiB in parts of at most 64 MiB");
        let kept: usize = parts.iter().map(Vec::len).sum();
        assert_eq!(
            kept, 70,
            "the oversize value and the key not asked for are left out"
        );
        assert!(
            parts
                .iter()
                .flatten()
                .all(|(k, v)| k != "not-asked" && v.len() <= MAX_HANDOFF_VALUE_BYTES)
        );
    }
}
