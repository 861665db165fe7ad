//! Events: the facts the fold decided, past tense, as flat field/value pairs.
//!
//! Every event has `type`, `cause` (the log entry id that caused it) and `at` (milliseconds,
//! taken from `cause`, so replay reproduces it exactly). Node events add `node` and `epoch`.

use std::fmt;

use crate::ids::{EntryId, NodeId};
use crate::placement::Strategy;
use crate::policy::Policy;
use crate::wire::Fields;

/// One decided fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The log entry that caused it.
    pub cause: EntryId,
    pub kind: EventKind,
}

/// Keys that moved from one owner to another in one rebalance (`None` = no owner).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Flow {
    pub from: Option<NodeId>,
    pub to: Option<NodeId>,
    pub keys: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Joined {
        node: NodeId,
        epoch: u64,
        url: String,
        weight: u32,
    },
    Left {
        node: NodeId,
        epoch: u64,
    },
    /// joining → alive: the node's health endpoint answered for the first time in this
    /// epoch (after `fails` failed probes), so it takes its share of the keys.
    Ready {
        node: NodeId,
        epoch: u64,
        fails: u32,
    },
    /// alive → suspect; `fails` consecutive failures so far.
    Suspect {
        node: NodeId,
        epoch: u64,
        fails: u32,
    },
    /// suspect → dead.
    Died {
        node: NodeId,
        epoch: u64,
        fails: u32,
    },
    /// dead → alive.
    Revived {
        node: NodeId,
        epoch: u64,
        successes: u32,
    },
    /// suspect → alive.
    Recovered {
        node: NodeId,
        epoch: u64,
        successes: u32,
    },
    Drained {
        node: NodeId,
        epoch: u64,
    },
    Undrained {
        node: NodeId,
        epoch: u64,
    },
    WeightChanged {
        node: NodeId,
        epoch: u64,
        weight: u32,
        previous: u32,
    },
    /// Owners of assigned keys changed; `flows` sorted by (from, to).
    Rebalanced {
        moved: u64,
        flows: Vec<Flow>,
    },
    /// New keys were assigned (keys already assigned are not counted).
    Assigned {
        keys: u64,
    },
    Unassigned {
        keys: u64,
    },
    PolicyChanged {
        policy: Policy,
    },
    /// The set of live prober replicas changed and is not empty.
    ProbersChanged {
        alive: Vec<String>,
    },
    /// No prober replica is alive: nobody watches node health any more.
    NoProber,
    /// `node` died, but taking it out of placement would take out more than the panic
    /// threshold allows: it keeps its keys (`held`), as do further deaths, until enough nodes
    /// are back. `dead` of `nodes` non-draining nodes are dead; `panic` is the threshold (%).
    PanicStarted {
        node: NodeId,
        epoch: u64,
        dead: u32,
        nodes: u32,
        panic: u32,
    },
    /// Enough nodes are back (or the threshold changed): no node is held any more, placement
    /// follows health again. `dead` of `nodes` non-draining nodes are dead.
    PanicEnded {
        dead: u32,
        nodes: u32,
    },
    /// `node` died often enough that its penalty passed the suppress limit: it stays out of
    /// placement, even while healthy, until the penalty decays to the reuse limit (at the
    /// latest at `reuse_at`, ms of log time, if it does not die again).
    Damped {
        node: NodeId,
        epoch: u64,
        penalty: u32,
        reuse_at: u64,
    },
    /// `node`'s penalty decayed to the reuse limit: placement follows its health again.
    Undamped {
        node: NodeId,
        epoch: u64,
        penalty: u32,
    },
    /// Prober replica `prober` suspects itself (Lifeguard's local health): `failing` of the
    /// `probed` nodes it probed since the oldest current failure streak began are failing at
    /// once, or its scheduling lagged `lag_ms`. It holds back its failure reports (no deaths
    /// from it) until `prober_recovered`.
    ProberDegraded {
        prober: String,
        failing: u32,
        probed: u32,
        lag_ms: u32,
    },
    /// Prober replica `prober` is healthy again and reports failures (and deaths) again.
    ProberRecovered {
        prober: String,
        failing: u32,
        probed: u32,
        lag_ms: u32,
    },
    /// Log entry `entry` was `skew_ms` ahead of Redis's clock when the projector read it:
    /// every later id is stuck at least that far in the future until the log moves to a new
    /// generation (`pantheon recover-clock`).
    ClockSkew {
        entry: EntryId,
        skew_ms: u64,
    },
    /// The log moved to a new generation (its ids follow Redis's clock again); the old log,
    /// ending at `previous`, is kept under the key `archive`. `rebased` nodes had damping
    /// penalties stamped after the new generation's start, moved back to it.
    GenerationStarted {
        previous: EntryId,
        archive: String,
        rebased: u32,
    },
    /// Redis came back empty and the projector leader re-seeded it with the state it held:
    /// `nodes` nodes and `keys` keys, folded up to `previous` (the last entry it applied in the
    /// lost log). Entries written after that and never applied were lost with Redis. `archive`
    /// holds the entries written to the empty Redis before the re-seed, if any (moved after
    /// the marker and applied).
    Restored {
        previous: EntryId,
        nodes: u64,
        keys: u64,
        archive: Option<String>,
    },
}

