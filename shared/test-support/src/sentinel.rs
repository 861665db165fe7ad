//! A real Redis Sentinel deployment (one master, one replica, one sentinel) for tests of
//! Pantheon against a Redis whose master moves: manual failovers, and crashes of the master.
//!
//! The sentinel monitors the master with quorum 1, `down-after-milliseconds 1000`,
//! `failover-timeout 3000` and `parallel-syncs 1`. Sentinel's internal timers, which are not
//! settable in `sentinel.conf`, are shortened with `SENTINEL DEBUG` (Redis 7.0+) so that the
//! tests do not wait for the production periods (see [`TestSentinel::start_with`]).
//!
//! ```no_run
//! # async fn example() {
//! use pantheon_test_support::sentinel::TestSentinel;
//!
//! let mut sentinel = TestSentinel::start().await;
//! let old = sentinel.kill_master().await;
//! let new = sentinel.wait_new_master(&old, std::time::Duration::from_secs(20)).await;
//! sentinel.restart(&old).await; // comes back as a replica of `new`
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use crate::auth::{
    Probe, Server, info_field, percent_encode, poll, query, quote, url_with_password,
};

/// The name the sentinel monitors the master under.
pub const MASTER_NAME: &str = "pantheon-test";
const DOWN_AFTER_MS: u64 = 1000;
/// Sentinel will not start another automatic failover of the same master for twice this.
const FAILOVER_TIMEOUT_MS: u64 = 3000;
/// Bound on the deployment settling (start, failover, restart).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How to start a [`TestSentinel`].
#[derive(Clone, Default)]
pub struct Options {
    /// `requirepass` and `masterauth` on both data nodes, `sentinel auth-pass` on the
    /// sentinel (the sentinel itself needs no password).
    pub password: Option<String>,
    /// `requirepass` on the sentinel itself (clients then pass `?sentinel_password=`).
    pub sentinel_password: Option<String>,
    /// Replicas of the master; 0 means the default, 1. With 2, a write waiting for one
    /// replica can be confirmed soon after a failover (the other replica follows the new
    /// master) instead of only once the killed master is back.
    pub replicas: usize,
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("password", &self.password.as_ref().map(|_| "****"))
            .field(
                "sentinel_password",
                &self.sentinel_password.as_ref().map(|_| "****"),
            )
            .field("replicas", &self.replicas)
            .finish()
    }
}

/// One master, one replica (or more, see [`Options::replicas`]) and a sentinel monitoring them.
/// Drop kills and reaps them all.
pub struct TestSentinel {
    password: Option<String>,
    sentinel_password: Option<String>,
    /// The data nodes, the initial master first.
    data: Vec<Server>,
    sentinel: Server,
}

