//! Consumer-group subscriptions to the events stream: [`Subscription`].
//!
//! Delivery is at least once. Each entry stays pending for the group until a consumer acks
//! it. [`Subscription::next`] works in three phases:
//!
//! 1. **own** — on start (and after an error) it re-reads this consumer's own pending
//!    entries (`XREADGROUP ... 0`): whatever was delivered before a restart and not acked
//!    comes back first;
//! 2. **claim** — it takes over entries pending at *any* consumer of the group for longer
//!    than `min_idle` (`XAUTOCLAIM`): a crashed consumer's entries move to a live one, and
//!    an entry this consumer got but did not ack in time is delivered again. The claim scan
//!    repeats every `min_idle / 2` while reading new entries;
//! 3. **new** — it reads new entries (`XREADGROUP ... >` with `BLOCK`) on a dedicated
//!    connection, so the block never stalls other commands.
//!
//! Every re-delivery counts (Redis keeps a delivery counter per pending entry, read with
//! `XPENDING`). An entry delivered more than `max_deliveries` times is moved to the
//! dead-letter stream `<events>:dead` (`pantheon:{c}:events:dead`) with `original_id`,
//! `group`, `deliveries` and the original fields, and acked, in one transaction: a poison
//! entry cannot block a group forever.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use pantheon_domain::{EntryId, Event};
use pantheon_store::group::{self, Group};
use pantheon_store::{PinnedConnection, RawEntry, Redis};
use tokio::time::Instant;

use crate::{ClientError, Pantheon};

/// Where a consumer group starts when [`Pantheon::subscribe`] creates it. An existing group
/// keeps its own position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Start {
    /// Only events appended after the group is created (`$`).
    #[default]
    FromNow,
    /// Every event still in the stream (`0`).
    FromBeginning,
}

/// Settings of a [`Subscription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Where a new group starts.
    pub start: Start,
    /// An entry pending this long without an ack is delivered again, to whichever consumer
    /// claims it first (this one included). Ack faster than this. Default 30 s.
    pub min_idle: Duration,
    /// An entry delivered more often than this is dead-lettered instead. Default 5.
    pub max_deliveries: u64,
    /// Longest single wait for new entries; between waits the claim scan runs. Default 2 s.
    pub block: Duration,
    /// Most entries fetched per read. Default 100.
    pub count: usize,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self {
            start: Start::FromNow,
            min_idle: Duration::from_secs(30),
            max_deliveries: 5,
            block: Duration::from_secs(2),
            count: 100,
        }
    }
}

impl SubscribeOptions {
    fn validate(&self) -> Result<(), ClientError> {
        let bad = |m: &str| Err(ClientError::Config(m.to_owned()));
        if self.min_idle < Duration::from_millis(1) {
            return bad("min_idle must be at least 1ms");
        }
        // BLOCK 0 waits forever, and the claim scan would never run.
        if self.block < Duration::from_millis(1) {
            return bad("block must be at least 1ms");
        }
        if self.max_deliveries == 0 {
            return bad("max_deliveries must be at least 1");
        }
        if self.count == 0 {
            return bad("count must be at least 1");
        }
        Ok(())
    }

    fn claim_every(&self) -> Duration {
        (self.min_idle / 2).max(Duration::from_millis(10))
    }
}

/// What a delivered entry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A decoded event.
    Event(Event),
    /// An entry this build cannot decode (written by a newer version, or by hand). Still
    /// delivered, so the consumer decides: ack it to skip it.
    Raw {
        fields: Vec<(Vec<u8>, Vec<u8>)>,
        error: String,
    },
}

/// One entry handed to a consumer. Ack it with [`Subscription::ack`] once handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The entry's id in the events stream (what [`Subscription::ack`] takes).
    pub id: EntryId,
    /// How many times it has been delivered, this time included (1 = first time).
    pub deliveries: u64,
    pub payload: Payload,
}

impl Delivery {
    /// The event, if the entry decoded.
    pub fn event(&self) -> Option<&Event> {
        match &self.payload {
            Payload::Event(e) => Some(e),
            Payload::Raw { .. } => None,
        }
    }

