//! Node loads from health answers (ADR 0018): a node may send `X-Pantheon-Load: <number>`
//! (a decimal, in its own unit per second: requests/s, CPU %, …; the same unit across the
//! cluster) with its health answer. The prober smooths each node's figures
//! ([`LoadEstimate`]: an exponential average with a time constant of [`SMOOTHING`]; a figure
//! sent [`STEADY_REPEATS`] times in a row is taken as it is) and, every [`INTERVAL`], writes
//! one `loads`
//! entry with the nodes whose smoothed load moved by more than twice its dead band since it
//! last wrote theirs, and every [`ROUTINE`] those that left it at all, at most
//! [`PER_ENTRY`] nodes per entry. A node's dead band is [`DEADBAND`] of its load, or wider
//! for a node whose figures are noisy: [`NOISE_SIGMAS`] times the spread its smoothed figure
//! has from noise alone (estimated from its own answers, [`LoadEstimate::noise_band`]). A load
//! that does not move is not written again, except for a node that took part in a load move and waits for its next report
//! (`settling`, ADR 0018): its figure is written again once it has been settling for
//! [`SETTLING_REFRESH`]. Texts that are not loads go into the log as they are: the fold refuses
//! them with a `load_refused` event, so the reason is on record.
//!
//! Why smooth here: a node's figure is noisy from answer to answer, and every report the
//! prober writes costs the projector a fold and a read-model write. At 10,000 nodes whose
//! loads jitter ±20% per answer, writing the raw figures put 115,000 reports per 30 s in the
//! log. Smoothed, such a node's figure still wanders by a few percent and left a fixed 5% band
//! often enough for about 1,850 reports per 30 s; a band that widens with the node's own noise
//! lets through what noise alone seldom makes (docs/benchmarks.md, "Cost of load reports").

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use pantheon_domain::NodeId;
use pantheon_domain::entry::{Command, LogEntry};
use pantheon_domain::load::{NO_LOAD, format_load, parse_load};

pub use crate::load_estimate::{LoadEstimate, NOISE_SIGMAS, SMOOTHING, STEADY_REPEATS};

/// The response header a node reports its load in.
pub const HEADER: &str = "x-pantheon-load";
/// How often loads are written.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// A smoothed load that moved by less than this share of the last one written is not written
/// again.
pub const DEADBAND: f64 = 0.05;
/// A move of less than twice the dead band waits for the next routine write, at most this
/// long; a larger one (and a node's first figure) goes at the next [`INTERVAL`].
/// Each `loads` entry costs the projector a commit, whose checksum and checkpoint cover the
/// whole state (a few milliseconds at 10,000 nodes), and may run a round of load-aware
/// placement: small moves, which are what noise makes, are gathered into one entry.
pub const ROUTINE: Duration = Duration::from_secs(30);
/// A node settling after a load move has its load written again after this long without it
/// leaving the dead band (long enough for the move to show in the node's figures).
pub const SETTLING_REFRESH: Duration = Duration::from_secs(10);
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

/// What a node's answers said of its load lately.
#[derive(Debug, Clone, PartialEq)]
enum Reading {
    Load(LoadEstimate),
    /// A text that is not a load (or [`NO_LOAD`]): passed on as it is.
    Text(String),
}

impl Reading {
    fn text(&self) -> String {
        match self {
            Reading::Load(estimate) => format_load(estimate.load()),
            Reading::Text(text) => text.clone(),
        }
    }

    fn noise_band(&self) -> f64 {
        match self {
            Reading::Load(estimate) => estimate.noise_band(),
            Reading::Text(_) => 0.0,
        }
    }
}

/// Each node's reading, and what was last written.
#[derive(Debug, Default)]
pub struct LoadReports {
    latest: HashMap<NodeId, Reading>,
    written: HashMap<NodeId, (String, Instant)>,
    /// Nodes the fold holds back until their next report, as the read models said last.
    settling: BTreeSet<NodeId>,
    /// When small moves were last written.
    routine_at: Option<Instant>,
}

