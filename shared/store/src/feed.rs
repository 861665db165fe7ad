//! Each node's ownership feed: a stream `node:<id>:feed` with one entry per change of the keys
//! it owns, appended by the same atomic commit that changes the read models, so the feed and
//! `node:<id>:keys` never disagree. See `docs/adr/0015-ownership-tokens-and-feeds.md`.
//!
//! An entry has `op` (`acquire`, `release` or `handoff`), its keys (`pkeys`, sorted and
//! front-coded, or `keys`, a JSON array, whichever is shorter: [`key_list`]), `token` (the
//! keys' token after the change: the node's own for `acquire` and `handoff`, the new owner's
//! for `release`, the floor when no node owns them now), `peer` (the node they came from or
//! went to; absent when none did) and `cause` (the log entry that moved them). A `handoff`
//! entry asks the node to release keys it still owns to `peer` (docs/adr/0016); an `acquire`
//! of keys a node released with their state has `state 1`: the values wait in the releasing
//! node's hand-off hash ([`crate::handoff`]). One commit writes at most
//! [`LINE_MAX_KEYS`] keys per entry, so an entry costs bytes in proportion to the keys that
//! changed, never to the node's whole set.
//!
//! Retention: each feed keeps about its newest [`FEED_MAX_LEN`] entries (`XADD ... MAXLEN ~`,
//! which may keep up to one macro node more). A node that leaves keeps its feed for
//! [`LEFT_FEED_TTL_MS`], so its watchers read the final releases. A reader that resumes from
//! an entry the feed no longer holds starts again from a [`Snapshot`]: trimming drops the
//! oldest entries only, so "the entry I resume from is still there" proves nothing after it
//! was dropped.

use std::collections::HashMap;

use pantheon_domain::last_change::LastChange;
use pantheon_domain::{Applied, EntryId, KeyChange, NodeId, State};
use redis::aio::ConnectionLike;

use crate::StoreError;
use crate::commit::Batch;
use crate::layout::Layout;
use crate::stream::{self, After, Bound, RawEntry};

pub mod key_list;

/// Entries each feed keeps (approximately: `MAXLEN ~`).
pub const FEED_MAX_LEN: u64 = 1000;
/// Most keys in one feed entry; a larger change is split over several entries.
pub const LINE_MAX_KEYS: usize = 10_000;
/// How long the feed of a node that left is kept.
pub const LEFT_FEED_TTL_MS: u64 = 24 * 3600 * 1000;

/// What a feed entry says happened to the keys it lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeedOp {
    Acquire,
    Release,
    /// The node still owns the keys, and is asked to release them to `peer`.
    Handoff,
}

impl FeedOp {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedOp::Acquire => "acquire",
            FeedOp::Release => "release",
            FeedOp::Handoff => "handoff",
        }
    }
}

/// One feed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    pub id: EntryId,
    pub op: FeedOp,
    pub keys: Vec<String>,
    pub token: u64,
    pub peer: Option<NodeId>,
    pub cause: Option<EntryId>,
    /// An `acquire` of keys `peer` released with their state (read it from `peer`'s hand-off
    /// hash).
    pub state: bool,
}

impl FeedEntry {
    /// Decodes a raw stream entry; an entry this build cannot read is an error that names it.
    pub fn decode(raw: &RawEntry) -> Result<Self, StoreError> {
        let bad = |why: &str| StoreError::Reply(format!("feed entry {}: {why}", raw.id));
        let op = match raw.get("op") {
            Some("acquire") => FeedOp::Acquire,
            Some("release") => FeedOp::Release,
            Some("handoff") => FeedOp::Handoff,
            other => return Err(bad(&format!("unknown op {other:?}"))),
        };
        let keys: Vec<String> = match (raw.get("pkeys"), raw.get("keys")) {
            (Some(prefixed), _) => {
                key_list::decode_prefixed(prefixed).map_err(|e| bad(&format!("pkeys: {e}")))?
            }
            (None, json) => {
                serde_json::from_str(json.unwrap_or("")).map_err(|e| bad(&format!("keys: {e}")))?
            }
        };
        let token = raw
            .get("token")
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| bad("token is not a number"))?;
        let peer = match raw.get("peer") {
            Some(p) => Some(NodeId::new(p).map_err(|e| bad(&format!("peer: {e}")))?),
            None => None,
        };
        let cause = raw.get("cause").and_then(|c| c.parse().ok());
        Ok(Self {
            id: raw.id,
            op,
            keys,
            token,
            peer,
            cause,
            state: raw.get("state") == Some("1"),
        })
    }
}

