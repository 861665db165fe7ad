//! [`Pantheon::watch`]: a node's ownership changes, in commit order, with nothing missed and
//! nothing repeated: first a snapshot of the keys it owns (unless resuming), then each
//! `acquire` and `release` as the projector commits it. Folding the lines (a snapshot
//! replaces the set, an acquire adds, a release removes, a `handoff` changes nothing: the
//! node still owns those keys and is asked to release them) always gives the node's key set
//! as of the last line. See `pantheon_store::feed` for the feed and its retention.

use std::collections::VecDeque;
use std::time::Duration;

use pantheon_domain::{EntryId, NodeId};
use pantheon_store::PinnedConnection;
use pantheon_store::feed::{self, FeedEntry, FeedOp, FeedRead};

use crate::{ClientError, Pantheon};

/// Entries read per round trip.
const PAGE: usize = 500;
/// Longest single wait for a new entry (the loop then reads again, so a reconnect or a
/// trimmed feed is noticed).
const WAIT: Duration = Duration::from_secs(5);

/// What a watch line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchOp {
    /// The node's whole owned set (replaces whatever the reader had).
    Snapshot,
    /// Keys the node gained in one commit.
    Acquire,
    /// Keys the node lost in one commit.
    Release,
    /// Keys the node still owns and is asked to release to `peer`: a planned move waits for
    /// it (docs/adr/0016). The worker library answers with [`Pantheon::release`].
    Handoff,
}

impl WatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            WatchOp::Snapshot => "snapshot",
            WatchOp::Acquire => "acquire",
            WatchOp::Release => "release",
            WatchOp::Handoff => "handoff",
        }
    }
}

/// One change of a node's owned keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchLine {
    /// The feed position after this line: resume with [`Pantheon::watch`]`(node, Some(id))`.
    /// `0-0` for a snapshot of a feed that is still empty.
    pub id: EntryId,
    pub op: WatchOp,
    pub keys: Vec<String>,
    /// The keys' token: the node's own for a snapshot or an acquire; for a release, the
    /// token of whoever owns them now (larger than the node's), or the floor if nobody does.
    pub token: u64,
    /// Where the keys came from (acquire) or went to (release); `None` when no node did.
    pub peer: Option<NodeId>,
    /// The log entry that caused the change (`None` for a snapshot).
    pub cause: Option<EntryId>,
    /// An `acquire` of keys `peer` released with their state: read the values with
    /// [`Pantheon::take_handoff_state`].
    pub state: bool,
}

impl From<FeedEntry> for WatchLine {
    fn from(e: FeedEntry) -> Self {
        Self {
            id: e.id,
            op: match e.op {
                FeedOp::Acquire => WatchOp::Acquire,
                FeedOp::Release => WatchOp::Release,
                FeedOp::Handoff => WatchOp::Handoff,
            },
            keys: e.keys,
            token: e.token,
            peer: e.peer,
            cause: e.cause,
            state: e.state,
        }
    }
}

/// Where the reader is in the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Needs a snapshot first.
    Start,
    /// A snapshot found the feed empty: every entry from the start is new.
    FromStart,
    /// After this feed entry.
    At(EntryId),
}