impl LoadReports {
    /// A probe of `node` answered (`ok`) at `now` with `text` in the header, or without it. A
    /// failed probe says nothing of the node's load.
    pub fn observe(&mut self, node: &NodeId, ok: bool, text: Option<&str>, now: Instant) {
        let reading = match (text, ok) {
            (Some(text), _) => match parse_load(text) {
                Ok(load) => match self.latest.get_mut(node) {
                    Some(Reading::Load(estimate)) => {
                        estimate.observe(load, now);
                        return;
                    }
                    _ => Reading::Load(LoadEstimate::first(load, now)),
                },
                Err(_) => Reading::Text(text.to_owned()),
            },
            (None, true) if self.latest.contains_key(node) => Reading::Text(NO_LOAD.to_owned()),
            (None, _) => return,
        };
        self.latest.insert(node.clone(), reading);
    }

    /// The nodes settling after a load move (from the `loads` read model's `meta`).
    pub fn set_settling(&mut self, settling: BTreeSet<NodeId>) {
        self.settling = settling;
    }

    /// Keeps only the nodes `keep` says this replica owns (the others left, or another
    /// replica reports them now).
    pub fn retain(&mut self, keep: impl Fn(&NodeId) -> bool) {
        self.latest.retain(|n, _| keep(n));
        self.written.retain(|n, _| keep(n));
    }

