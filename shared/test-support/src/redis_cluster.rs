//! A real Redis Cluster (three masters, three replicas) for tests of Pantheon against the
//! deployment most hosted Redis services use: slots, MOVED/ASK, failover, slot migration.
//!
//! Six `redis-server --cluster-enabled yes` processes on 127.0.0.1, each in its own temp dir,
//! joined with `redis-cli --cluster create`. Tuned for quick, deterministic failovers:
//! `cluster-node-timeout 1000`, `cluster-replica-validity-factor 0` (a replica is always
//! eligible, however long ago it heard from its master) and
//! `cluster-allow-replica-migration no` (the topology only changes when a test changes it).
//!
//! ```no_run
//! # async fn example() {
//! use pantheon_test_support::redis_cluster::TestCluster;
//!
//! let cluster = TestCluster::start().await;
//! for name in cluster.cluster_names_per_master("demo").await {
//!     let slot = TestCluster::slot_of(&format!("pantheon:{{{name}}}:log"));
//!     println!("{name} lives on {}", cluster.master_of_slot(slot).await);
//! }
//! # }
//! ```

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::net::TcpListener;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use crate::auth::{Probe, Server, info_field, poll, query};

/// Number of hash slots in Redis Cluster.
pub const SLOTS: u16 = 16384;
const NODES: usize = 6;
const MASTERS: usize = 3;
/// Short, so that a killed master is marked failed and replaced within seconds.
const NODE_TIMEOUT_MS: u64 = 1000;
/// The cluster bus listens on the data port plus this.
const BUS_OFFSET: u16 = 10000;
/// Bound on `redis-cli --cluster create` and on the cluster settling after it.
const CREATE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on the cluster agreeing again after a restart or a slot migration.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Keys moved per MIGRATE call.
const MIGRATE_BATCH: usize = 100;
/// MIGRATE's own I/O timeout, in milliseconds.
const MIGRATE_TIMEOUT_MS: u64 = 5000;

/// Six cluster nodes (three masters with a replica each). Drop kills and reaps them all.
#[derive(Debug)]
pub struct TestCluster {
    nodes: Vec<Server>,
}

/// Start slot -> (end slot, master address): who serves what, in one node's view.
type SlotMap = BTreeMap<u16, (u16, String)>;

/// One line of `CLUSTER NODES`: one node as some node sees it.
#[derive(Debug, Clone)]
struct NodeLine {
    id: String,
    /// `127.0.0.1:port`.
    addr: String,
    flags: Vec<String>,
    /// For a replica, its master's id.
    master_id: Option<String>,
    connected: bool,
    /// Stable slot ranges only (migrating/importing markers are left out).
    slots: Vec<RangeInclusive<u16>>,
}

impl NodeLine {
    fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    fn is_master(&self) -> bool {
        self.has_flag("master")
    }

    fn is_myself(&self) -> bool {
        self.has_flag("myself")
    }

    fn failing(&self) -> bool {
        self.has_flag("fail") || self.has_flag("fail?")
    }
}

impl TestCluster {
    /// Starts six nodes, creates the cluster (`--cluster-replicas 1`) and waits until every
    /// node reports `cluster_state:ok`, all agree on who serves each slot, and every replica's
    /// link to its master is up.
    ///
    /// # Panics
    /// When a node does not start or the cluster does not settle within 30 s; the message
    /// says what was missing and has the logs.
    pub async fn start() -> TestCluster {
        let mut nodes = Vec::with_capacity(NODES);
        for _ in 0..NODES {
            let node = Server::start(
                "cluster node",
                Probe::Plain { password: None },
                cluster_port,
                &[],
                node_config,
            )
            .await;
            nodes.push(node);
        }
        // From here on, a panic drops `cluster` and so kills every node.
        let cluster = TestCluster { nodes };
        cluster.create().await;
        if let Err(e) = poll(CREATE_TIMEOUT, || cluster.settled()).await {
            panic!(
                "the test cluster did not settle after creation: {e}\n{}",
                cluster.describe()
            );
        }
        cluster
    }

