//! The prober loop: register as a replica, learn the nodes from the `nodes` read model, probe
//! the ones this replica owns on their cadence, and XADD the results that matter to the log.
//! On shutdown, in-flight probes get a grace period to finish and be reported; then the
//! replica deregisters so the others take its nodes at once.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use pantheon_domain::NodeId;
use pantheon_domain::confirm::{CheckedProbe, ProberHealth};
use pantheon_domain::entry::{Command, LogEntry, ProbeResult};
use pantheon_domain::health::Health;
use pantheon_store::readmodel::{self, NodeRecord};
use pantheon_store::{Layout, Redis, StoreError, log, probers};
use rand::Rng;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::ProberError;
use crate::config::ProberConfig;
use crate::confirm::{awaits_confirmation, next_is_confirmation};
use crate::http::{HttpProber, Outcome};
use crate::load_reports::LoadReports;
use crate::local_health::{LocalHealth, Sample};
use crate::registry::Ownership;
use crate::schedule::{
    Role, Tracked, fast_interval, first_probe_window, jittered, patient_timeout,
};

/// Runs a prober replica until `shutdown` is cancelled, reconnecting to Redis as needed.
pub async fn run(config: ProberConfig, shutdown: CancellationToken) -> Result<(), ProberError> {
    config.validate()?;
    let http = match &config.http {
        Some(shared) => shared.clone(),
        None => HttpProber::new(&config).map_err(ProberError::Config)?,
    };
    let redis = Redis::new(config.redis.clone(), &config.cluster);
    let mut failures = 0u32;
    let mut last_error: Option<String> = None;
    while !shutdown.is_cancelled() {
        let started = Instant::now();
        let outage;
        let mut prober = Prober::new(config.clone(), http.clone(), redis.clone());
        match prober.run(&shutdown).await {
            Ok(()) => return Ok(()),
            Err(e @ ProberError::Migrate(pantheon_store::migrate::MigrateError::TooNew { .. })) => {
                return Err(e);
            }
            // One line per new reason: the Redis handle already logs losing and finding the
            // master, so a failover is not a line per retry.
            Err(e) => {
                let error = e.to_string();
                outage = match &e {
                    ProberError::Store(e)
                    | ProberError::Migrate(pantheon_store::migrate::MigrateError::Store(e)) => {
                        e.is_outage()
                    }
                    _ => false,
                };
                if outage || last_error.as_deref() == Some(error.as_str()) {
                    debug!(%error, "prober error again; restarting");
                } else {
                    warn!(%error, "prober error; restarting");
                    last_error = Some(error);
                }
            }
        }
        failures = if started.elapsed() > Duration::from_secs(10) {
            0
        } else {
            failures + 1
        };
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(pantheon_store::handle::retry_pause(failures, outage)) => {}
        }
    }
    Ok(())
}

struct Finished {
    node: NodeId,
    epoch: u64,
    outcome: Outcome,
    /// When the probe was sent: the next one is timed from here (fixed rate), so a timeout
    /// does not stretch the gap between probes of a suspect node by the timeout itself.
    started: Instant,
    /// A confirmation on fresh connections (ADR 0008), not a regular probe.
    confirm: bool,
}

struct Prober {
    config: ProberConfig,
    layout: Layout,
    http: HttpProber,
    con: Redis,
    /// Every node in the read model, owned or not.
    all: HashMap<NodeId, NodeRecord>,
    /// The nodes this replica owns.
    tracked: HashMap<NodeId, Tracked>,
    /// Due times; entries whose generation is outdated are skipped.
    queue: BinaryHeap<Reverse<(Instant, u64, NodeId)>>,
    generation: HashMap<NodeId, u64>,
    in_flight: HashMap<NodeId, u64>,
    ownership: Option<Ownership>,
    seen_checkpoint: Option<String>,
    /// The cluster's `fall` (from the ring hash), for confirmations.
    fall: u32,
    /// Self-suspicion (Lifeguard's local health).
    local: LocalHealth,
    /// The current pace of re-probes on the fast cadence ([`fast_interval`]).
    fast: Duration,
    /// Loads from the nodes' health answers, written every few seconds (ADR 0018).
    loads: LoadReports,
}

