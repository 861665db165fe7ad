//! [`Redis`]: the one way Pantheon reaches the master of a cluster, and follows it through
//! failovers.
//!
//! A handle resolves the master serving its Pantheon cluster's hash slot (see
//! [`crate::resolve`]), holds one multiplexed connection to it, and drops that connection
//! when an error says the master moved or went away: MOVED, READONLY, a refused or reset
//! connection, a timeout, a master demoted under a blocked command. The next command then
//! resolves the master again, after an exponential backoff with jitter: capped at 0.5 s while
//! the failures look like a failover in progress, at 2 s for any other outage.
//!
//! Commands are never retried here: a command in flight when the master fails may or may
//! not have run, and only its caller knows whether repeating it is safe (log writes carry a
//! `cmd` id, commits are fenced and compare-and-set). The one exception is a refusal by a
//! half-finished slot migration (`ASK`, `TRYAGAIN`), which says the command did not run:
//! single commands follow the `ASK`, scripts and transactions wait for up to
//! [`COMMAND_TIMEOUT`] (see [`crate::migration`]). Connections that keep per-connection
//! state (`WATCH` before a commit) or block (`XREAD ... BLOCK`) are [`PinnedConnection`]s:
//! they never reconnect on their own, so a `WATCH` can never silently vanish under a
//! `MULTI`/`EXEC`.
//!
//! Logging is one line per change of state: connected, lost (with the reason), still down
//! for another reason, back.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisError, RedisFuture, Value};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::StoreError;
use crate::connect::{COMMAND_TIMEOUT, CONNECT_TIMEOUT};
use crate::deployment::Deployment;
use crate::failure::Failure;
use crate::migration;
use crate::resolve::{self, slot_of_cluster};
use crate::url::HostPort;

mod migrating;

/// The first pause after a failed attempt; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Backoff cap: an outage of any kind is retried at least this often.
pub const MAX_BACKOFF: Duration = Duration::from_millis(2000);
/// Backoff cap while the failures are those of a failover in progress (the master refuses
/// connections, a node answers MOVED or READONLY, Sentinel still names a replica): each
/// retry costs one resolve on loopback-cheap commands, and the new master is then found
/// within about this long after Redis promotes it. Timeouts, TLS, authentication and
/// permission failures keep [`MAX_BACKOFF`]: retrying them sooner only adds load.
pub const FAILOVER_BACKOFF: Duration = Duration::from_millis(500);

/// A handle on the master serving one Pantheon cluster. Cheap to clone; clones share the
/// connection. Implements [`ConnectionLike`], so `redis::cmd(..).query_async(&mut handle)`
/// and scripts work on it.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    deployment: Deployment,
    slot: u16,
    current: Mutex<Option<Current>>,
    /// Serializes resolving, and holds what it learnt.
    link: tokio::sync::Mutex<Link>,
    generation: AtomicU64,
    /// The node a half-finished slot migration's ASK replies name.
    ask: migration::AskLink,
}

#[derive(Clone)]
struct Current {
    generation: u64,
    addr: HostPort,
    client: redis::Client,
    con: MultiplexedConnection,
    /// The entry of [`SHARED`] this connection came from.
    shared: u64,
}

/// One multiplexed connection per master (and credentials) for every handle of the process:
/// a process serving many clusters (`up --clusters`) talks to each shard over one
/// connection for ordinary commands, not one per cluster. (Blocking reads and `WATCH`ed
/// commits keep connections of their own: [`PinnedConnection`].) A handle that finds its
/// connection lost drops the entry, so the next one to connect makes a new one.
struct SharedCon {
    url: crate::url::RedisUrl,
    addr: HostPort,
    id: u64,
    con: MultiplexedConnection,
}

static SHARED: Mutex<Vec<SharedCon>> = Mutex::new(Vec::new());
static NEXT_SHARED: AtomicU64 = AtomicU64::new(1);

fn lock_shared() -> std::sync::MutexGuard<'static, Vec<SharedCon>> {
    SHARED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The shared connection to `addr` for `deployment`, if one is open. Deployments with their
/// own TLS certificates never share (their clients differ in more than the URL).
fn shared_for(deployment: &Deployment, addr: &HostPort) -> Option<(u64, MultiplexedConnection)> {
    if deployment.tls_certificates().is_some() {
        return None;
    }
    lock_shared()
        .iter()
        .find(|s| s.url == deployment.url && s.addr == *addr)
        .map(|s| (s.id, s.con.clone()))
}

