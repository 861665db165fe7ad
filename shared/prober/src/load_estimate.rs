//! One node's load as the prober estimates it from the figures its health answers send
//! (`X-Pantheon-Load`, ADR 0018): the load, smoothed, and how noisy the figures are, which
//! sets how far the smoothed figure must move before it is worth a report
//! ([`LoadEstimate::noise_band`]).

use std::time::Duration;

use tokio::time::Instant;

/// The time constant of the smoothing: a step in a node's load shows 63% of its size after
/// this long.
pub const SMOOTHING: Duration = Duration::from_secs(20);
/// A figure a node sends this many times in a row is taken as it is: a steady load is
/// written exactly, not approached.
pub const STEADY_REPEATS: u32 = 3;
/// The dead band of a noisy node: this many standard deviations of the difference between
/// two of its smoothed figures that noise alone would make. Noise leaves it about once an hour
/// per node; a real move smaller than the node's noise takes minutes to show.
pub const NOISE_SIGMAS: f64 = 4.0;
/// The time constant of the noise estimate: longer than the smoothing's, since how noisy a
/// node's figures are changes slowly, and an estimate from fewer figures swings by tens of
/// percent (and the band with it).
pub const NOISE_MEMORY: Duration = Duration::from_secs(120);

/// A node's load from its figures (in thousandths, as floats so that small steps add up).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadEstimate {
    smoothed: f64,
    /// When the last figure came, what it was, and how many times in a row.
    at: Instant,
    last: u64,
    repeats: u32,
    /// Figures so far (saturating).
    figures: u32,
    /// The weight the last figure had in the smoothing.
    weight: f64,
    /// The difference between the last two figures, once there were two.
    step: Option<f64>,
    /// The noise's variance: minus the covariance of successive differences, smoothed.
    noise: f64,
}

impl LoadEstimate {
    /// A node's first figure.
    pub fn first(load: u64, now: Instant) -> Self {
        Self {
            smoothed: load as f64,
            at: now,
            last: load,
            repeats: 1,
            figures: 1,
            weight: 1.0,
            step: None,
            noise: 0.0,
        }
    }

    /// The next figure, `load`, came at `now`.
    ///
    /// An exponential average with time constant [`SMOOTHING`], except that a node's first
    /// figures are averaged (the n-th counts 1/n) until that weighs less than the smoothing: a
    /// node's estimate settles as fast as its figures allow instead of starting from one
    /// figure and wandering from it for a minute.
    pub fn observe(&mut self, load: u64, now: Instant) {
        self.figures = self.figures.saturating_add(1);
        self.repeats = if load == self.last {
            self.repeats + 1
        } else {
            1
        };
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        let decay = 1.0 - (-elapsed / SMOOTHING.as_secs_f64()).exp();
        let weight = decay.max(1.0 / f64::from(self.figures));
        self.smoothed = if self.repeats >= STEADY_REPEATS {
            load as f64
        } else {
            self.smoothed + weight * (load as f64 - self.smoothed)
        };
        // Independent noise of variance σ² makes successive differences whose covariance is
        // −σ²; a trend, or a one-off step, makes none (or a positive one). So a node whose
        // load really moves is not taken for a noisy one (the mean absolute difference was,
        // and a big step widened its band for minutes).
        let step = load as f64 - self.last as f64;
        if let Some(before) = self.step {
            let memory = 1.0 - (-elapsed / NOISE_MEMORY.as_secs_f64()).exp();
            let products = f64::from(self.figures - 2);
            self.noise += memory.max(1.0 / products) * (-(step * before) - self.noise);
        }
        self.step = Some(step);
        // Two figures at once say nothing of the rate of figures.
        if decay > 0.0 {
            self.weight = weight;
        }
        self.at = now;
        self.last = load;
    }

    /// The smoothed load, in thousandths.
    pub fn load(&self) -> u64 {
        self.smoothed.round() as u64
    }

