//! The leader/standby loop. A projector waits for the lease, loads (or rebuilds) the state,
//! then reads, folds and commits until it loses the lease, fails, or is told to stop.

use std::time::Duration;

use pantheon_domain::{EntryId, State};
use pantheon_store::group::{self, Group};
use pantheon_store::lease::Lease;
use pantheon_store::readmodel::{self, Checkpoint};
use pantheon_store::{CommitError, Layout, PinnedConnection, Redis, StoreError, attest, log};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::ProjectorConfig;
use crate::lease_keeper::{Heartbeat, LOAD_MAX, keep_lease_while, spawn_renewer};
use crate::reseed::{Held, Memory, Verdict};
use crate::stage::{fresh_checkpoint, stage_entries};
use crate::standby::Standby;
use crate::{ProjectorError, rebuild, retention};

/// Runs a projector until `shutdown` is cancelled. Errors are retried with a pause (Redis may
/// be restarting or failing over; [`Redis`] resolves the master again and logs each change of
/// state); only a bad configuration returns an error.
pub async fn run(
    config: ProjectorConfig,
    shutdown: CancellationToken,
) -> Result<(), ProjectorError> {
    config.validate()?;
    let layout = config.layout();
    let redis = Redis::new(config.redis.clone(), &config.cluster);
    // One token for the life of the process: after a Redis restart that kept the lease key
    // (AOF), this projector finds its own token there and leads again at once instead of
    // waiting out the TTL.
    let lease = Lease::new(layout.lease(), &config.instance, config.lease_ttl);
    let mut pause = Pause::default();
    // Outlives leading terms: after Redis comes back empty, this is the state put back.
    let mut memory = Memory::default();
    let mut standby = Standby::default();
    while !shutdown.is_cancelled() {
        let started = Instant::now();
        let terms = Terms {
            memory: &mut memory,
            standby: &mut standby,
        };
        match contend(&config, &layout, &redis, &lease, &shutdown, terms).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => {
                if started.elapsed() > Duration::from_secs(10) {
                    pause = Pause::default();
                }
                pause.failed(&e.to_string(), e.is_outage());
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(pause.delay()) => {}
        }
    }
    Ok(())
}

/// Backoff between attempts at leading, and the one-line-per-change logging of why.
#[derive(Debug, Default)]
struct Pause {
    failures: u32,
    last: Option<String>,
    outage: bool,
}

impl Pause {
    fn failed(&mut self, error: &str, outage: bool) {
        self.outage = outage;
        if outage || self.last.as_deref() == Some(error) {
            debug!(%error, "projector error again; retrying");
        } else {
            warn!(%error, "projector error; retrying");
            self.last = Some(error.to_owned());
        }
        self.failures = self.failures.saturating_add(1);
    }

    fn delay(&self) -> Duration {
        pantheon_store::handle::retry_pause(self.failures, self.outage)
    }
}

/// What outlives a leading term: the state for a re-seed, and the standby's warm state.
struct Terms<'a> {
    memory: &'a mut Memory,
    standby: &'a mut Standby,
}

