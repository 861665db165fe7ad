//! What a Redis failure says about the master: the kinds the connection handle logs, backs off
//! on and resolves the master again for, and that callers branch on.

use std::fmt;

use redis::{ErrorKind, RedisError};

/// The kind of a failure to reach or use the cluster's master.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// `MOVED`: the slot is served elsewhere now.
    Moved,
    /// `ASK`, `TRYAGAIN`: a slot migration is in progress.
    Migrating,
    /// `READONLY`: a replica answered (the master failed over).
    ReadOnlyReplica,
    /// `MASTERDOWN`.
    MasterDown,
    /// `CLUSTERDOWN`.
    ClusterDown,
    /// `LOADING`: the server is loading its data set.
    Loading,
    /// `NOPERM`: this user may not run the command or touch the key.
    Permission,
    /// `WRONGPASS`, `NOAUTH`, or a failed `AUTH`: the data nodes refused the credentials.
    Authentication,
    /// A Sentinel refused the credentials for itself (not the data nodes' user).
    SentinelAuthentication,
    /// `UNBLOCKED`: a command blocked on a master that turned replica under it.
    Demoted,
    /// The TLS handshake failed.
    Tls,
    /// Nothing listens there.
    Refused,
    /// No answer in time.
    Timeout,
    /// The connection dropped, or another I/O error.
    ConnectionLost,
    /// The masters of the deployment could not be listed.
    Resolve,
    /// The servers found do not serve the slot as master.
    NotAMaster,
    /// Anything else.
    Other,
}

impl Failure {
    /// The kind of `e`.
    pub fn of(e: &RedisError) -> Self {
        if let Some(kind) = e.code().map(Self::of_code).filter(|k| *k != Self::Other) {
            return kind;
        }
        match e.kind() {
            ErrorKind::AuthenticationFailed => Self::Authentication,
            _ if crate::tls::explain(&format!("{e} {e:?}")).is_some() => Self::Tls,
            _ if e.is_connection_refusal() => Self::Refused,
            _ if e.is_timeout() => Self::Timeout,
            _ if e.is_connection_dropped() || e.is_io_error() => Self::ConnectionLost,
            _ => Self::Other,
        }
    }

    /// The kind of a Redis error code (`MOVED`, `READONLY`, ...).
    pub fn of_code(code: &str) -> Self {
        match code {
            "MOVED" => Self::Moved,
            "ASK" | "TRYAGAIN" => Self::Migrating,
            "READONLY" => Self::ReadOnlyReplica,
            "MASTERDOWN" => Self::MasterDown,
            "CLUSTERDOWN" => Self::ClusterDown,
            "LOADING" => Self::Loading,
            "NOPERM" => Self::Permission,
            "WRONGPASS" | "NOAUTH" => Self::Authentication,
            "UNBLOCKED" => Self::Demoted,
            _ => Self::Other,
        }
    }

    /// The words logs and errors use for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Moved => "moved",
            Self::Migrating => "migrating",
            Self::ReadOnlyReplica => "read-only replica",
            Self::MasterDown => "master down",
            Self::ClusterDown => "cluster down",
            Self::Loading => "loading",
            Self::Permission => "permission",
            Self::Authentication => "authentication",
            Self::SentinelAuthentication => "sentinel authentication",
            Self::Demoted => "demoted",
            Self::Tls => "tls",
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::ConnectionLost => "connection lost",
            Self::Resolve => "resolve",
            Self::NotAMaster => "not a master",
            Self::Other => "error",
        }
    }

    /// The connection no longer reaches the cluster's master: resolve it again.
    pub fn is_master_lost(self) -> bool {
        matches!(
            self,
            Self::Moved
                | Self::ReadOnlyReplica
                | Self::MasterDown
                | Self::ClusterDown
                | Self::Demoted
                | Self::Refused
                | Self::Timeout
                | Self::ConnectionLost
        )
    }

    /// Retrying the same command later may succeed (the master moved, is loading, a slot is
    /// migrating).
    pub fn is_transient(self) -> bool {
        self.is_master_lost() || matches!(self, Self::Migrating | Self::Loading)
    }

    /// Nothing answers there (as opposed to something answering badly: a password, TLS, ACL).
    pub fn is_unreachable(self) -> bool {
        matches!(self, Self::Refused | Self::Timeout | Self::ConnectionLost)
    }

    /// A failover or a move is under way: reconnect attempts stay frequent.
    pub fn is_failover(self) -> bool {
        matches!(
            self,
            Self::Refused
                | Self::Moved
                | Self::ReadOnlyReplica
                | Self::MasterDown
                | Self::ClusterDown
                | Self::Demoted
                | Self::NotAMaster
                | Self::ConnectionLost
        )
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_name_their_kind() {
        assert_eq!(Failure::of_code("MOVED"), Failure::Moved);
        assert_eq!(Failure::of_code("TRYAGAIN"), Failure::Migrating);
        assert_eq!(Failure::of_code("NOAUTH"), Failure::Authentication);
        assert_eq!(Failure::of_code("WHATEVER"), Failure::Other);
        assert!(Failure::Moved.is_master_lost() && Failure::Moved.is_transient());
        assert!(!Failure::Migrating.is_master_lost() && Failure::Migrating.is_transient());
        assert!(!Failure::Permission.is_transient());
        assert_eq!(Failure::ReadOnlyReplica.to_string(), "read-only replica");
    }
}
