//! Schema migrations: numbered, idempotent Lua steps from `migrations/`, embedded in the
//! binary, applied in order under a lock; a schema newer than this binary knows is refused.

use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionLike;

use crate::StoreError;
use crate::layout::Layout;

/// The steps, in order; step `n` is `MIGRATIONS[n - 1]`.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_log_and_projector_group",
        include_str!("../../../migrations/0001_log_and_projector_group.lua"),
    ),
    (
        "0002_schema_metadata",
        include_str!("../../../migrations/0002_schema_metadata.lua"),
    ),
    (
        "0003_attested_service_entries",
        include_str!("../../../migrations/0003_attested_service_entries.lua"),
    ),
    (
        "0004_chunked_snapshots",
        include_str!("../../../migrations/0004_chunked_snapshots.lua"),
    ),
    (
        "0005_node_loads_apart",
        include_str!("../../../migrations/0005_node_loads_apart.lua"),
    ),
];

/// The schema version this binary writes and reads.
pub const SCHEMA_VERSION: u64 = MIGRATIONS.len() as u64;

const LOCK_TTL: Duration = Duration::from_secs(30);

/// What `run` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    pub from: u64,
    pub to: u64,
    pub applied: Vec<&'static str>,
}

/// Why migrations could not run.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "cluster schema is version {found}, newer than this binary knows ({known}): upgrade Pantheon"
    )]
    TooNew { found: u64, known: u64 },
    #[error("another process is migrating this cluster (lock {0} is held); try again shortly")]
    Locked(String),
    #[error("schema key {key} holds {value:?}, not a version number")]
    BadVersion { key: String, value: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<redis::RedisError> for MigrateError {
    fn from(e: redis::RedisError) -> Self {
        Self::Store(e.into())
    }
}

/// The cluster's schema version (0 when never migrated).
pub async fn current<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<u64, MigrateError> {
    let raw: Option<String> = redis::cmd("GET")
        .arg(layout.schema())
        .query_async(con)
        .await?;
    match raw {
        None => Ok(0),
        Some(v) => v.parse().map_err(|_| MigrateError::BadVersion {
            key: layout.schema(),
            value: v,
        }),
    }
}

/// Fails when the cluster's schema is newer than this binary (for processes that only read).
pub async fn check<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<u64, MigrateError> {
    let found = current(con, layout).await?;
    if found > SCHEMA_VERSION {
        return Err(MigrateError::TooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    Ok(found)
}

/// Applies every step newer than the cluster's schema, in order, under the migrate lock.
pub async fn run<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<MigrateReport, MigrateError> {
    let from = check(con, layout).await?;
    if from == SCHEMA_VERSION {
        return Ok(MigrateReport {
            from,
            to: from,
            applied: Vec::new(),
        });
    }
    let lock = layout.migrate_lock();
    let token = format!("{:016x}", rand::random::<u64>());
    let got: Option<String> = redis::cmd("SET")
        .arg(&lock)
        .arg(&token)
        .arg("NX")
        .arg("PX")
        .arg(LOCK_TTL.as_millis() as u64)
        .query_async(con)
        .await?;
    if got.is_none() {
        return Err(MigrateError::Locked(lock));
    }
    let result = apply(con, layout).await;
    let _: i64 = Script::new("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0")
        .key(&lock)
        .arg(&token)
        .invoke_async(con)
        .await?;
    result
}

async fn apply<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<MigrateReport, MigrateError> {
    // Re-read under the lock: another process may have migrated meanwhile.
    let from = check(con, layout).await?;
    let mut applied = Vec::new();
    for (i, (name, lua)) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        let number = i as u64 + 1;
        let _: String = Script::new(lua)
            .key(layout.schema())
            .key(layout.log())
            .key(layout.meta())
            .key(layout.nodes())
            .key(layout.node_loads())
            .arg(number)
            .arg(from)
            .invoke_async(con)
            .await?;
        applied.push(*name);
    }
    Ok(MigrateReport {
        from,
        to: SCHEMA_VERSION,
        applied,
    })
}
