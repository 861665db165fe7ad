//! [`ClientError`]: everything a client call can fail with, as one typed error.

use std::time::Duration;

use pantheon_domain::{DecodeError, EntryId};
use pantheon_store::StoreError;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The input was refused before anything was sent, for the reason the projector would
    /// give (the client runs the same decoder).
    #[error("invalid input: {0}")]
    Invalid(#[from] DecodeError),
    /// The projector applied the entry by rejecting it (e.g. `leave` of an unknown node).
    /// The state is unchanged; `reason` is the one in the `rejected` stream.
    #[error("log entry {id} was rejected: {reason}")]
    Rejected { id: EntryId, reason: String },
    /// [`crate::Pantheon::wait_applied`] gave up.
    #[error(
        "log entry {id} was not applied within {waited:?} ({}); is a projector running for cluster {cluster:?}?",
        progress(.last_applied)
    )]
    Timeout {
        id: EntryId,
        waited: Duration,
        /// The last entry the projector had applied when the wait ended.
        last_applied: Option<EntryId>,
        cluster: String,
    },
    /// Bad options (cluster name, prefix, subscription settings).
    #[error("bad configuration: {0}")]
    Config(String),
    /// Redis answered with an error, or the connection failed mid-command: the store's
    /// error, whose [`StoreError::failure`] says what kind.
    #[error(transparent)]
    Redis(StoreError),
    /// The master cannot be found or reached (the reason never holds a password).
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// The entry is in the log on the master, but fewer replicas than required confirmed it
    /// in time: it may be lost if the master fails now. Do not treat it as written.
    #[error(
        "log entry {id} was appended on the master but only {acked} of {wanted} replica(s) confirmed it within {waited:?}: it may be lost if the master fails now"
    )]
    NotReplicated {
        id: EntryId,
        acked: u32,
        wanted: u32,
        waited: Duration,
    },
    /// Redis answered in a shape the client does not expect.
    #[error("unexpected reply from redis: {0}")]
    Reply(String),
    /// A read model holds something Pantheon never writes there.
    #[error("unexpected data in {key}: {reason}")]
    Damaged { key: String, reason: String },
}

fn progress(last: &Option<EntryId>) -> String {
    match last {
        Some(id) => format!("the projector has applied up to {id}"),
        None => "nothing has been applied yet".to_owned(),
    }
}

impl ClientError {
    /// What kind of Redis failure this is, when Redis answered with an error.
    pub fn failure(&self) -> Option<pantheon_store::Failure> {
        match self {
            ClientError::Redis(e) => e.failure(),
            _ => None,
        }
    }

    /// True when Redis refused the command to this user (`NOPERM`): retrying cannot help.
    pub fn is_permission_denied(&self) -> bool {
        self.failure() == Some(pantheon_store::Failure::Permission)
    }

    /// The projector's reason, when this is a rejection.
    pub fn rejection_reason(&self) -> Option<&str> {
        match self {
            ClientError::Rejected { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

impl From<StoreError> for ClientError {
    fn from(e: StoreError) -> Self {
        match e {
            e @ StoreError::Redis(_) => ClientError::Redis(e),
            StoreError::Unavailable { reason, .. } => ClientError::Unavailable(reason),
            StoreError::Reply(reason) => ClientError::Reply(reason),
            StoreError::Damaged { key, reason } => ClientError::Damaged { key, reason },
        }
    }
}
