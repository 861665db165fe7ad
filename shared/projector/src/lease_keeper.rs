//! Keeping the lease while leading: a heartbeat the leading loop stamps as it makes progress,
//! and a renewer that renews the lease only while the heartbeat is fresh, so a leader that
//! hangs (not just one that dies) loses the lease.
//!
//! The renewer runs on a thread of its own, with a runtime and a Redis connection of its own:
//! at millions of keys the leader's own runtime is busy for seconds at a time (folding a
//! failover that moves a million keys, restoring the state from the read models), and a
//! renewal queued behind that work let a healthy leader's lease lapse. A load of the state
//! keeps the lease by declaring that it is loading ([`keep_lease_while`]), not by stamping the
//! heartbeat from the loading task, which a seconds-long stretch of CPU work would stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pantheon_store::Redis;
use pantheon_store::lease::Lease;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::ProjectorConfig;

/// Progress stamp of the leading loop, and until when a load may go without stamps.
#[derive(Debug, Clone)]
pub(crate) struct Heartbeat {
    start: Instant,
    last: Arc<AtomicU64>,
    /// While loading: the end of the time a load may take (ms since `start`); 0 otherwise.
    loading_until: Arc<AtomicU64>,
}

impl Heartbeat {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
            loading_until: Arc::new(AtomicU64::new(0)),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    pub(crate) fn beat(&self) {
        self.last.store(self.now_ms(), Ordering::Relaxed);
    }

    /// How long since the leading loop last showed progress (zero while a load is within its
    /// time).
    pub(crate) fn age(&self) -> Duration {
        let now = self.now_ms();
        if now < self.loading_until.load(Ordering::Relaxed) {
            return Duration::ZERO;
        }
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }
}

/// The longest a load of the state may keep the lease (see [`keep_lease_while`]).
pub(crate) const LOAD_MAX: Duration = Duration::from_secs(15 * 60);

/// Runs `load` (the state's load or rebuild) while keeping the lease: a cluster of millions of
/// keys takes longer than a lease TTL to load, and a leader that let the lease lapse mid-load
/// would reload forever. The heartbeat counts as fresh while the load is pending, up to
/// `max`; a load that runs longer stops renewing, like any stall.
pub(crate) async fn keep_lease_while<F: std::future::Future>(
    heartbeat: &Heartbeat,
    max: Duration,
    load: F,
) -> F::Output {
    /// Ends the loading declaration however the load ends (also when it is dropped).
    struct Loading<'a>(&'a Heartbeat);
    impl Drop for Loading<'_> {
        fn drop(&mut self) {
            self.0.beat();
            self.0.loading_until.store(0, Ordering::Relaxed);
        }
    }
    let until = heartbeat.now_ms() + max.as_millis() as u64;
    heartbeat.loading_until.store(until, Ordering::Relaxed);
    let _loading = Loading(heartbeat);
    load.await
}

/// The lease renewer of one term; [`Renewer::stopped`] waits until it renews no more.
pub(crate) struct Renewer {
    task: tokio::task::JoinHandle<()>,
}

impl Renewer {
    /// Waits until the renewer has stopped (after `lost` was cancelled, or it lost the lease).
    pub(crate) async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// The runtime every lease renewer of this process runs on: one worker thread,
/// `pantheon-lease`, that does nothing else (a fleet process leads many clusters; one thread
/// serves all their renewals, each a round trip every few seconds). `None` if it could not
/// be started.
fn lease_runtime() -> Option<&'static tokio::runtime::Runtime> {
    static RUNTIME: std::sync::OnceLock<Option<tokio::runtime::Runtime>> =
        std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("pantheon-lease")
                .enable_all()
                .build()
                .inspect_err(|e| {
                    warn!(error = %e, "cannot start the lease renewers' thread: renewing on the leader's runtime");
                })
                .ok()
        })
        .as_ref()
}

/// Starts renewing `lease` every third of its TTL while `heartbeat` is fresh, until `lost` is
/// cancelled; cancels `lost` when the lease is lost. It runs on [`lease_runtime`] with a
/// connection of its own (made there, so its I/O is driven there too).
pub(crate) fn spawn_renewer(
    config: &ProjectorConfig,
    lease: Lease,
    lost: CancellationToken,
    heartbeat: Heartbeat,
) -> Renewer {
    let con = Redis::new(config.redis.clone(), &config.cluster);
    let renew = renew_loop(con, lease, lost, heartbeat);
    let task = match lease_runtime() {
        Some(runtime) => runtime.spawn(renew),
        None => tokio::spawn(renew),
    };
    Renewer { task }
}

async fn renew_loop(mut con: Redis, lease: Lease, lost: CancellationToken, heartbeat: Heartbeat) {
    let every = lease.ttl() / 3;
    loop {
        tokio::select! {
            _ = lost.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if heartbeat.age() > lease.ttl() {
            warn!(stalled_for = ?heartbeat.age(), "leading loop stalled: letting the lease expire");
            continue;
        }
        let renewed = tokio::select! {
            _ = lost.cancelled() => return,
            r = lease.renew(&mut con) => r,
        };
        match renewed {
            Ok(true) => {}
            Ok(false) => {
                warn!("lease lost (expired or taken over)");
                lost.cancel();
                return;
            }
            // The handle already logged an outage or a slot migration, once.
            Err(e) if e.is_outage() => debug!(error = %e, "lease renewal failed; will retry"),
            Err(e) => warn!(error = %e, "lease renewal failed; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_load_keeps_the_heartbeat_fresh_even_while_it_computes_without_yielding() {
        let heartbeat = Heartbeat::new();
        heartbeat.beat();
        let seen = keep_lease_while(&heartbeat, Duration::from_secs(60), async {
            // Seconds of CPU work at millions of keys, in small: nothing else runs on this
            // task meanwhile (a ticker beside the load in the same task would not either).
            std::thread::sleep(Duration::from_millis(300));
            heartbeat.age()
        })
        .await;
        assert_eq!(seen, Duration::ZERO, "fresh while loading");
        // Stamped when the load ended, then ageing again.
        std::thread::sleep(Duration::from_millis(50));
        let age = heartbeat.age();
        assert!(
            age >= Duration::from_millis(50) && age < Duration::from_millis(300),
            "{age:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_load_past_its_limit_stops_counting_as_progress() {
        let heartbeat = Heartbeat::new();
        heartbeat.beat();
        let seen = keep_lease_while(&heartbeat, Duration::from_secs(10), async {
            tokio::time::advance(Duration::from_secs(12)).await;
            heartbeat.age()
        })
        .await;
        assert!(seen >= Duration::from_secs(12), "{seen:?}");
    }
}