/// One group of keys that changed the same way in one applied entry.
struct Line<'a> {
    node: &'a NodeId,
    op: FeedOp,
    peer: Option<&'a NodeId>,
    state: bool,
    keys: Vec<&'a str>,
}

/// Key changes grouped by node, direction and peer, in the order each group first appears.
#[derive(Default)]
struct Lines<'a> {
    lines: Vec<Line<'a>>,
    index: HashMap<(&'a NodeId, FeedOp, Option<&'a NodeId>, bool), usize>,
}

impl<'a> Lines<'a> {
    fn add(
        &mut self,
        (node, op, peer, state): (&'a NodeId, FeedOp, Option<&'a NodeId>, bool),
        key: &'a str,
    ) {
        let lines = &mut self.lines;
        let at = *self
            .index
            .entry((node, op, peer, state))
            .or_insert_with(|| {
                lines.push(Line {
                    node,
                    op,
                    peer,
                    state,
                    keys: Vec::new(),
                });
                lines.len() - 1
            });
        lines[at].keys.push(key);
    }
}

/// The token keys have once they belong to `owner` (`None`: no node owns them; the floor).
fn token_now(state: &State, owner: Option<&NodeId>) -> u64 {
    owner
        .and_then(|o| state.token_of(o))
        .unwrap_or_else(|| state.tokens().floor())
}

/// Stages the feed entries of one applied entry (after `state` applied it), in the order
/// the key changes were made.
pub fn stage(batch: &mut Batch, layout: &Layout, state: &State, applied: &Applied, cause: EntryId) {
    let mut lines = Lines::default();
    for change in &applied.key_changes {
        let (key, from, to, state) = match change {
            KeyChange::Added { key, owner } => (key, None, owner.as_ref(), false),
            KeyChange::Moved { key, from, to } => (key, from.as_ref(), to.as_ref(), false),
            KeyChange::HandedOver { key, from, to } => (key, Some(from), to.as_ref(), true),
            KeyChange::Removed { key, owner } => (key, owner.as_ref(), None, false),
            KeyChange::HandoffAsked { key, from, to } => {
                lines.add((from, FeedOp::Handoff, to.as_ref(), false), key);
                continue;
            }
            KeyChange::Kept { key, owner } => {
                lines.add((owner, FeedOp::Acquire, None, false), key);
                continue;
            }
        };
        if let Some(from) = from {
            lines.add((from, FeedOp::Release, to, false), key);
        }
        if let Some(to) = to {
            lines.add((to, FeedOp::Acquire, from, state), key);
        }
    }
    for line in &lines.lines {
        let token = match line.op {
            FeedOp::Acquire | FeedOp::Handoff => token_now(state, Some(line.node)),
            FeedOp::Release => token_now(state, line.peer),
        };
        let feed = layout.node_feed(line.node);
        for chunk in line.keys.chunks(LINE_MAX_KEYS) {
            let keys = key_list::encode(chunk);
            let max_len = FEED_MAX_LEN.to_string();
            let token = token.to_string();
            let cause = cause.to_string();
            let mut args: Vec<&str> = vec![
                "MAXLEN",
                "~",
                &max_len,
                "*",
                "op",
                line.op.as_str(),
                keys.field(),
                keys.value(),
                "token",
                &token,
                "cause",
                &cause,
            ];
            if let Some(peer) = line.peer {
                args.extend(["peer", peer.as_str()]);
            }
            if line.state {
                args.extend(["state", "1"]);
            }
            batch.call("XADD", &[&feed], args);
        }
    }
    for id in &applied.nodes_changed {
        let feed = layout.node_feed(id);
        match state.node(id) {
            // A node that left keeps its feed for a while; one that (re-)joins keeps it again.
            None => batch.call("PEXPIRE", &[&feed], [LEFT_FEED_TTL_MS.to_string()]),
            Some(n) if n.since == cause && n.last == LastChange::Joined => {
                batch.call("PERSIST", &[&feed], std::iter::empty::<&str>())
            }
            Some(_) => {}
        }
    }
}

