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
//!
//! A replica that suspects itself confirms nothing (see [`crate::local_health`]).

use std::time::Duration;

use pantheon_domain::health::{Health, ProbeError};
use tokio::task::JoinSet;

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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

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
}
