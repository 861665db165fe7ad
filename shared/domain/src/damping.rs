//! Flap damping in the style of BGP route flap damping (RFC 2439).
//!
//! Each death adds `damp_penalty` to a node's penalty; the penalty halves every
//! `damp_half_life` seconds of log time. Above `damp_suppress` the node is damped: it stays
//! out of placement even while its probes succeed. Once the penalty has decayed to
//! `damp_reuse` it is undamped. The penalty never exceeds the ceiling from which it decays to
//! `damp_reuse` in `damp_max_suppress` seconds, so no node stays out longer than that after it
//! becomes stable.
//!
//! All arithmetic is integer: the decay uses a table of 2^(-i/16) in Q16 fixed point, so every
//! build on every platform decides the same (floating-point `exp2` is not specified to the
//! last bit across libms).

use crate::policy::Policy;

/// 2^(-i/16) × 65536, rounded.
const STEPS: [u64; 16] = [
    65536, 62757, 60097, 57549, 55109, 52773, 50535, 48393, 46341, 44376, 42495, 40693, 38968,
    37316, 35734, 34219,
];

/// A node's penalty as of a point in log time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Penalty {
    pub value: u32,
    /// Milliseconds (log time) at which `value` was current.
    pub at: u64,
}

fn half_life_ms(policy: &Policy) -> u64 {
    u64::from(policy.damp_half_life.max(1)) * 1000
}

/// `value` after `sixteenths` sixteenths of a half-life.
fn decay_steps(value: u64, sixteenths: u64) -> u64 {
    let whole = sixteenths / 16;
    if whole >= 40 {
        return 0;
    }
    ((value >> whole) * STEPS[(sixteenths % 16) as usize]) >> 16
}

/// The largest penalty: the one that decays to `damp_reuse` in `damp_max_suppress` seconds.
pub fn ceiling(policy: &Policy) -> u64 {
    let sixteenths =
        u64::from(policy.damp_max_suppress) * 16 / u64::from(policy.damp_half_life.max(1));
    let whole = (sixteenths / 16).min(20);
    let reuse = u64::from(policy.damp_reuse) << whole;
    reuse * 65536 / STEPS[(sixteenths % 16) as usize]
}

impl Penalty {
    /// The penalty at `now` (ms); never negative, never more than it was.
    pub fn at_time(&self, now: u64, policy: &Policy) -> u64 {
        let dt = now.saturating_sub(self.at);
        decay_steps(u64::from(self.value), dt * 16 / half_life_ms(policy))
    }

    /// The penalty after a death at `now`: decayed, plus `damp_penalty`, capped at the
    /// ceiling.
    pub fn after_death(&self, now: u64, policy: &Policy) -> Penalty {
        let value = (self.at_time(now, policy) + u64::from(policy.damp_penalty))
            .min(ceiling(policy))
            .min(u64::from(u32::MAX));
        Penalty {
            value: value as u32,
            at: now,
        }
    }

    /// The first log time (ms) at which the penalty has decayed to `damp_reuse` or below.
    pub fn reuse_at(&self, policy: &Policy) -> u64 {
        let reuse = u64::from(policy.damp_reuse);
        let mut sixteenths = 0u64;
        // At most 40 half-lives (the value is then 0): bounded.
        while sixteenths < 40 * 16 && decay_steps(u64::from(self.value), sixteenths) > reuse {
            sixteenths += 1;
        }
        self.at + (sixteenths * half_life_ms(policy)).div_ceil(16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_penalty_halves_every_half_life() {
        let p = Policy::default();
        let x = Penalty {
            value: 4000,
            at: 1_000,
        };
        let h = half_life_ms(&p);
        assert_eq!(x.at_time(1_000, &p), 4000);
        assert_eq!(x.at_time(1_000 + h, &p), 2000);
        assert_eq!(x.at_time(1_000 + 2 * h, &p), 1000);
        let mid = x.at_time(1_000 + h / 2, &p);
        assert!((2828..=2829).contains(&mid), "{mid}");
        assert_eq!(x.at_time(0, &p), 4000, "time before `at` does not grow it");
    }

    #[test]
    fn the_ceiling_decays_to_reuse_in_max_suppress() {
        let p = Policy::default();
        let top = Penalty {
            value: ceiling(&p) as u32,
            at: 0,
        };
        let back = top.reuse_at(&p);
        let max = u64::from(p.damp_max_suppress) * 1000;
        assert!(back <= max && back + 2_000 >= max, "{back} vs {max}");
    }

    #[test]
    fn two_deaths_within_a_half_life_suppress_one_does_not() {
        let p = Policy::default();
        let one = Penalty::default().after_death(10_000, &p);
        assert!(u64::from(one.value) <= u64::from(p.damp_suppress));
        let two = one.after_death(20_000, &p);
        assert!(two.value > p.damp_suppress);
        let far = one.after_death(10_000 + half_life_ms(&p) * 2, &p);
        assert!(far.value <= p.damp_suppress);
    }
}
