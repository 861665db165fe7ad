//! Self-suspicion, Lifeguard's local health (ADR 0008, ADR 0019). Many nodes failing at once
//! more likely means this prober, its network or the nodes' shared front is in trouble than
//! many nodes dying. While the prober suspects itself it writes `prober_degraded`, sends no
//! confirmation and holds back failure reports, so no node dies on its word, until
//! `prober_recovered`. It suspects itself when:
//!
//! * **most nodes fail** — more than `degraded_percent` of the nodes probed since the oldest
//!   current failure streak began are failing (and at least `degraded_min_failing`): our own
//!   network gone reads as 100% at once;
//! * **its loop lags** — its own timers fire `lag_limit` late;
//! * **failures are intermittent** — within the last few probe round trips
//!   ([`INTERMITTENT_WINDOW`]), at least [`INTERMITTENT_SPREAD`] % of the nodes probed failed
//!   or answered after a failure; of those probed again after a failure, at least
//!   `intermittent_percent` % answered; and at least `degraded_min_failing` did. That is how probes lost on the way look (a node side
//!   answering only what it has capacity for, a lossy network): nodes fail and answer in
//!   turn. Dying nodes fail and stay failed. Under loss of half the probes, fewer than half
//!   the nodes are failing at any moment, so the first rule alone does not fire. A little
//!   loss spread thinly (a few per cent of the nodes) is left to the confirmations, which
//!   already make it harmless.
//!
//! Degraded by intermittent failures alone, the prober still holds back a node only while its
//! failure streak is younger than [`INTERMITTENT_HOLD_MAX`] intervals: a node that stopped
//! answering for good amid lossy neighbours dies that much later, not never.

use std::time::Duration;

use pantheon_domain::health::Health;
use tokio::time::Instant;

use crate::config::ProberConfig;
use crate::schedule::{Role, Tracked};

/// How far back intermittent failures are looked for: this many times a probe's longest
/// round trip (the interval plus the current probe deadline), so that each node has had two
/// results in it even while lost probes take their whole (stretched) deadline.
pub const INTERMITTENT_WINDOW: u32 = 2;
/// The least share of recently probed nodes that failed (percent) for the intermittent rule.
pub const INTERMITTENT_SPREAD: u32 = 25;
/// Degraded by intermittent failures alone, a node failing without a pause for this many
/// probe intervals is reported (and confirmed) all the same. Losing a node's every probe for
/// 30 s by chance, when each is lost with probability one half, takes about 2^30 tries.
pub const INTERMITTENT_HOLD_MAX: u32 = 30;

/// What the prober sees of its nodes at one moment (owned nodes, neither dead nor joining:
/// a node that never answered yet says nothing about this prober's own health).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sample {
    /// Of the nodes probed since the oldest current failure streak began, how many are
    /// failing. Looking only at probes sent after the first failure makes a sudden, total
    /// failure (our own network gone) read as 100% at once, instead of creeping up as the
    /// round of probes goes by.
    pub failing: u32,
    pub probed: u32,
    /// Within the window (by when the results came; see [`INTERMITTENT_WINDOW`]): nodes
    /// probed; nodes that failed or answered after a failure; of those, the ones probed again
    /// after a failure; and of those, the ones that answered.
    pub recent: u32,
    pub troubled: u32,
    pub retried: u32,
    pub recovered: u32,
}

impl Sample {
    /// The sample at `now`; `round_trip` is the steady probe interval plus the current probe
    /// deadline (see [`INTERMITTENT_WINDOW`]).
    pub fn of<'a>(
        nodes: impl Iterator<Item = &'a Tracked> + Clone,
        now: Instant,
        round_trip: Duration,
    ) -> Self {
        let counted = |t: &&Tracked| {
            t.role == Role::Owner && !matches!(t.health, Health::Dead | Health::Joining)
        };
        let since = nodes
            .clone()
            .filter(counted)
            .filter_map(|t| t.streak_since)
            .min();
        let window_start = now.checked_sub(round_trip * INTERMITTENT_WINDOW);
        let within = |at: Option<Instant>| match (at, window_start) {
            (Some(at), Some(start)) => at >= start,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let mut s = Self::default();
        for t in nodes.filter(counted) {
            let fresh = match (since, t.last_started) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(since), Some(at)) => at >= since,
            };
            if fresh {
                s.probed += 1;
                s.failing += u32::from(t.last_ok == Some(false));
            }
            // A lost probe's result comes at its deadline, long after it was sent.
            s.recent += u32::from(within(t.last_started) || within(t.failed_at));
            // Answered after a failure, within the window (it may have failed again since:
            // still intermittent); or failed again right after a failure.
            let recovered = within(t.recovered_at);
            let failed = within(t.failed_at);
            if failed || recovered {
                s.troubled += 1;
                s.recovered += u32::from(recovered);
                s.retried += u32::from(recovered || (failed && t.streak >= 2));
            }
        }
        s
    }
}

