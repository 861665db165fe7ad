//! The dashboard's "keys per node" chart, drawn from the events stream.
//!
//! The events do not carry counts per node, but they carry every change: `rebalanced` says
//! how many keys went from which node to which, `assigned`/`unassigned` how many keys came
//! or went. So the chart starts from the counts the status reads now (exact) and walks the
//! recent events backwards: a move is undone exactly; a batch of new keys is taken back from
//! the nodes in proportion to what they held just after it (exact when they held nothing
//! before, as after the first `distribute`). The caption says when a split was estimated.

use std::collections::HashMap;
use std::fmt::Write as _;

use pantheon_client::audit::TimelineItem;
use pantheon_client::status::ClusterStatus;
use pantheon_domain::EntryId;

use super::clock;
use super::dashboard::escape;

/// Most nodes drawn; the ones that held the most keys in the window.
const SERIES_MAX: usize = 12;
/// Drawing area, in SVG units.
const WIDTH: f64 = 480.0;
const HEIGHT: f64 = 150.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 20.0;
/// How far back an empty window reaches, so a quiet cluster still gets a line.
const QUIET_WINDOW_MS: u64 = 60_000;

/// One node's keys over the window: steps at `times`, `values[i]` held from `times[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub node: String,
    /// Index of the node's colour (its place in the status, so the ring and the chart agree).
    pub colour: usize,
    pub values: Vec<u64>,
}

/// Every node's keys at each change in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// When each state began: `times[0]` is the window's start, the rest are the events
    /// that changed a count.
    pub times: Vec<u64>,
    pub series: Vec<Series>,
    /// A batch of new or removed keys was split between nodes by proportion.
    pub estimated: bool,
}

/// `n` split in proportion to `weights` (largest remainder): the parts add up to `n`.
fn split(weights: &[u64], n: u64) -> Vec<u64> {
    let total: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if total == 0 {
        return vec![0; weights.len()];
    }
    let n128 = u128::from(n);
    let mut out: Vec<u64> = weights
        .iter()
        .map(|&w| (n128 * u128::from(w) / total) as u64)
        .collect();
    let mut left = n - out.iter().sum::<u64>();
    let mut by_remainder: Vec<(u128, usize)> = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| (n128 * u128::from(w) % total, i))
        .collect();
    by_remainder.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in by_remainder {
        if left == 0 {
            break;
        }
        out[i] += 1;
        left -= 1;
    }
    out
}

/// Walks `items` (oldest first) back from the counts in `status`. Each step keeps only the
/// counts it changed, so a render costs the changes, not the nodes times the events.
pub fn history(status: &ClusterStatus, items: &[TimelineItem], now_ms: u64) -> History {
    let mut names: Vec<String> = status.nodes.iter().map(|n| n.record.node.clone()).collect();
    let mut index: HashMap<String, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i))
        .collect();
    let mut counts: Vec<u64> = status.nodes.iter().map(|n| n.keys).collect();
    // The status was read first: events it does not include yet are left out.
    let applied: Option<EntryId> = status
        .projector
        .applied_last
        .as_deref()
        .and_then(|a| a.parse().ok());
    let included = |it: &TimelineItem| {
        applied.is_none_or(|a| it.cause.parse::<EntryId>().is_ok_and(|c| c <= a))
    };
    // Newest first: (when, the counts it changed, as they were after it).
    let mut steps: Vec<(u64, Vec<(usize, u64)>)> = Vec::new();
    let mut estimated = false;
    for it in items.iter().rev().filter(|it| included(it)) {
        let batch = |field: &str| {
            it.details
                .get(field)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let (added, removed) = match it.kind.as_str() {
            "assigned" => (batch("keys"), 0),
            "unassigned" => (0, batch("keys")),
            _ => (0, 0),
        };
        if it.moved.is_none() && added == 0 && removed == 0 {
            continue;
        }
        // The counts this item changed, as they were after it (saved before the first undo).
        let mut after: HashMap<usize, u64> = HashMap::new();
        // The item's moves came after its own event: undo them first.
        for f in it.moved.iter().flat_map(|m| &m.flows) {
            for (node, gained) in [(&f.to, true), (&f.from, false)] {
                let Some(node) = node else { continue };
                let i = *index.entry(node.clone()).or_insert_with(|| {
                    names.push(node.clone());
                    counts.push(0);
                    names.len() - 1
                });
                after.entry(i).or_insert(counts[i]);
                counts[i] = if gained {
                    counts[i].saturating_sub(f.keys)
                } else {
                    counts[i] + f.keys
                };
            }
        }
        // A batch of new keys is taken back, removed keys are given back, by share.
        let batches = [(added, false), (removed, true)];
        for (n, give) in batches.into_iter().filter(|(n, _)| *n > 0) {
            let held: u64 = counts.iter().sum();
            let parts = if give {
                estimated = true;
                split(&counts, n)
            } else {
                estimated |= n < held;
                split(&counts, n.min(held))
            };
            for (i, p) in parts.into_iter().enumerate().filter(|(_, p)| *p > 0) {
                after.entry(i).or_insert(counts[i]);
                counts[i] = if give { counts[i] + p } else { counts[i] - p };
            }
        }
        let mut changed: Vec<(usize, u64)> =
            after.into_iter().filter(|&(i, v)| counts[i] != v).collect();
        changed.sort_unstable();
        steps.push((it.at_ms, changed));
    }
    let start = steps
        .last()
        .map_or(now_ms.saturating_sub(QUIET_WINDOW_MS), |(t, _)| *t);
    // `counts` now holds the window's first state. Draw the nodes that held the most.
    let mut peak = counts.clone();
    for (_, changed) in &steps {
        for &(i, v) in changed {
            peak[i] = peak[i].max(v);
        }
    }
    let mut drawn: Vec<usize> = (0..names.len()).filter(|&i| peak[i] > 0).collect();
    if drawn.len() > SERIES_MAX {
        drawn.sort_by_key(|&i| (std::cmp::Reverse(peak[i]), i));
        drawn.truncate(SERIES_MAX);
        drawn.sort_unstable();
    }
    let mut times = vec![start];
    let mut series: Vec<Series> = drawn
        .iter()
        .map(|&i| Series {
            node: names[i].clone(),
            colour: i,
            values: vec![counts[i]],
        })
        .collect();
    let slot: HashMap<usize, usize> = drawn.iter().enumerate().map(|(s, &i)| (i, s)).collect();
    for (t, changed) in steps.into_iter().rev() {
        times.push(t);
        for s in &mut series {
            let last = *s.values.last().unwrap_or(&0);
            s.values.push(last);
        }
        for (i, v) in changed {
            if let Some(last) = slot.get(&i).and_then(|&s| series[s].values.last_mut()) {
                *last = v;
            }
        }
    }
    History {
        times,
        series,
        estimated,
    }
}

