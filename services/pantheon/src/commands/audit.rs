//! `pantheon audit [--node N] [--since T]`: the failover timeline, printed. The timeline
//! itself is the client library's query ([`pantheon_client::Pantheon::timeline`]): each
//! decision with the probe results behind it and the keys it moved; this module parses the
//! flags and renders it as text or JSON.

use std::time::Duration;

use pantheon_client::audit::{AuditFilter, TimelineItem};
use pantheon_domain::EntryId;
use serde::Serialize;

use crate::cli::AuditArgs;
use crate::config::Settings;
use crate::connect::{Cluster, client_error};
use crate::output::{self, count};

/// One line of the timeline as the CLI prints it: the library's item and its time in words.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    #[serde(flatten)]
    pub item: TimelineItem,
    pub time: String,
}

/// Parses `--since`: `30s`, `10m`, `2h`, `1d` (ago), an entry id, or Unix milliseconds.
pub fn parse_since(raw: &str, now_ms: u64) -> Result<EntryId, String> {
    let raw = raw.trim();
    if let Ok(id) = raw.parse::<EntryId>()
        && raw.contains('-')
    {
        return Ok(id);
    }
    if let Ok(ms) = raw.parse::<u64>() {
        return Ok(EntryId::new(ms, 0));
    }
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (n, unit) = raw.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad_since(raw))?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad_since(raw)),
    };
    Ok(EntryId::new(
        now_ms.saturating_sub(n.saturating_mul(unit_ms)),
        0,
    ))
}

fn bad_since(raw: &str) -> String {
    format!(
        "--since {raw:?}: expected a duration ago (30s, 10m, 2h, 1d), an event id \
         (1712345678901-0) or Unix milliseconds"
    )
}

/// Builds the timeline (the library's query) for the CLI.
pub async fn timeline(cluster: &Cluster, filter: &AuditFilter) -> anyhow::Result<Vec<Item>> {
    let items = cluster
        .client
        .timeline(filter)
        .await
        .map_err(client_error)?;
    Ok(items
        .into_iter()
        .map(|item| Item {
            time: output::timestamp(item.at_ms),
            item,
        })
        .collect())
}

/// The timeline as text, one event per line with details indented below.
pub fn render(items: &[Item]) -> String {
    const INDENT: &str = "      ";
    let node_width = items
        .iter()
        .filter_map(|i| i.item.node.as_ref().map(String::len))
        .max()
        .unwrap_or(1)
        .max(1);
    let mut out = String::new();
    for Item { item: it, time } in items {
        let mut line = format!(
            "{}  {:<node_width$}  {}",
            time,
            it.node.as_deref().unwrap_or("-"),
            it.summary
        );
        // The time since the node's previous event says how long detection or downtime took.
        if let (Some(after), Some(previous)) = (it.after_ms, &it.after_kind) {
            let d = output::duration(Duration::from_millis(after));
            line.push_str(&format!(", {d} after {}", previous.replace('_', " ")));
        }
        out.push_str(&line);
        out.push('\n');
        if it.cause_trimmed {
            out.push_str(&format!(
                "{INDENT}cause: log entry {} has been trimmed from the log; its probe results are gone\n",
                it.cause
            ));
        } else if !it.probes.is_empty() {
            let probes: Vec<String> = it
                .probes
                .iter()
                .map(|p| {
                    let t = output::timestamp(p.at_ms);
                    let clock = t.split(' ').nth(1).unwrap_or(&t).to_owned();
                    format!("{clock} {}", p.describe())
                })
                .collect();
            let mut probers: Vec<&str> = it
                .probes
                .iter()
                .filter_map(|p| p.prober.as_deref())
                .collect();
            probers.dedup();
            let by = if probers.is_empty() {
                String::new()
            } else {
                format!(" (by {})", probers.join(", "))
            };
            out.push_str(&format!("{INDENT}probes: {}{by}\n", probes.join("; ")));
        } else if let Some(t) = &it.cause_type
            && t != "probe"
        {
            // A health decision caused by something other than a probe (a policy change).
            out.push_str(&format!("{INDENT}cause: a {t} entry ({})\n", it.cause));
        }
        if let Some(m) = &it.moved {
            let flows: Vec<String> = m
                .flows
                .iter()
                .map(|f| {
                    format!(
                        "{}→{} {}",
                        f.from.as_deref().unwrap_or("(none)"),
                        f.to.as_deref().unwrap_or("(none)"),
                        count(f.keys)
                    )
                })
                .collect();
            out.push_str(&format!(
                "{INDENT}{} keys moved: {}\n",
                count(m.total),
                flows.join(", ")
            ));
        }
    }
    out
}

pub async fn run(args: AuditArgs, settings: &Settings) -> anyhow::Result<()> {
    let since = args
        .since
        .as_deref()
        .map(|s| parse_since(s, output::now_ms()))
        .transpose()
        .map_err(crate::usage)?;
    if let Some(n) = &args.node {
        pantheon_domain::NodeId::new(n).map_err(|e| crate::usage(format!("--node: {e}")))?;
    }
    let cluster = Cluster::connect(settings).await?;
    let filter = AuditFilter {
        node: args.node.clone(),
        since,
        ..AuditFilter::default()
    };
    let items = timeline(&cluster, &filter).await?;
    if args.json {
        return output::json(&items);
    }
    let scope = match (&filter.node, &args.since) {
        (Some(n), Some(s)) => format!("node {n}, since {s}"),
        (Some(n), None) => format!("node {n}"),
        (None, Some(s)) => format!("since {s}"),
        (None, None) => "everything in the events stream".to_owned(),
    };
    crate::outln!(
        "Audit of cluster {:?} ({scope}); times are UTC",
        cluster.name
    );
    if items.is_empty() {
        crate::outln!("no events");
        return Ok(());
    }
    crate::out!("{}", render(&items));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_ids_and_times() {
        let now = 1_000_000_000;
        assert_eq!(
            parse_since("30s", now).unwrap(),
            EntryId::new(now - 30_000, 0)
        );
        assert_eq!(
            parse_since("2h", now).unwrap(),
            EntryId::new(now - 7_200_000, 0)
        );
        assert_eq!(parse_since("5-3", now).unwrap(), EntryId::new(5, 3));
        assert_eq!(parse_since("1234", now).unwrap(), EntryId::new(1234, 0));
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("3w", now).is_err());
    }
}