fn share(deployment: &Deployment, addr: &HostPort, con: &MultiplexedConnection) -> u64 {
    if deployment.tls_certificates().is_some() {
        return 0;
    }
    let id = NEXT_SHARED.fetch_add(1, Ordering::Relaxed);
    let mut shared = lock_shared();
    shared.retain(|s| !(s.url == deployment.url && s.addr == *addr));
    shared.push(SharedCon {
        url: deployment.url.clone(),
        addr: addr.clone(),
        id,
        con: con.clone(),
    });
    id
}

fn unshare(id: u64) {
    if id != 0 {
        lock_shared().retain(|s| s.id != id);
    }
}

#[derive(Default)]
struct Link {
    failures: u32,
    retry_at: Option<Instant>,
    known: Vec<HostPort>,
    /// Since when the master is unavailable, and the class of the last reason logged.
    down: Option<(Instant, Failure)>,
    ever_up: bool,
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("deployment", &self.inner.deployment)
            .field("slot", &self.inner.slot)
            .finish_non_exhaustive()
    }
}

/// The kind of the first error reply among `values` that says the master was lost: server
/// errors of a pipeline come back as values, not as an `Err` of the connection.
fn lost_in_replies<'a>(values: impl IntoIterator<Item = &'a Value>) -> Option<(Failure, String)> {
    values.into_iter().find_map(|v| match v {
        Value::ServerError(e) => {
            let class = Failure::of_code(e.code());
            class
                .is_master_lost()
                .then(|| (class, format!("{} {}", e.code(), e.details().unwrap_or(""))))
        }
        _ => None,
    })
}

/// True when the error means this connection no longer reaches the cluster's master.
pub fn is_master_lost(e: &RedisError) -> bool {
    Failure::of(e).is_master_lost()
}

/// True when retrying the same command later may succeed (the master moved, is loading, a
/// slot is migrating): what callers retry on.
pub fn is_transient(e: &RedisError) -> bool {
    Failure::of(e).is_transient()
}