/// A node's owned set and the feed position it is current at, read atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The newest feed entry when the set was read (`None`: the feed is empty); reading on
    /// from it misses nothing and repeats nothing.
    pub at: Option<EntryId>,
    pub keys: Vec<String>,
    /// The keys' token (0 when the node owns nothing or never did).
    pub token: u64,
}

/// Reads a node's snapshot: its key set, its feed's newest id and its token, in one
/// `MULTI`, so no commit falls between them (commits are atomic scripts).
pub async fn snapshot<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    node: &NodeId,
) -> Result<Snapshot, StoreError> {
    let (mut keys, newest, record, floor): (
        Vec<String>,
        redis::Value,
        Option<String>,
        Option<u64>,
    ) = redis::pipe()
        .atomic()
        .cmd("SMEMBERS")
        .arg(layout.node_keys(node))
        .cmd("XREVRANGE")
        .arg(layout.node_feed(node))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .cmd("HGET")
        .arg(layout.nodes())
        .arg(node.as_str())
        .cmd("HGET")
        .arg(layout.ring())
        .arg(crate::readmodel::TOKEN_FLOOR_FIELD)
        .query_async(con)
        .await?;
    keys.sort();
    let at = stream::parse_entries(newest)?.first().map(|e| e.id);
    let own = match record {
        Some(json) => crate::readmodel::NodeRecord::parse(node.as_str(), &json)?.token,
        None => 0,
    };
    let token = if keys.is_empty() {
        0
    } else {
        own.max(floor.unwrap_or(0))
    };
    Ok(Snapshot { at, keys, token })
}

/// What reading a feed on from a position found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedRead {
    /// The entries after the position (possibly none yet).
    After(Vec<FeedEntry>),
    /// The position is no longer in the feed (trimmed, expired, or never there): start again
    /// from a [`snapshot`].
    Gone,
}

/// Up to `count` entries after `from`, read with `XRANGE from +` so that `from` itself must
/// come back first: if it does not, entries after it may have been trimmed too.
pub async fn read_after<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    node: &NodeId,
    from: EntryId,
    count: usize,
) -> Result<FeedRead, StoreError> {
    let raw = stream::range(
        con,
        &layout.node_feed(node),
        Bound::Including(from),
        Bound::Open,
        Some(count + 1),
    )
    .await?;
    if raw.first().map(|e| e.id) != Some(from) {
        return Ok(FeedRead::Gone);
    }
    let entries = raw[1..]
        .iter()
        .map(FeedEntry::decode)
        .collect::<Result<_, _>>()?;
    Ok(FeedRead::After(entries))
}

/// Every entry of a node's feed, oldest first (tests and audits: a feed holds at most about
/// [`FEED_MAX_LEN`] entries).
pub async fn all<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    node: &NodeId,
) -> Result<Vec<FeedEntry>, StoreError> {
    let raw = stream::range(con, &layout.node_feed(node), Bound::Open, Bound::Open, None).await?;
    raw.iter().map(FeedEntry::decode).collect()
}

/// Waits up to `block` for an entry after `after` (`None`: after the newest now). Blocks the
/// connection: pass a dedicated one ([`crate::Redis::blocking`]). Returns whether one came;
/// read it with [`read_after`], which checks that nothing was trimmed in between.
pub async fn wait_after<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    node: &NodeId,
    after: Option<EntryId>,
    block: std::time::Duration,
) -> Result<bool, StoreError> {
    let after = after.map_or(After::Now, After::Id);
    let got = stream::read(con, &layout.node_feed(node), after, 1, block).await?;
    Ok(!got.is_empty())
}
