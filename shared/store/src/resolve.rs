//! Finding the master that serves one Pantheon cluster.
//!
//! Every key of a Pantheon cluster shares the hash tag `{cluster}`, so the whole cluster
//! lives in one hash slot and one master serves all of it: a Pantheon process needs no
//! general cluster client, only the address of that master. This module finds it:
//!
//! * one server: the URL's host;
//! * Sentinel: `SENTINEL GET-MASTER-ADDR-BY-NAME` on each Sentinel in turn, then `ROLE` on
//!   the answer (a Sentinel may still name a demoted master for a moment);
//! * Redis Cluster: `CLUSTER SLOTS` on each known node in turn, the master of the slot of
//!   `{cluster}`, then `ROLE` on it. Nodes learnt from `CLUSTER SLOTS` are remembered, so
//!   losing the seed nodes later does not lose the cluster.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, Value,
};

use crate::deployment::Deployment;
use crate::failure::Failure;
use crate::url::{HostPort, Topology};

/// Number of hash slots in Redis Cluster.
pub const SLOTS: u16 = 16384;

/// The Redis Cluster hash slot of a key: CRC16 (XMODEM) of its hash tag (the text between the
/// first `{` and the next `}`, when not empty), else of the whole key, modulo 16384.
pub fn slot_of(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|b| *b == b'{').and_then(|open| {
        let rest = &bytes[open + 1..];
        rest.iter()
            .position(|b| *b == b'}')
            .filter(|len| *len > 0)
            .map(|len| &rest[..len])
    });
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(bytes)) % SLOTS
}

/// The slot of every key of Pantheon cluster `cluster` (keys are `<prefix>:{<cluster>}:...`).
pub fn slot_of_cluster(cluster: &str) -> u16 {
    slot_of(&format!("{{{cluster}}}"))
}

/// Why the master could not be found or reached; `reason` never holds a password.
#[derive(Debug, Clone)]
pub struct ResolveError {
    pub reason: String,
    /// The underlying Redis error, when there was one (to classify it).
    pub source: Option<redis::RedisError>,
    /// The class of the failure when the source's own would mislead (see [`Self::class`]).
    pub class: Option<Failure>,
}

impl ResolveError {
    fn new(reason: String) -> Self {
        Self {
            reason,
            source: None,
            class: None,
        }
    }

    /// What kind of failure this is; [`Failure::SentinelAuthentication`] when a Sentinel
    /// refused the credentials for itself, which are not the data nodes' user and password.
    pub fn class(&self) -> Failure {
        self.class
            .or_else(|| self.source.as_ref().map(Failure::of))
            .unwrap_or(Failure::NotAMaster)
    }
    fn redis(context: String, e: redis::RedisError) -> Self {
        let reason = match crate::tls::explain(&format!("{e} {e:?}")) {
            Some(cause) => format!("{context}: {cause} ({e})"),
            None => format!("{context}: {e}"),
        };
        Self {
            reason,
            source: Some(e),
            class: None,
        }
    }
}

/// A master found and checked.
#[derive(Debug, Clone)]
pub struct Master {
    pub addr: HostPort,
    pub client: Client,
}

/// Timeouts for the short questions asked while resolving.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Finds the master serving `slot`, trying every node in `known` (updated with what Redis
/// Cluster reports).
pub async fn master(
    deployment: &Deployment,
    slot: u16,
    known: &mut Vec<HostPort>,
) -> Result<Master, ResolveError> {
    match &deployment.url.topology {
        Topology::Single(addr) => Ok(Master {
            addr: addr.clone(),
            client: data_client(deployment, addr)?,
        }),
        Topology::Sentinel { sentinels, master } => {
            let mut errors = Vec::new();
            for sentinel in sentinels {
                match ask_sentinel(deployment, sentinel, master).await {
                    Ok(addr) => return checked_master(deployment, addr).await,
                    Err(e) => errors.push(e),
                }
            }
            Err(combine(errors))
        }
        Topology::Cluster { seeds } => {
            for seed in seeds {
                if !known.contains(seed) {
                    known.push(seed.clone());
                }
            }
            let mut errors = Vec::new();
            for node in known.clone() {
                match ask_cluster(deployment, &node, slot).await {
                    Ok((addr, nodes)) => {
                        for n in nodes {
                            if !known.contains(&n) {
                                known.push(n);
                            }
                        }
                        return confirmed_owner(deployment, addr, slot).await;
                    }
                    Err(e) => errors.push(e),
                }
            }
            Err(combine(errors))
        }
    }
}

/// How many times a node may point elsewhere before resolving gives up (and retries later).
const MAX_HOPS: usize = 3;

