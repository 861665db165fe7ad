//! `pantheon destroy --yes-i-am-sure`: deletes every key of the cluster (log, events, read
//! models, snapshot, archives, lease) on purpose. It writes a tombstone first, so a running
//! projector leader forgets the state it holds instead of putting it back
//! (docs/adr/0012-redis-that-comes-back-empty.md). Needs the operator role.

use std::time::Duration;

use serde_json::json;

use crate::cli::DestroyArgs;
use crate::config::Settings;
use crate::connect::Cluster;
use crate::error::CliError;

pub async fn run(args: DestroyArgs, settings: &Settings) -> anyhow::Result<()> {
    if !args.yes_i_am_sure {
        return Err(CliError::usage(format!(
            "pantheon destroy deletes every key of cluster {:?} (its log, events, nodes and \
             key owners) for good; run it again with --yes-i-am-sure to do that",
            settings.cluster
        ))
        .into());
    }
    // Unchecked: a cluster whose schema is newer than this binary can still be destroyed.
    let cluster = Cluster::connect_unchecked(settings).await?;
    let ttl = settings.projector.lease_ttl.max(Duration::from_secs(1));
    let by = format!(
        "pantheon destroy at {} ms (unix)",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let done = cluster
        .client
        .admin()
        .destroy(&by, ttl)
        .await
        .map_err(|e| CliError::failed(format!("could not destroy the cluster: {e}")))?;
    if args.json {
        return crate::output::json(&json!({
            "cluster": cluster.name,
            "deleted": done.deleted,
        }));
    }
    crate::outln!(
        "destroyed cluster {:?}: deleted {} keys; a running projector starts it empty",
        cluster.name,
        done.deleted
    );
    Ok(())
}