    /// `127.0.0.1:<port>` of all six nodes, in start order (whether running or not).
    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(Server::addr).collect()
    }

    /// `redis+cluster://` with the first three seeds: what Pantheon's config takes.
    pub fn url(&self) -> String {
        format!("redis+cluster://{}", self.seeds()[..3].join(","))
    }

    /// The current masters and the slot ranges each serves, ordered by first slot, as a
    /// running node sees it (`CLUSTER NODES`). Right after a kill or migration views may
    /// differ; [`wait_promoted`](Self::wait_promoted) and
    /// [`migrate_slot`](Self::migrate_slot) wait until they agree.
    ///
    /// # Panics
    /// When no node answers.
    pub async fn masters(&self) -> Vec<(String, Vec<RangeInclusive<u16>>)> {
        let view = self.any_view().await;
        let mut masters: Vec<(String, Vec<RangeInclusive<u16>>)> = view
            .into_iter()
            .filter(|n| n.is_master() && !n.slots.is_empty())
            .map(|n| (n.addr, n.slots))
            .collect();
        masters.sort_by_key(|(_, ranges)| ranges.iter().map(|r| *r.start()).min());
        masters
    }

    /// The address of the master serving `slot`.
    ///
    /// # Panics
    /// When no node answers or no master serves the slot.
    pub async fn master_of_slot(&self, slot: u16) -> String {
        self.masters()
            .await
            .into_iter()
            .find(|(_, ranges)| ranges.iter().any(|r| r.contains(&slot)))
            .map(|(addr, _)| addr)
            .unwrap_or_else(|| panic!("no master serves slot {slot}\n{}", self.describe()))
    }

    /// Redis Cluster's hash slot of `key`: CRC16 (XMODEM) of the hash tag (the content of the
    /// first non-empty `{...}`) or of the whole key, modulo 16384.
    pub fn slot_of(key: &str) -> u16 {
        crc16_xmodem(hash_tag(key.as_bytes())) % SLOTS
    }

    /// For each master (in [`masters`](Self::masters) order), a Pantheon cluster name
    /// `<prefix>-<n>` whose keys (`pantheon:{<name>}:...`, the name being the hash tag) are
    /// served by that master: a test then puts one Pantheon cluster on each shard.
    ///
    /// # Panics
    /// When no node answers, or `prefix` contains `{` or `}` (it would change the hash tag).
    pub async fn cluster_names_per_master(&self, prefix: &str) -> Vec<String> {
        assert!(
            !prefix.contains(['{', '}']),
            "a name prefix with braces changes the hash tag: {prefix:?}"
        );
        let masters = self.masters().await;
        let mut names: Vec<Option<String>> = vec![None; masters.len()];
        for n in 0u32.. {
            if names.iter().all(Option::is_some) {
                break;
            }
            let name = format!("{prefix}-{n}");
            let slot = Self::slot_of(&name);
            if let Some(i) = masters
                .iter()
                .position(|(_, ranges)| ranges.iter().any(|r| r.contains(&slot)))
            {
                names[i].get_or_insert(name);
            }
            assert!(n < 1_000_000, "no name found for every master: {masters:?}");
        }
        names.into_iter().flatten().collect()
    }

    /// Kills (SIGKILL, a crash) the master serving `slot` and returns its address.
    ///
    /// # Panics
    /// When the master is not one of this cluster's running nodes.
    pub async fn kill_master_of(&mut self, slot: u16) -> String {
        let addr = self.master_of_slot(slot).await;
        let node = self.node_mut(&addr);
        assert!(
            node.is_alive(),
            "master {addr} of slot {slot} is not running"
        );
        node.kill();
        addr
    }

    /// Waits until every running node reports `cluster_state:ok` and they all agree that a
    /// running node (so not a killed one) serves `slot`; returns that master's address.
    ///
    /// # Panics
    /// After `timeout`, with what was missing and the logs.
    pub async fn wait_promoted(&self, slot: u16, timeout: Duration) -> String {
        let result = poll(timeout, || async {
            self.settled().await?;
            let master = self.master_of_slot(slot).await;
            if self.running_addrs().contains(&master) {
                Ok(master)
            } else {
                Err(format!(
                    "slot {slot} is still served by {master}, which is down"
                ))
            }
        })
        .await;
        result.unwrap_or_else(|e| {
            panic!("no replica took over slot {slot}: {e}\n{}", self.describe())
        })
    }

    /// Starts a killed node again with the same dir (so the same `nodes.conf` and node id),
    /// and waits until it has rejoined (as a replica, if it was a master that was replaced)
    /// and the cluster has settled. A node that runs is killed first.
    ///
    /// # Panics
    /// When `addr` is not a node of this cluster, or it does not rejoin within 30 s.
    pub async fn restart_node(&mut self, addr: &str) {
        self.node_mut(addr).restart().await;
        let result = poll(SETTLE_TIMEOUT, || async {
            self.settled().await?;
            let view = view_of(addr).await?;
            match view.iter().find(|n| n.is_myself()) {
                Some(me) if !me.is_master() || !me.slots.is_empty() => Ok(()),
                _ => Err(format!("{addr} has not rejoined as a replica yet")),
            }
        })
        .await;
        if let Err(e) = result {
            panic!(
                "{addr} did not rejoin the cluster: {e}\n{}",
                self.describe()
            );
        }
    }

    /// Moves `slot` and its keys to the master at `to_addr`, the way `redis-cli --cluster
    /// reshard` does: `CLUSTER SETSLOT IMPORTING` on the target, `MIGRATING` on the source,
    /// `MIGRATE ... KEYS` in batches from `CLUSTER GETKEYSINSLOT`, then `CLUSTER SETSLOT NODE`
    /// on the target, the source and the other masters. Waits until every node agrees.
    /// Works for any key type (MIGRATE moves DUMP payloads: streams with their consumer
    /// groups, hashes, ...). A no-op when `to_addr` already serves the slot.
    ///
    /// # Panics
    /// When a step fails (e.g. `to_addr` is not a running master) or the nodes do not agree
    /// within 30 s.
    pub async fn migrate_slot(&self, slot: u16, to_addr: &str) {
        assert!(slot < SLOTS, "slot {slot} out of range");
        let from_addr = self.master_of_slot(slot).await;
        if from_addr == to_addr {
            return;
        }
        if let Err(e) = self.try_migrate(slot, &from_addr, to_addr).await {
            panic!(
                "migrating slot {slot} from {from_addr} to {to_addr} failed: {e}\n{}",
                self.describe()
            );
        }
        let result = poll(SETTLE_TIMEOUT, || async {
            self.settled().await?;
            let owner = self.master_of_slot(slot).await;
            if owner == to_addr {
                Ok(())
            } else {
                Err(format!("slot {slot} still served by {owner}"))
            }
        })
        .await;
        if let Err(e) = result {
            panic!(
                "nodes did not agree that {to_addr} serves slot {slot}: {e}\n{}",
                self.describe()
            );
        }
    }

    /// Starts moving `slot` to the master at `to_addr` and stops midway, as an operator's
    /// `redis-cli --cluster reshard` that was interrupted: `CLUSTER SETSLOT IMPORTING` on the
    /// target, `MIGRATING` on the source, and `MIGRATE` of `keys` only (keys of that slot).
    /// Returns the source's address. [`finish_migration`](Self::finish_migration) completes it.
    ///
    /// # Panics
    /// When a step fails (e.g. `to_addr` already serves the slot, or a key is not on the
    /// source).
    pub async fn begin_migration(&self, slot: u16, to_addr: &str, keys: &[&str]) -> String {
        assert!(slot < SLOTS, "slot {slot} out of range");
        let from_addr = self.master_of_slot(slot).await;
        assert_ne!(from_addr, to_addr, "{to_addr} already serves slot {slot}");
        let keys: Vec<Vec<u8>> = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
        if let Err(e) = begin(slot, &from_addr, to_addr, &keys).await {
            panic!(
                "starting to migrate slot {slot} from {from_addr} to {to_addr} failed: {e}\n{}",
                self.describe()
            );
        }
        from_addr
    }

    /// Completes a migration of `slot` to `to_addr` begun with
    /// [`begin_migration`](Self::begin_migration): moves the remaining keys, then `CLUSTER
    /// SETSLOT NODE` on the target, the source and the other masters; waits until every node
    /// agrees that `to_addr` serves the slot.
    ///
    /// # Panics
    /// When a step fails or the nodes do not agree within 30 s.
    pub async fn finish_migration(&self, slot: u16, to_addr: &str) {
        let from_addr = self.master_of_slot(slot).await;
        if let Err(e) = self.finish(slot, &from_addr, to_addr).await {
            panic!(
                "finishing the migration of slot {slot} from {from_addr} to {to_addr} failed: \
                 {e}\n{}",
                self.describe()
            );
        }
        let result = poll(SETTLE_TIMEOUT, || async {
            self.settled().await?;
            let owner = self.master_of_slot(slot).await;
            if owner == to_addr {
                Ok(())
            } else {
                Err(format!("slot {slot} still served by {owner}"))
            }
        })
        .await;
        if let Err(e) = result {
            panic!(
                "nodes did not agree that {to_addr} serves slot {slot}: {e}\n{}",
                self.describe()
            );
        }
    }

    async fn try_migrate(&self, slot: u16, from: &str, to: &str) -> Result<(), String> {
        begin(slot, from, to, &[]).await?;
        self.finish(slot, from, to).await
    }

    /// Moves the keys left in `slot` on `from` to `to`, then gives `to` the slot everywhere.
    async fn finish(&self, slot: u16, from: &str, to: &str) -> Result<(), String> {
        let my_id = redis::cmd("CLUSTER").arg("MYID").clone();
        let to_id: String = query(to, None, &my_id).await?;
        // Bounded: every round moves up to MIGRATE_BATCH keys out of the slot.
        for _ in 0..1_000_000 / MIGRATE_BATCH {
            let keys: Vec<Vec<u8>> = query(
                from,
                None,
                redis::cmd("CLUSTER")
                    .arg("GETKEYSINSLOT")
                    .arg(slot)
                    .arg(MIGRATE_BATCH),
            )
            .await?;
            if keys.is_empty() {
                break;
            }
            migrate_keys(from, to, &keys).await?;
        }
        // Target, then source (which ends its MIGRATING state), then every other master, so
        // that the new owner's higher config epoch does not have to travel by gossip alone.
        let node = setslot(slot, "NODE", &to_id);
        query::<()>(to, None, &node).await?;
        query::<()>(from, None, &node).await?;
        let view = view_of(to).await?;
        for other in view.iter().filter(|n| n.is_master() && !n.failing()) {
            if other.addr != to && other.addr != from {
                query::<()>(&other.addr, None, &node).await?;
            }
        }
        Ok(())
    }

    /// Runs `redis-cli --cluster create` over the six nodes.
    async fn create(&self) {
        let run = tokio::process::Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(self.seeds())
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = match tokio::time::timeout(CREATE_TIMEOUT, run).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => panic!("cannot run redis-cli (is it on PATH?): {e}"),
            Err(_) => panic!(
                "redis-cli --cluster create did not finish within {CREATE_TIMEOUT:?}\n{}",
                self.describe()
            ),
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() || !stdout.contains("[OK] All 16384 slots covered") {
            panic!(
                "redis-cli --cluster create failed ({}):\n{stdout}\n{}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr),
                self.describe()
            );
        }
    }

    /// Ok when the running nodes form a healthy cluster: each says `cluster_state:ok` and
    /// knows all six nodes, none sees a running node as failing, all map every slot to the
    /// same running masters, every running replica's link is up, and (when all six run)
    /// each of the three masters has a replica.
    async fn settled(&self) -> Result<(), String> {
        let running = self.running_addrs();
        let mut reference: Option<(String, SlotMap)> = None;
        for addr in &running {
            let info: String = query(addr, None, redis::cmd("CLUSTER").arg("INFO")).await?;
            if info_field(&info, "cluster_state").as_deref() != Some("ok") {
                return Err(format!("{addr}: cluster_state is not ok"));
            }
            if info_field(&info, "cluster_known_nodes") != Some(NODES.to_string()) {
                return Err(format!("{addr}: does not know all {NODES} nodes yet"));
            }
            let view = view_of(addr).await?;
            if let Some(bad) = view
                .iter()
                .find(|n| running.contains(&n.addr) && (n.failing() || !n.connected))
            {
                return Err(format!(
                    "{addr} sees running node {} as {:?} (connected: {})",
                    bad.addr, bad.flags, bad.connected
                ));
            }
            let map = slot_map(&view);
            if let Some((_, master)) = map.values().find(|(_, m)| !running.contains(m)) {
                return Err(format!(
                    "{addr} sees {master}, which is down, serving slots"
                ));
            }
            match &reference {
                None => reference = Some((addr.clone(), map)),
                Some((first, first_map)) if *first_map != map => {
                    return Err(format!("{addr} and {first} disagree on slot owners"));
                }
                Some(_) => {}
            }
            if view.iter().any(|n| n.is_myself() && !n.is_master()) {
                let replication: String =
                    query(addr, None, redis::cmd("INFO").arg("replication")).await?;
                if info_field(&replication, "master_link_status").as_deref() != Some("up") {
                    return Err(format!("replica {addr}: link to its master is not up"));
                }
            }
            if running.len() == NODES {
                let masters: Vec<&NodeLine> = view
                    .iter()
                    .filter(|n| n.is_master() && !n.slots.is_empty())
                    .collect();
                if masters.len() != MASTERS {
                    return Err(format!("{addr} sees {} masters with slots", masters.len()));
                }
                for master in masters {
                    if !view
                        .iter()
                        .any(|n| n.master_id.as_deref() == Some(master.id.as_str()))
                    {
                        return Err(format!("{addr}: master {} has no replica", master.addr));
                    }
                }
            }
        }
        match reference {
            Some((_, map)) if covered(&map) => Ok(()),
            Some(_) => Err(String::from("not all 16384 slots are served")),
            None => Err(String::from("no node runs")),
        }
    }

    /// The view of the first running node that answers.
    async fn any_view(&self) -> Vec<NodeLine> {
        let mut errors = Vec::new();
        for addr in self.running_addrs() {
            match view_of(&addr).await {
                Ok(view) => return view,
                Err(e) => errors.push(e),
            }
        }
        panic!("no cluster node answers CLUSTER NODES: {errors:?}");
    }

    /// Nodes started and not killed by the test.
    fn running_addrs(&self) -> HashSet<String> {
        self.nodes
            .iter()
            .filter(|n| n.is_alive())
            .map(Server::addr)
            .collect()
    }

    fn node_mut(&mut self, addr: &str) -> &mut Server {
        let seeds = self.seeds();
        self.nodes
            .iter_mut()
            .find(|n| n.addr() == addr)
            .unwrap_or_else(|| panic!("{addr} is not a node of this cluster ({seeds:?})"))
    }

    /// Every node's log tail, for panic messages.
    fn describe(&self) -> String {
        self.nodes
            .iter()
            .map(Server::describe)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `CLUSTER SETSLOT <slot> <state> <id>`.
fn setslot(slot: u16, state: &str, id: &str) -> redis::Cmd {
    redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg(state)
        .arg(id)
        .clone()
}

/// Marks `slot` importing on `to` and migrating on `from`, then moves `keys` to `to`.
async fn begin(slot: u16, from: &str, to: &str, keys: &[Vec<u8>]) -> Result<(), String> {
    let my_id = redis::cmd("CLUSTER").arg("MYID").clone();
    let from_id: String = query(from, None, &my_id).await?;
    let to_id: String = query(to, None, &my_id).await?;
    // Target first: between the two, a client sent ASK by the source must be accepted.
    query::<()>(to, None, &setslot(slot, "IMPORTING", &from_id)).await?;
    query::<()>(from, None, &setslot(slot, "MIGRATING", &to_id)).await?;
    if !keys.is_empty() {
        migrate_keys(from, to, keys).await?;
    }
    Ok(())
}

/// `MIGRATE` of `keys` from `from` to `to` (DUMP payloads: any key type, consumer groups too).
async fn migrate_keys(from: &str, to: &str, keys: &[Vec<u8>]) -> Result<(), String> {
    let (to_host, to_port) = to
        .rsplit_once(':')
        .ok_or_else(|| format!("bad address {to}"))?;
    let mut migrate = redis::cmd("MIGRATE");
    migrate
        .arg(to_host)
        .arg(to_port)
        .arg("")
        .arg(0)
        .arg(MIGRATE_TIMEOUT_MS)
        .arg("KEYS");
    for key in keys {
        migrate.arg(key.as_slice());
    }
    let reply: redis::Value = query(from, None, &migrate).await?;
    match reply {
        redis::Value::Okay => Ok(()),
        redis::Value::SimpleString(s) if s == "OK" => Ok(()),
        other => Err(format!(
            "MIGRATE of {} key(s) answered {other:?}",
            keys.len()
        )),
    }
}

/// A free port for a cluster node: in 20000..45000 so that the bus port (port + 10000) is
/// a valid port too, and with the bus port free as well.
pub(crate) fn cluster_port() -> std::io::Result<u16> {
    let random = RandomState::new();
    for attempt in 0u32..200 {
        let port = 20000 + (random.hash_one((attempt, Instant::now())) % 25000) as u16;
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + BUS_OFFSET) {
            return Ok(port);
        }
    }
    Err(std::io::Error::other(
        "no free port pair (port, port + 10000) in 20000..45000",
    ))
}