impl Prober {
    fn new(config: ProberConfig, http: HttpProber, con: Redis) -> Self {
        let layout = config.layout();
        let config_suspect = config.suspect_interval;
        Self {
            config,
            layout,
            http,
            con,
            all: HashMap::new(),
            tracked: HashMap::new(),
            queue: BinaryHeap::new(),
            generation: HashMap::new(),
            in_flight: HashMap::new(),
            ownership: None,
            seen_checkpoint: None,
            fall: pantheon_domain::Policy::DEFAULT_FALL,
            local: LocalHealth::new(Instant::now()),
            fast: config_suspect,
            loads: LoadReports::default(),
        }
    }

    /// Sets the pace of fast re-probes from how many owned nodes are on it now; logs when the
    /// bound starts or stops slowing them.
    fn repace(&mut self) {
        let owned_n = self
            .tracked
            .values()
            .filter(|t| t.role == Role::Owner)
            .count();
        let fast_n = self.tracked.values().filter(|t| t.is_fast()).count();
        let fast = fast_interval(&self.config, fast_n, owned_n, self.local.is_degraded());
        let bounded = |d: Duration| d > self.config.suspect_interval;
        if bounded(fast) != bounded(self.fast) {
            if bounded(fast) {
                warn!(
                    fast = fast_n,
                    owned = owned_n,
                    reprobe_ms = fast.as_millis() as u64,
                    "many nodes need re-probes at once: slowing them to bound the probe rate"
                );
            } else {
                info!(
                    fast = fast_n,
                    owned = owned_n,
                    "re-probes back at full pace"
                );
            }
        }
        self.fast = fast;
    }

    fn schedule(&mut self, node: &NodeId, after: Duration) {
        self.schedule_at(node, Instant::now() + after);
    }

    fn schedule_at(&mut self, node: &NodeId, at: Instant) {
        let generation = self.generation.entry(node.clone()).or_default();
        *generation += 1;
        self.queue.push(Reverse((at, *generation, node.clone())));
    }

    async fn heartbeat(&mut self) -> Result<(), ProberError> {
        let ttl = self.config.registration_ttl;
        let registry =
            probers::heartbeat(&mut self.con, &self.layout, &self.config.id, ttl).await?;
        let lag = ttl / 3 + self.config.refresh;
        let ownership = Ownership::from_registry(&registry, &self.config.id, ttl / 2, lag);
        if self.ownership.as_ref().map(Ownership::replicas) != Some(ownership.replicas()) {
            info!(replicas = ownership.replicas(), live = ?registry.live_ids(), "prober replicas changed");
        }
        self.ownership = Some(ownership);
        probers::prune(&mut self.con, &self.layout, &registry, ttl * 20).await?;
        self.reconcile();
        Ok(())
    }

    /// Re-reads the nodes read model when the checkpoint moved.
    async fn refresh(&mut self) -> Result<(), ProberError> {
        let checkpoint = readmodel::checkpoint(&mut self.con, &self.layout).await?;
        let last = checkpoint.last_id_raw().map(str::to_owned);
        if last.is_some() && last == self.seen_checkpoint {
            return Ok(());
        }
        if self.config.confirm {
            self.fall = readmodel::load_policy(&mut self.con, &self.layout)
                .await?
                .fall;
        }
        let records = readmodel::node_records(&mut self.con, &self.layout).await?;
        // A damaged `meta` is the projector's to rebuild; loads are written as before.
        match pantheon_store::loads::settling(&mut self.con, &self.layout).await {
            Ok(settling) => self.loads.set_settling(settling),
            Err(StoreError::Damaged { key, reason }) => {
                warn!(%key, %reason, "unreadable load round state; keeping the last one read");
            }
            Err(e) => return Err(e.into()),
        }
        self.all.clear();
        for record in records {
            match record {
                Ok((node, record)) => {
                    self.all.insert(node, record);
                }
                Err(id) => warn!(node = %id, "unreadable node record; skipping it"),
            }
        }
        self.seen_checkpoint = last;
        self.reconcile();
        Ok(())
    }