/// The chart as SVG, with a caption and a legend.
pub fn render(html: &mut String, h: &History, now_ms: u64) {
    let start = h.times[0];
    let end = now_ms.max(start + 1);
    let max = h
        .series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let x = |t: u64| {
        LEFT + (t.saturating_sub(start)) as f64 / (end - start) as f64 * (WIDTH - LEFT - RIGHT)
    };
    let y = |v: u64| TOP + (1.0 - v as f64 / max as f64) * (HEIGHT - TOP - BOTTOM);
    let _ = write!(
        html,
        "<svg id=\"keys-chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" \
         height=\"{HEIGHT}\" role=\"img\" aria-label=\"keys per node over time\">\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\"/>\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{b}\"/>\
         <text x=\"{tx}\" y=\"{ty}\" text-anchor=\"end\">{max}</text>\
         <text x=\"{tx}\" y=\"{b}\" text-anchor=\"end\">0</text>\
         <text x=\"{LEFT}\" y=\"{HEIGHT}\" dy=\"-4\">{from}</text>\
         <text x=\"{r}\" y=\"{HEIGHT}\" dy=\"-4\" text-anchor=\"end\">now</text>",
        b = HEIGHT - BOTTOM,
        r = WIDTH - RIGHT,
        tx = LEFT - 4.0,
        ty = TOP + 8.0,
        from = clock::clock(start, now_ms),
    );
    for s in &h.series {
        let mut points = String::new();
        let mut previous: Option<u64> = None;
        for (t, v) in h.times.iter().zip(&s.values) {
            // Steps: a count holds until the next event changes it.
            if let Some(p) = previous {
                let _ = write!(points, "{:.1},{:.1} ", x(*t), y(p));
            }
            let _ = write!(points, "{:.1},{:.1} ", x(*t), y(*v));
            previous = Some(*v);
        }
        let last = previous.unwrap_or(0);
        let _ = write!(points, "{:.1},{:.1}", x(end), y(last));
        let values: Vec<String> = s.values.iter().map(u64::to_string).collect();
        let id = escape(&s.node);
        let _ = write!(
            html,
            "<polyline class=\"series c{}\" data-node=\"{id}\" data-values=\"{}\" \
             data-last=\"{last}\" points=\"{points}\"><title>{id}: {} keys now</title></polyline>",
            s.colour % super::dashboard::COLOURS,
            values.join(","),
            last
        );
    }
    html.push_str("</svg><ul class=\"legend\" id=\"chart-legend\">");
    for s in &h.series {
        let last = s.values.last().copied().unwrap_or(0);
        let _ = write!(
            html,
            "<li data-node=\"{id}\"><i class=\"swatch b{}\"></i>{id}: {last} keys now</li>",
            s.colour % super::dashboard::COLOURS,
            id = escape(&s.node),
        );
    }
    html.push_str("</ul>");
    html.push_str("<p class=\"caption\">From the events since ");
    clock::write_time(html, start, now_ms);
    html.push_str(": moves are exact");
    if h.estimated {
        html.push_str("; a batch of new or removed keys is split by each node's share of the keys");
    }
    html.push_str(".</p>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use pantheon_client::audit::{FlowView, Moves};
    use pantheon_client::status::{NodeStatus, ProjectorStatus};

    fn status(keys: &[(&str, u64)], applied: &str) -> ClusterStatus {
        let nodes = keys
            .iter()
            .map(|(node, keys)| NodeStatus {
                record: serde_json::from_value(serde_json::json!({
                    "node": node, "state": "alive", "health": "alive", "draining": false,
                    "url": "http://n/health", "epoch": 1, "weight": 1, "fails": 0,
                    "successes": 0, "last": "ready", "since": "1-0", "since_ms": 1,
                }))
                .unwrap(),
                keys: *keys,
                ring_share: 0.5,
            })
            .collect();
        ClusterStatus {
            cluster: "c".into(),
            nodes,
            states: Default::default(),
            owned_keys: keys.iter().map(|k| k.1).sum(),
            unowned_keys: 0,
            ring_version: 1,
            strategy: "ring".into(),
            vnodes: 64,
            projector: ProjectorStatus {
                leader: None,
                lease_held: false,
                fence: 0,
                log_last: None,
                applied_last: Some(applied.into()),
                lag_entries: 0,
                lag_seconds: 0.0,
                log_ahead_ms: 0,
            },
            probers: Vec::new(),
            event_groups: Vec::new(),
        }
    }

    fn item(
        kind: &str,
        at_ms: u64,
        keys: Option<u64>,
        flows: &[(&str, &str, u64)],
    ) -> TimelineItem {
        TimelineItem {
            event_id: format!("{at_ms}-1"),
            at_ms,
            kind: kind.into(),
            node: None,
            epoch: None,
            summary: String::new(),
            details: keys
                .map(|k| [("keys".to_owned(), k.to_string())].into())
                .unwrap_or_default(),
            cause: format!("{at_ms}-0"),
            cause_type: None,
            cause_trimmed: false,
            probes: Vec::new(),
            after_kind: None,
            after_ms: None,
            moved: (!flows.is_empty()).then(|| Moves {
                total: flows.iter().map(|f| f.2).sum(),
                flows: flows
                    .iter()
                    .map(|(from, to, keys)| FlowView {
                        from: Some((*from).into()),
                        to: Some((*to).into()),
                        keys: *keys,
                    })
                    .collect(),
                event_id: format!("{at_ms}-2"),
            }),
        }
    }

    #[test]
    fn a_death_is_walked_back_exactly() {
        let s = status(&[("a", 200), ("b", 0)], "300-0");
        let items = [
            item("joined", 50, None, &[]),
            item("assigned", 100, Some(200), &[]),
            item("died", 200, None, &[("b", "a", 108)]),
            // Not yet in the status: left out.
            item("died", 400, None, &[("a", "b", 1)]),
        ];
        let h = history(&s, &items, 1_000);
        assert_eq!(h.times, vec![100, 100, 200]);
        assert_eq!(h.series[0].values, vec![0, 92, 200]);
        assert_eq!(h.series[1].values, vec![0, 108, 0]);
        assert!(!h.estimated);
    }

    #[test]
    fn a_later_batch_of_keys_is_split_by_share_and_says_so() {
        let s = status(&[("a", 60), ("b", 40)], "300-0");
        let items = [
            item("assigned", 100, Some(50), &[]),
            item("assigned", 200, Some(50), &[]),
        ];
        let h = history(&s, &items, 1_000);
        assert_eq!(h.series[0].values, vec![0, 30, 60]);
        assert_eq!(h.series[1].values, vec![0, 20, 40]);
        assert!(h.estimated);
        let mut html = String::new();
        render(&mut html, &h, 1_000);
        assert!(
            html.contains("data-node=\"a\" data-values=\"0,30,60\""),
            "{html}"
        );
        assert!(html.contains("split by each node's share"), "{html}");
    }

    #[test]
    fn splits_add_up_and_follow_the_weights() {
        assert_eq!(split(&[92, 108], 200), vec![92, 108]);
        assert_eq!(split(&[1, 1, 1], 2), vec![1, 1, 0]);
        assert_eq!(split(&[0, 10], 5), vec![0, 5]);
        assert_eq!(split(&[0, 0], 5), vec![0, 0]);
        let s = split(&[333, 667], 100);
        assert_eq!(s.iter().sum::<u64>(), 100);
    }
}