fn node_config(port: u16) -> String {
    // No persistence: a restarted node resyncs from its master. No diskless-sync delay: the
    // default waits 5 s for more replicas before a full sync.
    format!(
        "port {port}\n\
         cluster-enabled yes\n\
         cluster-config-file nodes.conf\n\
         cluster-node-timeout {NODE_TIMEOUT_MS}\n\
         cluster-replica-validity-factor 0\n\
         cluster-allow-replica-migration no\n\
         cluster-require-full-coverage yes\n\
         appendonly no\n\
         save \"\"\n\
         repl-diskless-sync-delay 0\n"
    )
}

/// `CLUSTER NODES` of the node at `addr`, parsed.
async fn view_of(addr: &str) -> Result<Vec<NodeLine>, String> {
    let text: String = query(addr, None, redis::cmd("CLUSTER").arg("NODES")).await?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(parse_node_line)
        .collect()
}

/// Parses `<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link>
/// <slot>...`.
fn parse_node_line(line: &str) -> Result<NodeLine, String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 8 {
        return Err(format!("bad CLUSTER NODES line: {line}"));
    }
    let addr = fields[1]
        .split(['@', ','])
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut slots = Vec::new();
    for spec in &fields[8..] {
        // `[slot->-id]` / `[slot-<-id]`: a migration in progress; the owner is unchanged.
        if spec.starts_with('[') {
            continue;
        }
        let parse = |s: &str| {
            s.parse::<u16>()
                .map_err(|e| format!("bad slot {s:?} in {line}: {e}"))
        };
        let range = match spec.split_once('-') {
            Some((start, end)) => parse(start)?..=parse(end)?,
            None => {
                let slot = parse(spec)?;
                slot..=slot
            }
        };
        slots.push(range);
    }
    Ok(NodeLine {
        id: fields[0].to_owned(),
        addr,
        flags: fields[2].split(',').map(str::to_owned).collect(),
        master_id: (fields[3] != "-").then(|| fields[3].to_owned()),
        connected: fields[7] == "connected",
        slots,
    })
}

