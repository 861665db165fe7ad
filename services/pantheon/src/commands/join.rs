//! `pantheon join <node> --address <url> --port <n> [--path <p>] [--weight <w>]` (or
//! `--url <health-url>`): adds a node, or re-adds it with a new epoch.

use pantheon_client::JoinOp;
use serde_json::json;

use super::write;
use crate::cli::JoinArgs;
use crate::config::Settings;
use crate::connect::Cluster;

pub async fn run(args: JoinArgs, settings: &Settings) -> anyhow::Result<()> {
    let cluster = Cluster::connect(settings).await?;
    let id = match (&args.url, &args.address, args.port) {
        (Some(url), _, _) => cluster.client.join_url(&args.node, url, args.weight).await,
        (None, Some(address), Some(port)) => {
            let op = JoinOp {
                id: args.node.clone(),
                address: address.clone(),
                port,
                path: args.path.clone().unwrap_or_else(|| "health".to_owned()),
                weight: args.weight,
            };
            cluster.client.join(op).await
        }
        _ => return Err(crate::usage("give --url, or --address and --port")),
    }
    .map_err(|e| write::append_error(&[], e))?;
    let what = format!("join {}", args.node);
    let Some(events) = write::settle_one(&cluster, &what, id, &args.wait, settings).await? else {
        return Ok(());
    };
    let record = cluster
        .client
        .node_health(&args.node)
        .await
        .map_err(|e| write::after_append(&what, id, e))?;
    let message = match &record {
        // Nothing has probed the node yet: "alive" would be a guess (the address may not
        // even be allowed to be probed).
        Some(n) if n.last == "joined" => format!(
            "{} joined: epoch {}, weight {}, health {}; waiting for its first probe",
            n.node, n.epoch, n.weight, n.url
        ),
        Some(n) => format!(
            "{} joined: epoch {}, weight {}, health {}; now {}",
            n.node, n.epoch, n.weight, n.url, n.state
        ),
        None => format!("{} joined", args.node),
    };
    write::report(&args.wait, id, &message, &events, json!({ "node": record }))
}
