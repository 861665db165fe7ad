//! `pantheon locate <key>`: which node owns a key. For an assigned key, the committed owner
//! (from the key map, without building the ring); for any other key, the owner the ring gives
//! it (computed locally, as clients do, in one pass over the ring's points without building
//! it). A hot key's read replicas (docs/adr/0018) are named
//! too: only assigned keys have them.

use serde_json::json;

use crate::cli::LocateArgs;
use crate::config::Settings;
use crate::connect::{Cluster, client_error};

pub async fn run(args: LocateArgs, settings: &Settings) -> anyhow::Result<()> {
    let cluster = Cluster::connect(settings).await?;
    let found = cluster
        .client
        .assigned_key(&args.key)
        .await
        .map_err(client_error)?;
    let assigned = found.is_some();
    // An assigned key is answered from the key map in one round trip: the ring (millions of
    // points at thousands of nodes) is only for keys the ring places.
    let (node, ring_version, token, replicas) = if let Some(found) = found {
        let (node, token) = found.owner.map_or((None, None), |(n, t)| (Some(n), t));
        (node, found.ring_version, token, found.replicas)
    } else {
        // One key: placed in one pass over the ring's points, without building (sorting)
        // the ring.
        let (owner, version) = cluster
            .client
            .locate_once(&args.key)
            .await
            .map_err(client_error)?;
        let token = owner.as_ref().and_then(|(_, t)| *t);
        (owner.map(|(n, _)| n), version, token, Vec::new())
    };
    let replicas: Vec<String> = replicas.iter().map(ToString::to_string).collect();
    if args.json {
        return crate::output::json(&json!({
            "key": args.key,
            "node": node.as_ref().map(ToString::to_string),
            "assigned": assigned,
            "ring_version": ring_version,
            "token": token,
            "replicas": replicas,
        }));
    }
    match (&node, assigned) {
        (Some(n), true) => crate::outln!(
            "{} → {n} (assigned key{}){}",
            args.key,
            token_text(token),
            replicas_text(&replicas)
        ),
        (Some(n), false) => crate::outln!(
            "{} → {n} (not assigned; where the ring places it, version {}{})",
            args.key,
            ring_version,
            token_text(token)
        ),
        (None, _) => crate::outln!(
            "{} has no owner: no node can own keys right now (none alive and undrained)",
            args.key
        ),
    }
    Ok(())
}

fn replicas_text(replicas: &[String]) -> String {
    if replicas.is_empty() {
        String::new()
    } else {
        format!("; read replicas: {}", replicas.join(", "))
    }
}

fn token_text(token: Option<u64>) -> String {
    token.map(|t| format!(", token {t}")).unwrap_or_default()
}
