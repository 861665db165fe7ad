//! `pantheon nodes`: every node with its state, epoch, weight, keys owned, ring share and
//! health URL, then the leader, its lag and the live probers: the client library's
//! [`pantheon_client::Pantheon::status`], printed.

use pantheon_client::status::{ClusterStatus, NodeStatus};
use pantheon_domain::NodeId;
use serde::Serialize;

use crate::cli::ReadArgs;
use crate::config::Settings;
use crate::connect::{Cluster, client_error};
use crate::output::{self, count};

/// `nodes --json`: the library's status, in the shape this command has always printed.
#[derive(Debug, Serialize)]
struct Summary<'a> {
    cluster: &'a str,
    nodes: &'a [NodeStatus],
    /// Assigned keys with an owner.
    owned_keys: u64,
    /// Assigned keys no node can own right now.
    unowned_keys: u64,
    ring_version: u64,
}

impl<'a> From<&'a ClusterStatus> for Summary<'a> {
    fn from(s: &'a ClusterStatus) -> Self {
        Self {
            cluster: &s.cluster,
            nodes: &s.nodes,
            owned_keys: s.owned_keys,
            unowned_keys: s.unowned_keys,
            ring_version: s.ring_version,
        }
    }
}

/// Keys owned per node, in the order given.
pub async fn key_counts(cluster: &Cluster, nodes: &[String]) -> anyhow::Result<Vec<u64>> {
    let ids = nodes
        .iter()
        .map(|n| NodeId::new(n).map_err(|e| anyhow::anyhow!("node {n:?} in the read model: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    cluster
        .client
        .node_key_counts(&ids)
        .await
        .map_err(client_error)
}

pub async fn run(args: ReadArgs, settings: &Settings) -> anyhow::Result<()> {
    let cluster = Cluster::connect(settings).await?;
    let status = cluster.client.status().await.map_err(client_error)?;
    let summary = Summary::from(&status);
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
    // Load (ADR 0018) is a column only once some node reports one.
    let mean_load = pantheon_client::loads::mean_load(summary.nodes.iter().map(|n| &n.record));
    let rows: Vec<Vec<String>> = summary
        .nodes
        .iter()
        .map(|n| {
            let r = &n.record;
            let mut row = vec![
                r.node.clone(),
                r.state.clone(),
                r.epoch.to_string(),
                r.weight.to_string(),
                if r.handing > 0 {
                    format!("{} ({} handing off)", count(n.keys), count(r.handing))
                } else {
                    count(n.keys)
                },
                format!("{:.1}%", n.ring_share * 100.0),
                format!(
                    "{} {} ago",
                    r.last,
                    output::duration(output::between(r.since_ms, now))
                ),
                r.url.clone(),
            ];
            if let Some(mean) = mean_load {
                row.insert(6, pantheon_client::loads::load_text(r.load, mean));
            }
            row
        })
        .collect();
    let mut header = vec![
        "NODE",
        "STATE",
        "EPOCH",
        "WEIGHT",
        "KEYS",
        "SHARE",
        "LAST CHANGE",
        "HEALTH URL",
    ];
    if mean_load.is_some() {
        header.insert(6, "LOAD");
    }
    crate::outln!("{}", output::table(&header, &rows));
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
    let p = &status.projector;
    let leader = match (&p.leader, p.lease_held) {
        (Some(l), true) => format!("leader {l} (fence {})", p.fence),
        _ => "no projector leads".to_owned(),
    };
    let probers: Vec<&str> = status.probers.iter().map(|p| p.id.as_str()).collect();
    crate::outln!(
        "{leader}, {} log entries behind; probers: {}",
        count(p.lag_entries),
        if probers.is_empty() {
            "none alive".to_owned()
        } else {
            probers.join(", ")
        }
    );
    Ok(())
}
