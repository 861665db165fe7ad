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
    /// A planned move asks `node` (which hands off) to release `keys` assigned keys it owns;
    /// it keeps them until it does (ADR 0016).
    HandoffStarted {
        node: NodeId,
        epoch: u64,
        keys: u64,
    },
    /// `node` released `keys` keys it was handing off, with their state; they moved in the
    /// same commit (see the `rebalanced` event of the same cause).
    HandedOff {
        node: NodeId,
        epoch: u64,
        keys: u64,
    },
    /// `node` did not release `keys` keys within the policy's `handoff_timeout`: they moved
    /// without its state, and its token for them is stale.
    HandoffForced {
        node: NodeId,
        epoch: u64,
        keys: u64,
    },
    /// A `loads` entry gave `node` a load that is not one (garbage, negative, absurd): it was
    /// refused, and nothing moved for it.
    LoadRefused {
        node: NodeId,
        epoch: u64,
        reason: String,
    },
    /// A round of load-aware placement (ADR 0018) moved `moved` hot keys off nodes above
    /// `(1 + ε) × mean` and changed the read replicas of `replicas` keys; `busiest` is the
    /// busiest node's load over the mean before the round, in percent.
    LoadBalanced {
        moved: u64,
        replicas: u64,
        busiest: u64,
    },
}

/// An events-stream entry this build cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad event: {0}")]
pub struct EventDecodeError(pub String);

/// One table for the event types: the `type` field's name of each [`EventKind`] variant.
/// [`EventType`], [`EventKind::event_type`] and the name lookup are generated from it, so a
/// variant cannot lack a name, and [`Event::decode`] matches on [`EventType`] exhaustively.
macro_rules! event_types {
    ($($variant:ident = $name:literal,)*) => {
        /// The type of an event, as its `type` field names it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventType {
            $($variant,)*
        }

        impl EventType {
            /// Every event type.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant,)*];

            /// The `type` field's value.
            pub fn name(self) -> &'static str {
                match self {
                    $(EventType::$variant => $name,)*
                }
            }
        }

        impl EventKind {
            /// The type of this event.
            pub fn event_type(&self) -> EventType {
                match self {
                    $(EventKind::$variant { .. } => EventType::$variant,)*
                }
            }
        }
    };
}

event_types! {
    Joined = "joined",
    Left = "left",
    Ready = "ready",
    Suspect = "suspect",
    Died = "died",
    Revived = "revived",
    Recovered = "recovered",
    Drained = "drained",
    Undrained = "undrained",
    WeightChanged = "weight_changed",
    Rebalanced = "rebalanced",
    Assigned = "assigned",
    Unassigned = "unassigned",
    PolicyChanged = "policy_changed",
    ProbersChanged = "probers_changed",
    NoProber = "no_prober",
    PanicStarted = "panic_started",
    PanicEnded = "panic_ended",
    Damped = "damped",
    Undamped = "undamped",
    ProberDegraded = "prober_degraded",
    ProberRecovered = "prober_recovered",
    ClockSkew = "clock_skew",
    GenerationStarted = "generation_started",
    Restored = "restored",
    HandoffStarted = "handoff_started",
    HandedOff = "handed_off",
    HandoffForced = "handoff_forced",
    LoadRefused = "load_refused",
    LoadBalanced = "load_balanced",
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for EventType {
    type Err = EventDecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .iter()
            .copied()
            .find(|t| t.name() == s)
            .ok_or_else(|| EventDecodeError(format!("unknown event type {s:?}")))
    }
}