/// Checks that `addr` is a master and serves `slot` in its own view, following it when it
/// names another node. Another node's view lags behind a failover or a slot migration by a
/// gossip round; the owner's own view does not (it answers MOVED otherwise).
async fn confirmed_owner(
    deployment: &Deployment,
    mut addr: HostPort,
    slot: u16,
) -> Result<Master, ResolveError> {
    for _ in 0..MAX_HOPS {
        let master = checked_master(deployment, addr.clone()).await?;
        let (owner, _) = ask_cluster(deployment, &addr, slot).await?;
        if owner == addr {
            return Ok(master);
        }
        addr = owner;
    }
    Err(ResolveError::new(format!(
        "slot {slot}: nodes keep naming another owner (migration in progress?)"
    )))
}

fn combine(mut errors: Vec<ResolveError>) -> ResolveError {
    if errors.len() == 1 {
        return errors.remove(0);
    }
    let source = errors.iter().find_map(|e| e.source.clone());
    let class = errors.iter().find_map(|e| e.class);
    ResolveError {
        class,
        reason: errors
            .into_iter()
            .map(|e| e.reason)
            .collect::<Vec<_>>()
            .join("; "),
        source,
    }
}

/// A client for a data node (master or replica) with the URL's credentials and TLS.
pub fn data_client(deployment: &Deployment, addr: &HostPort) -> Result<Client, ResolveError> {
    let url = &deployment.url;
    let mut redis = RedisConnectionInfo::default().set_db(url.db);
    if let Some(user) = &url.username {
        redis = redis.set_username(user);
    }
    if let Some(password) = url.password() {
        redis = redis.set_password(password);
    }
    client_for(deployment, addr, redis)
}

fn sentinel_client(deployment: &Deployment, addr: &HostPort) -> Result<Client, ResolveError> {
    let url = &deployment.url;
    let mut redis = RedisConnectionInfo::default();
    if let Some(user) = &url.sentinel_username {
        redis = redis.set_username(user);
    }
    if let Some(password) = url.sentinel_password() {
        redis = redis.set_password(password);
    }
    client_for(deployment, addr, redis)
}

fn client_for(
    deployment: &Deployment,
    addr: &HostPort,
    redis: RedisConnectionInfo,
) -> Result<Client, ResolveError> {
    let conn_addr = if deployment.url.tls {
        ConnectionAddr::TcpTls {
            host: addr.host.clone(),
            port: addr.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(addr.host.clone(), addr.port)
    };
    let info = conn_addr
        .into_connection_info()
        .map_err(|e| ResolveError::redis(format!("{addr}"), e))?
        .set_redis_settings(redis);
    let built = match deployment.tls_certificates() {
        Some(certs) => Client::build_with_tls(info, certs.clone()),
        None => Client::open(info),
    };
    built.map_err(|e| ResolveError::redis(format!("{addr}"), e))
}

/// One short-lived connection for a question.
async fn ask(client: &Client, addr: &HostPort) -> Result<MultiplexedConnection, ResolveError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(ASK_TIMEOUT))
        .set_response_timeout(Some(ASK_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| ResolveError::redis(format!("{addr}"), e))
}

async fn ask_sentinel(
    deployment: &Deployment,
    sentinel: &HostPort,
    master: &str,
) -> Result<HostPort, ResolveError> {
    let client = sentinel_client(deployment, sentinel)?;
    let mut con = ask(&client, sentinel)
        .await
        .map_err(|e| crate::sentinel_auth::refused(deployment, sentinel, e))?;
    let reply: Option<(String, u16)> = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(master)
        .query_async(&mut con)
        .await
        .map_err(|e| {
            crate::sentinel_auth::refused(
                deployment,
                sentinel,
                ResolveError::redis(format!("sentinel {sentinel}"), e),
            )
        })?;
    let (host, port) = reply.ok_or_else(|| {
        ResolveError::new(format!(
            "sentinel {sentinel} does not monitor a master named {master:?}"
        ))
    })?;
    Ok(HostPort { host, port })
}

/// `CLUSTER SLOTS` as `node` sees it.
async fn cluster_slots(
    deployment: &Deployment,
    node: &HostPort,
) -> Result<Vec<SlotRange>, ResolveError> {
    let client = data_client(deployment, node)?;
    let mut con = ask(&client, node).await?;
    let reply: Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut con)
        .await
        .map_err(|e| ResolveError::redis(format!("{node}"), e))?;
    parse_cluster_slots(&reply, node)
        .ok_or_else(|| ResolveError::new(format!("{node}: unexpected CLUSTER SLOTS reply")))
}

/// `CLUSTER NODES` as `node` sees it (the only reply that shows slots being migrated).
pub(crate) async fn cluster_nodes(
    deployment: &Deployment,
    node: &HostPort,
) -> Result<String, ResolveError> {
    let client = data_client(deployment, node)?;
    let mut con = ask(&client, node).await?;
    redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut con)
        .await
        .map_err(|e| ResolveError::redis(format!("{node}"), e))
}

