//! The audit timeline as a library query: every decided fact of a cluster, per node and per
//! time range, with the probe results and the key flows behind each decision.
//!
//! It is generic over event kinds: the kind names come from the domain
//! ([`EventKind::name`]), an event's own fields (its reasons: `fails`, `successes`, a
//! weight, ...) are carried in [`TimelineItem::details`], and any event whose fields count a
//! streak of failed or successful probes (`fails`, `successes`) gets the probe results that
//! made up that streak from the log. A kind added to the domain shows up here with its
//! reasons, without a change to this module.

use std::collections::{BTreeMap, HashMap};

use pantheon_domain::entry::{Command, ProbeResult};
use pantheon_domain::event::Flow;
use pantheon_domain::{EntryId, Event, EventKind, LogEntry};
use pantheon_store::stream::Bound;
use pantheon_store::{RawEntry, attest, events, log};
use serde::Serialize;

use crate::{ClientError, Pantheon};

/// Events read per XRANGE page.
const PAGE: usize = 10_000;
/// Log entries read per page while looking back for a streak's earlier probes.
const LOOKBACK_PAGE: usize = 500;
/// At most this many log entries are read back per decision.
const LOOKBACK_MAX: usize = 5_000;
/// Event fields every event has; the rest are its details.
const COMMON_FIELDS: [&str; 5] = ["type", "node", "epoch", "cause", "at"];
/// The field counting consecutive failed probes behind a decision.
const FAILS: &str = "fails";
/// The field counting consecutive successful probes behind a decision.
const SUCCESSES: &str = "successes";

/// What the timeline includes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this node's events (and the key moves that involve it).
    pub node: Option<String>,
    /// Events at or after this id.
    pub since: Option<EntryId>,
    /// Events at or before this id.
    pub until: Option<EntryId>,
    /// Only the newest this many events of the stream (read from its end).
    pub last: Option<usize>,
    /// Look up the probe results behind health decisions in the log (one read per
    /// decision); off for a quick overview.
    pub probes: bool,
}

impl Default for AuditFilter {
    fn default() -> Self {
        Self {
            node: None,
            since: None,
            until: None,
            last: None,
            probes: true,
        }
    }
}

/// One probe result from the log, decoded with [`LogEntry::decode`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// The log entry id.
    pub id: String,
    pub at_ms: u64,
    pub ok: bool,
    pub status: Option<u16>,
    pub latency_ms: Option<u32>,
    /// `refused`, `timeout`, `status`, `protocol` or `policy`.
    pub error: Option<String>,
    /// The prober replica that sent it.
    pub prober: Option<String>,
    /// From a prober that confirms deaths (ADR 0008): `false` a regular probe, `true` a
    /// confirmation (fresh connection or second replica); absent for plain probes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirm: Option<bool>,
}

impl Probe {
    fn new(id: EntryId, p: &ProbeResult) -> Self {
        Self {
            id: id.to_string(),
            at_ms: id.ms,
            ok: p.ok,
            status: p.status,
            latency_ms: Some(p.latency_ms),
            error: p.error.map(|e| e.as_str().to_owned()),
            prober: p.prober.clone(),
            confirm: None,
        }
    }

    /// `HTTP 200 in 2 ms`, `refused in 0 ms`, `status (HTTP 500 in 3 ms)`.
    pub fn describe(&self) -> String {
        let described = self.describe_result();
        if self.confirm == Some(true) {
            format!("{described} (confirmation)")
        } else {
            described
        }
    }

