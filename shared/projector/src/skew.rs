//! Detecting a poisoned log clock (docs/adr/0009-a-clock-that-cannot-be-poisoned.md): the
//! leader compares the ids it reads with Redis's own clock and, when one runs ahead by more
//! than the bound, logs an error and appends a `clock_skew` entry, which the fold turns into
//! the `clock_skew` event. Like the prober watchdog (ADR 0004), the judgement uses the clock
//! and the report is a log entry, so replay stays deterministic.

use std::time::Duration;

use pantheon_domain::clock::ClockSkew;
use pantheon_domain::{Command, EntryId, LogEntry};
use pantheon_store::Connection;
use pantheon_store::{Layout, RawEntry, log, server};
use tokio::time::Instant;
use tracing::error;

use crate::ProjectorError;

/// Redis's clock is read again after this long; in between it is estimated from the local
/// monotonic clock (a drift of a few ms does not matter against a bound of seconds).
const CLOCK_REFRESH: Duration = Duration::from_secs(10);

pub(crate) struct SkewWatch {
    bound: Duration,
    /// Redis's clock (ms) when it was last read, and when that was.
    server: Option<(u64, Instant)>,
    /// The latest poisoned entry reported in this leading term. Every later entry shares its
    /// ms (Redis ids a new entry above the largest), so only a further jump is new.
    reported: Option<EntryId>,
}

impl SkewWatch {
    pub fn new(bound: Duration) -> Self {
        Self {
            bound,
            server: None,
            reported: None,
        }
    }

    async fn server_now<C: Connection>(
        &mut self,
        con: &mut C,
        fresh: bool,
    ) -> Result<u64, ProjectorError> {
        match self.server {
            Some((ms, at)) if !fresh && at.elapsed() < CLOCK_REFRESH => {
                Ok(ms + at.elapsed().as_millis() as u64)
            }
            _ => {
                let ms = server::now_ms(con).await?;
                self.server = Some((ms, Instant::now()));
                Ok(ms)
            }
        }
    }

    /// Checks a batch just read (ids ascending).
    pub async fn check<C: Connection>(
        &mut self,
        con: &mut C,
        layout: &Layout,
        entries: &[RawEntry],
    ) -> Result<(), ProjectorError> {
        let Some(newest) = entries.last().map(|e| e.id) else {
            return Ok(());
        };
        if self.reported.is_some_and(|r| newest.ms <= r.ms) {
            return Ok(());
        }
        let bound = self.bound.as_millis() as u64;
        if newest.ms <= self.server_now(con, false).await? + bound {
            return Ok(());
        }
        // Confirm with a fresh reading before raising the alarm.
        let now = self.server_now(con, true).await?;
        let Some(first) = entries.iter().map(|e| e.id).find(|id| id.ms > now + bound) else {
            return Ok(());
        };
        let skew_ms = first.ms - now;
        error!(
            entry = %first,
            skew = ?Duration::from_millis(skew_ms),
            "log entry id runs ahead of Redis's clock: every later id is stuck there; \
             check `pantheon doctor`, then move the log to a new generation with \
             `pantheon recover-clock`"
        );
        let report = LogEntry::new(Command::ClockSkew(ClockSkew {
            entry: first,
            skew_ms,
        }));
        // No WAIT: a failover that loses it also ends this leading term, and the next leader
        // reports again (`reported` starts empty).
        log::append_service(con, layout, &report).await?;
        self.reported = Some(first);
        Ok(())
    }
}
