//! The process's own Prometheus metrics: what the projector and the prober running in this
//! process did (entries folded, commit times, probes sent), and the projector's role. One set
//! per process, like Prometheus's default registry, so the libraries update them without a
//! handle being threaded through every call; the HTTP endpoint (`pantheon-service`)
//! registers them next to the cluster gauges it reads from Redis at scrape time.
//!
//! Every label has a small fixed set of values (an outcome, an error kind, a rejection
//! reason, a cause of moves): no node ids, no keys.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU8, Ordering};

use pantheon_domain::Rejection;
use pantheon_domain::event::EventKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `pantheon_entries_total` labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EntryLabels {
    /// `applied` or `rejected`.
    pub outcome: &'static str,
    /// Why an entry was rejected (`decode`, `unknown_node`, ...); empty when applied.
    pub reason: &'static str,
}

/// `pantheon_probes_total` labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// `ok` or `failed`.
    pub outcome: &'static str,
    /// `ok`, or the failure: `refused`, `timeout`, `status`, `protocol`, `policy`.
    pub kind: &'static str,
}

/// `pantheon_takeovers_total` labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TakeoverLabels {
    /// `warm` (the standby's state, caught up with the log's tail) or `loaded` (read models
    /// loaded, or rebuilt from the log).
    pub start: &'static str,
}

/// `pantheon_moves_total` labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MoveLabels {
    /// Why keys moved, by the event that says so: `rebalance` (every owner change of
    /// assigned keys, whatever the cause), `handoff` (released with their state),
    /// `handoff_forced` (moved without it), `load` (hot keys load placement sent to another
    /// owner; they move through a hand-off), `load_replica` (hot keys whose read replicas
    /// changed).
    pub cause: &'static str,
}

/// What this process's projector is doing, for `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No projector runs in this process (or it stopped).
    None,
    /// Waiting for the lease.
    Standby,
    /// Holding the lease and committing.
    Leading,
}

/// The process's metrics.
#[derive(Debug)]
pub struct ProcessMetrics {
    pub entries: Family<EntryLabels, Counter>,
    pub commit_duration: Histogram,
    pub probes: Family<ProbeLabels, Counter>,
    pub probe_latency: Histogram,
    /// 1 while this process's projector leads.
    pub leader: Gauge,
    /// Leading terms begun, by where their state came from.
    pub takeovers: Family<TakeoverLabels, Counter>,
    /// Keys moved (or asked to), by cause: [`MoveLabels`].
    pub moves: Family<MoveLabels, Counter>,
    /// 1 while this process's standby holds the state at the leader's last commit.
    pub standby_warm: Gauge,
    role: AtomicU8,
    /// Serving many clusters (`up --clusters`, docs/adr/0010): how many this process owns
    /// (runs the projector and prober of), and how many processes share them.
    pub fleet_clusters_owned: Gauge,
    pub fleet_processes: Gauge,
    fleet: std::sync::atomic::AtomicBool,
}

static METRICS: LazyLock<ProcessMetrics> = LazyLock::new(|| ProcessMetrics {
    entries: Family::default(),
    // 0.5 ms .. ~4 s: a commit is a Lua script over one batch.
    commit_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
    probes: Family::default(),
    // 1 ms .. ~8 s: probe timeouts are configured in hundreds of milliseconds.
    probe_latency: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
    leader: Gauge::default(),
    takeovers: Family::default(),
    moves: Family::default(),
    standby_warm: Gauge::default(),
    role: AtomicU8::new(0),
    fleet_clusters_owned: Gauge::default(),
    fleet_processes: Gauge::default(),
    fleet: std::sync::atomic::AtomicBool::new(false),
});

/// The process's metrics.
pub fn process() -> &'static ProcessMetrics {
    &METRICS
}

impl ProcessMetrics {
    /// Registers them under `pantheon_` in `registry`.
    pub fn register(&'static self, registry: &mut Registry) {
        registry.register(
            "pantheon_entries",
            "Log entries folded by this process's projector, by outcome and rejection reason",
            self.entries.clone(),
        );
        registry.register(
            "pantheon_commit_duration_seconds",
            "Time of one atomic commit (read models, events, checkpoint) in Redis",
            self.commit_duration.clone(),
        );
        registry.register(
            "pantheon_probes",
            "Health probes sent by this process's prober, by outcome and failure kind",
            self.probes.clone(),
        );
        registry.register(
            "pantheon_probe_latency_seconds",
            "Time from sending a probe to its result",
            self.probe_latency.clone(),
        );
        registry.register(
            "pantheon_leader",
            "1 while this process's projector holds the lease",
            self.leader.clone(),
        );
        registry.register(
            "pantheon_takeovers",
            "Leading terms begun by this process's projector, by where the state came from",
            self.takeovers.clone(),
        );
        registry.register(
            "pantheon_moves",
            "Keys moved by this process's projector, by cause (rebalance counts every owner change)",
            self.moves.clone(),
        );
        registry.register(
            "pantheon_standby_warm",
            "1 while this process's standby projector holds the state at the leader's last commit",
            self.standby_warm.clone(),
        );
        registry.register(
            "pantheon_fleet_clusters_owned",
            "Clusters whose projector and prober this process runs (up --clusters)",
            self.fleet_clusters_owned.clone(),
        );
        registry.register(
            "pantheon_fleet_processes",
            "Live processes sharing the clusters with this one (up --clusters)",
            self.fleet_processes.clone(),
        );
    }

