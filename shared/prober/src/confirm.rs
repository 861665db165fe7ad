//! Confirmed deaths and self-suspicion, the prober's side (ADR 0008). The fold decides (see
//! `pantheon_domain::confirm`); the prober decides when to probe and what to report:
//!
//! * **Alone** (one warm replica), the probe that would be a node's `fall`-th consecutive
//!   failure is a *confirmation*: `confirm_attempts` probes at once, each on a new TCP
//!   connection (never the pooled keep-alive one); it succeeds if any of them does. It is
//!   written `confirm=1`; every other probe `confirm=0`.
//! * **With two or more replicas**, the owner sends regular probes only, and the node's
//!   *confirmer* (the owner of the node among the other replicas) probes the nodes the read
//!   model shows suspect with at least `fall - 1` failures, on fresh connections, and writes
//!   `confirm=1` (SWIM's indirect probe).
//! * **Self-suspicion** (Lifeguard's local health): [`LocalHealth`] watches the share of nodes
//!   failing at once and the prober's own timer lag; while degraded the prober writes
//!   `prober_degraded`, and no failure (so no death) until `prober_recovered`.

use std::time::Duration;

use pantheon_domain::health::{Health, ProbeError};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::ProberConfig;
use crate::http::{HttpProber, Outcome};
use crate::schedule::{Role, Tracked};

/// Whether the next probe of `t` is a confirmation, given the cluster's `fall` and whether
/// this replica is alone (no other warm replica could confirm).
pub fn next_is_confirmation(t: &Tracked, fall: u32, alone: bool) -> bool {
    match t.role {
        Role::Confirmer => true,
        Role::Owner => {
            let streak = t.streak.max(t.fails);
            // A joining node's failures never kill it: nothing to confirm.
            let may_die = !matches!(t.health, Health::Dead | Health::Joining);
            alone && may_die && streak >= 1 && streak + 1 >= fall
        }
    }
}

/// Whether a node the read model shows with `health` and `fails` awaits a confirmation by its
/// confirmer.
pub fn awaits_confirmation(health: Health, fails: u32, fall: u32) -> bool {
    health == Health::Suspect && fails >= 1 && fails + 1 >= fall
}

/// One confirmation: `attempts` probes at once, each on a new connection, each given
/// `timeout`; the first success wins, else the first failure is the outcome.
pub async fn confirm(http: &HttpProber, url: &str, attempts: usize, timeout: Duration) -> Outcome {
    let mut set = JoinSet::new();
    for _ in 0..attempts.max(1) {
        let (http, url) = (http.clone(), url.to_owned());
        set.spawn(async move { http.probe_fresh(&url, timeout).await });
    }
    let mut failure = None;
    while let Some(done) = set.join_next().await {
        match done {
            Ok(o) if o.ok => {
                set.abort_all();
                return o;
            }
            Ok(o) => {
                failure.get_or_insert(o);
            }
            Err(_) => {}
        }
    }
    failure.unwrap_or(Outcome {
        ok: false,
        status: None,
        latency_ms: 0,
        error: Some(ProbeError::Protocol),
        load: None,
    })
}

/// The share of nodes failing at once: of the owned nodes, neither dead nor joining, probed since the oldest
/// current failure streak began, how many are failing. Looking only at probes sent after the
/// first failure makes a sudden, total failure (our own network gone) read as 100% at once,
/// instead of creeping up as the round of probes goes by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sample {
    pub failing: u32,
    pub probed: u32,
}

impl Sample {
    pub fn of<'a>(nodes: impl Iterator<Item = &'a Tracked> + Clone) -> Self {
        // A node that never answered yet says nothing about this prober's own health.
        let counted = |t: &&Tracked| {
            t.role == Role::Owner && !matches!(t.health, Health::Dead | Health::Joining)
        };
        let since = nodes
            .clone()
            .filter(counted)
            .filter_map(|t| t.streak_since)
            .min();
        let (mut failing, mut probed) = (0u32, 0u32);
        for t in nodes.filter(counted) {
            let fresh = match (since, t.last_started) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(since), Some(at)) => at >= since,
            };
            if fresh {
                probed += 1;
                failing += u32::from(t.last_ok == Some(false));
            }
        }
        Self { failing, probed }
    }
}

