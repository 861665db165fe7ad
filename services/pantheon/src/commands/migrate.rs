//! `pantheon migrate`: applies the cluster's schema migrations (idempotent, under a lock).

use serde_json::json;

use crate::cli::ReadArgs;
use crate::config::Settings;
use crate::connect::Cluster;
use crate::error::CliError;

pub async fn run(args: ReadArgs, settings: &Settings) -> anyhow::Result<()> {
    let cluster = Cluster::connect_unchecked(settings).await?;
    let report = cluster
        .client
        .admin()
        .migrate()
        .await
        .map_err(|e| CliError::failed(e.to_string()))?;
    if args.json {
        return crate::output::json(&json!({
            "cluster": cluster.name,
            "from": report.from,
            "to": report.to,
            "applied": report.applied,
        }));
    }
    if report.applied.is_empty() {
        crate::outln!(
            "cluster {:?} is at schema version {}: nothing to do",
            cluster.name,
            report.to
        );
    } else {
        crate::outln!(
            "cluster {:?}: schema version {} → {}; applied {}",
            cluster.name,
            report.from,
            report.to,
            report.applied.join(", ")
        );
    }
    Ok(())
}
