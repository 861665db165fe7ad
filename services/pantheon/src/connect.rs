//! Reaching Redis. Every command first PINGs with a short timeout, so an unreachable Redis is
//! one clear line after at most `client.connect_timeout_ms`, not a retry loop. The PING
//! needs no permission: a `NOPERM` answer proves Redis is there and took the credentials,
//! which is all the pre-flight asks (a producer user may run `XADD` and nothing else).

use std::time::Duration;

use pantheon_client::{ClientError, Pantheon};
use pantheon_store::Layout;
use pantheon_store::migrate::MigrateError;
use pantheon_store::url::Topology;
use pantheon_store::{Failure, Redis, StoreError};

use crate::config::{Settings, mask_url};
use crate::error::{self, CliError};

/// Why a PING did not succeed.
#[derive(Debug)]
pub enum PingError {
    /// Nothing answers there (refused, timed out, no route).
    Unreachable(String),
    /// Something answered, but not well (wrong password, not Redis, ...).
    Refused(String),
}

/// PINGs the master serving the configured cluster (asking Sentinel or Redis Cluster first
/// when the URL says so), giving up after `timeout`.
pub async fn ping(settings: &Settings, timeout: Duration) -> Result<(), PingError> {
    let deployment = settings
        .deployment()
        .map_err(|e| PingError::Refused(e.to_string()))?;
    let redis = Redis::new(deployment, &settings.cluster);
    match redis.ping(timeout).await {
        Ok(()) => Ok(()),
        // Redis answered and accepted the credentials; this user may just not run PING
        // (a producer allowed only XADD). Reachable is all the pre-flight asks.
        Err(e) if e.is_permission_denied() => Ok(()),
        Err(e) => {
            let reason = match &e {
                StoreError::Unavailable { reason, .. } => reason.clone(),
                other => other.to_string(),
            };
            Err(match e.failure() {
                Some(Failure::Authentication) => PingError::Refused(format!(
                    "the credentials of Redis user {:?} were refused: {reason}",
                    redis.user()
                )),
                Some(class) if class.is_unreachable() => PingError::Unreachable(reason),
                _ => PingError::Refused(reason),
            })
        }
    }
}

/// The one-line error for a Redis that does not answer, with the next step that fits the
/// URL: `pantheon up` can start a redis-server only for a plain `redis://` URL on this
/// machine, so only then is it suggested.
pub fn unreachable(url: &str, why: &str) -> anyhow::Error {
    let masked = mask_url(url);
    let next = match pantheon_store::RedisUrl::parse(url).map(|u| u.topology) {
        Ok(Topology::Sentinel { .. }) => {
            "check that the Sentinels named in the URL run and that this machine can reach \
             them"
        }
        Ok(Topology::Cluster { .. }) => {
            "check that the Redis Cluster nodes named in the URL run and that this machine can \
             reach them"
        }
        _ if crate::local_redis::local_port(url).is_some() => {
            "start one (`pantheon up` starts a local redis-server if one is installed; or \
             `docker compose up -d redis`, then --redis-url redis://127.0.0.1:6380), or point \
             --redis-url / PANTHEON_REDIS_URL at yours"
        }
        _ => {
            "check that the server runs and that this machine can reach it (host, port, \
             firewall), or point --redis-url / PANTHEON_REDIS_URL at another"
        }
    };
    CliError::failed(format!("cannot reach Redis at {masked} ({why}); {next}")).into()
}

/// Checks that Redis answers, with the error every command gives when it does not. A
/// configuration that cannot work (a TLS key that is not the certificate's, a bad URL) is a
/// usage error found before any connection.
pub async fn reachable(settings: &Settings) -> anyhow::Result<()> {
    settings.deployment()?;
    match ping(settings, settings.connect_timeout()).await {
        Ok(()) => Ok(()),
        Err(PingError::Unreachable(why)) => Err(unreachable(&settings.redis_url, &why)),
        Err(PingError::Refused(why)) => Err(CliError::failed(format!(
            "Redis at {} answered but refused: {why}",
            mask_url(&settings.redis_url)
        ))
        .into()),
    }
}

