//! Prober settings with their defaults. They are declared once, here: `[prober]` in
//! `pantheon.toml` (and `PANTHEON_PROBER__*`) deserializes straight into [`ProberConfig`],
//! durations as whole milliseconds in keys ending in `_ms` (docs/configuration.md).

use std::time::Duration;

use ipnet::IpNet;
use pantheon_store::Deployment;
use pantheon_store::setting::{self, InvalidSetting, at_least, millis};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::address_policy::AddressPolicy;

/// Settings of one prober replica. The fields without a key (`redis`, `prefix`, `cluster`,
/// `http`) come from the rest of the configuration, not from `[prober]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProberConfig {
    /// Which Redis (one server, Sentinel, Cluster; TLS). Its `Debug` hides passwords.
    #[serde(skip)]
    pub redis: Deployment,
    #[serde(skip)]
    pub prefix: String,
    #[serde(skip)]
    pub cluster: String,
    /// This replica's id (letters, digits, `. _ - : @`); used for ownership hashing.
    /// Default: the host name and process id.
    #[serde(deserialize_with = "setting::text")]
    pub id: String,
    /// Probe cadence while a node is alive.
    #[serde(rename = "interval_ms", with = "millis")]
    pub interval: Duration,
    /// Probe cadence while a node is suspect (or just failed, or is recovering).
    #[serde(rename = "suspect_interval_ms", with = "millis")]
    pub suspect_interval: Duration,
    /// Probe cadence while a node is dead.
    #[serde(rename = "dead_interval_ms", with = "millis")]
    pub dead_interval: Duration,
    /// Random spread of each wait, as a fraction of it (0.1 = ±10%).
    pub jitter: f64,
    /// One probe's deadline: connect + response + body.
    #[serde(rename = "timeout_ms", with = "millis")]
    pub timeout: Duration,
    /// HTTP statuses that count as healthy (default: 200..=299); written `"200-299"`, `"204"`.
    #[serde(with = "status_ranges")]
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
    #[serde(rename = "registration_ttl_ms", with = "millis")]
    pub registration_ttl: Duration,
    /// Address ranges probes may not target, and exceptions; written `"10.0.0.0/8"` or a
    /// single address.
    #[serde(with = "nets")]
    pub deny: Vec<IpNet>,
    #[serde(with = "nets")]
    pub allow: Vec<IpNet>,
    /// How often the nodes read model is checked for changes.
    #[serde(rename = "refresh_ms", with = "millis")]
    pub refresh: Duration,
    /// How long in-flight probes may finish after SIGTERM.
    #[serde(rename = "grace_ms", with = "millis")]
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
    /// ...and at least this many of them are (the least for the intermittent rule too);
    pub degraded_min_failing: usize,
    /// or when, within the last two probe round trips, of the nodes probed again after a
    /// failure at least this percentage answered (probes lost on the way, not nodes dying:
    /// see [`crate::local_health`]); 0 turns this rule off;
    pub intermittent_percent: u32,
    /// or when the prober's own timers fire this late.
    #[serde(rename = "lag_limit_ms", with = "millis")]
    pub lag_limit: Duration,
    /// HTTP clients to use instead of building this prober's own: a process running the
    /// probers of many clusters (`up --clusters`) gives them all the same one, so they share
    /// one connection pool and TLS configuration. Made from settings equal to these.
    #[serde(skip)]
    pub http: Option<crate::http::HttpProber>,
}

