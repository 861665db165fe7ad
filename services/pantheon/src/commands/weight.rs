//! `pantheon weight <node> <w>`: changes a node's share of keys.

use serde_json::json;

use super::write;
use crate::cli::WeightArgs;
use crate::config::Settings;
use crate::connect::Cluster;

pub async fn run(args: WeightArgs, settings: &Settings) -> anyhow::Result<()> {
    let cluster = Cluster::connect(settings).await?;
    let id = cluster
        .client
        .set_weight(&args.node, args.weight)
        .await
        .map_err(|e| write::append_error(&[], e))?;
    let what = format!("weight {} {}", args.node, args.weight);
    let Some(events) = write::settle_one(&cluster, &what, id, &args.wait, settings).await? else {
        return Ok(());
    };
    let previous = events.iter().find_map(|e| match e.kind {
        pantheon_domain::EventKind::WeightChanged { previous, .. } => Some(previous),
        _ => None,
    });
    let message = match previous {
        Some(p) => format!("{} weight {p} → {}", args.node, args.weight),
        None => format!("{} weight is {} (unchanged)", args.node, args.weight),
    };
    write::report(
        &args.wait,
        id,
        &message,
        &events,
        json!({ "node": args.node, "weight": args.weight, "previous": previous }),
    )
}