/// The slot ranges of the masters in `view`, for comparing views.
fn slot_map(view: &[NodeLine]) -> SlotMap {
    view.iter()
        .filter(|n| n.is_master())
        .flat_map(|n| {
            n.slots
                .iter()
                .map(move |r| (*r.start(), (*r.end(), n.addr.clone())))
        })
        .collect()
}

/// Whether the ranges of `map` cover 0..=16383 without gaps.
fn covered(map: &SlotMap) -> bool {
    let mut next: u32 = 0;
    for (start, (end, _)) in map {
        if u32::from(*start) != next {
            return false;
        }
        next = u32::from(*end) + 1;
    }
    next == u32::from(SLOTS)
}

/// The part of a key Redis Cluster hashes: the content of the first `{...}` if non-empty.
fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        let rest = &key[open + 1..];
        if let Some(len) = rest.iter().position(|&b| b == b'}').filter(|&len| len > 0) {
            return &rest[..len];
        }
    }
    key
}

/// CRC16/XMODEM (polynomial 0x1021, initial value 0), the checksum Redis Cluster uses.
fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_check_value() {
        // The standard check value of CRC-16/XMODEM, also in Redis's crc16.c.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31c3);
    }

    #[test]
    fn slots_of_known_keys() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT` (the
        // deployments test checks these against a running cluster as well).
        assert_eq!(TestCluster::slot_of("foo"), 12182);
        assert_eq!(TestCluster::slot_of("{user1000}.following"), 3443);
        assert_eq!(TestCluster::slot_of("{user1000}.followers"), 3443);
        assert_eq!(
            TestCluster::slot_of("pantheon:{c1}:log"),
            TestCluster::slot_of("c1")
        );
    }

    #[test]
    fn hash_tag_rules() {
        // Empty tag: the whole key is hashed. Only the first `{` and the next `}` count.
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"no-close{"), b"no-close{");
    }

    #[test]
    fn parses_cluster_nodes_lines() {
        let line = "07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host \
                    slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected";
        let node = parse_node_line(line).expect("parses");
        assert_eq!(node.addr, "127.0.0.1:30004");
        assert!(!node.is_master());
        assert_eq!(
            node.master_id.as_deref(),
            Some("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca")
        );
        let line = "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 \
                    myself,master - 0 0 1 connected 0-5460 5462 [5461->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]";
        let node = parse_node_line(line).expect("parses");
        assert!(node.is_master() && node.is_myself());
        assert_eq!(node.slots, vec![0..=5460, 5462..=5462]);
    }

    #[test]
    fn coverage() {
        let mut map = BTreeMap::new();
        map.insert(0, (8000, String::from("a")));
        assert!(!covered(&map));
        map.insert(8001, (16383, String::from("b")));
        assert!(covered(&map));
    }
}