    /// The `loads` entries due at `now` (see the module docs), and notes them as written.
    pub fn due(&mut self, now: Instant) -> Vec<LogEntry> {
        let routine = self
            .routine_at
            .is_none_or(|at| now.saturating_duration_since(at) >= ROUTINE);
        if routine {
            self.routine_at = Some(now);
        }
        let mut reports: Vec<(NodeId, String)> = Vec::new();
        for (node, reading) in &self.latest {
            let text = reading.text();
            let write = match self.written.get(node) {
                None => true,
                Some((last, at)) => match moved(last, &text, reading.noise_band()) {
                    Move::Large => true,
                    Move::Small => routine,
                    Move::None => {
                        self.settling.contains(node)
                            && now.saturating_duration_since(*at) >= SETTLING_REFRESH
                    }
                },
            };
            if write {
                reports.push((node.clone(), text));
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

/// How far a figure moved since it was written.
#[derive(Debug, PartialEq, Eq)]
enum Move {
    /// Within the dead band.
    None,
    /// Beyond it, by less than twice.
    Small,
    /// Further, or a text that is not a load changed.
    Large,
}

/// How far a load moved, given the width of the dead band the node's noise calls for (in
/// thousandths; the band is at least [`DEADBAND`] of the load last written). A text that is
/// not a load counts as a large move when it changed, so a node that starts or stops sending
/// garbage is on record at once.
fn moved(last: &str, now: &str, noise_band: f64) -> Move {
    match (parse_load(last), parse_load(now)) {
        (Ok(a), Ok(b)) => {
            let (by, base) = (a.abs_diff(b) as f64, a.max(1) as f64);
            let band = (DEADBAND * base).max(noise_band);
            if by > 2.0 * band {
                Move::Large
            } else if by > band {
                Move::Small
            } else {
                Move::None
            }
        }
        _ if last != now => Move::Large,
        _ => Move::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load_estimate::Jitter;

    fn node(n: &str) -> NodeId {
        NodeId::new(n).unwrap_or_else(|e| panic!("{e}"))
    }

    fn reports(entries: &[LogEntry]) -> Vec<(NodeId, String)> {
        entries
            .iter()
            .flat_map(|e| match &e.command {
                Command::Loads { reports } => reports.clone(),
                other => panic!("not a loads entry: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn writes_first_reports_then_only_smoothed_moves_beyond_the_dead_band() {
        let mut r = LoadReports::default();
        let t0 = Instant::now();
        r.observe(&node("a"), true, Some("100"), t0);
        r.observe(&node("b"), true, Some("50"), t0);
        r.observe(&node("c"), true, None, t0);
        let first = r.due(t0);
        assert_eq!(first.len(), 1);
        assert_eq!(
            reports(&first),
            vec![(node("a"), "100".into()), (node("b"), "50".into())]
        );
        // Half a minute of the same figures: nothing more is written.
        for s in 1..=30u64 {
            let t = t0 + Duration::from_secs(s);
            r.observe(&node("a"), true, Some("100"), t);
            r.observe(&node("b"), true, Some("50"), t);
            if s % 2 == 0 {
                assert!(r.due(t).is_empty(), "at {s} s");
            }
        }
        // Then `a` answers 104 (smoothed: 100.2) and `b` 100 (smoothed: 52.4): neither leaves
        // the 5% band.
        let at = |s: u64| t0 + Duration::from_secs(s);
        r.observe(&node("a"), true, Some("104"), at(31));
        r.observe(&node("b"), true, Some("100"), at(31));
        assert!(r.due(at(31)).is_empty(), "a one-off jump is smoothed");
        // `b` stays at 100. Twice is not yet steady: smoothed 54.7, a small move (9.4%) that
        // waits for the routine write.
        r.observe(&node("b"), true, Some("100"), at(32));
        assert!(r.due(at(32)).is_empty());
        // Sent a third time in a row, it is taken as it is.
        r.observe(&node("b"), true, Some("100"), at(33));
        assert_eq!(reports(&r.due(at(33))), vec![(node("b"), "100".into())]);
        // A climb that never repeats a figure: the smoothed figure follows it, each write a
        // move of more than 5%.
        let mut written = Vec::new();
        for s in 34..=90u64 {
            let load = 200.0 + s as f64 / 10.0;
            r.observe(&node("b"), true, Some(&format!("{load}")), at(s));
            written.extend(
                reports(&r.due(at(s)))
                    .into_iter()
                    .map(|(_, load)| (s, load)),
            );
        }
        let (first_at, _) = written.first().cloned().unwrap();
        assert!(
            first_at <= 36,
            "a 2× step leaves the band within seconds: {written:?}"
        );
        let (_, last_load) = written.last().cloned().unwrap();
        assert!(
            parse_load(&last_load).unwrap() > 180_000,
            "the written figure follows the step: {written:?}"
        );
        assert!(
            written.len() <= 15,
            "each write is a move of 5%: {written:?}"
        );
        // Nothing moves: nothing is written, however long.
        assert!(r.due(t0 + Duration::from_secs(600)).is_empty());
    }

    /// Feeds `nodes` nodes one answer a second for `secs` seconds, each `base(s) × (1 ±
    /// spread)`, and returns the writes (second, node, figure) of the intervals after `from`.
    fn noisy_run(
        nodes: usize,
        secs: u64,
        spread: f64,
        base: impl Fn(u64) -> f64,
        from: u64,
    ) -> Vec<(u64, NodeId, u64)> {
        let mut r = LoadReports::default();
        let t0 = Instant::now();
        let ids: Vec<NodeId> = (0..nodes).map(|i| node(&format!("n{i}"))).collect();
        let mut jitter = Jitter(7);
        let mut writes = Vec::new();
        for s in 0..secs {
            let t = t0 + Duration::from_secs(s);
            for id in &ids {
                let figure = base(s) * (1.0 + jitter.next(spread));
                r.observe(id, true, Some(&format!("{figure:.2}")), t);
            }
            if s % 2 == 1 {
                for (n, text) in reports(&r.due(t)) {
                    if s >= from {
                        writes.push((s, n, parse_load(&text).unwrap()));
                    }
                }
            }
        }
        writes
    }

    #[test]
    fn jittering_loads_are_rarely_written() {
        // 100 nodes answering ±20% around 100, one answer a second, for an hour after five
        // minutes of warm-up. Smoothed, a node's figure still wanders by a few percent and
        // would leave a fixed 5% band about 6 times an hour; the band its noise calls for
        // (about 11%) it leaves about once in an hour or two.
        let writes = noisy_run(100, 3_900, 0.2, |_| 100.0, 300);
        assert!(
            writes.len() <= 100,
            "{} writes of 100 noisy nodes in an hour",
            writes.len()
        );
        // Quiet nodes keep the 5% band: ±2% noise never leaves it.
        assert!(noisy_run(20, 900, 0.02, |_| 100.0, 300).is_empty());
    }

    #[test]
    fn a_real_move_of_a_noisy_node_is_written() {
        // ±20% noise, and the load goes from 100 to 150 at 10 minutes: the move is written
        // within half a minute, and followed to within the node's band.
        let writes = noisy_run(1, 900, 0.2, |s| if s < 600 { 100.0 } else { 150.0 }, 600);
        let (first, _, _) = writes.first().cloned().unwrap_or((u64::MAX, node("x"), 0));
        assert!(first <= 630, "first write after the move: {writes:?}");
        let (_, _, last) = writes.last().cloned().unwrap();
        assert!(
            (135_000..=165_000).contains(&last),
            "last written figure: {writes:?}"
        );
    }

    #[test]
    fn small_moves_wait_for_the_routine_write_and_large_ones_do_not() {
        let mut r = LoadReports::default();
        let t0 = Instant::now();
        r.observe(&node("a"), true, Some("100"), t0);
        r.observe(&node("b"), true, Some("100"), t0);
        assert_eq!(reports(&r.due(t0)).len(), 2, "first figures at once");
        let t1 = t0 + INTERVAL;
        for _ in 0..STEADY_REPEATS {
            r.observe(&node("a"), true, Some("107"), t1);
            r.observe(&node("b"), true, Some("130"), t1);
        }
        assert_eq!(
            reports(&r.due(t1)),
            vec![(node("b"), "130".into())],
            "30% goes at once, 7% waits"
        );
        assert!(r.due(t0 + ROUTINE - INTERVAL).is_empty());
        assert_eq!(
            reports(&r.due(t0 + ROUTINE)),
            vec![(node("a"), "107".into())],
            "the routine write"
        );
        assert_eq!(moved("100", "104", 0.0), Move::None);
        assert_eq!(moved("fast", "slow", 0.0), Move::Large);
        assert_eq!(moved("fast", "fast", 0.0), Move::None);
        // A band of 8 (of 100) for a noisy node: 7 is noise, 9 and 15 small moves, 17 a large
        // one (noise seldom leaves the band, and almost never twice as far).
        assert_eq!(moved("100", "107", 8_000.0), Move::None);
        assert_eq!(moved("100", "109", 8_000.0), Move::Small);
        assert_eq!(moved("100", "115", 8_000.0), Move::Small);
        assert_eq!(moved("100", "117", 8_000.0), Move::Large);
    }

    #[test]
    fn a_settling_node_is_written_again_after_the_settling_refresh() {
        let mut r = LoadReports::default();
        let t0 = Instant::now();
        r.observe(&node("a"), true, Some("100"), t0);
        r.observe(&node("b"), true, Some("100"), t0);
        assert_eq!(reports(&r.due(t0)).len(), 2);
        r.set_settling([node("a")].into());
        assert!(r.due(t0 + INTERVAL).is_empty(), "not yet");
        assert_eq!(
            reports(&r.due(t0 + SETTLING_REFRESH)),
            vec![(node("a"), "100".into())]
        );
        assert!(r.due(t0 + SETTLING_REFRESH + INTERVAL).is_empty());
        r.set_settling(BTreeSet::new());
        assert!(r.due(t0 + SETTLING_REFRESH * 3).is_empty(), "settled");
    }

    #[test]
    fn a_node_that_stops_sending_the_header_is_written_once_as_none() {
        let mut r = LoadReports::default();
        let t0 = Instant::now();
        r.observe(&node("a"), true, Some("100"), t0);
        assert_eq!(r.due(t0).len(), 1);
        // A failed probe has no header: that says nothing of the load.
        r.observe(&node("a"), false, None, t0);
        assert!(r.due(t0 + INTERVAL).is_empty());
        // An answer without it: the figure is withdrawn, once, and never refreshed.
        r.observe(&node("a"), true, None, t0);
        let withdrawn = r.due(t0 + INTERVAL * 2);
        assert_eq!(reports(&withdrawn), vec![(node("a"), NO_LOAD.into())]);
        r.observe(&node("a"), true, None, t0);
        assert!(r.due(t0 + INTERVAL * 3).is_empty());
        assert!(r.due(t0 + SETTLING_REFRESH * 6).is_empty());
        // It reports again: written again, as sent (smoothing starts afresh).
        r.observe(&node("a"), true, Some("90"), t0);
        assert_eq!(
            reports(&r.due(t0 + SETTLING_REFRESH * 6 + INTERVAL)),
            vec![(node("a"), "90".into())]
        );
    }

    #[test]
    fn garbage_is_passed_on_once_for_the_fold_to_refuse() {
        let mut r = LoadReports::default();
        let t0 = Instant::now();
        r.observe(&node("a"), true, Some("fast"), t0);
        assert_eq!(reports(&r.due(t0)), vec![(node("a"), "fast".into())]);
        assert!(r.due(t0 + INTERVAL).is_empty());
        assert_eq!(header_text(b"1\x002"), "1?2");
        assert_eq!(header_text(&[b'9'; 100]).len(), 64);
    }

    #[test]
    fn many_nodes_split_into_entries() {
        let mut r = LoadReports::default();
        let t0 = Instant::now();
        for i in 0..1_200 {
            r.observe(&node(&format!("n{i}")), true, Some("1"), t0);
        }
        let entries = r.due(t0);
        assert_eq!(entries.len(), 3);
    }
}
