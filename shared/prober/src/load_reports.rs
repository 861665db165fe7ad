//! Node loads from health answers (ADR 0018): a node may send `X-Pantheon-Load: <number>`
//! (a decimal, in its own unit per second: requests/s, CPU %, …; the same unit across the
//! cluster) with its health answer. The prober keeps the latest text per node and, every
//! [`INTERVAL`], writes one `loads` entry with the nodes whose load moved by more than
//! [`DEADBAND`] since it last wrote theirs (or that it has not written for [`REFRESH`]), at
//! most [`PER_ENTRY`] nodes per entry. Texts that are not loads go into the log as they are:
//! the fold refuses them with a `load_refused` event, so the reason is on record.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use pantheon_domain::NodeId;
use pantheon_domain::entry::{Command, LogEntry};
use pantheon_domain::load::{NO_LOAD, parse_load};

/// The response header a node reports its load in.
pub const HEADER: &str = "x-pantheon-load";
/// How often loads are written.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// A load that moved by less than this share of the last one written is not written again.
pub const DEADBAND: f64 = 0.05;
/// A node's load is written again after this long even when it did not move.
pub const REFRESH: Duration = Duration::from_secs(30);
/// Nodes per `loads` entry.
pub const PER_ENTRY: usize = 500;

/// The header's value as the text the log carries: at most 64 bytes, and visible ASCII (a
/// value that is not stays recognisably wrong, so the fold refuses it).
pub fn header_text(raw: &[u8]) -> String {
    let text: String = raw
        .iter()
        .take(64)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect();
    text
}

/// The latest load text of each node, and what was last written.
#[derive(Debug, Default)]
pub struct LoadReports {
    latest: HashMap<NodeId, String>,
    written: HashMap<NodeId, (String, Instant)>,
}

impl LoadReports {
    /// A probe of `node` answered (`ok`) with `text` in the header, or without it. A failed
    /// probe says nothing of the node's load.
    pub fn observe(&mut self, node: &NodeId, ok: bool, text: Option<&str>) {
        match text {
            Some(text) => {
                self.latest.insert(node.clone(), text.to_owned());
            }
            None if ok => {
                if let Some(latest) = self.latest.get_mut(node)
                    && latest != NO_LOAD
                {
                    NO_LOAD.clone_into(latest);
                }
            }
            None => {}
        }
    }

    /// Keeps only the nodes `keep` says this replica owns (the others left, or another
    /// replica reports them now).
    pub fn retain(&mut self, keep: impl Fn(&NodeId) -> bool) {
        self.latest.retain(|n, _| keep(n));
        self.written.retain(|n, _| keep(n));
    }

    /// The `loads` entries due at `now` (see the module docs), and notes them as written.
    pub fn due(&mut self, now: Instant) -> Vec<LogEntry> {
        let mut reports: Vec<(NodeId, String)> = Vec::new();
        for (node, text) in &self.latest {
            let write = match self.written.get(node) {
                None => true,
                Some((last, at)) => now.duration_since(*at) >= REFRESH || moved(last, text),
            };
            if write {
                reports.push((node.clone(), text.clone()));
            }
        }
        reports.sort();
        for (node, text) in &reports {
            if text == NO_LOAD {
                // Written once: the node reports nothing until it sends the header again.
                self.latest.remove(node);
                self.written.remove(node);
            } else {
                self.written.insert(node.clone(), (text.clone(), now));
            }
        }
        reports
            .chunks(PER_ENTRY)
            .map(|chunk| {
                LogEntry::new(Command::Loads {
                    reports: chunk.to_vec(),
                })
            })
            .collect()
    }
}

/// Whether a load moved beyond the dead band (a text that is not a load counts as moved
/// when it changed, so a node that starts or stops sending garbage is on record).
fn moved(last: &str, now: &str) -> bool {
    match (parse_load(last), parse_load(now)) {
        (Ok(a), Ok(b)) => (a.abs_diff(b) as f64) > DEADBAND * a.max(1) as f64,
        _ => last != now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: &str) -> NodeId {
        NodeId::new(n).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn writes_first_reports_then_only_moves_beyond_the_dead_band_or_a_refresh() {
        let mut r = LoadReports::default();
        let t0 = Instant::now();
        r.observe(&node("a"), true, Some("100"));
        r.observe(&node("b"), true, Some("50"));
        r.observe(&node("c"), true, None);
        let first = r.due(t0);
        assert_eq!(first.len(), 1);
        assert_eq!(
            first[0].command,
            Command::Loads {
                reports: vec![(node("a"), "100".into()), (node("b"), "50".into())]
            }
        );
        r.observe(&node("a"), true, Some("104"));
        r.observe(&node("b"), true, Some("60"));
        let second = r.due(t0 + INTERVAL);
        assert_eq!(
            second[0].command,
            Command::Loads {
                reports: vec![(node("b"), "60".into())]
            }
        );
        assert!(r.due(t0 + INTERVAL * 2).is_empty(), "nothing moved");
        let refreshed = r.due(t0 + REFRESH + INTERVAL);
        assert_eq!(
            refreshed[0].command,
            Command::Loads {
                reports: vec![(node("a"), "104".into()), (node("b"), "60".into())]
            }
        );
    }

    #[test]
    fn a_node_that_stops_sending_the_header_is_written_once_as_none() {
        let mut r = LoadReports::default();
        let t0 = Instant::now();
        r.observe(&node("a"), true, Some("100"));
        assert_eq!(r.due(t0).len(), 1);
        // A failed probe has no header: that says nothing of the load.
        r.observe(&node("a"), false, None);
        assert!(r.due(t0 + INTERVAL).is_empty());
        // An answer without it: the figure is withdrawn, once, and never refreshed.
        r.observe(&node("a"), true, None);
        let withdrawn = r.due(t0 + INTERVAL * 2);
        assert_eq!(
            withdrawn[0].command,
            Command::Loads {
                reports: vec![(node("a"), NO_LOAD.into())]
            }
        );
        r.observe(&node("a"), true, None);
        assert!(r.due(t0 + INTERVAL * 3).is_empty());
        assert!(r.due(t0 + REFRESH * 2).is_empty());
        // It reports again: written again.
        r.observe(&node("a"), true, Some("90"));
        assert_eq!(r.due(t0 + REFRESH * 2 + INTERVAL).len(), 1);
    }

    #[test]
    fn garbage_is_passed_on_once_for_the_fold_to_refuse() {
        let mut r = LoadReports::default();
        let t0 = Instant::now();
        r.observe(&node("a"), true, Some("fast"));
        assert_eq!(r.due(t0).len(), 1);
        assert!(r.due(t0 + INTERVAL).is_empty());
        assert_eq!(header_text(b"1\x002"), "1?2");
        assert_eq!(header_text(&[b'9'; 100]).len(), 64);
    }

    #[test]
    fn many_nodes_split_into_entries() {
        let mut r = LoadReports::default();
        for i in 0..1_200 {
            r.observe(&node(&format!("n{i}")), true, Some("1"));
        }
        let entries = r.due(Instant::now());
        assert_eq!(entries.len(), 3);
    }
}
