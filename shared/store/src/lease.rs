//! The leader lease: a key holding a random token with a TTL. Only the holder commits (the
//! commit script checks the token), so a paused ex-leader that wakes up after losing the
//! lease cannot write anything.

use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionLike;

use crate::StoreError;

/// Takes the lease if free and bumps the fence counter in the same step: a commit watching
/// the fence (WATCH) cannot succeed once anyone else has taken the lease since it checked.
const ACQUIRE_LUA: &str = r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('INCR', KEYS[2])
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

/// Takes the lease whoever holds it, and bumps the fence: the holder's renewals and commits
/// fail from now on. Only for operator tools that must stop a running leader.
const SEIZE_LUA: &str = r#"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('INCR', KEYS[2])
return 1
"#;

const RENEW_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

const RELEASE_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// One projector's claim on the lease.
#[derive(Debug, Clone)]
pub struct Lease {
    key: String,
    token: String,
    ttl: Duration,
}

impl Lease {
    /// A new claim with a token unique to this process and incarnation.
    pub fn new(key: String, holder: &str, ttl: Duration) -> Self {
        let token = format!("{holder}/{:016x}", rand::random::<u64>());
        Self { key, token, ttl }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis().max(1) as u64
    }

    /// Takes the lease if nobody holds it (or renews it if we do).
    pub async fn acquire<C: ConnectionLike + Send>(&self, con: &mut C) -> Result<bool, StoreError> {
        let got: i64 = Script::new(ACQUIRE_LUA)
            .key(&self.key)
            .key(self.fence_key())
            .arg(&self.token)
            .arg(self.ttl_ms())
            .invoke_async(con)
            .await?;
        Ok(got == 1)
    }

    /// Takes the lease even from a live holder (which loses it at its next renewal and
    /// cannot commit any more: the fence moves). For `pantheon recover-clock`.
    pub async fn seize<C: ConnectionLike + Send>(&self, con: &mut C) -> Result<(), StoreError> {
        let _: i64 = Script::new(SEIZE_LUA)
            .key(&self.key)
            .key(self.fence_key())
            .arg(&self.token)
            .arg(self.ttl_ms())
            .invoke_async(con)
            .await?;
        Ok(())
    }

    /// Counter bumped at every change of holder (same hash slot as the lease).
    pub fn fence_key(&self) -> String {
        format!("{}:fence", self.key)
    }

    /// Extends the lease if we still hold it; false means it is lost.
    pub async fn renew<C: ConnectionLike + Send>(&self, con: &mut C) -> Result<bool, StoreError> {
        let renewed: i64 = Script::new(RENEW_LUA)
            .key(&self.key)
            .arg(&self.token)
            .arg(self.ttl_ms())
            .invoke_async(con)
            .await?;
        Ok(renewed == 1)
    }

    /// Gives the lease up (on shutdown), so a standby takes over at once, not after the TTL.
    pub async fn release<C: ConnectionLike + Send>(&self, con: &mut C) -> Result<(), StoreError> {
        let _: i64 = Script::new(RELEASE_LUA)
            .key(&self.key)
            .arg(&self.token)
            .invoke_async(con)
            .await?;
        Ok(())
    }

    /// Who holds the lease now, if anyone.
    pub async fn holder<C: ConnectionLike + Send>(
        key: &str,
        con: &mut C,
    ) -> Result<Option<String>, StoreError> {
        Ok(redis::cmd("GET").arg(key).query_async(con).await?)
    }
}
