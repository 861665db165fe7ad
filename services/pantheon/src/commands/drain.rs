//! `pantheon drain <node>` / `pantheon undrain <node>`: move a node's keys away for
//! maintenance, and let it own keys again.

use serde_json::json;

use super::write;
use crate::cli::NodeArgs;
use crate::config::Settings;
use crate::connect::Cluster;

pub async fn run(args: NodeArgs, settings: &Settings, drain: bool) -> anyhow::Result<()> {
    let cluster = Cluster::connect(settings).await?;
    let id = if drain {
        cluster.client.drain(&args.node).await
    } else {
        cluster.client.undrain(&args.node).await
    }
    .map_err(|e| write::append_error(&[], e))?;
    let what = format!("{} {}", if drain { "drain" } else { "undrain" }, args.node);
    let Some(events) = write::settle_one(&cluster, &what, id, &args.wait, settings).await? else {
        return Ok(());
    };
    let record = cluster
        .client
        .node_health(&args.node)
        .await
        .map_err(|e| write::after_append(&what, id, e))?;
    let state = record.as_ref().map_or("unknown", |r| r.state.as_str());
    let message = if drain {
        format!(
            "{} is draining (state {state}): it owns no keys until `pantheon undrain {}`",
            args.node, args.node
        )
    } else {
        format!("{} is no longer draining (state {state})", args.node)
    };
    write::report(&args.wait, id, &message, &events, json!({ "node": record }))
}
