//! `pantheon recover-clock`: moves the log to a new generation after an entry id ran far
//! ahead of Redis's clock (docs/adr/0009-a-clock-that-cannot-be-poisoned.md). All state is
//! kept; entries not applied yet move to the new log; the old log is kept under an archive
//! key. Needs the operator role.

use std::time::Duration;

use serde_json::json;

use crate::cli::RecoverClockArgs;
use crate::config::Settings;
use crate::connect::Cluster;
use crate::error::CliError;

pub async fn run(args: RecoverClockArgs, settings: &Settings) -> anyhow::Result<()> {
    let (cluster, status) = Cluster::projector_health(settings).await?;
    let ahead = status.projector.log_ahead_ms;
    let bound = settings.projector.clock_skew_bound;
    if !args.force && bound.is_none_or(|bound| Duration::from_millis(ahead) <= bound) {
        return Err(CliError::failed(format!(
            "the log's clock is fine (its newest id is {} ahead of Redis's clock, bound {}): \
             nothing to recover; --force moves the log to a new generation anyway",
            crate::output::duration(Duration::from_millis(ahead)),
            crate::output::duration(bound.unwrap_or_default()),
        ))
        .into());
    }
    let ttl = settings.projector.lease_ttl.max(Duration::from_secs(1));
    // The generation switch is the projector's code (fenced like its commits), which the
    // client library does not link: it runs here, on the client's connection.
    let switched = pantheon_projector::generation::recover_clock(
        cluster.client.redis(),
        &cluster.layout,
        "recover-clock",
        ttl,
    )
    .await
    .map_err(|e| CliError::failed(format!("could not move the log: {e}")))?;
    if args.json {
        return crate::output::json(&json!({
            "cluster": cluster.name,
            "archive": switched.archive,
            "previous": switched.previous.to_string(),
            "moved": switched.moved,
            "marker": switched.marker.to_string(),
        }));
    }
    crate::outln!(
        "moved the log of cluster {:?} to a new generation starting at {}",
        cluster.name,
        switched.marker
    );
    crate::outln!(
        "the old log (last id {}) is kept as {}; {} entries not applied yet moved to the new log",
        switched.previous,
        switched.archive,
        switched.moved
    );
    crate::outln!("all state is kept; the projector continues from the new generation");
    Ok(())
}