    /// The width of the dead band noise alone calls for, in thousandths: [`NOISE_SIGMAS`]
    /// standard deviations of the difference of two smoothed figures. Smoothed with weight w
    /// per figure, noise of deviation σ leaves a deviation of σ √(w / (2 − w)) in the smoothed
    /// figure, and the difference of two such figures, far enough apart, √2 times that.
    pub fn noise_band(&self) -> f64 {
        let sigma = self.noise.max(0.0).sqrt();
        let w = self.weight;
        NOISE_SIGMAS * std::f64::consts::SQRT_2 * sigma * (w / (2.0 - w)).sqrt()
    }
}

/// A fixed linear congruential sequence of jitters in [-spread, spread): tests of noisy
/// figures are the same every run.
#[cfg(test)]
pub(crate) struct Jitter(pub(crate) u64);

#[cfg(test)]
impl Jitter {
    pub(crate) fn next(&mut self, spread: f64) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        ((self.0 >> 33) as f64 / (1u64 << 31) as f64 * 2.0 - 1.0) * spread
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One figure a second for `secs` seconds: `base(s) × (1 ± spread)`.
    fn estimate(secs: u64, spread: f64, base: impl Fn(u64) -> f64) -> LoadEstimate {
        let t0 = Instant::now();
        let mut jitter = Jitter(11);
        let figure = |s: u64, j: &mut Jitter| (base(s) * (1.0 + j.next(spread)) * 1000.0) as u64;
        let mut e = LoadEstimate::first(figure(0, &mut jitter), t0);
        for s in 1..secs {
            e.observe(figure(s, &mut jitter), t0 + Duration::from_secs(s));
        }
        e
    }

    #[test]
    fn the_band_follows_the_noise_of_the_figures() {
        // ±20% per figure around 100 makes a band of about 11 (4 × √2 × 11.5 × √(w / (2 − w)),
        // w = 1 − e^(−1/20)); ±2% about 1 (so the 5% floor holds); exact figures none.
        for (spread, band) in [(0.2, 9.0..13.0), (0.02, 0.7..1.4), (0.0, 0.0..0.001)] {
            let e = estimate(600, spread, |_| 100.0);
            let width = e.noise_band() / 1000.0;
            assert!(band.contains(&width), "±{spread}: band {width}");
        }
    }

    #[test]
    fn real_moves_do_not_pass_for_noise() {
        // A node whose load doubles, or climbs steadily, with ±2% noise: its band stays that
        // of its noise.
        let doubled = estimate(120, 0.02, |s| if s < 60 { 100.0 } else { 200.0 });
        assert!(doubled.noise_band() < 5_000.0, "{doubled:?}");
        let climbing = estimate(120, 0.0, |s| 100.0 + s as f64);
        assert_eq!(climbing.noise_band(), 0.0, "{climbing:?}");
        // Figures that swing back and forth from one to the next are noise.
        let flapping = estimate(120, 0.0, |s| if s % 2 == 0 { 100.0 } else { 150.0 });
        assert!(flapping.noise_band() > 5_000.0, "{flapping:?}");
    }

    #[test]
    fn the_first_figures_are_averaged() {
        // After 10 figures of ±20%, the estimate is their average, within a few percent of the
        // load (the first figure alone could be 20% off, and an exponential average starting
        // from it would still be an eighth of that off after 40 s).
        for seed in 0..20 {
            let t0 = Instant::now();
            let mut jitter = Jitter(seed);
            let figures: Vec<u64> = (0..10)
                .map(|_| (100_000.0 * (1.0 + jitter.next(0.2))) as u64)
                .collect();
            let mut e = LoadEstimate::first(figures[0], t0);
            for (s, f) in figures.iter().enumerate().skip(1) {
                e.observe(*f, t0 + Duration::from_secs(s as u64));
            }
            let mean = figures.iter().sum::<u64>() as f64 / 10.0;
            assert!((e.load() as f64 - mean).abs() < 1.0, "{e:?} vs {mean}");
        }
        // A steady figure is taken as it is.
        let t0 = Instant::now();
        let mut e = LoadEstimate::first(100_000, t0);
        for s in 1..40 {
            e.observe(100_000, t0 + Duration::from_secs(s));
        }
        e.observe(150_000, t0 + Duration::from_secs(40));
        e.observe(150_000, t0 + Duration::from_secs(41));
        e.observe(150_000, t0 + Duration::from_secs(42));
        assert_eq!(e.load(), 150_000);
    }
}
