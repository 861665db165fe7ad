//! [`Admin`]: the operator's jobs on a cluster, apart from the everyday reads and writes so
//! that nobody calls them by accident: its schema (check and migrate), its permissions, its
//! slot, a recorded data loss, and deleting it.

use std::time::Duration;

use pantheon_store::acl::{self, Role};
use pantheon_store::destroy::Destroyed;
use pantheon_store::migrate::{self, MigrateError, MigrateReport};
use pantheon_store::migration::Migration;
use pantheon_store::{destroy, keys, log, reseed};

use crate::{ClientError, Pantheon};

/// Administrative operations on one cluster, from [`Pantheon::admin`]. Most need a Redis
/// user with the operator role (`pantheon acl`).
#[derive(Debug)]
pub struct Admin<'a> {
    client: &'a Pantheon,
}

impl Pantheon {
    /// The administrative operations on this cluster (schema, permissions, destroy, ...).
    ///
    /// ```no_run
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), Box<dyn std::error::Error>> {
    /// let report = p.admin().migrate().await?;
    /// println!("schema version {} → {}", report.from, report.to);
    /// # Ok(()) }
    /// ```
    pub fn admin(&self) -> Admin<'_> {
        Admin { client: self }
    }
}

impl Admin<'_> {
    /// The cluster's schema version; fails when it is newer than this binary knows.
    pub async fn check_schema(&self) -> Result<u64, MigrateError> {
        migrate::check(&mut self.client.con(), self.client.layout()).await
    }

    /// Applies the cluster's pending schema migrations (idempotent, under a lock).
    pub async fn migrate(&self) -> Result<MigrateReport, MigrateError> {
        migrate::run(&mut self.client.con(), self.client.layout()).await
    }

    /// Checks, without doing any of it, that this client's Redis user may do `role`'s job on
    /// the cluster; the error names the first command and key refused.
    pub async fn check_permissions(&self, role: Role) -> Result<(), ClientError> {
        let redis = self.client.redis();
        // The check runs a transaction, which must not share its connection.
        let mut con = redis.dedicated().await?;
        Ok(acl::check(&mut con, role, self.client.layout(), redis.user()).await?)
    }

    /// The Redis Cluster hash slot every key of this cluster lives in.
    pub fn slot(&self) -> u16 {
        self.client.redis().slot()
    }

    /// A half-finished migration of the cluster's slot, if any (`None` outside Redis
    /// Cluster).
    pub async fn slot_migration(&self) -> Result<Option<Migration>, ClientError> {
        Ok(self.client.redis().migration().await?)
    }

    /// Why the cluster's data is recorded as lost, if a projector found the log and
    /// checkpoint gone with no state to put back.
    pub async fn lost(&self) -> Result<Option<String>, ClientError> {
        Ok(reseed::lost(&mut self.client.con(), self.client.layout()).await?)
    }

    /// Entries in the log.
    pub async fn log_len(&self) -> Result<u64, ClientError> {
        Ok(log::len(&mut self.client.con(), self.client.layout()).await?)
    }

    /// Deletes the cluster on purpose, tombstone first so a running leader forgets its state
    /// instead of putting it back. `by` says who and when (in the leader's log line);
    /// `lease_ttl` is the projectors' lease time to live.
    pub async fn destroy(&self, by: &str, lease_ttl: Duration) -> Result<Destroyed, ClientError> {
        let (con, layout) = (&mut self.client.con(), self.client.layout());
        Ok(destroy::destroy(con, layout, by, lease_ttl).await?)
    }

    /// Deletes every key of a throw-away cluster (the demo's) without a tombstone; returns
    /// how many. Never for a live cluster: use [`Admin::destroy`].
    pub async fn delete_scratch_cluster(&self) -> Result<u64, ClientError> {
        Ok(keys::delete_cluster(&mut self.client.con(), self.client.layout()).await?)
    }
}