/// Why the prober suspects itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Most nodes fail at once.
    MostFail,
    /// Its own timers fire late.
    Lag,
    /// Many nodes fail and answer in turn.
    Intermittent,
}

/// The prober's view of its own health.
#[derive(Debug, Clone)]
pub struct LocalHealth {
    /// The cause of the current suspicion, while degraded.
    cause: Option<Cause>,
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
    /// Why, when it became degraded.
    pub cause: Option<Cause>,
    pub sample: Sample,
    pub lag: Duration,
}

impl Change {
    /// The failing and probed counts the `prober_degraded`/`prober_recovered` entry carries:
    /// for intermittent failures, the nodes that failed and the nodes probed within the window.
    pub fn counts(&self) -> (u32, u32) {
        match self.cause {
            Some(Cause::Intermittent) => (self.sample.troubled, self.sample.recent),
            _ => (self.sample.failing, self.sample.probed),
        }
    }
}

const LAG_WINDOW: Duration = Duration::from_secs(1);

impl LocalHealth {
    pub fn new(now: Instant) -> Self {
        Self {
            cause: None,
            clear_since: None,
            window_start: now,
            lag_now: Duration::ZERO,
            lag_before: Duration::ZERO,
        }
    }

    pub fn is_degraded(&self) -> bool {
        self.cause.is_some()
    }

    /// How long the suspicion must have been clear before the prober is healthy again: one
    /// probe `interval`; after intermittent failures, a whole window of them
    /// ([`INTERMITTENT_WINDOW`] × `round_trip`): their evidence spans that window, and the
    /// shorter wait let the degraded state come and go several times a minute under an
    /// overload.
    pub fn recovery_hold(&self, interval: Duration, round_trip: Duration) -> Duration {
        match self.cause {
            Some(Cause::Intermittent) => (round_trip * INTERMITTENT_WINDOW).max(interval),
            _ => interval,
        }
    }

