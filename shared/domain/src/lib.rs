//! Pantheon's domain: everything that decides, nothing that does I/O.
//!
//! * [`entry`] — log entries (inputs) and their flat field/value wire format;
//! * [`event`] — events (decided facts) and their wire format;
//! * `wire` — what the entry and event codecs share: checked field access and numbers;
//! * [`limits`] — input limits the decoder enforces (also in the README's wire format);
//! * [`ids`] — node ids and stream entry ids;
//! * [`policy`] — the cluster policy: the values that change decisions, changed by log entries;
//! * [`health`] — the per-node health state machine (joining, rise/fall thresholds, epochs);
//! * [`confirm`] — confirmed deaths and prober self-suspicion (ADR 0008);
//! * [`damping`] — flap damping, in the style of BGP route flap damping (ADR 0007);
//! * [`origin`] — who provably wrote an entry: service entries need the service's proof;
//! * [`cmds`] — client command ids: the window of recent ids that makes retries safe;
//! * [`clock`] — the log's clock and how it is kept from being poisoned (ADR 0009);
//! * [`placement`] — consistent-hash ring and weighted rendezvous hashing;
//! * [`keys`] — the assigned keys and their owners, ordered by key hash (ADR 0002);
//! * [`restore`] — what a Redis that came back empty gets back (ADR 0012);
//! * [`load`] — load reports and load-aware placement of hot keys (ADR 0018);
//! * [`last_change`] — a node's last transition (`joined`, `died`, ...), as `nodes` shows it;
//! * [`explain`] — the owners one key had over time and why, without building the ring;
//! * [`token`] — ownership tokens: larger for every newer owner of a key (ADR 0015);
//! * [`state`] — the fold: `State::apply(entry_id, entry)` → events and read-model changes.
//!
//! There is no clock and no randomness here: time is the log entry id, hashing is xxh3-64 over
//! explicit bytes, so replaying the same log gives the same state and checksum on any build.

pub mod clock;
pub mod cmds;
pub mod confirm;
pub mod damping;
pub mod digest;
pub mod entry;
pub mod event;
pub mod explain;
pub mod handoff;
pub mod health;
pub mod ids;
pub mod keys;
pub mod last_change;
pub mod limits;
pub mod load;
pub mod origin;
pub mod placement;
pub mod policy;
pub mod restore;
pub mod state;
pub mod token;
mod wire;

pub use entry::{Command, DecodeError, LogEntry};
pub use event::{Event, EventKind};
pub use health::{Health, NodeHealth};
pub use ids::{EntryId, NodeId};
pub use origin::Origin;
pub use placement::{Placement, Strategy};
pub use policy::Policy;
pub use state::{Applied, KeyChange, Node, Rejection, State};
