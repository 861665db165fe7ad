//! `pantheon audit [--node N] [--since T]`: a failover timeline built from the events stream
//! and the log. For every health transition it reads the log entry that caused it (`XRANGE
//! log id id`) and the probe results before it that made up the streak (`fails`/`successes`
//! in the event say how many), and it attaches the `rebalanced` event of the same cause: how
//! many keys moved, from where to where. A cause trimmed from the log is reported as such.

use std::collections::HashMap;
use std::time::Duration;

use pantheon_domain::{EntryId, Event, EventKind};
use pantheon_store::stream::Bound;
use pantheon_store::{RawEntry, events, log};
use serde::Serialize;

use crate::cli::AuditArgs;
use crate::config::Settings;
use crate::connect::Cluster;
use crate::output::{self, count};

/// Events read per XRANGE page.
const PAGE: usize = 10_000;
/// Log entries read per page while looking back for a streak's earlier probes.
const LOOKBACK_PAGE: usize = 500;
/// At most this many log entries are read back per transition.
const LOOKBACK_MAX: usize = 5_000;

/// One probe result from the log.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub id: String,
    pub at_ms: u64,
    pub ok: bool,
    pub status: Option<u16>,
    pub latency_ms: Option<u64>,
    pub error: Option<String>,
    pub prober: Option<String>,
}

impl Probe {
    fn from_entry(e: &RawEntry) -> Self {
        Self {
            id: e.id.to_string(),
            at_ms: e.id.ms,
            ok: matches!(e.get("ok"), Some("1" | "true")),
            status: e.get("status").and_then(|s| s.parse().ok()),
            latency_ms: e.get("latency").and_then(|s| s.parse().ok()),
            error: e.get("error").map(str::to_owned),
            prober: e.get("prober").map(str::to_owned),
        }
    }

    /// `HTTP 200 in 2 ms`, `refused after 0 ms`, `status (HTTP 500)`.
    pub fn describe(&self) -> String {
        let latency = self
            .latency_ms
            .map(|l| format!(" in {l} ms"))
            .unwrap_or_default();
        match (self.ok, &self.error, self.status) {
            (true, _, Some(s)) => format!("HTTP {s}{latency}"),
            (true, _, None) => format!("ok{latency}"),
            (false, Some(e), Some(s)) => format!("{e} (HTTP {s}{latency})"),
            (false, Some(e), None) => format!("{e}{latency}"),
            (false, None, Some(s)) => format!("HTTP {s}{latency}"),
            (false, None, None) => "failed".to_owned(),
        }
    }
}

/// Keys that moved from one owner to another (`None` = no owner).
#[derive(Debug, Clone, Serialize)]
pub struct FlowView {
    pub from: Option<String>,
    pub to: Option<String>,
    pub keys: u64,
}

/// How many keys one change moved, and where.
#[derive(Debug, Clone, Serialize)]
pub struct Moves {
    pub total: u64,
    pub flows: Vec<FlowView>,
    /// The `rebalanced` event's id.
    pub event_id: String,
}

/// One line of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub event_id: String,
    pub at_ms: u64,
    pub time: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub node: Option<String>,
    pub epoch: Option<u64>,
    /// What happened, in words.
    pub summary: String,
    /// The log entry that caused it.
    pub cause: String,
    /// That entry's `type` (`probe`, `join`, ...); `None` when it is no longer in the log.
    pub cause_type: Option<String>,
    pub cause_trimmed: bool,
    /// The probe results behind a health transition, oldest first.
    pub probes: Vec<Probe>,
    /// Since the node's previous transition (suspect → died: detection; died → revived:
    /// downtime).
    pub after_ms: Option<u64>,
    pub moved: Option<Moves>,
}

/// What to include.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub node: Option<String>,
    pub since: Option<EntryId>,
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

fn flows_view(flows: &[pantheon_domain::event::Flow]) -> Vec<FlowView> {
    flows
        .iter()
        .map(|f| FlowView {
            from: f.from.as_ref().map(ToString::to_string),
            to: f.to.as_ref().map(ToString::to_string),
            keys: f.keys,
        })
        .collect()
}

fn involves(flows: &[pantheon_domain::event::Flow], node: &str) -> bool {
    flows.iter().any(|f| {
        f.from.as_ref().is_some_and(|n| n.as_str() == node)
            || f.to.as_ref().is_some_and(|n| n.as_str() == node)
    })
}

/// Reads the log entry `id`, if it is still there.
async fn log_entry(cluster: &Cluster, id: EntryId) -> anyhow::Result<Option<RawEntry>> {
    Ok(log::entry(&mut cluster.con.clone(), &cluster.layout, id).await?)
}

