//! `pantheon explain <key>`: the owners a key had over time, each with its token, when, the
//! log entry that did it, and why — from the log, for assigned keys and keys only the ring
//! places.

use crate::cli::ExplainArgs;
use crate::config::Settings;
use crate::connect::{Cluster, client_error};

pub async fn run(args: ExplainArgs, settings: &Settings) -> anyhow::Result<()> {
    let cluster = Cluster::connect(settings).await?;
    let x = cluster
        .client
        .explain(&args.key)
        .await
        .map_err(client_error)?;
    if args.json {
        return crate::output::json(&pantheon_client::explanation_json(&x));
    }
    let placed = if x.assigned {
        "assigned"
    } else {
        "not assigned; the ring places it"
    };
    crate::outln!("{} ({placed}):", x.key);
    if x.history.is_empty() {
        crate::outln!("  no node has owned it yet (no node could own keys)");
    }
    for o in &x.history {
        let owner = o
            .node
            .as_ref()
            .map_or("nobody".to_owned(), ToString::to_string);
        let token = o.token.map(|t| format!(", token {t}")).unwrap_or_default();
        crate::outln!(
            "  {}  {owner}{token} — {} (entry {})",
            crate::output::timestamp(o.at_ms),
            o.why,
            o.cause
        );
    }
    if !x.replicas.is_empty() {
        let names: Vec<String> = x.replicas.iter().map(ToString::to_string).collect();
        crate::outln!(
            "  read replicas now (hot key, docs/adr/0018): {}",
            names.join(", ")
        );
    }
    Ok(())
}