/// An events-stream entry this build cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad event: {0}")]
pub struct EventDecodeError(pub String);

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Joined { .. } => "joined",
            EventKind::Left { .. } => "left",
            EventKind::Ready { .. } => "ready",
            EventKind::Suspect { .. } => "suspect",
            EventKind::Died { .. } => "died",
            EventKind::Revived { .. } => "revived",
            EventKind::Recovered { .. } => "recovered",
            EventKind::Drained { .. } => "drained",
            EventKind::Undrained { .. } => "undrained",
            EventKind::WeightChanged { .. } => "weight_changed",
            EventKind::Rebalanced { .. } => "rebalanced",
            EventKind::Assigned { .. } => "assigned",
            EventKind::Unassigned { .. } => "unassigned",
            EventKind::PolicyChanged { .. } => "policy_changed",
            EventKind::ProbersChanged { .. } => "probers_changed",
            EventKind::NoProber => "no_prober",
            EventKind::PanicStarted { .. } => "panic_started",
            EventKind::PanicEnded { .. } => "panic_ended",
            EventKind::Damped { .. } => "damped",
            EventKind::Undamped { .. } => "undamped",
            EventKind::ProberDegraded { .. } => "prober_degraded",
            EventKind::ProberRecovered { .. } => "prober_recovered",
            EventKind::ClockSkew { .. } => "clock_skew",
            EventKind::GenerationStarted { .. } => "generation_started",
            EventKind::Restored { .. } => "restored",
        }
    }

    /// The node and epoch the event is about, if it is a node event.
    pub fn node(&self) -> Option<(&NodeId, u64)> {
        match self {
            EventKind::Joined { node, epoch, .. }
            | EventKind::Left { node, epoch }
            | EventKind::Ready { node, epoch, .. }
            | EventKind::Suspect { node, epoch, .. }
            | EventKind::Died { node, epoch, .. }
            | EventKind::Revived { node, epoch, .. }
            | EventKind::Recovered { node, epoch, .. }
            | EventKind::Drained { node, epoch }
            | EventKind::Undrained { node, epoch }
            | EventKind::WeightChanged { node, epoch, .. }
            | EventKind::PanicStarted { node, epoch, .. }
            | EventKind::Damped { node, epoch, .. }
            | EventKind::Undamped { node, epoch, .. } => Some((node, *epoch)),
            _ => None,
        }
    }
}

fn opt_node(n: &Option<NodeId>) -> &str {
    n.as_ref().map_or("-", NodeId::as_str)
}

fn encode_flows(flows: &[Flow]) -> String {
    let parts: Vec<String> = flows
        .iter()
        .map(|f| format!("{}>{}={}", opt_node(&f.from), opt_node(&f.to), f.keys))
        .collect();
    parts.join(" ")
}

fn decode_flows(s: &str) -> Result<Vec<Flow>, EventDecodeError> {
    let bad = || EventDecodeError(format!("bad flows {s:?}"));
    let node = |x: &str| -> Result<Option<NodeId>, EventDecodeError> {
        if x == "-" {
            Ok(None)
        } else {
            NodeId::new(x).map(Some).map_err(|_| bad())
        }
    };
    s.split_whitespace()
        .map(|part| {
            let (from, rest) = part.split_once('>').ok_or_else(bad)?;
            let (to, n) = rest.split_once('=').ok_or_else(bad)?;
            Ok(Flow {
                from: node(from)?,
                to: node(to)?,
                keys: n.parse().map_err(|_| bad())?,
            })
        })
        .collect()
}

impl Event {
    /// Milliseconds since the epoch, from the causing entry id.
    pub fn at(&self) -> u64 {
        self.cause.ms
    }