/// Up to `want` probe results of `node`/`epoch` with outcome `ok` before `before`, newest
/// first, stopping at a result with the other outcome (the streak's start).
async fn earlier_probes(
    cluster: &Cluster,
    before: EntryId,
    node: &str,
    epoch: u64,
    ok: bool,
    want: usize,
) -> anyhow::Result<Vec<Probe>> {
    let mut found = Vec::new();
    let mut end = before;
    let mut read = 0;
    while found.len() < want && read < LOOKBACK_MAX {
        let page = log::before(
            &mut cluster.con.clone(),
            &cluster.layout,
            end,
            LOOKBACK_PAGE,
        )
        .await?;
        let n = page.len();
        for e in &page {
            let same = e.get("type") == Some("probe")
                && e.get("node") == Some(node)
                && e.get("epoch").and_then(|s| s.parse::<u64>().ok()) == Some(epoch);
            if !same {
                continue;
            }
            let p = Probe::from_entry(e);
            if p.ok != ok {
                return Ok(found);
            }
            found.push(p);
            if found.len() == want {
                return Ok(found);
            }
        }
        read += n;
        match page.last() {
            Some(last) if n == LOOKBACK_PAGE => end = last.id,
            _ => break,
        }
    }
    Ok(found)
}

/// Reads every event from `filter.since` on.
async fn read_events(cluster: &Cluster, since: Option<EntryId>) -> anyhow::Result<Vec<RawEntry>> {
    let mut out = Vec::new();
    let mut start = since.map_or(Bound::Open, Bound::Including);
    loop {
        let page = events::range(&mut cluster.con.clone(), &cluster.layout, start, PAGE).await?;
        let n = page.len();
        if let Some(last) = page.last() {
            start = Bound::Excluding(last.id);
        }
        out.extend(page);
        if n < PAGE {
            return Ok(out);
        }
    }
}

/// Builds the timeline.
pub async fn timeline(cluster: &Cluster, filter: &Filter) -> anyhow::Result<Vec<Item>> {
    let raw = read_events(cluster, filter.since).await?;
    let mut items: Vec<Item> = Vec::new();
    // Per node: the time of its last suspect and last death, for "after" durations.
    let mut suspect_at: HashMap<String, u64> = HashMap::new();
    let mut died_at: HashMap<String, u64> = HashMap::new();
    let wanted = |node: &str| filter.node.as_deref().is_none_or(|n| n == node);
    for entry in raw {
        let Ok(event) = Event::decode(&entry.fields) else {
            continue;
        };
        if let EventKind::Rebalanced { moved, flows } = &event.kind {
            let moves = Moves {
                total: *moved,
                flows: flows_view(flows),
                event_id: entry.id.to_string(),
            };
            match items.last_mut() {
                Some(last) if last.cause == event.cause.to_string() && last.moved.is_none() => {
                    last.moved = Some(moves);
                }
                _ if filter.node.as_deref().is_none_or(|n| involves(flows, n)) => {
                    items.push(item(&entry, &event, "keys moved".to_owned(), Some(moves)));
                }
                _ => {}
            }
            continue;
        }
        let node = event.kind.node().map(|(n, _)| n.to_string());
        match &node {
            Some(n) if !wanted(n) => continue,
            None if filter.node.is_some() => continue,
            _ => {}
        }
        let at = event.at();
        let mut it = item(&entry, &event, summary(&event.kind), None);
        let health = match &event.kind {
            EventKind::Suspect { fails, .. } => Some((false, *fails)),
            EventKind::Died { fails, .. } => Some((false, *fails)),
            EventKind::Revived { successes, .. } | EventKind::Recovered { successes, .. } => {
                Some((true, *successes))
            }
            _ => None,
        };
        if let (Some((ok, streak)), Some((n, epoch))) = (health, event.kind.node()) {
            match log_entry(cluster, event.cause).await? {
                None => it.cause_trimmed = true,
                Some(cause) => {
                    it.cause_type = cause.get("type").map(str::to_owned);
                    if it.cause_type.as_deref() == Some("probe") {
                        let mut probes = earlier_probes(
                            cluster,
                            event.cause,
                            n.as_str(),
                            epoch,
                            ok,
                            (streak as usize).saturating_sub(1),
                        )
                        .await?;
                        probes.reverse();
                        probes.push(Probe::from_entry(&cause));
                        it.probes = probes;
                    }
                }
            }
        }
        if let Some(n) = &node {
            match &event.kind {
                EventKind::Suspect { .. } => {
                    suspect_at.insert(n.clone(), at);
                }
                EventKind::Died { .. } => {
                    it.after_ms = suspect_at.get(n).map(|s| at.saturating_sub(*s));
                    died_at.insert(n.clone(), at);
                }
                EventKind::Revived { .. } => {
                    it.after_ms = died_at.get(n).map(|d| at.saturating_sub(*d));
                }
                EventKind::Recovered { .. } => {
                    it.after_ms = suspect_at.get(n).map(|s| at.saturating_sub(*s));
                }
                _ => {}
            }
        }
        items.push(it);
    }
    Ok(items)
}