    /// Whether a node whose current failure streak began at `streak_since` is held back: no
    /// failure reported, no confirmation sent. Always while most nodes fail or the loop lags;
    /// for intermittent failures only while the streak is younger than
    /// [`INTERMITTENT_HOLD_MAX`] intervals.
    pub fn holds(&self, streak_since: Option<Instant>, now: Instant, interval: Duration) -> bool {
        match self.cause {
            None => false,
            Some(Cause::MostFail | Cause::Lag) => true,
            Some(Cause::Intermittent) => streak_since.is_none_or(|since| {
                now.saturating_duration_since(since) < interval * INTERMITTENT_HOLD_MAX
            }),
        }
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

    /// Why `sample` and `lag` mean the prober should suspect itself, if they do (the causes
    /// that hold back every node first).
    pub fn suspicious(config: &ProberConfig, sample: Sample, lag: Duration) -> Option<Cause> {
        let enough = |n: u32| n as usize >= config.degraded_min_failing;
        let times_100 = |part: u32| u64::from(part) * 100;
        let percent_of = |whole: u32, percent: u32| u64::from(whole) * u64::from(percent);
        if config.degraded_percent > 0
            && enough(sample.failing)
            && times_100(sample.failing) > percent_of(sample.probed, config.degraded_percent)
        {
            Some(Cause::MostFail)
        } else if lag >= config.lag_limit {
            Some(Cause::Lag)
        } else if config.intermittent_percent > 0
            && enough(sample.recovered)
            && times_100(sample.recovered)
                >= percent_of(sample.retried, config.intermittent_percent)
            && times_100(sample.troubled) >= percent_of(sample.recent, INTERMITTENT_SPREAD)
        {
            Some(Cause::Intermittent)
        } else {
            None
        }
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
        let change = |degraded, cause| Change {
            degraded,
            cause,
            sample,
            lag,
        };
        if let Some(cause) = suspicious {
            self.clear_since = None;
            let was = self.cause.replace(cause);
            return was.is_none().then(|| change(true, Some(cause)));
        }
        let cause = self.cause?;
        let since = *self.clear_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= hold {
            self.cause = None;
            self.clear_since = None;
            return Some(change(false, Some(cause)));
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

    const SECOND: Duration = Duration::from_secs(1);

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
        let s = Sample::of(nodes.iter(), later, SECOND);
        assert_eq!((s.failing, s.probed), (8, 8));
        assert_eq!((s.recent, s.troubled, s.recovered), (100, 8, 0));
        let c = cfg();
        let mut h = LocalHealth::new(t0);
        let change = h.assess(&c, later, s, SECOND).unwrap();
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
        let s = Sample::of(nodes.iter(), t0 + SECOND, SECOND);
        assert_eq!((s.failing, s.probed), (10, 100));
        let mut h = LocalHealth::new(t0);
        assert_eq!(h.assess(&cfg(), t0, s, SECOND), None);
        // Seven of eight failing is too few to be sure (at least 8 must fail).
        let few = Sample {
            failing: 7,
            probed: 8,
            ..Sample::default()
        };
        assert_eq!(h.assess(&cfg(), t0, few, SECOND), None);
        // Dead nodes do not count at all.
        let mut dead = tracked(Health::Dead);
        dead.observe(false, t0);
        assert_eq!(Sample::of([dead].iter(), t0, SECOND), Sample::default());
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
            ..Sample::default()
        };
        let change = h.assess(&c, t0, fine, Duration::from_secs(1)).unwrap();
        assert!(change.degraded);
        assert_eq!(change.lag, Duration::from_millis(700));
        // The lag is remembered for one to two seconds.
        assert_eq!(
            h.assess(&c, t0 + Duration::from_millis(1500), fine, SECOND),
            None
        );
        // Clear from 2.5 s on; recovered one hold time later.
        assert_eq!(
            h.assess(&c, t0 + Duration::from_millis(2500), fine, SECOND),
            None
        );
        let back = h
            .assess(&c, t0 + Duration::from_millis(3600), fine, SECOND)
            .unwrap();
        assert!(!back.degraded && !h.is_degraded());
    }

    /// `n` nodes probed every 200 ms for 2 s from `t0`, each probe lost when `lost(node,
    /// round)` says so.
    fn probed(n: usize, t0: Instant, lost: impl Fn(usize, u64) -> bool) -> Vec<Tracked> {
        let mut nodes: Vec<Tracked> = (0..n).map(|_| tracked(Health::Alive)).collect();
        for round in 0..10u64 {
            for (i, t) in nodes.iter_mut().enumerate() {
                let at = t0 + Duration::from_millis(round * 200 + i as u64);
                t.observe(!lost(i, round), at);
            }
        }
        nodes
    }

    #[test]
    fn losing_many_probes_reads_as_intermittent_though_most_nodes_are_not_failing() {
        let t0 = Instant::now();
        // Each probe lost or not by a fixed pseudo-random pattern, two in five of them.
        let lost = |i: usize, round: u64| {
            let x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ round.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            (x.wrapping_mul(0x94D0_49BB_1331_11EB) >> 32) % 10 < 4
        };
        let nodes = probed(100, t0, lost);
        let now = t0 + Duration::from_secs(2);
        let s = Sample::of(nodes.iter(), now, SECOND);
        assert_eq!(s.recent, 100);
        assert!(s.troubled >= 90, "{s:?}");
        assert!(s.recovered * 2 >= s.troubled, "{s:?}");
        let c = cfg();
        // Only some of the nodes are failing at their last probe: not "most fail"...
        assert!(s.failing * 2 <= s.probed, "{s:?}");
        // ...but intermittent.
        assert_eq!(
            LocalHealth::suspicious(&c, s, Duration::ZERO),
            Some(Cause::Intermittent)
        );
        let mut h = LocalHealth::new(t0);
        let change = h.assess(&c, now, s, SECOND).unwrap();
        assert_eq!(change.cause, Some(Cause::Intermittent));
        assert_eq!(change.counts(), (s.troubled, s.recent));
        // Off when the setting is 0.
        let off = ProberConfig {
            intermittent_percent: 0,
            ..cfg()
        };
        assert_eq!(LocalHealth::suspicious(&off, s, Duration::ZERO), None);
    }

    #[test]
    fn nodes_that_stay_failed_are_not_intermittent_even_beside_lossy_ones() {
        let t0 = Instant::now();
        // 20 nodes dead from round 2 on, 10 lossy (every other probe lost), 70 fine.
        let lost = |i: usize, round: u64| match i {
            0..20 => round >= 2,
            20..30 => round % 2 == 1,
            _ => false,
        };
        let nodes = probed(100, t0, lost);
        let now = t0 + Duration::from_secs(2);
        let s = Sample::of(nodes.iter(), now, SECOND);
        assert_eq!((s.troubled, s.retried, s.recovered), (30, 30, 10), "{s:?}");
        assert_eq!(LocalHealth::suspicious(&cfg(), s, Duration::ZERO), None);
        // Failures older than the window do not count.
        let later = Sample::of(nodes.iter(), now + Duration::from_secs(3), SECOND);
        assert_eq!((later.recent, later.troubled, later.recovered), (0, 0, 0));
        // Fewer than degraded_min_failing recovered nodes are not enough, whatever the share.
        let few = probed(100, t0, |i, round| i < 7 && round % 2 == 1);
        let s = Sample::of(few.iter(), now, SECOND);
        assert_eq!((s.troubled, s.recovered), (7, 7));
        assert_eq!(LocalHealth::suspicious(&cfg(), s, Duration::ZERO), None);
        // Loss spread thinly: a fifth of the nodes lossy is too few, whatever the share...
        let thin = probed(100, t0, |i, round| i < 20 && round % 2 == 1);
        let s = Sample::of(thin.iter(), now, SECOND);
        assert_eq!(
            (s.recent, s.troubled, s.retried, s.recovered),
            (100, 20, 20, 20)
        );
        assert_eq!(LocalHealth::suspicious(&cfg(), s, Duration::ZERO), None);
        // ...a quarter is enough.
        let wide = probed(100, t0, |i, round| i < 25 && round % 2 == 1);
        let s = Sample::of(wide.iter(), now, SECOND);
        assert_eq!(
            LocalHealth::suspicious(&cfg(), s, Duration::ZERO),
            Some(Cause::Intermittent)
        );
    }

    #[test]
    fn intermittent_failures_hold_back_a_node_only_while_its_streak_is_young() {
        let c = cfg();
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(60);
        let intermittent = Sample {
            troubled: 30,
            retried: 30,
            recovered: 30,
            recent: 100,
            ..Sample::default()
        };
        let mut h = LocalHealth::new(t0);
        assert!(!h.holds(Some(now), now, SECOND), "healthy: holds nothing");
        h.assess(&c, now, intermittent, SECOND).unwrap();
        let trip = Duration::from_millis(1_500);
        assert_eq!(h.recovery_hold(SECOND, trip), trip * 2, "a whole window");
        let young = now - SECOND * (INTERMITTENT_HOLD_MAX - 1);
        let old = now - SECOND * INTERMITTENT_HOLD_MAX;
        assert!(h.holds(Some(young), now, SECOND));
        assert!(h.holds(None, now, SECOND));
        assert!(
            !h.holds(Some(old), now, SECOND),
            "failing without a pause for 30 intervals"
        );
        // Most nodes failing: every node is held, however old its streak.
        let most = Sample {
            failing: 90,
            probed: 100,
            ..intermittent
        };
        assert_eq!(h.assess(&c, now, most, SECOND), None, "degraded already");
        assert!(h.holds(Some(old), now, SECOND));
        assert_eq!(
            h.recovery_hold(SECOND, trip),
            SECOND,
            "most fail: one interval"
        );
        // The intermittent failures stop: healthy again one hold time later.
        let quiet = Sample {
            recent: 100,
            ..Sample::default()
        };
        assert_eq!(h.assess(&c, now + SECOND, quiet, SECOND), None);
        let back = h.assess(&c, now + SECOND * 2, quiet, SECOND).unwrap();
        assert!(!back.degraded && !h.is_degraded());
        assert!(!h.holds(Some(young), now, SECOND));
    }
}