    pub fn encode(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("type", self.kind.name().to_owned())];
        if let Some((node, epoch)) = self.kind.node() {
            out.push(("node", node.to_string()));
            out.push(("epoch", epoch.to_string()));
        }
        out.push(("cause", self.cause.to_string()));
        out.push(("at", self.at().to_string()));
        match &self.kind {
            EventKind::Joined { url, weight, .. } => {
                out.push(("url", url.clone()));
                out.push(("weight", weight.to_string()));
            }
            EventKind::Ready { fails, .. }
            | EventKind::Suspect { fails, .. }
            | EventKind::Died { fails, .. } => {
                out.push(("fails", fails.to_string()));
            }
            EventKind::Revived { successes, .. } | EventKind::Recovered { successes, .. } => {
                out.push(("successes", successes.to_string()));
            }
            EventKind::WeightChanged {
                weight, previous, ..
            } => {
                out.push(("weight", weight.to_string()));
                out.push(("previous", previous.to_string()));
            }
            EventKind::Rebalanced { moved, flows } => {
                out.push(("moved", moved.to_string()));
                out.push(("flows", encode_flows(flows)));
            }
            EventKind::Assigned { keys } | EventKind::Unassigned { keys } => {
                out.push(("keys", keys.to_string()));
            }
            EventKind::PolicyChanged { policy } => {
                out.push(("fall", policy.fall.to_string()));
                out.push(("rise", policy.rise.to_string()));
                out.push(("strategy", policy.strategy.as_str().to_owned()));
                out.push(("vnodes", policy.vnodes.to_string()));
                out.push(("panic", policy.panic.to_string()));
                for (name, v) in policy.damping_fields() {
                    out.push((name, v.to_string()));
                }
            }
            EventKind::Damped {
                penalty, reuse_at, ..
            } => {
                out.push(("penalty", penalty.to_string()));
                out.push(("reuse_at", reuse_at.to_string()));
            }
            EventKind::Undamped { penalty, .. } => {
                out.push(("penalty", penalty.to_string()));
            }
            EventKind::PanicStarted {
                dead, nodes, panic, ..
            } => {
                out.push(("dead", dead.to_string()));
                out.push(("nodes", nodes.to_string()));
                out.push(("panic", panic.to_string()));
            }
            EventKind::PanicEnded { dead, nodes } => {
                out.push(("dead", dead.to_string()));
                out.push(("nodes", nodes.to_string()));
            }
            EventKind::ProbersChanged { alive } => {
                out.push(("probers", alive.len().to_string()));
                out.push(("alive", alive.join(" ")));
            }
            EventKind::ProberDegraded {
                prober,
                failing,
                probed,
                lag_ms,
            }
            | EventKind::ProberRecovered {
                prober,
                failing,
                probed,
                lag_ms,
            } => {
                out.push(("prober", prober.clone()));
                out.push(("failing", failing.to_string()));
                out.push(("probed", probed.to_string()));
                out.push(("lag_ms", lag_ms.to_string()));
            }
            EventKind::ClockSkew { entry, skew_ms } => {
                out.push(("entry", entry.to_string()));
                out.push(("skew_ms", skew_ms.to_string()));
            }
            EventKind::GenerationStarted {
                previous,
                archive,
                rebased,
            } => {
                out.push(("previous", previous.to_string()));
                out.push(("archive", archive.clone()));
                out.push(("rebased", rebased.to_string()));
            }
            EventKind::Restored {
                previous,
                nodes,
                keys,
                archive,
            } => {
                out.push(("previous", previous.to_string()));
                out.push(("nodes", nodes.to_string()));
                out.push(("keys", keys.to_string()));
                if let Some(archive) = archive {
                    out.push(("archive", archive.clone()));
                }
            }
            EventKind::Left { .. }
            | EventKind::Drained { .. }
            | EventKind::Undrained { .. }
            | EventKind::NoProber => {}
        }
        out
    }

    /// Decodes an events-stream entry (as written by [`Event::encode`]).
    pub fn decode<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        raw: &[(K, V)],
    ) -> Result<Self, EventDecodeError> {
        let e = |x: crate::DecodeError| EventDecodeError(x.to_string());
        let f = Fields::new(raw).map_err(e)?;
        let text = |name: &'static str| f.req(name).map_err(e);
        let opt_text = |name: &'static str| -> Result<Option<String>, EventDecodeError> {
            Ok(f.opt(name).map_err(e)?.map(str::to_owned))
        };
        let num = |name: &'static str| -> Result<u64, EventDecodeError> {
            f.opt_num::<u64>(name)
                .map_err(e)?
                .ok_or_else(|| EventDecodeError(format!("missing {name}")))
        };
        let small = |name: &'static str| -> Result<u32, EventDecodeError> {
            u32::try_from(num(name)?).map_err(|_| EventDecodeError(format!("{name} out of range")))
        };
        let node = || -> Result<NodeId, EventDecodeError> {
            NodeId::new(text("node")?).map_err(|x| EventDecodeError(x.to_string()))
        };
        let id = |name: &'static str| -> Result<EntryId, EventDecodeError> {
            text(name)?
                .parse()
                .map_err(|x: crate::ids::EntryIdError| EventDecodeError(x.to_string()))
        };
        let cause = id("cause")?;
        // Fields added after the first release: events written before them lack them.
        let or = |name: &'static str, default: u32| -> Result<u32, EventDecodeError> {
            Ok(f.opt_num::<u32>(name).map_err(e)?.unwrap_or(default))
        };
        let kind = match text("type")? {
            "joined" => EventKind::Joined {
                node: node()?,
                epoch: num("epoch")?,
                url: text("url")?.to_owned(),
                weight: small("weight")?,
            },
            "left" => EventKind::Left {
                node: node()?,
                epoch: num("epoch")?,
            },
            "ready" => EventKind::Ready {
                node: node()?,
                epoch: num("epoch")?,
                fails: small("fails")?,
            },
            "suspect" => EventKind::Suspect {
                node: node()?,
                epoch: num("epoch")?,
                fails: small("fails")?,
            },
            "died" => EventKind::Died {
                node: node()?,
                epoch: num("epoch")?,
                fails: small("fails")?,
            },
            "revived" => EventKind::Revived {
                node: node()?,
                epoch: num("epoch")?,
                successes: small("successes")?,
            },
            "recovered" => EventKind::Recovered {
                node: node()?,
                epoch: num("epoch")?,
                successes: small("successes")?,
            },
            "drained" => EventKind::Drained {
                node: node()?,
                epoch: num("epoch")?,
            },
            "undrained" => EventKind::Undrained {
                node: node()?,
                epoch: num("epoch")?,
            },
            "weight_changed" => EventKind::WeightChanged {
                node: node()?,
                epoch: num("epoch")?,
                weight: small("weight")?,
                previous: small("previous")?,
            },
            "rebalanced" => EventKind::Rebalanced {
                moved: num("moved")?,
                // Written by the projector, one `from>to=n` per pair of nodes: a burst of
                // deaths on a large fleet makes it longer than an input field may be.
                flows: decode_flows(f.req_any_length("flows").map_err(e)?)?,
            },
            "assigned" => EventKind::Assigned { keys: num("keys")? },
            "unassigned" => EventKind::Unassigned { keys: num("keys")? },
            "policy_changed" => EventKind::PolicyChanged {
                policy: Policy {
                    fall: small("fall")?,
                    rise: small("rise")?,
                    strategy: text("strategy")?
                        .parse::<Strategy>()
                        .map_err(EventDecodeError)?,
                    vnodes: small("vnodes")?,
                    panic: or("panic", Policy::DEFAULT_PANIC)?,
                    damp_penalty: or("damp_penalty", Policy::DEFAULT_DAMP_PENALTY)?,
                    damp_suppress: or("damp_suppress", Policy::DEFAULT_DAMP_SUPPRESS)?,
                    damp_reuse: or("damp_reuse", Policy::DEFAULT_DAMP_REUSE)?,
                    damp_half_life: or("damp_half_life", Policy::DEFAULT_DAMP_HALF_LIFE)?,
                    damp_max_suppress: or("damp_max_suppress", Policy::DEFAULT_DAMP_MAX_SUPPRESS)?,
                },
            },
            "damped" => EventKind::Damped {
                node: node()?,
                epoch: num("epoch")?,
                penalty: small("penalty")?,
                reuse_at: num("reuse_at")?,
            },
            "undamped" => EventKind::Undamped {
                node: node()?,
                epoch: num("epoch")?,
                penalty: small("penalty")?,
            },
            "panic_started" => EventKind::PanicStarted {
                node: node()?,
                epoch: num("epoch")?,
                dead: small("dead")?,
                nodes: small("nodes")?,
                panic: small("panic")?,
            },
            "panic_ended" => EventKind::PanicEnded {
                dead: small("dead")?,
                nodes: small("nodes")?,
            },
            "probers_changed" => EventKind::ProbersChanged {
                alive: text("alive")?
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
            },
            "no_prober" => EventKind::NoProber,
            "prober_degraded" => EventKind::ProberDegraded {
                prober: text("prober")?.to_owned(),
                failing: small("failing")?,
                probed: small("probed")?,
                lag_ms: small("lag_ms")?,
            },
            "prober_recovered" => EventKind::ProberRecovered {
                prober: text("prober")?.to_owned(),
                failing: small("failing")?,
                probed: small("probed")?,
                lag_ms: small("lag_ms")?,
            },
            "clock_skew" => EventKind::ClockSkew {
                entry: id("entry")?,
                skew_ms: num("skew_ms")?,
            },
            "generation_started" => EventKind::GenerationStarted {
                previous: id("previous")?,
                archive: text("archive")?.to_owned(),
                rebased: small("rebased")?,
            },
            "restored" => EventKind::Restored {
                previous: id("previous")?,
                nodes: num("nodes")?,
                keys: num("keys")?,
                archive: opt_text("archive")?,
            },
            other => return Err(EventDecodeError(format!("unknown event type {other:?}"))),
        };
        Ok(Event { cause, kind })
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.encode().iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}