/// The prober's view of its own health.
#[derive(Debug, Clone)]
pub struct LocalHealth {
    degraded: bool,
    /// Since when the degraded condition has been false (recovery waits `hold`).
    clear_since: Option<Instant>,
    /// Worst timer lag in the current and the previous window.
    window_start: Instant,
    lag_now: Duration,
    lag_before: Duration,
}

/// A change of the prober's own health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub degraded: bool,
    pub sample: Sample,
    pub lag: Duration,
}

const LAG_WINDOW: Duration = Duration::from_secs(1);

impl LocalHealth {
    pub fn new(now: Instant) -> Self {
        Self {
            degraded: false,
            clear_since: None,
            window_start: now,
            lag_now: Duration::ZERO,
            lag_before: Duration::ZERO,
        }
    }

    pub fn is_degraded(&self) -> bool {
        self.degraded
    }

    /// Notes how late a timer fired (the loop's own scheduling lag).
    pub fn note_lag(&mut self, now: Instant, lag: Duration) {
        self.roll(now);
        self.lag_now = self.lag_now.max(lag);
    }

    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= LAG_WINDOW * 2 {
            self.lag_before = Duration::ZERO;
            self.lag_now = Duration::ZERO;
            self.window_start = now;
        } else if elapsed >= LAG_WINDOW {
            self.lag_before = self.lag_now;
            self.lag_now = Duration::ZERO;
            self.window_start += LAG_WINDOW;
        }
    }

    /// The worst lag over the last one to two seconds.
    pub fn lag(&mut self, now: Instant) -> Duration {
        self.roll(now);
        self.lag_now.max(self.lag_before)
    }

    /// Whether `sample` and `lag` mean the prober should suspect itself.
    pub fn suspicious(config: &ProberConfig, sample: Sample, lag: Duration) -> bool {
        let most_fail = config.degraded_percent > 0
            && sample.failing as usize >= config.degraded_min_failing
            && u64::from(sample.failing) * 100
                > u64::from(sample.probed) * u64::from(config.degraded_percent);
        most_fail || lag >= config.lag_limit
    }

    /// Assesses a new sample: degraded at once when suspicious; healthy again once it has not
    /// been suspicious for `hold`. Returns the change, if any.
    pub fn assess(
        &mut self,
        config: &ProberConfig,
        now: Instant,
        sample: Sample,
        hold: Duration,
    ) -> Option<Change> {
        let lag = self.lag(now);
        let suspicious = Self::suspicious(config, sample, lag);
        let change = |degraded| Change {
            degraded,
            sample,
            lag,
        };
        if suspicious {
            self.clear_since = None;
            if !self.degraded {
                self.degraded = true;
                return Some(change(true));
            }
            return None;
        }
        if !self.degraded {
            return None;
        }
        let since = *self.clear_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= hold {
            self.degraded = false;
            self.clear_since = None;
            return Some(change(false));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ProberConfig {
        ProberConfig::new(pantheon_store::Deployment::default(), "t")
    }

    fn tracked(health: Health) -> Tracked {
        Tracked::new(1, "http://h/".into(), health, 0)
    }

    #[test]
    fn alone_the_fall_th_probe_is_a_confirmation_with_a_peer_never() {
        let mut t = tracked(Health::Alive);
        assert!(!next_is_confirmation(&t, 3, true), "a healthy node");
        let t0 = Instant::now();
        t.observe(false, t0);
        assert!(
            !next_is_confirmation(&t, 3, true),
            "one failure: fall - 2 left"
        );
        t.observe(false, t0);
        assert!(next_is_confirmation(&t, 3, true), "the third would kill");
        assert!(
            !next_is_confirmation(&t, 3, false),
            "a peer confirms instead"
        );
        t.health = Health::Dead;
        assert!(!next_is_confirmation(&t, 3, true), "dead already");
        // fall 1: still one regular failure first (a regular failure never kills).
        let mut u = tracked(Health::Alive);
        assert!(!next_is_confirmation(&u, 1, true));
        u.observe(false, t0);
        assert!(next_is_confirmation(&u, 1, true));
        // A handed-over node: the read model's failures count too.
        let v = Tracked::new(1, "http://h/".into(), Health::Suspect, 2);
        assert!(next_is_confirmation(&v, 3, true));
    }

    #[test]
    fn a_confirmer_waits_for_fall_minus_one_failures() {
        assert!(!awaits_confirmation(Health::Suspect, 1, 3));
        assert!(awaits_confirmation(Health::Suspect, 2, 3));
        assert!(awaits_confirmation(Health::Suspect, 7, 3));
        assert!(!awaits_confirmation(Health::Dead, 7, 3));
        assert!(!awaits_confirmation(Health::Alive, 0, 1));
    }

    #[test]
    fn a_sudden_total_failure_reads_as_total_at_once() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(10);
        // 100 nodes probed fine before t0; then 8 probes, all failing.
        let mut nodes: Vec<Tracked> = (0..100).map(|_| tracked(Health::Alive)).collect();
        for t in &mut nodes {
            t.observe(true, t0 - Duration::from_millis(500));
        }
        for t in nodes.iter_mut().take(8) {
            t.observe(false, later);
        }
        let s = Sample::of(nodes.iter());
        assert_eq!(
            s,
            Sample {
                failing: 8,
                probed: 8
            }
        );
        let c = cfg();
        let mut h = LocalHealth::new(t0);
        let change = h.assess(&c, later, s, Duration::from_secs(1)).unwrap();
        assert!(change.degraded && h.is_degraded());
    }

    #[test]
    fn a_few_independent_deaths_do_not_make_the_prober_suspect_itself() {
        let t0 = Instant::now();
        let mut nodes: Vec<Tracked> = (0..100).map(|_| tracked(Health::Alive)).collect();
        for (i, t) in nodes.iter_mut().enumerate() {
            // One in ten failing, probes spread over a second after the first failure.
            let at = t0 + Duration::from_millis(i as u64 * 10);
            t.observe(i % 10 != 0, at);
        }
        let s = Sample::of(nodes.iter());
        assert_eq!(
            s,
            Sample {
                failing: 10,
                probed: 100
            }
        );
        let mut h = LocalHealth::new(t0);
        assert_eq!(h.assess(&cfg(), t0, s, Duration::from_secs(1)), None);
        // Seven of eight failing is too few to be sure (at least 8 must fail).
        let few = Sample {
            failing: 7,
            probed: 8,
        };
        assert_eq!(h.assess(&cfg(), t0, few, Duration::from_secs(1)), None);
        // Dead nodes do not count at all.
        let mut dead = tracked(Health::Dead);
        dead.observe(false, t0);
        assert_eq!(Sample::of([dead].iter()), Sample::default());
    }

    #[test]
    fn lag_degrades_and_recovery_waits_for_the_hold_time() {
        let c = cfg();
        let t0 = Instant::now();
        let mut h = LocalHealth::new(t0);
        h.note_lag(t0, Duration::from_millis(700));
        let fine = Sample {
            failing: 0,
            probed: 10,
        };
        let change = h.assess(&c, t0, fine, Duration::from_secs(1)).unwrap();
        assert!(change.degraded);
        assert_eq!(change.lag, Duration::from_millis(700));
        // The lag is remembered for one to two seconds.
        assert_eq!(
            h.assess(
                &c,
                t0 + Duration::from_millis(1500),
                fine,
                Duration::from_secs(1)
            ),
            None
        );
        // Clear from 2.5 s on; recovered one hold time later.
        assert_eq!(
            h.assess(
                &c,
                t0 + Duration::from_millis(2500),
                fine,
                Duration::from_secs(1)
            ),
            None
        );
        let back = h
            .assess(
                &c,
                t0 + Duration::from_millis(3600),
                fine,
                Duration::from_secs(1),
            )
            .unwrap();
        assert!(!back.degraded && !h.is_degraded());
    }
}