    fn describe_result(&self) -> String {
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowView {
    pub from: Option<String>,
    pub to: Option<String>,
    pub keys: u64,
}

/// How many keys one decision moved, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Moves {
    pub total: u64,
    pub flows: Vec<FlowView>,
    /// The `rebalanced` event's id.
    pub event_id: String,
}

/// One decided fact, with what caused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineItem {
    pub event_id: String,
    pub at_ms: u64,
    /// The event kind, as the domain names it (`joined`, `died`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    pub node: Option<String>,
    pub epoch: Option<u64>,
    /// What happened, in words.
    pub summary: String,
    /// The event's own fields beyond type/node/epoch/cause/at: its reasons.
    pub details: BTreeMap<String, String>,
    /// The log entry that caused it.
    pub cause: String,
    /// That entry's `type` (`probe`, `join`, ...); `None` when it is no longer in the log
    /// (or was not looked up).
    pub cause_type: Option<String>,
    pub cause_trimmed: bool,
    /// The probe results behind a health decision, oldest first.
    pub probes: Vec<Probe>,
    /// The same node's previous event in the timeline, and how long before this one.
    pub after_kind: Option<String>,
    pub after_ms: Option<u64>,
    pub moved: Option<Moves>,
}

fn flows_view(flows: &[Flow]) -> Vec<FlowView> {
    flows
        .iter()
        .map(|f| FlowView {
            from: f.from.as_ref().map(ToString::to_string),
            to: f.to.as_ref().map(ToString::to_string),
            keys: f.keys,
        })
        .collect()
}

fn involves(flows: &[Flow], node: &str) -> bool {
    flows.iter().any(|f| {
        f.from.as_ref().is_some_and(|n| n.as_str() == node)
            || f.to.as_ref().is_some_and(|n| n.as_str() == node)
    })
}

