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
    /// When our last probe of it failed, and when a probe last answered after a failure (the
    /// times the results came; self-suspicion looks for many nodes doing both: see
    /// [`crate::local_health`]).
    pub failed_at: Option<Instant>,
    pub recovered_at: Option<Instant>,
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
            failed_at: None,
            recovered_at: None,
        }
    }

    /// Notes a result of a probe sent at `started` (reported or not), as if it came at once.
    pub fn observe(&mut self, ok: bool, started: Instant) {
        self.observe_at(ok, started, started);
    }

    /// Notes a result of a probe sent at `started` that came at `finished`. A failure or a
    /// recovery counts for self-suspicion from when it was known: a lost probe is known only
    /// at its deadline, which may be seconds after it was sent.
    pub fn observe_at(&mut self, ok: bool, started: Instant, finished: Instant) {
        self.last_ok = Some(ok);
        self.last_started = Some(started);
        if ok {
            if self.streak > 0 {
                self.recovered_at = Some(finished);
            }
            self.streak = 0;
            self.streak_since = None;
        } else {
            self.streak = self.streak.saturating_add(1);
            self.streak_since.get_or_insert(started);
            self.failed_at = Some(finished);
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

    /// Base wait before the next probe; `fast` is the current pace of the fast cadence (see
    /// [`fast_interval`]).
    pub fn cadence(&self, config: &ProberConfig, fast: Duration) -> Duration {
        if self.is_fast() {
            fast
        } else if self.health == Health::Dead {
            config.dead_interval
        } else {
            config.interval
        }
    }

    /// Whether the node is on the fast cadence: suspect, just failed, dead but answering, or
    /// awaiting this replica's confirmation.
    pub fn is_fast(&self) -> bool {
        if self.role == Role::Confirmer {
            return true;
        }
        match (self.health, self.last_ok) {
            // Not owning keys yet, so nothing waits on a quick verdict: a node that never
            // answers is probed at the steady rate, not five times as often.
            (Health::Joining, _) => false,
            (Health::Dead, last) => last == Some(true),
            (Health::Suspect, _) | (_, Some(false)) => true,
            (Health::Alive, _) => false,
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

/// Fewest nodes that may be re-probed at the full `suspect_interval` pace, however small the
/// share: a small cluster cannot overload anything, and must find deaths fast.
const FAST_FLOOR: usize = 50;

/// The wait between re-probes of nodes on the fast cadence (suspect, just failed, dead but
/// answering) when `fast` of the `owned` nodes are on it: `suspect_interval` while their extra
/// probes stay within `suspect_budget_percent` of the steady rate (`owned / interval`), or
/// for up to [`FAST_FLOOR`] nodes; beyond that it stretches in proportion, up to `interval`,
/// so the total probe rate stays bounded. While the prober suspects itself it is `interval`.
///
/// This is Lifeguard's local-health multiplier: many suspects at once more likely mean an
/// overloaded node side, prober or network than many nodes dying, and re-probing them five
/// times as often would feed the overload that made them suspect.
pub fn fast_interval(config: &ProberConfig, fast: usize, owned: usize, degraded: bool) -> Duration {
    let slowest = config.interval.max(config.suspect_interval);
    if degraded {
        return slowest;
    }
    if config.suspect_budget_percent == 0 {
        return config.suspect_interval;
    }
    let pace = config.suspect_interval.as_secs_f64() / config.interval.as_secs_f64();
    let budget = owned as f64 * f64::from(config.suspect_budget_percent) / 100.0 * pace;
    let allowed = budget.max(FAST_FLOOR as f64);
    if fast as f64 <= allowed {
        return config.suspect_interval;
    }
    config
        .suspect_interval
        .mul_f64(fast as f64 / allowed)
        .min(slowest)
}

/// The probe deadline at the re-probe pace `fast`: `timeout`, stretched by the same factor as
/// the re-probes (up to `interval ÷ suspect_interval`, 5 by default). Lifeguard scales its
/// probe timeout with its local-health multiplier for the same reason: when many nodes look
/// slow at once, the node side, the network or this prober is overloaded, and a slow answer
/// is an answer; waiting longer also caps the probes in flight (`max_in_flight`), so the
/// probe rate falls to what the other side can answer.
pub fn patient_timeout(config: &ProberConfig, fast: Duration) -> Duration {
    let factor = fast.as_secs_f64() / config.suspect_interval.as_secs_f64();
    config.timeout.mul_f64(factor.max(1.0))
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
        let fast = c.suspect_interval;
        let mut t = Tracked::new(1, "http://h/".into(), Health::Alive, 0);
        assert_eq!(t.cadence(&c, fast), c.interval);
        t.record(false);
        assert_eq!(
            t.cadence(&c, fast),
            c.suspect_interval,
            "right after a failure"
        );
        t.health = Health::Dead;
        assert_eq!(t.cadence(&c, fast), c.dead_interval);
        t.record(true);
        assert_eq!(
            t.cadence(&c, fast),
            c.suspect_interval,
            "a dead node answering needs rise successes fast"
        );
        t.health = Health::Suspect;
        let slowed = Duration::from_millis(700);
        assert_eq!(
            t.cadence(&c, slowed),
            slowed,
            "the fast pace is the caller's"
        );
    }

    #[test]
    fn the_timeout_stretches_with_the_re_probe_pace() {
        let c = cfg();
        assert_eq!(patient_timeout(&c, c.suspect_interval), c.timeout);
        assert_eq!(
            patient_timeout(&c, Duration::from_millis(520)),
            c.timeout.mul_f64(2.6)
        );
        // At most interval ÷ suspect_interval (5) times the timeout.
        let slowest = fast_interval(&c, 4_000, 5_000, false);
        assert_eq!(patient_timeout(&c, slowest), c.timeout * 5);
    }

    #[test]
    fn many_suspects_at_once_slow_their_re_probes_down_to_the_interval() {
        let c = cfg();
        // Few suspects, small or large cluster: the full pace.
        assert_eq!(fast_interval(&c, 3, 3, false), c.suspect_interval);
        assert_eq!(fast_interval(&c, 50, 60, false), c.suspect_interval);
        assert_eq!(fast_interval(&c, 250, 5_000, false), c.suspect_interval);
        // 650 of 5,000 suspect: 250 may go at 200 ms (25% of 5,000 probes/s), so 520 ms.
        assert_eq!(
            fast_interval(&c, 650, 5_000, false),
            Duration::from_millis(520)
        );
        // Never slower than the steady interval, so the total rate stays at most
        // owned / interval + the budget.
        assert_eq!(fast_interval(&c, 4_000, 5_000, false), c.interval);
        // A prober that suspects itself adds no re-probes at all.
        assert_eq!(fast_interval(&c, 1, 5_000, true), c.interval);
        // 0 turns the bound off.
        let unbounded = ProberConfig {
            suspect_budget_percent: 0,
            ..cfg()
        };
        assert_eq!(
            fast_interval(&unbounded, 4_000, 5_000, false),
            c.suspect_interval
        );
        // The probe rate never exceeds the steady rate by more than the budget.
        for suspects in (0..=5_000).step_by(250) {
            let fast = fast_interval(&c, suspects, 5_000, false).as_secs_f64();
            let rate =
                (5_000 - suspects) as f64 / c.interval.as_secs_f64() + suspects as f64 / fast;
            assert!(
                rate <= 5_000.0 * 1.25 + 1.0,
                "{suspects} suspects: {rate} probes/s"
            );
        }
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
