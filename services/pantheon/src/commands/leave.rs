//! `pantheon leave <node>`: removes a node for good; its keys move to the others.

use serde_json::json;

use super::write;
use crate::cli::NodeArgs;
use crate::config::Settings;
use crate::connect::Cluster;

pub async fn run(args: NodeArgs, settings: &Settings) -> anyhow::Result<()> {
    let cluster = Cluster::connect(settings).await?;
    let id = cluster
        .client
        .leave(&args.node)
        .await
        .map_err(|e| write::append_error(&[], e))?;
    let what = format!("leave {}", args.node);
    let Some(events) = write::settle_one(&cluster, &what, id, &args.wait, settings).await? else {
        return Ok(());
    };
    let message = format!("{} left the cluster", args.node);
    write::report(
        &args.wait,
        id,
        &message,
        &events,
        json!({ "node": args.node }),
    )
}