    /// Aligns the tracked nodes with the read model and the ownership map.
    fn reconcile(&mut self) {
        let Some(ownership) = &self.ownership else {
            return;
        };
        let owned: Vec<(NodeId, NodeRecord)> = self
            .all
            .iter()
            .filter(|(n, _)| ownership.owns(n))
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect();
        // Nodes another replica owns and suspects, that this one confirms (ADR 0008).
        let fall = self.fall;
        let confirming: Vec<(NodeId, NodeRecord)> = if self.config.confirm {
            self.all
                .iter()
                .filter(|(_, r)| {
                    r.health
                        .parse()
                        .is_ok_and(|h| awaits_confirmation(h, r.fails, fall))
                })
                .filter(|(n, _)| ownership.confirms(n))
                .map(|(n, r)| (n.clone(), r.clone()))
                .collect()
        } else {
            Vec::new()
        };
        let keep: HashMap<NodeId, Role> = owned
            .iter()
            .map(|(n, _)| (n.clone(), Role::Owner))
            .chain(confirming.iter().map(|(n, _)| (n.clone(), Role::Confirmer)))
            .collect();
        self.tracked
            .retain(|n, t| keep.get(n).is_some_and(|role| *role == t.role));
        let loads = &mut self.loads;
        loads.retain(|n| keep.get(n).is_some_and(|role| *role == Role::Owner));
        for (node, record) in confirming {
            let health = record.health.parse().unwrap_or(Health::Suspect);
            match self.tracked.get_mut(&node) {
                Some(t) if t.epoch == record.epoch => {
                    t.health = health;
                    t.fails = record.fails;
                }
                _ => {
                    let mut t =
                        Tracked::new(record.epoch, record.url.clone(), health, record.fails);
                    t.role = Role::Confirmer;
                    self.tracked.insert(node.clone(), t);
                    self.schedule(&node, Duration::ZERO);
                }
            }
        }
        let fresh = owned
            .iter()
            .filter(|(n, r)| self.tracked.get(n).is_none_or(|t| t.epoch != r.epoch))
            .count();
        let window = first_probe_window(&self.config, fresh, owned.len());
        for (node, record) in owned {
            let health = record.health.parse().unwrap_or(Health::Alive);
            match self.tracked.get_mut(&node) {
                Some(t) if t.epoch == record.epoch => {
                    t.health = health;
                    t.fails = record.fails;
                    t.url = record.url.clone();
                }
                _ => {
                    // New to us (joined, re-joined, or handed over): probe soon, spread out.
                    let t = Tracked::new(record.epoch, record.url.clone(), health, record.fails);
                    let first = rand::rng().random_range(Duration::ZERO..=window);
                    self.tracked.insert(node.clone(), t);
                    self.schedule(&node, first);
                }
            }
        }
    }

    fn launch_due(
        &mut self,
        semaphore: &Arc<Semaphore>,
        tracker: &TaskTracker,
        tx: &mpsc::Sender<Finished>,
        cancel: &CancellationToken,
    ) {
        let now = Instant::now();
        // Alone: no other warm replica can confirm, so this one does, on fresh connections.
        let alone = self.ownership.as_ref().is_none_or(|o| o.replicas() < 2);
        while let Some(Reverse((due, generation, node))) = self.queue.peek().cloned() {
            if due > now {
                break;
            }
            if self.generation.get(&node) != Some(&generation) || !self.tracked.contains_key(&node)
            {
                self.queue.pop();
                continue;
            }
            let Ok(permit) = semaphore.clone().try_acquire_owned() else {
                break; // all slots busy: try again when a probe finishes
            };
            self.queue.pop();
            let Some(t) = self.tracked.get(&node) else {
                continue;
            };
            let (url, epoch) = (t.url.clone(), t.epoch);
            // A degraded replica confirms nothing it holds back: its view of the network is in
            // doubt.
            let confirm = self.config.confirm
                && !self.local.holds(t.streak_since, now, self.config.interval)
                && next_is_confirmation(t, self.fall, alone);
            if t.role == Role::Confirmer && !confirm {
                // Degraded: confirm nothing for now, look again later.
                self.schedule(&node, self.config.suspect_interval);
                continue;
            }
            let attempts = self.config.confirm_attempts;
            let timeout = patient_timeout(&self.config, self.fast);
            self.in_flight.insert(node.clone(), epoch);
            let (http, tx, cancel) = (self.http.clone(), tx.clone(), cancel.clone());
            tracker.spawn(async move {
                let started = Instant::now();
                let outcome = tokio::select! {
                    o = crate::confirm::confirm(&http, &url, attempts, timeout), if confirm => o,
                    o = http.probe_within(&url, timeout), if !confirm => o,
                    _ = cancel.cancelled() => return,
                };
                drop(permit);
                let _ = tx
                    .send(Finished {
                        node,
                        epoch,
                        outcome,
                        started,
                        confirm,
                    })
                    .await;
            });
        }
    }

