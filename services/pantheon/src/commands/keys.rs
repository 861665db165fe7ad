//! `pantheon keys <node>`: the assigned keys a node owns now, one per line.

use serde_json::json;

use crate::cli::KeysArgs;
use crate::config::Settings;
use crate::connect::{Cluster, client_error};
use crate::error::CliError;

pub async fn run(args: KeysArgs, settings: &Settings) -> anyhow::Result<()> {
    let cluster = Cluster::connect(settings).await?;
    let record = cluster
        .client
        .node_health(&args.node)
        .await
        .map_err(client_error)?;
    let Some(record) = record else {
        return Err(CliError::failed(format!(
            "unknown node {:?} in cluster {:?} (never joined, or left)",
            args.node, cluster.name
        ))
        .into());
    };
    let keys = cluster
        .client
        .node_keys(&args.node)
        .await
        .map_err(client_error)?;
    if args.json {
        return crate::output::json(&json!({
            "node": record.node,
            "state": record.state,
            "count": keys.len(),
            "keys": keys,
        }));
    }
    let mut out = String::with_capacity(keys.iter().map(|k| k.len() + 1).sum());
    for k in &keys {
        out.push_str(k);
        out.push('\n');
    }
    crate::out!("{out}");
    if keys.is_empty() {
        eprintln!("{} ({}) owns no keys", record.node, record.state);
    }
    Ok(())
}