/// What commands use to talk to one cluster.
#[derive(Clone)]
pub struct Cluster {
    pub client: Pantheon,
    pub layout: Layout,
    pub name: String,
    pub url: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .field("url", &mask_url(&self.url))
            .finish_non_exhaustive()
    }
}

fn failed_on(settings: &Settings, e: ClientError) -> CliError {
    CliError::failed(format!("cluster {:?}: {e}", settings.cluster))
}

impl Cluster {
    /// Connects and reads the cluster status (`status`).
    pub async fn status(
        settings: &Settings,
    ) -> anyhow::Result<(Self, pantheon_client::status::ClusterStatus)> {
        let cluster = Self::connect(settings).await?;
        let status = cluster.client.status().await;
        Ok((cluster, status.map_err(|e| failed_on(settings, e))?))
    }

    /// Connects and reads the projector's progress and the live probers, without a pass
    /// over the nodes (`doctor`, `recover-clock`).
    pub async fn projector_health(
        settings: &Settings,
    ) -> anyhow::Result<(Self, pantheon_client::status::ProjectorHealth)> {
        let cluster = Self::connect(settings).await?;
        let health = cluster.client.projector_health().await;
        Ok((cluster, health.map_err(|e| failed_on(settings, e))?))
    }

    /// Connects to the configured cluster, after a PING, and refuses a schema newer than
    /// this binary knows.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let cluster = Self::connect_unchecked(settings).await?;
        match cluster.client.admin().check_schema().await {
            Ok(_) => {}
            // A user that may not read the schema version (one allowed only XADD) skips the
            // check: the projector still rejects entries of a schema version it does not know.
            Err(MigrateError::Store(e)) if e.is_permission_denied() => {}
            Err(MigrateError::Store(e)) if e.failure() == Some(Failure::ClusterDown) => {
                return Err(cluster_down(&e).into());
            }
            Err(e) => return Err(CliError::failed(e.to_string()).into()),
        }
        Ok(cluster)
    }

    /// Connects without looking at the schema (for `migrate` itself).
    pub async fn connect_unchecked(settings: &Settings) -> anyhow::Result<Self> {
        reachable(settings).await?;
        let client = Pantheon::builder(&settings.redis_url, &settings.cluster)
            .prefix(&settings.prefix)
            .deployment(settings.deployment()?)
            .connect()
            .await
            .map_err(client_error)?;
        Ok(Self {
            client,
            layout: settings.layout(),
            name: settings.cluster.clone(),
            url: settings.redis_url.clone(),
        })
    }
}

/// The one line for a `CLUSTERDOWN` reply: Redis Cluster answers, but refuses key commands
/// until every slot is served again (a master without a replica died, or slots were removed).
pub fn cluster_down(e: &StoreError) -> CliError {
    CliError::failed(format!(
        "the Redis Cluster is down (CLUSTERDOWN): it refuses key commands until every slot is \
         served again (a failed master without a replica to promote?): {e}"
    ))
}

/// A client error with the right exit code: bad input is a usage error, a rejection and a
/// wait timeout have their own codes.
pub fn client_error(e: ClientError) -> anyhow::Error {
    if let ClientError::Redis(r) = &e
        && r.failure() == Some(Failure::ClusterDown)
    {
        return cluster_down(r).into();
    }
    let code = match &e {
        ClientError::Invalid(_) | ClientError::Config(_) => error::USAGE,
        ClientError::Rejected { .. } => error::REJECTED,
        ClientError::Timeout { .. } => error::TIMED_OUT,
        ClientError::NotReplicated { .. } => error::NOT_REPLICATED,
        _ => error::FAILURE,
    };
    CliError::new(code, e.to_string()).into()
}
