//! Confirmed deaths and prober self-suspicion (issue 11, part 4; ADR 0008).
//!
//! **Confirmed deaths.** A prober that confirms deaths marks each probe entry it writes with a
//! `confirm` field: `confirm=0` for a regular probe (on its pooled keep-alive connection),
//! `confirm=1` for a confirmation — a probe on a fresh connection, or by a second prober
//! replica (SWIM's indirect probe). For such entries the fold decides:
//!
//! * a success counts as before (it breaks a failure streak and counts toward `rise`);
//! * a regular failure counts as before (alive → suspect, `fails` + 1), but never kills;
//! * a confirmation failure kills: a suspect node dies when the confirmation brings its
//!   consecutive failures to `fall` (or beyond: regular failures past `fall` keep it suspect
//!   until a confirmation fails too).
//! * With two or more prober replicas alive (the `probers` set of the state), a confirmation
//!   counts only from a replica that is not the node's owner (rendezvous hashing over the live
//!   replicas, the rule the probers split nodes with); the owner's own "confirmation" is then a
//!   regular failure.
//!
//! A probe entry without `confirm` (older probers, `redis-cli`) keeps the plain rise/fall rule,
//! so old logs replay to the same state.
//!
//! **Prober self-suspicion** (Lifeguard's local health). A prober that sees most of its nodes
//! fail at once, or whose own scheduling lags, writes `prober_degraded` (and holds back its
//! failure reports); once healthy again it writes `prober_recovered`. The fold turns each into
//! an event of the same name with the prober's numbers; it keeps no state for them.

use crate::entry::{DecodeError, ProbeResult};
use crate::event::EventKind;
use crate::health::{Health, NodeHealth, Transition};
use crate::ids::NodeId;
use crate::placement::{Member, Placement, Rendezvous};
use crate::policy::Policy;
use crate::wire::Fields;

/// A probe result written by a prober that confirms deaths (a `probe` entry with `confirm`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedProbe {
    pub result: ProbeResult,
    /// A confirmation (fresh connection or a second replica), not a regular probe.
    pub confirm: bool,
}

/// A prober's report on its own health (`prober_degraded` / `prober_recovered`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProberHealth {
    /// The prober replica's id.
    pub prober: String,
    /// `true`: it suspects itself (`prober_degraded`); `false`: healthy again.
    pub degraded: bool,
    /// Of the nodes it probed since the oldest current failure streak began, how many are
    /// failing (`failing` of `probed`).
    pub failing: u32,
    pub probed: u32,
    /// Its worst scheduling lag over the last second, in milliseconds.
    pub lag_ms: u32,
}

impl ProberHealth {
    pub fn kind(&self) -> &'static str {
        if self.degraded {
            "prober_degraded"
        } else {
            "prober_recovered"
        }
    }

    /// The event the fold makes of it.
    pub fn event(&self) -> EventKind {
        let (prober, failing, probed, lag_ms) =
            (self.prober.clone(), self.failing, self.probed, self.lag_ms);
        if self.degraded {
            EventKind::ProberDegraded {
                prober,
                failing,
                probed,
                lag_ms,
            }
        } else {
            EventKind::ProberRecovered {
                prober,
                failing,
                probed,
                lag_ms,
            }
        }
    }

    pub(crate) fn encode(&self, out: &mut Vec<(&'static str, String)>) {
        out.push(("prober", self.prober.clone()));
        out.push(("failing", self.failing.to_string()));
        out.push(("probed", self.probed.to_string()));
        out.push(("lag_ms", self.lag_ms.to_string()));
    }

    pub(crate) fn decode(f: &Fields<'_>, degraded: bool) -> Result<Self, DecodeError> {
        let kind = if degraded {
            "prober_degraded"
        } else {
            "prober_recovered"
        };
        f.only(
            kind,
            &["v", "type", "cmd", "prober", "failing", "probed", "lag_ms"],
        )?;
        let prober = NodeId::new(f.req("prober")?)?.to_string();
        let num = |name| Ok::<u32, DecodeError>(f.opt_num::<u32>(name)?.unwrap_or(0));
        Ok(Self {
            prober,
            degraded,
            failing: num("failing")?,
            probed: num("probed")?,
            lag_ms: num("lag_ms")?,
        })
    }
}

