//! `pantheon status`: one line per cluster served (`clusters`, else `cluster`): who leads it
//! (the instance that committed last; with `up --clusters` the fleet process), whether the
//! lease is held, the fence (bumped at every change of leader), lag, nodes and probers.

use serde_json::json;

use crate::cli::ReadArgs;
use crate::config::Settings;
use crate::connect::Cluster;

pub async fn run(args: ReadArgs, settings: &Settings) -> anyhow::Result<()> {
    let names = settings.served_clusters()?;
    let mut rows = Vec::new();
    for name in &names {
        let (_, status) = Cluster::status(&settings.for_cluster(name)).await?;
        rows.push(status);
    }
    if args.json {
        return crate::output::json(&json!(rows));
    }
    crate::outln!(
        "{:<24} {:<28} {:>6} {:>8} {:>6} {:>6} {:>7}",
        "CLUSTER",
        "LEADER",
        "FENCE",
        "LAG",
        "ALIVE",
        "NODES",
        "PROBERS"
    );
    for s in &rows {
        let p = &s.projector;
        let leader = match (&p.leader, p.lease_held) {
            (Some(l), true) => l.clone(),
            (Some(l), false) => format!("(none; last {l})"),
            (None, _) => "(none)".to_owned(),
        };
        crate::outln!(
            "{:<24} {:<28} {:>6} {:>8} {:>6} {:>6} {:>7}",
            s.cluster,
            leader,
            p.fence,
            p.lag_entries,
            s.states.get("alive").copied().unwrap_or(0),
            s.nodes.len(),
            s.probers.len()
        );
    }
    Ok(())
}