/// Standby until the lease is free, then lead; repeat. Returns Ok on shutdown.
async fn contend(
    config: &ProjectorConfig,
    layout: &Layout,
    redis: &Redis,
    lease: &Lease,
    shutdown: &CancellationToken,
    terms: Terms<'_>,
) -> Result<(), ProjectorError> {
    let Terms { memory, standby } = terms;
    let poll = config.lease_ttl / 5;
    let mut con = redis.clone();
    let con = &mut con;
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        pantheon_metrics::process().set_role(pantheon_metrics::Role::Standby);
        if lease.acquire(con).await? {
            pantheon_metrics::process().set_role(pantheon_metrics::Role::Leading);
            info!(instance = %config.instance, token = lease.token(), "acquired the lease: leading");
            let terms = Terms {
                memory: &mut *memory,
                standby: &mut *standby,
            };
            let result = lead(config, layout, redis, con, lease, shutdown, terms).await;
            // Only deletes the lease if it is still ours; a standby then takes over at once.
            let _ = lease.release(con).await;
            let _ = group::delete_consumer(con, &Group::projector(layout), &config.instance).await;
            match result {
                Ok(()) if shutdown.is_cancelled() => return Ok(()),
                Ok(()) => info!("lost the lease: standing by"),
                Err(e) => return Err(e),
            }
        } else {
            // Another projector leads and commits past anything held here: nothing held may be
            // put back after Redis empties, but it may be followed to the leader's commits.
            // Remember how far the cluster got, so an emptied Redis is not taken for a new
            // cluster.
            standby.adopt(memory.held.take());
            let seen = standby.follow(con, layout).await?;
            memory.saw(seen);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// How long after taking the lease the prober watchdog first looks.
const WATCHDOG_GRACE: Duration = Duration::from_secs(3);

/// Logs a `probers` entry when the live prober replicas differ from the set the state knows
/// (and from what this leader already reported and is waiting to see applied). Returns
/// Redis's clock (ms), read with the registry.
async fn watch_probers(
    con: &mut Redis,
    layout: &Layout,
    state: &State,
    reported: &mut Option<Vec<String>>,
) -> Result<u64, ProjectorError> {
    let registry = pantheon_store::probers::read(con, layout).await?;
    let live = registry.live_ids();
    if state.probers() == Some(live.as_slice()) || reported.as_ref() == Some(&live) {
        return Ok(registry.now_ms);
    }
    if live.is_empty() {
        warn!("no prober replica is alive: node health is not being watched");
    } else {
        info!(probers = ?live, "prober replicas changed");
    }
    let entry = pantheon_domain::LogEntry::new(pantheon_domain::Command::Probers {
        alive: live.clone(),
    });
    // No WAIT: a failover that could lose it also ends this leading loop, and the next one
    // reports again (`reported` starts empty).
    log::append_service(con, layout, &entry).await?;
    *reported = Some(live);
    Ok(registry.now_ms)
}

/// The state and checkpoint to continue from: the read models if their checksum matches the
/// checkpoint, else a rebuild from the log (and the latest snapshot).
async fn load_or_rebuild(
    config: &ProjectorConfig,
    layout: &Layout,
    con: &mut Redis,
    redis: &Redis,
    lease: &Lease,
    heartbeat: &Heartbeat,
    memory: &mut Memory,
) -> Result<(State, Checkpoint), ProjectorError> {
    match readmodel::load(con, layout).await {
        Ok(Some(loaded)) if loaded.state.checksum() == loaded.checkpoint.checksum => {
            info!(last_id = ?loaded.checkpoint.last_id, keys = loaded.state.keys().len(), "loaded state from the read models");
            warn_if_moved_back(memory, loaded.checkpoint.last_id);
            return Ok((loaded.state, loaded.checkpoint));
        }
        Ok(Some(loaded)) => warn!(
            stored = format!("{:016x}", loaded.checkpoint.checksum),
            loaded = format!("{:016x}", loaded.state.checksum()),
            "read models disagree with their checkpoint: rebuilding from the log"
        ),
        Ok(None) => {
            // Nothing was ever committed (no events, no snapshot): fold the log from its start
            // the normal way, emitting events — unless this process knows the cluster had a
            // history that Redis lost (docs/adr/0012-redis-that-comes-back-empty.md).
            // Otherwise the read models were deleted and are rebuilt without re-emitting
            // events consumers already saw.
            let survey = pantheon_store::reseed::survey(con, layout).await?;
            match crate::reseed::judge(memory, &survey) {
                Verdict::Rebuild => warn!("no checkpoint: rebuilding the read models from the log"),
                Verdict::Emptied => {
                    if let Some(restored) =
                        crate::reseed::restore(redis, layout, lease, memory).await?
                    {
                        return Ok(restored);
                    }
                    return Ok(new_cluster("the cluster was destroyed: starting it empty"));
                }
                Verdict::Lost(last) => {
                    return Err(crate::reseed::report_lost(con, layout, memory, last).await);
                }
                Verdict::Destroyed(by) => {
                    memory.forget_all();
                    info!(%by, "the cluster was destroyed (`pantheon destroy`): starting it empty");
                    return Ok(new_cluster(
                        "new cluster after a destroy: folding the log from its start",
                    ));
                }
                Verdict::New => {
                    return Ok(new_cluster("new cluster: folding the log from its start"));
                }
            }
        }
        Err(StoreError::Damaged { key, reason }) => {
            warn!(%key, %reason, "read models damaged: rebuilding from the log");
        }
        Err(e) => return Err(e.into()),
    }
    let rebuilt = rebuild::rebuild_live(con, layout, lease, &config.instance, heartbeat).await?;
    Ok(rebuilt)
}

fn new_cluster(why: &'static str) -> (State, Checkpoint) {
    info!("{why}");
    let state = State::default();
    let cp = fresh_checkpoint(&state, None);
    (state, cp)
}

/// A checkpoint below the one this process held is a consistent older history (Redis
/// restarted from an older copy, or a lagging replica was promoted): the leader continues
/// from it, and says what was rolled back. Not a re-seed: Redis did not lose everything.
fn warn_if_moved_back(memory: &Memory, found: Option<EntryId>) {
    // What Redis confirmed, not what was held: a commit lost in an outage is not a rollback.
    if let (Some(held), Some(found)) = (memory.seen, found)
        && found < held
    {
        warn!(%held, %found, "the checkpoint moved backwards (Redis restarted from an older copy, or a lagging replica took over): continuing from Redis's copy; entries after it that the log no longer holds are lost");
    }
}

/// A commit running in the background, with what it applies. It owns the committing
/// connection (WATCH state is per connection) and hands it back when done.
struct InFlight {
    handle: tokio::task::JoinHandle<(PinnedConnection, Result<(), CommitError>)>,
    applied: u64,
    last_id: Option<EntryId>,
}

enum Committed {
    /// Entries applied, and the checkpoint Redis confirmed (`None` when nothing was in flight).
    Done(u64, Option<EntryId>),
    Fenced,
}

/// What a commit task needs besides its batch: the leader's heartbeat (waiting out a slot
/// migration is not a stall) and the tokens that end the wait.
struct CommitContext {
    heartbeat: Heartbeat,
    shutdown: CancellationToken,
    lost: CancellationToken,
}

fn launch(
    mut con: PinnedConnection,
    lease: &Lease,
    layout: &Layout,
    staged: crate::stage::Staged,
    expected: String,
    context: CommitContext,
) -> InFlight {
    let (lease, checkpoint) = (lease.clone(), layout.checkpoint());
    let applied = staged.applied as u64;
    let last_id = staged.checkpoint.last_id;
    let calls = staged.batch.calls();
    debug!(
        entries = staged.applied,
        events = staged.events,
        rejected = staged.rejected,
        calls = staged.batch.calls(),
        "committing"
    );
    let handle = tokio::spawn(async move {
        let started = Instant::now();
        let commit = staged.batch.watched();
        let mut refusals = 0u32;
        // A half-finished slot migration refuses the commit without applying anything
        // (TRYAGAIN, or ASK inside the transaction): wait with backoff and commit again, until
        // the migration completes or is rolled back. The handle logs the migration once.
        let result = loop {
            let result = commit
                .commit(&mut con, &lease, &checkpoint, &expected)
                .await;
            match &result {
                Err(e) if e.is_migrating() => {}
                _ => break result,
            }
            context.heartbeat.beat();
            // Short enough that the lease renewer never sees a stalled leader.
            let pause = pantheon_store::handle::backoff(refusals).min(lease.ttl() / 3);
            refusals = refusals.saturating_add(1);
            debug!(error = %result.as_ref().err().map(ToString::to_string).unwrap_or_default(), retry_in = ?pause, "commit refused during a slot migration; waiting");
            tokio::select! {
                _ = context.shutdown.cancelled() => break result,
                _ = context.lost.cancelled() => break result,
                _ = tokio::time::sleep(pause) => {}
            }
            context.heartbeat.beat();
        };
        // Logged here, as soon as Redis answered, not when the leader collects the result:
        // that can be after a blocked read, and `took` would include the wait for entries.
        if result.is_ok() {
            pantheon_metrics::process()
                .commit_duration
                .observe(started.elapsed().as_secs_f64());
            debug!(took = ?started.elapsed(), entries = applied, calls, "committed");
        }
        (con, result)
    });
    InFlight {
        handle,
        applied,
        last_id,
    }
}

/// Waits for the commit in flight, if any, and puts its connection back in `slot`.
async fn finish(
    in_flight: Option<InFlight>,
    slot: &mut Option<PinnedConnection>,
) -> Result<Committed, ProjectorError> {
    let Some(f) = in_flight else {
        return Ok(Committed::Done(0, None));
    };
    let (con, result) = f
        .handle
        .await
        .map_err(|e| ProjectorError::Task(e.to_string()))?;
    *slot = Some(con);
    match result {
        Ok(()) => Ok(Committed::Done(f.applied, f.last_id)),
        Err(CommitError::Fenced) => {
            warn!("commit fenced: another projector holds the lease");
            Ok(Committed::Fenced)
        }
        Err(e) => Err(e.into()),
    }
}

/// What a term has committed: the newest checkpoint Redis confirmed, and the entries
/// applied since the last snapshot.
#[derive(Debug, Default)]
struct Progress {
    confirmed: Option<EntryId>,
    since_snapshot: u64,
}

impl Progress {
    /// Waits for the commit in flight (see [`finish`]) and counts it; false when it was
    /// fenced, which ends the term.
    async fn settle(
        &mut self,
        in_flight: Option<InFlight>,
        slot: &mut Option<PinnedConnection>,
    ) -> Result<bool, ProjectorError> {
        match finish(in_flight, slot).await? {
            Committed::Fenced => Ok(false),
            Committed::Done(applied, last) => {
                self.since_snapshot += applied;
                self.confirmed = self.confirmed.max(last);
                Ok(true)
            }
        }
    }
}

/// The start of a term: applies pending schema migrations, then takes the standby's warm
/// state, or else loads (or rebuilds) it, renewing the lease meanwhile.
async fn take_over(
    config: &ProjectorConfig,
    layout: &Layout,
    redis: &Redis,
    con: &mut Redis,
    lease: &Lease,
    heartbeat: &Heartbeat,
    terms: Terms<'_>,
) -> Result<(State, Checkpoint), ProjectorError> {
    let Terms { memory, standby } = terms;
    let report = pantheon_store::migrate::run(con, layout).await?;
    if !report.applied.is_empty() {
        info!(from = report.from, to = report.to, steps = ?report.applied, "applied schema migrations");
        // The warm state was folded under the old formats.
        standby.forget();
    }
    let loading = Instant::now();
    Ok(
        match keep_lease_while(heartbeat, LOAD_MAX, standby.take(con, layout)).await? {
            Some((held, tail)) => {
                info!(
                    keys = held.state.keys().len(),
                    nodes = held.state.node_count(),
                    tail_entries = tail,
                    load_ms = loading.elapsed().as_millis() as u64,
                    "took over with the standby's state: leading"
                );
                pantheon_metrics::process().took_over(true);
                (held.state, held.cp)
            }
            None => {
                let load = load_or_rebuild(config, layout, con, redis, lease, heartbeat, memory);
                let (state, cp) = keep_lease_while(heartbeat, LOAD_MAX, load).await?;
                info!(
                    keys = state.keys().len(),
                    nodes = state.node_count(),
                    load_ms = loading.elapsed().as_millis() as u64,
                    "state loaded: leading"
                );
                pantheon_metrics::process().took_over(false);
                (state, cp)
            }
        },
    )
}

/// Leads until the lease is lost (Ok), shutdown (Ok) or an error (the caller re-contends and
/// reloads the state, since a failed commit leaves the in-memory state ahead of Redis).
async fn lead(
    config: &ProjectorConfig,
    layout: &Layout,
    redis: &Redis,
    con: &mut Redis,
    lease: &Lease,
    shutdown: &CancellationToken,
    terms: Terms<'_>,
) -> Result<(), ProjectorError> {
    let heartbeat = Heartbeat::new();
    heartbeat.beat();
    let lost = CancellationToken::new();
    let renewer = spawn_renewer(config, lease.clone(), lost.clone(), heartbeat.clone());
    let mut progress = Progress::default();
    let Terms { memory, standby } = terms;
    let result = async {
        let (state, cp) = take_over(config, layout, redis, con, lease, &heartbeat, Terms { memory: &mut *memory, standby }).await?;
        memory.saw(cp.last_id);
        // The state stays in `memory` when this term ends: if Redis comes back empty, it is
        // what the next term puts back. `state` and `cp` always agree (see `cp` below).
        let Held { state, cp } = memory.held.insert(Held { state, cp });
        // After loading: a re-seed moves the log (and a group on it) to an archive key.
        let projector_group = Group::projector(layout);
        group::create(con, &projector_group, group::Start::Beginning).await?;
        group::set_id(con, &projector_group, cp.last_id).await?;
        // Read once per term: only the migration that introduced attestation sets it, and a
        // new log generation (which clears it) takes the lease from this leader first.
        let legacy_until = attest::legacy_until(con, layout).await?;
        let mut reader = redis.blocking().await?;
        // Give prober replicas starting alongside a time to register before judging them.
        let mut next_watch = Instant::now() + WATCHDOG_GRACE;
        let mut reported_probers: Option<Vec<String>> = None;
        let mut skew = config.clock_skew_bound.map(crate::skew::SkewWatch::new);
        let mut ticked: Option<u64> = None;
        let mut handoff_deadlines = crate::handoff::Deadlines::default();
        // At most one commit runs while the next batch is read and folded. `cp` is what the
        // staged batches assume; if a commit fails the next one is STALE and the leader reloads
        // from Redis, exactly as when the in-memory state runs ahead of a failed commit.
        let mut in_flight: Option<InFlight> = None;
        let mut committer = Some(redis.dedicated().await?);
        let mut fields_per_entry = 8.0f64;
        let beat = || heartbeat.beat();
        let limits = crate::stage::Limits {
            max_args: config.batch_max_args,
            // Well inside the lease TTL, so renewals never see a stalled leader.
            max_fold: (config.lease_ttl / 5).min(Duration::from_secs(1)),
            beat: &beat,
        };
        loop {
            heartbeat.beat();
            // Read about as many entries as one commit holds, so a log full of big batches
            // does not pull a million keys into memory at once.
            let count = ((config.batch_max_args as f64 / fields_per_entry) as usize).clamp(1, config.batch_entries);
            let after = cp.last_id;
            // Contiguously, with XREAD from the checkpoint, not XREADGROUP `>`: a paused
            // ex-leader's blocked XREADGROUP can still be handed entries by Redis, which `>`
            // would then never show the new leader (docs/adr/0003-read-the-log-from-the-checkpoint.md).
            let (entries, origins) = tokio::select! {
                _ = shutdown.cancelled() => return finish(in_flight.take(), &mut committer).await.map(|_| ()),
                _ = lost.cancelled() => return Ok(()),
                read = attest::read_after(&mut reader, layout, after, count, config.block, legacy_until) => read?,
            };
            if !entries.is_empty() {
                let fields: usize = entries.iter().map(|e| e.fields.len()).sum();
                fields_per_entry = (fields as f64 / entries.len() as f64).max(1.0);
                if let Some(skew) = &mut skew {
                    skew.check(con, layout, &entries).await?;
                }
            }
            let (mut rest, mut rest_origins) = (&entries[..], &origins[..]);
            while !rest.is_empty() {
                heartbeat.beat();
                let (mut staged, consumed) = stage_entries(
                    state,
                    cp,
                    layout,
                    rest,
                    rest_origins,
                    &config.instance,
                    &limits,
                );
                // Right after the fold, before anything can fail: the held state and its
                // checkpoint must agree whenever this term ends.
                let expected = cp.last_id_arg();
                *cp = staged.checkpoint.clone();
                rest = &rest[consumed..];
                rest_origins = &rest_origins[consumed..];
                retention::stage_events_trim(&mut staged.batch, layout, config);
                if !progress.settle(in_flight.take(), &mut committer).await? {
                    return Ok(());
                }
                let Some(commit_con) = committer.take() else {
                    return Err(ProjectorError::Task("commit connection missing".into()));
                };
                let context = CommitContext {
                    heartbeat: heartbeat.clone(),
                    shutdown: shutdown.clone(),
                    lost: lost.clone(),
                };
                in_flight = Some(launch(commit_con, lease, layout, staged, expected, context));
                tokio::task::yield_now().await;
            }
            if entries.is_empty() || progress.since_snapshot >= config.snapshot_every.max(1) {
                // Idle, or about to snapshot: let the commit land first.
                if !progress.settle(in_flight.take(), &mut committer).await? {
                    return Ok(());
                }
            }
            if let Some(every) = config.prober_watchdog
                && Instant::now() >= next_watch
            {
                next_watch = Instant::now() + every;
                let now = watch_probers(con, layout, state, &mut reported_probers).await?;
                crate::tick::tick_if_due(con, layout, state, now, cp.last_id, &mut ticked).await?;
                crate::handoff::force_due(con, layout, state, now, &mut handoff_deadlines).await?;
            }
            if config.snapshot_every > 0 && progress.since_snapshot >= config.snapshot_every && in_flight.is_none() {
                heartbeat.beat();
                retention::snapshot_and_trim(con, layout, lease, state, cp, config).await?;
                progress.since_snapshot = 0;
            }
        }
    }
    .await;
    memory.saw(progress.confirmed);
    lost.cancel();
    renewer.stopped().await;
    result
}
