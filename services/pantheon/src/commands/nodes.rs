//! `pantheon nodes`: every node with its state, epoch, weight, keys owned (`SCARD` of its
//! key set) and health URL.

use pantheon_client::NodeRecord;
use pantheon_domain::NodeId;
use pantheon_store::readmodel;
use serde::Serialize;

use crate::cli::ReadArgs;
use crate::config::Settings;
use crate::connect::{Cluster, client_error};
use crate::output::{self, count};

#[derive(Debug, Serialize)]
struct NodeView {
    #[serde(flatten)]
    record: NodeRecord,
    /// Keys this node owns now.
    keys: u64,
}

#[derive(Debug, Serialize)]
struct Summary {
    cluster: String,
    nodes: Vec<NodeView>,
    /// Assigned keys with an owner.
    owned_keys: u64,
    /// Assigned keys no node can own right now.
    unowned_keys: u64,
    ring_version: u64,
}

/// Keys owned per node, in the order given.
pub async fn key_counts(cluster: &Cluster, nodes: &[String]) -> anyhow::Result<Vec<u64>> {
    let ids = nodes
        .iter()
        .map(|n| NodeId::new(n).map_err(|e| anyhow::anyhow!("node {n:?} in the read model: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(readmodel::node_key_counts(&mut cluster.con.clone(), &cluster.layout, &ids).await?)
}

pub async fn run(args: ReadArgs, settings: &Settings) -> anyhow::Result<()> {
    let cluster = Cluster::connect(settings).await?;
    let records = cluster.client.nodes().await.map_err(client_error)?;
    let names: Vec<String> = records.iter().map(|r| r.node.clone()).collect();
    let counts = key_counts(&cluster, &names).await?;
    let totals = readmodel::key_totals(&mut cluster.con.clone(), &cluster.layout).await?;
    let summary = Summary {
        cluster: cluster.name.clone(),
        nodes: records
            .into_iter()
            .zip(counts)
            .map(|(record, keys)| NodeView { record, keys })
            .collect(),
        owned_keys: totals.owned,
        unowned_keys: totals.unowned,
        ring_version: totals.ring_version,
    };
    if args.json {
        return output::json(&summary);
    }
    if summary.nodes.is_empty() {
        crate::outln!(
            "cluster {:?} has no nodes; add one with `pantheon join <node> --url http://host:port/health`",
            summary.cluster
        );
        return Ok(());
    }
    let now = output::now_ms();
    let rows: Vec<Vec<String>> = summary
        .nodes
        .iter()
        .map(|n| {
            let r = &n.record;
            vec![
                r.node.clone(),
                r.state.clone(),
                r.epoch.to_string(),
                r.weight.to_string(),
                count(n.keys),
                format!(
                    "{} {} ago",
                    r.last,
                    output::duration(output::between(r.since_ms, now))
                ),
                r.url.clone(),
            ]
        })
        .collect();
    crate::outln!(
        "{}",
        output::table(
            &[
                "NODE",
                "STATE",
                "EPOCH",
                "WEIGHT",
                "KEYS",
                "LAST CHANGE",
                "HEALTH URL"
            ],
            &rows
        )
    );
    let mut footer = format!(
        "{} nodes, {} owned keys",
        summary.nodes.len(),
        count(summary.owned_keys)
    );
    if summary.unowned_keys > 0 {
        footer.push_str(&format!(
            ", {} keys without an owner",
            count(summary.unowned_keys)
        ));
    }
    footer.push_str(&format!(", ring version {}", summary.ring_version));
    crate::outln!("{footer}");
    Ok(())
}
