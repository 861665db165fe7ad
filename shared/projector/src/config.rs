//! Projector settings. None of them changes a decision (those are cluster policy, in the
//! log); they only change how fast and how much is kept. They are declared once, here:
//! `[projector]` in `pantheon.toml` (and `PANTHEON_PROJECTOR__*`) deserializes straight into
//! [`ProjectorConfig`], durations as whole milliseconds in keys ending in `_ms`, where 0
//! switches an optional limit off (docs/configuration.md).

use std::time::Duration;

use pantheon_store::Deployment;
use pantheon_store::setting::{
    self, InvalidSetting, at_least, count_or_off, millis, millis_or_off,
};
use serde::{Deserialize, Serialize};

/// Settings of one projector process. The fields without a key (`redis`, `prefix`,
/// `cluster`) come from the rest of the configuration, not from `[projector]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectorConfig {
    /// Which Redis (one server, Sentinel, Cluster; TLS). Its `Debug` hides passwords.
    #[serde(skip)]
    pub redis: Deployment,
    /// Key prefix (`pantheon`): keys are `<prefix>:{<cluster>}:...`.
    #[serde(skip)]
    pub prefix: String,
    #[serde(skip)]
    pub cluster: String,
    /// This process's name: consumer name in the group and lease holder label.
    /// Default: the host name and process id.
    #[serde(deserialize_with = "setting::text")]
    pub instance: String,
    /// Lease time to live; a standby takes over at most this long after the leader stops.
    #[serde(rename = "lease_ttl_ms", with = "millis")]
    pub lease_ttl: Duration,
    /// Most log entries read per batch.
    pub batch_entries: usize,
    /// A batch is committed once its operations reach this many arguments, so one commit
    /// (which blocks Redis while it runs) stays in the tens of milliseconds.
    pub batch_max_args: usize,
    /// How long one blocking read waits for new entries.
    #[serde(rename = "block_ms", with = "millis")]
    pub block: Duration,
    /// Write a snapshot after this many applied entries (0 = never).
    pub snapshot_every: u64,
    /// Trim the log below the latest snapshot, keeping at least this much history.
    #[serde(rename = "log_min_age_ms", with = "millis_or_off")]
    pub log_min_age: Option<Duration>,
    /// Keep at most about this many events (`XTRIM MAXLEN ~`).
    #[serde(with = "count_or_off")]
    pub events_max_len: Option<u64>,
    /// Drop events older than this (`XTRIM MINID ~`).
    #[serde(rename = "events_max_age_ms", with = "millis_or_off")]
    pub events_max_age: Option<Duration>,
    /// How often the leader compares the prober registry with the last reported set and logs
    /// a `probers` entry when it changed (so "no prober alive" becomes an event). `None`
    /// disables the watchdog.
    #[serde(rename = "prober_watchdog_ms", with = "millis_or_off")]
    pub prober_watchdog: Option<Duration>,
    /// An entry whose id runs ahead of Redis's clock by more than this is reported as a
    /// `clock_skew` entry and a log error (docs/adr/0009). `None` disables the check.
    #[serde(rename = "clock_skew_bound_ms", with = "millis_or_off")]
    pub clock_skew_bound: Option<Duration>,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self::new(Deployment::default(), "default")
    }
}

impl ProjectorConfig {
    pub fn new(redis: Deployment, cluster: impl Into<String>) -> Self {
        Self {
            redis,
            prefix: "pantheon".into(),
            cluster: cluster.into(),
            instance: default_instance(),
            lease_ttl: Duration::from_secs(5),
            batch_entries: 500,
            batch_max_args: 200_000,
            block: Duration::from_millis(500),
            snapshot_every: 100_000,
            log_min_age: Some(Duration::from_secs(7 * 24 * 3600)),
            events_max_len: Some(1_000_000),
            events_max_age: Some(Duration::from_secs(30 * 24 * 3600)),
            prober_watchdog: Some(Duration::from_secs(1)),
            clock_skew_bound: Some(Duration::from_secs(60)),
        }
    }

    /// Checks values that would make the projector misbehave; the error names the key.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        check_name("cluster", &self.cluster).map_err(|e| InvalidSetting::new("cluster", e))?;
        check_name("prefix", &self.prefix).map_err(|e| InvalidSetting::new("prefix", e))?;
        at_least("lease_ttl_ms", self.lease_ttl, Duration::from_millis(300))?;
        at_least("block_ms", self.block, Duration::from_millis(1))?;
        if self.block >= self.lease_ttl {
            return Err(InvalidSetting::new(
                "block_ms",
                "must be shorter than lease_ttl_ms",
            ));
        }
        if self.batch_entries == 0 {
            return Err(InvalidSetting::new("batch_entries", "must be at least 1"));
        }
        if self.batch_max_args < 1000 {
            return Err(InvalidSetting::new(
                "batch_max_args",
                "must be at least 1000",
            ));
        }
        Ok(())
    }

    pub fn layout(&self) -> pantheon_store::Layout {
        pantheon_store::Layout::new(&self.prefix, &self.cluster)
    }
}

/// Cluster names and prefixes end up in key names and SCAN patterns: keep them plain.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("{what} must be 1 to 64 characters, got {name:?}"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "{what} {name:?} contains {c:?}; use letters, digits, - _ ."
        ));
    }
    Ok(())
}

fn default_instance() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "projector".into());
    format!("{host}-{}", std::process::id())
}
