//! Per-node probing cadence and reporting rules — pure, so they are tested without a clock.
//!
//! Cadence: `interval` while alive and healthy; `suspect_interval` while suspect, right after
//! a failure (before the read model says suspect) and while a dead node answers again (it
//! needs `rise` successes quickly); `dead_interval` while dead and still failing.
//!
//! Reporting: every failure is logged; a success only when it can change something (the node
//! is not plainly alive, or our last report for it was a failure). Steady state is silent.

use std::time::Duration;

use tokio::time::Instant;

use pantheon_domain::health::Health;
use rand::Rng;

use crate::config::ProberConfig;

/// What the prober knows about one node it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    pub epoch: u64,
    pub url: String,
    /// Health according to the read model.
    pub health: Health,
    /// Consecutive failures according to the read model.
    pub fails: u32,
    /// Result of our last probe of this epoch.
    pub last_ok: Option<bool>,
    /// Whether our last *reported* result of this epoch was a failure.
    pub last_reported_failure: bool,
    /// Why we probe it: we own it, or we confirm its owner's suspicion (ADR 0008).
    pub role: Role,
    /// Our own consecutive failed probes of this epoch, and when the first of them was sent.
    pub streak: u32,
    pub streak_since: Option<Instant>,
    /// When our last finished probe of it was sent.
    pub last_started: Option<Instant>,
}

/// Why a replica probes a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It owns the node: regular probes (and, alone, the confirmations too).
    Owner,
    /// Another replica owns it and suspects it: confirmations only.
    Confirmer,
}

impl Tracked {
    pub fn new(epoch: u64, url: String, health: Health, fails: u32) -> Self {
        Self {
            epoch,
            url,
            health,
            fails,
            last_ok: None,
            last_reported_failure: false,
            role: Role::Owner,
            streak: 0,
            streak_since: None,
            last_started: None,
        }
    }

    /// Notes a result of a probe sent at `started` (reported or not).
    pub fn observe(&mut self, ok: bool, started: Instant) {
        self.last_ok = Some(ok);
        self.last_started = Some(started);
        if ok {
            self.streak = 0;
            self.streak_since = None;
        } else {
            self.streak = self.streak.saturating_add(1);
            self.streak_since.get_or_insert(started);
        }
    }

    /// Whether a result must be written to the log: every failure, and a success only when it
    /// can change something.
    pub fn should_report(&self, ok: bool) -> bool {
        !ok || self.health != Health::Alive || self.fails > 0 || self.last_reported_failure
    }

    /// Notes that a result was written.
    pub fn reported(&mut self, ok: bool) {
        self.last_reported_failure = !ok;
    }

    /// Base wait before the next probe.
    pub fn cadence(&self, config: &ProberConfig) -> Duration {
        if self.role == Role::Confirmer {
            return config.suspect_interval;
        }
        match (self.health, self.last_ok) {
            // Not owning keys yet, so nothing waits on a quick verdict: a node that never
            // answers is probed at the steady rate, not five times as often.
            (Health::Joining, _) => config.interval,
            (Health::Dead, Some(true)) => config.suspect_interval,
            (Health::Dead, _) => config.dead_interval,
            (Health::Suspect, _) | (_, Some(false)) => config.suspect_interval,
            (Health::Alive, _) => config.interval,
        }
    }

    /// Records a result and, when it must be written, that it was; returns whether it must.
    pub fn record(&mut self, ok: bool) -> bool {
        self.observe(ok, Instant::now());
        let report = self.should_report(ok);
        if report {
            self.reported(ok);
        }
        report
    }
}

/// The window over which the first probes of `fresh` newly owned nodes (out of `owned`) are
/// spread. A few new nodes are probed within `suspect_interval`, so a node that joins dead is
/// found quickly. A burst larger than the prober can have in flight (a fleet registered at
/// once, or a replica taking over another's nodes) is spread over up to one `interval`, at
/// about the steady probe rate, instead of thousands of probes in the first 200 ms.
pub fn first_probe_window(config: &ProberConfig, fresh: usize, owned: usize) -> Duration {
    if fresh <= config.max_in_flight || owned == 0 {
        return config.suspect_interval;
    }
    config.interval.mul_f64(fresh as f64 / owned as f64).clamp(
        config.suspect_interval,
        config.interval.max(config.suspect_interval),
    )
}

/// `base` spread by ±`jitter` (a fraction), so probes of many nodes do not align.
pub fn jittered(base: Duration, jitter: f64) -> Duration {
    if jitter <= 0.0 {
        return base;
    }
    let factor = rand::rng().random_range((1.0 - jitter)..=(1.0 + jitter));
    base.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ProberConfig {
        ProberConfig::new(pantheon_store::Deployment::default(), "t")
    }

    #[test]
    fn cadence_follows_health_and_the_last_result() {
        let c = cfg();
        let mut t = Tracked::new(1, "http://h/".into(), Health::Alive, 0);
        assert_eq!(t.cadence(&c), c.interval);
        t.record(false);
        assert_eq!(t.cadence(&c), c.suspect_interval, "right after a failure");
        t.health = Health::Dead;
        assert_eq!(t.cadence(&c), c.dead_interval);
        t.record(true);
        assert_eq!(
            t.cadence(&c),
            c.suspect_interval,
            "a dead node answering needs rise successes fast"
        );
    }

    #[test]
    fn steady_successes_are_not_reported_failures_always_are() {
        let mut t = Tracked::new(1, "http://h/".into(), Health::Alive, 0);
        assert!(!t.record(true));
        assert!(!t.record(true));
        assert!(t.record(false));
        assert!(
            t.record(true),
            "the success after a failure resets the streak"
        );
        assert!(!t.record(true));
        t.health = Health::Suspect;
        assert!(
            t.record(true),
            "successes of a suspect node count toward rise"
        );
    }

    #[test]
    fn first_probes_of_a_burst_are_spread_over_the_interval() {
        let c = cfg();
        // A handful of new nodes: probed quickly.
        assert_eq!(first_probe_window(&c, 1, 1), c.suspect_interval);
        assert_eq!(first_probe_window(&c, 500, 5_000), c.suspect_interval);
        // A whole fleet at once: over one interval, the steady rate.
        assert_eq!(first_probe_window(&c, 5_000, 5_000), c.interval);
        // Half a fleet taken over: over half an interval.
        assert_eq!(first_probe_window(&c, 2_500, 5_000), c.interval / 2);
        // Never shorter than the suspect interval.
        assert_eq!(first_probe_window(&c, 600, 100_000), c.suspect_interval);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_millis(1000), 0.1);
            assert!(d >= Duration::from_millis(900) && d <= Duration::from_millis(1100));
        }
    }
}