impl Redis {
    /// A handle on the master serving Pantheon cluster `cluster` in `deployment`. Does not
    /// connect yet: the first command does.
    pub fn new(deployment: Deployment, cluster: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                deployment,
                slot: slot_of_cluster(cluster),
                current: Mutex::new(None),
                link: tokio::sync::Mutex::new(Link::default()),
                generation: AtomicU64::new(0),
                ask: migration::AskLink::default(),
            }),
        }
    }

    /// The deployment this handle connects through.
    pub fn deployment(&self) -> &Deployment {
        &self.inner.deployment
    }

    /// The Redis user this handle authenticates as (`default` when the URL names none).
    pub fn user(&self) -> &str {
        self.inner
            .deployment
            .url
            .username
            .as_deref()
            .unwrap_or("default")
    }

    /// The hash slot of the cluster's keys.
    pub fn slot(&self) -> u16 {
        self.inner.slot
    }

    /// The master's address, when connected.
    pub fn master(&self) -> Option<HostPort> {
        self.lock_current().as_ref().map(|c| c.addr.clone())
    }

    fn lock_current(&self) -> std::sync::MutexGuard<'_, Option<Current>> {
        // A panic while holding this lock cannot leave the Option half-written.
        self.inner
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Connects now (waiting out a backoff in progress), so the caller learns at once whether
    /// the master can be reached.
    pub async fn connect(&self) -> Result<(), StoreError> {
        self.current().await.map(|_| ())
    }

    /// PING within `timeout`, for a pre-flight check.
    pub async fn ping(&self, timeout: Duration) -> Result<(), StoreError> {
        let mut con = self.clone();
        let ping = async {
            // Connecting first keeps the class of a failure to connect (authentication, TLS,
            // refused): through `ConnectionLike` it would arrive as a bare I/O error.
            self.current().await?;
            Ok::<_, StoreError>(redis::cmd("PING").query_async::<String>(&mut con).await?)
        };
        match tokio::time::timeout(timeout, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StoreError::Unavailable {
                class: Failure::Timeout,
                reason: format!(
                    "{} did not answer within {timeout:?}",
                    self.inner.deployment.url
                ),
            }),
        }
    }

    async fn current(&self) -> Result<Current, StoreError> {
        if let Some(c) = self.lock_current().clone() {
            return Ok(c);
        }
        let mut link = self.inner.link.lock().await;
        if let Some(c) = self.lock_current().clone() {
            return Ok(c);
        }
        if let Some(at) = link.retry_at {
            tokio::time::sleep_until(at).await;
        }
        match self.establish(&mut link).await {
            Ok(current) => {
                match link.down.take() {
                    Some((since, _)) if link.ever_up => info!(
                        master = %current.addr,
                        after = ?since.elapsed(),
                        "redis: connected to the master again"
                    ),
                    // The first connection is not news (a process may open several
                    // handles); losing and finding the master again is.
                    _ => debug!(
                        url = %self.inner.deployment.url,
                        master = %current.addr,
                        "redis: connected to the master"
                    ),
                }
                crate::credentials::accepted(&self.inner.deployment.url);
                link.ever_up = true;
                link.failures = 0;
                link.retry_at = None;
                *self.lock_current() = Some(current.clone());
                Ok(current)
            }
            Err((class, reason)) => {
                if class == Failure::Authentication {
                    // Logged once per process, not per handle (see `crate::credentials`).
                    crate::credentials::refused(&self.inner.deployment.url, &reason);
                }
                let delay = backoff_capped(link.failures, backoff_cap(class));
                link.failures = link.failures.saturating_add(1);
                link.retry_at = Some(Instant::now() + delay);
                match link.down {
                    Some((_, logged)) if logged == class => {
                        debug!(%reason, retry_in = ?delay, "redis: master still unavailable")
                    }
                    Some((since, logged)) => {
                        // Only a reason someone must act on is news while down (refused
                        // credentials: once per process, by `crate::credentials`).
                        if matches!(
                            class,
                            Failure::Tls | Failure::Permission | Failure::SentinelAuthentication
                        ) {
                            warn!(%reason, down_for = ?since.elapsed(), "redis: master still unavailable; retrying");
                        } else {
                            debug!(%reason, previously = %logged, "redis: master still unavailable");
                        }
                        link.down = Some((since, class));
                    }
                    // Never connected yet (a service started before Redis): info, since a
                    // one-shot command reports the failure as its own error line.
                    None if !link.ever_up => {
                        info!(url = %self.inner.deployment.url, %reason, "redis: cannot reach the master yet; waiting, with backoff");
                        link.down = Some((Instant::now(), class));
                    }
                    None => {
                        warn!(url = %self.inner.deployment.url, %reason, "redis: cannot reach the master; retrying with backoff");
                        link.down = Some((Instant::now(), class));
                    }
                }
                Err(StoreError::Unavailable { class, reason })
            }
        }
    }

    async fn establish(&self, link: &mut Link) -> Result<Current, (Failure, String)> {
        let master = resolve::master(&self.inner.deployment, self.inner.slot, &mut link.known)
            .await
            .map_err(|e| (e.class(), e.reason))?;
        let (shared, con) = match shared_for(&self.inner.deployment, &master.addr) {
            Some(found) => found,
            None => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(COMMAND_TIMEOUT));
                let con = master
                    .client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(|e| {
                        let reason = match crate::tls::explain(&format!("{e} {e:?}")) {
                            Some(cause) => format!("{}: {cause} ({e})", master.addr),
                            None => format!("{}: {e}", master.addr),
                        };
                        (Failure::of(&e), reason)
                    })?;
                (share(&self.inner.deployment, &master.addr, &con), con)
            }
        };
        Ok(Current {
            generation: self.inner.generation.fetch_add(1, Ordering::Relaxed) + 1,
            addr: master.addr,
            client: master.client,
            con,
            shared,
        })
    }

    /// Drops the connection of `generation` when a round trip on it showed that it no longer
    /// reaches the master (an error, or an error reply among the values of a pipeline); the
    /// next command resolves the master again.
    fn observe(&self, generation: u64, result: Result<&[Value], &RedisError>) {
        match result {
            Ok(values) => {
                if let Some((class, detail)) = lost_in_replies(values) {
                    self.lost_as(generation, class, &detail);
                }
            }
            Err(error) => self.lost(generation, error),
        }
    }

    fn lost(&self, generation: u64, error: &RedisError) {
        let class = Failure::of(error);
        if class.is_master_lost() {
            self.lost_as(generation, class, &error.to_string());
        }
    }

    fn lost_as(&self, generation: u64, class: Failure, detail: &str) {
        // The MOVED that ends a slot migration this process saw is its expected end (logged
        // once, as such), not a lost master.
        let url = &self.inner.deployment.url;
        let migrated = class == Failure::Moved && migration::explains_move(url, self.inner.slot);
        if migrated {
            migration::ended(url, self.inner.slot, migration::addr_in(detail).as_ref());
        }
        let mut current = self.lock_current();
        if current.as_ref().is_some_and(|c| c.generation == generation) {
            let lost = current.take();
            drop(current);
            let addr = lost.map(|c| {
                unshare(c.shared);
                c.addr
            });
            if migrated {
                debug!(master = ?addr.map(|a| a.to_string()), error = %detail, "redis: the slot moved; resolving its master again");
                return;
            }
            warn!(
                master = ?addr.map(|a| a.to_string()),
                reason = %class,
                error = %detail,
                "redis: lost the master; resolving it again"
            );
            if let Ok(mut link) = self.inner.link.try_lock() {
                link.down = Some((Instant::now(), class));
            }
        }
    }

    async fn pinned(
        &self,
        response_timeout: Option<Duration>,
    ) -> Result<PinnedConnection, StoreError> {
        let current = self.current().await?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(response_timeout);
        match current
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(con) => Ok(PinnedConnection {
                con,
                generation: current.generation,
                addr: current.addr,
                owner: self.clone(),
            }),
            Err(e) => {
                if Failure::of(&e) == Failure::Authentication {
                    crate::credentials::refused(&self.inner.deployment.url, &e.to_string());
                }
                self.lost(current.generation, &e);
                Err(e.into())
            }
        }
    }

    /// A connection of its own to the current master for a job that keeps per-connection
    /// state (`WATCH` before `MULTI`/`EXEC`). Responses may take up to [`COMMAND_TIMEOUT`].
    pub async fn dedicated(&self) -> Result<PinnedConnection, StoreError> {
        self.pinned(Some(COMMAND_TIMEOUT)).await
    }

    /// A connection of its own for blocking reads (`XREAD ... BLOCK`): no response timeout,
    /// the BLOCK argument bounds the wait. Never share it: a blocked read stalls everything
    /// multiplexed behind it.
    pub async fn blocking(&self) -> Result<PinnedConnection, StoreError> {
        self.pinned(None).await
    }
}