    /// Folds finished probes in and writes the results that matter, in one pipeline. First
    /// the prober judges its own health (Lifeguard): while it suspects itself it writes
    /// `prober_degraded` and holds back every failure, so no node dies on its word.
    async fn report(&mut self, finished: Vec<Finished>) -> Result<(), ProberError> {
        let mut results = Vec::new();
        let mut done = Vec::with_capacity(finished.len());
        let mut any_failure = false;
        let now = Instant::now();
        for f in finished {
            self.in_flight.remove(&f.node);
            pantheon_metrics::process().probe(
                f.outcome.ok,
                f.outcome.error.map(|e| e.as_str()),
                f.outcome.latency_ms,
            );
            let Some(t) = self.tracked.get_mut(&f.node) else {
                continue;
            };
            if t.epoch != f.epoch {
                continue;
            }
            t.observe_at(f.outcome.ok, f.started, now);
            self.loads
                .observe(&f.node, f.outcome.ok, f.outcome.load.as_deref(), now);
            any_failure |= !f.outcome.ok;
            done.push(f);
        }
        if self.config.confirm && (any_failure || self.local.is_degraded()) {
            let sample = Sample::of(self.tracked.values(), now, self.round_trip());
            self.judge_self(sample, &mut results);
        }
        for f in done {
            let Some(t) = self.tracked.get_mut(&f.node) else {
                continue;
            };
            let hold = self.local.holds(t.streak_since, now, self.config.interval);
            let next = jittered(t.cadence(&self.config, self.fast), self.config.jitter);
            let report = if t.role == Role::Confirmer {
                !hold || f.outcome.ok
            } else {
                (f.outcome.ok || !hold) && t.should_report(f.outcome.ok)
            };
            if report {
                t.reported(f.outcome.ok);
                let result = ProbeResult {
                    node: f.node.clone(),
                    epoch: f.epoch,
                    ok: f.outcome.ok,
                    status: f.outcome.status,
                    latency_ms: f.outcome.latency_ms,
                    error: f.outcome.error,
                    prober: Some(self.config.id.clone()),
                };
                let command = if self.config.confirm {
                    Command::Checked(CheckedProbe {
                        result,
                        confirm: f.confirm,
                    })
                } else {
                    Command::Probe(result)
                };
                results.push(LogEntry::new(command));
                debug!(node = %f.node, ok = f.outcome.ok, confirm = f.confirm, error = ?f.outcome.error, "reported probe");
            }
            self.schedule_at(&f.node, (f.started + next).max(Instant::now()));
        }
        log::append_many_service(&mut self.con, &self.layout, &results).await?;
        Ok(())
    }

    /// The steady interval plus the current probe deadline: the longest a node's probe round
    /// takes now (self-suspicion's window is measured in these).
    fn round_trip(&self) -> Duration {
        self.config.interval + patient_timeout(&self.config, self.fast)
    }

    /// Assesses this replica's own health; on a change, queues the `prober_degraded` or
    /// `prober_recovered` entry (before any probe result of the same batch).
    fn judge_self(&mut self, sample: Sample, results: &mut Vec<LogEntry>) {
        let now = Instant::now();
        let hold = self
            .local
            .recovery_hold(self.config.interval, self.round_trip());
        let Some(change) = self.local.assess(&self.config, now, sample, hold) else {
            return;
        };
        let lag_ms = u32::try_from(change.lag.as_millis()).unwrap_or(u32::MAX);
        let (failing, probed) = change.counts();
        if change.degraded {
            warn!(
                cause = ?change.cause,
                failing,
                probed,
                answered_again = sample.recovered,
                lag_ms,
                "this prober suspects itself: holding back failure reports"
            );
        } else {
            info!(
                failing,
                probed, lag_ms, "this prober is healthy again: reporting failures"
            );
        }
        results.push(LogEntry::new(Command::ProberHealth(ProberHealth {
            prober: self.config.id.clone(),
            degraded: change.degraded,
            failing,
            probed,
            lag_ms,
        })));
    }