/// A node's ownership feed, read with [`Watch::next`].
pub struct Watch {
    client: Pantheon,
    node: NodeId,
    position: Position,
    ready: VecDeque<WatchLine>,
    blocking: Option<PinnedConnection>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("node", &self.node)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl Pantheon {
    /// Follows `node`'s ownership feed. Without `from` (or with `0-0`) the first line is a
    /// snapshot; with `from` (a line's id) it resumes after that line, or starts again with a
    /// snapshot if the feed no longer holds it.
    pub fn watch(&self, node: &str, from: Option<EntryId>) -> Result<Watch, ClientError> {
        let node = NodeId::new(node).map_err(|e| ClientError::Config(e.to_string()))?;
        let position = match from {
            None | Some(EntryId::ZERO) => Position::Start,
            Some(id) => Position::At(id),
        };
        Ok(Watch {
            client: self.clone(),
            node,
            position,
            ready: VecDeque::new(),
            blocking: None,
        })
    }

    /// Whether `node`'s feed holds a line after `at`, or no longer holds `at` itself (trimmed,
    /// expired): one `XRANGE`. A follower that has delivered every line up to `at` knows from
    /// a `false` that it has missed no change committed before this call.
    pub async fn feed_has_after(&self, node: &str, at: EntryId) -> Result<bool, ClientError> {
        let node = NodeId::new(node).map_err(|e| ClientError::Config(e.to_string()))?;
        let mut con = self.con();
        match feed::read_after(&mut con, self.layout(), &node, at, 1).await? {
            FeedRead::After(entries) => Ok(!entries.is_empty()),
            FeedRead::Gone => Ok(true),
        }
    }
}

impl Watch {
    /// The next line, waiting for one as long as it takes.
    pub async fn next(&mut self) -> Result<WatchLine, ClientError> {
        loop {
            if let Some(line) = self.next_within(WAIT).await? {
                return Ok(line);
            }
        }
    }

    /// The next line, or `None` if none came within about `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Result<Option<WatchLine>, ClientError> {
        if let Some(line) = self.ready.pop_front() {
            return Ok(Some(line));
        }
        let layout = self.client.layout().clone();
        let mut con = self.client.con();
        match self.position {
            Position::Start => {
                let snap = feed::snapshot(&mut con, &layout, &self.node).await?;
                self.position = snap.at.map_or(Position::FromStart, Position::At);
                return Ok(Some(WatchLine {
                    id: snap.at.unwrap_or(EntryId::ZERO),
                    op: WatchOp::Snapshot,
                    keys: snap.keys,
                    token: snap.token,
                    peer: None,
                    cause: None,
                    state: false,
                }));
            }
            Position::FromStart => {
                let entries = feed::all(&mut con, &layout, &self.node).await?;
                if entries.len() as u64 >= feed::FEED_MAX_LEN {
                    // So many that trimming may have begun: start over from a snapshot.
                    self.position = Position::Start;
                    return Box::pin(self.next_within(wait)).await;
                }
                if !entries.is_empty() {
                    self.take(entries);
                    return Ok(self.ready.pop_front());
                }
            }
            Position::At(at) => {
                match feed::read_after(&mut con, &layout, &self.node, at, PAGE).await? {
                    FeedRead::Gone => {
                        self.position = Position::Start;
                        return Box::pin(self.next_within(wait)).await;
                    }
                    FeedRead::After(entries) if !entries.is_empty() => {
                        self.take(entries);
                        return Ok(self.ready.pop_front());
                    }
                    FeedRead::After(_) => {}
                }
            }
        }
        // Nothing new: wait on a connection of our own (a blocking read stalls any other
        // command on a shared one), then read again through the gap check above.
        let after = match self.position {
            Position::At(at) => Some(at),
            _ => None,
        };
        let wait = match self.position {
            // `$` cannot see an entry added between the read above and this wait: keep it short.
            Position::FromStart => wait.min(Duration::from_millis(200)),
            _ => wait,
        };
        let blocking = match &mut self.blocking {
            Some(con) => con,
            None => self.blocking.insert(self.client.redis().blocking().await?),
        };
        if let Err(e) = feed::wait_after(blocking, &layout, &self.node, after, wait).await {
            self.blocking = None;
            return Err(e.into());
        }
        Ok(None)
    }

    /// Lines already read and waiting: the next [`Watch::next_within`] returns one of them
    /// without a round trip to Redis.
    pub fn buffered(&self) -> usize {
        self.ready.len()
    }

    fn take(&mut self, entries: Vec<FeedEntry>) {
        if let Some(last) = entries.last() {
            self.position = Position::At(last.id);
        }
        self.ready.extend(entries.into_iter().map(WatchLine::from));
    }
}