/// The pause after `failures` failed attempts in a row: 50 ms doubling up to [`MAX_BACKOFF`],
/// each with jitter in its upper half. Every retry loop that talks to Redis uses it.
pub fn backoff(failures: u32) -> Duration {
    backoff_capped(failures, MAX_BACKOFF)
}

/// The most a retry loop above a handle adds after an outage (see [`retry_pause`]).
const OUTAGE_PAUSE: Duration = Duration::from_millis(250);

/// The pause of a retry loop above a handle (a projector's attempts at leading, a prober's
/// restarts) after `failures` failures in a row. After an outage (`outage`: the error says
/// the master is unreachable) the handle already waits out its own backoff before resolving
/// the master again, so the loop adds at most [`OUTAGE_PAUSE`]: a second backoff on top would
/// only delay noticing a promoted master. Other failures back off as [`backoff`].
pub fn retry_pause(failures: u32, outage: bool) -> Duration {
    let delay = backoff(failures);
    if outage {
        delay.min(OUTAGE_PAUSE)
    } else {
        delay
    }
}

/// The cap of the backoff after a failure of `class` (see [`FAILOVER_BACKOFF`]).
fn backoff_cap(class: Failure) -> Duration {
    if class.is_failover() {
        FAILOVER_BACKOFF
    } else {
        MAX_BACKOFF
    }
}

fn backoff_capped(failures: u32, cap: Duration) -> Duration {
    let exp = FIRST_BACKOFF
        .saturating_mul(1u32 << failures.min(8))
        .min(cap);
    // Full jitter in the upper half: spreads reconnecting processes, never waits zero.
    let jitter = rand::random::<f64>() * 0.5 + 0.5;
    exp.mul_f64(jitter)
}

impl ConnectionLike for Redis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut wait = MigrationWait::new();
            let result = loop {
                let mut current = self.current().await.map_err(into_redis_error)?;
                let result = current.con.req_packed_command(cmd).await;
                self.observe(
                    current.generation,
                    result.as_ref().map(std::slice::from_ref),
                );
                let result = self.through_migration(&current.addr, cmd, result).await;
                let refused = match &result {
                    Ok(v) => migration::refused_value(v),
                    Err(e) => migration::refused(e),
                };
                // A script refused by a slot migration did not run: wait and send it again.
                if !(refused && migration::is_script(cmd) && wait.pause().await) {
                    break result;
                }
            };
            // A NOPERM names the user, the command and the key (Redis names none of them).
            if let Ok(value) = &result
                && let Some(e) = crate::acl::name_denied(
                    std::slice::from_ref(value),
                    [cmd].into_iter(),
                    self.user(),
                )
            {
                return Err(e);
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut wait = MigrationWait::new();
            let result = loop {
                let mut current = self.current().await.map_err(into_redis_error)?;
                let result = current.con.req_packed_commands(cmd, offset, count).await;
                self.observe(current.generation, result.as_deref());
                let result = self
                    .through_migration_pipeline(&current.addr, cmd, offset, result)
                    .await;
                // A transaction refused by a slot migration did not run (and carries no
                // WATCH: that needs a PinnedConnection): wait and send it again.
                let refused = result.as_ref().is_err_and(migration::refused);
                if !(refused && cmd.is_transaction() && wait.pause().await) {
                    break result;
                }
            };
            if let Ok(values) = &result
                && let Some(e) = crate::acl::name_denied_in_pipeline(values, cmd, self.user())
            {
                return Err(e);
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.deployment.url.db
    }
}

