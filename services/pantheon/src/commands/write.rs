//! What every write command does after appending its log entry: wait for the projector
//! (unless `--no-wait`), and report the outcome or the rejection reason.

use std::time::Duration;

use pantheon_client::{Applied, ClientError, EntryId};
use serde_json::json;

use crate::cli::WaitArgs;
use crate::config::Settings;
use crate::connect::{Cluster, client_error};
use crate::error::{self, CliError};

/// An append that failed: on a missing permission, says that nothing was written (or which
/// entries of a multi-entry write were, `written` in log order).
pub fn append_error(written: &[EntryId], e: ClientError) -> anyhow::Error {
    let denied = e.is_permission_denied();
    let e = client_error(e);
    if !denied {
        return e;
    }
    let status = match written.last() {
        None => "nothing was written".to_owned(),
        Some(last) => format!(
            "{} earlier log entr{} written (last {last}), the rest not",
            written.len(),
            if written.len() == 1 {
                "y was"
            } else {
                "ies were"
            }
        ),
    };
    CliError::failed(format!("{status}: {e:#}")).into()
}

/// A failure after entry `id` was appended: on a missing permission, says the entry is in
/// the log (the projector applies it whatever this user may read).
pub fn after_append(what: &str, id: EntryId, e: ClientError) -> anyhow::Error {
    let denied = e.is_permission_denied();
    let e = client_error(e);
    if !denied {
        return e;
    }
    CliError::failed(format!(
        "{what}: log entry {id} was written (the projector will apply it), but reading the \
         outcome failed: {e:#}"
    ))
    .into()
}

/// How long to wait, from the flag or the configuration.
pub fn timeout(wait: &WaitArgs, settings: &Settings) -> Duration {
    wait.timeout_ms
        .map_or_else(|| settings.wait_timeout(), Duration::from_millis)
}

/// Waits for entry `id` (described as `what`, e.g. `leave node-1`). `Ok(None)` with
/// `--no-wait` (after printing the id); `Ok(Some(_))` once applied; a rejection or a timeout
/// is an error with its own exit code (and, with `--json`, a JSON line on stdout too).
pub async fn settle(
    cluster: &Cluster,
    what: &str,
    id: EntryId,
    wait: &WaitArgs,
    settings: &Settings,
) -> anyhow::Result<Option<Applied>> {
    if wait.no_wait {
        if wait.json {
            crate::output::json(&json!({ "id": id.to_string(), "waited": false }))?;
        } else {
            crate::outln!("{what}: log entry {id} (not waiting for the projector)");
        }
        return Ok(None);
    }
    match cluster
        .client
        .wait_applied(id, timeout(wait, settings))
        .await
    {
        Ok(applied) => Ok(Some(applied)),
        Err(ClientError::Rejected { id, reason }) => {
            if wait.json {
                crate::output::json(&json!({
                    "id": id.to_string(),
                    "applied": false,
                    "rejected": reason,
                }))?;
            }
            Err(CliError::new(
                error::REJECTED,
                format!("{what} was rejected: {reason} (log entry {id})"),
            )
            .into())
        }
        Err(e) => Err(after_append(what, id, e)),
    }
}

/// [`settle`] for a command that appended one entry, then the events it caused: `Ok(None)`
/// with `--no-wait`.
pub async fn settle_one(
    cluster: &Cluster,
    what: &str,
    id: EntryId,
    wait: &WaitArgs,
    settings: &Settings,
) -> anyhow::Result<Option<Vec<pantheon_domain::Event>>> {
    if settle(cluster, what, id, wait, settings).await?.is_none() {
        return Ok(None);
    }
    events_caused_by(cluster, &[id], 100)
        .await
        .map(Some)
        .map_err(|e| after_append(what, id, e))
}

/// Events caused by the given log entries, oldest first, found among the latest `scan`
/// events (they were just applied, so they are near the end).
pub async fn events_caused_by(
    cluster: &Cluster,
    causes: &[EntryId],
    scan: usize,
) -> Result<Vec<pantheon_domain::Event>, ClientError> {
    cluster.client.events_caused_by(causes, scan).await
}

/// "N keys moved: a→b n, ..." for the rebalances among `events`, or `None`.
pub fn moves(
    events: &[pantheon_domain::Event],
) -> Option<(u64, Vec<pantheon_domain::event::Flow>)> {
    let mut total = 0;
    let mut flows = Vec::new();
    for e in events {
        if let pantheon_domain::EventKind::Rebalanced { moved, flows: f } = &e.kind {
            total += moved;
            flows.extend(f.iter().cloned());
        }
    }
    (total > 0).then_some((total, flows))
}

/// Prints the outcome of an applied write: `message`, then the key moves it caused.
pub fn report(
    wait: &WaitArgs,
    id: EntryId,
    message: &str,
    events: &[pantheon_domain::Event],
    extra: serde_json::Value,
) -> anyhow::Result<()> {
    let moved = moves(events);
    if wait.json {
        let mut out = json!({
            "id": id.to_string(),
            "applied": true,
            "events": events.iter().map(|e| e.kind.name()).collect::<Vec<_>>(),
            "moved": moved.as_ref().map_or(0, |(n, _)| *n),
            "flows": moved.as_ref().map_or_else(|| json!([]), |(_, f)| crate::output::flows_json(f)),
        });
        if let (Some(out), serde_json::Value::Object(extra)) = (out.as_object_mut(), extra) {
            out.extend(extra);
        }
        crate::output::json(&out)
    } else {
        crate::outln!("{message} (log entry {id})");
        if let Some((n, flows)) = moved {
            crate::outln!(
                "{} keys moved: {}",
                crate::output::count(n),
                crate::output::flows(&flows)
            );
        }
        Ok(())
    }
}
