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

/// `14:06:46.205 (log id 1764770806205-0)`: an entry id's time, then the id itself (to look
/// the entry up); the id alone when it does not parse.
fn entry_time(id: &str) -> String {
    match id.parse::<EntryId>() {
        Ok(e) => format!("{} (log id {id})", clock(&output::timestamp(e.ms))),
        Err(_) => format!("log id {id}"),
    }
}

/// The time of day of a `timestamp`: `14:06:46.205`.
fn clock(timestamp: &str) -> &str {
    timestamp.split_once(' ').map_or(timestamp, |(_, t)| t)
}

/// "108 keys moved: b→a 60, b→c 48".
fn moves(m: &pantheon_client::audit::Moves) -> String {
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
    let keys = if m.total == 1 { "key" } else { "keys" };
    format!("{} {keys} moved: {}", count(m.total), flows.join(", "))
}

/// The timeline as text: a line with the date when the day (UTC) changes, then one event per
/// line, `14:06:46.205  node  what happened`, with its reasons indented below.
pub fn render(items: &[Item]) -> String {
    const INDENT: &str = "      ";
    let node_width = items
        .iter()
        .filter_map(|i| i.item.node.as_ref().map(String::len))
        .max()
        .unwrap_or(1)
        .max(1);
    let mut out = String::new();
    let mut day = None;
    for Item { item: it, time } in items {
        let date = time.split_once(' ').map(|(d, _)| d);
        if date != day {
            day = date;
            out.push_str(date.unwrap_or(time));
            out.push('\n');
        }
        // A move of its own (not after a death or a join) is one sentence, not "keys moved"
        // and then the same again below it.
        let standalone_move = it.kind == "rebalanced" && it.moved.is_some();
        let what = match &it.moved {
            Some(m) if standalone_move => moves(m),
            _ => it.summary.clone(),
        };
        let mut line = format!(
            "{}  {:<node_width$}  {what}",
            clock(time),
            it.node.as_deref().unwrap_or("-"),
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
                "{INDENT}cause: the log entry of {} has been trimmed from the log; its probe \
                 results are gone\n",
                entry_time(&it.cause)
            ));
        } else if !it.probes.is_empty() {
            let probes: Vec<String> = it
                .probes
                .iter()
                .map(|p| {
                    let t = output::timestamp(p.at_ms);
                    format!("{} {}", clock(&t), p.describe())
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
            out.push_str(&format!(
                "{INDENT}cause: a {t} entry at {}\n",
                entry_time(&it.cause)
            ));
        }
        if let Some(m) = &it.moved
            && !standalone_move
        {
            out.push_str(&format!("{INDENT}{}\n", moves(m)));
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
    if let Some(latest) = items.last() {
        let ago = output::between(latest.item.at_ms, output::now_ms());
        crate::outln!(
            "latest event at {}, {} ago",
            clock(&latest.time),
            output::duration(ago)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pantheon_client::audit::{FlowView, Moves, Probe};

    /// 2026-12-03 14:06:46.205 UTC.
    const T: u64 = 1_796_306_806_205;

    fn item(kind: &str, node: Option<&str>, at_ms: u64, summary: &str) -> Item {
        let item = TimelineItem {
            event_id: format!("{at_ms}-0"),
            at_ms,
            kind: kind.to_owned(),
            node: node.map(str::to_owned),
            epoch: node.map(|_| 1),
            summary: summary.to_owned(),
            details: Default::default(),
            cause: format!("{}-0", at_ms - 1),
            cause_type: Some("probe".to_owned()),
            cause_trimmed: false,
            probes: Vec::new(),
            after_kind: None,
            after_ms: None,
            moved: None,
        };
        Item {
            time: output::timestamp(at_ms),
            item,
        }
    }

    fn moved(total: u64, flows: &[(&str, &str, u64)]) -> Option<Moves> {
        Some(Moves {
            total,
            flows: flows
                .iter()
                .map(|(from, to, keys)| FlowView {
                    from: Some((*from).to_owned()),
                    to: Some((*to).to_owned()),
                    keys: *keys,
                })
                .collect(),
            event_id: "1-0".to_owned(),
        })
    }

    /// Consecutive repeated words ("died died"), ignoring numbers and punctuation.
    fn doubled(text: &str) -> Vec<String> {
        let words: Vec<&str> = text
            .split_whitespace()
            .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
            .collect();
        words
            .windows(2)
            .filter(|w| {
                !w[0].is_empty()
                    && w[0].chars().all(char::is_alphabetic)
                    && w[0].eq_ignore_ascii_case(w[1])
            })
            .map(|w| w.join(" "))
            .collect()
    }

    #[test]
    fn the_timeline_reads_as_sentences_with_clock_times() {
        let mut died = item("died", Some("b"), T, "died: 3 failed probes in a row");
        died.item.after_kind = Some("suspect".into());
        died.item.after_ms = Some(400);
        died.item.probes = (0..3)
            .map(|i| Probe {
                id: format!("{}-0", T - 400 + i * 200),
                at_ms: T - 400 + i * 200,
                ok: false,
                status: None,
                latency_ms: Some(0),
                error: Some("refused".into()),
                prober: Some("p1".into()),
                confirm: None,
            })
            .collect();
        died.item.moved = moved(108, &[("b", "a", 108)]);
        let mut rebalanced = item("rebalanced", None, T + 86_400_000, "keys moved");
        rebalanced.item.moved = moved(50, &[("a", "b", 50)]);
        let mut policy = item("recovered", Some("b"), T + 86_400_100, "recovered");
        policy.item.cause_type = Some("policy".into());
        let text = render(&[
            item("joined", Some("b"), T - 5_000, "joined: epoch 1, weight 1"),
            died,
            rebalanced,
            policy,
        ]);
        assert_eq!(
            text,
            "2026-12-03\n\
             14:06:41.205  b  joined: epoch 1, weight 1\n\
             14:06:46.205  b  died: 3 failed probes in a row, 400 ms after suspect\n\
             \x20     probes: 14:06:45.805 refused in 0 ms; 14:06:46.005 refused in 0 ms; \
             14:06:46.205 refused in 0 ms (by p1)\n\
             \x20     108 keys moved: b→a 108\n\
             2026-12-04\n\
             14:06:46.205  -  50 keys moved: a→b 50\n\
             14:06:46.305  b  recovered\n\
             \x20     cause: a policy entry at 14:06:46.304 (log id 1796393206304-0)\n"
        );
        assert_eq!(doubled(&text), Vec::<String>::new());
        assert_eq!(doubled("b  died died: 3"), vec!["died died"]);
    }

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
