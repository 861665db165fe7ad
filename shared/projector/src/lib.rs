//! The projector: the only writer of Pantheon's read models.
//!
//! It reads the log with `XREAD` from its checkpoint (ADR 0003), folds each entry with the pure
//! domain (`pantheon_domain::State::apply`), and commits each batch — read models, events,
//! rejections, checkpoint — in one `MULTI`/`EXEC` fenced by `WATCH` on the lease's fence and the
//! checkpoint (ADR 0001; ADR 0006 for failovers), so readers see a batch entirely or not at all
//! and an entry is applied exactly once in effect, however often the projector crashes.
//!
//! * [`config`] — settings and their defaults;
//! * [`runner`] — the leader/standby loop (lease, read, fold, commit);
//! * [`stage`] — turning fold results into commit operations;
//! * [`rebuild`] — folding the log from scratch (or from a snapshot), swapping it in;
//! * [`verify`] — comparing the live read models with a fold of the log (`rebuild --verify`);
//! * [`retention`] — snapshots, log trimming below them, events trimming;
//! * [`generation`] — moving the log to a new generation after a poisoned clock
//!   (`pantheon recover-clock`);
//! * `skew` — noticing a poisoned log clock and reporting it as a `clock_skew` entry;
//! * `tick` — a `tick` entry, so that log time reaches a damped node's reuse time on a quiet
//!   cluster;
//! * `handoff` — a `handoff_forced` entry for a node that did not release its keys within
//!   the policy's `handoff_timeout` (docs/adr/0016);
//! * `reseed` — a Redis that came back empty gets the leader's state back;
//! * `standby` — a standby keeps the state at the leader's last commit, to take over fast.

pub mod config;
pub mod generation;
mod handoff;
mod lease_keeper;
pub mod paging;
pub mod rebuild;
mod reseed;
pub mod retention;
pub mod runner;
mod skew;
pub mod stage;
mod standby;
mod tick;
pub mod verify;

pub use config::ProjectorConfig;
pub use runner::run;

impl ProjectorError {
    /// The master is unreachable or failing over (logged by the Redis handle already).
    pub fn is_outage(&self) -> bool {
        match self {
            ProjectorError::Store(e)
            | ProjectorError::Commit(pantheon_store::CommitError::Store(e)) => e.is_outage(),
            _ => false,
        }
    }

    /// Errors that retrying cannot fix: the run stops instead of looping.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ProjectorError::Config(_)
                | ProjectorError::Setting(_)
                | ProjectorError::Migrate(pantheon_store::migrate::MigrateError::TooNew { .. })
        )
    }
}

/// Errors that stop a projector run.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Store(#[from] pantheon_store::StoreError),
    #[error(transparent)]
    Commit(#[from] pantheon_store::CommitError),
    #[error(transparent)]
    Migrate(#[from] pantheon_store::migrate::MigrateError),
    #[error("commit task: {0}")]
    Task(String),
    #[error("bad configuration: {0}")]
    Config(String),
    #[error("bad configuration: [projector] {0}")]
    Setting(#[from] pantheon_store::setting::InvalidSetting),
    #[error("snapshot unusable: {0}")]
    Snapshot(String),
    /// Redis lost the cluster's data and this process holds no state to put back.
    #[error("{0}")]
    Lost(String),
    /// A re-seed did not happen (another leader, a checkpoint that appeared); retried.
    #[error("re-seed: {0}")]
    Reseed(String),
}