/// Asks `node` which master serves `slot`; also returns every node it reports.
async fn ask_cluster(
    deployment: &Deployment,
    node: &HostPort,
    slot: u16,
) -> Result<(HostPort, Vec<HostPort>), ResolveError> {
    let ranges = cluster_slots(deployment, node).await?;
    let nodes: Vec<HostPort> = ranges.iter().flat_map(|r| r.nodes.clone()).collect();
    let serving = ranges
        .iter()
        .find(|r| r.start <= slot && slot <= r.end)
        .and_then(|r| r.nodes.first().cloned())
        .ok_or_else(|| {
            ResolveError::new(format!(
                "{node}: no master serves slot {slot} (cluster down?)"
            ))
        })?;
    Ok((serving, nodes))
}

/// Every master of the deployment: the one master of a single server or Sentinel URL, each
/// shard's master of a Redis Cluster (from the first seed that answers `CLUSTER SLOTS`).
pub async fn masters(deployment: &Deployment) -> Result<Vec<Master>, ResolveError> {
    let Topology::Cluster { seeds } = &deployment.url.topology else {
        return Ok(vec![master(deployment, 0, &mut Vec::new()).await?]);
    };
    let mut errors = Vec::new();
    for seed in seeds {
        match cluster_slots(deployment, seed).await {
            Ok(ranges) => {
                let mut addrs: Vec<HostPort> = ranges
                    .iter()
                    .filter_map(|r| r.nodes.first().cloned())
                    .collect();
                addrs.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
                addrs.dedup();
                let mut out = Vec::new();
                for addr in addrs {
                    out.push(Master {
                        client: data_client(deployment, &addr)?,
                        addr,
                    });
                }
                return Ok(out);
            }
            Err(e) => errors.push(e),
        }
    }
    Err(combine(errors))
}

/// One range of `CLUSTER SLOTS`: master first, then replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRange {
    pub start: u16,
    pub end: u16,
    pub nodes: Vec<HostPort>,
}

/// Parses `CLUSTER SLOTS`. An empty host means "the node you asked".
pub fn parse_cluster_slots(reply: &Value, asked: &HostPort) -> Option<Vec<SlotRange>> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    ranges
        .iter()
        .map(|range| {
            let Value::Array(items) = range else {
                return None;
            };
            let start = as_int(items.first()?)?;
            let end = as_int(items.get(1)?)?;
            let nodes = items[2..]
                .iter()
                .map(|n| {
                    let Value::Array(parts) = n else {
                        return None;
                    };
                    let host = as_text(parts.first()?)?;
                    let port = as_int(parts.get(1)?)?;
                    Some(HostPort {
                        host: if host.is_empty() || host == "?" {
                            asked.host.clone()
                        } else {
                            host
                        },
                        port: u16::try_from(port).ok()?,
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            Some(SlotRange {
                start: u16::try_from(start).ok()?,
                end: u16::try_from(end).ok()?,
                nodes,
            })
        })
        .collect()
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => as_text(other)?.parse().ok(),
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Connects to `addr` and checks with `ROLE` that it is a master now: a Sentinel or a
/// cluster node may still name a master that has just been demoted.
async fn checked_master(deployment: &Deployment, addr: HostPort) -> Result<Master, ResolveError> {
    let client = data_client(deployment, &addr)?;
    let mut con = ask(&client, &addr).await?;
    let role: Value = redis::cmd("ROLE")
        .query_async(&mut con)
        .await
        .map_err(|e| ResolveError::redis(format!("{addr}"), e))?;
    let role = match &role {
        Value::Array(items) => items.first().and_then(as_text),
        _ => None,
    };
    match role.as_deref() {
        Some("master") => Ok(Master { addr, client }),
        Some(other) => Err(ResolveError::new(format!(
            "{addr} is a {other}, not a master (failover in progress?)"
        ))),
        None => Err(ResolveError::new(format!("{addr}: unexpected ROLE reply"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_redis_cluster() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot_of("123456789"), 0x31C3 % SLOTS);
        assert_eq!(slot_of("foo"), 12182);
        assert_eq!(
            slot_of("{user1000}.following"),
            slot_of("{user1000}.followers")
        );
        assert_eq!(slot_of("foo{}{bar}"), slot_of("foo{}{bar}"));
        assert_eq!(slot_of("foo{{bar}}zap"), slot_of("{bar"));
        assert_eq!(slot_of_cluster("prod"), slot_of("pantheon:{prod}:log"));
    }

    #[test]
    fn cluster_slots_reply_is_parsed_with_empty_hosts_as_the_asked_node() {
        let node = |h: &str, p: i64| {
            Value::Array(vec![
                Value::BulkString(h.as_bytes().to_vec()),
                Value::Int(p),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(5460),
            node("", 30001),
            node("10.0.0.2", 30004),
        ])]);
        let asked = HostPort {
            host: "10.0.0.1".into(),
            port: 30001,
        };
        let ranges = parse_cluster_slots(&reply, &asked).expect("parses");
        assert_eq!(ranges[0].start, 0);
        assert_eq!(ranges[0].end, 5460);
        assert_eq!(ranges[0].nodes[0], asked);
        assert_eq!(ranges[0].nodes[1].host, "10.0.0.2");
    }
}