fn item(entry: &RawEntry, event: &Event, summary: String, moved: Option<Moves>) -> Item {
    Item {
        event_id: entry.id.to_string(),
        at_ms: event.at(),
        time: output::timestamp(event.at()),
        kind: event.kind.name().to_owned(),
        node: event.kind.node().map(|(n, _)| n.to_string()),
        epoch: event.kind.node().map(|(_, e)| e),
        summary,
        cause: event.cause.to_string(),
        cause_type: None,
        cause_trimmed: false,
        probes: Vec::new(),
        after_ms: None,
        moved,
    }
}

fn summary(kind: &EventKind) -> String {
    match kind {
        EventKind::Joined {
            epoch, url, weight, ..
        } => format!("joined: epoch {epoch}, weight {weight}, health {url}"),
        EventKind::Left { epoch, .. } => format!("left (epoch {epoch})"),
        EventKind::Suspect { .. } => "turned suspect: a probe failed".to_owned(),
        EventKind::Died { fails, .. } => format!("died: {fails} failed probes in a row"),
        EventKind::Revived { successes, .. } => {
            format!("revived: {successes} successful probes in a row")
        }
        EventKind::Recovered { successes, .. } => {
            format!("recovered (was suspect): {successes} successful probes in a row")
        }
        EventKind::Drained { .. } => "drained: owns no keys until undrained".to_owned(),
        EventKind::Undrained { .. } => "undrained: owns keys again".to_owned(),
        EventKind::WeightChanged {
            weight, previous, ..
        } => format!("weight {previous} → {weight}"),
        EventKind::Rebalanced { .. } => "keys moved".to_owned(),
        EventKind::Assigned { keys } => format!("{} new keys assigned", count(*keys)),
        EventKind::Unassigned { keys } => format!("{} keys unassigned", count(*keys)),
        EventKind::PolicyChanged { policy } => format!(
            "policy: fall {}, rise {}, strategy {}, vnodes {}",
            policy.fall,
            policy.rise,
            policy.strategy.as_str(),
            policy.vnodes
        ),
        EventKind::ProbersChanged { alive } => format!("probers alive: {}", alive.join(" ")),
        EventKind::NoProber => "no prober alive: nobody is watching node health".to_owned(),
    }
}

/// The timeline as text, one event per line with details indented below.
pub fn render(items: &[Item]) -> String {
    const INDENT: &str = "      ";
    let node_width = items
        .iter()
        .filter_map(|i| i.node.as_ref().map(String::len))
        .max()
        .unwrap_or(1)
        .max(1);
    let mut out = String::new();
    for it in items {
        let mut line = format!(
            "{}  {:<node_width$}  {}",
            it.time,
            it.node.as_deref().unwrap_or("-"),
            it.summary
        );
        if let Some(after) = it.after_ms {
            let d = output::duration(Duration::from_millis(after));
            line.push_str(&match it.kind.as_str() {
                "died" => format!(", {d} after turning suspect"),
                "revived" => format!(", after {d} dead"),
                "recovered" => format!(", after {d} suspect"),
                _ => String::new(),
            });
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
            && !matches!(t.as_str(), "probe")
            && matches!(
                it.kind.as_str(),
                "suspect" | "died" | "revived" | "recovered"
            )
        {
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
    let filter = Filter {
        node: args.node.clone(),
        since,
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

    #[test]
    fn probes_describe_themselves() {
        let p = Probe {
            id: "1-0".into(),
            at_ms: 1,
            ok: false,
            status: None,
            latency_ms: Some(0),
            error: Some("refused".into()),
            prober: None,
        };
        assert_eq!(p.describe(), "refused in 0 ms");
        let ok = Probe {
            ok: true,
            status: Some(200),
            latency_ms: Some(2),
            error: None,
            ..p
        };
        assert_eq!(ok.describe(), "HTTP 200 in 2 ms");
    }
}