impl Default for ProberConfig {
    fn default() -> Self {
        Self::new(Deployment::default(), "default")
    }
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
            intermittent_percent: 50,
            lag_limit: Duration::from_millis(500),
            http: None,
        }
    }

    /// Checks values that would make the prober misbehave; the error names the key.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        pantheon_domain::NodeId::new(&self.id)
            .map_err(|e| InvalidSetting::new("id", format!("{:?}: {e}", self.id)))?;
        let least = Duration::from_millis(10);
        at_least("interval_ms", self.interval, least)?;
        at_least("suspect_interval_ms", self.suspect_interval, least)?;
        at_least("dead_interval_ms", self.dead_interval, least)?;
        at_least("timeout_ms", self.timeout, Duration::from_millis(1))?;
        at_least("refresh_ms", self.refresh, Duration::from_millis(1))?;
        at_least(
            "registration_ttl_ms",
            self.registration_ttl,
            Duration::from_millis(300),
        )?;
        at_least("lag_limit_ms", self.lag_limit, least)?;
        let bad = |key, problem: &str| InvalidSetting::new(key, problem);
        if !(0.0..=0.5).contains(&self.jitter) {
            return Err(InvalidSetting::new(
                "jitter",
                format!("{} must be within 0..=0.5", self.jitter),
            ));
        }
        if self.confirm_attempts == 0 || self.confirm_attempts > 10 {
            return Err(bad("confirm_attempts", "must be within 1..=10"));
        }
        if self.degraded_percent > 100 {
            return Err(bad(
                "degraded_percent",
                "must be within 0..=100 (0 turns self-suspicion off)",
            ));
        }
        if self.intermittent_percent > 100 {
            return Err(bad(
                "intermittent_percent",
                "must be within 0..=100 (0 turns the intermittent rule off)",
            ));
        }
        if self.suspect_budget_percent > 1000 {
            return Err(bad(
                "suspect_budget_percent",
                "must be within 0..=1000 (0 turns the bound off)",
            ));
        }
        if self.max_in_flight == 0 {
            return Err(bad("max_in_flight", "must be at least 1"));
        }
        if self.success_statuses.is_empty() {
            return Err(bad("success_statuses", "must not be empty"));
        }
        if self
            .success_statuses
            .iter()
            .any(|(a, b)| a > b || *a < 100 || *b > 599)
        {
            return Err(bad("success_statuses", "must be ranges within 100..=599"));
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

/// `["200-299", "404"]` ⇄ `[(200, 299), (404, 404)]`.
mod status_ranges {
    use super::*;

    pub fn serialize<S: Serializer>(ranges: &[(u16, u16)], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(ranges.iter().map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(u16, u16)>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| parse(s).map_err(serde::de::Error::custom))
            .collect()
    }

    pub(super) fn parse(s: &str) -> Result<(u16, u16), String> {
        let number = |x: &str| x.trim().parse::<u16>().ok();
        let range = match s.split_once('-') {
            Some((a, b)) => number(a).zip(number(b)),
            None => number(s).map(|a| (a, a)),
        };
        range.ok_or_else(|| format!("{s:?} is not a status or a range like \"200-299\""))
    }
}

/// `["10.0.0.0/8", "::1"]`: ranges, or single addresses.
mod nets {
    use super::*;

    pub fn serialize<S: Serializer>(nets: &[IpNet], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(nets.iter().map(ToString::to_string))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| parse(s).map_err(serde::de::Error::custom))
            .collect()
    }

    pub(super) fn parse(s: &str) -> Result<IpNet, String> {
        s.parse::<IpNet>()
            .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| format!("{s:?} is not an address or range like \"10.0.0.0/8\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_ranges_parse() {
        assert_eq!(status_ranges::parse("200-299"), Ok((200, 299)));
        assert_eq!(status_ranges::parse("404"), Ok((404, 404)));
        assert!(status_ranges::parse("2xx").is_err());
        assert!(nets::parse("10.0.0.0/8").is_ok());
        assert!(nets::parse("::1").is_ok());
        assert!(nets::parse("nope").is_err());
    }

    #[test]
    fn validation_names_the_key_as_written() {
        let mut c = ProberConfig::default();
        assert_eq!(c.validate(), Ok(()));
        c.interval = Duration::from_millis(5);
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "interval_ms 5ms is too short (at least 10ms)"
        );
        c.interval = Duration::from_secs(1);
        c.success_statuses.clear();
        assert_eq!(c.validate().unwrap_err().key, "success_statuses");
    }
}
