//! `pantheon distribute <keys...>` or `--file <f>`: assigns keys, in log entries of at most
//! 10,000 keys, with a progress bar for files. Every batch is checked (with the projector's
//! own decoder) before the first is sent, so a bad key writes nothing.

use std::io::{BufRead, BufReader};

use indicatif::{ProgressBar, ProgressStyle};
use pantheon_domain::limits::MAX_BATCH_KEYS;
use pantheon_domain::{EntryId, EventKind, LogEntry};
use serde_json::json;

use super::write;
use crate::cli::DistributeArgs;
use crate::config::Settings;
use crate::connect::{Cluster, client_error};
use crate::error::{self, CliError};
use crate::output::count;

/// One key per line; surrounding whitespace is ignored and empty lines are skipped.
fn read_keys(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(path)
            .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
        Box::new(BufReader::new(file))
    };
    let mut keys = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line =
            line.map_err(|e| CliError::usage(format!("{} line {}: {e}", path.display(), n + 1)))?;
        // Keys are exact bytes: only the line break (`\n` or `\r\n`) is removed, never
        // spaces. An empty line is no key and is skipped.
        if !line.is_empty() {
            keys.push(line);
        }
    }
    Ok(keys)
}

/// Checks every batch as the projector would decode it.
fn check(keys: &[String]) -> anyhow::Result<()> {
    for (i, chunk) in keys.chunks(MAX_BATCH_KEYS).enumerate() {
        let mut fields: Vec<(&str, &str)> = vec![("type", "assign")];
        fields.extend(chunk.iter().map(|k| ("key", k.as_str())));
        LogEntry::decode(&fields).map_err(|e| {
            CliError::usage(format!(
                "invalid input in keys {}..{}: {e}; nothing was sent",
                i * MAX_BATCH_KEYS + 1,
                i * MAX_BATCH_KEYS + chunk.len()
            ))
        })?;
    }
    Ok(())
}

fn progress_bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {msg} [{bar:40}] {human_pos}/{human_len} keys ({per_sec}, {eta} left)",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

pub async fn run(args: DistributeArgs, settings: &Settings) -> anyhow::Result<()> {
    let from_file = args.file.is_some();
    let keys = match &args.file {
        Some(path) => read_keys(path)?,
        None => args.keys.clone(),
    };
    if keys.is_empty() {
        return Err(crate::usage("no keys to distribute"));
    }
    check(&keys)?;
    let cluster = Cluster::connect(settings).await?;
    let bar = if from_file {
        progress_bar(keys.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_message("sending");
    let mut ids: Vec<EntryId> = Vec::new();
    for chunk in keys.chunks(MAX_BATCH_KEYS) {
        let sent = cluster
            .client
            .distribute(chunk.iter().cloned())
            .await
            .map_err(|e| write::append_error(&ids, e))?;
        ids.extend(sent);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let Some(&last) = ids.last() else {
        return Ok(());
    };
    let what = format!("distribute of {} keys", count(keys.len() as u64));
    if args.wait.no_wait {
        if args.wait.json {
            crate::output::json(&json!({
                "ids": ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "keys": keys.len(),
                "waited": false,
            }))?;
        } else {
            crate::outln!(
                "sent {} keys in {} log {} (last {last}); not waiting for the projector",
                count(keys.len() as u64),
                ids.len(),
                if ids.len() == 1 { "entry" } else { "entries" }
            );
        }
        return Ok(());
    }
    write::settle(&cluster, &what, last, &args.wait, settings).await?;
    // The last batch was applied, so were the others; any of them may have been rejected.
    for id in &ids[..ids.len() - 1] {
        if let Some(reason) = cluster.client.rejection(*id).await.map_err(client_error)? {
            return Err(CliError::new(
                error::REJECTED,
                format!("{what}: batch {id} was rejected: {reason}"),
            )
            .into());
        }
    }
    let events = write::events_caused_by(&cluster, &ids, 4 * ids.len() + 100)
        .await
        .map_err(client_error)?;
    let added: u64 = events
        .iter()
        .map(|e| match e.kind {
            EventKind::Assigned { keys } => keys,
            _ => 0,
        })
        .sum();
    let totals = cluster.client.key_totals().await.map_err(client_error)?;
    let (total, unowned) = (totals.owned, totals.unowned);
    let mut message = format!(
        "distributed {} keys in {} log {}: {} newly assigned; the cluster has {} owned keys",
        count(keys.len() as u64),
        ids.len(),
        if ids.len() == 1 { "entry" } else { "entries" },
        count(added),
        count(total)
    );
    if unowned > 0 {
        message.push_str(&format!(
            " and {} without an owner (no node can own keys)",
            count(unowned)
        ));
    }
    write::report(
        &args.wait,
        last,
        &message,
        &events,
        json!({
            "ids": ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "keys": keys.len(),
            "assigned": added,
            "owned_total": total,
            "unowned": unowned,
        }),
    )
}
