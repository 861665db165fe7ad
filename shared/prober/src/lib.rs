//! The prober: watches the health endpoints of the nodes it owns and reports results to the
//! log as `probe` entries. It decides nothing: the projector's fold turns results into
//! suspect/died/revived with the cluster's rise/fall thresholds.
//!
//! * [`config`] — cadences, timeout, success statuses, address policy, replica TTL;
//! * [`address_policy`] — refusing link-local and cloud-metadata targets;
//! * [`http`] — one probe: GET with timeout, capped body, no redirect off the host;
//! * [`schedule`] — per-node cadence (alive / suspect / dead) and what to report;
//! * [`confirm`] — confirmed deaths (ADR 0008);
//! * [`local_health`] — self-suspicion: when the prober doubts its own view (ADR 0008, 0019);
//! * [`registry`] — replica heartbeats and rendezvous ownership of nodes;
//! * [`runner`] — the loop tying them together, with graceful shutdown.

pub mod address_policy;
pub mod config;
pub mod confirm;
pub mod http;
pub mod load_estimate;
pub mod load_reports;
pub mod local_health;
pub mod registry;
pub mod runner;
pub mod schedule;

pub use config::ProberConfig;
pub use runner::run;

/// Errors that stop a prober run.
#[derive(Debug, thiserror::Error)]
pub enum ProberError {
    #[error(transparent)]
    Store(#[from] pantheon_store::StoreError),
    #[error(transparent)]
    Migrate(#[from] pantheon_store::migrate::MigrateError),
    #[error("bad configuration: {0}")]
    Config(String),
    #[error("bad configuration: [prober] {0}")]
    Setting(#[from] pantheon_store::setting::InvalidSetting),
}
