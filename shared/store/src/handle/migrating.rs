//! What a [`Redis`] handle does with the replies of a half-finished slot migration (see
//! [`crate::migration`]): follows `ASK` for single commands and plain pipelines, records the
//! migration (logged once per process), and notices when it is over.

use redis::{Cmd, ErrorKind, Pipeline, RedisError, ServerErrorKind, Value};

use super::Redis;
use crate::StoreError;
use crate::migration::{self, Migration, SlotState};
use crate::url::{HostPort, Topology};

impl Redis {
    /// The migration of the cluster's slot, as the master serving it says now (`None`
    /// outside Redis Cluster, or when the slot is stable).
    pub async fn migration(&self) -> Result<Option<Migration>, StoreError> {
        if !matches!(self.inner.deployment.url.topology, Topology::Cluster { .. }) {
            return Ok(None);
        }
        let master = self.current().await?.addr;
        match migration::lookup(&self.inner.deployment, &master, self.inner.slot).await {
            Ok(SlotState::Migrating(m)) => Ok(Some(m)),
            Ok(SlotState::Stable(_)) => Ok(None),
            Err(e) => Err(match e.source {
                Some(e) => StoreError::Redis(e),
                None => StoreError::Reply(e.reason),
            }),
        }
    }

    /// A single command's reply, after following an `ASK` when the command may.
    pub(super) async fn through_migration(
        &self,
        master: &HostPort,
        cmd: &Cmd,
        result: Result<Value, RedisError>,
    ) -> Result<Value, RedisError> {
        let (refused, target) = match &result {
            Ok(v) => (migration::refused_value(v), migration::ask_target(v)),
            Err(e) => (
                migration::refused(e),
                (e.kind() == ErrorKind::Server(ServerErrorKind::Ask))
                    .then(|| migration::redirect_target(e))
                    .flatten(),
            ),
        };
        if !refused {
            self.recheck_migration(master).await;
            return result;
        }
        self.note_migration(master, target.clone()).await;
        match target {
            Some(target) if migration::may_follow(cmd) => {
                let mut replies = self
                    .inner
                    .ask
                    .send(&self.inner.deployment, &target, &[cmd])
                    .await?;
                Ok(replies.pop().unwrap_or(Value::Nil))
            }
            _ => result,
        }
    }

    /// A pipeline's replies, after sending the commands an `ASK` refused to the node it
    /// names (with every `WAIT` after them, which must count their writes there). A
    /// transaction is never followed: the caller waits and runs it again.
    pub(super) async fn through_migration_pipeline(
        &self,
        master: &HostPort,
        pipe: &Pipeline,
        offset: usize,
        result: Result<Vec<Value>, RedisError>,
    ) -> Result<Vec<Value>, RedisError> {
        let mut values = match result {
            Ok(values) if values.iter().any(migration::refused_value) => values,
            Ok(values) => {
                self.recheck_migration(master).await;
                return Ok(values);
            }
            Err(e) => {
                if migration::refused(&e) {
                    self.note_migration(master, None).await;
                }
                return Err(e);
            }
        };
        let target = values.iter().find_map(migration::ask_target);
        self.note_migration(master, target.clone()).await;
        let cmds: Vec<&Cmd> = pipe.cmd_iter().collect();
        let Some(target) = target else {
            return Ok(values);
        };
        if pipe.is_transaction() || offset != 0 || cmds.len() != values.len() {
            return Ok(values);
        }
        let mut picked = Vec::new();
        for (i, (cmd, value)) in cmds.iter().zip(&values).enumerate() {
            let asked = migration::ask_target(value).as_ref() == Some(&target)
                && migration::may_follow(cmd);
            if asked || (!picked.is_empty() && migration::is_wait(cmd)) {
                picked.push(i);
            }
        }
        if picked.is_empty() {
            return Ok(values);
        }
        let sent: Vec<&Cmd> = picked.iter().map(|&i| cmds[i]).collect();
        let replies = self
            .inner
            .ask
            .send(&self.inner.deployment, &target, &sent)
            .await?;
        for (i, reply) in picked.into_iter().zip(replies) {
            values[i] = reply;
        }
        Ok(values)
    }

    /// Records the migration behind an `ASK`/`TRYAGAIN` from `master`, named by the master
    /// itself when it can be asked, else from what the reply said.
    async fn note_migration(&self, master: &HostPort, asked: Option<HostPort>) {
        let (url, slot) = (&self.inner.deployment.url, self.inner.slot);
        if migration::current(url, slot).is_some() {
            return;
        }
        let found = match migration::lookup(&self.inner.deployment, master, slot).await {
            Ok(SlotState::Migrating(m)) => Some(m),
            _ => None,
        };
        let m = found.unwrap_or_else(|| Migration {
            slot,
            source: master.clone(),
            destination: asked,
        });
        migration::started(url, m);
    }

    /// While a migration is recorded, at most once per [`migration::RECHECK`]: asks the master
    /// whether it is over (a rollback ends it without a `MOVED`).
    async fn recheck_migration(&self, master: &HostPort) {
        let (url, slot) = (&self.inner.deployment.url, self.inner.slot);
        if !migration::recheck_due(url, slot) {
            return;
        }
        if let Ok(SlotState::Stable(owner)) =
            migration::lookup(&self.inner.deployment, master, slot).await
        {
            migration::ended(url, slot, owner.as_ref());
        }
    }
}