/// How a script or transaction on a [`Redis`] handle waits out a slot migration that refuses
/// it: backoff with jitter, for at most [`COMMAND_TIMEOUT`] (as long as any command may
/// take); after that the refusal is the caller's, whose own retry loop takes over.
struct MigrationWait {
    deadline: Instant,
    refusals: u32,
}

impl MigrationWait {
    fn new() -> Self {
        Self {
            deadline: Instant::now() + COMMAND_TIMEOUT,
            refusals: 0,
        }
    }

    /// Sleeps before the next attempt; false when the time is up.
    async fn pause(&mut self) -> bool {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        tokio::time::sleep(backoff(self.refusals).min(left)).await;
        self.refusals = self.refusals.saturating_add(1);
        true
    }
}

/// A failure to reach the master, as a Redis I/O error (what `ConnectionLike` must return),
/// so callers' transient-error checks treat it like a refused connection.
fn into_redis_error(e: StoreError) -> RedisError {
    match e {
        StoreError::Redis(e) => e,
        other => RedisError::from(std::io::Error::new(
            std::io::ErrorKind::NotConnected,
            other.to_string(),
        )),
    }
}

/// A connection to the master as it was when the connection was made. It never reconnects
/// (per-connection state such as `WATCH` must not vanish silently); an error that shows the
/// master was lost also tells the [`Redis`] handle it came from, so the handle resolves again.
pub struct PinnedConnection {
    con: MultiplexedConnection,
    generation: u64,
    /// The master it was made to.
    addr: HostPort,
    owner: Redis,
}

impl fmt::Debug for PinnedConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedConnection")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl ConnectionLike for PinnedConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = self.con.req_packed_command(cmd).await;
            self.owner
                .observe(self.generation, result.as_ref().map(std::slice::from_ref));
            self.owner.through_migration(&self.addr, cmd, result).await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let result = self.con.req_packed_commands(cmd, offset, count).await;
            self.owner.observe(self.generation, result.as_deref());
            self.owner
                .through_migration_pipeline(&self.addr, cmd, offset, result)
                .await
        })
    }

    fn get_db(&self) -> i64 {
        self.owner.get_db()
    }
}

/// Whether a failed command may succeed if sent again: the connection dropped or timed out,
/// or the server asked to wait (LOADING, BUSY, TRYAGAIN).
pub fn may_succeed_again(e: &redis::RedisError) -> bool {
    use redis::RetryMethod;
    is_transient(e)
        || e.is_io_error()
        || e.is_timeout()
        || matches!(
            e.retry_method(),
            RetryMethod::Reconnect
                | RetryMethod::ReconnectFromInitialConnections
                | RetryMethod::RetryImmediately
                | RetryMethod::WaitAndRetry
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_about_two_seconds_with_jitter() {
        for _ in 0..100 {
            let first = backoff(0);
            assert!(
                first >= FIRST_BACKOFF / 2 && first <= FIRST_BACKOFF,
                "{first:?}"
            );
            let late = backoff(30);
            assert!(late >= MAX_BACKOFF / 2 && late <= MAX_BACKOFF, "{late:?}");
        }
    }

    #[test]
    fn a_failover_in_progress_is_retried_sooner_than_other_outages() {
        for _ in 0..100 {
            let refused = backoff_capped(30, backoff_cap(Failure::Refused));
            assert!(
                refused >= FAILOVER_BACKOFF / 2 && refused <= FAILOVER_BACKOFF,
                "{refused:?}"
            );
            let denied = backoff_capped(30, backoff_cap(Failure::Authentication));
            assert!(denied >= MAX_BACKOFF / 2, "{denied:?}");
        }
    }
}