    fn new(entry: RawEntry, deliveries: u64) -> Self {
        let payload = match Event::decode(&entry.fields) {
            Ok(event) => Payload::Event(event),
            Err(e) => Payload::Raw {
                fields: entry.fields,
                error: e.to_string(),
            },
        };
        Self {
            id: entry.id,
            deliveries,
            payload,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Re-reading this consumer's pending entries after `cursor`.
    Own { cursor: EntryId },
    /// Claiming idle entries, XAUTOCLAIM from `cursor`.
    Claim { cursor: EntryId },
    /// Reading new entries.
    New,
}

/// A consumer in a consumer group on the events stream. Made by [`Pantheon::subscribe`].
///
/// **Semantics: at least once.** [`Subscription::next`] hands out an entry and leaves it
/// pending; only [`Subscription::ack`] removes it. Ack after the event has been *handled*
/// (written, forwarded, committed), never before: a crash (or kill -9) between the two then
/// re-delivers it, to this consumer on its next start or to another after `min_idle`. So
/// the same event can arrive more than once — after a crash, a slow ack, a Redis failover —
/// and a handler must be idempotent or de-duplicate by [`Delivery::id`] (the events-stream
/// id, unique and increasing; `cause` names the log entry behind it). `deliveries` > 1
/// marks a re-delivery. `pantheon events --group` follows the same rule and acks only after
/// stdout took the line (`tests/integration/consumers.rs`: a closed pipe and kill -9 lose
/// nothing).
pub struct Subscription {
    con: Redis,
    /// For `XREADGROUP ... BLOCK` only; reopened after a failure (on the master of the
    /// moment, after a failover).
    blocking: Option<PinnedConnection>,
    dead: String,
    group: Group,
    consumer: String,
    options: SubscribeOptions,
    phase: Phase,
    buffer: VecDeque<Delivery>,
    next_claim: Instant,
    group_ready: bool,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("stream", &self.group.stream())
            .field("group", &self.group.name())
            .field("consumer", &self.consumer)
            .field("phase", &self.phase)
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

impl Pantheon {
    /// Joins consumer group `group` on the events stream as `consumer` (creating the group
    /// at `options.start` if it does not exist). Several consumers of one group share the
    /// work; each group sees every event. Re-use the same consumer name after a restart to
    /// get back what was delivered and not acked.
    ///
    /// ```no_run
    /// use pantheon_client::{EventKind, SubscribeOptions};
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), pantheon_client::ClientError> {
    /// let mut sub = p.subscribe("alerts", "worker-1", SubscribeOptions::default()).await?;
    /// loop {
    ///     let d = sub.next().await?;
    ///     match d.event().map(|e| &e.kind) {
    ///         Some(EventKind::Died { node, .. }) => println!("node {node} is considered dead"),
    ///         Some(EventKind::Revived { node, .. }) => println!("node {node} has recovered"),
    ///         _ => {}
    ///     }
    ///     sub.ack(d.id).await?;
    /// }
    /// # }
    /// ```
    pub async fn subscribe(
        &self,
        group: &str,
        consumer: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription, ClientError> {
        options.validate()?;
        if group.is_empty() || consumer.is_empty() {
            return Err(ClientError::Config(
                "group and consumer names must not be empty".into(),
            ));
        }
        let layout = &self.inner.layout;
        let mut sub = Subscription {
            con: self.con(),
            blocking: None,
            dead: layout.dead_letters(),
            group: Group::events(layout, group),
            consumer: consumer.to_owned(),
            phase: Phase::Own {
                cursor: EntryId::ZERO,
            },
            buffer: VecDeque::new(),
            next_claim: Instant::now(),
            group_ready: false,
            options,
        };
        sub.ensure_group().await?;
        sub.blocking = Some(sub.con.blocking().await?);
        Ok(sub)
    }
}

impl Subscription {
    /// The next entry for this consumer: its own unacked entries first, then entries
    /// claimed from stuck consumers, then new ones (waiting as long as it takes). An entry
    /// that does not decode is delivered as [`Payload::Raw`], never an error.
    ///
    /// After an `Err` (e.g. Redis restarted) call it again: it reconnects and re-reads its
    /// pending entries. Cancelling it (in `select!`, `timeout`) loses nothing: an entry read
    /// but not returned stays pending and comes back after `min_idle` or on the next start.
    ///
    /// ```no_run
    /// # async fn example(mut sub: pantheon_client::Subscription) -> Result<(), pantheon_client::ClientError> {
    /// let d = sub.next().await?;
    /// println!("{} (delivery #{}): {:?}", d.id, d.deliveries, d.event());
    /// sub.ack(d.id).await?;
    /// # Ok(()) }
    /// ```
    pub async fn next(&mut self) -> Result<Delivery, ClientError> {
        loop {
            if let Some(d) = self.buffer.pop_front() {
                return Ok(d);
            }
            if let Err(e) = self.fill().await {
                self.recover(&e);
                return Err(e);
            }
        }
    }

    /// Acknowledges an entry: it will not be delivered again. Returns whether it was still
    /// pending (`false` when already acked, or claimed and acked by another consumer).
    ///
    /// ```no_run
    /// # async fn example(mut sub: pantheon_client::Subscription) -> Result<(), pantheon_client::ClientError> {
    /// let d = sub.next().await?;
    /// sub.ack(d.id).await?;
    /// # Ok(()) }
    /// ```
    pub async fn ack(&self, id: EntryId) -> Result<bool, ClientError> {
        let n = group::ack(&mut self.con.clone(), &self.group, [id]).await?;
        Ok(n > 0)
    }

    pub fn group(&self) -> &str {
        self.group.name()
    }

    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// The dead-letter stream's key (`<events>:dead`).
    pub fn dead_letter_stream(&self) -> &str {
        &self.dead
    }

    async fn ensure_group(&mut self) -> Result<(), ClientError> {
        let at = match self.options.start {
            Start::FromNow => group::Start::Now,
            Start::FromBeginning => group::Start::Beginning,
        };
        group::create(&mut self.con, &self.group, at).await?;
        self.group_ready = true;
        Ok(())
    }

    /// After a failure: reconnect lazily, and start over from this consumer's pending
    /// entries, which hold anything the failed call had read.
    fn recover(&mut self, e: &ClientError) {
        if let ClientError::Redis(r) = e {
            if r.is_missing_group() {
                self.group_ready = false;
            }
            if r.may_succeed_again() {
                self.blocking = None;
            }
        }
        self.buffer.clear();
        self.phase = Phase::Own {
            cursor: EntryId::ZERO,
        };
    }

    /// Runs one step of the current phase; may leave the buffer empty.
    async fn fill(&mut self) -> Result<(), ClientError> {
        if !self.group_ready {
            self.ensure_group().await?;
        }
        match self.phase {
            Phase::Own { cursor } => {
                let entries = group::read(
                    &mut self.con,
                    &self.group,
                    &self.consumer,
                    group::Read::Pending(cursor),
                    self.options.count,
                    None,
                )
                .await?;
                let next = match entries.last() {
                    Some(last) => Phase::Own { cursor: last.id },
                    None => Phase::Claim {
                        cursor: EntryId::ZERO,
                    },
                };
                self.admit_pending(entries).await?;
                self.phase = next;
            }
            Phase::Claim { cursor } => {
                let (next_cursor, entries) = group::claim(
                    &mut self.con,
                    &self.group,
                    &self.consumer,
                    self.options.min_idle,
                    cursor,
                    self.options.count,
                )
                .await?;
                self.admit_pending(entries).await?;
                self.phase = if next_cursor == EntryId::ZERO {
                    self.next_claim = Instant::now() + self.options.claim_every();
                    Phase::New
                } else {
                    Phase::Claim {
                        cursor: next_cursor,
                    }
                };
            }
            Phase::New => {
                let now = Instant::now();
                if now >= self.next_claim {
                    self.phase = Phase::Claim {
                        cursor: EntryId::ZERO,
                    };
                    return Ok(());
                }
                let block = self.options.block.min(self.next_claim - now);
                let con = match &mut self.blocking {
                    Some(con) => con,
                    None => self.blocking.insert(self.con.blocking().await?),
                };
                let entries = group::read(
                    con,
                    &self.group,
                    &self.consumer,
                    group::Read::New,
                    self.options.count,
                    Some(block),
                )
                .await?;
                // First deliveries: the counter is 1, within any max_deliveries.
                for entry in entries {
                    self.buffer.push_back(Delivery::new(entry, 1));
                }
            }
        }
        Ok(())
    }

    /// Queues re-delivered entries, after checking each one's delivery counter: too many
    /// deliveries go to the dead-letter stream instead. Entries deleted from the stream
    /// meanwhile (trimmed) come without fields; they are acked and skipped.
    async fn admit_pending(&mut self, entries: Vec<RawEntry>) -> Result<(), ClientError> {
        let (live, gone): (Vec<RawEntry>, Vec<RawEntry>) =
            entries.into_iter().partition(|e| !e.fields.is_empty());
        if !gone.is_empty() {
            group::ack(&mut self.con, &self.group, gone.iter().map(|e| e.id)).await?;
        }
        if live.is_empty() {
            return Ok(());
        }
        let counts =
            group::deliveries(&mut self.con, &self.group, live.iter().map(|e| e.id)).await?;
        for (entry, deliveries) in live.into_iter().zip(counts) {
            // Not pending any more: acked by another consumer meanwhile.
            let Some(deliveries) = deliveries else {
                continue;
            };
            if deliveries > self.options.max_deliveries {
                self.dead_letter(&entry, deliveries).await?;
            } else {
                self.buffer.push_back(Delivery::new(entry, deliveries));
            }
        }
        Ok(())
    }

    /// Copies an entry to the dead-letter stream and acks it, atomically.
    async fn dead_letter(&mut self, entry: &RawEntry, deliveries: u64) -> Result<(), ClientError> {
        group::dead_letter(&mut self.con, &self.group, &self.dead, entry, deliveries).await?;
        tracing::warn!(
            entry = %entry.id,
            group = %self.group.name(),
            deliveries,
            dead_letters = %self.dead,
            "event delivered too often without an ack: dead-lettered"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_validated() {
        assert!(SubscribeOptions::default().validate().is_ok());
        for bad in [
            SubscribeOptions {
                max_deliveries: 0,
                ..Default::default()
            },
            SubscribeOptions {
                block: Duration::ZERO,
                ..Default::default()
            },
            SubscribeOptions {
                count: 0,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn undecodable_entries_are_delivered_raw() {
        let d = Delivery::new(
            RawEntry {
                id: EntryId::new(1, 0),
                fields: vec![(b"type".to_vec(), b"exploded".to_vec())],
            },
            1,
        );
        assert!(d.event().is_none());
        assert!(matches!(d.payload, Payload::Raw { .. }));
    }
}