/// The event's own fields, beyond those every event has.
fn details(event: &Event) -> BTreeMap<String, String> {
    event
        .encode()
        .into_iter()
        .filter(|(k, _)| !COMMON_FIELDS.contains(k))
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

/// The probe streak a decision rests on: (outcome, length), from its `fails`/`successes`. A
/// node is `ready` on one success, whatever failed before it.
fn streak(kind: &EventKind, details: &BTreeMap<String, String>) -> Option<(bool, usize)> {
    if matches!(kind, EventKind::Ready { .. }) {
        return Some((true, 1));
    }
    let count = |f: &str| details.get(f).and_then(|v| v.parse::<usize>().ok());
    match (count(FAILS), count(SUCCESSES)) {
        (Some(n), _) if n > 0 => Some((false, n)),
        (_, Some(n)) if n > 0 => Some((true, n)),
        _ => None,
    }
}

/// What happened, in words. Kinds without their own sentence read as their name and fields,
/// so a kind added to the domain is still described with its reasons.
pub fn summary(event: &Event) -> String {
    match &event.kind {
        EventKind::Joined {
            epoch, url, weight, ..
        } => format!("joined: epoch {epoch}, weight {weight}, health {url}"),
        EventKind::Left { epoch, .. } => format!("left (epoch {epoch})"),
        EventKind::Ready { fails: 0, .. } => {
            "ready: its first probe answered; it owns keys from now on".to_owned()
        }
        EventKind::Ready { fails, .. } => format!(
            "ready: its first probe answered (after {fails} failed); it owns keys from now on"
        ),
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
        EventKind::Assigned { keys } => format!("{keys} new keys assigned"),
        EventKind::Unassigned { keys } => format!("{keys} keys unassigned"),
        EventKind::ProbersChanged { alive } => format!("probers alive: {}", alive.join(" ")),
        EventKind::NoProber => "no prober alive: nobody is watching node health".to_owned(),
        EventKind::ProberDegraded {
            prober,
            failing,
            probed,
            lag_ms,
        } => format!(
            "prober {prober} suspects itself ({failing} of {probed} nodes failing at once, \
             scheduling lag {lag_ms} ms): it holds back failure reports, so no node dies on \
             its word until it recovers"
        ),
        EventKind::ProberRecovered {
            prober,
            failing,
            probed,
            lag_ms,
        } => format!(
            "prober {prober} is healthy again ({failing} of {probed} nodes failing, \
             scheduling lag {lag_ms} ms): it reports failures again"
        ),
        EventKind::PanicStarted {
            dead, nodes, panic, ..
        } => format!(
            "died, but placement keeps its keys (panic): {dead} of {nodes} nodes are dead, more \
             than the panic threshold of {panic}% allows taking out at once"
        ),
        EventKind::PanicEnded { dead, nodes } => format!(
            "panic over: {dead} of {nodes} nodes dead, within the threshold; placement follows \
             health again"
        ),
        EventKind::Damped {
            penalty, reuse_at, ..
        } => format!(
            "damped (flapping): penalty {penalty} above the suppress limit; out of placement \
             even while healthy, until the penalty decays (at the latest at log time {reuse_at} ms)"
        ),
        EventKind::Undamped { penalty, .. } => format!(
            "undamped: penalty decayed to {penalty}, at the reuse limit; placement follows its \
             health again"
        ),
        EventKind::ClockSkew { entry, skew_ms } => format!(
            "log entry {entry} ran {skew_ms} ms ahead of Redis's clock: later ids are stuck; \
             see `pantheon doctor`, recover with `pantheon recover-clock`"
        ),
        EventKind::GenerationStarted {
            previous,
            archive,
            rebased,
        } => format!(
            "the log moved to a new generation (old log, ending at {previous}, kept as \
             {archive}; {rebased} damping penalties moved back to the new start)"
        ),
        EventKind::Restored {
            previous,
            nodes,
            keys,
            ..
        } => format!(
            "Redis came back empty: the projector leader restored {nodes} nodes and {keys} \
             keys as they were after entry {previous}; entries written after it and not \
             applied were lost"
        ),
        EventKind::HandoffStarted { keys, .. } => format!(
            "asked to hand {keys} keys over (a planned move); it owns them until it releases them"
        ),
        EventKind::HandedOff { keys, .. } => {
            format!("handed {keys} keys over with their state; the new owners took them at once")
        }
        EventKind::HandoffForced { keys, .. } => format!(
            "did not release {keys} keys within the hand-off timeout: they moved without their \
             state, and its token for them is stale"
        ),
        _ => generic_summary(event),
    }
}

fn generic_summary(event: &Event) -> String {
    let fields: Vec<String> = details(event)
        .into_iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let name = event.kind.name().replace('_', " ");
    if fields.is_empty() {
        name
    } else {
        format!("{name}: {}", fields.join(", "))
    }
}

fn item(entry: &RawEntry, event: &Event, moved: Option<Moves>) -> TimelineItem {
    TimelineItem {
        event_id: entry.id.to_string(),
        at_ms: event.at(),
        kind: event.kind.name().to_owned(),
        node: event.kind.node().map(|(n, _)| n.to_string()),
        epoch: event.kind.node().map(|(_, e)| e),
        summary: summary(event),
        details: details(event),
        cause: event.cause.to_string(),
        cause_type: None,
        cause_trimmed: false,
        probes: Vec::new(),
        after_kind: None,
        after_ms: None,
        moved,
    }
}

/// A probe result of `node`/`epoch` in a raw log entry, decoded the projector's way.
fn probe_of(entry: &RawEntry, node: &str, epoch: u64) -> Option<Probe> {
    match LogEntry::decode(&entry.fields).ok()?.command {
        Command::Probe(p) if p.node.as_str() == node && p.epoch == epoch => {
            Some(Probe::new(entry.id, &p))
        }
        Command::Checked(c) if c.result.node.as_str() == node && c.result.epoch == epoch => {
            Some(Probe {
                confirm: Some(c.confirm),
                ..Probe::new(entry.id, &c.result)
            })
        }
        _ => None,
    }
}

impl Pantheon {
    /// The audit timeline: events in order, each with the log entry that caused it, the
    /// probe results behind health decisions and the keys that moved.
    ///
    /// ```no_run
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), pantheon_client::ClientError> {
    /// use pantheon_client::audit::AuditFilter;
    /// let filter = AuditFilter { node: Some("node-1".into()), ..AuditFilter::default() };
    /// for item in p.timeline(&filter).await? {
    ///     println!("{} {}: {} ({} probes)", item.at_ms, item.kind, item.summary, item.probes.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn timeline(&self, filter: &AuditFilter) -> Result<Vec<TimelineItem>, ClientError> {
        let raw = self.read_events(filter).await?;
        let mut items: Vec<TimelineItem> = Vec::new();
        // Per node: its previous event's kind and time, for "after" durations.
        let mut previous: HashMap<String, (String, u64)> = HashMap::new();
        let wanted = |node: &str| filter.node.as_deref().is_none_or(|n| n == node);
        for entry in raw {
            // Events this build cannot read (a newer writer) are skipped, not fatal.
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
                        items.push(item(&entry, &event, Some(moves)));
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
            let mut it = item(&entry, &event, None);
            if let Some(n) = &node {
                if let Some((kind, at)) = previous.get(n) {
                    it.after_kind = Some(kind.clone());
                    it.after_ms = Some(it.at_ms.saturating_sub(*at));
                }
                previous.insert(n.clone(), (it.kind.clone(), it.at_ms));
            }
            if filter.probes
                && let (Some((ok, length)), Some((n, epoch))) =
                    (streak(&event.kind, &it.details), event.kind.node())
            {
                self.attach_probes(&mut it, event.cause, n.as_str(), epoch, ok, length)
                    .await?;
            }
            items.push(it);
        }
        Ok(items)
    }

    /// The events the filter selects, oldest first.
    async fn read_events(&self, filter: &AuditFilter) -> Result<Vec<RawEntry>, ClientError> {
        let mut con = self.con();
        let layout = &self.inner.layout;
        let in_range = |id: EntryId| {
            filter.since.is_none_or(|s| id >= s) && filter.until.is_none_or(|u| id <= u)
        };
        if let Some(last) = filter.last {
            let mut out = events::latest(&mut con, layout, last).await?;
            out.retain(|e| in_range(e.id));
            return Ok(out);
        }
        let mut out = Vec::new();
        let mut start = filter.since.map_or(Bound::Open, Bound::Including);
        loop {
            let page = events::range(&mut con, layout, start, PAGE).await?;
            let n = page.len();
            if let Some(last) = page.last() {
                start = Bound::Excluding(last.id);
            }
            let past_end = page.last().is_some_and(|e| !in_range(e.id));
            out.extend(page.into_iter().filter(|e| in_range(e.id)));
            if n < PAGE || past_end {
                return Ok(out);
            }
        }
    }

    /// Reads the decision's cause and, for a probe, the earlier probes of its streak.
    async fn attach_probes(
        &self,
        it: &mut TimelineItem,
        cause: EntryId,
        node: &str,
        epoch: u64,
        ok: bool,
        length: usize,
    ) -> Result<(), ClientError> {
        let mut con = self.con();
        let Some(entry) = log::entry(&mut con, &self.inner.layout, cause).await? else {
            it.cause_trimmed = true;
            return Ok(());
        };
        it.cause_type = entry.get("type").map(str::to_owned);
        let Some(last) = probe_of(&entry, node, epoch) else {
            return Ok(());
        };
        let mut probes = self
            .earlier_probes(cause, node, epoch, ok, length.saturating_sub(1))
            .await?;
        probes.reverse();
        probes.push(last);
        it.probes = probes;
        Ok(())
    }

    /// Up to `want` probe results of `node`/`epoch` with outcome `ok` before `before`,
    /// newest first, stopping at a result with the other outcome (the streak's start).
    async fn earlier_probes(
        &self,
        before: EntryId,
        node: &str,
        epoch: u64,
        ok: bool,
        want: usize,
    ) -> Result<Vec<Probe>, ClientError> {
        let mut con = self.con();
        let layout = &self.inner.layout;
        let legacy_until = attest::legacy_until(&mut con, layout).await?;
        let mut found = Vec::new();
        let mut end = before;
        let mut read = 0;
        while found.len() < want && read < LOOKBACK_MAX {
            let page = log::before(&mut con, layout, end, LOOKBACK_PAGE).await?;
            let origins = attest::origins(&mut con, layout, &page, legacy_until).await?;
            let n = page.len();
            for (e, origin) in page.iter().zip(origins) {
                // A probe no service process wrote was rejected: never part of a streak.
                if !origin.may_write_service_entries() {
                    continue;
                }
                let Some(p) = probe_of(e, node, epoch) else {
                    continue;
                };
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use pantheon_domain::NodeId;

    fn event(kind: EventKind) -> Event {
        Event {
            cause: EntryId::new(5, 0),
            kind,
        }
    }

    #[test]
    fn details_are_the_fields_beyond_the_common_ones() {
        let e = event(EventKind::Died {
            node: NodeId::new("n1").unwrap(),
            epoch: 2,
            fails: 3,
        });
        let d = details(&e);
        assert_eq!(d.get("fails").map(String::as_str), Some("3"));
        assert!(!d.contains_key("node") && !d.contains_key("cause"));
        assert_eq!(streak(&e.kind, &d), Some((false, 3)));
    }

    #[test]
    fn a_kind_without_a_sentence_reads_as_its_fields() {
        let e = event(EventKind::PolicyChanged {
            policy: pantheon_domain::Policy::default(),
        });
        let s = summary(&e);
        assert!(s.starts_with("policy changed: "), "{s}");
        assert!(s.contains("fall ") && s.contains("strategy "), "{s}");
    }

    #[test]
    fn prober_self_suspicion_reads_with_its_reasons() {
        let e = event(EventKind::ProberDegraded {
            prober: "p1".into(),
            failing: 180,
            probed: 200,
            lag_ms: 12,
        });
        let s = summary(&e);
        assert!(
            s.contains("p1 suspects itself") && s.contains("180 of 200"),
            "{s}"
        );
        assert!(s.contains("lag 12 ms") && s.contains("no node dies"), "{s}");
        assert_eq!(details(&e).get("failing").map(String::as_str), Some("180"));
        let r = summary(&event(EventKind::ProberRecovered {
            prober: "p1".into(),
            failing: 0,
            probed: 200,
            lag_ms: 3,
        }));
        assert!(r.contains("p1 is healthy again"), "{r}");
    }

    #[test]
    fn panic_damping_and_clock_events_read_with_their_reasons() {
        let node = NodeId::new("a").unwrap();
        let s = summary(&event(EventKind::PanicStarted {
            node: node.clone(),
            epoch: 1,
            dead: 3,
            nodes: 5,
            panic: 50,
        }));
        assert!(s.contains("3 of 5") && s.contains("50%"), "{s}");
        let s = summary(&event(EventKind::PanicEnded { dead: 1, nodes: 5 }));
        assert!(s.contains("panic over") && s.contains("1 of 5"), "{s}");
        let s = summary(&event(EventKind::Damped {
            node: node.clone(),
            epoch: 1,
            penalty: 1900,
            reuse_at: 77,
        }));
        assert!(s.contains("penalty 1900") && s.contains("77 ms"), "{s}");
        let s = summary(&event(EventKind::Undamped {
            node,
            epoch: 1,
            penalty: 499,
        }));
        assert!(s.contains("undamped") && s.contains("499"), "{s}");
        let s = summary(&event(EventKind::ClockSkew {
            entry: EntryId::new(99, 0),
            skew_ms: 5000,
        }));
        assert!(
            s.contains("99-0") && s.contains("5000 ms") && s.contains("recover-clock"),
            "{s}"
        );
        let s = summary(&event(EventKind::GenerationStarted {
            previous: EntryId::new(99, 3),
            archive: "k".into(),
            rebased: 2,
        }));
        assert!(s.contains("99-3") && s.contains("2 damping"), "{s}");
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
            confirm: None,
        };
        assert_eq!(p.describe(), "refused in 0 ms");
        let confirmation = Probe {
            confirm: Some(true),
            ..p.clone()
        };
        assert_eq!(confirmation.describe(), "refused in 0 ms (confirmation)");
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