impl fmt::Debug for TestSentinel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestSentinel")
            .field("sentinel", &self.sentinel.addr())
            .field(
                "data",
                &self.data.iter().map(Server::addr).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl TestSentinel {
    /// Starts the deployment without passwords; see [`start_with`](Self::start_with).
    pub async fn start() -> TestSentinel {
        Self::start_with(Options::default()).await
    }

    /// Starts the master, the replica (`replicaof`), waits for the replication link, starts
    /// the sentinel and waits until it knows the master and sees the replica's link up (so a
    /// failover can pick it).
    ///
    /// The sentinel's timers are shortened with `SENTINEL DEBUG`: `info-period 1000` (it
    /// polls replicas every 10 s otherwise), `publish-period 500` (a restarted old master is
    /// turned into a replica 4 publish periods after it is back: 2 s instead of 8 s),
    /// `tilt-trigger 10000` and `tilt-period 5000` (a loaded 2-core CI machine can stall the
    /// sentinel's timer for more than 2 s, which would stop all failovers for 30 s).
    ///
    /// # Panics
    /// When a process does not start or the deployment does not settle within 30 s.
    pub async fn start_with(options: Options) -> TestSentinel {
        let password = options.password;
        let sentinel_password = options.sentinel_password;
        let probe = Probe::Plain {
            password: password.clone(),
        };
        let master = Server::start(
            "sentinel-monitored master",
            probe.clone(),
            crate::free_port,
            &[],
            |port| data_config(port, password.as_deref(), None),
        )
        .await;
        let master_port = master.port();
        let mut data = vec![master];
        for _ in 0..options.replicas.max(1) {
            let replica = Server::start(
                "sentinel-monitored replica",
                probe.clone(),
                crate::free_port,
                &[],
                |port| data_config(port, password.as_deref(), Some(master_port)),
            )
            .await;
            data.push(replica);
        }
        let sentinel = Server::start(
            "sentinel",
            Probe::Plain {
                password: sentinel_password.clone(),
            },
            crate::free_port,
            &["--sentinel"],
            |port| {
                sentinel_config(
                    port,
                    master_port,
                    password.as_deref(),
                    sentinel_password.as_deref(),
                )
            },
        )
        .await;
        // From here on, a panic drops `deployment` and so kills all three.
        let deployment = TestSentinel {
            password,
            sentinel_password,
            data,
            sentinel,
        };
        let debug = redis::cmd("SENTINEL")
            .arg("DEBUG")
            .arg("info-period")
            .arg(1000)
            .arg("publish-period")
            .arg(500)
            .arg("tilt-trigger")
            .arg(10000)
            .arg("tilt-period")
            .arg(5000)
            .clone();
        if let Err(e) = deployment.ask_sentinel::<()>(&debug).await {
            panic!("SENTINEL DEBUG failed: {e}\n{}", deployment.describe());
        }
        let master_addr = deployment.data[0].addr();
        let result = poll(SETTLE_TIMEOUT, || async {
            for replica in &deployment.data[1..] {
                deployment
                    .check_replica(&replica.addr(), &master_addr)
                    .await?;
            }
            let sentinel_master = deployment.try_master_addr().await?;
            if sentinel_master == master_addr {
                Ok(())
            } else {
                Err(format!("sentinel names {sentinel_master} as master"))
            }
        })
        .await;
        if let Err(e) = result {
            panic!(
                "the sentinel deployment did not settle: {e}\n{}",
                deployment.describe()
            );
        }
        deployment
    }

    /// `redis+sentinel://127.0.0.1:<sentinel port>/<master name>`, with
    /// `?sentinel_password=` when the sentinel has one. The data nodes' password, if any, is
    /// not in it: see [`password`](Self::password).
    pub fn url(&self) -> String {
        let mut url = format!(
            "redis+sentinel://{}/{}",
            self.sentinel.addr(),
            self.master_name()
        );
        if let Some(password) = &self.sentinel_password {
            url.push_str("?sentinel_password=");
            url.push_str(&percent_encode(password));
        }
        url
    }

    /// The same URL without the sentinel's password (to see it refused).
    pub fn url_without_sentinel_password(&self) -> String {
        format!(
            "redis+sentinel://{}/{}",
            self.sentinel.addr(),
            self.master_name()
        )
    }

    /// The name the sentinel monitors the master under.
    pub fn master_name(&self) -> &str {
        MASTER_NAME
    }

    /// `127.0.0.1:<port>` of the sentinel.
    pub fn sentinel_addr(&self) -> String {
        self.sentinel.addr()
    }

    /// The data nodes' password, if started with one.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// `redis://[:password@]127.0.0.1:<port>/` of the data nodes, the initial master
    /// first (whatever their roles are now).
    pub fn data_urls(&self) -> Vec<String> {
        self.data
            .iter()
            .map(|node| url_with_password(&node.addr(), self.password.as_deref()))
            .collect()
    }

    /// The current master's `127.0.0.1:<port>`, asking the sentinel
    /// (`SENTINEL GET-MASTER-ADDR-BY-NAME`), as a client would.
    ///
    /// # Panics
    /// When the sentinel does not answer.
    pub async fn master_addr(&self) -> String {
        self.try_master_addr()
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.describe()))
    }

    /// A manual failover (`SENTINEL FAILOVER`): waits until the sentinel names the other
    /// node, that node's `ROLE` is master, and the old master has been turned into its
    /// replica with the link up (so the deployment can fail over again). Returns the new
    /// master's address.
    ///
    /// # Panics
    /// When the sentinel refuses or this does not happen within 30 s.
    pub async fn failover(&self) -> String {
        let old = self.master_addr().await;
        let failover = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(MASTER_NAME)
            .clone();
        // -NOGOODSLAVE right after a restart: the sentinel has not seen the replica's link up
        // yet; -INPROG: a failover runs. Both pass.
        if let Err(e) = poll(SETTLE_TIMEOUT, || self.ask_sentinel::<()>(&failover)).await {
            panic!("SENTINEL FAILOVER refused: {e}\n{}", self.describe());
        }
        let result = poll(SETTLE_TIMEOUT, || async {
            let new = self.try_new_master(&old).await?;
            self.check_replica(&old, &new).await?;
            Ok(new)
        })
        .await;
        result.unwrap_or_else(|e| {
            panic!(
                "failover from {old} did not complete: {e}\n{}",
                self.describe()
            )
        })
    }

    /// Kills (SIGKILL, a crash) the current master and returns its address.
    ///
    /// # Panics
    /// When the sentinel does not answer or names no running node of this deployment.
    pub async fn kill_master(&mut self) -> String {
        let addr = self.master_addr().await;
        let node = self.node_mut(&addr);
        assert!(node.is_alive(), "master {addr} is not running");
        node.kill();
        addr
    }

    /// Waits until the sentinel names a master other than `old` and that node's `ROLE` is
    /// master; returns its address.
    ///
    /// # Panics
    /// After `timeout`, with the logs.
    pub async fn wait_new_master(&self, old: &str, timeout: Duration) -> String {
        poll(timeout, || self.try_new_master(old))
            .await
            .unwrap_or_else(|e| panic!("no new master replaced {old}: {e}\n{}", self.describe()))
    }

    /// Starts a killed data node again with its config file and dir, and waits until the
    /// sentinel has made it a replica of the current master and its link is up. A node that
    /// runs is killed first.
    ///
    /// An old master comes back as a master (of an empty data set: no persistence) and
    /// accepts writes until the sentinel reconfigures it, about 2 s later: the split-brain
    /// window of a real deployment.
    ///
    /// # Panics
    /// When `addr` is not a data node or it does not become a replica within 30 s.
    pub async fn restart(&mut self, addr: &str) {
        if let Err(e) = poll(SETTLE_TIMEOUT, || self.check_failover_ended(addr)).await {
            panic!(
                "the sentinel did not end its failover away from {addr}: {e}\n{}",
                self.describe()
            );
        }
        self.node_mut(addr).restart().await;
        let result = poll(SETTLE_TIMEOUT, || async {
            let master = self.try_master_addr().await?;
            if master == addr {
                return Err(format!("the sentinel still names {addr} as master"));
            }
            self.check_replica(addr, &master).await
        })
        .await;
        if let Err(e) = result {
            panic!(
                "{addr} did not come back as a replica: {e}\n{}",
                self.describe()
            );
        }
    }

    /// Ok when the sentinel names a master other than `old` and has ended the failover to
    /// it: `SENTINEL MASTER` shows plain `master` flags (no failover in progress) and a
    /// ping answered (`last-ping-sent` 0). Restarting an empty, unpersisted old master
    /// before that can get *it* promoted, and the other node then resyncs from it: all data
    /// lost (Redis's replication docs warn against auto-restarting such a master; seen in 3
    /// of 7 immediate restarts, docs/benchmarks.md, "Redis layer").
    async fn check_failover_ended(&self, old: &str) -> Result<(), String> {
        let master = self.try_master_addr().await?;
        if master == old {
            return Err(format!("the sentinel still names {old} as master"));
        }
        let fields: Vec<String> = self
            .ask_sentinel(redis::cmd("SENTINEL").arg("MASTER").arg(MASTER_NAME))
            .await?;
        let fields = pairs(&fields);
        let flags = fields.get("flags").map(String::as_str);
        let last_ping = fields.get("last-ping-sent").map(String::as_str);
        if flags == Some("master") && last_ping == Some("0") {
            Ok(())
        } else {
            Err(format!(
                "failover to {master} not ended: flags {flags:?}, last-ping-sent {last_ping:?}"
            ))
        }
    }

    /// A command to the sentinel, with its password if it has one.
    async fn ask_sentinel<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, String> {
        query(
            &self.sentinel.addr(),
            self.sentinel_password.as_deref(),
            cmd,
        )
        .await
    }

    async fn try_master_addr(&self) -> Result<String, String> {
        let reply: Option<(String, String)> = self
            .ask_sentinel(
                redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(MASTER_NAME),
            )
            .await?;
        let (host, port) =
            reply.ok_or_else(|| format!("the sentinel does not know {MASTER_NAME}"))?;
        Ok(format!("{host}:{port}"))
    }

    /// Ok with the new master when the sentinel names a master other than `old` that is a
    /// running data node and says it is master.
    async fn try_new_master(&self, old: &str) -> Result<String, String> {
        let new = self.try_master_addr().await?;
        if new == old {
            return Err(format!("the sentinel still names {old}"));
        }
        let role: Vec<redis::Value> =
            query(&new, self.password.as_deref(), &redis::cmd("ROLE")).await?;
        match role.first() {
            Some(redis::Value::BulkString(r)) if r.as_slice() == b"master" => Ok(new),
            other => Err(format!("{new} is named master but its ROLE is {other:?}")),
        }
    }

    /// Ok when `replica` replicates from `master` with the link up, and the sentinel lists it
    /// as a healthy replica that it has polled (`master-link-status:ok`).
    async fn check_replica(&self, replica: &str, master: &str) -> Result<(), String> {
        let info: String = query(
            replica,
            self.password.as_deref(),
            redis::cmd("INFO").arg("replication"),
        )
        .await?;
        let field = |name: &str| info_field(&info, name).unwrap_or_default();
        let following = format!("{}:{}", field("master_host"), field("master_port"));
        if field("role") != "slave" || following != master {
            return Err(format!(
                "{replica}: role {} following {following}, not a replica of {master}",
                field("role")
            ));
        }
        if field("master_link_status") != "up" {
            return Err(format!("{replica}: link to {master} is not up"));
        }
        let replicas: Vec<Vec<String>> = self
            .ask_sentinel(redis::cmd("SENTINEL").arg("REPLICAS").arg(MASTER_NAME))
            .await?;
        let seen = replicas
            .iter()
            .map(|fields| pairs(fields))
            .find(|r| r.get("name").map(String::as_str) == Some(replica));
        match seen {
            Some(r)
                if r.get("flags").map(String::as_str) == Some("slave")
                    && r.get("master-link-status").map(String::as_str) == Some("ok") =>
            {
                Ok(())
            }
            Some(r) => Err(format!("the sentinel sees replica {replica} as {r:?}")),
            None => Err(format!("the sentinel does not list {replica} as a replica")),
        }
    }

    fn node_mut(&mut self, addr: &str) -> &mut Server {
        let known: Vec<String> = self.data.iter().map(Server::addr).collect();
        self.data
            .iter_mut()
            .find(|n| n.addr() == addr)
            .unwrap_or_else(|| panic!("{addr} is not a data node of this deployment ({known:?})"))
    }

    fn describe(&self) -> String {
        self.data
            .iter()
            .chain([&self.sentinel])
            .map(Server::describe)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn data_config(port: u16, password: Option<&str>, master_port: Option<u16>) -> String {
    // No diskless-sync delay: the default waits 5 s for more replicas before a full sync.
    let mut config = format!("port {port}\nsave \"\"\nappendonly no\nrepl-diskless-sync-delay 0\n");
    if let Some(password) = password {
        let password = quote(password);
        config.push_str(&format!("requirepass {password}\nmasterauth {password}\n"));
    }
    if let Some(master_port) = master_port {
        config.push_str(&format!("replicaof 127.0.0.1 {master_port}\n"));
    }
    config
}

fn sentinel_config(
    port: u16,
    master_port: u16,
    password: Option<&str>,
    sentinel_password: Option<&str>,
) -> String {
    let mut config = format!(
        "port {port}\n\
         sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 1\n\
         sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
         sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n\
         sentinel parallel-syncs {MASTER_NAME} 1\n"
    );
    if let Some(password) = password {
        config.push_str(&format!(
            "sentinel auth-pass {MASTER_NAME} {}\n",
            quote(password)
        ));
    }
    if let Some(password) = sentinel_password {
        config.push_str(&format!("requirepass {}\n", quote(password)));
    }
    config
}

/// A flat `[field, value, field, value, ...]` Sentinel reply as a map.
fn pairs(fields: &[String]) -> HashMap<String, String> {
    fields
        .chunks_exact(2)
        .map(|kv| (kv[0].clone(), kv[1].clone()))
        .collect()
}