    async fn run(&mut self, shutdown: &CancellationToken) -> Result<(), ProberError> {
        let semaphore = Arc::new(Semaphore::new(self.config.max_in_flight));
        let tracker = TaskTracker::new();
        let cancel_probes = CancellationToken::new();
        let (tx, mut rx) = mpsc::channel::<Finished>(self.config.max_in_flight.max(16));
        pantheon_store::migrate::check(&mut self.con, &self.layout).await?;
        self.heartbeat().await?;
        self.refresh().await?;
        info!(id = %self.config.id, nodes = self.tracked.len(), "prober started");
        let beat_every = self.config.registration_ttl / 3;
        let mut next_beat = Instant::now() + beat_every;
        let mut next_refresh = Instant::now() + self.config.refresh;
        let mut next_loads = Instant::now() + crate::load_reports::INTERVAL;
        let result: Result<(), ProberError> = loop {
            self.launch_due(&semaphore, &tracker, &tx, &cancel_probes);
            let next_due = self.queue.peek().map(|Reverse((t, _, _))| *t);
            let wake = [
                Some(next_beat),
                Some(next_refresh),
                Some(next_loads),
                next_due,
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(next_refresh);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break Ok(()),
                Some(first) = rx.recv() => {
                    let mut batch = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    if let Err(e) = self.report(batch).await {
                        break Err(e);
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
            let now = Instant::now();
            if now >= next_beat {
                next_beat = now + beat_every;
                if let Err(e) = self.heartbeat().await {
                    break Err(e);
                }
            }
            if now >= next_loads {
                next_loads = now + crate::load_reports::INTERVAL;
                let entries = self.loads.due(now);
                if let Err(e) =
                    log::append_many_service(&mut self.con, &self.layout, &entries).await
                {
                    break Err(e.into());
                }
            }
            if now >= next_refresh {
                // Scheduling lag: how late this loop comes back to its refresh tick (a timer
                // fired late, or the loop was busy).
                self.local.note_lag(now, now - next_refresh);
                next_refresh = now + self.config.refresh;
                self.repace();
                // Lag and recovery need no failure to be noticed: while degraded, or lagging,
                // look at our own health at every tick.
                let lagging = self.local.lag(now) >= self.config.lag_limit;
                if self.config.confirm && (self.local.is_degraded() || lagging) {
                    let sample = Sample::of(self.tracked.values(), now, self.round_trip());
                    let mut entries = Vec::new();
                    self.judge_self(sample, &mut entries);
                    if let Err(e) =
                        log::append_many_service(&mut self.con, &self.layout, &entries).await
                    {
                        break Err(e.into());
                    }
                }
                if let Err(e) = self.refresh().await {
                    break Err(e);
                }
            }
        };
        // Graceful end: no new probes; in-flight ones may finish and be reported within the
        // grace period, then the rest are cancelled (nothing is half-written: each result is
        // one XADD).
        tracker.close();
        drop(tx);
        let grace = tokio::time::sleep(self.config.grace);
        tokio::pin!(grace);
        let mut leftovers = Vec::new();
        loop {
            tokio::select! {
                f = rx.recv() => match f {
                    Some(f) => leftovers.push(f),
                    None => break,
                },
                _ = &mut grace => {
                    cancel_probes.cancel();
                    break;
                }
            }
        }
        tracker.wait().await;
        while let Ok(f) = rx.try_recv() {
            leftovers.push(f);
        }
        if !leftovers.is_empty() {
            let _ = self.report(leftovers).await;
        }
        let _ = probers::deregister(&mut self.con, &self.layout, &self.config.id).await;
        info!(id = %self.config.id, "prober stopped");
        result
    }
}