/// The prober replica that owns `node` among `probers` (rendezvous hashing with weight 1, as
/// the probers split nodes), or `None` without probers.
pub fn owner_among<'a>(probers: &'a [String], node: &NodeId) -> Option<&'a str> {
    let members: Vec<Member> = probers
        .iter()
        .filter_map(|p| NodeId::new(p).ok())
        .map(|node| Member { node, weight: 1 })
        .collect();
    let owner = Rendezvous::new(members).owner(node.as_str())?.clone();
    probers
        .iter()
        .find(|p| p.as_str() == owner.as_str())
        .map(String::as_str)
}

/// Whether a confirmation of `node` by `prober` counts, given the live prober replicas: with
/// two or more, only one by a replica other than the node's owner does.
pub fn confirmation_counts(
    probers: Option<&[String]>,
    node: &NodeId,
    prober: Option<&str>,
) -> bool {
    match probers {
        Some(live) if live.len() >= 2 => {
            prober.is_some_and(|p| owner_among(live, node).is_some_and(|owner| owner != p))
        }
        _ => true,
    }
}

/// How a probe result counts toward death.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// No `confirm` field: the plain rise/fall rule.
    Plain,
    /// A regular probe of a prober that confirms deaths: a failure never kills.
    Regular,
    /// A confirmation that counts: a failure kills at `fall`.
    Confirmation,
}

/// Folds one probe result into a node's health under `check`; returns the transitions, in
/// order, like [`NodeHealth::observe`].
pub fn observe(
    health: &mut NodeHealth,
    ok: bool,
    check: Check,
    policy: &Policy,
) -> Vec<Transition> {
    if ok || check == Check::Plain {
        return health.observe(ok, policy);
    }
    let mut out = Vec::new();
    health.successes = 0;
    health.fails = health.fails.saturating_add(1);
    if health.health == Health::Alive {
        health.health = Health::Suspect;
        out.push(Transition::Suspect);
    }
    if check == Check::Confirmation
        && health.health == Health::Suspect
        && health.fails >= policy.fall
    {
        health.health = Health::Dead;
        out.push(Transition::Died);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn regular_failures_never_kill_a_confirmation_does() {
        let p = Policy::default();
        let mut h = NodeHealth::default();
        for _ in 0..10 {
            observe(&mut h, false, Check::Regular, &p);
        }
        assert_eq!((h.health, h.fails), (Health::Suspect, 10));
        assert_eq!(
            observe(&mut h, false, Check::Confirmation, &p),
            vec![Transition::Died]
        );
    }

    #[test]
    fn a_confirmation_before_fall_only_counts_as_a_failure() {
        let p = Policy::default();
        let mut h = NodeHealth::default();
        assert_eq!(
            observe(&mut h, false, Check::Confirmation, &p),
            vec![Transition::Suspect]
        );
        observe(&mut h, false, Check::Confirmation, &p);
        assert_eq!(h.health, Health::Suspect);
        assert_eq!(
            observe(&mut h, false, Check::Confirmation, &p),
            vec![Transition::Died]
        );
    }

    #[test]
    fn with_two_probers_only_a_non_owner_confirms() {
        let live = ids(&["pa", "pb"]);
        let node = NodeId::new("n1").unwrap();
        let owner = owner_among(&live, &node).unwrap().to_owned();
        let other = live.iter().find(|p| **p != owner).unwrap();
        assert!(!confirmation_counts(Some(&live), &node, Some(&owner)));
        assert!(confirmation_counts(Some(&live), &node, Some(other)));
        assert!(!confirmation_counts(Some(&live), &node, None));
        assert!(confirmation_counts(Some(&ids(&["pa"])), &node, Some("pa")));
        assert!(confirmation_counts(None, &node, None));
    }
}
