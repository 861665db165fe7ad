//! The health state machine of one node, HAProxy rise/fall style:
//!
//! * joining → alive on the first successful probe (a node owns nothing before its health
//!   endpoint answered once); failures while joining only count;
//! * alive → suspect on the first failed probe;
//! * suspect → dead once `fall` consecutive probes failed (counting that first one);
//! * suspect or dead → alive after `rise` consecutive successful probes.
//!
//! A success resets the failure count and a failure resets the success count, so only
//! consecutive results count. Epochs are checked by the caller (the fold).

use std::fmt;
use std::str::FromStr;

use crate::policy::Policy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Health {
    /// Joined, and no probe has succeeded yet in this epoch: not in placement.
    Joining,
    Alive,
    Suspect,
    Dead,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Joining => "joining",
            Health::Alive => "alive",
            Health::Suspect => "suspect",
            Health::Dead => "dead",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Health {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "joining" => Ok(Health::Joining),
            "alive" => Ok(Health::Alive),
            "suspect" => Ok(Health::Suspect),
            "dead" => Ok(Health::Dead),
            other => Err(format!("unknown health {other:?}")),
        }
    }
}

/// Why a probe failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeError {
    /// The connection was refused or reset (the process is gone).
    Refused,
    /// No answer within the probe timeout (the process hangs, or the network drops packets).
    Timeout,
    /// An answer with a status outside the success set.
    Status,
    /// An answer that is not valid HTTP, or a redirect off the host.
    Protocol,
    /// The target is in a denied address range (link-local, cloud metadata, configured).
    Policy,
}

impl ProbeError {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeError::Refused => "refused",
            ProbeError::Timeout => "timeout",
            ProbeError::Status => "status",
            ProbeError::Protocol => "protocol",
            ProbeError::Policy => "policy",
        }
    }
}

impl FromStr for ProbeError {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "refused" => ProbeError::Refused,
            "timeout" => ProbeError::Timeout,
            "status" => ProbeError::Status,
            "protocol" => ProbeError::Protocol,
            "policy" => ProbeError::Policy,
            _ => return Err(()),
        })
    }
}

/// A health change decided by [`NodeHealth::observe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// joining → alive: the first successful probe
    Ready,
    /// alive → suspect
    Suspect,
    /// suspect → dead
    Died,
    /// dead → alive
    Revived,
    /// suspect → alive
    Recovered,
}

/// Health of one node in its current epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeHealth {
    pub health: Health,
    /// Consecutive failed probes.
    pub fails: u32,
    /// Consecutive successful probes while suspect or dead (0 while alive).
    pub successes: u32,
}

impl Default for NodeHealth {
    fn default() -> Self {
        Self {
            health: Health::Alive,
            fails: 0,
            successes: 0,
        }
    }
}

impl NodeHealth {
    /// The health of a node that just joined: no probe has answered yet.
    pub fn joining() -> Self {
        Self {
            health: Health::Joining,
            fails: 0,
            successes: 0,
        }
    }

    /// Folds one probe result in; returns the transitions it caused, in order (a failure can
    /// cause both `Suspect` and `Died` when `fall` is 1).
    pub fn observe(&mut self, ok: bool, policy: &Policy) -> Vec<Transition> {
        let mut out = Vec::new();
        if ok {
            self.fails = 0;
            if self.health == Health::Joining {
                self.health = Health::Alive;
                out.push(Transition::Ready);
                return out;
            }
            if self.health == Health::Alive {
                return out;
            }
            self.successes = self.successes.saturating_add(1);
            if self.successes >= policy.rise {
                out.push(match self.health {
                    Health::Dead => Transition::Revived,
                    _ => Transition::Recovered,
                });
                self.health = Health::Alive;
                self.successes = 0;
            }
        } else {
            self.successes = 0;
            self.fails = self.fails.saturating_add(1);
            if self.health == Health::Alive {
                self.health = Health::Suspect;
                out.push(Transition::Suspect);
            }
            if self.health == Health::Suspect && self.fails >= policy.fall {
                self.health = Health::Dead;
                out.push(Transition::Died);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(results: &[bool], policy: &Policy) -> (NodeHealth, Vec<Transition>) {
        let mut h = NodeHealth::default();
        let mut all = Vec::new();
        for &ok in results {
            all.extend(h.observe(ok, policy));
        }
        (h, all)
    }

    #[test]
    fn dies_after_fall_consecutive_failures() {
        let p = Policy::default(); // fall 3, rise 2
        let (h, t) = run(&[false, false], &p);
        assert_eq!((h.health, t), (Health::Suspect, vec![Transition::Suspect]));
        let (h, t) = run(&[false, false, false], &p);
        assert_eq!(
            (h.health, t),
            (Health::Dead, vec![Transition::Suspect, Transition::Died])
        );
    }

    #[test]
    fn a_joining_node_is_alive_after_its_first_success_and_failures_only_count() {
        let p = Policy::default();
        let mut h = NodeHealth::joining();
        for _ in 0..5 {
            assert_eq!(h.observe(false, &p), vec![]);
        }
        assert_eq!((h.health, h.fails), (Health::Joining, 5));
        assert_eq!(h.observe(true, &p), vec![Transition::Ready]);
        assert_eq!((h.health, h.fails), (Health::Alive, 0));
    }

    #[test]
    fn a_success_breaks_the_failure_streak() {
        let (h, t) = run(&[false, false, true, false, false], &Policy::default());
        assert_eq!(h.health, Health::Suspect);
        assert_eq!(t, vec![Transition::Suspect]);
    }

    #[test]
    fn rise_successes_revive_or_recover() {
        let p = Policy::default();
        let (h, t) = run(&[false, true, true], &p);
        assert_eq!(h.health, Health::Alive);
        assert_eq!(t, vec![Transition::Suspect, Transition::Recovered]);
        let (h, t) = run(&[false, false, false, true, false, true, true], &p);
        assert_eq!(h.health, Health::Alive);
        assert_eq!(
            t,
            vec![Transition::Suspect, Transition::Died, Transition::Revived]
        );
    }

    #[test]
    fn fall_one_goes_straight_to_dead() {
        let p = Policy {
            fall: 1,
            ..Policy::default()
        };
        let (h, t) = run(&[false], &p);
        assert_eq!(h.health, Health::Dead);
        assert_eq!(t, vec![Transition::Suspect, Transition::Died]);
    }
}
