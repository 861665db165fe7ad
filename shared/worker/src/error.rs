//! [`WorkerError`]: everything starting or running a worker can fail with.

use std::path::PathBuf;

use pantheon_client::ClientError;

/// What an application callback returns when it fails: any error.
pub type AppError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a worker could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// A call to Pantheon failed (join, leave, drain, reading the feed).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The state file could not be read or written.
    #[error("state file {path}: {source}")]
    StateIo {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The state file holds something this library never writes (or another node's state).
    #[error("state file {path}: {reason}")]
    StateDamaged { path: PathBuf, reason: String },
    /// The health endpoint could not listen.
    #[error("health endpoint on {addr}: {source}")]
    Health {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// An application callback failed. The change it was given is not recorded as
    /// delivered, so a restart delivers it again.
    #[error("{callback} failed: {source}")]
    Callback {
        callback: &'static str,
        source: AppError,
    },
    /// The follow task ended abnormally (it panicked in an application callback).
    #[error("the worker's follow task ended abnormally: {0}")]
    Task(String),
}