    /// Records this process's share of a fleet (and that it serves one).
    pub fn set_fleet(&self, owned: usize, processes: usize) {
        self.fleet.store(true, Ordering::Relaxed);
        self.fleet_clusters_owned.set(owned as i64);
        self.fleet_processes.set(processes as i64);
    }

    /// `(owned, processes)` when this process serves a fleet.
    pub fn fleet(&self) -> Option<(i64, i64)> {
        self.fleet
            .load(Ordering::Relaxed)
            .then(|| (self.fleet_clusters_owned.get(), self.fleet_processes.get()))
    }

    /// One entry folded: applied, or rejected and why.
    pub fn entry(&self, result: Result<(), &Rejection>) {
        let labels = match result {
            Ok(()) => EntryLabels {
                outcome: "applied",
                reason: "",
            },
            Err(r) => EntryLabels {
                outcome: "rejected",
                reason: rejection_reason(r),
            },
        };
        self.entries.get_or_create(&labels).inc();
    }

    /// Counts the keys an event says moved ([`MoveLabels`]).
    pub fn event(&self, kind: &EventKind) {
        let count = |cause: &'static str, n: u64| {
            if n > 0 {
                self.moves.get_or_create(&MoveLabels { cause }).inc_by(n);
            }
        };
        match kind {
            EventKind::Rebalanced { moved, .. } => count("rebalance", *moved),
            EventKind::HandedOff { keys, .. } => count("handoff", *keys),
            EventKind::HandoffForced { keys, .. } => count("handoff_forced", *keys),
            EventKind::LoadBalanced {
                moved, replicas, ..
            } => {
                count("load", *moved);
                count("load_replica", *replicas);
            }
            _ => {}
        }
    }

    /// One probe result; `error` is the failure kind's name.
    pub fn probe(&self, ok: bool, error: Option<&'static str>, latency_ms: u32) {
        let labels = ProbeLabels {
            outcome: if ok { "ok" } else { "failed" },
            kind: if ok { "ok" } else { error.unwrap_or("failed") },
        };
        self.probes.get_or_create(&labels).inc();
        self.probe_latency.observe(f64::from(latency_ms) / 1000.0);
    }

    /// A leading term began from the standby's warm state, or from a load.
    pub fn took_over(&self, warm: bool) {
        let start = if warm { "warm" } else { "loaded" };
        self.takeovers
            .get_or_create(&TakeoverLabels { start })
            .inc();
    }

    /// Takeovers so far that began from a warm state.
    pub fn warm_takeovers(&self) -> u64 {
        self.takeovers
            .get_or_create(&TakeoverLabels { start: "warm" })
            .get()
    }

    pub fn set_role(&self, role: Role) {
        let (code, leading) = match role {
            Role::None => (0, 0),
            Role::Standby => (1, 0),
            Role::Leading => (2, 1),
        };
        self.role.store(code, Ordering::Relaxed);
        self.leader.set(leading);
    }

    pub fn role(&self) -> Role {
        match self.role.load(Ordering::Relaxed) {
            1 => Role::Standby,
            2 => Role::Leading,
            _ => Role::None,
        }
    }
}

/// A bounded label for a rejection: the kind of reason, never its text (which names nodes).
pub fn rejection_reason(r: &Rejection) -> &'static str {
    match r {
        Rejection::Decode(_) => "decode",
        Rejection::UnknownNode(_) => "unknown_node",
        Rejection::TooManyNodes => "too_many_nodes",
        Rejection::RingTooLarge { .. } => "ring_too_large",
        Rejection::FutureEpoch { .. } => "future_epoch",
        Rejection::BadDamping { .. } => "bad_damping",
        Rejection::CmdReused { .. } => "cmd_reused",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn metrics_encode_with_bounded_labels() {
        let m = process();
        m.entry(Ok(()));
        m.entry(Err(&Rejection::TooManyNodes));
        m.probe(false, Some("refused"), 3);
        m.set_role(Role::Leading);
        m.event(&EventKind::LoadBalanced {
            moved: 2,
            replicas: 3,
            busiest: 140,
        });
        m.event(&EventKind::Assigned { keys: 9 });
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"pantheon_entries_total{outcome="rejected",reason="too_many_nodes"}"#),
            "{text}"
        );
        assert!(
            text.contains(r#"pantheon_moves_total{cause="load"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"pantheon_moves_total{cause="load_replica"} 3"#),
            "{text}"
        );
        // Assigning keys moves none.
        let moves = text
            .lines()
            .filter(|l| l.starts_with("pantheon_moves_total{"))
            .count();
        assert_eq!(moves, 2, "{text}");
        assert!(
            text.contains(r#"pantheon_probes_total{outcome="failed",kind="refused"} 1"#),
            "{text}"
        );
        assert!(text.contains("pantheon_leader 1"), "{text}");
        assert_eq!(m.role(), Role::Leading);
    }
}