impl EventKind {
    /// The `type` field's value.
    pub fn name(&self) -> &'static str {
        self.event_type().name()
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
            | EventKind::Undamped { node, epoch, .. }
            | EventKind::HandoffStarted { node, epoch, .. }
            | EventKind::HandedOff { node, epoch, .. }
            | EventKind::HandoffForced { node, epoch, .. }
            | EventKind::LoadRefused { node, epoch, .. } => Some((node, *epoch)),
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
            EventKind::Assigned { keys }
            | EventKind::Unassigned { keys }
            | EventKind::HandoffStarted { keys, .. }
            | EventKind::HandedOff { keys, .. }
            | EventKind::HandoffForced { keys, .. } => {
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
                out.push(("handoff_timeout", policy.handoff_timeout.to_string()));
                if policy.load_epsilon != Policy::DEFAULT_LOAD_EPSILON {
                    out.push(("load_epsilon", policy.load_epsilon.to_string()));
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
            EventKind::LoadRefused { reason, .. } => {
                out.push(("reason", reason.clone()));
            }
            EventKind::LoadBalanced {
                moved,
                replicas,
                busiest,
            } => {
                out.push(("moved", moved.to_string()));
                out.push(("replicas", replicas.to_string()));
                out.push(("busiest", busiest.to_string()));
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
        let r = Reader::new(raw)?;
        let cause = r.id("cause")?;
        let kind = match r.text("type")?.parse::<EventType>()? {
            EventType::Joined => EventKind::Joined {
                node: r.node()?,
                epoch: r.num("epoch")?,
                url: r.text("url")?.to_owned(),
                weight: r.small("weight")?,
            },
            EventType::Left => EventKind::Left {
                node: r.node()?,
                epoch: r.num("epoch")?,
            },
            EventType::Ready => EventKind::Ready {
                node: r.node()?,
                epoch: r.num("epoch")?,
                fails: r.small("fails")?,
            },
            EventType::Suspect => EventKind::Suspect {
                node: r.node()?,
                epoch: r.num("epoch")?,
                fails: r.small("fails")?,
            },
            EventType::Died => EventKind::Died {
                node: r.node()?,
                epoch: r.num("epoch")?,
                fails: r.small("fails")?,
            },
            EventType::Revived => EventKind::Revived {
                node: r.node()?,
                epoch: r.num("epoch")?,
                successes: r.small("successes")?,
            },
            EventType::Recovered => EventKind::Recovered {
                node: r.node()?,
                epoch: r.num("epoch")?,
                successes: r.small("successes")?,
            },
            EventType::Drained => EventKind::Drained {
                node: r.node()?,
                epoch: r.num("epoch")?,
            },
            EventType::Undrained => EventKind::Undrained {
                node: r.node()?,
                epoch: r.num("epoch")?,
            },
            EventType::WeightChanged => EventKind::WeightChanged {
                node: r.node()?,
                epoch: r.num("epoch")?,
                weight: r.small("weight")?,
                previous: r.small("previous")?,
            },
            EventType::Rebalanced => EventKind::Rebalanced {
                moved: r.num("moved")?,
                flows: r.flows()?,
            },
            EventType::Assigned => EventKind::Assigned {
                keys: r.num("keys")?,
            },
            EventType::Unassigned => EventKind::Unassigned {
                keys: r.num("keys")?,
            },
            EventType::PolicyChanged => EventKind::PolicyChanged {
                policy: r.policy()?,
            },
            EventType::Damped => EventKind::Damped {
                node: r.node()?,
                epoch: r.num("epoch")?,
                penalty: r.small("penalty")?,
                reuse_at: r.num("reuse_at")?,
            },
            EventType::Undamped => EventKind::Undamped {
                node: r.node()?,
                epoch: r.num("epoch")?,
                penalty: r.small("penalty")?,
            },
            EventType::PanicStarted => EventKind::PanicStarted {
                node: r.node()?,
                epoch: r.num("epoch")?,
                dead: r.small("dead")?,
                nodes: r.small("nodes")?,
                panic: r.small("panic")?,
            },
            EventType::PanicEnded => EventKind::PanicEnded {
                dead: r.small("dead")?,
                nodes: r.small("nodes")?,
            },
            EventType::ProbersChanged => EventKind::ProbersChanged {
                alive: r.words("alive")?,
            },
            EventType::NoProber => EventKind::NoProber,
            EventType::ProberDegraded => EventKind::ProberDegraded {
                prober: r.text("prober")?.to_owned(),
                failing: r.small("failing")?,
                probed: r.small("probed")?,
                lag_ms: r.small("lag_ms")?,
            },
            EventType::ProberRecovered => EventKind::ProberRecovered {
                prober: r.text("prober")?.to_owned(),
                failing: r.small("failing")?,
                probed: r.small("probed")?,
                lag_ms: r.small("lag_ms")?,
            },
            EventType::ClockSkew => EventKind::ClockSkew {
                entry: r.id("entry")?,
                skew_ms: r.num("skew_ms")?,
            },
            EventType::GenerationStarted => EventKind::GenerationStarted {
                previous: r.id("previous")?,
                archive: r.text("archive")?.to_owned(),
                rebased: r.small("rebased")?,
            },
            EventType::Restored => EventKind::Restored {
                previous: r.id("previous")?,
                nodes: r.num("nodes")?,
                keys: r.num("keys")?,
                archive: r.opt_text("archive")?,
            },
            EventType::HandoffStarted => EventKind::HandoffStarted {
                node: r.node()?,
                epoch: r.num("epoch")?,
                keys: r.num("keys")?,
            },
            EventType::HandedOff => EventKind::HandedOff {
                node: r.node()?,
                epoch: r.num("epoch")?,
                keys: r.num("keys")?,
            },
            EventType::HandoffForced => EventKind::HandoffForced {
                node: r.node()?,
                epoch: r.num("epoch")?,
                keys: r.num("keys")?,
            },
            EventType::LoadRefused => EventKind::LoadRefused {
                node: r.node()?,
                epoch: r.num("epoch")?,
                reason: r.text("reason")?.to_owned(),
            },
            EventType::LoadBalanced => EventKind::LoadBalanced {
                moved: r.num("moved")?,
                replicas: r.num("replicas")?,
                busiest: r.num("busiest")?,
            },
        };
        Ok(Event { cause, kind })
    }
}

fn bad(e: crate::DecodeError) -> EventDecodeError {
    EventDecodeError(e.to_string())
}

/// The fields of one events-stream entry, read as the event decoder needs them.
struct Reader<'a> {
    f: Fields<'a>,
}

impl<'a> Reader<'a> {
    fn new<K: AsRef<[u8]>, V: AsRef<[u8]>>(raw: &'a [(K, V)]) -> Result<Self, EventDecodeError> {
        Ok(Self {
            f: Fields::new(raw).map_err(bad)?,
        })
    }

