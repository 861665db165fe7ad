//! Prober settings with their defaults.

use std::time::Duration;

use ipnet::IpNet;
use pantheon_store::Deployment;

use crate::address_policy::AddressPolicy;

/// Settings of one prober replica.
#[derive(Debug, Clone)]
pub struct ProberConfig {
    /// Which Redis (one server, Sentinel, Cluster; TLS). Its `Debug` hides passwords.
    pub redis: Deployment,
    pub prefix: String,
    pub cluster: String,
    /// This replica's id (letters, digits, `. _ - : @`); used for ownership hashing.
    pub id: String,
    /// Probe cadence while a node is alive.
    pub interval: Duration,
    /// Probe cadence while a node is suspect (or just failed, or is recovering).
    pub suspect_interval: Duration,
    /// Probe cadence while a node is dead.
    pub dead_interval: Duration,
    /// Random spread of each wait, as a fraction of it (0.1 = ±10%).
    pub jitter: f64,
    /// One probe's deadline: connect + response + body.
    pub timeout: Duration,
    /// HTTP statuses that count as healthy (default: 200..=299).
    pub success_statuses: Vec<(u16, u16)>,
    /// Most probes in flight at once.
    pub max_in_flight: usize,
    /// Bound on the extra probes of suspect (and just failed, or recovering) nodes, as a
    /// percentage of the steady rate (owned nodes / `interval`): beyond it their re-probes
    /// slow down, up to `interval` (Lifeguard's local-health multiplier). 0 turns it off.
    pub suspect_budget_percent: u32,
    /// Most response-body bytes read (the rest is not read).
    pub max_body_bytes: usize,
    /// Replica registration TTL; a stopped replica's nodes move to others within 2 × this.
    pub registration_ttl: Duration,
    /// Address ranges probes may not target, and exceptions.
    pub deny: Vec<IpNet>,
    pub allow: Vec<IpNet>,
    /// How often the nodes read model is checked for changes.
    pub refresh: Duration,
    /// How long in-flight probes may finish after SIGTERM.
    pub grace: Duration,
    /// Confirmed deaths (ADR 0008): mark probes `confirm=0`/`confirm=1` so that only a failed
    /// confirmation (fresh connections, or a second replica) can kill a node. `false` writes
    /// plain probes (the fold's rise/fall rule alone).
    pub confirm: bool,
    /// Fresh-connection attempts in one confirmation, sent at once; it succeeds if any does.
    pub confirm_attempts: usize,
    /// Self-suspicion (Lifeguard's local health): degraded when more than this percentage of
    /// the nodes probed since the oldest current failure streak began are failing...
    pub degraded_percent: u32,
    /// ...and at least this many of them are;
    pub degraded_min_failing: usize,
    /// or when the prober's own timers fire this late.
    pub lag_limit: Duration,
    /// HTTP clients to use instead of building this prober's own: a process running the
    /// probers of many clusters (`up --clusters`) gives them all the same one, so they share
    /// one connection pool and TLS configuration. Made from settings equal to these.
    pub http: Option<crate::http::HttpProber>,
}

impl ProberConfig {
    pub fn new(redis: Deployment, cluster: impl Into<String>) -> Self {
        Self {
            redis,
            prefix: "pantheon".into(),
            cluster: cluster.into(),
            id: default_id(),
            interval: Duration::from_secs(1),
            suspect_interval: Duration::from_millis(200),
            dead_interval: Duration::from_secs(5),
            jitter: 0.1,
            timeout: Duration::from_millis(500),
            success_statuses: vec![(200, 299)],
            max_in_flight: 512,
            suspect_budget_percent: 25,
            max_body_bytes: 64 * 1024,
            registration_ttl: Duration::from_secs(3),
            deny: AddressPolicy::default_deny(),
            allow: Vec::new(),
            refresh: Duration::from_millis(100),
            grace: Duration::from_secs(2),
            confirm: true,
            confirm_attempts: 3,
            degraded_percent: 50,
            degraded_min_failing: 8,
            lag_limit: Duration::from_millis(500),
            http: None,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        pantheon_domain::NodeId::new(&self.id).map_err(|e| format!("prober id: {e}"))?;
        for (name, d) in [
            ("interval", self.interval),
            ("suspect_interval", self.suspect_interval),
            ("dead_interval", self.dead_interval),
        ] {
            if d < Duration::from_millis(10) {
                return Err(format!("{name} {d:?} is too short (at least 10ms)"));
            }
        }
        if self.timeout.is_zero() {
            return Err("timeout must be positive".into());
        }
        if !(0.0..=0.5).contains(&self.jitter) {
            return Err(format!("jitter {} must be within 0..=0.5", self.jitter));
        }
        if self.registration_ttl < Duration::from_millis(300) {
            return Err("registration_ttl must be at least 300ms".into());
        }
        if self.confirm_attempts == 0 || self.confirm_attempts > 10 {
            return Err("confirm_attempts must be within 1..=10".into());
        }
        if self.degraded_percent > 100 {
            return Err(
                "degraded_percent must be within 0..=100 (0 turns self-suspicion off)".into(),
            );
        }
        if self.suspect_budget_percent > 1000 {
            return Err(
                "suspect_budget_percent must be within 0..=1000 (0 turns the bound off)".into(),
            );
        }
        if self.lag_limit < Duration::from_millis(10) {
            return Err("lag_limit must be at least 10ms".into());
        }
        if self.max_in_flight == 0 {
            return Err("max_in_flight must be at least 1".into());
        }
        if self
            .success_statuses
            .iter()
            .any(|(a, b)| a > b || *a < 100 || *b > 599)
        {
            return Err("success_statuses must be ranges within 100..=599".into());
        }
        Ok(())
    }

    pub fn layout(&self) -> pantheon_store::Layout {
        pantheon_store::Layout::new(&self.prefix, &self.cluster)
    }

    pub fn is_success(&self, status: u16) -> bool {
        self.success_statuses
            .iter()
            .any(|(a, b)| (*a..=*b).contains(&status))
    }
}

fn default_id() -> String {
    let host: String = std::env::var("HOSTNAME")
        .unwrap_or_else(|_| "prober".into())
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(64)
        .collect();
    format!(
        "{}-{}",
        if host.is_empty() { "prober" } else { &host },
        std::process::id()
    )
}
