//! `pantheon watch <node>`: the node's ownership changes in commit order — a snapshot of its
//! keys first (unless resuming with `--from`), then each acquire and release as it is
//! committed — until Ctrl-C, `--lines` lines, or stdout closes.

use std::time::Duration;

use pantheon_client::{EntryId, WatchLine, WatchOp};
use serde_json::json;

use crate::cli::WatchArgs;
use crate::config::Settings;
use crate::connect::{Cluster, client_error};
use crate::error::CliError;
use crate::stdout::Stdout;

pub async fn run(args: WatchArgs, settings: &Settings) -> anyhow::Result<()> {
    let from = match &args.from {
        Some(raw) => Some(raw.parse::<EntryId>().map_err(|_| {
            CliError::usage(format!(
                "--from {raw:?} is not a feed id (like 1700000000000-0, as `watch --json` prints)"
            ))
        })?),
        None => None,
    };
    let cluster = Cluster::connect(settings).await?;
    let mut watch = cluster
        .client
        .watch(&args.node, from)
        .map_err(client_error)?;
    let mut out = Stdout::new();
    let shutdown = pantheon_service::shutdown_on_signals();
    let mut printed = 0u64;
    while args.lines.is_none_or(|n| printed < n) {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            // Nobody reads any more (`| head`): stop instead of following forever.
            () = out.closed() => return Ok(()),
            next = watch.next_within(Duration::from_secs(1)) => next.map_err(client_error)?,
        };
        let Some(line) = next else { continue };
        let text = if args.json {
            json_line(&line).to_string()
        } else {
            sentence(&args.node, &line)
        };
        if out.deliver(&text).await.is_err() {
            return Ok(());
        }
        printed += 1;
    }
    Ok(())
}

/// The line as `--json` prints it (the wire format in the README).
fn json_line(line: &WatchLine) -> serde_json::Value {
    json!({
        "id": line.id.to_string(),
        "op": line.op.as_str(),
        "keys": line.keys,
        "token": line.token,
        "peer": line.peer.as_ref().map(ToString::to_string),
        "cause": line.cause.map(|c| c.to_string()),
        "state": line.state,
    })
}

/// The line as a sentence.
fn sentence(node: &str, line: &WatchLine) -> String {
    let n = line.keys.len();
    let keys = if n == 1 { "key" } else { "keys" };
    let list = preview(&line.keys);
    let time = match line.cause.unwrap_or(line.id) {
        EntryId::ZERO => String::new(),
        at => format!("{}: ", crate::output::timestamp(at.ms)),
    };
    match line.op {
        WatchOp::Snapshot => format!(
            "{node} owns {n} {keys}{list} (token {}; resume with --from {})",
            line.token, line.id
        ),
        WatchOp::Acquire => match &line.peer {
            Some(peer) => format!(
                "{time}{node} took {n} {keys} over from {peer}{list} (token {})",
                line.token
            ),
            None => format!(
                "{time}{node} got {n} new {keys}{list} (token {})",
                line.token
            ),
        },
        WatchOp::Release => match &line.peer {
            Some(peer) => format!(
                "{time}{node} handed {n} {keys} to {peer}{list} (their token {})",
                line.token
            ),
            None => format!("{time}{node} lost {n} {keys}{list}; no node owns them now"),
        },
        WatchOp::Handoff => match &line.peer {
            Some(peer) => format!(
                "{time}{node} is asked to hand {n} {keys} over to {peer}{list}; it owns them until it releases them (token {})",
                line.token
            ),
            None => format!(
                "{time}{node} is asked to release {n} {keys}{list}; no node will own them (token {})",
                line.token
            ),
        },
    }
}

/// Up to five keys, then how many more.
fn preview(keys: &[String]) -> String {
    const SHOWN: usize = 5;
    if keys.is_empty() {
        return String::new();
    }
    let shown = keys
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    match keys.len().saturating_sub(SHOWN) {
        0 => format!(": {shown}"),
        more => format!(": {shown} and {more} more"),
    }
}