    fn text(&self, name: &'static str) -> Result<&'a str, EventDecodeError> {
        self.f.req(name).map_err(bad)
    }

    fn opt_text(&self, name: &'static str) -> Result<Option<String>, EventDecodeError> {
        Ok(self.f.opt(name).map_err(bad)?.map(str::to_owned))
    }

    fn num(&self, name: &'static str) -> Result<u64, EventDecodeError> {
        self.f
            .opt_num::<u64>(name)
            .map_err(bad)?
            .ok_or_else(|| EventDecodeError(format!("missing {name}")))
    }

    fn small(&self, name: &'static str) -> Result<u32, EventDecodeError> {
        u32::try_from(self.num(name)?).map_err(|_| EventDecodeError(format!("{name} out of range")))
    }

    /// A field added after the first release: events written before it lack it.
    fn small_or(&self, name: &'static str, default: u32) -> Result<u32, EventDecodeError> {
        Ok(self.f.opt_num::<u32>(name).map_err(bad)?.unwrap_or(default))
    }

    /// A space-separated list.
    fn words(&self, name: &'static str) -> Result<Vec<String>, EventDecodeError> {
        Ok(self
            .text(name)?
            .split_whitespace()
            .map(str::to_owned)
            .collect())
    }

    /// A rebalance's key flows. Written by the projector, one `from>to=n` per pair of nodes:
    /// a burst of deaths on a large fleet makes it longer than an input field may be.
    fn flows(&self) -> Result<Vec<Flow>, EventDecodeError> {
        decode_flows(self.f.req_any_length("flows").map_err(bad)?)
    }

    fn node(&self) -> Result<NodeId, EventDecodeError> {
        NodeId::new(self.text("node")?).map_err(|x| EventDecodeError(x.to_string()))
    }

    fn id(&self, name: &'static str) -> Result<EntryId, EventDecodeError> {
        self.text(name)?
            .parse()
            .map_err(|x: crate::ids::EntryIdError| EventDecodeError(x.to_string()))
    }

    fn policy(&self) -> Result<Policy, EventDecodeError> {
        Ok(Policy {
            fall: self.small("fall")?,
            rise: self.small("rise")?,
            strategy: self
                .text("strategy")?
                .parse::<Strategy>()
                .map_err(EventDecodeError)?,
            vnodes: self.small("vnodes")?,
            panic: self.small_or("panic", Policy::DEFAULT_PANIC)?,
            damp_penalty: self.small_or("damp_penalty", Policy::DEFAULT_DAMP_PENALTY)?,
            damp_suppress: self.small_or("damp_suppress", Policy::DEFAULT_DAMP_SUPPRESS)?,
            damp_reuse: self.small_or("damp_reuse", Policy::DEFAULT_DAMP_REUSE)?,
            damp_half_life: self.small_or("damp_half_life", Policy::DEFAULT_DAMP_HALF_LIFE)?,
            damp_max_suppress: self
                .small_or("damp_max_suppress", Policy::DEFAULT_DAMP_MAX_SUPPRESS)?,
            handoff_timeout: self.small_or("handoff_timeout", Policy::DEFAULT_HANDOFF_TIMEOUT)?,
            load_epsilon: self.small_or("load_epsilon", Policy::DEFAULT_LOAD_EPSILON)?,
        })
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_event_type_has_one_name_that_reads_back() {
        let names: HashSet<&str> = EventType::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(names.len(), EventType::ALL.len());
        for t in EventType::ALL {
            assert_eq!(t.name().parse::<EventType>(), Ok(*t));
        }
        let e = "exploded".parse::<EventType>().unwrap_err();
        assert_eq!(e.to_string(), "bad event: unknown event type \"exploded\"");
    }
}
